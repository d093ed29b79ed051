#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (a Python venv with aws-cli v1, boto3 and pytest; Debian's aws-cli v2,
# rclone and s3cmd; cargo-nextest if missing),
# then runs format, lint, unit, property and integration tests. Used by CI
# (.ci/run).
#
# --long adds the opt-in long tier after all of that (about 1.5 hours): a
# 30-minute `weft bench soak --check` on a release build (fds, connections,
# RSS and release queues must not keep growing; WEFT_SOAK_MINUTES changes the
# length) and the full chaos run (`--scenario all --duration 30m`, skipped
# with the smoke by WEFT_CHAOS_SKIP=1), and 5 minutes of fuzzing per target.
set -euo pipefail
cd "$(dirname "$0")/.."

LONG=0
for arg in "$@"; do
  case "$arg" in
    --long) LONG=1 ;;
    *) echo "usage: $0 [--long]" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "test tools"
VENV="${WEFT_VENV:-$HOME/.cache/weft-venv}"
if [ ! -x "$VENV/bin/aws" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --upgrade pip
fi
"$VENV/bin/pip" install --quiet awscli boto3 pytest
export WEFT_TEST_AWS="$VENV/bin/aws"
export WEFT_TEST_PYTHON="$VENV/bin/python"
"$WEFT_TEST_AWS" --version
# Debian's aws-cli v2, rclone and s3cmd for the client workflow tests.
missing=()
[ -x /usr/bin/aws ] || missing+=(awscli)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v s3cmd >/dev/null 2>&1 || missing+=(s3cmd)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export WEFT_TEST_AWS2=/usr/bin/aws
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
cargo nextest run --workspace --no-fail-fast --final-status-level=fail

# ---- the simulator bites (docs/testing.md, Simulation) ------------------------
# Each fixed bug, re-introduced behind the `failpoints` feature, must make a
# seed of the CI budget fail. Built into the failpoints target directory the
# chaos image uses, so the normal build is not rebuilt with hooks in it.
step "simulator: re-introduced bugs are caught"
cargo nextest run --target-dir "$CARGO_TARGET_DIR/chaos" -p weft-sim \
  --features weft-sim/failpoints --test injected_bugs --final-status-level=fail

# ---- fuzzing (docs/testing.md, Fuzzing) ---------------------------------------
# Every parser of outside or on-disk bytes, 8 s each with libFuzzer (cargo-fuzz,
# --sanitizer none on stable). The corpus and every crash reproducer are
# also replayed by the tests above (fuzzing/tests/replay.rs).
step "fuzzing: every target, 8 s each"
./scripts/fuzz.sh 8

# ---- chaos smoke (docs/chaos.md) --------------------------------------------
# Four fault scenarios (kill-datad, kill-metad-leader, bitrot, and lifecycle
# rules under faults on a cluster with a cold zone) against a 14-container
# cluster (20 for lifecycle) built from the dev-profile binaries above, a minute of
# whole-cluster power cuts, then the injected-bug tests, which must each see
# a run fail. About 8 minutes. Needs a
# docker daemon (nothing is pulled); WEFT_CHAOS_SKIP=1 skips it on purpose.
step "chaos smoke"
if [ "${WEFT_CHAOS_SKIP:-0}" = 1 ]; then
  echo "chaos smoke SKIPPED (WEFT_CHAOS_SKIP=1)"
else
  # The image needs the fault hooks (failpoints) for the injected-bug test:
  # built into their own target directory, so debug/weft stays the normal one.
  cargo build --quiet --target-dir "$CARGO_TARGET_DIR/chaos" -p weft-cli -p weft-chaos \
    --features weft-cli/failpoints --bin weft --bin weft-chaos
  CHAOS="$CARGO_TARGET_DIR/chaos/debug/weft-chaos"
  "$CHAOS" build-image --profile dev
  "$CHAOS" run --scenario smoke --duration 100s --seed "${WEFT_CHAOS_SEED:-1}" \
    --object-mib-max 16 --report "$CARGO_TARGET_DIR/chaos-smoke"
  # Whole-cluster power cuts (the daemons' power-cut disk drops what was
  # not fsynced at each kill): three cuts in 60 s.
  "$CHAOS" run --scenario power-cut --duration 60s --seed "${WEFT_CHAOS_SEED:-1}" \
    --object-mib-max 16 --report "$CARGO_TARGET_DIR/chaos-power-cut"
  # A CA roll in the middle of a workload (every hop is mutual TLS): not
  # one client request may fail.
  "$CHAOS" run --scenario cert-roll --duration 40s --seed "${WEFT_CHAOS_SEED:-1}" \
    --object-mib-max 16 --report "$CARGO_TARGET_DIR/chaos-cert-roll"
  WEFT_CHAOS_DOCKER=1 cargo nextest run -p weft-chaos --test injected_bug \
    --run-ignored only --final-status-level=fail
fi

# ---- long tier (--long only) --------------------------------------------------
[ "$LONG" = 1 ] || exit 0

step "long: soak ${WEFT_SOAK_MINUTES:-30} min (docs/performance.md, Soak)"
cargo build --release --quiet -p weft-cli --bin weft
"$CARGO_TARGET_DIR/release/weft" bench soak --minutes "${WEFT_SOAK_MINUTES:-30}" --check \
  --out "$CARGO_TARGET_DIR/soak.csv"

step "long: fuzzing, every target for 5 min"
./scripts/fuzz.sh 300

step "long: chaos, every scenario, 30 min"
if [ "${WEFT_CHAOS_SKIP:-0}" = 1 ]; then
  echo "long chaos run SKIPPED (WEFT_CHAOS_SKIP=1)"
else
  "$CHAOS" run --scenario all --duration 30m --seed "${WEFT_CHAOS_SEED:-1}" \
    --report "$CARGO_TARGET_DIR/chaos-long"
fi
