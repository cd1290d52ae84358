//! Who may read what: API keys, browser tokens, and per-key limits.
//!
//! - [`admission`]: the one place a request is admitted: its credential,
//!   origin, scopes and limits.
//! - [`keys`]: API key records in KV, through the isolate's cache.
//! - [`keycache`]: the cache's rules, pure and tested natively.
//! - [`tokens`]: browser tokens (`st_…`) back to their parent key.
//! - [`limits`]: per-key stream, connect and request limits and usage in
//!   Upstash Redis, with the fail-open / fail-closed policy.
//! - [`ledger`]: the isolate's leases and remembered refusals: when to
//!   refresh, what a stream let in failing open becomes; pure and tested
//!   natively.
//! - [`upstash`]: the `fetch` transport of the Upstash REST protocol.
//!
//! Below it: `objects` (the directory tells a game's type), the base.

pub(crate) mod admission;
pub(crate) mod keycache;
pub(crate) mod keys;
pub(crate) mod ledger;
pub(crate) mod limits;
pub(crate) mod tokens;
pub(crate) mod upstash;
