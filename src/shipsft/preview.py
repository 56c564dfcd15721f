"""`shipsft preview CONFIG [--index N]`: one example exactly as the model sees it.

Trained tokens are shown green on the rendered text, ignored tokens dim; special tokens are bracketed so the
end-of-turn marker is visible (mask bugs are otherwise silent). Below: token counts, the format and template
chosen, and the packing efficiency of the whole training set.
"""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shipsft.data.labels import labels_from_mask
from shipsft.errors import ConfigError


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


def run_preview(cfg, index: int = 0, console: Console | None = None) -> None:
    from shipsft.data.pack import prepare
    from shipsft.source import load_tokenizer

    console = console or Console()
    tok = load_tokenizer(cfg.model.path, cfg.model.gguf_file, cfg.model.trust_remote_code)
    prep = prepare(cfg, tok, "train")
    n = len(prep.rendered)
    if not 0 <= index < n:
        raise ConfigError([f"--index {index}: the training set has {n} sequences (0..{n - 1})"])
    seq = prep.rendered[index]
    labels = labels_from_mask(seq.ids, seq.mask)
    n_trained = sum(1 for x in labels if x != -100)

    console.rule(f"[bold]example {index}[/] — {seq.source}" + (f" (assistant turn {seq.turn})" if seq.turn else ""))
    console.print(colour_tokens(tok, seq.ids, seq.mask), soft_wrap=True)
    console.print(Text.assemble(("trained", "bold green on grey15"), "  ", ("ignored", "grey50"),
                                "   special tokens in [brackets]"))

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row("tokens", f"{len(seq.ids)} (trained {n_trained}, ignored {len(seq.ids) - n_trained})")
    t.add_row("format", prep.format)
    tmpl = prep.renderer.template
    t.add_row("template", tmpl.origin if tmpl else "none (plain text)")
    t.add_row("mask", f"{cfg.data.mask}; end-of-turn trained: {cfg.data.train_eot}")
    t.add_row("dataset", f"{len(prep.examples)} examples -> {n} sequences, {prep.n_tokens:,} tokens, "
                         f"{sum(r.n_trained for r in prep.rendered):,} trained")
    mode = "packed" if cfg.data.packing else "unpacked (one example per row)"
    t.add_row("packing", f"{mode}: {len(prep.rows)} rows of max {cfg.data.max_length} tokens, "
                         f"efficiency {prep.efficiency:.1%} (real tokens / slots)")
    t.add_row("fingerprint", prep.fingerprint)
    console.print(t)
    for note in prep.notes:
        console.print(f"[cyan]note:[/] {note}")
