"""eval/: eval items, batched generation, metrics, the judge behind an OpenAI-compatible endpoint (`judge.py`: the
`judge` and `win_rate` metrics), drift (eval loss, KL to base, forgetting probe) and gate decisions. Returns
numbers and writes no files: the training loop and `shipsft eval` decide what to keep.

May import: `shipsft.config`, `shipsft.errors`, `shipsft.data`, `shipsft.model`; never train/, runs/ or cli/
(tests/test_architecture.py).
"""
