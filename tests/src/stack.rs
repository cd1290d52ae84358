//! The processes of the local stack, each started on loopback and awaited
//! until it answers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;

use crate::edge::Edge;
use crate::process::Proc;
use crate::upstash_local::{Redis, UpstashLocal, start_pair, upstash_local_binary};
use crate::{logged_after, repo_root, wait_for_proc};

/// How long any one component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The Debezium `topic.prefix` and JetStream stream name used locally.
pub const PREFIX: &str = "dbserver1";

fn tool(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(fallback))
}

/// nats-server with JetStream, storing on disk under a given directory.
pub struct Nats {
    /// The server process.
    pub proc: Proc,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

/// The nats-server binary: `$NATS_SERVER_BIN` (scripts/setup.sh exports it);
/// without it, where setup.sh installs by default, then on PATH.
pub fn nats_server_binary() -> PathBuf {
    let default_install = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/gamefeed/venv/bin/nats-server"))
        .filter(|p| p.exists());
    match default_install {
        Some(path) if std::env::var_os("NATS_SERVER_BIN").is_none() => path,
        _ => tool("NATS_SERVER_BIN", "nats-server"),
    }
}

impl Nats {
    /// Starts nats-server (`$NATS_SERVER_BIN`, set by scripts/setup.sh) on
    /// `port`, or on a port it picks itself when `None` (`-p -1`, so no
    /// other process can take it in between), with JetStream data in `dir`,
    /// and waits until a client connects. The port is read back from its
    /// log ("Listening for client connections on 127.0.0.1:PORT") in both
    /// cases, so what answers is always this server.
    pub async fn start(dir: &Path, port: Option<u16>, log: &Path) -> anyhow::Result<Self> {
        let bin = nats_server_binary();
        std::fs::create_dir_all(dir)?;
        // -1: a random port, bound by nats-server itself.
        let port = port.map_or_else(|| "-1".to_string(), |port| port.to_string());
        let mut proc = Proc::spawn(
            "nats-server",
            Command::new(&bin)
                .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
                .arg(dir),
            log,
        )
        .with_context(|| {
            format!(
                "{}: run scripts/setup.sh to install nats-server",
                bin.display()
            )
        })?;
        let proc_log = proc.log_path().to_path_buf();
        let url = wait_for_proc(&mut proc, "nats-server", READY_TIMEOUT, || {
            let address = logged_after(&proc_log, "Listening for client connections on ");
            async move {
                let url = format!("nats://{}", address?);
                async_nats::connect(url.as_str()).await.ok().map(|_| url)
            }
        })
        .await?;
        Ok(Self { proc, url })
    }

    /// Starts nats-server as [`Nats::start`] does and creates Debezium's
    /// stream ([`create_stream`]); returns it with a JetStream context.
    pub async fn start_with_stream(
        dir: &Path,
        port: Option<u16>,
        log: &Path,
    ) -> anyhow::Result<(Self, jetstream::Context)> {
        let nats = Self::start(dir, port, log).await?;
        let js = nats.jetstream().await?;
        create_stream(&js).await?;
        Ok((nats, js))
    }

    /// A connected JetStream context.
    pub async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(
            async_nats::connect(self.url.as_str()).await?,
        ))
    }
}

/// Creates the stream Debezium publishes into (subjects `<prefix>.>`), as an
/// operator does before starting the connector.
pub async fn create_stream(js: &jetstream::Context) -> anyhow::Result<()> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: PREFIX.to_string(),
        subjects: vec![format!("{PREFIX}.>")],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .context("creating the JetStream stream")?;
    Ok(())
}

/// The Worker under `wrangler dev`, with local KV and Durable Object state.
pub struct Worker {
    /// The wrangler process (workerd runs in its group).
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

/// Settings of a local Worker.
pub struct WorkerOptions<'a> {
    /// HTTP port; `None`: a free one wrangler binds itself (port 0), read
    /// back from its log into [`Worker::url`].
    pub port: Option<u16>,
    /// Where wrangler keeps KV and Durable Object state.
    pub persist: &'a Path,
    /// Log file.
    pub log: &'a Path,
    /// Variables and secrets, written to a file only the owner can read and
    /// passed as `--env-file` (never on the command line, where `ps` shows
    /// them to every user of the machine).
    pub vars: Vec<(&'a str, String)>,
}

fn wrangler() -> Command {
    let root = repo_root();
    let bin_dir = root.join("node_modules/.bin");
    let mut cmd = Command::new(bin_dir.join("wrangler"));
    // Node 22 from node_modules must win over an older system node.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin_dir];
    paths.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(paths) {
        cmd.env("PATH", joined);
    }
    cmd.current_dir(root)
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI_DISABLE_UPDATE_CHECK", "1");
    cmd
}

/// Waits until the Worker that `proc` started answers `/healthz` at the URL
/// it logged after `prefix` (`Ready on ` for wrangler), and returns that URL
/// without its trailing slash. Fails at once, with the log tail, when `proc`
/// exits. The URL comes from the process's own log, so the port may be one
/// it bound itself (port 0), and what answers is always this Worker.
async fn ready_url(proc: &mut Proc, what: &str, prefix: &str) -> anyhow::Result<String> {
    let http = crate::http_client();
    let log = proc.log_path().to_path_buf();
    wait_for_proc(proc, what, READY_TIMEOUT, || {
        let url = logged_after(&log, prefix)
            .filter(|url| url.starts_with("http://"))
            .map(|url| url.trim_end_matches('/').to_string());
        let http = http.clone();
        async move {
            let url = url?;
            let response = http.get(format!("{url}/healthz")).send().await.ok()?;
            response.status().is_success().then_some(url)
        }
    })
    .await
}

impl Worker {
    /// Starts `wrangler dev` on the already built Worker and waits for
    /// `/healthz`.
    pub async fn start(options: WorkerOptions<'_>) -> anyhow::Result<Self> {
        let built = repo_root().join("worker/build/index.js");
        if !built.exists() {
            bail!(
                "{} is missing: run scripts/build-worker.sh first",
                built.display()
            );
        }
        let mut cmd = wrangler();
        cmd.args([
            "dev",
            "--ip",
            "127.0.0.1",
            "--show-interactive-dev-session=false",
        ])
        // Port 0: wrangler binds a free port itself and logs it ("Ready on
        // http://127.0.0.1:PORT"); so does the inspector, whose port we
        // never use.
        .args(["--port", &options.port.unwrap_or(0).to_string()])
        .args(["--inspector-port", "0"])
        .arg("--persist-to")
        .arg(options.persist)
        // wrangler's dev registry (~/.config/.wrangler/registry by default)
        // is shared by every wrangler dev on the machine, and every test's
        // Worker has the same name: each gets its own.
        .env(
            "WRANGLER_REGISTRY_PATH",
            options.persist.join("dev-registry"),
        )
        // The Worker is already built; wrangler's [build] step is skipped.
        .env("GAMEFEED_SKIP_BUILD", "1");
        cmd.arg("--env-file")
            .arg(write_env_file(options.persist, &options.vars)?);
        let mut proc = Proc::spawn("wrangler dev", &mut cmd, options.log)?;
        let url = ready_url(&mut proc, "the Worker under wrangler dev", "Ready on ").await?;
        Ok(Self { proc, url })
    }
}

/// Writes `vars` as a dotenv file in `dir` (mode 0600) and returns its path.
fn write_env_file(dir: &Path, vars: &[(&str, String)]) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("worker.env");
    let mut text = String::new();
    for (name, value) in vars {
        if value.contains(['\n', '\r']) {
            bail!("variable {name} spans lines: not supported in an env file");
        }
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!("{name}=\"{quoted}\"\n"));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(path)
}

impl Worker {
    /// Starts the built Worker under Miniflare with its own socket on `port`
    /// (`bench/miniflare.mjs`; `None`: a free port it binds itself, read back
    /// from the `ready <url>` line it prints), without wrangler dev's proxy in
    /// front: for benchmarks, where that proxy would dominate the figures.
    /// State lives in memory.
    pub async fn start_direct(
        port: Option<u16>,
        vars: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let root = repo_root();
        let mut cmd = Command::new(root.join("node_modules/.bin/node"));
        cmd.arg(root.join("bench/miniflare.mjs"))
            .arg(port.unwrap_or(0).to_string())
            .current_dir(&root);
        for (name, value) in vars {
            cmd.env(name, value);
        }
        let mut proc = Proc::spawn("miniflare", &mut cmd, log)?;
        let url = ready_url(&mut proc, "the Worker under Miniflare", "ready ").await?;
        Ok(Self { proc, url })
    }
}

/// The ingest binary, which `cargo build -p ingest` puts in the target dir.
/// `GAMEFEED_INGEST_BIN` overrides it (the benchmark runs a release build).
pub fn ingest_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("GAMEFEED_INGEST_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("debug/ingest");
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build -p ingest` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts ingest against `nats_url` and `edge_url`.
pub fn start_ingest(
    nats_url: &str,
    edge_url: &str,
    secret: &str,
    log: &Path,
) -> anyhow::Result<Proc> {
    Proc::spawn(
        "ingest",
        Command::new(ingest_binary()?)
            .env("NATS_URL", nats_url)
            .env("NATS_STREAM", PREFIX)
            .env("DEBEZIUM_PREFIX", PREFIX)
            .env("EDGE_URL", edge_url)
            .env("INGEST_SECRET", secret)
            // Port 0: ingest binds a free one itself and logs it (see
            // [`ingest_ops_url`]).
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info,ingest=debug"),
        log,
    )
}

/// The base URL of the operations endpoint (`/healthz`, `/metrics`) of an
/// ingest that [`start_ingest`] started, read back from its log once it
/// answers. Fails at once, with the log tail, when ingest exits.
pub async fn ingest_ops_url(ingest: &mut Proc) -> anyhow::Result<String> {
    ready_url(
        ingest,
        "ingest's operations endpoint",
        "operations endpoint on ",
    )
    .await
}

/// Ports and places of a whole local stack.
pub struct StackOptions {
    /// Everything the stack writes goes under here.
    pub state_dir: PathBuf,
    /// nats-server's client port; `None`: one it binds itself.
    pub nats_port: Option<u16>,
    /// The Worker's HTTP port; `None`: one it binds itself.
    pub worker_port: Option<u16>,
    /// `HEARTBEAT_SECS` of the Worker.
    pub heartbeat_secs: u64,
}

impl StackOptions {
    /// State under `state_dir`, every port a free one that each process
    /// binds itself (read back into `nats.url` and `edge.worker.url`): for
    /// tests.
    pub fn on_free_ports(state_dir: &Path, heartbeat_secs: u64) -> anyhow::Result<Self> {
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            nats_port: None,
            worker_port: None,
            heartbeat_secs,
        })
    }
}

/// nats-server, the Worker and ingest, wired together, with a test API key,
/// and per-key limits on: redis-server behind `upstash-local`.
/// Fields drop in reverse order of start: ingest first.
pub struct Stack {
    /// ingest.
    pub ingest: Proc,
    /// The Worker, with its secrets.
    pub edge: Edge,
    /// The limits store the Worker uses, as Upstash would be in production.
    pub upstash: UpstashLocal,
    /// The Redis behind it (state under `<state_dir>/redis`, kept across runs).
    pub redis: Redis,
    /// nats-server.
    pub nats: Nats,
    /// A key readable for every game, created through the admin route.
    pub api_key: String,
    /// Its id (admin routes: usage, revoke).
    pub api_key_id: String,
    /// Where the logs are.
    pub log_dir: PathBuf,
}

/// The state directory's test key if the Worker still accepts it, else a new
/// one created through the admin route and saved next to the secrets.
async fn test_key(edge: &Edge, dir: &Path) -> anyhow::Result<(String, String)> {
    let mut secrets = crate::edge::Secrets::load_or_create(dir)?;
    if let (Some(key), Some(id)) = (&secrets.api_key, &secrets.api_key_id)
        && edge.get("/api/games", key).await?.0 == 200
    {
        return Ok((key.clone(), id.clone()));
    }
    // Limits a demo page and a few curl streams stay far below, so a new
    // user sees limits on without tripping over them.
    let key = edge
        .create_key(serde_json::json!({
            "name": "local test key",
            "test": true,
            "max_streams": 20,
            "connects_per_minute": 120,
            "requests_per_minute": 600,
        }))
        .await?;
    secrets.api_key = Some(key.0.clone());
    secrets.api_key_id = Some(key.1.clone());
    secrets.save(dir)?;
    Ok(key)
}

impl Stack {
    /// Starts everything and waits until each part is ready.
    pub async fn up(options: StackOptions) -> anyhow::Result<Self> {
        let logs = options.state_dir.join("logs");
        let (nats, _) = Nats::start_with_stream(
            &options.state_dir.join("nats"),
            options.nats_port,
            &logs.join("nats.log"),
        )
        .await?;
        let upstash_token = crate::fixtures::random_secret()?;
        let (redis, upstash) = start_pair(
            &options.state_dir.join("redis"),
            &upstash_local_binary()?,
            &upstash_token,
            true,
        )
        .await?;
        let heartbeat = options.heartbeat_secs.to_string();
        let edge = Edge::start_in(
            &options.state_dir,
            options.worker_port,
            &[
                ("HEARTBEAT_SECS", heartbeat.as_str()),
                ("UPSTASH_REDIS_REST_URL", upstash.url.as_str()),
                ("UPSTASH_REDIS_REST_TOKEN", upstash_token.as_str()),
                // The endpoint is local, but the machine running the whole
                // stack may be busy: wait longer than production's 200 ms
                // before letting a stream in unchecked.
                ("LIMITS_TIMEOUT_MS", "5000"),
            ],
        )
        .await?;
        let (api_key, api_key_id) = test_key(&edge, &options.state_dir).await?;
        let ingest = start_ingest(
            &nats.url,
            &edge.worker.url,
            &edge.secret,
            &logs.join("ingest.log"),
        )?;
        Ok(Self {
            ingest,
            edge,
            upstash,
            redis,
            nats,
            api_key,
            api_key_id,
            log_dir: logs,
        })
    }

    /// Publishes one Debezium event on `subject` and waits for JetStream's ack.
    pub async fn publish(&self, subject: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        let js = self.nats.jetstream().await?;
        js.publish(subject.to_string(), payload.into())
            .await?
            .await?;
        Ok(())
    }
}
