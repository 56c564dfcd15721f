"""report/: self-contained HTML reports (audit.html, report.html) built from records passed in as data, with shared
SVG primitives (`svg.py`). Writes no files (the run folder belongs to `shipsft.runs`).

May import: `shipsft.config`, `shipsft.errors` (tests/test_architecture.py).
"""
