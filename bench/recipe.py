"""Does the recipe `shipsft init` chooses generalise? shipsft's defaults vs TRL SFTTrainer, at an equal CPU budget.

    python bench/recipe.py --task classify_json             # one task (about 45 min on a quiet 2-core CPU)
    python bench/recipe.py --task schedule_chat             # ... one task per call; each writes
                                                            #     bench/results/recipe-<task>.json as it goes
    python bench/recipe.py --table                          # the tables of every bench/results/recipe-*.json
    python bench/recipe.py --table --json bench/results/recipe_paired.json   # ... and the paired tables' numbers
    python bench/recipe.py --task classify_json --budget-min 3 --eval-limit 40    # a quick check of the harness
    python bench/recipe.py --task classify_json --contenders shipsft --levers all   # the levers against init's config
    python bench/recipe.py --task classify_json --contenders --levers prompt-loss  # one lever, paired with the
                                                            #     shipsft row already in recipe-classify_json.json
    python bench/recipe.py --task classify_json --contenders --levers neftune --lever-steps plain
                                                            # ... at plain shipsft's steps, no calibration
    python bench/recipe.py --task rewrite_format --contenders --split-seeds 1 2   # init's split drawn twice more

Tasks (bench/recipe_tasks): classify_json, extract_entities, rewrite_format, tool_call, schedule_chat (multi-turn, a
free-text answer scored by ROUGE-L); each has a training set and an eval set in two slices: "seen" (training
phrasings and entity pools, new combinations) and "unseen" (sentence patterns, entities and templates that never
occur in training). The gap between them is how much a recipe memorised. For shipsft the table also gives init's
estimate: what the run's own eval said about the checkpoint it shipped (`heldout/<metric>` on the split `shipsft
init` held out of train.jsonl, "patterns" or "random": recipe/starter.py, data/split.py) and that estimate minus
the unseen-slice score, the error a user would have shipped on (issue 27: +0.315 with a random split).

Contenders, each trained in its own subprocess on the same model (SmolLM2-135M-Instruct unless --model):
  shipsft       `shipsft init train.jsonl` then `shipsft train` on the config it wrote, unedited: init holds out
                its own eval split from train.jsonl (as a new user's run does; the benchmark's eval files are never
                shown to training), precision auto (fp32 on a CPU without native bf16), tcmalloc when installed.
  trl-defaults  SFTTrainer as a new user runs it: SFTConfig() defaults (lr 2e-5, 3 epochs, batch 8, linear decay,
                gradient checkpointing, bf16 autocast, which TRL turns on even where bf16 is emulated) with peft's
                LoraConfig() defaults (r 8, alpha 8, q_proj/v_proj), on the messages as they are (loss on every
                token, TRL's default for that format); glibc malloc.
  trl-recipe    the common LoRA recipe: r 16, alpha 32, dropout 0.05, all linear layers, lr 2e-4, batch 8, 1 epoch,
                on prompt/completion pairs (loss on the answer only, TRL's default for that format), fp32 (the
                fast path here; bf16 is measured slower where it is emulated), no gradient checkpointing, and the
                same allocator as shipsft. Everything else SFTConfig's defaults.

Levers (--levers NAME ... | all): shipsft's init config with one change each, run as contender "shipsft+<lever>"
at the same budget, and printed as each lever minus plain shipsft, paired by example: neftune (NEFTune alpha 5),
dropout (LoRA dropout 0.05), rank64 (r 64, alpha 128), lr-half / lr-double / lr-x5 (init's LR / 2, x 2, x 5),
full (full fine-tuning at a tenth of init's LoRA LR), prompt-loss (loss on every token, the prompt's too: data.mask
everything), weight-decay (0.1), replay (a fifth of the examples from shipsft's general replay set), select (the
step count chosen by selection: three times plain's steps, init's epochs at most, with a full eval of init's held-out
split every sixth of them, eval.full_every, and promotion choosing; each checkpoint is also scored on the unseen slice
and `--table` lists them). Epochs are not a lever here: at a budget of minutes every contender is capped inside its
first epoch.

The budget (--budget-min, 10 by default) is the time spent in optimizer steps. Each contender first runs a few
calibration steps in the same setting and measures seconds per step; when its planned run (epochs x examples /
batch) would not fit in 90% of the budget, its steps are capped to what fits (`train.max_steps` for shipsft,
`max_steps` for TRL, so each learning-rate schedule still ends at its last step). The table says when a cap was
applied. Evals during training (shipsft's eval gates) are not counted.

`--lever-steps plain` gives each lever (and split seed) plain shipsft's steps instead (its row in the call or in
--results): equal compute for a variant that leaves a step's cost as it is, and nothing a loaded machine's
calibration can skew (NEFTune on rewrite_format calibrated at 43 steps where plain shipsft had fit 49, with a test
run beside it). `--split-seeds` runs shipsft with init's split drawn with other seeds ("shipsft@split<seed>"): how
far init's estimate falls from the unseen slice when other sentence patterns are held out; the last table lists every
shipsft row's estimate against the unseen slice, both with intervals that resample patterns.

Every contender is then scored by the same code: `shipsft eval` (greedy decoding, the model's chat template, the
same generation budget and metric) on the seen and unseen slices; the primary metric per example gives the mean
and a bootstrap 95% CI (2,000 resamples of the slice's sentence patterns, as shipsft's own eval resamples them:
`slice_clusters`; the paired differences resample the same patterns for both contenders). The base model is
scored once (shipsft's eval of its run scores the base with the adapter switched off). A contender that fails is
reported in the table with the reason; the others go on.

Results go to --out (bench_out/recipe): per task data/, one folder per contender (config, run folder or adapter,
eval predictions.jsonl, result.json), results.json; the markdown table is printed at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONTENDERS = ["shipsft", "trl-defaults", "trl-recipe"]
# optimizer steps timed before each run; the first is dropped (warm-up), the mean of the rest (the budget is a sum of
# step times). Was 5 and the median: TRL's recipe on classify_json calibrated at 14.0 s/step and then ran at 10.8 s
# (411 s of a 540 s cap, where shipsft's 4.2 s calibration ran at 4.3 s). Not isolated; the likely cause: TRL pads
# each batch to its longest example, so its step time varies with the batch, and four timed steps average little
CALIBRATION_STEPS = 8
CALIBRATION_MAX_S = 60  # ... or fewer once the timed steps pass this many seconds (one slow step: its time, warm-up in)
BUDGET_SHARE = 0.9  # a capped run aims at 90% of the budget: step times drift by about +-10% on a shared machine
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
TRL_RECIPE = dict(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear")
# Levers (issue 11): shipsft's init config with one change each, contender "shipsft+<lever>", at the same budget.
# A value is a `--set` override, or a function of init's config (the LR init chose is data-shaped, so the LR levers
# scale it). Full fine-tuning gets full FT's usual LR, a tenth of LoRA's (init's comment: LoRA ~10x full FT's 2e-5).
LEVERS = {
    "neftune": lambda cfg: {"train.neftune_alpha": 5},  # Jain et al. 2023: alpha 5 in their instruction-tuning runs
    "dropout": lambda cfg: {"method.lora.dropout": 0.05},  # TRL's recipe uses it; init leaves it at 0
    "rank64": lambda cfg: {"method.lora.r": 64, "method.lora.alpha": 128},  # alpha / r kept at 2
    "lr-half": lambda cfg: {"optim.lr": cfg["optim"]["lr"] / 2},
    "lr-double": lambda cfg: {"optim.lr": cfg["optim"]["lr"] * 2},
    "lr-x5": lambda cfg: {"optim.lr": cfg["optim"]["lr"] * 5},  # 2e-4 -> 1e-3 when measured: Tinker's 1-4B LR
    "full": lambda cfg: {"method.name": "full", "optim.lr": cfg["optim"]["lr"] / 10},
    # Shi et al. 2024, "Instruction Tuning With Loss Over Instructions" (arXiv 2405.14394): loss on the prompt's
    # tokens too helps most with short answers and little data, the shape of every task here but schedule_chat
    "prompt-loss": lambda cfg: {"data.mask": "everything"},
    "weight-decay": lambda cfg: {"optim.weight_decay": 0.1},  # decoupled, on weight matrices; init leaves it at 0
    # a fifth of the examples general conversations (the shipped replay set): a rehearsal, not a task lever, so
    # judged on the unseen slice like the rest
    "replay": lambda cfg: {"data.replay.share": 0.2},
    "select": lambda cfg: {},  # the step count, chosen by selection: `select_sets`
}
# Step selection: the run trains SELECT_RUN times plain's steps (init's epochs at most), evaluating init's held-out
# split (eval.full_every, each eval with its checkpoint) every 1/SELECT_EVALS of them, all kept; init's select_metric
# promotes the best.
# Each checkpoint is then scored on the unseen slice too: does the step the held-out split chose serve new phrasings?
SELECT_RUN, SELECT_EVALS = 3, 6


# ------------------------------------------------------------------------------------------------------------------
# statistics and the table


def bootstrap_ci(values: list[float], n_resamples: int = 2000, seed: int = 0, clusters: list | None = None
                 ) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean and the 2.5th / 97.5th percentiles of the means of resampled examples, or of whole
    `clusters` (one id per value) when given: shipsft's own intervals (eval/metrics.py: resampled_means)."""
    import numpy as np

    from shipsft.eval.metrics import resampled_means

    if not values:
        return math.nan, math.nan, math.nan
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(resampled_means(v, clusters, n_resamples, seed), [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


SLICES = {"seen": "eval_seen", "unseen": "eval_unseen"}  # slice -> the suite name `shipsft eval` gives the file


def slice_scores(predictions: list[dict], metric: str, key: str = "scores") -> dict[str, list[float]]:
    """Per slice (and "all"), the metric's score of every example, from predictions.jsonl rows (`key`: the tuned
    model's "scores" or the baseline's "base_scores")."""
    out: dict[str, list[float]] = {}
    for name, suite in SLICES.items():
        out[name] = [float(r[key][metric]) for r in predictions if r.get("suite") == suite and key in r]
    out["all"] = out["seen"] + out["unseen"]
    return out


def summarise(predictions: list[dict], metric: str, key: str = "scores", clusters: dict[str, str] | None = None
              ) -> dict[str, list[float]]:
    """Per slice (and "all"): [mean, lo, hi, n], the interval resampling `clusters` ({example key: pattern}, from
    `slice_clusters`) whole when given; an example without one is a pattern of its own."""
    scores = slice_scores(predictions, metric, key)
    if clusters is None:
        return {k: list(bootstrap_ci(v)) + [len(v)] for k, v in scores.items()}
    keys = {name: [example_key(f"{suite}|{r.get('source', '')}") for r in predictions
                   if r.get("suite") == suite and key in r] for name, suite in SLICES.items()}
    keys["all"] = keys["seen"] + keys["unseen"]
    return {k: list(bootstrap_ci(v, clusters=[clusters.get(x, x) for x in keys[k]])) + [len(v)]
            for k, v in scores.items()}


def patterns_of(train: list[Path], evals: Path) -> dict[str, int]:
    """{"<eval file name>:<line>": sentence pattern} of the examples in `evals`, found over `train`'s and `evals`'s
    together, as shipsft's own eval finds them (data/skeleton.py: pattern_marks): the units its intervals resample
    whole, since examples written from one template succeed or fail together."""
    from shipsft.data.formats import load_examples
    from shipsft.data.skeleton import pattern_marks, prompt_and_answers

    def load(paths: list[Path]) -> list:
        return load_examples(paths, "auto", "error", None, False).examples

    examples = load([evals])
    _, clusters = pattern_marks([prompt_and_answers(ex) for ex in load(train)],
                                [prompt_and_answers(ex) for ex in examples])
    return {Path(ex.source).name: c for ex, c in zip(examples, clusters)}


def slice_clusters(data: Path) -> dict[str, str]:
    """{example key: "<slice>:<pattern>"} of the eval slices in `data` (`patterns_of`, against data/train.jsonl):
    the bench's intervals resample them whole; resampled one by one, fifty examples from four templates would give
    an interval as narrow as fifty phrasings."""
    return {example_key(f"{suite}|{source}"): f"{name}:{c}" for name, suite in SLICES.items()
            for source, c in patterns_of([Path(data) / "train.jsonl"], Path(data) / f"{suite}.jsonl").items()}


def example_scores(predictions: list[dict], metric: str) -> dict[str, float]:
    """{"<suite>|<file name>:<line>": score} of the tuned model: the key pairs one contender's example with
    another's, also across calls with other --out folders."""
    return {example_key(f"{r['suite']}|{r['source']}"): float(r["scores"][metric]) for r in predictions
            if r.get("suite") in SLICES.values() and "scores" in r}


def example_key(key: str) -> str:
    """"eval_seen|/out/task/data/eval_seen.jsonl:3" -> "eval_seen|eval_seen.jsonl:3" (rows saved before the key
    dropped the folder pair with rows saved after it)."""
    suite, _, source = key.partition("|")
    return f"{suite}|{Path(source).name}"


def paired_delta(a: dict[str, float], b: dict[str, float], n_resamples: int = 2000, seed: int = 0,
                 clusters: dict[str, str] | None = None) -> dict:
    """Per slice (and "all"): the mean of a - b over the examples both scored, with a paired bootstrap 95% CI
    (resampling examples, or whole `clusters` when given, the same draws for both, so the variance the two share
    cancels), as [mean, lo, hi, n]. "unseen-seen" is how much more a gains over b on the unseen slice than on the
    seen one (the issue's "the unseen slice gains the most"): the two slices hold different examples, so each is
    resampled on its own and the means subtracted."""
    import numpy as np

    from shipsft.eval.metrics import resampled_means

    units = (lambda keys: [clusters.get(k, k) for k in keys]) if clusters else (lambda keys: None)
    out, deltas, resampled, unit = {}, {}, {}, {}
    for name, suite in [*SLICES.items(), ("all", None)]:
        keys = sorted(k for k in a if k in b and (suite is None or k.split("|", 1)[0] == suite))
        if not keys:
            out[name] = [math.nan, math.nan, math.nan, 0]
            continue
        d = deltas[name] = np.array([a[k] - b[k] for k in keys])
        unit[name] = units(keys)
        resampled[name] = resampled_means(d, unit[name], n_resamples, seed)
        lo, hi = np.percentile(resampled[name], [2.5, 97.5])
        out[name] = [float(d.mean()), float(lo), float(hi), len(d)]
    if "seen" in resampled and "unseen" in resampled:
        # a second generator for the seen slice: the same seed would draw the same index rows for two slices of
        # one size and correlate their resamples
        seen = resampled_means(deltas["seen"], unit["seen"], n_resamples, seed + 1)
        lo, hi = np.percentile(resampled["unseen"] - seen, [2.5, 97.5])
        out["unseen-seen"] = [out["unseen"][0] - out["seen"][0], float(lo), float(hi),
                              out["seen"][3] + out["unseen"][3]]
    else:
        out["unseen-seen"] = [math.nan, math.nan, math.nan, 0]
    return out


def scored_by_task(results: list[dict]) -> dict[str, dict[str, dict]]:
    """{task: {contender: result}} of the contenders that ran and have per-example scores to pair."""
    out: dict[str, dict[str, dict]] = {}
    for r in results:
        if r.get("status") == "ok" and r.get("example_scores"):
            out.setdefault(r["task"], {})[r["contender"]] = r
    return out


def paired_rows(a: dict, b: dict) -> dict:
    """`paired_delta` of two result rows, resampling the sentence patterns of their task's eval slices (the rows'
    `clusters`; rows saved before they carried them resample examples)."""
    return paired_delta(a["example_scores"], b["example_scores"], clusters=a.get("clusters") or b.get("clusters"))


def delta_cells(a: dict, b: dict) -> str:
    """"seen | unseen | all | unseen-seen" cells of a minus b, paired by example: difference [95% CI]; the last is
    the unseen slice's gain minus the seen slice's."""
    d = paired_rows(a, b)
    return " | ".join("–" if not d[k][3] else f"{d[k][0]:+.1%} [{d[k][1]:+.1%}, {d[k][2]:+.1%}]"
                      for k in ("seen", "unseen", "all", "unseen-seen"))


def versus_pairs(results: list[dict]) -> list[tuple[str, dict, dict]]:
    """(task, shipsft's row, the best TRL contender's row: the highest mean over all eval examples) per task."""
    out = []
    for task, ok in scored_by_task(results).items():
        trl = [r for c, r in ok.items() if c.startswith("trl")]
        if "shipsft" in ok and trl:
            out.append((task, ok["shipsft"], max(trl, key=lambda r: r["scores"]["all"][0])))
    return out


def lever_pairs(results: list[dict]) -> list[tuple[str, str, dict, dict]]:
    """(task, lever, shipsft+<lever>'s row, plain shipsft's row) per task and lever."""
    return [(task, name.partition("+")[2], r, ok["shipsft"]) for task, ok in scored_by_task(results).items()
            for name, r in ok.items() if "shipsft" in ok and name.startswith("shipsft+")]


def versus_table(results: list[dict]) -> str:
    """Per task: shipsft minus the best TRL contender, paired by example."""
    lines = ["| task | shipsft vs | seen: difference [95% CI] | unseen | all | unseen gain - seen gain |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {task} | {best['contender']} | {delta_cells(ours, best)} |"
              for task, ours, best in versus_pairs(results)]
    return "\n".join(lines)


def levers_table(results: list[dict]) -> str:
    """Per task and lever: shipsft+<lever> minus plain shipsft, paired by example, with the lever's steps."""
    lines = ["| task | lever | seen: difference [95% CI] | unseen | all | unseen gain - seen gain | steps |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {task} | {lever} | {delta_cells(r, plain)} | {r.get('steps', '?')} |"
              for task, lever, r, plain in lever_pairs(results)]
    return "\n".join(lines)


def seen_unseen_gap(scores: dict) -> float:
    """The seen slice's mean minus the unseen slice's (nan when a slice is empty)."""
    return scores["seen"][0] - scores["unseen"][0] if scores["seen"][3] and scores["unseen"][3] else math.nan


def cell(stat: list | None) -> str:
    if not stat or stat[3] == 0:
        return "–"
    mean, lo, hi = stat[:3]
    return f"{mean:.1%} [{lo:.0%}, {hi:.0%}]"


def table(results: list[dict]) -> str:
    """The markdown table: one row per task and contender (failures with their reason)."""
    head = ("| task | contender | primary metric | seen [95% CI] | unseen [95% CI] | all [95% CI] | gap seen-unseen "
            "| init's estimate (split) | estimate - unseen | train s | steps | precision |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s = r.get("scores")
        if r.get("status") != "ok" or not s:
            lines.append(f"| {r['task']} | {r['contender']} | {r.get('metric', '')} | failed: "
                         f"{_one_line(r.get('error', r.get('status', '?')))} | | | | | | | | |")
            continue
        gap = seen_unseen_gap(s)
        steps = f"{r.get('steps', '?')}" + (f" (capped from {r['planned_steps']})" if r.get("capped") else "")
        train_s = f"{r['train_s']:.0f}" if isinstance(r.get("train_s"), (int, float)) else "–"
        estimate, error = estimate_cells(r)
        lines.append(f"| {r['task']} | {r['contender']} | {r['metric']} | {cell(s['seen'])} | {cell(s['unseen'])} | "
                     f"{cell(s['all'])} | {'–' if math.isnan(gap) else f'{gap:+.1%}'} | {estimate} | {error} | "
                     f"{train_s} | {steps} | {r.get('precision', '?')} |")
    return "\n".join(lines)


def estimate_cells(r: dict) -> tuple[str, str]:
    """The table's "init's estimate" and "estimate - unseen" cells: with their 95% CIs (resampling patterns) and how
    many patterns the split held, where the row has the held-out scores (rows saved before: the point values)."""
    if not isinstance(r.get("estimate"), (int, float)):
        return "–", "–"
    if not r.get("estimate_ci"):
        error = f"{r['estimate_error']:+.1%}" if isinstance(r.get("estimate_error"), (int, float)) else "–"
        return f"{r['estimate']:.1%} ({r.get('split', '?')})", error
    (lo, hi), (err, elo, ehi) = r["estimate_ci"], estimate_error(r)
    return (f"{r['estimate']:.1%} [{lo:.0%}, {hi:.0%}] ({r.get('split', '?')}, {r['estimate_patterns']} patterns)",
            "–" if math.isnan(err) else f"{err:+.1%} [{elo:+.0%}, {ehi:+.0%}]")


def patterns_needed(r: dict, tol: float = 0.10, z: float = 1.645) -> tuple[float, int]:
    """How far the row's score moves between sentence patterns (the standard deviation of its per-pattern means on
    the unseen slice) and how many patterns drawn at random an estimate needs to fall within `tol` of the mean in 9
    draws of 10: (z * sd / tol)^2 (the normal approximation; patterns weighted equally). (nan, 0) without two."""
    import statistics

    clusters, per = r.get("clusters") or {}, {}
    for k, v in r.get("example_scores", {}).items():
        if k.split("|", 1)[0] == SLICES["unseen"] and k in clusters:
            per.setdefault(clusters[k], []).append(v)
    if len(per) < 2:
        return math.nan, 0
    sd = statistics.stdev(sum(v) / len(v) for v in per.values())
    return sd, math.ceil((z * sd / tol) ** 2)


def estimate_rows(results: list[dict]) -> list[dict]:
    """The shipsft rows (plain, levers, split seeds) whose held-out estimate has its interval."""
    return [r for r in results if r.get("status") == "ok" and r["contender"].startswith("shipsft")
            and r.get("estimate_ci") and r.get("scores")]


def estimate_table(results: list[dict]) -> str:
    """Every shipsft row's held-out estimate against the unseen slice (init's split seed 0, `--split-seeds` others,
    and the levers'), with the two counts the issue's criterion and its honest reading need: how many estimates fall
    within 0.10 of the unseen score, and how many error intervals hold zero."""
    rows = estimate_rows(results)
    lines = ["| task | contender | split | estimate [95% CI] | unseen [95% CI] | estimate - unseen [95% CI] | "
             "patterns' SD; patterns needed |", "|---|---|---|---|---|---|---|"]
    within = covered = 0
    for r in rows:
        (lo, hi), (err, elo, ehi) = r["estimate_ci"], estimate_error(r)
        within += abs(err) <= 0.10
        covered += elo <= 0 <= ehi
        sd, need = patterns_needed(r)
        lines.append(f"| {r['task']} | {r['contender']} | {r['split']}, {r['estimate_patterns']} patterns | "
                     f"{r['estimate']:.1%} [{lo:.0%}, {hi:.0%}] | {cell(r['scores']['unseen'])} | "
                     f"{err:+.1%} [{elo:+.0%}, {ehi:+.0%}] | {sd:.2f}; {need} |")
    lines.append(f"\nwithin 0.10 of the unseen score: {within} of {len(rows)}; the error's interval holds zero: "
                 f"{covered} of {len(rows)}. Patterns needed: held-out patterns an estimate needs to fall within 0.10 "
                 "in 9 draws of 10, from how much the score moves between the unseen slice's patterns")
    return "\n".join(lines)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[:limit] + "..."


def cap_steps(planned: int, s_per_step: float, budget_s: float) -> tuple[int, bool]:
    """(steps to run, capped?): the planned steps, or as many as fit in BUDGET_SHARE of the budget (at least 1)."""
    fit = max(1, int(BUDGET_SHARE * budget_s / s_per_step)) if s_per_step > 0 else planned
    return (fit, True) if fit < planned else (planned, False)


# ------------------------------------------------------------------------------------------------------------------
# subprocesses


class Failed(Exception):
    pass


def sh(cmd: list[str], cwd: Path, timeout_s: float, log: Path, env: dict | None = None, ok=(0,)) -> int:
    """Run a command, its output to `log`; a non-zero exit (other than `ok`) or a timeout raises Failed with the
    last lines of the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s,
                                  env=env).returncode
        except subprocess.TimeoutExpired:
            raise Failed(f"timed out after {timeout_s:.0f} s: {' '.join(cmd[:4])} (log: {log})") from None
    if code not in ok:
        tail = [x for x in log.read_text().splitlines() if x.strip()][-3:]
        raise Failed(f"exit {code}: {' '.join(cmd[:3])}: {' / '.join(tail)} (log: {log})")
    return code


def shipsft_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "shipsft", *args]


def child_env(tcmalloc: bool) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["SHIPSFT_ALLOCATOR"] = "tcmalloc" if tcmalloc and Path(TCMALLOC).exists() else "system"
    if tcmalloc and Path(TCMALLOC).exists():
        env["LD_PRELOAD"] = TCMALLOC
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def lever_sets(lever: str | None, cfg: dict) -> list[str]:
    """`--set` arguments that turn init's config into the lever's (none for plain shipsft)."""
    if lever is None:
        return []
    return [x for k, v in LEVERS[lever](cfg).items() for x in ("--set", f"{k}={v}")]


def select_sets(steps: int, planned: int) -> tuple[int, bool, list[str]]:
    """The selection lever's steps (SELECT_RUN x `steps`, at most `planned`), whether that caps the run, and the
    `--set` arguments for its checkpoints: one every 1/SELECT_EVALS of the run, all kept."""
    steps = min(planned, steps * SELECT_RUN)
    every = max(1, math.ceil(steps / SELECT_EVALS))
    return steps, steps < planned, ["--set", f"eval.full_every={every}",
                                    "--set", f"train.keep_checkpoints={math.ceil(steps / every) + 1}"]


def contender_spec(name: str) -> tuple[str | None, int]:
    """"shipsft+neftune" -> ("neftune", 0); "shipsft@split2" -> (None, 2): the lever and init's split seed."""
    name, _, seed = name.partition("@split")
    return name.partition("+")[2] or None, int(seed or 0)


def run_shipsft(a, data: Path, work: Path, budget_s: float, metric: str, lever: str | None = None,
                split_seed: int = 0, steps: int | None = None) -> dict:
    """init, then train on its config (with the lever's change and init's split seed): capped to the steps that fit
    `budget_s` by a calibration, or to `steps` without one (`--lever-steps plain`)."""
    import yaml

    log = work / "log.txt"
    sh(shipsft_cmd("init", str(data / "train.jsonl"), "--out", str(work / "config.yaml"), "--model", a.model,
                   "--seed", str(split_seed), "--force"), work, 600, log)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    sets = lever_sets(lever, cfg)
    n_train = sum(1 for line in Path(work / cfg["data"]["train"]).read_text().splitlines() if line.strip())
    batch, epochs = cfg["train"]["batch_size"], cfg["train"]["epochs"]
    planned = math.ceil(epochs * math.ceil(n_train / batch))
    if steps is None:  # calibration: the same config and data, a few steps, no evals (not part of the budget)
        sh(shipsft_cmd("train", "config.yaml", *sets, "--skip-audit", "--set", f"train.max_steps={CALIBRATION_STEPS}",
                       "--set", "eval.suites=[]", "--set", "eval.gates=[]", "--set", "eval.select_metric=null",
                       "--set", "output.name=calibration"), work, 1800, log, child_env(True))
        per_step = step_seconds(read_jsonl(work / "runs" / "calibration" / "metrics.jsonl"))
        steps, capped = cap_steps(planned, per_step, budget_s)
    else:
        per_step, steps, capped = None, min(steps, planned), steps < planned
    if lever == "select":
        steps, capped, more = select_sets(steps, planned)
        sets += more
    extra = ["--set", f"train.max_steps={steps}"] if capped else []
    code = sh(shipsft_cmd("train", "config.yaml", *sets, *extra, "--set", "output.name=run"), work,
              budget_s * 3 + 3600, log, child_env(True), ok=(0, 3))  # 3: trained, no checkpoint passed the gates
    records = read_jsonl(work / "runs" / "run" / "metrics.jsonl")
    done = [r for r in records if "loss" in r]
    promo = work / "runs" / "run" / "promotion.json"
    return {"target": str(work / "runs" / "run"), "steps": done[-1]["step"] if done else 0, "planned_steps": planned,
            "capped": capped, "s_per_step": per_step, "train_s": train_seconds(done),
            "precision": _precision(work / "runs" / "run"), "exit_code": code,
            "promoted": json.loads(promo.read_text()).get("promoted") if promo.exists() else None,
            "split": init_split(work / "config.yaml"), **init_estimate(work / "runs" / "run", metric)}


def init_split(config: Path) -> str:
    """How `shipsft init` held its eval split out: "patterns" (whole sentence patterns) or "random" (its comment)."""
    text = " ".join(line.strip().lstrip("#").strip() for line in config.read_text().splitlines())
    return "patterns" if "held out whole sentence patterns" in text else "random"


def init_estimate(run: Path, metric: str) -> dict:
    """What the run's own eval said about the checkpoint it chose: `heldout/<metric>` (init's held-out split) at
    promotion.json's step, the number a new user reads and ships on; the bench compares it with the unseen slice.
    With its 95% CI resampling the held-out split's sentence patterns (`estimate_ci`, `heldout_ci`) and how many
    patterns it held (`estimate_patterns`): three held-out patterns are an estimate from three phrasings."""
    promo = run / "promotion.json"
    step = json.loads(promo.read_text()).get("step") if promo.exists() else None
    full = [e for e in read_jsonl(run / "eval.jsonl") if e.get("kind") == "full" and e.get("step") == step]
    value = full[-1]["metrics"].get(f"heldout/{metric}") if full else None
    held = heldout_scores(run, metric, step)
    if not held:
        return {"estimate": value, "estimate_step": step}
    _, lo, hi = bootstrap_ci(held["scores"], clusters=held["units"])
    return {"estimate": value, "estimate_step": step, "estimate_ci": [lo, hi],
            "estimate_patterns": len(set(held["units"])), "heldout": held}


def heldout_scores(run: Path, metric: str, step: int | None) -> dict:
    """{"scores": [...], "units": [...]}: the held-out split's score of every example at `step` (the run's
    predictions.jsonl) and its sentence pattern (`patterns_of`, against the run's training file), the units its
    intervals resample; {} when the run kept no scores for it. Paths are the config's, relative to the folder init
    wrote it in (the one above the run's output folder)."""
    import yaml

    rows = [r for r in read_jsonl(run / "predictions.jsonl") if r.get("kind") == "full" and r.get("step") == step
            and r.get("suite") == "heldout" and metric in r.get("scores", {})]
    if not rows:
        return {}
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    split = [x["data"] for x in cfg["eval"]["suites"] if x["name"] == "heldout"]
    if not split:
        return {}
    train = cfg["data"]["train"]
    of = patterns_of([run.parents[1] / f for f in ([train] if isinstance(train, str) else train)],
                     run.parents[1] / split[0])
    return {"scores": [float(r["scores"][metric]) for r in rows],
            "units": [of.get(Path(r["source"]).name, r["source"]) for r in rows]}


def estimate_error(r: dict, n_resamples: int = 2000, seed: int = 0) -> list[float]:
    """[mean, lo, hi] of init's estimate minus the unseen slice's score (the row's `heldout` scores and its unseen
    examples): two different sets of phrasings, each resampled by its own patterns, so the interval holds the
    uncertainty of both. [nan] * 3 where the row lacks either."""
    import numpy as np

    from shipsft.eval.metrics import resampled_means

    held, clusters = r.get("heldout"), r.get("clusters") or {}
    unseen = sorted(k for k in r.get("example_scores", {}) if k.split("|", 1)[0] == SLICES["unseen"])
    if not held or not unseen:
        return [math.nan] * 3
    h = np.asarray(held["scores"], dtype=np.float64)
    u = np.asarray([r["example_scores"][k] for k in unseen], dtype=np.float64)
    lo, hi = np.percentile(resampled_means(h, held["units"], n_resamples, seed)
                           - resampled_means(u, [clusters.get(k, k) for k in unseen], n_resamples, seed + 1),
                           [2.5, 97.5])
    return [float(h.mean() - u.mean()), float(lo), float(hi)]


def step_seconds(records: list[dict]) -> float:
    """Seconds per optimizer step from metrics.jsonl (the loop's cumulative trained tokens / s), by
    `calibrated_step_s`."""
    from bench.machine import step_times

    times = step_times(records)
    if not times:
        raise Failed("calibration wrote no timed steps")
    return calibrated_step_s(times)


def calibrated_step_s(step_times: list[float]) -> float:
    """The mean time of the timed steps after the first (warm-up: allocations, first-touch of the weights); the
    first alone when it is the only one (a step that slow stopped the calibration)."""
    return statistics.mean(step_times[1:] or step_times)


def train_seconds(done: list[dict]) -> float | None:
    if not done or not done[-1].get("trained_tok_s"):
        return None
    return sum(r["trained_tokens"] for r in done) / done[-1]["trained_tok_s"]


def _precision(run: Path) -> str:
    """What the run's manifest says it trained in ("torch.float32" -> fp32, "torch.bfloat16" -> bf16)."""
    manifest = json.loads((run / "manifest.json").read_text()) if (run / "manifest.json").exists() else {}
    return {"torch.float32": "fp32", "torch.bfloat16": "bf16"}.get(manifest.get("precision"), "?")


def run_trl(a, contender: str, data: Path, work: Path, budget_s: float) -> dict:
    spec = {"contender": contender, "model": a.model, "train": str(data / "train.jsonl"), "out": str(work),
            "budget_s": budget_s}
    sh([sys.executable, str(Path(__file__).resolve()), "--trl-worker", json.dumps(spec)], work, budget_s * 3 + 3600,
       work / "log.txt", child_env(contender == "trl-recipe"))
    return {**json.loads((work / "result-train.json").read_text()), "target": str(work / "adapter")}


def trl_worker(spec: dict) -> None:
    """In its own process: calibrate, then train with SFTTrainer, save the adapter and the tokenizer."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from shipsft.config import ModelConfig
    from shipsft.model.locate import resolve_model_dir

    model_dir = resolve_model_dir(ModelConfig(path=spec["model"]))
    out = Path(spec["out"])
    records = read_jsonl(Path(spec["train"]))
    defaults = spec["contender"] == "trl-defaults"
    if defaults:
        ds = Dataset.from_list([{"messages": r["messages"]} for r in records])
        lora = LoraConfig(task_type="CAUSAL_LM")
        args = {}
    else:
        ds = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in records])
        lora = LoraConfig(**TRL_RECIPE, task_type="CAUSAL_LM")
        args = dict(learning_rate=2e-4, num_train_epochs=1, per_device_train_batch_size=8, bf16=False,
                    gradient_checkpointing=False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    times: list[float] = []

    class StepTimer(TrainerCallback):
        calibrating = True

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **k):
            times.append(time.perf_counter() - self.t0)
            # a contender whose steps take minutes (bf16 emulated: TRL's defaults here, ~4 min per step of 8) would
            # spend more on its calibration than on its budget: once the timed steps pass the limit, stop timing
            if self.calibrating and sum(times) > CALIBRATION_MAX_S:
                control.should_training_stop = True

    def trainer(max_steps: int):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        conf = SFTConfig(output_dir=str(out / "trl"), report_to="none", save_strategy="no", use_cpu=True,
                         seed=0, max_steps=max_steps, **args)
        return SFTTrainer(model=model, args=conf, train_dataset=ds, processing_class=tok, peft_config=lora,
                          callbacks=[StepTimer()])

    calib = trainer(CALIBRATION_STEPS)
    calib.train()
    per_step = calibrated_step_s(times)
    del times[:]  # from here on: the real run's step times, written to result-train.json
    StepTimer.calibrating = False
    conf = calib.args
    planned = math.ceil(conf.num_train_epochs * math.ceil(len(ds) / (conf.per_device_train_batch_size *
                                                                         conf.gradient_accumulation_steps)))
    precision = "bf16" if conf.bf16 else "fp32"
    del calib
    steps, capped = cap_steps(planned, per_step, spec["budget_s"])
    t = trainer(steps if capped else -1)
    res = t.train()
    t.save_model(str(out / "adapter"))
    tok.save_pretrained(str(out / "adapter"))
    (out / "result-train.json").write_text(json.dumps({
        "steps": t.state.global_step, "planned_steps": planned, "capped": capped, "s_per_step": per_step,
        "train_s": res.metrics.get("train_runtime"), "precision": precision,
        "step_s": [round(x, 3) for x in times]}))


def evaluate(a, target: str, data: Path, work: Path, metrics: list[str], slices=("seen", "unseen"),
             out: str = "eval") -> list[dict]:
    """`shipsft eval` on the slices (both by default), with the task's metrics; returns its predictions.jsonl rows
    (written under work/`out`)."""
    out = work / out
    args = ["eval", target, *(x for k in slices for x in ("--suite", str(data / f"eval_{k}.jsonl"))),
            "--out", str(out / "eval.json")]
    for m in metrics:
        args += ["--metric", m]
    if a.eval_limit:
        args += ["--limit", str(a.eval_limit)]
    sh(shipsft_cmd(*args), work, 7200, work / "log.txt", child_env(True))
    return [r for r in read_jsonl(out / "predictions.jsonl") if r.get("kind") == "eval"]


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


# ------------------------------------------------------------------------------------------------------------------
# one task


def prepare_task(name: str, seed: int, folder: Path, train_limit: int | None, eval_limit: int | None):
    from bench.recipe_tasks import TASKS, write_task

    task = TASKS[name](seed)
    if train_limit:
        task.train = task.train[:train_limit]
    if eval_limit:
        task.eval = task.eval_slice("seen")[:eval_limit] + task.eval_slice("unseen")[:eval_limit]
    write_task(task, folder)
    return task


def run_task(a, name: str) -> list[dict]:
    root = Path(a.out).resolve() / name  # absolute: every contender runs with its own folder as the cwd
    data = root / "data"
    task = prepare_task(name, a.seed, data, a.train_limit, a.eval_limit)
    metric = task.primary_metric
    print(f"== {name}: {len(task.train)} train, {len(task.eval_slice('seen'))} seen + "
          f"{len(task.eval_slice('unseen'))} unseen eval; primary metric {metric}", flush=True)
    clusters = slice_clusters(data)
    results, base = [], None
    for contender in a.contenders:
        work = root / contender
        shutil.rmtree(work, ignore_errors=True)  # a fresh folder: a run folder written into twice mixes its curves
        work.mkdir(parents=True)
        r = {"task": name, "contender": contender, "metric": metric}
        t0 = time.perf_counter()
        try:
            lever, split_seed = contender_spec(contender) if contender.startswith("shipsft") else (None, 0)
            variant = contender.startswith("shipsft") and contender != "shipsft"  # a lever or a split seed
            steps = plain_steps(a, name, results) if variant and a.lever_steps == "plain" else None
            trained = (run_shipsft(a, data, work, a.budget_min * 60, metric, lever, split_seed, steps)
                       if contender.startswith("shipsft") else run_trl(a, contender, data, work, a.budget_min * 60))
            r.update(trained)
            preds = evaluate(a, trained["target"], data, work, task.metrics)
            r["scores"] = summarise(preds, metric, clusters=clusters)
            if r.get("estimate") is not None and r["scores"]["unseen"][3]:
                r["estimate_error"] = r["estimate"] - r["scores"]["unseen"][0]  # init's estimate minus the truth
            r["example_scores"] = example_scores(preds, metric)
            r["clusters"] = clusters
            if lever == "select":
                r["curve"] = step_curve(a, Path(trained["target"]), data, work, task.metrics, r, clusters)
            if base is None and any("base_scores" in p for p in preds):
                base = {"task": name, "contender": "base model (no training)", "metric": metric, "status": "ok",
                        "scores": summarise(preds, metric, "base_scores", clusters), "steps": 0, "train_s": 0,
                        "precision": r.get("precision")}
            r["status"] = "ok"
        except Failed as e:
            r.update(status="failed", error=str(e))
        except Exception as e:  # noqa: BLE001 - one contender's bug must not lose the others' results
            r.update(status="failed", error=f"{type(e).__name__}: {e}")
        r["wall_s"] = round(time.perf_counter() - t0, 1)
        (work / "result.json").write_text(json.dumps(r, indent=2))
        save_results(a.results, name, ([base] if base else []) + results + [r])  # as it goes: a crash keeps these
        print(f"  {contender}: {r['status']}" + (f" {cell(r['scores']['all'])} all" if r.get("scores") else
                                                  f" ({r.get('error', '')})") + f", {r['wall_s']:.0f} s wall",
              flush=True)
        results.append(r)
    return ([base] if base else []) + results


def step_curve(a, run: Path, data: Path, work: Path, metrics: list[str], r: dict, clusters: dict) -> list[dict]:
    """The selection lever's checkpoints: per step, the held-out split's score (the run's eval.jsonl: what selection
    read) and the unseen slice's [mean, lo, hi, n] (each checkpoint scored by `shipsft eval`; the promoted step's is
    the row's own), and whether it was the one promoted."""
    held = {e["step"]: e["metrics"].get(f"heldout/{r['metric']}") for e in read_jsonl(run / "eval.jsonl")
            if e.get("kind") == "full" and e.get("step")}
    curve = []
    for step in sorted(held):
        chosen = step == r.get("estimate_step")
        ckpt = run / "checkpoints" / f"step-{step}"
        if not chosen and not ckpt.is_dir():
            continue
        unseen = r["scores"]["unseen"] if chosen else summarise(
            evaluate(a, str(ckpt), data, work, metrics, ("unseen",), f"eval-step-{step}"), r["metric"],
            clusters=clusters)["unseen"]
        curve.append({"step": step, "heldout": held[step], "unseen": unseen, "promoted": chosen})
    return curve


def selection_table(results: list[dict]) -> str:
    """Per task with a selection row: each checkpoint's held-out score (what selection read) and unseen score, the
    promoted one marked, next to plain shipsft's steps and unseen score."""
    lines = ["| task | step | held-out split (selection reads) | unseen slice [95% CI] | |", "|---|---|---|---|---|"]
    for task, ok in scored_by_task(results).items():
        sel, plain = ok.get("shipsft+select"), ok.get("shipsft")
        if not sel or not sel.get("curve"):
            continue
        if plain:
            lines.append(f"| {task} | {plain.get('steps', '?')} | {plain.get('estimate', math.nan):.1%} | "
                         f"{cell(plain['scores']['unseen'])} | plain shipsft |")
        for c in sel["curve"]:
            lines.append(f"| {task} | {c['step']} | {c['heldout']:.1%} | {cell(c['unseen'])} | "
                         f"{'promoted by selection' if c['promoted'] else ''} |")
    return "\n".join(lines)


def plain_steps(a, task: str, results: list[dict]) -> int:
    """The steps plain shipsft trained on `task`: its row in this call's results, else in --results."""
    rows = results + [r for r in (saved_results(a.results) if a.results else []) if r["task"] == task]
    plain = [r for r in rows if r["contender"] == "shipsft" and r.get("status") == "ok" and r.get("steps")]
    if not plain:
        raise Failed(f"--lever-steps plain: no plain shipsft row for {task} in this call or in {a.results}; run "
                     "`--contenders shipsft` first")
    return int(plain[0]["steps"])


def save_results(folder: str | None, task: str, rows: list[dict]) -> None:
    """<folder>/recipe-<task>.json: the task's rows so far (scores, per-example scores for the paired tables), with
    the machine, date and command (bench/machine.py); `--table` prints the tables of every such file. Rows of
    contenders this call did not run stay (a levers-only call, `--contenders --levers prompt-loss`, pairs its rows
    with the plain shipsft row already there), each row keeping the machine, date and command that measured it."""
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    from bench.machine import command, stamp

    path = Path(folder) / f"recipe-{task}.json"
    ran = {r["contender"] for r in rows}
    kept = []
    if path.exists():
        old = json.loads(path.read_text())
        kept = [{**r, "measured": r.get("measured") or {k: old.get(k) for k in ("machine", "date", "command")}}
                for r in old["rows"] if r["contender"] not in ran]
    now = {**stamp(), "command": command()}
    rows = [{**r, "measured": r.get("measured") or now} for r in rows]
    base = [r for r in kept + rows if r["contender"].startswith("base")]
    order = {c: k for k, c in enumerate(CONTENDERS)}  # the plain contenders in their order, then the levers
    rest = sorted((r for r in kept + rows if not r["contender"].startswith("base")),
                  key=lambda r: (order.get(r["contender"], len(order)), r["contender"]))
    blob = {"task": task, **now, "rows": base[:1] + rest}
    path.write_text(json.dumps(blob, indent=1) + "\n")


def saved_results(folder: str) -> list[dict]:
    """Every row of every <folder>/recipe-<task>.json, in task order (example keys as `example_key` writes them)."""
    rows = [r for f in sorted(Path(folder).glob("recipe-*.json")) for r in json.loads(f.read_text())["rows"]]
    return [{**r, "example_scores": {example_key(k): v for k, v in r["example_scores"].items()}}
            if r.get("example_scores") else r for r in rows]


def paired_summary(results: list[dict], sources: list[str]) -> dict:
    """What the printed tables compute from the rows, for a results file (`--table --json`): each contender's
    seen-minus-unseen gap, shipsft minus the best TRL contender and each lever minus shipsft, paired by example
    ([mean, lo, hi, n] per slice), with the machine and dates of the rows they were computed from."""
    gaps = [{"task": r["task"], "contender": r["contender"], "gap": seen_unseen_gap(r["scores"])}
            for r in results if r.get("status") == "ok" and r.get("scores")
            and not math.isnan(seen_unseen_gap(r["scores"]))]
    versus = [{"task": task, "vs": best["contender"], **paired_rows(ours, best)}
              for task, ours, best in versus_pairs(results)]
    levers = [{"task": task, "lever": lever, **paired_rows(r, plain)} for task, lever, r, plain in lever_pairs(results)]
    estimates = [{"task": r["task"], "contender": r["contender"], "split": r.get("split"),
                  "patterns": r["estimate_patterns"], "estimate": r["estimate"], "estimate_ci": r["estimate_ci"],
                  "unseen": r["scores"]["unseen"], "error": estimate_error(r),
                  **dict(zip(("pattern_sd", "patterns_needed"), patterns_needed(r)))} for r in estimate_rows(results)]
    from bench.machine import command

    measured = [json.loads(Path(f).read_text()) for f in sources]
    return {"machine": "; ".join(sorted({m["machine"] for m in measured})), "command": command(),
            "date": max((m["date"] for m in measured), default=""), "computed_from": {
                f: m["date"] for f, m in zip(sources, measured)}, "gaps": gaps, "versus": versus, "levers": levers,
            "estimates": estimates, "selection": [{"task": r["task"], "steps": r.get("steps"), "curve": r["curve"]}
                                                  for r in results if r.get("status") == "ok" and r.get("curve")]}


def print_tables(results: list[dict]) -> None:
    print(table(results))
    print("\nshipsft minus the best TRL contender, paired by eval example:\n")
    print(versus_table(results))
    if any("+" in r["contender"] for r in results):
        print("\nEach lever minus shipsft's init config, paired by eval example:\n")
        print(levers_table(results))
    if any(r.get("curve") for r in results):
        print("\nStep selection: every checkpoint of the selection run, what selection read and the unseen slice:\n")
        print(selection_table(results))
    if any(r.get("estimate_ci") for r in results):
        print("\ninit's held-out estimate against the unseen slice, both resampling sentence patterns:\n")
        print(estimate_table(results))


def main(argv: list[str] | None = None) -> int:
    from bench.machine import cpu_name
    from bench.recipe_tasks import TASKS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="all", choices=[*TASKS, "all"])
    ap.add_argument("--budget-min", type=float, default=10.0, help="optimizer-step time per contender (minutes)")
    ap.add_argument("--seed", type=int, default=0, help="task generator seed")
    ap.add_argument("--out", default="bench_out/recipe")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--contenders", nargs="*", default=CONTENDERS, choices=CONTENDERS)
    ap.add_argument("--levers", nargs="*", default=[], choices=[*LEVERS, "all"], help=(
        "also run shipsft's config with one change each (shipsft+<lever>) and print each minus shipsft"))
    ap.add_argument("--lever-steps", choices=["budget", "plain"], default="budget", help=(
        "levers and split seeds train as many steps as fit the budget (a calibration each), or exactly as many as "
        "plain shipsft did (its row in this call or in --results): equal compute for variants that leave a step's "
        "cost as it is (neftune, dropout, weight-decay, replay, --split-seeds), and no calibration for a loaded "
        "machine to skew"))
    ap.add_argument("--split-seeds", nargs="*", type=int, default=[], help=(
        "also run shipsft with init's eval split drawn with these seeds (shipsft@split<seed>): how far init's "
        "estimate falls from the unseen slice when other sentence patterns are held out"))
    ap.add_argument("--train-limit", type=int, help="only the first N training examples (harness checks)")
    ap.add_argument("--eval-limit", type=int, help="only the first N examples of each eval slice")
    ap.add_argument("--results", default="bench/results", help=(
        "where each task's rows go as they finish (recipe-<task>.json); '' = nowhere"))
    ap.add_argument("--table", action="store_true", help="print the tables of every --results file and exit")
    ap.add_argument("--json", type=Path, help=(
        "with --table: also write the paired tables' numbers here (bench/results/recipe_paired.json)"))
    ap.add_argument("--trl-worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.table:
        print_tables(saved_results(a.results))
        if a.json:
            sources = sorted(str(f) for f in Path(a.results).glob("recipe-*.json"))
            a.json.write_text(json.dumps(paired_summary(saved_results(a.results), sources), indent=1) + "\n")
        return 0
    a.contenders = [*a.contenders, *(f"shipsft+{x}" for x in (list(LEVERS) if "all" in a.levers else a.levers)),
                    *(f"shipsft@split{s}" for s in a.split_seeds)]
    if a.trl_worker:
        trl_worker(json.loads(a.trl_worker))
        return 0
    import torch

    started = time.perf_counter()
    print(f"CPU: {cpu_name()} ({os.cpu_count()} threads, {torch.get_num_threads()} torch threads); torch "
          f"{torch.__version__}; budget {a.budget_min:g} min of optimizer steps per contender; load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results = []
    for name in (list(TASKS) if a.task == "all" else [a.task]):
        results += run_task(a, name)
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; {time.perf_counter() - started:.0f} s in all\n")
    tasks = {r["task"] for r in results}  # with the rows measured before, when they are kept in --results
    print_tables([r for r in saved_results(a.results) if r["task"] in tasks] if a.results else results)
    return 0 if all(r.get("status") == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
