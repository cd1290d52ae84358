//! The operators' console (`GET /console`) in a real headless Chromium
//! (Debian's, driven by playwright-core through `console/test/browser.mjs`)
//! against the whole local system: PostgreSQL, the Debezium engine, NATS,
//! ingest, the Worker and Upstash's stand-in. Sign in; the four games with
//! their viewers, rounds and commit → edge delay; a key created, counted,
//! charted and revoked. The screenshot is kept in
//! `tests/artifacts/console.png`.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use devstack::node_driver::{Asks, drive_with};
use devstack::pipeline::Pipeline;
use devstack::postgres::Postgres;
use devstack::repo_root;
use devstack::stack::StackOptions;
use serde_json::Value;

/// The engine's first snapshot on a slow machine can take a while: generous.
const TIMEOUT: Duration = Duration::from_secs(120);

const GAMES: [(i64, &str, &str); 4] = [
    (7, "crash-classic", "crash"),
    (12, "dice-duel", "dice"),
    (21, "double-up", "double"),
    (33, "crash-turbo", "crash"),
];

/// New rounds INSERTed into PostgreSQL when the script asks.
struct Inserts<'a> {
    pg: &'a Postgres,
    next: AtomicI64,
}

impl Asks for Inserts<'_> {
    async fn answer(&self, ask: &Value) -> anyhow::Result<()> {
        let slug = ask["insert"].as_str().context("unknown ask")?;
        let (game_id, _, _) = GAMES
            .iter()
            .find(|(_, s, _)| *s == slug)
            .context("unknown game")?;
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        self.pg.sql(
            "games",
            &format!(
                "INSERT INTO rounds (id, game_id, finished_at, extras) VALUES ({id}, {game_id}, now(), '{{\"n\": {id}}}')"
            ),
        )?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_watches_the_games_and_creates_counts_and_revokes_a_key() {
    let mut seed = String::from("INSERT INTO games (id, slug, type, name) VALUES ");
    seed.push_str(
        &GAMES
            .iter()
            .map(|(id, slug, kind)| format!("({id}, '{slug}', '{kind}', '{slug}')"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    seed.push_str(";\nINSERT INTO rounds (id, game_id, finished_at, extras) VALUES ");
    seed.push_str(
        &GAMES
            .iter()
            .enumerate()
            .map(|(i, (id, _, _))| format!("({}, {id}, now(), '{{}}')", i + 1))
            .collect::<Vec<_>>()
            .join(", "),
    );
    seed.push(';');
    let state = tempfile::tempdir().unwrap();
    // Heartbeats every 2 s: viewer counts travel on the feeds' ticks.
    let mut system = Pipeline::up(
        StackOptions::on_free_ports(state.path(), 2).unwrap(),
        None,
        &seed,
    )
    .await
    .unwrap();
    for (_, game, _) in GAMES {
        system
            .wait_for_edge(&format!("/api/games/{game}/latest"), "round_id", TIMEOUT)
            .await
            .unwrap();
    }
    let artifacts = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let stack = &system.stack;
    let env = [
        ("GAMEFEED_URL", stack.edge.worker.url.clone()),
        ("GAMEFEED_KEY", stack.api_key.clone()),
        ("GAMEFEED_ADMIN", stack.edge.admin_token.clone()),
        ("GAMEFEED_GAMES", GAMES.map(|(_, slug, _)| slug).join(",")),
        (
            "GAMEFEED_SHOT",
            artifacts.join("console.png").to_string_lossy().into_owned(),
        ),
    ];
    let inserts = Inserts {
        pg: &system.pg,
        next: AtomicI64::new(1000),
    };
    let results = drive_with(
        &repo_root().join("console/test/browser.mjs"),
        "console",
        &env,
        &inserts,
    )
    .await
    .unwrap();
    println!("{results:?}");
    let shot = std::fs::metadata(artifacts.join("console.png")).unwrap();
    assert!(shot.len() > 10_000, "a screenshot of the console");
    // The admin token is in no log of the system.
    for log in ["worker.log", "ingest.log", "nats.log"] {
        let text = std::fs::read_to_string(stack.log_dir.join(log)).unwrap_or_default();
        assert!(
            !text.contains(&stack.edge.admin_token),
            "the admin token in {log}"
        );
    }
}
