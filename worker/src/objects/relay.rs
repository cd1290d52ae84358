//! A relay (`relay:<stream>:<n>`, DESIGN §3.7b): a Durable Object that holds
//! up to `RELAY_CAPACITY` subscriber sockets of one stream and sends them the
//! stream object's pushes. It stores nothing and decides nothing: the stream
//! object stores the rounds, numbers its pushes and hands every subscriber
//! its backlog; the relay only fans out.
//!
//! Sockets are accepted through the Hibernation API and the relay keeps no
//! per-client state or timer, so it sleeps between rounds. In memory it keeps
//! the last few pushes (lost when it sleeps, which is fine): a subscriber
//! whose ticket was issued just before pushes it has not seen gets them on
//! joining, and one whose pushes are gone is told to ask again.

// The `#[durable_object]` macro generates undocumented public glue.
#![allow(missing_docs)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use worker::{
    Date, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, durable_object,
};

use crate::config::relay_capacity;
use crate::objects::{self, FULL, RelayCall, RelayCount, STALE, StreamStub, Ticket};

/// Tag of the subscriber sockets (each also carries the relay's name).
const SUBSCRIBER: &str = "sse";

/// A ticket older than this is refused: the stream object forgets an idle
/// relay only after twice this long without placing anyone on it.
pub(crate) const TICKET_TTL_MS: f64 = 5_000.0;

/// Pushes kept for subscribers still joining: at most this many…
const RING_PUSHES: usize = 256;
/// …and none older than this.
const RING_MS: f64 = 10_000.0;

#[durable_object]
pub struct RelayObject {
    state: State,
    env: Env,
    /// The latest pushes, oldest first: number, arrival (ms), message.
    ring: RefCell<VecDeque<(u64, f64, js_sys::ArrayBuffer)>>,
    /// The oldest push from which on `ring` holds every one.
    first: Cell<Option<u64>>,
    /// The last push received.
    last: Cell<Option<u64>>,
    /// Random per construction (see [`RelayCount`]).
    instance: String,
    /// Fault injection for tests (`ALLOW_FAULTS`, and
    /// `FAULT_RELAY_PUSH=hang`): pushes are never answered.
    hang_pushes: bool,
}

impl DurableObject for RelayObject {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            ring: RefCell::default(),
            first: Cell::new(None),
            last: Cell::new(None),
            instance: format!("{:016x}", (js_sys::Math::random() * 2f64.powi(53)) as u64),
            hang_pushes: crate::config::fault(&env, "FAULT_RELAY_PUSH", "hang"),
            env,
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let (name, call) = match RelayCall::parse(&req) {
            Ok(parsed) => parsed,
            Err((status, reason)) => return Response::error(reason, status),
        };
        match call {
            RelayCall::Join(ticket) => self.join(&name, &ticket),
            RelayCall::Push { number, prev } => {
                if self.hang_pushes {
                    // Fault injection: a relay that stops answering.
                    futures_util::future::pending::<()>().await;
                }
                let message = objects::body_buffer(&req).await?;
                self.push(number, prev, &message);
                self.count()
            }
            RelayCall::Stats => self.count(),
            RelayCall::Disconnect => {
                let sockets = self.sockets();
                for socket in &sockets {
                    let _ = socket.close(Some(1012), Some("stream restarting"));
                }
                Response::from_json(&RelayCount {
                    sockets: sockets.len() as u64,
                    instance: self.instance.clone(),
                })
            }
            RelayCall::Stop => {
                self.forget(None);
                self.count()
            }
        }
    }

    async fn websocket_message(
        &self,
        _ws: WebSocket,
        _message: WebSocketIncomingMessage,
    ) -> Result<()> {
        // Bridges never speak; ignoring keeps a misbehaving peer harmless.
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        // Answer the close frame, or the bridge sees 1006.
        let _ = ws.close(Some(1000), Some("bye"));
        self.left(&ws).await;
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, err: worker::Error) -> Result<()> {
        worker::console_warn!("relay socket error: {err}");
        self.left(&ws).await;
        Ok(())
    }
}

impl RelayObject {
    fn sockets(&self) -> Vec<WebSocket> {
        self.state.get_websockets_with_tag(SUBSCRIBER)
    }

    fn count(&self) -> Result<Response> {
        Response::from_json(&RelayCount {
            sockets: self.sockets().len() as u64,
            instance: self.instance.clone(),
        })
    }

    /// Accepts a subscriber placed here by the stream object, and sends it
    /// the pushes after the ones its backlog holds.
    fn join(&self, name: &str, ticket: &Ticket) -> Result<Response> {
        let now = Date::now().as_millis() as f64;
        if (now - ticket.issued).abs() > TICKET_TTL_MS {
            return Response::error("ticket expired, ask the stream again", STALE);
        }
        if self.sockets().len() >= relay_capacity(&self.env) {
            return Response::error("relay full", FULL);
        }
        let pending: Vec<js_sys::ArrayBuffer> = match self.last.get() {
            Some(last) if last > ticket.after => {
                if self
                    .first
                    .get()
                    .is_none_or(|first| first > ticket.after + 1)
                {
                    return Response::error("pushes after the ticket are gone", STALE);
                }
                self.ring
                    .borrow()
                    .iter()
                    .filter(|(number, _, _)| *number > ticket.after)
                    .map(|(_, _, message)| message.clone())
                    .collect()
            }
            _ => Vec::new(),
        };
        let pair = WebSocketPair::new()?;
        self.state
            .accept_websocket_with_tags(&pair.server, &[SUBSCRIBER, name]);
        let raw: &web_sys::WebSocket = pair.server.as_ref();
        for message in &pending {
            raw.send_with_array_buffer(message)?;
        }
        Response::from_websocket(pair.client)
    }

    /// Sends one message of the stream to every socket. A push that does not
    /// follow the last one (one was lost on the way) ends every stream here:
    /// the clients reconnect and resume from the stream object, missing
    /// nothing.
    fn push(&self, number: u64, prev: Option<u64>, message: &js_sys::ArrayBuffer) {
        if self.last.get().is_some_and(|last| number <= last) {
            // Delivered already (a retried push): nothing is sent twice.
            return;
        }
        // What this relay last received tells best; after it slept, what the
        // stream object last delivered here.
        let expected = self.last.get().or(prev).map(|n| n + 1);
        if let Some(expected) = expected.filter(|e| *e != number) {
            worker::console_warn!(
                "relay missed pushes {expected}..{}: its clients resume from the stream",
                number - 1
            );
            for socket in self.sockets() {
                let _ = socket.close(Some(1012), Some("relay missed a round"));
            }
            self.forget(Some(number));
        }
        for socket in self.sockets() {
            let raw: &web_sys::WebSocket = socket.as_ref();
            if let Err(err) = raw.send_with_array_buffer(message) {
                worker::console_warn!("send to a subscriber failed: {err:?}");
            }
        }
        let now = Date::now().as_millis() as f64;
        let mut ring = self.ring.borrow_mut();
        ring.push_back((number, now, message.clone()));
        while ring
            .front()
            .is_some_and(|(_, at, _)| ring.len() > RING_PUSHES || now - at > RING_MS)
        {
            ring.pop_front();
        }
        self.first
            .set(ring.front().map(|(n, _, _)| *n).or(Some(number)));
        self.last.set(Some(number));
    }

    /// Drops the kept pushes; from `next` on (if given) they are kept again.
    fn forget(&self, next: Option<u64>) {
        self.ring.borrow_mut().clear();
        self.first.set(next);
        self.last.set(next.map(|n| n.saturating_sub(1)));
    }

    /// After a socket left: when it was the last, the stream object is told,
    /// so it stops pushing here.
    async fn left(&self, ws: &WebSocket) {
        let gone: &web_sys::WebSocket = ws.as_ref();
        let open = self
            .sockets()
            .iter()
            .filter(|s| {
                let raw: &web_sys::WebSocket = s.as_ref();
                raw.ready_state() == web_sys::WebSocket::OPEN
                    && !js_sys::Object::is(raw.as_ref(), gone.as_ref())
            })
            .count();
        if open > 0 {
            return;
        }
        let tags = self.state.get_tags(ws);
        let Some((stream, index)) = tags.iter().find_map(|tag| parse_relay_name(tag)) else {
            return;
        };
        let told = match StreamStub::new(&self.env, stream.to_owned()) {
            Ok(stub) => stub.relay_idle(index).await,
            Err(err) => Err(err),
        };
        if let Err(err) = told {
            worker::console_warn!("telling {stream} that relay {index} is idle failed: {err}");
        }
    }
}

/// The stream object and index of a relay's name (`relay:<stream>:<n>`).
fn parse_relay_name(name: &str) -> Option<(&str, u32)> {
    let (stream, index) = name.strip_prefix("relay:")?.rsplit_once(':')?;
    Some((stream, index.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_names_are_read_back() {
        let name = objects::relay_object("type:multiplier", 12);
        assert_eq!(parse_relay_name(&name), Some(("type:multiplier", 12)));
        assert_eq!(parse_relay_name("sse"), None);
        assert_eq!(parse_relay_name("relay:game:crash:x"), None);
    }
}
