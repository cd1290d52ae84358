#!/usr/bin/env bash
# Edge fan-out benchmark (not a test): N SSE clients on one game, the built
# Worker under Miniflare (rounds posted to /internal/rounds) side by side with
# a usual Node + Express + ioredis SSE server (bench/node-sse-server.mjs on a
# redis-server of its own); prints the tables. See bench/edge.mjs for knobs.
#   BENCH_CLIENTS=1000,5000,10000 BENCH_ROUNDS=30 bash scripts/bench-edge.sh
# Then the runtime's floor (bench/floor.mjs: the smallest Worker of the same
# shape, same sizes; BENCH_FLOOR=0 skips it).
# GAMEFEED_SKIP_BUILD=1: no rebuild, e.g. to run a copy of a build while
# worker/src does not compile:  BENCH_WORKER_DIR=/path/to/build
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
if [ "${GAMEFEED_SKIP_BUILD:-}" != 1 ]; then
  bash scripts/build-worker.sh >/dev/null 2>&1 || bash scripts/build-worker.sh
fi
# One socket per client in each of node (load), workerd and the Node server:
# raise the soft limit.
ulimit -n "$(ulimit -Hn)"
node bench/edge.mjs
if [ "${BENCH_FLOOR:-1}" != 0 ]; then
  BENCH_MODES="${BENCH_MODES:-readable}" node bench/floor.mjs
fi
