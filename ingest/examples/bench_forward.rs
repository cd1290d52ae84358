//! Sustained forwarding through a real nats-server (JetStream on disk) to a
//! stand-in edge that answers 200 at once: rounds/s, the latency ingest adds
//! per round (publish acknowledged by JetStream → POST received by the edge),
//! and lost rounds.
//!   bash scripts/bench-ingest.sh   (BENCH_RATE=5000 BENCH_SECS=10 BENCH_GAMES=10)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use devstack::stack::Nats;
use devstack::wait_for;
use serde_json::Value;
use shared::IngestBatch;

type Seen = Arc<Mutex<HashMap<i64, Instant>>>;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let rate = env("BENCH_RATE", 5000);
    let secs = env("BENCH_SECS", 10);
    let games = env("BENCH_GAMES", 10);
    let dir = tempfile::tempdir().unwrap();
    let (nats, js) =
        Nats::start_with_stream(&dir.path().join("js"), None, &dir.path().join("nats.log"))
            .await
            .unwrap();

    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/internal/rounds",
            post(
                |State(seen): State<Seen>, body: axum::body::Bytes| async move {
                    let now = Instant::now();
                    let batch: IngestBatch = serde_json::from_slice(&body).unwrap();
                    let mut seen = seen.lock().unwrap();
                    for e in &batch.events {
                        seen.entry(e.round.round_id).or_insert(now);
                    }
                    format!(r#"{{"stored":{},"duplicates":0}}"#, batch.events.len())
                },
            ),
        )
        .route("/healthz", get(|| async { "{}" }))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let template: Value =
        serde_json::from_slice(&devstack::fixtures::read("debezium/rounds-insert.json").unwrap())
            .unwrap();
    let cli = [
        "ingest",
        "--edge-url",
        &edge_url,
        "--ingest-secret",
        "0123456789abcdef0123456789abcdef",
        "--nats-url",
        &nats.url,
    ];
    let config = <Cli as clap::Parser>::parse_from(cli).config;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ingest = tokio::spawn(ingest::run(config, async move {
        let _ = stopped.await;
    }));

    let total = rate * secs;
    let published: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let started = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut next = tokio::time::Instant::now();
    let mut id = 0i64;
    while (id as u64) < total {
        let mut acks = Vec::with_capacity(per_tick as usize);
        for _ in 0..per_tick {
            id += 1;
            let mut event = template.clone();
            event["after"]["id"] = id.into();
            event["after"]["game_slug"] = format!("game-{}", id as u64 % games).into();
            acks.push((
                id,
                js.publish(
                    "dbserver1.public.rounds",
                    serde_json::to_vec(&event).unwrap().into(),
                )
                .await
                .unwrap(),
            ));
        }
        for (id, ack) in acks {
            ack.await.unwrap();
            published.lock().unwrap().insert(id, Instant::now());
        }
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let _ = wait_for(
        "every round at the edge",
        Duration::from_secs(120),
        || async { (seen.lock().unwrap().len() as u64 >= total).then_some(()) },
    )
    .await;
    let drained = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = ingest.await;

    let seen = seen.lock().unwrap();
    let published = published.lock().unwrap();
    let mut added: Vec<f64> = published
        .iter()
        .filter_map(|(id, at)| {
            seen.get(id)
                .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    added.sort_by(f64::total_cmp);
    let lost = total - seen.len() as u64;
    println!(
        "forward: {total} rounds over {games} games offered at {rate}/s for {secs} s (published in {publish_secs:.1} s), all at the edge after {drained:.1} s = {:.0} rounds/s",
        total as f64 / drained
    );
    println!(
        "added latency (JetStream ack → edge receipt): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; lost {lost}",
        quantile(&added, 0.5),
        quantile(&added, 0.99),
        added.last().copied().unwrap_or(f64::NAN)
    );
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    config: ingest::config::Config,
}
