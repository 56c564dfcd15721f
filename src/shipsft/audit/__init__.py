"""audit/: pure pre-flight checks over the data pipeline's output, returning findings (`findings.Finding`) and
the statistics behind audit.html. Writes nothing and prints nothing.

May import: config, errors, data/, and steps/ for the step arithmetic (the run resolved as training resolves it);
never train/ (tests/test_architecture.py).
"""
