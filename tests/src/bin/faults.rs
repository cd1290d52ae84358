//! The fault matrix (`scripts/faults.sh [--short]`): the whole local system
//! (PostgreSQL, the Debezium engine, nats-server, ingest, the Worker under
//! wrangler with persisted state, Redis behind upstash-local) under a steady
//! stream of INSERTs, UPDATEs and DELETEs for several games, read by SSE
//! clients that reconnect as browsers do (raw ones, and the npm `eventsource`
//! package), while each fault is injected in turn. At the end what every
//! client received is compared with what PostgreSQL committed: every round
//! exactly once, in commit order, every update as an `update`.
//!
//! Prints a table per fault and ends with one line:
//! `faults: <N> injected, committed <C>, delivered <D>, lost <L>, duplicated <X>, out of order <O>`.
//! Exits non-zero on any loss, duplicate, reordering or stuck client.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use devstack::cutter::Cutter;
use devstack::feed_client::{EventSourceClients, Seen, raw_client};
use devstack::pipeline::Pipeline;
use devstack::postgres::{Postgres, start_debezium};
use devstack::stack::{Nats, StackOptions, Worker, WorkerOptions, start_ingest};
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(about = "Inject every fault into the whole local system and count what clients lose")]
struct Args {
    /// The test command's version: fewer rounds, shorter calm between faults.
    #[arg(long)]
    short: bool,
    /// Rounds committed per second (all games together).
    #[arg(long)]
    rate: Option<f64>,
    /// Keep the state and logs here instead of a temporary directory.
    #[arg(long)]
    state: Option<PathBuf>,
    /// How long the edge refuses batches (ingest's memory is sampled
    /// meanwhile: how it holds up under a long edge outage).
    #[arg(long, default_value_t = 30)]
    outage_secs: u64,
    /// No random single cuts (to measure ingest under a long outage alone).
    #[arg(long)]
    no_random_cuts: bool,
    /// Inject only the faults whose names contain this (for debugging).
    #[arg(long)]
    only: Option<String>,
}

/// The games: (id, slug, type).
const GAMES: [(i32, &str, &str); 4] = [
    (1, "crash", "multiplier"),
    (2, "double", "color"),
    (3, "dice", "dice"),
    (4, "mines", "grid"),
];

/// Longest wait for every client to catch up after a fault healed.
const CATCH_UP: Duration = Duration::from_secs(240);

/// What the generator committed, in commit order.
#[derive(Debug, Clone)]
enum Op {
    Insert { id: i64, game: usize },
    Update { id: i64, game: usize, version: u32 },
    Delete,
}

#[derive(Debug, Clone)]
struct Committed {
    op: Op,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Committed>>>;
type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// One client: the game it reads and how.
struct ClientSpec {
    game: usize,
    kind: &'static str,
}

/// One injected fault: its name, when it started and when it was healed.
struct FaultRun {
    name: String,
    started: Instant,
    healed: Instant,
    caught_up: Option<Duration>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return devstack::exit_code("faults", Err(err.into())),
    };
    // Ctrl-C or SIGTERM: drop everything (every process we started stops).
    let result = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = run(args) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    devstack::exit_code("faults", result)
}

/// Waits until the Worker holds no stream it let in without Upstash, and
/// Upstash counts at least `clients` streams of key `key_id`; how long
/// that took.
async fn every_stream_counted(
    system: &mut Pipeline,
    key_id: &str,
    clients: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let http = system.stack.edge.http.clone();
    let url = format!("{}/admin/limits", system.stack.edge.worker.url);
    let admin = system.stack.edge.admin_token.clone();
    let upstash = devstack::upstash_client::client(
        &system.stack.upstash.url,
        &system.stack.upstash.token,
        Duration::from_secs(10),
    );
    let streams = shared::upstash::Command::new("ZCARD").arg(format!("gf:{{{key_id}}}:streams"));
    devstack::wait_for_procs(
        &mut system.procs(),
        "every stream counted in Upstash again",
        Duration::from_secs(120),
        || {
            let request = http.get(&url).bearer_auth(&admin).send();
            let counted = upstash.exec(&streams);
            async move {
                let seen: serde_json::Value = request.await.ok()?.json().await.ok()?;
                let counted = counted.await.ok()?.as_i64().ok()?;
                (seen["uncounted"] == 0 && counted >= i64::try_from(clients).ok()?).then_some(())
            }
        },
    )
    .await?;
    Ok(started.elapsed())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (rate, calm, min_rounds) = if args.short {
        (args.rate.unwrap_or(8.0), Duration::from_secs(5), 1_000)
    } else {
        (args.rate.unwrap_or(40.0), Duration::from_secs(20), 10_000)
    };
    let temp;
    let state = match &args.state {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("gamefeed-faults-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let logs = state.join("logs");
    println!("faults: state and logs under {}", state.display());

    let mut seed = String::new();
    for (id, slug, game_type) in GAMES {
        seed.push_str(&format!(
            "INSERT INTO games (id, slug, type, name) VALUES ({id}, '{slug}', '{game_type}', '{slug}');
             INSERT INTO rounds (id, game_id, finished_at, extras) VALUES ({id}, {id}, now(), '{{\"seed\": true}}');"
        ));
    }
    let mut options = StackOptions::on_free_ports(&state, 5)?;
    options.worker_port = None;
    let mut system = Pipeline::up(options, None, &seed).await?;
    for (id, slug, _) in GAMES {
        system
            .wait_for_edge(
                &format!("/api/games/{slug}/latest"),
                &format!("\"round_id\":{id}"),
                Duration::from_secs(180),
            )
            .await?;
    }
    let worker_addr = host_port(&system.stack.edge.worker.url)?;
    let worker_port: u16 = worker_addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("the Worker's port")?;
    let worker_vars = worker_vars(&state, &system)?;

    // ingest posts through a pass-through the matrix can make refuse.
    let to_edge = Cutter::start(&worker_addr).await?;
    let mut restarts = 0u32;
    let mut next_log = |name: &str| {
        restarts += 1;
        logs.join(format!("{name}-{restarts}.log"))
    };
    system.stack.ingest.stop();
    start_ingest_via(&mut system, &to_edge.url, &next_log("ingest"))?;

    // Clients read through a pass-through the matrix can cut.
    let to_clients = Cutter::start(&worker_addr).await?;
    let (key, key_id) = system
        .stack
        .edge
        .create_key(serde_json::json!({
            "name": "fault matrix", "test": true,
            "max_streams": 500, "connects_per_minute": 5000, "requests_per_minute": 5000,
        }))
        .await?;
    let mut specs = Vec::new();
    for game in 0..GAMES.len() {
        specs.push(ClientSpec { game, kind: "raw" });
        specs.push(ClientSpec { game, kind: "raw" });
    }
    let first_es = specs.len();
    for game in 0..GAMES.len() {
        specs.push(ClientSpec {
            game,
            kind: "eventsource",
        });
    }
    let url_of = |game: usize| format!("{}/sse/{}?api_key={key}", to_clients.url, GAMES[game].1);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();
    let seen: SeenLog = Arc::default();
    let collector = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(s) = seen_rx.recv().await {
                if let Ok(mut all) = seen.lock() {
                    all.push(s);
                }
            }
        })
    };
    let mut raw_tasks = Vec::new();
    for (index, spec) in specs.iter().enumerate().take(first_es) {
        raw_tasks.push(tokio::spawn(raw_client(
            index,
            url_of(spec.game),
            seen_tx.clone(),
        )));
    }
    let es_urls: Vec<String> = specs[first_es..].iter().map(|s| url_of(s.game)).collect();
    let mut es = EventSourceClients::start(first_es, &es_urls, seen_tx.clone())?;
    drop(seen_tx);

    // Every client has its `initial` (the seed round) before rounds flow.
    devstack::wait_for_procs(
        &mut system.procs(),
        "every client's initial event",
        Duration::from_secs(120),
        || {
            let ready = (0..specs.len()).all(|c| {
                seen.lock()
                    .map(|s| s.iter().any(|x| x.client == c && x.event == "initial"))
                    .unwrap_or(false)
            });
            async move { ready.then_some(()) }
        },
    )
    .await?;

    let log: Log = Arc::default();
    let stop_generator = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let generator = tokio::spawn(generate(
        system.pg.port,
        rate,
        Arc::clone(&log),
        Arc::clone(&stop_generator),
    ));
    // Random single cuts throughout.
    let single_cuts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cutter_clients = Arc::new(to_clients);
    let random_cuts = !args.no_random_cuts;
    let cuts = {
        let cutter = Arc::clone(&cutter_clients);
        let count = Arc::clone(&single_cuts);
        tokio::spawn(async move {
            let mut pick = 7usize;
            loop {
                tokio::time::sleep(Duration::from_millis(4_000 + (pick % 5) as u64 * 1_000)).await;
                pick = pick.wrapping_mul(31).wrapping_add(17);
                if random_cuts && cutter.cut_one(pick) {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };

    tokio::time::sleep(calm).await;
    let mut runs: Vec<FaultRun> = Vec::new();
    let faults = [
        "kill -9 ingest",
        "kill -9 Debezium engine",
        "kill -9 nats-server",
        "PostgreSQL fast restart",
        "kill -9 workerd",
        "edge refuses batches",
        "every client cut at once",
        "Upstash down 30 s",
        "Upstash refuses the token 30 s",
    ];
    for name in faults {
        if args
            .only
            .as_deref()
            .is_some_and(|only| !name.contains(only))
        {
            continue;
        }
        let label = if name == "edge refuses batches" {
            format!("{name} {} s", args.outage_secs)
        } else {
            name.to_string()
        };
        println!("faults: injecting: {label}");
        let started = Instant::now();
        match name {
            "kill -9 ingest" => {
                system.stack.ingest.kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                start_ingest_via(&mut system, &to_edge.url, &next_log("ingest"))?;
            }
            "kill -9 Debezium engine" => {
                system.debezium.kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                rotate(system.debezium.log_path())?;
                system.debezium = start_debezium(
                    &state.join("debezium"),
                    system.pg.port,
                    &system.stack.nats.url,
                )?;
            }
            "kill -9 nats-server" => {
                let port = port_of(&system.stack.nats.url)?;
                system.stack.nats.proc.kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                system.stack.nats =
                    Nats::start(&state.join("nats"), Some(port), &next_log("nats")).await?;
            }
            "PostgreSQL fast restart" => {
                let port = system.pg.port;
                fast_stop(&mut system.pg)?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                system.pg = Postgres::start(&state.join("pg"), Some(port)).await?;
            }
            "kill -9 workerd" => {
                system.stack.edge.worker.proc.kill();
                tokio::time::sleep(Duration::from_secs(2)).await;
                system.stack.edge.worker =
                    start_worker_again(&state, worker_port, &worker_vars, &next_log("worker"))
                        .await?;
            }
            "edge refuses batches" => {
                to_edge.refuse(true);
                let pid = system.stack.ingest.id();
                let mut samples = Vec::new();
                let until = Instant::now() + Duration::from_secs(args.outage_secs);
                while Instant::now() < until {
                    samples.extend(devstack::process::rss_bytes(pid));
                    tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
                }
                samples.extend(devstack::process::rss_bytes(pid));
                to_edge.refuse(false);
                let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
                if let (Some(first), Some(last), Some(peak)) =
                    (samples.first(), samples.last(), samples.iter().max())
                {
                    println!(
                        "faults: ingest's memory over the {} s edge outage: {:.1} MiB at its start, {:.1} MiB peak, {:.1} MiB at its end",
                        args.outage_secs,
                        mib(*first),
                        mib(*peak),
                        mib(*last)
                    );
                }
            }
            "every client cut at once" => {
                let n = cutter_clients.cut_all();
                println!("faults: cut {n} client connections");
            }
            "Upstash down 30 s" => {
                system.stack.upstash.pause();
                // Clients reconnect while it is down: admitted after
                // LIMITS_TIMEOUT_MS (fail open), none lost.
                tokio::time::sleep(Duration::from_secs(5)).await;
                cutter_clients.cut_all();
                tokio::time::sleep(Duration::from_secs(25)).await;
                system.stack.upstash.resume();
            }
            "Upstash refuses the token 30 s" => {
                // As after a rotation: every call is 401. Clients reconnect
                // meanwhile (admitted failing open), then every stream must
                // be counted in Upstash again.
                system.stack.upstash.refuse_token(true).await?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                cutter_clients.cut_all();
                tokio::time::sleep(Duration::from_secs(25)).await;
                system.stack.upstash.refuse_token(false).await?;
                let counted = every_stream_counted(&mut system, &key_id, specs.len()).await?;
                println!(
                    "faults: every stream counted in Upstash again {:.1} s after it took the token again",
                    counted.as_secs_f64()
                );
            }
            _ => bail!("unknown fault {name}"),
        }
        let healed = Instant::now();
        let caught_up = wait_caught_up(&mut system, &log, &seen, &specs, healed).await;
        if let Some(why) = system.exited() {
            bail!("after {name}: {why}");
        }
        if !es.alive() {
            bail!("the eventsource clients' node process exited");
        }
        runs.push(FaultRun {
            name: label,
            started,
            healed,
            caught_up,
        });
        tokio::time::sleep(calm).await;
    }
    // Enough rounds, then stop and let everything arrive.
    while inserts(&log) < min_rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop_generator.store(true, std::sync::atomic::Ordering::SeqCst);
    generator.await.context("generator")??;
    let end = Instant::now();
    let final_catch_up = wait_caught_up(&mut system, &log, &seen, &specs, end).await;
    cuts.abort();
    for task in raw_tasks {
        task.abort();
    }
    drop(es);
    collector.abort();

    let committed = log.lock().map(|l| l.clone()).unwrap_or_default();
    check_against_postgres(&system.pg, &committed)?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    // Every event every client saw, for a post-mortem.
    let mut trace = String::new();
    for s in &seen {
        trace.push_str(&format!(
            "{} {} {} {}\n",
            s.client,
            s.event,
            s.id.as_deref().unwrap_or("-"),
            s.data
        ));
    }
    std::fs::write(logs.join("clients.log"), trace)?;
    let report = analyse(&committed, &seen, &specs, &runs);
    println!(
        "faults: {} clients ({} raw, {} npm eventsource), {} random single cuts, rate {rate}/s",
        specs.len(),
        first_es,
        specs.len() - first_es,
        single_cuts.load(std::sync::atomic::Ordering::SeqCst)
    );
    println!("{}", report.table);
    if final_catch_up.is_none() {
        println!("faults: some client never caught up at the end");
    }
    println!(
        "faults: {} injected, committed {}, delivered {}, lost {}, duplicated {}, out of order {}",
        runs.len(),
        report.committed,
        report.delivered,
        report.lost,
        report.duplicated,
        report.out_of_order
    );
    if report.lost + report.duplicated + report.out_of_order + report.unexpected > 0
        || final_catch_up.is_none()
        || runs.iter().any(|r| r.caught_up.is_none())
    {
        bail!(
            "the fault matrix found lost, duplicated or reordered rounds (logs: {})",
            logs.display()
        );
    }
    Ok(())
}

/// Starts ingest again (its log: `log`), posting to `edge_url`.
fn start_ingest_via(system: &mut Pipeline, edge_url: &str, log: &Path) -> anyhow::Result<()> {
    system.stack.ingest = start_ingest(
        &system.stack.nats.url,
        edge_url,
        &system.stack.edge.secret,
        log,
    )?;
    Ok(())
}

fn host_port(url: &str) -> anyhow::Result<String> {
    Ok(url
        .strip_prefix("http://")
        .context("an http:// URL")?
        .trim_end_matches('/')
        .to_string())
}

fn port_of(url: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in {url}"))
}

/// Moves a log aside so a restarted process does not truncate it.
fn rotate(log: &Path) -> anyhow::Result<()> {
    for n in 1.. {
        let aside = log.with_extension(format!("log.{n}"));
        if !aside.exists() {
            std::fs::rename(log, aside)?;
            return Ok(());
        }
    }
    Ok(())
}

/// The Worker's variables as the stack started it, for starting it again.
fn worker_vars(state: &Path, system: &Pipeline) -> anyhow::Result<Vec<(&'static str, String)>> {
    let secrets = devstack::edge::Secrets::load_or_create(state)?;
    let mut vars = vec![
        ("INGEST_SECRET", secrets.ingest_secret),
        ("ADMIN_TOKEN", secrets.admin_token),
        ("TOKEN_SECRET", secrets.token_secret),
        ("HEARTBEAT_SECS", "5".to_string()),
        ("LIMITS_TIMEOUT_MS", "5000".to_string()),
    ];
    vars.extend(system.stack.upstash.worker_vars());
    Ok(vars)
}

async fn start_worker_again(
    state: &Path,
    port: u16,
    vars: &[(&'static str, String)],
    log: &Path,
) -> anyhow::Result<Worker> {
    // The killed workerd's port may take a moment to be free again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match Worker::start(WorkerOptions {
            port: Some(port),
            persist: &state.join("wrangler"),
            log,
            vars: vars.to_vec(),
        })
        .await
        {
            Ok(worker) => return Ok(worker),
            Err(err)
                if attempt < 5
                    && err
                        .downcast_ref::<devstack::Exited>()
                        .is_some_and(devstack::Exited::port_taken) =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// PostgreSQL's fast shutdown (SIGINT): open transactions are rolled back,
/// clients disconnected, and the server waits for nothing.
fn fast_stop(pg: &mut Postgres) -> anyhow::Result<()> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pg.proc.id())?);
    nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGINT)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.proc.exited().is_none() {
        if Instant::now() > deadline {
            bail!("PostgreSQL did not stop within 60 s of a fast shutdown");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn inserts(log: &Log) -> usize {
    log.lock()
        .map(|l| {
            l.iter()
                .filter(|c| matches!(c.op, Op::Insert { .. }))
                .count()
        })
        .unwrap_or(0)
}

/// Commits INSERTs (and every 10th op an UPDATE of a recent round, every
/// 25th a DELETE of an old one) at `rate` per second, round-robin over the
/// games, retrying through PostgreSQL restarts: an INSERT whose commit was
/// in doubt is retried with the same id, and a unique violation then says
/// it had committed.
async fn generate(
    pg_port: u16,
    rate: f64,
    log: Log,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut next_id: i64 = 100;
    let mut recent: Vec<Vec<i64>> = vec![Vec::new(); GAMES.len()];
    let mut versions: HashMap<i64, u32> = HashMap::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut n: u64 = 0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        n += 1;
        let game = (n as usize) % GAMES.len();
        let game_id = GAMES[game].0;
        let op = if n.is_multiple_of(10) && !recent[game].is_empty() {
            // Alternately one of the newest rounds and one of the oldest
            // still listed (soon older than the edge's history).
            let list = &recent[game];
            let k = n as usize / 10;
            let back = (k / 2) % list.len().min(20);
            let id = if k.is_multiple_of(2) {
                list[list.len() - 1 - back]
            } else {
                list[back]
            };
            let version = versions.entry(id).or_insert(0);
            *version += 1;
            Op::Update {
                id,
                game,
                version: *version,
            }
        } else if n.is_multiple_of(25) && recent[game].len() > 60 {
            Op::Delete
        } else {
            next_id += 1;
            Op::Insert { id: next_id, game }
        };
        let sql = match &op {
            Op::Insert { id, .. } => format!(
                "INSERT INTO rounds (id, game_id, finished_at, extras) VALUES ({id}, {game_id}, now(), '{{\"n\": {id}}}')"
            ),
            Op::Update { id, version, .. } => format!(
                "UPDATE rounds SET extras = '{{\"n\": {id}, \"v\": {version}}}' WHERE id = {id}"
            ),
            // The oldest still listed; it was delivered long ago.
            Op::Delete => format!("DELETE FROM rounds WHERE id = {}", recent[game].remove(0)),
        };
        // Retries until committed (or known to be).
        loop {
            if client.is_none() {
                client = connect(pg_port).await;
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            let Some(c) = &client else { continue };
            match c.batch_execute(&sql).await {
                Ok(()) => break,
                Err(err)
                    if err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
                {
                    break;
                }
                Err(_) => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        if let Op::Insert { id, .. } = op {
            recent[game].push(id);
        }
        if let Ok(mut log) = log.lock() {
            log.push(Committed {
                op,
                at: Instant::now(),
            });
        }
    }
    Ok(())
}

async fn connect(port: u16) -> Option<tokio_postgres::Client> {
    let config = format!("host=127.0.0.1 port={port} user=postgres dbname=games connect_timeout=5");
    let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(client)
}

/// The key of an expected or received item: (is update, round id, version).
type Item = (bool, i64, u32);

fn expected_for(committed: &[Committed], game: usize) -> Vec<(Item, Instant)> {
    committed
        .iter()
        .filter_map(|c| match c.op {
            Op::Insert { id, game: g } if g == game => Some(((false, id, 0), c.at)),
            Op::Update {
                id,
                game: g,
                version,
            } if g == game => Some(((true, id, version), c.at)),
            _ => None,
        })
        .collect()
}

fn item_of(seen: &Seen) -> Option<Item> {
    let update = match seen.event.as_str() {
        "message" => false,
        "update" => true,
        _ => return None,
    };
    let round: serde_json::Value = serde_json::from_str(&seen.data).ok()?;
    let id = round["round_id"].as_i64()?;
    let extras: serde_json::Value = serde_json::from_str(round["extras"].as_str()?).ok()?;
    // A message replayed on resume carries the round as it is now (perhaps
    // updated since): only an update's version names the update.
    let version = if update {
        extras["v"].as_u64().unwrap_or(0) as u32
    } else {
        0
    };
    Some((update, id, version))
}

/// What each client lacks of what was committed before `until`.
fn behind(
    committed: &[Committed],
    seen: &[Seen],
    specs: &[ClientSpec],
    until: Instant,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (c, spec) in specs.iter().enumerate() {
        let have: HashSet<Item> = seen
            .iter()
            .filter(|s| s.client == c)
            .filter_map(item_of)
            .collect();
        let missing: Vec<Item> = expected_for(committed, spec.game)
            .into_iter()
            .filter(|(item, at)| *at <= until && !have.contains(item))
            .map(|(item, _)| item)
            .collect();
        if !missing.is_empty() {
            let last: Vec<String> = seen
                .iter()
                .filter(|s| s.client == c)
                .rev()
                .take(3)
                .map(|s| format!("{} {:?} {:.80}", s.event, s.id, s.data))
                .collect();
            lines.push(format!(
                "client {c} ({} of {}) lacks {} items, first {:?}; its last events: {last:?}",
                spec.kind,
                GAMES[spec.game].1,
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
    }
    lines
}

/// Whether every client has every item committed before `until`.
fn caught_up(committed: &[Committed], seen: &[Seen], specs: &[ClientSpec], until: Instant) -> bool {
    let mut have: Vec<HashSet<Item>> = vec![HashSet::new(); specs.len()];
    for s in seen {
        if let Some(item) = item_of(s)
            && let Some(set) = have.get_mut(s.client)
        {
            set.insert(item);
        }
    }
    specs.iter().enumerate().all(|(c, spec)| {
        expected_for(committed, spec.game)
            .iter()
            .filter(|(_, at)| *at <= until)
            .all(|(item, _)| have[c].contains(item))
    })
}

async fn wait_caught_up(
    system: &mut Pipeline,
    log: &Log,
    seen: &SeenLog,
    specs: &[ClientSpec],
    since: Instant,
) -> Option<Duration> {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let committed = log.lock().map(|l| l.clone()).unwrap_or_default();
        let done = seen
            .lock()
            .map(|s| caught_up(&committed, &s, specs, since))
            .unwrap_or(false);
        if done {
            return Some(since.elapsed());
        }
        if let Some(why) = system.exited() {
            println!("faults: {why}");
            return None;
        }
        if Instant::now() > deadline {
            println!("faults: clients still behind {CATCH_UP:?} after the fault healed");
            if let Ok(s) = seen.lock() {
                for line in behind(&committed, &s, specs, since) {
                    println!("faults:   {line}");
                }
            }
            return None;
        }
        // Checking is O(everything seen): not too often on a busy machine.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// PostgreSQL holds exactly the inserted rounds that were not deleted: the
/// generator's record of what committed is the truth it claims to be.
fn check_against_postgres(pg: &Postgres, committed: &[Committed]) -> anyhow::Result<()> {
    let rows = pg.sql("games", "SELECT count(*) FROM rounds WHERE id >= 100")?;
    let in_db: usize = rows.trim().parse().context("count of rounds")?;
    let inserted = committed
        .iter()
        .filter(|c| matches!(c.op, Op::Insert { .. }))
        .count();
    let deleted = committed
        .iter()
        .filter(|c| matches!(c.op, Op::Delete))
        .count();
    if in_db != inserted - deleted {
        bail!(
            "PostgreSQL holds {in_db} rounds, the generator committed {inserted} and deleted {deleted}"
        );
    }
    Ok(())
}

struct Report {
    table: String,
    committed: usize,
    delivered: usize,
    lost: usize,
    duplicated: usize,
    out_of_order: usize,
    unexpected: usize,
}

fn analyse(
    committed: &[Committed],
    seen: &[Seen],
    specs: &[ClientSpec],
    runs: &[FaultRun],
) -> Report {
    // Per client: first arrival of each item, duplicates, reorderings.
    let mut received: Vec<Vec<(Item, Instant)>> = vec![Vec::new(); specs.len()];
    let mut resets = vec![0usize; specs.len()];
    for s in seen {
        if s.event == "reset" {
            resets[s.client] += 1;
        }
        if let Some(item) = item_of(s) {
            received[s.client].push((item, s.at));
        }
    }
    // Which window (0: before the first fault) an instant falls in.
    let window = |at: Instant| runs.iter().filter(|r| r.started <= at).count();
    let windows = runs.len() + 1;
    let mut committed_in = vec![0usize; windows];
    let mut updates_in = vec![0usize; windows];
    let mut delivered_in = vec![0usize; windows];
    let mut lost_in = vec![0usize; windows];
    let mut dup_in = vec![0usize; windows];
    let mut ooo_in = vec![0usize; windows];
    let mut unexpected = 0usize;
    let mut when: HashMap<(usize, Item), Instant> = HashMap::new();
    for (game, _) in GAMES.iter().enumerate() {
        for (item, at) in expected_for(committed, game) {
            when.insert((game, item), at);
            if item.0 {
                updates_in[window(at)] += 1;
            } else {
                committed_in[window(at)] += 1;
            }
        }
    }
    let mut missing_somewhere: HashSet<(usize, Item)> = HashSet::new();
    let mut examples: Vec<String> = Vec::new();
    for (c, spec) in specs.iter().enumerate() {
        let expected = expected_for(committed, spec.game);
        let position: HashMap<Item, usize> = expected
            .iter()
            .enumerate()
            .map(|(i, (item, _))| (*item, i))
            .collect();
        let mut got: HashSet<Item> = HashSet::new();
        let mut highest: Option<usize> = None;
        for (item, _) in &received[c] {
            let Some(&pos) = position.get(item) else {
                unexpected += 1;
                continue;
            };
            let at = expected[pos].1;
            if !got.insert(*item) {
                dup_in[window(at)] += 1;
                continue;
            }
            if let Some(h) = highest.filter(|h| pos < *h) {
                ooo_in[window(at)] += 1;
                if examples.len() < 10 {
                    examples.push(format!(
                        "client {c} ({} of {}): {item:?} after {:?}",
                        spec.kind, GAMES[spec.game].1, expected[h].0
                    ));
                }
            }
            highest = Some(highest.map_or(pos, |h| h.max(pos)));
        }
        for (item, _) in &expected {
            if !got.contains(item) {
                missing_somewhere.insert((spec.game, *item));
            }
        }
    }
    for ((game, item), at) in &when {
        if item.0 {
            continue;
        }
        if missing_somewhere.contains(&(*game, *item)) {
            lost_in[window(*at)] += 1;
        } else {
            delivered_in[window(*at)] += 1;
        }
    }
    // Lost updates count as lost too.
    for (game, item) in &missing_somewhere {
        if item.0
            && let Some(at) = when.get(&(*game, *item))
        {
            lost_in[window(*at)] += 1;
        }
    }
    let mut table = String::from(
        "| fault | rounds committed | updates | delivered to every client | lost | duplicated | out of order | caught up after |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for w in 0..windows {
        let (name, caught) = if w == 0 {
            ("(calm before the first fault)".to_string(), "-".to_string())
        } else {
            let run = &runs[w - 1];
            let held = run
                .healed
                .saturating_duration_since(run.started)
                .as_secs_f64();
            (
                format!("{} (held {held:.0} s)", run.name),
                run.caught_up
                    .map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
            )
        };
        table.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {caught} |\n",
            committed_in[w], updates_in[w], delivered_in[w], lost_in[w], dup_in[w], ooo_in[w]
        ));
    }
    for (c, spec) in specs.iter().enumerate() {
        table.push_str(&format!(
            "client {c}: {} of {}, {} events\n",
            spec.kind,
            GAMES[spec.game].1,
            received[c].len()
        ));
    }
    if resets.iter().any(|r| *r > 0) {
        table.push_str(&format!("resets seen per client: {resets:?}\n"));
    }
    if unexpected > 0 {
        table.push_str(&format!("events no commit explains: {unexpected}\n"));
    }
    for example in &examples {
        table.push_str(&format!("out of order: {example}\n"));
    }
    Report {
        table,
        committed: committed_in.iter().sum(),
        delivered: delivered_in.iter().sum(),
        lost: lost_in.iter().sum(),
        duplicated: dup_in.iter().sum(),
        out_of_order: ooo_in.iter().sum(),
        unexpected,
    }
}
