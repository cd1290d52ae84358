//! Shared by ingest's integration tests: a real nats-server per test, a
//! stand-in edge, and ingest itself (in-process or as its binary).
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use devstack::stack::Nats;
use ingest::config::Config;
use serde_json::Value;
use shared::{IngestBatch, RoundEvent};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(60);
pub const SECRET: &str = "0123456789abcdef0123";

#[derive(Default)]
pub struct EdgeState {
    /// Events stored, in arrival order.
    pub stored: Vec<RoundEvent>,
    /// POSTs received.
    pub attempts: usize,
    /// Answer 503 to the next this many POSTs.
    pub fail_next: usize,
    /// Answer 503 to every POST.
    pub down: bool,
    /// Answer 503 to every n-th POST (0: never).
    pub fail_every: usize,
    /// Answer 400 to any batch holding one of these round ids.
    pub reject: HashSet<i64>,
    /// Never answer.
    pub hang: bool,
    /// Answer 401 (as to a wrong signature) to every POST.
    pub unauthorized: bool,
    /// Wait this long before answering.
    pub delay_ms: u64,
}

pub struct Edge {
    pub url: String,
    pub state: Arc<Mutex<EdgeState>>,
}

async fn rounds(
    State(state): State<Arc<Mutex<EdgeState>>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let (hang, delay) = {
        let mut s = state.lock().unwrap();
        s.attempts += 1;
        (s.hang, s.delay_ms)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let batch: IngestBatch = serde_json::from_slice(&body).unwrap();
    let mut s = state.lock().unwrap();
    let attempt = s.attempts;
    if s.unauthorized {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":"invalid_signature","message":"invalid signature"}}"#.into(),
        );
    }
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

pub async fn stand_in_edge() -> Edge {
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

pub fn config(nats_url: &str, edge_url: &str) -> Config {
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
        games_bucket: "ingest_games".into(),
        dead_letter_prefix: "ingest.deadletter".into(),
        edge_url: Some(edge_url.into()),
        ingest_secret: Some(SECRET.into()),
        batch_max: 64,
        batch_max_bytes: 512 * 1024,
        batch_linger_ms: 5,
        edge_timeout_ms: 2_000,
        retry_min_ms: 20,
        retry_max_ms: 200,
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
    }
}

pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

pub fn start(config: Config) -> Running {
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
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(TIMEOUT, &mut self.task)
            .await
            .expect("ingest stops in time")
            .expect("no panic")
    }
}

pub struct Setup {
    pub nats: Nats,
    pub js: jetstream::Context,
    pub edge: Edge,
    pub dir: tempfile::TempDir,
}

pub async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (nats, js) =
        Nats::start_with_stream(&dir.path().join("js"), None, &dir.path().join("nats.log"))
            .await
            .unwrap();
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
        dir,
    }
}

/// The insert fixture as round `id` of game `slug` (game id = slug length).
pub fn insert(id: i64, slug: &str) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_slice(&devstack::fixtures::read("debezium/rounds-insert.json").unwrap())
            .unwrap();
    event["after"]["id"] = id.into();
    event["after"]["game_slug"] = slug.into();
    event["after"]["game_id"] = (slug.len() as i64).into();
    serde_json::to_vec(&event).unwrap()
}

pub async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) {
    js.publish(subject.to_string(), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// (pending, ack pending, ack floor) of ingest's consumer, once it exists.
pub async fn consumer_state(js: &jetstream::Context) -> Option<(u64, usize, u64)> {
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

pub fn stored_ids(edge: &Edge, slug: &str) -> Vec<i64> {
    let s = edge.state.lock().unwrap();
    s.stored
        .iter()
        .filter(|e| e.round.game_slug == slug)
        .map(|e| e.round.round_id)
        .collect()
}
