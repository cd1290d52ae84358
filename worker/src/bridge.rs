//! The Worker side of the SSE ↔ WebSocket bridge (DESIGN §3.7).
//!
//! For each SSE client the Worker opens a WebSocket to the Durable Object of
//! each stream it reads; the object accepts it with the Hibernation API and may
//! sleep between rounds. The object sends ready-made SSE frames as binary
//! messages. For a single stream this side forwards those bytes, as the same JS
//! `ArrayBuffer`, into the client's response (a `TransformStream`), so a frame
//! never crosses into wasm memory. For a multiplexed stream it rewrites each
//! `id:` into a cursor over all member streams. This side also writes the
//! `retry:` preamble and the heartbeats, re-checks the API key on a timer, and
//! closes the sockets as soon as the client leaves, so the objects' socket
//! counts stay true.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::join_all;
use js_sys::Uint8Array;
use shared::cursor::{self, Cursor, Position, StreamName};
use shared::sse;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::AbortSignal;
use worker::{Context, Date, EncodeBody, Env, Headers, Request, Response, WebSocket};

use crate::auth::{self, Admitted};
use crate::config::StreamConfig;
use crate::error::{ApiError, ApiResult};
use crate::objects::{JoinRefused, RelayStub, StreamStub, Subscription};

/// `GET /sse/:game` and `GET /sse/type/:type`: one stream, whose `id:` is
/// the round id.
pub(crate) async fn single_stream(
    req: Request,
    env: Env,
    ctx: Context,
    stream: StreamName,
) -> ApiResult<Response> {
    let resume = match last_event_id(&req) {
        None => None,
        Some(raw) => Some(raw.parse::<Position>().map_err(|_| {
            ApiError::bad_request("Last-Event-ID must be an id this stream sent (12 or 12.3)")
        })?),
    };
    let admitted = auth::admit(&req, &env, std::slice::from_ref(&stream)).await?;
    open(&req, &env, ctx, admitted, vec![(stream, resume)], false).await
}

/// `GET /sse?games=a,b&types=x`: several streams on one connection, whose
/// `id:` is a cursor over all of them.
pub(crate) async fn multiplexed_stream(
    req: Request,
    env: Env,
    ctx: Context,
) -> ApiResult<Response> {
    let url = req.url()?;
    let query = |name: &str| {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let members = cursor::parse_members(query("games").as_deref(), query("types").as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let resume = cursor::parse(&last_event_id(&req).unwrap_or_default(), &members)
        .map_err(|e| ApiError::bad_request(format!("Last-Event-ID: {e}")))?;
    let admitted = auth::admit(&req, &env, &members).await?;
    let members = members
        .into_iter()
        .map(|m| {
            let id = resume.get(&m).copied();
            (m, id)
        })
        .collect();
    open(&req, &env, ctx, admitted, members, true).await
}

/// `Last-Event-ID` from the header (browsers, on reconnect) or
/// `?last_event_id=` (the header cannot be set on a first `EventSource`
/// connection); empty counts as absent.
fn last_event_id(req: &Request) -> Option<String> {
    let from_header = req.headers().get("last-event-id").ok().flatten();
    let from_query = req.url().ok().and_then(|url| {
        url.query_pairs()
            .find(|(name, _)| name == "last_event_id")
            .map(|(_, value)| value.into_owned())
    });
    from_header.or(from_query).filter(|id| !id.is_empty())
}

/// How often a subscription placed on a relay is asked for again when the
/// relay turns it away (full, or its ticket went stale while rounds flowed).
const PLACEMENT_ATTEMPTS: usize = 4;

/// One member stream's socket, and what the client must see before the
/// socket's first message (the opening a stream object handed over with a
/// placement on a relay).
struct Member {
    socket: WebSocket,
    opening: Option<Uint8Array>,
}

/// Opens one WebSocket for `stream`: to its object, or to the relay the
/// object places the subscriber on.
async fn subscribe(
    env: &Env,
    stream: &StreamName,
    resume: Option<Position>,
) -> worker::Result<Member> {
    let object = StreamStub::of(env, stream)?;
    let mut full = None;
    for _ in 0..PLACEMENT_ATTEMPTS {
        let (ticket, opening) = match object.subscribe(resume, full).await? {
            Subscription::Direct(socket) => {
                return Ok(Member {
                    socket,
                    opening: None,
                });
            }
            Subscription::Relayed { ticket, backlog } => (ticket, backlog),
        };
        let relay = RelayStub::new(env, object.name(), ticket.relay)?;
        match relay.join(ticket.clone()).await? {
            Ok(socket) => {
                return Ok(Member {
                    socket,
                    opening: Some(opening),
                });
            }
            Err(JoinRefused::Full) => full = Some(ticket.relay),
            Err(JoinRefused::Stale) => full = None,
        }
    }
    Err(worker::Error::RustError(format!(
        "{}: no relay took the subscription",
        object.name()
    )))
}

/// Subscribes to every member and returns the streaming response.
async fn open(
    req: &Request,
    env: &Env,
    ctx: Context,
    admitted: Admitted,
    members: Vec<(StreamName, Option<Position>)>,
    multiplexed: bool,
) -> ApiResult<Response> {
    let config = StreamConfig::from_env(env);
    let results = join_all(
        members
            .iter()
            .map(|(stream, resume)| subscribe(env, stream, *resume)),
    )
    .await;
    let mut sockets = Vec::with_capacity(results.len());
    let mut openings = Vec::with_capacity(results.len());
    let mut failure = None;
    for result in results {
        match result {
            Ok(member) => {
                sockets.push(member.socket);
                openings.push(member.opening);
            }
            Err(err) => failure = Some(err),
        }
    }
    // Until a `Client` owns them, a failure must close the sockets and give
    // the stream's slot back here, or the slot would be refreshed for as
    // long as the isolate lives.
    let prepared = match failure {
        Some(err) => Err(err),
        None => response_body().and_then(|parts| {
            let headers = sse_headers()?;
            if let Some(origin) = &admitted.allow_origin {
                headers.set("access-control-allow-origin", origin)?;
                headers.set("vary", "origin")?;
            }
            Ok((parts, headers))
        }),
    };
    let ((body, out, stream_handlers, on_cancel), headers) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            if let Some(lease) = admitted.lease {
                crate::limits::release(env, lease, &ctx);
            }
            for socket in &sockets {
                let _ = socket.close(Some(1011), Some("subscription incomplete"));
            }
            return Err(err.into());
        }
    };
    enqueue_bytes(&out, &sse::retry_frame(config.retry_ms));
    let cursor = multiplexed.then(|| {
        members
            .iter()
            .filter_map(|(s, id)| id.map(|id| (s.clone(), id)))
            .collect::<Cursor>()
    });
    let client = Rc::new(Client {
        names: members.into_iter().map(|(s, _)| s).collect(),
        sockets,
        out,
        signal: req.inner().signal(),
        config,
        env: env.clone(),
        kv_key: admitted.kv_key,
        lease: RefCell::new(admitted.lease),
        ctx,
        cursor: RefCell::new(cursor),
        ended: Cell::new(false),
        interval: RefCell::new(None),
        last_heartbeat: Cell::new(0.0),
        last_recheck: Cell::new(0.0),
        rechecking: Cell::new(false),
        handlers: RefCell::new(stream_handlers),
    });
    let _ = on_cancel.set(Rc::downgrade(&client));
    if let Err(err) = client.start(openings) {
        // Closes the sockets and gives the slot back.
        client.end(End::ClientGone);
        return Err(err.into());
    }
    Ok(Response::builder()
        .with_headers(headers)
        // Never compressed: compression would hold frames back (DESIGN §3.2).
        .with_encode_body(EncodeBody::Manual)
        .stream(body))
}

fn sse_headers() -> worker::Result<Headers> {
    let headers = Headers::new();
    headers.set("content-type", "text/event-stream")?;
    headers.set("cache-control", "no-cache, no-transform")?;
    headers.set("x-accel-buffering", "no")?;
    Ok(headers)
}

/// Why a client's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// An object closed its socket: end the response cleanly so the browser
    /// reconnects and resumes.
    ObjectClosed,
    /// The key was revoked, expired or deleted: end cleanly; the reconnect
    /// gets a 401.
    KeyRevoked,
    /// The client went away (abort signal, or its stream was cancelled).
    ClientGone,
    /// The client reads slower than rounds arrive: cut off, it will resume.
    SlowClient,
}

type Handler = Closure<dyn FnMut(JsValue)>;

/// The client's response body: a `ReadableStream` fed by `enqueue`, with
/// no writable side and no promise per chunk (a `TransformStream` costs a
/// write promise and a transform step for every chunk). Its `cancel` ends the
/// client once the `Client` exists.
#[allow(clippy::type_complexity)]
fn response_body() -> worker::Result<(
    web_sys::ReadableStream,
    web_sys::ReadableStreamDefaultController,
    Vec<Handler>,
    Rc<std::cell::OnceCell<std::rc::Weak<Client>>>,
)> {
    let controller: Rc<RefCell<Option<web_sys::ReadableStreamDefaultController>>> = Rc::default();
    let slot = Rc::clone(&controller);
    let start = Handler::new(move |c: JsValue| {
        *slot.borrow_mut() = Some(c.unchecked_into());
    });
    let client: Rc<std::cell::OnceCell<std::rc::Weak<Client>>> = Rc::default();
    let target = Rc::clone(&client);
    let cancel = Handler::new(move |_| {
        if let Some(client) = target.get().and_then(std::rc::Weak::upgrade) {
            client.end(End::ClientGone);
        }
    });
    let source = js_sys::Object::new();
    js_sys::Reflect::set(&source, &"start".into(), start.as_ref())?;
    js_sys::Reflect::set(&source, &"cancel".into(), cancel.as_ref())?;
    // Counted in bytes, so `desiredSize` tells how many bytes wait unread.
    let strategy = web_sys::ByteLengthQueuingStrategy::new(&web_sys::QueuingStrategyInit::new(1.0))
        .map_err(worker::Error::from)?;
    let body = web_sys::ReadableStream::new_with_underlying_source_and_strategy(
        &source,
        strategy.unchecked_ref(),
    )
    .map_err(worker::Error::from)?;
    // `start` ran synchronously inside the constructor.
    let out = controller
        .borrow_mut()
        .take()
        .ok_or_else(|| worker::Error::RustError("stream controller missing".into()))?;
    Ok((body, out, vec![start, cancel], client))
}

/// One client's bridge: its sockets to the objects, its response body,
/// and the JS callbacks that move bytes between them.
///
/// Driven by callbacks rather than a polled task: a round reaches the client
/// in one call from JS into wasm (`onmessage`) and one write back, with no
/// channel, waker or timer future per message. Measured with
/// `scripts/bench-edge.sh`; see ARCHITECTURE.md.
struct Client {
    names: Vec<StreamName>,
    sockets: Vec<WebSocket>,
    out: web_sys::ReadableStreamDefaultController,
    signal: AbortSignal,
    config: StreamConfig,
    env: Env,
    kv_key: String,
    /// The stream's slot under its key's `max_streams`, given back at the end.
    lease: RefCell<Option<crate::limits::LeaseHandle>>,
    /// The request's context: Upstash calls made after the response ended
    /// (giving the slot back) run under its `waitUntil`, or the runtime
    /// cancels them with the request.
    ctx: Context,
    /// `Some` for a multiplexed stream: the last id seen per member.
    cursor: RefCell<Option<Cursor>>,
    ended: Cell<bool>,
    interval: RefCell<Option<JsValue>>,
    last_heartbeat: Cell<f64>,
    last_recheck: Cell<f64>,
    rechecking: Cell<bool>,
    /// Kept alive while the client is connected; dropped after it ended.
    handlers: RefCell<Vec<Handler>>,
}

impl Client {
    /// Writes the members' openings, wires the callbacks and accepts the
    /// sockets.
    fn start(self: &Rc<Self>, openings: Vec<Option<Uint8Array>>) -> worker::Result<()> {
        let mut handlers = Vec::new();
        for (index, socket) in self.sockets.iter().enumerate() {
            let client = Rc::clone(self);
            let on_message = Handler::new(move |event: JsValue| {
                let data = event.unchecked_into::<web_sys::MessageEvent>().data();
                client.on_message(index, &data);
            });
            let client = Rc::clone(self);
            let on_close = Handler::new(move |_| client.end(End::ObjectClosed));
            let raw: &web_sys::WebSocket = socket.as_ref();
            raw.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            raw.set_onclose(Some(on_close.as_ref().unchecked_ref()));
            raw.set_onerror(Some(on_close.as_ref().unchecked_ref()));
            handlers.push(on_message);
            handlers.push(on_close);
        }
        // A relay's first message follows the opening its stream object
        // handed over: that goes out first, as if it came on the socket.
        for (index, opening) in openings.into_iter().enumerate() {
            if let Some(opening) = opening.filter(|o| o.length() > 0) {
                self.on_message(index, &opening.buffer());
            }
        }
        // Handlers first, then accept: the objects may already have queued
        // their first frames, and those must find someone listening.
        for socket in &self.sockets {
            socket.accept()?;
        }

        let client = Rc::clone(self);
        let on_gone = Handler::new(move |_| client.end(End::ClientGone));
        self.signal
            .set_onabort(Some(on_gone.as_ref().unchecked_ref()));
        handlers.push(on_gone);

        let client = Rc::clone(self);
        let on_tick = Handler::new(move |_| client.tick());
        let period = self.config.heartbeat.min(self.config.key_recheck);
        *self.interval.borrow_mut() = timers::set_interval(&on_tick, period).ok();
        handlers.push(on_tick);
        let now = Date::now().as_millis() as f64;
        self.last_heartbeat.set(now);
        self.last_recheck.set(now);
        self.handlers.borrow_mut().extend(handlers);
        if self.signal.aborted() {
            self.end(End::ClientGone);
        }
        Ok(())
    }

    /// Writes one message of member `index` to the client.
    fn on_message(&self, index: usize, data: &JsValue) {
        if self.ended.get() {
            return;
        }
        let mut cursor = self.cursor.borrow_mut();
        match cursor.as_mut() {
            // Single stream: the object's bytes go out untouched, as the same
            // ArrayBuffer, never copied into wasm memory.
            None => {
                if let Some(text) = data.as_string() {
                    enqueue_bytes(&self.out, text.as_bytes());
                } else {
                    enqueue(&self.out, &Uint8Array::new(data));
                }
            }
            Some(cursor) => {
                let text = match data.dyn_ref::<js_sys::ArrayBuffer>() {
                    Some(buffer) => {
                        String::from_utf8_lossy(&Uint8Array::new(buffer).to_vec()).into_owned()
                    }
                    None => data.as_string().unwrap_or_default(),
                };
                let Some(member) = self.names.get(index) else {
                    return;
                };
                let rewritten = sse::rewrite_ids(&text, |old| {
                    if let Ok(id) = old.parse::<Position>() {
                        cursor.insert(member.clone(), id);
                    }
                    cursor::format(cursor)
                });
                enqueue_bytes(&self.out, rewritten.as_bytes());
            }
        }
        drop(cursor);
        if queued_bytes(&self.out) > self.config.max_queued_bytes as f64 {
            self.end(End::SlowClient);
        }
    }

    /// Heartbeats, and the periodic re-read of the API key.
    fn tick(self: &Rc<Self>) {
        if self.ended.get() {
            return;
        }
        crate::limits::tick(&self.env, &self.ctx);
        let now = Date::now().as_millis() as f64;
        // A little slack so a timer firing early still counts.
        let due = |last: f64, every: Duration| now - last >= every.as_millis() as f64 - 50.0;
        if due(self.last_heartbeat.get(), self.config.heartbeat) {
            self.last_heartbeat.set(now);
            enqueue_bytes(&self.out, &sse::heartbeat_frame((now / 1000.0) as u64));
        }
        if due(self.last_recheck.get(), self.config.key_recheck) && !self.rechecking.replace(true) {
            self.last_recheck.set(now);
            let client = Rc::clone(self);
            wasm_bindgen_futures::spawn_local(async move {
                let valid = match auth::lookup(&client.env, &client.kv_key).await {
                    Ok(Some(record)) => auth::usable(&record),
                    Ok(None) => false,
                    // KV trouble is not the client's fault: keep serving.
                    Err(_) => true,
                };
                client.rechecking.set(false);
                if !valid {
                    client.end(End::KeyRevoked);
                }
            });
        }
    }

    /// Ends the client's stream once: closes the sockets, ends the response,
    /// and releases the callbacks.
    fn end(&self, end: End) {
        if self.ended.replace(true) {
            return;
        }
        if let Some(id) = self.interval.borrow_mut().take() {
            timers::clear_interval(&id);
        }
        if let Some(lease) = self.lease.borrow_mut().take() {
            crate::limits::release(&self.env, lease, &self.ctx);
        }
        let reason = match end {
            End::ObjectClosed => "stream closed",
            End::KeyRevoked => "API key no longer valid",
            End::ClientGone => "client gone",
            End::SlowClient => "client too slow",
        };
        for socket in &self.sockets {
            let raw: &web_sys::WebSocket = socket.as_ref();
            raw.set_onmessage(None);
            raw.set_onclose(None);
            raw.set_onerror(None);
            let _ = socket.close(Some(1000), Some(reason));
        }
        self.signal.set_onabort(None);
        match end {
            End::ObjectClosed | End::KeyRevoked => {
                let _ = self.out.close();
            }
            End::ClientGone => {}
            End::SlowClient => self.out.error_with_e(&JsValue::from_str("client too slow")),
        }
        // This may run inside one of the handlers: drop them only after it
        // returned. Dropping them also breaks the Rc cycle.
        let handlers = std::mem::take(&mut *self.handlers.borrow_mut());
        wasm_bindgen_futures::spawn_local(async move { drop(handlers) });
    }
}

/// `setInterval`/`clearInterval` of the global scope (web-sys's bindings
/// expect a `Window` or `WorkerGlobalScope`, which workerd's global is not).
mod timers {
    use std::time::Duration;

    use js_sys::{Function, Reflect};
    use wasm_bindgen::{JsCast, JsValue};

    fn global_fn(name: &str) -> Result<Function, JsValue> {
        Reflect::get(&js_sys::global(), &name.into())?.dyn_into::<Function>()
    }

    pub(super) fn set_interval(
        callback: &super::Handler,
        every: Duration,
    ) -> Result<JsValue, JsValue> {
        global_fn("setInterval")?.call2(
            &JsValue::UNDEFINED,
            callback.as_ref(),
            &JsValue::from(every.as_millis() as f64),
        )
    }

    pub(super) fn clear_interval(id: &JsValue) {
        if let Ok(clear) = global_fn("clearInterval") {
            let _ = clear.call1(&JsValue::UNDEFINED, id);
        }
    }
}

/// How many bytes wait unread in the client's body.
fn queued_bytes(out: &web_sys::ReadableStreamDefaultController) -> f64 {
    // desiredSize = highWaterMark (1 byte) − queued bytes; null once errored.
    out.desired_size().map_or(0.0, |size| 1.0 - size)
}

/// Queues a chunk; fails only once the stream was closed or errored, which
/// the `Client` already knows about.
fn enqueue(out: &web_sys::ReadableStreamDefaultController, chunk: &Uint8Array) {
    let _ = out.enqueue_with_chunk(chunk);
}

fn enqueue_bytes(out: &web_sys::ReadableStreamDefaultController, bytes: &[u8]) {
    enqueue(out, &Uint8Array::from(bytes));
}
