//! Configuration, from flags or environment variables (`ingest --help`).
//! One `Config`; every field says what it is for. Bad values fail at start
//! with a message naming the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Everything `ingest` needs to run. Each flag can also be given by the
/// environment variable named in `--help`.
#[derive(Clone, Args)]
pub struct Config {
    /// NATS server URL(s), comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// NATS user (with --nats-password).
    #[arg(long, env = "NATS_USER")]
    pub nats_user: Option<String>,

    /// NATS password (with --nats-user).
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,

    /// NATS token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,

    /// NATS credentials file (JWT + NKey seed).
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,

    /// Require TLS to NATS.
    #[arg(long, env = "NATS_TLS", default_value_t = false)]
    pub nats_tls: bool,

    /// CA certificate (PEM) to verify the NATS server.
    #[arg(long, env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for NATS mutual TLS (with --nats-tls-key).
    #[arg(long, env = "NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,

    /// Client key (PEM) for NATS mutual TLS (with --nats-tls-cert).
    #[arg(long, env = "NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,

    /// JetStream stream holding the Debezium subjects.
    #[arg(long, env = "NATS_STREAM", default_value = "dbserver1")]
    pub stream: String,

    /// Debezium `topic.prefix`: subjects are `<prefix>.<schema>.<table>`.
    #[arg(long, env = "DEBEZIUM_PREFIX", default_value = "dbserver1")]
    pub prefix: String,

    /// Subjects to consume, comma-separated [default: `<prefix>.public.rounds,<prefix>.public.games`].
    #[arg(long, env = "SUBJECTS", value_delimiter = ',')]
    pub subjects: Vec<String>,

    /// Create the stream (subjects `<prefix>.>`) if it does not exist,
    /// instead of failing.
    #[arg(long, env = "CREATE_STREAM", default_value_t = false)]
    pub create_stream: bool,

    /// Name of the durable pull consumer; keep it stable across restarts so
    /// delivery resumes where it stopped.
    #[arg(long, env = "DURABLE_NAME", default_value = "ingest")]
    pub durable: String,

    /// Most messages delivered to ingest and not yet acknowledged: bounds
    /// ingest's memory.
    #[arg(long, env = "MAX_ACK_PENDING", default_value_t = 10_000)]
    pub max_ack_pending: i64,

    /// Seconds JetStream waits for an ack before redelivering; ingest sends
    /// progress while it retries, so this only matters if ingest dies.
    #[arg(long, env = "ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,

    /// How many times a round of a game ingest does not know is delivered
    /// (and nak'd, waiting for the game's change event) before ingest gives
    /// up and dead-letters it; with the default delay about a minute. Games
    /// events are read ahead on their own, so one already in the stream is
    /// never starved by such rounds.
    #[arg(long, env = "UNKNOWN_GAME_MAX_DELIVERIES", default_value_t = 30)]
    pub unknown_game_max_deliveries: i64,

    /// Redelivery delay of a round whose game is not known yet, in ms.
    #[arg(long, env = "UNKNOWN_GAME_DELAY_MS", default_value_t = 2_000)]
    pub unknown_game_delay_ms: u64,

    /// JetStream key-value bucket where ingest keeps the games registry (id →
    /// slug and type), so a restart does not forget games whose change events
    /// were acknowledged long ago.
    #[arg(long, env = "GAMES_BUCKET", default_value = "ingest_games")]
    pub games_bucket: String,

    /// Subject prefix of dead letters: a message that can never be delivered
    /// is copied to `<prefix>.<its subject>` with the reason in a header.
    #[arg(long, env = "DEAD_LETTER_PREFIX", default_value = "ingest.deadletter")]
    pub dead_letter_prefix: String,

    /// Base URL of the edge Worker, e.g. `https://feed.example.com`.
    #[arg(long, env = "EDGE_URL")]
    pub edge_url: Option<String>,

    /// Secret shared with the Worker (`INGEST_SECRET` there) that signs batches.
    #[arg(long, env = "INGEST_SECRET", hide_env_values = true)]
    pub ingest_secret: Option<String>,

    /// Most events in one POST to the edge.
    #[arg(long, env = "BATCH_MAX", default_value_t = 256)]
    pub batch_max: usize,

    /// Most bytes of round JSON in one POST (the edge refuses bodies over 1 MiB).
    #[arg(long, env = "BATCH_MAX_BYTES", default_value_t = 512 * 1024)]
    pub batch_max_bytes: usize,

    /// How long to wait for more events of a game once one arrived, in ms.
    /// 0 (the default) posts at once; what arrives while a game's POST is in
    /// flight forms its next batch, so batches still grow under load.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 0)]
    pub batch_linger_ms: u64,

    /// Timeout of one POST to the edge, in ms.
    #[arg(long, env = "EDGE_TIMEOUT_MS", default_value_t = 10_000)]
    pub edge_timeout_ms: u64,

    /// First delay before retrying a failed POST, in ms (doubles each time).
    #[arg(long, env = "RETRY_MIN_MS", default_value_t = 200)]
    pub retry_min_ms: u64,

    /// Longest delay between retries of a failed POST, in ms.
    #[arg(long, env = "RETRY_MAX_MS", default_value_t = 5_000)]
    pub retry_max_ms: u64,

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
}

/// What `run` needs beyond `Config`, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Edge base URL without a trailing slash.
    pub edge_url: String,
    /// Signing secret.
    pub secret: String,
    /// Subjects to consume.
    pub subjects: Vec<String>,
}

impl Config {
    /// Linger as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    /// Checks what clap cannot; the error names the setting.
    pub fn check(&self) -> Result<Checked, String> {
        let edge_url = self
            .edge_url
            .clone()
            .ok_or("EDGE_URL (--edge-url) is required")?;
        if !(edge_url.starts_with("http://") || edge_url.starts_with("https://")) {
            return Err(format!("EDGE_URL must be an http(s) URL, got {edge_url:?}"));
        }
        let secret = self
            .ingest_secret
            .clone()
            .ok_or("INGEST_SECRET (--ingest-secret) is required")?;
        check_secret(&secret)?;
        if self.batch_max == 0 {
            return Err("BATCH_MAX must be at least 1".into());
        }
        if !(1024..=1024 * 1024).contains(&self.batch_max_bytes) {
            return Err(
                "BATCH_MAX_BYTES must be between 1024 and 1048576 (the edge's bound)".into(),
            );
        }
        if self.retry_min_ms == 0 || self.retry_max_ms < self.retry_min_ms {
            return Err("RETRY_MIN_MS must be at least 1 and at most RETRY_MAX_MS".into());
        }
        if self.max_ack_pending < 1 {
            return Err("MAX_ACK_PENDING must be at least 1".into());
        }
        if self.ack_wait_secs < 1 {
            return Err("ACK_WAIT_SECS must be at least 1".into());
        }
        if self.unknown_game_max_deliveries < 1 {
            return Err("UNKNOWN_GAME_MAX_DELIVERIES must be at least 1".into());
        }
        if self.unknown_game_delay_ms < 1 {
            return Err("UNKNOWN_GAME_DELAY_MS must be at least 1".into());
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            return Err("NATS_USER and NATS_PASSWORD go together".into());
        }
        if self.nats_tls_cert.is_some() != self.nats_tls_key.is_some() {
            return Err("NATS_TLS_CERT and NATS_TLS_KEY go together".into());
        }
        for (name, path) in [
            ("NATS_CREDS", &self.nats_creds),
            ("NATS_TLS_CA", &self.nats_tls_ca),
            ("NATS_TLS_CERT", &self.nats_tls_cert),
            ("NATS_TLS_KEY", &self.nats_tls_key),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(format!("{name}: {} is not a readable file", path.display()));
            }
        }
        if self.games_bucket.is_empty()
            || !self
                .games_bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("GAMES_BUCKET must be letters, digits, '-' or '_'".into());
        }
        if self.dead_letter_prefix.is_empty() || self.dead_letter_prefix.contains(['*', '>', ' ']) {
            return Err("DEAD_LETTER_PREFIX must be a plain subject prefix".into());
        }
        let subjects = if self.subjects.is_empty() {
            vec![
                format!("{}.public.rounds", self.prefix),
                format!("{}.public.games", self.prefix),
            ]
        } else {
            self.subjects.clone()
        };
        Ok(Checked {
            edge_url: edge_url.trim_end_matches('/').to_string(),
            secret,
            subjects,
        })
    }
}

/// Refuses a signing secret that is a placeholder, too short, or too
/// uniform to be random ([`shared::secret::check`], the Worker's rules too);
/// the error names the setting and never the value.
pub fn check_secret(secret: &str) -> Result<(), String> {
    shared::secret::check("INGEST_SECRET", secret).map_err(|why| {
        format!("{why}, and set the same value in the Worker (`wrangler secret put INGEST_SECRET`)")
    })
}

impl std::fmt::Debug for Config {
    // Hand-written so no secret reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("nats_url", &self.nats_url)
            .field("nats_user", &self.nats_user)
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("subjects", &self.subjects)
            .field("durable", &self.durable)
            .field("edge_url", &self.edge_url)
            .field("batch_max", &self.batch_max)
            .field("batch_linger_ms", &self.batch_linger_ms)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    /// A valid secret (32 hex characters, as `devstack` generates them).
    const SECRET: &str = "5f1c0e9a7b3d24681ace0b9d7f3e5a21";

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["ingest"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").config
    }

    #[test]
    fn defaults_and_subjects() {
        let config = parse(&[
            "--edge-url",
            "http://127.0.0.1:8787/",
            "--ingest-secret",
            SECRET,
        ]);
        let checked = config.check().unwrap();
        assert_eq!(checked.edge_url, "http://127.0.0.1:8787");
        assert_eq!(
            checked.subjects,
            ["dbserver1.public.rounds", "dbserver1.public.games"]
        );
        let custom = parse(&[
            "--edge-url",
            "https://e",
            "--ingest-secret",
            SECRET,
            "--subjects",
            "a.b.rounds,a.b.games",
        ]);
        assert_eq!(
            custom.check().unwrap().subjects,
            ["a.b.rounds", "a.b.games"]
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: [(&[&str], &str); 6] = [
            (&["--ingest-secret", SECRET], "EDGE_URL"),
            (
                &["--edge-url", "ftp://x", "--ingest-secret", SECRET],
                "EDGE_URL",
            ),
            (&["--edge-url", "http://x"], "INGEST_SECRET"),
            (
                &["--edge-url", "http://x", "--ingest-secret", "short"],
                "INGEST_SECRET",
            ),
            (
                &[
                    "--edge-url",
                    "http://x",
                    "--ingest-secret",
                    SECRET,
                    "--nats-user",
                    "u",
                ],
                "NATS_USER",
            ),
            (
                &[
                    "--edge-url",
                    "http://x",
                    "--ingest-secret",
                    SECRET,
                    "--nats-creds",
                    "/nope",
                ],
                "NATS_CREDS",
            ),
        ];
        for (args, setting) in cases {
            let err = parse(args).check().unwrap_err();
            assert!(err.contains(setting), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_shipped_environment_example_is_valid_once_its_secret_is_set() {
        use clap::CommandFactory;
        let path = format!(
            "{}/../deploy/ingest/ingest.env.example",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let command = Cli::command();
        let mut args = vec!["ingest".to_string()];
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (name, value) = line.split_once('=').unwrap();
            if name == "RUST_LOG" {
                continue;
            }
            // Map each variable to its flag, so the test never touches the
            // process environment.
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == name))
                .unwrap_or_else(|| panic!("{name} in {path} is not a setting of ingest"));
            args.push(format!("--{}", arg.get_long().unwrap()));
            if !matches!(arg.get_action(), clap::ArgAction::SetTrue) {
                args.push(value.to_string());
            }
        }
        let mut config = Cli::try_parse_from(args).unwrap().config;
        // Its INGEST_SECRET is a placeholder, which ingest refuses at start
        // until a real secret replaces it; everything else is valid as is.
        let err = config.check().unwrap_err();
        assert!(
            err.contains("INGEST_SECRET") && err.contains("placeholder"),
            "{err}"
        );
        config.ingest_secret = Some(SECRET.into());
        config.check().unwrap();
    }

    #[test]
    fn placeholder_short_or_uniform_secrets_are_refused() {
        for refused in [
            "replace-with-a-long-random-secret",
            "REPLACE-WITH-A-LONG-RANDOM-SECRET-0123456789",
            "change-me-change-me-change-me-change-me",
            "please-changeme-before-production-use",
            "this-is-an-example-secret-of-sufficient-length",
            "my-placeholder-0123456789abcdef0123456789",
            "secret",
            "Secret",
            "0123456789abcdef",
            "0123456789abcdef0123456789abcde",
            &"s".repeat(32),
            &"abab".repeat(16),
            "",
        ] {
            let err = check_secret(refused).unwrap_err();
            assert!(err.contains("INGEST_SECRET"), "{refused:?}: {err}");
            assert!(!err.contains(refused) || refused.len() < 8, "{err}");
        }
        for accepted in [
            SECRET,
            "0123456789abcdef0123456789abcdef",
            "correct horse battery staple, but longer",
            &"a1b2c3d4".repeat(4),
        ] {
            assert_eq!(check_secret(accepted), Ok(()), "{accepted:?}");
        }
        let config = parse(&["--edge-url", "http://x", "--ingest-secret", "change-me"]);
        assert!(config.check().unwrap_err().contains("INGEST_SECRET"));
    }
    #[test]
    fn debug_hides_secrets() {
        let config = parse(&[
            "--edge-url",
            "http://x",
            "--ingest-secret",
            "super-secret-value",
            "--nats-password",
            "pw-123",
            "--nats-user",
            "u",
        ]);
        let text = format!("{config:?}");
        assert!(
            !text.contains("super-secret-value") && !text.contains("pw-123"),
            "{text}"
        );
    }
}
