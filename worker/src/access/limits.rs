//! Per-key limits and usage at the edge, against Upstash Redis.
//!
//! The rules and Redis commands are in `shared::limits`, and the isolate's
//! decisions (which leases to refresh when, what a fail-open stream
//! becomes, which refusals to remember) in `access::ledger`; this module
//! sends the commands and applies the failure policy:
//! - no Upstash configured: limits are off (said once in the log by the
//!   configuration, and by `/healthz`);
//! - Upstash failing or slower than `LIMITS_TIMEOUT_MS`: admitted anyway
//!   (fail open; at most the key's `max_streams` per isolate), counted,
//!   logged at most once a minute; with `LIMITS_FAIL=closed`, 503 with
//!   `Retry-After` instead. A stream let in that way is admitted for real
//!   at the next heartbeat Upstash answers, or ends if its key is full.
//!
//! Stream leases: an admitted stream holds a lease in the key's sorted set.
//! This isolate keeps the leases of its open streams in one book and
//! refreshes all of them in one pipeline (one command per key) every
//! `LEASE_REFRESH_SECS` (driven by the streams' own timers, whichever ticks
//! first). A stream gives its lease back when it ends.

use std::cell::RefCell;

use shared::apikey::ApiKeyRecord;
use shared::error::ErrorCode;
use shared::limits::{self, Lease, Limits, TokenLimit, Verdict};
use shared::upstash::{self, Command};
use worker::{Context, Env};

use crate::access::ledger::{Book, FailOpenTally, Handle, Rate, Timing};
use crate::access::upstash::client;
use crate::config::LimitsConfig;
use crate::error::{ApiError, ApiResult};
use crate::metrics::exposition::KeyFigures;
use crate::objects::directory;
use crate::platform::{background, now_ms};

/// A lease held by one open stream; give it back with [`release`].
#[derive(Debug)]
pub(crate) struct LeaseHandle(Handle);

/// The isolate's leases and failure counters (see `crate::isolate`).
#[derive(Default)]
pub(crate) struct Ledger(RefCell<LedgerState>);

#[derive(Default)]
struct LedgerState {
    book: Book,
    last_failure_log_ms: Option<f64>,
    /// Admissions let through because Upstash could not be asked.
    failed_open: u64,
    /// Of those, the ones not yet added to the directory's total.
    tally: FailOpenTally,
    failures_since_log: u64,
    /// Calls Upstash refused (token, quota): a configuration error, logged
    /// apart from slowness.
    refused: u64,
    refused_since_log: u64,
    last_refused_log_ms: Option<f64>,
}

/// Runs `f` on the isolate's ledger.
fn with<T>(f: impl FnOnce(&mut LedgerState) -> T) -> T {
    f(&mut crate::isolate::get::<Ledger>().0.borrow_mut())
}

fn config(env: &Env) -> LimitsConfig {
    crate::config::get(env).limits.clone()
}

fn timing(config: &LimitsConfig) -> Timing {
    Timing {
        refresh_every_ms: config.refresh_every.as_millis() as f64,
        retry_every_ms: config.retry_every.as_millis() as f64,
        // A refresh still "in flight" after this long was cancelled with
        // its request.
        stale_ms: config.background_timeout.as_millis() as f64 * 2.0 + 1000.0,
    }
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
    /// Open streams holding a lease.
    pub(crate) streams: usize,
    /// Of those, the ones let in failing open and not yet counted.
    pub(crate) uncounted: usize,
}

/// See [`Health`].
pub(crate) fn health() -> Health {
    with(|i| {
        let (streams, uncounted) = i.book.held();
        Health {
            failed_open: i.failed_open,
            configuration_errors: i.refused,
            streams,
            uncounted,
        }
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

/// Upstash could not be asked: the failure policy (`Ok`: let it in).
fn unavailable(config: &LimitsConfig, err: &upstash::Error) -> ApiResult<()> {
    let now = now_ms();
    let policy = if config.fail_closed {
        "refused (LIMITS_FAIL=closed)"
    } else {
        "admitted without limits"
    };
    if err.is_configuration() {
        misconfigured(policy, err);
    } else {
        with(|i| {
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
    }
    if config.fail_closed {
        Err(ApiError::unavailable(
            "limits cannot be checked right now, retry shortly",
        ))
    } else {
        Ok(())
    }
}

/// 429 for a key at its stream cap.
fn too_many_streams() -> ApiError {
    ApiError {
        retry_after: Some(limits::STREAMS_RETRY_AFTER_SECS),
        ..ApiError::new(
            ErrorCode::TooManyStreams,
            "this API key has as many streams open as it may",
        )
    }
}

fn rate_limited(retry_after: u32) -> ApiError {
    ApiError {
        retry_after: Some(retry_after),
        ..ApiError::new(
            ErrorCode::RateLimited,
            "this API key is over its rate limit",
        )
    }
}

fn refused(verdict: Verdict) -> ApiResult<()> {
    match verdict {
        Verdict::Admitted => Ok(()),
        Verdict::TooManyStreams { .. } => Err(too_many_streams()),
        Verdict::TooManyTokenStreams { retry_after } => Err(ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(
                ErrorCode::TooManyStreams,
                "this token has as many streams open as one token may",
            )
        }),
        Verdict::RateLimited { retry_after } => Err(rate_limited(retry_after)),
    }
}

/// Runs one admission command for key `key_id`: `Ok(true)` admitted,
/// `Ok(false)` not asked (limits off, or Upstash failed and the policy is
/// open), or the refusal. A rate-limit refusal is remembered until its
/// window ends, and answered from memory until then.
async fn ask(config: &LimitsConfig, key_id: &str, rate: Rate, command: Command) -> ApiResult<bool> {
    let Some((url, token)) = &config.upstash else {
        return Ok(false);
    };
    let now = now_ms();
    if let Some(secs) = with(|i| i.book.refused(key_id, rate, now)) {
        return Err(rate_limited(secs));
    }
    let reply = client(url, token, config.timeout).exec(&command).await;
    match reply.and_then(|value| limits::verdict(&value)) {
        Ok(verdict) => {
            if let Verdict::RateLimited { retry_after } = verdict {
                let until = now + f64::from(retry_after) * 1000.0;
                with(|i| i.book.remember_refusal(key_id, rate, until, now));
            }
            refused(verdict).map(|()| true)
        }
        Err(err) => unavailable(config, &err).map(|()| false),
    }
}

/// Admits a new stream of `record`'s key (opened with the browser token
/// whose tag is `token`, if any): `Some` lease while it is open, or `None`
/// when limits are off.
pub(crate) async fn admit_stream(
    env: &Env,
    record: &ApiKeyRecord,
    token: Option<&str>,
) -> ApiResult<Option<LeaseHandle>> {
    let config = config(env);
    if !is_on(&config) {
        return Ok(None);
    }
    let limits = Limits::for_key(record, config.defaults);
    let now = now_ms();
    let lease_id = lease_id();
    let token = token.map(|tag| TokenLimit {
        tag,
        max_streams: config.token_max_streams,
    });
    let command = limits::admit_stream(
        &record.id,
        &lease_id,
        token,
        now as i64,
        config.lease_ttl.as_millis() as i64,
        limits,
    );
    let confirmed = ask(&config, &record.id, Rate::Connects, command).await?;
    let lease = Lease {
        key_id: record.id.clone(),
        lease: lease_id,
        unreported_secs: 0,
        max_streams: limits.max_streams,
        token: token.map(|t| t.tag.to_string()),
    };
    let handle = with(|i| {
        if !confirmed {
            // Let in without Upstash: at most the key's cap per isolate,
            // and held pending until the next refresh takes it in.
            if !i.book.may_fail_open(&record.id, limits.max_streams) {
                return Err(too_many_streams());
            }
            i.failed_open += 1;
            i.tally.count();
        }
        Ok(i.book.hold(lease, confirmed, now))
    })?;
    Ok(Some(LeaseHandle(handle)))
}

/// Admits a REST request of `record`'s key (counts it in the day's usage).
pub(crate) async fn admit_request(env: &Env, record: &ApiKeyRecord) -> ApiResult<()> {
    let config = config(env);
    if !is_on(&config) {
        return Ok(());
    }
    let limits = Limits::for_key(record, config.defaults);
    let command = limits::admit_request(&record.id, now_ms() as i64, limits);
    if !ask(&config, &record.id, Rate::Requests, command).await? {
        with(|i| {
            i.failed_open += 1;
            i.tally.count();
        });
    }
    Ok(())
}

/// A lease id unique across isolates: random, as key ids are.
fn lease_id() -> String {
    let mut bytes = [0u8; 12];
    if crate::platform::random_bytes(&mut bytes).is_err() {
        // Without randomness, time and a counter still tell streams apart here.
        return format!("t{}-{}", now_ms(), js_sys::Math::random().to_bits());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Least time between two reports of an isolate's fail-open admissions.
const FAILED_OPEN_REPORT_MS: f64 = 5_000.0;

/// Adds the admissions this isolate let in failing open to the directory's
/// total (`gamefeed_limits_failed_open_total`), after the response, at most
/// every [`FAILED_OPEN_REPORT_MS`]. Called as each request starts and by
/// every open stream's timer, so a count waits at most for the isolate's
/// next request or tick.
pub(crate) fn report_failed_open(env: &Env, ctx: &Context) {
    let Some(count) = with(|i| i.tally.take(now_ms(), FAILED_OPEN_REPORT_MS)) else {
        return;
    };
    let env = env.clone();
    background::after_response(ctx, async move {
        let added = directory::add_failed_open(&env, count).await;
        if let Err(err) = &added {
            worker::console_warn!("limits: reporting {count} fail-open admission(s) failed: {err}");
        }
        with(|i| i.tally.done(count, added.is_ok()));
    });
}

/// Called by every open stream's timer: when the book says a refresh is
/// due (whichever stream's timer comes first), extends every lease of this
/// isolate, takes in the ones let in failing open, and counts their stream
/// seconds, in one pipeline.
pub(crate) fn tick(env: &Env, ctx: &Context) {
    report_failed_open(env, ctx);
    let now = now_ms();
    let all = crate::config::get(env);
    let config = &all.limits;
    let Some((url, token)) = &config.upstash else {
        return;
    };
    let Some((leases, unreleased)) = with(|i| {
        let leases = i.book.begin_refresh(now, timing(config))?;
        Some((leases, i.book.take_unreleased()))
    }) else {
        return;
    };
    let commands = limits::refresh(&leases, now as i64, config.lease_ttl.as_millis() as i64);
    let (url, token, timeout) = (url.clone(), token.clone(), config.background_timeout);
    background::after_response(ctx, async move {
        // Nothing to extend when only releases are to be tried again.
        let result = if commands.is_empty() {
            Ok(Vec::new())
        } else {
            client(&url, &token, timeout).pipeline(&commands).await
        };
        let lost: Result<Vec<String>, ()> = match result {
            Ok(replies) => Ok(replies
                .iter()
                .filter_map(|reply| reply.as_ref().ok().and_then(limits::lost_leases))
                .flatten()
                .collect()),
            Err(err) => {
                worker::console_error!("limits: lease refresh failed: {err}");
                Err(())
            }
        };
        let again = with(|i| i.book.end_refresh(lost.as_deref().map_err(|_| ())));
        if let Ok(lost) = &lost
            && !lost.is_empty()
        {
            worker::console_warn!(
                "limits: {} stream(s) could not be counted (their key is full): they end",
                lost.len()
            );
        }
        for lease in again.into_iter().chain(unreleased) {
            give_back(&url, &token, timeout, lease, now).await;
        }
    });
}

/// Whether the stream holding `handle` lost its slot: its lease lapsed or
/// it was let in failing open, and its key was full when the next refresh
/// tried to count it. Its stream ends and reconnects to the key's usual
/// answer (a 429 while it stays full).
pub(crate) fn lost(handle: &LeaseHandle) -> bool {
    with(|i| i.book.is_lost(handle.0))
}

/// Gives a stream's lease back as it ends and counts its last seconds.
pub(crate) fn release(env: &Env, handle: LeaseHandle, ctx: &Context) {
    let now = now_ms();
    let Some(lease) = with(|i| i.book.release(handle.0, now)) else {
        return;
    };
    let config = config(env);
    let Some((url, token)) = config.upstash.clone() else {
        return;
    };
    background::after_response(ctx, async move {
        give_back(&url, &token, config.background_timeout, lease, now).await;
    });
}

/// Removes `lease` from its key's sets and counts its last seconds.
async fn give_back(url: &str, token: &str, timeout: std::time::Duration, lease: Lease, now: f64) {
    let command = limits::release(&lease, now as i64);
    if let Err(err) = client(url, token, timeout).exec(&command).await {
        // Tried again with the next refresh (else it lapses within its TTL).
        worker::console_error!("limits: releasing a stream slot failed: {err}");
        with(|i| i.book.release_failed(lease));
    }
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

/// What an operator sees of each key of `records` now (streams open,
/// today's usage, this minute's windows, its limits), read in one
/// pipeline. `None` while limits are off.
pub(crate) async fn keys_now(
    env: &Env,
    records: &[ApiKeyRecord],
) -> ApiResult<Option<Vec<KeyFigures>>> {
    let config = config(env);
    let Some((url, token)) = &config.upstash else {
        return Ok(None);
    };
    if records.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let now = now_ms() as i64;
    let today = limits::day(now);
    let commands: Vec<Command> = records
        .iter()
        .flat_map(|r| limits::read_key_now(&r.id, now))
        .collect();
    let unavailable = |err: upstash::Error| {
        worker::console_error!("limits: reading the keys' figures failed: {err}");
        ApiError::unavailable("usage cannot be read right now, retry shortly")
    };
    let replies = client(url, token, config.background_timeout)
        .pipeline(&commands)
        .await
        .map_err(unavailable)?;
    let short = || unavailable(upstash::Error::Malformed("short pipeline reply".into()));
    let mut replies = replies.into_iter();
    let mut next =
        || -> ApiResult<upstash::Value> { replies.next().ok_or_else(short)?.map_err(unavailable) };
    // A window nobody counted in yet is nil: zero.
    let count = |v: upstash::Value| -> ApiResult<u64> {
        match v {
            upstash::Value::Nil => Ok(0),
            v => Ok(u64::try_from(v.as_i64().map_err(unavailable)?).unwrap_or(0)),
        }
    };
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let open = count(next()?)?;
        let day = limits::day_usage(&today, &next()?).map_err(unavailable)?;
        let connects_this_minute = count(next()?)?;
        let requests_this_minute = count(next()?)?;
        let limits = Limits::for_key(record, config.defaults);
        out.push(KeyFigures {
            key_id: record.id.clone(),
            streams_open: open,
            connects: day.connects,
            rejected: day.rejected,
            stream_seconds: day.stream_seconds,
            requests: day.requests,
            connects_this_minute,
            requests_this_minute,
            max_streams: limits.max_streams,
            connects_per_minute: limits.connects_per_minute,
            requests_per_minute: limits.requests_per_minute,
        });
    }
    Ok(Some(out))
}
