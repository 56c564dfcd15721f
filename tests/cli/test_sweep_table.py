"""`shipsft sweep`'s table in an 80-column terminal: the forgetting sweep's shape (five trials, a task metric and a
forgetting probe whose three slices add nine metrics) printed readable, not squeezed into ellipses."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from shipsft.cli.console import console
from shipsft.cli.sweep_cmd import show_table, table_metrics

SLICES = {f"probe_{k}/{s}": 0.1 for k in ("kl", "loss", "loss_increase") for s in ("calibration", "general", "safety")}


def trial(name: str, level: str, exact: float, probe_kl: float, kl: float, loss: float, wall: float) -> dict:
    return {"name": name, "cell": name, "seed": None, "levels": {"mitigation": level}, "status": "done",
            "train_loss": loss * 7, "eval_loss": loss, "kl_to_base": kl, "probe_kl": probe_kl,
            "general_loss_increase": -probe_kl / 10, "task": {"orders/exact_match": exact, **SLICES},
            "trainable_params": 4884480, "steps": 30, "wall_s": wall, "trained_tokens": int(wall * 5)}


def forgetting_summary() -> dict:  # the measured sweep of docs/training.md, rounded
    trials = [trial("base", "none", 0.9833, 0.3136, 0.7265, 0.0071, 397.0),
              trial("mitigation=replay_20", "replay_20", 1.0, 0.5167, 0.7902, 0.0087, 418.5),
              trial("mitigation=kl_0.05", "kl_0.05", 0.9833, 0.2963, 0.7199, 0.0073, 477.6),
              trial("mitigation=kl_0.2", "kl_0.2", 0.9833, 0.2399, 0.6934, 0.0095, 485.7),
              trial("mitigation=lower_lr", "lower_lr", 0.9833, 0.1425, 0.6627, 0.0199, 378.6)]
    return {"sweep": "forgetting", "mode": "one_at_a_time", "outcome": "orders/exact_match", "levers": ["mitigation"],
            "seeds": [], "trials": trials,
            "decomposition": {"outcome": "orders/exact_match", "n": 5, "error": "none", "levers": [
                {"name": "mitigation", "share": 1.0, "inside_noise": None}], "interactions": {"share": 0.0},
                "seed": None, "residual": 0.0, "notes": []},
            "pick": {"metric": "orders/exact_match", "rule": "the highest", "cell": "mitigation=replay_20",
                     "value": 1.0, "trials": ["mitigation=replay_20"], "config": "s/trials/mitigation=replay_20.yaml"},
            "pareto": {"metric": "orders/exact_match", "kl": "probe_kl",
                       "front": ["mitigation=replay_20", "mitigation=lower_lr"]}}


def test_the_table_keeps_the_judged_metrics_and_names_the_rest():
    shown, more = table_metrics(forgetting_summary())
    assert shown == ["orders/exact_match"] and len(more) == 9


def test_the_forgetting_sweep_table_is_readable_in_80_columns():
    paths = SimpleNamespace(json=Path("s/sweep.json"), csv=Path("s/sweep.csv"), html=Path("s/sweep.html"))
    width = console.width
    console.width = 80
    try:
        with console.capture() as cap:
            show_table(SimpleNamespace(summary=forgetting_summary(), paths=paths))
    finally:
        console.width = width
    out = cap.get()
    assert "…" not in out  # every column fits: no cell cut to an ellipsis
    lines = out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.strip().startswith(("base", "mitigation="))}
    # what the sweep is judged by (exact match, then the Pareto front's probe KL) comes first
    assert rows["mitigation=lower_lr"] == ["mitigation=lower_lr", "lower_lr", "0.9833", "0.0199", "0.6627", "0.1425"]
    assert rows["mitigation=replay_20"][:4] == ["mitigation=replay_20", "*", "replay_20", "1"]
    table = lines[:next(i for i, line in enumerate(lines) if line.startswith("13 more"))]
    assert len(table) == 11 and all(len(line) <= 80 for line in table)
    assert ("13 more columns per trial in s/sweep.csv and s/sweep.html: probe loss +, train loss, tokens, wall s, "
            "probe_kl/calibration") in out
