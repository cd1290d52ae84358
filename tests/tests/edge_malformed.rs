//! A malformed-request run against the real Worker (`wrangler dev`): a large,
//! deterministic set of bad inputs at every boundary — signed and unsigned
//! ingest batches, odd paths and methods on every route, odd queries and
//! headers, resume ids, browser-token and admin bodies.
//!
//! For every request: the answer is 2xx or 4xx (never 5xx, never a dropped
//! connection); every refusal by the Worker is its JSON error
//! (`{"error":{"code","message"}}`, `content-type: application/json`) whose
//! code belongs to the status; most cases also name the exact status or code
//! they must get. Afterwards nothing from a refused batch is stored (the
//! games listed, their latest round and history are exactly what was stored
//! on purpose), no admin call without the token changed anything, the
//! Worker's log shows no panic and none of its error lines, and the Worker
//! still stores, streams and answers `/healthz`. Failures are collected and
//! reported together; the request count per category is printed.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use devstack::edge::{Edge, TIMEOUT, events, frame, round};
use devstack::wait_for;
use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use shared::EventKind::New;
use shared::error::ErrorCode;
use shared::{Round, signature};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest batch body the Worker accepts.
const MIB: usize = 1024 * 1024;
/// The largest integer JavaScript (and so the objects' SQLite bindings)
/// holds exactly.
const MAX_SAFE: i64 = (1 << 53) - 1;

/// What a case must get.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exactly this 2xx status (a stream: 200 and `text/event-stream`).
    Ok(u16),
    /// Refused by the Worker with this error code (and so its status).
    Refused(&'static str),
    /// Any 2xx, or a 4xx JSON error: what is tested is that the Worker copes.
    Any,
    /// Headers so large that wrangler's proxy may refuse them before the
    /// Worker sees them: any 4xx (body free) from it, recorded; if the Worker
    /// answered, as [`Expect::Any`].
    ProxyMay,
    /// A request head over workerd's own limit: as [`Expect::ProxyMay`], and
    /// the front may also close the connection while the head is still
    /// being sent (recorded too). The Worker never sees it.
    HeadTooLarge,
}

/// An answer: status, content type and (unless it is a stream or a HEAD) body.
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `text` cut to something a failure message can show.
fn short(text: &str) -> String {
    if text.len() <= 120 {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(80).collect();
    format!("{head:?}…({} bytes)", text.len())
}

/// The error code of a Worker refusal, or why the body is not one.
fn error_code(status: u16, body: &[u8]) -> Result<ErrorCode, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "body is not JSON ({e}): {}",
            short(&String::from_utf8_lossy(body))
        )
    })?;
    let shape = || format!("body is not {{\"error\":{{\"code\",\"message\"}}}}: {value}");
    let top = value.as_object().ok_or_else(shape)?;
    let error = top
        .get("error")
        .and_then(Value::as_object)
        .ok_or_else(shape)?;
    if top.len() != 1 || error.len() != 2 {
        return Err(shape());
    }
    let message = error.get("message").and_then(Value::as_str);
    if message.is_none_or(str::is_empty) {
        return Err(shape());
    }
    let code: ErrorCode = error
        .get("code")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .ok_or_else(|| format!("unknown error code: {value}"))?;
    if code.status() != status {
        return Err(format!("code {code:?} is a {}: {value}", code.status()));
    }
    Ok(code)
}

fn code_of(name: &str) -> ErrorCode {
    serde_json::from_value(json!(name)).unwrap_or_else(|_| panic!("no error code {name}"))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The `x-signature` of `body` at `t` under `secret`.
fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    signature::sign(secret.as_bytes(), t, body).unwrap()
}

/// The hex tag of a signature header.
fn tag(header: &str) -> String {
    header.split_once("v1=").unwrap().1.to_string()
}

/// `{"events":[{"kind":"new","round":…}, …]}`.
fn batch(rounds: &[Round]) -> Value {
    json!({ "events": events(New, rounds) })
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// How a batch is signed.
enum Sig {
    /// Correctly, now, with the Worker's secret.
    Fresh,
    /// Not at all.
    Unsigned,
    /// With these `x-signature` header values (each its own header line).
    Headers(Vec<Vec<u8>>),
}

/// One request through an HTTP/1.1 connection of our own, for request
/// targets reqwest would normalise (`..`, `%2e%2e`). The body of a 200 stream
/// is not read.
async fn raw_exchange(address: &str, request: &[u8]) -> std::io::Result<Answer> {
    use std::io::{Error, ErrorKind};
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                format!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("bad head {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let content_type = header("content-type");
    if status == 200
        && content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/event-stream"))
    {
        return Ok(Answer {
            status,
            content_type,
            body: Vec::new(),
        });
    }
    let mut body = buf[head_end..].to_vec();
    match header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        Some(len) => {
            while body.len() < len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            stream.read_to_end(&mut body).await?;
            if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                body = dechunk(&body);
            }
        }
    }
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// The payload of a chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        raw = &raw[end + 2..];
        if size == 0 || raw.len() < size {
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// A run: requests sent, counted per category, every failure kept.
struct Run<'a> {
    edge: &'a Edge,
    name: &'static str,
    counts: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    proxy_refusals: Vec<String>,
    /// What the cases whose verdict is not pinned got.
    observed: Vec<String>,
}

impl<'a> Run<'a> {
    fn new(edge: &'a Edge, name: &'static str) -> Self {
        Self {
            edge,
            name,
            counts: BTreeMap::new(),
            failures: Vec::new(),
            proxy_refusals: Vec::new(),
            observed: Vec::new(),
        }
    }

    fn fail(&mut self, what: &str, why: String) {
        self.failures.push(format!("{what}: {why}"));
    }

    /// Sends `request` (counted under `category`) and checks the answer.
    async fn send(
        &mut self,
        category: &'static str,
        label: &str,
        request: reqwest::RequestBuilder,
        expect: Expect,
    ) -> Option<Answer> {
        *self.counts.entry(category).or_default() += 1;
        let what = format!("[{category}] {}", short(label));
        let request = request.build().unwrap();
        let head = request.method() == Method::HEAD;
        let response = match self.edge.http.execute(request).await {
            Ok(response) => response,
            Err(err) if matches!(expect, Expect::HeadTooLarge) => {
                self.proxy_refusals
                    .push(format!("{what}: connection closed ({err})"));
                return None;
            }
            Err(err) => {
                self.fail(&what, format!("no answer: {err:#}"));
                return None;
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let stream = status == 200
            && content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("text/event-stream"));
        let body = if stream {
            // An open stream: its status is what is tested; dropping it
            // ends the client.
            drop(response);
            Vec::new()
        } else {
            match tokio::time::timeout(TIMEOUT, response.bytes()).await {
                Ok(Ok(body)) => body.to_vec(),
                Ok(Err(err)) => {
                    self.fail(&what, format!("{status}, body cut: {err:#}"));
                    return None;
                }
                Err(_) => {
                    self.fail(&what, format!("{status}, body never ended"));
                    return None;
                }
            }
        };
        let answer = Answer {
            status,
            content_type,
            body,
        };
        self.check(&what, head, &answer, expect);
        Some(answer)
    }

    /// Sends `method target` as written, on a connection of our own.
    async fn raw(
        &mut self,
        category: &'static str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        expect: Expect,
    ) -> Option<Answer> {
        *self.counts.entry(category).or_default() += 1;
        let what = format!("[{category}] {method} {}", short(target));
        let address = self
            .edge
            .worker
            .url
            .trim_start_matches("http://")
            .to_string();
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\naccept: text/event-stream\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let answer =
            match tokio::time::timeout(TIMEOUT, raw_exchange(&address, request.as_bytes())).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(err)) => {
                    self.fail(&what, format!("no answer: {err}"));
                    return None;
                }
                Err(_) => {
                    self.fail(&what, "no answer in time".into());
                    return None;
                }
            };
        self.check(&what, method == "HEAD", &answer, expect);
        Some(answer)
    }

    fn check(&mut self, what: &str, head: bool, answer: &Answer, expect: Expect) {
        let status = answer.status;
        if !(200..300).contains(&status) && !(400..500).contains(&status) {
            return self.fail(what, format!("status {status}: {}", short(&answer.text())));
        }
        let json = answer.content_type.as_deref() == Some("application/json");
        let before_the_worker = matches!(expect, Expect::ProxyMay | Expect::HeadTooLarge);
        if before_the_worker && status >= 400 && !json {
            self.proxy_refusals.push(format!(
                "{what}: {status} {:?} {}",
                answer.content_type,
                short(&answer.text())
            ));
            return;
        }
        if before_the_worker || matches!(expect, Expect::Any) {
            self.observed.push(format!("{what}: {status}"));
        }
        let mut code = None;
        if status >= 400 {
            if !json {
                return self.fail(
                    what,
                    format!(
                        "{status} with content-type {:?}: {}",
                        answer.content_type,
                        short(&answer.text())
                    ),
                );
            }
            if head {
                if !answer.body.is_empty() {
                    return self.fail(what, "a body on a HEAD answer".into());
                }
            } else {
                match error_code(status, &answer.body) {
                    Ok(c) => code = Some(c),
                    Err(why) => return self.fail(what, format!("{status}: {why}")),
                }
            }
        }
        match expect {
            Expect::Ok(want) if status != want => self.fail(
                what,
                format!("{status} instead of {want}: {}", short(&answer.text())),
            ),
            Expect::Refused(name) => {
                let want = code_of(name);
                if status != want.status() || code.is_some_and(|c| c != want) {
                    self.fail(
                        what,
                        format!(
                            "{status} {} instead of {} {name}",
                            short(&answer.text()),
                            want.status()
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    /// `POST /internal/rounds` with `body`, signed as `sig`.
    async fn ingest(
        &mut self,
        category: &'static str,
        label: &str,
        body: Vec<u8>,
        sig: Sig,
        expect: Expect,
    ) -> Option<Answer> {
        let mut request = self
            .edge
            .http
            .post(self.edge.url("/internal/rounds"))
            .header("content-type", "application/json");
        match sig {
            Sig::Fresh => {
                request = request.header(signature::HEADER, sign(&self.edge.secret, now(), &body))
            }
            Sig::Unsigned => {}
            Sig::Headers(values) => {
                for value in values {
                    request =
                        request.header(signature::HEADER, HeaderValue::from_bytes(&value).unwrap());
                }
            }
        }
        self.send(category, label, request.body(body), expect).await
    }

    /// An accepted batch must answer exactly `reply`.
    fn reply_is(&mut self, label: &str, answer: Option<Answer>, reply: Value) {
        if let Some(answer) = answer {
            let got: Option<Value> = serde_json::from_slice(&answer.body).ok();
            if answer.status == 200 && got.as_ref() != Some(&reply) {
                self.fail(
                    &format!("[reply] {}", short(label)),
                    format!("answered {} instead of {reply}", answer.text()),
                );
            }
        }
    }

    /// A check of what is stored.
    fn stored(&mut self, result: Result<(), String>) {
        if let Err(why) = result {
            self.failures.push(format!("[stored] {why}"));
        }
    }

    /// `/healthz` still answers: after requests the proxy may have refused.
    async fn still_serving(&mut self, after: &str) {
        let healthy = self
            .edge
            .http
            .get(self.edge.url("/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if !matches!(healthy, Ok(200)) {
            self.fail(after, format!("/healthz then answered {healthy:?}"));
        }
    }

    /// Prints the counts, checks the Worker's log, fails with every failure.
    fn finish(self) {
        let total: usize = self.counts.values().sum();
        println!("edge_malformed {}: {total} requests", self.name);
        for (category, n) in &self.counts {
            println!("  {category}: {n}");
        }
        for refusal in &self.proxy_refusals {
            println!("  refused in front of the Worker (wrangler, workerd): {refusal}");
        }
        for seen in &self.observed {
            println!("  not pinned: {seen}");
        }
        // A panic, an uncaught exception, or one of the Worker's own error
        // lines (a failed store, runtime error, object failure) is a bug in
        // a run where every request is either valid or refusable up front.
        let log = std::fs::read(self.edge.worker.proc.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let mut failures = self.failures;
        for needle in [
            "panicked",
            "RuntimeError",
            "Uncaught",
            "internal error",
            "runtime error:",
            "serialisation failed",
            "store in ",
            "directory update",
            "object answered",
            "lookup failed",
            "waitUntil refused",
        ] {
            for line in log.lines().filter(|l| l.contains(needle)) {
                failures.push(format!("worker log: {}", short(line)));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {total} requests ({}) failed:\n{}",
            failures.len(),
            self.name,
            failures.join("\n")
        );
    }
}

/// The rounds stored on purpose in one game: `/latest` is the highest, and
/// the history holds exactly these, newest first.
async fn holds(edge: &Edge, key: &str, slug: &str, rounds: &[Round]) -> Result<(), String> {
    let mut sorted = rounds.to_vec();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.round_id));
    let json = |r: &Round| serde_json::to_string(r).unwrap();
    let latest = edge
        .get(&format!("/api/games/{slug}/latest"), key)
        .await
        .unwrap();
    if latest != (200, json(&sorted[0])) {
        return Err(format!("latest of {slug}: {latest:?}"));
    }
    let list: Vec<String> = sorted.iter().map(json).collect();
    let history = edge
        .get(&format!("/api/games/{slug}/rounds?limit=1000"), key)
        .await
        .unwrap();
    if history != (200, format!(r#"{{"rounds":[{}]}}"#, list.join(","))) {
        return Err(format!("history of {slug}: {history:?}"));
    }
    Ok(())
}

/// `GET /api/games` lists exactly `games` (slug, type, latest round id),
/// once the latest ids moved (they may move after the responses).
async fn lists(edge: &Edge, key: &str, games: &[(&str, &str, i64)]) -> Result<(), String> {
    let want = json!({
        "games": games
            .iter()
            .map(|(slug, t, latest)| {
                json!({"slug": slug, "game_id": 1, "type": t, "latest_round_id": latest})
            })
            .collect::<Vec<_>>()
    });
    let last = std::cell::RefCell::new(Value::Null);
    let listed = wait_for(
        "the directory to list the stored games",
        TIMEOUT,
        || async {
            let (_, body) = edge.get("/api/games", key).await.ok()?;
            let got: Value = serde_json::from_str(&body).ok()?;
            let done = got == want;
            *last.borrow_mut() = got;
            done.then_some(())
        },
    )
    .await;
    listed.map_err(|_| format!("games listed: {}, wanted {want}", last.borrow()))
}

/// Still serving at the end: a valid batch is stored, a stream opens with
/// it as `initial`, `/healthz` answers.
async fn assert_still_serves(edge: &Edge, key: &str, next: &Round) {
    assert_eq!(
        edge.store(events(New, std::slice::from_ref(next)))
            .await
            .unwrap(),
        json!({"stored": 1, "duplicates": 0})
    );
    let mut client = edge
        .sse(&format!("/sse/{}?api_key={key}", next.game_slug))
        .await
        .unwrap();
    client.read_frames(2, TIMEOUT).await.unwrap();
    assert_eq!(
        client.frames(),
        vec!["retry: 3000\n\n".to_string(), frame("initial", next)]
    );
    let health = edge.http.get(edge.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// `body` with `"__X__"` (a JSON string placeholder) replaced by raw text.
fn splice(template: &Value, raw: &str) -> Vec<u8> {
    serde_json::to_string(template)
        .unwrap()
        .replacen("\"__X__\"", raw, 1)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_batches_are_refused_and_store_nothing() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let mut run = Run::new(&edge, "ingest");
    let secret = edge.secret.clone();

    // Stored on purpose.
    let crash: Vec<Round> = (1..=3).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &crash)).await.unwrap();
    let dice = round(1, "dice", "dice");
    edge.store(events(New, std::slice::from_ref(&dice)))
        .await
        .unwrap();
    // A replay of a stored round: what accepted oddities carry, so that
    // they store nothing new.
    let replay = batch(&crash[..1]);
    let replayed = json!({"stored": 0, "duplicates": 1});
    // What refused batches carry: stored, it would show in crash's history.
    let refused = round(1000, "crash", "multiplier");
    let base = batch(std::slice::from_ref(&refused));
    let base_bytes = bytes(&base);
    const INVALID: Expect = Expect::Refused("invalid_batch");
    const UNSIGNED: Expect = Expect::Refused("invalid_signature");

    // --- Truncations: every prefix of a valid batch, and trailing junk.
    for len in 0..base_bytes.len() {
        let body = base_bytes[..len].to_vec();
        let label = format!("first {len} bytes");
        run.ingest("ingest: truncated", &label, body, Sig::Fresh, INVALID)
            .await;
    }
    for tail in ["x", "}", "]", ",", "\0", "{}", "[]", "null", "\"\""] {
        let mut body = base_bytes.clone();
        body.extend_from_slice(tail.as_bytes());
        run.ingest(
            "ingest: truncated",
            &format!("then {tail:?}"),
            body,
            Sig::Fresh,
            INVALID,
        )
        .await;
    }

    // --- Wrong types, missing and odd values, field by field.
    let ints = ["round_id", "game_id", "timestamp"];
    let strings = ["game_slug", "game_type", "finished_at", "extras"];
    let not_ints = [
        "null",
        "true",
        "\"1\"",
        "\"\"",
        "1.5",
        "1.0",
        "1e3",
        "1E3",
        "[]",
        "{}",
        "[1]",
        "18446744073709551615",
        "9223372036854775808",
        "-9223372036854775809",
        "1e400",
        "-1e400",
        "01",
        "+1",
        "0x10",
        "NaN",
        "Infinity",
        "-",
        "1.",
        ".5",
        "\"NaN\"",
    ];
    let not_strings = [
        "null",
        "true",
        "1",
        "0",
        "1.5",
        "[]",
        "{}",
        "[\"crash\"]",
        "{\"a\":\"b\"}",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\ud800\"",
        "\"a\tb\"",
        "\"unterminated",
        "'crash'",
    ];
    for field in ints.iter().chain(&strings) {
        let mut missing = base.clone();
        missing["events"][0]["round"]
            .as_object_mut()
            .unwrap()
            .remove(*field);
        run.ingest(
            "ingest: fields",
            &format!("{field} missing"),
            bytes(&missing),
            Sig::Fresh,
            INVALID,
        )
        .await;
        let values: &[&str] = if ints.contains(field) {
            &not_ints
        } else {
            &not_strings
        };
        let mut template = base.clone();
        template["events"][0]["round"][*field] = json!("__X__");
        for raw in values {
            run.ingest(
                "ingest: fields",
                &format!("{field}: {raw}"),
                splice(&template, raw),
                Sig::Fresh,
                INVALID,
            )
            .await;
        }
    }
    let mut template = base.clone();
    template["events"][0]["kind"] = json!("__X__");
    for raw in [
        "null",
        "\"delete\"",
        "\"NEW\"",
        "\"New\"",
        "\"\"",
        "\"new \"",
        "1",
        "true",
        "[\"new\"]",
        "{\"new\":1}",
    ] {
        run.ingest(
            "ingest: fields",
            &format!("kind: {raw}"),
            splice(&template, raw),
            Sig::Fresh,
            INVALID,
        )
        .await;
    }
    let mut template = base.clone();
    template["events"][0]["round"] = json!("__X__");
    for raw in ["null", "[]", "\"x\"", "1", "true", "{}", "[1,1,\"crash\"]"] {
        run.ingest(
            "ingest: fields",
            &format!("round: {raw}"),
            splice(&template, raw),
            Sig::Fresh,
            INVALID,
        )
        .await;
    }
    for field in ["kind", "round"] {
        let mut missing = base.clone();
        missing["events"][0].as_object_mut().unwrap().remove(field);
        run.ingest(
            "ingest: fields",
            &format!("{field} missing"),
            bytes(&missing),
            Sig::Fresh,
            INVALID,
        )
        .await;
    }
    let mut template = base.clone();
    template["events"] = json!("__X__");
    for raw in [
        "null",
        "{}",
        "\"[]\"",
        "1",
        "true",
        "[null]",
        "[1]",
        "[[]]",
        "[{}]",
        "[{\"kind\":\"new\"}]",
        "{\"0\":{}}",
    ] {
        run.ingest(
            "ingest: fields",
            &format!("events: {raw}"),
            splice(&template, raw),
            Sig::Fresh,
            INVALID,
        )
        .await;
    }
    let events_json = serde_json::to_string(&base["events"]).unwrap();
    for raw in [
        String::new(),
        " ".into(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "\"x\"".into(),
        "1".into(),
        "true".into(),
        format!("{{\"Events\":{events_json}}}"),
        format!("{{\"events\":{events_json},\"events\":{events_json}}}"),
        format!("\u{feff}{{\"events\":{events_json}}}"),
    ] {
        run.ingest(
            "ingest: fields",
            &format!("body {raw}"),
            raw.into_bytes(),
            Sig::Fresh,
            INVALID,
        )
        .await;
    }

    // --- Numbers the objects cannot hold exactly (SQLite bindings go
    // through JavaScript numbers): refused, never stored rounded.
    for field in ["round_id", "game_id", "timestamp"] {
        for n in [
            MAX_SAFE + 1,
            MAX_SAFE + 2,
            i64::MAX,
            -MAX_SAFE - 1,
            i64::MIN,
        ] {
            let mut body = base.clone();
            body["events"][0]["round"][field] = json!(n);
            run.ingest(
                "ingest: huge numbers",
                &format!("{field}: {n}"),
                bytes(&body),
                Sig::Fresh,
                INVALID,
            )
            .await;
        }
    }

    // --- Invalid slugs and types.
    let long = "a".repeat(65);
    let bad_names = [
        "Crash",
        "CRASH",
        "cr ash",
        " crash",
        "crash ",
        long.as_str(),
        "é",
        "крэш",
        "🎲",
        "..",
        ".",
        "a/b",
        "/",
        "",
        "-crash",
        "_crash",
        "crash\n",
        "crash\0",
        "cr%61sh",
        "crash:1",
        "crash,dice",
        "crash.x",
        "a\\b",
        "../../etc/passwd",
    ];
    for field in ["game_slug", "game_type"] {
        for name in bad_names {
            let mut body = base.clone();
            body["events"][0]["round"][field] = json!(name);
            run.ingest(
                "ingest: invalid names",
                &format!("{field}: {name:?}"),
                bytes(&body),
                Sig::Fresh,
                INVALID,
            )
            .await;
        }
    }
    // One bad event spoils the batch: nothing of it is stored.
    for bad in [
        round(1001, "Bad", "multiplier"),
        round(1001, "crash", "Bad"),
        round(1001, "new-game", ".."),
    ] {
        let body = bytes(&batch(&[refused.clone(), bad.clone()]));
        run.ingest(
            "ingest: invalid names",
            &format!("valid event, then {}/{}", bad.game_slug, bad.game_type),
            body,
            Sig::Fresh,
            INVALID,
        )
        .await;
    }

    // --- Sizes and nesting.
    let ten_thousand: Vec<Round> = (0..10_000)
        .map(|i| round(2000 + i, "bulk", "bulk"))
        .collect();
    let body = bytes(&batch(&ten_thousand));
    assert!(body.len() > MIB, "10 000 events are over 1 MiB");
    run.ingest(
        "ingest: sizes",
        "10 000 events",
        body,
        Sig::Fresh,
        Expect::Refused("payload_too_large"),
    )
    .await;
    let mut many: Vec<Round> = ten_thousand[..4000].to_vec();
    many.push(round(9999, "bulk", "Bulk"));
    let body = bytes(&batch(&many));
    assert!(body.len() <= MIB);
    run.ingest(
        "ingest: sizes",
        "4 000 valid events then a bad type",
        body,
        Sig::Fresh,
        INVALID,
    )
    .await;
    let padded = |target: usize, template: &Value| {
        let mut body = bytes(template);
        body.resize(target, b' ');
        body
    };
    let mut with_pad = replay.clone();
    with_pad["pad"] = json!("");
    let unpadded = bytes(&with_pad).len();
    with_pad["pad"] = json!("p".repeat(MIB - unpadded));
    for (label, body, expect) in [
        (
            "valid, spaces to exactly 1 MiB",
            padded(MIB, &replay),
            Expect::Ok(200),
        ),
        (
            "valid, an unknown string field to exactly 1 MiB",
            bytes(&with_pad),
            Expect::Ok(200),
        ),
        (
            "invalid, exactly 1 MiB",
            padded(MIB, &json!({"events": 1})),
            INVALID,
        ),
        (
            "valid, 1 MiB + 1",
            padded(MIB + 1, &replay),
            Expect::Refused("payload_too_large"),
        ),
        (
            "2 MiB",
            padded(2 * MIB, &replay),
            Expect::Refused("payload_too_large"),
        ),
    ] {
        assert!(body.len() >= MIB);
        let answer = run
            .ingest("ingest: sizes", label, body, Sig::Fresh, expect)
            .await;
        run.reply_is(label, answer, replayed.clone());
    }
    // The same without Content-Length (chunked).
    for (label, size, expect) in [
        ("chunked, exactly 1 MiB", MIB, Expect::Ok(200)),
        (
            "chunked, 1 MiB + 1",
            MIB + 1,
            Expect::Refused("payload_too_large"),
        ),
    ] {
        let body = padded(size, &replay);
        let header = sign(&secret, now(), &body);
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
        let request = edge
            .http
            .post(edge.url("/internal/rounds"))
            .header(signature::HEADER, header)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
        let answer = run.send("ingest: sizes", label, request, expect).await;
        run.reply_is(label, answer, replayed.clone());
    }
    // Nesting: refused where it replaces the events; skipped without
    // recursion where the contract ignores unknown fields (accepted below).
    for depth in [200, 10_000, 400_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        run.ingest(
            "ingest: nesting",
            &format!("events nested {depth} deep"),
            format!("{{\"events\":{nested}}}").into_bytes(),
            Sig::Fresh,
            INVALID,
        )
        .await;
        let objects = format!("{}1{}", "{\"a\":".repeat(depth / 4), "}".repeat(depth / 4));
        run.ingest(
            "ingest: nesting",
            &format!("events holding objects nested {} deep", depth / 4),
            format!("{{\"events\":[{objects}]}}").into_bytes(),
            Sig::Fresh,
            INVALID,
        )
        .await;
    }

    // --- Bytes that are not UTF-8 (or not JSON's encoding).
    let text = String::from_utf8(base_bytes.clone()).unwrap();
    for (label, bad) in [
        ("0xff in a slug", &b"cr\xffsh"[..]),
        ("overlong '/' in a slug", b"cr\xc0\xafsh"),
        ("an encoded surrogate in a slug", b"cr\xed\xa0\x80sh"),
        ("a cut sequence in a slug", b"cr\xe2\x82"),
    ] {
        let mut body = Vec::new();
        let (before, after) = text.split_once("crash").unwrap();
        body.extend_from_slice(before.as_bytes());
        body.extend_from_slice(bad);
        body.extend_from_slice(after.as_bytes());
        run.ingest("ingest: encoding", label, body, Sig::Fresh, INVALID)
            .await;
    }
    let utf16: Vec<u8> = text
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect::<Vec<u8>>();
    for (label, body) in [
        ("UTF-16", [&b"\xff\xfe"[..], &utf16].concat()),
        ("0xff 0xfe 0 0", b"\xff\xfe\0\0".to_vec()),
        ("NUL bytes", vec![0; 64]),
    ] {
        run.ingest("ingest: encoding", label, body, Sig::Fresh, INVALID)
            .await;
    }

    // --- Signatures: refused on the header, whatever the body.
    let fresh = sign(&secret, now(), &base_bytes);
    let good_tag = tag(&fresh);
    let t = now();
    let mut headers: Vec<(String, Vec<Vec<u8>>)> = vec![
        ("empty".into(), vec![b"".to_vec()]),
        ("garbage".into(), vec![b"garbage".to_vec()]),
        ("t= only".into(), vec![b"t=".to_vec()]),
        ("t only".into(), vec![format!("t={t}").into_bytes()]),
        (
            "v1 only".into(),
            vec![format!("v1={good_tag}").into_bytes()],
        ),
        (
            "t not a number".into(),
            vec![format!("t=abc,v1={good_tag}").into_bytes()],
        ),
        (
            "t too big".into(),
            vec![format!("t=99999999999999999999,v1={good_tag}").into_bytes()],
        ),
        (
            "bad hex".into(),
            vec![format!("t={t},v1={}", "zz".repeat(32)).into_bytes()],
        ),
        (
            "62 hex digits".into(),
            vec![format!("t={t},v1={}", &good_tag[..62]).into_bytes()],
        ),
        (
            "66 hex digits".into(),
            vec![format!("t={t},v1={good_tag}00").into_bytes()],
        ),
        (
            "128 hex digits".into(),
            vec![format!("t={t},v1={good_tag}{good_tag}").into_bytes()],
        ),
        (
            "odd hex length".into(),
            vec![format!("t={t},v1={}", &good_tag[..63]).into_bytes()],
        ),
        (
            "two wrong v1".into(),
            vec![format!("t={t},v1={},v1={}", "0".repeat(64), "1".repeat(64)).into_bytes()],
        ),
        (
            "uppercase names".into(),
            vec![format!("T={t},V1={good_tag}").into_bytes()],
        ),
        ("commas only".into(), vec![",,,,".into()]),
        (
            "a trailing comma".into(),
            vec![format!("{fresh},").into_bytes()],
        ),
        (
            "no '='".into(),
            vec![format!("t{t}v1{good_tag}").into_bytes()],
        ),
        (
            "0xff in the header".into(),
            vec![[format!("t={t},v1=").as_bytes(), b"\xff"].concat()],
        ),
        (
            "8 KB header".into(),
            vec![format!("t={t},v1={}", "ab".repeat(4096)).into_bytes()],
        ),
        (
            "the good one and garbage as two headers".into(),
            vec![fresh.clone().into_bytes(), b"garbage".to_vec()],
        ),
        (
            "signed with another secret".into(),
            vec![sign("another-secret-another-secret-xx", t, &base_bytes).into_bytes()],
        ),
        (
            "signed for another body".into(),
            vec![sign(&secret, t, b"{\"events\":[]}").into_bytes()],
        ),
        (
            "t moved after signing".into(),
            vec![format!("t={},v1={good_tag}", t + 1).into_bytes()],
        ),
    ];
    for skewed in [
        t - 3600,
        t - 600,
        t + 600,
        t + 86_400,
        0,
        -1,
        1,
        i64::MAX,
        i64::MIN,
    ] {
        headers.push((
            format!("signed at t={skewed}"),
            vec![sign(&secret, skewed, &base_bytes).into_bytes()],
        ));
    }
    for (label, values) in headers {
        run.ingest(
            "ingest: signatures",
            &label,
            base_bytes.clone(),
            Sig::Headers(values),
            UNSIGNED,
        )
        .await;
    }
    for (label, body) in [
        ("unsigned", base_bytes.clone()),
        ("unsigned and not JSON", b"not json".to_vec()),
        ("unsigned and empty", Vec::new()),
        ("unsigned, 1 MiB + 1", padded(MIB + 1, &base)),
    ] {
        run.ingest("ingest: signatures", label, body, Sig::Unsigned, UNSIGNED)
            .await;
    }
    // Lenient on purpose (a second `v1` is how secrets are rotated; spaces
    // and hex case are not the tag): accepted, on a replay.
    let replay_bytes = bytes(&replay);
    let good = sign(&secret, now(), &replay_bytes);
    let (t_part, v1) = good.split_once(",v1=").unwrap();
    for (label, value) in [
        (
            "a wrong v1 and the right one",
            format!("{t_part},v1={},v1={v1}", "0".repeat(64)),
        ),
        ("spaces around parts", format!(" {t_part} , v1={v1} ")),
        (
            "uppercase hex",
            format!("{t_part},v1={}", v1.to_uppercase()),
        ),
        ("an unknown scheme too", format!("{good},v2=whatever")),
    ] {
        let answer = run
            .ingest(
                "ingest: signatures",
                label,
                replay_bytes.clone(),
                Sig::Headers(vec![value.into_bytes()]),
                Expect::Ok(200),
            )
            .await;
        run.reply_is(label, answer, replayed.clone());
    }

    // --- Odd but valid: accepted by design (the contract tolerates added
    // fields, which are skipped unread; ids are the operator's, of any sign).
    // Replays, or new rounds into a game of their own.
    let replay_events = serde_json::to_string(&replay["events"]).unwrap();
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // serde also reads a struct from an array of its fields in order: not
    // the documented shape, but the same valid events. Whether it is
    // accepted is not pinned here; it must store nothing new either way.
    let r = &crash[0];
    for (label, body) in [
        (
            "the batch as an array (serde's positional form)",
            format!("[{replay_events}]"),
        ),
        (
            "every struct as an array",
            json!([[[
                "new",
                [
                    r.round_id,
                    r.game_id,
                    r.game_slug,
                    r.game_type,
                    r.finished_at,
                    r.extras,
                    r.timestamp
                ]
            ]]])
            .to_string(),
        ),
    ] {
        let answer = run
            .ingest(
                "ingest: accepted",
                label,
                body.into_bytes(),
                Sig::Fresh,
                Expect::Any,
            )
            .await;
        run.reply_is(label, answer, replayed.clone());
    }
    for (label, body) in [
        (
            "an unknown field nested 400 000 deep",
            format!("{{\"x\":{},\"events\":{replay_events}}}", deep(400_000)).into_bytes(),
        ),
        ("an unknown round field nested 10 000 deep", {
            let mut t = replay.clone();
            t["events"][0]["round"]["deep"] = json!("__X__");
            splice(&t, &deep(10_000))
        }),
        (
            "invalid UTF-8 in an unknown field",
            [
                &b"{\"x\":\"\xff\xfe\",\"events\":"[..],
                replay_events.as_bytes(),
                b"}",
            ]
            .concat(),
        ),
    ] {
        let answer = run
            .ingest("ingest: accepted", label, body, Sig::Fresh, Expect::Ok(200))
            .await;
        run.reply_is(label, answer, replayed.clone());
    }
    for (label, body) in [
        ("an unknown top-level field", {
            let mut b = replay.clone();
            b["version"] = json!(2);
            b
        }),
        ("an unknown event field", {
            let mut b = replay.clone();
            b["events"][0]["source"] = json!({"lsn": 1});
            b
        }),
        ("an unknown round field", {
            let mut b = replay.clone();
            b["events"][0]["round"]["future_field"] = json!(true);
            b
        }),
        (
            "the same event twice",
            batch(&[crash[0].clone(), crash[0].clone()]),
        ),
    ] {
        let answer = run
            .ingest(
                "ingest: accepted",
                label,
                bytes(&body),
                Sig::Fresh,
                Expect::Ok(200),
            )
            .await;
        let dups = body["events"].as_array().unwrap().len();
        run.reply_is(label, answer, json!({"stored": 0, "duplicates": dups}));
    }
    let answer = run
        .ingest(
            "ingest: accepted",
            "no events",
            bytes(&json!({"events": []})),
            Sig::Fresh,
            Expect::Ok(200),
        )
        .await;
    run.reply_is("no events", answer, json!({"stored": 0, "duplicates": 0}));
    let odd = |id: i64| round(id, "edge-cases", "edge");
    let mut accepted = Vec::new();
    for (label, r) in [
        ("round id 0", odd(0)),
        ("round id -1", odd(-1)),
        ("the lowest exact round id", odd(-MAX_SAFE)),
        ("the highest exact round id", {
            let mut r = odd(MAX_SAFE);
            r.timestamp = 0;
            r
        }),
        ("the highest exact timestamp", {
            let mut r = odd(5);
            r.timestamp = MAX_SAFE;
            r
        }),
        ("the lowest exact timestamp", {
            let mut r = odd(6);
            r.timestamp = -MAX_SAFE;
            r
        }),
        ("SSE syntax and odd text in fields", {
            let mut r = odd(7);
            r.extras = "\n\ndata: forged\nid: 99\n\n\u{2028}\u{0}é🎲".into();
            r.finished_at = "not a date\r\n".into();
            r
        }),
    ] {
        let answer = run
            .ingest(
                "ingest: accepted",
                label,
                bytes(&batch(std::slice::from_ref(&r))),
                Sig::Fresh,
                Expect::Ok(200),
            )
            .await;
        run.reply_is(label, answer, json!({"stored": 1, "duplicates": 0}));
        accepted.push(r);
    }
    let twice = odd(8);
    let answer = run
        .ingest(
            "ingest: accepted",
            "a new round twice in one batch",
            bytes(&batch(&[twice.clone(), twice.clone()])),
            Sig::Fresh,
            Expect::Ok(200),
        )
        .await;
    run.reply_is(
        "a new round twice",
        answer,
        json!({"stored": 1, "duplicates": 1}),
    );
    accepted.push(twice);

    // --- Other methods and paths on the ingest route, signed.
    for method in ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let body = base_bytes.clone();
        let request = edge
            .http
            .request(method.clone(), edge.url("/internal/rounds"))
            .header(signature::HEADER, sign(&secret, now(), &body))
            .body(body);
        run.send(
            "ingest: methods and paths",
            &format!("{method} /internal/rounds"),
            request,
            Expect::Refused("method_not_allowed"),
        )
        .await;
    }
    for path in [
        "/internal/rounds/",
        "/internal",
        "/internal/rounds/x",
        "/internal/Rounds",
        "/internal/rounds%2F",
        "/api/rounds",
    ] {
        let body = base_bytes.clone();
        let request = edge
            .http
            .post(edge.url(path))
            .header(signature::HEADER, sign(&secret, now(), &body))
            .body(body);
        run.send(
            "ingest: methods and paths",
            &format!("POST {path}"),
            request,
            Expect::Refused("not_found"),
        )
        .await;
    }
    for path in [
        "//internal/rounds",
        "/internal/rounds?x=1",
        "/internal/rounds?",
    ] {
        let request = edge
            .http
            .post(edge.url(path))
            .header(signature::HEADER, sign(&secret, now(), &replay_bytes))
            .body(replay_bytes.clone());
        let answer = run
            .send(
                "ingest: methods and paths",
                &format!("POST {path}"),
                request,
                Expect::Any,
            )
            .await;
        run.reply_is(path, answer, replayed.clone());
    }

    // Nothing from a refused batch was stored; the accepted ones were.
    let listed = lists(
        &edge,
        &key,
        &[
            ("crash", "multiplier", 3),
            ("dice", "dice", 1),
            ("edge-cases", "edge", MAX_SAFE),
        ],
    )
    .await;
    run.stored(listed);
    run.stored(holds(&edge, &key, "crash", &crash).await);
    run.stored(holds(&edge, &key, "dice", std::slice::from_ref(&dice)).await);
    run.stored(holds(&edge, &key, "edge-cases", &accepted).await);
    for (kind, name, rounds) in [
        ("type", "multiplier", 3),
        ("type", "dice", 1),
        ("type", "edge", accepted.len()),
        ("game", "bulk", 0),
        ("type", "bulk", 0),
        ("game", "new-game", 0),
    ] {
        let stats = edge.stats(kind, name).await.unwrap();
        run.stored(if stats["rounds"] == json!(rounds) {
            Ok(())
        } else {
            Err(format!(
                "{kind} {name} holds {stats}, wanted {rounds} rounds"
            ))
        });
    }
    run.finish();
    assert_still_serves(&edge, &key, &round(4, "crash", "multiplier")).await;
}

const BAD_REQUEST: Expect = Expect::Refused("bad_request");
const NOT_FOUND: Expect = Expect::Refused("not_found");
const NOT_ALLOWED: Expect = Expect::Refused("method_not_allowed");

/// Every route with the methods it serves.
const ROUTES: [(&str, &[&str]); 16] = [
    ("/", &["GET", "HEAD"]),
    ("/healthz", &["GET", "HEAD"]),
    ("/sse/crash", &["GET"]),
    ("/sse/type/multiplier", &["GET"]),
    ("/sse?games=crash,dice", &["GET"]),
    ("/api/games", &["GET"]),
    ("/api/games/crash/latest", &["GET"]),
    ("/api/games/crash/rounds", &["GET"]),
    ("/api/tokens", &["POST"]),
    ("/internal/rounds", &["POST"]),
    ("/admin/keys", &["GET", "POST"]),
    ("/admin/keys/key_0123456789abcdef", &["DELETE"]),
    ("/admin/keys/key_0123456789abcdef/usage", &["GET"]),
    ("/admin/streams/game/crash", &["GET"]),
    ("/admin/streams/game/crash/disconnect", &["POST"]),
    ("/admin/faults/directory", &["PUT", "DELETE"]),
];

/// Methods tried on every route: the usual ones, and WebDAV and cache
/// methods that HTTP servers pass on.
const METHODS: [&str; 12] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "PURGE", "MKCOL",
    "COPY", "LOCK",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_methods_queries_and_headers_get_json_answers() {
    let edge = Edge::start(&[]).await.unwrap();
    let key = edge.open_key().await.unwrap();
    let (scoped, _) = edge
        .create_key(json!({
            "name": "partner",
            "games": ["crash"],
            "origins": ["https://partner.example"],
        }))
        .await
        .unwrap();
    let crash: Vec<Round> = (1..=3).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &crash)).await.unwrap();
    let dice = round(1, "dice", "dice");
    edge.store(events(New, std::slice::from_ref(&dice)))
        .await
        .unwrap();
    let mut run = Run::new(&edge, "public");
    let bearer = format!("Bearer {key}");
    let auth = [("authorization", bearer.as_str())];

    // --- Paths exactly as written (reqwest would normalise some).
    let long = "a".repeat(8192);
    let max = "a".repeat(64);
    let paths: Vec<(String, Expect)> = vec![
        ("//sse/crash".into(), Expect::Any),
        ("///sse/crash".into(), Expect::Any),
        ("/sse/crash/".into(), NOT_FOUND),
        ("/sse/crash//".into(), NOT_FOUND),
        ("/sse/%2e%2e".into(), Expect::Any),
        ("/sse/%2E%2E".into(), Expect::Any),
        ("/sse/..".into(), Expect::Any),
        ("/sse/.".into(), Expect::Any),
        ("/sse/cr%61sh".into(), BAD_REQUEST),
        ("/sse/%63rash".into(), BAD_REQUEST),
        ("/sse/%00".into(), BAD_REQUEST),
        ("/sse/crash%00".into(), BAD_REQUEST),
        ("/sse/crash%0d%0aset-cookie:%20x".into(), BAD_REQUEST),
        ("/sse/%C3%A9".into(), BAD_REQUEST),
        ("/sse/CRASH".into(), BAD_REQUEST),
        ("/sse/crash;x=1".into(), BAD_REQUEST),
        ("/sse/crash%23x".into(), BAD_REQUEST),
        ("/sse/crash%2Fx".into(), BAD_REQUEST),
        ("/sse/".into(), BAD_REQUEST),
        ("/sse/type/".into(), BAD_REQUEST),
        ("/sse/type/%2e%2e".into(), Expect::Any),
        ("/sse/type/Multiplier".into(), BAD_REQUEST),
        ("/sse/type/multiplier/x".into(), NOT_FOUND),
        ("/sse/game/crash".into(), NOT_FOUND),
        (format!("/sse/{long}"), BAD_REQUEST),
        (format!("/sse/type/{long}"), BAD_REQUEST),
        // The longest slug passes validation: unknown, not malformed.
        (format!("/sse/{max}"), NOT_FOUND),
        ("/api/games/%2Fetc/latest".into(), BAD_REQUEST),
        ("/api/games/%2e%2e/latest".into(), Expect::Any),
        ("/api/games/..%2F..%2Fadmin/latest".into(), BAD_REQUEST),
        ("/api/games//latest".into(), BAD_REQUEST),
        ("/api/games/crash/latest/".into(), NOT_FOUND),
        ("/api/games/crash/rounds/".into(), NOT_FOUND),
        ("/api/games/crash".into(), NOT_FOUND),
        ("/api/games/".into(), NOT_FOUND),
        ("/api/games/CRASH/latest".into(), BAD_REQUEST),
        ("/api/games/crash/../../../admin/keys".into(), Expect::Any),
        ("/admin/keys/../keys".into(), Expect::Any),
        ("/%2e%2e/admin/keys".into(), Expect::Any),
        (format!("/api/games/{long}/latest"), BAD_REQUEST),
        (format!("/api/games/{max}/latest"), NOT_FOUND),
        (format!("/{long}"), NOT_FOUND),
        (
            format!("/sse/crash?{}", "a=b&".repeat(2000)),
            Expect::Ok(200),
        ),
        ("/healthz/".into(), NOT_FOUND),
        ("/HEALTHZ".into(), NOT_FOUND),
        ("/healthz?x=%ZZ".into(), Expect::Ok(200)),
        ("/favicon.ico".into(), Expect::Ok(204)),
        ("/nowhere".into(), NOT_FOUND),
        (
            "/sse/crash?api_key=%ZZ".into(),
            Expect::Refused("invalid_api_key"),
        ),
    ];
    for (path, expect) in &paths {
        run.raw("paths", "GET", path, &auth, *expect).await;
    }

    // --- Every method on every route.
    for (route, allowed) in ROUTES {
        for method in METHODS {
            if allowed.contains(&method) {
                continue;
            }
            let public = route.starts_with("/sse") || route.starts_with("/api");
            let expect = if method == "OPTIONS" && public {
                Expect::Ok(204)
            } else {
                NOT_ALLOWED
            };
            let request = edge
                .http
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    edge.url(route),
                )
                .bearer_auth(&key);
            run.send("methods", &format!("{method} {route}"), request, expect)
                .await;
        }
    }

    // --- Odd queries (the key in the query, as EventSource sends it).
    let k = key.as_str();
    let invalid_key = Expect::Refused("invalid_api_key");
    let invalid_token = Expect::Refused("invalid_token");
    let missing = Expect::Refused("missing_api_key");
    let mut queries: Vec<(String, Expect)> = vec![
        (
            format!("/api/games?api_key={k}&api_key=sk_live_garbage"),
            Expect::Ok(200),
        ),
        (
            format!("/api/games?api_key=sk_live_garbage&api_key={k}"),
            invalid_key,
        ),
        (format!("/api/games?api_key=&api_key={k}"), invalid_key),
        (
            format!("/api/games?api_key={k}&api_key={k}"),
            Expect::Ok(200),
        ),
        ("/api/games?api_key=".into(), invalid_key),
        ("/api/games?api_key".into(), invalid_key),
        ("/api/games?api_key=%00".into(), invalid_key),
        ("/api/games?api_key=%ZZ".into(), invalid_key),
        ("/api/games?api_key=%FF%FE".into(), invalid_key),
        ("/api/games?api_key=%E2%82".into(), invalid_key),
        (
            format!("/api/games?api_key={}", "%41".repeat(1000)),
            invalid_key,
        ),
        (
            format!("/api/games?api_key=sk_live_{}", "A".repeat(4096)),
            invalid_key,
        ),
        (format!("/api/games?api_key={k}%00"), invalid_key),
        (format!("/api/games?api_key={k}%20"), invalid_key),
        (
            format!("/api/games?api_key={}", k.to_uppercase()),
            invalid_key,
        ),
        ("/api/games?api_key=st_".into(), invalid_token),
        ("/api/games?api_key=st_abc.def".into(), invalid_token),
        ("/api/games?token=st_%00.%00".into(), invalid_token),
        (
            format!("/api/games?token=st_{}.x", "A".repeat(4096)),
            invalid_token,
        ),
        ("/api/games?token=garbage".into(), invalid_key),
        ("/api/games?token=".into(), invalid_key),
        (format!("/api/games?Api_Key={k}"), missing),
        (format!("/api/games?apikey={k}"), missing),
        ("/api/games".into(), missing),
        (format!("/api/games?api%5Fkey={k}"), Expect::Any),
        ("/api/games/nope/rounds?limit=abc".into(), BAD_REQUEST),
        ("/sse/crash".into(), missing),
        ("/sse?games=crash".into(), missing),
    ];
    for (query, expect) in [
        ("limit=-1", BAD_REQUEST),
        ("limit=0", BAD_REQUEST),
        ("limit=1001", BAD_REQUEST),
        ("limit=99999999999999999999", BAD_REQUEST),
        ("limit=abc", BAD_REQUEST),
        ("limit=", BAD_REQUEST),
        ("limit=1.5", BAD_REQUEST),
        ("limit=1e3", BAD_REQUEST),
        ("limit=0x10", BAD_REQUEST),
        ("limit=%201", BAD_REQUEST),
        ("limit=%00", BAD_REQUEST),
        ("limit=abc&limit=1", BAD_REQUEST),
        ("limit=1&limit=abc", Expect::Ok(200)),
        ("limit=1000", Expect::Ok(200)),
        ("limit=+5", Expect::Any),
        ("before=abc", BAD_REQUEST),
        ("before=", BAD_REQUEST),
        ("before=1.5", BAD_REQUEST),
        ("before=99999999999999999999", BAD_REQUEST),
        ("before=-99999999999999999999", BAD_REQUEST),
        ("before=%00", BAD_REQUEST),
        ("limit=-1&before=abc", BAD_REQUEST),
        ("before=-1", Expect::Ok(200)),
        ("before=0", Expect::Ok(200)),
        ("before=9223372036854775807", Expect::Ok(200)),
        ("before=-9223372036854775808", Expect::Ok(200)),
    ] {
        queries.push((
            format!("/api/games/crash/rounds?api_key={k}&{query}"),
            expect,
        ));
    }
    let long_name = "a".repeat(65);
    for (query, expect) in [
        ("", BAD_REQUEST),
        ("games=", BAD_REQUEST),
        ("types=", BAD_REQUEST),
        ("games=&types=", BAD_REQUEST),
        ("games=,,,", BAD_REQUEST),
        ("games=a,b,c,d,e,f,g", BAD_REQUEST),
        ("games=a,b,c&types=d,e,f,g", BAD_REQUEST),
        ("games=crash&types=a,b,c,d,e,f", BAD_REQUEST),
        ("games=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p", BAD_REQUEST),
        ("games=Crash", BAD_REQUEST),
        ("games=cr%20ash", BAD_REQUEST),
        ("games=..", BAD_REQUEST),
        ("games=%00", BAD_REQUEST),
        (&format!("games={long_name}"), BAD_REQUEST),
        ("types=Bad!", BAD_REQUEST),
        ("games=crash:1", BAD_REQUEST),
        ("games=crash;dice", BAD_REQUEST),
        ("games=crash%2Cdice%2CBad", BAD_REQUEST),
        ("games=crash,,dice", Expect::Ok(200)),
        (
            "games=crash,crash,crash,crash,crash,crash,crash",
            Expect::Ok(200),
        ),
        ("games=crash&games=Bad!", Expect::Ok(200)),
        ("games=crash,dice&types=multiplier,dice", Expect::Ok(200)),
        ("games=%20crash%20", Expect::Ok(200)),
        ("games=crash&last_event_id=abc", BAD_REQUEST),
    ] {
        queries.push((format!("/sse?api_key={k}&{query}"), expect));
    }
    for (query, expect) in [
        ("last_event_id=abc", BAD_REQUEST),
        ("last_event_id=1.", BAD_REQUEST),
        ("last_event_id=g:crash:1", BAD_REQUEST),
        ("last_event_id=", Expect::Ok(200)),
        ("last_event_id=1&last_event_id=abc", Expect::Ok(200)),
        ("last_event_id=%31", Expect::Ok(200)),
    ] {
        queries.push((format!("/sse/crash?api_key={k}&{query}"), expect));
    }
    let s = scoped.as_str();
    for (path, expect) in [
        (
            format!("/sse/dice?api_key={s}"),
            Expect::Refused("forbidden"),
        ),
        (
            format!("/sse/type/dice?api_key={s}"),
            Expect::Refused("forbidden"),
        ),
        (
            format!("/sse?games=crash,dice&api_key={s}"),
            Expect::Refused("forbidden"),
        ),
        (
            format!("/api/games/dice/latest?api_key={s}"),
            Expect::Refused("forbidden"),
        ),
        (format!("/sse/crash?api_key={s}"), Expect::Ok(200)),
    ] {
        queries.push((path, expect));
    }
    for (query, expect) in &queries {
        let request = edge.http.get(edge.url(query));
        let label = query.replace(k, "<key>").replace(s, "<partner key>");
        run.send("queries", &label, request, *expect).await;
    }

    // --- Authorization headers.
    let bad_byte = [b"Bearer ".as_slice(), b"\xff"].concat();
    let mut authorizations: Vec<(Vec<u8>, Expect)> = vec![
        (b"Bearer".to_vec(), missing),
        (format!("Bearer  {k}").into_bytes(), Expect::Ok(200)),
        // The scheme is case-insensitive (RFC 9110 §11.1), as for the admin
        // token: one parser reads every `Authorization`.
        (format!("bearer {k}").into_bytes(), Expect::Ok(200)),
        (format!("BEARER {k}").into_bytes(), Expect::Ok(200)),
        (format!("Basic {k}").into_bytes(), missing),
        (format!("Token {k}").into_bytes(), missing),
        (k.as_bytes().to_vec(), missing),
        (format!("Bearer {k} extra").into_bytes(), invalid_key),
        (format!("Bearer {k},{k}").into_bytes(), invalid_key),
        (b"Bearer sk_live_".to_vec(), invalid_key),
        (b"Bearer st_x".to_vec(), invalid_token),
        (b"Bearer st_.".to_vec(), invalid_token),
        (
            format!("Bearer {}", "A".repeat(4096)).into_bytes(),
            invalid_key,
        ),
        (bad_byte, invalid_key),
    ];
    for (value, expect) in authorizations.drain(..) {
        let label = String::from_utf8_lossy(&value).replace(k, "<key>");
        let request = edge
            .http
            .get(edge.url("/api/games"))
            .header("authorization", HeaderValue::from_bytes(&value).unwrap());
        run.send("auth headers", &label, request, expect).await;
    }
    let request = edge
        .http
        .get(edge.url("/api/games"))
        .header("authorization", format!("Bearer {k}"))
        .header("authorization", "Bearer garbage");
    run.send(
        "auth headers",
        "two authorization headers",
        request,
        Expect::Any,
    )
    .await;

    // --- Oversized headers: wrangler's proxy or workerd may refuse them
    // itself; the Worker must keep serving either way.
    for size in [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024] {
        let big = "A".repeat(size);
        let cases = [
            (
                format!("authorization of {size} bytes"),
                edge.http
                    .get(edge.url("/api/games"))
                    .header("authorization", format!("Bearer {big}")),
            ),
            (
                format!("x-junk of {size} bytes"),
                edge.http
                    .get(edge.url("/api/games"))
                    .bearer_auth(&key)
                    .header("x-junk", &big),
            ),
            (
                format!("x-junk of {size} bytes on a stream"),
                edge.http
                    .get(edge.url("/sse/crash"))
                    .bearer_auth(&key)
                    .header("x-junk", &big),
            ),
            (
                format!("last-event-id of {size} bytes"),
                edge.http
                    .get(edge.url("/sse/crash"))
                    .bearer_auth(&key)
                    .header("last-event-id", "1".repeat(size)),
            ),
            (
                format!("x-signature of {size} bytes"),
                edge.http
                    .post(edge.url("/internal/rounds"))
                    .header(signature::HEADER, format!("t={},v1={big}", now()))
                    .body("{}"),
            ),
        ];
        // workerd reads request heads up to its own limit (between 256 KiB
        // and 1 MiB); what is over it never reaches the Worker.
        let expect = if size > 256 * 1024 {
            Expect::HeadTooLarge
        } else {
            Expect::ProxyMay
        };
        for (label, request) in cases {
            run.send("oversized headers", &label, request, expect).await;
            run.still_serving(&label).await;
        }
    }
    for count in [100, 300] {
        let mut request = edge.http.get(edge.url("/api/games")).bearer_auth(&key);
        for i in 0..count {
            request = request.header(format!("x-h-{i}"), "v".repeat(64));
        }
        let label = format!("{count} extra headers");
        run.send("oversized headers", &label, request, Expect::ProxyMay)
            .await;
        run.still_serving(&label).await;
    }

    // --- Origins: a key without origins may be used from any page; a key
    // with origins only from those.
    let long_origin = format!("https://{}.example", "o".repeat(8000));
    for path in ["/api/games/crash/latest", "/sse/crash"] {
        for origin in [
            "null",
            "http://evil.example",
            long_origin.as_str(),
            "",
            "file://",
            "https://partner.example",
        ] {
            let request = edge
                .http
                .get(edge.url(path))
                .bearer_auth(&key)
                .header("origin", origin);
            run.send(
                "origins",
                &format!("{path} from {origin:?}, open key"),
                request,
                Expect::Ok(200),
            )
            .await;
        }
        for (origin, expect) in [
            ("null", Expect::Refused("forbidden")),
            ("http://evil.example", Expect::Refused("forbidden")),
            (long_origin.as_str(), Expect::Refused("forbidden")),
            ("https://partner.example/", Expect::Refused("forbidden")),
            ("HTTPS://PARTNER.EXAMPLE", Expect::Refused("forbidden")),
            ("https://partner.example:443", Expect::Refused("forbidden")),
            ("http://partner.example", Expect::Refused("forbidden")),
            ("https://partner.example", Expect::Ok(200)),
        ] {
            let request = edge
                .http
                .get(edge.url(path))
                .bearer_auth(&scoped)
                .header("origin", origin);
            run.send(
                "origins",
                &format!("{path} from {origin:?}, partner key"),
                request,
                expect,
            )
            .await;
        }
    }
    for (query, origin, expect) in [
        (
            format!("?api_key={s}"),
            "http://evil.example",
            Expect::Refused("forbidden"),
        ),
        (
            format!("?api_key={s}"),
            "null",
            Expect::Refused("forbidden"),
        ),
        (
            format!("?api_key={s}"),
            "https://partner.example",
            Expect::Ok(204),
        ),
        (
            "?api_key=garbage".to_string(),
            "https://partner.example",
            invalid_key,
        ),
        (
            "?token=st_x".to_string(),
            "https://partner.example",
            invalid_token,
        ),
        (String::new(), "http://evil.example", Expect::Ok(204)),
        (String::new(), long_origin.as_str(), Expect::Ok(204)),
    ] {
        let request = edge
            .http
            .request(Method::OPTIONS, edge.url(&format!("/sse/crash{query}")))
            .header("origin", origin)
            .header("access-control-request-method", "GET");
        run.send(
            "origins",
            &format!("preflight {query} from {origin:?}"),
            request,
            expect,
        )
        .await;
    }

    // --- Last-Event-ID on single and multiplexed streams.
    let long_id = "1".repeat(4096);
    let long_cursor = "g:crash:1,".repeat(410);
    for path in ["/sse/crash", "/sse/type/multiplier"] {
        for (id, expect) in [
            (&b"-1"[..], Expect::Ok(200)),
            (b"0", Expect::Ok(200)),
            (b"1", Expect::Ok(200)),
            (b"2.1", Expect::Ok(200)),
            (b"9223372036854775807", Expect::Ok(200)),
            (b"-9223372036854775808", Expect::Ok(200)),
            (b"abc", BAD_REQUEST),
            (b"1.", BAD_REQUEST),
            (b".1", BAD_REQUEST),
            (b"1.2.3", BAD_REQUEST),
            (b"1..2", BAD_REQUEST),
            (b"99999999999999999999", BAD_REQUEST),
            (b"9223372036854775808", BAD_REQUEST),
            (long_id.as_bytes(), BAD_REQUEST),
            (b"g:crash:1", BAD_REQUEST),
            (b"+1", BAD_REQUEST),
            (b"--1", BAD_REQUEST),
            (b"1,2", BAD_REQUEST),
            (b"1 2", BAD_REQUEST),
            (b"0x1", BAD_REQUEST),
            (b"1e3", BAD_REQUEST),
            (b"NaN", BAD_REQUEST),
            (b"\xff", BAD_REQUEST),
            (b"1\xff", BAD_REQUEST),
        ] {
            let request = edge
                .http
                .get(edge.url(path))
                .bearer_auth(&key)
                .header("last-event-id", HeaderValue::from_bytes(id).unwrap());
            let label = format!("{path} after {}", String::from_utf8_lossy(id));
            run.send("last-event-id", &label, request, expect).await;
        }
    }
    let multiplexed = "/sse?games=crash,dice&types=multiplier";
    for (id, expect) in [
        ("g:crash:1", Expect::Ok(200)),
        ("g:crash:1,g:dice:1,t:multiplier:2", Expect::Ok(200)),
        ("g:crash:-1", Expect::Ok(200)),
        ("g:crash:1,g:crash:2", Expect::Ok(200)),
        ("t:multiplier:3.1", Expect::Ok(200)),
        ("", Expect::Ok(200)),
        ("g:nope:1", BAD_REQUEST),
        ("t:crash:1", BAD_REQUEST),
        ("g:multiplier:1", BAD_REQUEST),
        ("1", BAD_REQUEST),
        ("-1", BAD_REQUEST),
        ("g:crash", BAD_REQUEST),
        ("g:crash:abc", BAD_REQUEST),
        ("g:crash:1,", BAD_REQUEST),
        (",g:crash:1", BAD_REQUEST),
        ("x:crash:1", BAD_REQUEST),
        ("g:Crash:1", BAD_REQUEST),
        ("g:crash:99999999999999999999", BAD_REQUEST),
        ("g:dice:1.2.3", BAD_REQUEST),
        ("g:crash:1;g:dice:2", BAD_REQUEST),
        ("g::1", BAD_REQUEST),
        (":::", BAD_REQUEST),
        (long_cursor.as_str(), BAD_REQUEST),
    ] {
        let request = edge
            .http
            .get(edge.url(multiplexed))
            .bearer_auth(&key)
            .header("last-event-id", id);
        run.send(
            "last-event-id",
            &format!("{multiplexed} after {id}"),
            request,
            expect,
        )
        .await;
    }

    // --- Browser tokens: odd bodies.
    let (status, minted) = {
        let response = edge
            .http
            .post(edge.url("/api/tokens"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 201, "{minted}");
    let minted: Value = serde_json::from_str(&minted).unwrap();
    let token = minted["token"].as_str().unwrap().to_string();
    let many_games: Vec<String> = (0..200).map(|i| format!("{i:0>60}")).collect();
    let token_bodies: Vec<(Vec<u8>, Expect)> = vec![
        (Vec::new(), Expect::Ok(201)),
        (b"   ".to_vec(), Expect::Ok(201)),
        (b"{}".to_vec(), Expect::Ok(201)),
        (br#"{"ttl":60}"#.to_vec(), Expect::Ok(201)),
        (br#"{"games":["crash"]}"#.to_vec(), Expect::Ok(201)),
        (b"not json".to_vec(), BAD_REQUEST),
        (b"{".to_vec(), BAD_REQUEST),
        // serde's positional form of the body: not pinned.
        (b"[]".to_vec(), Expect::Any),
        (b"[60]".to_vec(), Expect::Any),
        (b"null".to_vec(), BAD_REQUEST),
        (b"1".to_vec(), BAD_REQUEST),
        (br#"{"ttl":0}"#.to_vec(), BAD_REQUEST),
        (br#"{"ttl":-1}"#.to_vec(), BAD_REQUEST),
        (br#"{"ttl":3601}"#.to_vec(), BAD_REQUEST),
        (br#"{"ttl":"60"}"#.to_vec(), BAD_REQUEST),
        (br#"{"ttl":1.5}"#.to_vec(), BAD_REQUEST),
        (br#"{"ttl":18446744073709551616}"#.to_vec(), BAD_REQUEST),
        (br#"{"games":"crash"}"#.to_vec(), BAD_REQUEST),
        (br#"{"games":["Bad!"]}"#.to_vec(), BAD_REQUEST),
        (br#"{"games":[1]}"#.to_vec(), BAD_REQUEST),
        (br#"{"types":["a b"]}"#.to_vec(), BAD_REQUEST),
        (br#"{"types":{}}"#.to_vec(), BAD_REQUEST),
        (br#"{"x":1}"#.to_vec(), BAD_REQUEST),
        (br#"{"ttl":60,"ttl":60}"#.to_vec(), BAD_REQUEST),
        (b"{\"games\":[\"\xff\"]}".to_vec(), BAD_REQUEST),
        (b"\xef\xbb\xbf{}".to_vec(), BAD_REQUEST),
        (
            format!("{}{}", "[".repeat(1000), "]".repeat(1000)).into_bytes(),
            BAD_REQUEST,
        ),
        (bytes(&json!({ "games": many_games })), BAD_REQUEST),
        (
            vec![b' '; 16 * 1024 + 1],
            Expect::Refused("payload_too_large"),
        ),
        (vec![b'x'; MIB], Expect::Refused("payload_too_large")),
    ];
    for (body, expect) in token_bodies {
        let label = String::from_utf8_lossy(&body).into_owned();
        let request = edge
            .http
            .post(edge.url("/api/tokens"))
            .bearer_auth(&key)
            .body(body);
        run.send("tokens", &label, request, expect).await;
    }
    for (label, request, expect) in [
        (
            "a token minting a token",
            edge.http.post(edge.url("/api/tokens")).bearer_auth(&token),
            Expect::Refused("forbidden"),
        ),
        (
            "the partner key minting for a game it may not read",
            edge.http
                .post(edge.url("/api/tokens"))
                .bearer_auth(&scoped)
                .body(r#"{"games":["dice"]}"#),
            Expect::Refused("forbidden"),
        ),
        ("no key", edge.http.post(edge.url("/api/tokens")), missing),
        (
            "a forged token",
            edge.http
                .get(edge.url("/api/games"))
                .bearer_auth(forge(&token)),
            invalid_token,
        ),
        (
            "a token cut short",
            edge.http
                .get(edge.url("/api/games"))
                .bearer_auth(&token[..token.len() / 2]),
            invalid_token,
        ),
    ] {
        run.send("tokens", label, request, expect).await;
    }

    // The partner key lists only its game; nothing changed what is stored.
    let (status, body) = edge.get("/api/games", &scoped).await.unwrap();
    run.stored(
        (status == 200
            && body
                == r#"{"games":[{"slug":"crash","game_id":1,"type":"multiplier","latest_round_id":3}]}"#)
            .then_some(())
            .ok_or(format!("the partner key lists {status} {body}")),
    );
    let listed = lists(
        &edge,
        &key,
        &[("crash", "multiplier", 3), ("dice", "dice", 1)],
    )
    .await;
    run.stored(listed);
    run.stored(holds(&edge, &key, "crash", &crash).await);
    run.finish();
    assert_still_serves(&edge, &key, &round(4, "crash", "multiplier")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_refuse_bad_tokens_and_bodies() {
    let edge = Edge::start(&[]).await.unwrap();
    let (key, key_id) = edge.create_key(json!({"name": "kept"})).await.unwrap();
    let crash: Vec<Round> = (1..=3).map(|id| round(id, "crash", "multiplier")).collect();
    edge.store(events(New, &crash)).await.unwrap();
    let mut run = Run::new(&edge, "admin");
    let token = edge.admin_token.clone();
    let unauthorized = Expect::Refused("unauthorized");

    // --- Every admin route, with anything but the admin token: refused,
    // and nothing done (checked at the end).
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/admin/keys".into(),
            Some(json!({"name": "must not exist"})),
        ),
        (Method::GET, "/admin/keys".into(), None),
        (Method::DELETE, format!("/admin/keys/{key_id}"), None),
        (Method::GET, format!("/admin/keys/{key_id}/usage"), None),
        (Method::GET, "/admin/streams/game/crash".into(), None),
        (
            Method::POST,
            "/admin/streams/game/crash/disconnect".into(),
            None,
        ),
        (Method::PUT, "/admin/faults/directory".into(), None),
        (Method::DELETE, "/admin/faults/directory".into(), None),
    ];
    let bad_byte = [b"Bearer ".as_slice(), b"\xff"].concat();
    let credentials: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(b"Bearer wrong".to_vec()),
        Some(b"Bearer".to_vec()),
        Some(format!("Basic {token}").into_bytes()),
        Some(token.clone().into_bytes()),
        Some(format!("Bearer {}", &token[..token.len() - 1]).into_bytes()),
        Some(format!("Bearer {token}x").into_bytes()),
        Some(format!("Bearer x{token}").into_bytes()),
        Some(format!("Bearer {token},{token}").into_bytes()),
        Some(format!("Bearer {}", "A".repeat(8192)).into_bytes()),
        Some(format!("Bearer {key}").into_bytes()),
        Some(bad_byte),
    ];
    // The scheme in any case is the admin token too (RFC 9110 §11.1).
    for scheme in ["bearer", "BEARER"] {
        let request = edge
            .http
            .get(edge.url("/admin/keys"))
            .header("authorization", format!("{scheme} {token}"));
        run.send(
            "admin: the token",
            &format!("GET /admin/keys with {scheme} <token>"),
            request,
            Expect::Ok(200),
        )
        .await;
    }
    for (method, path, body) in &routes {
        for credential in &credentials {
            let mut request = edge.http.request(method.clone(), edge.url(path));
            if let Some(body) = body {
                request = request.json(body);
            }
            let label = match credential {
                Some(value) => {
                    let shown = String::from_utf8_lossy(value)
                        .replace(&token, "<token>")
                        .replace(&key, "<key>");
                    request =
                        request.header("authorization", HeaderValue::from_bytes(value).unwrap());
                    format!("{method} {path} with {shown}")
                }
                None => format!("{method} {path} without a token"),
            };
            run.send("admin: without the token", &label, request, unauthorized)
                .await;
        }
        let query = if path.contains('?') { "&" } else { "?" };
        let request = edge.http.request(
            method.clone(),
            edge.url(&format!("{path}{query}admin_token={token}")),
        );
        run.send(
            "admin: without the token",
            &format!("{method} {path} with the token in the query"),
            request,
            unauthorized,
        )
        .await;
    }
    let request = edge
        .http
        .post(edge.url("/admin/keys"))
        .body(vec![b'x'; MIB]);
    run.send(
        "admin: without the token",
        "1 MiB body without a token",
        request,
        unauthorized,
    )
    .await;

    // --- Key creation with bad bodies.
    let admin = |method: Method, path: &str| {
        edge.http
            .request(method, edge.url(path))
            .bearer_auth(&token)
    };
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut bodies: Vec<(String, Vec<u8>)> = [
        "",
        "not json",
        "{",
        "[]",
        "[1]",
        "null",
        "1",
        "\"x\"",
        "{}",
        r#"{"name":1}"#,
        r#"{"name":null}"#,
        r#"{"name":""}"#,
        r#"{"name":"   "}"#,
        r#"{"name":["x"]}"#,
        r#"{"name":"x","games":"crash"}"#,
        r#"{"name":"x","games":["Bad!"]}"#,
        r#"{"name":"x","games":[1]}"#,
        r#"{"name":"x","games":[""]}"#,
        r#"{"name":"x","games":[".."]}"#,
        r#"{"name":"x","games":["crash",null]}"#,
        r#"{"name":"x","types":["a b"]}"#,
        r#"{"name":"x","types":"dice"}"#,
        r#"{"name":"x","origins":["evil"]}"#,
        r#"{"name":"x","origins":["https://a.example/"]}"#,
        r#"{"name":"x","origins":["ftp://a.example"]}"#,
        r#"{"name":"x","origins":["https://a.example/path"]}"#,
        r#"{"name":"x","origins":["https://a.example?x=1"]}"#,
        r#"{"name":"x","origins":["*"]}"#,
        r#"{"name":"x","origins":["null"]}"#,
        r#"{"name":"x","origins":[""]}"#,
        r#"{"name":"x","origins":"https://a.example"}"#,
        r#"{"name":"x","origins":[1]}"#,
        r#"{"name":"x","expires_at":"yesterday"}"#,
        r#"{"name":"x","expires_at":"2000-01-01T00:00:00Z"}"#,
        r#"{"name":"x","expires_at":"2027-13-01T00:00:00Z"}"#,
        r#"{"name":"x","expires_at":"10000-01-01T00:00:00Z"}"#,
        r#"{"name":"x","expires_at":1}"#,
        r#"{"name":"x","max_streams":-1}"#,
        r#"{"name":"x","max_streams":4294967296}"#,
        r#"{"name":"x","max_streams":"5"}"#,
        r#"{"name":"x","max_streams":1.5}"#,
        r#"{"name":"x","connects_per_minute":-1}"#,
        r#"{"name":"x","requests_per_minute":1e3}"#,
        r#"{"name":"x","test":"yes"}"#,
        r#"{"name":"x","test":1}"#,
        r#"{"name":"x","scopes":["admin"]}"#,
        r#"{"name":"x","scopes":["read","write"]}"#,
        r#"{"name":"x","admin":true}"#,
        r#"{"name":"x","id":"key_0000000000000000"}"#,
        r#"{"name":"x","revoked":true}"#,
        r#"{"name":"x","key":"sk_live_0000000000000000000000000000000000"}"#,
        r#"{"name":"x","name":"y"}"#,
        "\u{feff}{\"name\":\"x\"}",
    ]
    .into_iter()
    .map(|b| (b.to_string(), b.as_bytes().to_vec()))
    .collect();
    bodies.push((
        "a name of 101 characters".into(),
        bytes(&json!({"name": "x".repeat(101)})),
    ));
    bodies.push((
        "a name of 1 MiB".into(),
        bytes(&json!({"name": "x".repeat(MIB - 16)})),
    ));
    bodies.push(("1 MiB of invalid JSON".into(), vec![b'x'; MIB]));
    bodies.push(("1 MiB of spaces".into(), vec![b' '; MIB]));
    bodies.push(("nested 10 000 deep".into(), nested.clone().into_bytes()));
    bodies.push((
        "an unknown field nested 10 000 deep".into(),
        format!("{{\"name\":\"x\",\"x\":{nested}}}").into_bytes(),
    ));
    bodies.push((
        "invalid UTF-8 in the name".into(),
        b"{\"name\":\"\xff\"}".to_vec(),
    ));
    bodies.push(("a truncated name".into(), b"{\"name\":\"x".to_vec()));
    for (label, body) in bodies {
        let request = admin(Method::POST, "/admin/keys")
            .header("content-type", "application/json")
            .body(body);
        run.send("admin: key bodies", &label, request, BAD_REQUEST)
            .await;
    }
    // serde also reads the body from an array of its fields in order: not
    // the documented shape, and not pinned here; a key exists afterwards
    // exactly when one was answered as created.
    let mut created = Vec::new();
    for (name, body) in [
        ("positional", json!(["positional"])),
        (
            "positional, every field",
            json!([
                "positional, every field",
                ["crash"],
                null,
                null,
                null,
                1,
                2,
                3,
                true
            ]),
        ),
        (
            "positional, a bad game",
            json!(["positional, a bad game", ["Bad!"]]),
        ),
    ] {
        let answer = run
            .send(
                "admin: key bodies",
                &body.to_string(),
                admin(Method::POST, "/admin/keys").json(&body),
                Expect::Any,
            )
            .await;
        if answer.is_some_and(|a| a.status == 201) {
            created.push(name.to_string());
        }
    }

    // --- Ids that name no key.
    let ids = [
        "nope".to_string(),
        "key_0000000000000000".into(),
        "key_".into(),
        String::new(),
        "key_%00".into(),
        "%ff".into(),
        key_id.to_uppercase(),
        format!("{key_id}x"),
        "a".repeat(600),
        "a".repeat(8192),
        "%2e".repeat(300),
    ];
    for id in &ids {
        run.send(
            "admin: ids",
            &format!("DELETE /admin/keys/{id}"),
            admin(Method::DELETE, &format!("/admin/keys/{id}")),
            NOT_FOUND,
        )
        .await;
        run.send(
            "admin: ids",
            &format!("GET /admin/keys/{id}/usage"),
            admin(Method::GET, &format!("/admin/keys/{id}/usage")),
            NOT_FOUND,
        )
        .await;
    }
    for (path, method, expect) in [
        (format!("/admin/keys/{key_id}/"), Method::DELETE, NOT_FOUND),
        (
            format!("/admin/keys/{key_id}/usage/"),
            Method::GET,
            NOT_FOUND,
        ),
        (
            format!("/admin/keys/{key_id}/Usage"),
            Method::GET,
            NOT_FOUND,
        ),
        ("/admin/Keys".into(), Method::GET, NOT_FOUND),
        ("/admin".into(), Method::GET, NOT_FOUND),
        ("/admin/".into(), Method::GET, NOT_FOUND),
    ] {
        run.send(
            "admin: ids",
            &format!("{method} {path}"),
            admin(method, &path),
            expect,
        )
        .await;
    }

    // --- Usage days.
    for (days, expect) in [
        ("0", BAD_REQUEST),
        ("91", BAD_REQUEST),
        ("-1", BAD_REQUEST),
        ("abc", BAD_REQUEST),
        ("", BAD_REQUEST),
        ("1.5", BAD_REQUEST),
        ("99999999999", BAD_REQUEST),
        ("%00", BAD_REQUEST),
        ("7&days=x", Expect::Ok(200)),
        ("x&days=7", BAD_REQUEST),
        ("1", Expect::Ok(200)),
        ("90", Expect::Ok(200)),
    ] {
        let path = format!("/admin/keys/{key_id}/usage?days={days}");
        run.send("admin: usage", &path, admin(Method::GET, &path), expect)
            .await;
    }

    // --- Stream statistics and disconnects of odd names.
    let long = "a".repeat(8192);
    for (method, path, expect) in [
        (
            Method::GET,
            "/admin/streams/game/Crash".to_string(),
            BAD_REQUEST,
        ),
        (Method::GET, "/admin/streams/foo/crash".into(), NOT_FOUND),
        (
            Method::GET,
            format!("/admin/streams/game/{}", "a".repeat(65)),
            BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/admin/streams/type/{long}"),
            BAD_REQUEST,
        ),
        (Method::GET, "/admin/streams/game/".into(), BAD_REQUEST),
        (
            Method::GET,
            "/admin/streams/game/cr%61sh".into(),
            BAD_REQUEST,
        ),
        (Method::GET, "/admin/streams/game/%00".into(), BAD_REQUEST),
        (
            Method::GET,
            "/admin/streams/game/crash/disconnect".into(),
            NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/admin/streams/game/crash/Disconnect".into(),
            NOT_FOUND,
        ),
        (
            Method::POST,
            "/admin/streams/game/Crash/disconnect".into(),
            BAD_REQUEST,
        ),
        (
            Method::POST,
            "/admin/streams/Game/crash/disconnect".into(),
            NOT_FOUND,
        ),
        (Method::PUT, "/admin/faults/directory".into(), NOT_FOUND),
        (Method::DELETE, "/admin/faults/directory".into(), NOT_FOUND),
        (Method::GET, "/admin/faults/directory".into(), NOT_ALLOWED),
    ] {
        run.send(
            "admin: streams",
            &format!("{method} {path}"),
            admin(method, &path),
            expect,
        )
        .await;
    }

    // Nothing was created or revoked: one key, still usable.
    let (status, listed) = edge.admin(Method::GET, "/admin/keys", None).await.unwrap();
    let names: Vec<(String, bool)> = listed["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    (
                        k["name"].as_str().unwrap_or_default().to_string(),
                        k["revoked"].as_bool().unwrap_or(true),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut want = vec![("kept".to_string(), false)];
    want.extend(created.into_iter().map(|name| (name, false)));
    run.stored(
        (status == 200 && names == want)
            .then_some(())
            .ok_or(format!("keys listed: {status} {listed}")),
    );
    run.stored(holds(&edge, &key, "crash", &crash).await);
    run.finish();
    assert_still_serves(&edge, &key, &round(4, "crash", "multiplier")).await;
}

/// `token` with one signature character changed. Not the last one: it
/// carries padding bits a lenient decoder may ignore; and never to itself
/// (replacing it with a fixed letter failed once in 64 runs).
fn forge(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = chars.len().saturating_sub(5);
    if let Some(c) = chars.get_mut(at) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}
