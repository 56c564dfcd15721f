"""Eval gates, pure decisions over metric dicts: metric names, early stopping, best-checkpoint choice, promotion.

A run ships only what passes the eval the user cares about, not what the loss says. Every full eval during
training gives a flat dict of metrics; this module decides from those dicts alone (the training run copies the
chosen checkpoint to `final/` through `shipsft.runs`):

* **names**: `exact_match` means the first suite's metric (`<first suite>/exact_match`); `suite/metric` names any
  suite; `eval_loss`, `kl_to_base`, `probe_loss`, `probe_kl`, `general_loss_increase` are run-wide. A suite that
  holds examples of sentence patterns seen in training and of unseen ones is read on its unseen slice
  (`suite.unseen/metric`, eval.pattern_slice: `for_slices`).
* **early stopping**: stop after `patience` full evals without an improvement of more than `min_delta`.
* **selection**: the best checkpoint by `eval.select_metric` (a task metric, higher is better; never a loss: a
  lower eval loss tracks quality within one recipe but need not across recipes or models), ties to the earlier step.
* **promotion**: the best checkpoint that passes every gate is promoted; if none does, the run is "not promoted"
  (exit code 3) and the message names each failed gate and by how much.
"""
from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shipsft.config import EvalConfig, GateConfig
from shipsft.eval.items import PROBE_SLICES
from shipsft.eval.metrics import spearman

# per slice of the forgetting probe (eval/session.py): probe_loss/safety, probe_kl/calibration, ...
PROBE_SLICE_METRICS = tuple(f"{m}/{s}" for m in ("probe_loss", "probe_kl", "probe_loss_increase") for s in PROBE_SLICES)
GLOBAL = ("eval_loss", "kl_to_base", "probe_loss", "probe_kl", "general_loss_increase", *PROBE_SLICE_METRICS)
LOSSES = ("eval_loss", "probe_loss", "kl_to_base", "probe_kl", "general_loss_increase")
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def full_name(name: str, first_suite: str) -> str:
    """`exact_match` -> `<first suite>/exact_match`; suite-qualified and run-wide names stay as they are."""
    return name if name in GLOBAL or "/" in name else f"{first_suite}/{name}"


def check_names(ecfg: EvalConfig, suite_metrics: dict[str, list[str]]) -> list[str]:
    """Every metric named by gates / select / early stopping must exist; returns the problems (empty = fine)."""
    if not ecfg.suites:
        return []
    first = ecfg.suites[0].name
    known = {f"{s}/{m}" for s, ms in suite_metrics.items() for m in [*ms, "eval_loss"]}
    unavailable = set()
    if not ecfg.kl_to_base:
        unavailable |= {"kl_to_base", "probe_kl", *(m for m in PROBE_SLICE_METRICS if m.startswith("probe_kl/"))}
    if not ecfg.forgetting_probe:
        unavailable |= {"probe_loss", "probe_kl", "general_loss_increase", *PROBE_SLICE_METRICS}
    problems = []
    uses = [(f"eval.gates[{i}].metric", g.metric) for i, g in enumerate(ecfg.gates)]
    if ecfg.select_metric:
        uses.append(("eval.select_metric", ecfg.select_metric))
    if ecfg.early_stopping:
        uses.append(("eval.early_stopping.metric", ecfg.early_stopping.metric))
    for where, name in uses:
        full = full_name(name, first)
        if name in unavailable:
            switch = "kl_to_base" if "kl" in name else "forgetting_probe"
            problems.append(f"{where}: {name!r} is not measured because eval.{switch} is off. "
                            "Fix: turn it on or drop this gate.")
        elif full not in GLOBAL and full not in known and not any(full.startswith(k + "/") for k in known):
            others = sorted(k for k in known if k.endswith("/" + name.split("/")[-1]))
            hint = f". Did you mean {others[0]!r}?" if others else ""
            problems.append(f"{where}: {name!r} (= {full!r}) is not computed by any suite. Known: "
                            f"{', '.join(sorted(known) + list(GLOBAL))}{hint}")
    if ecfg.select_metric and ecfg.select_metric.split("/")[-1] in LOSSES:
        problems.append(f"eval.select_metric: {ecfg.select_metric!r} is a loss; the best checkpoint is chosen by a "
                        "task metric (e.g. exact_match). Gate losses with eval.gates instead.")
    return problems


def for_slices(ecfg: EvalConfig, sliced: list[str]) -> EvalConfig:
    """`ecfg` with select_metric, every gate and early stopping reading the unseen-pattern slice of each suite in
    `sliced` (suites holding both seen-pattern and unseen-pattern examples: eval/suites.py) when
    eval.pattern_slice is unseen: `heldout/exact_match` -> `heldout.unseen/exact_match`. A name that already names a
    slice, a loss and a run-wide metric are read as they are."""
    if ecfg.pattern_slice != "unseen" or not sliced or not ecfg.suites:
        return ecfg
    first = ecfg.suites[0].name

    def unseen(name: str) -> str:
        full = full_name(name, first)
        suite, _, rest = full.partition("/")
        return f"{suite}.unseen/{rest}" if suite in sliced and rest and rest != "eval_loss" else full

    es = ecfg.early_stopping
    return ecfg.model_copy(update={
        "select_metric": unseen(select_name(ecfg)),
        "gates": [g.model_copy(update={"metric": unseen(g.metric)}) for g in ecfg.gates],
        "early_stopping": es.model_copy(update={"metric": unseen(es.metric)}) if es is not None else None})


def select_name(ecfg: EvalConfig) -> str | None:
    if not ecfg.suites:
        return None
    first = ecfg.suites[0]
    return full_name(ecfg.select_metric or first.metrics[0], first.name)


# ------------------------------------------------------------------------------------------------------------------
# Early stopping


@dataclass
class EarlyStop:
    metric: str  # full name
    mode: str  # "max" | "min"
    patience: int
    min_delta: float
    best: float | None = None
    bad: int = 0  # full evals since the last improvement

    def update(self, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if value is None:
            return  # not measured in this eval: neither an improvement nor a miss
        better = self.best is None or (value > self.best + self.min_delta if self.mode == "max"
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.bad = value, 0
        else:
            self.bad += 1

    @property
    def should_stop(self) -> bool:
        return self.bad >= self.patience


def early_stop_for(ecfg: EvalConfig, best: float | None = None, bad: int = 0) -> EarlyStop | None:
    """The early-stopping rule of eval.early_stopping (None when unset), continuing from `best` / `bad` (a resumed
    run's state)."""
    es = ecfg.early_stopping
    if es is None:
        return None
    return EarlyStop(full_name(es.metric, ecfg.suites[0].name), es.mode, es.patience, es.min_delta, best, bad)


# ------------------------------------------------------------------------------------------------------------------
# Gates and promotion


@dataclass
class GateResult:
    metric: str
    op: str
    threshold: float
    value: float
    passed: bool
    miss: float  # how far the value is on the wrong side of the threshold (0 when passed)

    def text(self) -> str:
        if self.value != self.value:
            return f"{self.metric} {self.op} {self.threshold:g}: not measured (FAILED)"
        verdict = "ok" if self.passed else f"FAILED by {self.miss:.4g}"
        return f"{self.metric} {self.op} {self.threshold:g}: {self.value:.4g} ({verdict})"


def check_gate(gate: GateConfig, metrics: dict[str, float], first_suite: str) -> GateResult:
    name = full_name(gate.metric, first_suite)
    value = metrics.get(name)
    if value is None or value != value:  # not measured at this checkpoint (e.g. a JSON field no answer had): fails
        return GateResult(name, gate.op, gate.value, float("nan"), False, float("inf"))
    passed = bool(OPS[gate.op](value, gate.value))
    return GateResult(name, gate.op, gate.value, value, passed, 0.0 if passed else abs(value - gate.value))


@dataclass
class Promotion:
    promoted: bool
    exit_code: int  # 0 promoted, 3 not promoted
    message: str
    step: int | None = None  # the promoted (or, if none passed, the best-by-metric) checkpoint
    checkpoint: str | None = None
    final_dir: str | None = None
    select_metric: str | None = None
    value: float | None = None
    gates: list[GateResult] = field(default_factory=list)  # at `step`
    spearman_eval_loss: float | None = None  # over checkpoints: eval loss vs the select metric
    candidates: list[dict] = field(default_factory=list)  # per checkpoint: step, value, passed, failed gates
    before_after: list[dict] = field(default_factory=list)  # suite, metric, base, tuned, delta, lo, hi
    # per slice of a suite holding seen-pattern and unseen-pattern examples (eval/suites.py: pattern_rows)
    patterns: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def choose(ecfg: EvalConfig, evals: list[dict], checkpoints: dict[int, Path], final: Path) -> Promotion:
    """Which checkpoint ships to `final`, and why. `evals`: full-eval records {"step": int, "metrics": {...}}, in
    order. Decides only; the caller copies `checkpoints[promotion.step]` to `final` when `promotion.promoted`."""
    if not checkpoints:
        return Promotion(False, 3, "not promoted: the run saved no checkpoint to promote")
    first = ecfg.suites[0].name if ecfg.suites else ""
    sel = select_name(ecfg)
    # every full eval is a candidate (its numbers feed the table and the correlation); checkpoint pruning keeps
    # the folders of the ones that can win (`keep_steps`), so the winner always has its checkpoint
    by_step = {e["step"]: e["metrics"] for e in evals}
    if sel is None or not by_step:
        # no eval suites: nothing to gate on; the last checkpoint ships and the report says it was not eval-gated
        step = max(checkpoints)
        return Promotion(True, 0, f"promoted step {step} to {final} (no eval suites: not eval-gated)",
                         step, str(checkpoints[step]), str(final))
    candidates = []
    for step, metrics in by_step.items():
        results = [check_gate(g, metrics, first) for g in ecfg.gates]
        candidates.append({"step": step, "value": metrics[sel], "passed": all(r.passed for r in results),
                           "gates": results})
    candidates.sort(key=lambda c: (-c["value"], c["step"]))
    losses = [by_step[c["step"]].get(f"{first}/eval_loss") for c in candidates]
    rho = spearman(losses, [c["value"] for c in candidates]) if None not in losses else None
    table = [{"step": c["step"], "value": c["value"], "passed": c["passed"],
              "failed": [r.text() for r in c["gates"] if not r.passed]} for c in candidates]
    winner = next((c for c in candidates if c["passed"] and c["step"] in checkpoints), None)
    corr = (f"\n  Spearman(eval loss, {sel}) over {len(candidates)} checkpoints: {rho:+.2f}" if rho is not None else "")
    if winner is not None:
        msg = (f"PROMOTED step {winner['step']} ({sel} = {winner['value']:.4g}) to {final}"
               + ("; gates: " + "; ".join(r.text() for r in winner["gates"]) if winner["gates"] else "") + corr)
        return Promotion(True, 0, msg, winner["step"], str(checkpoints[winner["step"]]), str(final), sel,
                         winner["value"], winner["gates"], rho, table)
    best = candidates[0]
    lines = [f"NOT PROMOTED: none of {len(candidates)} checkpoint(s) passed every gate."]
    for g in ecfg.gates:  # for each gate, the closest any checkpoint came
        name = full_name(g.metric, first)
        closest = min((r for c in candidates for r in c["gates"] if r.metric == name), key=lambda r: r.miss)
        if closest.value != closest.value:
            lines.append(f"  gate {name} {g.op} {g.value:g}: not measured at any checkpoint")
        elif not closest.passed:
            lines.append(f"  gate {name} {g.op} {g.value:g}: best {closest.value:.4g}, short by {closest.miss:.4g}")
    lines.append(f"  best by {sel}: step {best['step']} ({best['value']:.4g}); failed there: "
                 + "; ".join(r.text() for r in best["gates"] if not r.passed) + corr)
    path = checkpoints.get(best["step"])
    return Promotion(False, 3, "\n".join(lines), best["step"], str(path) if path else None, None, sel,
                     best["value"], best["gates"], rho, table)


def keep_steps(ecfg: EvalConfig, evals: list[dict]) -> set[int]:
    """Checkpoints that pruning must keep for promotion: the best by the select metric, and the best of those that
    pass every gate (ties to the earlier step, as `choose` breaks them)."""
    sel = select_name(ecfg)
    if sel is None:
        return set()
    first = ecfg.suites[0].name
    scored = []
    for e in evals:
        value = e["metrics"].get(sel)
        if value is None or value != value:
            continue
        passed = all(check_gate(g, e["metrics"], first).passed for g in ecfg.gates)
        scored.append((-value, e["step"], passed))
    scored.sort()
    keep = {scored[0][1]} if scored else set()
    keep |= {next((step for _, step, ok in scored if ok), None)} - {None}
    return keep
