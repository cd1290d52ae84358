//! The protocol of `objects::protocol` carried over the runtime: typed
//! stubs that send calls and read replies (callers), and the readers and
//! replies the objects use (callees). Every failure is an
//! [`crate::error::Error`] of a kind: a call the runtime could not carry or
//! an object that failed (`Unavailable`), one that took too long
//! (`Timeout`), one refused as no call (`Refused`), a reply that could not
//! be read (`Protocol`).

use std::time::Duration;

use js_sys::Uint8Array;
use shared::cursor::StreamName;
use shared::{IngestReply, RoundEvent};
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    Env, Headers, Method, Request, RequestInit, Response, Stub, WebSocket, WebSocketIncomingMessage,
};

use crate::config::{DIRECTORY, RELAYS, STREAMS};
use crate::error::{Error, Kind, Result};
use crate::metrics::exposition::StreamFigures;
use crate::objects::protocol::{
    self, Closed, DirectoryCall, FailedOpen, FeedResume, GameEntry, JoinRefused, JoinReply,
    OBJECT_HEADER, OpeningHead, PlacementHead, Refusal, RelayCall, RelayCount, SocketNote, Start,
    StreamCall, Ticket, Verb, Viewers, Wire,
};
use crate::platform::deadline::within;

/// How long a call to a relay may take (see [`RelayStub::call`]). A push is
/// one small request between objects: milliseconds when all is well.
const RELAY_CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn request(object: &str, wire: &Wire, body: Option<JsValue>) -> Result<Request> {
    let headers = Headers::new();
    headers.set(OBJECT_HEADER, object)?;
    if wire.upgrade {
        headers.set("upgrade", "websocket")?;
    }
    let mut init = RequestInit::new();
    init.with_method(match wire.verb {
        Verb::Get => Method::Get,
        Verb::Post => Method::Post,
    })
    .with_headers(headers)
    .with_body(body);
    Ok(Request::new_with_init(
        &format!("https://object.internal{}", wire.target),
        &init,
    )?)
}

/// A call as an object receives it: the object's name (from the header),
/// the method and the target.
pub(crate) struct Incoming {
    /// The object's own name.
    pub(crate) object: String,
    /// The method.
    pub(crate) verb: Verb,
    /// Path and query.
    pub(crate) target: String,
}

/// Reads a call's envelope; a request no stub sent is refused.
pub(crate) fn incoming(req: &Request) -> std::result::Result<Incoming, Refusal> {
    let object = req
        .headers()
        .get(OBJECT_HEADER)
        .ok()
        .flatten()
        .ok_or_else(|| Refusal::bad("object name missing"))?;
    let verb = match req.method() {
        Method::Get => Verb::Get,
        Method::Post => Verb::Post,
        _ => return Err(Refusal::unknown()),
    };
    let url = req.url().map_err(|_| Refusal::bad("bad url"))?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    Ok(Incoming {
        object,
        verb,
        target,
    })
}

/// Reads a call: its envelope, its body (for `Post`s, when `with_body`),
/// then `decode`. The object's name comes with it.
pub(crate) async fn read_call<T>(
    req: &mut Request,
    with_body: bool,
    decode: impl FnOnce(Verb, &str, &[u8]) -> std::result::Result<T, Refusal>,
) -> std::result::Result<(String, T), Refusal> {
    let envelope = incoming(req)?;
    let body = if with_body && envelope.verb == Verb::Post {
        req.bytes()
            .await
            .map_err(|e| Refusal::bad(format!("unreadable body: {e}")))?
    } else {
        Vec::new()
    };
    let call = decode(envelope.verb, &envelope.target, &body)?;
    Ok((envelope.object, call))
}

/// The answer to a request that is no call.
pub(crate) fn refusal(refusal: Refusal) -> worker::Result<Response> {
    Response::error(refusal.reason, refusal.status)
}

/// A reply of bytes: `head`, then `rest`.
fn bytes_reply(head: &[u8], rest: &[u8]) -> worker::Result<Response> {
    let mut body = Vec::with_capacity(head.len() + rest.len());
    body.extend_from_slice(head);
    body.extend_from_slice(rest);
    Ok(Response::builder().with_status(200).fixed(body))
}

/// The answer to a subscription placed on a relay.
pub(crate) fn placement_reply(ticket: &Ticket, first: &[u8]) -> worker::Result<Response> {
    bytes_reply(&PlacementHead::encode(ticket), first)
}

/// The answer to an opening: the last message it covers, and its frames.
pub(crate) fn opening_reply(after: u64, frames: &[u8]) -> worker::Result<Response> {
    bytes_reply(&OpeningHead::encode(after), frames)
}

/// The answer to a join the relay refuses.
pub(crate) fn join_refused(refused: JoinRefused) -> worker::Result<Response> {
    Response::from_json(&JoinReply { refused })
}

/// A 200, or the error its status tells: a 5xx is an object that failed
/// (thrown or restarting), anything else a call it refused.
fn answered(response: &Response, what: &str) -> Result<()> {
    match response.status_code() {
        200 => Ok(()),
        status @ 500.. => Err(Error::new(
            Kind::Unavailable,
            format!("{what}: object answered {status}"),
        )),
        status => Err(Error::refused(format!("{what}: object answered {status}"))),
    }
}

async fn json<T: serde::de::DeserializeOwned>(mut response: Response, what: &str) -> Result<T> {
    answered(&response, what)?;
    let bytes = response.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::protocol(format!("{what}: {e}")))
}

async fn bytes(mut response: Response, what: &str) -> Result<Vec<u8>> {
    answered(&response, what)?;
    Ok(response.bytes().await?)
}

/// The socket of an upgrade's answer.
fn upgraded(response: Response, what: &str) -> Result<WebSocket> {
    let socket = response
        .websocket()
        .ok_or_else(|| Error::protocol(format!("{what}: upgrade without a socket")))?;
    socket
        .as_ref()
        .set_binary_type(web_sys::BinaryType::Arraybuffer);
    Ok(socket)
}

/// A response body as a JS byte array, without a copy into wasm memory.
async fn array_buffer(response: Response) -> Result<Uint8Array> {
    let raw: web_sys::Response = response.into();
    let promise = raw.array_buffer().map_err(worker::Error::from)?;
    let buffer = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(worker::Error::from)?;
    Ok(Uint8Array::new(&buffer))
}

/// A body's first `len` bytes, copied into wasm memory, and a view of the
/// rest, which stays a JS buffer.
fn split(body: &Uint8Array, len: usize) -> Option<(Vec<u8>, Uint8Array)> {
    let len = u32::try_from(len).ok()?;
    (body.length() >= len).then(|| {
        (
            body.subarray(0, len).to_vec(),
            body.subarray(len, body.length()),
        )
    })
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

/// Where a subscriber was placed.
pub(crate) enum Subscription {
    /// On the stream object itself.
    Direct(WebSocket),
    /// On a relay: the feed must join it with this ticket, and gets its
    /// first message (numbered `ticket.after`, with its head) from here
    /// rather than from the relay.
    Relayed {
        /// The placement.
        ticket: Ticket,
        /// The feed's first message.
        first: Uint8Array,
    },
}

/// An opening for a client: its frames, and the number of the last message
/// they already cover.
pub(crate) struct Opening {
    /// The last message covered.
    pub(crate) after: u64,
    /// The frames (a JS buffer).
    pub(crate) frames: Uint8Array,
}

/// A stream object, addressed by name.
pub(crate) struct StreamStub {
    name: String,
    stub: Stub,
}

impl StreamStub {
    /// The stream object named `name`.
    pub(crate) fn new(env: &Env, name: String) -> Result<Self> {
        let stub = env
            .durable_object(STREAMS)?
            .id_from_name(&name)?
            .get_stub()?;
        Ok(Self { name, stub })
    }

    /// The object of `stream`.
    pub(crate) fn of(env: &Env, stream: &StreamName) -> Result<Self> {
        Self::new(env, protocol::stream_object(stream))
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    async fn call(&self, call: &StreamCall) -> Result<Response> {
        let body = match call.body() {
            Some(body) => Some(JsValue::from(Uint8Array::from(body?.as_slice()))),
            None => None,
        };
        let req = request(&self.name, &call.encode(), body)?;
        Ok(self.stub.fetch_with_request(req).await?)
    }

    /// The newest round's JSON, if any round is stored.
    pub(crate) async fn latest(&self) -> Result<Option<Vec<u8>>> {
        let body = bytes(self.call(&StreamCall::Latest).await?, "latest").await?;
        Ok((body != b"null").then_some(body))
    }

    /// A JSON array of up to `limit` rounds before `before`, newest first.
    pub(crate) async fn rounds(&self, limit: u32, before: i64) -> Result<Vec<u8>> {
        let call = StreamCall::Rounds { limit, before };
        bytes(self.call(&call).await?, "rounds").await
    }

    /// The stats document (JSON) of the stream.
    pub(crate) async fn stats(&self) -> Result<Vec<u8>> {
        bytes(self.call(&StreamCall::Stats).await?, "stats").await
    }

    /// Ends every subscriber's stream; answers how many.
    pub(crate) async fn disconnect(&self) -> Result<Closed> {
        json(self.call(&StreamCall::Disconnect).await?, "disconnect").await
    }

    /// Stores a batch; answers once it is durably stored.
    pub(crate) async fn store(&self, events: Vec<RoundEvent>) -> Result<IngestReply> {
        json(self.call(&StreamCall::Store(events)).await?, "store").await
    }

    /// Tells the stream that one of its relays has no socket left.
    pub(crate) async fn relay_idle(&self, relay: u32) -> Result<()> {
        let call = StreamCall::RelayIdle { relay };
        bytes(self.call(&call).await?, "relay-idle").await.map(drop)
    }

    /// The stream's viewers, across every isolate and relay.
    pub(crate) async fn viewers(&self) -> Result<u64> {
        let answer: Viewers = json(self.call(&StreamCall::Viewers).await?, "viewers").await?;
        Ok(answer.viewers)
    }

    /// The stream's figures per minute (JSON, `metrics::series::Series`).
    pub(crate) async fn series(&self, minutes: u32) -> Result<Vec<u8>> {
        bytes(self.call(&StreamCall::Series { minutes }).await?, "series").await
    }

    /// What a scrape reads of the stream; its relays are not called.
    pub(crate) async fn figures(&self) -> Result<StreamFigures> {
        json(self.call(&StreamCall::Figures).await?, "figures").await
    }

    /// Tells the stream how many clients a relay's sockets serve.
    pub(crate) async fn relay_viewers(&self, relay: u32, viewers: u64) -> Result<()> {
        let call = StreamCall::RelayViewers { relay, viewers };
        bytes(self.call(&call).await?, "relay-viewers")
            .await
            .map(drop)
    }

    /// What a client must see first, starting at `start`.
    pub(crate) async fn opening(&self, start: Start) -> Result<Opening> {
        let response = self.call(&StreamCall::Opening { start }).await?;
        answered(&response, "opening")?;
        let body = array_buffer(response).await?;
        let (head, frames) = split(&body, OpeningHead::LEN)
            .ok_or_else(|| Error::protocol(format!("{}: opening too short", self.name)))?;
        let after = OpeningHead::decode(&head)
            .ok_or_else(|| Error::protocol(format!("{}: opening without a number", self.name)))?;
        Ok(Opening { after, frames })
    }

    /// Places a feed socket: on the stream object, or on one of its relays.
    pub(crate) async fn subscribe(
        &self,
        resume: FeedResume,
        full: Option<u32>,
    ) -> Result<Subscription> {
        let response = self.call(&StreamCall::Subscribe { resume, full }).await?;
        if response.status_code() == 101 {
            return upgraded(response, &self.name).map(Subscription::Direct);
        }
        answered(&response, "subscribe")?;
        let body = array_buffer(response).await?;
        let ticket = split(&body, PlacementHead::LEN)
            .and_then(|(head, first)| Some((PlacementHead::decode(&head)?, first)));
        let (ticket, first) = ticket.ok_or_else(|| {
            Error::protocol(format!("{}: subscription without a ticket", self.name))
        })?;
        Ok(Subscription::Relayed { ticket, first })
    }
}

/// A relay, addressed by its stream's name and its index.
pub(crate) struct RelayStub {
    name: String,
    stub: Stub,
}

impl RelayStub {
    /// The `index`-th relay of the stream object `stream`.
    pub(crate) fn new(env: &Env, stream: &str, index: u32) -> Result<Self> {
        let name = protocol::relay_object(stream, index);
        let stub = env
            .durable_object(RELAYS)?
            .id_from_name(&name)?
            .get_stub()?;
        Ok(Self { name, stub })
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// One call, given up after [`RELAY_CALL_TIMEOUT`]: the stream object
    /// answers a batch only after its pushes reached every relay, so a relay
    /// that stopped answering would otherwise hold up the stream's batches
    /// (and ingest behind them) for good.
    async fn call(&self, call: &RelayCall, body: Option<JsValue>) -> Result<Response> {
        let fetch = self
            .stub
            .fetch_with_request(request(&self.name, &call.encode(), body)?);
        match within(RELAY_CALL_TIMEOUT, fetch).await {
            Some(response) => Ok(response?),
            None => Err(Error::timeout(format!(
                "{}: no answer within {} s",
                self.name,
                RELAY_CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn count(&self, call: &RelayCall, body: Option<JsValue>) -> Result<RelayCount> {
        json(self.call(call, body).await?, &self.name).await
    }

    /// Joins the relay with a ticket.
    pub(crate) async fn join(
        &self,
        ticket: Ticket,
    ) -> Result<std::result::Result<WebSocket, JoinRefused>> {
        let response = self.call(&RelayCall::Join(ticket), None).await?;
        if response.status_code() == 101 {
            return upgraded(response, &self.name).map(Ok);
        }
        let reply: JoinReply = json(response, &self.name).await?;
        Ok(Err(reply.refused))
    }

    /// Sends one message to the relay's sockets; answers its socket count.
    pub(crate) async fn push(
        &self,
        number: u64,
        prev: Option<u64>,
        message: &js_sys::ArrayBuffer,
    ) -> Result<u64> {
        let call = RelayCall::Push { number, prev };
        Ok(self.count(&call, Some(message.into())).await?.sockets)
    }

    /// The relay's socket count and instance.
    pub(crate) async fn stats(&self) -> Result<RelayCount> {
        self.count(&RelayCall::Stats, None).await
    }

    /// Closes every socket of the relay; answers how many it closed.
    pub(crate) async fn disconnect(&self) -> Result<u64> {
        Ok(self.count(&RelayCall::Disconnect, None).await?.sockets)
    }

    /// Tells the relay the stream's viewers, for its sockets.
    pub(crate) async fn viewers(&self, viewers: u64) -> Result<()> {
        self.count(&RelayCall::Viewers(viewers), None)
            .await
            .map(drop)
    }

    /// Tells the relay it was forgotten when the stream's last message was
    /// `after`.
    pub(crate) async fn stop(&self, after: u64) -> Result<()> {
        self.count(&RelayCall::Stop { after }, None).await.map(drop)
    }
}

/// The directory.
pub(crate) struct DirectoryStub {
    stub: Stub,
}

impl DirectoryStub {
    /// The one directory.
    pub(crate) fn new(env: &Env) -> Result<Self> {
        let stub = env
            .durable_object(DIRECTORY)?
            .get_by_name(protocol::DIRECTORY)?;
        Ok(Self { stub })
    }

    async fn call(&self, call: &DirectoryCall) -> Result<Response> {
        let body = match call.body() {
            Some(body) => Some(JsValue::from(Uint8Array::from(body?.as_slice()))),
            None => None,
        };
        let req = request(protocol::DIRECTORY, &call.encode(), body)?;
        Ok(self.stub.fetch_with_request(req).await?)
    }

    /// Every known game.
    pub(crate) async fn games(&self) -> Result<Vec<GameEntry>> {
        json(self.call(&DirectoryCall::Games).await?, "directory").await
    }

    /// Records games.
    pub(crate) async fn upsert(&self, entries: Vec<GameEntry>) -> Result<()> {
        let call = DirectoryCall::Upsert(entries);
        bytes(self.call(&call).await?, "directory").await.map(drop)
    }

    /// Adds an isolate's fail-open admissions to the total.
    pub(crate) async fn add_failed_open(&self, count: u64) -> Result<()> {
        let call = DirectoryCall::AddFailedOpen(count);
        bytes(self.call(&call).await?, "directory").await.map(drop)
    }

    /// Fail-open admissions over all isolates.
    pub(crate) async fn failed_open(&self) -> Result<u64> {
        let answer: FailedOpen =
            json(self.call(&DirectoryCall::FailedOpen).await?, "directory").await?;
        Ok(answer.failed_open)
    }

    /// Fault injection on or off.
    pub(crate) async fn fault(&self, on: bool) -> Result<()> {
        let call = DirectoryCall::Fault(on);
        bytes(self.call(&call).await?, "directory").await.map(drop)
    }
}

/// A subscriber socket's text message: when it is a feed's
/// [`SocketNote::Members`], the count is kept in the socket's hibernation
/// attachment and `true` is answered (the audience may have changed).
/// Anything else is ignored, which keeps a misbehaving peer harmless.
pub(crate) fn note_members(
    ws: &WebSocket,
    message: WebSocketIncomingMessage,
) -> worker::Result<bool> {
    if let WebSocketIncomingMessage::String(text) = message
        && let Some(SocketNote::Members(members)) = SocketNote::decode(&text)
    {
        ws.serialize_attachment(members)?;
        return Ok(true);
    }
    Ok(false)
}

/// The clients the feeds on `sockets` said they serve (a socket closing
/// was set to 0).
pub(crate) fn members_served(sockets: &[WebSocket]) -> u64 {
    let each = sockets.iter().map(|ws| {
        ws.deserialize_attachment::<u64>()
            .ok()
            .flatten()
            .unwrap_or(0)
    });
    crate::fanout::viewers::total(each, [])
}
