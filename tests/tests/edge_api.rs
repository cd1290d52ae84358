//! The public REST API and every error status of the edge.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use devstack::edge::{Edge, events, round};
use shared::EventKind::New;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_latest_and_history() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();

    let (status, body) = edge.get("/api/games/crash/latest", &key).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        body,
        r#"{"error":{"code":"not_found","message":"unknown game"}}"#
    );
    let (_, body) = edge.get("/api/games", &key).await.unwrap();
    assert_eq!(body, r#"{"games":[]}"#);

    let rounds: Vec<_> = (1..=5).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &rounds)).await.unwrap();
    edge.store(events(New, &[round(9, "dice", "dice")]))
        .await
        .unwrap();
    let json = |r: &shared::Round| serde_json::to_string(r).unwrap();

    let (_, body) = edge.get("/api/games", &key).await.unwrap();
    assert_eq!(
        body,
        r#"{"games":[{"slug":"crash","game_id":1,"type":"multiplier","latest_round_id":5},{"slug":"dice","game_id":1,"type":"dice","latest_round_id":9}]}"#
    );
    assert_eq!(
        edge.get("/api/games/crash/latest", &key).await.unwrap(),
        (200, json(&rounds[4]))
    );
    assert_eq!(
        edge.get("/api/games/crash/rounds?limit=2", &key)
            .await
            .unwrap(),
        (
            200,
            format!(
                r#"{{"rounds":[{},{}]}}"#,
                json(&rounds[4]),
                json(&rounds[3])
            )
        )
    );
    assert_eq!(
        edge.get("/api/games/crash/rounds?limit=2&before=2", &key)
            .await
            .unwrap(),
        (200, format!(r#"{{"rounds":[{}]}}"#, json(&rounds[0])))
    );
    let (_, all) = edge.get("/api/games/crash/rounds", &key).await.unwrap();
    assert_eq!(all.matches("round_id").count(), 5);

    for query in ["limit=0", "limit=1001", "limit=x", "before=x"] {
        let (status, body) = edge
            .get(&format!("/api/games/crash/rounds?{query}"), &key)
            .await
            .unwrap();
        assert_eq!(status, 400, "{query}");
        assert!(
            body.starts_with(r#"{"error":{"code":"bad_request","#),
            "{query}: {body}"
        );
    }
    // The key in the query works as well as the header.
    let response = edge
        .http
        .get(edge.url(&format!("/api/games/crash/latest?api_key={key}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_the_right_status() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let get = |path: String| {
        let edge = &edge;
        let key = key.clone();
        async move { edge.get(&path, &key).await }
    };

    let (status, body) = get("/sse/Crash!".to_string()).await.unwrap();
    assert_eq!(status, 400);
    assert!(
        body.starts_with(r#"{"error":{"code":"bad_request","message":"invalid game slug"#),
        "{body}"
    );
    let (status, _) = get(format!("/sse/{}", "a".repeat(65))).await.unwrap();
    assert_eq!(status, 400);
    let (status, _) = get("/sse/type/Bad!".to_string()).await.unwrap();
    assert_eq!(status, 400);
    assert_eq!(
        get("/nowhere".to_string()).await.unwrap(),
        (
            404,
            r#"{"error":{"code":"not_found","message":"no such route"}}"#.into()
        )
    );
    let response = edge
        .http
        .delete(edge.url("/api/games"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .starts_with(r#"{"error":{"code":"method_not_allowed","#)
    );
    let (status, body) = edge.get("/api/games", "sk_test_short").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            401,
            r#"{"error":{"code":"invalid_api_key","message":"unknown API key"}}"#
        )
    );
    assert_eq!(
        edge.http
            .get(edge.url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        r#"{"status":"ok","limits":"off","config":"ok"}"#
    );

    // Ingest route: bad signature and malformed batches store nothing.
    let good = serde_json::to_vec(&shared::IngestBatch {
        events: events(New, &[round(1, "crash", "multiplier")]),
    })
    .unwrap();
    let (status, body) = edge.post_raw(&good, false).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            401,
            r#"{"error":{"code":"invalid_signature","message":"invalid signature"}}"#
        )
    );
    for malformed in [
        &br#"{"events":[{"kind":"new"}]}"#[..],
        br#"not json"#,
        br#"{"events":[{"kind":"new","round":{"round_id":1,"game_id":1,"game_slug":"Bad Slug","game_type":"x","finished_at":"","extras":"{}","timestamp":0}}]}"#,
    ] {
        let (status, body) = edge.post_raw(malformed, true).await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.starts_with(r#"{"error":{"code":"invalid_batch","#), "{body}");
    }
    let huge = vec![b' '; 1024 * 1024 + 1];
    let (status, body) = edge.post_raw(&huge, true).await.unwrap();
    assert_eq!(status, 413);
    assert!(
        body.starts_with(r#"{"error":{"code":"payload_too_large","#),
        "{body}"
    );
    let (status, _) = get("/api/games/crash/latest".to_string()).await.unwrap();
    assert_eq!(status, 404, "nothing was stored by refused batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_is_served() {
    let edge = Edge::start(&[]).await.unwrap();
    let response = edge
        .http
        .get(edge.url("/?api_key=sk_test_whatever"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    // The key sits in the page's URL: it must not travel on as a referrer.
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"import { GameFeed } from "/client.js""#) && html.contains("/api/games"),
        "{html}"
    );

    // The client it uses is the package's build, importable from any origin.
    let response = edge.http.get(edge.url("/client.js")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let served = response.text().await.unwrap();
    let built =
        std::fs::read_to_string(devstack::repo_root().join("client/dist/index.js")).unwrap();
    assert_eq!(served, built);
    assert!(served.contains("GameFeed"));
}
