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
//! - [`fixtures`]: the Debezium events of `tests/fixtures/` and test API keys.
#![forbid(unsafe_code)]

pub mod edge;
pub mod fixtures;
pub mod pipeline;
pub mod postgres;
pub mod process;
pub mod runs;
pub mod sse;
pub mod stack;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether something already listens on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Calls `probe` until it yields a value, for at most `timeout`: readiness is
/// awaited, never assumed after a fixed sleep.
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
