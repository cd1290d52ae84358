#!/usr/bin/env bash
# End-to-end latency benchmark (not a test): PostgreSQL → Debezium → NATS →
# ingest → Worker → SSE clients, with the share of each stage.
#   BENCH_ROUNDS=1000 BENCH_CLIENTS=100 BENCH_EVERY_MS=50 bash scripts/bench-e2e.sh
#   BENCH_EDGE=wrangler …   # the Worker under wrangler dev instead of Miniflare
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
bash scripts/build-worker.sh >/dev/null 2>&1 || bash scripts/build-worker.sh
cargo build --quiet --locked --release -p ingest -p devstack
export GAMEFEED_INGEST_BIN="${CARGO_TARGET_DIR:-target}/release/ingest"
exec "${CARGO_TARGET_DIR:-target}/release/bench-e2e" "$@"
