"""What a run hands off: its resolved config, the weights it ships, and how it rendered and stopped in training.

    src = open_run("runs/quickstart")
    src.weights                      # runs/quickstart/final (or the last adapter/ / model/ with a note)
    renderer = training_renderer(src)   # the template, kwargs and system policy training rendered with

Training renders with the base model's tokenizer and the template `data.template` resolves to (train/run.py sets that
template on the tokenizer it saves), so the renderer is rebuilt here the same way: base tokenizer + run's DataConfig.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipsft.config import RunConfig, load_config
from shipsft.data.render import Renderer, load_renderer
from shipsft.errors import ConfigError
from shipsft.model.locate import load_tokenizer, tokenizer_from
from shipsft.runs.layout import RunFolder, is_run_folder
from shipsft.runs.verify import verified_weights


@dataclass
class RunSource:
    folder: RunFolder
    cfg: RunConfig
    weights: Path  # final/ (promoted), else the last adapter/ or model/
    note: str  # "" for a promoted run, else why these weights

    @property
    def is_adapter(self) -> bool:
        return (self.weights / "adapter_config.json").exists()

    @property
    def name(self) -> str:
        return self.folder.root.resolve().name


def open_run(path: str | Path) -> RunSource:
    p = Path(path)
    if not (p.is_dir() and is_run_folder(p)):
        raise ConfigError([f"{path}: not a run folder (no config.yaml + manifest.json). Fix: give the folder "
                           "`shipsft train` wrote, e.g. runs/quickstart"])
    folder = RunFolder(p)
    found = verified_weights(folder)  # a damaged file is named here, before anything is loaded
    if found is None:
        raise ConfigError([f"{path}: a run folder without final/, adapter/ or model/ (did training finish?)"])
    return RunSource(folder, load_config(folder.config), found[0], found[1])


def training_renderer(src: RunSource) -> Renderer:
    """The renderer training used: the base tokenizer with the template `data.template` resolves to."""
    return load_renderer(load_tokenizer(src.cfg.model), src.cfg.data)


def shipped_tokenizer(src: RunSource):
    """The tokenizer saved with the shipped weights (it carries the training template), else the base one."""
    if (src.weights / "tokenizer_config.json").exists():
        return tokenizer_from(src.weights, src.cfg.model.trust_remote_code)
    return load_tokenizer(src.cfg.model)

