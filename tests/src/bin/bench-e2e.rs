//! End-to-end latency benchmark (not a test; `scripts/bench-e2e.sh`).
//!
//! Brings up the whole chain on loopback — PostgreSQL, the real Debezium
//! engine, nats-server, ingest and the Worker (under Miniflare with its own
//! socket by default, `BENCH_EDGE=wrangler` for `wrangler dev`) — connects
//! `BENCH_CLIENTS` SSE clients to one game and INSERTs `BENCH_ROUNDS` rounds,
//! one every `BENCH_EVERY_MS`, each in its own transaction. For every round it
//! takes four instants on the one machine clock:
//!
//! - commit: the transaction's commit time, `source.ts_us` of Debezium's event;
//! - nats: when a plain NATS subscriber on the stream's subject receives it;
//! - edge: when ingest's signed POST carrying it reaches a pass-through proxy
//!   in front of the Worker (the proxy adds a loopback hop, ~0.2 ms);
//! - sse: when each client has read its `message` frame.
//!
//! It prints p50/p99/max of commit → client and of each stage: Debezium
//! (commit → nats), NATS + ingest (nats → edge), edge (edge → client).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use devstack::edge::Edge;
use devstack::postgres::{Postgres, start_debezium};
use devstack::stack::{Nats, PREFIX, Worker, WorkerOptions, start_ingest};
use devstack::{env_number, http_client, process, wait_for_procs};

/// Microseconds since the epoch, from the machine clock every stage shares.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// First-seen instants per round id, for one stage.
type Seen = Arc<Mutex<HashMap<i64, i64>>>;

fn record(seen: &Seen, id: i64, at: i64) {
    if let Ok(mut map) = seen.lock() {
        map.entry(id).or_insert(at);
    }
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    seen: Seen,
}

/// Passes ingest's batches to the Worker, noting when each round arrived.
async fn forward(
    State(proxy): State<Proxy>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let at = now_us();
    if let Ok(batch) = serde_json::from_slice::<shared::IngestBatch>(&body) {
        for event in &batch.events {
            record(&proxy.seen, event.round.round_id, at);
        }
    }
    let mut request = proxy
        .http
        .post(format!("{}/internal/rounds", proxy.upstream))
        .body(body);
    for name in ["x-signature", "content-type"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = HeaderMap::new();
            if let Some(value) = response.headers().get("retry-after") {
                out.insert("retry-after", value.clone());
            }
            let body = response.bytes().await.unwrap_or_default();
            (status, out, body)
        }
        Err(_) => (StatusCode::BAD_GATEWAY, HeaderMap::new(), Bytes::new()),
    }
}

async fn start_proxy(upstream: String, seen: Seen) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/internal/rounds", axum::routing::post(forward))
        .with_state(Proxy {
            upstream,
            // Keep-alive to the Worker like ingest keeps it to the edge.
            http: reqwest::Client::new(),
            seen,
        });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// One SSE client: the instant each `message` round id was read.
async fn client(
    http: reqwest::Client,
    url: String,
) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<(i64, i64)>> {
    let response = http.get(&url).send().await?;
    if response.status() != 200 {
        bail!("stream refused: {}", response.status());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = now_us();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                if !frame.contains("event: message") {
                    continue;
                }
                let id = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .and_then(|v| v.trim().parse::<i64>().ok());
                if let Some(id) = id
                    && tx.send((id, at)).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// p50, p99 and max of `values` (µs) as milliseconds.
fn summary(name: &str, values: &mut [i64]) -> String {
    values.sort_unstable();
    let q = |p: f64| {
        let i = ((values.len() as f64) * p) as usize;
        values
            .get(i.min(values.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let max = values.last().copied().unwrap_or(0) as f64 / 1000.0;
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        values.len(),
        q(0.5),
        q(0.99),
        max
    )
}

async fn run() -> anyhow::Result<()> {
    let rounds = env_number("BENCH_ROUNDS", 1000)?;
    let clients = env_number("BENCH_CLIENTS", 100)?;
    let every = Duration::from_millis(env_number("BENCH_EVERY_MS", 50)?);
    let via_wrangler = std::env::var("BENCH_EDGE").is_ok_and(|v| v == "wrangler");
    let state = tempfile::tempdir()?;
    let dir = state.path();
    let logs = dir.join("logs");

    // Every port is one the process binds itself (or, for PostgreSQL, picks
    // again when it was taken): see devstack::stack and devstack::postgres.
    let (mut nats, _) =
        Nats::start_with_stream(&dir.join("nats"), None, &logs.join("nats.log")).await?;
    let secret = devstack::fixtures::random_secret()?;
    let admin = devstack::fixtures::random_secret()?;
    let vars = vec![
        ("INGEST_SECRET", secret.clone()),
        ("ADMIN_TOKEN", admin.clone()),
        ("HEARTBEAT_SECS", "15".to_string()),
    ];
    let worker = if via_wrangler {
        Worker::start(WorkerOptions {
            port: None,
            persist: &dir.join("wrangler"),
            log: &logs.join("worker.log"),
            vars,
        })
        .await?
    } else {
        Worker::start_direct(None, &vars, &logs.join("worker.log")).await?
    };
    let mut edge = Edge::with_worker(worker, secret.clone(), admin);
    let key = edge
        .create_key(serde_json::json!({"name": "bench", "test": true}))
        .await?
        .0;

    let at_edge: Seen = Arc::default();
    let proxy = start_proxy(edge.worker.url.clone(), at_edge.clone()).await?;
    let mut ingest = start_ingest(&nats.url, &proxy, &secret, &logs.join("ingest.log"))?;

    let mut pg = Postgres::start(&dir.join("pg"), None).await?;
    pg.create_reference_schema()?;
    pg.sql(
        "games",
        "INSERT INTO games (id, slug, type, name) VALUES (1, 'crash', 'multiplier', 'Crash');
         INSERT INTO rounds (id, game_id, finished_at, extras) VALUES (1, 1, now(), '{\"multiplier\": 1.5}')",
    )?;
    let mut debezium = start_debezium(&dir.join("debezium"), pg.port, &nats.url)?;
    let http = http_client();
    let latest = edge.url(&format!("/api/games/crash/latest?api_key={key}"));
    wait_for_procs(
        &mut [
            &mut debezium,
            &mut pg.proc,
            &mut ingest,
            &mut edge.worker.proc,
            &mut nats.proc,
        ],
        "the engine's snapshot at the edge",
        Duration::from_secs(180),
        || {
            let request = http.get(&latest).send();
            async move {
                let body = request.await.ok()?.text().await.ok()?;
                body.contains("\"round_id\":1").then_some(())
            }
        },
    )
    .await?;
    let engine_cpu = || process::cpu_time(debezium.id()).unwrap_or_default();

    // What the engine costs while nothing happens (after its start-up work).
    let idle_window = Duration::from_secs(10);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = engine_cpu();
    tokio::time::sleep(idle_window).await;
    let idle_cpu = (engine_cpu() - before).as_secs_f64() / idle_window.as_secs_f64();

    // Commit time and NATS receipt of every insert, from a plain subscriber.
    let commits: Seen = Arc::default();
    let at_nats: Seen = Arc::default();
    let mut sub = async_nats::connect(nats.url.as_str())
        .await?
        .subscribe(format!("{PREFIX}.public.rounds"))
        .await?;
    {
        let (commits, at_nats) = (commits.clone(), at_nats.clone());
        tokio::spawn(async move {
            while let Some(message) = sub.next().await {
                let at = now_us();
                let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.payload)
                else {
                    continue;
                };
                if event["op"] != "c" {
                    continue;
                }
                let (Some(id), Some(ts_us)) = (
                    event["after"]["id"].as_i64(),
                    event["source"]["ts_us"].as_i64(),
                ) else {
                    continue;
                };
                record(&commits, id, ts_us);
                record(&at_nats, id, at);
            }
        });
    }

    let sse_url = edge.url(&format!("/sse/crash?api_key={key}"));
    let mut receivers = Vec::new();
    for _ in 0..clients {
        receivers.push(client(devstack::http_client(), sse_url.clone()).await?);
    }
    eprintln!(
        "{clients} clients connected to {}; inserting {rounds} rounds, one every {every:?}",
        if via_wrangler {
            "wrangler dev"
        } else {
            "Miniflare (direct socket)"
        }
    );

    // One psql session; each INSERT is its own transaction.
    let mut psql = tokio::process::Command::new(
        std::env::var_os("PG_BIN")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into())
            .join("psql"),
    )
    .args([
        "-h",
        "127.0.0.1",
        "-p",
        &pg.port.to_string(),
        "-U",
        "postgres",
        "-d",
        "games",
        "-q",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .kill_on_drop(true)
    .spawn()?;
    let mut stdin = psql.stdin.take().context("psql stdin")?;
    let mut ticker = tokio::time::interval(every);
    let (busy_from, busy_cpu_from) = (std::time::Instant::now(), engine_cpu());
    for n in 0..rounds {
        ticker.tick().await;
        let id = 1000 + i64::try_from(n)?;
        stdin
            .write_all(format!("INSERT INTO rounds (id, game_id, finished_at, extras) VALUES ({id}, 1, now(), '{{\"multiplier\": 2.0}}');\n").as_bytes())
            .await?;
        stdin.flush().await?;
    }
    let last = 1000 + i64::try_from(rounds)? - 1;
    let busy_cpu = (engine_cpu() - busy_cpu_from).as_secs_f64() / busy_from.elapsed().as_secs_f64();

    // Collect until every client has the last round (or 60 s pass).
    let mut received: Vec<Vec<(i64, i64)>> = vec![Vec::new(); receivers.len()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (i, rx) in receivers.iter_mut().enumerate() {
        loop {
            if received[i].last().is_some_and(|(id, _)| *id == last) {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => received[i].push(item),
                _ => break,
            }
        }
    }
    drop(stdin);

    let commits = commits.lock().map(|m| m.clone()).unwrap_or_default();
    let at_nats = at_nats.lock().map(|m| m.clone()).unwrap_or_default();
    let at_edge = at_edge.lock().map(|m| m.clone()).unwrap_or_default();
    let (mut total, mut debezium, mut transport, mut fanout) = (vec![], vec![], vec![], vec![]);
    let mut to_edge = vec![];
    // Per client: round id → (first receipt, how many times received).
    let by_client: Vec<HashMap<i64, (i64, u64)>> = received
        .iter()
        .map(|frames| {
            let mut seen = HashMap::new();
            for &(id, at) in frames {
                seen.entry(id).or_insert((at, 0)).1 += 1;
            }
            seen
        })
        .collect();
    let mut lost = 0u64;
    let mut duplicated = 0u64;
    for id in 1000..=last {
        let (Some(c), Some(n), Some(e)) = (commits.get(&id), at_nats.get(&id), at_edge.get(&id))
        else {
            lost += clients;
            continue;
        };
        debezium.push(n - c);
        transport.push(e - n);
        to_edge.push(e - c);
        for client in &by_client {
            match client.get(&id) {
                Some(&(t, times)) => {
                    total.push(t - c);
                    fanout.push(t - e);
                    duplicated += times - 1;
                }
                None => lost += 1,
            }
        }
    }
    println!(
        "\n{rounds} rounds, {clients} clients, one INSERT every {every:?}, Worker under {}\n",
        if via_wrangler {
            "wrangler dev"
        } else {
            "Miniflare (direct socket)"
        }
    );
    println!("| stage | samples | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|");
    println!("{}", summary("commit → client (end to end)", &mut total));
    println!("{}", summary("Debezium (commit → NATS)", &mut debezium));
    println!(
        "{}",
        summary("NATS + ingest (NATS → edge POST)", &mut transport)
    );
    println!("{}", summary("edge (POST → client)", &mut fanout));
    // The edge's own figure of the same span (its store minus the round's
    // `timestamp`, in histogram buckets), beside the one measured here.
    let (status, series) = edge
        .admin(
            reqwest::Method::GET,
            "/admin/streams/game/crash/series?minutes=60",
            None,
        )
        .await?;
    if status != 200 {
        bail!("series answered {status}: {series}");
    }
    let window = &series["window"];
    let seconds = |v: &serde_json::Value| v.as_f64().map_or(f64::NAN, |s| s * 1000.0);
    println!(
        "{}",
        summary("commit → edge POST (measured here)", &mut to_edge)
    );
    println!(
        "| commit → edge, the edge's histogram (`/admin/streams/game/crash/series`) | {} | {:.1} | {:.1} | — |",
        window["delay"]["count"],
        seconds(&window["delay_p50"]),
        seconds(&window["delay_p99"])
    );
    println!("\nlost (round × client): {lost}, duplicated: {duplicated}");
    println!(
        "Debezium engine CPU (poll interval {} ms): {:.0} % of a core idle, {:.0} % while inserting",
        std::env::var("DEBEZIUM_POLL_MS").unwrap_or_else(|_| "5 (default)".into()),
        idle_cpu * 100.0,
        busy_cpu * 100.0
    );
    if lost > 0 {
        bail!("{lost} deliveries missing; logs were in {}", logs.display());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    devstack::exit_code("bench-e2e", run().await)
}
