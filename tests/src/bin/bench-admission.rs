//! Admission latency benchmark (not a test; `scripts/bench-admission.sh`).
//!
//! The built Worker under Miniflare with its own socket (no wrangler proxy),
//! once without per-key limits and once with them (a real redis-server
//! behind `upstash-local`, the Worker's `fetch` transport). For each mode it
//! opens `BENCH_CONNECTS` streams one after another, each timed from sending
//! the request to the first byte of the SSE body, and closes it. With limits
//! on it also runs the same with a browser token, and reads Redis's command
//! statistics to count Upstash calls per admission.
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shared::upstash::Command;

use devstack::edge::{Edge, Secrets};
use devstack::stack::Worker;
use devstack::upstash_local::{UpstashLocal, start_pair, upstash_local_binary};
use devstack::{env_number, http_client, upstash_client};

const UPSTASH_TOKEN: &str = "bench-upstash-token";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    devstack::exit_code("bench-admission", run().await)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Opens `n` streams at `path_and_query` one after another; milliseconds
/// from request to first body byte, sorted.
async fn connects(edge: &Edge, path_and_query: &str, n: u64) -> anyhow::Result<Vec<f64>> {
    let http = http_client();
    let url = edge.url(path_and_query);
    let mut times = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let mut response = http.get(&url).send().await?;
        if response.status() != 200 {
            bail!(
                "stream refused with {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let first = response.chunk().await?.context("empty stream")?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(first.starts_with(b"retry:"), "unexpected first bytes");
        drop(response);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Calls of `command` Redis has run so far (`INFO commandstats`).
async fn calls(upstash: &UpstashLocal, command: &str) -> anyhow::Result<u64> {
    let info = upstash_client::client(&upstash.url, UPSTASH_TOKEN, Duration::from_secs(10))
        .exec(&Command::new("INFO").arg("commandstats"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let text = info.as_str().map_err(|e| anyhow::anyhow!("{e}"))?;
    let prefix = format!("cmdstat_{command}:calls=");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

async fn worker(dir: &Path, name: &str, extra: &[(&str, String)]) -> anyhow::Result<Edge> {
    let secrets = Secrets::load_or_create(dir)?;
    let mut vars = vec![
        ("INGEST_SECRET", secrets.ingest_secret.clone()),
        ("ADMIN_TOKEN", secrets.admin_token.clone()),
        ("TOKEN_SECRET", secrets.token_secret.clone()),
    ];
    vars.extend(extra.iter().cloned());
    let log = dir.join(format!("{name}.log"));
    let worker = Worker::start_direct(None, &vars, &log).await?;
    Ok(Edge::with_worker(
        worker,
        secrets.ingest_secret,
        secrets.admin_token,
    ))
}

fn row(label: &str, times: &[f64]) {
    println!(
        "| {label} | {} | {:.1} | {:.1} | {:.1} |",
        times.len(),
        percentile(times, 50.0),
        percentile(times, 99.0),
        times.last().copied().unwrap_or(f64::NAN)
    );
}

async fn run() -> anyhow::Result<()> {
    let n = env_number("BENCH_CONNECTS", 1000)?;
    let warmup = 50;
    let dir = tempfile::tempdir()?;
    println!(
        "bench-admission: {n} sequential connects per mode, Worker under Miniflare (own socket)"
    );

    let off = worker(dir.path(), "worker-off", &[]).await?;
    let key = off
        .create_key(serde_json::json!({"name": "bench"}))
        .await?
        .0;
    off.seed(&[("crash", "multiplier")]).await?;
    let path = format!("/sse/crash?api_key={key}");
    connects(&off, &path, warmup).await?;
    let limits_off = connects(&off, &path, n).await?;
    drop(off);

    let (_redis, upstash) = start_pair(
        &dir.path().join("redis"),
        &upstash_local_binary()?,
        UPSTASH_TOKEN,
        false,
    )
    .await?;
    let on = worker(
        dir.path(),
        "worker-on",
        &[
            ("UPSTASH_REDIS_REST_URL", upstash.url.clone()),
            ("UPSTASH_REDIS_REST_TOKEN", UPSTASH_TOKEN.to_string()),
            // One token opens every connect here, one after another; a
            // closed stream's slot comes back only when the Worker notices.
            ("TOKEN_MAX_STREAMS", "0".to_string()),
        ],
    )
    .await?;
    on.seed(&[("crash", "multiplier")]).await?;
    let key = on
        .create_key(serde_json::json!({"name": "bench", "max_streams": 1_000_000}))
        .await?
        .0;
    let path = format!("/sse/crash?api_key={key}");
    connects(&on, &path, warmup).await?;
    let evals_before = calls(&upstash, "eval").await?;
    let limits_on = connects(&on, &path, n).await?;
    let evals = calls(&upstash, "eval").await? - evals_before;

    let minted = on
        .http
        .post(on.url("/api/tokens"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"ttl": 3600}))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?;
    let token = minted["token"]
        .as_str()
        .context("no token minted")?
        .to_string();
    let with_token = connects(&on, &format!("/sse/crash?token={token}"), n).await?;

    println!();
    println!("| admission (request → first SSE byte) | connects | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    row("limits off", &limits_off);
    row("limits on (API key)", &limits_on);
    row("limits on (browser token)", &with_token);
    println!();
    println!(
        "Upstash calls per connect, admission and release: {:.2} (EVAL scripts run by Redis: {evals} for {n} connects)",
        evals as f64 / n as f64
    );
    Ok(())
}
