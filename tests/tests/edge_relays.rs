//! Audiences past one object (docs/protocol.md#relays-and-feeds), under `wrangler dev` with a
//! small `RELAY_CAPACITY` and a feed socket per client: subscribers spread over relays with no object
//! over capacity, and a client through a relay gets byte for byte what it
//! would get from the stream object, also when it subscribes while rounds
//! are being stored; relays are released and forgotten when their clients
//! leave, and keep serving after they slept.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use devstack::edge::{Edge, TIMEOUT, events, frame, frame_at, round};
use devstack::sse::SseClient;
use devstack::wait_for;
use futures::future::join_all;
use serde_json::Value;
use shared::EventKind::{New, Update};
use shared::Round;

const RETRY: &str = "retry: 3000\n\n";

/// Locally every client is in one isolate, whose clients would share one
/// feed socket: a socket per client puts the many sockets of a large
/// audience on the objects, as many isolates do on Cloudflare.
const ONE_SOCKET_EACH: (&str, &str) = ("FEED_GROUP", "1");

/// The socket counts of a stream: total, the object's own, and per relay.
struct Spread {
    total: u64,
    local: u64,
    relays: Vec<(String, u64)>,
}

async fn spread(edge: &Edge, kind: &str, name: &str) -> Spread {
    let stats: Value = edge.stats(kind, name).await.unwrap();
    let relays = stats["relays"]
        .as_array()
        .expect("stats list relays")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["sockets"].as_u64().unwrap(),
            )
        })
        .collect();
    Spread {
        total: stats["sockets"].as_u64().unwrap(),
        local: stats["local_sockets"].as_u64().unwrap(),
        relays,
    }
}

/// Opens `n` streams one after another, each read up to its first `frames`
/// frames (the `retry:` included).
async fn open(
    edge: &Edge,
    path: &str,
    last_event_id: Option<&str>,
    n: usize,
    frames: usize,
) -> Vec<SseClient> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut client = match last_event_id {
            Some(id) => edge.sse_with(path, &[("last-event-id", id)]).await,
            None => edge.sse(path).await,
        }
        .unwrap();
        client.read_frames(frames, TIMEOUT).await.unwrap();
        clients.push(client);
    }
    clients
}

fn messages(rounds: &[Round]) -> String {
    rounds.iter().map(|r| frame("message", r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audience_past_capacity_spreads_over_relays_and_gets_every_frame_once() {
    let edge = Edge::start(&[("RELAY_CAPACITY", "10"), ONE_SOCKET_EACH])
        .await
        .unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=9).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds[..3])).await.unwrap();

    let game = format!("/sse/crash?api_key={key}");
    let fresh = open(&edge, &game, None, 20, 2).await;
    let resumed = open(&edge, &game, Some("1"), 12, 3).await;
    // An id the stream no longer (or never) held: reset, then initial.
    let reset = open(&edge, &game, Some("999999"), 3, 3).await;
    let typed = open(
        &edge,
        &format!("/sse/type/multiplier?api_key={key}"),
        None,
        12,
        2,
    )
    .await;
    let mut multiplexed = edge
        .sse(&format!("/sse?games=crash&types=multiplier&api_key={key}"))
        .await
        .unwrap();
    multiplexed.read_frames(3, TIMEOUT).await.unwrap();

    let crash = spread(&edge, "game", "crash").await;
    assert_eq!(crash.total, 20 + 12 + 3 + 1);
    assert!(
        crash.local <= 10,
        "the object holds {} sockets",
        crash.local
    );
    assert!(crash.relays.len() >= 3, "relays: {:?}", crash.relays);
    for (name, sockets) in &crash.relays {
        assert!(name.starts_with("relay:game:crash:"), "{name}");
        assert!(*sockets <= 10, "{name} holds {sockets} sockets");
    }
    assert_eq!(
        crash.local + crash.relays.iter().map(|(_, s)| s).sum::<u64>(),
        crash.total
    );
    let by_type = spread(&edge, "type", "multiplier").await;
    assert_eq!(by_type.total, 13);
    assert!(!by_type.relays.is_empty() && by_type.local <= 10);

    // Live rounds in two batches, then the same rounds replayed (nothing is
    // sent twice), an update, and one more round.
    edge.store(events(New, &rounds[3..6])).await.unwrap();
    edge.store(events(New, &rounds[6..8])).await.unwrap();
    let replay = edge.store(events(New, &rounds[3..8])).await.unwrap();
    assert_eq!(replay["stored"], 0, "{replay}");
    let mut corrected = rounds[4].clone();
    corrected.extras = r#"{"n": 5, "corrected": true}"#.into();
    corrected.timestamp += 1;
    edge.store(events(Update, std::slice::from_ref(&corrected)))
        .await
        .unwrap();
    edge.store(events(New, &rounds[8..9])).await.unwrap();

    let live = format!(
        "{}{}{}",
        messages(&rounds[3..8]),
        frame_at("update", "8.1", &corrected),
        frame("message", &rounds[8])
    );
    for mut client in fresh.into_iter().chain(typed) {
        client.read_until("id: 9\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.text(),
            format!("{RETRY}{}{live}", frame("initial", &rounds[2]))
        );
    }
    for mut client in resumed {
        client.read_until("id: 9\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.text(),
            format!("{RETRY}{}{live}", messages(&rounds[1..3]))
        );
    }
    for mut client in reset {
        client.read_until("id: 9\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.text(),
            format!(
                "{RETRY}event: reset\ndata: {{\"stream\":\"game:crash\"}}\n\n{}{live}",
                frame("initial", &rounds[2])
            )
        );
    }
    // Both members through relays: every live frame of each, once, and the
    // cursor ends at both streams' newest round.
    multiplexed
        .read_until("id: g:crash:9,t:multiplier:9\n", TIMEOUT)
        .await
        .unwrap();
    let text = multiplexed.text();
    assert_eq!(text.matches("event: message").count(), 2 * 6, "{text}");
    assert_eq!(text.matches("event: update").count(), 2, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_through_a_relay_while_rounds_are_stored_misses_and_repeats_nothing() {
    let edge = Edge::start(&[("RELAY_CAPACITY", "3"), ONE_SOCKET_EACH])
        .await
        .unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=30)
        .map(|id| round(id, "crash", "multiplier"))
        .collect();
    edge.store(events(New, &rounds[..2])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");

    // Rounds 3..=29 are stored one by one while 15 clients subscribe at
    // once, each resuming from round 2: whichever rounds a client's backlog
    // holds and whichever its relay pushes, it must see each exactly once.
    let storing = async {
        for r in &rounds[2..29] {
            edge.store(events(New, std::slice::from_ref(r)))
                .await
                .unwrap();
        }
    };
    let subscribing = join_all((0..15).map(|_| edge.sse_with(&path, &[("last-event-id", "2")])));
    let ((), clients) = tokio::join!(storing, subscribing);
    let spread = spread(&edge, "game", "crash").await;
    assert_eq!(spread.total, 15);
    assert!(spread.relays.len() >= 4, "relays: {:?}", spread.relays);

    edge.store(events(New, &rounds[29..30])).await.unwrap();
    for client in clients {
        let mut client = client.unwrap();
        client.read_until("id: 30\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.text(),
            format!("{RETRY}{}", messages(&rounds[2..30]))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_are_released_when_clients_leave_and_forgotten_when_empty() {
    // Behind wrangler's proxy a gone client may only be noticed at the next
    // write, so the heartbeat interval bounds how long its socket lingers.
    let edge = Edge::start(&[
        ("RELAY_CAPACITY", "5"),
        ("HEARTBEAT_SECS", "2"),
        ONE_SOCKET_EACH,
    ])
    .await
    .unwrap();
    let key = edge.open_key().await.unwrap();
    let r1 = round(1, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&r1)))
        .await
        .unwrap();
    let path = format!("/sse/crash?api_key={key}");
    let mut clients = open(&edge, &path, None, 12, 2).await;
    let before = spread(&edge, "game", "crash").await;
    assert_eq!(
        (before.total, before.local, before.relays.len()),
        (12, 5, 2)
    );

    // Clients that leave give their relay sockets back.
    let stay = clients.split_off(8);
    drop(clients);
    wait_for("the relays to see their clients leave", TIMEOUT, || async {
        (spread(&edge, "game", "crash").await.total == 4).then_some(())
    })
    .await
    .unwrap();

    // An operator's disconnect reaches the relays' clients too.
    let (status, body) = edge
        .admin(
            reqwest::Method::POST,
            "/admin/streams/game/crash/disconnect",
            None,
        )
        .await
        .unwrap();
    assert_eq!((status, body["closed"].as_u64()), (200, Some(4)));
    for mut client in stay {
        client.read_to_end(TIMEOUT).await.expect("stream ends");
    }
    // Empty relays are forgotten once no placement on them can still arrive
    // (a ticket lives 5 s).
    wait_for("empty relays to be forgotten", TIMEOUT, || async {
        let now = spread(&edge, "game", "crash").await;
        (now.total == 0 && now.relays.is_empty()).then_some(())
    })
    .await
    .unwrap();

    // A new audience is placed on relays again and served.
    let again = open(&edge, &path, None, 8, 2).await;
    let after = spread(&edge, "game", "crash").await;
    assert_eq!((after.total, after.relays.len()), (8, 1));
    let r2 = round(2, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&r2)))
        .await
        .unwrap();
    for mut client in again {
        client.read_until("id: 2\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.text(),
            format!("{RETRY}{}{}", frame("initial", &r1), frame("message", &r2))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_relay_is_rebuilt_and_its_clients_keep_receiving() {
    let edge = Edge::start(&[("RELAY_CAPACITY", "1"), ONE_SOCKET_EACH])
        .await
        .unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    // One client on the object, one on a relay; only the seed round yet.
    let clients = open(&edge, &path, None, 2, 2).await;
    let relay_instance = || async {
        let stats = edge.stats("game", "crash").await.unwrap();
        stats["relays"][0]["instance"].as_str().unwrap().to_string()
    };
    let first = relay_instance().await;

    // workerd evicts an object that only holds hibernatable sockets after it
    // has been idle for a while (about 10 s locally). There is no event to
    // await from outside, and every look wakes the relay, so this looks
    // rarely: once per 15 s, for at most 3 minutes.
    let mut evicted = false;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(15)).await;
        if relay_instance().await != first {
            evicted = true;
            break;
        }
    }
    assert!(
        evicted,
        "the relay was never evicted while its client stayed"
    );
    assert_eq!(spread(&edge, "game", "crash").await.relays[0].1, 1);

    let r1 = round(1, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&r1)))
        .await
        .unwrap();
    for mut client in clients {
        client.read_until("id: 1\n", TIMEOUT).await.unwrap();
        // Heartbeats came while the relay slept: frames only.
        assert_eq!(
            client.frames().concat(),
            format!(
                "{RETRY}{}{}",
                frame("initial", &round(0, "crash", "multiplier")),
                frame("message", &r1)
            )
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_stops_answering_holds_up_neither_batches_nor_other_clients() {
    // The stream object answers a batch only after its pushes reached every
    // relay. With `FAULT_RELAY_PUSH=hang` relays never answer a push: the
    // object gives up on the relay (each try times out after 5 s), ends its
    // clients' streams so they resume from the object, forgets it, and
    // answers the batch; its own clients get the round.
    let edge = Edge::start(&[
        ("RELAY_CAPACITY", "1"),
        ONE_SOCKET_EACH,
        ("ALLOW_FAULTS", "1"),
        ("FAULT_RELAY_PUSH", "hang"),
    ])
    .await
    .unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=3).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds[..1])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    let mut clients = open(&edge, &path, None, 2, 2).await;
    let before = spread(&edge, "game", "crash").await;
    assert_eq!(
        (before.local, before.relays.len()),
        (1, 1),
        "one client on the object, one on a relay"
    );

    let reply = tokio::time::timeout(TIMEOUT, edge.store(events(New, &rounds[1..2])))
        .await
        .expect("the batch is answered although its relay hangs")
        .unwrap();
    assert_eq!(reply["stored"], 1, "{reply}");
    let mut relayed = clients.pop().unwrap();
    relayed.read_to_end(TIMEOUT).await.unwrap();
    assert_eq!(
        relayed.frames().concat(),
        format!("{RETRY}{}", frame("initial", &rounds[0])),
        "the relay's client got nothing more, and its stream ended"
    );
    let after = spread(&edge, "game", "crash").await;
    assert_eq!(
        (after.total, after.relays.len()),
        (1, 0),
        "the relay is forgotten"
    );
    // Nothing waits on it any more.
    edge.store(events(New, &rounds[2..])).await.unwrap();
    let mut direct = clients.pop().unwrap();
    direct.read_until("id: 3\n", TIMEOUT).await.unwrap();
    assert_eq!(
        direct.frames().concat(),
        format!(
            "{RETRY}{}{}",
            frame("initial", &rounds[0]),
            messages(&rounds[1..])
        )
    );
}
