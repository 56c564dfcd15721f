"""audit.html in a real headless Chromium: it renders, every plot is there with data, nothing errors, nothing is
fetched from the network, and user text cannot inject markup.

Needs /usr/bin/chromium (Debian: `apt-get install -y chromium`) and `pip install playwright`; skipped with that
reason otherwise.
"""
from __future__ import annotations

import json
import random

import pytest
from browser import browser_skip_reason, open_html

from shipsft.report.audit import render_html
from shipsft.report.svg import svg_bars, svg_histogram

PLOTS = ["lengths-total", "lengths-prompt", "lengths-answer", "padding-vs-packing", "trained-share",
         "duplicate-clusters", "content-quality", "contamination"]


def _rows(rng: random.Random, n: int) -> list[dict]:
    words = "river stone cloud maple harbor lantern copper meadow signal orbit canyon willow ember".split()

    def s(k):
        return " ".join(rng.choice(words) for _ in range(k))

    return [{"messages": [{"role": "user", "content": f"Q{i}: {s(rng.randint(5, 40))}?"},
                          {"role": "assistant", "content": f"A{i}: {s(rng.randint(10, 120))}."}]} for i in range(n)]


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory, smollm2_tokenizer):
    """A real `shipsft audit` run on data with planted duplicates, a leaked eval prompt and a markup payload."""
    tmp = tmp_path_factory.mktemp("audit_html")
    rng = random.Random(5)
    rows = _rows(rng, 120)
    rows += [rows[3], rows[3], rows[10]]  # exact duplicates: clusters of 3 and 2
    payload = {"messages": [{"role": "user", "content": "Show <b>bold</b> and a <script>alert(1)</script> tag"},
                            {"role": "assistant", "content": "<script>console.error('injected')</script> done now"}]}
    rows += [payload, payload]
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = [rows[7]] + _rows(random.Random(6), 4)
    (tmp / "suite.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite))
    (tmp / "config.yaml").write_text("data:\n  train: train.jsonl\n  max_length: 512\n"
                                     "eval:\n  suites:\n    - name: qa\n      data: suite.jsonl\n")
    from typer.testing import CliRunner

    from shipsft.cli.main import app

    res = CliRunner().invoke(app, ["audit", str(tmp / "config.yaml"), "--out", str(tmp / "out")])
    assert res.exit_code == 1, res.output  # the leaked eval prompt is an error
    return tmp / "out"


def test_html_is_self_contained(audit_dir):
    html = (audit_dir / "audit.html").read_text()
    assert "<script" not in html.replace("&lt;script", "")  # the payload is escaped, and we ship no JavaScript
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("<svg") >= len(PLOTS)


@pytest.mark.browser
def test_audit_html_renders_in_chromium(audit_dir):
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    report = json.loads((audit_dir / "audit.json").read_text())
    n_seq = report["stats"]["overview"]["sequences"]
    with open_html(audit_dir / "audit.html") as view:
        assert view.errors == [] and view.external_requests == []
        assert "shipsft audit" in view.page.title()
        assert view.count("script") == 0  # the markup payload stayed text
        assert "<script>console.error('injected')</script>" in view.page.inner_text("#duplicates")
        for name in PLOTS:
            svg = view.page.locator(f'svg[data-plot="{name}"]')
            assert svg.count() == 1, name
            box = svg.bounding_box()
            assert box and box["width"] > 200 and box["height"] > 50, (name, box)
            counts = [float(c) for c in view.attrs(f'svg[data-plot="{name}"] rect.bar', "data-count")]
            assert counts and sum(counts) > 0, name
        # histograms count every sequence exactly once
        for name in ("lengths-total", "trained-share"):
            counts = view.attrs(f'svg[data-plot="{name}"] rect.bar', "data-count")
            assert sum(int(c) for c in counts) == n_seq, name
        assert [int(c) for c in view.attrs('svg[data-plot="duplicate-clusters"] rect.bar', "data-count")] == [3, 2, 2]
        assert view.count(".finding") == len(report["findings"])
        assert view.count('.finding[data-severity="error"]') == report["summary"]["errors"] == 1
        assert view.count(".verdict.bad") == 1
        assert view.count(".cluster[data-cluster='exact']") == 3


def test_svg_helpers_handle_empty_and_escape():
    empty = svg_histogram("x", {"edges": [], "counts": []}, "T <1>", "tokens")
    assert 'data-plot="x"' in empty and "no data" in empty and "T &lt;1&gt;" in empty
    bars = svg_bars("b", [("a<b", 2), ("c", 0)], "title")
    assert bars.count('class="bar"') == 2 and "a&lt;b" in bars


def test_render_html_from_minimal_result():
    from shipsft.audit.findings import AuditResult, Finding

    html = render_html(AuditResult([Finding("x.y", "warning", "m <i>", fix="f", examples=["s:1"])], {}, {}).to_dict())
    assert "m &lt;i&gt;" in html and "No errors: ready to train" in html
