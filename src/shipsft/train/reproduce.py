"""`shipsft reproduce RUN_DIR [--check-steps N]`: can this run folder still be re-run as it was?

It reads the folder's resolved config and manifest, prepares the data again exactly as training did, and compares,
side by side, what the manifest recorded with what the machine has now: the config hash, the data files' hashes,
the commits that hub ids (model and datasets) resolve to, the rendered token stream's fingerprint, the tokenizer and
the chat template, and the package versions. With
`--check-steps N` it also trains the first N optimizer steps again (eval suites off: they do not change the weights)
in a scratch folder and compares the loss of each step with the one recorded in metrics.jsonl.

    report = reproduce(Path("runs/quickstart"), check_steps=3)
    report.rows      # [Row("config hash", recorded, now, ok), ...]
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.config import EvalConfig, TrackConfig, load_config
from shipsft.data.cache import tokenizer_fingerprint
from shipsft.data.pipeline import prepare, token_fingerprint
from shipsft.errors import ConfigError
from shipsft.model.locate import hub_commit, load_tokenizer
from shipsft.runs.layout import RunFolder, is_run_folder
from shipsft.runs.manifest import package_versions, read_manifest
from shipsft.runs.sinks import read_metrics

LOSS_TOLERANCE = 1e-4  # same machine and packages give identical losses; another CPU's kernels differ near 1e-5


@dataclass
class Row:
    what: str
    recorded: str
    now: str
    ok: bool


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    losses: list[tuple[int, float, float]] = field(default_factory=list)  # (step, recorded, now)
    max_loss_diff: float | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows) and (self.max_loss_diff is None or self.max_loss_diff <= LOSS_TOLERANCE)


def _row(what: str, recorded, now) -> Row:
    return Row(what, "—" if recorded is None else str(recorded), "—" if now is None else str(now), recorded == now)


def reproduce(run_dir: Path, check_steps: int | None, progress=None) -> Report:
    folder = RunFolder(Path(run_dir))
    if not is_run_folder(folder.root):
        raise ConfigError([f"{run_dir}: not a run folder (no config.yaml and manifest.json)"])
    manifest = read_manifest(folder)
    cfg = load_config(folder.config)
    tok = load_tokenizer(cfg.model)
    prep = prepare(cfg.data, tok, "train", strict=False, rejects_path=None)
    template = prep.renderer.template if prep.renderer is not None else None
    report = Report()
    report.rows.append(_row("config hash", manifest.get("config_hash"), cfg.config_hash()))
    report.rows.append(_row("data fingerprint (train)", manifest.get("data_fingerprint", {}).get("train"),
                            prep.fingerprint))
    files_now = {f.path: f.sha256 for f in prep.files}
    for path, sha in sorted(manifest.get("data_files", {}).items()):
        if path in files_now or path in cfg.data.train or any(path in x.path for x in cfg.data.sources):
            report.rows.append(_row(f"file {path}", sha[:16], (files_now.get(path) or "missing")[:16]))
    model_now = hub_commit(cfg.model, Path(tok.name_or_path))  # the snapshot the tokenizer was just read from
    if manifest.get("model_commit") or model_now:
        report.rows.append(_row(f"model commit ({cfg.model.path})", manifest.get("model_commit"), model_now))
    commits_now = {f.path: f.commit for f in prep.files if f.commit}
    commits = (manifest.get("data_commits") or {}).get("train") or {}
    for name in sorted(set(commits) | set(commits_now)):
        report.rows.append(_row(f"data commit {name}", commits.get(name), commits_now.get(name)))
    report.rows.append(_row("rendered tokens (train)", manifest.get("token_fingerprint", {}).get("train"),
                            token_fingerprint(prep.rendered)[:16]))
    report.rows.append(_row("tokenizer", manifest.get("tokenizer_hash"), tokenizer_fingerprint(tok)))
    report.rows.append(_row("chat template", manifest.get("template_hash"),
                            hashlib.sha256(template.source.encode()).hexdigest()[:16] if template else None))
    now_packages = package_versions()
    for name, version in (manifest.get("packages") or {}).items():
        if version is not None or now_packages.get(name) is not None:
            report.rows.append(_row(f"package {name}", version, now_packages.get(name)))
    if check_steps:
        recorded = [r for r in read_metrics(folder) if "loss" in r][:check_steps]
        now = retrain(cfg, folder, check_steps, progress)
        report.losses = [(r["step"], r["loss"], loss) for r, loss in zip(recorded, now)]
        report.max_loss_diff = max((abs(a - b) for _, a, b in report.losses if a is not None), default=0.0)
    return report


def retrain(cfg, folder: RunFolder, steps: int, progress) -> list[float]:
    """The run's first `steps` optimizer steps again, in a scratch folder, with eval suites and trackers off; their
    losses."""
    from shipsft.train.loop import Silent, fit
    from shipsft.train.run import setup

    progress = progress or Silent()
    cfg = cfg.model_copy(update={"eval": EvalConfig(), "track": TrackConfig()}, deep=True)  # no tracker run
    with tempfile.TemporaryDirectory(prefix="shipsft-reproduce-") as tmp:
        cfg.output.dir, cfg.output.name = tmp, "check"
        s = setup(cfg, folder.config, True, None, progress)
        try:
            result = fit(s, progress, limit_steps=steps)
        finally:
            s.run.close()
    return [h["loss"] for h in result.history]
