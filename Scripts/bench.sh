#!/usr/bin/env bash
# Prints one JSON line per configuration (local mode, then mpirun at each of $RANKS, default
# "1 2 4"), MLP 784-512-512-10 at per-rank batch 64 (local mode: 64 per core), then a table: samples/s, efficiency against
# the sgemm bound, and weak-scaling efficiency (samples/s over N times the 1-rank figure).
# Extra arguments go to every `ddp-train bench`.
#
#   Scripts/bench.sh                       # set up and build first (as Scripts/train.sh does)
#   RANKS="1 2 4 8 16" Scripts/bench.sh    # the scaling table on a 16-core machine
#   DDP_BENCH_NO_SETUP=1 ...               # use the ddp-train on PATH (a device pack, say)
#   MPIRUN_ARGS="--bind-to core" ...       # extra mpirun arguments; DDP_BENCH_LOCAL=0 skips local mode
set -euo pipefail
if [ "${DDP_BENCH_NO_SETUP:-0}" != 1 ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun)
[ -n "${LD_LIBRARY_PATH:-}" ] && mpi+=(-x LD_LIBRARY_PATH -x PATH)
read -r -a extra <<<"${MPIRUN_ARGS:-}"
mpi+=("${extra[@]}")
lines=()
run() {
  local line
  line=$("$@" | grep '^{') || { echo "bench.sh: failed: $*" >&2; exit 1; }
  echo "$line"
  lines+=("$1 $line")
}
# Local mode runs one rank thread per core, each with --batch-size / cores: 64 each, like the ranks below.
cores=$(nproc)
[ "${DDP_BENCH_LOCAL:-1}" = 1 ] && run ddp-train bench --batch-size $((64 * cores)) "$@"
for np in ${RANKS:-1 2 4}; do
  run "${mpi[@]}" -np "$np" ddp-train bench --batch-size 64 "$@"
done

field() { sed -n "s/.*\"$1\":\([-0-9.e]*\).*/\1/p" <<<"$2"; }
echo
printf '%-8s %6s %12s %10s %12s\n' mode ranks samples/s "vs sgemm" "vs N x 1"
one=""
for entry in "${lines[@]}"; do
  mode=${entry%% *}; json=${entry#* }
  [ "$mode" = ddp-train ] && mode=local || mode=mpirun
  ranks=$(field ranks "$json"); sps=$(field samples_per_s "$json"); eff=$(field efficiency "$json")
  [ "$mode" = mpirun ] && [ "$ranks" = 1 ] && one=$sps
  weak=-
  [ "$mode" = mpirun ] && [ -n "$one" ] && weak=$(awk -v s="$sps" -v n="$ranks" -v o="$one" 'BEGIN { printf "%.1f%%", 100 * s / (n * o) }')
  printf '%-8s %6s %12.0f %9.1f%% %12s\n' "$mode" "$ranks" "$sps" "$(awk -v e="$eff" 'BEGIN { print 100 * e }')" "$weak"
done
