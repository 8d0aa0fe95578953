#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: data-parallel training of an MLP on MNIST
# over 4 MPI ranks (global batch 4 x 16 = 64). Extra arguments go to ddp-train, after the defaults,
# so they override them:  Scripts/train.sh --epochs 10 --optimizer adam --lr 0.001
# Environment: DDP_DATA_DIR (the MNIST folder; downloaded there if missing), NP (ranks, default 4).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

DATA="${DDP_DATA_DIR:-$DDP_ROOT/data/mnist}"
export DDP_DATA_DIR="$DATA"
if ! ls "$DATA"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  echo "[train] no MNIST in $DATA: downloading" >&2
  ddp-train download --dir "$DATA"
fi

exec mpirun -np "${NP:-4}" ddp-train --model mlp:512,512 --epochs 5 --batch-size 16 --lr 0.05 --momentum 0.9 "$@"
