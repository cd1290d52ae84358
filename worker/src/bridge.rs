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

use std::pin::Pin;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::select_all;
use futures_util::{FutureExt, Stream, StreamExt, pin_mut, select};
use js_sys::Uint8Array;
use shared::cursor::{self, Cursor, StreamName};
use shared::sse;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, WritableStreamDefaultWriter};
use worker::{
    Date, Delay, EncodeBody, Env, Headers, Request, RequestInit, Response, WebSocket,
    WebsocketEvent,
};

use crate::auth::{self, Admitted};
use crate::config::{STREAMS, StreamConfig};
use crate::error::{ApiError, ApiResult};

/// `GET /sse/:game` and `GET /sse/type/:type`: one stream, whose `id:` is
/// the round id.
pub(crate) async fn single_stream(
    req: Request,
    env: Env,
    stream: StreamName,
) -> ApiResult<Response> {
    let resume = match last_event_id(&req) {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| ApiError::bad_request("Last-Event-ID must be a round id"))?,
        ),
    };
    let admitted = auth::admit(&req, &env, std::slice::from_ref(&stream)).await?;
    open(&req, &env, admitted, vec![(stream, resume)], false).await
}

/// `GET /sse?games=a,b&types=x`: several streams on one connection, whose
/// `id:` is a cursor over all of them.
pub(crate) async fn multiplexed_stream(req: Request, env: Env) -> ApiResult<Response> {
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
    open(&req, &env, admitted, members, true).await
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

/// Opens one WebSocket to the object of `stream`.
async fn subscribe(
    env: &Env,
    stream: &StreamName,
    resume: Option<i64>,
) -> worker::Result<WebSocket> {
    let object = stream.object_name();
    let stub = env
        .durable_object(STREAMS)?
        .id_from_name(&object)?
        .get_stub()?;
    let mut url = format!("https://stream.internal/subscribe?stream={object}");
    if let Some(id) = resume {
        url.push_str(&format!("&last_event_id={id}"));
    }
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    let mut init = RequestInit::new();
    init.with_headers(headers);
    let upgrade = stub
        .fetch_with_request(Request::new_with_init(&url, &init)?)
        .await?;
    let socket = upgrade
        .websocket()
        .ok_or_else(|| worker::Error::RustError(format!("{object} refused the subscription")))?;
    socket
        .as_ref()
        .set_binary_type(web_sys::BinaryType::Arraybuffer);
    Ok(socket)
}

/// Subscribes to every member and returns the streaming response.
async fn open(
    req: &Request,
    env: &Env,
    admitted: Admitted,
    members: Vec<(StreamName, Option<i64>)>,
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
    let mut failure = None;
    for result in results {
        match result {
            Ok(socket) => sockets.push(socket),
            Err(err) => failure = Some(err),
        }
    }
    if let Some(err) = failure {
        for socket in &sockets {
            let _ = socket.close(Some(1011), Some("subscription incomplete"));
        }
        return Err(err.into());
    }

    let pipe = web_sys::TransformStream::new().map_err(worker::Error::from)?;
    let writer = pipe.writable().get_writer().map_err(worker::Error::from)?;
    write_bytes(&writer, &sse::retry_frame(config.retry_ms));
    let cursor = multiplexed.then(|| {
        members
            .iter()
            .filter_map(|(s, id)| id.map(|id| (s.clone(), id)))
            .collect::<Cursor>()
    });
    let pump = Pump {
        names: members.into_iter().map(|(s, _)| s).collect(),
        sockets,
        writer,
        signal: req.inner().signal(),
        config,
        env: env.clone(),
        kv_key: admitted.kv_key,
        cursor,
    };
    wasm_bindgen_futures::spawn_local(pump.run());

    let headers = sse_headers()?;
    if let Some(origin) = &admitted.allow_origin {
        headers.set("access-control-allow-origin", origin)?;
        headers.set("vary", "origin")?;
    }
    Ok(Response::builder()
        .with_headers(headers)
        // Never compressed: compression would hold frames back (DESIGN §3.2).
        .with_encode_body(EncodeBody::Manual)
        .stream(pipe.readable()))
}

fn sse_headers() -> worker::Result<Headers> {
    let headers = Headers::new();
    headers.set("content-type", "text/event-stream")?;
    headers.set("cache-control", "no-cache, no-transform")?;
    headers.set("x-accel-buffering", "no")?;
    Ok(headers)
}

/// Why a client's pump ended.
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

/// Everything one client's forwarding task owns.
struct Pump {
    names: Vec<StreamName>,
    sockets: Vec<WebSocket>,
    writer: WritableStreamDefaultWriter,
    signal: AbortSignal,
    config: StreamConfig,
    env: Env,
    kv_key: String,
    /// `Some` for a multiplexed stream: the last id seen per member.
    cursor: Option<Cursor>,
}

type Events<'a> = Pin<Box<dyn Stream<Item = (usize, worker::Result<WebsocketEvent>)> + 'a>>;

impl Pump {
    /// Forwards the objects' frames to the client until one side leaves.
    ///
    /// Timers live here, in a `spawn_local` task, because a `Delay` created
    /// inside a stream that the runtime pulls never wakes.
    async fn run(mut self) {
        let sockets = std::mem::take(&mut self.sockets);
        // Listeners first, then accept: the objects may already have queued
        // their first frames, and those must find someone listening.
        let mut streams: Vec<Events<'_>> = Vec::with_capacity(sockets.len());
        for (index, socket) in sockets.iter().enumerate() {
            match socket.events() {
                Ok(events) => streams.push(Box::pin(events.map(move |e| (index, e)))),
                Err(_) => return self.finish(&sockets, End::ObjectClosed),
            }
        }
        if sockets.iter().any(|s| s.accept().is_err()) {
            return self.finish(&sockets, End::ObjectClosed);
        }
        let mut events = select_all(streams).fuse();
        let aborted = aborted(&self.signal).fuse();
        let closed = JsFuture::from(self.writer.closed()).fuse();
        pin_mut!(aborted, closed);
        let mut heartbeat = delay(self.config.heartbeat);
        let mut recheck = delay(self.config.key_recheck);

        let end = loop {
            select! {
                event = events.next() => match event {
                    Some((index, Ok(WebsocketEvent::Message(message)))) => {
                        self.forward(index, &message.as_ref().data());
                        if queued(&self.writer) > f64::from(self.config.max_queued_chunks) {
                            break End::SlowClient;
                        }
                    }
                    Some((_, Ok(WebsocketEvent::Close(_)))) | Some((_, Err(_))) | None => {
                        break End::ObjectClosed;
                    }
                },
                _ = heartbeat => {
                    write_bytes(&self.writer, &sse::heartbeat_frame(Date::now().as_millis() / 1000));
                    heartbeat = delay(self.config.heartbeat);
                },
                _ = recheck => {
                    if !self.key_still_valid().await {
                        break End::KeyRevoked;
                    }
                    recheck = delay(self.config.key_recheck);
                },
                _ = aborted => break End::ClientGone,
                _ = closed => break End::ClientGone,
            }
        };
        drop(events);
        self.finish(&sockets, end);
    }

    /// Writes one message of member `index` to the client.
    fn forward(&mut self, index: usize, data: &JsValue) {
        let Some(cursor) = self.cursor.as_mut() else {
            // Single stream: the object's bytes go out untouched.
            if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                write_chunk(&self.writer, &Uint8Array::new(buffer));
            } else if let Some(text) = data.as_string() {
                write_bytes(&self.writer, text.as_bytes());
            }
            return;
        };
        let text = match data.dyn_ref::<js_sys::ArrayBuffer>() {
            Some(buffer) => String::from_utf8_lossy(&Uint8Array::new(buffer).to_vec()).into_owned(),
            None => data.as_string().unwrap_or_default(),
        };
        let Some(member) = self.names.get(index) else {
            return;
        };
        let rewritten = sse::rewrite_ids(&text, |old| {
            if let Ok(id) = old.parse::<i64>() {
                cursor.insert(member.clone(), id);
            }
            cursor::format(cursor)
        });
        write_bytes(&self.writer, rewritten.as_bytes());
    }

    /// Re-reads the key: a revoked, expired or deleted key ends the stream.
    async fn key_still_valid(&self) -> bool {
        match auth::lookup(&self.env, &self.kv_key).await {
            Ok(Some(record)) => auth::usable(&record),
            Ok(None) => false,
            // KV trouble is not the client's fault: keep serving.
            Err(_) => true,
        }
    }

    fn finish(&self, sockets: &[WebSocket], end: End) {
        let reason = match end {
            End::ObjectClosed => "stream closed",
            End::KeyRevoked => "API key no longer valid",
            End::ClientGone => "client gone",
            End::SlowClient => "client too slow",
        };
        for socket in sockets {
            let _ = socket.close(Some(1000), Some(reason));
        }
        match end {
            End::ObjectClosed | End::KeyRevoked => {
                let _ = self.writer.close();
            }
            End::ClientGone | End::SlowClient => {
                let _ = self.writer.abort();
            }
        }
    }
}

fn delay(every: Duration) -> futures_util::future::Fuse<Delay> {
    Delay::from(every).fuse()
}

/// Resolves when the request's abort signal fires (needs the
/// `enable_request_signal` compatibility flag; without it a gone client is
/// only noticed when a write fails).
fn aborted(signal: &AbortSignal) -> JsFuture {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        if signal.aborted() {
            let _ = resolve.call0(&JsValue::NULL);
        } else {
            signal.set_onabort(Some(&resolve));
        }
    });
    JsFuture::from(promise)
}

/// How many chunks wait in the client's pipe.
fn queued(writer: &WritableStreamDefaultWriter) -> f64 {
    // desiredSize = highWaterMark − queued; null once the stream is closed.
    writer
        .desired_size()
        .ok()
        .flatten()
        .map_or(0.0, |size| 1.0 - size)
}

fn write_chunk(writer: &WritableStreamDefaultWriter, chunk: &Uint8Array) {
    // The promise is not awaited: back-pressure is handled by `queued`, and a
    // failed write surfaces through `writer.closed()`.
    let _ = writer.write_with_chunk(chunk);
}

fn write_bytes(writer: &WritableStreamDefaultWriter, bytes: &[u8]) {
    write_chunk(writer, &Uint8Array::from(bytes));
}
