//! The Worker side of the SSE ↔ WebSocket bridge (DESIGN §3.7).
//!
//! For each SSE client the Worker opens a WebSocket to the stream's Durable
//! Object, which accepts it with the Hibernation API and may sleep between
//! rounds. The object sends ready-made SSE frames as binary messages; this side
//! forwards those bytes, as the same JS `ArrayBuffer`, into the client's
//! response (a `TransformStream`), so a frame never crosses into wasm memory.
//! This side also writes the `retry:` preamble and the heartbeats, and closes
//! the socket as soon as the client leaves, so the object's socket count stays
//! true.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt, pin_mut, select};
use js_sys::Uint8Array;
use shared::error::ErrorCode;
use shared::{names, sse};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, WritableStreamDefaultWriter};
use worker::{
    Date, Delay, EncodeBody, Env, Headers, Request, RequestInit, Response, WebSocket,
    WebsocketEvent,
};

use crate::auth;
use crate::config::{STREAMS, StreamConfig};
use crate::error::{ApiError, ApiResult};

/// `GET /sse/:game`.
pub(crate) async fn game_stream(req: Request, env: Env, game: &str) -> ApiResult<Response> {
    let slug = names::validate(game)
        .map_err(|e| ApiError::bad_request(format!("invalid game slug: {e}")))?;
    let resume = last_event_id(&req)?;
    let record = auth::authenticate(&req, &env).await?;
    if !record.allows_game(slug, None) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this API key may not read this game",
        ));
    }
    open(&req, &env, &names::game_object(slug), resume).await
}

/// `Last-Event-ID` from the header (browsers) or `?last_event_id=` (the
/// header cannot be set on a first `EventSource` connection). A round id.
fn last_event_id(req: &Request) -> ApiResult<Option<i64>> {
    let from_query = req.url().ok().and_then(|url| {
        url.query_pairs()
            .find(|(name, _)| name == "last_event_id")
            .map(|(_, value)| value.into_owned())
    });
    let from_header = req.headers().get("last-event-id").ok().flatten();
    match from_header.or(from_query) {
        None => Ok(None),
        Some(raw) if raw.is_empty() => Ok(None),
        Some(raw) => raw
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be a round id")),
    }
}

/// Subscribes to `object` and returns the streaming response.
async fn open(req: &Request, env: &Env, object: &str, resume: Option<i64>) -> ApiResult<Response> {
    let config = StreamConfig::from_env(env);
    let stub = env
        .durable_object(STREAMS)?
        .id_from_name(object)?
        .get_stub()?;
    let mut url = String::from("https://stream.internal/subscribe");
    if let Some(id) = resume {
        url.push_str(&format!("?last_event_id={id}"));
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
        .ok_or_else(|| ApiError::unavailable("stream unavailable, retry shortly"))?;
    socket
        .as_ref()
        .set_binary_type(web_sys::BinaryType::Arraybuffer);

    let pipe = web_sys::TransformStream::new().map_err(worker::Error::from)?;
    let writer = pipe.writable().get_writer().map_err(worker::Error::from)?;
    write_bytes(&writer, &sse::retry_frame(config.retry_ms));
    let signal = req.inner().signal();
    wasm_bindgen_futures::spawn_local(pump(socket, writer, signal, config));

    Ok(Response::builder()
        .with_headers(sse_headers()?)
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
    /// The object closed the socket: end the response cleanly so the browser
    /// reconnects and resumes.
    ObjectClosed,
    /// The client went away (abort signal, or its stream was cancelled).
    ClientGone,
    /// The client reads slower than rounds arrive: cut off, it will resume.
    SlowClient,
}

/// Forwards the object's frames to the client until one side leaves.
///
/// Timers live here, in a `spawn_local` task, because a `Delay` created inside
/// a stream that the runtime pulls never wakes.
async fn pump(
    socket: WebSocket,
    writer: WritableStreamDefaultWriter,
    signal: AbortSignal,
    config: StreamConfig,
) {
    // Listeners first, then accept: the object may already have queued the
    // `initial` frame, and it must find someone listening.
    let Ok(events) = socket.events() else {
        let _ = writer.close();
        return;
    };
    if socket.accept().is_err() {
        let _ = writer.close();
        return;
    }
    let mut events = events.fuse();
    let aborted = aborted(&signal).fuse();
    let closed = JsFuture::from(writer.closed()).fuse();
    pin_mut!(aborted, closed);
    let mut tick = heartbeat(config.heartbeat);

    let end = loop {
        select! {
            event = events.next() => match event {
                Some(Ok(WebsocketEvent::Message(message))) => {
                    let data = message.as_ref().data();
                    if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
                        write_chunk(&writer, &Uint8Array::new(buffer));
                    } else if let Some(text) = data.as_string() {
                        write_bytes(&writer, text.as_bytes());
                    }
                    if queued(&writer) > f64::from(config.max_queued_chunks) {
                        break End::SlowClient;
                    }
                }
                Some(Ok(WebsocketEvent::Close(_))) | Some(Err(_)) | None => break End::ObjectClosed,
            },
            _ = tick => {
                write_bytes(&writer, &sse::heartbeat_frame(Date::now().as_millis() / 1000));
                tick = heartbeat(config.heartbeat);
            },
            _ = aborted => break End::ClientGone,
            _ = closed => break End::ClientGone,
        }
    };
    match end {
        End::ObjectClosed => {
            let _ = writer.close();
        }
        End::ClientGone | End::SlowClient => {
            let _ = socket.close(Some(1000), Some("client gone"));
            let _ = writer.abort();
        }
    }
}

fn heartbeat(every: Duration) -> futures_util::future::Fuse<Delay> {
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
