//! ingest against a real nats-server (JetStream on disk, started per test)
//! and a stand-in edge: a small axum app on port 0 that records what it
//! stored and can answer 503, 400 or hang on command. ingest runs in-process
//! through `ingest::run`, whose shutdown is a parameter.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use common::{TIMEOUT, config, consumer_state, insert, publish, setup, start, stored_ids};
use devstack::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_only_after_the_edge_stored_and_retries_until_it_does() {
    let s = setup().await;
    s.edge.state.lock().unwrap().down = true;
    let ingest = start(config(&s.nats.url, &s.edge.url));
    publish(&s.js, "dbserver1.public.rounds", insert(1, "crash")).await;

    wait_for("several refused attempts", TIMEOUT, || async {
        (s.edge.state.lock().unwrap().attempts >= 3).then_some(())
    })
    .await
    .unwrap();
    let (_, ack_pending, ack_floor) = consumer_state(&s.js).await.unwrap();
    assert_eq!(
        (ack_pending, ack_floor),
        (1, 0),
        "not acknowledged while the edge refuses"
    );

    s.edge.state.lock().unwrap().down = false;
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
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_event_is_dead_lettered_and_the_others_delivered() {
    let s = setup().await;
    s.edge.state.lock().unwrap().reject.insert(2);
    for id in 1..=3 {
        publish(&s.js, "dbserver1.public.rounds", insert(id, "dice")).await;
    }
    publish(&s.js, "dbserver1.public.rounds", b"{not json".to_vec()).await;
    let ingest = start(config(&s.nats.url, &s.edge.url));
    wait_for("1 and 3 stored", TIMEOUT, || async {
        (stored_ids(&s.edge, "dice") == [1, 3]).then_some(())
    })
    .await
    .unwrap();
    wait_for("every message ended", TIMEOUT, || async {
        let (pending, ack_pending, _) = consumer_state(&s.js).await?;
        (pending == 0 && ack_pending == 0).then_some(())
    })
    .await
    .unwrap();

    let dead = s.js.get_stream("DEADLETTER").await.unwrap();
    let rejected = dead
        .get_last_raw_message_by_subject("ingest.deadletter.dbserver1.public.rounds")
        .await
        .unwrap();
    let first = dead.get_raw_message(1).await.unwrap();
    let second = dead.get_raw_message(2).await.unwrap();
    let reasons: Vec<String> = [&first, &second]
        .iter()
        .map(|m| {
            m.headers
                .get("Gamefeed-Dead-Reason")
                .map(|v| v.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("rejected by the edge")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert_eq!(
        rejected.subject.as_str(),
        "ingest.deadletter.dbserver1.public.rounds"
    );
    let payloads: Vec<&[u8]> = vec![&first.payload, &second.payload];
    assert!(
        payloads.contains(&&insert(2, "dice")[..]),
        "the dead letter is the original message"
    );
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_game_keeps_its_order_while_games_run_in_parallel_through_failures() {
    let s = setup().await;
    s.edge.state.lock().unwrap().fail_every = 3;
    let games = ["crash", "dice", "wheel"];
    for n in 0..60 {
        for (g, game) in games.iter().enumerate() {
            publish(
                &s.js,
                "dbserver1.public.rounds",
                insert(1000 * (g as i64 + 1) + n, game),
            )
            .await;
        }
    }
    let ingest = start(config(&s.nats.url, &s.edge.url));
    for (g, game) in games.iter().enumerate() {
        let expected: Vec<i64> = (0..60).map(|n| 1000 * (g as i64 + 1) + n).collect();
        wait_for("all rounds of a game", TIMEOUT, || async {
            (stored_ids(&s.edge, game).len() >= 60).then_some(())
        })
        .await
        .unwrap();
        assert_eq!(
            stored_ids(&s.edge, game),
            expected,
            "{game}: commit order, no duplicate"
        );
    }
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_waits_for_its_game() {
    let s = setup().await;
    let bare = String::from_utf8(insert(7, "crash-classic"))
        .unwrap()
        .replace(r#""game_slug":"crash-classic","game_type":"crash","#, "");
    publish(&s.js, "dbserver1.public.rounds", bare.into_bytes()).await;
    let ingest = start(config(&s.nats.url, &s.edge.url));
    wait_for("the round to be held back", TIMEOUT, || async {
        // Delivered to ingest and nak'd at least once, never posted.
        let (pending, ack_pending, floor) = consumer_state(&s.js).await?;
        let held = floor == 0 && pending + ack_pending as u64 == 1;
        (held && s.edge.state.lock().unwrap().attempts == 0).then_some(())
    })
    .await
    .unwrap();
    let game = r#"{"before":null,"after":{"id":13,"slug":"crash-classic","type":"crash","name":"Crash"},"source":{"ts_ms":1},"op":"c"}"#;
    publish(&s.js, "dbserver1.public.games", game.as_bytes().to_vec()).await;
    // At least once: a POST retried after a timeout may store a round twice
    // at this stand-in (the edge takes the copy for a duplicate).
    let delivered = || {
        let mut ids = stored_ids(&s.edge, "crash-classic");
        ids.dedup();
        ids
    };
    wait_for("the round delivered with its game", TIMEOUT, || async {
        (delivered() == [7]).then_some(())
    })
    .await
    .unwrap_or_else(|err| panic!("{err}: stored {:?}", delivered()));
    assert_eq!(
        s.edge.state.lock().unwrap().stored[0].round.game_type,
        "crash"
    );
    ingest.shutdown().await.unwrap();
    // The server may apply the last acks just after ingest stopped; a
    // restart before that delivers again from the ack floor (by design: the
    // edge takes the copies for duplicates, this stand-in would store them).
    let last = std::sync::Mutex::new(None);
    wait_for("both events acknowledged", TIMEOUT, || async {
        let state = consumer_state(&s.js).await;
        *last.lock().unwrap() = state;
        let (pending, ack_pending, floor) = state?;
        (pending == 0 && ack_pending == 0 && floor == 2).then_some(())
    })
    .await
    .unwrap_or_else(|err| {
        panic!(
            "{err}: (pending, ack pending, ack floor) {:?}",
            last.lock().unwrap()
        )
    });

    // A restart remembers the game (kept in a JetStream key-value bucket),
    // though its change event was acknowledged long ago.
    let again = start(config(&s.nats.url, &s.edge.url));
    let bare8 = String::from_utf8(insert(8, "crash-classic"))
        .unwrap()
        .replace(r#""game_slug":"crash-classic","game_type":"crash","#, "");
    publish(&s.js, "dbserver1.public.rounds", bare8.into_bytes()).await;
    wait_for("the next round delivered at once", TIMEOUT, || async {
        (delivered() == [7, 8]).then_some(())
    })
    .await
    .unwrap_or_else(|err| panic!("{err}: stored {:?}", delivered()));
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_unfinished_work_to_redelivery_and_loses_nothing() {
    let s = setup().await;
    s.edge.state.lock().unwrap().hang = true;
    publish(&s.js, "dbserver1.public.rounds", insert(1, "crash")).await;
    let mut cfg = config(&s.nats.url, &s.edge.url);
    cfg.edge_timeout_ms = 500;
    let ingest = start(cfg.clone());
    wait_for("a POST in flight", TIMEOUT, || async {
        (s.edge.state.lock().unwrap().attempts >= 1).then_some(())
    })
    .await
    .unwrap();
    ingest.shutdown().await.expect("a clean stop");
    let (_, _, floor) = consumer_state(&s.js).await.unwrap();
    assert_eq!(floor, 0, "nothing acknowledged without the edge");

    s.edge.state.lock().unwrap().hang = false;
    cfg.metrics_addr = "127.0.0.1:0".parse().unwrap();
    let again = start(cfg);
    wait_for("the round delivered after restart", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash") == [1]).then_some(())
    })
    .await
    .unwrap();
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_ack_wait_duplicates_nothing() {
    let s = setup().await;
    s.edge.state.lock().unwrap().down = true;
    let mut cfg = config(&s.nats.url, &s.edge.url);
    cfg.ack_wait_secs = 1;
    cfg.batch_max = 4;
    let ingest = start(cfg);
    for id in 1..=20 {
        publish(&s.js, "dbserver1.public.rounds", insert(id, "crash")).await;
    }
    // Several ack waits pass while the edge refuses everything.
    wait_for("many refused attempts", TIMEOUT, || async {
        (s.edge.state.lock().unwrap().attempts >= 12).then_some(())
    })
    .await
    .unwrap();
    let (_, ack_pending, floor) = consumer_state(&s.js).await.unwrap();
    assert_eq!(
        (ack_pending, floor),
        (20, 0),
        "all held by ingest, none acknowledged"
    );
    s.edge.state.lock().unwrap().down = false;
    wait_for("all stored", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash").len() >= 20).then_some(())
    })
    .await
    .unwrap();
    wait_for("all acknowledged", TIMEOUT, || async {
        (consumer_state(&s.js).await == Some((0, 0, 20))).then_some(())
    })
    .await
    .unwrap();
    let expected: Vec<i64> = (1..=20).collect();
    assert_eq!(
        stored_ids(&s.edge, "crash"),
        expected,
        "each round once, in order"
    );
    ingest.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_holds_everything_until_it_is_fixed() {
    let s = setup().await;
    s.edge.state.lock().unwrap().unauthorized = true;
    let ingest = start(config(&s.nats.url, &s.edge.url));
    publish(&s.js, "dbserver1.public.rounds", insert(1, "crash")).await;
    wait_for("refused attempts", TIMEOUT, || async {
        (s.edge.state.lock().unwrap().attempts >= 3).then_some(())
    })
    .await
    .unwrap();
    let (_, ack_pending, floor) = consumer_state(&s.js).await.unwrap();
    assert_eq!(
        (ack_pending, floor),
        (1, 0),
        "held, neither acknowledged nor dropped"
    );
    let dead =
        s.js.get_stream("DEADLETTER")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages;
    assert_eq!(
        dead, 0,
        "a 401 is a configuration problem, not a dead letter"
    );

    s.edge.state.lock().unwrap().unauthorized = false;
    wait_for("delivered once the secret matches", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash") == [1]).then_some(())
    })
    .await
    .unwrap();
    ingest.shutdown().await.unwrap();
}
