//! Per-key limits and usage at the edge, against Upstash Redis.
//!
//! The rules and Redis commands are in `shared::limits`; this module sends
//! them and applies the failure policy:
//! - no Upstash configured: limits are off (said once in the log by the
//!   configuration, and by `/healthz`);
//! - Upstash failing or slower than `LIMITS_TIMEOUT_MS`: admitted anyway
//!   (fail open), counted, logged at most once a minute; with
//!   `LIMITS_FAIL=closed`, 503 with `Retry-After` instead.
//!
//! Stream leases: an admitted stream holds a lease in the key's sorted set.
//! This isolate keeps the leases of its open streams in one table and
//! refreshes all of them in one pipeline per heartbeat (driven by the
//! streams' own timers, whichever ticks first), so Upstash sees one call per
//! isolate per heartbeat rather than one per stream. A stream gives its
//! lease back when it ends.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use shared::apikey::ApiKeyRecord;
use shared::error::ErrorCode;
use shared::limits::{self, Lease, Limits, Verdict};
use shared::upstash::{self, Command};
use worker::{Context, Env};

use crate::access::upstash::client;
use crate::config::LimitsConfig;
use crate::error::{ApiError, ApiResult};
use crate::platform::{background, now_ms};

/// A lease held by one open stream; give it back with [`release`].
#[derive(Debug)]
pub(crate) struct LeaseHandle(u64);

struct Held {
    lease: Lease,
    /// Up to when stream seconds were counted (ms).
    counted_ms: f64,
}

/// The isolate's leases and failure counters (see `crate::isolate`).
#[derive(Default)]
pub(crate) struct Ledger(RefCell<LedgerState>);

#[derive(Default)]
struct LedgerState {
    leases: HashMap<u64, Held>,
    next: u64,
    /// Refresh period (ms), from the configuration of the last admission, so
    /// a tick with nothing to do returns before reading any configuration.
    refresh_every_ms: f64,
    last_refresh_ms: f64,
    /// Start of the refresh in flight. A refresh whose request was cancelled
    /// never clears it, so it counts only for a bounded time.
    refreshing_since: Option<f64>,
    last_failure_log_ms: Option<f64>,
    /// Admissions let through because Upstash could not be asked.
    failed_open: u64,
    failures_since_log: u64,
    /// Calls Upstash refused (token, quota): a configuration error, logged
    /// apart from slowness.
    refused: u64,
    refused_since_log: u64,
    last_refused_log_ms: Option<f64>,
    /// Streams whose lease lapsed and could not be taken back (their key
    /// was full by then): each ends at its next tick.
    lost: HashSet<u64>,
}

/// Runs `f` on the isolate's ledger.
fn with<T>(f: impl FnOnce(&mut LedgerState) -> T) -> T {
    f(&mut crate::isolate::get::<Ledger>().0.borrow_mut())
}

fn config(env: &Env) -> LimitsConfig {
    crate::config::get(env).limits.clone()
}

/// Whether limits are on (`/healthz`).
pub(crate) fn enabled(env: &Env) -> bool {
    is_on(&crate::config::get(env).limits)
}

fn is_on(config: &LimitsConfig) -> bool {
    config.upstash.is_some()
}

/// What this isolate saw of Upstash (for `GET /admin/limits`).
#[derive(Debug, serde::Serialize)]
pub(crate) struct Health {
    /// Admissions let through without asking Upstash.
    pub(crate) failed_open: u64,
    /// Calls Upstash refused (a wrong token, a spent quota).
    pub(crate) configuration_errors: u64,
}

/// See [`Health`].
pub(crate) fn health() -> Health {
    with(|i| Health {
        failed_open: i.failed_open,
        configuration_errors: i.refused,
    })
}

/// Upstash refused us (see `upstash::Error::is_configuration`): said as a
/// configuration error, at most once a minute.
fn misconfigured(policy: &str, err: &upstash::Error) {
    let now = now_ms();
    with(|i| {
        i.refused += 1;
        i.refused_since_log += 1;
        if i.last_refused_log_ms
            .is_none_or(|last| now - last >= 60_000.0)
        {
            worker::console_error!(
                "limits: upstash refused our configuration ({err}): check {} and the plan's quota; {} request(s) {policy} since the last report",
                crate::config::UPSTASH_TOKEN,
                i.refused_since_log
            );
            i.last_refused_log_ms = Some(now);
            i.refused_since_log = 0;
        }
    });
}

/// Upstash could not be asked: the failure policy.
fn unavailable(config: &LimitsConfig, err: &upstash::Error) -> ApiResult<()> {
    let now = now_ms();
    let policy = if config.fail_closed {
        "refused (LIMITS_FAIL=closed)"
    } else {
        "admitted without limits"
    };
    if err.is_configuration() {
        misconfigured(policy, err);
    }
    with(|i| {
        i.failed_open += u64::from(!config.fail_closed);
        if err.is_configuration() {
            return;
        }
        i.failures_since_log += 1;
        let due = i
            .last_failure_log_ms
            .is_none_or(|last| now - last >= 60_000.0);
        if due {
            worker::console_error!(
                "limits: upstash unavailable ({err}); {} request(s) {policy} since the last report",
                i.failures_since_log
            );
            i.last_failure_log_ms = Some(now);
            i.failures_since_log = 0;
        }
    });
    if config.fail_closed {
        Err(ApiError::unavailable(
            "limits cannot be checked right now, retry shortly",
        ))
    } else {
        Ok(())
    }
}

fn refused(verdict: Verdict) -> ApiResult<()> {
    let (code, message, retry_after) = match verdict {
        Verdict::Admitted => return Ok(()),
        Verdict::TooManyStreams { retry_after } => (
            ErrorCode::TooManyStreams,
            "this API key has as many streams open as it may",
            retry_after,
        ),
        Verdict::RateLimited { retry_after } => (
            ErrorCode::RateLimited,
            "this API key is over its rate limit",
            retry_after,
        ),
    };
    Err(ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(code, message)
    })
}

/// Runs one admission command: its verdict, or the failure policy.
async fn ask(config: &LimitsConfig, command: Command) -> ApiResult<bool> {
    let Some((url, token)) = &config.upstash else {
        return Ok(false);
    };
    let reply = client(url, token, config.timeout).exec(&command).await;
    match reply.and_then(|value| limits::verdict(&value)) {
        Ok(verdict) => refused(verdict).map(|()| true),
        Err(err) => unavailable(config, &err).map(|()| false),
    }
}

/// Admits a new stream of `record`'s key: `Some` lease while it is open, or
/// `None` when limits are off or could not be asked (fail open).
pub(crate) async fn admit_stream(
    env: &Env,
    record: &ApiKeyRecord,
) -> ApiResult<Option<LeaseHandle>> {
    let config = config(env);
    if !is_on(&config) {
        return Ok(None);
    }
    let limits = Limits::for_key(record, config.defaults);
    let now = now_ms();
    let lease_id = lease_id();
    let command = limits::admit_stream(
        &record.id,
        &lease_id,
        now as i64,
        config.lease_ttl.as_millis() as i64,
        limits,
    );
    if !ask(&config, command).await? {
        return Ok(None);
    }
    let handle = with(|i| {
        i.next += 1;
        i.refresh_every_ms = config.refresh_every.as_millis() as f64;
        let handle = i.next;
        i.leases.insert(
            handle,
            Held {
                lease: Lease {
                    key_id: record.id.clone(),
                    lease: lease_id,
                    unreported_secs: 0,
                    max_streams: limits.max_streams,
                },
                counted_ms: now,
            },
        );
        handle
    });
    Ok(Some(LeaseHandle(handle)))
}

/// Admits a REST request of `record`'s key (counts it in the day's usage).
pub(crate) async fn admit_request(env: &Env, record: &ApiKeyRecord) -> ApiResult<()> {
    let config = config(env);
    if !is_on(&config) {
        return Ok(());
    }
    let limits = Limits::for_key(record, config.defaults);
    ask(
        &config,
        limits::admit_request(&record.id, now_ms() as i64, limits),
    )
    .await
    .map(|_| ())
}

/// A lease id unique across isolates: random, as key ids are.
fn lease_id() -> String {
    let mut bytes = [0u8; 12];
    if crate::platform::random_bytes(&mut bytes).is_err() {
        // Without randomness, time and a counter still tell streams apart here.
        return format!("t{}-{}", now_ms(), with(|i| i.next));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Moves whole seconds streamed since last counted into `unreported_secs`.
fn take_seconds(held: &mut Held, now: f64) -> Lease {
    let secs = ((now - held.counted_ms) / 1000.0).floor().max(0.0);
    held.counted_ms += secs * 1000.0;
    let mut lease = held.lease.clone();
    lease.unreported_secs = secs as u64;
    lease
}

/// Called by every open stream's timer: once per heartbeat (whichever
/// stream's timer comes first), extends every lease of this isolate and
/// counts their stream seconds, in one pipeline.
pub(crate) fn tick(env: &Env, ctx: &Context) {
    let now = now_ms();
    let due =
        with(|i| !i.leases.is_empty() && now - i.last_refresh_ms >= i.refresh_every_ms - 50.0);
    if !due {
        return;
    }
    let config = config(env);
    let Some((url, token)) = config.upstash.clone() else {
        return;
    };
    let every = config.refresh_every.as_millis() as f64;
    // A refresh still "in flight" after this long was cancelled with its request.
    let stale = config.background_timeout.as_millis() as f64 * 2.0 + 1000.0;
    let leases: Vec<Lease> = with(|i| {
        let busy = i.refreshing_since.is_some_and(|since| now - since < stale);
        if busy || i.leases.is_empty() || now - i.last_refresh_ms < every - 50.0 {
            return Vec::new();
        }
        i.refreshing_since = Some(now);
        i.last_refresh_ms = now;
        i.leases
            .values_mut()
            .map(|h| take_seconds(h, now))
            .collect()
    });
    if leases.is_empty() {
        return;
    }
    let commands = limits::refresh(&leases, now as i64, config.lease_ttl.as_millis() as i64);
    background::after_response(ctx, async move {
        let result = client(&url, &token, config.background_timeout)
            .pipeline(&commands)
            .await;
        with(|i| i.refreshing_since = None);
        match result {
            Ok(replies) => {
                let lost: Vec<String> = replies
                    .iter()
                    .filter_map(|reply| reply.as_ref().ok().and_then(limits::lost_leases))
                    .flatten()
                    .collect();
                if !lost.is_empty() {
                    lose(&lost);
                }
            }
            Err(err) => worker::console_error!("limits: lease refresh failed: {err}"),
        }
    });
}

/// Leases that lapsed (a refresh failed) and found their key full when
/// taken back: their streams end at their next tick, and reconnect to the
/// key's usual answer (a 429 while it stays full).
fn lose(lost: &[String]) {
    with(|i| {
        let handles: Vec<u64> = i
            .leases
            .iter()
            .filter(|(_, held)| lost.contains(&held.lease.lease))
            .map(|(handle, _)| *handle)
            .collect();
        for handle in handles {
            i.leases.remove(&handle);
            i.lost.insert(handle);
        }
    });
    worker::console_warn!(
        "limits: {} stream(s) lost their slot (it lapsed, and the key is full): they end",
        lost.len()
    );
}

/// Whether the stream holding `handle` lost its slot (see [`lose`]).
pub(crate) fn lost(handle: &LeaseHandle) -> bool {
    with(|i| i.lost.contains(&handle.0))
}

/// Gives a stream's lease back as it ends and counts its last seconds.
pub(crate) fn release(env: &Env, handle: LeaseHandle, ctx: &Context) {
    let now = now_ms();
    let Some(lease) = with(|i| {
        i.lost.remove(&handle.0);
        let mut held = i.leases.remove(&handle.0)?;
        Some(take_seconds(&mut held, now))
    }) else {
        return;
    };
    let config = config(env);
    let Some((url, token)) = config.upstash.clone() else {
        return;
    };
    let commands = limits::release(&lease, now as i64);
    background::after_response(ctx, async move {
        if let Err(err) = client(&url, &token, config.background_timeout)
            .pipeline(&commands)
            .await
        {
            // The lease lapses by itself within three heartbeats.
            worker::console_error!("limits: releasing a stream slot failed: {err}");
        }
    });
}

/// `GET /admin/keys/:id/usage?days=N`: the key's usage per UTC day, newest first.
pub(crate) async fn usage(env: &Env, key_id: &str, days: u32) -> ApiResult<serde_json::Value> {
    let config = config(env);
    let Some((url, token)) = &config.upstash else {
        return Ok(serde_json::json!({"limits": "off", "usage": []}));
    };
    let day_names = limits::usage_days(now_ms() as i64, days);
    let commands = limits::read_usage(key_id, &day_names);
    let unavailable = |err: upstash::Error| {
        worker::console_error!("limits: reading usage failed: {err}");
        ApiError::unavailable("usage cannot be read right now, retry shortly")
    };
    let replies = client(url, token, config.background_timeout)
        .pipeline(&commands)
        .await
        .map_err(unavailable)?;
    let mut usage = Vec::with_capacity(replies.len());
    for (day, reply) in day_names.iter().zip(replies) {
        let value = reply.map_err(unavailable)?;
        usage.push(limits::day_usage(day, &value).map_err(unavailable)?);
    }
    Ok(serde_json::json!({"usage": usage}))
}
