#!/usr/bin/env bash
# Builds Weft's chaos image without a registry: the `weft` binary of PROFILE
# plus exactly the shared libraries `ldd` lists, imported with `docker import`
# (see chaos/src/image.rs). Usage: scripts/chaos-image.sh [release|dev] [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${1:-release}"
TAG="${2:-weft-chaos/weft:latest}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft-target}"

case "$PROFILE" in
  release) cargo build --release -p weft-cli -p weft-chaos --features weft-cli/failpoints --bin weft --bin weft-chaos; dir=release ;;
  dev) cargo build -p weft-cli -p weft-chaos --features weft-cli/failpoints --bin weft --bin weft-chaos; dir=debug ;;
  *) echo "usage: $0 [release|dev] [TAG]" >&2; exit 2 ;;
esac
"$CARGO_TARGET_DIR/$dir/weft-chaos" build-image --profile "$PROFILE" --tag "$TAG"
