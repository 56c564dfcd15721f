"""audit.html: the pre-flight audit as a page a person would rather look at than read.

Self-contained: inline CSS and inline SVG plots generated here (no JavaScript, no CDN, no network), so it opens
from a run folder on any machine. Every plot is an `<svg data-plot="NAME">` whose bars carry `data-count`, which
is what the browser test checks.

    html = render_html(result.to_dict())
"""
from __future__ import annotations

from html import escape
from typing import Any

from shipsft.report.svg import fmt_count, svg_bars, svg_histogram

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7fb;color:#1d1f24}
header{background:#1d2433;color:#fff;padding:18px 28px}header h1{margin:0;font-size:20px}
header .sub{opacity:.75;font-size:13px;margin-top:4px}
main{max-width:1180px;margin:0 auto;padding:18px 24px 60px}
.verdict{font-size:16px;font-weight:600;padding:12px 16px;border-radius:8px;margin:14px 0}
.verdict.bad{background:#fdecea;color:#8e1c1c}.verdict.ok{background:#e8f5e9;color:#1b5e20}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin:12px 0 20px}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card .v{font-size:20px;font-weight:650}.card .k{font-size:12px;color:#5f6573}
section{background:#fff;border-radius:10px;padding:14px 18px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:16px;margin:2px 0 10px}
.finding{border-left:4px solid #999;padding:6px 10px;margin:8px 0;background:#fafbfc;border-radius:4px}
.finding.error{border-color:#c62828}.finding.warning{border-color:#b26a00}.finding.info{border-color:#1565c0}
.sev{display:inline-block;font-size:11px;font-weight:700;text-transform:uppercase;color:#fff;border-radius:3px;
padding:1px 6px;margin-right:6px}.sev.error{background:#c62828}.sev.warning{background:#b26a00}
.sev.info{background:#1565c0}
.check{font-family:ui-monospace,Menlo,monospace;font-size:12px;color:#5f6573}
.fix{color:#1b5e20;margin-top:3px}.fix b{font-weight:650}
details{margin-top:3px;font-size:12px}code,.mono{font-family:ui-monospace,Menlo,monospace;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:14px}
svg.plot{background:#fff;max-width:100%;height:auto}svg .title{font-weight:650;font-size:13px}
svg .tick{font-size:10px;fill:#5f6573}svg .label{font-size:11px;fill:#333}svg .axis{stroke:#999}
svg .marker{stroke:#c62828;stroke-dasharray:4 3}svg .marker-label{font-size:10px;fill:#c62828}
svg rect.bar:hover{opacity:.75}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eee;vertical-align:top}th{color:#5f6573;font-weight:600}
.cluster{margin:8px 0;padding:8px 10px;background:#fafbfc;border-radius:6px}
.cluster .t{font-family:ui-monospace,Menlo,monospace;font-size:12px;white-space:pre-wrap;color:#333;margin:2px 0}
.muted{color:#5f6573;font-size:12px}
"""


def _finding_html(f: dict) -> str:
    ex = f.get("examples") or []
    count = (f.get("data") or {}).get("count", len(ex))
    more = f" (showing {len(ex)} of {count})" if count > len(ex) else ""
    details = (f"<details><summary>{len(ex)} example(s){more}</summary><div class='mono'>"
               + "<br>".join(escape(str(e)) for e in ex) + "</div></details>") if ex else ""
    fix = f"<div class='fix'><b>fix:</b> {escape(f['fix'])}</div>" if f.get("fix") else ""
    return (f"<div class='finding {f['severity']}' data-severity='{f['severity']}'>"
            f"<span class='sev {f['severity']}'>{f['severity']}</span><span class='check'>{escape(f['check'])}</span>"
            f"<div>{escape(f['message'])}</div>{fix}{details}</div>")


def _card(k: str, v: Any) -> str:
    return f"<div class='card'><div class='v'>{escape(str(v))}</div><div class='k'>{escape(k)}</div></div>"


def _length_plots(lengths: dict) -> str:
    if not lengths:
        return ""
    t = lengths.get("total", {})
    out = [svg_histogram("lengths-total", t.get("hist", {}), "Total tokens per sequence", "tokens",
                         {f"p50 {fmt_count(t.get('p50', 0))}": t.get("p50"), f"p99 {fmt_count(t.get('p99', 0))}": t.get("p99"),
                          f"max_length {lengths.get('max_length')}": lengths.get("max_length"),
                          f"recommended {lengths.get('recommended_max_length')}":
                              lengths.get("recommended_max_length")})]
    for key, title, color in (("prompt", "Prompt tokens (before the first trained token)", "#78909c"),
                              ("answer", "Answer tokens (trained)", "#43a047")):
        s = lengths.get(key, {})
        out.append(svg_histogram(f"lengths-{key}", s.get("hist", {}), title, "tokens",
                                 {f"p50 {fmt_count(s.get('p50', 0))}": s.get("p50"),
                                  f"p99 {fmt_count(s.get('p99', 0))}": s.get("p99")}, color))
    batches, packed = lengths.get("batches") or {}, lengths.get("batches_packed")
    pad = batches.get("padding_share", 0)
    bars = [("training micro-batches: real", 1 - pad), ("training micro-batches: padding", pad)]
    if packed is not None:  # packing is off: what it would leave
        bars += [("with packing: real", 1 - packed["padding_share"]),
                 ("with packing: padding", packed["padding_share"])]
    out.append(svg_bars("padding-vs-packing", bars, "Where the compute goes: the loop's own micro-batches",
                        "{:.0%}", max_value=1.0, colors=["#43a047", "#e57373"] * (len(bars) // 2)))
    rows = "".join(f"<tr><td>{k}</td>" + "".join(f"<td>{fmt_count(lengths.get(k, {}).get(p, 0))}</td>"
                                                 for p in ("p50", "p90", "p99", "max", "mean")) + "</tr>"
                   for k in ("prompt", "answer", "total"))
    table = (f"<table><tr><th>tokens</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>mean</th></tr>{rows}"
             "</table>")
    return f"<div class='plots'>{''.join(out)}</div>{table}"


def _duplicates_html(dup: dict) -> str:
    if not dup:
        return ""
    sizes = dup.get("cluster_sizes") or []
    bars = svg_bars("duplicate-clusters", [(f"cluster {k + 1}", s) for k, s in enumerate(sizes[:15])],
                    "Largest duplicate clusters (examples per cluster)") if sizes else \
        "<p class='muted' data-plot-empty='duplicate-clusters'>No duplicate clusters.</p>"
    parts = [(f"<p>{dup.get('exact_extra', 0):,} exact extra copies in {dup.get('exact_groups', 0):,} groups; "
              f"{dup.get('near_extra', 0):,} near-duplicates in {dup.get('near_clusters', 0):,} clusters "
              f"(MinHash, {dup.get('num_perm')} permutations, {dup.get('shingle')}-word shingles, "
              f"Jaccard ≥ {dup.get('threshold')}).</p>"), bars]
    for c in dup.get("top_exact", [])[:6]:
        parts.append(f"<div class='cluster' data-cluster='exact'><b>exact × {c['size']}</b> "
                     f"<span class='muted'>{escape(', '.join(c['sources']))}</span><div class='t'>"
                     f"{escape(c['text'])}</div></div>")
    for c in dup.get("top_near", [])[:6]:
        texts = "".join(f"<div class='t'>{escape(t)}</div>" for t in c["texts"])
        parts.append(f"<div class='cluster' data-cluster='near'><b>near × {c['size']}</b> (similarity ≥ "
                     f"{c['similarity']}) <span class='muted'>{escape(', '.join(c['sources']))}</span>{texts}</div>")
    return "".join(parts)


def _content_html(content: dict, contamination: dict) -> str:
    if not content:
        return ""
    items = [("empty answers", content.get("empty", 0)), ("placeholders", content.get("placeholder", 0)),
             ("unclosed code fences", content.get("unbalanced_fences", 0)),
             ("answer echoes prompt", content.get("echo_prompt", 0)),
             ("outlier-short answers", content.get("short_answers", 0)), ("not JSON (JSON task)",
                                                                           content.get("not_json", 0)),
             ("JSON that fails to parse", content.get("bad_json", 0)), ("refusals", content.get("refusals", 0))]
    out = [svg_bars("content-quality", items, "Content problems (answers)")]
    sets = (contamination or {}).get("sets", {})
    if sets:
        bars = []
        for name, s in sets.items():
            bars += [(f"{name}: verbatim", s["exact"]), (f"{name}: {contamination.get('ngram')}-gram", s["overlap"])]
        out.append(svg_bars("contamination", bars, "Eval examples found in training",
                            colors=["#c62828", "#b26a00"] * len(sets)))
    return f"<div class='plots'>{''.join(out)}</div>"


def _provenance_html(prov: dict) -> str:
    files = (prov or {}).get("files", [])
    if not files:
        return ""
    rows = "".join(
        f"<tr><td>{escape(f['role'])}</td><td class='mono'>{escape(f['path'])}</td><td>{f.get('examples', 0):,}</td>"
        f"<td>{fmt_count(f.get('bytes', 0))}</td><td class='mono'>{escape((f.get('sha256') or '')[:16])}</td>"
        f"<td>{escape(', '.join(f.get('licenses') or []) or '—')}</td></tr>" for f in files)
    return (f"<table><tr><th>role</th><th>file</th><th>examples</th><th>bytes</th><th>sha256</th><th>license</th>"
            f"</tr>{rows}</table>")


def render_html(d: dict) -> str:
    """audit.html from an audit result's dict (AuditResult.to_dict())."""
    s, meta, summ = d["stats"], d["meta"], d["summary"]
    ov, lengths, masks = s.get("overview", {}), s.get("lengths", {}), s.get("masks", {})
    dup, recipe = s.get("duplicates", {}), s.get("recipe", {})
    n_err = summ["errors"]
    verdict = (f"<div class='verdict bad'>{n_err} error(s): <code>shipsft train</code> refuses to start until they "
               "are fixed (or overridden with --skip-audit, which is recorded in the run).</div>" if n_err else
               "<div class='verdict ok'>No errors: ready to train.</div>")
    share = masks.get("trained_share", {})
    cards = "".join([
        _card("examples", f"{ov.get('examples', 0):,}"), _card("sequences", f"{ov.get('sequences', 0):,}"),
        _card("tokens", f"{ov.get('tokens', 0):,}"), _card("trained tokens", f"{ov.get('trained_tokens', 0):,}"),
        _card("mean trained share", f"{share.get('mean', 0):.0%}" if share else "—"),
        _card("recommended max_length", lengths.get("recommended_max_length", "—")),
        _card("padding in training batches",
              f"{lengths['batches']['padding_share']:.0%}" if lengths.get("batches") else "—"),
        _card("duplicates (exact + near)", f"{dup.get('exact_extra', 0) + dup.get('near_extra', 0):,}"),
        _card("errors / warnings / info", f"{n_err} / {summ['warnings']} / {summ['info']}"),
    ])
    findings = "".join(_finding_html(f) for f in d["findings"]) or "<p>No findings.</p>"
    share_plot = svg_histogram("trained-share", share.get("hist", {}), "Trained-token share per sequence",
                               "share of the sequence's tokens that carry loss", {"mean": share.get("mean")},
                               "#8e24aa", pct=True) if share else ""
    timings = s.get("timings", {})
    timing_rows = "".join(f"<tr><td class='mono'>{escape(k)}</td><td>{v:.3f} s</td></tr>" for k, v in timings.items())
    notes = "".join(f"<li>{escape(n)}</li>" for n in meta.get("notes", []))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>shipsft audit — {escape(str(meta.get('model', '')))}</title><style>{CSS}</style></head>
<body><header><h1>Pre-flight audit</h1>
<div class="sub">model <code>{escape(str(meta.get('model', '')))}</code> · template
{escape(str(meta.get('template')))} · mask {escape(str(meta.get('mask')))} · max_length {meta.get('max_length')} ·
method {escape(str(meta.get('method')))} · config {escape(str(meta.get('config_hash')))} · data
{escape(str(meta.get('fingerprint') or '—'))} · {escape(str(meta.get('created', '')))}</div></header>
<main>{verdict}<div class="cards">{cards}</div>
<section id="findings"><h2>Findings</h2>{findings}</section>
<section id="lengths"><h2>Lengths</h2>{_length_plots(lengths)}</section>
<section id="masks"><h2>Masks</h2><div class="plots">{share_plot}</div>
<p class="muted">{masks.get('zero_trained', 0)} sequence(s) with zero trained tokens; {masks.get('answers_cut', 0)}
with answers cut by max_length.</p></section>
<section id="duplicates"><h2>Duplicates</h2>{_duplicates_html(dup)}</section>
<section id="content"><h2>Content quality and contamination</h2>{_content_html(s.get('content', {}),
                                                                              s.get('contamination', {}))}</section>
<section id="recipe"><h2>Data size and recipe</h2><p>{escape(str(recipe.get('n_examples', 0)))} examples,
{recipe.get('trained_tokens', 0):,} trained tokens, {escape(str(recipe.get('method', '')))},
{recipe.get('epochs', 0)} epoch(s) in {recipe.get('optimizer_steps', 0):,} optimizer step(s):
{escape(str(recipe.get('verdict', recipe.get('band', ''))))}.</p>
<p class="muted">Rough guidance: 50–500 examples adjust style or format (LoRA), 1k–10k specialise a model on a
task, 10k–100k change behaviour substantially (where full fine-tuning pays). Repeating a small set for many epochs
overfits it: spend the budget on fresh examples and let an eval decide when to stop.</p>
</section>
<section id="provenance"><h2>Provenance</h2>{_provenance_html(s.get('provenance', {}))}
{f'<ul class="muted">{notes}</ul>' if notes else ''}</section>
<section id="timings"><h2>Audit timings</h2><table>{timing_rows}</table></section>
</main></body></html>
"""
