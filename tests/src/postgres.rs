//! A throwaway PostgreSQL 15 cluster with `wal_level=logical`, and the real
//! Debezium engine (`scripts/debezium/debezium_nats.py`) publishing its
//! changes to NATS JetStream.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::Proc;
use crate::{repo_root, wait_for};

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
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether this start created the cluster (false: an earlier run's).
    pub created: bool,
}

impl Postgres {
    /// Starts the server on `port` over `dir/pgdata`, running initdb first
    /// unless an earlier run left a cluster there.
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        if nix::unistd::geteuid().is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir)
                .status()?;
            anyhow::ensure!(
                status.success(),
                "chown {} to postgres failed",
                dir.display()
            );
        }
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
        let mut cmd = as_postgres(pg_bin("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "wal_level=logical",
                "-c",
                "fsync=off",
            ]);
        let proc = Proc::spawn("postgres", &mut cmd, &dir.join("postgres.log"))?;
        wait_for("PostgreSQL", Duration::from_secs(60), || async move {
            Command::new(pg_bin("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
        })
        .await?;
        Ok(Self {
            proc,
            port,
            created,
        })
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
