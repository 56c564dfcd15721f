"""The run report: one self-contained `report.html` (inline CSS + SVG charts drawn here; no script, no network).

Reads what the run folder already holds and shows what a person needs to decide whether the model ships:

    metrics.jsonl    per optimizer step: loss, lr, grad_norm, trained_tokens, tokens/s   -> training curves
    eval.jsonl       baseline / smoke / full evals: task metrics, eval loss, KL, probe    -> eval and drift curves,
                                                                                          sample generations
    promotion.json   the gate decision, the before/after table with 95% CIs               -> verdict + tables
    manifest.json    model, config hash, command (when present)

    from shipsft.report import write_report
    write_report("runs/quickstart-20261122-061500")      # -> runs/.../report.html
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _fmt(v, digits: int = 4) -> str:
    v = _num(v)
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:.3e}"


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


# ------------------------------------------------------------------------------------------------------------------
# SVG line charts


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi] (1-2-5 steps)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str = "step",
               width: int = 520, height: int = 240, dashed: set[str] = frozenset()) -> str:
    """An inline <svg> with one polyline (and dots) per series, axes with round ticks, and a legend."""
    series = {k: [(x, y) for x, y in pts if _num(x) is not None and _num(y) is not None] for k, pts in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    xt, yt = _ticks(min(xs), max(xs)), _ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    left, right, top, bottom = 58, 12, 28, 40
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / ((x1 - x0) or 1) * pw

    def py(y):
        return top + ph - (y - y0) / ((y1 - y0) or 1) * ph

    full_h = height + 18 * ((len(series) + 2) // 3)  # room for the legend, three entries a row
    out = [f'<svg class="chart" role="img" aria-label="{_esc(title)}" width="{width}" height="{full_h}" '
           f'viewBox="0 0 {width} {full_h}">', f'<text x="{left}" y="16" class="title">{_esc(title)}</text>']
    for t in xt:
        out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{top + ph}" class="grid"/>'
                   f'<text x="{px(t):.1f}" y="{top + ph + 16}" class="tick" '
                   f'text-anchor="middle">{_fmt(t, 3)}</text>')
    for t in yt:
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{_fmt(t, 3)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 32}" class="tick" '
               f'text-anchor="middle">{_esc(x_label)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = sorted(pts)
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline class="series" data-series="{_esc(name)}" points="{coords}" fill="none" '
                   f'stroke="{color}" stroke-width="1.8"{dash}/>')
        if len(pts) <= 60:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{color}">'
                    f'<title>{_esc(name)} @ {_fmt(x)}: {_fmt(y)}</title></circle>' for x, y in pts]
        lx, ly = left + (i % 3) * (pw / 3), height + 4 + 18 * (i // 3)
        out.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="3" fill="{color}"/>'
                   f'<text x="{lx + 16:.1f}" y="{ly + 5}" class="legend">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------------------------------------
# Sections


def _table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _training_section(metrics: list[dict]) -> str:
    steps = [m for m in metrics if "loss" in m and "step" in m]
    if not steps:
        return "<p class='muted'>No training steps logged (metrics.jsonl is missing or empty).</p>"
    evl = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    charts = [
        line_chart("loss", {"train loss": [(m["step"], m["loss"]) for m in steps],
                            **({"eval loss": evl} if evl else {})}),
        line_chart("learning rate", {"lr": [(m["step"], m.get("lr")) for m in steps]}),
        line_chart("gradient norm (before clipping)", {"grad_norm": [(m["step"], m.get("grad_norm")) for m in steps]}),
    ]
    tps_key = next((k for k in ("tokens_per_s", "trained_tok_s") if any(k in m for m in steps)), None)
    if tps_key:
        tps = [(m["step"], m.get(tps_key)) for m in steps]
        charts.append(line_chart("throughput (trained tokens/s)", {tps_key: tps}))
    last = steps[-1]
    facts = (f"{len(steps)} logged steps; final loss {_fmt(last['loss'])}"
             + (f"; {_fmt(last.get(tps_key), 4)} tokens/s" if tps_key else "")
             + (f"; {sum(1 for m in steps if m.get('skipped'))} skipped (non-finite) steps" if any(
                 m.get("skipped") for m in steps) else ""))
    return f"<p>{_esc(facts)}</p><div class='charts'>{''.join(charts)}</div>"


def _eval_section(evals: list[dict]) -> str:
    full = [e for e in evals if e.get("kind") in ("baseline", "full")]
    smoke = [e for e in evals if e.get("kind") == "smoke"]
    if not full and not smoke:
        return "<p class='muted'>No task evals (no eval suites configured).</p>"
    names = sorted({k for e in full + smoke for k in e["metrics"]
                    if "/" in k and not k.endswith("/eval_loss") and k.count("/") == 1})
    task = {n: [(e["step"], e["metrics"].get(n)) for e in full] for n in names}
    task.update({f"smoke {n}": [(e["step"], e["metrics"].get(n)) for e in smoke] for n in names
                 if any(n in e["metrics"] for e in smoke)})
    drift_keys = ("kl_to_base", "probe_kl", "general_loss_increase")
    drift = {k: [(e["step"], e["metrics"].get(k)) for e in full] for k in drift_keys}
    loss_keys = sorted({k for e in full for k in e["metrics"] if k.endswith("/eval_loss") or k == "probe_loss"})
    if sum(k.endswith("/eval_loss") for k in loss_keys) > 1:  # with one suite the run-wide eval_loss is the same line
        loss_keys.append("eval_loss")
    losses = {k: [(e["step"], e["metrics"].get(k)) for e in full] for k in loss_keys}
    method = next((e.get("kl_method") for e in full if e.get("kl_method")), None)
    charts = [line_chart("task metrics (step 0 = base model)", task, dashed={k for k in task if k.startswith("smoke")}),
              line_chart("drift from the base model", drift), line_chart("eval loss on reference answers", losses)]
    note = f"<p class='muted'>KL(tuned ‖ base) per token, {_esc(method)}.</p>" if method else ""
    return f"<div class='charts'>{''.join(c for c in charts if c)}</div>{note}"


def _decision_section(promo: dict | None) -> str:
    if not promo:
        return "<p class='muted'>No promotion decision recorded (promotion.json missing).</p>"
    ok = promo.get("promoted")
    cls = "verdict pass" if ok else "verdict fail"
    head = "PROMOTED" if ok else "NOT PROMOTED"
    first = promo.get("message", "").split("\n")[0]
    detail = _esc(first.split(":", 1)[1].strip() if first.startswith("NOT PROMOTED:") else
                  first.removeprefix("PROMOTED").strip())
    parts = [f"<div class='{cls}' id='verdict'><b>{head}</b> — {detail}</div>"]
    gates = promo.get("gates") or []
    if gates:
        parts.append(_table(["gate", "value", "threshold", "result"], [
            [_esc(g["metric"]), _fmt(g["value"]), f"{_esc(g['op'])} {_fmt(g['threshold'])}",
             "<span class='pass'>pass</span>" if g["passed"] else
             f"<span class='fail'>fail by {_fmt(g['miss'])}</span>"]
            for g in gates], "gates"))
    cands = promo.get("candidates") or []
    if cands:
        parts.append(f"<h3>Checkpoints by {_esc(promo.get('select_metric'))}</h3>")
        parts.append(_table(["step", _esc(promo.get("select_metric") or "metric"), "all gates", "failed gates"], [
            [_esc(c["step"]), _fmt(c["value"]), "yes" if c["passed"] else "no", _esc("; ".join(c.get("failed", [])))]
            for c in cands], "candidates"))
    rho = promo.get("spearman_eval_loss")
    if rho is not None:
        parts.append(f"<p>Spearman correlation between eval loss and {_esc(promo.get('select_metric'))} over "
                     f"checkpoints: <b>{rho:+.2f}</b> (negative = lower loss came with a better task metric).</p>")
    return "".join(parts)


def _before_after_section(promo: dict | None) -> str:
    rows = (promo or {}).get("before_after") or []
    if not rows:
        return "<p class='muted'>No before/after comparison (needs a baseline eval and a chosen checkpoint).</p>"
    step = promo.get("step")
    body = [[_esc(r["suite"]), _esc(r["metric"]), _esc(r["n"]), _fmt(r["base"]), _fmt(r["tuned"]),
             f"<span class='{'pass' if r['delta'] > 0 else 'fail' if r['delta'] < 0 else ''}'>{r['delta']:+.4f}</span>",
             f"[{r['lo']:+.4f}, {r['hi']:+.4f}]"] for r in rows]
    return _table(["suite", "metric", "n", "base", f"tuned (step {step})", "delta", "95% CI (paired bootstrap)"],
                  body, "before-after")


def _samples_section(evals: list[dict], promo: dict | None) -> str:
    base = next((e for e in evals if e.get("kind") == "baseline"), None)
    fulls = [e for e in evals if e.get("kind") == "full"]
    step = (promo or {}).get("step")
    tuned = next((e for e in fulls if e["step"] == step), fulls[-1] if fulls else None)
    if tuned is None or not tuned.get("samples"):
        return "<p class='muted'>No sample generations recorded.</p>"
    base_out = {(s.get("suite"), s["source"]): s["output"] for s in (base or {}).get("samples", [])}
    rows = [[_esc(s.get("suite", "")), f"<pre>{_esc(s['prompt'])}</pre>", f"<pre>{_esc(s['reference'])}</pre>",
             f"<pre>{_esc(base_out.get((s.get('suite'), s['source']), '–'))}</pre>",
             f"<pre>{_esc(s['output'])}</pre>"]
            for s in tuned["samples"]]
    return _table(["suite", "prompt", "reference", "base output", f"tuned output (step {tuned['step']})"], rows,
                  "samples")


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1120px;color:#111827;
padding:0 16px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;
padding-bottom:4px}h3{font-size:14px;margin:14px 0 6px}.muted{color:#6b7280}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{border:1px solid #e5e7eb;border-radius:6px;background:#fff}.chart .title{font-weight:600;font-size:13px}
.chart .tick,.chart .legend{font-size:11px;fill:#374151}.chart .grid{stroke:#f3f4f6}.chart .frame{fill:none;
stroke:#d1d5db}table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}th,td{border:1px solid #e5e7eb;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f9fafb}pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;
max-width:300px;font-size:12px}.verdict{padding:10px 14px;border-radius:6px;margin:8px 0;font-size:15px}
.verdict.pass{background:#dcfce7;border:1px solid #16a34a}.verdict.fail{background:#fee2e2;border:1px solid #dc2626}
span.pass{color:#15803d}span.fail{color:#b91c1c}code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
"""


def render_report(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    metrics = _read_jsonl(run_dir / "metrics.jsonl")
    evals = _read_jsonl(run_dir / "eval.jsonl")
    promo = json.loads((run_dir / "promotion.json").read_text()) if (run_dir / "promotion.json").exists() else None
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
    facts = [f"<code>{_esc(k)}</code> {_esc(manifest[k])}" for k in ("model_dir", "config_hash", "seed")
             if k in manifest]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>shipsft report: {_esc(run_dir.name)}</title><style>{CSS}</style></head><body>"
        f"<h1>shipsft run report: {_esc(run_dir.name)}</h1><p class='muted'>{' · '.join(facts)}</p>"
        f"<h2 id='decision'>Gate decision</h2>{_decision_section(promo)}"
        f"<h2 id='before-after'>Before / after</h2>{_before_after_section(promo)}"
        f"<h2 id='training'>Training</h2>{_training_section(metrics)}"
        f"<h2 id='eval'>Eval and drift</h2>{_eval_section(evals)}"
        f"<h2 id='samples'>Sample generations</h2>{_samples_section(evals, promo)}"
        "</body></html>"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write `<run_dir>/report.html` from the run folder's files; returns its path."""
    path = Path(run_dir) / "report.html"
    path.write_text(render_report(run_dir), encoding="utf-8")
    return path
