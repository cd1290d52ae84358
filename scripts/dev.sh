#!/usr/bin/env bash
# The main job: installs what is missing, builds, then brings up nats-server
# (JetStream), the Worker under `wrangler dev` and ingest on loopback, seeds a
# test API key and prints an SSE URL to `curl -N`. Ctrl-C stops it all.
# Ports: GAMEFEED_NATS_PORT (4222), GAMEFEED_WORKER_PORT (8787).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"
bash scripts/build-worker.sh >/dev/null 2>&1 || bash scripts/build-worker.sh
cargo build --quiet --locked -p ingest -p devstack
exec "${CARGO_TARGET_DIR:-target}/debug/devstack" "$@"
