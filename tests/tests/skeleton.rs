//! The walking skeleton, end to end through real parts: a Debezium insert
//! published on a real nats-server with JetStream → ingest (durable pull
//! consumer) → signed POST to the Worker under `wrangler dev` (real workerd,
//! local KV and Durable Object storage) → the game's Durable Object → an SSE
//! client, whose exact bytes are asserted.
//!
//! Needs what `scripts/test.sh` prepares first: `scripts/setup.sh` (tools on
//! PATH), the built Worker and `cargo build -p ingest`.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use devstack::fixtures;
use devstack::process::group_alive;
use devstack::sse::SseClient;
use devstack::stack::{PREFIX, Stack, StackOptions};
use devstack::wait_for;
use shared::{EventKind, IngestBatch, Round, RoundEvent, signature};

/// Generous: a slow CI machine must not fail a correct system.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// The round of `tests/fixtures/debezium/rounds-insert.json`, exactly as
/// docs/protocol.md#the-round shapes it.
const ROUND_JSON: &str = r#"{"round_id":3,"game_id":7,"game_slug":"crash-classic","game_type":"crash","finished_at":"2026-11-21T05:01:02.500000Z","extras":"{\"seed\": \"b7c9\", \"players\": 9, \"multiplier\": 1.07}","timestamp":1795239260008}"#;

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn post_batch(
    http: &reqwest::Client,
    base: &str,
    body: &[u8],
    header: Option<String>,
) -> (u16, String) {
    let mut request = http
        .post(format!("{base}/internal/rounds"))
        .body(body.to_vec());
    if let Some(header) = header {
        request = request.header(signature::HEADER, header);
    }
    let response = request.send().await.expect("POST /internal/rounds");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debezium_insert_reaches_an_sse_client_and_strangers_are_refused() {
    let state = tempfile::tempdir().expect("temp dir");
    let stack = Stack::up(StackOptions::on_free_ports(state.path(), 3600).expect("ports"))
        .await
        .expect("the stack starts");
    let http = devstack::http_client();
    let base = stack.edge.worker.url.clone();
    let stream_url = format!("{base}/sse/crash-classic?api_key={}", stack.api_key);

    // A stranger's key, and no key at all: 401 with the JSON of docs/protocol.md#errors.
    let wrong = format!(
        "{base}/sse/crash-classic?api_key=sk_test_{}",
        "W".repeat(40)
    );
    let refused = SseClient::connect(&http, &wrong)
        .await
        .expect("request")
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.body,
        r#"{"error":{"code":"invalid_api_key","message":"unknown API key"}}"#
    );
    let refused = SseClient::connect(&http, &format!("{base}/sse/crash-classic"))
        .await
        .expect("request")
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .body
            .starts_with(r#"{"error":{"code":"missing_api_key","#),
        "{}",
        refused.body
    );

    // Unsigned, wrongly signed and stale batches: 401, and (below) nothing stored.
    let bogus = IngestBatch {
        events: vec![RoundEvent {
            kind: EventKind::New,
            round: Round {
                round_id: 999,
                game_id: 7,
                game_slug: "crash-classic".into(),
                game_type: "crash".into(),
                finished_at: "2026-11-21T05:00:00Z".into(),
                extras: "{}".into(),
                timestamp: 0,
            },
        }],
    };
    let body = serde_json::to_vec(&bogus).expect("json");
    let invalid = r#"{"error":{"code":"invalid_signature","message":"invalid signature"}}"#;
    let wrong_secret = signature::sign(b"not-the-ingest-secret", now_unix(), &body).ok();
    let stale = signature::sign(stack.edge.secret.as_bytes(), now_unix() - 600, &body).ok();
    for header in [None, wrong_secret, stale] {
        assert_eq!(
            post_batch(&http, &base, &body, header).await,
            (401, invalid.to_string())
        );
    }

    // A correctly signed but malformed batch: 400, nothing stored.
    let garbage = br#"{"events":[{"kind":"new","round":{"round_id":999}}]}"#;
    let signed = signature::sign(stack.edge.secret.as_bytes(), now_unix(), garbage).ok();
    let (status, body) = post_batch(&http, &base, garbage, signed).await;
    assert_eq!(status, 400);
    assert!(
        body.starts_with(r#"{"error":{"code":"invalid_batch","#),
        "{body}"
    );

    // Unknown routes and wrong methods answer JSON too.
    let response = http
        .get(format!("{base}/nope"))
        .send()
        .await
        .expect("GET /nope");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"error":{"code":"not_found","message":"no such route"}}"#
    );
    let response = http
        .get(format!("{base}/internal/rounds"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 405);
    let response = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"status":"ok","limits":"on","config":"ok"}"#
    );

    // A client connecting before any round of the game was stored (and the
    // bogus round was not): the game is unknown, 404 as on REST.
    let unknown = SseClient::connect(&http, &stream_url)
        .await
        .expect("request")
        .err()
        .expect("refused");
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (
            404,
            r#"{"error":{"code":"not_found","message":"unknown game crash-classic: no round of it was stored yet"}}"#
        )
    );

    // The real Debezium insert goes through NATS and ingest to the edge; a
    // client then gets the stored round as `initial`.
    let insert = fixtures::read("debezium/rounds-insert.json").expect("fixture");
    stack
        .publish(&format!("{PREFIX}.public.rounds"), insert)
        .await
        .expect("published");
    let mut live = wait_for("the game to be known", FRAME_TIMEOUT, || async {
        SseClient::connect(&http, &stream_url).await.ok()?.ok()
    })
    .await
    .expect("the stream opens once its first round is stored");
    assert_eq!(
        live.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(
        live.header("cache-control").as_deref(),
        Some("no-cache, no-transform")
    );
    assert_eq!(live.header("x-accel-buffering").as_deref(), Some("no"));
    live.read_frames(2, FRAME_TIMEOUT)
        .await
        .expect("initial frame");
    // The `retry:` is spread around RETRY_MS (3 s): 1 to 6 s.
    let received = String::from_utf8_lossy(&live.received).into_owned();
    let (retry, rest) = received
        .strip_prefix("retry: ")
        .and_then(|r| r.split_once("\n\n"))
        .expect("a retry frame first");
    let retry: u64 = retry.parse().expect("retry in ms");
    assert!((1000..=6000).contains(&retry), "{received}");
    assert_eq!(
        rest,
        format!("id: 3\nevent: initial\ndata: {ROUND_JSON}\n\n")
    );

    // The real Debezium update reaches the open stream as `update`.
    let update = fixtures::read("debezium/rounds-update.json").expect("fixture");
    stack
        .publish(&format!("{PREFIX}.public.rounds"), update)
        .await
        .expect("published");
    live.read_frames(3, FRAME_TIMEOUT)
        .await
        .expect("update frame");
    let text = String::from_utf8_lossy(&live.received).into_owned();
    let last = text.rsplit("\n\n").nth(1).unwrap_or_default();
    assert!(
        last.starts_with("id: 3.1\nevent: update\ndata: {\"round_id\":3,")
            && last.contains(r#"\"settled\": true"#),
        "{text}"
    );

    // ingest acknowledged the message once the edge had stored it.
    let js = stack.nats.jetstream().await.expect("jetstream");
    wait_for("ingest to acknowledge", FRAME_TIMEOUT, || {
        let js = js.clone();
        async move {
            let stream = js.get_stream(PREFIX).await.ok()?;
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer("ingest").await.ok()?;
            let info = consumer.info().await.ok()?;
            (info.num_ack_pending == 0
                && info.num_pending == 0
                && info.ack_floor.stream_sequence >= 1)
                .then_some(())
        }
    })
    .await
    .expect("message acknowledged");

    // ingest stops cleanly on SIGTERM (exit 0).
    let mut stack = stack;
    let status = stack.ingest.stop().expect("ingest exit status");
    assert!(status.success(), "ingest exited with {status}");

    // Stopping the stack leaves none of its processes behind.
    let groups = [
        stack.ingest.id(),
        stack.edge.worker.proc.id(),
        stack.nats.proc.id(),
    ];
    drop(live);
    drop(stack);
    for group in groups {
        wait_for(
            "process group to exit",
            Duration::from_secs(20),
            || async move { (!group_alive(group)).then_some(()) },
        )
        .await
        .expect("no process left behind");
    }
}
