//! A throwaway PostgreSQL 15 cluster with `wal_level=logical`, and the real
//! Debezium engine (`scripts/debezium/debezium_nats.py`) publishing its
//! changes to NATS JetStream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::Proc;
use crate::{Exited, free_port, repo_root, wait_for_proc};

/// How long PostgreSQL may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many ports [`Postgres::start`] tries when any free port will do.
const PORT_ATTEMPTS: u32 = 5;

/// The longest path a unix socket may have (`sun_path` is 108 bytes with
/// its NUL). PostgreSQL refuses to start when `<socket dir>/.s.PGSQL.<port>`
/// is longer.
const MAX_SOCKET_PATH: usize = 107;

fn pg_bin(name: &str) -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
        .join(name)
}

/// PostgreSQL refuses to run as root: as root, run it as `postgres`.
fn as_postgres(program: PathBuf) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A running cluster.
pub struct Postgres {
    /// The server process.
    pub proc: Proc,
    /// Its port on 127.0.0.1: the one asked for, or the free one it got.
    pub port: u16,
    /// Whether this start created the cluster (false: an earlier run's).
    pub created: bool,
    /// The directory of its unix socket, only its own.
    pub socket_dir: PathBuf,
    // A short socket directory, when `dir` is too long for one; removed
    // after the server stopped (fields drop in order).
    _short_socket_dir: Option<tempfile::TempDir>,
}

/// Hands `path` to the `postgres` user when we are root (PostgreSQL then
/// runs as `postgres`, see [`as_postgres`]).
fn give_to_postgres(path: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(path)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "chown {} to postgres failed",
            path.display()
        );
    }
    Ok(())
}

/// Where the server's unix socket goes: `dir` itself, unless
/// `dir/.s.PGSQL.<port>` would be longer than a unix socket path may be (a
/// deep checkout or `TMPDIR`): then a new short directory under /tmp.
fn socket_dir(dir: &Path) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    if dir.as_os_str().len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH {
        return Ok((dir.to_path_buf(), None));
    }
    let short = tempfile::Builder::new()
        .prefix("gamefeed-pg-")
        .tempdir_in("/tmp")
        .context("creating a short directory for PostgreSQL's socket")?;
    give_to_postgres(short.path())?;
    Ok((short.path().to_path_buf(), Some(short)))
}

impl Postgres {
    /// Starts the server over `dir/pgdata` on `port`, or on a free port when
    /// `port` is `None` (then read it from [`Postgres::port`]), running initdb
    /// first unless an earlier run left a cluster there.
    ///
    /// PostgreSQL cannot bind port 0 and tell us which port it got (`port`
    /// must be 1–65535), so a free port is picked for it, and another
    /// process may take that port before PostgreSQL binds it. Then
    /// PostgreSQL exits at once ("could not bind IPv4 address …: Address
    /// already in use", "could not create any TCP/IP sockets"): the wait
    /// notices the exit at once, and, when any free port will do, starts it
    /// again on a fresh one (up to [`PORT_ATTEMPTS`] times). A port that was
    /// asked for is never changed: its failure is the error. Readiness is
    /// asked over the server's own unix socket directory, never over TCP, so
    /// another server that holds the same TCP port (another test's) can
    /// never answer for ours.
    pub async fn start(dir: &Path, port: Option<u16>) -> anyhow::Result<Self> {
        match port {
            Some(port) => Self::start_picking(dir, 1, || Ok(port)).await,
            // free_port stays for PostgreSQL only: it cannot bind port 0.
            None => Self::start_picking(dir, PORT_ATTEMPTS, free_port).await,
        }
    }

    /// [`Postgres::start`] on the port `pick` yields, and again on the next
    /// one it yields, up to `attempts` ports in all, as long as the last one
    /// turned out to be taken (tests pass a taken port first).
    pub async fn start_picking(
        dir: &Path,
        attempts: u32,
        mut pick: impl FnMut() -> std::io::Result<u16>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // postgres runs in its data directory: a relative path would be
        // taken from there.
        let dir = &std::path::absolute(dir)?;
        give_to_postgres(dir)?;
        let data = dir.join("pgdata");
        // A cluster left by an earlier run is started again as it is.
        let created = !data.join("PG_VERSION").exists();
        if created {
            let out = as_postgres(pg_bin("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .output()
                .context("initdb (run scripts/setup.sh to install PostgreSQL 15)")?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let (socket_dir, short_socket_dir) = socket_dir(dir)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = pick()?;
            let log = if attempt == 1 {
                "postgres.log".to_string()
            } else {
                format!("postgres-{attempt}.log")
            };
            let mut cmd = as_postgres(pg_bin("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&socket_dir)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "wal_level=logical",
                    "-c",
                    "fsync=off",
                ]);
            let mut proc = Proc::spawn("postgres", &mut cmd, &dir.join(log))?;
            let ready = wait_for_proc(&mut proc, "PostgreSQL", READY_TIMEOUT, || {
                let socket_dir = socket_dir.clone();
                async move {
                    Command::new(pg_bin("pg_isready"))
                        .arg("-h")
                        .arg(&socket_dir)
                        .args(["-p", &port.to_string(), "-q"])
                        .output()
                        .ok()
                        .filter(|o| o.status.success())
                        .map(|_| ())
                }
            })
            .await;
            match ready {
                Ok(()) => {
                    return Ok(Self {
                        proc,
                        port,
                        created,
                        socket_dir,
                        _short_socket_dir: short_socket_dir,
                    });
                }
                Err(err)
                    if attempt < attempts
                        && err.downcast_ref::<Exited>().is_some_and(Exited::port_taken) =>
                {
                    eprintln!("PostgreSQL lost port {port} to another process, retrying: {err:#}");
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Runs SQL in `database`, failing on the first error.
    pub fn sql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-A", "-t", "-c", sql])
            .output()
            .context("psql")?;
        if !out.status.success() {
            bail!(
                "SQL failed: {sql}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates database `games` with the reference schema.
    pub fn create_reference_schema(&self) -> anyhow::Result<()> {
        self.sql("postgres", "CREATE DATABASE games")?;
        let schema = std::fs::read_to_string(crate::fixtures::path("schema.sql"))?;
        self.sql("games", &schema)?;
        Ok(())
    }
}

/// Starts the Debezium engine adapter for database `games` on `pg_port`,
/// publishing to `nats_url`, with its offsets and logs under `dir`.
pub fn start_debezium(dir: &Path, pg_port: u16, nats_url: &str) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let python = std::env::var_os("DEBEZIUM_PYTHON")
        .map(PathBuf::from)
        .context("DEBEZIUM_PYTHON is not set: run scripts/setup.sh")?;
    Proc::spawn(
        "debezium",
        Command::new(python)
            .arg(repo_root().join("scripts/debezium/debezium_nats.py"))
            // log4j writes ./logs: keep it in the state directory.
            .current_dir(dir)
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", pg_port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "games")
            .env("NATS_URL", nats_url)
            .env("DEBEZIUM_STATE", dir.join("state")),
        &dir.join("debezium.log"),
    )
}
