#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: data-parallel training of an MLP on MNIST
# over 4 MPI ranks (global batch 4 x 16 = 64). Extra arguments go to ddp-train, after the defaults,
# so they override them:  Scripts/train.sh --epochs 10 --optimizer adam --lr 0.001
# Environment: DDP_DATA_DIR (the MNIST folder; downloaded there if missing), NP (ranks, default 4).
# Offline, with no MNIST, it trains on Fashion-MNIST from Debian's package dataset-fashion-mnist
# (installed with apt when missing) and says so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

DATA="${DDP_DATA_DIR:-$DDP_ROOT/data/mnist}"
export DDP_DATA_DIR="$DATA"
dataset=(--dataset mnist)
if ! ls "$DATA"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  echo "[train] no MNIST in $DATA: downloading" >&2
  if ! ddp-train download --dir "$DATA"; then
    # Offline: Debian ships the full Fashion-MNIST (60,000 + 10,000 images), which apt can install
    # from the distribution's own mirror; ddp-train reads it from /usr/share/datasets/fashion-mnist.
    echo "[train] MNIST could not be downloaded: training on Fashion-MNIST from Debian's package dataset-fashion-mnist instead" >&2
    if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    fi
    dataset=(--dataset fashion-mnist)
  fi
fi

exec mpirun -np "${NP:-4}" ddp-train "${dataset[@]}" --model mlp:512,512 --epochs 5 --batch-size 16 --lr 0.05 --momentum 0.9 "$@"
