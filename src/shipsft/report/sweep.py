"""sweep.html: one self-contained page (inline CSS + SVG, no script, no network) from the summary a sweep writes to
sweep.json (`shipsft.sweep.run.summarize`): the pick and its rule, the results table, the variance decomposition with
the noise-floor verdict per lever, one effect plot per lever, and the Pareto front of a task metric against KL.

    html = render_sweep(summary)
"""
from __future__ import annotations

import math

from shipsft.report.run import CSS
from shipsft.report.svg import COLORS, esc, finite, fmt, html_table as _table, line_chart, svg_bars, ticks

EXTRA_CSS = """.num{text-align:right;font-variant-numeric:tabular-nums}tr.picked td{background:#ecfdf5}
td.failed{color:#b91c1c}.front{fill:#dc2626}.point{fill:#2563eb}"""


def _num(v, digits: int = 4) -> str:
    return f"<span class='num'>{fmt(v, digits)}</span>"


def _count(v) -> str:
    return "–" if finite(v) is None else f"{int(v):,}"


def _results(s: dict) -> str:
    levers = list(s["levers"])
    tasks = sorted({k for r in s["trials"] for k in (r.get("task") or {})})
    picked = set((s.get("pick") or {}).get("trials") or [])
    headers = ["trial", *levers, "seed", "status", "train loss", "eval loss", *tasks, "KL to base", "probe loss +",
               "trainable", "trained tokens", "wall s"]
    rows, cls = [], []
    for r in s["trials"]:
        status = esc(r["status"]) if r["status"] != "failed" else \
            f"<span class='fail'>failed (exit {esc(r.get('exit_code'))})</span>"
        rows.append([esc(r["name"]), *(esc(r["levels"][k]) for k in levers),
                     esc("" if r["seed"] is None else r["seed"]),
                     status, _num(r.get("train_loss")), _num(r.get("eval_loss")),
                     *(_num((r.get("task") or {}).get(t)) for t in tasks), _num(r.get("kl_to_base")),
                     _num(r.get("general_loss_increase")), _count(r.get("trainable_params")),
                     _count(r.get("trained_tokens")), _num(r.get("wall_s"), 3)])
        cls.append("picked" if r["name"] in picked else "")
    return _table(headers, rows, "results", cls)


def _verdict(share: dict, error: str) -> str:
    if share.get("inside_noise") is None:
        return "not tested"
    floor = "the seed noise floor" if error == "seed" else "the residual"
    return f"inside {floor}" if share["inside_noise"] else f"above {floor}"


def _decomposition(d: dict) -> str:
    items = [(x["name"], 100 * x["share"]) for x in d["levers"]]
    if d["interactions"]["df"] or d["interactions"]["share"]:
        items.append(("interactions", 100 * d["interactions"]["share"]))
    if d.get("seed"):
        items.append(("seed (noise floor)", 100 * d["seed"]["share"]))
    colors = [COLORS[0]] * len(d["levers"]) + [COLORS[6]] * (len(items) - len(d["levers"]))
    bars = svg_bars("variance", items, f"share of the variance of {d['outcome']} (%)", fmt="{:.1f}%", colors=colors,
                    max_value=100)
    rows = [[esc(x["name"]), f"{100 * x['share']:.1f}%", esc(x["df"]), fmt(x.get("f")), fmt(x.get("p")),
             esc(_verdict(x, d["error"]))] for x in d["levers"]]
    rows.append(["interactions (lever x lever)", f"{100 * d['interactions']['share']:.1f}%",
                 esc(d["interactions"]["df"]), "", "", ""])
    if d.get("seed"):
        rows.append(["seed (noise floor)", f"{100 * d['seed']['share']:.1f}%", esc(d["seed"]["df"]), "", "", ""])
    rows.append(["<b>residual</b> (interactions + seed)", f"<b>{100 * d['residual']:.1f}%</b>", "", "", "", ""])
    notes = "".join(f"<p class='muted'>{esc(n)}</p>" for n in d.get("notes", []))
    return (f"<p>{d['n']} trials; eta-squared from a main-effects ANOVA (shares + residual = 100%). F tests against "
            f"{'the seeds' if d['error'] == 'seed' else 'the residual' if d['error'] == 'residual' else 'nothing'}"
            f".</p>{bars}" + _table(["source", "share", "df", "F", "p", "verdict"], rows, "variance") + notes)


def _numeric(levels: list[str]) -> list[float] | None:
    try:
        xs = [float(v) for v in levels]
    except ValueError:
        return None
    return xs if all(math.isfinite(x) for x in xs) else None


def _effects(s: dict) -> str:
    """Per lever: the outcome at each level. One lever at a time: the lever's trials and the base (every other lever
    at the base's level); grid: the mean over the other levers (marginal means)."""
    outcome, charts = s["outcome"], []
    base_levels = {k: v["base"] for k, v in s["levers"].items()}
    for lever, info in s["levers"].items():
        trials = [r for r in s["trials"] if r.get("status") == "done" and (s["mode"] == "grid" or all(
            r["levels"][k] == base_levels[k] for k in s["levers"] if k != lever))]
        levels = [lv for lv in dict.fromkeys([*info["levels"], base_levels[lever]])
                  if any(r["levels"][lever] == lv for r in trials)]
        values = {lv: [v for r in trials if r["levels"][lever] == lv and (v := _value(r, outcome)) is not None]
                  for lv in levels}
        means = {lv: sum(v) / len(v) for lv, v in values.items() if v}
        xs = _numeric(list(means))
        if xs is not None and len(xs) >= 2:
            log = min(xs) > 0 and max(xs) / min(xs) >= 20
            x_of = {lv: (math.log10(x) if log else x) for lv, x in zip(means, xs)}
            series = {"mean": [(x_of[lv], m) for lv, m in means.items()]}
            seeds = sorted({r["seed"] for r in trials if r["seed"] is not None})
            for seed in seeds:
                series[f"seed {seed}"] = [(x_of[r["levels"][lever]], v) for r in trials if r["seed"] == seed
                                          and r["levels"][lever] in x_of and (v := _value(r, outcome)) is not None]
            charts.append(f"<div data-lever='{esc(lever)}'>" + line_chart(
                f"{outcome} by {lever}", series, x_label=f"log10 {lever}" if log else lever,
                dashed={k for k in series if k != "mean"}) + "</div>")
        elif means:
            lo = min(means.values())
            charts.append(f"<div data-lever='{esc(lever)}'>" + svg_bars(
                f"effect-{lever}", [(lv, m) for lv, m in means.items()],
                f"{outcome} by {lever} (mean; bars start at 0, lowest {fmt(lo)})", fmt="{:.4g}") + "</div>")
    return f"<div class='charts'>{''.join(charts)}</div>" if charts else "<p class='muted'>No finished trials.</p>"


def _value(row: dict, name: str) -> float | None:
    if name in row and name != "task":
        return finite(row[name])
    task = row.get("task") or {}
    if name in task:
        return finite(task[name])
    hits = [v for k, v in task.items() if k.split("/", 1)[1] == name]
    return finite(hits[0]) if len(hits) == 1 else None


def scatter(name: str, title: str, points: list[tuple[str, float, float, bool]], x_label: str, y_label: str,
            width: int = 560, height: int = 300) -> str:
    """An inline SVG scatter of (label, x, y, highlighted) with the highlighted points joined in x order."""
    pts = [(n, x, y, h) for n, x, y, h in points if finite(x) is not None and finite(y) is not None]
    if not pts:
        return ""
    xt, yt = ticks(min(p[1] for p in pts), max(p[1] for p in pts)), ticks(min(p[2] for p in pts),
                                                                          max(p[2] for p in pts))
    left, right, top, bottom = 58, 14, 28, 42
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - xt[0]) / ((xt[-1] - xt[0]) or 1) * pw

    def py(y):
        return top + ph - (y - yt[0]) / ((yt[-1] - yt[0]) or 1) * ph

    out = [f'<svg class="chart" data-plot="{esc(name)}" role="img" aria-label="{esc(title)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">', f'<text x="{left}" y="16" class="title">{esc(title)}'
           '</text>']
    for t in xt:
        out.append(f'<text x="{px(t):.1f}" y="{top + ph + 16}" class="tick" text-anchor="middle">{fmt(t, 3)}</text>')
    for t in yt:
        out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{left + pw}" y2="{py(t):.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{py(t) + 4:.1f}" class="tick" text-anchor="end">{fmt(t, 3)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" class="tick" text-anchor="middle">'
               f'{esc(x_label)}</text>')
    out.append(f'<text x="12" y="{top + ph / 2:.1f}" class="tick" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2:.1f})">{esc(y_label)}</text>')
    front = sorted((p for p in pts if p[3]), key=lambda p: p[1])
    if len(front) > 1:
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for _, x, y, _ in front)
        out.append(f'<polyline points="{coords}" fill="none" stroke="#dc2626" stroke-width="1.5"/>')
    for n, x, y, h in pts:
        out.append(f'<circle class="{"front" if h else "point"}" data-front="{int(h)}" data-label="{esc(n)}" '
                   f'cx="{px(x):.1f}" cy="{py(y):.1f}" r="4"><title>{esc(n)}: {fmt(x)}, {fmt(y)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _pareto(p: dict | None) -> str:
    if not p or not p.get("points"):
        return ("<p class='muted'>No Pareto front: it needs a task metric and KL to the base (eval suites in the base "
                "config).</p>")
    front = set(p["front"])
    svg = scatter("pareto", f"{p['metric']} (higher is better) vs {p['kl']} (lower is better)",
                  [(q["cell"], q["kl"], q["metric"], q["cell"] in front) for q in p["points"]], p["kl"], p["metric"])
    rows = [[esc(q["cell"]), fmt(q["metric"]), fmt(q["kl"]), "yes" if q["cell"] in front else ""]
            for q in sorted(p["points"], key=lambda q: q["kl"])]
    return svg + _table(["trial (mean over seeds)", p["metric"], p["kl"], "on the front"], rows, "pareto")


def _pick(p: dict) -> str:
    if not p.get("cell"):
        return f"<p><b>Rule:</b> {esc(p['rule'])}.</p><p class='fail'>No trial qualifies.</p>"
    parts = [f"<p><b>Rule:</b> {esc(p['rule'])}.</p>",
             f"<div class='verdict pass' id='pick'><b>{esc(p['cell'])}</b> — {esc(p['metric'])} {fmt(p['value'])}"
             + (f"; {esc(p['versus_base'])}" if p.get("versus_base") else "") + "</div>"]
    if p.get("config"):
        parts.append(f"<p>Its config: <code>{esc(p['config'])}</code></p>")
    if p.get("excluded"):
        parts.append("<p class='muted'>Not eligible: " + esc("; ".join(p["excluded"])) + "</p>")
    return "".join(parts)


def render_sweep(s: dict) -> str:
    """sweep.html from a sweep summary (the dict written to sweep.json)."""
    others = s.get("other_decompositions") or {}
    other_rows = [[esc(name), *(f"{100 * x['share']:.1f}%" for x in d["levers"]), f"{100 * d['residual']:.1f}%"]
                  for name, d in others.items()]
    other = (_table(["outcome", *s["levers"], "residual"], other_rows, "other-outcomes") if other_rows else "")
    seeds = f"; seeds {', '.join(map(str, s['seeds']))}" if s.get("seeds") else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>shipsft sweep: {esc(s['sweep'])}</title><style>{CSS}{EXTRA_CSS}</style></head><body>"
        f"<h1>shipsft sweep: {esc(s['sweep'])}</h1><p class='muted'>{esc(s['mode'])} around <code>{esc(s['base'])}"
        f"</code>; {len(s['trials'])} trials{esc(seeds)}; outcome <code>{esc(s['outcome'])}</code></p>"
        f"<h2 id='pick-best'>Pick</h2>{_pick(s['pick'])}"
        f"<h2 id='results'>Trials</h2>{_results(s)}"
        f"<h2 id='variance'>Variance decomposition</h2>{_decomposition(s['decomposition'])}"
        f"<h2 id='effects'>Effect of each lever</h2>{_effects(s)}"
        f"<h2 id='pareto'>Task metric vs KL to the base</h2>{_pareto(s.get('pareto'))}"
        + (f"<h2 id='other'>Shares for other outcomes</h2>{other}" if other else "")
        + "</body></html>")
