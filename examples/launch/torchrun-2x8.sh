#!/usr/bin/env bash
# Two nodes x 8 GPUs, started by hand on each node: NODE_RANK=0 on the first, 1 on the second; MASTER_ADDR is the
# first node's address, reachable from the second. The run folder must be on a disk both nodes see only if you want
# to resume from either; rank 0 (on node 0) writes it.
#   node 0:  NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash examples/launch/torchrun-2x8.sh
#   node 1:  NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash examples/launch/torchrun-2x8.sh
set -euo pipefail
CONFIG=${1:-examples/launch/fsdp2-full-8b.yaml}
torchrun --nnodes 2 --nproc-per-node 8 --node-rank "${NODE_RANK:?}" --master-addr "${MASTER_ADDR:?}" \
  --master-port "${MASTER_PORT:-29500}" -m shipsft train "$CONFIG"
