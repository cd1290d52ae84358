//! The browser client, `@gamefeed/client`, in headless Chromium
//! (playwright-core) against the real Worker under `wrangler dev`, from a
//! page of another origin: `client/test/browser.mjs` drives the browser
//! and checks the pages; this side starts the Worker and stores rounds.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use devstack::edge::Edge;
use devstack::node_driver::drive;

/// The scenarios, in `client/test/`.
const SCRIPT: &str = "browser.mjs";

/// A Worker that knows `crash` (round 0), with fast heartbeats and counts.
async fn edge() -> (Edge, String) {
    let edge = Edge::start(&[
        ("RETRY_MS", "500"),
        ("HEARTBEAT_SECS", "1"),
        ("VIEWERS_SECS", "1"),
    ])
    .await
    .unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    (edge, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_page_reloaded_mid_stream_misses_and_repeats_nothing() {
    let (edge, key) = edge().await;
    let results = drive(&edge, &key, SCRIPT, "persist").await.unwrap();
    assert_eq!(results[0]["persist"], "ok", "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_network_drops_reconnects_and_goes_live() {
    let (edge, key) = edge().await;
    let results = drive(&edge, &key, SCRIPT, "offline").await.unwrap();
    assert_eq!(results[0]["offline"], "ok", "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_share_one_connection_and_hand_it_over() {
    let (edge, key) = edge().await;
    let results = drive(&edge, &key, SCRIPT, "tabs").await.unwrap();
    assert_eq!(results[0]["tabs"], "ok", "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_react_hook_renders_the_latest_round_and_the_viewers() {
    let (edge, key) = edge().await;
    let results = drive(&edge, &key, SCRIPT, "react").await.unwrap();
    assert_eq!(results[0]["react"], "ok", "{results:?}");
    assert!(
        devstack::repo_root()
            .join("tests/artifacts/client-react.png")
            .exists()
    );
}
