//! The whole pipeline through every real part: INSERT/UPDATE/DELETE in
//! PostgreSQL (wal_level=logical) → the real Debezium engine → NATS JetStream
//! → ingest → the Worker under `wrangler dev` → SSE clients.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use devstack::http_client;
use devstack::pipeline::Pipeline;
use devstack::sse::SseClient;
use devstack::stack::StackOptions;
use serde_json::Value;

/// The engine starts in seconds, but a first snapshot on a slow machine can
/// take longer: generous.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The frame's round, and the frame with its commit timestamp normalised.
fn last_frame(client: &SseClient) -> (String, Value) {
    let frames = client.frames();
    let frame = frames.last().unwrap().clone();
    let data = frame.split("data: ").nth(1).unwrap().trim_end();
    (frame.clone(), serde_json::from_str(data).unwrap())
}

fn expected(event: &str, id: i64, extras: &str, timestamp: &Value) -> String {
    format!(
        "id: {id}\nevent: {event}\ndata: {{\"round_id\":{id},\"game_id\":7,\"game_slug\":\"crash-classic\",\"game_type\":\"crash\",\"finished_at\":\"2026-11-21T05:01:02.500000Z\",\"extras\":{},\"timestamp\":{timestamp}}}\n\n",
        serde_json::to_string(extras).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_in_postgres_reach_sse_clients() {
    let state = tempfile::tempdir().unwrap();
    // A round from before the connector: the snapshot reads it (op "r").
    let mut system = Pipeline::up(
        StackOptions::on_free_ports(state.path(), 3600).unwrap(),
        None,
        r#"INSERT INTO games (id, slug, type, name) VALUES (7, 'crash-classic', 'crash', 'Crash Classic');
           INSERT INTO rounds (id, game_id, finished_at, extras) VALUES (99, 7, '2026-11-21T05:01:02.5Z', '{"multiplier": 3}');"#,
    )
    .await
    .unwrap();
    // The snapshot row is stored as the latest round (so the connector is
    // now streaming), without a live message.
    system
        .wait_for_edge(
            "/api/games/crash-classic/latest",
            r#""round_id":99"#,
            TIMEOUT,
        )
        .await
        .unwrap();
    let (stack, pg) = (&system.stack, &system.pg);
    let http = http_client();
    let url = format!(
        "{}/sse/crash-classic?api_key={}",
        stack.edge.worker.url, stack.api_key
    );
    let mut live = SseClient::connect(&http, &url).await.unwrap().unwrap();
    live.read_until("event: initial", TIMEOUT).await.unwrap();
    let (frame, round) = last_frame(&live);
    assert_eq!(
        frame,
        expected("initial", 99, r#"{"multiplier": 3}"#, &round["timestamp"])
    );

    // INSERT → `message` with the exact round of docs/protocol.md#the-round.
    let before_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 - 1000;
    pg.sql(
        "games",
        r#"INSERT INTO rounds (id, game_id, finished_at, extras) VALUES (100, 7, '2026-11-21T05:01:02.5Z', '{"multiplier": 2.5}')"#,
    )
    .unwrap();
    live.read_until("event: message", TIMEOUT).await.unwrap();
    let (frame, round) = last_frame(&live);
    assert_eq!(
        frame,
        expected(
            "message",
            100,
            r#"{"multiplier": 2.5}"#,
            &round["timestamp"]
        )
    );
    assert!(
        round["timestamp"].as_i64().unwrap() >= before_ms,
        "commit time of the row"
    );

    // UPDATE of a public field → `update`.
    pg.sql(
        "games",
        r#"UPDATE rounds SET extras = '{"multiplier": 2.5, "settled": true}' WHERE id = 100"#,
    )
    .unwrap();
    live.read_until("event: update", TIMEOUT).await.unwrap();
    let (frame, round) = last_frame(&live);
    assert_eq!(
        frame,
        // An update's id: the stream's newest round (100) and the update's
        // number in the stream.
        expected(
            "update",
            100,
            r#"{"settled": true, "multiplier": 2.5}"#,
            &round["timestamp"]
        )
        .replacen("id: 100\n", "id: 100.1\n", 1)
    );

    // DELETE → nothing: the next frame is the next insert.
    pg.sql("games", "DELETE FROM rounds WHERE id = 100")
        .unwrap();
    pg.sql("games", r#"INSERT INTO rounds (id, game_id, finished_at, extras) VALUES (101, 7, '2026-11-21T05:01:02.5Z', '{"multiplier": 1.07}')"#).unwrap();
    live.read_until("id: 101", TIMEOUT).await.unwrap();
    live.read_frames(5, TIMEOUT).await.unwrap();
    let frames = live.frames();
    assert_eq!(
        frames.len(),
        5,
        "retry, initial 99, message 100, update 100, message 101: {frames:?}"
    );
    let (frame, round) = last_frame(&live);
    assert_eq!(
        frame,
        expected(
            "message",
            101,
            r#"{"multiplier": 1.07}"#,
            &round["timestamp"]
        )
    );

    // A late joiner gets the latest round as `initial`.
    let mut late = SseClient::connect(&http, &url).await.unwrap().unwrap();
    late.read_until("event: initial", TIMEOUT).await.unwrap();
    let (frame, round) = last_frame(&late);
    assert_eq!(
        frame,
        expected(
            "initial",
            101,
            r#"{"multiplier": 1.07}"#,
            &round["timestamp"]
        )
    );

    // A forced disconnect, two commits meanwhile, and a resume: both, in order.
    drop(live);
    for id in [102, 103] {
        pg.sql("games", &format!(r#"INSERT INTO rounds (id, game_id, finished_at, extras) VALUES ({id}, 7, '2026-11-21T05:01:02.5Z', '{{"n": {id}}}')"#)).unwrap();
    }
    // Wait until both are stored (the late joiner sees them live).
    late.read_until("id: 103", TIMEOUT).await.unwrap();
    let mut resumed = SseClient::connect_with(&http, &url, &[("last-event-id", "101")])
        .await
        .unwrap()
        .unwrap();
    resumed.read_frames(3, TIMEOUT).await.unwrap();
    let ids: Vec<String> = resumed.frames()[1..]
        .iter()
        .map(|f| f.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["id: 102", "id: 103"], "no gap, no duplicate");
}
