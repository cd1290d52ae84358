//! The local stack, as a library: the main-job command (`devstack`) and the
//! end-to-end tests start the very same processes the same way.
//!
//! The major components are:
//! - [`process`]: a child process guard that kills its whole process group on
//!   drop (also when a test panics) and shows its log tail on failure.
//! - [`stack`]: nats-server with JetStream, the Worker under `wrangler dev`,
//!   and ingest, each started on loopback and awaited until ready.
//! - [`sse`]: a minimal SSE client that keeps every byte it received, so
//!   tests can assert the exact stream.
//! - [`edge`]: the Worker alone, with helpers to sign batches, call the admin
//!   routes and open streams.
//! - [`postgres`]: a throwaway PostgreSQL with the reference schema, and the
//!   real Debezium engine publishing its changes to JetStream.
//! - [`pipeline`]: all of it wired together, PostgreSQL to the Worker.
//! - [`runs`]: what a running main job started, so the next start can tell
//!   a live run from a killed one's leftovers.
//! - [`upstash_client`]: the native (reqwest) transport of the Upstash REST
//!   protocol of `shared::upstash`.
//! - [`upstash_local`]: redis-server and `upstash-local` (the Upstash REST
//!   protocol in front of it), the local stand-in for Upstash Redis.
//! - [`fixtures`]: the Debezium events of `tests/fixtures/` and test API keys.
#![forbid(unsafe_code)]

pub mod cutter;
pub mod edge;
pub mod feed_client;
pub mod fixtures;
pub mod node_driver;
pub mod pipeline;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod runs;
pub mod scrape;
pub mod sse;
pub mod stack;
pub mod upstash_client;
pub mod upstash_local;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::process::Proc;

/// The checkout's root directory.
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// An HTTP client. reqwest is built without a default TLS crypto provider
/// (ring comes with async-nats), so one is installed first. No idle
/// connection is kept: wrangler's proxy closes idle ones after 5 s, and a
/// request racing that close fails with "connection closed before message
/// completed".
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The number in environment variable `name`, or `default` when unset; a
/// value that is not a number is an error naming the variable.
pub fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The exit code of a command-line tool: success, or the error with its
/// causes on stderr prefixed by the tool's `name`.
pub fn exit_code(name: &str, result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, and may be taken by
/// anyone by the time it is used. Prefer letting the program bind port 0 and
/// reading the port back (nats-server, wrangler dev, Miniflare and ingest all
/// can, see [`stack`]). Only PostgreSQL still needs it: its `port` must be
/// 1–65535, so [`postgres::Postgres::start`] retries on a fresh port when the
/// one it got was taken meanwhile.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether something already listens on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Calls `probe` until it yields a value, for at most `timeout`: readiness is
/// awaited, never assumed after a fixed sleep. For a wait on a process we
/// started, use [`wait_for_proc`], which also notices when it exits.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How much of a process's log an [`Exited`] error shows.
const EXIT_TAIL_BYTES: u64 = 3000;

/// A process we started exited while we waited for it to become ready. The
/// error of [`wait_for_proc`], so callers can tell it from a timeout (with
/// `err.downcast_ref::<Exited>()`) and, for instance, retry when the port it
/// was given had been taken meanwhile ([`Exited::port_taken`]).
#[derive(Debug)]
pub struct Exited {
    /// What was awaited.
    pub what: String,
    /// The process's name.
    pub name: String,
    /// How it ended.
    pub status: std::process::ExitStatus,
    /// Its log file.
    pub log: PathBuf,
    /// The last lines of its log.
    pub tail: String,
}

impl Exited {
    /// What `proc`, which has exited with `status`, leaves behind.
    pub fn of(proc: &Proc, what: &str, status: std::process::ExitStatus) -> Self {
        Self {
            what: what.to_string(),
            name: proc.name().to_string(),
            status,
            log: proc.log_path().to_path_buf(),
            tail: proc.log_tail(EXIT_TAIL_BYTES),
        }
    }

    /// Whether its log says it could not listen because its address was in
    /// use (PostgreSQL: "could not bind … Address already in use"; Go and
    /// Node say "address already in use" or EADDRINUSE).
    pub fn port_taken(&self) -> bool {
        let tail = self.tail.to_ascii_lowercase();
        tail.contains("address already in use") || tail.contains("eaddrinuse")
    }
}

impl std::fmt::Display for Exited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} exited ({}); last lines of {}:\n{}",
            self.what,
            self.name,
            self.status,
            self.log.display(),
            self.tail
        )
    }
}

impl std::error::Error for Exited {}

/// Calls `probe` until it yields a value, for at most `timeout`, as
/// [`wait_for`] does, but fails at once with an [`Exited`] error (its log
/// tail) as soon as `proc` exits: a process that died is never waited for
/// until the timeout, and an answer that arrives after it died (from
/// whatever else may listen where it should have) is not taken for its own.
pub async fn wait_for_proc<T, F, Fut>(
    proc: &mut Proc,
    what: &str,
    timeout: Duration,
    probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_procs(&mut [proc], what, timeout, probe).await
}

/// [`wait_for_proc`] over several processes (a whole pipeline): fails at
/// once when any of them exits, with that one's log tail.
pub async fn wait_for_procs<T, F, Fut>(
    procs: &mut [&mut Proc],
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let check = |procs: &mut [&mut Proc]| -> anyhow::Result<()> {
        for proc in procs.iter_mut() {
            if let Some(status) = proc.exited() {
                return Err(Exited::of(proc, what, status).into());
            }
        }
        Ok(())
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        check(procs)?;
        if let Some(value) = probe().await {
            // One may have died while the probe ran: then the answer may not
            // be its own.
            check(procs)?;
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<&str> = procs.iter().map(|p| p.name()).collect();
            let mut message = format!(
                "timed out after {timeout:?} waiting for {what} ({} still running)",
                names.join(", ")
            );
            for proc in procs.iter() {
                message.push_str(&format!(
                    "\nlast lines of {}:\n{}",
                    proc.log_path().display(),
                    proc.log_tail(EXIT_TAIL_BYTES)
                ));
            }
            bail!(message);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What follows the last `prefix` in the log file `log` (a process's
/// [`Proc::log_path`]), up to the end of the word: how a port a process bound
/// itself (port 0) is read back from the line it logs, e.g.
/// `logged_after(log, "Ready on ")` → `http://127.0.0.1:40123`.
pub fn logged_after(log: &Path, prefix: &str) -> Option<String> {
    let bytes = std::fs::read(log).ok()?;
    let log = String::from_utf8_lossy(&bytes);
    let at = log.rfind(prefix)? + prefix.len();
    let rest = &log[at..];
    // Whitespace or a control character (a colour code's ESC) ends it.
    let end = rest
        .find(|c: char| c.is_whitespace() || c.is_control())
        .unwrap_or(rest.len());
    // A line still being written has no end yet: wait for the next poll.
    if end == rest.len() {
        return None;
    }
    Some(rest[..end].to_string())
}
