//! Binding names (as in `wrangler.toml`) and tunables read from `[vars]`.

use std::time::Duration;
use worker::Env;

/// KV namespace holding `key:<sha256>` → API key record.
pub(crate) const KEYS: &str = "KEYS";
/// Durable Object namespace of the per-game and per-type streams.
pub(crate) const STREAMS: &str = "STREAMS";
/// Durable Object namespace of the streams' relays (DESIGN §3.7b).
pub(crate) const RELAYS: &str = "RELAYS";
/// Durable Object namespace of the games directory.
pub(crate) const DIRECTORY: &str = "DIRECTORY";
/// Secret that guards the admin routes.
pub(crate) const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
/// Secret that signs ingest batches (`.dev.vars` locally, `wrangler secret put`).
pub(crate) const INGEST_SECRET: &str = "INGEST_SECRET";
/// Secret that signs browser tokens (`st_…`).
pub(crate) const TOKEN_SECRET: &str = "TOKEN_SECRET";
/// Upstash's own secret names: the REST endpoint and its token (DESIGN §3.8).
pub(crate) const UPSTASH_URL: &str = "UPSTASH_REDIS_REST_URL";
/// See [`UPSTASH_URL`].
pub(crate) const UPSTASH_TOKEN: &str = "UPSTASH_REDIS_REST_TOKEN";

/// Most subscriber sockets on one object (a stream object or a relay) before
/// new subscribers go to (further) relays: `RELAY_CAPACITY`, default 10 000,
/// at most 32 000 (the runtime refuses a socket past 32 768 per object).
pub(crate) fn relay_capacity(env: &Env) -> usize {
    env.var("RELAY_CAPACITY")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<usize>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(10_000)
        .min(32_000)
}

/// Whether fault injection for tests is on: the `ALLOW_FAULTS` variable is
/// `1`, which the deployed environments never set (a test checks).
pub(crate) fn faults_allowed(env: &Env) -> bool {
    env.var("ALLOW_FAULTS")
        .is_ok_and(|v| v.to_string().trim() == "1")
}

/// Whether the fault variable `name` is set to `value`, where faults are
/// allowed at all. Objects read it once, when they are built, not per call.
pub(crate) fn fault(env: &Env, name: &str, value: &str) -> bool {
    faults_allowed(env) && env.var(name).is_ok_and(|v| v.to_string().trim() == value)
}

/// Tunables of a stream, with the defaults of DESIGN §3.2 and §3.7.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamConfig {
    /// Interval of `: heartbeat` comments written by the Worker.
    pub(crate) heartbeat: Duration,
    /// `retry:` sent to browsers, in milliseconds.
    pub(crate) retry_ms: u64,
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

impl StreamConfig {
    /// Reads `HEARTBEAT_SECS`, `RETRY_MS`, `HISTORY_LIMIT`, `MAX_QUEUED_BYTES`,
    /// `KEY_RECHECK_SECS` and `KEY_CACHE_SECS`,
    /// falling back to the defaults for anything missing or unreadable.
    pub(crate) fn from_env(env: &Env) -> Self {
        let num = |name: &str, default: u64| -> u64 {
            env.var(name)
                .ok()
                .and_then(|v| v.to_string().trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Self {
            heartbeat: Duration::from_secs(num("HEARTBEAT_SECS", 15)),
            retry_ms: num("RETRY_MS", 3000),
            history_limit: u32::try_from(num("HISTORY_LIMIT", 1000)).unwrap_or(1000),
            max_queued_bytes: num("MAX_QUEUED_BYTES", 4 * 1024 * 1024),
            key_recheck: Duration::from_secs(num("KEY_RECHECK_SECS", 20)),
            key_cache: Duration::from_secs(num("KEY_CACHE_SECS", 10)),
        }
    }
}

/// How per-key limits are enforced (DESIGN §3.8), from `[vars]` and secrets.
#[derive(Debug, Clone)]
pub(crate) struct LimitsConfig {
    /// The Upstash endpoint and token; `None`: limits are off.
    pub(crate) upstash: Option<(String, String)>,
    /// Longest wait for Upstash before the fail policy applies.
    pub(crate) timeout: Duration,
    /// Longest wait for calls nobody waits on (lease refresh and release):
    /// giving a slot back must not fail just because Upstash is slower than
    /// an admission may wait.
    pub(crate) background_timeout: Duration,
    /// `LIMITS_FAIL=closed`: answer 503 when Upstash cannot be asked.
    pub(crate) fail_closed: bool,
    /// Limits of keys that have none of their own.
    pub(crate) defaults: shared::limits::Limits,
    /// How long a stream's lease lives unless refreshed: two heartbeats, so a
    /// Worker that vanished frees its slots within two heartbeat intervals.
    pub(crate) lease_ttl: Duration,
    /// How often the leases are refreshed: every heartbeat.
    pub(crate) refresh_every: Duration,
}

impl LimitsConfig {
    /// Reads `UPSTASH_REDIS_REST_URL`/`_TOKEN`, `LIMITS_TIMEOUT_MS`,
    /// `LIMITS_FAIL` and the `DEFAULT_*` limits.
    pub(crate) fn from_env(env: &Env) -> Self {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
        let num = |name: &str, default: u32| -> u32 {
            var(name)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(default)
        };
        let upstash = match (secret(env, UPSTASH_URL), secret(env, UPSTASH_TOKEN)) {
            (Some(url), Some(token)) => Some((url.trim_end_matches('/').to_string(), token)),
            _ => None,
        };
        let heartbeat = StreamConfig::from_env(env).heartbeat;
        let timeout = Duration::from_millis(u64::from(num("LIMITS_TIMEOUT_MS", 200).max(1)));
        Self {
            upstash,
            timeout,
            background_timeout: timeout.max(Duration::from_secs(5)),
            fail_closed: var("LIMITS_FAIL")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("closed")),
            defaults: shared::limits::Limits {
                max_streams: num("DEFAULT_MAX_STREAMS", 0),
                connects_per_minute: num("DEFAULT_CONNECTS_PER_MINUTE", 0),
                requests_per_minute: num("DEFAULT_REQUESTS_PER_MINUTE", 0),
            },
            lease_ttl: heartbeat * 2,
            refresh_every: heartbeat,
        }
    }
}

/// Reads a secret, accepting a plain var too (wrangler exposes `.dev.vars`
/// entries and `--var` flags as either, depending on version).
pub(crate) fn secret(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

/// A signing secret or token (`INGEST_SECRET`, `ADMIN_TOKEN`, `TOKEN_SECRET`)
/// that is set and strong ([`shared::secret::check`]); otherwise `None`, with
/// the reason in the log (never the value). What depends on it stays closed.
pub(crate) fn strong_secret(env: &Env, name: &'static str) -> Option<String> {
    let Some(value) = secret(env, name) else {
        worker::console_error!("{name} is not configured: what it protects is closed");
        return None;
    };
    match shared::secret::check(name, &value) {
        Ok(()) => Some(value),
        Err(why) => {
            worker::console_error!("{why}; what it protects is closed until it is replaced");
            None
        }
    }
}
