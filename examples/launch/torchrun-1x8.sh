#!/usr/bin/env bash
# One node, 8 GPUs. --standalone picks a free port; every rank loads the same config and the same data, each trains
# its share of every optimizer step, rank 0 alone writes the run folder and prints.
set -euo pipefail
CONFIG=${1:-examples/launch/fsdp2-full-8b.yaml}
torchrun --standalone --nproc-per-node 8 -m shipsft train "$CONFIG"
