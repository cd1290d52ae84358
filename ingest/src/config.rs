//! Configuration, from flags or environment variables (`ingest --help`).

use std::time::Duration;

use clap::Parser;

/// Everything ingest needs to run. Each flag can also be given by the
/// environment variable named in `--help`.
#[derive(Clone, Parser)]
#[command(
    name = "ingest",
    version,
    about = "Debezium rounds from NATS JetStream to the edge"
)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// JetStream stream holding the Debezium subjects.
    #[arg(long, env = "NATS_STREAM", default_value = "dbserver1")]
    pub stream: String,

    /// Debezium `topic.prefix`: subjects are `<prefix>.<schema>.<table>`.
    #[arg(long, env = "DEBEZIUM_PREFIX", default_value = "dbserver1")]
    pub prefix: String,

    /// Create the stream (subjects `<prefix>.>`) if it does not exist, instead
    /// of failing.
    #[arg(long, env = "CREATE_STREAM", default_value_t = false)]
    pub create_stream: bool,

    /// Name of the durable pull consumer; keep it stable across restarts so
    /// delivery resumes where it stopped.
    #[arg(long, env = "DURABLE_NAME", default_value = "ingest")]
    pub durable: String,

    /// Base URL of the edge Worker, e.g. `https://feed.example.com`.
    #[arg(long, env = "EDGE_URL")]
    pub edge_url: String,

    /// Secret shared with the Worker (`INGEST_SECRET` there) that signs batches.
    #[arg(long, env = "INGEST_SECRET", hide_env_values = true)]
    pub ingest_secret: String,

    /// Most events in one POST to the edge.
    #[arg(long, env = "BATCH_MAX", default_value_t = 256)]
    pub batch_max: usize,

    /// How long to wait for more messages once one arrived, in milliseconds.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 2)]
    pub batch_linger_ms: u64,

    /// Timeout of one POST to the edge, in milliseconds.
    #[arg(long, env = "EDGE_TIMEOUT_MS", default_value_t = 10_000)]
    pub edge_timeout_ms: u64,
}

impl Config {
    /// Linger as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    /// Checks what clap cannot: names the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.ingest_secret.len() < 16 {
            return Err("INGEST_SECRET must be at least 16 characters".into());
        }
        if !(self.edge_url.starts_with("http://") || self.edge_url.starts_with("https://")) {
            return Err(format!(
                "EDGE_URL must be an http(s) URL, got {:?}",
                self.edge_url
            ));
        }
        if self.batch_max == 0 {
            return Err("BATCH_MAX must be at least 1".into());
        }
        Ok(())
    }
}

impl std::fmt::Debug for Config {
    // Hand-written so the secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("durable", &self.durable)
            .field("edge_url", &self.edge_url)
            .field("ingest_secret", &"<redacted>")
            .field("batch_max", &self.batch_max)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .finish()
    }
}
