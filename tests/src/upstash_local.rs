//! The local stand-in for Upstash Redis (docs/protocol.md#per-key-limits-and-usage): a real `redis-server`
//! on a unix socket, and `upstash-local` (this package's binary) speaking
//! Upstash's REST protocol in front of it. The Worker is given
//! [`UpstashLocal::worker_vars`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::process::Proc;
use crate::{logged_after, repo_root, wait_for_proc};

/// How long either process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The line `upstash-local` prints once it listens, before its URL.
const LISTENING: &str = "upstash-local listening on ";

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes
/// with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A `redis-server` listening on a unix socket only (`--port 0` disables
/// TCP, so no port can collide), its data in a directory of its own.
pub struct Redis {
    /// The server process.
    pub proc: Proc,
    /// Its unix socket, `<dir>/redis.sock`.
    pub socket: PathBuf,
    /// `redis+unix://<socket>`, for `upstash-local --redis-url`.
    pub url: String,
}

impl Redis {
    /// Starts a throwaway `redis-server` (no snapshot, no append-only file)
    /// with its socket in `dir`, and waits until it answers PING.
    pub async fn start(dir: &Path, log: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, log, false).await
    }

    /// Starts `redis-server` as [`Redis::start`] does; with `persist`, its
    /// data survives a restart in `dir` (append-only file, `--appendonly
    /// yes`), as the main job's resumable state needs. `$REDIS_SERVER_BIN`
    /// overrides the binary (default: `redis-server` on PATH, which
    /// scripts/setup.sh installs).
    pub async fn start_with(dir: &Path, log: &Path, persist: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::path::absolute(dir)?;
        let socket = dir.join("redis.sock");
        let socket_text = socket
            .to_str()
            .with_context(|| format!("{} is not UTF-8", socket.display()))?
            .to_string();
        if socket_text.len() > MAX_SOCKET_PATH {
            bail!(
                "{socket_text} is longer than the {MAX_SOCKET_PATH} bytes a unix socket path may have: \
                 use a shorter state directory"
            );
        }
        // A socket file left by a killed server would make the wait below
        // look at nothing; redis-server replaces it anyway.
        let _ = std::fs::remove_file(&socket);
        let bin = std::env::var_os("REDIS_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let mut command = Command::new(&bin);
        command
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(&dir)
            .args(["--save", "", "--daemonize", "no"])
            .args(["--appendonly", if persist { "yes" } else { "no" }]);
        let mut proc = Proc::spawn("redis-server", &mut command, log).with_context(|| {
            format!(
                "{}: run scripts/setup.sh to install redis-server",
                bin.display()
            )
        })?;
        let url = format!("redis+unix://{socket_text}");
        let client = redis::Client::open(url.as_str())
            .with_context(|| format!("{url} is not a Redis URL"))?;
        wait_for_proc(&mut proc, "redis-server", READY_TIMEOUT, || async {
            if !socket.exists() {
                return None;
            }
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            // While it loads its append-only file it answers LOADING.
            let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
            (pong == "PONG").then_some(())
        })
        .await?;
        Ok(Self { proc, socket, url })
    }
}

/// `upstash-local` in front of a [`Redis`], on a loopback port of its own
/// choosing.
pub struct UpstashLocal {
    /// The `upstash-local` process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`: Upstash's REST URL.
    pub url: String,
    /// The bearer token it requires.
    pub token: String,
    /// Whether [`UpstashLocal::pause`] stopped it.
    paused: AtomicBool,
}

impl UpstashLocal {
    /// Starts the `upstash-local` binary `bin` (see [`upstash_local_binary`])
    /// in front of `redis` with `--listen 127.0.0.1:0`, and reads its URL
    /// back from the line it prints once it listens.
    pub async fn start(bin: &Path, redis: &Redis, token: &str, log: &Path) -> anyhow::Result<Self> {
        let mut command = Command::new(bin);
        command
            .args(["--listen", "127.0.0.1:0", "--redis-url", &redis.url])
            .env("UPSTASH_LOCAL_TOKEN", token)
            .env("RUST_BACKTRACE", "1");
        let mut proc = Proc::spawn("upstash-local", &mut command, log).with_context(|| {
            format!(
                "{}: build it with `cargo build -p devstack --bin upstash-local`",
                bin.display()
            )
        })?;
        let log = proc.log_path().to_path_buf();
        let url = wait_for_proc(&mut proc, "upstash-local", READY_TIMEOUT, || {
            let found = logged_after(&log, LISTENING);
            async move { found }
        })
        .await?;
        Ok(Self {
            proc,
            url,
            token: token.to_string(),
            paused: AtomicBool::new(false),
        })
    }

    /// Stops the process (SIGSTOP) without closing its socket: connections
    /// are still accepted by the kernel but nothing answers, as with an
    /// endpoint that hangs. [`UpstashLocal::resume`] undoes it; dropping it
    /// resumes it first, so it can be stopped.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.signal(Signal::SIGSTOP);
    }

    /// Lets a [`UpstashLocal::pause`]d process run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Answers every request `401` from now on, as Upstash does once the
    /// token was rotated (`true`), or takes the token again (`false`);
    /// returns once `upstash-local` said it did.
    pub async fn refuse_token(&self, refuse: bool) -> anyhow::Result<()> {
        let (signal, said) = if refuse {
            (Signal::SIGUSR1, "upstash-local: refusing every token")
        } else {
            (Signal::SIGUSR2, "upstash-local: taking the token again")
        };
        let log = self.proc.log_path().to_path_buf();
        let before = std::fs::read_to_string(&log)
            .map(|text| text.matches(said).count())
            .unwrap_or(0);
        self.signal(signal);
        crate::wait_for(said, READY_TIMEOUT, || async {
            let now = std::fs::read_to_string(&log).ok()?.matches(said).count();
            (now > before).then_some(())
        })
        .await
    }

    fn signal(&self, signal: Signal) {
        if let Ok(raw) = i32::try_from(self.proc.id()) {
            let _ = killpg(Pid::from_raw(raw), signal);
        }
    }

    /// The Worker's settings for it: `UPSTASH_REDIS_REST_URL` and
    /// `UPSTASH_REDIS_REST_TOKEN` (Upstash's own names).
    pub fn worker_vars(&self) -> [(&'static str, String); 2] {
        [
            ("UPSTASH_REDIS_REST_URL", self.url.clone()),
            ("UPSTASH_REDIS_REST_TOKEN", self.token.clone()),
        ]
    }
}

impl Drop for UpstashLocal {
    fn drop(&mut self) {
        // A stopped process would sit on SIGTERM until SIGKILL, 10 s later.
        if self.paused.load(Ordering::SeqCst) {
            self.resume();
        }
    }
}

/// Starts a [`Redis`] with its data and socket in `dir` (`persist` as in
/// [`Redis::start_with`]) and an [`UpstashLocal`] (binary `bin`) in front of
/// it; their logs are `dir/redis.log` and `dir/upstash-local.log`.
pub async fn start_pair(
    dir: &Path,
    bin: &Path,
    token: &str,
    persist: bool,
) -> anyhow::Result<(Redis, UpstashLocal)> {
    let redis = Redis::start_with(dir, &dir.join("redis.log"), persist).await?;
    let upstash = UpstashLocal::start(bin, &redis, token, &dir.join("upstash-local.log")).await?;
    Ok((redis, upstash))
}

/// The `upstash-local` binary: `$GAMEFEED_UPSTASH_LOCAL_BIN`, else the one
/// next to the running executable (the `devstack` binary; an integration
/// test runs from `deps/` one level below), else the one in
/// `$CARGO_TARGET_DIR/debug` (default `target/debug`). Integration tests of
/// this package can pass `env!("CARGO_BIN_EXE_upstash-local")` to
/// [`UpstashLocal::start`] instead.
pub fn upstash_local_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("GAMEFEED_UPSTASH_LOCAL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let name = format!("upstash-local{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let dir = exe.parent();
        candidates.extend(dir.map(|d| d.join(&name)));
        candidates.extend(dir.and_then(Path::parent).map(|d| d.join(&name)));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let fallback = target.join("debug").join(&name);
    candidates.push(fallback.clone());
    match candidates.into_iter().find(|c| c.is_file()) {
        Some(bin) => Ok(bin),
        None => bail!(
            "{} is missing: run `cargo build -p devstack --bin upstash-local` first",
            fallback.display()
        ),
    }
}

/// A Worker with per-key limits on: `redis-server`, `upstash-local` in
/// front of it, and the Worker wired to them, all in a temporary
/// directory. Fields drop in order: the Worker first.
pub struct LimitedEdge {
    /// The Worker.
    pub edge: crate::edge::Edge,
    /// `upstash-local`.
    pub upstash: UpstashLocal,
    /// The Redis behind it.
    pub redis: Redis,
    /// Where their sockets, data and logs are; dropped last.
    pub dir: tempfile::TempDir,
}

impl LimitedEdge {
    /// The token the Worker and `upstash-local` share.
    pub const TOKEN: &'static str = "test-upstash-token";

    /// Starts all three; `upstash_local` is the binary (an integration
    /// test's `env!("CARGO_BIN_EXE_upstash-local")`), `vars` go to the
    /// Worker after the Upstash ones. Admissions wait up to 30 s for
    /// Upstash unless `vars` set `LIMITS_TIMEOUT_MS`: tests count what the
    /// limits decided, and a busy machine must not make them fail open.
    pub async fn start(upstash_local: &Path, vars: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let redis = Redis::start(&dir.path().join("redis"), &dir.path().join("redis.log")).await?;
        let upstash = UpstashLocal::start(
            upstash_local,
            &redis,
            Self::TOKEN,
            &dir.path().join("upstash.log"),
        )
        .await?;
        let mut all = vec![
            ("UPSTASH_REDIS_REST_URL", upstash.url.as_str()),
            ("UPSTASH_REDIS_REST_TOKEN", Self::TOKEN),
        ];
        if !vars.iter().any(|(name, _)| *name == "LIMITS_TIMEOUT_MS") {
            all.push(("LIMITS_TIMEOUT_MS", "30000"));
        }
        all.extend_from_slice(vars);
        let edge = crate::edge::Edge::start(&all).await?;
        Ok(Self {
            edge,
            upstash,
            redis,
            dir,
        })
    }
}
