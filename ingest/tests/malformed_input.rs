//! A stream of malformed messages (truncated JSON, wrong types, unknown op
//! codes, 2 MB payloads, …) mixed with good Debezium round events: every good
//! round reaches the edge once and in commit order, every bad message is
//! dead-lettered (byte for byte, with its reason), and no message is
//! acknowledged without one or the other.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use async_nats::HeaderMap;
use common::{
    TIMEOUT, config, consumer_state, dead_letter_count, dead_letters, setup_with_max_payload,
    start, stored_ids,
};
use devstack::wait_for;
use serde_json::Value;

const ROUNDS: &str = "dbserver1.public.rounds";
const GAMES: &str = "dbserver1.public.games";
const SLUG: &str = "crash-classic";

/// A fixture's JSON text, without the file's final newline.
fn fixture(name: &str) -> String {
    let text =
        String::from_utf8(devstack::fixtures::read(&format!("debezium/{name}")).unwrap()).unwrap();
    text.trim_end().to_string()
}

/// The headers Debezium Server's sink puts on every row event.
fn debezium_headers() -> HeaderMap {
    let fields: serde_json::Map<String, Value> =
        serde_json::from_str(&fixture("nats-headers.json")).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.insert(name.as_str(), value.as_str().unwrap());
    }
    headers
}

/// A fixture with its round id (and, for an update, the old row's) set.
fn with_id(name: &str, id: i64) -> Vec<u8> {
    let mut event: Value = serde_json::from_str(&fixture(name)).unwrap();
    let envelope = if event.get("schema").is_some() {
        &mut event["payload"]
    } else {
        &mut event
    };
    envelope["after"]["id"] = id.into();
    if envelope["before"].is_object() {
        envelope["before"]["id"] = id.into();
    }
    serde_json::to_vec(&event).unwrap()
}

/// Good round events of game `crash-classic`, every envelope and op the
/// fixtures show, ids 1..=n in commit order.
fn good(n: i64) -> Vec<(i64, Vec<u8>)> {
    let kinds = [
        "rounds-snapshot-read.json",
        "rounds-insert.json",
        "rounds-insert-with-schema.json",
        "rounds-update.json",
    ];
    (1..=n)
        .map(|id| (id, with_id(kinds[id as usize % kinds.len()], id)))
        .collect()
}

/// Messages that can never become a round event: (subject, payload, what
/// the dead letter's reason must mention).
fn bad() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let insert = fixture("rounds-insert.json");
    let schema = fixture("rounds-insert-with-schema.json");
    let two_mb = "x".repeat(2 * 1024 * 1024);
    let mut cases: Vec<(&'static str, Vec<u8>, &'static str)> = vec![
        // Truncated JSON.
        (ROUNDS, insert[..insert.len() / 2].into(), "not JSON"),
        (ROUNDS, insert[..insert.len() - 1].into(), "not JSON"),
        (ROUNDS, schema[..schema.len() / 3].into(), "not JSON"),
        (ROUNDS, b"{".to_vec(), "not JSON"),
        // Wrong types.
        (ROUNDS, insert.replace(r#""id":3"#, r#""id":"3""#).into(), "`id`"),
        (ROUNDS, insert.replace(r#""game_id":7"#, r#""game_id":7.5"#).into(), "`game_id`"),
        (
            ROUNDS,
            insert.replace(r#""ts_ms":1795239260008"#, r#""ts_ms":"soon""#).into(),
            "ts_ms",
        ),
        (
            ROUNDS,
            insert
                .replace(r#""finished_at":"2026-11-21T05:01:02.500000Z""#, r#""finished_at":true"#)
                .into(),
            "finished_at",
        ),
        (
            ROUNDS,
            insert
                .replace(r#""finished_at":"2026-11-21T05:01:02.500000Z""#, r#""finished_at":9223372036854775807"#)
                .into(),
            "finished_at",
        ),
        (ROUNDS, insert.replace(r#""id":3"#, r#""id":1e400"#).into(), "not JSON"),
        (ROUNDS, insert.replace(r#""after":{"#, r#""after_":{"#).into(), "after"),
        (ROUNDS, insert.replace(r#""before":null"#, r#""before":null,"after":"x""#).replacen(r#""after":{"#, r#""later":{"#, 1).into(), "after"),
        (ROUNDS, br#"{"schema":{},"payload":5}"#.to_vec(), "op"),
        (ROUNDS, b"[]".to_vec(), "op"),
        (ROUNDS, b"42".to_vec(), "op"),
        (ROUNDS, br#""just a string""#.to_vec(), "op"),
        // Unknown or missing op codes.
        (ROUNDS, insert.replace(r#""op":"c""#, r#""op":"x""#).into(), "unknown op"),
        (ROUNDS, insert.replace(r#""op":"c""#, r#""op":"""#).into(), "unknown op"),
        (ROUNDS, insert.replace(r#""op":"c""#, r#""op":42"#).into(), "op"),
        (ROUNDS, insert.replace(r#""op":"c","#, "").into(), "op"),
        // Not text, and nested past any sane depth.
        (ROUNDS, b"\xff\xfe\x00{\"op\":\"c\"}".to_vec(), "not JSON"),
        (ROUNDS, "[".repeat(100_000).into_bytes(), "not JSON"),
        // A games row that cannot be one.
        (GAMES, br#"{"before":null,"after":{"id":"x","slug":1},"source":{"ts_ms":1},"op":"c"}"#.to_vec(), "`id`"),
        // 2 MB: unterminated, and well-formed but not a round.
        (
            ROUNDS,
            format!(r#"{{"before":null,"after":{{"id":9,"extras":"{two_mb}"#).into_bytes(),
            "not JSON",
        ),
        (
            ROUNDS,
            format!(r#"{{"op":"c","after":{{"id":9,"game_id":7,"finished_at":"2026-11-21T05:01:02Z"}},"source":{{"ts_ms":"x"}},"padding":"{two_mb}"}}"#)
                .into_bytes(),
            "ts_ms",
        ),
    ];
    // 2 MB and well-formed: a round the edge refuses as too large (413).
    let mut huge: Value = serde_json::from_str(&insert).unwrap();
    huge["after"]["id"] = 999_999.into();
    huge["after"]["extras"] = two_mb.into();
    cases.push((ROUNDS, serde_json::to_vec(&huge).unwrap(), "too large"));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_good_rounds_delivered_in_order() {
    // Payloads up to 8 MB, as an operator may allow for large rows.
    let s = setup_with_max_payload("8MB").await;
    let good = good(40);
    let bad = bad();
    let headers = debezium_headers();
    // Interleaved: a bad message after every good one while both last.
    let mut published = 0u64;
    let (mut goods, mut bads) = (good.iter(), bad.iter());
    loop {
        let mut any = false;
        if let Some((_, payload)) = goods.next() {
            publish(&s.js, ROUNDS, &headers, payload.clone()).await;
            published += 1;
            any = true;
        }
        if let Some((subject, payload, _)) = bads.next() {
            publish(&s.js, subject, &headers, payload.clone()).await;
            published += 1;
            any = true;
        }
        if !any {
            break;
        }
    }
    let ingest = start(config(&s.nats.url, &s.edge.url));

    wait_for("every message ended", TIMEOUT, || async {
        let (pending, ack_pending, floor) = consumer_state(&s.js).await?;
        (pending == 0 && ack_pending == 0 && floor == published).then_some(())
    })
    .await
    .unwrap();
    // Counted, not read: reading 2 MB messages back over and over would
    // only make this test slow.
    wait_for("every dead letter stored", TIMEOUT, || async {
        (dead_letter_count(&s.js).await >= bad.len() as u64).then_some(())
    })
    .await
    .unwrap();

    let expected: Vec<i64> = good.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        stored_ids(&s.edge, SLUG),
        expected,
        "every good round, once, in commit order"
    );
    assert_eq!(
        s.edge.state.lock().unwrap().stored.len(),
        expected.len(),
        "nothing else reached the edge"
    );

    let dead = dead_letters(&s.js).await;
    assert_eq!(dead.len(), bad.len(), "one dead letter per bad message");
    let mut unmatched: Vec<_> = dead.iter().collect();
    for (subject, payload, mention) in &bad {
        let found = unmatched
            .iter()
            .position(|d| &d.payload == payload)
            .unwrap_or_else(|| {
                panic!(
                    "no dead letter for {:?}…",
                    String::from_utf8_lossy(&payload[..payload.len().min(80)])
                )
            });
        let d = unmatched.swap_remove(found);
        assert_eq!(d.subject, format!("ingest.deadletter.{subject}"));
        assert_eq!(&d.original_subject, subject);
        assert!(
            d.reason.contains(mention),
            "reason {:?} should mention {mention:?}",
            d.reason
        );
    }
    ingest.shutdown().await.unwrap();
}

async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    headers: &HeaderMap,
    payload: Vec<u8>,
) {
    js.publish_with_headers(subject.to_string(), headers.clone(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}
