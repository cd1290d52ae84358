//! The whole chain, wired together: PostgreSQL → the Debezium engine →
//! nats-server → ingest → the Worker. What the main-job command runs and what
//! the end-to-end tests drive.

use std::time::Duration;

use anyhow::Context;

use crate::postgres::{Postgres, start_debezium};
use crate::process::Proc;
use crate::stack::{Stack, StackOptions};

/// Every part of the local system. Fields drop in order: the engine stops
/// before its database, and both before NATS, ingest and the Worker.
pub struct Pipeline {
    /// The Debezium engine adapter.
    pub debezium: Proc,
    /// PostgreSQL with the reference schema, database `games`.
    pub pg: Postgres,
    /// nats-server, the Worker and ingest.
    pub stack: Stack,
}

impl Pipeline {
    /// Starts NATS, the Worker and ingest, then PostgreSQL on `pg_port` (any
    /// free port when `None`: read it from `pg.port`; a new cluster gets the
    /// reference schema and `seed_sql`), then the engine, which snapshots
    /// what is there on its first start and streams from there.
    pub async fn up(
        options: StackOptions,
        pg_port: Option<u16>,
        seed_sql: &str,
    ) -> anyhow::Result<Self> {
        let state = options.state_dir.clone();
        let stack = Stack::up(options).await?;
        let pg = Postgres::start(&state.join("pg"), pg_port).await?;
        // Over an earlier run's state everything resumes where it stopped:
        // the database, the engine's offsets, the stream and ingest's
        // consumer, the Worker's storage and KV.
        if pg.created {
            pg.create_reference_schema()?;
            if !seed_sql.is_empty() {
                pg.sql("games", seed_sql).context("seeding the database")?;
            }
        }
        let debezium = start_debezium(&state.join("debezium"), pg.port, &stack.nats.url)?;
        Ok(Self {
            debezium,
            pg,
            stack,
        })
    }

    /// Waits until the Worker answers `GET path` (with the test key) with a
    /// body containing `needle`: how a test knows a row went all the way.
    /// Fails at once, with its log tail, when any part exits meanwhile.
    pub async fn wait_for_edge(
        &mut self,
        path: &str,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let http = crate::http_client();
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{path}{separator}api_key={}",
            self.stack.edge.worker.url, self.stack.api_key
        );
        let what = format!("{needle} at {path}");
        crate::wait_for_procs(&mut self.procs(), &what, timeout, || {
            let request = http.get(&url).send();
            async move {
                let body = request.await.ok()?.text().await.ok()?;
                body.contains(needle).then_some(())
            }
        })
        .await
    }

    /// Every process of the system.
    pub fn procs(&mut self) -> [&mut Proc; 7] {
        [
            &mut self.stack.ingest,
            &mut self.stack.edge.worker.proc,
            &mut self.stack.upstash.proc,
            &mut self.stack.redis.proc,
            &mut self.stack.nats.proc,
            &mut self.pg.proc,
            &mut self.debezium,
        ]
    }

    /// The first part that has exited, with its log tail.
    pub fn exited(&mut self) -> Option<String> {
        for proc in self.procs() {
            if let Some(status) = proc.exited() {
                return Some(format!(
                    "{} exited ({status}); its log: {}\n{}",
                    proc.name(),
                    proc.log_path().display(),
                    proc.log_tail(2000)
                ));
            }
        }
        None
    }
}
