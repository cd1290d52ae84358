#!/usr/bin/env bash
# Admission latency benchmark (not a test): request → first SSE byte over
# sequential connects, per-key limits off and on (a real redis-server behind
# upstash-local), and Upstash round trips per admission.
#   BENCH_CONNECTS=1000 bash scripts/bench-admission.sh
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
bash scripts/build-worker.sh >/dev/null 2>&1 || bash scripts/build-worker.sh
cargo build --quiet --locked --release -p devstack
export GAMEFEED_UPSTASH_LOCAL_BIN="${CARGO_TARGET_DIR:-target}/release/upstash-local"
exec "${CARGO_TARGET_DIR:-target}/release/bench-admission" "$@"
