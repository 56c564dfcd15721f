"""A model named by its Hugging Face Hub id (`model.path: org/name`, `model.revision`) as a local snapshot folder.

huggingface_hub's `snapshot_download` does the work: it reads the hub cache first (`$HF_HUB_CACHE`, the
`models--org--name/snapshots/<commit>/` layout), downloads what is missing when online (with its progress bars), and
falls back to the cache when the Hub cannot be reached. Only the files a model needs are asked for: the tokenizer,
its chat template, config.json and generation_config.json, and, when the weights are loaded, *.safetensors.
Pickled weights (*.bin, *.pt) are downloaded only with `model.allow_pickle: true`, the model's own Python files only
with `model.trust_remote_code: true`. The snapshot folder's name is the commit, which the run's manifest records.

    folder = snapshot_folder(ModelConfig(path="Qwen/Qwen2.5-0.5B-Instruct"), weights=True)
    commit = folder.name
"""
from __future__ import annotations

from pathlib import Path

from shipsft.config import ModelConfig, hub_cache_dir, hub_endpoint, hub_offline
from shipsft.errors import ConfigError, hub_error

# what the tokenizer, the chat template and the model's config live in (transformers' file names)
TOKENIZER_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
                   "merges.txt", "chat_template.jinja", "chat_template.json", "*.tiktoken"]
WEIGHT_FILES = ["*.safetensors", "*.safetensors.index.json"]
PICKLE_FILES = ["*.bin", "*.bin.index.json", "*.pt", "*.pth"]
REMOTE_CODE_FILES = ["*.py"]


def allow_patterns(model: ModelConfig, weights: bool) -> list[str]:
    """The files of the repository to fetch: never a pickle or Python code unless the config opts in."""
    out = list(TOKENIZER_FILES)
    if weights:
        out += WEIGHT_FILES + (PICKLE_FILES if model.allow_pickle else [])
    if model.trust_remote_code:
        out += REMOTE_CODE_FILES
    return out


def snapshot_folder(model: ModelConfig, weights: bool) -> Path:
    """The cached snapshot of the hub id `model.path` at `model.revision`, downloaded first when online; with
    `weights`, checked to hold weights shipsft may load."""
    from huggingface_hub import snapshot_download

    cache, offline = hub_cache_dir(), hub_offline()
    try:
        folder = Path(snapshot_download(model.path, revision=model.revision, cache_dir=cache, endpoint=hub_endpoint(),
                                        local_files_only=offline, allow_patterns=allow_patterns(model, weights)))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises several types; hub_error names each
        raise hub_error(e, "model.path", model.path, "model", model.revision, str(cache), offline) from None
    if not (folder / "config.json").exists() and not (folder / "tokenizer_config.json").exists():
        raise ConfigError([f"model.path: {model.path} (commit {folder.name}) has no config.json or tokenizer in "
                           f"{folder}. Fix: a repository of a transformers model, or download it again "
                           f"(hf download {model.path})"])
    if weights:
        check_weights(model, folder)
    return folder


def check_weights(model: ModelConfig, folder: Path) -> None:
    """Refuse a snapshot without safetensors, naming the pickles it has instead and the opt-in."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
    if pickles and model.allow_pickle:
        return
    if pickles or not hub_offline():
        raise ConfigError([f"model.path: {model.path} (commit {folder.name}) has no *.safetensors weights"
                           + (f", only pickled {', '.join(pickles[:3])}" if pickles else "") +
                           ". Pickles can run code when loaded, so shipsft does not download them. Fix: a "
                           "repository with safetensors weights, or model.allow_pickle: true if you trust its author"])
    raise ConfigError([f"model.path: {model.path} (commit {folder.name}) is in the Hugging Face cache without its "
                       f"weights ({folder} has no *.safetensors) and HF_HUB_OFFLINE=1 forbids downloading them. Fix: "
                       f"run once with network access, or `hf download {model.path}`"])
