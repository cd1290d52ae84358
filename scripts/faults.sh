#!/usr/bin/env bash
# The fault matrix: the whole local system under a steady stream of rounds
# while every fault is injected in turn; compares what PostgreSQL committed
# with what every SSE client received.
#   bash scripts/faults.sh           # the full run (>= 10 000 rounds)
#   bash scripts/faults.sh --short   # the test command's run (>= 1 000 rounds)
# Extra flags go to the binary: --rate N (rounds/s), --state DIR (keep logs).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
if [ "${GAMEFEED_SKIP_BUILD:-}" != 1 ]; then
  bash scripts/build-worker.sh
fi
cargo build --locked -p ingest -p devstack --bin faults --bin upstash-local
export GAMEFEED_SKIP_BUILD=1
exec "${CARGO_TARGET_DIR:-$GAMEFEED_ROOT/target}/debug/faults" "$@"
