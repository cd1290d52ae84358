//! A client's SSE stream: its response body, its place in the feeds of its
//! member streams, and the JS callbacks that drive it: the `retry:`
//! preamble, heartbeats, the periodic re-check of the API key, the cut-off
//! of a client that reads too slowly, and the end of the stream when the
//! client leaves, so the feeds and the key's limits learn of it at once.
//!
//! For a single stream the frames of the stream object go into the
//! client's response as they are (views of the same JS buffer, never
//! copied into wasm memory); for a multiplexed stream each `id:` is
//! rewritten into a cursor over all member streams.

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
use worker::{Context, EncodeBody, Env, Headers, Request, Response};

use crate::access::admission::Admitted;
use crate::access::{keys, limits};
use crate::clients::feed::{self, Feed, Sink};
use crate::config::StreamConfig;
use crate::error::ApiResult;
use crate::fanout::message::Start;
use crate::platform::{now_ms, timers};

/// Opens a client's stream of `members` (each with where it starts):
/// joins a feed of each and returns the streaming response.
pub(crate) async fn open(
    req: &Request,
    env: &Env,
    ctx: Context,
    admitted: Admitted,
    members: Vec<(StreamName, Start)>,
    multiplexed: bool,
) -> ApiResult<Response> {
    let config = crate::config::get(env).stream;
    let prepared = response_body().and_then(|parts| {
        let headers = sse_headers()?;
        if let Some(origin) = &admitted.allow_origin {
            headers.set("access-control-allow-origin", origin)?;
            headers.set("vary", "origin")?;
        }
        Ok((parts, headers))
    });
    let ((body, out, stream_handlers, on_cancel), headers) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            // Until a `Client` owns it, the stream's slot is given back
            // here, or it would be refreshed for as long as the isolate
            // lives.
            if let Some(lease) = admitted.lease {
                limits::release(env, lease, &ctx);
            }
            return Err(err.into());
        }
    };
    let retry_ms = if config.retry_jitter {
        sse::jittered_retry_ms(config.retry_ms, js_sys::Math::random())
    } else {
        config.retry_ms
    };
    enqueue_bytes(&out, &sse::retry_frame(retry_ms));
    let cursor = multiplexed.then(|| {
        members
            .iter()
            .filter_map(|(s, start)| match start {
                Start::After(id) => Some((s.clone(), *id)),
                Start::Latest | Start::Rewind(_) => None,
            })
            .collect::<Cursor>()
    });
    let starts: Vec<Start> = members.iter().map(|(_, start)| *start).collect();
    let client = Rc::new(Client {
        id: crate::isolate::get::<ClientIds>().next(),
        names: members.into_iter().map(|(s, _)| s).collect(),
        feeds: RefCell::default(),
        out,
        signal: req.inner().signal(),
        config,
        env: env.clone(),
        kv_key: admitted.kv_key,
        expires_ms: admitted.expires_ms.map(|ms| ms as f64),
        lease: RefCell::new(admitted.lease),
        ctx,
        cursor: RefCell::new(cursor),
        ended: Cell::new(false),
        interval: RefCell::new(None),
        last_heartbeat: Cell::new(0.0),
        last_tick: Cell::new(0.0),
        last_recheck: Cell::new(0.0),
        rechecking: Cell::new(false),
        silenced: Cell::new(false),
        wake: RefCell::new(None),
        handlers: RefCell::new(stream_handlers),
    });
    let _ = on_cancel.set(Rc::downgrade(&client));
    if let Err(err) = client.start() {
        // Gives the slot back.
        client.end(End::ClientGone);
        return Err(err.into());
    }
    let sink: Rc<dyn Sink> = client.clone();
    let joined = join_all(
        client
            .names
            .iter()
            .zip(starts)
            .enumerate()
            .map(|(index, (stream, start))| feed::join(&sink, index, stream, start)),
    )
    .await;
    for result in joined {
        match result {
            Ok(_) => {}
            Err(err) => {
                client.end(End::ClientGone);
                return Err(err.into());
            }
        }
    }
    if client.has_ended() {
        // Gone while joining: nothing joined stays behind.
        client.detach_feeds();
    }
    Ok(Response::builder()
        .with_headers(headers)
        // Never compressed: compression would hold frames back.
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
    /// Its slot under the key's `max_streams` lapsed and the key is full:
    /// end cleanly; the reconnect gets the key's 429.
    SlotLost,
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

/// The isolate's next client id (see `crate::isolate`); 0 means none.
#[derive(Default)]
pub(crate) struct ClientIds(Cell<u64>);

impl ClientIds {
    fn next(&self) -> u64 {
        let id = self.0.get() + 1;
        self.0.set(id);
        id
    }
}

/// One client's stream: its response body, its place in the feeds of its
/// member streams, and the JS callbacks that drive it.
///
/// Driven by callbacks rather than a polled task: a round reaches the client
/// as one call from its feed and one `enqueue`, with no channel, waker or
/// timer future per message (measured with `scripts/bench-edge.sh`).
pub(crate) struct Client {
    id: u64,
    names: Vec<StreamName>,
    /// The feed of each member stream, once joined.
    feeds: RefCell<Vec<Rc<Feed>>>,
    out: web_sys::ReadableStreamDefaultController,
    signal: AbortSignal,
    config: StreamConfig,
    env: Env,
    kv_key: String,
    /// When the browser token it was opened with expires (ms): the stream
    /// ends at the first key re-check after it, so a token handed to a page
    /// does not hold a slot of its key for good.
    expires_ms: Option<f64>,
    /// The stream's slot under its key's `max_streams`, given back at the end.
    lease: RefCell<Option<limits::LeaseHandle>>,
    /// The request's context: Upstash calls made after the response ended
    /// (giving the slot back) run under its `waitUntil`, or the runtime
    /// cancels them with the request.
    ctx: Context,
    /// `Some` for a multiplexed stream: the last id seen per member.
    cursor: RefCell<Option<Cursor>>,
    ended: Cell<bool>,
    interval: RefCell<Option<JsValue>>,
    last_heartbeat: Cell<f64>,
    /// When the timer last ran (feeds watch their keeper's).
    last_tick: Cell<f64>,
    last_recheck: Cell<f64>,
    rechecking: Cell<bool>,
    /// Fault injection: behaves as if the runtime killed its request (its
    /// timer no longer does anything; see `feed::silence_owners`).
    silenced: Cell<bool>,
    /// Resolves this client's wake promise: another request asks it to take
    /// over a feed's socket (see `feed`).
    wake: RefCell<Option<js_sys::Function>>,
    /// Kept alive while the client is connected; dropped after it ended.
    handlers: RefCell<Vec<Handler>>,
}

impl Client {
    /// Wires the abort signal, the timer and the wake promise.
    fn start(self: &Rc<Self>) -> worker::Result<()> {
        let mut handlers = Vec::new();
        let client = Rc::clone(self);
        let on_gone = Handler::new(move |_| client.end(End::ClientGone));
        self.signal
            .set_onabort(Some(on_gone.as_ref().unchecked_ref()));
        handlers.push(on_gone);

        // The timer also keeps this request alive for the runtime while
        // frames reach its body from another request's socket.
        let client = Rc::clone(self);
        let on_tick = Handler::new(move |_| client.tick());
        let period = self.tick_period();
        *self.interval.borrow_mut() = timers::set_interval(&on_tick, period).ok();
        handlers.push(on_tick);
        let now = now_ms();
        self.last_heartbeat.set(now);
        self.last_tick.set(now);
        self.last_recheck.set(now);
        self.handlers.borrow_mut().extend(handlers);
        self.arm_wake();
        if self.signal.aborted() {
            self.end(End::ClientGone);
        }
        Ok(())
    }

    /// A promise made in this client's request: whoever resolves it, its
    /// continuation runs here, so the I/O it starts belongs to this request.
    fn arm_wake(self: &Rc<Self>) {
        let slot = &self.wake;
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            *slot.borrow_mut() = Some(resolve);
        });
        let client = Rc::clone(self);
        let on_wake = Handler::new(move |_| client.on_wake());
        let _ = promise.then(&on_wake);
        self.handlers.borrow_mut().push(on_wake);
    }

    fn on_wake(self: &Rc<Self>) {
        if self.ended.get() {
            return;
        }
        self.arm_wake();
        let heir_of: Vec<Rc<Feed>> = self
            .feeds
            .borrow()
            .iter()
            .filter(|f| f.is_heir(self.id))
            .cloned()
            .collect();
        for feed in heir_of {
            let sink: Rc<dyn Sink> = self.clone();
            wasm_bindgen_futures::spawn_local(feed.take_over(sink));
        }
    }

    /// Writes one message of member `index` to the client.
    fn write(&self, index: usize, frames: &Uint8Array) {
        if self.ended.get() || frames.length() == 0 {
            return;
        }
        let mut cursor = self.cursor.borrow_mut();
        match cursor.as_mut() {
            // Single stream: the object's bytes go out untouched, as a view
            // of the same JS buffer, never copied into wasm memory.
            None => enqueue(&self.out, frames),
            Some(cursor) => {
                let text = String::from_utf8_lossy(&frames.to_vec()).into_owned();
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
        if self.ended.get() || self.silenced.get() {
            return;
        }
        limits::tick(&self.env, &self.ctx);
        if self.lease.borrow().as_ref().is_some_and(limits::lost) {
            self.end(End::SlotLost);
            return;
        }
        let now = now_ms();
        self.last_tick.set(now);
        // Three ticks without one from a feed's keeper: it is gone.
        let stale_after = 3.0 * self.tick_period().as_millis() as f64;
        let feeds = self.feeds.borrow().clone();
        let sink: Rc<dyn Sink> = self.clone();
        for feed in feeds {
            feed.watch(&sink, now, stale_after);
        }
        // A little slack so a timer firing early still counts.
        let due = |last: f64, every: Duration| now - last >= every.as_millis() as f64 - 50.0;
        if due(self.last_heartbeat.get(), self.config.heartbeat) {
            self.last_heartbeat.set(now);
            enqueue_bytes(&self.out, &sse::heartbeat_frame((now / 1000.0) as u64));
        }
        if due(self.last_recheck.get(), self.config.key_recheck) && !self.rechecking.replace(true) {
            self.last_recheck.set(now);
            if self.expires_ms.is_some_and(|expires| now >= expires) {
                self.end(End::KeyRevoked);
                return;
            }
            let client = Rc::clone(self);
            wasm_bindgen_futures::spawn_local(async move {
                let valid = match keys::lookup(&client.env, &client.kv_key).await {
                    Ok(Some(record)) => keys::usable(&record),
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

    fn tick_period(&self) -> Duration {
        self.config.heartbeat.min(self.config.key_recheck)
    }

    /// Leaves every feed joined (handing over their sockets if held).
    fn detach_feeds(&self) {
        let feeds = std::mem::take(&mut *self.feeds.borrow_mut());
        for feed in feeds {
            feed.detach(self.id);
        }
    }

    /// Ends the client's stream once: leaves its feeds, ends the response,
    /// and releases the callbacks.
    fn end(&self, end: End) {
        if self.ended.replace(true) {
            return;
        }
        if let Some(id) = self.interval.borrow_mut().take() {
            timers::clear_interval(&id);
        }
        if let Some(lease) = self.lease.borrow_mut().take() {
            limits::release(&self.env, lease, &self.ctx);
        }
        self.detach_feeds();
        self.wake.borrow_mut().take();
        self.signal.set_onabort(None);
        match end {
            End::ObjectClosed | End::KeyRevoked | End::SlotLost => {
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

impl Sink for Client {
    fn id(&self) -> u64 {
        self.id
    }

    fn env(&self) -> &Env {
        &self.env
    }

    fn deliver(&self, index: usize, frames: &Uint8Array) {
        self.write(index, frames);
    }

    fn resume_elsewhere(&self) {
        self.end(End::ObjectClosed);
    }

    fn wake(&self) {
        if let Some(resolve) = self.wake.borrow_mut().take() {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    }

    fn last_tick(&self) -> f64 {
        self.last_tick.get()
    }

    fn has_ended(&self) -> bool {
        self.ended.get()
    }

    fn silence(&self) {
        self.silenced.set(true);
    }

    fn joined(&self, feed: Rc<Feed>) {
        self.feeds.borrow_mut().push(feed);
    }

    fn multiplexed(&self) -> bool {
        self.cursor.borrow().is_some()
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
