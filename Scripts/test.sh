#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit tests in-process (local
# communicator) and the MPI integration tests, which drive the release binary under mpirun.
# The tests are XCTest; the Swift Testing runner is off so the run ends with XCTest's summary.
# Before them, a short fuzzing run of the file readers, the Winograd transforms and max pooling (Scripts/fuzz.sh,
# DDP_FUZZ_SECONDS each, default 20; 0 skips it).
# Environment: DDP_DATA_DIR (default ../shared/data/mnist-10k beside the repository).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

export DDP_DATA_DIR="${DDP_DATA_DIR:-$DDP_ROOT/../shared/data/mnist-10k}"
[ -d "$DDP_DATA_DIR" ] || { echo "[test] DDP_DATA_DIR=$DDP_DATA_DIR does not exist" >&2; exit 1; }
export DDP_DATA_DIR=$(cd "$DDP_DATA_DIR" && pwd)

# The interoperability test reads our safetensors with Python's safetensors package.
# The TensorBoard test reads our event files with TensorBoard's own EventAccumulator; the ONNX test
# checks exported models with onnx's checker and runs them in onnxruntime.
if ! python3 -c 'import safetensors.numpy, numpy, tensorboard, onnx, onnxruntime' 2>/dev/null; then
  echo "[test] installing Python safetensors, numpy, tensorboard, onnx and onnxruntime" >&2
  python3 -m pip install -q safetensors numpy tensorboard onnx onnxruntime
fi
# Debian's Python packages, run with /usr/bin/python3: the interoperability tests load our CNN
# weights into torch modules (python3-torch); the image tests compare decoding and resizing with PIL
# (python3-pil); the regression test compares with numpy's least squares (python3-numpy).
# The report test draws our HTML report in Debian's headless chromium.
if ! /usr/bin/python3 -c 'import torch, PIL, numpy' 2>/dev/null || [ ! -x /usr/bin/chromium ]; then
  echo "[test] installing python3-torch python3-pil python3-numpy chromium (Debian)" >&2
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends python3-torch python3-pil python3-numpy chromium >/dev/null
fi
# The cross-host tests build an emulated cluster (cluster/emulate): network namespaces, veth, a
# bridge and tbf need iproute2; unshare and taskset come with util-linux.
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  echo "[test] installing iproute2 (Debian)" >&2
  ${SUDO:-} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
fi
# The Slurm test drives a real one-node Slurm (cluster/slurm-local: munged, slurmctld, slurmd).
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || [ ! -e /usr/lib/x86_64-linux-gnu/pmix2/lib/libpmix.so ]; then
  ${SUDO:-} cluster/slurm-local install
fi
export DDP_REQUIRE_SLURM=1
export DDP_REQUIRE_PYTHON=1 DDP_REQUIRE_TORCH=1 DDP_REQUIRE_CHROMIUM=1 DDP_TRAIN_BIN="$DDP_BIN"

fuzz_seconds="${DDP_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "[test] fuzzing the IDX, safetensors, checkpoint, image and CSV readers, the Winograd transforms and max pooling for ${fuzz_seconds}s each" >&2
  bash Scripts/fuzz.sh "$fuzz_seconds"
fi

swift test --disable-swift-testing 2>&1 | { grep -vE '^\[[0-9]+/[0-9]+\]' || true; }
