"""train/: setup -> fit -> finish. `run.py` builds everything a run needs and finishes it (promotion, report);
`loop.py` is the training loop, read top to bottom, which owns its cadence (when to log, eval, save, stop);
`loss.py` (and `kl.py`, the KL-to-base term), `optim.py`, `schedule.py` (the step arithmetic the audit also asks
for), `batches.py` (data order), `sources.py` (the loss per mixture source) and `dist.py` (ranks and the global
trained-token count) are the leaves it calls.

May import: config, errors, data, audit, model, eval, runs, report; never cli/ (tests/test_architecture.py).
"""
