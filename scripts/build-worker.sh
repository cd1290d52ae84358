#!/usr/bin/env bash
# Builds the Worker (wasm + JS shim) into worker/build/. wrangler.toml's
# [build] command runs this, so `wrangler dev` and `wrangler deploy` rebuild.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT/worker"
exec worker-build --release
