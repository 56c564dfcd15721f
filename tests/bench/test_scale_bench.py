"""bench/scale.py's plumbing: each N's measurement merged into the results file by N (a rerun replaces its N, the
others stay), the machine and the newest run's date recorded, the comparison of the largest N with the smallest, and
the table docs/scale.md holds. (The measurement itself trains on up to a million conversations: bench only.)"""
from __future__ import annotations

import json
import sys

from helpers import REPO

sys.path.insert(0, str(REPO))
from bench import scale  # noqa: E402


def run(n: int, data_s: float, audit_s: float, wall_s: float, rss: tuple[int, int, int], date: str) -> dict:
    return {"n": n, "jsonl_mb": n // 1000, "tokens": 180 * n, "stamps_s": {"data:": data_s, "audit:": audit_s,
            "model:": audit_s + 1}, "peak_rss_mb_at": {"data:": rss[0], "audit:": rss[1], "model:": rss[1]},
            "peak_rss_mb": rss[2], "wall_s": wall_s, "sampled": n > 100_000, "store_mb": 2 * n // 1000,
            "date": date}


def test_results_merge_by_n_with_the_machine_and_the_comparison(tmp_path):
    out = tmp_path / "scale.json"
    scale.save(out, run(1_000_000, 600.0, 700.0, 760.0, (1300, 1840, 3660), "2026-01-02 10:00 UTC"), "cmd a", "m")
    scale.save(out, run(100_000, 50.0, 95.0, 150.0, (1100, 1750, 3400), "2026-01-01 10:00 UTC"), "cmd b", "m")
    got = scale.save(out, run(100_000, 52.0, 97.0, 140.0, (1200, 1760, 3400), "2026-01-03 10:00 UTC"), "cmd c", "m")
    assert json.loads(out.read_text()) == got
    assert [(r["n"], r["command"], r["wall_s"]) for r in got["runs"]] == [(100_000, "cmd c", 140.0),
                                                                          (1_000_000, "cmd a", 760.0)]
    assert got["date"] == "2026-01-03 10:00 UTC" and "cores" in got["machine"]
    c = got["comparison"]
    assert (c["n_ratio"], c["prepared_ratio"], c["wall_ratio"]) == (10.0, round(600 / 52, 2), round(760 / 140, 2))
    assert c["prepared_ms_per_conversation"] == [0.52, 0.6]
    assert c["rss_ratio"] == {"data:": round(1300 / 1200, 2), "audit:": round(1840 / 1760, 2), "end": 1.08}
    assert c["rss_bytes_per_extra_conversation"] == {"data:": round(100 * 2**20 / 900_000),
                                                     "audit:": round(80 * 2**20 / 900_000)}
    rows = scale.table(got).splitlines()
    assert rows[2] == ("| 100,000 | 100 MB | 18,000,000 | 52.0 s | 97.0 s | 98.0 s | 140.0 s | "
                       "1,200 / 1,760 / 1,760 / 3,400 MB | 200 MB |")
    assert rows[3].startswith("| 1,000,000 | 1,000 MB | 180,000,000 | 600.0 s | 700.0 s (sampled) |")
