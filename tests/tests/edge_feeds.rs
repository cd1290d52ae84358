//! An isolate's clients of one stream share one feed socket to its object
//! (`worker/src/clients/feed.rs`, deciding with `worker/src/fanout/feed.rs`), under `wrangler dev` (one isolate locally): the
//! object holds one socket however many clients read, and when the client
//! whose request holds the socket leaves, another takes it over without a
//! client missing or repeating a frame, also while rounds are stored.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::VecDeque;

use devstack::edge::{Edge, TIMEOUT, events, frame, round};
use devstack::wait_for;
use shared::EventKind::New;
use shared::Round;

const RETRY: &str = "retry: 3000\n\n";

async fn sockets(edge: &Edge) -> Option<u64> {
    edge.stats("game", "crash").await.ok()?["sockets"].as_u64()
}

fn messages(rounds: &[Round]) -> String {
    rounds.iter().map(|r| frame("message", r)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_one_socket_and_keep_every_frame_when_its_holders_leave() {
    // Behind wrangler's proxy a gone client is noticed at the next write:
    // the round stored just after a holder left is the one that finds it
    // gone, so each hand-over happens while a round is on its way.
    let edge = Edge::start(&[("HEARTBEAT_SECS", "2")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=28)
        .map(|id| round(id, "crash", "multiplier"))
        .collect();
    edge.store(events(New, &rounds[..1])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");

    let mut clients = VecDeque::new();
    for _ in 0..10 {
        let mut client = edge.sse(&path).await.unwrap();
        client.read_frames(2, TIMEOUT).await.unwrap();
        clients.push_back(client);
    }
    assert_eq!(
        sockets(&edge).await,
        Some(1),
        "ten clients, one feed socket"
    );

    // The first client's request holds the socket; the next in line takes
    // it over. Rounds are stored without pause while the holder leaves,
    // every three rounds, eight times over: hand-overs happen while rounds
    // are on their way.
    let (stored, mut progress) = tokio::sync::watch::channel(1usize);
    let storing = async {
        for (i, r) in rounds[1..25].iter().enumerate() {
            edge.store(events(New, std::slice::from_ref(r)))
                .await
                .unwrap();
            stored.send_replace(i + 2);
        }
    };
    let leaving = async {
        for k in 0..8 {
            progress.wait_for(|n| *n >= 2 + 3 * k).await.unwrap();
            drop(clients.pop_front());
        }
    };
    tokio::join!(storing, leaving);
    edge.store(events(New, &rounds[25..28])).await.unwrap();
    let want = format!(
        "{RETRY}{}{}",
        frame("initial", &rounds[0]),
        messages(&rounds[1..28])
    );
    for mut client in clients {
        client.read_until("id: 28\n", TIMEOUT).await.unwrap();
        assert_eq!(client.frames().concat(), want);
    }
    wait_for("the last clients to leave the socket", TIMEOUT, || async {
        (sockets(&edge).await == Some(0)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_take_the_socket_over_when_its_owner_goes_silent() {
    // A request the runtime kills (past its CPU limit, say) runs no abort
    // handler: its socket's messages and its timer just stop. The fault
    // makes the feed's owner behave so. The other members' watchdog notices
    // after three of their ticks (1 s each here), one of them takes the
    // socket over and resumes after the last frame the feed delivered, and
    // the silent owner's stream is ended so that its browser reconnects.
    let edge = Edge::start(&[("HEARTBEAT_SECS", "1"), ("ALLOW_FAULTS", "1")])
        .await
        .unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=12)
        .map(|id| round(id, "crash", "multiplier"))
        .collect();
    edge.store(events(New, &rounds[..1])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut client = edge.sse(&path).await.unwrap();
        client.read_until("event: initial", TIMEOUT).await.unwrap();
        clients.push(client);
    }
    assert_eq!(sockets(&edge).await, Some(1), "six clients, one socket");

    let (status, body) = edge
        .admin(reqwest::Method::PUT, "/admin/faults/feed-owners", None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["silenced"].as_u64()),
        (200, Some(1)),
        "the feed's owner went silent: {body}"
    );
    // Stored while the feed hears nothing: only a take-over brings them.
    for r in &rounds[1..6] {
        edge.store(events(New, std::slice::from_ref(r)))
            .await
            .unwrap();
    }
    let mut owner = clients.remove(0);
    owner.read_to_end(TIMEOUT).await.unwrap();
    assert_eq!(
        owner.frames().concat(),
        format!("{RETRY}{}", frame("initial", &rounds[0])),
        "the silent owner got nothing after it went silent, then its stream ended"
    );
    edge.store(events(New, &rounds[6..])).await.unwrap();
    let want = format!(
        "{RETRY}{}{}",
        frame("initial", &rounds[0]),
        messages(&rounds[1..])
    );
    for mut client in clients {
        client.read_until("id: 12\n", TIMEOUT).await.unwrap();
        assert_eq!(client.frames().concat(), want);
    }
    wait_for("the silent owner's socket to go", TIMEOUT, || async {
        (sockets(&edge).await == Some(1)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_their_streams_when_the_object_leaves_a_socket_unanswered() {
    // With `FAULT_SUBSCRIBE=hang-once` the object never answers the first
    // socket a feed asks for. Opening a feed's socket is bounded (10 s): the
    // feed fails, and the client whose request opened it and any client
    // waiting on it try a new feed and get their streams.
    let edge = Edge::start(&[("ALLOW_FAULTS", "1"), ("FAULT_SUBSCRIBE", "hang-once")])
        .await
        .unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=2).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds[..1])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    let (first, second) = tokio::time::timeout(
        TIMEOUT,
        futures::future::join(edge.sse(&path), edge.sse(&path)),
    )
    .await
    .expect("both streams answered although the object left a socket unanswered");
    let mut clients = vec![first.unwrap(), second.unwrap()];
    edge.store(events(New, &rounds[1..])).await.unwrap();
    for client in &mut clients {
        client.read_until("id: 2\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.frames().concat(),
            format!(
                "{RETRY}{}{}",
                frame("initial", &rounds[0]),
                messages(&rounds[1..])
            )
        );
    }
    assert_eq!(sockets(&edge).await, Some(1), "one feed socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_while_rounds_flow_misses_and_repeats_nothing() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=30)
        .map(|id| round(id, "crash", "multiplier"))
        .collect();
    edge.store(events(New, &rounds[..2])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    // One client holds the feed's socket from the start.
    let mut first = edge.sse(&path).await.unwrap();
    first.read_frames(2, TIMEOUT).await.unwrap();

    // Rounds 3..=29 are stored one by one while 12 clients join, each
    // resuming from round 2: whatever their openings hold and whatever the
    // feed delivers meanwhile, each sees every round once.
    let storing = async {
        for r in &rounds[2..29] {
            edge.store(events(New, std::slice::from_ref(r)))
                .await
                .unwrap();
        }
    };
    let joining =
        futures::future::join_all((0..12).map(|_| edge.sse_with(&path, &[("last-event-id", "2")])));
    let ((), joined) = tokio::join!(storing, joining);
    assert_eq!(sockets(&edge).await, Some(1));

    edge.store(events(New, &rounds[29..30])).await.unwrap();
    for client in joined {
        let mut client = client.unwrap();
        client.read_until("id: 30\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.frames().concat(),
            format!("{RETRY}{}", messages(&rounds[2..30]))
        );
    }
    first.read_until("id: 30\n", TIMEOUT).await.unwrap();
    assert_eq!(
        first.frames().concat(),
        format!(
            "{RETRY}{}{}",
            frame("initial", &rounds[1]),
            messages(&rounds[2..30])
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_moves_to_another_member_as_its_owner_spends_cpu() {
    // The owner's request pays for handing frames to every member; past
    // FEED_ROTATE_AFTER frames the socket moves on. Here that is every
    // round, while rounds are stored back to back and clients join.
    let edge = Edge::start(&[("FEED_ROTATE_AFTER", "4")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=25)
        .map(|id| round(id, "crash", "multiplier"))
        .collect();
    edge.store(events(New, &rounds[..1])).await.unwrap();
    let path = format!("/sse/crash?api_key={key}");
    let mut early = Vec::new();
    for _ in 0..5 {
        let mut client = edge.sse(&path).await.unwrap();
        client.read_frames(2, TIMEOUT).await.unwrap();
        early.push(client);
    }
    let storing = async {
        for r in &rounds[1..24] {
            edge.store(events(New, std::slice::from_ref(r)))
                .await
                .unwrap();
        }
    };
    let joining =
        futures::future::join_all((0..5).map(|_| edge.sse_with(&path, &[("last-event-id", "1")])));
    let ((), late) = tokio::join!(storing, joining);
    edge.store(events(New, &rounds[24..25])).await.unwrap();
    for mut client in early {
        client.read_until("id: 25\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.frames().concat(),
            format!(
                "{RETRY}{}{}",
                frame("initial", &rounds[0]),
                messages(&rounds[1..25])
            )
        );
    }
    for client in late {
        let mut client = client.unwrap();
        client.read_until("id: 25\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.frames().concat(),
            format!("{RETRY}{}", messages(&rounds[1..25]))
        );
    }
    assert_eq!(sockets(&edge).await, Some(1), "old sockets are closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_the_feed_can_serve_join_without_asking_the_object() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let rounds: Vec<Round> = (1..=4).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds[..2])).await.unwrap();
    let openings = || async {
        edge.stats("game", "crash").await.unwrap()["openings"]
            .as_u64()
            .unwrap()
    };
    let path = format!("/sse/crash?api_key={key}");
    // The first client opens the feed: its first message carries the
    // `initial` frame, so nobody asks the object for an opening.
    let mut fresh = Vec::new();
    for _ in 0..5 {
        let mut client = edge.sse(&path).await.unwrap();
        client.read_frames(2, TIMEOUT).await.unwrap();
        fresh.push(client);
    }
    edge.store(events(New, &rounds[2..3])).await.unwrap();
    for client in &mut fresh {
        client.read_until("id: 3\n", TIMEOUT).await.unwrap();
    }
    // Resuming from the feed's position, or from one its ring holds: the
    // feed serves it too.
    let mut current = edge
        .sse_with(&path, &[("last-event-id", "3")])
        .await
        .unwrap();
    current.read_frames(1, TIMEOUT).await.unwrap();
    assert_eq!(openings().await, 0, "fresh and current clients");
    // From before the feed's first message: the object plans it.
    let mut behind = edge
        .sse_with(&path, &[("last-event-id", "1")])
        .await
        .unwrap();
    behind.read_frames(3, TIMEOUT).await.unwrap();
    assert_eq!(openings().await, 1);

    edge.store(events(New, &rounds[3..4])).await.unwrap();
    for mut client in fresh {
        client.read_until("id: 4\n", TIMEOUT).await.unwrap();
        assert_eq!(
            client.frames().concat(),
            format!(
                "{RETRY}{}{}",
                frame("initial", &rounds[1]),
                messages(&rounds[2..4])
            )
        );
    }
    current.read_until("id: 4\n", TIMEOUT).await.unwrap();
    assert_eq!(
        current.frames().concat(),
        format!("{RETRY}{}", frame("message", &rounds[3]))
    );
    behind.read_until("id: 4\n", TIMEOUT).await.unwrap();
    assert_eq!(
        behind.frames().concat(),
        format!("{RETRY}{}", messages(&rounds[1..4]))
    );
}
