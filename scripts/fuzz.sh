#!/usr/bin/env bash
# Fuzzes every target in fuzzing/fuzz for SECONDS each (default 8), with
# libFuzzer through cargo-fuzz in `--sanitizer none` mode, which builds on
# the stable toolchain. Seeds come from fuzzing/corpus/<target>/ (read
# only); what libFuzzer finds new goes to a scratch directory, so a run
# never changes the repository unless it crashes: then the reproducer is
# written to fuzzing/artifacts/<target>/, the run fails, and the test
# suite replays that file from then on (fuzzing/tests/replay.rs). Copy an
# input worth keeping into the corpus by hand.
set -euo pipefail
cd "$(dirname "$0")/../fuzzing/fuzz"
SECONDS_EACH="${1:-8}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}/fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
cargo fuzz build -s none
if ! git diff --quiet -- Cargo.lock 2>/dev/null; then
  echo "note: fuzzing/fuzz/Cargo.lock changed while building (dependencies moved): commit it" >&2
fi
mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -lt 9 ]; then
  echo "cargo fuzz list gave ${#targets[@]} targets (${targets[*]}); expected every target in fuzzing/fuzz" >&2
  exit 1
fi
for t in "${targets[@]}"; do
  if [ ! -d "../corpus/$t" ]; then
    echo "fuzz target $t has no seed corpus in fuzzing/corpus/$t" >&2
    exit 1
  fi
  mkdir -p "$SCRATCH/$t" "$SCRATCH/found-$t" "../artifacts/$t"
  echo "fuzz $t for ${SECONDS_EACH}s"
  status=0
  cargo fuzz run -s none "$t" "$SCRATCH/$t" "../corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -artifact_prefix="$SCRATCH/found-$t/" \
    -print_final_stats=1 >"$SCRATCH/$t.log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|new_units_added)" "$SCRATCH/$t.log" || true
  if [ "$status" != 0 ] || [ -n "$(ls -A "$SCRATCH/found-$t")" ]; then
    cp "$SCRATCH/found-$t"/* "../artifacts/$t/" 2>/dev/null || true
    tail -40 "$SCRATCH/$t.log" >&2
    echo "fuzz $t failed (exit $status); reproducers in fuzzing/artifacts/$t/" >&2
    exit 1
  fi
done
