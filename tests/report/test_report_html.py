"""report.html: built from a run folder's files (read by shipsft.runs), self-contained, and rendered by a real
headless Chromium."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipsft.report.svg import line_chart, ticks
from shipsft.runs.layout import RunFolder
from shipsft.train.run import write_report as _write_report

from helpers import make_run


def write_report(run: Path) -> Path:
    return _write_report(RunFolder(run))


def test_ticks_are_round_and_cover_the_range():
    assert ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    t = ticks(1.3, 7.9)
    assert t[0] <= 1.3 and t[-1] >= 7.9 and t == pytest.approx([0, 2, 4, 6, 8])
    assert ticks(5.0, 5.0)[0] <= 5.0  # a flat series still gets an axis


def test_line_chart_points_and_empty():
    svg = line_chart("loss", {"a": [(0, 1.0), (10, 0.0)], "b": [(5, float("nan"))]})
    assert svg.count("<polyline") == 1 and 'data-series="a"' in svg  # the all-NaN series is dropped
    assert line_chart("empty", {"a": []}) == ""


def test_report_content(tmp_path):
    html = write_report(make_run(tmp_path / "run")).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html  # self-contained: nothing to fetch
    assert html.count("<svg") == 7  # loss, lr, grad norm, throughput, task metrics, drift, eval loss
    assert "PROMOTED" in html and "+0.7000" in html and "[+0.4000, +0.9000]" in html


@pytest.mark.browser
@pytest.mark.parametrize("promoted", [True, False])
def test_report_renders_in_chromium(tmp_path, promoted):
    from browser import browser_skip_reason, open_html

    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    path = write_report(make_run(tmp_path / "run", promoted=promoted))
    with open_html(path) as view:
        assert view.errors == [] and view.external_requests == []
        assert view.count("svg.chart") == 7
        series = view.attrs("svg.chart polyline.series", "data-series")
        assert {"train loss", "eval loss", "lr", "grad_norm", "qa/exact_match", "smoke qa/exact_match",
                "kl_to_base", "general_loss_increase"} <= set(series)
        verdict = view.page.locator("#verdict")
        assert verdict.inner_text() == ("PROMOTED — step 10" if promoted else
                                        "NOT PROMOTED — none of 1 checkpoint(s) passed every gate.")
        assert "pass" in verdict.get_attribute("class") if promoted else "fail" in verdict.get_attribute("class")
        cells = view.page.locator("table.before-after tbody td").all_inner_texts()
        assert cells == ["qa", "exact_match", "10", "0.2", "0.9", "+0.7000", "[+0.4000, +0.9000]"]
        samples = view.page.locator("table.samples tbody td").all_inner_texts()
        # prompt, reference, base output (the markup shown as text, never run), tuned output
        assert samples == ["qa", "Capital of France?", "Paris", "Lyon <script>alert(1)</script>", "Paris"]
        box = view.page.locator("svg.chart").first.bounding_box()
        assert box["width"] > 300 and box["height"] > 150  # really laid out, not collapsed
