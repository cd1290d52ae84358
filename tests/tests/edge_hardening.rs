//! Hardening found in review (issue: nothing lost, nothing let in): each test
//! here failed before its fix.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use devstack::edge::{Edge, TIMEOUT, events, frame, frame_at, round};
use devstack::wait_for;
use shared::EventKind::{New, Update};
use shared::signature;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn occurrences(log: &Path, needle: &str) -> usize {
    std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).matches(needle).count())
        .unwrap_or(0)
}

/// Starts `POST /internal/rounds` with a chunked body (no `Content-Length`),
/// sends `body_bytes` of it and never ends it; returns once the Worker logged
/// `refusal` (again) while the body was still unfinished.
///
/// The log, not the answer, is what is awaited: behind wrangler's proxy the
/// answer only reaches the client once the request body has ended, but the
/// Worker's decision (and that it stopped reading) is what is tested.
async fn refused_while_uploading(
    edge: &Edge,
    signature: Option<&str>,
    body_bytes: usize,
    refusal: &str,
) {
    let log = edge.worker.proc.log_path().to_path_buf();
    let before = occurrences(&log, refusal);
    let address = edge.worker.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let mut head = format!(
        "POST /internal/rounds HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n"
    );
    if let Some(signature) = signature {
        head.push_str(&format!("{}: {signature}\r\n", signature::HEADER));
    }
    head.push_str("\r\n");
    // Written by a task: once the Worker stops reading, the writes block.
    let writer = tokio::spawn(async move {
        stream.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            stream.write_all(&chunk).await?;
            stream.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        // Never the final `0\r\n\r\n`: the body does not end.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(stream)
    });
    wait_for(
        &format!("the Worker to log {refusal:?} before the body ended"),
        TIMEOUT,
        || async { (occurrences(&log, refusal) > before).then_some(()) },
    )
    .await
    .unwrap();
    assert!(!writer.is_finished(), "the upload was still going");
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_refused_before_its_body_is_read_whole() {
    let edge = Edge::start(&[]).await.unwrap();
    // No signature: refused on the headers alone.
    refused_while_uploading(&edge, None, 64 * 1024, "refused: missing signature").await;
    // A stale signature: the same.
    let stale = signature::sign(edge.secret.as_bytes(), 1_000_000_000, b"x").unwrap();
    refused_while_uploading(
        &edge,
        Some(&stale),
        64 * 1024,
        "refused: signature timestamp",
    )
    .await;
    // A fresh, well-formed signature: read, but only up to the 1 MiB cap.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let fresh = signature::sign(edge.secret.as_bytes(), now, b"x").unwrap();
    refused_while_uploading(&edge, Some(&fresh), 3 * 512 * 1024, "refused: body over").await;

    // The Worker keeps serving, and stored nothing from the refused uploads.
    let key = edge.open_key().await.unwrap();
    assert_eq!(
        edge.get("/api/games", &key).await.unwrap(),
        (200, r#"{"games":[]}"#.to_string())
    );
    edge.store(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();

    // No process shows a secret on its command line (`ps` shows it to all).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            for secret in [&edge.secret, &edge.admin_token] {
                assert!(!cmdline.contains(secret.as_str()), "a secret in {cmdline}");
            }
        }
    }

    // Fault injection exists only where ALLOW_FAULTS says so.
    for fault in ["directory", "feed-owners"] {
        let (status, body) = edge
            .admin(
                reqwest::Method::PUT,
                &format!("/admin/faults/{fault}"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 404, "{fault}: {body}");
    }
}

/// The stream objects that have storage of their own on disk.
fn stream_objects_on_disk(state: &Path) -> usize {
    let Ok(namespaces) = std::fs::read_dir(state.join("wrangler/v3/do")) else {
        return 0;
    };
    namespaces
        .flatten()
        .filter(|ns| ns.file_name().to_string_lossy().ends_with("StreamObject"))
        .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().ends_with(".sqlite"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_games_are_404_and_create_no_object() {
    let state = tempfile::tempdir().unwrap();
    let edge = Edge::start_in(state.path(), None, &[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    edge.store(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();
    let before = stream_objects_on_disk(state.path());
    assert!(before >= 1, "the stored game's objects are on disk");

    for i in 0..20 {
        for route in ["latest", "rounds"] {
            let (status, body) = edge
                .get(&format!("/api/games/made-up-{i}/{route}"), &key)
                .await
                .unwrap();
            assert_eq!(
                (status, body.as_str()),
                (
                    404,
                    r#"{"error":{"code":"not_found","message":"unknown game"}}"#
                )
            );
        }
    }
    // Streams too: a game, a type or a multiplexed member nobody stored a
    // round of is 404, and no object is made for it.
    for i in 0..20 {
        for path in [
            format!("/sse/made-up-{i}"),
            format!("/sse/type/made-up-{i}"),
            format!("/sse?games=crash,made-up-{i}"),
            format!("/sse?games=crash&types=made-up-{i}"),
        ] {
            let (status, body) = edge.get(&path, &key).await.unwrap();
            assert_eq!(status, 404, "{path}: {body}");
            assert!(
                body.starts_with(r#"{"error":{"code":"not_found","message":"unknown game"#),
                "{path}: {body}"
            );
        }
    }
    // A known game and type still answer (their objects exist since the
    // round was stored).
    assert_eq!(
        edge.get("/api/games/crash/latest", &key).await.unwrap().0,
        200
    );
    let mut known = edge
        .sse(&format!("/sse/type/multiplier?api_key={key}"))
        .await
        .unwrap();
    known.read_frames(2, TIMEOUT).await.unwrap();
    assert_eq!(stream_objects_on_disk(state.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_older_than_the_history_and_stale_updates_change_nothing() {
    // (A correction of a round older than the history is still sent, once.)
    let edge = Edge::start(&[("HISTORY_LIMIT", "3")]).await.unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut client = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    client.read_frames(2, TIMEOUT).await.unwrap();

    let rounds: Vec<_> = (1..=5).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds)).await.unwrap();
    // Rounds 1 and 2 are trimmed: the history keeps 3..=5.
    let replay = edge.store(events(New, &rounds[..2])).await.unwrap();
    assert_eq!(replay, serde_json::json!({"stored": 0, "duplicates": 2}));
    let old_update = {
        let mut r = rounds[0].clone();
        r.extras = r#"{"n": 1, "late": true}"#.into();
        r.timestamp += 100;
        r
    };
    // A correction of a trimmed round is news: sent as an update, once.
    let reply = edge
        .store(events(Update, std::slice::from_ref(&old_update)))
        .await
        .unwrap();
    assert_eq!(reply, serde_json::json!({"stored": 1, "duplicates": 0}));
    let reply = edge
        .store(events(Update, std::slice::from_ref(&old_update)))
        .await
        .unwrap();
    assert_eq!(reply, serde_json::json!({"stored": 0, "duplicates": 1}));
    let mut stale_old = old_update.clone();
    stale_old.extras = r#"{"n": 1, "late": "earlier"}"#.into();
    stale_old.timestamp -= 50;
    let reply = edge.store(events(Update, &[stale_old])).await.unwrap();
    assert_eq!(reply, serde_json::json!({"stored": 0, "duplicates": 1}));
    // Still not a round of the history.
    let (_, history) = edge.get("/api/games/crash/rounds", &key).await.unwrap();
    assert_eq!(history.matches("round_id").count(), 3, "{history}");

    // Round 5 updated, then an older update of it replayed.
    let mut newer = rounds[4].clone();
    newer.extras = r#"{"n": 5, "v": 2}"#.into();
    newer.timestamp += 20;
    let mut older = rounds[4].clone();
    older.extras = r#"{"n": 5, "v": 1}"#.into();
    older.timestamp += 10;
    let reply = edge
        .store(events(Update, std::slice::from_ref(&newer)))
        .await
        .unwrap();
    assert_eq!(reply, serde_json::json!({"stored": 1, "duplicates": 0}));
    let reply = edge
        .store(events(Update, std::slice::from_ref(&older)))
        .await
        .unwrap();
    assert_eq!(reply, serde_json::json!({"stored": 0, "duplicates": 1}));
    let six = round(6, "crash", "multiplier");
    edge.store(events(New, std::slice::from_ref(&six)))
        .await
        .unwrap();

    client.read_frames(10, TIMEOUT).await.unwrap();
    let mut expected = vec![
        "retry: 3000\n\n".to_string(),
        frame("initial", &round(0, "crash", "multiplier")),
    ];
    expected.extend(rounds.iter().map(|r| frame("message", r)));
    expected.push(frame_at("update", "5.1", &old_update));
    expected.push(frame_at("update", "5.2", &newer));
    expected.push(frame("message", &six));
    assert_eq!(client.frames(), expected, "nothing replayed was sent");
    let (_, history) = edge
        .get("/api/games/crash/rounds?before=6", &key)
        .await
        .unwrap();
    assert!(history.contains(r#"\"v\": 2"#), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_keeps_flowing_while_the_directory_fails() {
    let edge = Edge::start(&[("ALLOW_FAULTS", "1")]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    edge.store(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();
    let mut client = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    client.read_frames(2, TIMEOUT).await.unwrap();

    let (status, _) = edge
        .admin(reqwest::Method::PUT, "/admin/faults/directory", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(edge.get("/api/games", &key).await.unwrap().0, 503);

    // Rounds of a game the directory already lists are stored and sent.
    let more: Vec<_> = (2..=4).map(|id| round(id, "crash", "multiplier")).collect();
    for r in &more {
        edge.store(events(New, std::slice::from_ref(r)))
            .await
            .unwrap();
    }
    client.read_frames(5, TIMEOUT).await.unwrap();
    assert_eq!(
        client.frames()[2..],
        more.iter().map(|r| frame("message", r)).collect::<Vec<_>>()
    );
    // A new game must be listed before it is acknowledged: that one waits.
    let (status, _) = edge
        .post(events(New, &[round(1, "dice", "dice")]))
        .await
        .unwrap();
    assert_eq!(status, 503);

    let (status, _) = edge
        .admin(reqwest::Method::DELETE, "/admin/faults/directory", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    edge.store(events(New, &[round(1, "dice", "dice")]))
        .await
        .unwrap();
    edge.store(events(New, &[round(5, "crash", "multiplier")]))
        .await
        .unwrap();
    // The latest ids catch up after the responses.
    wait_for("the directory to catch up", TIMEOUT, || async {
        let (_, body) = edge.get("/api/games", &key).await.ok()?;
        (body
            == r#"{"games":[{"slug":"crash","game_id":1,"type":"multiplier","latest_round_id":5},{"slug":"dice","game_id":1,"type":"dice","latest_round_id":1}]}"#)
            .then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_secrets_close_what_they_protect() {
    let state = tempfile::tempdir().unwrap();
    devstack::edge::Secrets {
        ingest_secret: "replace-with-a-long-random-secret".into(),
        admin_token: "change-me-change-me-change-me-change-me".into(),
        token_secret: devstack::fixtures::random_secret().unwrap(),
        api_key: None,
        api_key_id: None,
    }
    .save(state.path())
    .unwrap();
    let edge = Edge::start_in(state.path(), None, &[]).await.unwrap();
    // Signed with the placeholder, and still refused.
    let (status, _) = edge
        .post(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, _) = edge
        .admin(reqwest::Method::GET, "/admin/keys", None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let log = edge.worker.proc.log_path().to_path_buf();
    wait_for("the reasons in the log", TIMEOUT, || async {
        (occurrences(&log, "INGEST_SECRET is a placeholder") > 0
            && occurrences(&log, "ADMIN_TOKEN is a placeholder") > 0)
            .then_some(())
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("replace-with-a-long"), "never the value");
    // `/healthz` names them, never their values.
    assert_eq!(
        health(&edge).await,
        r#"{"status":"ok","limits":"off","config":["ADMIN_TOKEN","INGEST_SECRET"]}"#
    );
}

/// The body of `GET /healthz`.
async fn health(edge: &Edge) -> String {
    let response = edge.http.get(edge.url("/healthz")).send().await.unwrap();
    response.text().await.unwrap()
}

/// A variable the Worker cannot use is never silent: the log names it, its
/// value and what is used instead, `/healthz` lists its name, and a safety
/// setting with a typo fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_variables_are_named_and_safety_settings_fail_closed() {
    let edge = Edge::start(&[
        ("HEARTBEAT_SECS", "fifteen"),
        ("LIMITS_FAIL", "clsoed"),
        ("ALLOW_FAULTS", "yes"),
    ])
    .await
    .unwrap();
    let health: serde_json::Value = serde_json::from_str(&health(&edge).await).unwrap();
    assert_eq!(
        health["config"],
        serde_json::json!(["HEARTBEAT_SECS", "LIMITS_FAIL", "ALLOW_FAULTS"]),
        "{health}"
    );
    // ALLOW_FAULTS=yes is not 1: the fault routes do not exist.
    let (status, _) = edge
        .admin(reqwest::Method::PUT, "/admin/faults/directory", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    let log = edge.worker.proc.log_path().to_path_buf();
    wait_for("the reasons in the log", TIMEOUT, || async {
        (occurrences(
            &log,
            r#"HEARTBEAT_SECS="fifteen" is not a number; using 15"#,
        ) == 1
            && occurrences(
                &log,
                r#"LIMITS_FAIL="clsoed" is none of open, closed; using closed"#,
            ) == 1)
            .then_some(())
    })
    .await
    .unwrap();
}

/// A token narrowed to a game asks the directory for the game's type when its
/// key is scoped by type. While the directory fails, minting is a 503 the
/// partner retries, not a 403 claiming the key may not read the game.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_during_a_directory_outage_is_unavailable_not_forbidden() {
    let edge = Edge::start(&[("ALLOW_FAULTS", "1")]).await.unwrap();
    // A new game: the isolate drops its copy of the directory.
    edge.store(events(New, &[round(1, "crash", "multiplier")]))
        .await
        .unwrap();
    let (key, _) = edge
        .create_key(serde_json::json!({"name": "typed", "types": ["multiplier"]}))
        .await
        .unwrap();
    let (status, _) = edge
        .admin(reqwest::Method::PUT, "/admin/faults/directory", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let narrowed = serde_json::json!({"games": ["crash"]});
    let (status, body) = edge.mint(&key, narrowed.clone()).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let (status, _) = edge
        .admin(reqwest::Method::DELETE, "/admin/faults/directory", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = edge.mint(&key, narrowed).await.unwrap();
    assert_eq!(status, 201, "{body}");
    // A game of another type is still refused as wider than the key.
    edge.store(events(New, &[round(1, "dice", "dice")]))
        .await
        .unwrap();
    let (status, body) = edge
        .mint(&key, serde_json::json!({"games": ["dice"]}))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
}

/// Faults off means off: a directory fault left in storage by a run with
/// `ALLOW_FAULTS=1` is ignored, and cleared, by a Worker without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_fault_is_ignored_and_cleared_once_faults_are_off() {
    let state = tempfile::tempdir().unwrap();
    let key = {
        let edge = Edge::start_in(state.path(), None, &[("ALLOW_FAULTS", "1")])
            .await
            .unwrap();
        edge.store(events(New, &[round(1, "crash", "multiplier")]))
            .await
            .unwrap();
        let key = edge.open_key().await.unwrap();
        let (status, _) = edge
            .admin(reqwest::Method::PUT, "/admin/faults/directory", None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(edge.get("/api/games", &key).await.unwrap().0, 503);
        key
    };
    // The same state, without ALLOW_FAULTS: the directory answers.
    let edge = Edge::start_in(state.path(), None, &[]).await.unwrap();
    let (status, body) = edge.get("/api/games", &key).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""slug":"crash""#), "{body}");
    drop(edge);
    // And it stays cleared when faults are allowed again.
    let edge = Edge::start_in(state.path(), None, &[("ALLOW_FAULTS", "1")])
        .await
        .unwrap();
    assert_eq!(edge.get("/api/games", &key).await.unwrap().0, 200);
}
