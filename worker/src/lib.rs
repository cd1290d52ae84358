//! The Cloudflare Worker of the feed, compiled to wasm32 by worker-build.
//!
//! The layers, from the top down (a module imports only from layers below
//! it; the contract users read is `docs/protocol.md`):
//! - [`routes`]: the only entry point; maps method and path to a handler
//!   (streams, REST, tokens, admin, ingest) and turns every failure into the
//!   JSON error of the protocol.
//! - `clients`: a client's SSE stream (body, heartbeats, key re-checks,
//!   slow-client cut-off) and the feeds: an isolate's clients of a stream
//!   sharing one socket to its object.
//! - `access`: API keys, browser tokens, per-key limits in Upstash: the one
//!   place a request is admitted.
//! - `objects`: the Durable Objects ([`StreamObject`] per game and per game
//!   type, [`RelayObject`] past `RELAY_CAPACITY` sockets, [`Directory`] of
//!   games) and the one typed protocol the Worker speaks to them.
//! - The base: `config` (the one checked configuration), `error` (typed
//!   errors, and the one place they become HTTP answers), `http` (JSON
//!   answers, `Authorization`, query parameters), `isolate` (the state kept
//!   between requests), `platform` (clock, randomness, timers, `waitUntil`,
//!   timeouts).
//! - `fanout`: the fan-out's decisions as plain Rust, no JavaScript: the
//!   store's idempotency and backlog, the feeds' life, relay placement and
//!   pushes, message heads. Tested natively.
//! - `metrics`: what operators read, as plain Rust: a stream's figures per
//!   minute and the Prometheus scrape. Tested natively.

#![forbid(unsafe_code)]

mod access;
mod clients;
mod config;
mod error;
mod fanout;
mod http;
mod isolate;
mod metrics;
mod objects;
mod platform;
pub mod routes;

pub use objects::{Directory, RelayObject, StreamObject};

use worker::{Context, Env, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    routes::handle(req, env, ctx).await
}
