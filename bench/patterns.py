"""How well do prompt skeletons find the sentence patterns a data set was written from? No training: seconds.

    python bench/patterns.py                 # every recipe task (bench/recipe_tasks) at seeds 0-2, and natural data
    python bench/patterns.py --out bench/results/patterns.json

For each task the generator knows the phrasing template behind every example (its `meta`). Measured on the training
set, as `shipsft init` sees it:
  clusters        sentence-pattern clusters found (data/skeleton.py) vs templates written, the largest cluster's share
  leak pattern    share of the eval examples of init's split (data/split.py, by: auto) whose request template is
                  also in the training part: 0 = every eval example is phrased in a way training never saw; in
                  brackets, whose template has 3+ training examples (one stray variant teaches a phrasing less)
  leak random     the same for a plain random split of the same size (what init did before issue 27)
  flags           the bench's own eval slices marked by seen_patterns against train: share of the "seen" slice
                  flagged seen, and of the "unseen" slice flagged seen (1.00 / 0.00 is perfect)
Natural data: the 110 hand-written conversations shipsft ships (forgetting probe + replay set), where init must keep
a random split.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def leak(idx_eval: list[int], idx_train: list[int], template: list[str], at_least: int = 1) -> float:
    """Share of the eval examples whose template has `at_least` training examples."""
    trained = Counter(template[i] for i in idx_train)
    return (sum(trained[template[i]] >= at_least for i in idx_eval) / len(idx_eval) if idx_eval
            else float("nan"))


def measure_task(name: str, seed: int) -> dict:
    from bench.recipe_tasks import TASKS
    from shipsft.data.inspect import answer_shape, reference_answer, split_indices, strata
    from shipsft.data.skeleton import find_patterns, prompt_and_answers, seen_patterns
    from shipsft.data.split import plan_split
    from shipsft.data.types import Example

    task = TASKS[name](seed)
    train = [Example(source=r["id"], messages=r["messages"]) for r in task.train]
    template = [task.meta[r["id"]]["templates"][0] for r in task.train]  # the request's own phrasing
    t0 = time.perf_counter()
    found = find_patterns([prompt_and_answers(ex) for ex in train])
    seconds = time.perf_counter() - t0
    shape = answer_shape([reference_answer(ex) for ex in train])
    plan = plan_split(train, shape, seed)
    rnd_train, rnd_eval = split_indices(strata([reference_answer(ex) for ex in train], shape), len(plan.eval_idx),
                                        seed)
    train_texts = [prompt_and_answers(ex) for ex in train]
    flags = {}
    for part in ("seen", "unseen"):
        ev = [prompt_and_answers(Example(source=r["id"], messages=r["messages"])) for r in task.eval_slice(part)]
        seen = seen_patterns(train_texts, ev)
        flags[part] = sum(seen) / len(seen)
    return {"task": name, "seed": seed, "n": len(train), "templates": len(set(template)),
            "clusters": found.n_clusters, "largest": round(found.largest_share, 4), "split": plan.by,
            "eval": len(plan.eval_idx), "leak_pattern": round(leak(plan.eval_idx, plan.train_idx, template), 4),
            "leak_pattern_3": round(leak(plan.eval_idx, plan.train_idx, template, 3), 4),
            "leak_random": round(leak(rnd_eval, rnd_train, template), 4),
            "flag_seen": round(flags["seen"], 4), "flag_unseen": round(flags["unseen"], 4),
            "seconds": round(seconds, 2)}


def measure_natural() -> dict:
    from shipsft.data.inspect import answer_shape, reference_answer
    from shipsft.data.skeleton import find_patterns, prompt_and_answers
    from shipsft.data.split import plan_split
    from shipsft.data.types import Example

    exs = []
    for name in ("forgetting_probe.jsonl", "replay_general.jsonl"):
        text = resources.files("shipsft").joinpath(f"assets/{name}").read_text(encoding="utf-8")
        exs += [Example(source=name, messages=json.loads(x)["messages"]) for x in text.splitlines() if x.strip()]
    found = find_patterns([prompt_and_answers(ex) for ex in exs])
    plan = plan_split(exs, answer_shape([reference_answer(ex) for ex in exs]), 0)
    return {"task": "natural (shipped probe + replay)", "n": len(exs), "clusters": found.n_clusters,
            "largest": round(found.largest_share, 4), "repeated": round(found.repeated_share, 4), "split": plan.by}


def main(argv: list[str] | None = None) -> int:
    from bench.machine import write
    from bench.recipe_tasks import TASKS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", help="write the rows as JSON here (bench/results/patterns.json)")
    a = ap.parse_args(argv)
    random.seed(0)
    rows = [measure_task(name, seed) for name in TASKS for seed in range(a.seeds)]
    natural = measure_natural()
    print("| task | seed | examples | templates | clusters | largest | init's split | eval | leak: pattern split "
          "(3+ in train) | leak: random split | seen slice flagged seen | unseen slice flagged seen | s |")
    print("|" + "---|" * 13)
    for r in rows:
        print(f"| {r['task']} | {r['seed']} | {r['n']} | {r['templates']} | {r['clusters']} | {r['largest']:.1%} | "
              f"{r['split']} | {r['eval']} | {r['leak_pattern']:.0%} ({r['leak_pattern_3']:.0%}) | "
              f"{r['leak_random']:.0%} | {r['flag_seen']:.0%} "
              f"| {r['flag_unseen']:.0%} | {r['seconds']:.1f} |")
    print(f"\nnatural: {natural['n']} conversations, {natural['clusters']} clusters (largest {natural['largest']:.1%}, "
          f"{natural['repeated']:.0%} share theirs): init's split {natural['split']}")
    if a.out:
        write(a.out, {"tasks": rows, "natural": natural})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
