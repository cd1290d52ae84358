//! API keys at the edge: admin routes, scopes, origins and CORS, expiry and
//! revocation ending open streams.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use devstack::edge::{Edge, TIMEOUT, events, round};
use reqwest::Method;
use serde_json::json;
use shared::EventKind::New;
use shared::apikey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_create_list_and_revoke_keys() {
    let edge = Edge::start(&[]).await.unwrap();

    // Without the admin token, or with a wrong one: 401.
    for token in [None, Some("wrong-token")] {
        let mut request = edge.http.get(edge.url("/admin/keys"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"error":{"code":"unauthorized","message":"admin token required"}}"#
        );
    }

    // Creation shows the key once, in the documented shape.
    let (status, created) = edge
        .admin(
            Method::POST,
            "/admin/keys",
            Some(json!({"name": "partner", "games": ["crash"], "max_streams": 5})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(apikey::PREFIX_LIVE) && apikey::is_well_formed(&key),
        "{key}"
    );
    assert_eq!(created["name"], "partner");
    assert_eq!(created["games"], json!(["crash"]));
    assert_eq!(created["revoked"], false);
    let id = created["id"].as_str().unwrap().to_string();

    // The list has the record but neither the key nor its hash.
    let (status, listed) = edge.admin(Method::GET, "/admin/keys", None).await.unwrap();
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(
        text.contains(&id) && !text.contains(&key) && !text.contains(&apikey::hash_hex(&key)),
        "{text}"
    );

    // Bad requests are 400 with a reason.
    for (body, needle) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "games": ["Bad Slug"]}), "games"),
        (json!({"name": "x", "origins": ["example.com"]}), "origins"),
        (json!({"name": "x", "expires_at": "tomorrow"}), "expires_at"),
        (
            json!({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}),
            "past",
        ),
        (json!({"name": "x", "unknown": 1}), "unknown"),
    ] {
        let (status, answer) = edge
            .admin(Method::POST, "/admin/keys", Some(body.clone()))
            .await
            .unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(needle),
            "{body}: {answer}"
        );
    }

    // Revocation: the key stops working; unknown ids are 404.
    let (status, revoked) = edge
        .admin(Method::DELETE, &format!("/admin/keys/{id}"), None)
        .await
        .unwrap();
    assert_eq!((status, revoked["revoked"].clone()), (200, json!(true)));
    let (status, body) = edge.get("/api/games", &key).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        body,
        r#"{"error":{"code":"invalid_api_key","message":"API key revoked"}}"#
    );
    let (status, _) = edge
        .admin(Method::DELETE, "/admin/keys/key_nope", None)
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_limit_games_and_types() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.store(events(
        New,
        &[round(1, "crash", "multiplier"), round(2, "dice", "dice")],
    ))
    .await
    .unwrap();
    let (games_key, _) = edge
        .create_key(json!({"name": "g", "games": ["crash"]}))
        .await
        .unwrap();
    let (types_key, _) = edge
        .create_key(json!({"name": "t", "types": ["dice"]}))
        .await
        .unwrap();

    let status = |path: String| {
        let http = edge.http.clone();
        let url = edge.url(&path);
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("/sse/crash?api_key={games_key}")).await, 200);
    assert_eq!(status(format!("/sse/dice?api_key={games_key}")).await, 403);
    assert_eq!(
        status(format!("/sse/type/multiplier?api_key={games_key}")).await,
        403
    );
    assert_eq!(status(format!("/sse/dice?api_key={types_key}")).await, 200);
    assert_eq!(
        status(format!("/sse/type/dice?api_key={types_key}")).await,
        200
    );
    assert_eq!(status(format!("/sse/crash?api_key={types_key}")).await, 403);
    assert_eq!(
        status(format!("/sse?games=crash,dice&api_key={games_key}")).await,
        403
    );

    let (code, body) = edge.get("/sse/dice", &games_key).await.unwrap();
    assert_eq!(code, 403);
    assert_eq!(
        body,
        r#"{"error":{"code":"forbidden","message":"this API key may not read game dice"}}"#
    );
    // The games list shows only what the key may read.
    let (_, body) = edge.get("/api/games", &types_key).await.unwrap();
    assert_eq!(
        body,
        r#"{"games":[{"slug":"dice","game_id":1,"type":"dice","latest_round_id":2}]}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_and_cors() {
    let edge = Edge::start(&[]).await.unwrap();
    edge.seed(&[("crash", "multiplier"), ("dice", "dice")])
        .await
        .unwrap();
    let (key, _) = edge
        .create_key(json!({"name": "site", "origins": ["https://good.example"]}))
        .await
        .unwrap();
    let open = edge.open_key().await.unwrap();
    let url = edge.url(&format!("/api/games?api_key={key}"));

    let good = edge
        .http
        .get(&url)
        .header("origin", "https://good.example")
        .send()
        .await
        .unwrap();
    assert_eq!(good.status().as_u16(), 200);
    assert_eq!(
        good.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    let evil = edge
        .http
        .get(&url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status().as_u16(), 403);
    // The refused origin cannot read why; every other error is readable
    // by the page that got it, `Retry-After` included.
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    for (path, status) in [
        (
            format!("/api/games?api_key=sk_test_{}", "W".repeat(40)),
            401,
        ),
        ("/api/games".to_string(), 401),
        (
            format!("/api/games/crash/rounds?limit=0&api_key={key}"),
            400,
        ),
        (format!("/sse/made-up?api_key={open}"), 404),
        (format!("/sse/crash?api_key={open}&last_event_id=abc"), 400),
    ] {
        let answer = edge
            .http
            .get(edge.url(&path))
            .header("origin", "https://good.example")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path}");
        let headers = answer.headers();
        assert_eq!(
            headers["access-control-allow-origin"], "https://good.example",
            "{path}"
        );
        assert_eq!(
            headers["access-control-expose-headers"], "retry-after",
            "{path}"
        );
        assert_eq!(headers["vary"], "origin", "{path}");
    }

    // Preflight: answered from the key in the URL.
    let preflight = |origin: &'static str| {
        edge.http
            .request(Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let ok = preflight("https://good.example").await.unwrap();
    assert_eq!(ok.status().as_u16(), 204);
    // Cached by the browser: a client sending `Authorization` does not pay
    // a preflight per connect.
    assert_eq!(ok.headers()["access-control-max-age"], "86400");
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    assert!(
        ok.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    assert_eq!(
        preflight("https://evil.example")
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // A key without origin limits may be used from any page.
    let any = edge
        .http
        .get(edge.url(&format!("/sse/crash?api_key={open}")))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(any.headers()["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_expiry_end_open_streams() {
    let edge = Edge::start(&[("KEY_RECHECK_SECS", "1"), ("KEY_CACHE_SECS", "1")])
        .await
        .unwrap();
    edge.seed(&[("crash", "multiplier")]).await.unwrap();
    let (key, id) = edge.create_key(json!({"name": "to revoke"})).await.unwrap();
    let mut revoked = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    revoked.read_frames(1, TIMEOUT).await.unwrap();
    let (status, _) = edge
        .admin(Method::DELETE, &format!("/admin/keys/{id}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    revoked
        .read_to_end(TIMEOUT)
        .await
        .expect("the stream of a revoked key ends");
    let (status, _) = edge.get("/sse/crash", &key).await.unwrap();
    assert_eq!(status, 401);

    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let expires_at = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (key, _) = edge
        .create_key(json!({"name": "short-lived", "expires_at": expires_at}))
        .await
        .unwrap();
    let mut expiring = edge
        .sse(&format!("/sse/crash?api_key={key}"))
        .await
        .unwrap();
    expiring.read_frames(1, TIMEOUT).await.unwrap();
    expiring
        .read_to_end(TIMEOUT)
        .await
        .expect("the stream of an expired key ends");
    assert!(
        time::OffsetDateTime::now_utc() >= soon,
        "ended before the expiry"
    );
    let (status, body) = edge.get("/sse/crash", &key).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            401,
            r#"{"error":{"code":"invalid_api_key","message":"API key expired"}}"#
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_script_drives_the_admin_routes() {
    let edge = Edge::start(&[]).await.unwrap();
    let script = devstack::repo_root().join("scripts/keys.sh");
    let run = |args: &[&str]| {
        let output = std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .env("FEED_URL", &edge.worker.url)
            .env("ADMIN_TOKEN", &edge.admin_token)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let created = run(&["create", "partner", "--games", "crash,dice", "--test"]);
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(apikey::PREFIX_TEST));
    assert_eq!(created["games"], json!(["crash", "dice"]));
    assert_eq!(edge.get("/api/games", &key).await.unwrap().0, 200);
    let listed = run(&["list"]);
    assert_eq!(listed["keys"][0]["id"], json!(id));
    assert_eq!(run(&["revoke", &id])["revoked"], json!(true));
    assert_eq!(edge.get("/api/games", &key).await.unwrap().0, 401);

    // A wrong admin token is reported, not ignored.
    let output = std::process::Command::new("bash")
        .arg(&script)
        .arg("list")
        .env("FEED_URL", &edge.worker.url)
        .env("ADMIN_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_script_follows_no_redirect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Where a redirect would lead: counts who comes.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    let visits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&visits);
    tokio::spawn(async move {
        while let Ok((_conn, _)) = elsewhere.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    // The "Worker": answers everything with a 307 there.
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", redirector.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = redirector.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere_addr}/admin/keys\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = conn.write_all(answer.as_bytes()).await;
        }
    });
    for args in [&["list"][..], &["create", "partner"]] {
        let output = tokio::process::Command::new("bash")
            .arg(devstack::repo_root().join("scripts/keys.sh"))
            .args(args)
            .env("FEED_URL", &url)
            .env("ADMIN_TOKEN", "a-token-that-must-not-travel")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr.contains("307") && stderr.contains("not followed"),
            "{stderr}"
        );
    }
    assert_eq!(visits.load(std::sync::atomic::Ordering::SeqCst), 0);
}
