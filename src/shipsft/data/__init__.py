"""data/: files -> conversations (`formats`) -> token ids + trained mask (`template`, `render`) -> labels
(`labels`) -> packed rows and the micro-batches of a step (`pack`: `Batching`, `micro_batches`, the one `padding_id`);
`mixture` draws a training mix from several sources and replay; `hub` reads hub dataset ids and dataset repository
folders through `datasets.load_dataset`. `pipeline.prepare` runs the whole chain once per
split, streaming the files through rendering into an on-disk store of sequences (`store`, also the render cache's
format), strict for training (every blocking problem raised at once), or recording those problems for the audit to
report. `inspect` (answer shapes, the fixed eval split) and `toolcalls` (tool calls read back from any template's
text) serve `shipsft init` and the `tool_call_match` metric.

Functions take the config sections they need (`DataConfig`, `TrainConfig.micro_batch_tokens`), never the whole run
config. May import: `shipsft.config`, `shipsft.errors`; nothing
from train/, eval/, audit/, runs/ or cli/ (tests/test_architecture.py).
"""
