//! The bridge's life cycle: a leaving client releases its socket, an object
//! that closes its sockets ends the streams, a hibernated object keeps
//! serving its clients, a slow client is cut off.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use devstack::edge::{Edge, TIMEOUT, events, frame, round};
use devstack::wait_for;
use shared::EventKind::New;

async fn sockets(edge: &Edge, game: &str) -> Option<u64> {
    edge.stats("game", game).await.ok()?["sockets"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_client_releases_its_socket_and_a_closing_object_ends_streams() {
    // Behind wrangler's proxy a gone client may only be noticed at the next
    // write, so the heartbeat interval bounds how long its socket lingers.
    // A feed socket per client (clients of one isolate share one by
    // default), so the object's count follows the clients.
    let edge = Edge::start(&[("HEARTBEAT_SECS", "2"), ("FEED_GROUP", "1")])
        .await
        .unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut a = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    let mut b = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    a.read_frames(2, TIMEOUT).await.unwrap();
    b.read_frames(2, TIMEOUT).await.unwrap();
    assert_eq!(sockets(&edge, "crash").await, Some(2));

    drop(a);
    wait_for("the object to see one socket", TIMEOUT, || async {
        (sockets(&edge, "crash").await == Some(1)).then_some(())
    })
    .await
    .unwrap();

    // The object closes its sockets: the client's stream ends cleanly.
    let (status, body) = edge
        .admin(
            reqwest::Method::POST,
            "/admin/streams/game/crash/disconnect",
            None,
        )
        .await
        .unwrap();
    assert_eq!((status, body["closed"].as_u64()), (200, Some(1)));
    b.read_to_end(TIMEOUT).await.expect("stream ends");
    assert_eq!(
        b.frames().concat(),
        format!(
            "retry: 3000\n\n{}",
            frame("initial", &round(0, "crash", "multiplier"))
        )
    );
    wait_for("no socket left", TIMEOUT, || async {
        (sockets(&edge, "crash").await == Some(0)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_object_is_rebuilt_and_its_clients_keep_receiving() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut client = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    client.read_frames(1, TIMEOUT).await.unwrap();
    let first = edge.stats("game", "crash").await.unwrap()["instance"].clone();

    // workerd evicts an object that only holds hibernatable sockets after it
    // has been idle for a while (about 10 s locally). There is no event to
    // await from outside, and every look wakes the object, so this looks
    // rarely: once per 15 s, for at most 3 minutes.
    let mut evicted = false;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        if edge.stats("game", "crash").await.unwrap()["instance"] != first {
            evicted = true;
            break;
        }
    }
    assert!(
        evicted,
        "the object was never evicted while its client stayed connected"
    );
    assert_eq!(
        sockets(&edge, "crash").await,
        Some(1),
        "the socket survived hibernation"
    );

    let r1 = round(1, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&r1)))
        .await
        .unwrap();
    client.read_until("event: message", TIMEOUT).await.unwrap();
    assert_eq!(
        client.frames().concat(),
        format!(
            "retry: 3000\n\n{}{}",
            frame("initial", &round(0, "crash", "multiplier")),
            frame("message", &r1)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_off() {
    // The bound is in bytes: 256 KiB is a handful of these 100 KB rounds,
    // where a bound in chunks (one per message, up to 256 KiB each) would
    // let hundreds of megabytes wait.
    let edge = Edge::start(&[("MAX_QUEUED_BYTES", "262144"), ("HISTORY_LIMIT", "10")])
        .await
        .unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut stalled = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    stalled.read_frames(1, TIMEOUT).await.unwrap();

    // ~40 MB of rounds, far more than the socket buffers between workerd and
    // this client can absorb, while the client reads nothing.
    let big = "x".repeat(100_000);
    let mut id = 0;
    let mut cut = false;
    for _ in 0..80 {
        let batch: Vec<_> = (0..5)
            .map(|_| {
                id += 1;
                let mut r = round(id, "crash", "multiplier");
                r.extras = format!("{{\"pad\": \"{big}\"}}");
                r
            })
            .collect();
        edge.store(events(New, &batch)).await.unwrap();
        if sockets(&edge, "crash").await == Some(0) {
            cut = true;
            break;
        }
    }
    assert!(cut, "the stalled client was never disconnected");
    // Its stream ends (after what was already buffered), not with all rounds.
    stalled.read_to_end(TIMEOUT).await.unwrap();
    assert!(stalled.text().matches("event: message").count() < id as usize);
}
