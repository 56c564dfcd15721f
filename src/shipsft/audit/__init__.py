"""audit/: pure pre-flight checks over the data pipeline's output, returning findings (`findings.Finding`) and
the statistics behind audit.html. Writes nothing and prints nothing.

May import: config, errors, data/, and train/schedule.py for the step arithmetic (tests/test_architecture.py).
"""
