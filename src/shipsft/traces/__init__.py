"""traces/: eval suites mined from logged production conversations (`shipsft suite build`).

`read.py` turns trace files into `Trace`s (the conversation, its id, the user's feedback, a correction); `build.py`
removes near-duplicates, drops what leaks into the training data, clusters prompts by pattern, samples the suite
stratified by cluster and label, and sets the traces marked bad apart as failure suites, every record carrying its
provenance. Pure: returns records; cli/suite_cmd.py writes them (docs/suites.md).

May import: `shipsft.config`, `shipsft.errors`, `shipsft.data` (formats, inspect, mixture loading) and
`shipsft.audit` (the MinHash near-duplicate and contamination machinery of audit/text.py); never cli/
(tests/test_architecture.py).
"""
