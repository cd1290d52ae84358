#!/usr/bin/env bash
# The main job: installs what is missing, builds, then brings up on loopback
# PostgreSQL, the Debezium engine, nats-server (JetStream), ingest and the
# Worker under `wrangler dev`, seeds a test API key, prints the demo page URL
# and a `curl -N` line, and INSERTs finished rounds. Ctrl-C stops it all.
# State lives in .local/ and is resumed by the next run; `--fresh` starts over.
# Ports: GAMEFEED_PG_PORT (55432), GAMEFEED_NATS_PORT (4222),
# GAMEFEED_WORKER_PORT (8787). Pace: GAMEFEED_ROUND_EVERY_MS (1000).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
bash scripts/build-worker.sh >/dev/null 2>&1 || bash scripts/build-worker.sh
cargo build --quiet --locked -p ingest -p devstack
exec "${CARGO_TARGET_DIR:-target}/debug/devstack" "$@"
