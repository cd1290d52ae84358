//! The main-job command (`scripts/dev.sh`): brings up, on loopback,
//! PostgreSQL with the reference schema and a few games, the real Debezium
//! engine, nats-server with JetStream, ingest, redis-server behind
//! `upstash-local` (per-key limits) and the Worker under `wrangler dev`; creates a test API key through the admin route; prints where
//! everything is; and INSERTs finished rounds at a steady pace until Ctrl-C,
//! which stops everything it started. State lives in `.local/`; the next run
//! resumes it (`--fresh` starts over).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use std::path::PathBuf;

use devstack::pipeline::Pipeline;
use devstack::runs::{RunRecord, clear_earlier_run};
use devstack::stack::StackOptions;
use devstack::{env_number, port_in_use, repo_root};

/// The games the generator plays: (id, slug, type, name).
const GAMES: [(i64, &str, &str, &str); 4] = [
    (1, "crash", "multiplier", "Crash"),
    (2, "aviator", "multiplier", "Aviator"),
    (3, "double", "colour", "Double"),
    (4, "dice-duel", "dice", "Dice Duel"),
];

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
    }
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

/// A finished round's `extras` for a game type, as the operator would store it.
fn outcome(game_type: &str) -> String {
    let r = random_u32();
    match game_type {
        "multiplier" => {
            // Heavy-tailed like a real crash game: most rounds end low.
            let u = f64::from(r % 10_000) / 10_000.0;
            let point = (0.99 / (1.0 - u)).clamp(1.0, 1000.0);
            format!(r#"{{"multiplier": {point:.2}, "players": {}}}"#, r % 50 + 1)
        }
        "colour" => {
            let colour = match r % 15 {
                0 => "green",
                n if n % 2 == 0 => "red",
                _ => "black",
            };
            format!(r#"{{"colour": "{colour}", "roll": {}}}"#, r % 15)
        }
        _ => format!(
            r#"{{"roll": [{}, {}], "winner": "p{}"}}"#,
            r % 6 + 1,
            (r / 6) % 6 + 1,
            r % 2 + 1
        ),
    }
}

fn usage() -> &'static str {
    "usage: scripts/dev.sh [--fresh]\n\n\
     Brings up PostgreSQL, the Debezium engine, nats-server, ingest, redis-server behind\n\
     upstash-local (per-key limits) and the Worker on\n\
     loopback with their state in .local/, and INSERTs a finished round every\n\
     GAMEFEED_ROUND_EVERY_MS (1000). A second run resumes that state: the same\n\
     database, stream, Worker storage, API key and admin token.\n\n\
       --fresh   delete .local/ first and start from an empty database\n\n\
     Ports: GAMEFEED_PG_PORT (55432), GAMEFEED_NATS_PORT (4222), GAMEFEED_WORKER_PORT (8787);\n\
     0 picks any free port (printed once up).\n\
     State: GAMEFEED_STATE_DIR (.local/ of the checkout)."
}

async fn run() -> anyhow::Result<()> {
    let mut fresh = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--fresh" => fresh = true,
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n\n{}", usage()),
        }
    }
    // A port of 0 is any free port (the end-to-end test of this command runs
    // it so): None below.
    let port = |name: &str, default: u64| -> anyhow::Result<Option<u16>> {
        let port = u16::try_from(env_number(name, default)?)
            .map_err(|_| anyhow::anyhow!("{name} is not a port (0-65535)"))?;
        Ok((port != 0).then_some(port))
    };
    let nats_port = port("GAMEFEED_NATS_PORT", 4222)?;
    let worker_port = port("GAMEFEED_WORKER_PORT", 8787)?;
    let pg_port = port("GAMEFEED_PG_PORT", 55432)?;
    let every = Duration::from_millis(env_number("GAMEFEED_ROUND_EVERY_MS", 1000)?.max(10));
    let state = std::env::var_os("GAMEFEED_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local"));
    clear_earlier_run(&state)?;
    for (what, port, var) in [
        ("nats-server", nats_port, "GAMEFEED_NATS_PORT"),
        ("the Worker", worker_port, "GAMEFEED_WORKER_PORT"),
        ("PostgreSQL", pg_port, "GAMEFEED_PG_PORT"),
    ] {
        if let Some(port) = port
            && port_in_use(port)
        {
            bail!(
                "port {port} for {what} is taken: stop what listens there (`ss -ltnp 'sport = :{port}'`) or choose another with {var}=<port>"
            );
        }
    }
    if fresh && state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("clearing {}", state.display()))?;
    }
    let mut record = RunRecord::this_process();
    record.save(&state)?;
    println!(
        "starting PostgreSQL, the Debezium engine, nats-server, ingest and the Worker; state and logs under {}",
        state.display()
    );
    // Listen for Ctrl-C from the start: dropping what was half started stops it.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let options = StackOptions {
        state_dir: state.clone(),
        nats_port,
        worker_port,
        heartbeat_secs: 15,
    };
    let seed: String = GAMES
        .iter()
        .map(|(id, slug, game_type, name)| {
            format!("INSERT INTO games (id, slug, type, name) VALUES ({id}, '{slug}', '{game_type}', '{name}');")
        })
        .collect();
    let mut system = tokio::select! {
        _ = &mut shutdown => {
            println!("interrupted while starting; stopped what had started.");
            return Ok(());
        }
        started = Pipeline::up(options, pg_port, &seed) => started?,
    };
    for proc in [
        &system.stack.nats.proc,
        &system.stack.redis.proc,
        &system.stack.upstash.proc,
        &system.stack.edge.worker.proc,
        &system.stack.ingest,
        &system.pg.proc,
        &system.debezium,
    ] {
        record.add(proc);
    }
    record.save(&state)?;
    if !system.pg.created {
        println!(
            "resuming the state of an earlier run (`scripts/dev.sh --fresh` starts from an empty database)"
        );
    }
    // A page may open a game's stream once the edge knows the game, from its
    // first stored round on: a new database starts with one round of each,
    // and nothing is printed before the edge has them.
    if system.pg.created {
        let first: String = GAMES
            .iter()
            .map(|(id, _, game_type, _)| {
                format!(
                    "INSERT INTO rounds (game_id, finished_at, extras) VALUES ({id}, now(), '{}');",
                    outcome(game_type)
                )
            })
            .collect();
        system.pg.sql("games", &first)?;
    }
    for (_, slug, _, _) in GAMES {
        system
            .wait_for_edge(
                &format!("/api/games/{slug}/latest"),
                "\"round_id\"",
                Duration::from_secs(180),
            )
            .await?;
    }
    let rounds = system.pg.sql("games", "SELECT count(*) FROM rounds")?;
    let pg_port = system.pg.port;
    let stack = &system.stack;
    let worker = stack.edge.worker.url.clone();
    let key = stack.api_key.clone();
    println!(
        "\nUp and running ({rounds} rounds in the database so far):\n  demo page    {worker}/?api_key={key}\n  console      {worker}/console   (sign in with the admin token below)\n  Worker       {worker}   (log {logs}/worker.log)\n  nats-server  {nats}   (log {logs}/nats.log)\n  PostgreSQL   127.0.0.1:{pg_port} database games   (psql -h 127.0.0.1 -p {pg_port} -U postgres games)\n  Debezium     log {state}/debezium/debezium.log\n  ingest       (log {logs}/ingest.log)\n  limits       upstash-local {upstash} in front of redis-server   (log {state}/redis/upstash-local.log)\n  API key      {key}\n  its limits   at most 20 streams open, 120 new streams and 600 requests a minute\n  admin token  {admin}   (FEED_URL={worker} ADMIN_TOKEN={admin} scripts/keys.sh list)\n  its usage    FEED_URL={worker} ADMIN_TOKEN={admin} scripts/keys.sh usage {key_id}\n\nWatch rounds arrive:\n  curl -N '{worker}/sse/crash?api_key={key}'\n\nINSERTing a finished round every {every:?} (GAMEFEED_ROUND_EVERY_MS). Ctrl-C stops everything.\n",
        nats = stack.nats.url,
        logs = stack.log_dir.display(),
        state = state.display(),
        admin = stack.edge.admin_token,
        upstash = stack.upstash.url,
        key_id = stack.api_key_id,
    );

    let mut ticker = tokio::time::interval(every);
    let mut turn = 0usize;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {
                if let Some(exited) = system.exited() {
                    bail!("{exited}");
                }
                let (id, slug, game_type, _) = GAMES[turn % GAMES.len()];
                turn += 1;
                let extras = outcome(game_type);
                system.pg.sql("games", &format!("INSERT INTO rounds (game_id, finished_at, extras) VALUES ({id}, now(), '{extras}')"))?;
                println!("{slug}: {extras}");
            }
        }
    }
    println!("\nstopping…");
    drop(system);
    let _ = std::fs::remove_file(RunRecord::path(&state));
    println!("stopped; `scripts/dev.sh` resumes from here, `scripts/dev.sh --fresh` starts over.");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    devstack::exit_code("devstack", run().await)
}
