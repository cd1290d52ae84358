//! The Cloudflare Worker of the feed, compiled to wasm32 by worker-build.
//!
//! The major components are:
//! - [`router`]: the only entry point; maps method and path to a handler and
//!   turns every failure into the JSON error of DESIGN §3.3.
//! - `auth`: API key lookup in KV (only SHA-256 hashes are stored there) and
//!   stream admission (scopes, origins): the one place a stream is admitted.
//! - `api`: the public REST routes (games, latest round, history).
//! - `admin`: key creation, listing, revocation and usage; stream statistics.
//! - `limits`: per-key stream, connect and request limits and daily usage in
//!   Upstash Redis (over `upstash`, the `fetch` transport of its REST
//!   protocol), with the fail-open / fail-closed policy.
//! - `tokens`: short-lived browser tokens minted from a key.
//! - `ingest`: `POST /internal/rounds`, signed batches from ingest, fanned out
//!   to the Durable Objects concerned; 2xx only once every one has stored.
//! - `bridge`: the client side of an SSE stream: one WebSocket to the stream's
//!   Durable Object per client, whose ready-made SSE frames are forwarded as
//!   bytes into the client's response, plus heartbeats and disconnect handling.
//! - `objects`: object names and the one typed protocol between the Worker
//!   and its stream objects and relays (request enums, stubs).
//! - [`StreamObject`]: the Durable Object behind one game or one game type:
//!   SQLite history, idempotent store, hibernatable WebSocket fan-out; past
//!   `RELAY_CAPACITY` sockets it places subscribers on relays (`relays`).
//! - [`RelayObject`]: fans one stream's pushes out to up to
//!   `RELAY_CAPACITY` more sockets; stores nothing.
//! - [`Directory`]: the Durable Object listing known games (slug, type,
//!   latest round id), kept by `ingest`.
//! - `config`: binding names and tunables read from the environment.

#![forbid(unsafe_code)]

mod admin;
mod api;
mod auth;
mod background;
mod bridge;
mod config;
mod deadline;
mod directory;
mod error;
mod feed;
mod ingest;
mod keycache;
mod limits;
mod objects;
mod relay_object;
mod relays;
pub mod router;
mod stream_object;
mod tokens;
mod upstash;

pub use directory::Directory;
pub use relay_object::RelayObject;
pub use stream_object::StreamObject;

use worker::{Context, Env, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    router::handle(req, env, ctx).await
}
