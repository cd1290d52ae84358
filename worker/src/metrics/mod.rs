//! What operators read about the edge, as plain Rust (no JavaScript):
//! [`series`] (a stream's figures per minute for the last day, and the
//! commit → edge delay histogram) and [`exposition`] (the Prometheus scrape
//! of `GET /admin/metrics`). Tested natively.

pub(crate) mod exposition;
pub(crate) mod series;
