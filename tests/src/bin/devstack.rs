//! The main-job command (`scripts/dev.sh`): brings up nats-server with
//! JetStream, the Worker under `wrangler dev` and ingest on loopback, seeds a
//! test API key, prints where everything is, and publishes a sample Debezium
//! insert every few seconds until Ctrl-C, which stops everything it started.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use devstack::stack::{PREFIX, Stack, StackOptions};
use devstack::{fixtures, port_in_use, repo_root};

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
    }
}

async fn run() -> anyhow::Result<()> {
    let nats_port = u16::try_from(env_number("GAMEFEED_NATS_PORT", 4222)?)?;
    let worker_port = u16::try_from(env_number("GAMEFEED_WORKER_PORT", 8787)?)?;
    let every = Duration::from_millis(env_number("GAMEFEED_SAMPLE_EVERY_MS", 2000)?.max(10));
    for (what, port, var) in [
        ("nats-server", nats_port, "GAMEFEED_NATS_PORT"),
        ("the Worker", worker_port, "GAMEFEED_WORKER_PORT"),
    ] {
        if port_in_use(port) {
            bail!(
                "port {port} for {what} is taken: stop what listens there (`ss -ltnp 'sport = :{port}'`) or choose another with {var}=<port>"
            );
        }
    }
    let state = repo_root().join(".local");
    // Each run starts clean, so the sample rounds (ids from 1) are new rounds.
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("clearing {}", state.display()))?;
    }
    println!(
        "starting nats-server, the Worker (wrangler dev) and ingest; state and logs under {}",
        state.display()
    );
    // Listen for Ctrl-C from the start: dropping a half-started stack stops
    // whatever it had started.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let options = StackOptions {
        state_dir: state.clone(),
        nats_port,
        worker_port,
        heartbeat_secs: 15,
    };
    let mut stack = tokio::select! {
        _ = &mut shutdown => {
            println!("interrupted while starting; stopped what had started.");
            return Ok(());
        }
        stack = Stack::up(options) => stack?,
    };
    let url = format!(
        "{}/sse/crash-classic?api_key={}",
        stack.edge.worker.url, stack.api_key
    );
    println!(
        "\nUp and running:\n  Worker       {worker}   (log {logs}/worker.log)\n  nats-server  {nats}   (log {logs}/nats.log)\n  ingest       (log {logs}/ingest.log)\n  API key      {key}\n  admin token  {admin}   (FEED_URL={worker} ADMIN_TOKEN={admin} scripts/keys.sh list)\n\nWatch rounds arrive:\n  demo page    {worker}/?api_key={key}\n  curl -N '{url}'\n\nPublishing a sample Debezium insert on {PREFIX}.public.rounds every {every:?}. Ctrl-C stops everything.\n",
        worker = stack.edge.worker.url,
        nats = stack.nats.url,
        logs = stack.log_dir.display(),
        key = stack.api_key,
        admin = stack.edge.admin_token,
    );

    let mut ticker = tokio::time::interval(every);
    let mut round_id = 0i64;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {
                for proc in [&mut stack.ingest, &mut stack.edge.worker.proc, &mut stack.nats.proc] {
                    if let Some(status) = proc.exited() {
                        bail!("{} exited ({status}); its log: {}\n{}", proc.name(), proc.log_path().display(), proc.log_tail(2000));
                    }
                }
                round_id += 1;
                let now_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)?;
                stack.publish(&format!("{PREFIX}.public.rounds"), fixtures::debezium_insert(round_id, now_ms)?).await?;
                println!("published round {round_id}");
            }
        }
    }
    println!("\nstopping ingest, the Worker and nats-server…");
    drop(stack);
    println!("stopped.");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("devstack: {err:#}");
            ExitCode::FAILURE
        }
    }
}
