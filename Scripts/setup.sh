#!/usr/bin/env bash
# Sourced by train.sh, test.sh and bench.sh: installs what is missing, sets up Open MPI for this
# machine, builds the release binary and puts `ddp-train` on PATH.
#
# What it changes on the machine, so that `mpirun -np 4 ddp-train` works exactly as written:
#   - apt packages: libopenmpi-dev openmpi-bin libopenblas-dev zlib1g-dev libpng-dev
#     libjpeg62-turbo-dev libisal-dev pkg-config (if missing)
#   - ~/.openmpi/mca-params.conf: rmaps_base_oversubscribe = 1 (more ranks than cores is allowed)
#   - as root: OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 exported here and in
#     /etc/profile.d/ddp-train.sh and ~/.bashrc (Open MPI reads these two from the environment only)
#   - /usr/local/bin/ddp-train -> the release build (when writable)
set -euo pipefail
DDP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$DDP_ROOT"

log() { echo "[setup] $*" >&2; }

need=()
for pkg in libopenmpi-dev openmpi-bin libopenblas-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev libisal-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p "$HOME/.openmpi"
if ! grep -qs '^rmaps_base_oversubscribe' "$HOME/.openmpi/mca-params.conf"; then
  echo "rmaps_base_oversubscribe = 1" >> "$HOME/.openmpi/mca-params.conf"
  log "allowed oversubscription in ~/.openmpi/mca-params.conf"
fi
# odls_base_sigkill_timeout (T) stays at Open MPI's 1 s: on SIGTERM or SIGINT mpirun sends the ranks
# SIGTERM only after T and SIGKILL after 2T, but it also sleeps 2T after every failed run (a typo under
# mpirun would take 2T to report). Clean stops go by SIGUSR1 instead, which mpirun forwards at once
# (Scripts/ddp-run does this); README "Signals" says when to raise T.

if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  line='export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # ddp-train: Open MPI as root'
  if [ -w /etc/profile.d ] && ! grep -qs OMPI_ALLOW_RUN_AS_ROOT /etc/profile.d/ddp-train.sh; then
    echo "$line" > /etc/profile.d/ddp-train.sh
  fi
  grep -qs 'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM' "$HOME/.bashrc" || echo "$line" >> "$HOME/.bashrc"
fi

log "building ddp-train (release)"
swift build -c release --product ddp-train 2>&1 | { grep -vE '^\[[0-9]+/[0-9]+\]' || true; } >&2
DDP_BIN="$(swift build -c release --show-bin-path)/ddp-train"
export DDP_BIN
if [ -w /usr/local/bin ]; then ln -sf "$DDP_BIN" /usr/local/bin/ddp-train; fi
export PATH="$(dirname "$DDP_BIN"):$PATH"
