#!/usr/bin/env bash
# Measurements for the scaling model (Scripts/scaling-model.py, cluster/SCALING.md).
#
#   Scripts/scaling-measure.sh [OUT.jsonl]      (default: scaling-measurements.jsonl; needs root)
#
# For H = 2, 3, 4 emulated hosts (cluster/emulate, one rank per host) at link rates unlimited, 2.5gbit
# and 1gbit (tc tbf on every host link) it records
#   kind=comm   `bench --comm-sizes 0.00390625,0.25,1,2.5546,8 --steps 30`   (all-reduce time per size;
#               the 4 KiB size pins the latency term, 2.5546 MiB is the gradient)
#   kind=step   `bench --batch-size 64 --steps 300`               (a training step, gradient sum included)
# and per H the compute-only reference on the real machine (one host, shared memory, H ranks on its cores):
#   kind=compute  `mpirun -np H --bind-to none bench --batch-size 64 --steps 300`
# plus the one-rank compute reference (H=1, run alone, no mpirun):
#   kind=compute1 `bench --batch-size 64 --local-ranks 1 --blas-threads 1`
# Every training bench uses --blas-threads 1 so that emulated and reference runs do the same compute
# (one BLAS thread per rank; the emulated hosts share the machine's cores like the reference ranks do).
# Each output line is the bench's JSON object with "H", "rate" and "kind" added in front.
# Runs are sequential (timings). OpenBLAS's OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are unset for every run.
# The emulated cluster is torn down at the end (also on error or interrupt).
set -euo pipefail

OUT=$(realpath -m "${1:-scaling-measurements.jsonl}")
cd "$(dirname "$0")/.."
DDP=${DDP_TRAIN:-$(command -v ddp-train || echo "$PWD/.build/release/ddp-train")}
HOSTS=${SCALING_HOSTS:-"2 3 4"}
RATES=${SCALING_RATES:-"unlimited 2.5gbit 1gbit"}
STEPS=${SCALING_STEPS:-300}
SIZES=${SCALING_SIZES:-0.00390625,0.25,1,2.5546,8}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

cleanup() { cluster/emulate down >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ -x $DDP ]] || { echo "scaling-measure: no ddp-train at $DDP (set DDP_TRAIN)" >&2; exit 1; }
: >"$OUT"

# run H RATE KIND CMD...: runs CMD with OpenBLAS's workplace settings unset, tags its JSON lines.
run() {
    local h=$1 rate=$2 kind=$3; shift 3
    echo "scaling-measure: H=$h rate=$rate kind=$kind" >&2
    local lines
    lines=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@" | grep '^{') \
        || { echo "scaling-measure: failed: $*" >&2; exit 1; }
    sed "s/^{/{\"H\":$h,\"rate\":\"$rate\",\"kind\":\"$kind\",/" <<<"$lines" | tee -a "$OUT" >&2
}

cluster/emulate down >/dev/null
run 1 local compute1 "$DDP" bench --batch-size 64 --steps "$STEPS" --local-ranks 1 --blas-threads 1
for h in $HOSTS; do
    run "$h" local compute mpirun -np "$h" --bind-to none \
        "$DDP" bench --batch-size 64 --steps "$STEPS" --blas-threads 1
done
for h in $HOSTS; do
    for rate in $RATES; do
        rate_opt=()
        [[ $rate == unlimited ]] || rate_opt=(--rate "$rate")
        cluster/emulate up "$h" --slots 1 "${rate_opt[@]}" >/dev/null
        read -ra margs <<<"$(cluster/emulate mpirun-args)"
        run "$h" "$rate" comm mpirun "${margs[@]}" -np "$h" --map-by node \
            "$DDP" bench --comm-sizes "$SIZES" --steps 30
        run "$h" "$rate" step mpirun "${margs[@]}" -np "$h" --map-by node \
            "$DDP" bench --batch-size 64 --steps "$STEPS" --blas-threads 1
    done
done
cluster/emulate down >/dev/null
echo "scaling-measure: wrote $(wc -l <"$OUT") lines to $OUT" >&2
