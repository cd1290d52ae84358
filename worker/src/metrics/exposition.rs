//! `GET /admin/metrics`: the edge's figures, gathered from the directory,
//! the stream objects and the key store (`routes::admin`), written in the
//! OpenMetrics text format Prometheus scrapes (as ingest's `/metrics` is),
//! by `prometheus-client`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::metrics::series::Delays;

/// One stream object's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StreamFigures {
    /// `game:<slug>` or `type:<type>`.
    pub(crate) stream: String,
    /// Clients now.
    pub(crate) viewers: u64,
    /// Relays in use.
    pub(crate) relays: u64,
    /// Feed sockets on the object itself.
    pub(crate) sockets: u64,
    /// Rounds stored since the object's first store.
    pub(crate) rounds: u64,
    /// Their commit → edge delays.
    pub(crate) delays: Delays,
}

/// One API key's figures (its id, never the key).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct KeyFigures {
    /// `key_…`.
    pub(crate) key_id: String,
    /// Streams holding a lease now.
    pub(crate) streams_open: u64,
    /// Today's usage (UTC): streams admitted.
    pub(crate) connects: i64,
    /// Refused by a limit.
    pub(crate) rejected: i64,
    /// Seconds of open streams.
    pub(crate) stream_seconds: i64,
    /// REST requests.
    pub(crate) requests: i64,
    /// Streams admitted in the current minute's window.
    pub(crate) connects_this_minute: u64,
    /// REST requests in the current minute's window.
    pub(crate) requests_this_minute: u64,
    /// The key's limits in force (its own, else the defaults); 0: none.
    pub(crate) max_streams: u32,
    /// See `max_streams`.
    pub(crate) connects_per_minute: u32,
    /// See `max_streams`.
    pub(crate) requests_per_minute: u32,
}

/// Everything one scrape gathered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Scrape {
    /// Every stream the directory knows.
    pub(crate) streams: Vec<StreamFigures>,
    /// Every key not revoked (keys are empty while limits are off).
    pub(crate) keys: Vec<KeyFigures>,
    /// Admissions let through without Upstash, over all isolates.
    pub(crate) failed_open: u64,
}

/// The scrape in the OpenMetrics text format.
pub(crate) fn render(scrape: &Scrape) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape.clone()));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads one gauge of a stream.
type StreamGauge = fn(&StreamFigures) -> u64;

fn stream_label(s: &StreamFigures) -> [(&'static str, &str); 1] {
    [("stream", s.stream.as_str())]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges: [(&str, &str, StreamGauge); 2] = [
            (
                "gamefeed_viewers",
                "Clients connected to the stream, over every isolate and relay.",
                |s| s.viewers,
            ),
            (
                "gamefeed_relays",
                "Relay objects the stream fans out through.",
                |s| s.relays,
            ),
        ];
        for (name, help, value) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &self.streams {
                metric
                    .encode_family(&stream_label(s))?
                    .encode_gauge(&value(s))?;
            }
        }
        let mut stored = encoder.encode_descriptor(
            "gamefeed_rounds_stored",
            "Rounds stored by the stream object since its first store.",
            None,
            MetricType::Counter,
        )?;
        for s in &self.streams {
            ConstCounter::new(s.rounds).encode(stored.encode_family(&stream_label(s))?)?;
        }
        let mut delay = encoder.encode_descriptor(
            "gamefeed_commit_to_edge_seconds",
            "Commit in PostgreSQL to storage at the edge, per stored round.",
            None,
            MetricType::Histogram,
        )?;
        for s in &self.streams {
            delay
                .encode_family(&stream_label(s))?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    s.delays.sum_ms / 1000.0,
                    s.delays.count(),
                    &s.delays.buckets(),
                    None,
                )?;
        }
        let mut open = encoder.encode_descriptor(
            "gamefeed_key_streams_open",
            "Streams an API key holds open now (its leases in Upstash).",
            None,
            MetricType::Gauge,
        )?;
        for k in &self.keys {
            open.encode_family(&[("key_id", k.key_id.as_str())])?
                .encode_gauge(&k.streams_open)?;
        }
        let mut max = encoder.encode_descriptor(
            "gamefeed_key_max_streams",
            "An API key's max_streams in force; keys without a limit are left out.",
            None,
            MetricType::Gauge,
        )?;
        for k in self.keys.iter().filter(|k| k.max_streams > 0) {
            max.encode_family(&[("key_id", k.key_id.as_str())])?
                .encode_gauge(&k.max_streams)?;
        }
        let mut usage = encoder.encode_descriptor(
            "gamefeed_key_usage_today",
            "An API key's usage so far today (UTC), by kind.",
            None,
            MetricType::Gauge,
        )?;
        for k in &self.keys {
            for (kind, value) in [
                ("connects", k.connects),
                ("rejected", k.rejected),
                ("stream_seconds", k.stream_seconds),
                ("requests", k.requests),
            ] {
                usage
                    .encode_family(&[("key_id", k.key_id.as_str()), ("kind", kind)])?
                    .encode_gauge(&value)?;
            }
        }
        let failed = encoder.encode_descriptor(
            "gamefeed_limits_failed_open",
            "Admissions let through without Upstash (it failed or timed out), over all isolates.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.failed_open).encode(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scrape() -> Scrape {
        let mut delays = Delays::default();
        delays.observe(12.0);
        delays.observe(12.0);
        delays.observe(1500.0);
        Scrape {
            streams: vec![
                StreamFigures {
                    stream: "game:crash".into(),
                    viewers: 1000,
                    relays: 2,
                    sockets: 3,
                    rounds: 3,
                    delays,
                },
                StreamFigures {
                    stream: "type:dice".into(),
                    ..StreamFigures::default()
                },
            ],
            keys: vec![
                KeyFigures {
                    key_id: "key_00ff".into(),
                    streams_open: 4,
                    connects: 10,
                    rejected: 1,
                    stream_seconds: 600,
                    requests: 7,
                    max_streams: 5,
                    ..KeyFigures::default()
                },
                KeyFigures {
                    key_id: "key_unlimited".into(),
                    ..KeyFigures::default()
                },
            ],
            failed_open: 5,
        }
    }

    #[test]
    fn every_figure_is_written_with_its_labels() {
        let text = render(&scrape()).unwrap();
        for line in [
            "# TYPE gamefeed_viewers gauge",
            "gamefeed_viewers{stream=\"game:crash\"} 1000",
            "gamefeed_viewers{stream=\"type:dice\"} 0",
            "gamefeed_relays{stream=\"game:crash\"} 2",
            "# TYPE gamefeed_rounds_stored counter",
            "gamefeed_rounds_stored_total{stream=\"game:crash\"} 3",
            "# TYPE gamefeed_commit_to_edge_seconds histogram",
            "gamefeed_commit_to_edge_seconds_sum{stream=\"game:crash\"} 1.524",
            "gamefeed_commit_to_edge_seconds_count{stream=\"game:crash\"} 3",
            "gamefeed_commit_to_edge_seconds_bucket{le=\"0.01\",stream=\"game:crash\"} 0",
            "gamefeed_commit_to_edge_seconds_bucket{le=\"0.02\",stream=\"game:crash\"} 2",
            "gamefeed_commit_to_edge_seconds_bucket{le=\"1.0\",stream=\"game:crash\"} 2",
            "gamefeed_commit_to_edge_seconds_bucket{le=\"2.5\",stream=\"game:crash\"} 3",
            "gamefeed_commit_to_edge_seconds_bucket{le=\"+Inf\",stream=\"game:crash\"} 3",
            "gamefeed_commit_to_edge_seconds_count{stream=\"type:dice\"} 0",
            "gamefeed_key_streams_open{key_id=\"key_00ff\"} 4",
            "gamefeed_key_max_streams{key_id=\"key_00ff\"} 5",
            "gamefeed_key_usage_today{key_id=\"key_00ff\",kind=\"connects\"} 10",
            "gamefeed_key_usage_today{key_id=\"key_00ff\",kind=\"rejected\"} 1",
            "gamefeed_key_usage_today{key_id=\"key_00ff\",kind=\"stream_seconds\"} 600",
            "gamefeed_key_usage_today{key_id=\"key_00ff\",kind=\"requests\"} 7",
            "# TYPE gamefeed_limits_failed_open counter",
            "gamefeed_limits_failed_open_total 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(
            !text.contains("gamefeed_key_max_streams{key_id=\"key_unlimited\"}"),
            "a key without a limit has no max: {text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Scrape::default();
        s.streams.push(StreamFigures {
            stream: "game:a\"b\\c".into(),
            ..StreamFigures::default()
        });
        let text = render(&s).unwrap();
        assert!(
            text.contains(r#"gamefeed_viewers{stream="game:a\"b\\c"} 0"#),
            "{text}"
        );
    }
}
