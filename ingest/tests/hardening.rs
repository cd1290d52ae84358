//! What ingest does when the edge, the registry of games, the dead-letter
//! stream or time itself do not cooperate: a 2xx that proves nothing, a
//! redirect, rounds of games nobody announced, a dead letter with nowhere to
//! go, and rounds waiting behind slow POSTs for longer than the ack wait.
//! Same harness as `delivery.rs`: a real nats-server and a stand-in edge.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{
    TIMEOUT, bare, config, consumer_info, consumer_state, create_dead_letter_stream, dead_letters,
    game, insert, publish, round_id_of, setup, setup_without_dead_letters, stand_in_edge, start,
    stored_ids,
};
use devstack::wait_for;

const ROUNDS: &str = "dbserver1.public.rounds";
const GAMES: &str = "dbserver1.public.games";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_that_does_not_account_for_the_batch_acknowledges_nothing() {
    let s = setup().await;
    let ingest = start(config(&s.nats.url, &s.edge.url));
    publish(&s.js, ROUNDS, insert(1, "crash")).await;
    // Garbage, an empty object, too few and too many events: none of them
    // says the round was stored.
    for reply in [
        "<html>welcome to the proxy</html>",
        "{}",
        r#"{"stored":0,"duplicates":0}"#,
        r#"{"stored":1,"duplicates":1}"#,
    ] {
        let target = {
            let mut state = s.edge.state.lock().unwrap();
            state.bad_reply = Some(reply.into());
            state.attempts + 2
        };
        // Stops at the first ack too, so a regression fails here at once.
        let (_, ack_pending, floor) = wait_for("refused answers, or an ack", TIMEOUT, || async {
            let state = consumer_state(&s.js).await?;
            let attempts = s.edge.state.lock().unwrap().attempts;
            (attempts >= target || state.2 > 0).then_some(state)
        })
        .await
        .unwrap();
        assert_eq!(
            (ack_pending, floor),
            (1, 0),
            "held, not acknowledged, after a 200 answering {reply}"
        );
    }
    s.edge.state.lock().unwrap().bad_reply = None;
    wait_for("the round stored", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash") == [1]).then_some(())
    })
    .await
    .unwrap();
    wait_for("the ack", TIMEOUT, || async {
        (consumer_state(&s.js).await == Some((0, 0, 1))).then_some(())
    })
    .await
    .unwrap();
    assert!(
        dead_letters(&s.js).await.is_empty(),
        "a bad reply is retried, never dead-lettered"
    );
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed() {
    let s = setup().await;
    let elsewhere = stand_in_edge().await;
    s.edge.state.lock().unwrap().redirect_to = Some(format!("{}/internal/rounds", elsewhere.url));
    let ingest = start(config(&s.nats.url, &s.edge.url));
    publish(&s.js, ROUNDS, insert(1, "crash")).await;
    let (_, ack_pending, floor) = wait_for(
        "redirects answered, or the batch elsewhere",
        TIMEOUT,
        || async {
            let state = consumer_state(&s.js).await?;
            let attempts = s.edge.state.lock().unwrap().attempts;
            let leaked = elsewhere.state.lock().unwrap().attempts > 0;
            (attempts >= 3 || leaked || state.2 > 0).then_some(state)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        elsewhere.state.lock().unwrap().attempts,
        0,
        "the signed batch never reaches the redirect's target"
    );
    assert_eq!((ack_pending, floor), (1, 0), "held, not acknowledged");

    s.edge.state.lock().unwrap().redirect_to = None;
    wait_for("the round stored where it belongs", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash") == [1]).then_some(())
    })
    .await
    .unwrap();
    wait_for("the ack", TIMEOUT, || async {
        (consumer_state(&s.js).await == Some((0, 0, 1))).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(elsewhere.state.lock().unwrap().attempts, 0);
    ingest.shutdown().await.unwrap();
}

/// Round ids of the dead letters whose reason contains `needle`.
async fn dead_round_ids(s: &common::Setup, needle: &str) -> BTreeSet<i64> {
    dead_letters(&s.js)
        .await
        .iter()
        .filter(|d| d.reason.contains(needle))
        .filter_map(|d| round_id_of(&d.payload))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_of_unknown_games_are_dead_lettered_and_cannot_block_the_consumer() {
    let s = setup().await;
    let mut cfg = config(&s.nats.url, &s.edge.url);
    cfg.max_ack_pending = 4;
    cfg.unknown_game_max_deliveries = 3;
    cfg.unknown_game_delay_ms = 50;

    // Early rounds (more than max_ack_pending of them) whose game's event
    // comes after them and after a flood of rounds of games that never
    // exist, far more than max_ack_pending; then a game announced before its
    // round.
    let early: Vec<i64> = (1..=6).collect();
    for &id in &early {
        publish(&s.js, ROUNDS, bare(id, 21)).await;
    }
    let unknown: BTreeSet<i64> = (100..130).collect();
    for &id in &unknown {
        publish(&s.js, ROUNDS, bare(id, 800 + id)).await;
    }
    publish(&s.js, GAMES, game(21, "early", "crash")).await;
    publish(&s.js, GAMES, game(22, "late", "dice")).await;
    publish(&s.js, ROUNDS, bare(200, 22)).await;
    let ingest = start(cfg);

    wait_for("every message ended", TIMEOUT, || async {
        let (pending, ack_pending, floor) = consumer_state(&s.js).await?;
        (pending == 0 && ack_pending == 0 && floor == 39).then_some(())
    })
    .await
    .unwrap();
    let mut stored_early = stored_ids(&s.edge, "early");
    stored_early.sort_unstable();
    assert_eq!(stored_early, early, "every early round delivered, once");
    assert_eq!(stored_ids(&s.edge, "late"), [200]);
    assert_eq!(
        dead_round_ids(&s, "unknown game").await,
        unknown,
        "exactly the rounds of unknown games are dead-lettered, with the reason"
    );
    assert_eq!(dead_letters(&s.js).await.len(), unknown.len());

    // While ingest runs: another flood, then a game and its round.
    let more: BTreeSet<i64> = (300..320).collect();
    for &id in &more {
        publish(&s.js, ROUNDS, bare(id, 800 + id)).await;
    }
    publish(&s.js, GAMES, game(23, "later", "wheel")).await;
    publish(&s.js, ROUNDS, bare(400, 23)).await;
    wait_for("the later round delivered", TIMEOUT, || async {
        (stored_ids(&s.edge, "later") == [400]).then_some(())
    })
    .await
    .unwrap();
    wait_for("every message ended", TIMEOUT, || async {
        let (pending, ack_pending, floor) = consumer_state(&s.js).await?;
        (pending == 0 && ack_pending == 0 && floor == 61).then_some(())
    })
    .await
    .unwrap();
    let all: BTreeSet<i64> = unknown.union(&more).copied().collect();
    assert_eq!(dead_round_ids(&s, "unknown game").await, all);
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_terminated_only_once_its_dead_letter_is_stored() {
    // No stream captures the dead-letter subjects yet.
    let s = setup_without_dead_letters().await;
    s.edge.state.lock().unwrap().reject.insert(2);
    publish(&s.js, ROUNDS, b"{not json".to_vec()).await;
    publish(&s.js, ROUNDS, insert(2, "dice")).await;
    publish(&s.js, ROUNDS, insert(3, "dice")).await;
    let ingest = start(config(&s.nats.url, &s.edge.url));

    // Both bad messages come back (nak'd, not terminated); an ack floor past
    // the first would mean it was dropped.
    let info = wait_for(
        "both bad messages redelivered, or dropped",
        TIMEOUT,
        || async {
            let info = consumer_info(&s.js).await?;
            (info.num_redelivered >= 2 || info.ack_floor.stream_sequence > 0).then_some(info)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "nothing terminated without its dead letter"
    );
    wait_for("the good round stored", TIMEOUT, || async {
        (stored_ids(&s.edge, "dice") == [3]).then_some(())
    })
    .await
    .unwrap();
    let (_, ack_pending, floor) = consumer_state(&s.js).await.unwrap();
    assert_eq!((ack_pending, floor), (2, 0), "both bad ones still held");

    create_dead_letter_stream(&s.js).await;
    wait_for("every message ended", TIMEOUT, || async {
        (consumer_state(&s.js).await == Some((0, 0, 3))).then_some(())
    })
    .await
    .unwrap();
    let dead = dead_letters(&s.js).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(
        dead.iter()
            .any(|d| d.payload == b"{not json" && d.reason.contains("not JSON")),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|d| d.payload == insert(2, "dice") && d.reason.contains("rejected by the edge")),
        "{dead:?}"
    );
    assert_eq!(stored_ids(&s.edge, "dice"), [3]);
    ingest.shutdown().await.unwrap();
}

/// Waits until the edge stored `expected` and ingest's consumer ended every
/// one of them, watching JetStream's count of redelivered messages on the
/// way; returns the most it saw.
async fn delivered_watching_redeliveries(s: &common::Setup, slug: &str, expected: &[i64]) -> usize {
    let total = expected.len() as u64;
    let most = std::cell::Cell::new(0);
    let most = &most;
    wait_for(
        "everything stored and acknowledged",
        TIMEOUT,
        || async move {
            let info = consumer_info(&s.js).await?;
            most.set(most.get().max(info.num_redelivered));
            let done = info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence == total;
            (done && stored_ids(&s.edge, slug).len() >= expected.len()).then_some(())
        },
    )
    .await
    .unwrap();
    most.get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_queued_behind_slow_posts_are_never_redelivered() {
    let s = setup().await;
    let mut cfg = config(&s.nats.url, &s.edge.url);
    cfg.ack_wait_secs = 2;
    cfg.batch_max = 1;
    cfg.batch_linger_ms = 0;
    // Each POST succeeds, a bit slower than a third of the ack wait, so no
    // single POST is slow enough to send progress by itself; the last round
    // waits behind the others for several ack waits.
    s.edge.state.lock().unwrap().delay_ms = 500;
    let expected: Vec<i64> = (1..=16).collect();
    for &id in &expected {
        publish(&s.js, ROUNDS, insert(id, "crash")).await;
    }
    let ingest = start(cfg);
    let most = delivered_watching_redeliveries(&s, "crash", &expected).await;
    assert_eq!(
        stored_ids(&s.edge, "crash"),
        expected,
        "each round once, in order"
    );
    assert_eq!(most, 0, "JetStream redelivered nothing");
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lingering_past_the_ack_wait_is_never_redelivered() {
    let s = setup().await;
    let mut cfg = config(&s.nats.url, &s.edge.url);
    cfg.ack_wait_secs = 1;
    // The lane waits this long for more rounds once one arrived.
    cfg.batch_linger_ms = 2_500;
    let ingest = start(cfg);
    publish(&s.js, ROUNDS, insert(1, "crash")).await;
    let most = delivered_watching_redeliveries(&s, "crash", &[1]).await;
    assert_eq!(stored_ids(&s.edge, "crash"), [1], "once");
    assert_eq!(most, 0, "JetStream redelivered nothing");
    ingest.shutdown().await.unwrap();
}
