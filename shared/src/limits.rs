//! Per-key limits and usage (docs/protocol.md#per-key-limits-and-usage) as Redis data and commands, so the
//! Worker's side is only "send this, act on that" and every rule is tested
//! here.
//!
//! Per key id, all keys share the hash tag `{<id>}` (one cluster slot, so a
//! script may touch them all):
//! - `gf:{id}:streams`: sorted set of stream leases, member = lease id, score =
//!   expiry (unix ms). A stream holds a lease from admission until it ends;
//!   the Worker refreshes its leases every `LEASE_REFRESH_SECS`, and a lease
//!   lives three such periods, so a lease whose Worker vanished stops
//!   counting within three periods.
//! - `gf:{id}:token:<tag>`: the same, for the streams opened with one browser
//!   token (`<tag>` is the token's signature), so a token holds at most
//!   `TOKEN_MAX_STREAMS` of its key's streams.
//! - `gf:{id}:connects:<minute>` / `gf:{id}:requests:<minute>`: fixed
//!   one-minute windows counting new streams / REST requests.
//! - `gf:{id}:usage:<YYYY-MM-DD>`: hash of the day's `connects`, `rejected`,
//!   `stream_seconds`, `requests` (UTC), kept [`USAGE_KEEP_DAYS`] days.
//!
//! Admission is one `EVAL` (one round trip): it drops lapsed leases, checks
//! both limits, and either takes a lease and counts the connect, or counts the
//! rejection.

use serde::Serialize;
use time::OffsetDateTime;

use crate::apikey::ApiKeyRecord;
use crate::upstash::{Command, Error, Value};

/// Days of usage kept.
pub const USAGE_KEEP_DAYS: u32 = 90;
/// Length of a rate window.
pub const WINDOW_MS: i64 = 60_000;
/// `Retry-After` for a key at its stream cap: a slot frees as soon as one of
/// its streams ends, so a short wait is right.
pub const STREAMS_RETRY_AFTER_SECS: u32 = 5;

/// The limits that apply to one key; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Streams open at once across the whole edge.
    pub max_streams: u32,
    /// New streams per minute.
    pub connects_per_minute: u32,
    /// REST requests per minute.
    pub requests_per_minute: u32,
}

impl Limits {
    /// The key's own limits where it has them, else `defaults`.
    pub fn for_key(record: &ApiKeyRecord, defaults: Limits) -> Self {
        Self {
            max_streams: record.max_streams.unwrap_or(defaults.max_streams),
            connects_per_minute: record
                .connects_per_minute
                .unwrap_or(defaults.connects_per_minute),
            requests_per_minute: record
                .requests_per_minute
                .unwrap_or(defaults.requests_per_minute),
        }
    }
}

/// The UTC day of `unix_ms`, `YYYY-MM-DD`.
pub fn day(unix_ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp(unix_ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (year, month, day) = (at.year(), u8::from(at.month()), at.day());
    format!("{year:04}-{month:02}-{day:02}")
}

fn streams_key(id: &str) -> String {
    format!("gf:{{{id}}}:streams")
}

fn window_key(id: &str, what: &str, unix_ms: i64) -> String {
    format!("gf:{{{id}}}:{what}:{}", unix_ms.div_euclid(WINDOW_MS))
}

fn usage_key(id: &str, day: &str) -> String {
    format!("gf:{{{id}}}:usage:{day}")
}

/// Seconds a usage hash lives: the kept days plus the day it is written.
fn usage_ttl_secs() -> u32 {
    (USAGE_KEEP_DAYS + 1) * 86_400
}

/// Whole seconds, at least 1, until the rate window of `unix_ms` ends.
fn window_left_secs(unix_ms: i64) -> u32 {
    let left_ms = WINDOW_MS - unix_ms.rem_euclid(WINDOW_MS);
    u32::try_from((left_ms + 999) / 1000).unwrap_or(60).max(1)
}

/// KEYS: leases, connects window, usage, the token's leases. ARGV: now ms,
/// lease id, lease expiry ms, max streams, connects per minute, rate-limited
/// retry secs, usage TTL, the token's max streams (0: not a token).
/// Numbers that need all their digits (ms times) come in as strings and go
/// back out as the same strings: Lua would print them with 14 digits.
const ADMIT_STREAM: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local function reject(code, after)
  redis.call('HINCRBY', KEYS[3], 'rejected', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[7])
  return {code, after}
end
local max = tonumber(ARGV[4])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then
  return reject('too_many_streams', 0)
end
local tmax = tonumber(ARGV[8])
if tmax > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[4]) >= tmax then
    return reject('too_many_token_streams', 0)
  end
end
local cpm = tonumber(ARGV[5])
if cpm > 0 then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('PEXPIRE', KEYS[2], 120000) end
  if n > cpm then return reject('rate_limited', tonumber(ARGV[6])) end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if tmax > 0 then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
  redis.call('PEXPIREAT', KEYS[4], ARGV[3])
end
redis.call('HINCRBY', KEYS[3], 'connects', 1)
redis.call('EXPIRE', KEYS[3], ARGV[7])
return {'ok', 0}
";

/// KEYS: requests window, usage. ARGV: requests per minute, retry secs, usage TTL.
const ADMIT_REQUEST: &str = r"
local rpm = tonumber(ARGV[1])
if rpm > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('PEXPIRE', KEYS[1], 120000) end
  if n > rpm then
    redis.call('HINCRBY', KEYS[2], 'rejected', 1)
    redis.call('EXPIRE', KEYS[2], ARGV[3])
    return {'rate_limited', tonumber(ARGV[2])}
  end
end
redis.call('HINCRBY', KEYS[2], 'requests', 1)
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {'ok', 0}
";

fn released_key(id: &str) -> String {
    format!("gf:{{{id}}}:released")
}

/// How long a released lease is remembered, so that no refresh racing its
/// release (sent before, arriving after) takes it back: longer than any
/// refresh may be in flight.
const RELEASED_KEEP_MS: i64 = 60_000;

fn token_key(id: &str, tag: &str) -> String {
    format!("gf:{{{id}}}:token:{tag}")
}

/// A browser token a stream is opened with: its signature (which names it)
/// and how many streams it may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimit<'a> {
    /// The token's tag (see `token::tag`).
    pub tag: &'a str,
    /// `TOKEN_MAX_STREAMS` (0: no limit of its own).
    pub max_streams: u32,
}

/// The one command that admits a stream of key `id` under `limits` at
/// `now_ms` (opened with `token`, if any), taking lease `lease` until
/// `now_ms + lease_ttl_ms`.
pub fn admit_stream(
    id: &str,
    lease: &str,
    token: Option<TokenLimit<'_>>,
    now_ms: i64,
    lease_ttl_ms: i64,
    limits: Limits,
) -> Command {
    Command::new("EVAL")
        .arg(ADMIT_STREAM)
        .arg(4)
        .arg(streams_key(id))
        .arg(window_key(id, "connects", now_ms))
        .arg(usage_key(id, &day(now_ms)))
        .arg(token_key(id, token.map_or("", |t| t.tag)))
        .arg(now_ms)
        .arg(lease)
        .arg(now_ms + lease_ttl_ms)
        .arg(limits.max_streams)
        .arg(limits.connects_per_minute)
        .arg(window_left_secs(now_ms))
        .arg(usage_ttl_secs())
        .arg(token.map_or(0, |t| t.max_streams))
}

/// The one command that admits a REST request of key `id` at `now_ms`.
pub fn admit_request(id: &str, now_ms: i64, limits: Limits) -> Command {
    Command::new("EVAL")
        .arg(ADMIT_REQUEST)
        .arg(2)
        .arg(window_key(id, "requests", now_ms))
        .arg(usage_key(id, &day(now_ms)))
        .arg(limits.requests_per_minute)
        .arg(window_left_secs(now_ms))
        .arg(usage_ttl_secs())
}

/// What admission decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (a stream now holds its lease).
    Admitted,
    /// 429 `too_many_streams`, with `Retry-After`.
    TooManyStreams {
        /// Seconds.
        retry_after: u32,
    },
    /// 429 `too_many_streams`: the browser token holds as many of its key's
    /// streams as one token may.
    TooManyTokenStreams {
        /// Seconds.
        retry_after: u32,
    },
    /// 429 `rate_limited`, with `Retry-After`.
    RateLimited {
        /// Seconds.
        retry_after: u32,
    },
}

/// Reads the reply of [`admit_stream`] or [`admit_request`].
pub fn verdict(reply: &Value) -> Result<Verdict, Error> {
    let parts = reply.as_array()?;
    let (Some(code), Some(after)) = (parts.first(), parts.get(1)) else {
        return Err(Error::Malformed(
            "admission reply is not [code, seconds]".into(),
        ));
    };
    let after = u32::try_from(after.as_i64()?).unwrap_or(0);
    match code.as_str()? {
        "ok" => Ok(Verdict::Admitted),
        "too_many_streams" => Ok(Verdict::TooManyStreams {
            retry_after: STREAMS_RETRY_AFTER_SECS,
        }),
        "too_many_token_streams" => Ok(Verdict::TooManyTokenStreams {
            retry_after: STREAMS_RETRY_AFTER_SECS,
        }),
        "rate_limited" => Ok(Verdict::RateLimited {
            retry_after: after.max(1),
        }),
        other => Err(Error::Malformed(format!(
            "unknown admission code {other:?}"
        ))),
    }
}

/// A lease a Worker holds, with the stream seconds not yet written to usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The key id it counts against.
    pub key_id: String,
    /// The lease id (member of the key's sorted set).
    pub lease: String,
    /// Whole seconds streamed since they were last counted.
    pub unreported_secs: u64,
    /// The key's `max_streams` (0: unlimited), for taking a lapsed lease
    /// back.
    pub max_streams: u32,
    /// The tag of the browser token the stream was opened with, whose
    /// leases hold it too.
    pub token: Option<String>,
}

/// KEYS: the key's streams set, its usage today, its recently released
/// leases, then the token sets its leases name. ARGV: now, new expiry, max
/// streams, stream seconds to count, usage TTL, then per lease its id and
/// the index in KEYS of its token set (0: none). A lease released meanwhile
/// is left alone. Extends each lease; one that lapsed (a refresh failed, or the
/// stream was admitted while Upstash could not be asked) is taken back if
/// the key has room, else it is lost, and the script returns the lost ones:
/// their streams end. The stream seconds ride along, so a key costs one
/// command per refresh.
const REFRESH: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local max = tonumber(ARGV[3])
local lost = {}
for i = 6, #ARGV, 2 do
  local t = tonumber(ARGV[i + 1])
  if redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    -- released: its stream ended, nothing to extend
  elseif redis.call('ZSCORE', KEYS[1], ARGV[i]) or max == 0
      or redis.call('ZCARD', KEYS[1]) < max then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    if t > 0 then
      redis.call('ZADD', KEYS[t], ARGV[2], ARGV[i])
      redis.call('PEXPIREAT', KEYS[t], ARGV[2])
    end
  else
    table.insert(lost, ARGV[i])
  end
end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBY', KEYS[2], 'stream_seconds', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return lost
";

/// Commands (one pipeline) that extend `leases` to `now_ms + lease_ttl_ms` and
/// add their unreported stream seconds to today's usage: one script per key
/// (see [`lost_leases`] for its reply). A lease that lapsed is taken back
/// while its key has room, and is lost otherwise.
pub fn refresh(leases: &[Lease], now_ms: i64, lease_ttl_ms: i64) -> Vec<Command> {
    let mut by_key: Vec<(&str, Vec<&Lease>)> = Vec::new();
    for lease in leases {
        match by_key.iter_mut().find(|(id, _)| *id == lease.key_id) {
            Some((_, list)) => list.push(lease),
            None => by_key.push((&lease.key_id, vec![lease])),
        }
    }
    let expiry = now_ms + lease_ttl_ms;
    let today = day(now_ms);
    let mut commands = Vec::new();
    for (id, list) in by_key {
        let max = list.iter().map(|l| l.max_streams).max().unwrap_or(0);
        let secs: u64 = list.iter().map(|l| l.unreported_secs).sum();
        let mut keys = vec![streams_key(id), usage_key(id, &today), released_key(id)];
        let mut args = Vec::with_capacity(list.len() * 2);
        for lease in &list {
            let index = match &lease.token {
                None => 0,
                Some(tag) => {
                    let key = token_key(id, tag);
                    match keys.iter().position(|k| *k == key) {
                        Some(at) => at + 1,
                        None => {
                            keys.push(key);
                            keys.len()
                        }
                    }
                }
            };
            args.push(lease.lease.clone());
            args.push(index.to_string());
        }
        commands.push(
            Command::new("EVAL")
                .arg(REFRESH)
                .arg(keys.len())
                .args(keys)
                .arg(now_ms)
                .arg(expiry)
                .arg(max)
                .arg(secs)
                .arg(usage_ttl_secs())
                .args(args),
        );
    }
    commands
}

/// The lease ids a refresh script (a reply to one of [`refresh`]'s `EVAL`s)
/// says were lost; `None` for any other reply.
pub fn lost_leases(value: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        return None;
    };
    items
        .iter()
        .map(|item| match item {
            Value::Bytes(bytes) => String::from_utf8(bytes.clone()).ok(),
            _ => None,
        })
        .collect()
}

/// KEYS: the key's streams set, its usage today, its recently released
/// leases, and the token's set if the lease has one. ARGV: the lease id,
/// stream seconds to count, usage TTL, now, how long to remember releases.
const RELEASE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
if #KEYS > 3 then redis.call('ZREM', KEYS[4], ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[4] - ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
if tonumber(ARGV[2]) > 0 then
  redis.call('HINCRBY', KEYS[2], 'stream_seconds', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
";

/// The one command that gives lease `lease` back as its stream ends and
/// counts its last `unreported_secs`.
pub fn release(lease: &Lease, now_ms: i64) -> Command {
    let id = &lease.key_id;
    let mut keys = vec![
        streams_key(id),
        usage_key(id, &day(now_ms)),
        released_key(id),
    ];
    keys.extend(lease.token.as_deref().map(|tag| token_key(id, tag)));
    Command::new("EVAL")
        .arg(RELEASE)
        .arg(keys.len())
        .args(keys)
        .arg(&lease.lease)
        .arg(lease.unreported_secs)
        .arg(usage_ttl_secs())
        .arg(now_ms)
        .arg(RELEASED_KEEP_MS)
}

/// One day of a key's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Streams admitted.
    pub connects: i64,
    /// Streams and requests refused by a limit.
    pub rejected: i64,
    /// Seconds of open streams.
    pub stream_seconds: i64,
    /// REST requests admitted.
    pub requests: i64,
}

/// The days, newest first, of the last `days` days up to `now_ms`.
pub fn usage_days(now_ms: i64, days: u32) -> Vec<String> {
    (0..i64::from(days))
        .map(|back| day(now_ms - back * 86_400_000))
        .collect()
}

/// Commands (one pipeline) reading the usage of `days` (from [`usage_days`]).
pub fn read_usage(id: &str, days: &[String]) -> Vec<Command> {
    days.iter()
        .map(|day| Command::new("HGETALL").arg(usage_key(id, day)))
        .collect()
}

/// Commands (four, for one pipeline with other keys') reading what an
/// operator sees of a key now: the streams holding an unexpired lease at
/// `now_ms` (a `ZCOUNT`), today's usage (an `HGETALL`, read with
/// [`day_usage`] for the day [`day`]`(now_ms)`), and the connects and
/// requests counted so far in this minute's windows (`GET`s; nil when none).
pub fn read_key_now(id: &str, now_ms: i64) -> [Command; 4] {
    [
        Command::new("ZCOUNT")
            .arg(streams_key(id))
            .arg(format!("({now_ms}"))
            .arg("+inf"),
        Command::new("HGETALL").arg(usage_key(id, &day(now_ms))),
        Command::new("GET").arg(window_key(id, "connects", now_ms)),
        Command::new("GET").arg(window_key(id, "requests", now_ms)),
    ]
}

/// A day's usage from its `HGETALL` reply (a flat field, value list).
pub fn day_usage(day: &str, reply: &Value) -> Result<DayUsage, Error> {
    let mut usage = DayUsage {
        day: day.to_string(),
        connects: 0,
        rejected: 0,
        stream_seconds: 0,
        requests: 0,
    };
    for pair in reply.as_array()?.chunks(2) {
        let [field, value] = pair else {
            return Err(Error::Malformed("odd HGETALL reply".into()));
        };
        let value = value.as_i64()?;
        match field.as_str()? {
            "connects" => usage.connects = value,
            "rejected" => usage.rejected = value,
            "stream_seconds" => usage.stream_seconds = value,
            "requests" => usage.requests = value,
            _ => {}
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // 2026-11-24T23:59:30.000Z
    const NOW: i64 = 1_795_564_770_000;

    #[test]
    fn days_and_windows() {
        assert_eq!(day(NOW), "2026-11-24");
        assert_eq!(day(NOW + 30_000), "2026-11-25");
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(window_left_secs(NOW), 30);
        assert_eq!(window_left_secs(NOW + 29_999), 1);
        assert_eq!(window_left_secs(NOW - 1), 31);
        assert_eq!(
            usage_days(NOW, 3),
            vec!["2026-11-24", "2026-11-23", "2026-11-22"]
        );
    }

    #[test]
    fn limits_fall_back_to_defaults() {
        let mut record: ApiKeyRecord = serde_json::from_str(
            r#"{"id":"k","name":"n","created_at":"2026-11-21T00:00:00Z","max_streams":2}"#,
        )
        .unwrap();
        let defaults = Limits {
            max_streams: 10,
            connects_per_minute: 60,
            requests_per_minute: 0,
        };
        assert_eq!(
            Limits::for_key(&record, defaults),
            Limits {
                max_streams: 2,
                connects_per_minute: 60,
                requests_per_minute: 0
            }
        );
        record.requests_per_minute = Some(5);
        assert_eq!(Limits::for_key(&record, defaults).requests_per_minute, 5);
    }

    #[test]
    fn admission_command_is_exact() {
        let limits = Limits {
            max_streams: 2,
            connects_per_minute: 30,
            requests_per_minute: 0,
        };
        let command = admit_stream("key_1", "L1", None, NOW, 30_000, limits);
        let parts = command.parts();
        assert_eq!(parts[0], "EVAL");
        assert_eq!(parts[1], ADMIT_STREAM);
        assert_eq!(
            &parts[2..],
            [
                "4",
                "gf:{key_1}:streams",
                "gf:{key_1}:connects:29926079",
                "gf:{key_1}:usage:2026-11-24",
                "gf:{key_1}:token:",
                "1795564770000",
                "L1",
                "1795564800000",
                "2",
                "30",
                "30",
                "7862400",
                "0",
            ]
        );
        let token = TokenLimit {
            tag: "TAG",
            max_streams: 3,
        };
        let command = admit_stream("key_1", "L1", Some(token), NOW, 30_000, limits);
        let parts = command.parts();
        assert_eq!(parts[6], "gf:{key_1}:token:TAG");
        assert_eq!(parts.last().map(String::as_str), Some("3"));
        let request = admit_request("key_1", NOW, limits);
        assert_eq!(
            &request.parts()[2..],
            [
                "2",
                "gf:{key_1}:requests:29926079",
                "gf:{key_1}:usage:2026-11-24",
                "0",
                "30",
                "7862400"
            ]
        );
    }

    fn reply(code: &str, after: i64) -> Value {
        Value::Array(vec![
            Value::Bytes(code.as_bytes().to_vec()),
            Value::Int(after),
        ])
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&reply("ok", 0)), Ok(Verdict::Admitted));
        assert_eq!(
            verdict(&reply("too_many_streams", 0)),
            Ok(Verdict::TooManyStreams { retry_after: 5 })
        );
        assert_eq!(
            verdict(&reply("too_many_token_streams", 0)),
            Ok(Verdict::TooManyTokenStreams { retry_after: 5 })
        );
        assert_eq!(
            verdict(&reply("rate_limited", 17)),
            Ok(Verdict::RateLimited { retry_after: 17 })
        );
        assert_eq!(
            verdict(&reply("rate_limited", 0)),
            Ok(Verdict::RateLimited { retry_after: 1 })
        );
        assert!(verdict(&reply("what", 0)).is_err());
        assert!(verdict(&Value::Int(1)).is_err());
        assert!(verdict(&Value::Array(vec![])).is_err());
    }

    #[test]
    fn refresh_groups_by_key_and_counts_seconds() {
        let lease = |key: &str, id: &str, secs, token: Option<&str>| Lease {
            key_id: key.into(),
            lease: id.into(),
            unreported_secs: secs,
            max_streams: 2,
            token: token.map(String::from),
        };
        let commands = refresh(
            &[
                lease("a", "1", 15, Some("T")),
                lease("b", "2", 0, None),
                lease("a", "3", 14, None),
                lease("a", "4", 1, Some("U")),
                lease("a", "5", 0, Some("T")),
            ],
            NOW,
            30_000,
        );
        let text: Vec<String> = commands
            .iter()
            .map(|c| c.parts().join(" ").replace(REFRESH, "<refresh>"))
            .collect();
        assert_eq!(
            text,
            [
                "EVAL <refresh> 5 gf:{a}:streams gf:{a}:usage:2026-11-24 gf:{a}:released \
                 gf:{a}:token:T gf:{a}:token:U 1795564770000 1795564800000 2 30 7862400 1 4 3 0 4 5 5 4",
                "EVAL <refresh> 3 gf:{b}:streams gf:{b}:usage:2026-11-24 gf:{b}:released \
                 1795564770000 1795564800000 2 0 7862400 2 0",
            ]
        );
        let lost = Value::Array(vec![Value::Bytes(b"3".to_vec())]);
        assert_eq!(lost_leases(&lost), Some(vec!["3".to_string()]));
        assert_eq!(lost_leases(&Value::Array(vec![])), Some(vec![]));
        assert_eq!(lost_leases(&Value::Int(0)), None);
        let text = |lease: &Lease| {
            release(lease, NOW)
                .parts()
                .join(" ")
                .replace(RELEASE, "<release>")
        };
        assert_eq!(
            text(&lease("a", "1", 3, Some("T"))),
            "EVAL <release> 4 gf:{a}:streams gf:{a}:usage:2026-11-24 gf:{a}:released gf:{a}:token:T \
             1 3 7862400 1795564770000 60000"
        );
        assert_eq!(
            text(&lease("a", "1", 0, None)),
            "EVAL <release> 3 gf:{a}:streams gf:{a}:usage:2026-11-24 gf:{a}:released \
             1 0 7862400 1795564770000 60000"
        );
    }

    #[test]
    fn usage_from_hgetall() {
        let flat = Value::Array(
            ["connects", "3", "stream_seconds", "40", "other", "1"]
                .iter()
                .map(|s| Value::Bytes(s.as_bytes().to_vec()))
                .collect(),
        );
        let usage = day_usage("2026-11-24", &flat).unwrap();
        assert_eq!(
            serde_json::to_string(&usage).unwrap(),
            r#"{"day":"2026-11-24","connects":3,"rejected":0,"stream_seconds":40,"requests":0}"#
        );
        assert_eq!(day_usage("d", &Value::Array(vec![])).unwrap().connects, 0);
        assert!(day_usage("d", &Value::Array(vec![Value::Int(1)])).is_err());
    }

    #[test]
    fn a_key_now_is_its_unexpired_leases_and_todays_usage() {
        let now = 1_764_720_000_123; // 2025-12-03
        let [open, usage, connects, requests] = read_key_now("key_1", now);
        assert_eq!(
            open.parts(),
            ["ZCOUNT", "gf:{key_1}:streams", "(1764720000123", "+inf"]
        );
        assert_eq!(usage.parts(), ["HGETALL", "gf:{key_1}:usage:2025-12-03"]);
        let minute = now / WINDOW_MS;
        assert_eq!(
            connects.parts(),
            ["GET".to_string(), format!("gf:{{key_1}}:connects:{minute}")]
        );
        assert_eq!(
            requests.parts(),
            ["GET".to_string(), format!("gf:{{key_1}}:requests:{minute}")]
        );
    }
}
