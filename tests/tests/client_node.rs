//! The browser client, `@gamefeed/client` (client/), from Node against the
//! real Worker under `wrangler dev`: `client/test/live.mjs` drives it and
//! checks what it emits; this side starts the Worker and does what the
//! script asks (stores rounds with signed batches, cuts streams).

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use devstack::edge::Edge;
use devstack::node_driver::drive;
use devstack::upstash_local::LimitedEdge;
use serde_json::json;

/// The scenarios, in `client/test/`.
const SCRIPT: &str = "live.mjs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_live_resume_a_new_game_and_a_fatal_refusal() {
    let edge = Edge::start(&[("RETRY_MS", "500")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let results = drive(&edge, &key, SCRIPT, "basics").await.unwrap();
    assert_eq!(results[0]["basics"], "ok", "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_and_nothing_is_missed() {
    let edge = Edge::start(&[
        ("RETRY_MS", "500"),
        ("KEY_RECHECK_SECS", "1"),
        ("HEARTBEAT_SECS", "1"),
    ])
    .await
    .unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let results = drive(&edge, &key, SCRIPT, "token").await.unwrap();
    assert_eq!(results[0]["token"], "ok", "{results:?}");
    assert!(results[0]["minted"].as_u64() >= Some(2), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_then_the_stream_works() {
    let limited = LimitedEdge::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_upstash-local")),
        &[("RETRY_MS", "500")],
    )
    .await
    .unwrap();
    let edge = &limited.edge;
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let (key, _) = edge
        .create_key(json!({"name": "one stream", "max_streams": 1}))
        .await
        .unwrap();
    let results = drive(edge, &key, SCRIPT, "limits").await.unwrap();
    assert_eq!(results[0]["limits"], "ok", "{results:?}");
}

/// The viewers scenario on a Worker with `vars` on top of fast counts;
/// returns its result.
async fn viewers_with(vars: &[(&str, &str)]) -> serde_json::Value {
    let mut all = vec![("VIEWERS_SECS", "1"), ("HEARTBEAT_SECS", "1")];
    all.extend_from_slice(vars);
    let edge = Edge::start(&all).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let results = drive(&edge, &key, SCRIPT, "viewers").await.unwrap();
    assert_eq!(results[0]["viewers"], "ok", "{results:?}");
    results[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_counts_are_the_feeds_open() {
    let result = viewers_with(&[]).await;
    assert_eq!(result["relays"], 0, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_counts_are_the_feeds_open_across_relays() {
    // Five feeds, two sockets per object: three on two relays.
    let result = viewers_with(&[("FEED_GROUP", "1"), ("RELAY_CAPACITY", "2")]).await;
    assert_eq!(result["relays"], 2, "{result}");
}
