"""How much of an outcome's variance each lever explains, what the seeds alone do (the noise floor), which trial to
pick, and the Pareto front of a task metric against KL to the base. Plain numpy; no file is read or written here.

Variance decomposition (eta-squared, from a main-effects ANOVA over the trials):

    SS_total  = sum (y - mean y)^2                                   over every finished trial
    SS_seed   = sum over cells of sum (y - mean y of the cell)^2     trials that differ only by train.seed: the
                                                                     noise floor (pure error)
    SS_levers = SS_total - RSS of y ~ 1 + one-hot levels of every lever (least squares)
    SS_inter  = RSS - SS_seed                                        lever x lever interactions (a grid's lack of
                                                                     fit; 0 one lever at a time)
    eta^2     = SS / SS_total, so  sum over levers + interactions + seed = 1

SS_levers is split between the levers by averaging each lever's added explained variance over every order in which
the levers can enter the model (Lindeman, Merenda & Gold 1980; Groemping, "Relative importance for linear
regression in R", J. Stat. Software 17(1), 2006). For a balanced grid this is exactly the textbook one-way SS of each
lever (sum over levels n_level (mean_level - mean)^2; tests/sweep/test_sweep_anova.py checks it against a
hand-computed table); for one-lever-at-a-time designs, where levers are not orthogonal, it is the one split that
does not depend on the order the levers were listed in. Shares of a one-lever-at-a-time sweep without seeds leave
no residual: every trial has its own parameter, and the noise floor is unknown until seeds are repeated.

A lever is "inside the noise floor" when an F test of its unique contribution (the drop in RSS when it is removed
from the full model, per degree of freedom) against the seed mean square gives p >= 0.05; without seeds the test
uses the residual (interactions) where there is one, else it is not made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

ALPHA = 0.05  # significance level of the noise-floor test


# ------------------------------------------------------------------------------------------------------------------
# the F distribution's upper tail (regularised incomplete beta, continued fraction: Numerical Recipes 3rd ed. 6.4)


def _betacf(a: float, b: float, x: float) -> float:
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F(d1, d2) > f)."""
    if f <= 0:
        return 1.0
    if math.isinf(f):
        return 0.0
    return betainc(d2 / 2, d1 / 2, d2 / (d2 + d1 * f))


# ------------------------------------------------------------------------------------------------------------------
# decomposition


@dataclass
class Share:
    name: str
    share: float  # eta^2: share of the total sum of squares
    ss: float
    df: int
    f: float | None = None  # F of the unique contribution against the error mean square
    p: float | None = None
    inside_noise: bool | None = None  # p >= ALPHA (None: no test possible)


@dataclass
class Decomposition:
    outcome: str
    n: int  # trials with a finite outcome
    total_ss: float
    levers: list[Share]
    interactions: Share
    seed: Share | None  # None when no cell was repeated
    error: str  # what the F tests compare against: "seed", "residual" or "none"
    notes: list[str] = field(default_factory=list)

    @property
    def residual(self) -> float:
        """Everything the levers' main effects leave unexplained: interactions + seed noise."""
        return self.interactions.share + (self.seed.share if self.seed else 0.0)

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "n": self.n, "total_ss": self.total_ss, "error": self.error,
                "levers": [vars(s) for s in self.levers], "interactions": vars(self.interactions),
                "seed": vars(self.seed) if self.seed else None, "residual": self.residual, "notes": self.notes}


def _design(levels: list[dict[str, str]], levers: list[str]) -> list[np.ndarray]:
    """One-hot columns per lever (first level dropped: the intercept carries it)."""
    cols = []
    for lever in levers:
        values = sorted({row[lever] for row in levels})
        cols.append(np.array([[1.0 if row[lever] == v else 0.0 for v in values[1:]] for row in levels])
                    .reshape(len(levels), max(len(values) - 1, 0)))
    return cols


def _rss(y: np.ndarray, blocks: list[np.ndarray]) -> tuple[float, int]:
    x = np.hstack([np.ones((len(y), 1))] + blocks)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    r = y - x @ coef
    return float(r @ r), int(np.linalg.matrix_rank(x))


def decompose(outcome: str, levels: list[dict[str, str]], cells: list[str], y: list[float | None],
              levers: list[str]) -> Decomposition:
    """Eta-squared of each lever, lever interactions and the seed noise floor for outcome `y` (one value per trial;
    None for a trial that did not finish). `levels[i][lever]` is trial i's level of each lever and `cells[i]` its
    name without the seed."""
    keep = [i for i, v in enumerate(y) if v is not None and math.isfinite(v)]
    notes = []
    if len(keep) < len(y):
        notes.append(f"{len(y) - len(keep)} trial(s) without a finite {outcome} left out")
    yy = np.array([float(y[i]) for i in keep])
    lv = [levels[i] for i in keep]
    cl = [cells[i] for i in keep]
    n = len(yy)
    sst = float(((yy - yy.mean()) ** 2).sum()) if n else 0.0
    groups: dict[str, list[float]] = {}
    for c, v in zip(cl, yy):
        groups.setdefault(c, []).append(float(v))
    ss_seed = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in groups.values())
    df_seed = n - len(groups)
    if n < 2 or sst <= 1e-300:
        notes.append(f"{outcome} does not vary over the trials: nothing to decompose")
        zero = [Share(k, 0.0, 0.0, 0) for k in levers]
        return Decomposition(outcome, n, sst, zero, Share("interactions", 0.0, 0.0, 0),
                             Share("seed", 0.0, 0.0, df_seed) if df_seed else None, "none", notes)
    blocks = _design(lv, levers)
    p = len(levers)
    rss: dict[frozenset, float] = {}
    rank: dict[frozenset, int] = {}
    for size in range(p + 1):
        for subset in combinations(range(p), size):
            key = frozenset(subset)
            rss[key], rank[key] = _rss(yy, [blocks[j] for j in subset])
    full = frozenset(range(p))
    rss_full, rank_full = rss[full], rank[full]
    df_resid = n - rank_full
    ss_inter = max(rss_full - ss_seed, 0.0)
    df_inter = max(df_resid - df_seed, 0)
    if df_seed > 0:
        error, ms_error, df_error = "seed", ss_seed / df_seed, df_seed
    elif df_resid > 0:
        error, ms_error, df_error = "residual", rss_full / df_resid, df_resid
    else:
        error, ms_error, df_error = "none", None, 0
        notes.append("no repeated seeds and no residual degrees of freedom: the noise floor is unknown (add seeds: "
                     "[1, 2, 3] to measure it)")
    shares = []
    for j, lever in enumerate(levers):
        others = [k for k in range(p) if k != j]
        gain = 0.0
        for size in range(p):
            weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
            for subset in combinations(others, size):
                key = frozenset(subset)
                gain += weight * (rss[key] - rss[key | {j}])
        unique = rss[full - {j}] - rss_full
        df = rank_full - rank[full - {j}]
        share = Share(lever, gain / sst, gain, df)
        if ms_error is not None and df > 0:
            share.f = (unique / df) / ms_error if ms_error > 0 else math.inf
            share.p = f_sf(share.f, df, df_error)
            share.inside_noise = share.p >= ALPHA
        shares.append(share)
    return Decomposition(outcome, n, sst, shares, Share("interactions", ss_inter / sst, ss_inter, df_inter),
                         Share("seed", ss_seed / sst, ss_seed, df_seed) if df_seed > 0 else None, error, notes)


# ------------------------------------------------------------------------------------------------------------------
# pick-best and the Pareto front, over cells (trials averaged over their seeds)

LOWER_IS_BETTER = ("loss", "kl", "general_loss_increase", "wall_s", "train_s")


def better_mode(metric: str) -> str:
    """min for losses, KL, the forgetting probe and times; max for task metrics."""
    return "min" if any(t in metric for t in LOWER_IS_BETTER) else "max"


@dataclass
class Cell:
    name: str
    trials: list[str]
    values: dict[str, float | None]  # metric -> mean over the cell's trials with a finite value
    spread: dict[str, float | None]  # metric -> sample standard deviation over seeds (None with one trial)


def cell_means(names: list[str], cells: list[str], values: list[dict[str, float | None]]) -> list[Cell]:
    out: dict[str, Cell] = {}
    for name, cell, vals in zip(names, cells, values):
        out.setdefault(cell, Cell(cell, [], {}, {})).trials.append(name)
    for c in out.values():
        idx = [i for i, cell in enumerate(cells) if cell == c.name]
        for metric in {k for i in idx for k in values[i]}:
            xs = [values[i][metric] for i in idx if values[i].get(metric) is not None]
            c.values[metric] = sum(xs) / len(xs) if xs else None
            c.spread[metric] = (math.sqrt(sum((x - c.values[metric]) ** 2 for x in xs) / (len(xs) - 1))
                                if len(xs) > 1 else None)
    return list(out.values())


OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}


@dataclass
class Pick:
    rule: str
    cell: str | None
    value: float | None
    excluded: list[str]  # "cell: why"
    versus_base: str | None = None


def pick_best(cells: list[Cell], metric: str, mode: str, constraints: list[tuple[str, str, float]],
              base: str | None, tiebreak: str = "trainable_params") -> Pick:
    """The cell with the best mean `metric` among those meeting every constraint; ties go to fewer trainable
    parameters, then less wall time. Says whether the winner's margin over the base is within the seed spread."""
    mode = better_mode(metric) if mode == "auto" else mode
    cond = " and ".join(f"{m} {op} {v:g}" for m, op, v in constraints)
    rule = (f"the trial with the {'lowest' if mode == 'min' else 'highest'} {metric} (mean over its seeds)"
            + (f" among those with {cond}" if cond else "") + "; ties go to fewer trainable parameters, then less "
            "wall time")
    excluded, ok = [], []
    for c in cells:
        v = c.values.get(metric)
        if v is None:
            excluded.append(f"{c.name}: no {metric}")
            continue
        failed = [f"{m} {op} {t:g} (is {'–' if c.values.get(m) is None else format(c.values[m], '.4g')})"
                  for m, op, t in constraints if c.values.get(m) is None or not OPS[op](c.values[m], t)]
        if failed:
            excluded.append(f"{c.name}: fails {'; '.join(failed)}")
        else:
            ok.append(c)
    if not ok:
        return Pick(rule, None, None, excluded)
    sign = 1 if mode == "min" else -1
    best = min(ok, key=lambda c: (sign * c.values[metric], c.values.get(tiebreak) or 0, c.values.get("wall_s") or 0))
    versus = None
    ref = next((c for c in cells if c.name == base), None)
    if ref is not None and ref is not best and ref.values.get(metric) is not None:
        delta = best.values[metric] - ref.values[metric]
        noise = [s for c in cells if (s := c.spread.get(metric)) is not None]
        if noise:
            sd = math.sqrt(sum(s * s for s in noise) / len(noise))
            inside = abs(delta) <= 2 * sd
            versus = (f"{delta:+.4g} vs the base ({'inside' if inside else 'outside'} 2 x the seed standard deviation "
                      f"{sd:.3g})")
        else:
            versus = f"{delta:+.4g} vs the base (no repeated seeds: the noise floor is unknown)"
    return Pick(rule, best.name, best.values[metric], excluded, versus)


def pareto_front(cells: list[Cell], metric: str, kl: str) -> list[str]:
    """Cells no other cell beats on both `metric` (higher is better) and `kl` (lower is better)."""
    pts = [(c.name, c.values.get(metric), c.values.get(kl)) for c in cells]
    pts = [(n, m, k) for n, m, k in pts if m is not None and k is not None]
    front = []
    for n, m, k in pts:
        dominated = any(m2 >= m and k2 <= k and (m2 > m or k2 < k) for _, m2, k2 in pts)
        if not dominated:
            front.append(n)
    return front
