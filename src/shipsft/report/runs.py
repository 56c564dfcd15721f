"""Pages over several runs, from records handed to them (the CLI reads the run folders through `shipsft.runs`):

    index.html     `shipsft runs DIR --html`: one row per run (status, steps, promoted, the selection metric, KL,
                   time) linking its report.html and audit.html
    compare.html   `shipsft compare RUN RUN ...`: the runs side by side, the settings that differ, and their curves
                   overlaid (train loss, eval loss, the selection metric, KL to the base, learning rate) in the SVG
                   charts report.html draws

Self-contained like every shipsft page: inline CSS and SVG, no script, no network. A run record is a dict with the
fields of `runs/summary.py: RunSummary` (paths as strings) plus `href` / `audit_href` (links relative to the page);
a compare record adds `settings` (dotted config keys and manifest facts -> value), `step_records` (metrics.jsonl
step records), `eval_loss_points` ([step, value] pairs) and `evals` (eval.jsonl baseline / full records).

    html = render_index("runs", rows)
    html = render_compare(records, differ)      # differ: the settings keys not the same in every run
"""
from __future__ import annotations

from shipsft.report.run import CSS
from shipsft.report.svg import duration, esc, finite, fmt, html_table, line_chart

EXTRA_CSS = """.num{text-align:right;font-variant-numeric:tabular-nums}
span.differs{background:#fef08a;padding:1px 4px;border-radius:3px}
span.pass{color:#15803d;font-weight:600}span.fail{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
td code{font-size:12px}"""


def _verdict(r: dict) -> str:
    if r.get("promoted") is True:
        return f"<span class='pass' data-promoted='yes'>promoted</span> step {esc(r.get('step'))}"
    if r.get("promoted") is False:
        return "<span class='fail' data-promoted='no'>not promoted</span>"
    return "<span class='muted' data-promoted='none'>–</span>"


def _steps(r: dict) -> str:
    total = r.get("total_steps")
    return f"{r.get('steps', 0):,}" + (f" / {total:,}" if total and total != r.get("steps") else "")


def _num(v, digits: int = 4) -> str:
    return f"<span class='num'>{fmt(v, digits)}</span>"


def _name(r: dict) -> str:
    link = f"<a href='{esc(r['href'])}'>{esc(r['name'])}</a>" if r.get("href") else esc(r["name"])
    audit = f" <a class='muted' href='{esc(r['audit_href'])}'>audit</a>" if r.get("audit_href") else ""
    return link + audit


def _metric(r: dict) -> str:
    if not r.get("metric"):
        return "<span class='muted'>–</span>"
    base = r.get("base_value")
    base = f" <span class='muted'>(base {_share(base)})</span>" if base is not None else ""
    return f"<code>{esc(r['metric'])}</code> <span class='num'>{_share(r.get('value'))}</span>{base}"


def _share(v) -> str:
    """A task metric (0 to 1) as the eval tables print it."""
    return "–" if finite(v) is None else f"{v:.3f}"


def runs_table(rows: list[dict], cls: str, more: bool = False) -> str:
    headers = ["run", "status", "steps", "decision", "selection metric", "KL to base", "time", "started"]
    if more:
        headers[6:6] = ["train loss", "eval loss"]
    body = []
    for r in rows:
        cells = [_name(r), esc(r.get("status", "")), _steps(r), _verdict(r), _metric(r), _num(r.get("kl"), 3),
                 esc(duration(r.get("seconds"))), esc((r.get("started") or "")[:16].replace("T", " "))]
        if more:
            cells[6:6] = [_num(r.get("train_loss")), _num(r.get("eval_loss"))]
        body.append(cells)
    return html_table(headers, body, cls)


def _page(title: str, body: str) -> str:
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body>{body}</body></html>")


def render_index(root: str, rows: list[dict]) -> str:
    """index.html of the runs under `root` (oldest first)."""
    promoted = sum(1 for r in rows if r.get("promoted") is True)
    head = (f"<h1>shipsft runs: {esc(root)}</h1><p class='muted'>{len(rows)} run(s), {promoted} promoted. "
            "Each name opens the run's report; <code>shipsft compare RUN RUN</code> sets runs side by side.</p>")
    body = runs_table(rows, "runs") if rows else "<p class='muted'>No run folders here.</p>"
    return _page(f"shipsft runs: {root}", head + body)


def by_run(first: str, keys: list[str], records: list[dict], cell, cls: str) -> str:
    """A table with one row per key and one column per run: `cell(key, record)` is each cell's HTML."""
    rows = [[f"<code>{esc(k)}</code>", *(cell(k, r) for r in records)] for k in keys]
    return html_table([first, *(r["name"] for r in records)], rows, cls)


def settings_table(records: list[dict], differ: list[str]) -> str:
    """The settings in `differ` (the ones not the same in every run), one column per run; a value that differs
    from the first run's is highlighted."""
    if not differ:
        return "<p class='muted'>Every setting is the same.</p>"

    def cell(k: str, r: dict) -> str:
        text = esc(r["settings"][k]) if k in r["settings"] else "<span class='muted'>(absent)</span>"
        same = k in r["settings"] and records[0]["settings"].get(k) == r["settings"][k]
        return text if same or r is records[0] else f"<span class='differs'>{text}</span>"

    return by_run("setting", differ, records, cell, "settings")


def _curves(records: list[dict]) -> str:
    metric = next((r["metric"] for r in records if r.get("metric")), None)

    def overlay(points) -> dict[str, list]:  # one series per run
        return {r["name"]: points(r) for r in records}

    def evals(key: str | None):
        return lambda r: [(e["step"], e["metrics"].get(key)) for e in r.get("evals", []) if key]

    charts = [
        line_chart("train loss", overlay(lambda r: [(m["step"], m.get("loss")) for m in r["step_records"]])),
        line_chart("eval loss (step 0 = base model)", overlay(lambda r: [tuple(p) for p in r["eval_loss_points"]])),
        line_chart(f"{metric} (step 0 = base model)" if metric else "selection metric", overlay(evals(metric))),
        line_chart("KL to the base model (step 0 = base model)", overlay(evals("kl_to_base"))),
        line_chart("learning rate", overlay(lambda r: [(m["step"], m.get("lr")) for m in r["step_records"]])),
    ]
    return "<div class='charts'>" + "".join(c for c in charts if c) + "</div>"


def _before_after(records: list[dict]) -> str:
    keys = list(dict.fromkeys(f"{x['suite']}/{x['metric']}" for r in records for x in r.get("before_after", [])))
    if not keys:
        return "<p class='muted'>No before/after rows (the runs have no eval suites or did not finish).</p>"

    def cell(k: str, r: dict) -> str:
        x = next((x for x in r.get("before_after", []) if f"{x['suite']}/{x['metric']}" == k), None)
        return "–" if x is None else (f"{_share(x['base'])} → <b>{_share(x['tuned'])}</b> "
                                      f"<span class='muted'>[{x['lo']:+.3f}, {x['hi']:+.3f}]</span>")

    return by_run("metric (base → tuned [95% CI of the delta])", keys, records, cell, "before-after")


def render_compare(records: list[dict], differ: list[str]) -> str:
    """compare.html: the runs side by side (in the order given); `differ`: the settings not the same in all."""
    names = [r["name"] for r in records]
    same = len({k for r in records for k in r["settings"]}) - len(differ)
    table = settings_table(records, differ)
    body = (f"<h1>shipsft compare: {esc(' vs '.join(names))}</h1>"
            f"<h2 id='runs'>Runs</h2>{runs_table(records, 'runs', more=True)}"
            f"<h2 id='settings'>Settings that differ</h2>{table}"
            f"<p class='muted'>{same} other setting(s) are the same in every run; highlighted cells differ from "
            f"{esc(names[0])}.</p>"
            f"<h2 id='curves'>Curves</h2>{_curves(records)}"
            f"<h2 id='before-after'>Before / after</h2>{_before_after(records)}")
    return _page(f"shipsft compare: {' vs '.join(names)}", body)
