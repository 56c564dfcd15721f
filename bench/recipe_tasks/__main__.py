"""python -m bench.recipe_tasks --task NAME|all --out DIR [--seed 0] [--quiet]"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from . import TASKS, answer, write_task


def _short(record: dict, limit: int = 300) -> str:
    """One line per record: id, slice, then the turns after the system prompt (which is printed once)."""
    turns = " || ".join(f"{m['role']}: {m['content']}" for m in record["messages"] if m["role"] != "system")
    s = f"[{record['id']}{' ' + record['slice'] if 'slice' in record else ''}] " + turns.replace("\n", "\\n")
    return s if len(s) <= limit else s[:limit] + "..."


def report(data, paths: dict[str, Path]) -> str:
    lines = [f"== {data.name}: {data.description}",
             f"metrics: {', '.join(data.metrics)} (primary: {data.primary_metric})"]
    for label, records in (("train", data.train), ("eval", data.eval), ("eval seen", data.eval_slice("seen")),
                           ("eval unseen", data.eval_slice("unseen"))):
        lens = [len(answer(r)) for r in records]
        turns = sum(1 for r in records if sum(m["role"] == "assistant" for m in r["messages"]) > 1)
        lines.append(f"{label:12s} {len(records):5d} examples   answer chars mean {statistics.mean(lens):6.1f} "
                     f"max {max(lens):4d}   multi-turn {turns}")
    system = next((m["content"] for m in data.train[0]["messages"] if m["role"] == "system"), None)
    lines += ["files: " + ", ".join(str(p) for p in paths.values()),
              "system prompt (first train record): " + (system or "(none)").replace("\n", "\\n"), "sample train:"]
    lines += ["  " + _short(r) for r in data.train[:2]]
    lines.append("sample eval unseen:")
    lines += ["  " + _short(r) for r in data.eval_slice("unseen")[:2]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.recipe_tasks", description=__doc__)
    ap.add_argument("--task", required=True, choices=[*TASKS, "all"])
    ap.add_argument("--out", required=True, type=Path, help="output folder (with --task all: one subfolder per task)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="print only the file paths")
    args = ap.parse_args(argv)
    names = list(TASKS) if args.task == "all" else [args.task]
    for name in names:
        data = TASKS[name](args.seed)
        paths = write_task(data, args.out / name if args.task == "all" else args.out)
        print(" ".join(str(p) for p in paths.values()) if args.quiet else report(data, paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
