//! The Upstash Redis REST protocol (docs/protocol.md#per-key-limits-and-usage), as plain data: how a command,
//! a pipeline and a transaction are encoded, and how each reply is decoded
//! into typed values or a typed error.
//!
//! The published `upstash-redis-rs` crate is not used: it needs a nightly
//! feature, does not build for wasm32 and reports server errors as
//! successes. The protocol is small, so it lives here, pure and wasm32-clean;
//! each runtime brings a [`Transport`] (the Worker's `fetch`, reqwest natively)
//! and [`Client`] does the rest.
//!
//! The wire format:
//! - `POST /` with a JSON array of strings (`["SET","k","v"]`) →
//!   `{"result": …}` or `{"error": "…"}` (HTTP 400 for a failing command).
//! - `POST /pipeline` with an array of commands → an array of those objects,
//!   one per command, each run whatever the others did.
//! - `POST /multi-exec` → the same, inside MULTI/EXEC.
//! - `Authorization: Bearer <token>`; a wrong token is HTTP 401.
//! - With the request header `Upstash-Encoding: base64`, string results come
//!   back base64-encoded (except the status `OK`), so binary values survive JSON.

use std::fmt;
use std::future::Future;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;

/// Path of a single command.
pub const PATH_SINGLE: &str = "/";
/// Path of a pipeline.
pub const PATH_PIPELINE: &str = "/pipeline";
/// Path of a MULTI/EXEC transaction.
pub const PATH_MULTI_EXEC: &str = "/multi-exec";
/// Request header asking for base64-encoded string results.
pub const ENCODING_HEADER: &str = "Upstash-Encoding";

/// One Redis command: its name and arguments, all sent as JSON strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(Vec<String>);

impl Command {
    /// A command named `name` (`"ZADD"`, `"EVAL"`, …) with no arguments yet.
    pub fn new(name: &str) -> Self {
        Self(vec![name.to_string()])
    }

    /// Adds one argument (numbers are sent in their decimal form).
    #[must_use]
    pub fn arg(mut self, arg: impl fmt::Display) -> Self {
        self.0.push(arg.to_string());
        self
    }

    /// Adds several arguments.
    #[must_use]
    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: fmt::Display,
    {
        self.0.extend(args.into_iter().map(|a| a.to_string()));
        self
    }

    /// The command name and its arguments.
    pub fn parts(&self) -> &[String] {
        &self.0
    }

    fn json(&self) -> Json {
        Json::Array(self.0.iter().cloned().map(Json::String).collect())
    }
}

/// How string results are encoded in replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// As JSON strings.
    #[default]
    Plain,
    /// Base64 inside JSON strings (`Upstash-Encoding: base64`): any bytes survive.
    Base64,
}

/// A request to send: path, JSON body, and whether to ask for base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// [`PATH_SINGLE`], [`PATH_PIPELINE`] or [`PATH_MULTI_EXEC`].
    pub path: &'static str,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Send `Upstash-Encoding: base64`.
    pub base64: bool,
}

impl Request {
    /// One command.
    pub fn single(command: &Command, encoding: Encoding) -> Self {
        Self::new(PATH_SINGLE, command.json(), encoding)
    }

    /// Several commands in one round trip, each run on its own.
    pub fn pipeline(commands: &[Command], encoding: Encoding) -> Self {
        Self::new(PATH_PIPELINE, list(commands), encoding)
    }

    /// Several commands in one round trip, as one transaction.
    pub fn multi_exec(commands: &[Command], encoding: Encoding) -> Self {
        Self::new(PATH_MULTI_EXEC, list(commands), encoding)
    }

    fn new(path: &'static str, body: Json, encoding: Encoding) -> Self {
        Self {
            path,
            body: body.to_string().into_bytes(),
            base64: encoding == Encoding::Base64,
        }
    }
}

fn list(commands: &[Command]) -> Json {
    Json::Array(commands.iter().map(Command::json).collect())
}

/// A decoded result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Redis nil (`null`).
    Nil,
    /// An integer reply.
    Int(i64),
    /// A number that is not an integer (a Lua or RESP3 double).
    Float(f64),
    /// A string reply (bulk or status), as bytes: base64 results may be any bytes.
    Bytes(Vec<u8>),
    /// An array reply.
    Array(Vec<Value>),
}

impl Value {
    /// The integer, also when Redis sent it as a decimal string (`GET` of a counter).
    pub fn as_i64(&self) -> Result<i64, Error> {
        match self {
            Self::Int(n) => Ok(*n),
            Self::Bytes(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| self.unexpected("an integer")),
            _ => Err(self.unexpected("an integer")),
        }
    }

    /// An integer, with nil read as 0 (a counter that does not exist yet).
    pub fn as_count(&self) -> Result<i64, Error> {
        match self {
            Self::Nil => Ok(0),
            other => other.as_i64(),
        }
    }

    /// The string, which must be UTF-8.
    pub fn as_str(&self) -> Result<&str, Error> {
        match self {
            Self::Bytes(b) => std::str::from_utf8(b).map_err(|_| self.unexpected("UTF-8 text")),
            _ => Err(self.unexpected("a string")),
        }
    }

    /// The elements of an array reply.
    pub fn as_array(&self) -> Result<&[Value], Error> {
        match self {
            Self::Array(items) => Ok(items),
            _ => Err(self.unexpected("an array")),
        }
    }

    /// Whether this is nil.
    pub fn is_nil(&self) -> bool {
        matches!(self, Self::Nil)
    }

    fn unexpected(&self, wanted: &'static str) -> Error {
        Error::Unexpected {
            wanted,
            got: self.kind(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Nil => "nil",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a float",
            Self::Bytes(_) => "a string",
            Self::Array(_) => "an array",
        }
    }
}

/// Why a call failed. A server error is always an error, never a success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Redis refused the command (`{"error":"ERR …"}`), e.g. `WRONGTYPE …`.
    #[error("redis error: {0}")]
    Server(String),
    /// The token was refused (HTTP 401).
    #[error("upstash refused the token")]
    Unauthorized,
    /// Any other HTTP status without a protocol error body.
    #[error("upstash answered HTTP {status}")]
    Http {
        /// The HTTP status.
        status: u16,
    },
    /// The reply is not the protocol's JSON.
    #[error("malformed upstash reply: {0}")]
    Malformed(String),
    /// A result of another type than the caller expected.
    #[error("expected {wanted}, got {got}")]
    Unexpected {
        /// What the caller wanted.
        wanted: &'static str,
        /// What came.
        got: &'static str,
    },
    /// No answer within the transport's time bound.
    #[error("upstash did not answer in time")]
    Timeout,
    /// The request could not be sent or its answer not read.
    #[error("upstash unreachable: {0}")]
    Transport(String),
}

impl Error {
    /// Whether Upstash refused us rather than failed to answer: a wrong or
    /// rotated token, or the plan's quota spent. Waiting does not fix it; an
    /// operator must.
    pub fn is_configuration(&self) -> bool {
        match self {
            Self::Unauthorized => true,
            Self::Http { status } => matches!(status, 401 | 403),
            Self::Server(message) => message.to_ascii_lowercase().contains("limit exceeded"),
            _ => false,
        }
    }
}

/// Decodes the reply to [`Request::single`].
pub fn decode_single(status: u16, body: &[u8], encoding: Encoding) -> Result<Value, Error> {
    let json = reply_json(status, body)?;
    let result = entry(&json, encoding);
    match result {
        Ok(value) if (200..300).contains(&status) => Ok(value),
        Ok(_) => Err(Error::Http { status }),
        Err(err) => Err(err),
    }
}

/// Decodes the reply to [`Request::pipeline`] or [`Request::multi_exec`]:
/// one result per command, in order. A failing command is an `Err` in its
/// place; the outer `Err` is for the whole call.
pub fn decode_many(
    status: u16,
    body: &[u8],
    encoding: Encoding,
    commands: usize,
) -> Result<Vec<Result<Value, Error>>, Error> {
    let json = reply_json(status, body)?;
    if let Some(error) = json.get("error") {
        return Err(server_error(error));
    }
    if !(200..300).contains(&status) {
        return Err(Error::Http { status });
    }
    let Json::Array(items) = json else {
        return Err(Error::Malformed("expected an array of results".into()));
    };
    if items.len() != commands {
        return Err(Error::Malformed(format!(
            "{} results for {commands} commands",
            items.len()
        )));
    }
    Ok(items.iter().map(|item| entry(item, encoding)).collect())
}

fn reply_json(status: u16, body: &[u8]) -> Result<Json, Error> {
    if status == 401 {
        return Err(Error::Unauthorized);
    }
    serde_json::from_slice(body).map_err(|_| {
        if (200..300).contains(&status) {
            Error::Malformed("the body is not JSON".into())
        } else {
            Error::Http { status }
        }
    })
}

fn server_error(error: &Json) -> Error {
    Error::Server(match error {
        Json::String(text) => text.clone(),
        other => other.to_string(),
    })
}

/// One `{"result": …}` or `{"error": …}` object.
fn entry(json: &Json, encoding: Encoding) -> Result<Value, Error> {
    let Json::Object(map) = json else {
        return Err(Error::Malformed(
            "expected {\"result\"} or {\"error\"}".into(),
        ));
    };
    if let Some(error) = map.get("error") {
        return Err(server_error(error));
    }
    match map.get("result") {
        Some(result) => value(result, encoding),
        None => Err(Error::Malformed("neither result nor error".into())),
    }
}

fn value(json: &Json, encoding: Encoding) -> Result<Value, Error> {
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Int(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Bytes(match encoding {
            // Upstash leaves the status reply `OK` as it is.
            Encoding::Base64 if s != "OK" => BASE64
                .decode(s)
                .map_err(|_| Error::Malformed("a result is not valid base64".into()))?,
            _ => s.as_bytes().to_vec(),
        }),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| value(item, encoding))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(_) => return Err(Error::Malformed("an object inside a result".into())),
    })
}

/// Carries a [`Request`] to the endpoint and back: status and body. Each
/// implementation bounds the whole exchange in time and answers
/// [`Error::Timeout`] past it.
pub trait Transport {
    /// Sends `request` (with `Authorization: Bearer` and, when asked,
    /// `Upstash-Encoding: base64`).
    fn send(&self, request: Request) -> impl Future<Output = Result<(u16, Vec<u8>), Error>>;
}

/// A typed client over any [`Transport`].
#[derive(Debug, Clone)]
pub struct Client<T> {
    transport: T,
    encoding: Encoding,
}

impl<T: Transport> Client<T> {
    /// A client asking for plain string results.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            encoding: Encoding::Plain,
        }
    }

    /// The same, with string results in `encoding`.
    #[must_use]
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Runs one command.
    pub async fn exec(&self, command: &Command) -> Result<Value, Error> {
        let (status, body) = self
            .transport
            .send(Request::single(command, self.encoding))
            .await?;
        decode_single(status, &body, self.encoding)
    }

    /// Runs several commands in one round trip, each on its own.
    pub async fn pipeline(&self, commands: &[Command]) -> Result<Vec<Result<Value, Error>>, Error> {
        let (status, body) = self
            .transport
            .send(Request::pipeline(commands, self.encoding))
            .await?;
        decode_many(status, &body, self.encoding, commands.len())
    }

    /// Runs several commands in one round trip as one transaction.
    pub async fn multi_exec(
        &self,
        commands: &[Command],
    ) -> Result<Vec<Result<Value, Error>>, Error> {
        let (status, body) = self
            .transport
            .send(Request::multi_exec(commands, self.encoding))
            .await?;
        decode_many(status, &body, self.encoding, commands.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_refusal_is_told_from_a_failure_to_answer() {
        assert!(Error::Unauthorized.is_configuration());
        assert!(Error::Http { status: 401 }.is_configuration());
        assert!(
            Error::Server("ERR max daily request limit exceeded. Limit: 10000".into())
                .is_configuration()
        );
        assert!(!Error::Timeout.is_configuration());
        assert!(!Error::Http { status: 503 }.is_configuration());
        assert!(!Error::Transport("reset".into()).is_configuration());
        assert!(!Error::Server("WRONGTYPE".into()).is_configuration());
    }

    fn body(request: &Request) -> &str {
        std::str::from_utf8(&request.body).unwrap()
    }

    #[test]
    fn commands_are_json_string_arrays() {
        let set = Command::new("SET").arg("a/b c").arg("ü€\"\\").arg(42);
        let request = Request::single(&set, Encoding::Plain);
        assert_eq!(request.path, "/");
        assert!(!request.base64);
        assert_eq!(body(&request), r#"["SET","a/b c","ü€\"\\","42"]"#);

        let zadd = Command::new("ZADD").arg("k").args([1.5, 2.0]);
        let request = Request::pipeline(&[set, zadd], Encoding::Base64);
        assert_eq!(request.path, "/pipeline");
        assert!(request.base64);
        assert_eq!(
            body(&request),
            r#"[["SET","a/b c","ü€\"\\","42"],["ZADD","k","1.5","2"]]"#
        );
        let request = Request::multi_exec(&[Command::new("INCR").arg("n")], Encoding::Plain);
        assert_eq!(request.path, "/multi-exec");
        assert_eq!(body(&request), r#"[["INCR","n"]]"#);
    }

    #[test]
    fn every_reply_shape() {
        let plain = |json: &str| decode_single(200, json.as_bytes(), Encoding::Plain);
        assert_eq!(plain(r#"{"result":null}"#), Ok(Value::Nil));
        assert_eq!(plain(r#"{"result":7}"#), Ok(Value::Int(7)));
        assert_eq!(plain(r#"{"result":-1}"#), Ok(Value::Int(-1)));
        assert_eq!(plain(r#"{"result":1.5}"#), Ok(Value::Float(1.5)));
        assert_eq!(
            plain(r#"{"result":"OK"}"#),
            Ok(Value::Bytes(b"OK".to_vec()))
        );
        assert_eq!(
            plain(r#"{"result":"a/b ü"}"#),
            Ok(Value::Bytes("a/b ü".as_bytes().to_vec()))
        );
        assert_eq!(
            plain(r#"{"result":["x",1,null,["y"]]}"#),
            Ok(Value::Array(vec![
                Value::Bytes(b"x".to_vec()),
                Value::Int(1),
                Value::Nil,
                Value::Array(vec![Value::Bytes(b"y".to_vec())]),
            ]))
        );
    }

    #[test]
    fn floats_decode_exactly() {
        // Found by `tests/prop_upstash.rs`: without serde_json's
        // `float_roundtrip` this read as 9.82131485769218e-12, one ULP off.
        assert_eq!(
            decode_single(200, br#"{"result":9.821314857692181e-12}"#, Encoding::Plain),
            Ok(Value::Float(9.821_314_857_692_181e-12))
        );
    }

    #[test]
    fn base64_results_are_decoded_except_ok() {
        let b64 = |json: &str| decode_single(200, json.as_bytes(), Encoding::Base64);
        // "w7w=" is "ü"; "/w==" is the single byte 0xFF, not UTF-8.
        assert_eq!(
            b64(r#"{"result":"w7w="}"#),
            Ok(Value::Bytes("ü".as_bytes().to_vec()))
        );
        assert_eq!(b64(r#"{"result":"/w=="}"#), Ok(Value::Bytes(vec![0xFF])));
        assert_eq!(b64(r#"{"result":"OK"}"#), Ok(Value::Bytes(b"OK".to_vec())));
        assert_eq!(
            b64(r#"{"result":["YQ==",3,null]}"#),
            Ok(Value::Array(vec![
                Value::Bytes(b"a".to_vec()),
                Value::Int(3),
                Value::Nil
            ]))
        );
        assert!(matches!(
            b64(r#"{"result":"not base64!"}"#),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn server_errors_are_errors() {
        let reply =
            br#"{"error":"WRONGTYPE Operation against a key holding the wrong kind of value"}"#;
        assert_eq!(
            decode_single(400, reply, Encoding::Plain),
            Err(Error::Server(
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            ))
        );
        // Even with a 200 status, an error body is an error.
        assert_eq!(
            decode_single(200, br#"{"error":"ERR x"}"#, Encoding::Plain),
            Err(Error::Server("ERR x".into()))
        );
        assert_eq!(
            decode_single(401, br#"{"error":"Unauthorized"}"#, Encoding::Plain),
            Err(Error::Unauthorized)
        );
        assert_eq!(
            decode_single(502, b"<html>bad gateway</html>", Encoding::Plain),
            Err(Error::Http { status: 502 })
        );
        assert_eq!(
            decode_single(500, br#"{"result":1}"#, Encoding::Plain),
            Err(Error::Http { status: 500 })
        );
        assert!(matches!(
            decode_single(200, b"not json", Encoding::Plain),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_single(200, br#"{"neither":1}"#, Encoding::Plain),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_single(200, br#"[1]"#, Encoding::Plain),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn pipelines_keep_a_failure_in_its_place() {
        let reply = br#"[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":2}]"#;
        let results = decode_many(200, reply, Encoding::Plain, 3).unwrap();
        assert_eq!(results[0], Ok(Value::Bytes(b"OK".to_vec())));
        assert_eq!(
            results[1],
            Err(Error::Server(
                "ERR value is not an integer or out of range".into()
            ))
        );
        assert_eq!(results[2], Ok(Value::Int(2)));
        // The whole call failing (e.g. EXECABORT) is the outer error.
        assert_eq!(
            decode_many(400, br#"{"error":"EXECABORT"}"#, Encoding::Plain, 2),
            Err(Error::Server("EXECABORT".into()))
        );
        assert!(matches!(
            decode_many(200, br#"[{"result":1}]"#, Encoding::Plain, 2),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_many(200, br#"{"result":1}"#, Encoding::Plain, 1),
            Err(Error::Malformed(_))
        ));
        assert_eq!(
            decode_many(401, b"", Encoding::Plain, 1),
            Err(Error::Unauthorized)
        );
        let b64 = decode_many(200, br#"[{"result":"YQ=="}]"#, Encoding::Base64, 1).unwrap();
        assert_eq!(b64, vec![Ok(Value::Bytes(b"a".to_vec()))]);
    }

    #[test]
    fn typed_accessors() {
        assert_eq!(Value::Int(3).as_i64(), Ok(3));
        assert_eq!(Value::Bytes(b"12".to_vec()).as_i64(), Ok(12));
        assert_eq!(Value::Nil.as_count(), Ok(0));
        assert!(Value::Nil.as_i64().is_err());
        assert_eq!(
            Value::Bytes(b"x".to_vec()).as_i64(),
            Err(Error::Unexpected {
                wanted: "an integer",
                got: "a string"
            })
        );
        assert_eq!(Value::Bytes(b"ok".to_vec()).as_str(), Ok("ok"));
        assert!(Value::Bytes(vec![0xFF]).as_str().is_err());
        assert!(Value::Int(1).as_array().is_err());
        assert!(Value::Nil.is_nil());
    }

    /// A transport answering from a script, to test [`Client`] without a network.
    struct Scripted(
        std::cell::RefCell<Vec<(u16, &'static str)>>,
        std::cell::RefCell<Vec<Request>>,
    );

    impl Transport for &Scripted {
        async fn send(&self, request: Request) -> Result<(u16, Vec<u8>), Error> {
            self.1.borrow_mut().push(request);
            let (status, body) = self.0.borrow_mut().remove(0);
            Ok((status, body.as_bytes().to_vec()))
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        // The scripted transport never pends, so one poll finishes it.
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("scripted transport pended"),
        }
    }

    #[test]
    fn client_sends_and_decodes() {
        let scripted = Scripted(
            vec![
                (200, r#"{"result":"YQ=="}"#),
                (200, r#"[{"result":1},{"error":"ERR no"}]"#),
                (400, r#"{"error":"ERR unknown command 'NOPE'"}"#),
            ]
            .into(),
            Vec::new().into(),
        );
        let client = Client::new(&scripted).with_encoding(Encoding::Base64);
        let got = block_on(client.exec(&Command::new("GET").arg("k")));
        assert_eq!(got, Ok(Value::Bytes(b"a".to_vec())));
        let many = block_on(client.multi_exec(&[Command::new("INCR").arg("n"), Command::new("X")]));
        assert_eq!(
            many,
            Ok(vec![Ok(Value::Int(1)), Err(Error::Server("ERR no".into()))])
        );
        let failed = block_on(client.exec(&Command::new("NOPE")));
        assert_eq!(
            failed,
            Err(Error::Server("ERR unknown command 'NOPE'".into()))
        );
        let sent = scripted.1.borrow();
        assert_eq!(sent[0].path, "/");
        assert!(sent[0].base64);
        assert_eq!(sent[1].path, "/multi-exec");
        assert_eq!(body(&sent[1]), r#"[["INCR","n"],["X"]]"#);
    }
}
