//! The clients of the streams, as the Worker serves them.
//!
//! - [`client`]: one client's SSE response: body, `retry:`, heartbeats, key
//!   re-checks, the slow-client cut-off, and its end.
//! - [`feed`]: an isolate's clients of one stream sharing one socket to the
//!   stream object; it carries out what `fanout::feed` decides.
//!
//! Below it: `access` (keys and limits of an open stream), `objects` (the
//! stubs), the base.

pub(crate) mod client;
pub(crate) mod feed;
