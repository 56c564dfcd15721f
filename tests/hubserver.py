"""A local stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, reached by huggingface_hub through HF_ENDPOINT:
shipsft's hub code runs unchanged down to the HTTP requests, which this server answers and records. It speaks the
calls shipsft makes: repository info and file tree, file downloads (HEAD + GET on /resolve/), repository creation
and a commit (preupload answers "regular" for every file, so the commit carries each file's bytes inline). Gated and
missing repositories answer as the Hub does (401 / 404 with X-Error-Code).

    with FakeHub({("model", "org/tiny"): {"config.json": b"{}"}}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        ...
        hub.requests   # [(method, path), ...]
        hub.commits    # [{"repo": ..., "summary": ..., "description": ..., "files": {path: bytes}}]
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

GATED = "gated"
MISSING = "missing"


class FakeHub:
    def __init__(self, repos: dict, commit: str = "c0ffee" * 6 + "c0ff", refused: dict | None = None):
        """`repos`: {(repo_type, repo_id): {path: bytes}} served at `commit`; `refused`: {(repo_type, repo_id): GATED
        | MISSING}."""
        self.repos, self.commit, self.refused = repos, commit, refused or {}
        self.requests: list[tuple[str, str]] = []
        self.commits: list[dict] = []
        self.created: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub.answer(self, head=True)

            def do_GET(self):
                hub.answer(self, head=False)

            def do_POST(self):
                hub.answer_post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------------------------------------------------
    def send(self, h, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def send_json(self, h, obj, status: int = 200, head: bool = False) -> None:
        self.send(h, status, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

    def find(self, rtype: str, parts: list[str]) -> tuple[tuple[str, str], list[str]]:
        return (rtype, "/".join(parts[:2])), parts[2:]

    def refuse(self, h, key, head: bool) -> bool:
        why = self.refused.get(key)
        if why == GATED:
            self.send(h, 401, b'{"error": "gated"}', {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"}, head)
        elif why == MISSING or (why is None and key not in self.repos):
            self.send(h, 404, b'{"error": "not found"}', {"X-Error-Code": "RepoNotFound"}, head)
        else:
            return False
        return True

    def answer(self, h, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append((h.command, path))
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 5 and parts[1] in ("models", "datasets"):
            key, rest = self.find(parts[1][:-1], parts[2:])
            if self.refuse(h, key, head):
                return
            files = self.repos[key]
            if rest[:1] == ["revision"]:
                return self.send_json(h, {"id": key[1], "sha": self.commit, "private": False,
                                          "siblings": [{"rfilename": f} for f in sorted(files)]}, head=head)
            if rest[:1] == ["tree"]:
                return self.send_json(h, [{"type": "file", "path": f, "size": len(b),
                                           "oid": hashlib.sha1(b).hexdigest()} for f, b in sorted(files.items())],
                                      head=head)
        rtype = "dataset" if parts[:1] == ["datasets"] else "model"
        parts = parts[1:] if rtype == "dataset" else parts
        if len(parts) >= 5 and parts[2] == "resolve":
            key, rest = self.find(rtype, parts)
            if self.refuse(h, key, head):
                return
            name = "/".join(rest[2:])
            body = self.repos[key].get(name)
            if body is None:
                return self.send(h, 404, b"", {"X-Error-Code": "EntryNotFound"}, head)
            etag = hashlib.sha1(body).hexdigest()
            return self.send(h, 200, body, {"X-Repo-Commit": self.commit, "ETag": f'"{etag}"'}, head)
        self.send(h, 404, b"{}", {}, head)

    def answer_post(self, h) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(("POST", path))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        parts = [p for p in path.split("/") if p]
        if path == "/api/repos/create":
            self.created.append({**json.loads(body), "authorization": h.headers.get("authorization")})
            return self.send_json(h, {"url": f"{self.url}/{json.loads(body)['organization']}/x"})
        if path == "/api/validate-yaml":
            return self.send_json(h, {"errors": [], "warnings": []})
        if len(parts) >= 6 and parts[4] == "preupload":
            files = json.loads(body)["files"]
            return self.send_json(h, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                for f in files]})
        if len(parts) >= 6 and parts[4] == "commit":
            lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
            header = next(x["value"] for x in lines if x["key"] == "header")
            files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
            self.commits.append({"repo": "/".join(parts[2:4]), "summary": header.get("summary"),
                                 "description": header.get("description"), "files": files})
            return self.send_json(h, {"commitUrl": f"{self.url}/{'/'.join(parts[2:4])}/commit/{'b' * 40}",
                                      "commitOid": "b" * 40, "success": True})
        self.send(h, 404, b"{}")


def require_online_client() -> None:
    """Skip a test that talks to FakeHub when the environment that started pytest set HF_HUB_OFFLINE=1: huggingface_hub
    then refuses every request, this local one too."""
    import pytest
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        pytest.skip("HF_HUB_OFFLINE was set when pytest started: huggingface_hub refuses every request")
