"""What the commands show: one example as the model sees it (preview), the audit summary, the eval table."""
from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shipsft.data.labels import count_trained, labels_from_mask
from shipsft.data.store import trained_counts

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def colour_tokens(tokenizer, ids: list[int], mask: list[bool]) -> Text:
    """Rich text of the sequence: trained tokens bold green on a dark background, ignored tokens dim."""
    special = set(tokenizer.all_special_ids)
    out = Text()
    for tok_id, m in zip(ids, mask):
        piece = tokenizer.decode([tok_id], skip_special_tokens=False)
        if tok_id in special:
            piece = f"[{piece}]"
        out.append(piece, style="bold green on grey15" if m else "grey50")
    return out


def show_preview(console: Console, tok, prep, data, index: int) -> None:
    """`shipsft preview`: one example exactly as the model sees it, then counts, format, template, packing."""
    seq = prep.rendered[index]
    n_trained = count_trained(labels_from_mask(seq.ids, seq.mask))
    console.rule(f"[bold]example {index}[/] — {seq.source}" + (f" (assistant turn {seq.turn})" if seq.turn else ""))
    console.print(colour_tokens(tok, seq.ids, seq.mask), soft_wrap=True)
    console.print(Text.assemble(("trained", "bold green on grey15"), "  ", ("ignored", "grey50"),
                                "   special tokens in [brackets]"))
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("tokens", f"{len(seq.ids)} (trained {n_trained}, ignored {len(seq.ids) - n_trained})")
    t.add_row("format", prep.format)
    tmpl = prep.renderer.template
    t.add_row("template", tmpl.origin if tmpl else "none (plain text)")
    t.add_row("mask", f"{data.mask}; end-of-turn trained: {data.train_eot}")
    t.add_row("dataset", f"{prep.n_examples or len(prep.examples)} examples -> {len(prep.rendered)} sequences, "
                         f"{prep.n_tokens:,} tokens, {int(trained_counts(prep.rendered).sum()):,} trained")
    mode = "packed" if data.packing else "unpacked (one example per row)"
    t.add_row("packing", f"{mode}: {prep.n_rows} rows of max {prep.max_length} tokens, "
                         f"efficiency {prep.efficiency:.1%} (real tokens / slots)")
    t.add_row("fingerprint", prep.fingerprint)
    console.print(t)
    for note in prep.notes:
        console.print(Text.assemble(("note: ", "cyan"), note))
    for problem in prep.problems:
        for line in problem.lines:
            console.print(Text.assemble(("problem: ", "bold red"), line))


def show_audit(result, console: Console, paths: tuple[Path, Path] | None = None) -> None:
    ov = result.stats.get("overview", {})
    console.print(f"[bold]shipsft audit[/bold]  {ov.get('examples', 0):,} examples -> {ov.get('sequences', 0):,} "
                  f"sequences, {ov.get('tokens', 0):,} tokens ({ov.get('trained_tokens', 0):,} trained)")
    table = Table(show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding and fix", ratio=1)
    for f in result.sorted_findings():
        body = Text(f.message)
        if f.fix:
            body.append("\nfix: ", style="bold green")
            body.append(f.fix)
        if f.examples:
            more = f.data.get("count", len(f.examples)) - min(3, len(f.examples))
            body.append("\ne.g. " + ", ".join(f.examples[:3]) + (f" (+{more} more)" if more > 0 else ""), style="dim")
        table.add_row(Text(f.severity, style=_STYLE[f.severity]), f.check, body)
    console.print(table)
    n_e, n_w, n_i = len(result.errors), len(result.warnings), len(result.infos)
    verdict = ("[bold red]training would refuse to start[/bold red]" if n_e
               else "[bold green]ready to train[/bold green]")
    console.print(f"{n_e} error(s), {n_w} warning(s), {n_i} info — {verdict}")
    if paths:
        console.print(Text(f"wrote {paths[0]} and {paths[1]}"))  # Text: a path is never read as rich markup


def show_eval(console: Console, result: dict, base_spec: str | None) -> None:
    """One table per suite: metric, base, tuned, delta, 95% CI (the models are named on the line above it).
    Metric names are never cut (they fold at the terminal's edge instead): at 80 columns
    `json_field_match/category` and the CI column still fit side by side."""
    for name, entry in result.items():
        title = f"{'before / after on ' if base_spec else ''}{name} (n={entry['n']})"
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
        width = max((len(r["metric"]) for r in entry["rows"]), default=6)
        table.add_column("metric", overflow="fold", min_width=min(width, 40))
        if base_spec:
            table.add_column("base", justify="right", no_wrap=True)
        table.add_column("tuned" if base_spec else "score", justify="right", no_wrap=True)
        if base_spec:
            table.add_column("delta", justify="right", no_wrap=True)
            table.add_column("95% CI", justify="right", no_wrap=True)
        for r in entry["rows"]:
            cells = [r["metric"]]
            if base_spec:
                color = "green" if r["lo"] > 0 else "red" if r["hi"] < 0 else "white"
                cells += [f"{r['base']:.3f}", f"{r['tuned']:.3f}", f"[{color}]{r['delta']:+.3f}[/]",
                          f"[{r['lo']:+.3f}, {r['hi']:+.3f}]"]
            else:
                cells.append(f"{r['tuned']:.3f}")
            table.add_row(*cells)
        console.print(table)


def show_patterns(console: Console, rows: list[dict]) -> None:
    """The seen-pattern and unseen-pattern slices of each suite that holds both (eval/suites.py: pattern_rows):
    score and bootstrap 95% CI, and the paired delta's when a baseline ran."""
    if not rows:
        return
    with_base = all("delta" in r for r in rows)
    table = Table(title="sentence patterns seen in training vs unseen", box=box.SIMPLE_HEAD, title_justify="left",
                  pad_edge=False)
    for name, justify in (("suite.slice/metric", "left"), ("n", "right"), ("score", "right"),
                          ("95% CI", "right"), *((("delta", "right"), ("95% CI ", "right")) if with_base else ())):
        table.add_column(name, justify=justify, overflow="fold")
    for r in rows:
        cells = [f"{r['suite']}.{r['slice']}/{r['metric']}", str(r["n"]), f"{r['tuned']:.3f}",
                 f"[{r['tuned_lo']:.3f}, {r['tuned_hi']:.3f}]"]
        if with_base:
            cells += [f"{r['delta']:+.3f}", f"[{r['lo']:+.3f}, {r['hi']:+.3f}]"]
        table.add_row(*(Text(c) for c in cells))
    console.print(table)


def show_failures(console: Console, rows: list[dict], n_total: int) -> None:
    """`shipsft eval --failures N`: each failure with its source and every score (wrapped, never cut), the prompt,
    then the prediction and the reference side by side (and the base model's output when a baseline ran)."""
    if not rows:
        console.print(f"no failures: every one of the {n_total} predictions scored 1 on every metric")
        return
    console.rule(f"the {len(rows)} worst of {n_total} predictions")
    for i, r in enumerate(rows, 1):
        head = Text.assemble((f"#{i} ", "bold"), (r.get("suite", ""), "bold"), "  ", (r.get("source", ""), "cyan"))
        console.print(head, overflow="fold")
        scores = r.get("scores") or {}
        console.print(Text("   ".join(f"{k} {v:.2f}" for k, v in scores.items() if "/" not in k)
                           + _wrong(scores), style="yellow"), overflow="fold")
        prompt = " ".join(str(r.get("prompt", "")).split())
        console.print(Text("prompt: " + (prompt if len(prompt) <= 320 else prompt[:320] + " ..."), style="dim"),
                      overflow="fold")
        table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False, show_edge=False)
        table.add_column("output", ratio=1, overflow="fold")
        table.add_column("reference", ratio=1, overflow="fold")
        if "base_output" in r:
            table.add_column("base output", ratio=1, overflow="fold")
            table.add_row(Text(r.get("output", "")), Text(r.get("reference", "")), Text(r["base_output"] or ""))
        else:
            table.add_row(Text(r.get("output", "")), Text(r.get("reference", "")))
        console.print(table)


def _wrong(scores: dict) -> str:
    fields = [k.split("/", 1)[1] for k, v in scores.items() if k.startswith("json_field_match/") and v < 1]
    return f"   wrong fields: {', '.join(fields)}" if fields else ""
