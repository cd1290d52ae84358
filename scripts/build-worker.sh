#!/usr/bin/env bash
# Builds the Worker (wasm + JS shim) into worker/build/. wrangler.toml's
# [build] command runs this, so `wrangler dev` and `wrangler deploy` rebuild.
set -euo pipefail
# The end-to-end tests build once and tell wrangler not to rebuild per run.
if [ "${GAMEFEED_SKIP_BUILD:-}" = 1 ] && [ -f "$(dirname "$0")/../worker/build/index.js" ]; then
  exit 0
fi
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT/worker"
exec worker-build --release
