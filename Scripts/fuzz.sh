#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each for SECONDS (default 600):
#
#   Scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="idx safetensors"   targets to build and run (default: idx safetensors checkpoint image csv winograd pooling)
#   FUZZ_JOBS=N                      targets run at once (default: all of them; they are independent)
#
# Each target is Fuzz/TARGET.swift compiled together with the Data module's reader sources under
# -sanitize=fuzzer,address, so the parsers themselves are instrumented (no SwiftPM, no swift-crypto;
# linked with lld, as gold warns about ASan's symbols); or Fuzz/TARGET.c with the C kernel
# Sources/CKernels/TARGET.c (winograd, pooling: the kernels against a reference, on exact-size buffers).
# Everything generated lives under .build/fuzz/ (ignored by git):
#   bin/TARGET         the fuzzer            seeds/TARGET/   seeds from Fuzz/seeds.py
#   corpus/TARGET/     the growing corpus    artifacts/TARGET/  crash-*, timeout-*, oom-* inputs
#   logs/TARGET.log    libFuzzer's output
# A target's run stops at its first finding. Prints per target the executions and the verdict;
# exits 1 if any target found a crash, timeout, OOM or oversize allocation. Reproduce a finding
# with `.build/fuzz/bin/TARGET FILE`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION="${1:-600}"
read -r -a TARGETS <<< "${FUZZ_TARGETS:-idx safetensors checkpoint image csv winograd pooling}"
JOBS="${FUZZ_JOBS:-${#TARGETS[@]}}"
OUT=.build/fuzz
DATA_SOURCES=(Sources/Data/DataError.swift Sources/Data/IDX.swift Sources/Data/Gzip.swift
              Sources/Data/SafeTensors.swift Sources/Data/CheckpointFile.swift Sources/Data/AtomicFile.swift
              Sources/Data/CSV.swift Sources/Data/TableSchema.swift Sources/Data/TableEncoding.swift)
FUZZ_FLAGS=(-max_total_time="$DURATION" -max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512
            -timeout=10 -print_final_stats=1)

log() { echo "[fuzz] $*" >&2; }

for t in "${TARGETS[@]}"; do
  [ -f "Fuzz/$t.swift" ] || [ -f "Fuzz/$t.c" ] || { log "no target '$t' (Fuzz/$t.swift or Fuzz/$t.c)"; exit 2; }
done
mkdir -p "$OUT/bin" "$OUT/logs"

# --- build (skipped while the binary is newer than its sources) ---
for t in "${TARGETS[@]}"; do
  bin="$OUT/bin/$t"
  if [ -f "Fuzz/$t.c" ]; then  # a C kernel: its source and headers
    if [ -x "$bin" ] && [ -z "$(find "Fuzz/$t.c" "Sources/CKernels/$t.c" Sources/CKernels/*.h Sources/CKernels/include -newer "$bin")" ]; then
      continue
    fi
    log "building $t"
    clang -fsanitize=fuzzer,address -fuse-ld=lld -O1 -g -I Sources/CKernels/include "Fuzz/$t.c" "Sources/CKernels/$t.c" -o "$bin"
    continue
  fi
  # Per-target additions: image also needs the decoders and libpng/libjpeg (shim headers are deps too).
  extra=(); extra_deps=(); extra_flags=()
  case $t in
    image) extra=(Sources/Data/ImageFile.swift Sources/Data/ImageResize.swift); extra_deps=(Sources/CPNG/shim.h Sources/CJPEG/shim.h)
           extra_flags=(-I Sources/CPNG -I Sources/CJPEG -lpng16 -ljpeg) ;;
  esac
  if [ -x "$bin" ] && [ -z "$(find "Fuzz/$t.swift" "${DATA_SOURCES[@]}" "${extra[@]}" "${extra_deps[@]}" -newer "$bin")" ]; then
    continue
  fi
  log "building $t"
  swiftc -sanitize=fuzzer,address -parse-as-library -O -g -use-ld=lld -module-name "Fuzz_$t" \
    -I Sources/CZlib -lz "${extra_flags[@]}" "Fuzz/$t.swift" "${DATA_SOURCES[@]}" "${extra[@]}" -o "$bin"
done
rm -rf "$OUT/seeds"
python3 Fuzz/seeds.py "$OUT/seeds"

# --- run ---
run_target() {
  local t=$1 artifacts="$OUT/artifacts/$1/"
  mkdir -p "$OUT/corpus/$t" "$OUT/seeds/$t"
  rm -rf "$artifacts" && mkdir -p "$artifacts"
  local dict=(); case $t in safetensors|checkpoint) dict=(-dict=Fuzz/json.dict) ;; esac
  local rc=0
  SWIFT_BACKTRACE=enable=no "$OUT/bin/$t" "${FUZZ_FLAGS[@]}" "${dict[@]}" -artifact_prefix="$artifacts" \
    "$OUT/corpus/$t" "$OUT/seeds/$t" > "$OUT/logs/$t.log" 2>&1 || rc=$?
  echo "$rc" > "$OUT/logs/$t.rc"
}

log "running ${TARGETS[*]} for ${DURATION}s each, $JOBS at a time (logs in $OUT/logs/)"
running=0
for t in "${TARGETS[@]}"; do
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  run_target "$t" &
  running=$((running + 1))
done
wait

# --- report ---
failed=0
for t in "${TARGETS[@]}"; do
  logf="$OUT/logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logf" | grep -o '[0-9]*$' | tail -1)
  found=$(find "$OUT/artifacts/$t" -type f | sort)
  if [ "$(cat "$OUT/logs/$t.rc")" = 0 ] && [ -z "$found" ]; then
    printf '%-12s executions %-10s no crash\n' "$t" "${execs:-?}"
  else
    failed=1
    what=$(grep -m1 -E 'Fatal error|ERROR: (libFuzzer|AddressSanitizer)|exceeds limit' "$logf" | sed 's/^==[0-9]*== *//' | cut -c1-120 || true)
    printf '%-12s executions %-10s FOUND: %s\n' "$t" "${execs:-?}" "${what:-exit status $(cat "$OUT/logs/$t.rc")}"
    for f in $found; do echo "             input: $f"; done
    echo "             log:   $logf"
  fi
done
exit "$failed"
