"""runs/: the only owner of the run folder.

Every file name of a run folder is spelled once, in `layout.RunFolder`; everything written into a run folder goes
through this package: the manifest (`manifest.py`), JSON and JSONL files that stay valid JSON even with NaN metrics
(`jsonio.py`), crash-safe checkpoints with a completion marker (`checkpoint.py`) and metric sinks (`sinks.py`:
metrics.jsonl, and the experiment trackers of `trackers/`: TensorBoard, MLflow, W&B, trackio).

May import: `shipsft.config`, `shipsft.errors`. Nothing else of shipsft (tests/test_architecture.py).
"""
