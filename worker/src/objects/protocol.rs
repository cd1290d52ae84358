//! How the Worker and its Durable Objects speak to the stream objects and
//! their relays: object names, one request enum per object kind, parsed once
//! in the object, and typed stubs that build those requests. Nothing else
//! spells an object's path or query.
//!
//! The wire form stays HTTP (a Durable Object's `fetch`), because the
//! subscriptions are WebSocket upgrades and because every call must be
//! readable in a log; the enums keep both ends of it in one file.

use js_sys::Uint8Array;
use shared::cursor::{Position, StreamName};
use shared::{IngestReply, RoundEvent};
use wasm_bindgen::JsCast;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Stub, WebSocket};

use crate::config::{RELAYS, STREAMS};

/// Name of a game's stream object. Prefixed so that a game and a type with
/// the same spelling (a game `dice` of type `dice`) never share an object.
pub(crate) fn game_object(slug: &str) -> String {
    format!("game:{slug}")
}

/// Name of a game type's stream object.
pub(crate) fn type_object(game_type: &str) -> String {
    format!("type:{game_type}")
}

/// Name of a stream's object.
pub(crate) fn stream_object(stream: &StreamName) -> String {
    match stream {
        StreamName::Game(slug) => game_object(slug),
        StreamName::Type(t) => type_object(t),
    }
}

/// Name of the `index`-th relay of the stream object `stream` (DESIGN §3.7b).
pub(crate) fn relay_object(stream: &str, index: u32) -> String {
    format!("relay:{stream}:{index}")
}

/// The header naming the object a call is for: an object is not told its
/// own name by the runtime, and needs it to name its relays and to answer.
const OBJECT: &str = "x-object";

/// A call's answer when it could not be read: status and reason.
pub(crate) type Refusal = (u16, String);

/// Where a feed socket starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeedResume {
    /// From now on: the first message holds no frames.
    Live,
    /// Everything stored: the stream had no round when last heard of.
    Start,
    /// Everything after this position (or a reset and the latest round
    /// when the stream no longer holds it).
    At(Position),
}

/// The head of every message a stream object sends on a socket: the
/// message's number in the stream (one counter for every socket and relay),
/// the stream's position once the message is read (`None`: no round yet),
/// and the length of the `initial` frame a client joining right after this
/// message would get (`None` when the message does not end its batch). Then
/// come that `initial` frame and the message's SSE frames, forwarded to
/// clients as they are. Four little-endian `f64`s (numbers and ids are exact
/// below 2^53; NaN for none) so JS can read them as easily as Rust.
///
/// Why the `initial` frame rides along: a new client without
/// `Last-Event-ID` then joins its isolate's feed without asking the object
/// for its opening, so a crowd (re)connecting costs the object nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageHead {
    pub(crate) number: u64,
    pub(crate) position: Option<Position>,
    pub(crate) initial: Option<u32>,
}

impl MessageHead {
    pub(crate) const LEN: usize = 32;

    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let round = self.position.map_or(f64::NAN, |p| p.round as f64);
        let update = self
            .position
            .and_then(|p| p.update)
            .map_or(f64::NAN, |u| u as f64);
        let initial = self.initial.map_or(f64::NAN, f64::from);
        out[..8].copy_from_slice(&(self.number as f64).to_le_bytes());
        out[8..16].copy_from_slice(&round.to_le_bytes());
        out[16..24].copy_from_slice(&update.to_le_bytes());
        out[24..].copy_from_slice(&initial.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; Self::LEN]) -> Option<Self> {
        let read = |i: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i..i + 8]);
            f64::from_le_bytes(word)
        };
        let exact = |v: f64| {
            (v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_991.0)
                .then_some(v as i64)
        };
        let number = exact(read(0)).and_then(|n| u64::try_from(n).ok())?;
        let position = exact(read(8)).map(|round| Position {
            round,
            update: exact(read(16)),
        });
        let initial = match read(24) {
            v if v.is_nan() => None,
            v => Some(exact(v).and_then(|n| u32::try_from(n).ok())?),
        };
        Some(Self {
            number,
            position,
            initial,
        })
    }

    /// The whole message: this head, the `initial` frame, the frames.
    pub(crate) fn message(
        number: u64,
        position: Option<Position>,
        initial: Option<&[u8]>,
        frames: &[u8],
    ) -> Vec<u8> {
        let head = Self {
            number,
            position,
            initial: initial.map(|i| i.len() as u32),
        };
        let initial = initial.unwrap_or_default();
        let mut out = Vec::with_capacity(Self::LEN + initial.len() + frames.len());
        out.extend_from_slice(&head.encode());
        out.extend_from_slice(initial);
        out.extend_from_slice(frames);
        out
    }
}

fn url(path: &str, query: &[(&str, String)]) -> String {
    let mut url = format!("https://object.internal{path}");
    for (i, (name, value)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(name);
        url.push('=');
        url.push_str(value);
    }
    url
}

fn query(req: &Request) -> worker::Result<Vec<(String, String)>> {
    Ok(req.url()?.query_pairs().into_owned().collect())
}

fn param<T: std::str::FromStr>(
    pairs: &[(String, String)],
    name: &str,
) -> Result<Option<T>, Refusal> {
    match pairs.iter().find(|(key, _)| key == name) {
        None => Ok(None),
        Some((_, raw)) => raw
            .parse()
            .map(Some)
            .map_err(|_| (400, format!("bad {name}"))),
    }
}

fn required<T: std::str::FromStr>(pairs: &[(String, String)], name: &str) -> Result<T, Refusal> {
    param(pairs, name)?.ok_or_else(|| (400, format!("{name} missing")))
}

fn object_name(req: &Request) -> Result<String, Refusal> {
    req.headers()
        .get(OBJECT)
        .ok()
        .flatten()
        .ok_or_else(|| (400, "object name missing".to_string()))
}

fn request(
    object: &str,
    method: Method,
    url: &str,
    body: Option<wasm_bindgen::JsValue>,
    upgrade: bool,
) -> worker::Result<Request> {
    let headers = Headers::new();
    headers.set(OBJECT, object)?;
    if upgrade {
        headers.set("upgrade", "websocket")?;
    }
    let mut init = RequestInit::new();
    init.with_method(method)
        .with_headers(headers)
        .with_body(body);
    Request::new_with_init(url, &init)
}

/// A call to a stream object (`game:<slug>`, `type:<type>`).
#[derive(Debug)]
pub(crate) enum StreamCall {
    /// Open a feed socket (a WebSocket upgrade) for an isolate's clients of
    /// the stream: every message from now on, after a first one holding
    /// what `resume` asks for. `full`: a relay that turned the last
    /// placement away for being full.
    Subscribe {
        resume: FeedResume,
        full: Option<u32>,
    },
    /// What a client must see first (see `StreamObject::opening`), and the
    /// number of the last message it already covers.
    Opening { resume: Option<Position> },
    /// The newest round's JSON; 404 when none is stored.
    Latest,
    /// Up to `limit` rounds with ids below `before`, newest first.
    Rounds { limit: u32, before: i64 },
    /// Socket counts (the object's own and each relay's) and stored rounds.
    Stats,
    /// Close every subscriber socket, relays' included.
    Disconnect,
    /// Store a batch of ingest's events (JSON body).
    Store(Vec<RoundEvent>),
    /// A relay has no socket left.
    RelayIdle { relay: u32 },
}

impl StreamCall {
    /// Reads a call; a request that is none is refused with its reason.
    pub(crate) async fn parse(req: &mut Request) -> Result<(String, Self), Refusal> {
        let object = object_name(req)?;
        let pairs = query(req).map_err(|e| (400, e.to_string()))?;
        let call = match (req.method(), req.path().as_str()) {
            (Method::Get, "/subscribe") => Self::Subscribe {
                resume: match (
                    param(&pairs, "last_event_id")?,
                    param::<String>(&pairs, "from")?,
                ) {
                    (Some(position), _) => FeedResume::At(position),
                    (None, Some(from)) if from == "start" => FeedResume::Start,
                    (None, Some(_)) => return Err((400, "bad from".into())),
                    (None, None) => FeedResume::Live,
                },
                full: param(&pairs, "full")?,
            },
            (Method::Get, "/opening") => Self::Opening {
                resume: param(&pairs, "last_event_id")?,
            },
            (Method::Get, "/latest") => Self::Latest,
            (Method::Get, "/rounds") => Self::Rounds {
                limit: required(&pairs, "limit")?,
                before: required(&pairs, "before")?,
            },
            (Method::Get, "/stats") => Self::Stats,
            (Method::Post, "/disconnect") => Self::Disconnect,
            (Method::Post, "/store") => Self::Store(
                req.json()
                    .await
                    .map_err(|e| (400, format!("bad events: {e}")))?,
            ),
            (Method::Post, "/relay-idle") => Self::RelayIdle {
                relay: required(&pairs, "relay")?,
            },
            _ => return Err((404, "no such call".into())),
        };
        Ok((object, call))
    }

    fn to_request(&self, object: &str) -> worker::Result<Request> {
        let (method, url, body, upgrade) = match self {
            Self::Subscribe { resume, full } => {
                let mut query = Vec::new();
                match resume {
                    FeedResume::Live => {}
                    FeedResume::Start => query.push(("from", "start".to_string())),
                    FeedResume::At(id) => query.push(("last_event_id", id.to_string())),
                }
                if let Some(relay) = full {
                    query.push(("full", relay.to_string()));
                }
                (Method::Get, url("/subscribe", &query), None, true)
            }
            Self::Opening { resume } => {
                let mut query = Vec::new();
                if let Some(id) = resume {
                    query.push(("last_event_id", id.to_string()));
                }
                (Method::Get, url("/opening", &query), None, false)
            }
            Self::Latest => (Method::Get, url("/latest", &[]), None, false),
            Self::Rounds { limit, before } => (
                Method::Get,
                url(
                    "/rounds",
                    &[("limit", limit.to_string()), ("before", before.to_string())],
                ),
                None,
                false,
            ),
            Self::Stats => (Method::Get, url("/stats", &[]), None, false),
            Self::Disconnect => (Method::Post, url("/disconnect", &[]), None, false),
            Self::Store(events) => {
                let body = serde_json::to_string(events)
                    .map_err(|e| worker::Error::RustError(e.to_string()))?;
                (Method::Post, url("/store", &[]), Some(body.into()), false)
            }
            Self::RelayIdle { relay } => (
                Method::Post,
                url("/relay-idle", &[("relay", relay.to_string())]),
                None,
                false,
            ),
        };
        request(object, method, &url, body, upgrade)
    }
}

/// Where a subscriber was placed.
pub(crate) enum Subscription {
    /// On the stream object itself.
    Direct(WebSocket),
    /// On a relay: the feed must join it with this ticket, and gets its
    /// first message (numbered `ticket.after`, with its head) from here
    /// rather than from the relay.
    Relayed { ticket: Ticket, first: Uint8Array },
}

/// A placement on a relay, as the stream object issued it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ticket {
    /// The relay's index (its name is [`relay_object`]).
    pub(crate) relay: u32,
    /// The last push the subscriber's backlog already holds: the relay sends
    /// it the pushes after this one.
    pub(crate) after: u64,
    /// When the ticket was issued (ms since the epoch): relays refuse old
    /// tickets, so the stream object can forget a relay safely.
    pub(crate) issued: f64,
}

/// An opening for a client: its frames, and the number of the last message
/// they already cover.
pub(crate) struct Opening {
    pub(crate) after: u64,
    pub(crate) frames: Uint8Array,
}

const TICKET_RELAY: &str = "x-relay";
const TICKET_AFTER: &str = "x-after";
const TICKET_ISSUED: &str = "x-issued";

impl Ticket {
    /// The answer to a subscription placed on a relay: the ticket in headers,
    /// the feed's first message as the body.
    pub(crate) fn into_response(self, first: Vec<u8>) -> worker::Result<Response> {
        let headers = Headers::new();
        headers.set(TICKET_RELAY, &self.relay.to_string())?;
        headers.set(TICKET_AFTER, &self.after.to_string())?;
        headers.set(TICKET_ISSUED, &self.issued.to_string())?;
        Ok(Response::builder()
            .with_status(200)
            .with_headers(headers)
            .fixed(first))
    }

    fn from_headers(headers: &Headers) -> Option<Self> {
        let get = |name: &str| headers.get(name).ok().flatten();
        Some(Self {
            relay: get(TICKET_RELAY)?.parse().ok()?,
            after: get(TICKET_AFTER)?.parse().ok()?,
            issued: get(TICKET_ISSUED)?.parse().ok()?,
        })
    }
}

fn must_be_ok(response: &Response, what: &str) -> worker::Result<()> {
    match response.status_code() {
        200 => Ok(()),
        status => Err(worker::Error::RustError(format!(
            "{what}: object answered {status}"
        ))),
    }
}

/// A stream object, addressed by name.
pub(crate) struct StreamStub {
    name: String,
    stub: Stub,
}

impl StreamStub {
    pub(crate) fn new(env: &Env, name: String) -> worker::Result<Self> {
        let stub = env
            .durable_object(STREAMS)?
            .id_from_name(&name)?
            .get_stub()?;
        Ok(Self { name, stub })
    }

    pub(crate) fn of(env: &Env, stream: &StreamName) -> worker::Result<Self> {
        Self::new(env, stream_object(stream))
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    async fn call(&self, call: &StreamCall) -> worker::Result<Response> {
        self.stub
            .fetch_with_request(call.to_request(&self.name)?)
            .await
    }

    /// The newest round's JSON, if any round is stored.
    pub(crate) async fn latest(&self) -> worker::Result<Option<Vec<u8>>> {
        let mut response = self.call(&StreamCall::Latest).await?;
        if response.status_code() == 404 {
            return Ok(None);
        }
        must_be_ok(&response, "latest")?;
        Ok(Some(response.bytes().await?))
    }

    /// A JSON array of up to `limit` rounds before `before`, newest first.
    pub(crate) async fn rounds(&self, limit: u32, before: i64) -> worker::Result<Vec<u8>> {
        let mut response = self.call(&StreamCall::Rounds { limit, before }).await?;
        must_be_ok(&response, "rounds")?;
        response.bytes().await
    }

    /// The stats document (JSON) of the stream.
    pub(crate) async fn stats(&self) -> worker::Result<Vec<u8>> {
        let mut response = self.call(&StreamCall::Stats).await?;
        must_be_ok(&response, "stats")?;
        response.bytes().await
    }

    /// Ends every subscriber's stream; answers `{"closed": n}`.
    pub(crate) async fn disconnect(&self) -> worker::Result<Vec<u8>> {
        let mut response = self.call(&StreamCall::Disconnect).await?;
        must_be_ok(&response, "disconnect")?;
        response.bytes().await
    }

    /// Stores a batch; answers once it is durably stored.
    pub(crate) async fn store(&self, events: Vec<RoundEvent>) -> worker::Result<IngestReply> {
        let mut response = self.call(&StreamCall::Store(events)).await?;
        must_be_ok(&response, "store")?;
        response.json().await
    }

    /// Tells the stream that one of its relays has no socket left.
    pub(crate) async fn relay_idle(&self, relay: u32) -> worker::Result<()> {
        let response = self.call(&StreamCall::RelayIdle { relay }).await?;
        must_be_ok(&response, "relay-idle")
    }

    /// What a client must see first, resuming after `resume`.
    pub(crate) async fn opening(&self, resume: Option<Position>) -> worker::Result<Opening> {
        let response = self.call(&StreamCall::Opening { resume }).await?;
        must_be_ok(&response, "opening")?;
        let after = response
            .headers()
            .get(TICKET_AFTER)
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                worker::Error::RustError(format!("{}: opening without a number", self.name))
            })?;
        Ok(Opening {
            after,
            frames: array_buffer(response).await?,
        })
    }

    /// Places a feed socket: on the stream object, or on one of its relays.
    pub(crate) async fn subscribe(
        &self,
        resume: FeedResume,
        full: Option<u32>,
    ) -> worker::Result<Subscription> {
        let response = self.call(&StreamCall::Subscribe { resume, full }).await?;
        if response.status_code() == 101 {
            return upgraded(response, &self.name).map(Subscription::Direct);
        }
        must_be_ok(&response, "subscribe")?;
        let ticket = Ticket::from_headers(response.headers()).ok_or_else(|| {
            worker::Error::RustError(format!("{}: subscription without a ticket", self.name))
        })?;
        let first = array_buffer(response).await?;
        Ok(Subscription::Relayed { ticket, first })
    }
}

/// The socket of an upgrade's answer.
fn upgraded(response: Response, object: &str) -> worker::Result<WebSocket> {
    let socket = response
        .websocket()
        .ok_or_else(|| worker::Error::RustError(format!("{object}: upgrade without a socket")))?;
    socket
        .as_ref()
        .set_binary_type(web_sys::BinaryType::Arraybuffer);
    Ok(socket)
}

/// A response body as a JS byte array, without a copy into wasm memory.
async fn array_buffer(response: Response) -> worker::Result<Uint8Array> {
    let raw: web_sys::Response = response.into();
    let promise = raw.array_buffer().map_err(worker::Error::from)?;
    let buffer = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(worker::Error::from)?;
    Ok(Uint8Array::new(&buffer))
}

/// A request body as a JS `ArrayBuffer`, without a copy into wasm memory.
pub(crate) async fn body_buffer(req: &Request) -> worker::Result<js_sys::ArrayBuffer> {
    let promise = req.inner().array_buffer().map_err(worker::Error::from)?;
    let buffer = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(worker::Error::from)?;
    buffer
        .dyn_into::<js_sys::ArrayBuffer>()
        .map_err(|_| worker::Error::RustError("body is not bytes".into()))
}

/// An opening's answer: its frames, and in a header the number of the last
/// message they cover.
pub(crate) fn opening_response(after: u64, frames: Vec<u8>) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set(TICKET_AFTER, &after.to_string())?;
    Ok(Response::builder()
        .with_status(200)
        .with_headers(headers)
        .fixed(frames))
}

/// A call to a relay (`relay:<stream>:<n>`).
#[derive(Debug)]
pub(crate) enum RelayCall {
    /// Open a subscriber socket (a WebSocket upgrade) with a ticket of the
    /// stream object.
    Join(Ticket),
    /// One message of frames for every socket; `prev`: the push the stream
    /// object last delivered to this relay, when it knows.
    Push { number: u64, prev: Option<u64> },
    /// The relay's socket count.
    Stats,
    /// Close every socket.
    Disconnect,
    /// The stream forgot this relay: drop what is kept in memory.
    Stop,
}

/// Why a relay turned a subscriber away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// At capacity: ask the stream object for another placement.
    Full,
    /// The ticket is too old, or the relay no longer holds every push after
    /// it: ask again.
    Stale,
}

impl RelayCall {
    /// Reads a call (the body of a push is read by the relay itself).
    pub(crate) fn parse(req: &Request) -> Result<(String, Self), Refusal> {
        let object = object_name(req)?;
        let pairs = query(req).map_err(|e| (400, e.to_string()))?;
        let call = match (req.method(), req.path().as_str()) {
            (Method::Get, "/join") => Self::Join(Ticket {
                relay: required(&pairs, "relay")?,
                after: required(&pairs, "after")?,
                issued: required(&pairs, "issued")?,
            }),
            (Method::Post, "/push") => Self::Push {
                number: required(&pairs, "number")?,
                prev: param(&pairs, "prev")?,
            },
            (Method::Get, "/stats") => Self::Stats,
            (Method::Post, "/disconnect") => Self::Disconnect,
            (Method::Post, "/stop") => Self::Stop,
            _ => return Err((404, "no such call".into())),
        };
        Ok((object, call))
    }

    fn to_request(
        &self,
        object: &str,
        body: Option<wasm_bindgen::JsValue>,
    ) -> worker::Result<Request> {
        match self {
            Self::Join(ticket) => request(
                object,
                Method::Get,
                &url(
                    "/join",
                    &[
                        ("relay", ticket.relay.to_string()),
                        ("after", ticket.after.to_string()),
                        ("issued", ticket.issued.to_string()),
                    ],
                ),
                None,
                true,
            ),
            Self::Push { number, prev } => {
                let mut query = vec![("number", number.to_string())];
                if let Some(prev) = prev {
                    query.push(("prev", prev.to_string()));
                }
                request(object, Method::Post, &url("/push", &query), body, false)
            }
            Self::Stats => request(object, Method::Get, &url("/stats", &[]), None, false),
            Self::Disconnect => {
                request(object, Method::Post, &url("/disconnect", &[]), None, false)
            }
            Self::Stop => request(object, Method::Post, &url("/stop", &[]), None, false),
        }
    }
}

/// Status of a join refused because the relay is full.
pub(crate) const FULL: u16 = 507;
/// Status of a join refused because its ticket is stale.
pub(crate) const STALE: u16 = 409;

/// The answer of a relay: its socket count, and which instance answered
/// (random per construction: it changes when the relay slept and was rebuilt).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RelayCount {
    pub(crate) sockets: u64,
    pub(crate) instance: String,
}

/// How long a call to a relay may take (see [`RelayStub::call`]). A push is
/// one small request between objects: milliseconds when all is well.
const RELAY_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A relay, addressed by its stream's name and its index.
pub(crate) struct RelayStub {
    name: String,
    stub: Stub,
}

impl RelayStub {
    pub(crate) fn new(env: &Env, stream: &str, index: u32) -> worker::Result<Self> {
        let name = relay_object(stream, index);
        let stub = env
            .durable_object(RELAYS)?
            .id_from_name(&name)?
            .get_stub()?;
        Ok(Self { name, stub })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// One call, given up after [`RELAY_CALL_TIMEOUT`]: the stream object
    /// answers a batch only after its pushes reached every relay, so a relay
    /// that stopped answering would otherwise hold up the stream's batches
    /// (and ingest behind them) for good.
    async fn call(
        &self,
        call: &RelayCall,
        body: Option<wasm_bindgen::JsValue>,
    ) -> worker::Result<Response> {
        let fetch = self
            .stub
            .fetch_with_request(call.to_request(&self.name, body)?);
        crate::deadline::within(RELAY_CALL_TIMEOUT, fetch)
            .await
            .unwrap_or_else(|| {
                Err(worker::Error::RustError(format!(
                    "{}: no answer within {} s",
                    self.name,
                    RELAY_CALL_TIMEOUT.as_secs()
                )))
            })
    }

    async fn count(
        &self,
        call: &RelayCall,
        body: Option<wasm_bindgen::JsValue>,
    ) -> worker::Result<RelayCount> {
        let mut response = self.call(call, body).await?;
        must_be_ok(&response, &self.name)?;
        response.json::<RelayCount>().await
    }

    /// Joins the relay with a ticket.
    pub(crate) async fn join(
        &self,
        ticket: Ticket,
    ) -> worker::Result<Result<WebSocket, JoinRefused>> {
        let response = self.call(&RelayCall::Join(ticket), None).await?;
        match response.status_code() {
            101 => upgraded(response, &self.name).map(Ok),
            FULL => Ok(Err(JoinRefused::Full)),
            STALE => Ok(Err(JoinRefused::Stale)),
            status => Err(worker::Error::RustError(format!(
                "{}: join answered {status}",
                self.name
            ))),
        }
    }

    /// Sends one message to the relay's sockets; answers its socket count.
    pub(crate) async fn push(
        &self,
        number: u64,
        prev: Option<u64>,
        message: &js_sys::ArrayBuffer,
    ) -> worker::Result<u64> {
        let count = self
            .count(&RelayCall::Push { number, prev }, Some(message.into()))
            .await?;
        Ok(count.sockets)
    }

    pub(crate) async fn stats(&self) -> worker::Result<RelayCount> {
        self.count(&RelayCall::Stats, None).await
    }

    /// Closes every socket of the relay; answers how many it closed.
    pub(crate) async fn disconnect(&self) -> worker::Result<u64> {
        Ok(self.count(&RelayCall::Disconnect, None).await?.sockets)
    }

    pub(crate) async fn stop(&self) -> worker::Result<()> {
        let response = self.call(&RelayCall::Stop, None).await?;
        must_be_ok(&response, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_do_not_collide() {
        assert_ne!(game_object("dice"), type_object("dice"));
        assert_eq!(relay_object("game:crash", 3), "relay:game:crash:3");
        assert_ne!(relay_object("game:crash", 1), game_object("crash"));
    }

    #[test]
    fn message_heads_round_trip() {
        for position in [
            None,
            Some(Position::round(12)),
            Some(Position {
                round: 12,
                update: Some(3),
            }),
            Some(Position::round(-5)),
            Some(Position::round((1 << 53) - 1)),
        ] {
            for initial in [None, Some(0), Some(77)] {
                let head = MessageHead {
                    number: 41,
                    position,
                    initial,
                };
                assert_eq!(MessageHead::decode(&head.encode()), Some(head));
            }
        }
        let mut junk = [0xffu8; MessageHead::LEN];
        assert_eq!(MessageHead::decode(&junk), None, "NaN number");
        junk[..8].copy_from_slice(&(-1f64).to_le_bytes());
        assert_eq!(MessageHead::decode(&junk), None, "negative number");
        junk[..8].copy_from_slice(&1f64.to_le_bytes());
        junk[24..].copy_from_slice(&(-3f64).to_le_bytes());
        assert_eq!(MessageHead::decode(&junk), None, "negative initial length");
        let message = MessageHead::message(5, None, Some(b"ini"), b"frames");
        assert_eq!(&message[MessageHead::LEN..], b"iniframes");
    }

    #[test]
    fn urls_carry_their_query_in_order() {
        assert_eq!(
            url("/rounds", &[("limit", "5".into()), ("before", "9".into())]),
            "https://object.internal/rounds?limit=5&before=9"
        );
        assert_eq!(url("/stats", &[]), "https://object.internal/stats");
    }
}
