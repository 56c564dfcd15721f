"""`data.eval_split`: hold out an eval split of data.train when training starts, for a config that does not come
from `shipsft init` (which splits once and writes the files next to the config).

    cfg, note = hold_out(cfg, run.folder)   # before the data is prepared; cfg.data.eval_split is then null

The split is data/split.py's, the one init makes (whole sentence patterns when the data was written from them, else
random; stratified by the answers' label), over data.train's records in file order. The two parts are written into the
run folder (split/train.jsonl, split/eval.jsonl, the records as they were read), data.train becomes the training part
and the held-out part the eval suite data.eval_split.suite (its metrics chosen from the answers as init chooses them,
unless given). The run's config.yaml holds the result, so a resume or `shipsft reproduce` trains the same split.
"""
from __future__ import annotations

from shipsft.config import RunConfig, SuiteConfig
from shipsft.data.formats import load_examples, read_records
from shipsft.data.inspect import SELECT_METRIC, TASK_METRICS, answer_shape, eval_size, reference_answer, write_records
from shipsft.data.split import plan_split
from shipsft.errors import ConfigError
from shipsft.runs.layout import RunFolder
from shipsft.train import dist


def hold_out(cfg: RunConfig, folder: RunFolder) -> tuple[RunConfig, str]:
    """(the config training runs: data.train the training part, the held-out part a suite; a one-line note)."""
    es, data = cfg.data.eval_split, cfg.data
    examples = load_examples(data.train, data.format, "error", None, data.allow_any_role_order).examples
    rows = [r.data for path in data.train for r in read_records(path)[0]]
    shape = answer_shape([reference_answer(ex) for ex in examples])
    n_eval = eval_size(len(examples)) if es.size == "auto" else es.size
    if not 0 < n_eval < len(examples):
        raise ConfigError([f"data.eval_split: {len(examples)} examples in data.train, too few to hold out "
                           f"{n_eval}. Fix: more data, a smaller data.eval_split.size, or no data.eval_split"])
    plan = plan_split(examples, shape, es.seed, es.by, n_eval)
    paths = {"train": folder.split("train").resolve(), "eval": folder.split("eval").resolve()}
    if dist.is_main():
        for part, idx in (("train", plan.train_idx), ("eval", plan.eval_idx)):
            write_records(rows, idx, paths[part])
    dist.barrier()  # every rank reads the files rank 0 wrote
    metrics = list(es.metrics or TASK_METRICS[shape.kind])
    suite = SuiteConfig(name=es.suite, data=str(paths["eval"]), metrics=metrics,
                        format=data.format if data.format != "text" else "auto")
    ecfg = cfg.eval.model_copy(update={"suites": [*cfg.eval.suites, suite]})
    if ecfg.select_metric is None and not cfg.eval.suites and SELECT_METRIC[shape.kind] in metrics:
        ecfg = ecfg.model_copy(update={"select_metric": f"{es.suite}/{SELECT_METRIC[shape.kind]}"})
    new = cfg.model_copy(update={"data": data.model_copy(update={"train": [str(paths["train"])], "eval_split": None}),
                                 "eval": ecfg})
    note = (f"data.eval_split: {plan.why}; train {len(plan.train_idx):,} -> {paths['train']}, eval "
            f"{len(plan.eval_idx):,} -> suite {es.suite} ({', '.join(metrics)})")
    return RunConfig.model_validate(new.model_dump(mode="json")), note
