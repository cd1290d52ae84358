//! The fan-out's decisions, as plain Rust with no JavaScript in it, so every
//! ordering rule is tested natively. The I/O layers (`objects`, `clients`)
//! feed these types what happened and carry out what they return.
//!
//! - [`message`]: the head every socket message starts with, and the
//!   packing of frames into messages.
//! - [`store`]: what a stored event changes and sends (idempotency), and
//!   what a resuming client missed (the backlog planner).
//! - [`feed`]: the life of an isolate's shared socket of one stream: joins,
//!   hand-overs, rotation, the watchdog.
//! - [`relays`]: the stream object's book of its relays: placement, push
//!   numbering and delivery.
//! - [`relay`]: a relay's rules: which joins it takes, which pushes it
//!   sends.
//! - [`ring`]: the one ring buffer of recent messages.
//! - [`viewers`]: viewer counts told from hop to hop, throttled.

pub(crate) mod feed;
pub(crate) mod message;
pub(crate) mod relay;
pub(crate) mod relays;
pub(crate) mod ring;
pub(crate) mod store;
pub(crate) mod viewers;
