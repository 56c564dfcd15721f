"""Variance decomposition (sweep/anova.py) against ANOVAs computed by hand, the pick-best rule and the Pareto front.
Pure numbers: no model, no files."""
from __future__ import annotations

import pytest

from shipsft.sweep.anova import Cell, cell_means, decompose, f_sf, pareto_front, pick_best

# A 2 x 2 grid, two seeds per cell (8 trials):
#
#              b1        b2        row mean
#     a1      1, 3      4, 6        3.5
#     a2      5, 7     10, 12       8.5
#   col mean    4         8         grand mean 6
#
# By hand (balanced, so the textbook one-way sums of squares are exact):
#   SS_total = 25 + 9 + 4 + 0 + 1 + 1 + 16 + 36                         = 92
#   SS_A     = 4 (3.5 - 6)^2 + 4 (8.5 - 6)^2                             = 50
#   SS_B     = 4 (4 - 6)^2 + 4 (8 - 6)^2                                 = 32
#   SS_seed  = every cell is its mean +- 1: 4 cells x 2 trials x 1        = 8    (df 8 - 4 = 4)
#   SS_AxB   = 92 - 50 - 32 - 8                                          = 2    (interaction effects +-0.5, 8 x 0.25)
#   F_A = (50 / 1) / (8 / 4) = 25, F_B = 16; F(1, 4) = t(4)^2, and t(4)'s CDF is closed-form:
#     F(t) = 1/2 + 3/8 u (1 - u^2 / 12) with u = t / sqrt(1 + t^2 / 4)
#     t = 5: u = 1.856953, p = 2 (1 - F) = 0.007490;  t = 4: u = 1.788854, p = 0.016130
GRID = {("a1", "b1"): (1, 3), ("a1", "b2"): (4, 6), ("a2", "b1"): (5, 7), ("a2", "b2"): (10, 12)}


def grid_table(order=("A", "B")):
    levels, cells, y = [], [], []
    for (a, b), values in GRID.items():
        for v in values:
            levels.append({"A": a, "B": b})
            cells.append(f"A={a},B={b}")
            y.append(float(v))
    return levels, cells, y, list(order)


def test_grid_with_seeds_equals_the_hand_computed_anova():
    d = decompose("y", *grid_table())
    assert d.n == 8 and d.total_ss == pytest.approx(92)
    shares = {s.name: s for s in d.levers}
    assert shares["A"].ss == pytest.approx(50) and shares["A"].share == pytest.approx(50 / 92)
    assert shares["B"].ss == pytest.approx(32) and shares["B"].share == pytest.approx(32 / 92)
    assert d.seed.ss == pytest.approx(8) and d.seed.df == 4 and d.seed.share == pytest.approx(8 / 92)
    assert d.interactions.ss == pytest.approx(2) and d.interactions.df == 1
    assert d.residual == pytest.approx(10 / 92)
    assert sum(s.share for s in d.levers) + d.residual == pytest.approx(1.0, abs=1e-12)
    assert d.error == "seed"
    assert shares["A"].f == pytest.approx(25) and shares["A"].p == pytest.approx(0.007490, abs=2e-6)
    assert shares["B"].f == pytest.approx(16) and shares["B"].p == pytest.approx(0.016130, abs=2e-6)
    assert shares["A"].inside_noise is False and shares["B"].inside_noise is False


def test_shares_do_not_depend_on_the_order_levers_are_listed():
    ab = decompose("y", *grid_table(("A", "B")))
    ba = decompose("y", *grid_table(("B", "A")))
    assert {s.name: s.share for s in ab.levers} == pytest.approx({s.name: s.share for s in ba.levers})


# One lever at a time (no seeds): base y = 10, A moved y = 14, B moved y = 11. The levers are not orthogonal, so the
# split averages each lever's gain over both orders it can enter in. By hand, RSS of each model:
#   RSS({})    = SS_total = (10 - 35/3)^2 + (14 - 35/3)^2 + (11 - 35/3)^2 = 104/12
#   RSS({A})   = groups {14}, {10, 11}: 0.5 = 6/12;   RSS({B}) = groups {11}, {10, 14}: 8 = 96/12;   RSS({A,B}) = 0
#   gain_A = ((104 - 6) + (96 - 0)) / 2 / 12 = 97/12;  gain_B = ((104 - 96) + (6 - 0)) / 2 / 12 = 7/12
#   shares 97/104 and 7/104, residual 0 (three trials, three parameters)
OAT_LEVELS = [{"A": "a0", "B": "b0"}, {"A": "a1", "B": "b0"}, {"A": "a0", "B": "b1"}]


def test_one_at_a_time_equals_the_hand_computed_split():
    d = decompose("y", OAT_LEVELS, ["base", "A=a1", "B=b1"], [10.0, 14.0, 11.0], ["A", "B"])
    shares = {s.name: s.share for s in d.levers}
    assert shares == pytest.approx({"A": 97 / 104, "B": 7 / 104})
    assert d.residual == pytest.approx(0.0, abs=1e-12) and d.seed is None
    assert sum(shares.values()) + d.residual == pytest.approx(1.0, abs=1e-12)
    assert d.error == "none" and all(s.inside_noise is None for s in d.levers)  # no noise floor to test against
    assert any("noise floor is unknown" in n for n in d.notes)


def test_a_lever_inside_the_seed_noise_is_reported_as_such():
    # lever C moves the mean by 0.1 while seeds spread by +-1: F = (0.02 / 1) / (4 / 2) = 0.01, p = 0.93
    levels = [{"C": c} for c in ("c0", "c0", "c1", "c1")]
    d = decompose("y", levels, ["c0", "c0", "c1", "c1"], [9.0, 11.0, 9.1, 11.1], ["C"])
    c = d.levers[0]
    assert c.ss == pytest.approx(0.01) and d.seed.ss == pytest.approx(4.0)
    assert c.f == pytest.approx(0.005) and c.inside_noise is True
    assert c.share + d.residual == pytest.approx(1.0)


def test_unfinished_trials_are_left_out_and_named():
    levels, cells, y, levers = grid_table()
    y[0] = None
    d = decompose("y", levels, cells, y, levers)
    assert d.n == 7 and any("1 trial(s) without a finite y" in n for n in d.notes)
    assert sum(s.share for s in d.levers) + d.residual == pytest.approx(1.0, abs=1e-12)


def test_f_upper_tail_matches_closed_forms():
    assert f_sf(25.0, 1, 4) == pytest.approx(0.007490, abs=2e-6)
    # F(2, d2) has a closed form: P(F > f) = (1 + 2 f / d2) ** (-d2 / 2)
    assert f_sf(3.0, 2, 10) == pytest.approx((1 + 2 * 3.0 / 10) ** -5, rel=1e-10)
    assert f_sf(0.0, 3, 7) == 1.0


def test_pick_best_applies_constraints_and_compares_with_the_seed_spread():
    cells = cell_means(["base.s1", "base.s2", "lr.s1", "lr.s2", "r.s1", "r.s2"],
                       ["base", "base", "lr", "lr", "r", "r"],
                       [{"eval_loss": 1.00, "kl_to_base": 0.1}, {"eval_loss": 1.02, "kl_to_base": 0.1},
                        {"eval_loss": 0.80, "kl_to_base": 0.9}, {"eval_loss": 0.82, "kl_to_base": 0.9},
                        {"eval_loss": 0.95, "kl_to_base": 0.2}, {"eval_loss": 0.97, "kl_to_base": 0.2}])
    pick = pick_best(cells, "eval_loss", "auto", [("kl_to_base", "<=", 0.5)], "base")
    assert pick.cell == "r" and pick.value == pytest.approx(0.96)  # lr is lower but drifts too far
    assert pick.excluded == ["lr: fails kl_to_base <= 0.5 (is 0.9)"]
    # every cell's seeds spread by sd 0.01414: the 0.05 gain over the base is outside 2 sd
    assert pick.versus_base.startswith("-0.05 vs the base (outside 2 x the seed standard deviation 0.0141")
    unconstrained = pick_best(cells, "eval_loss", "auto", [], "base")
    assert unconstrained.cell == "lr"


def test_pareto_front_keeps_only_undominated_cells():
    cells = [Cell("a", [], {"acc": 0.5, "kl": 0.1}, {}), Cell("b", [], {"acc": 0.7, "kl": 0.3}, {}),
             Cell("c", [], {"acc": 0.6, "kl": 0.4}, {}), Cell("d", [], {"acc": 0.9, "kl": 0.8}, {})]
    assert pareto_front(cells, "acc", "kl") == ["a", "b", "d"]  # c: b has more acc at less KL
