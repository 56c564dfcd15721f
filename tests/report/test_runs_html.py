"""index.html (`shipsft runs --html`) and compare.html (`shipsft compare`): built from run folders read by
shipsft.runs, self-contained, and rendered by a real headless Chromium."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_run
from typer.testing import CliRunner

from shipsft.cli.main import app
from shipsft.cli.runs_cmd import record
from shipsft.report.runs import render_compare, render_index
from shipsft.runs.summary import curves, differing, settings, summarize


def records(tmp_path: Path) -> list[dict]:
    a = make_run(tmp_path / "a", lr=2e-4)
    b = make_run(tmp_path / "b<script>", promoted=False, lr=1e-3, started="2026-01-03T09:00:00+0000")
    return [{**record(summarize(p), p.name, tmp_path), "settings": settings(p), **curves(p)} for p in (a, b)]


def test_index_page_lists_each_run_with_its_decision_and_links(tmp_path):
    rows = records(tmp_path)
    (tmp_path / "a" / "report.html").write_text("<html></html>")
    rows[0] = record(summarize(tmp_path / "a"), "a", tmp_path)
    html = render_index("runs", rows)
    assert "<script>" not in html and "b&lt;script&gt;" in html  # a run's name is text, never markup
    assert "http://" not in html and "https://" not in html
    assert "href='a/report.html'" in html and html.count("<a ") == 1  # b has no report to link
    assert "data-promoted='yes'>promoted</span> step 10" in html and "data-promoted='no'>not promoted" in html
    assert "<code>qa/exact_match</code> <span class='num'>0.900</span>" in html
    assert "2 run(s), 1 promoted." in html and "2 min 05 s" in html


def test_compare_page_shows_what_differs_and_overlays_the_curves(tmp_path):
    rows = records(tmp_path)
    html = render_compare(rows, differing([r["settings"] for r in rows]))
    assert "<h1>shipsft compare: a vs b&lt;script&gt;</h1>" in html
    assert "<td><code>optim.lr</code></td><td>0.0002</td><td><span class='differs'>0.001</span></td>" in html
    # train loss, eval loss, qa/exact_match, KL to the base, learning rate: one line per run in each
    assert html.count("<svg") == 5 and html.count("<polyline") == 10
    assert html.count('data-series="a"') == html.count('data-series="b&lt;script&gt;"')


@pytest.mark.browser
def test_runs_and_compare_pages_render_in_chromium(two_runs, tmp_path):
    from browser import browser_skip_reason, open_html

    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    runs, _ = two_runs
    for args in (["runs", runs, "--html"], ["compare", runs / "quiet", runs / "loud", "--out", tmp_path / "c.html"]):
        res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
    with open_html(runs / "index.html") as view:
        assert view.errors == [] and view.external_requests == []
        assert view.page.locator("table.runs tbody tr").count() == 2
        assert view.attrs("[data-promoted]", "data-promoted") == ["yes", "yes"]
        links = view.attrs("table.runs a", "href")
        assert links == ["quiet/report.html", "quiet/audit.html", "loud/report.html", "loud/audit.html"]
        assert all((runs / link).is_file() for link in links)
        view.page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
    with open_html(tmp_path / "c.html") as view:
        assert view.errors == [] and view.external_requests == []
        charts = view.page.locator("svg.chart")
        assert charts.count() == 5
        for i in range(5):  # every chart overlays both runs
            series = charts.nth(i).locator("polyline.series").evaluate_all(
                "els => els.map(e => e.getAttribute('data-series'))")
            assert series == ["quiet", "loud"], (i, series)
        assert [t.strip() for t in view.page.locator("svg.chart text.title").all_text_contents()] == [
            "train loss", "eval loss (step 0 = base model)", "toy.unseen/exact_match (step 0 = base model)",
            "KL to the base model (step 0 = base model)", "learning rate"]
        cells = view.page.locator("table.settings tbody tr").first.locator("td").all_inner_texts()
        assert cells == ["optim.lr", "0.0002", "0.001"]
        assert view.page.locator("table.settings span.differs").count() == 1
        for link in view.attrs("table.runs a", "href"):
            assert (tmp_path / link).resolve().is_file()
        box = charts.first.bounding_box()
        assert box["width"] > 300 and box["height"] > 150  # really laid out
        view.page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
