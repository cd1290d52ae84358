//! The demo page in a real headless Chromium (Debian's, driven by
//! playwright-core) against the whole local system: a round INSERTed into
//! PostgreSQL travels through the Debezium engine, NATS, ingest and the
//! Worker and appears on its game's card, live. The screenshot is kept as a
//! test artefact in `tests/artifacts/demo.png`.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use devstack::pipeline::Pipeline;
use devstack::repo_root;
use devstack::stack::StackOptions;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The engine's first snapshot on a slow machine can take a while: generous.
const TIMEOUT: Duration = Duration::from_secs(120);

const SEED: &str = r#"
INSERT INTO games (id, slug, type, name) VALUES
    (7, 'crash-classic', 'crash', 'Crash Classic'),
    (12, 'dice-duel', 'dice', 'Dice Duel');
INSERT INTO rounds (id, game_id, finished_at, extras) VALUES
    (1, 7, now(), '{"multiplier": 2.5}'),
    (2, 12, now(), '{"roll": [3, 5]}');
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_inserted_in_postgres_appears_on_its_card_in_a_real_browser() {
    let state = tempfile::tempdir().unwrap();
    let mut system = Pipeline::up(
        StackOptions::on_free_ports(state.path(), 15).unwrap(),
        None,
        SEED,
    )
    .await
    .unwrap();
    // The engine's snapshot reached the edge: both games have a round.
    for game in ["crash-classic", "dice-duel"] {
        system
            .wait_for_edge(&format!("/api/games/{game}/latest"), "round_id", TIMEOUT)
            .await
            .unwrap();
    }

    let artifacts = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let worker = &system.stack.edge.worker.url;
    let page = format!("{worker}/?api_key={}", system.stack.api_key);
    let mut browser = tokio::process::Command::new(repo_root().join("node_modules/.bin/node"))
        .arg(repo_root().join("tests/browser/demo.mjs"))
        .args([page.as_str(), "crash-classic", "3", "dice-duel"])
        .arg(artifacts.join("demo.png"))
        .arg("4,5")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the browser script");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("page ready in time")
        .unwrap();
    assert_eq!(
        ready.as_deref(),
        Some("ready"),
        "the page connected and shows the games"
    );

    // A round committed now reaches the open page, on the right card.
    system
        .pg
        .sql(
            "games",
            r#"INSERT INTO rounds (id, game_id, finished_at, extras) VALUES (3, 7, now(), '{"multiplier": 11.72}')"#,
        )
        .unwrap();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("round shown in time")
        .unwrap();
    let result: Value = serde_json::from_str(&line.expect("a result line")).unwrap();
    assert_eq!(result["state"], "connected");
    assert_eq!(result["latest"], "multiplier 11.72");
    let row = result["row"].as_str().unwrap();
    assert!(
        row.starts_with("#3multiplier 11.72") && row.ends_with(" ms"),
        "{row}"
    );
    assert!(
        result["delay"].as_str().unwrap().parse::<u64>().is_ok(),
        "{result}"
    );
    assert_eq!(result["on_other_card"], false);
    assert_eq!(
        result["cards"],
        serde_json::json!(["crash-classic", "dice-duel"])
    );
    assert_eq!(result["errors"], serde_json::json!([]));
    assert!(artifacts.join("demo.png").exists());

    // The connection drops (the game's object ends its streams), two rounds
    // are committed meanwhile; the browser reconnects with Last-Event-ID and
    // the page shows both, once each, in order, as "resumed".
    let (status, body) = system
        .stack
        .edge
        .admin(
            reqwest::Method::POST,
            "/admin/streams/game/crash-classic/disconnect",
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    for id in [4, 5] {
        system
            .pg
            .sql(
                "games",
                &format!(r#"INSERT INTO rounds (id, game_id, finished_at, extras) VALUES ({id}, 7, now(), '{{"multiplier": 1.{id}}}')"#),
            )
            .unwrap();
    }
    let line = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("resumed in time")
        .unwrap();
    let status = tokio::time::timeout(TIMEOUT, browser.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "browser script failed");
    let resumed: Value = serde_json::from_str(&line.expect("a resume line")).unwrap();
    assert_eq!(resumed["state"], "resumed", "{resumed}");
    let states = resumed["states"].as_array().unwrap();
    assert_eq!(
        states.first().and_then(Value::as_str),
        Some("reconnecting"),
        "the drop was shown: {resumed}"
    );
    assert_eq!(
        resumed["ids"],
        serde_json::json!(["5", "4", "3", "1"]),
        "newest first, no gap, no duplicate"
    );
    assert_eq!(resumed["errors"], serde_json::json!([]));
}
