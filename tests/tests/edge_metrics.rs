//! The edge's figures under `wrangler dev`: each stream object's series per
//! minute (rounds, commit → edge delay, viewers), `GET /admin/metrics` for
//! Prometheus and `GET /admin/overview`, agreeing with the admin routes
//! they summarise; fail-open admissions counted over all isolates.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use devstack::edge::{TIMEOUT, events, round};
use devstack::scrape::samples;
use devstack::upstash_local::LimitedEdge;
use reqwest::Method;
use serde_json::json;
use shared::EventKind;

/// Fast hops, so viewer counts settle within seconds.
const FAST: [(&str, &str); 2] = [("VIEWERS_SECS", "1"), ("HEARTBEAT_SECS", "1")];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn scrape(edge: &devstack::edge::Edge) -> (BTreeMap<String, f64>, String) {
    let response = edge
        .http
        .get(edge.url("/admin/metrics"))
        .bearer_auth(&edge.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    (samples(&text).unwrap(), text)
}

/// Asks `read` until `done` holds of its answer (figures settle through
/// timers and reports after the response); panics with the last answer.
async fn until<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    what: &str,
    mut read: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} never held; last {value:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_metrics_and_overview_agree_with_what_was_stored_and_who_watches() {
    let limited = LimitedEdge::start(Path::new(env!("CARGO_BIN_EXE_upstash-local")), &FAST)
        .await
        .unwrap();
    let edge = &limited.edge;
    // Round 0 of each game, committed days ago: past every bound.
    edge.seed(&[("crash", "multiplier"), ("dice", "dice")])
        .await
        .unwrap();
    let (key, key_id) = edge
        .create_key(
            json!({"name": "watcher", "test": true, "max_streams": 10, "connects_per_minute": 100}),
        )
        .await
        .unwrap();
    // Three rounds committed 7 s before they reach the edge (in (5 s, 10 s]
    // however slow this machine is), one stamped a minute in the future (a
    // database clock ahead of the edge's: it counts as no delay).
    let now = now_ms();
    let mut late: Vec<_> = (1..=3).map(|id| round(id, "crash", "multiplier")).collect();
    for r in &mut late {
        r.timestamp = now - 7_000;
    }
    let mut ahead = round(4, "crash", "multiplier");
    ahead.timestamp = now + 60_000;
    late.push(ahead);
    edge.store(events(EventKind::New, &late)).await.unwrap();
    // A replay stores nothing and counts nothing.
    let replay = edge.store(events(EventKind::New, &late)).await.unwrap();
    assert_eq!(replay["duplicates"], 4, "{replay}");

    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(
            edge.sse(&format!("/sse/crash?api_key={key}"))
                .await
                .unwrap(),
        );
    }
    let series = until(
        "two viewers in the series",
        || async {
            edge.admin(
                Method::GET,
                "/admin/streams/game/crash/series?minutes=5",
                None,
            )
            .await
            .unwrap()
        },
        |(status, s)| *status == 200 && s["viewers_last"][4] == 2,
    )
    .await
    .1;
    assert_eq!(series["stream"], "game:crash");
    assert_eq!(series["minutes"], 5);
    assert_eq!(series["t"].as_array().unwrap().len(), 5);
    let window = &series["window"];
    assert_eq!(window["rounds"], 5, "round 0 and rounds 1–4: {series}");
    assert!(window["viewers_peak"].as_u64().unwrap() >= 2);
    let bounds: Vec<f64> = serde_json::from_value(window["delay"]["bounds"].clone()).unwrap();
    let counts: Vec<u64> = serde_json::from_value(window["delay"]["counts"].clone()).unwrap();
    assert_eq!(counts.len(), bounds.len() + 1);
    let five = bounds.iter().position(|b| *b == 10.0).unwrap();
    assert_eq!(counts[0], 1, "the round from the future: {counts:?}");
    assert_eq!(counts[five], 3, "the three 7 s rounds: {counts:?}");
    assert_eq!(counts[bounds.len()], 1, "round 0, days late: {counts:?}");
    assert_eq!(window["delay"]["count"], 5);
    let p50 = window["delay_p50"].as_f64().unwrap();
    assert!((5.0..=10.0).contains(&p50), "{p50}");

    // The scrape: what the stats, series and usage routes say.
    let (figures, text) = until(
        "the key's two streams in the scrape",
        || scrape(edge),
        |(m, _)| m.get(&format!("gamefeed_key_streams_open{{key_id=\"{key_id}\"}}")) == Some(&2.0),
    )
    .await;
    let stats = edge.stats("game", "crash").await.unwrap();
    let get = |series: &str| {
        *figures
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    assert_eq!(
        get(r#"gamefeed_rounds_stored_total{stream="game:crash"}"#),
        5.0
    );
    assert_eq!(stats["rounds"], 5);
    assert_eq!(get(r#"gamefeed_viewers{stream="game:crash"}"#), 2.0);
    assert_eq!(stats["viewers"], 2);
    assert_eq!(get(r#"gamefeed_relays{stream="game:crash"}"#), 0.0);
    assert_eq!(
        get(r#"gamefeed_rounds_stored_total{stream="type:multiplier"}"#),
        5.0
    );
    assert_eq!(
        get(r#"gamefeed_rounds_stored_total{stream="game:dice"}"#),
        1.0
    );
    assert_eq!(get(r#"gamefeed_viewers{stream="type:dice"}"#), 0.0);
    assert_eq!(
        get(r#"gamefeed_commit_to_edge_seconds_count{stream="game:crash"}"#),
        5.0
    );
    assert_eq!(
        get(r#"gamefeed_commit_to_edge_seconds_bucket{le="0.001",stream="game:crash"}"#),
        1.0
    );
    assert_eq!(
        get(r#"gamefeed_commit_to_edge_seconds_bucket{le="5.0",stream="game:crash"}"#),
        1.0
    );
    assert_eq!(
        get(r#"gamefeed_commit_to_edge_seconds_bucket{le="10.0",stream="game:crash"}"#),
        4.0
    );
    assert_eq!(
        get(r#"gamefeed_commit_to_edge_seconds_bucket{le="+Inf",stream="game:crash"}"#),
        5.0
    );
    let sum = get(r#"gamefeed_commit_to_edge_seconds_sum{stream="game:crash"}"#);
    let series_sum = window["delay"]["sum"].as_f64().unwrap();
    assert!((sum - series_sum).abs() < 1e-6, "{sum} vs {series_sum}");
    let (status, usage) = edge
        .admin(
            Method::GET,
            &format!("/admin/keys/{key_id}/usage?days=1"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let today = &usage["usage"][0];
    for kind in ["connects", "rejected", "stream_seconds", "requests"] {
        let scraped = get(&format!(
            "gamefeed_key_usage_today{{key_id=\"{key_id}\",kind=\"{kind}\"}}"
        ));
        // Stream seconds grow while the streams are open: at least as many.
        if kind == "stream_seconds" {
            assert!(today[kind].as_f64().unwrap() >= scraped, "{kind}: {today}");
        } else {
            assert_eq!(today[kind].as_f64().unwrap(), scraped, "{kind}: {today}");
        }
    }
    assert_eq!(today["connects"], 2);
    assert_eq!(
        get(&format!("gamefeed_key_max_streams{{key_id=\"{key_id}\"}}")),
        10.0
    );
    assert_eq!(get("gamefeed_limits_failed_open_total"), 0.0);
    assert!(!text.contains(&key), "a key in the scrape");
    assert!(
        !text.contains(&edge.admin_token),
        "the admin token in the scrape"
    );

    // The overview: the same figures as JSON, and the Worker's health.
    let (status, overview) = edge
        .admin(Method::GET, "/admin/overview", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["limits"], "on");
    assert_eq!(overview["config"], "ok");
    assert_eq!(overview["failed_open"], 0);
    let crash = overview["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "game:crash")
        .unwrap();
    assert_eq!(crash["rounds"], 5);
    assert_eq!(crash["viewers"], 2);
    assert_eq!(crash["sockets"], 1, "one isolate: one feed socket");
    let keyed = overview["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .unwrap();
    assert_eq!(keyed["streams_open"], 2);
    assert_eq!(keyed["max_streams"], 10);
    assert_eq!(keyed["connects_per_minute"], 100);
    assert_eq!(keyed["requests_per_minute"], 0, "none set, none by default");
    // The two connects fall in this minute's window or the one before.
    assert!(
        keyed["connects_this_minute"].as_u64().unwrap() <= 2,
        "{keyed}"
    );
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_figures_routes_refuse_bad_input_and_strangers() {
    let limited = LimitedEdge::start(Path::new(env!("CARGO_BIN_EXE_upstash-local")), &[])
        .await
        .unwrap();
    let edge = &limited.edge;
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    for minutes in ["0", "1441", "x", "", "-1"] {
        let (status, body) = edge
            .admin(
                Method::GET,
                &format!("/admin/streams/game/crash/series?minutes={minutes}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 400, "minutes={minutes}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
    }
    let (status, body) = edge
        .admin(
            Method::GET,
            "/admin/streams/game/crash/series?minutes=1440",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["t"].as_array().unwrap().len(), 1440);
    let (status, body) = edge
        .admin(Method::GET, "/admin/streams/game/never-stored/series", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window"]["rounds"], 0);
    assert_eq!(body["minutes"], 60, "the default");
    let (status, _) = edge
        .admin(Method::GET, "/admin/streams/shoe/crash/series", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    for path in [
        "/admin/metrics",
        "/admin/overview",
        "/admin/streams/game/crash/series",
    ] {
        let response = edge.http.get(edge.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let wrong = edge
            .http
            .get(edge.url(path))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let post = edge
            .http
            .post(edge.url(path))
            .bearer_auth(&edge.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 405, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_admissions_are_counted_over_all_isolates_and_scraped_while_upstash_is_down() {
    // Admissions wait at most 1 s for Upstash, then fail open.
    let limited = LimitedEdge::start(
        Path::new(env!("CARGO_BIN_EXE_upstash-local")),
        &[("LIMITS_TIMEOUT_MS", "1000")],
    )
    .await
    .unwrap();
    let edge = &limited.edge;
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let (key, key_id) = edge
        .create_key(json!({"name": "rest", "test": true}))
        .await
        .unwrap();
    limited.upstash.pause();
    for _ in 0..3 {
        let (status, body) = edge.get("/api/games/crash/latest", &key).await.unwrap();
        assert_eq!(status, 200, "let in failing open: {body}");
    }
    // The scrape still answers while Upstash is down: the keys' figures
    // are left out, the fail-open total is there.
    let (figures, text) = until(
        "three fail-open admissions in the total",
        || scrape(edge),
        |(m, _)| m.get("gamefeed_limits_failed_open_total") == Some(&3.0),
    )
    .await;
    assert!(
        !figures.keys().any(|s| s.contains(&key_id)),
        "no key figures without Upstash:\n{text}"
    );
    assert_eq!(
        figures.get(r#"gamefeed_rounds_stored_total{stream="game:crash"}"#),
        Some(&1.0)
    );
    limited.upstash.resume();
    let (again, _) = until(
        "the key back in the scrape",
        || scrape(edge),
        |(m, _)| m.contains_key(&format!("gamefeed_key_streams_open{{key_id=\"{key_id}\"}}")),
    )
    .await;
    assert_eq!(again.get("gamefeed_limits_failed_open_total"), Some(&3.0));
}
