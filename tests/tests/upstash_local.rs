//! `upstash-local` (docs/protocol.md#per-key-limits-and-usage) in front of a real redis-server: Upstash's
//! own JS client against it, and the protocol's shapes byte for byte.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use devstack::upstash_local::{Redis, UpstashLocal, start_pair};
use devstack::{http_client, repo_root};

const TOKEN: &str = "upstash-local-test-token";

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_upstash-local"))
}

/// redis-server and upstash-local on a fresh temp dir. The dir comes first
/// so it is dropped last, after both processes stopped.
async fn start() -> (tempfile::TempDir, Redis, UpstashLocal) {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(&dir.path().join("redis"), &dir.path().join("redis.log"))
        .await
        .unwrap();
    let upstash = UpstashLocal::start(
        binary(),
        &redis,
        TOKEN,
        &dir.path().join("upstash-local.log"),
    )
    .await
    .unwrap();
    assert!(
        upstash.url.starts_with("http://127.0.0.1:"),
        "{}",
        upstash.url
    );
    (dir, redis, upstash)
}

/// A POST to `path` with `body`, authorized with `token`, base64 replies
/// when asked: (status, content type, body).
async fn post(
    upstash: &UpstashLocal,
    path: &str,
    token: Option<&str>,
    base64: bool,
    body: impl Into<reqwest::Body>,
) -> (u16, String, String) {
    let mut request = http_client()
        .post(format!("{}{path}", upstash.url))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if base64 {
        request = request.header("Upstash-Encoding", "base64");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

/// A command or pipeline body, authorized, plain replies: (status, body).
async fn call(upstash: &UpstashLocal, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = post(upstash, path, Some(TOKEN), false, body.to_string()).await;
    (status, body)
}

async fn call64(upstash: &UpstashLocal, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = post(upstash, path, Some(TOKEN), true, body.to_string()).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstash_js_client_works_against_it() {
    let (_dir, _redis, upstash) = start().await;
    let root = repo_root();
    let local_node = root.join("node_modules/.bin/node");
    let node = if local_node.exists() {
        local_node
    } else {
        "node".into()
    };
    let run = tokio::process::Command::new(&node)
        .arg(root.join("tests/upstash/client.mjs"))
        .arg(&upstash.url)
        .arg(TOKEN)
        .current_dir(&root)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("client.mjs did not finish within 120 s")
        .unwrap_or_else(|err| panic!("running {}: {err}", node.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node tests/upstash/client.mjs failed ({}); run scripts/setup.sh if @upstash/redis is missing\n\
         --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- upstash-local ---\n{}",
        output.status,
        upstash.proc.log_tail(4000)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_and_malformed_bodies() {
    let (_dir, _redis, upstash) = start().await;
    let unauthorized = r#"{"error":"Unauthorized"}"#;
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("upstash-local-test-token-"),
    ] {
        let (status, content_type, body) = post(&upstash, "/", token, false, r#"["PING"]"#).await;
        assert_eq!(
            (status, content_type.as_str(), body.as_str()),
            (401, "application/json", unauthorized),
            "token {token:?}"
        );
    }
    // Every route checks it, the path form too; `?_token=` is Upstash's
    // other way of giving it.
    assert_eq!(
        post(&upstash, "/pipeline", Some("wrong"), false, "[]")
            .await
            .2,
        unauthorized
    );
    let get = |path: &str| {
        let url = format!("{}{path}", upstash.url);
        async move {
            let response = http_client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/get/k").await, (401, unauthorized.to_string()));
    assert_eq!(
        get(&format!("/echo/hi?_token={TOKEN}")).await,
        (200, r#"{"result":"hi"}"#.to_string())
    );

    for body in [
        "not json",
        "",
        "[]",
        r#"{"a":1}"#,
        r#"["GET",null]"#,
        r#"["GET",{"k":1}]"#,
        r#"[["GET","k"]]"#,
        r#""PING""#,
    ] {
        let (status, content_type, text) =
            post(&upstash, "/", Some(TOKEN), false, body.to_string()).await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, "application/json"),
            "{body}: {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}: {text}"
        );
    }
    for body in [
        "[]",
        r#"[["PING"],[]]"#,
        r#"[["PING"],"PING"]"#,
        r#"["PING"]"#,
    ] {
        for path in ["/pipeline", "/multi-exec"] {
            let (status, text) = call(&upstash, path, body).await;
            assert_eq!(status, 400, "{path} {body}: {text}");
            assert!(text.starts_with(r#"{"error":""#), "{path} {body}: {text}");
        }
    }

    // Bodies are bounded.
    let (status, content_type, text) = post(
        &upstash,
        "/",
        Some(TOKEN),
        false,
        vec![b' '; 1024 * 1024 + 1],
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (413, "application/json"),
        "{text}"
    );
    assert!(text.starts_with(r#"{"error":""#), "{text}");
    // Commands that would take over the shared connection are refused.
    let (status, text) = call(&upstash, "/", r#"["SUBSCRIBE","ch"]"#).await;
    assert_eq!(status, 400, "{text}");
    // The endpoint still answers after all that.
    assert_eq!(
        call(&upstash, "/", r#"["PING"]"#).await,
        (200, r#"{"result":"PONG"}"#.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelines_and_transactions() {
    let (_dir, _redis, upstash) = start().await;
    let ok = |s: &str| (200, s.to_string());
    let err = |s: &str| (400, s.to_string());

    assert_eq!(
        call(&upstash, "/", r#"["SET","k","x"]"#).await,
        ok(r#"{"result":"OK"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["GET","k"]"#).await,
        ok(r#"{"result":"x"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["GET","nope"]"#).await,
        ok(r#"{"result":null}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["INCR","k"]"#).await,
        err(r#"{"error":"ERR value is not an integer or out of range"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["LPUSH","k","a"]"#).await,
        err(r#"{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"}"#)
    );
    let (status, text) = call(&upstash, "/", r#"["NOSUCHCOMMAND","a"]"#).await;
    assert_eq!(status, 400);
    assert!(
        text.starts_with(r#"{"error":"ERR unknown command"#),
        "{text}"
    );
    // Numbers and booleans are arguments too, stringified.
    assert_eq!(
        call(&upstash, "/", r#"["SET","n",41]"#).await,
        ok(r#"{"result":"OK"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["INCRBY","n",1]"#).await,
        ok(r#"{"result":42}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["INCRBYFLOAT","n",0.5]"#).await,
        ok(r#"{"result":"42.5"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["SET","b",true]"#).await,
        ok(r#"{"result":"OK"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["GET","b"]"#).await,
        ok(r#"{"result":"true"}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["RPUSH","l","a/b","ü€😀"]"#).await,
        ok(r#"{"result":2}"#)
    );
    assert_eq!(
        call(&upstash, "/", r#"["LRANGE","l",0,-1]"#).await,
        ok(r#"{"result":["a/b","ü€😀"]}"#)
    );

    // Pipeline: one entry per command, a failing one in the middle.
    assert_eq!(
        call(
            &upstash,
            "/pipeline",
            r#"[["SET","p","1"],["INCR","k"],["INCR","p"],["GET","p"],["GET","nope"]]"#
        )
        .await,
        ok(
            r#"[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":2},{"result":"2"},{"result":null}]"#
        )
    );
    // Transaction: the same shape; a command failing at run time does not
    // stop the others.
    assert_eq!(
        call(
            &upstash,
            "/multi-exec",
            r#"[["SET","m","1"],["INCR","m"],["LPUSH","m","x"],["GET","m"],["LRANGE","l",0,0]]"#
        )
        .await,
        ok(
            r#"[{"result":"OK"},{"result":2},{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"},{"result":"2"},{"result":["a/b"]}]"#
        )
    );
    // A command Redis refuses while queueing discards the whole transaction.
    let (status, text) = call(
        &upstash,
        "/multi-exec",
        r#"[["SET","m2","1"],["NOSUCHCOMMAND"],["SET","m3","1"]]"#,
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with(r#"{"error":"EXECABORT "#), "{text}");
    assert!(
        text.contains("Command 2 was refused: ERR unknown command"),
        "{text}"
    );
    assert_eq!(
        call(&upstash, "/pipeline", r#"[["EXISTS","m2","m3"]]"#).await,
        ok(r#"[{"result":0}]"#)
    );

    // Lua goes straight through, EVALSHA too.
    let script = "return {KEYS[1], ARGV[1], 7, redis.call('SET', KEYS[1], ARGV[1])}";
    let eval = serde_json::json!(["EVAL", script, 1, "lk", "lv"]).to_string();
    assert_eq!(
        call(&upstash, "/", &eval).await,
        ok(r#"{"result":["lk","lv",7,"OK"]}"#)
    );
    let load = serde_json::json!(["SCRIPT", "LOAD", script]).to_string();
    let (status, text) = call(&upstash, "/", &load).await;
    assert_eq!(status, 200, "{text}");
    let sha: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sha = sha["result"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 40);
    let evalsha = serde_json::json!(["EVALSHA", sha, 1, "lk", "again"]).to_string();
    assert_eq!(
        call(&upstash, "/", &evalsha).await,
        ok(r#"{"result":["lk","again",7,"OK"]}"#)
    );

    // The path form: percent-decoded segments, the query appended, a POST
    // body as the last argument.
    let get = |path: String| {
        let url = format!("{}{path}", upstash.url);
        async move {
            let response = http_client()
                .get(url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/set/a%2Fb/c%20d%C3%BC?EX=100".into()).await,
        ok(r#"{"result":"OK"}"#)
    );
    assert_eq!(get("/get/a%2Fb".into()).await, ok(r#"{"result":"c dü"}"#));
    assert_eq!(get("/ttl/a%2Fb".into()).await.1, r#"{"result":100}"#);
    assert_eq!(
        post(&upstash, "/set/posted", Some(TOKEN), false, "a body/with ü")
            .await
            .2,
        r#"{"result":"OK"}"#
    );
    assert_eq!(
        get("/get/posted".into()).await,
        ok(r#"{"result":"a body/with ü"}"#)
    );
    assert_eq!(
        get("/incr/a%2Fb".into()).await,
        err(r#"{"error":"ERR value is not an integer or out of range"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_encoding_is_byte_exact() {
    let (_dir, _redis, upstash) = start().await;
    let b64 = |s: &[u8]| BASE64.encode(s);
    let text = "a/b c/ü€😀";
    let set = serde_json::json!(["SET", "t", text]).to_string();

    // The status OK stays "OK" as a whole result; every other string is
    // encoded; numbers and null are not; errors are not.
    assert_eq!(
        call64(&upstash, "/", &set).await,
        (200, r#"{"result":"OK"}"#.into())
    );
    assert_eq!(
        call64(&upstash, "/", r#"["GET","t"]"#).await.1,
        format!(r#"{{"result":"{}"}}"#, b64(text.as_bytes()))
    );
    assert_eq!(
        call64(&upstash, "/", r#"["PING"]"#).await.1,
        r#"{"result":"UE9ORw=="}"#
    );
    assert_eq!(
        call64(&upstash, "/", r#"["INCR","n"]"#).await.1,
        r#"{"result":1}"#
    );
    assert_eq!(
        call64(&upstash, "/", r#"["GET","nope"]"#).await.1,
        r#"{"result":null}"#
    );
    assert_eq!(
        call64(&upstash, "/", r#"["INCR","t"]"#).await,
        (
            400,
            r#"{"error":"ERR value is not an integer or out of range"}"#.into()
        )
    );
    // A string value "OK" is encoded like any other.
    call(&upstash, "/", r#"["SET","ok","OK"]"#).await;
    assert_eq!(
        call64(&upstash, "/", r#"["GET","ok"]"#).await.1,
        r#"{"result":"T0s="}"#
    );
    // In arrays every string is encoded, the status OK too (the JS client
    // decodes every string of an array).
    assert_eq!(
        call64(&upstash, "/", r#"["MGET","t","nope","ok"]"#).await.1,
        format!(r#"{{"result":["{}",null,"T0s="]}}"#, b64(text.as_bytes()))
    );
    let eval = serde_json::json!([
        "EVAL",
        "return {redis.call('SET', KEYS[1], 'v'), 5, {ARGV[1]}}",
        1,
        "e",
        "ü"
    ])
    .to_string();
    assert_eq!(
        call64(&upstash, "/", &eval).await.1,
        format!(r#"{{"result":["T0s=",5,["{}"]]}}"#, b64("ü".as_bytes()))
    );
    // Pipelines and transactions: each entry's result as a whole result.
    for path in ["/pipeline", "/multi-exec"] {
        let list = format!("list{path}");
        let body = serde_json::json!([
            ["SET", "x", "y"],
            ["GET", "x"],
            ["INCR", "x"],
            ["LRANGE", list, 0, -1],
            ["RPUSH", list, "z"]
        ])
        .to_string();
        assert_eq!(
            call64(&upstash, path, &body).await,
            (
                200,
                r#"[{"result":"OK"},{"result":"eQ=="},{"error":"ERR value is not an integer or out of range"},{"result":[]},{"result":1}]"#
                    .into()
            ),
            "{path}"
        );
    }

    // Bytes that are not UTF-8: exact in base64, replaced without it.
    let raw = serde_json::json!([
        "EVAL",
        "return redis.call('SET', KEYS[1], string.char(255, 0, 65))",
        1,
        "raw"
    ])
    .to_string();
    assert_eq!(call(&upstash, "/", &raw).await.1, r#"{"result":"OK"}"#);
    assert_eq!(
        call64(&upstash, "/", r#"["GET","raw"]"#).await.1,
        format!(r#"{{"result":"{}"}}"#, b64(&[255, 0, 65]))
    );
    let (_, plain) = call(&upstash, "/", r#"["GET","raw"]"#).await;
    let plain: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(plain["result"], "\u{fffd}\u{0}A");
    // Any case of the header's value.
    let response = http_client()
        .post(&upstash.url)
        .bearer_auth(TOKEN)
        .header("upstash-encoding", "BASE64")
        .body(r#"["GET","x"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), r#"{"result":"eQ=="}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_at_once_when_redis_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing.sock");
    let run = tokio::process::Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--redis-url"])
        .arg(format!("redis+unix://{}", socket.display()))
        .env("UPSTASH_LOCAL_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("upstash-local kept running without Redis")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("upstash-local: connecting to Redis at"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "{:?}", output.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_data_persists_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("redis");
    let log = dir.path().join("redis.log");
    let url = {
        let redis = Redis::start_with(&data, &log, true).await.unwrap();
        let upstash = UpstashLocal::start(binary(), &redis, TOKEN, &dir.path().join("u1.log"))
            .await
            .unwrap();
        assert_eq!(
            call(&upstash, "/", r#"["SET","kept","yes"]"#).await.1,
            r#"{"result":"OK"}"#
        );
        assert_eq!(
            upstash.worker_vars(),
            [
                ("UPSTASH_REDIS_REST_URL", upstash.url.clone()),
                ("UPSTASH_REDIS_REST_TOKEN", TOKEN.to_string())
            ]
        );
        redis.url.clone()
    };
    // Both stopped (SIGTERM): the append-only file holds the write.
    let redis = Redis::start_with(&data, &log, true).await.unwrap();
    assert_eq!(redis.url, url);
    let upstash = UpstashLocal::start(binary(), &redis, TOKEN, &dir.path().join("u2.log"))
        .await
        .unwrap();
    assert_eq!(
        call(&upstash, "/", r#"["GET","kept"]"#).await.1,
        r#"{"result":"yes"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_hangs_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, upstash) = start_pair(dir.path(), binary(), TOKEN, false)
        .await
        .unwrap();
    assert!(dir.path().join("upstash-local.log").exists());
    let ping = || {
        http_client()
            .post(&upstash.url)
            .bearer_auth(TOKEN)
            .timeout(Duration::from_millis(300))
            .body(r#"["PING"]"#)
            .send()
    };
    upstash.pause();
    let err = ping().await.expect_err("a paused endpoint answered");
    assert!(err.is_timeout(), "{err}");
    upstash.resume();
    let response = ping().await.unwrap();
    assert_eq!(response.text().await.unwrap(), r#"{"result":"PONG"}"#);
    // Dropped while paused, it still stops at once.
    upstash.pause();
}

/// It refuses what Upstash refuses, with Upstash's error, takes its token
/// from the environment only, and bounds the Redis connections a flood of
/// blocking commands could open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_refuses_what_upstash_refuses_and_bounds_its_connections() {
    let (_dir, redis, upstash) = start().await;
    call(&upstash, "/", r#"["SET","survives","1"]"#).await;
    for admin in [
        "SHUTDOWN",
        "FLUSHALL",
        "FLUSHDB",
        "CONFIG",
        "CLIENT",
        "DEBUG",
        "MONITOR",
        "SUBSCRIBE",
    ] {
        let body = format!(r#"["{admin}","x"]"#);
        let expected = format!(
            r#"{{"error":"ERR Command is not available: '{}'"}}"#,
            admin.to_lowercase()
        );
        assert_eq!(call(&upstash, "/", &body).await, (400, expected), "{admin}");
        let (status, _) = call(&upstash, "/pipeline", &format!("[{body}]")).await;
        assert_eq!(status, 400, "{admin} in a pipeline");
    }
    assert_eq!(
        call(&upstash, "/", r#"["GET","survives"]"#).await,
        (200, r#"{"result":"1"}"#.to_string()),
        "nothing was flushed, nothing shut down"
    );

    // Blocking commands each hold a connection of their own: at most 32.
    let mut blocked = Vec::new();
    for _ in 0..32 {
        let url = upstash.url.clone();
        blocked.push(tokio::spawn(async move {
            http_client()
                .post(url)
                .bearer_auth(TOKEN)
                .body(r#"["BLPOP","queue","0"]"#)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }));
    }
    devstack::wait_for("32 blocked clients", Duration::from_secs(60), || async {
        let (_, info) = call(&upstash, "/", r#"["INFO","clients"]"#).await;
        info.contains("blocked_clients:32").then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        call(&upstash, "/", r#"["BLPOP","queue","0"]"#).await,
        (
            400,
            r#"{"error":"ERR max concurrent connections exceeded"}"#.to_string()
        )
    );
    let values: Vec<String> = (0..32).map(|i| format!(r#""v{i}""#)).collect();
    call(
        &upstash,
        "/",
        &format!(r#"["RPUSH","queue",{}]"#, values.join(",")),
    )
    .await;
    for one in blocked {
        assert!(one.await.unwrap().starts_with(r#"{"result":["queue","v"#));
    }
    // Their connections are given back.
    let (status, _) = call(&upstash, "/", r#"["BLPOP","queue","1"]"#).await;
    assert_eq!(status, 200);

    // The token: never on the command line.
    let without_token = |extra: &'static [&'static str]| {
        let run = tokio::process::Command::new(binary())
            .args(["--listen", "127.0.0.1:0", "--redis-url", &redis.url])
            .args(extra)
            .env_remove("UPSTASH_LOCAL_TOKEN")
            .kill_on_drop(true)
            .output();
        async move {
            tokio::time::timeout(Duration::from_secs(60), run)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let output = without_token(&["--token", TOKEN]).await;
    assert!(!output.status.success());
    let output = without_token(&[]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("UPSTASH_LOCAL_TOKEN must be set"),
        "{stderr}"
    );
}

/// The rotated-token fault: every request is `401` until the token is
/// taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_refused_until_taken_again() {
    let (_dir, _redis, upstash) = start().await;
    upstash.refuse_token(true).await.unwrap();
    assert_eq!(
        call(&upstash, "/", r#"["PING"]"#).await,
        (401, r#"{"error":"Unauthorized"}"#.to_string())
    );
    upstash.refuse_token(false).await.unwrap();
    assert_eq!(
        call(&upstash, "/", r#"["PING"]"#).await,
        (200, r#"{"result":"PONG"}"#.to_string())
    );
}

/// The native transport of `shared::upstash` (reqwest) against the real
/// thing: typed values, server errors as errors, pipelines, transactions,
/// base64, a wrong token, and the time bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_transport_speaks_the_protocol() {
    use devstack::upstash_client::client;
    use shared::upstash::{Command, Encoding, Error, Value};

    let (_dir, _redis, upstash) = start().await;
    let redis = client(&upstash.url, TOKEN, Duration::from_secs(30));
    let text = "a/b c/ü€😀";
    assert_eq!(
        redis.exec(&Command::new("SET").arg("k").arg(text)).await,
        Ok(Value::Bytes(b"OK".to_vec()))
    );
    assert_eq!(
        redis
            .exec(&Command::new("GET").arg("k"))
            .await
            .unwrap()
            .as_str(),
        Ok(text)
    );
    assert_eq!(
        redis.exec(&Command::new("GET").arg("nope")).await,
        Ok(Value::Nil)
    );
    assert_eq!(
        redis.exec(&Command::new("INCRBY").arg("n").arg(41)).await,
        Ok(Value::Int(41))
    );
    // A failing command is an error, never a success.
    assert!(matches!(
        redis.exec(&Command::new("INCR").arg("k")).await,
        Err(Error::Server(message)) if message.contains("not an integer")
    ));
    let results = redis
        .pipeline(&[
            Command::new("INCR").arg("n"),
            Command::new("INCR").arg("k"),
            Command::new("ZADD")
                .arg("z")
                .arg(2)
                .arg("b")
                .arg(1)
                .arg("a"),
            Command::new("ZRANGE").arg("z").arg(0).arg(-1),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], Ok(Value::Int(42)));
    assert!(matches!(results[1], Err(Error::Server(_))));
    assert_eq!(results[2], Ok(Value::Int(2)));
    assert_eq!(
        results[3],
        Ok(Value::Array(vec![
            Value::Bytes(b"a".to_vec()),
            Value::Bytes(b"b".to_vec())
        ]))
    );
    let transaction = redis
        .multi_exec(&[Command::new("INCR").arg("t"), Command::new("INCR").arg("t")])
        .await
        .unwrap();
    assert_eq!(transaction, vec![Ok(Value::Int(1)), Ok(Value::Int(2))]);
    // Lua, as the Worker's admission uses it.
    let lua = redis
        .exec(
            &Command::new("EVAL")
                .arg("return {KEYS[1], tonumber(ARGV[1]) + 1}")
                .arg(1)
                .arg("x")
                .arg(41),
        )
        .await
        .unwrap();
    assert_eq!(
        lua,
        Value::Array(vec![Value::Bytes(b"x".to_vec()), Value::Int(42)])
    );

    // Base64: any bytes survive, the status OK stays plain.
    let b64 = client(&upstash.url, TOKEN, Duration::from_secs(30)).with_encoding(Encoding::Base64);
    assert_eq!(
        b64.exec(&Command::new("GET").arg("k"))
            .await
            .unwrap()
            .as_str(),
        Ok(text)
    );
    assert_eq!(
        b64.exec(&Command::new("SET").arg("j").arg("v")).await,
        Ok(Value::Bytes(b"OK".to_vec()))
    );

    // A wrong token; an endpoint that does not answer in time.
    let wrong = client(&upstash.url, "wrong", Duration::from_secs(30));
    assert_eq!(
        wrong.exec(&Command::new("PING")).await,
        Err(Error::Unauthorized)
    );
    upstash.pause();
    let slow = client(&upstash.url, TOKEN, Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(slow.exec(&Command::new("PING")).await, Err(Error::Timeout));
    upstash.resume();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(matches!(
        client("http://127.0.0.1:9", TOKEN, Duration::from_secs(5))
            .exec(&Command::new("PING"))
            .await,
        Err(Error::Transport(_))
    ));
}
