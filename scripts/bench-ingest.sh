#!/usr/bin/env bash
# ingest benchmarks (not tests): decode throughput on one core, and sustained
# forwarding through a real nats-server to a stand-in edge.
#   BENCH_RATE=5000 BENCH_SECS=10 BENCH_GAMES=10 bash scripts/bench-ingest.sh
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
cargo run --release --quiet --locked -p ingest --example bench_decode
cargo run --release --quiet --locked -p ingest --example bench_forward
