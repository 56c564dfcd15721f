"""`shipsft export RUN`: merge -> HF folder -> GGUF (llama.cpp's converter) -> parity check -> model card.

    result = export_run(Path("runs/quickstart"), ExportConfig(to=["hf", "gguf"], quant="q4_k_m"), progress)
    report = check_run(Path("runs/quickstart"), export_cfg, progress)    # `shipsft export RUN --check`

Each of hf/ and gguf/ is written atomically (runs.checkpoint.save_atomic: a half-written export is never in place).
llama.cpp's convert_hf_to_gguf.py converts an fp32 HF folder of the merge, .gguf-source/ (removed after): links to
hf/'s files when hf/ is f32, else an fp32 copy, so the GGUF is rounded once, from the fp32 merge, whatever hf/'s
dtype (convert.match_space_prefix may give it its own tokenizer_config.json).
The check runs last, on the files as written (what a server loads), and a failed check raises `ParityFailed` after
export.json and the cards are written, so what differs can be inspected. `progress` is anything with `.note(str)`
(train/loop.py's Progress).
"""
from __future__ import annotations

import errno
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from shipsft.config import ExportConfig, ModelConfig, is_hub_id
from shipsft.data.render import end_of_turn_marker
from shipsft.data.template import ChatTemplate
from shipsft.errors import ConfigError, HubError, ShipError
from shipsft.eval.items import stop_ids
from shipsft.export.card import CardFacts, model_card
from shipsft.export.folder import ExportFolder
from shipsft.export.convert import GGUFInfo, convert, link_folder, match_space_prefix, read_metadata
from shipsft.export.hf import baked_template, folder_size, sentencepiece_model, write_hf
from shipsft.export.llamacpp import toolchain
from shipsft.export.merge import MergeInfo, merged_model
from shipsft.export.modelfile import modelfile
from shipsft.export.parity import ParityFailed, ParityReport, check_export
from shipsft.export.source import RunSource, open_run, shipped_tokenizer, training_renderer
from shipsft.model.locate import gguf_path, resolve_model_dir
from shipsft.model.precision import pick_device
from shipsft.runs.checkpoint import save_atomic
from shipsft.runs.integrity import replace_file
from shipsft.runs.jsonio import read_json, write_json
from shipsft.runs.manifest import read_manifest


@dataclass
class ExportResult:
    folder: ExportFolder
    merge: MergeInfo
    hf: Path | None = None
    gguf: GGUFInfo | None = None
    report: ParityReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


def export_folder(src: RunSource, export: ExportConfig) -> ExportFolder:
    return ExportFolder(Path(export.dir) if export.dir else src.folder.root / "export")


def gguf_type(export: ExportConfig) -> str:
    return export.quant or export.dtype


def source_gguf_fields(model: ModelConfig) -> dict:
    """general.license of the base model's GGUF, when the base came from one (SmolLM2), for the model card."""
    try:
        g = gguf_path(model.path, model.gguf_file)
    except ConfigError:
        return {}
    if g is None or not g.exists():
        return {}
    return read_metadata(g, ("general.license",))


def gguf_name(src: RunSource) -> str:
    """general.name: the run and its base model's folder name. llama.cpp reads the family from it where the file
    cannot say (src/llama-vocab.cpp: a name with "phi3" / "phi-3" gets Phi-3's whitespace stripping after special
    tokens), so the base's name is kept in it."""
    if is_hub_id(src.cfg.model.path):
        return f"{src.name} ({src.cfg.model.path.split('/')[-1]})"  # a snapshot folder is named by its commit
    try:
        base = resolve_model_dir(src.cfg.model).name
    except ConfigError:
        base = Path(src.cfg.model.path).name
    return f"{src.name} ({base})"


def tokenizer_folders(src: RunSource) -> list[Path]:
    """Where the shipped tokenizer's files may be: the shipped weights, then the base model's folder."""
    try:
        return [src.weights, resolve_model_dir(src.cfg.model, weights=False)]
    except (ConfigError, HubError):  # a base no longer on disk (or an uncached hub id offline): the shipped folder
        return [src.weights]


def data_files(src: RunSource) -> list[dict]:
    if not src.folder.audit_json.exists():
        return []
    stats = read_json(src.folder.audit_json).get("stats") or {}
    return (stats.get("provenance") or {}).get("files") or []


def export_run(run: Path, export: ExportConfig, progress) -> ExportResult:
    """Write the export of a run folder's shipped weights; raises ParityFailed when the check finds a mismatch, and
    ExportWriteError (one line) when a folder cannot be written: a full disk leaves the previous export in place."""
    t0 = time.perf_counter()
    src = open_run(run)  # the shipped weights checked against their save's record before anything is loaded
    try:
        return write_export(src, run, export, progress, t0)
    except OSError as e:
        raise ExportWriteError(write_failed(export_folder(src, export), e)) from None


def write_export(src: RunSource, run: Path, export: ExportConfig, progress, t0: float) -> ExportResult:
    folder = export_folder(src, export)
    if src.note:
        progress.note(f"note: {run}: {src.note}")
    tc = toolchain(progress) if "gguf" in export.to else None  # before the merge: a missing tool stops it here
    renderer = training_renderer(src)
    template = baked_template(renderer.template.source, src.cfg.data.template_kwargs)
    tok = shipped_tokenizer(src)
    marker = end_of_turn_marker(renderer)
    eot_id = tok.convert_tokens_to_ids(marker) if marker is not None else None
    device = pick_device()
    lm, merge = merged_model(src.cfg.model, src.cfg.method, src.weights, device)
    stop = stop_ids(tok, lm, renderer)
    result = ExportResult(folder, merge)
    result.seconds["merge"] = round(time.perf_counter() - t0, 1)
    progress.note(f"export: {merge.summary()}; end-of-turn {marker!r} (id {eot_id}); stop ids {stop}")
    src_fields = source_gguf_fields(src.cfg.model)
    facts = CardFacts(src.name, src.cfg, read_manifest(src.folder),
                      read_json(src.folder.promotion) if src.folder.promotion.exists() else None, data_files(src),
                      template, marker, stop, merge.summary(), export.dtype if "hf" in export.to else None, None,
                      None, base_license=src_fields.get("general.license"), note=src.note)

    for target, path in (("hf", folder.hf), ("gguf", folder.gguf_dir)):  # a stale target would be checked as ours
        if target not in export.to and path.exists():
            shutil.rmtree(path)
    sp_model = sentencepiece_model(tok, tokenizer_folders(src))

    def write_hf_folder() -> None:
        t = time.perf_counter()
        result.hf = write_hf(lm, tok, template, stop, folder.hf, export.dtype, model_card(facts), sp_model)
        result.sizes["hf"] = folder_size(folder.hf)
        result.seconds["hf"] = round(time.perf_counter() - t, 1)
        progress.note(f"export: {folder.hf} ({export.dtype}, {result.sizes['hf'] / 1e6:.0f} MB, "
                      f"{result.seconds['hf']:.0f} s)")

    if "hf" in export.to and export.dtype == "f32":
        write_hf_folder()
    if "gguf" in export.to:
        t = time.perf_counter()
        qtype = gguf_type(export)
        gfile = folder.gguf_file(src.name, qtype)
        facts.gguf_name, facts.gguf_type = gfile.name, qtype
        staging = folder.root / ".gguf-source"  # the converter's input: an fp32 HF folder of the merge
        shutil.rmtree(staging, ignore_errors=True)
        if result.hf is not None:
            link_folder(folder.hf, staging)
        else:
            write_hf(lm, tok, template, stop, staging, "f32", "", sp_model)
        if match_space_prefix(staging):
            progress.note("export: SentencePiece tokenizer that adds its space only at the start of the text: the "
                          "GGUF gets tokenizer.ggml.add_space_prefix false, as llama.cpp then tokenises chats alike")
        holder: dict = {}

        def write_gguf_dir(tmp: Path) -> None:
            holder["info"] = convert(staging, tmp / gfile.name, qtype, tc, gguf_name(src))
            text, facts.modelfile_note = modelfile(gfile.name, ChatTemplate(template, renderer.template.special),
                                                   [tok.convert_ids_to_tokens(i) for i in stop])
            (tmp / "Modelfile").write_text(text, encoding="utf-8")

        try:
            save_atomic(folder.gguf_dir, write_gguf_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        result.gguf = holder["info"]
        result.gguf.path = gfile
        result.sizes["gguf"] = gfile.stat().st_size
        result.seconds["gguf"] = round(time.perf_counter() - t, 1)
        progress.note(f"export: {gfile} ({qtype}, {result.sizes['gguf'] / 1e6:.0f} MB, {result.seconds['gguf']:.0f} s "
                      f"with {result.gguf.tool}; architecture {result.gguf.arch!r}, tensor types "
                      f"{result.gguf.tensor_types})")
    if "hf" in export.to and result.hf is None:
        write_hf_folder()
    lm = None  # free the merged weights before the check loads the export's own
    if export.check:
        t = time.perf_counter()
        result.report = check_export(src, folder, renderer, template, export.check_prompts or 0,
                                     strict=export.dtype == "f32", why_not_strict=f"{export.dtype} weights",
                                     progress=progress)
        result.seconds["check"] = round(time.perf_counter() - t, 1)
        for line in result.report.lines():
            progress.note(f"parity {line}")
        facts.parity = result.report.lines()
    facts.sizes = result.sizes
    card = model_card(facts)
    for d in (folder.hf, folder.gguf_dir):
        if d.is_dir():
            replace_file(d, "README.md", card)  # and its entry in the folder's COMPLETE record
    result.seconds["total"] = round(time.perf_counter() - t0, 1)
    write_record(folder, src, export, result)
    progress.note(f"export: wrote {folder.root} in {result.seconds['total']:.0f} s")
    if result.report is not None and not result.report.ok:
        raise ParityFailed(result.report.failures())
    return result


class ExportWriteError(ShipError):
    """An export folder could not be written (a full disk); the previous one is still in place."""


def write_failed(folder: ExportFolder, e: OSError) -> list[str]:
    free = shutil.disk_usage(folder.root).free if folder.root.exists() else 0
    why = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return [f"export: could not write {e.filename or folder.root}: {why} ({free / 2**20:.0f} MB free); every folder "
            f"of {folder.root} is either the previous one or complete (each is replaced only once written). Fix: "
            "free space, or write the export to a disk with room (--out DIR), then export again"]


def write_record(folder: ExportFolder, src: RunSource, export: ExportConfig, result: ExportResult) -> None:
    write_json(folder.record, {
        "run": str(src.folder.root), "weights": str(src.weights), "note": src.note,
        "settings": export.model_dump(mode="json"), "merge": result.merge.summary(),
        "hf": str(result.hf) if result.hf else None,
        "gguf": {"path": str(result.gguf.path), "type": result.gguf.qtype, "architecture": result.gguf.arch,
                 "tensor_types": result.gguf.tensor_types, "tool": result.gguf.tool,
                 "seconds": result.gguf.seconds} if result.gguf else None,
        "sizes": result.sizes, "seconds": result.seconds,
        "parity": result.report.to_json() if result.report else None})


def check_run(run: Path, export: ExportConfig, progress) -> ParityReport:
    """`shipsft export RUN --check`: the parity check on an existing export (nothing is rewritten but export.json's
    parity entry). Raises ParityFailed on a mismatch."""
    src = open_run(run)
    folder = export_folder(src, export)
    renderer = training_renderer(src)
    template = baked_template(renderer.template.source, src.cfg.data.template_kwargs)
    record = read_json(folder.record) if folder.record.exists() else {}
    dtype = (record.get("settings") or {}).get("dtype", export.dtype)
    report = check_export(src, folder, renderer, template, export.check_prompts or 0, strict=dtype == "f32",
                          why_not_strict=f"{dtype} weights", progress=progress)
    for line in report.lines():
        progress.note(f"parity {line}")
    if record:
        record["parity"] = report.to_json()
        write_json(folder.record, record)
    if not report.ok:
        raise ParityFailed(report.failures())
    return report
