"""`shipsft train CONFIG`: setup -> fit -> finish.

setup   load the tokenizer, prepare the data once (strict=False, so the audit sees every problem), audit it and
        refuse on errors, load and adapt the model, build the optimizer, the eval session and the run folder;
        or, resuming, restore all of it from a checkpoint (weights, optimizer, random states, data cursor, evals);
fit     the loop (`train/loop.py`);
finish  choose the checkpoint to ship (`eval.gates.choose`), copy it to final/ (`runs.checkpoint.copy_weights`),
        write promotion.json and report.html.

    code = run_train(load_config("examples/quickstart/config.yaml"), config_path=..., progress=Silent())
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import torch

from shipsft.audit.findings import AuditResult
from shipsft.audit.run import run_audit
from shipsft.config import RunConfig, load_config
from shipsft.data.cache import tokenizer_fingerprint
from shipsft.data.mixture import source_of_examples
from shipsft.data.pack import Batching, padding_id
from shipsft.data.pipeline import Prepared, prepare, token_fingerprint
from shipsft.data.store import token_lengths
from shipsft.errors import ConfigError, DataError, ShipError
from shipsft.eval import gates, session
from shipsft.eval.suites import before_after, before_after_text, pattern_rows, pattern_text
from shipsft.model.attention import rows_join
from shipsft.model.load import hf_config, load_base, load_for_training, quantization_config
from shipsft.model.save import load_checkpoint_weights
from shipsft.model.locate import hub_commit, load_tokenizer
from shipsft.model.precision import autocast_dtype, pick_device
from shipsft.report.audit import render_html as render_audit_html
from shipsft.report.run import render_report
from shipsft.runs.jsonio import write_text_atomic
from shipsft.runs.layout import RunFolder
from shipsft.runs.run import Run, resume_entry
from shipsft.runs.state import TrainingState
from shipsft.steps.resolve import Resolved, TokenLengths, resolve
from shipsft.steps.schedule import replan_from
from shipsft.train import dist, parallel
from shipsft.train.loop import FitResult, LoopState, Progress, Setup, Silent, fit, measure_baselines
from shipsft.train.preempt import Preempted, StopRequest
from shipsft.train.split import hold_out
from shipsft.train.kl import reference_for
from shipsft.train.loss import decoder_and_head
from shipsft.train.optim import build_optimizers


def write_audit(result: AuditResult, where: Run | Path) -> tuple[Path, Path]:
    """audit.json + audit.html into a run folder (rank 0 writes), or the folder of `shipsft audit --out`."""
    run = where if isinstance(where, Run) else Run(RunFolder(Path(where)))
    run.write_audit(result.to_dict(), render_audit_html(result.to_dict()))
    return run.folder.audit_json, run.folder.audit_html


def audit_gate(cfg: RunConfig, tokenizer, prep: Prepared, run: Run, batching: Batching, skip_audit: bool,
               progress: Progress) -> None:
    """Audit the split about to be trained (into the run folder); refuse on errors unless --skip-audit. Problems
    that make training itself wrong (overlong under data.overlong: error, examples with nothing to train) are
    refused even then. Every rank audits (the same data: the same decision, with no collective to wait in);
    rank 0 writes the files."""
    result = run_audit(cfg, tokenizer, prep, joined=batching.joined)
    write_audit(result, run)
    if result.errors and not skip_audit:
        raise result.as_error()
    if prep.problems:
        raise DataError([line for p in prep.problems for line in p.lines])
    if result.errors:
        progress.note(f"--skip-audit: training despite {len(result.errors)} audit error(s) (see "
                      f"{run.folder.audit_json}; recorded in manifest.json)")
    else:  # the audit's phase line, clean or not
        progress.note(f"audit: {len(result.warnings)} warning(s), {len(result.infos)} note(s); see "
                      f"{run.folder.audit_html}")


def setup(cfg: RunConfig, config_path: str | Path | None, skip_audit: bool, argv: list[str] | None,
          progress: Progress, resume: Path | None = None, force: bool = False) -> Setup:
    """Everything the loop needs. `resume`: a complete checkpoint folder to continue from (runs/resume.py finds
    it); its config must match in everything that changes the result unless `force`.
    Launched on several processes, every rank runs this with the same seed (identical initial weights on every
    rank, which FSDP2 shards and DDP would otherwise broadcast); rank 0 alone writes files."""
    torch.manual_seed(cfg.train.seed)
    strategy = parallel.resolve(cfg.train.distributed, cfg.method.name)
    main = dist.is_main()
    device = pick_device()
    if cfg.method.name == "qlora":
        quantization_config(cfg.method, device)  # no CUDA / no bitsandbytes: fail before any data work
    amp = autocast_dtype(cfg.train.precision, device)
    tokenizer = load_tokenizer(cfg.model)
    run, state = Run.open(cfg.output, config_path, resume, cfg.track, ranks=dist)
    folder = run.folder
    if cfg.data.eval_split is not None:  # held out now, written into the run folder (train/split.py)
        cfg, note = hold_out(cfg, folder)
        progress.note(note)
    train_prep = prepare(cfg.data, tokenizer, "train", strict=False,
                         rejects_path=folder.rejects("train") if main else None)
    resolved = resolve(cfg, train_prep)
    cfg = resolved.config  # every automatic choice, as numbers, into config.yaml
    eval_prep = (prepare(cfg.data, tokenizer, "eval", strict=True,
                         rejects_path=folder.rejects("eval") if main else None,
                         renderer=train_prep.renderer) if cfg.data.eval else None)
    fingerprints = {"train": train_prep.fingerprint, **({"eval": eval_prep.fingerprint} if eval_prep else {})}
    changes = resume_changes(cfg, state, run.manifest(), fingerprints, hub_commit(cfg.model)) if state else []
    if changes and not force:
        raise ConfigError([f"--resume {resume}: this config differs from the checkpoint's in what changes the "
                           "result:"] + [f"  {c}" for c in changes] +
                          ["Fix: resume with the run's own config (its config.yaml), or add --resume-force to "
                           "continue anyway (recorded in the manifest)."])
    per_step = (f"{cfg.train.batch_size} examples" if cfg.train.batch_size else
                f"up to {cfg.train.batch_tokens:,} tokens")
    progress.note(f"data: {len(train_prep.rendered)} train examples ({train_prep.format}), rows of <= "
                  f"{cfg.data.max_length} tokens, {train_prep.n_trained:,} trained tokens; {per_step} per optimizer "
                  "step")
    for note in train_prep.notes + resolved.reasons:
        progress.note(f"note: {note}")
    if main:
        folder.root.mkdir(parents=True, exist_ok=True)
    batching = batching_for(cfg, hf_config(cfg.model))
    audit_gate(cfg, tokenizer, train_prep, run, batching, skip_audit, progress)
    model, info = load_for_training(cfg.model, cfg.method, cfg.train.gradient_checkpointing, device, amp)
    if main:
        check_free_space(folder, model, cfg.method.name)
    if strategy != "single":
        progress.note(f"distributed: {strategy} on {dist.world_size()} processes "
                      f"({'nccl' if device.type == 'cuda' else 'gloo'}); each step's examples split over them")
    progress.note(f"model: {info.model_dir} on {device}; {info.summary()}; precision {amp or torch.float32}; "
                  f"lr {cfg.optim.lr:g}")
    if argv and os.environ.get("SHIPSFT_ARGV0"):  # re-executed under tcmalloc (cli/allocator.py)
        argv = [os.environ["SHIPSFT_ARGV0"], *argv[1:]]
    template = train_prep.renderer.template
    if state is None:
        run.start(cfg, argv, fingerprints, extra={
            "skip_audit": skip_audit, "model_dir": str(info.model_dir), "trainable_params": info.trainable,
            "total_params": info.total, "allocator": os.environ.get("SHIPSFT_ALLOCATOR", "system"),
            "precision": str(amp or torch.float32), "tokenizer_hash": tokenizer_fingerprint(tokenizer),
            "template_hash": hashlib.sha256(template.source.encode()).hexdigest()[:16] if template else None,
            "data_files": {f.path: f.sha256 for f in train_prep.files + (eval_prep.files if eval_prep else [])},
            "model_commit": hub_commit(cfg.model, info.model_dir),
            "data_commits": {split: {f.path: f.commit for f in prep.files if f.commit}
                             for split, prep in (("train", train_prep), ("eval", eval_prep))
                             if prep is not None and any(f.commit for f in prep.files)} or None,
            "token_fingerprint": {"train": token_fingerprint(train_prep.rendered)[:16]},
            "mixture": {c.name: c.to_json() for c in train_prep.mixture} or None},
            readme=runbook(folder, cfg, argv, info))
    else:
        run.resumed(resume_entry(state.loop["step"], resume, argv, force, changes), cfg.to_yaml(),
                    tuple(state.loop["offsets"]))
        load_checkpoint_weights(model, resume)
    if template is not None:  # checkpoints ship the template training rendered with
        tokenizer.chat_template = template.source
    model = parallel.shard_model(model, strategy, amp)  # FSDP2: in place, before the optimizer sees the parameters
    s = assemble(cfg, model, tokenizer, train_prep.rendered, eval_prep.rows if eval_prep else None, run, batching,
                 resolved, train_examples=train_prep.examples)
    s.strategy, s.train_model = strategy, parallel.wrap(model, strategy)
    if s.session is not None:
        s.session.progress = progress  # a bar for each eval's generations
    # a mixture: the loop logs the loss per source when there are two or more (train/sources.py)
    s.sources, s.source_of = [c.name for c in train_prep.mixture], source_of_examples(train_prep.mixture)
    for note in run.sink.tracker_notes():
        progress.note(note)
    if state is None:
        measure_baselines(s, progress)
    else:  # whatever wrote it (one process, DDP, FSDP2 shards), onto this launch's layout
        restore(s, state)
        progress.note(f"resumed from {resume} (step {s.state.step} of {s.plan.total_steps})")
    return s


def restore(s: Setup, state: TrainingState) -> None:
    """A checkpoint's optimizer, loop state, random states and eval references into a freshly assembled Setup."""
    parallel.load_optimizer(s.model, s.optimizers, state.optimizers)
    s.state, s.rng = LoopState.from_json(state.loop), state.rng
    # steps whose checkpoint is still on disk (a later save may have pruned some the state lists)
    s.state.checkpoints = [k for k in s.state.checkpoints if s.run.has_checkpoint(k)]
    if s.state.batch != [s.plan.rule.examples, s.plan.rule.tokens]:  # a forced resume with another batch
        s.plan = replan_from(s.plan, s.lengths, s.train, s.state.step, s.state.cursor)
    if s.session is not None:
        session.restore(s.session, s.state.baseline, state.eval_ref)


def batching_for(cfg: RunConfig, hf_conf) -> Batching:
    """How the loop batches this run (`cfg` resolved): rows joined when the model's attention allows it."""
    return Batching.of(cfg.data, cfg.train, rows_join(cfg.model, cfg.train, hf_conf))


def check_free_space(folder: RunFolder, model, method: str) -> None:
    """Refuse to start when the run folder's disk cannot hold one checkpoint: the weights saved (the trainable ones
    for LoRA, all of them for full fine-tuning), two Adam moments per trainable weight, and the tokenizer."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) if method == "full" else trainable
    need = weights + 2 * trainable + 5 * 2**20  # + tokenizer files (SmolLM2's: 3.5 MB) and the state files
    free = shutil.disk_usage(folder.root).free
    if free < need:
        raise ConfigError([f"output.dir: {folder.root.parent} has {free / 2**20:.0f} MB free, one checkpoint of this "
                           f"run needs about {need / 2**20:.0f} MB. Fix: free space, or set output.dir to a disk with "
                           "room."])


def runbook(folder: RunFolder, cfg: RunConfig, argv: list[str] | None, info) -> str:
    """The run folder's README.md: what was trained and the commands to re-run, resume and evaluate it."""
    command = " ".join(argv) if argv else "shipsft train CONFIG"
    return f"""# {folder.root.name}

{cfg.method.name} fine-tune of `{cfg.model.path}` ({info.trainable:,} trainable of {info.total:,} parameters), data
{", ".join(f"`{p}`" for p in cfg.data.train)}, {cfg.train.epochs:g} epoch(s), lr {cfg.optim.lr:g}, seed
{cfg.train.seed}. Everything chosen for this run is in `config.yaml` (resolved); `manifest.json` holds the config hash,
the data, token, tokenizer and template fingerprints, package versions and the command that started it:

    {command}

Re-run it from this folder (a new run folder; `shipsft reproduce` first says whether data, tokenizer, template and
packages still match):

    shipsft reproduce {folder.root}
    shipsft train {folder.config} --set output.name={folder.root.name}-rerun

Resume it after a crash or a preemption (from its latest intact checkpoint; one without its COMPLETE marker, or whose
files differ from the sizes and sha256 the marker records, is skipped and named):

    shipsft train {folder.config} --resume {folder.root}

Check every saved folder (checkpoints, adapter/ or model/, final/, exports) against what its save recorded:

    shipsft verify {folder.root}

Evaluate what it ships (`final/` when a checkpoint passed the gates, else its last weights) against its base model:

    shipsft eval {folder.root}

Files: `audit.json`/`audit.html` (pre-flight audit), `metrics.jsonl` (per step), `eval.jsonl` (task evals),
`promotion.json` (gate decision), `report.html`, `checkpoints/step-N/` (weights + training state), `final/`.
"""


def resume_changes(cfg: RunConfig, state: TrainingState, manifest: dict, fingerprints: dict,
                   model_commit: str | None = None) -> list[str]:
    """What differs from the checkpoint in anything that changes the trained weights: the model, data, method,
    optimizer and training settings (not output, logging or checkpoint cadence), the data's fingerprint, and the
    commit a hub id's model resolves to (`model_commit`)."""
    import yaml

    before = RunConfig.model_validate(yaml.safe_load(state.config_yaml)).model_dump(mode="json")
    now = cfg.model_dump(mode="json")
    changes = []
    for section in ("model", "data", "method", "optim", "train"):
        for key in sorted(set(before[section]) | set(now[section])):
            if section == "train" and key in NOT_RESULT_AFFECTING:
                continue
            if before[section].get(key) != now[section].get(key):
                changes.append(f"{section}.{key}: {before[section].get(key)!r} -> {now[section].get(key)!r}")
    was = manifest.get("data_fingerprint", {}).get("train")
    if was and was != fingerprints["train"]:
        changes.append(f"training data fingerprint: {was} -> {fingerprints['train']} (files, their contents or how "
                       "they render changed)")
    was = manifest.get("model_commit")
    if was and model_commit and was != model_commit:
        changes.append(f"model commit of {cfg.model.path}: {was} -> {model_commit} (its revision moved on the "
                       "Hub or in the cache: the weights differ from the checkpoint's base)")
    return changes


# how often things are logged or saved, and how the steps are spread over processes: the weights come out the same
NOT_RESULT_AFFECTING = {"log_every", "save_every", "keep_checkpoints", "eval_every", "max_nonfinite_steps",
                        "distributed", "dist_timeout_minutes"}


def assemble(cfg: RunConfig, model, tokenizer, examples: list, eval_rows: list | None, run: Run | RunFolder,
             batching: Batching | None = None, resolved: Resolved | None = None,
             train_examples: list | None = None) -> Setup:
    """The loop's Setup for a loaded model and rendered training examples: the run resolved (steps/resolve.py;
    `resolved` when the caller did it already, with data.max_length a number), optimizer, eval session (its suites
    marked seen / unseen against `train_examples`, the examples trained on; gates, selection and early stopping
    read through `session.gates`), the run (a bare RunFolder gets a one-process Run with a metrics sink); the
    decoder compiled in place when train.compile is on."""
    resolved = resolved or resolve(cfg, TokenLengths(token_lengths(examples), cfg.data.max_length))
    cfg = resolved.config
    if cfg.train.compile:  # in place, before the eval session's baseline; the per-document attention stays eager
        decoder_and_head(model)[0].compile()
    device = next(model.parameters()).device
    amp = autocast_dtype(cfg.train.precision, device)
    sess = (session.build_session(cfg.eval, cfg.data, tokenizer, model, amp, train_examples) if cfg.eval.suites
            else None)
    if isinstance(run, RunFolder):
        run = Run(run)
        run.open_sink(None)
    params = [p for p in model.parameters() if p.requires_grad]  # before any forward pass (Setup.params)
    return Setup(cfg.train, cfg.optim, sess.gates if sess is not None else cfg.eval, cfg.method.name, model,
                 tokenizer, build_optimizers(cfg.optim, model),
                 params, examples, batching or batching_for(cfg, model.config), eval_rows, sess, run, resolved.plan,
                 amp, device, padding_id(tokenizer), cfg.to_yaml(),
                 kl_ref=reference_for(cfg.method.name, model, lambda: load_base(cfg.model, cfg.method, device)[0])
                 if cfg.train.kl_coef else None)


def finish(s: Setup, result: FitResult, progress: Progress) -> tuple[int, list[str]]:
    """Promotion (when eval suites ran), promotion.json, report.html, and the export when output.export is set.
    Returns the exit code (0, or 3 when no checkpoint passed the gates) and the gate decision's lines."""
    code, lines = 0, []
    if s.session is not None:
        evals = [{"step": e.step, "metrics": e.metrics} for e in result.evals]
        promo = gates.choose(s.eval, evals, result.checkpoints, s.run.folder.final)
        chosen = next((e for e in result.evals if e.step == promo.step), None)
        if chosen is not None and result.baseline is not None:
            promo.before_after = [row for suite in s.session.suites
                                  for row in before_after(suite.name, result.baseline.scores[suite.name],
                                                          chosen.scores[suite.name], suite.clusters)]
            promo.message += "\n" + before_after_text(promo.before_after, promo.step)
            promo.patterns = [row for suite in s.session.suites
                              for row in pattern_rows(suite, chosen.scores[suite.name],
                                                      result.baseline.scores[suite.name])]
            if promo.patterns:
                promo.message += "\n" + pattern_text(promo.patterns)
        s.run.promote(promo.to_json(), result.checkpoints[promo.step] if promo.promoted else None)
        lines.append(promo.message)
        code = promo.exit_code
    write_report(s.run)
    export = load_config(s.run.folder.config).output.export  # output.export: hand off the promoted model (export/)
    if export is not None and code == 0:
        from shipsft.export.run import export_run

        try:  # a failed export (parity mismatch: exit 1) leaves the trained run complete, manifest included
            export_run(s.run.folder.root, export, progress)
        except ShipError as e:
            progress.note("\n".join(f"export failed: {line}" for line in e.lines))
            code = e.exit_code
    return code, lines


def write_report(run: Run | RunFolder) -> Path:
    run = run if isinstance(run, Run) else Run(run)
    r = run.records()
    html = render_report(run.folder.root.name, r["metrics"], r["evals"], r["promotion"], r["manifest"], r["failures"])
    return write_text_atomic(run.folder.report, html)


def run_train(cfg: RunConfig, config_path: str | Path | None = None, skip_audit: bool = False,
              argv: list[str] | None = None, progress: Progress | None = None, resume: Path | None = None,
              force: bool = False, stop: StopRequest | None = None) -> int:
    """Set up everything (or resume from a checkpoint), run `fit`, finish. Returns the process exit code.
    Launched by torchrun / accelerate launch, this process joins the others first; only rank 0 shows progress."""
    dist.start(cfg.train.dist_timeout_minutes)
    progress = (progress or Silent()) if dist.is_main() else Silent()
    started = time.perf_counter()
    s = setup(cfg, config_path, skip_audit, argv, progress, resume, force)
    status = "FAILED"  # what the trackers record when an error ends the run
    try:  # the sink (and its trackers) stays open through finish, so the reports reach the trackers
        result = fit(s, progress, stop)
        # promotion, reports and export read the run folder that rank 0 wrote: rank 0's work; every rank exits
        # with its code
        code, closing = finish(s, result, progress) if dist.is_main() else (None, [])
        code = dist.broadcast(code)
        s.run.finished(steps=result.steps, skipped_nonfinite_steps=result.n_skipped,
                       trained_tok_s=round(result.trained_tok_s, 1), wall_s=round(time.perf_counter() - started, 1),
                       world_size=dist.world_size(), distributed=s.strategy)
        status = "FINISHED"
    except (Preempted, KeyboardInterrupt):
        status = "KILLED"  # resumable: a resume sets the tracker run running again
        raise
    finally:
        for line in s.run.close(status):
            progress.note(line)
    saved = s.run.folder.trained(s.method)
    s.train_model = None  # DDP's reducer goes first, while the process group lives on: see dist.stop
    dist.stop()
    if result.eval_loss_before is not None:
        closing.append(f"eval loss: base {result.eval_loss_before:.4f} -> tuned {result.eval_loss_after:.4f}")
    closing.append(f"saved {saved} ({result.steps} steps, {result.trained_tok_s:.0f} trained tok/s, "
                   f"{result.n_skipped} skipped, {time.perf_counter() - started:.0f} s total)")
    progress.summary(s.run.folder.root, closing)
    return code
