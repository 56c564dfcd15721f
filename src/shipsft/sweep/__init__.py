"""sweep/: experiments as a measured science, and the memory planner.

    spec.py     the SWEEP.yaml schema (pydantic, strict; unknown keys are errors with a close-match hint)
    trials.py   expand a spec into trials (one lever at a time around the base, full grid, or seeds only), each a
                normal run config; run them one after another (finished ones skipped, a killed one resumed from its
                last complete checkpoint), or print one launch line per trial for a cluster scheduler
    results.py  the numbers of one trial, read from its run folder (final train / eval loss, task metrics, KL to
                the base, the forgetting probe, trainable parameters, trained tokens, wall time)
    anova.py    variance decomposition (eta-squared per lever, lever interactions, the seed noise floor), the
                pick-best rule, the Pareto front of a task metric against KL to the base (numpy only)
    run.py      `shipsft sweep SWEEP.yaml`: trials -> results -> sweep.json, sweep.csv, sweep.html
    lrlock.py   `shipsft sweep --lr-lock CONFIG`: a short LR x warmup sweep, then a config with the chosen values
    plan.py     `shipsft plan CONFIG`: memory per component (weights, adapter, gradients, optimizer states,
                activations traced through the training code itself, the LM-head chunk, eval, allocator slack), a
                time estimate from a measured throughput, and a LoRA / QLoRA / full recommendation with reasons

A sweep builds configs (`shipsft.config`), runs them through `shipsft.train.run.run_train`, and reads run folders
through `shipsft.runs`; the sweep folder's own files (trial configs, sweep.json/csv/html) are written here with
`shipsft.runs.jsonio`'s atomic writers, and the HTML comes from `shipsft.report.sweep`.

May import: `shipsft.config`, `shipsft.errors`, `shipsft.train`, `shipsft.steps` (the run resolved as training
resolves it), `shipsft.runs`, `shipsft.model`, `shipsft.eval`, `shipsft.data`, `shipsft.report`; never cli/
(tests/test_architecture.py).
"""
