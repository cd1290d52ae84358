//! Prometheus metrics, served on `/metrics` of the operations address.
//! Label values come from small fixed sets (reasons, status classes), never
//! from data, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// A `status` label (the edge's HTTP status, or `error`/`timeout`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    /// Status code as text.
    pub status: String,
}

/// Why a message is terminated (dead-lettered): the documented set
/// (docs/protocol.md, "Dead letters"). Each starts at zero, so that the first
/// dead letter of a reason is an increase Prometheus sees (a series that
/// appears at 1 has no increase to `increase()`).
pub const TERM_REASONS: [&str; 4] = ["undecodable", "rejected", "too_large", "unknown_game"];

/// Why a message is nak'd; each starts at zero, as above.
pub const NAK_REASONS: [&str; 5] = [
    "registry",
    "unknown_game",
    "lane_closed",
    "shutdown",
    "dead_letter_unavailable",
];

/// Every metric ingest exports.
pub struct Metrics {
    /// Messages pulled from JetStream.
    pub received: Counter,
    /// Messages acknowledged (delivered, or nothing to deliver).
    pub acked: Counter,
    /// Messages nak'd for redelivery, by reason.
    pub nakked: Family<Reason, Counter>,
    /// Messages terminated (and copied to the dead-letter subject), by reason.
    pub terminated: Family<Reason, Counter>,
    /// Messages that produced no event, by reason (heartbeat, delete, …).
    pub skipped: Family<Reason, Counter>,
    /// Events per POST.
    pub batch_events: Histogram,
    /// Seconds per POST to the edge.
    pub post_seconds: Histogram,
    /// Edge answers by status.
    pub edge_status: Family<Status, Counter>,
    /// Messages of the consumer not yet delivered to ingest.
    pub consumer_pending: Gauge,
    /// Messages delivered to ingest and not yet acknowledged.
    pub consumer_ack_pending: Gauge,
    registry: Registry,
}

impl Metrics {
    /// A fresh set, registered under `ingest_`.
    pub fn new() -> Self {
        let received = Counter::default();
        let acked = Counter::default();
        let nakked = Family::<Reason, Counter>::default();
        let terminated = Family::<Reason, Counter>::default();
        let skipped = Family::<Reason, Counter>::default();
        let batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let post_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let edge_status = Family::<Status, Counter>::default();
        let consumer_pending = Gauge::default();
        let consumer_ack_pending = Gauge::default();
        let mut registry = Registry::with_prefix("ingest");
        registry.register(
            "messages_received",
            "Messages pulled from JetStream",
            received.clone(),
        );
        registry.register("messages_acked", "Messages acknowledged", acked.clone());
        registry.register(
            "messages_nakked",
            "Messages nak'd for redelivery",
            nakked.clone(),
        );
        registry.register(
            "messages_terminated",
            "Messages terminated and dead-lettered",
            terminated.clone(),
        );
        registry.register(
            "messages_skipped",
            "Messages that carried no round event",
            skipped.clone(),
        );
        registry.register(
            "batch_events",
            "Events per POST to the edge",
            batch_events.clone(),
        );
        registry.register(
            "edge_post_seconds",
            "Duration of POSTs to the edge",
            post_seconds.clone(),
        );
        registry.register(
            "edge_responses",
            "Edge answers by status",
            edge_status.clone(),
        );
        registry.register(
            "consumer_pending",
            "Messages not yet delivered to ingest",
            consumer_pending.clone(),
        );
        registry.register(
            "consumer_ack_pending",
            "Messages delivered and not yet acknowledged",
            consumer_ack_pending.clone(),
        );
        for reason in TERM_REASONS {
            drop(terminated.get_or_create(&Reason {
                reason: reason.into(),
            }));
        }
        for reason in NAK_REASONS {
            drop(nakked.get_or_create(&Reason {
                reason: reason.into(),
            }));
        }
        Self {
            received,
            acked,
            nakked,
            terminated,
            skipped,
            batch_events,
            post_seconds,
            edge_status,
            consumer_pending,
            consumer_ack_pending,
            registry,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts a nak.
    pub fn nak(&self, reason: &str) {
        self.nakked
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a termination.
    pub fn term(&self, reason: &str) {
        self.terminated
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a skipped message.
    pub fn skip(&self, reason: &str) {
        self.skipped
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts an edge answer.
    pub fn edge(&self, status: &str) {
        self.edge_status
            .get_or_create(&Status {
                status: status.into(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new();
        m.received.inc();
        m.nak("edge_unavailable");
        m.term("undecodable");
        m.edge("200");
        m.post_seconds.observe(0.01);
        let text = m.encode();
        for name in [
            "ingest_messages_terminated_total{reason=\"too_large\"} 0",
            "ingest_messages_nakked_total{reason=\"shutdown\"} 0",
            "ingest_messages_received_total 1",
            "ingest_messages_nakked_total{reason=\"edge_unavailable\"} 1",
            "ingest_messages_terminated_total{reason=\"undecodable\"} 1",
            "ingest_edge_responses_total{status=\"200\"} 1",
            "ingest_edge_post_seconds_count 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
