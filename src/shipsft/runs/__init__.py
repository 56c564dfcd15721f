"""runs/: the only owner of the run folder.

Every file name of a run folder is spelled once, in `layout.RunFolder`; everything written into a run folder goes
through this package: `run.py`'s `Run` (what a training run writes through: manifest, sink, rank-aware checkpoint
and end-weight saves, promotion, predictions), the manifest (`manifest.py`), JSON and JSONL files that stay valid
JSON even with NaN metrics (`jsonio.py`), crash-safe checkpoints with a completion marker (`checkpoint.py`) that
records every file's size and sha256 (`integrity.py`; `verify.py` checks a run's saved folders before they are loaded
and for `shipsft verify`), the training state inside a checkpoint (`state.py`), which intact checkpoint a resume
continues from (`resume.py`), predictions (`predictions.py`) and metric sinks (`sinks.py`: metrics.jsonl, and the
experiment trackers of `trackers/`: TensorBoard, MLflow, W&B, trackio, each called from its own thread so a server
that goes away never stops training; `trackers/sync.py` sends what one missed after the run).

May import: `shipsft.config`, `shipsft.errors`. Nothing else of shipsft (tests/test_architecture.py).
"""
