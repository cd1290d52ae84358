//! Viewer counts under `wrangler dev`: each stream's clients across feeds,
//! relays and multiplexed connections, told to every client as
//! `event: viewers` and answered by `GET /api/games/:game/viewers`.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use devstack::edge::{Edge, TIMEOUT};
use devstack::sse::{Marker, SseClient};
use serde_json::Value;

/// Fast hops, so counts settle within seconds: every hop may tell a change
/// each second, and the feeds' owners tick each second.
const FAST: [(&str, &str); 2] = [("VIEWERS_SECS", "1"), ("HEARTBEAT_SECS", "1")];

/// Waits until the game's viewers, as `GET /api/games/:game/viewers` says,
/// are `want`. The count settles through timers, so this asks again until
/// it does (each answer is read whole; no fixed sleep stands for it).
async fn settles(edge: &Edge, key: &str, game: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let (status, body) = edge
            .get(&format!("/api/games/{game}/viewers"), key)
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        if body["viewers"] == want {
            return;
        }
        last = body.to_string();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{game}: viewers never became {want}; last {last}");
}

/// Reads until the client was told `want` viewers of `stream`.
async fn told(client: &mut SseClient, stream: &str, want: u64) {
    let last_told = |markers: &[Marker]| {
        markers
            .iter()
            .rev()
            .find(|m| m.event == "viewers" && m.data["stream"] == stream)
            .is_some_and(|m| m.data["viewers"] == want)
    };
    client.read_markers_until(last_told, TIMEOUT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_the_clients_open_and_every_client_is_told() {
    let edge = Edge::start(&FAST).await.unwrap();
    edge.seed(&[("crash", "multiplier"), ("dice", "dice")])
        .await
        .unwrap();
    let key = edge.open_key().await.unwrap();
    let mut crash = Vec::new();
    for _ in 0..3 {
        crash.push(
            edge.sse(&format!("/sse/crash?api_key={key}"))
                .await
                .unwrap(),
        );
    }
    let mut both = edge
        .sse(&format!("/sse?api_key={key}&games=crash,dice"))
        .await
        .unwrap();
    settles(&edge, &key, "crash", 4).await;
    settles(&edge, &key, "dice", 1).await;
    for client in &mut crash {
        told(client, "game:crash", 4).await;
    }
    told(&mut both, "game:crash", 4).await;
    told(&mut both, "game:dice", 1).await;
    // Each client's first count comes after its opening's `live`.
    for client in crash.iter().chain([&both]) {
        let events: Vec<&str> = client.markers.iter().map(|m| m.event.as_str()).collect();
        assert_eq!(events.first(), Some(&"live"), "{:?}", client.markers);
    }
    let stats = edge.stats("game", "crash").await.unwrap();
    assert_eq!(stats["viewers"], 4, "{stats}");

    // Two leave: the others are told, and so is anyone who asks.
    crash.truncate(1);
    settles(&edge, &key, "crash", 2).await;
    told(&mut crash[0], "game:crash", 2).await;
    told(&mut both, "game:crash", 2).await;
    // A client joining now is told the count right after its `live`.
    let mut late = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    late.read_markers("viewers", 1, TIMEOUT).await.unwrap();
    assert_eq!(late.markers[0].event, "live");
    assert_eq!(late.markers[1].event, "viewers");

    // Unknown and malformed games, as on the other REST routes.
    let (status, _) = edge.get("/api/games/nope/viewers", &key).await.unwrap();
    assert_eq!(status, 404);
    let (status, _) = edge.get("/api/games/NO_PE/viewers", &key).await.unwrap();
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_counted_across_relays() {
    // One socket per client (FEED_GROUP=1), one socket per object
    // (RELAY_CAPACITY=1): three of the four clients are served by relays.
    let mut config = FAST.to_vec();
    config.extend([("FEED_GROUP", "1"), ("RELAY_CAPACITY", "1")]);
    let edge = Edge::start(&config).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            edge.sse(&format!("/sse/crash?api_key={key}"))
                .await
                .unwrap(),
        );
    }
    settles(&edge, &key, "crash", 4).await;
    let stats = edge.stats("game", "crash").await.unwrap();
    assert_eq!(stats["local_sockets"], 1, "{stats}");
    assert_eq!(stats["relays"].as_array().map(Vec::len), Some(3), "{stats}");
    for client in &mut clients {
        told(client, "game:crash", 4).await;
    }
    // Two leave.
    clients.truncate(2);
    settles(&edge, &key, "crash", 2).await;
    for client in &mut clients {
        told(client, "game:crash", 2).await;
    }
}
