"""data/: files -> conversations (`formats`) -> token ids + trained mask (`template`, `render`) -> labels
(`labels`) -> packed rows (`pack`); `mixture` draws a training mix from several sources and replay. `pipeline.prepare`
runs the whole chain once per split: strict for training (every blocking problem raised at once), or recording those
problems for the audit to report.

Functions take `DataConfig` (never the whole run config). May import: `shipsft.config`, `shipsft.errors`; nothing
from train/, eval/, audit/, runs/ or cli/ (tests/test_architecture.py).
"""
