#!/usr/bin/env bash
# The test command: installs whatever is missing, then runs every check and
# test of the project. `.ci/run` calls exactly this.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$GAMEFEED_ROOT"

step() { printf '\n==> %s\n' "$*"; }

# A fresh clone builds everything once: incremental caches only cost disk here.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Disk is what a CI machine runs out of first; show it at both ends.
df -h "$GAMEFEED_ROOT" | tail -n 1
trap 'echo "disk at exit: $(df -h "$GAMEFEED_ROOT" | tail -n 1)"; du -sh "$GAMEFEED_ROOT/target" 2>/dev/null || true' EXIT

step "rustfmt"
cargo fmt --all -- --check

step "clippy (native, every crate and test)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "clippy (wasm32: shared and the Worker)"
cargo clippy -p shared -p feed-worker --target wasm32-unknown-unknown --locked -- -D warnings

step "unit tests, and ingest against a real nats-server and a stand-in edge"
cargo test --workspace --exclude devstack --locked
cargo test -p devstack --lib --locked

step "capacity and cost model (its formulas against hand-computed cases)"
python3 scripts/capacity-model.py --self-test

step "browser client (client/): dist is what src builds, size budget, unit tests, README examples type-check"
node client/build.mjs --check
node --test client/test/*.test.mjs
node client/test/readme-example.mjs

step "operators' console (console/): dist is what src builds, type-check, page weight budget, unit tests"
node console/build.mjs --check
node --test console/test/*.test.mjs

step "shared builds for wasm32"
cargo check -p shared --target wasm32-unknown-unknown --locked

step "Worker build (worker-build, release)"
bash scripts/build-worker.sh

step "wrangler deploy --dry-run (local, staging, production bundles)"
dist="$(mktemp -d)"
for env in "" staging production; do
  out="$(GAMEFEED_SKIP_BUILD=1 wrangler deploy --dry-run --outdir "$dist/${env:-local}" ${env:+--env "$env"} 2>&1)" || {
    echo "$out"; echo "wrangler deploy --dry-run failed for env '${env:-local}'"; exit 1; }
  grep -q -- "--dry-run: exiting now" <<<"$out" || { echo "$out"; exit 1; }
  echo "env ${env:-local}: $(grep -m1 'Total Upload' <<<"$out")"
done
rm -rf "$dist"

step "end-to-end and edge tests (real nats-server, workerd under wrangler dev, ingest)"
cargo build -p ingest --locked
cargo test -p devstack --test '*' --locked

step "fault matrix, short (every fault injected into the whole system; nothing may be lost)"
GAMEFEED_SKIP_BUILD=1 bash scripts/faults.sh --short
