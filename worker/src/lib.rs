//! The Cloudflare Worker of the feed, compiled to wasm32 by worker-build.
//!
//! The major components are:
//! - [`router`]: the only entry point; maps method and path to a handler and
//!   turns every failure into the JSON error of DESIGN §3.3.
//! - `auth`: API key lookup in KV (only SHA-256 hashes are stored there).
//! - `ingest`: `POST /internal/rounds`, signed batches from ingest, fanned out
//!   to the Durable Objects concerned; 2xx only once every one has stored.
//! - `bridge`: the client side of an SSE stream: one WebSocket to the stream's
//!   Durable Object per client, whose ready-made SSE frames are forwarded as
//!   bytes into the client's response, plus heartbeats and disconnect handling.
//! - [`StreamObject`]: the Durable Object behind one game or one game type:
//!   SQLite history, idempotent store, hibernatable WebSocket fan-out.
//! - `config`: binding names and tunables read from the environment.

#![forbid(unsafe_code)]

mod auth;
mod bridge;
mod config;
mod error;
mod ingest;
pub mod router;
mod stream_object;

pub use stream_object::StreamObject;

use worker::{Context, Env, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    router::handle(req, env).await
}
