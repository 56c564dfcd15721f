"""The run report: one self-contained `report.html` (inline CSS + SVG charts drawn here; no script, no network).

Reads what the run folder already holds and shows what a person needs to decide whether the model ships:

    metrics.jsonl    per optimizer step: loss, lr, grad_norm, trained_tokens, tokens/s   -> training curves
    eval.jsonl       baseline / smoke / full evals: task metrics, eval loss, KL, probe    -> eval and drift curves,
                                                                                          sample generations
    promotion.json   the gate decision, the before/after table with 95% CIs               -> verdict + tables
    manifest.json    model, config hash, command (when present)
    predictions.jsonl  every eval prediction (runs/predictions.py: failure_summary)       -> failures, worst first,
                                                                                          wrong JSON fields
It takes those records as data (the run folder is read and written by `shipsft.runs`):

    html = render_report(name, metrics, evals, promotion, manifest, failures)
"""
from __future__ import annotations

from shipsft.report.svg import esc, fmt, html_table as _table, line_chart


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
    facts = (f"{len(steps)} logged steps; final loss {fmt(last['loss'])}"
             + (f"; {fmt(last.get(tps_key), 4)} tokens/s" if tps_key else "")
             + (f"; {sum(1 for m in steps if m.get('skipped'))} skipped (non-finite) steps" if any(
                 m.get("skipped") for m in steps) else ""))
    return f"<p>{esc(facts)}</p><div class='charts'>{''.join(charts)}</div>"


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
    note = f"<p class='muted'>KL(tuned ‖ base) per token, {esc(method)}.</p>" if method else ""
    return f"<div class='charts'>{''.join(c for c in charts if c)}</div>{note}"


def _decision_section(promo: dict | None) -> str:
    if not promo:
        return "<p class='muted'>No promotion decision recorded (promotion.json missing).</p>"
    ok = promo.get("promoted")
    cls = "verdict pass" if ok else "verdict fail"
    head = "PROMOTED" if ok else "NOT PROMOTED"
    first = promo.get("message", "").split("\n")[0]
    detail = esc(first.split(":", 1)[1].strip() if first.startswith("NOT PROMOTED:") else
                  first.removeprefix("PROMOTED").strip())
    parts = [f"<div class='{cls}' id='verdict'><b>{head}</b> — {detail}</div>"]
    gates = promo.get("gates") or []
    if gates:
        parts.append(_table(["gate", "value", "threshold", "result"], [
            [esc(g["metric"]), fmt(g["value"]), f"{esc(g['op'])} {fmt(g['threshold'])}",
             "<span class='pass'>pass</span>" if g["passed"] else
             f"<span class='fail'>fail by {fmt(g['miss'])}</span>"]
            for g in gates], "gates"))
    cands = promo.get("candidates") or []
    if cands:
        parts.append(f"<h3>Checkpoints by {esc(promo.get('select_metric'))}</h3>")
        parts.append(_table(["step", esc(promo.get("select_metric") or "metric"), "all gates", "failed gates"], [
            [esc(c["step"]), fmt(c["value"]), "yes" if c["passed"] else "no", esc("; ".join(c.get("failed", [])))]
            for c in cands], "candidates"))
    rho = promo.get("spearman_eval_loss")
    if rho is not None:
        parts.append(f"<p>Spearman correlation between eval loss and {esc(promo.get('select_metric'))} over "
                     f"checkpoints: <b>{rho:+.2f}</b> (negative = lower loss came with a better task metric).</p>")
    return "".join(parts)


def _before_after_section(promo: dict | None) -> str:
    rows = (promo or {}).get("before_after") or []
    if not rows:
        return "<p class='muted'>No before/after comparison (needs a baseline eval and a chosen checkpoint).</p>"
    step = promo.get("step")
    body = [[esc(r["suite"]), esc(r["metric"]), esc(r["n"]), fmt(r["base"]), fmt(r["tuned"]),
             f"<span class='{'pass' if r['delta'] > 0 else 'fail' if r['delta'] < 0 else ''}'>{r['delta']:+.4f}</span>",
             f"[{r['lo']:+.4f}, {r['hi']:+.4f}]"] for r in rows]
    return _table(["suite", "metric", "n", "base", f"tuned (step {step})", "delta", "95% CI (paired bootstrap)"],
                  body, "before-after")


def _patterns_section(promo: dict | None) -> str:
    """Seen vs unseen sentence patterns (eval/suites.py: pattern_rows): empty when no suite holds both kinds."""
    rows = (promo or {}).get("patterns") or []
    if not rows:
        return ""
    body = [[esc(f"{r['suite']}.{r['slice']}"), esc(r["metric"]), esc(r["n"]), fmt(r.get("base")),
             f"{fmt(r['tuned'])} [{fmt(r['tuned_lo'])}, {fmt(r['tuned_hi'])}]",
             (f"{r['delta']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]" if "delta" in r else "–")] for r in rows]
    return ("<h2 id='patterns'>Seen vs unseen sentence patterns</h2><p>Eval examples whose prompt pattern (the prompt "
            "with its names, numbers and values taken out) is also in the training data score recall of a phrasing; "
            "the unseen slice is what users who phrase requests their own way will see, and gates, early stopping "
            "and checkpoint selection read it (eval.pattern_slice).</p>"
            + _table(["suite.slice", "metric", "n", "base", f"tuned (step {promo.get('step')}) [95% CI]",
                      "delta [95% CI, paired]"], body, "patterns"))


def _samples_section(evals: list[dict], promo: dict | None) -> str:
    base = next((e for e in evals if e.get("kind") == "baseline"), None)
    fulls = [e for e in evals if e.get("kind") == "full"]
    step = (promo or {}).get("step")
    tuned = next((e for e in fulls if e["step"] == step), fulls[-1] if fulls else None)
    if tuned is None or not tuned.get("samples"):
        return "<p class='muted'>No sample generations recorded.</p>"
    base_out = {(s.get("suite"), s["source"]): s["output"] for s in (base or {}).get("samples", [])}
    rows = [[esc(s.get("suite", "")), f"<pre>{esc(s['prompt'])}</pre>", f"<pre>{esc(s['reference'])}</pre>",
             f"<pre>{esc(base_out.get((s.get('suite'), s['source']), '–'))}</pre>",
             f"<pre>{esc(s['output'])}</pre>"]
            for s in tuned["samples"]]
    return _table(["suite", "prompt", "reference", "base output", f"tuned output (step {tuned['step']})"], rows,
                  "samples")


def _failures_section(failures: dict | None) -> str:
    if not failures:
        return "<p class='muted'>No predictions recorded (predictions.jsonl is missing: no eval suites ran).</p>"
    parts = [f"<p>{failures['n_failed']} of {failures['n']} eval examples have a metric below 1 at step "
             f"{esc(failures['step'])}; the worst {len(failures['worst'])} below, every prediction in "
             "<code>predictions.jsonl</code> (<code>shipsft eval RUN --failures N</code> prints them).</p>"]
    by_field = failures.get("by_field") or {}
    if by_field:
        parts.append("<h3>Wrong JSON fields</h3>")
        parts.append(_table(["suite", "field", "examples wrong", "share"], [
            [esc(suite), esc(f), esc(k), f"{k / failures['n_by_suite'][suite]:.1%}"]
            for suite, counts in by_field.items()
            for f, k in counts.items()], "by-field"))
    rows = failures.get("worst") or []
    if rows:
        has_base = any("base_output" in r for r in rows)
        headers = ["suite / source", "prompt", "reference", *(["base output"] if has_base else []), "output",
                   "scores"]
        body = []
        for r in rows:
            scores = "<br>".join(f"{esc(k)} {fmt(v)}" for k, v in (r.get("scores") or {}).items())
            body.append([f"{esc(r.get('suite', ''))}<br><span class='muted'>{esc(r.get('source', ''))}</span>",
                         f"<pre>{esc(r.get('prompt', ''))}</pre>", f"<pre>{esc(r.get('reference', ''))}</pre>",
                         *([f"<pre>{esc(r.get('base_output', '–'))}</pre>"] if has_base else []),
                         f"<pre>{esc(r.get('output', ''))}</pre>", scores])
        parts.append("<h3>Worst examples</h3>" + _table(headers, body, "failures"))
    return "".join(parts)


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


def render_report(name: str, metrics: list[dict], evals: list[dict], promotion: dict | None, manifest: dict,
                  failures: dict | None = None) -> str:
    """report.html from a run's records: metrics.jsonl lines, eval.jsonl lines, promotion.json, manifest.json, and
    the failure summary of predictions.jsonl (runs/predictions.py: failure_summary; None = no section content)."""
    facts = [f"<code>{esc(k)}</code> {esc(manifest[k])}" for k in ("model_dir", "config_hash", "seed")
             if k in manifest]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>shipsft report: {esc(name)}</title><style>{CSS}</style></head><body>"
        f"<h1>shipsft run report: {esc(name)}</h1><p class='muted'>{' · '.join(facts)}</p>"
        f"<h2 id='decision'>Gate decision</h2>{_decision_section(promotion)}"
        f"<h2 id='before-after'>Before / after</h2>{_before_after_section(promotion)}{_patterns_section(promotion)}"
        f"<h2 id='training'>Training</h2>{_training_section(metrics)}"
        f"<h2 id='eval'>Eval and drift</h2>{_eval_section(evals)}"
        f"<h2 id='samples'>Sample generations</h2>{_samples_section(evals, promotion)}"
        f"<h2 id='failures'>Failures</h2>{_failures_section(failures)}"
        "</body></html>"
    )
