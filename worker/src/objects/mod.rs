//! The Durable Objects, and the one protocol the Worker speaks to them.
//!
//! - [`protocol`]: object names, the calls to every object (enums encoded
//!   and decoded by pure functions, parsed once in the object) and their
//!   replies.
//! - [`stream`]: [`StreamObject`], one per game (`game:<slug>`) and per game
//!   type (`type:<type>`): idempotent store, subscriptions, hibernatable
//!   WebSocket fan-out.
//! - [`history`]: a stream object's SQLite tables and every query of them.
//! - [`stubs`]: the protocol carried over the runtime: typed stubs, and
//!   the readers and replies of the objects.
//! - [`relays`]: the stream object's side of its relays: placement past
//!   `RELAY_CAPACITY` sockets, numbered pushes.
//! - [`relay`]: [`RelayObject`], which fans one stream's pushes out to more
//!   sockets and stores nothing.
//! - [`directory`]: [`Directory`], the games known (slug, type, latest
//!   round id), and the isolate's copy of it.
//!
//! The decisions these objects carry out (what a store changes, what a
//! resume replays, where a socket goes) are in `crate::fanout`.

pub(crate) mod directory;
pub(crate) mod history;
pub(crate) mod protocol;
pub(crate) mod relay;
pub(crate) mod relays;
pub(crate) mod stream;
pub(crate) mod stubs;

pub use directory::Directory;
pub use relay::RelayObject;
pub use stream::StreamObject;
