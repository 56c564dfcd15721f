"""cli/: every command (`main.py`) and all terminal code: rich consoles, progress bars, tables, the allocator
re-exec. Nothing in shipsft imports cli/ (tests/test_architecture.py); cli/ may import everything.
"""
