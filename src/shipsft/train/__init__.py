"""train/: setup -> fit -> finish. `run.py` builds everything a run needs (the run resolved by steps/resolve.py, the
baselines measured) and finishes it (promotion, report, export); `loop.py` is the training loop, read top to bottom,
which owns its cadence (when to log, eval, save, stop); `objective.py` (one micro-batch's loss), `loss.py` and
`kl.py` (the CE and the KL-to-base term), `optim.py`, `sources.py` (the loss per mixture source), `dist.py` (ranks,
collectives, the global trained-token count), `parallel.py` (DDP / FSDP2), `preempt.py` (signals) and `reproduce.py`
are the leaves it calls. The step arithmetic is steps/'s, the run folder runs/'s (`runs/run.py: Run`).

May import: config, errors, data, steps, audit, model, eval, runs, report, export (the end-of-training export);
never cli/ or sweep/ (tests/test_architecture.py).
"""
