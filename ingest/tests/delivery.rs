//! ingest against a real nats-server (JetStream on disk, started per test)
//! and a stand-in edge: a small axum app on port 0 that records what it
//! stored and can answer 503, 400 or hang on command. ingest runs in-process
//! through `ingest::run`, whose shutdown is a parameter.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use devstack::stack::{Nats, create_stream};
use devstack::{free_port, wait_for};
use ingest::config::Config;
use serde_json::Value;
use shared::{IngestBatch, RoundEvent};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(60);
const SECRET: &str = "0123456789abcdef0123";

#[derive(Default)]
struct EdgeState {
    /// Events stored, in arrival order.
    stored: Vec<RoundEvent>,
    /// POSTs received.
    attempts: usize,
    /// Answer 503 to the next this many POSTs.
    fail_next: usize,
    /// Answer 503 to every POST.
    down: bool,
    /// Answer 503 to every n-th POST (0: never).
    fail_every: usize,
    /// Answer 400 to any batch holding one of these round ids.
    reject: HashSet<i64>,
    /// Never answer.
    hang: bool,
}

struct Edge {
    url: String,
    state: Arc<Mutex<EdgeState>>,
}

async fn rounds(
    State(state): State<Arc<Mutex<EdgeState>>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let hang = {
        let mut s = state.lock().unwrap();
        s.attempts += 1;
        s.hang
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let batch: IngestBatch = serde_json::from_slice(&body).unwrap();
    let mut s = state.lock().unwrap();
    let attempt = s.attempts;
    if s.down || s.fail_next > 0 || (s.fail_every > 0 && attempt % s.fail_every == 0) {
        s.fail_next = s.fail_next.saturating_sub(1);
        return (StatusCode::SERVICE_UNAVAILABLE, "{}".into());
    }
    if batch
        .events
        .iter()
        .any(|e| s.reject.contains(&e.round.round_id))
    {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"invalid_batch","message":"no"}}"#.into(),
        );
    }
    let n = batch.events.len();
    s.stored.extend(batch.events);
    (
        StatusCode::OK,
        format!(r#"{{"stored":{n},"duplicates":0}}"#),
    )
}

async fn stand_in_edge() -> Edge {
    let state = Arc::new(Mutex::new(EdgeState::default()));
    let app = Router::new()
        .route("/internal/rounds", post(rounds))
        .route("/healthz", get(|| async { "{}" }))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Edge {
        url: format!("http://{addr}"),
        state,
    }
}

fn config(nats_url: &str, edge_url: &str) -> Config {
    Config {
        nats_url: nats_url.into(),
        nats_user: None,
        nats_password: None,
        nats_token: None,
        nats_creds: None,
        nats_tls: false,
        nats_tls_ca: None,
        nats_tls_cert: None,
        nats_tls_key: None,
        stream: "dbserver1".into(),
        prefix: "dbserver1".into(),
        subjects: vec![],
        create_stream: false,
        durable: "ingest".into(),
        max_ack_pending: 10_000,
        ack_wait_secs: 30,
        dead_letter_prefix: "ingest.deadletter".into(),
        edge_url: Some(edge_url.into()),
        ingest_secret: Some(SECRET.into()),
        batch_max: 64,
        batch_max_bytes: 512 * 1024,
        batch_linger_ms: 5,
        edge_timeout_ms: 2_000,
        retry_min_ms: 20,
        retry_max_ms: 200,
        metrics_addr: format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap(),
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

fn start(config: Config) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(ingest::run(config, async move {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(TIMEOUT, &mut self.task)
            .await
            .expect("ingest stops in time")
            .expect("no panic")
    }
}

struct Setup {
    nats: Nats,
    js: jetstream::Context,
    edge: Edge,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(
        &dir.path().join("js"),
        free_port().unwrap(),
        &dir.path().join("nats.log"),
    )
    .await
    .unwrap();
    let js = nats.jetstream().await.unwrap();
    create_stream(&js).await.unwrap();
    js.get_or_create_stream(jetstream::stream::Config {
        name: "DEADLETTER".into(),
        subjects: vec!["ingest.deadletter.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    Setup {
        nats,
        js,
        edge: stand_in_edge().await,
        _dir: dir,
    }
}

/// The insert fixture as round `id` of game `slug` (game id = slug length).
fn insert(id: i64, slug: &str) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_slice(&devstack::fixtures::read("debezium/rounds-insert.json").unwrap())
            .unwrap();
    event["after"]["id"] = id.into();
    event["after"]["game_slug"] = slug.into();
    event["after"]["game_id"] = (slug.len() as i64).into();
    serde_json::to_vec(&event).unwrap()
}

async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) {
    js.publish(subject.to_string(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// (pending, ack pending, ack floor) of ingest's consumer, once it exists.
async fn consumer_state(js: &jetstream::Context) -> Option<(u64, usize, u64)> {
    let stream = js.get_stream("dbserver1").await.ok()?;
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("ingest").await.ok()?;
    let info = consumer.info().await.ok()?;
    Some((
        info.num_pending,
        info.num_ack_pending,
        info.ack_floor.stream_sequence,
    ))
}

fn stored_ids(edge: &Edge, slug: &str) -> Vec<i64> {
    let s = edge.state.lock().unwrap();
    s.stored
        .iter()
        .filter(|e| e.round.game_slug == slug)
        .map(|e| e.round.round_id)
        .collect()
}

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
    wait_for("the round delivered with its game", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash-classic") == [7]).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        s.edge.state.lock().unwrap().stored[0].round.game_type,
        "crash"
    );
    ingest.shutdown().await.unwrap();
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
    cfg.metrics_addr = format!("127.0.0.1:{}", free_port().unwrap())
        .parse()
        .unwrap();
    let again = start(cfg);
    wait_for("the round delivered after restart", TIMEOUT, || async {
        (stored_ids(&s.edge, "crash") == [1]).then_some(())
    })
    .await
    .unwrap();
    again.shutdown().await.unwrap();
}
