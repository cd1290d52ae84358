//! `upstash-local`: the Upstash Redis REST protocol in front of a real
//! `redis-server` (docs/protocol.md#per-key-limits-and-usage), so the Worker's limits, Upstash's own JS
//! client and our tests run against the real thing locally.
//!
//! ```text
//! UPSTASH_LOCAL_TOKEN=TOKEN upstash-local --listen 127.0.0.1:PORT --redis-url URL
//! ```
//!
//! The token comes from the environment only, never the command line,
//! where every user of the machine could read it.
//!
//! - `POST /` with a JSON command array (`["SET","k","v"]`) → `200
//!   {"result":…}`; a command Redis refuses → `400 {"error":"ERR …"}`.
//! - `POST /pipeline` with an array of commands → `200 [{"result":…} or
//!   {"error":…}, …]`, one entry per command; every command runs.
//! - `POST /multi-exec`: the same, as one MULTI/EXEC transaction on a
//!   connection of its own; a transaction Redis discards (a command refused
//!   while queueing) → `400 {"error":"EXECABORT …"}`.
//! - The path form: `GET|POST /set/foo/bar`, each segment percent-decoded, the
//!   query's pairs appended (`?EX=60` → `EX 60`) and a POST body appended as
//!   the last argument.
//! - `Authorization: Bearer <token>` (or `?_token=`), compared in constant
//!   time; otherwise `401 {"error":"Unauthorized"}`. A malformed body → `400
//!   {"error":…}`; a body over 1 MiB → `413 {"error":…}`; Redis unreachable →
//!   `503 {"error":…}`.
//! - Arguments: JSON strings, numbers and booleans (stringified). Results:
//!   nil → `null`, integer → number, bulk and simple strings → string (bytes
//!   that are not UTF-8 are replaced by U+FFFD; ask for base64 to get them
//!   exactly), arrays recursively.
//! - `Upstash-Encoding: base64`: every string in a result comes back
//!   base64-encoded, except a result that is the status `OK` itself, which
//!   stays `"OK"`, as Upstash does and as `@upstash/redis` expects (it decodes
//!   every string but a top-level `"OK"`, and every string in an array).
//!   Numbers, `null` and error texts are never encoded.
//!
//! Commands Upstash does not offer (administration: SHUTDOWN, CONFIG,
//! CLIENT, DEBUG, FLUSHALL, …) and those that would change the state of the
//! connection all requests share (SUBSCRIBE, MONITOR, MULTI, SELECT, …) are
//! refused with `400 {"error":"ERR Command is not available: '<name>'"}`.
//! Blocking ones (BLPOP, XREAD BLOCK, …) and transactions run on a
//! connection of their own; at most [`MAX_DEDICATED`] at once, beyond which
//! a request is answered `{"error":"ERR max concurrent connections
//! exceeded"}`, as Upstash answers a database over its plan's connections.
//!
//! A fault for tests: `SIGUSR1` makes it answer every request `401` as
//! Upstash does once its token was rotated, `SIGUSR2` takes the token again;
//! each is acknowledged on stderr (`upstash-local: refusing every token` /
//! `upstash-local: taking the token again`).
//!
//! Once listening it prints `upstash-local listening on http://ADDR` on
//! stdout. It exits non-zero at once when Redis does not answer at start;
//! later, the connection to Redis is re-established by itself.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Parser;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, ServerError, Value};
use serde_json::{Value as Json, json};
use subtle::ConstantTimeEq;

/// The largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// How long a command on the shared connection may take (Redis itself stops
/// a script after 5 s with BUSY).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long requests in flight may still take once asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Connections of their own (blocking commands, transactions) open at once.
const MAX_DEDICATED: usize = 32;

/// Commands refused: administration Upstash does not offer, and those that
/// would change the state of a connection shared by every request (or take
/// it over).
const REFUSED: &[&str] = &[
    "SHUTDOWN",
    "FLUSHALL",
    "FLUSHDB",
    "CONFIG",
    "CLIENT",
    "DEBUG",
    "SAVE",
    "BGSAVE",
    "BGREWRITEAOF",
    "REPLICAOF",
    "SLAVEOF",
    "FAILOVER",
    "MODULE",
    "ACL",
    "SLOWLOG",
    "LATENCY",
    "CLUSTER",
    "MIGRATE",
    "SWAPDB",
    "MOVE",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SELECT",
    "HELLO",
    "AUTH",
    "RESET",
    "QUIT",
    "SYNC",
    "PSYNC",
    "REPLCONF",
];

/// Commands that may block the connection they run on.
const BLOCKING: &[&str] = &[
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "WAIT",
    "WAITAOF",
];

/// An Upstash-compatible Redis REST endpoint in front of a real Redis.
#[derive(Parser, Debug)]
#[command(name = "upstash-local", version)]
struct Args {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, env = "UPSTASH_LOCAL_LISTEN")]
    listen: SocketAddr,
    /// The Redis behind it: `redis://HOST:PORT`, `redis+unix:///PATH` or
    /// `unix:///PATH`.
    #[arg(long, env = "UPSTASH_LOCAL_REDIS_URL")]
    redis_url: String,
}

/// The environment variable holding the bearer token clients must present.
const TOKEN_VAR: &str = "UPSTASH_LOCAL_TOKEN";

/// What every request shares.
struct App {
    /// The connection commands and pipelines share; reconnects by itself.
    shared: ConnectionManager,
    /// For connections of their own (transactions, blocking commands).
    client: redis::Client,
    /// Bounds the connections of their own.
    dedicated: tokio::sync::Semaphore,
    token: Vec<u8>,
    /// The rotated-token fault (`SIGUSR1` / `SIGUSR2`).
    refusing: std::sync::atomic::AtomicBool,
}

/// A command as Redis arguments, the name first.
type Command = Vec<Vec<u8>>;

/// A request that cannot be answered with a Redis reply.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// Redis could not be reached or did not answer in time.
    fn unavailable(err: &RedisError) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("upstash-local: Redis unavailable: {err}"),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error_response(self.status, &self.message)
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// `body` as `application/json` (axum's `Json` needs a feature not enabled).
fn json_response(status: StatusCode, body: &Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    devstack::exit_code("upstash-local", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_VAR).unwrap_or_default();
    if token.is_empty() {
        bail!("{TOKEN_VAR} must be set to the bearer token clients present");
    }
    let client = redis::Client::open(args.redis_url.as_str())
        // Not echoed: the URL may hold a password.
        .context("--redis-url is not a Redis URL")?;
    let place = client.get_connection_info().addr().to_string();
    // Fail fast and clearly when nothing answers there; the connection
    // manager below would retry for a while instead.
    let mut probe = client
        .get_multiplexed_async_connection_with_config(&dedicated_config())
        .await
        .with_context(|| format!("connecting to Redis at {place}"))?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut probe)
        .await
        .with_context(|| format!("Redis at {place} does not answer PING"))?;
    if pong != "PONG" {
        bail!("Redis at {place} answered PING with {pong:?}");
    }
    drop(probe);
    let shared = ConnectionManager::new_with_config(
        client.clone(),
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT)),
    )
    .await
    .with_context(|| format!("connecting to Redis at {place}"))?;
    let app = Arc::new(App {
        shared,
        client,
        dedicated: tokio::sync::Semaphore::new(MAX_DEDICATED),
        token: token.into_bytes(),
        refusing: std::sync::atomic::AtomicBool::new(false),
    });
    tokio::spawn(rotated_token_fault(Arc::clone(&app)));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "upstash-local listening on http://{local}")?;
        out.flush()?;
    }
    eprintln!("upstash-local: Redis at {place}");
    let router = Router::new().fallback(handle).with_state(app);
    let serve = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal());
    // On SIGTERM or Ctrl-C, requests in flight may finish, but a blocking
    // command does not hold up the exit for long.
    let deadline = async {
        shutdown_signal().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serve => served.context("serving")?,
        () = deadline => {}
    }
    Ok(())
}

/// `SIGUSR1`: refuse every token (as after a rotation); `SIGUSR2`: take
/// it again.
async fn rotated_token_fault(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut refuse), Ok(mut take)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        eprintln!("upstash-local: no SIGUSR1/SIGUSR2 handler; the token fault is off");
        return;
    };
    loop {
        let refusing = tokio::select! {
            _ = refuse.recv() => true,
            _ = take.recv() => false,
        };
        app.refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "upstash-local: {}",
            if refusing {
                "refusing every token"
            } else {
                "taking the token again"
            }
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A connection of one request's own: no response timeout, since a
/// blocking command may wait as long as it was told to (the connection goes
/// when the client does).
fn dedicated_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
}

/// Every request: authorization, then the body, then the route.
async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("");
    if !app.authorized(&parts.headers, query) {
        return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let base64 = parts
        .headers
        .get("upstash-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"base64"));
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let path = parts.uri.path();
    let result = match (&parts.method, path) {
        (&Method::POST, "/") => match parse_command_body(&body) {
            Ok(command) => app.single(command, base64).await,
            Err(refusal) => Err(refusal),
        },
        (&Method::POST, "/pipeline") => match parse_commands_body(&body) {
            Ok(commands) => app.pipeline(commands, base64).await,
            Err(refusal) => Err(refusal),
        },
        (&Method::POST, "/multi-exec") => match parse_commands_body(&body) {
            Ok(commands) => app.multi_exec(commands, base64).await,
            Err(refusal) => Err(refusal),
        },
        (&Method::GET | &Method::POST, _) => match path_command(path, query, &body) {
            Ok(command) => app.single(command, base64).await,
            Err(refusal) => Err(refusal),
        },
        _ => Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: format!("method {} is not allowed", parts.method),
        }),
    };
    match result {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

async fn read_body(body: Body) -> Result<Vec<u8>, Refusal> {
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(_) => Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body larger than {MAX_BODY} bytes (or unreadable)"),
        }),
    }
}

impl App {
    fn authorized(&self, headers: &HeaderMap, query: &str) -> bool {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().as_bytes().to_vec());
        let given = from_header.or_else(|| {
            query_pairs(query)
                .find(|(name, _)| name == b"_token")
                .map(|(_, value)| value)
        });
        !self.refusing.load(std::sync::atomic::Ordering::SeqCst)
            && given.is_some_and(|given| bool::from(given.as_slice().ct_eq(&self.token)))
    }

    /// One command: its result, or 400 with Redis's error.
    async fn single(&self, command: Command, base64: bool) -> Result<Response, Refusal> {
        check_allowed(&command)?;
        let cmd = to_cmd(&command);
        let reply = if is_blocking(&command) {
            let (mut conn, _permit) = self.dedicated().await?;
            conn.send_packed_command(&cmd).await
        } else {
            self.shared.clone().send_packed_command(&cmd).await
        };
        match reply_or_error(reply)? {
            Ok(value) => Ok(json_ok(json!({ "result": encode(value, base64, true) }))),
            Err(error) => Ok(error_response(
                StatusCode::BAD_REQUEST,
                &server_error_text(&error),
            )),
        }
    }

    /// Every command in order, each answered on its own.
    async fn pipeline(&self, commands: Vec<Command>, base64: bool) -> Result<Response, Refusal> {
        for command in &commands {
            check_allowed(command)?;
        }
        let mut pipe = Pipeline::with_capacity(commands.len());
        for command in &commands {
            pipe.add_command(to_cmd(command));
        }
        let replies = if commands.iter().any(is_blocking) {
            let (mut conn, _permit) = self.dedicated().await?;
            conn.send_packed_commands(&pipe, 0, commands.len()).await
        } else {
            self.shared
                .clone()
                .send_packed_commands(&pipe, 0, commands.len())
                .await
        }
        .map_err(|err| Refusal::unavailable(&err))?;
        Ok(json_ok(Json::Array(entries(replies, base64))))
    }

    /// MULTI, the commands, EXEC, on a connection of this request's own.
    async fn multi_exec(&self, commands: Vec<Command>, base64: bool) -> Result<Response, Refusal> {
        for command in &commands {
            check_allowed(command)?;
        }
        let mut pipe = Pipeline::with_capacity(commands.len() + 2);
        pipe.add_command(redis::cmd("MULTI"));
        for command in &commands {
            pipe.add_command(to_cmd(command));
        }
        pipe.add_command(redis::cmd("EXEC"));
        let (mut conn, _permit) = self.dedicated().await?;
        let mut replies = conn
            .send_packed_commands(&pipe, 0, commands.len() + 2)
            .await
            .map_err(|err| Refusal::unavailable(&err))?;
        let exec = replies.pop().unwrap_or(Value::Nil);
        match exec {
            Value::Array(results) => Ok(json_ok(Json::Array(entries(results, base64)))),
            Value::ServerError(error) => {
                // EXECABORT: name the command Redis refused while queueing.
                let queued = replies
                    .iter()
                    .skip(1)
                    .enumerate()
                    .find_map(|(i, r)| match r {
                        Value::ServerError(e) => Some((i, e)),
                        _ => None,
                    });
                let mut message = server_error_text(&error);
                if let Some((index, refused)) = queued {
                    message.push_str(&format!(
                        " Command {} was refused: {}",
                        index + 1,
                        server_error_text(refused)
                    ));
                }
                Err(Refusal::bad_request(message))
            }
            other => Err(Refusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("upstash-local: unexpected EXEC reply {other:?}"),
            }),
        }
    }

    /// A connection of this request's own, within [`MAX_DEDICATED`]; it
    /// counts until the returned permit drops.
    async fn dedicated(
        &self,
    ) -> Result<(MultiplexedConnection, tokio::sync::SemaphorePermit<'_>), Refusal> {
        let permit = self.dedicated.try_acquire().map_err(|_| Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "ERR max concurrent connections exceeded".to_string(),
        })?;
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&dedicated_config())
            .await
            .map_err(|err| Refusal::unavailable(&err))?;
        Ok((conn, permit))
    }
}

/// A reply, Redis's refusal of the command, or (the outer error) no reply.
fn reply_or_error(reply: Result<Value, RedisError>) -> Result<Result<Value, ServerError>, Refusal> {
    match reply {
        Ok(Value::ServerError(error)) => Ok(Err(error)),
        Ok(value) => Ok(Ok(value)),
        Err(err) => match ServerError::try_from(err) {
            Ok(error) => Ok(Err(error)),
            Err(err) => Err(Refusal::unavailable(&err)),
        },
    }
}

/// Pipeline and transaction entries: `{"result":…}` or `{"error":…}`.
fn entries(replies: Vec<Value>, base64: bool) -> Vec<Json> {
    replies
        .into_iter()
        .map(|reply| match reply {
            Value::ServerError(error) => json!({ "error": server_error_text(&error) }),
            value => json!({ "result": encode(value, base64, true) }),
        })
        .collect()
}

/// Redis's own error line, e.g. `ERR value is not an integer or out of range`.
fn server_error_text(error: &ServerError) -> String {
    match error.details() {
        Some(details) => format!("{} {details}", error.code()),
        None => error.code().to_string(),
    }
}

fn json_ok(body: Json) -> Response {
    json_response(StatusCode::OK, &body)
}

/// A Redis reply as JSON. With `base64`, every string is base64-encoded but
/// the status `OK` as a whole result (`top`): `@upstash/redis` keeps a
/// top-level `"OK"` as it is and decodes every other string, including
/// every string inside an array.
fn encode(value: Value, base64: bool, top: bool) -> Json {
    let text = |bytes: &[u8]| -> Json {
        if base64 {
            Json::String(BASE64.encode(bytes))
        } else {
            Json::String(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    let list = |values: Vec<Value>| -> Json {
        Json::Array(
            values
                .into_iter()
                .map(|v| encode(v, base64, false))
                .collect(),
        )
    };
    match value {
        Value::Nil => Json::Null,
        Value::Int(n) => Json::from(n),
        Value::BulkString(bytes) => text(&bytes),
        Value::SimpleString(s) => text(s.as_bytes()),
        Value::Okay if top => Json::String("OK".to_string()),
        Value::Okay => text(b"OK"),
        Value::Array(values) | Value::Set(values) => list(values),
        Value::Push { data, .. } => list(data),
        Value::Map(pairs) => list(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Value::Attribute { data, .. } => encode(*data, base64, top),
        Value::Double(d) => serde_json::Number::from_f64(d)
            .map(Json::Number)
            .unwrap_or_else(|| text(d.to_string().as_bytes())),
        Value::Boolean(b) => Json::from(i64::from(b)),
        Value::VerbatimString { text: s, .. } => text(s.as_bytes()),
        // Its decimal digits (the `num-bigint` feature is off).
        Value::BigNumber(digits) => text(&digits),
        // An error inside a reply (a script's table holding one): its text.
        Value::ServerError(error) => text(server_error_text(&error).as_bytes()),
        // A reply type added after this was written: its debug form.
        other => text(format!("{other:?}").as_bytes()),
    }
}

fn to_cmd(command: &Command) -> Cmd {
    let mut cmd = Cmd::new();
    for arg in command {
        cmd.arg(arg.as_slice());
    }
    cmd
}

fn name_of(command: &Command) -> String {
    command
        .first()
        .map(|name| String::from_utf8_lossy(name).to_ascii_uppercase())
        .unwrap_or_default()
}

fn check_allowed(command: &Command) -> Result<(), Refusal> {
    let name = name_of(command);
    if REFUSED.contains(&name.as_str()) {
        return Err(Refusal::bad_request(format!(
            "ERR Command is not available: '{}'",
            name.to_ascii_lowercase()
        )));
    }
    Ok(())
}

fn is_blocking(command: &Command) -> bool {
    let name = name_of(command);
    BLOCKING.contains(&name.as_str())
        || ((name == "XREAD" || name == "XREADGROUP")
            && command.iter().any(|arg| arg.eq_ignore_ascii_case(b"BLOCK")))
}

/// `POST /`: one command.
fn parse_command_body(body: &[u8]) -> Result<Command, Refusal> {
    let json: Json = serde_json::from_slice(body)
        .map_err(|err| Refusal::bad_request(format!("request body is not JSON: {err}")))?;
    command_of(&json)
}

/// `POST /pipeline`, `POST /multi-exec`: a non-empty array of commands.
fn parse_commands_body(body: &[u8]) -> Result<Vec<Command>, Refusal> {
    let json: Json = serde_json::from_slice(body)
        .map_err(|err| Refusal::bad_request(format!("request body is not JSON: {err}")))?;
    let Json::Array(items) = json else {
        return Err(Refusal::bad_request(
            "request body must be a JSON array of commands",
        ));
    };
    if items.is_empty() {
        return Err(Refusal::bad_request("no command given"));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            command_of(item).map_err(|refusal| {
                Refusal::bad_request(format!("command {}: {}", index + 1, refusal.message))
            })
        })
        .collect()
}

/// A JSON command array: strings, numbers and booleans, at least the name.
fn command_of(json: &Json) -> Result<Command, Refusal> {
    let Json::Array(items) = json else {
        return Err(Refusal::bad_request(
            "a command must be a JSON array of strings, numbers or booleans",
        ));
    };
    if items.is_empty() {
        return Err(Refusal::bad_request("empty command"));
    }
    items
        .iter()
        .map(|item| match item {
            Json::String(s) => Ok(s.as_bytes().to_vec()),
            Json::Number(n) => Ok(n.to_string().into_bytes()),
            Json::Bool(b) => Ok(b.to_string().into_bytes()),
            other => Err(Refusal::bad_request(format!(
                "a command argument must be a string, number or boolean, not {other}"
            ))),
        })
        .collect()
}

/// The path form: `/set/foo/bar?EX=60` → `SET foo bar EX 60`, a POST body
/// appended as the last argument.
fn path_command(path: &str, query: &str, body: &[u8]) -> Result<Command, Refusal> {
    let mut command: Command = path
        .trim_start_matches('/')
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| percent_decode(segment.as_bytes()))
        .collect();
    for (name, value) in query_pairs(query) {
        if name == b"_token" {
            continue;
        }
        command.push(name);
        if !value.is_empty() {
            command.push(value);
        }
    }
    if !body.is_empty() {
        command.push(body.to_vec());
    }
    if command.is_empty() {
        return Err(Refusal::bad_request("empty command"));
    }
    Ok(command)
}

/// The decoded `name=value` pairs of a query string.
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (
                percent_decode(name.as_bytes()),
                percent_decode(value.as_bytes()),
            ),
            None => (percent_decode(pair.as_bytes()), Vec::new()),
        })
}

/// `%XX` escapes decoded; anything else (a stray `%` too) kept as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let byte = input[i];
        if byte == b'%'
            && let (Some(hi), Some(lo)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%2Fb%20c%C3%BC"), "a/b cü".as_bytes());
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn path_form() {
        let command = path_command("/set/foo/a%2Fb", "EX=60&NX&_token=x", b"").unwrap();
        let expected: Command = ["set", "foo", "a/b", "EX", "60", "NX"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(command, expected);
        let command = path_command("/set/foo", "", b"body value").unwrap();
        assert_eq!(command.last().unwrap(), b"body value");
        assert!(path_command("/", "", b"").is_err());
    }

    #[test]
    fn json_commands() {
        let command = parse_command_body(br#"["SET","k",1.5,true,-3]"#).unwrap();
        assert_eq!(
            command,
            vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"1.5".to_vec(),
                b"true".to_vec(),
                b"-3".to_vec()
            ]
        );
        assert!(parse_command_body(b"[]").is_err());
        assert!(parse_command_body(br#"["GET",null]"#).is_err());
        assert!(parse_command_body(br#"{"a":1}"#).is_err());
        assert!(parse_command_body(b"SET k v").is_err());
        assert!(parse_commands_body(b"[]").is_err());
        assert!(parse_commands_body(br#"[["GET","k"],"x"]"#).is_err());
        assert_eq!(parse_commands_body(br#"[["GET","k"]]"#).unwrap().len(), 1);
    }

    #[test]
    fn base64_keeps_only_a_top_level_ok() {
        assert_eq!(encode(Value::Okay, true, true), json!("OK"));
        assert_eq!(encode(Value::Okay, false, true), json!("OK"));
        let nested = Value::Array(vec![
            Value::Okay,
            Value::BulkString(b"\xff\x00".to_vec()),
            Value::Int(3),
            Value::Nil,
        ]);
        assert_eq!(
            encode(nested.clone(), true, true),
            json!(["T0s=", "/wA=", 3, null])
        );
        assert_eq!(
            encode(nested, false, true),
            json!(["OK", "\u{fffd}\u{0}", 3, null])
        );
        assert_eq!(
            encode(Value::SimpleString("PONG".into()), true, true),
            json!("UE9ORw==")
        );
    }

    #[test]
    fn refused_and_blocking() {
        let cmd =
            |parts: &[&str]| -> Command { parts.iter().map(|p| p.as_bytes().to_vec()).collect() };
        assert!(check_allowed(&cmd(&["subscribe", "x"])).is_err());
        assert!(check_allowed(&cmd(&["client", "reply", "off"])).is_err());
        for admin in [
            "shutdown", "FLUSHALL", "flushdb", "config", "debug", "monitor",
        ] {
            let refusal = check_allowed(&cmd(&[admin])).unwrap_err();
            assert_eq!(
                refusal.message,
                format!("ERR Command is not available: '{}'", admin.to_lowercase())
            );
        }
        assert!(check_allowed(&cmd(&["get", "x"])).is_ok());
        assert!(is_blocking(&cmd(&["blpop", "x", "0"])));
        assert!(is_blocking(&cmd(&[
            "xread", "block", "0", "streams", "s", "$"
        ])));
        assert!(!is_blocking(&cmd(&["xread", "streams", "s", "0"])));
    }
}
