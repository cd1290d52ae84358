//! The demo page in a real headless Chromium (Debian's, driven by
//! playwright-core) against the local stack: a round published as a Debezium
//! insert appears on its game's card, live. The screenshot is kept as a test
//! artefact in `tests/artifacts/demo.png`.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use devstack::stack::{PREFIX, Stack, StackOptions};
use devstack::{free_port, repo_root, wait_for};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const TIMEOUT: Duration = Duration::from_secs(90);

/// A Debezium insert of round `id` of game `slug` (game id `game_id`, type
/// from the slug's first word), committed now.
fn insert(id: i64, slug: &str, game_id: i64, extras: &str) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap();
    let mut event: Value =
        serde_json::from_slice(&devstack::fixtures::read("debezium/rounds-insert.json").unwrap())
            .unwrap();
    event["after"]["id"] = id.into();
    event["after"]["game_slug"] = slug.into();
    event["after"]["game_id"] = game_id.into();
    event["after"]["game_type"] = slug.split('-').next().unwrap().into();
    event["after"]["extras"] = extras.into();
    event["source"]["ts_ms"] = ms.into();
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_round_appears_on_its_card_in_a_real_browser() {
    let state = tempfile::tempdir().unwrap();
    let stack = Stack::up(StackOptions {
        state_dir: state.path().to_path_buf(),
        nats_port: free_port().unwrap(),
        worker_port: free_port().unwrap(),
        heartbeat_secs: 15,
    })
    .await
    .unwrap();
    let subject = format!("{PREFIX}.public.rounds");
    stack
        .publish(
            &subject,
            insert(1, "crash-classic", 7, r#"{"multiplier": 2.5}"#),
        )
        .await
        .unwrap();
    stack
        .publish(&subject, insert(2, "dice-duel", 12, r#"{"roll": [3, 5]}"#))
        .await
        .unwrap();
    let http = devstack::http_client();
    let games_url = format!(
        "{}/api/games?api_key={}",
        stack.edge.worker.url, stack.api_key
    );
    wait_for("both games known", TIMEOUT, || {
        let request = http.get(&games_url).send();
        async move {
            let body = request.await.ok()?.text().await.ok()?;
            (body.contains("crash-classic") && body.contains("dice-duel")).then_some(())
        }
    })
    .await
    .unwrap();

    let artifacts = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let page = format!("{}/?api_key={}", stack.edge.worker.url, stack.api_key);
    let mut browser = tokio::process::Command::new(repo_root().join("node_modules/.bin/node"))
        .arg(repo_root().join("tests/browser/demo.mjs"))
        .args([page.as_str(), "crash-classic", "3", "dice-duel"])
        .arg(artifacts.join("demo.png"))
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
    stack
        .publish(
            &subject,
            insert(3, "crash-classic", 7, r#"{"multiplier": 11.72}"#),
        )
        .await
        .unwrap();
    let line = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("round shown in time")
        .unwrap();
    let status = tokio::time::timeout(TIMEOUT, browser.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "browser script failed");
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
}
