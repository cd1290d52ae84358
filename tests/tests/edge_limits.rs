//! Per-key limits, usage and browser tokens at the edge (docs/protocol.md#per-key-limits-and-usage), against
//! real workerd (wrangler dev) and a real redis-server behind `upstash-local`.
//! Upstash itself is the one part that cannot run here; `upstash-local` speaks
//! its REST protocol (checked against Upstash's own JS client in
//! `upstash_local.rs`).

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use devstack::edge::{Edge, TIMEOUT, events, frame, round};
use devstack::sse::SseClient;
use devstack::upstash_local::{LimitedEdge, Redis, UpstashLocal};
use devstack::{upstash_client, wait_for};
use reqwest::Method;
use serde_json::{Value, json};
use shared::EventKind::New;
use shared::upstash::Command;

/// A Worker with limits on, knowing [`GAMES`].
struct Limited {
    edge: Edge,
    upstash: UpstashLocal,
    redis_server: Redis,
    _dir: tempfile::TempDir,
}

impl Limited {
    async fn start(vars: &[(&str, &str)]) -> Self {
        let LimitedEdge {
            edge,
            upstash,
            redis,
            dir,
        } = LimitedEdge::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_upstash-local")),
            vars,
        )
        .await
        .unwrap();
        edge.seed(GAMES).await.unwrap();
        Self {
            edge,
            upstash,
            redis_server: redis,
            _dir: dir,
        }
    }

    /// A command to Redis itself, past `upstash-local` (which may be
    /// refusing every token): what another isolate would have written.
    async fn redis_direct(&self, command: &[&str]) {
        let client = redis::Client::open(self.redis_server.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(command[0]);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
    }

    /// Redis as the Worker sees it, through the native transport.
    async fn redis(&self, command: Command) -> shared::upstash::Value {
        upstash_client::client(&self.upstash.url, LimitedEdge::TOKEN, TIMEOUT)
            .exec(&command)
            .await
            .unwrap()
    }

    /// Open leases of key `id`.
    async fn leases(&self, id: &str) -> i64 {
        self.redis(Command::new("ZCARD").arg(format!("gf:{{{id}}}:streams")))
            .await
            .as_i64()
            .unwrap()
    }

    async fn usage(&self, id: &str) -> Value {
        let (status, body) = self
            .edge
            .admin(Method::GET, &format!("/admin/keys/{id}/usage?days=2"), None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        body["usage"][0].clone()
    }
}

/// The games these tests stream.
const GAMES: &[(&str, &str)] = &[("crash", "multiplier"), ("dice", "dice")];

/// A Worker with `vars` that knows [`GAMES`].
async fn knowing(vars: &[(&str, &str)]) -> Edge {
    let edge = Edge::start(vars).await.unwrap();
    edge.seed(GAMES).await.unwrap();
    edge
}

/// Status, `Retry-After` and body of a GET.
async fn get(edge: &Edge, path: &str) -> (u16, Option<u32>, Value) {
    let response = edge.http.get(edge.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = response.text().await.unwrap();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn stream(edge: &Edge, path: &str) -> SseClient {
    let mut client = edge.sse(path).await.unwrap();
    client.read_frames(1, TIMEOUT).await.unwrap();
    client
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limit_refuses_the_third_and_readmits_after_one_closes() {
    // Leases live three heartbeats: long enough here that none lapses on a
    // slow machine while the test counts them; a gone client is noticed at
    // the next heartbeat write behind wrangler's proxy, well within TIMEOUT.
    let limited = Limited::start(&[("HEARTBEAT_SECS", "5")]).await;
    let edge = &limited.edge;
    assert_eq!(
        get(edge, "/healthz").await.2,
        json!({"status": "ok", "limits": "on", "config": "ok"})
    );
    let (a, a_id) = edge
        .create_key(json!({"name": "a", "max_streams": 2}))
        .await
        .unwrap();
    let (b, b_id) = edge
        .create_key(json!({"name": "b", "max_streams": 1}))
        .await
        .unwrap();
    let (_, listed) = edge.admin(Method::GET, "/admin/keys", None).await.unwrap();
    let shown = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == a_id.as_str())
        .unwrap();
    assert_eq!(shown["max_streams"], 2);

    let first = stream(edge, &format!("/sse/crash?api_key={a}")).await;
    let _second = stream(edge, &format!("/sse/dice?api_key={a}")).await;
    assert_eq!(limited.leases(&a_id).await, 2);

    let (status, retry_after, body) = get(edge, &format!("/sse/crash?api_key={a}")).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"), "{body}");
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    // A page can read the refusal and its `Retry-After`.
    let from_page = edge
        .http
        .get(edge.url(&format!("/sse/crash?api_key={a}")))
        .header("origin", "https://partner.example")
        .send()
        .await
        .unwrap();
    assert_eq!(from_page.status().as_u16(), 429);
    assert_eq!(
        from_page.headers()["access-control-allow-origin"],
        "https://partner.example"
    );
    assert_eq!(
        from_page.headers()["access-control-expose-headers"],
        "retry-after"
    );
    assert!(from_page.headers().contains_key("retry-after"));

    // Another key is not affected by a's streams.
    let b_stream = stream(edge, &format!("/sse/crash?api_key={b}")).await;
    let (status, _, body) = get(edge, &format!("/sse/crash?api_key={b}")).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"));
    drop(b_stream);

    // Closing a stream gives its slot back (released, not left to lapse:
    // the lease leaves the set while the other stream keeps refreshing its own).
    drop(first);
    wait_for("a's closed stream to release its slot", TIMEOUT, || async {
        (limited.leases(&a_id).await == 1).then_some(())
    })
    .await
    .unwrap();
    let _third = stream(edge, &format!("/sse/crash?api_key={a}")).await;
    assert_eq!(limited.leases(&a_id).await, 2);

    // Usage: three connects, two rejected for a; b: one connect, one rejected.
    let today = limited.usage(&a_id).await;
    assert_eq!(
        (today["connects"].as_i64(), today["rejected"].as_i64()),
        (Some(3), Some(2)),
        "{today}"
    );
    let today_b = limited.usage(&b_id).await;
    assert_eq!(
        (today_b["connects"].as_i64(), today_b["rejected"].as_i64()),
        (Some(1), Some(1)),
        "{today_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_request_rates_and_usage() {
    let limited = Limited::start(&[("HEARTBEAT_SECS", "1")]).await;
    let edge = &limited.edge;
    // Fixed one-minute windows: if a window ends mid-check, check again in
    // the next one (it cannot end twice within a few seconds).
    for attempt in 1..=3 {
        let minute = time::OffsetDateTime::now_utc().unix_timestamp() / 60;
        let (key, id) = edge
            .create_key(
                json!({"name": "rates", "connects_per_minute": 2, "requests_per_minute": 3}),
            )
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(stream(edge, &format!("/sse/crash?api_key={key}")).await);
        }
        let (connect_status, connect_retry, connect_body) =
            get(edge, &format!("/sse/crash?api_key={key}")).await;
        let mut request_statuses = Vec::new();
        for _ in 0..3 {
            request_statuses.push(get(edge, &format!("/api/games?api_key={key}")).await.0);
        }
        let (request_status, request_retry, request_body) =
            get(edge, &format!("/api/games?api_key={key}")).await;
        if time::OffsetDateTime::now_utc().unix_timestamp() / 60 != minute && attempt < 3 {
            continue;
        }
        assert_eq!((connect_status, code(&connect_body)), (429, "rate_limited"));
        assert!(
            connect_retry.is_some_and(|s| (1..=60).contains(&s)),
            "{connect_retry:?}"
        );
        assert_eq!(request_statuses, [200, 200, 200]);
        assert_eq!((request_status, code(&request_body)), (429, "rate_limited"));
        assert!(request_retry.is_some_and(|s| (1..=60).contains(&s)));

        // Stream seconds are counted when a stream ends: hold one past a
        // heartbeat (≥ 1 s), then close it.
        let mut long = held.pop().unwrap();
        long.read_until(": heartbeat", TIMEOUT).await.unwrap();
        long.read_until(": heartbeat", TIMEOUT).await.unwrap();
        drop(long);
        wait_for("stream seconds in the usage", TIMEOUT, || async {
            let today = limited.usage(&id).await;
            (today["stream_seconds"].as_i64() >= Some(1)).then_some(today)
        })
        .await
        .unwrap();
        let today = limited.usage(&id).await;
        assert_eq!(
            today["day"],
            shared::limits::day(time::OffsetDateTime::now_utc().unix_timestamp() * 1000)
        );
        assert_eq!(
            (
                today["connects"].as_i64(),
                today["rejected"].as_i64(),
                today["requests"].as_i64()
            ),
            (Some(2), Some(2), Some(3)),
            "{today}"
        );
        break;
    }

    // The usage route: admin only, 404 for an unknown id, days bounded.
    let response = edge
        .http
        .get(edge.url("/admin/keys/key_nope/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (status, body) = edge
        .admin(Method::GET, "/admin/keys/key_nope/usage", None)
        .await
        .unwrap();
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (_, id) = edge.create_key(json!({"name": "idle"})).await.unwrap();
    for bad in ["0", "91", "x"] {
        let (status, _) = edge
            .admin(
                Method::GET,
                &format!("/admin/keys/{id}/usage?days={bad}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "days={bad}");
    }
    let (status, body) = edge
        .admin(Method::GET, &format!("/admin/keys/{id}/usage?days=3"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let days = body["usage"].as_array().unwrap();
    assert_eq!(days.len(), 3);
    assert_eq!(days[0]["connects"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_slow_endpoint_fails_open_and_closed_on_request() {
    let mut limited = Limited::start(&[("LIMITS_TIMEOUT_MS", "200")]).await;
    let (key, _) = limited
        .edge
        .create_key(json!({"name": "one", "max_streams": 3}))
        .await
        .unwrap();
    let _held = stream(&limited.edge, &format!("/sse/crash?api_key={key}")).await;

    // Slow: the endpoint stops answering (SIGSTOP). Admission waits at most
    // the timeout, then lets the stream in.
    limited.upstash.pause();
    let started = std::time::Instant::now();
    let _slow = stream(&limited.edge, &format!("/sse/crash?api_key={key}")).await;
    let waited = started.elapsed();
    limited.upstash.resume();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");

    // Down: refused connections fail open at once.
    limited.upstash.proc.kill();
    let _down = stream(&limited.edge, &format!("/sse/dice?api_key={key}")).await;
    // At most the key's max_streams per isolate that way.
    let (status, _, body) = get(&limited.edge, &format!("/sse/dice?api_key={key}")).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"), "{body}");
    let (status, _, body) = get(&limited.edge, &format!("/api/games?api_key={key}")).await;
    assert_eq!(status, 200, "{body}");
    // How often they failed open is the operators' to see, not the public's.
    let (_, _, health) = get(&limited.edge, "/healthz").await;
    assert_eq!(
        health,
        json!({"status": "ok", "limits": "on", "config": "ok"})
    );
    let (status, seen) = limited
        .edge
        .admin(Method::GET, "/admin/limits", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(seen["failed_open"].as_u64() >= Some(3), "{seen}");
    assert_eq!(seen["configuration_errors"], 0, "slowness is not a refusal");

    // LIMITS_FAIL=closed: 503 with Retry-After instead.
    let closed = knowing(&[
        ("UPSTASH_REDIS_REST_URL", limited.upstash.url.as_str()),
        ("UPSTASH_REDIS_REST_TOKEN", LimitedEdge::TOKEN),
        ("LIMITS_FAIL", "closed"),
    ])
    .await;
    let (key, _) = closed.create_key(json!({"name": "c"})).await.unwrap();
    for path in [
        format!("/sse/crash?api_key={key}"),
        format!("/api/games?api_key={key}"),
    ] {
        let (status, retry_after, body) = get(&closed, &path).await;
        assert_eq!(
            (status, code(&body)),
            (503, "unavailable"),
            "{path}: {body}"
        );
        assert!(retry_after.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_upstash_limits_are_off() {
    let edge = knowing(&[]).await;
    assert_eq!(
        get(&edge, "/healthz").await.2,
        json!({"status": "ok", "limits": "off", "config": "ok"})
    );
    let (key, id) = edge
        .create_key(json!({"name": "x", "max_streams": 1}))
        .await
        .unwrap();
    let _a = stream(&edge, &format!("/sse/crash?api_key={key}")).await;
    let _b = stream(&edge, &format!("/sse/crash?api_key={key}")).await;
    let (status, body) = edge
        .admin(Method::GET, &format!("/admin/keys/{id}/usage"), None)
        .await
        .unwrap();
    assert_eq!((status, body), (200, json!({"limits": "off", "usage": []})));
    let log = std::fs::read_to_string(edge.worker.proc.log_path()).unwrap();
    assert_eq!(log.matches("limits: off").count(), 1, "{log}");
}

/// Mints a token with `key`; status and body.
async fn mint(edge: &Edge, key: &str, body: Value) -> (u16, Value) {
    edge.mint(key, body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tokens() {
    let limited = Limited::start(&[("KEY_RECHECK_SECS", "1"), ("KEY_CACHE_SECS", "1")]).await;
    let edge = &limited.edge;
    edge.store(events(
        New,
        &[round(1, "crash", "multiplier"), round(2, "dice", "dice")],
    ))
    .await
    .unwrap();
    let (key, key_id) = edge
        .create_key(json!({"name": "partner", "games": ["crash", "dice"], "max_streams": 2}))
        .await
        .unwrap();

    // Mint: 201, an st_ token, its expiry about ttl seconds ahead.
    let before = time::OffsetDateTime::now_utc();
    let (status, minted) = mint(edge, &key, json!({"ttl": 120})).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("st_"), "{token}");
    let expires = time::OffsetDateTime::parse(
        minted["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let after = time::OffsetDateTime::now_utc();
    // The Worker's clock read between `before` and `after`; RFC 3339 to the second.
    assert!(
        expires >= before + time::Duration::seconds(119)
            && expires <= after + time::Duration::seconds(121),
        "{expires} not 120 s after the request ({before} … {after})"
    );

    // It streams and reads like its key.
    let mut by_token = stream(edge, &format!("/sse/crash?token={token}")).await;
    by_token.read_frames(2, TIMEOUT).await.unwrap();
    assert!(
        by_token
            .text()
            .ends_with(&frame("initial", &round(1, "crash", "multiplier")))
    );
    let (status, _) = edge.get("/api/games/dice/latest", &token).await.unwrap();
    assert_eq!(status, 200);

    // Narrowed: only what it names; never wider than its key (403).
    let (status, narrow) = mint(edge, &key, json!({"games": ["dice"]})).await;
    assert_eq!(status, 201);
    let narrow = narrow["token"].as_str().unwrap();
    let (status, _, body) = get(edge, &format!("/sse/crash?token={narrow}")).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, _) = edge.get("/api/games/dice/latest", narrow).await.unwrap();
    assert_eq!(status, 200);
    for wider in [json!({"games": ["wheel"]}), json!({"types": ["dice"]})] {
        let (status, body) = mint(edge, &key, wider.clone()).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{wider}");
    }
    for bad in [
        json!({"ttl": 0}),
        json!({"ttl": 3601}),
        json!({"games": ["Bad Slug"]}),
        json!({"nope": 1}),
    ] {
        let (status, body) = mint(edge, &key, bad.clone()).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{bad}");
    }

    // A token cannot mint tokens; a token counts against its key's streams.
    let (status, body) = mint(edge, &token, json!({})).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let _second = stream(edge, &format!("/sse/dice?api_key={key}")).await;
    let (status, _, body) = get(edge, &format!("/sse/dice?token={token}")).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"));
    assert_eq!(limited.leases(&key_id).await, 2);

    // Forged, malformed, expired: 401 invalid_token.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, short) = mint(edge, &key, json!({"ttl": 1})).await;
    assert_eq!(status, 201);
    let short = short["token"].as_str().unwrap().to_string();
    for bad in [forged.as_str(), "st_abc", "st_"] {
        let (status, _, body) = get(edge, &format!("/api/games?token={bad}")).await;
        assert_eq!((status, code(&body)), (401, "invalid_token"), "{bad}");
    }
    wait_for("the one-second token to expire", TIMEOUT, || async {
        let (status, _, body) = get(edge, &format!("/api/games?token={short}")).await;
        (status == 401).then_some(body)
    })
    .await
    .map(|body| assert_eq!(body["error"]["message"], "token expired"))
    .unwrap();

    // The parent revoked: the token is refused and its open stream ends.
    let (status, _) = edge
        .admin(Method::DELETE, &format!("/admin/keys/{key_id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    by_token.read_to_end(TIMEOUT).await.unwrap();
    let (status, _, body) = get(edge, &format!("/sse/crash?token={token}")).await;
    assert_eq!((status, code(&body)), (401, "invalid_token"));

    // Neither keys nor tokens appear in the Worker's log.
    let log = std::fs::read_to_string(edge.worker.proc.log_path()).unwrap();
    for secret in [&key, &token, &short] {
        assert!(!log.contains(secret.as_str()), "a credential is in the log");
    }
}

/// A lease that lapsed while its stream was open (its refreshes failed) is
/// taken back at the next refresh while the key has room; when the key
/// filled up meanwhile, the stream ends and its reconnect gets the key's 429,
/// so `max_streams` is never exceeded by streams that stopped counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_is_taken_back_or_its_stream_ends() {
    let limited = Limited::start(&[("HEARTBEAT_SECS", "1"), ("LEASE_REFRESH_SECS", "1")]).await;
    let edge = &limited.edge;
    let (key, id) = edge
        .create_key(json!({"name": "lapsing", "max_streams": 2}))
        .await
        .unwrap();
    let streams = format!("gf:{{{id}}}:streams");
    let mut a = stream(edge, &format!("/sse/crash?api_key={key}")).await;
    assert_eq!(limited.leases(&id).await, 1);

    // The lease lapses (as when Upstash could not be reached for three
    // heartbeats): the next refresh takes it back, the key has room.
    limited.redis(Command::new("DEL").arg(&streams)).await;
    wait_for("the lease to be taken back", TIMEOUT, || async {
        (limited.leases(&id).await == 1).then_some(())
    })
    .await
    .unwrap();
    edge.store(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();
    a.read_frames(2, TIMEOUT).await.unwrap();

    // It lapses again, and two other streams fill the key meanwhile (in one
    // step, so no refresh comes between): the stream ends.
    let far = i64::MAX / 2;
    limited
        .redis(
            Command::new("EVAL")
                .arg("redis.call('DEL', KEYS[1]) redis.call('ZADD', KEYS[1], ARGV[1], 'x1', ARGV[1], 'x2')")
                .arg(1)
                .arg(&streams)
                .arg(far),
        )
        .await;
    a.read_to_end(TIMEOUT).await.unwrap();
    assert_eq!(limited.leases(&id).await, 2, "the two others only");
    let (status, _, body) = get(edge, &format!("/sse/crash?api_key={key}")).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"), "{body}");
}

/// A stream opened with a browser token ends at most `KEY_RECHECK_SECS`
/// after the token expires, so a token handed to a page cannot hold a slot
/// of its key for good; reconnecting with it is then a 401 (the page mints
/// a new one and resumes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let edge = knowing(&[("KEY_RECHECK_SECS", "1"), ("HEARTBEAT_SECS", "1")]).await;
    let key = edge.open_key().await.unwrap();
    let (status, minted) = edge.mint(&key, json!({"ttl": 10})).await.unwrap();
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    let path = format!("/sse/crash?token={token}");
    let mut client = stream(&edge, &path).await;
    client.read_to_end(TIMEOUT).await.unwrap();
    let (status, _, body) = get(&edge, &path).await;
    assert_eq!((status, code(&body)), (401, "invalid_token"), "{body}");
}

/// Upstash refusing the Worker's token is a configuration error, not
/// slowness: the log says so (once, naming the setting to check), the
/// admin route counts it apart, and `LIMITS_FAIL` decides as for any other
/// failure (here: open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstash_token_is_a_configuration_error() {
    let limited = Limited::start(&[]).await;
    let edge = knowing(&[
        ("UPSTASH_REDIS_REST_URL", limited.upstash.url.as_str()),
        (
            "UPSTASH_REDIS_REST_TOKEN",
            "a-rotated-token-that-upstash-refuses",
        ),
    ])
    .await;
    let (key, _) = edge.create_key(json!({"name": "k"})).await.unwrap();
    let _a = stream(&edge, &format!("/sse/crash?api_key={key}")).await;
    let _b = stream(&edge, &format!("/sse/dice?api_key={key}")).await;
    let (status, seen) = edge
        .admin(Method::GET, "/admin/limits", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(seen["limits"], "on");
    assert_eq!(seen["configuration_errors"], 2, "{seen}");
    assert_eq!(seen["failed_open"], 2, "{seen}");
    let log = edge.worker.proc.log_path().to_path_buf();
    wait_for("the configuration error in the log", TIMEOUT, || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("limits: upstash refused our configuration (upstash refused the token): check UPSTASH_REDIS_REST_TOKEN")
            .then_some(text)
    })
    .await
    .map(|text| {
        assert_eq!(text.matches("refused our configuration").count(), 1, "once a minute");
        assert!(!text.contains("a-rotated-token"), "never the token");
        assert!(!text.contains("upstash unavailable"), "not reported as slowness");
    })
    .unwrap();
}

/// A stream let in while Upstash could not be asked (here: it refuses the
/// Worker's token, as after a rotation) is counted at the first heartbeat
/// Upstash answers again, or ends when its key filled up meanwhile; and one
/// isolate lets in at most the key's `max_streams` that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_let_in_failing_open_is_counted_or_ends_once_upstash_answers() {
    let limited = Limited::start(&[("HEARTBEAT_SECS", "1")]).await;
    let edge = &limited.edge;
    let (key, id) = edge
        .create_key(json!({"name": "open", "max_streams": 2}))
        .await
        .unwrap();
    let streams = format!("gf:{{{id}}}:streams");
    let crash = format!("/sse/crash?api_key={key}");
    let mut a = stream(edge, &crash).await;
    assert_eq!(limited.leases(&id).await, 1);

    limited.upstash.refuse_token(true).await.unwrap();
    let mut b = stream(edge, &format!("/sse/dice?api_key={key}")).await;
    // The isolate holds two of the key's streams: no third without Upstash.
    let (status, retry_after, body) = get(edge, &crash).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"), "{body}");
    assert!(retry_after.is_some());
    // Meanwhile another isolate took the key's last slot.
    let far = (i64::MAX / 2).to_string();
    limited
        .redis_direct(&["ZADD", &streams, &far, "elsewhere"])
        .await;
    limited.upstash.refuse_token(false).await.unwrap();
    b.read_to_end(TIMEOUT).await.unwrap();
    assert_eq!(limited.leases(&id).await, 2, "a and the other isolate's");
    edge.store(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();
    a.read_until("\nevent: message\n", TIMEOUT).await.unwrap();

    // With room, a stream let in failing open is counted from then on.
    limited.redis_direct(&["ZREM", &streams, "elsewhere"]).await;
    limited.upstash.refuse_token(true).await.unwrap();
    let mut c = stream(edge, &format!("/sse/dice?api_key={key}")).await;
    limited.upstash.refuse_token(false).await.unwrap();
    wait_for(
        "the stream let in failing open to be counted",
        TIMEOUT,
        || async { (limited.leases(&id).await == 2).then_some(()) },
    )
    .await
    .unwrap();
    let (status, _, body) = get(edge, &crash).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"), "{body}");
    edge.store(events(New, &[round(2, "dice", "dice")]))
        .await
        .unwrap();
    c.read_until("\nevent: message\n", TIMEOUT).await.unwrap();
}

/// A caller refused for its rate is answered from the isolate's memory
/// until its window ends: the refusals cost no Upstash call (the window's
/// counter in Redis stops at the first refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_caller_costs_no_upstash_call_until_its_window_ends() {
    let limited = Limited::start(&[]).await;
    let edge = &limited.edge;
    for attempt in 1..=3 {
        let minute = time::OffsetDateTime::now_utc().unix_timestamp() / 60;
        let (key, id) = edge
            .create_key(
                json!({"name": "remembered", "connects_per_minute": 1, "requests_per_minute": 1}),
            )
            .await
            .unwrap();
        let _held = stream(edge, &format!("/sse/crash?api_key={key}")).await;
        let api = format!("/api/games?api_key={key}");
        assert_eq!(get(edge, &api).await.0, 200);
        let mut refusals = Vec::new();
        for _ in 0..4 {
            let (status, retry_after, body) = get(edge, &api).await;
            refusals.push((status, code(&body).to_string(), retry_after.is_some()));
            let (status, retry_after, body) = get(edge, &format!("/sse/dice?api_key={key}")).await;
            refusals.push((status, code(&body).to_string(), retry_after.is_some()));
        }
        // Minting a token is a REST request like any other.
        let (status, body) = edge.mint(&key, json!({})).await.unwrap();
        refusals.push((status, code(&body).to_string(), true));
        let window = |what: &str| Command::new("GET").arg(format!("gf:{{{id}}}:{what}:{minute}"));
        let requests = limited.redis(window("requests")).await.as_count().unwrap();
        let connects = limited.redis(window("connects")).await.as_count().unwrap();
        if time::OffsetDateTime::now_utc().unix_timestamp() / 60 != minute && attempt < 3 {
            continue;
        }
        assert!(
            refusals
                .iter()
                .all(|r| *r == (429, "rate_limited".to_string(), true)),
            "{refusals:?}"
        );
        assert_eq!(
            (requests, connects),
            (2, 2),
            "one refusal each reached Upstash"
        );
        break;
    }
}

/// A browser token holds at most `TOKEN_MAX_STREAMS` of its key's streams,
/// counted in the same admission as the key's: a page visitor cannot take
/// the whole key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_token_holds_at_most_token_max_streams() {
    let limited = Limited::start(&[("TOKEN_MAX_STREAMS", "2"), ("HEARTBEAT_SECS", "1")]).await;
    let edge = &limited.edge;
    let (key, id) = edge.create_key(json!({"name": "page"})).await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, minted) = edge.mint(&key, json!({})).await.unwrap();
        assert_eq!(status, 201, "{minted}");
        tokens.push(minted["token"].as_str().unwrap().to_string());
    }
    let first = stream(edge, &format!("/sse/crash?token={}", tokens[0])).await;
    let _second = stream(edge, &format!("/sse/dice?token={}", tokens[0])).await;
    let (status, retry_after, body) = get(edge, &format!("/sse/crash?token={}", tokens[0])).await;
    assert_eq!((status, code(&body)), (429, "too_many_streams"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("token"),
        "{body}"
    );
    assert!(retry_after.is_some());
    // Another token of the key, and the key itself, are not held back.
    let _other = stream(edge, &format!("/sse/crash?token={}", tokens[1])).await;
    let _key = stream(edge, &format!("/sse/crash?api_key={key}")).await;
    assert_eq!(limited.leases(&id).await, 4);

    // A stream of the token ends: its slot under the token comes back.
    let tag = tokens[0].rsplit_once('.').unwrap().1.to_string();
    drop(first);
    wait_for("the token's slot to come back", TIMEOUT, || async {
        let held = limited
            .redis(Command::new("ZCARD").arg(format!("gf:{{{id}}}:token:{tag}")))
            .await
            .as_i64()
            .ok()?;
        (held == 1).then_some(())
    })
    .await
    .unwrap();
    let _again = stream(edge, &format!("/sse/crash?token={}", tokens[0])).await;
}

/// A stream that ends while Upstash refuses the Worker (its token rotated)
/// cannot give its slot back then; the release is tried again at the next
/// heartbeat once Upstash answers, rather than holding the key's slot for a
/// whole lease TTL (3 minutes here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_given_back_while_upstash_refuses_is_freed_once_it_answers() {
    let limited = Limited::start(&[("HEARTBEAT_SECS", "1")]).await;
    let edge = &limited.edge;
    let (full, full_id) = edge
        .create_key(json!({"name": "full", "max_streams": 1}))
        .await
        .unwrap();
    let other = edge.open_key().await.unwrap();
    // Another stream keeps this isolate's timers ticking.
    let _ticking = stream(edge, &format!("/sse/dice?api_key={other}")).await;
    let leaving = stream(edge, &format!("/sse/crash?api_key={full}")).await;
    assert_eq!(limited.leases(&full_id).await, 1);

    limited.upstash.refuse_token(true).await.unwrap();
    drop(leaving);
    let log = edge.worker.proc.log_path().to_path_buf();
    wait_for("the release to fail", TIMEOUT, || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("limits: releasing a stream slot failed")
            .then_some(())
    })
    .await
    .unwrap();

    limited.upstash.refuse_token(false).await.unwrap();
    wait_for("the slot to be given back", TIMEOUT, || async {
        (limited.leases(&full_id).await == 0).then_some(())
    })
    .await
    .unwrap();
    let _again = stream(edge, &format!("/sse/crash?api_key={full}")).await;
}
