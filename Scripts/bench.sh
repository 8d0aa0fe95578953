#!/usr/bin/env bash
# Builds (after setup) and prints one JSON line per configuration: local mode, then 1, 2 and 4 ranks,
# MLP 784-512-512-10 at per-rank batch 64. Extra arguments go to every `ddp-train bench`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ddp-train bench --batch-size 64 "$@"
for np in ${RANKS:-1 2 4}; do
  mpirun -np "$np" ddp-train bench --batch-size 64 "$@"
done
