#!/usr/bin/env bash
# Builds Weft's chaos image without a registry: the `weft` binary of PROFILE
# plus exactly the shared libraries `ldd` lists, imported with `docker import`
# (see chaos/src/image.rs). Usage: scripts/chaos-image.sh [release|dev] [TAG]
#
# The chaos `weft` has fault hooks (the `failpoints` feature), so it is built
# into its own target directory, $CARGO_TARGET_DIR/chaos: the normal
# $CARGO_TARGET_DIR/release/weft (and debug/weft) is never replaced by it.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${1:-release}"
TAG="${2:-weft-chaos/weft:latest}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}"
CHAOS_TARGET="$CARGO_TARGET_DIR/chaos"

case "$PROFILE" in
  release) flags=(--release); dir=release ;;
  dev) flags=(); dir=debug ;;
  *) echo "usage: $0 [release|dev] [TAG]" >&2; exit 2 ;;
esac
cargo build ${flags[@]+"${flags[@]}"} --target-dir "$CHAOS_TARGET" -p weft-cli -p weft-chaos \
  --features weft-cli/failpoints --bin weft --bin weft-chaos
# build-image finds the binary under $CARGO_TARGET_DIR/chaos/<dir>/weft.
"$CHAOS_TARGET/$dir/weft-chaos" build-image --profile "$PROFILE" --tag "$TAG"
