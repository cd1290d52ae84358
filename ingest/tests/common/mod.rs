//! Shared by ingest's integration tests: a real nats-server per test, a
//! stand-in edge, and ingest itself (in-process or as its binary).
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use devstack::stack::Nats;
use ingest::config::Config;
use serde_json::Value;
use shared::{IngestBatch, RoundEvent};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The Worker's bound on a batch body (`MAX_BODY_BYTES`): over it, 413.
pub const EDGE_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";

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
    /// Answer 200 with this body, storing nothing (a proxy or a broken
    /// edge that does not really store).
    pub bad_reply: Option<String>,
    /// Answer 307 redirecting to this URL.
    pub redirect_to: Option<String>,
}

pub struct Edge {
    pub url: String,
    pub state: Arc<Mutex<EdgeState>>,
}

async fn rounds(State(state): State<Arc<Mutex<EdgeState>>>, body: axum::body::Bytes) -> Response {
    let (hang, delay) = {
        let mut s = state.lock().unwrap();
        s.attempts += 1;
        (s.hang, s.delay_ms)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(delay)).await;
    if body.len() > EDGE_MAX_BODY_BYTES {
        return (StatusCode::PAYLOAD_TOO_LARGE, "{}".to_string()).into_response();
    }
    let batch: IngestBatch = serde_json::from_slice(&body).unwrap();
    let mut s = state.lock().unwrap();
    let attempt = s.attempts;
    if let Some(to) = &s.redirect_to {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, to.clone())],
            String::new(),
        )
            .into_response();
    }
    if let Some(body) = &s.bad_reply {
        return (StatusCode::OK, body.clone()).into_response();
    }
    if s.unauthorized {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":"invalid_signature","message":"invalid signature"}}"#.to_string(),
        )
            .into_response();
    }
    if s.down || s.fail_next > 0 || (s.fail_every > 0 && attempt % s.fail_every == 0) {
        s.fail_next = s.fail_next.saturating_sub(1);
        return (StatusCode::SERVICE_UNAVAILABLE, "{}".to_string()).into_response();
    }
    if batch
        .events
        .iter()
        .any(|e| s.reject.contains(&e.round.round_id))
    {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":"invalid_batch","message":"no"}}"#.to_string(),
        )
            .into_response();
    }
    let n = batch.events.len();
    s.stored.extend(batch.events);
    (
        StatusCode::OK,
        format!(r#"{{"stored":{n},"duplicates":0}}"#),
    )
        .into_response()
}

pub async fn stand_in_edge() -> Edge {
    let state = Arc::new(Mutex::new(EdgeState::default()));
    let app = Router::new()
        .route("/internal/rounds", post(rounds))
        .route("/healthz", get(|| async { "{}" }))
        // Bodies over the edge's bound reach the handler, which answers 413
        // as the Worker does.
        .layer(DefaultBodyLimit::max(16 * EDGE_MAX_BODY_BYTES))
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
        unknown_game_max_deliveries: 30,
        unknown_game_delay_ms: 2_000,
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
    let s = setup_without_dead_letters().await;
    create_dead_letter_stream(&s.js).await;
    s
}

/// As [`setup`], but no stream captures the dead-letter subjects (yet).
pub async fn setup_without_dead_letters() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (nats, js) =
        Nats::start_with_stream(&dir.path().join("js"), None, &dir.path().join("nats.log"))
            .await
            .unwrap();
    Setup {
        nats,
        js,
        edge: stand_in_edge().await,
        dir,
    }
}

/// As [`setup`], with nats-server accepting payloads up to `max_payload`
/// (e.g. `"4MB"`; the default is 1 MB).
pub async fn setup_with_max_payload(max_payload: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, format!("max_payload: {max_payload}\n")).unwrap();
    let bin = devstack::stack::nats_server_binary();
    let js_dir = dir.path().join("js");
    std::fs::create_dir_all(&js_dir).unwrap();
    let mut proc = devstack::process::Proc::spawn(
        "nats-server",
        std::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(&js_dir),
        &dir.path().join("nats.log"),
    )
    .unwrap();
    let log = proc.log_path().to_path_buf();
    let url = devstack::wait_for_proc(&mut proc, "nats-server", TIMEOUT, || {
        let address = devstack::logged_after(&log, "Listening for client connections on ");
        async move {
            let url = format!("nats://{}", address?);
            async_nats::connect(url.as_str()).await.ok().map(|_| url)
        }
    })
    .await
    .unwrap();
    let nats = Nats { proc, url };
    let js = nats.jetstream().await.unwrap();
    devstack::stack::create_stream(&js).await.unwrap();
    create_dead_letter_stream(&js).await;
    Setup {
        nats,
        js,
        edge: stand_in_edge().await,
        dir,
    }
}

/// The stream that keeps dead letters (`ingest.deadletter.>`).
pub async fn create_dead_letter_stream(js: &jetstream::Context) {
    js.get_or_create_stream(jetstream::stream::Config {
        name: "DEADLETTER".into(),
        subjects: vec!["ingest.deadletter.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A dead letter: its subject, `Gamefeed-Dead-Reason`,
/// `Gamefeed-Original-Subject` and payload.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub subject: String,
    pub reason: String,
    pub original_subject: String,
    pub payload: Vec<u8>,
}

/// How many messages the DEADLETTER stream holds (0 if it does not exist).
pub async fn dead_letter_count(js: &jetstream::Context) -> u64 {
    match js.get_stream("DEADLETTER").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Every message in the DEADLETTER stream, in order (empty if the stream
/// does not exist).
pub async fn dead_letters(js: &jetstream::Context) -> Vec<DeadLetter> {
    let Ok(mut stream) = js.get_stream("DEADLETTER").await else {
        return vec![];
    };
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let header = |name: &str| {
            m.headers
                .get(name)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        out.push(DeadLetter {
            subject: m.subject.to_string(),
            reason: header("Gamefeed-Dead-Reason"),
            original_subject: header("Gamefeed-Original-Subject"),
            payload: m.payload.to_vec(),
        });
    }
    out
}

/// The insert fixture as round `id` of the game with id `game_id`, without
/// `game_slug`/`game_type`: ingest needs the game's change event for it.
pub fn bare(id: i64, game_id: i64) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_slice(&devstack::fixtures::read("debezium/rounds-insert.json").unwrap())
            .unwrap();
    let after = event["after"].as_object_mut().unwrap();
    after.remove("game_slug");
    after.remove("game_type");
    after.insert("id".into(), id.into());
    after.insert("game_id".into(), game_id.into());
    serde_json::to_vec(&event).unwrap()
}

/// A `games` change event (`op` `c`).
pub fn game(id: i64, slug: &str, game_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "before": null,
        "after": {"id": id, "slug": slug, "type": game_type, "name": slug},
        "source": {"ts_ms": 1},
        "op": "c",
    }))
    .unwrap()
}

/// The round id of a Debezium round event (`after.id`, or `payload.after.id`).
pub fn round_id_of(payload: &[u8]) -> Option<i64> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let envelope = value.get("payload").unwrap_or(&value);
    envelope["after"]["id"].as_i64()
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

/// ingest's consumer's info, once it exists.
pub async fn consumer_info(js: &jetstream::Context) -> Option<jetstream::consumer::Info> {
    let stream = js.get_stream("dbserver1").await.ok()?;
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("ingest").await.ok()?;
    consumer.info().await.ok().cloned()
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
