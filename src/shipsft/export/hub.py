"""`shipsft export RUN --push-to-hub org/name [--private] [--adapter-only]`: publish a run on the Hugging Face Hub.

What is uploaded, in one commit through huggingface_hub (`HfApi.create_repo`, then `create_commit`):
- by default the HF export folder (`<run>/export/hf`: merged weights, tokenizer with the training template,
  generation_config, README.md model card), written by `shipsft export` just before;
- with `--adapter-only` the run's shipped adapter (final/, else adapter/) without the training state, its
  adapter_config.json pointing at the base's hub id and commit, and a model card; nothing is merged.

Before any work it refuses, in one line with the fix, what cannot succeed: HF_HUB_OFFLINE=1, no token. A failure
during the upload (no network, a token without write access) is one line too, and the export stays on disk with the
command that uploads it as it is (`hf upload`). The Hub is reached at $HF_ENDPOINT when set (read at call time).

    check_can_push("org/name")
    info = push(Path("runs/quickstart"), "org/name", folder=Path("runs/quickstart/export/hf"), private=True)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shipsft.config import hub_endpoint, hub_offline, is_hub_id
from shipsft.errors import ConfigError, HubError
from shipsft.runs.layout import COMPLETE, STATE_DIR


@dataclass
class Pushed:
    repo_id: str
    url: str  # the commit's page on the Hub
    commit: str | None
    files: list[str]  # paths in the repository
    message: str


def check_can_push(repo_id: str) -> str:
    """The token to push with; refuses a bad id, offline mode and a missing token before anything is exported."""
    from huggingface_hub import get_token

    if not is_hub_id(repo_id):
        raise ConfigError([f"--push-to-hub {repo_id}: not a Hugging Face repository id. Fix: org/name (your user or "
                           "organisation, a slash, the model's name)"])
    if hub_offline():
        raise HubError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE=1 forbids uploading. Fix: unset HF_HUB_OFFLINE and "
                       "run the command again")
    token = get_token()
    if not token:
        raise HubError(f"--push-to-hub {repo_id}: no Hugging Face token. Fix: `hf auth login` with a token that can "
                       "write, or set HF_TOKEN, then run the command again")
    return token


def upload_files(folder: Path) -> dict[str, Path]:
    """Repository path -> local file for every file of `folder` but the training state and the COMPLETE marker."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and rel.parts[0] not in (STATE_DIR, COMPLETE) and not rel.name.startswith("."):
            out[rel.as_posix()] = p
    return out


def adapter_config_for_hub(path: Path, base_id: str, base_commit: str | None) -> bytes:
    """adapter_config.json with the base named by its hub id (training wrote the local snapshot folder), so
    `PeftModel.from_pretrained` finds the base from the Hub; `revision` pins the commit trained on."""
    conf = json.loads(path.read_text(encoding="utf-8"))
    conf["base_model_name_or_path"] = base_id
    if base_commit:
        conf["revision"] = base_commit
    return (json.dumps(conf, indent=2, sort_keys=True) + "\n").encode()


def push(repo_id: str, token: str, files: dict[str, Path | bytes], private: bool, message: str,
         description: str, keep: Path) -> Pushed:
    """Create the repository (kept as it is when it exists) and upload `files` in one commit. `keep`: what stays on
    disk when the upload fails, named in the error with the command that uploads it."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub_endpoint(), token=token)
    ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=src if isinstance(src, bytes) else str(src))
           for name, src in files.items()]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=ops, commit_message=message, commit_description=description)
    except Exception as e:  # noqa: BLE001 - network and HTTP errors of several types, each one line
        raise push_error(e, repo_id, keep) from None
    return Pushed(repo_id, str(info.commit_url), info.oid, list(files), message)


def push_error(exc: BaseException, repo_id: str, keep: Path) -> HubError:
    from huggingface_hub.errors import HfHubHTTPError

    retry = f"the files stay in {keep}; upload them as they are with `hf upload {repo_id} {keep}`"
    status = getattr(getattr(exc, "response", None), "status_code", None) if isinstance(exc, HfHubHTTPError) else None
    if status in (401, 403):
        return HubError(f"--push-to-hub {repo_id}: the Hub refused the token (HTTP {status}). Fix: a token that can "
                        f"write to {repo_id.split('/')[0]} (`hf auth login`, or HF_TOKEN); {retry}")
    if status is not None:
        first = str(exc).splitlines()[0][:200]
        return HubError(f"--push-to-hub {repo_id}: the Hub answered HTTP {status} ({first}); {retry}")
    return HubError(f"--push-to-hub {repo_id}: the Hub cannot be reached ({type(exc).__name__}). Fix: connect to the "
                    f"network and run the command again; {retry}")


def push_run(run: Path, repo_id: str, token: str, private: bool, hf_folder: Path | None, progress) -> Pushed:
    """Upload a run to `repo_id`: the HF export in `hf_folder`, or with `hf_folder=None` the run's adapter alone
    (module docstring). `progress` is anything with `.note(str)`."""
    from shipsft.export.source import open_run
    from shipsft.runs.manifest import read_manifest

    src = open_run(run)
    manifest = read_manifest(src.folder)
    base, commit = src.cfg.model.path, manifest.get("model_commit")
    if hf_folder is None:
        if not src.is_adapter:
            raise ConfigError([f"--adapter-only: {run} trained every weight (method {src.cfg.method.name}), there is "
                               "no adapter. Fix: drop --adapter-only to push the HF export"])
        files: dict[str, Path | bytes] = dict(upload_files(src.weights))
        if is_hub_id(base):
            files["adapter_config.json"] = adapter_config_for_hub(src.weights / "adapter_config.json", base, commit)
        else:
            progress.note(f"note: the base {base} is a local model; adapter_config.json names it as trained, so users "
                          "of the adapter need that base")
        files["README.md"] = adapter_card(src, manifest, repo_id).encode()
        what, keep = f"{src.cfg.method.name} adapter", src.weights
    else:
        files, what, keep = dict(upload_files(hf_folder)), "merged model (HF export)", hf_folder
    message = f"Upload {what} of shipsft run {src.name}"
    description = "; ".join([f"base model {base}" + (f" at commit {commit}" if commit else ""),
                             f"config hash {manifest.get('config_hash')}"] + ([src.note] if src.note else []))
    progress.note(f"push: {len(files)} files ({what}) to {repo_id}" + (" (private)" if private else ""))
    pushed = push(repo_id, token, files, private, message, description, keep)
    progress.note(f"push: {pushed.url}")
    return pushed


def adapter_card(src, manifest: dict, repo_id: str) -> str:
    """The model card of an adapter pushed alone: the export's card, for the unmerged adapter."""
    from shipsft.data.render import end_of_turn_marker
    from shipsft.eval.items import stop_ids
    from shipsft.export.card import CardFacts, model_card
    from shipsft.export.hf import baked_template
    from shipsft.export.run import data_files
    from shipsft.export.source import shipped_tokenizer, training_renderer
    from shipsft.runs.jsonio import read_json

    renderer = training_renderer(src)
    template = baked_template(renderer.template.source, src.cfg.data.template_kwargs)
    promotion = read_json(src.folder.promotion) if src.folder.promotion.exists() else None
    return model_card(CardFacts(src.name, src.cfg, manifest, promotion, data_files(src), template,
                                end_of_turn_marker(renderer), stop_ids(shipped_tokenizer(src), None, renderer),
                                "not merged", None, None, None, note=src.note, adapter_repo=repo_id))
