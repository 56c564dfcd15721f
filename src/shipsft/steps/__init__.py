"""steps/: the step arithmetic of a run, a leaf. How many examples (or tokens) one optimizer step takes, how many
steps and epochs a run makes, what `auto` means for the batch and the epochs (`auto.py`), the data order and the
resume cursor (`batches.py`), the learning rate at every step (`schedule.py`), and the one `resolve` (`resolve.py`)
that train/, audit/, sweep/ (the memory planner and the LR lock-in) and recipe/ (`shipsft init`) all call, so a run
is resolved in one place and every part counts the same steps.

    r = resolve(cfg, prepared)          # prepared: data/pipeline.py's output (its lengths and max_length)
    r.config.train.batch_size, r.plan.total_steps, r.reasons

May import: config, errors. Nothing else of shipsft (tests/test_architecture.py); it works on token lengths, not on
tokens, so it needs neither data/ nor a model.
"""
