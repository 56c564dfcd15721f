"""The GPU bench's results file (gpu-results.json): its shape, its checks, and the table printed at the end.

Every section has a status: ok (ran and its checks passed), failed (ran and a check failed), error (crashed: one
line says where), skipped (with the reason: the time budget, or a package that was not carried). The file is strict
JSON (a number that could not be measured is null, never NaN) and is rewritten after every section, so a call cut
short still returns what was measured.
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

SCHEMA = 1
STATUSES = ("ok", "failed", "error", "skipped")
REQUIRED = ("schema", "dry_run", "started", "budget_s", "command", "setting", "sections")
CONTENDER_NUMBERS = ("seconds", "tok_s", "trained_tok_s", "model_tflops")


def new(dry_run: bool, budget_s: float, command: str, setting: dict) -> dict:
    return {"schema": SCHEMA, "dry_run": dry_run, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "budget_s": budget_s, "command": command, "setting": setting, "sections": {}}


def finite(obj):
    """The same structure with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write(results: dict, path: Path) -> None:
    """Write atomically (a kill mid-write leaves the previous version)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(finite(results), indent=1, allow_nan=False))
    os.replace(tmp, path)


def skipped(why: str) -> dict:
    return {"status": "skipped", "why": why}


def section(worker_result: dict, lift: tuple[str, ...]) -> dict:
    """A worker's result as a section (the keys in `lift` kept as they are)."""
    out = {"status": worker_result["status"], "seconds": worker_result.get("wall_s")}
    for key in ("error", "log_tail", *lift):
        if key in worker_result:
            out[key] = worker_result[key]
    return out


def rollup(statuses: list[str]) -> str:
    """One status for several: error or failed if any was, skipped if all were, else ok."""
    for s in ("error", "failed"):
        if s in statuses:
            return s
    return "skipped" if statuses and all(s == "skipped" for s in statuses) else "ok"


def unavailable(tool: str, method: str, liger: bool, has: dict, device: str) -> str | None:
    """Why a contender cannot run here (a package not carried, QLoRA without a GPU), or None."""
    if tool == "trl" and not has["trl"]:
        return "trl is not installed (not carried)"
    if liger and tool == "trl" and not has["liger_kernel"]:
        return "liger-kernel is not installed (not carried)"
    if method == "qlora" and not has["bitsandbytes"]:
        return "bitsandbytes is not installed (not carried)"
    if method == "qlora" and device != "cuda":
        return "QLoRA needs a CUDA GPU (bitsandbytes' NF4 kernels)"
    return None


def check(results: dict) -> list[str]:
    """Problems with a results file's shape (empty when it is well-formed)."""
    problems = [f"missing key {k!r}" for k in REQUIRED if k not in results]
    if results.get("schema") != SCHEMA:
        problems.append(f"schema {results.get('schema')!r}, expected {SCHEMA}")
    try:
        json.dumps(results, allow_nan=False)
    except ValueError:
        problems.append("not strict JSON: a NaN or an infinity (write null for what was not measured)")
    for name, sec in results.get("sections", {}).items():
        if sec.get("status") not in STATUSES:
            problems.append(f"section {name}: status {sec.get('status')!r} not in {STATUSES}")
        if sec.get("status") == "error" and not sec.get("error"):
            problems.append(f"section {name}: error without a one-line reason")
        if sec.get("status") == "skipped" and not sec.get("why"):
            problems.append(f"section {name}: skipped without a reason")
    prep = results.get("sections", {}).get("prepare", {})
    if prep.get("status") == "ok":
        for key in ("env", "matmul", "model"):
            if key not in prep:
                problems.append(f"section prepare: no {key!r}")
    for c in results.get("sections", {}).get("throughput", {}).get("contenders", []):
        if c.get("status") not in STATUSES:
            problems.append(f"contender {c.get('name')}: status {c.get('status')!r}")
        elif c["status"] == "ok":
            for key in CONTENDER_NUMBERS:
                v = c.get(key)
                if not isinstance(v, (int, float)) or not v > 0:
                    problems.append(f"contender {c['name']}: {key} = {v!r}, expected a positive number")
            if c.get("timed_steps", 0) < 1:
                problems.append(f"contender {c['name']}: no timed step")
        elif c["status"] in ("error", "skipped") and not (c.get("error") or c.get("why")):
            problems.append(f"contender {c.get('name')}: {c['status']} without a reason")
    return problems


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def _gb(b) -> str:
    return "-" if b is None else f"{b / 1e9:.1f}"


def summary(results: dict) -> str:
    """The markdown the call prints last (the device tool returns the end of the output)."""
    s = results["sections"]
    lines = []
    prep = s.get("prepare", {})
    env, mm = prep.get("env", {}), prep.get("matmul", {})
    if env:
        where = env.get("gpu") or env.get("cpu")
        lines.append(f"device: {where}; torch {env['packages'].get('torch')} (CUDA {env.get('cuda')}); "
                     f"{mm.get('dtype')} matmul {mm.get('n')}^3: {mm.get('flops', 0) / 1e9:,.0f} GFLOP/s"
                     + (" (dry run on the CPU)" if results["dry_run"] else ""))
    for name, sec in s.items():
        extra = sec.get("error") or sec.get("why") or ""
        lines.append(f"{name}: {sec['status']}" + (f" ({extra})" if extra else ""))
    tests = s.get("cuda_tests", {}).get("tests", [])
    for t in tests:
        lines.append(f"  {t['outcome']}: {t['id']}" + (f" ({t['message']})" if t["message"] else ""))
    num = s.get("numerics", {})
    for c in num.get("bf16_vs_fp32", []):
        lines.append(f"  bf16 vs fp32 ({c['method']}): loss rel {c['loss_rel']:.2e}, grad rel {c['grad_rel']:.2e}"
                     f" ({'ok' if c['ok'] else 'FAILED'})")
    leak = num.get("packing", {}).get("leak_control", {})
    for path, p in num.get("packing", {}).items():
        if path == "leak_control":
            continue
        if p.get("status") != "ok":
            lines.append(f"  packing {path}: {p.get('status')} ({p.get('why', '')})")
            continue
        for prec in ("fp32", "bf16"):
            r = p[prec]
            lines.append(f"  packing {path} {prec}: loss rel {r['loss_rel']:.1e}, hidden rel {r['hidden_rel']:.1e} "
                         f"(a leak: {leak[prec]['hidden_rel']:.1e}) {'ok' if r['ok'] else 'FAILED'}"
                         + ("" if r["leak_seen"] else ", a leak would not be seen"))
    rows = s.get("throughput", {}).get("contenders", [])
    if rows:
        lines += ["", "| contender | status | precision | tok/s | trained tok/s | model TFLOP/s | MFU (datasheet) "
                  "| MFU (matmul) | peak GB | loss first -> last |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in rows:
            if c["status"] != "ok":
                lines.append(f"| {c['name']} | {c['status']}: {c.get('error') or c.get('why')} | | | | | | | | |")
                continue
            losses = c.get("losses") or [None]
            lines.append(f"| {c['name']} | ok | {c['precision']} | {c['tok_s']:,.0f} | {c['trained_tok_s']:,.0f} | "
                         f"{c['model_tflops']:.1f} | {_pct(c.get('mfu_datasheet'))} | {_pct(c.get('mfu_matmul'))} | "
                         f"{_gb(c['memory']['measured_peak'])} | {losses[0]:.3f} -> {losses[-1]:.3f} |")
        for method, r in s["throughput"].get("ratios", {}).items():
            lines.append(f"{method}: {r['shipsft']} / {r['trl_best']} = {r['speedup']:.2f}x trained tokens/s")
    for m in s.get("plan", {}).get("memory", []):
        if "planned_peak" in m:
            lines.append(f"memory {m['name']}: measured {_gb(m['measured_peak'])} GB, planned {_gb(m['planned_peak'])}"
                         f" GB ({m['moment']}), plan error {m['error']:+.0%}")
        else:
            lines.append(f"memory {m['name']}: measured {_gb(m['measured_peak'])} GB, plan: {m.get('plan_error')}")
    return "\n".join(lines)
