#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (a Python venv with aws-cli, cargo-nextest if missing), then runs format,
# lint, unit, property and integration tests. Used by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

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
  "$VENV/bin/pip" install --quiet awscli boto3
fi
export WEFT_TEST_AWS="$VENV/bin/aws"
"$WEFT_TEST_AWS" --version
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
cargo nextest run --workspace --no-fail-fast --final-status-level=fail
