//! Binding names (as in `wrangler.toml`) and the one checked configuration,
//! read from `[vars]` and secrets once per isolate ([`get`]).
//!
//! A value that cannot be used is never silent: [`Config::parse`] names the
//! variable, the value (never a secret's) and what is used instead; [`get`]
//! logs that once, and `/healthz` lists the names. A safety setting with a
//! bad value fails closed: `LIMITS_FAIL` refuses, `ALLOW_FAULTS` stays off,
//! a weak or missing secret closes what it protects.
//!
//! Every variable, its default and its range are in `docs/protocol.md`
//! ("The Worker's configuration").

use std::fmt::Display;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use worker::Env;

/// KV namespace holding `key:<sha256>` → API key record.
pub(crate) const KEYS: &str = "KEYS";
/// Durable Object namespace of the per-game and per-type streams.
pub(crate) const STREAMS: &str = "STREAMS";
/// Durable Object namespace of the streams' relays.
pub(crate) const RELAYS: &str = "RELAYS";
/// Durable Object namespace of the games directory.
pub(crate) const DIRECTORY: &str = "DIRECTORY";
/// Secret that guards the admin routes.
pub(crate) const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
/// Secret that signs ingest batches (`.dev.vars` locally, `wrangler secret put`).
pub(crate) const INGEST_SECRET: &str = "INGEST_SECRET";
/// Secret that signs browser tokens (`st_…`).
pub(crate) const TOKEN_SECRET: &str = "TOKEN_SECRET";
/// Upstash's own secret names: the REST endpoint and its token.
pub(crate) const UPSTASH_URL: &str = "UPSTASH_REDIS_REST_URL";
/// See [`UPSTASH_URL`].
pub(crate) const UPSTASH_TOKEN: &str = "UPSTASH_REDIS_REST_TOKEN";

/// Most sockets one object may hold: the runtime refuses a socket past
/// 32 768 per object, and `accept_websocket_with_tags` would then panic.
const MAX_RELAY_CAPACITY: u64 = 32_000;

/// Where the configuration is read from: the Worker's `Env`, or a map in
/// tests.
pub(crate) trait Source {
    /// A plain variable of `[vars]`.
    fn var(&self, name: &str) -> Option<String>;
    /// A secret; a plain variable of that name counts too (wrangler exposes
    /// `.dev.vars` entries and `--var` flags as either, depending on version).
    fn secret(&self, name: &str) -> Option<String>;
}

impl Source for Env {
    fn var(&self, name: &str) -> Option<String> {
        Env::var(self, name).ok().map(|v| v.to_string())
    }

    fn secret(&self, name: &str) -> Option<String> {
        Env::secret(self, name)
            .map(|s| s.to_string())
            .ok()
            .or_else(|| Source::var(self, name))
    }
}

/// A variable that could not be used as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The variable's name (`/healthz` lists these, never values).
    pub(crate) name: &'static str,
    /// What was wrong and what is used instead, for the log.
    pub(crate) message: String,
}

/// Tunables of a stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamConfig {
    /// Interval of `: heartbeat` comments written by the Worker.
    pub(crate) heartbeat: Duration,
    /// `retry:` sent to browsers, in milliseconds.
    pub(crate) retry_ms: u64,
    /// `RETRY_JITTER=on`: each connection's `retry:` is spread between a
    /// third and twice `retry_ms` (`shared::sse::jittered_retry_ms`).
    pub(crate) retry_jitter: bool,
    /// Rounds kept per stream for resume and history.
    pub(crate) history_limit: u32,
    /// Bytes a client may leave unread before it counts as slow and is cut
    /// off (it reconnects and resumes).
    pub(crate) max_queued_bytes: u64,
    /// How often an open stream re-reads its API key (revocation, expiry).
    pub(crate) key_recheck: Duration,
    /// How long an isolate trusts a key record it read from KV.
    pub(crate) key_cache: Duration,
}

/// How per-key limits are enforced.
#[derive(Clone)]
pub(crate) struct LimitsConfig {
    /// The Upstash endpoint and token; `None`: limits are off.
    pub(crate) upstash: Option<(String, String)>,
    /// Longest wait for Upstash before the fail policy applies.
    pub(crate) timeout: Duration,
    /// Longest wait for calls nobody waits on (lease refresh and release):
    /// giving a slot back must not fail just because Upstash is slower than
    /// an admission may wait.
    pub(crate) background_timeout: Duration,
    /// `LIMITS_FAIL=closed` (or a value that is neither `open` nor
    /// `closed`): answer 503 when Upstash cannot be asked.
    pub(crate) fail_closed: bool,
    /// Limits of keys that have none of their own.
    pub(crate) defaults: shared::limits::Limits,
    /// How long a stream's lease lives unless refreshed: three refresh
    /// periods, so a failed refresh (retried every heartbeat) does not let
    /// it lapse, and a Worker that vanished frees its slots within three
    /// periods.
    pub(crate) lease_ttl: Duration,
    /// `LEASE_REFRESH_SECS`: how often the leases are refreshed.
    pub(crate) refresh_every: Duration,
    /// How often instead while a stream let in failing open waits to be
    /// counted, or after a refresh failed: every heartbeat.
    pub(crate) retry_every: Duration,
    /// `TOKEN_MAX_STREAMS`: streams one browser token may hold at once (0:
    /// only its key's limit).
    pub(crate) token_max_streams: u32,
}

/// The feeds: an isolate's clients of a stream sharing one socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedConfig {
    /// `FEED_GROUP`: most clients sharing one feed socket (0: no limit).
    pub(crate) group: usize,
    /// `FEED_ROTATE_AFTER`: work a socket's owner does for members (a frame
    /// to a client of one stream is 1, more to a member of a multiplexed
    /// connection: `fanout::feed::work`) before another member takes the
    /// socket over.
    pub(crate) rotate_after: u64,
    /// `VIEWERS_SECS`: each hop of the viewer counts (feed, relay, stream
    /// object) tells a changed count on at most this often.
    pub(crate) viewers_every: Duration,
}

/// Fault injection for tests: only where `ALLOW_FAULTS=1`, which the
/// deployed environments never set (a test checks).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Faults {
    /// `ALLOW_FAULTS=1`: the fault routes exist.
    pub(crate) allowed: bool,
    /// `FAULT_SUBSCRIBE=hang-once`: a stream object's first subscription
    /// is never answered.
    pub(crate) subscribe_hangs_once: bool,
    /// `FAULT_RELAY_PUSH=hang`: relays never answer a push.
    pub(crate) relay_pushes_hang: bool,
}

/// The Worker's whole configuration. Not `Debug`: it holds the secrets.
pub(crate) struct Config {
    /// Streams (heartbeats, history, keys).
    pub(crate) stream: StreamConfig,
    /// Per-key limits.
    pub(crate) limits: LimitsConfig,
    /// Feeds.
    pub(crate) feed: FeedConfig,
    /// Most subscriber sockets on one object (a stream object or a relay)
    /// before new subscribers go to (further) relays.
    pub(crate) relay_capacity: usize,
    /// Fault injection.
    pub(crate) faults: Faults,
    /// `ADMIN_TOKEN`, when set and strong; the admin routes are closed
    /// otherwise.
    pub(crate) admin_token: Option<String>,
    /// `INGEST_SECRET`, when set and strong; ingest is refused otherwise.
    pub(crate) ingest_secret: Option<String>,
    /// `TOKEN_SECRET`, when set and strong; browser tokens are off otherwise.
    pub(crate) token_secret: Option<String>,
    /// What could not be used as given.
    pub(crate) problems: Vec<Problem>,
}

/// Reads variables, collecting what could not be used.
struct Reader<'a, S: Source + ?Sized> {
    source: &'a S,
    problems: Vec<Problem>,
}

impl<S: Source + ?Sized> Reader<'_, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.source
            .var(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, name: &'static str, message: String) {
        self.problems.push(Problem { name, message });
    }

    /// A number in `min..=max`; `default` when unset. A value that is not a
    /// number gets `default`, one out of range the nearest bound.
    fn number<T>(&mut self, name: &'static str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(raw) = self.var(name) else {
            return default;
        };
        match raw.parse::<T>() {
            Ok(value) if value < min => {
                self.problem(name, format!("{name}={raw} is below {min}; using {min}"));
                min
            }
            Ok(value) if value > max => {
                self.problem(name, format!("{name}={raw} is above {max}; using {max}"));
                max
            }
            Ok(value) => value,
            Err(_) => {
                self.problem(
                    name,
                    format!("{name}={raw:?} is not a number; using {default}"),
                );
                default
            }
        }
    }

    /// One of `choices` (case-insensitive), `default` when unset; any other
    /// value gets `fallback`.
    fn choice(
        &mut self,
        name: &'static str,
        choices: &[&'static str],
        default: &'static str,
        fallback: &'static str,
    ) -> &'static str {
        let Some(raw) = self.var(name) else {
            return default;
        };
        match choices.iter().find(|c| c.eq_ignore_ascii_case(&raw)) {
            Some(choice) => choice,
            None => {
                self.problem(
                    name,
                    format!(
                        "{name}={raw:?} is none of {}; using {fallback}",
                        choices.join(", ")
                    ),
                );
                fallback
            }
        }
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.source.secret(name).filter(|s| !s.is_empty())
    }

    /// A signing secret or token that must be set and strong
    /// ([`shared::secret::check`]); otherwise `None`, with the reason (never
    /// the value). What depends on it stays closed.
    fn required_secret(&mut self, name: &'static str) -> Option<String> {
        let Some(value) = self.secret(name) else {
            self.problem(
                name,
                format!("{name} is not configured: what it protects is closed"),
            );
            return None;
        };
        self.strong(name, value)
    }

    fn strong(&mut self, name: &'static str, value: String) -> Option<String> {
        // `check` also requires `shared::token::MIN_SECRET_LEN` characters.
        match shared::secret::check(name, &value) {
            Ok(()) => Some(value),
            Err(why) => {
                self.problem(
                    name,
                    format!("{why}; what it protects is closed until it is replaced"),
                );
                None
            }
        }
    }
}

impl Config {
    /// Reads and checks every variable and secret.
    pub(crate) fn parse(source: &(impl Source + ?Sized)) -> Self {
        let mut r = Reader {
            source,
            problems: Vec::new(),
        };
        let secs = |n: u64| Duration::from_secs(n);
        let stream = StreamConfig {
            heartbeat: secs(r.number("HEARTBEAT_SECS", 15, 1, 3600)),
            retry_ms: r.number("RETRY_MS", 3000, 1, 3_600_000),
            retry_jitter: r.choice("RETRY_JITTER", &["on", "off"], "on", "on") == "on",
            history_limit: r.number("HISTORY_LIMIT", 1000, 1, 1_000_000),
            max_queued_bytes: r.number("MAX_QUEUED_BYTES", 4 * 1024 * 1024, 1, 1 << 30),
            key_recheck: secs(r.number("KEY_RECHECK_SECS", 20, 1, 3600)),
            key_cache: secs(r.number("KEY_CACHE_SECS", 10, 1, 3600)),
        };
        let upstash = match (r.secret(UPSTASH_URL), r.secret(UPSTASH_TOKEN)) {
            (Some(url), Some(token)) => Some((url.trim_end_matches('/').to_string(), token)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                r.problem(
                    UPSTASH_URL,
                    format!("only one of {UPSTASH_URL} and {UPSTASH_TOKEN} is set; limits are off"),
                );
                None
            }
        };
        let timeout = Duration::from_millis(r.number("LIMITS_TIMEOUT_MS", 200, 1, 60_000));
        let fail = r.choice("LIMITS_FAIL", &["open", "closed"], "open", "closed");
        let refresh_every = secs(r.number("LEASE_REFRESH_SECS", 60, 1, 3600));
        let limits = LimitsConfig {
            upstash,
            timeout,
            background_timeout: timeout.max(Duration::from_secs(5)),
            fail_closed: fail == "closed",
            defaults: shared::limits::Limits {
                max_streams: r.number("DEFAULT_MAX_STREAMS", 0, 0, u32::MAX),
                connects_per_minute: r.number("DEFAULT_CONNECTS_PER_MINUTE", 0, 0, u32::MAX),
                requests_per_minute: r.number("DEFAULT_REQUESTS_PER_MINUTE", 0, 0, u32::MAX),
            },
            lease_ttl: refresh_every * 3,
            refresh_every,
            retry_every: stream.heartbeat.min(refresh_every),
            token_max_streams: r.number("TOKEN_MAX_STREAMS", 3, 0, u32::MAX),
        };
        let feed = FeedConfig {
            group: r.number("FEED_GROUP", 0, 0, usize::MAX),
            rotate_after: r.number("FEED_ROTATE_AFTER", 200_000, 1, u64::MAX),
            viewers_every: secs(r.number("VIEWERS_SECS", 10, 1, 3600)),
        };
        let relay_capacity = r.number("RELAY_CAPACITY", 10_000, 1, MAX_RELAY_CAPACITY) as usize;
        let allowed = r.choice("ALLOW_FAULTS", &["0", "1"], "0", "0") == "1";
        let faults = if allowed {
            Faults {
                allowed,
                subscribe_hangs_once: r.choice("FAULT_SUBSCRIBE", &["hang-once"], "", "")
                    == "hang-once",
                relay_pushes_hang: r.choice("FAULT_RELAY_PUSH", &["hang"], "", "") == "hang",
            }
        } else {
            Faults::default()
        };
        let admin_token = r.required_secret(ADMIN_TOKEN);
        let ingest_secret = r.required_secret(INGEST_SECRET);
        // Browser tokens are optional: unset, they are off (said once).
        let token_secret = r
            .secret(TOKEN_SECRET)
            .and_then(|value| r.strong(TOKEN_SECRET, value));
        Self {
            stream,
            limits,
            feed,
            relay_capacity,
            faults,
            admin_token,
            ingest_secret,
            token_secret,
            problems: r.problems,
        }
    }

    /// The names of the variables in error, for `/healthz`.
    pub(crate) fn problem_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.problems.iter().map(|p| p.name).collect();
        names.dedup();
        names
    }
}

/// The isolate's configuration, read from `env` on first use; its problems
/// are logged then, once per isolate.
pub(crate) fn get(env: &Env) -> Rc<Config> {
    crate::isolate::get_or(|| {
        let config = Config::parse(env);
        for problem in &config.problems {
            worker::console_error!("config: {}", problem.message);
        }
        if config.limits.upstash.is_none() {
            worker::console_log!("limits: off ({UPSTASH_URL} / {UPSTASH_TOKEN} not set)");
        }
        if config.token_secret.is_none() {
            worker::console_log!("tokens: off ({TOKEN_SECRET} not set or not strong)");
        }
        config
    })
}

#[cfg(test)]
mod tests;
