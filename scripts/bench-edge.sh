#!/usr/bin/env bash
# Edge fan-out benchmark (not a test): N SSE clients on one game under
# Miniflare, rounds posted to /internal/rounds; prints a table.
#   BENCH_CLIENTS=1000,5000,10000 BENCH_ROUNDS=30 bash scripts/bench-edge.sh
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
bash scripts/build-worker.sh >/dev/null 2>&1 || bash scripts/build-worker.sh
# One socket per client in each of node and workerd: raise the soft limit.
ulimit -n "$(ulimit -Hn)"
exec node bench/edge.mjs
