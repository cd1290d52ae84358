//! Contracts that cross a boundary between the parts of the feed.
//!
//! Everything in here is plain data and pure functions, so it builds for native
//! code (`ingest`, tests) and for `wasm32-unknown-unknown` (the Worker) alike.
//! It knows nothing of tokio, of the Worker runtime, or of any clock: callers
//! pass "now" in, which keeps every function deterministic and testable.
//!
//! The major components are:
//! - [`round`]: the round as clients see it (docs/protocol.md#the-round) and the ingest batch
//!   that carries round events to the edge (docs/protocol.md#ingest-to-edge).
//! - [`sse`]: the Server-Sent Events frame encoder (docs/protocol.md#server-sent-events).
//! - [`signature`]: the `x-signature` HMAC scheme between ingest and the edge.
//! - [`apikey`]: API key format, hashing and the record stored in KV (docs/protocol.md#api-keys-and-browser-tokens).
//! - [`cursor`]: stream names and the resume cursor of multiplexed streams.
//! - [`names`]: validation of game slugs and game types used in URLs and object names.
//! - [`error`]: the JSON error body every public route answers with (docs/protocol.md#errors).
//! - [`upstash`]: the Upstash Redis REST protocol (docs/protocol.md#per-key-limits-and-usage), transport-free.
//! - [`limits`]: per-key limits and usage as Redis keys and Lua scripts.
//! - [`token`]: short-lived browser tokens signed by the Worker.
//! - [`secret`]: strength checks of the shared secrets.
#![forbid(unsafe_code)]

pub mod apikey;
pub mod cursor;
pub mod error;
pub mod limits;
pub mod names;
pub mod round;
pub mod secret;
pub mod signature;
pub mod sse;
pub mod token;
pub mod upstash;

pub use round::{EventKind, IngestBatch, IngestReply, Round, RoundEvent};
