//! A relay (`relay:<stream>:<n>`): a Durable Object that holds up to
//! `RELAY_CAPACITY` subscriber sockets of one stream and sends them the
//! stream object's pushes, under the rules of `fanout::relay`. Sockets are
//! accepted through the Hibernation API and the relay keeps no per-client
//! state or timer, so it sleeps between rounds.

// The `#[durable_object]` macro generates undocumented public glue.
#![allow(missing_docs)]

use std::cell::{Cell, RefCell};

use worker::{
    DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

use crate::fanout::relay::{Push, RelayCore};
use crate::fanout::viewers::{Tell, Throttle};
use crate::objects::protocol::{RelayCall, RelayCount, SocketNote, Ticket, parse_relay_name};
use crate::objects::stubs::{self, StreamStub};
use crate::platform::now_ms;

/// Tag of the subscriber sockets (each also carries the relay's name).
const SUBSCRIBER: &str = "sse";

#[durable_object]
pub struct RelayObject {
    state: State,
    env: Env,
    /// The recent pushes and which joins and pushes to take.
    core: RefCell<RelayCore<js_sys::ArrayBuffer>>,
    /// Random per construction (see [`RelayCount`]).
    instance: String,
    /// Fault injection for tests (`ALLOW_FAULTS`, and
    /// `FAULT_RELAY_PUSH=hang`): pushes are never answered.
    hang_pushes: bool,
    /// The clients its sockets serve, as last told to the stream object,
    /// at most once per `VIEWERS_SECS`.
    audience: RefCell<Throttle>,
    /// The stream's viewers as the stream object last told them, for
    /// sockets joining.
    viewers: Cell<Option<u64>>,
}

impl DurableObject for RelayObject {
    fn new(state: State, env: Env) -> Self {
        let config = crate::config::get(&env);
        let every = config.feed.viewers_every.as_millis() as f64;
        Self {
            state,
            core: RefCell::default(),
            instance: crate::platform::instance_id(),
            hang_pushes: config.faults.relay_pushes_hang,
            audience: RefCell::new(Throttle::new(every)),
            viewers: Cell::new(None),
            env,
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // A push's body is read below, as a JS buffer.
        let read = stubs::read_call(&mut req, false, |verb, target, _| {
            RelayCall::decode(verb, target)
        });
        let (name, call) = match read.await {
            Ok(parsed) => parsed,
            Err(refusal) => return stubs::refusal(refusal),
        };
        match call {
            RelayCall::Join(ticket) => self.join(&name, &ticket),
            RelayCall::Push { number, prev } => {
                if self.hang_pushes {
                    // Fault injection: a relay that stops answering.
                    futures_util::future::pending::<()>().await;
                }
                let message = stubs::body_buffer(&req).await?;
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
            RelayCall::Stop { after } => {
                // Streams still here would miss what is sent before it is
                // placed on again.
                for socket in &self.sockets() {
                    let _ = socket.close(Some(1012), Some("stream restarting"));
                }
                self.core.borrow_mut().stop(after);
                self.audience.borrow_mut().forget();
                self.count()
            }
            RelayCall::Viewers(viewers) => {
                self.viewers.set(Some(viewers));
                let note = SocketNote::Viewers(viewers).encode();
                for socket in self.sockets() {
                    let _ = socket.send_with_str(&note);
                }
                self.count()
            }
        }
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        if stubs::note_members(&ws, message)? {
            self.report().await?;
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        // A change of the count that came too soon after the last told.
        self.report().await?;
        Response::ok("")
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
        let capacity = crate::config::get(&self.env).relay_capacity;
        let decided = self
            .core
            .borrow_mut()
            .join(ticket, now_ms(), self.sockets().len(), capacity);
        let joined = match decided {
            Ok(joined) => joined,
            Err(refused) => return stubs::join_refused(refused),
        };
        if joined.reset {
            worker::console_warn!(
                "relay missed pushes up to {}: its clients resume from the stream",
                ticket.after
            );
            for socket in self.sockets() {
                let _ = socket.close(Some(1012), Some("relay missed a round"));
            }
        }
        let pair = WebSocketPair::new()?;
        self.state
            .accept_websocket_with_tags(&pair.server, &[SUBSCRIBER, name]);
        let raw: &web_sys::WebSocket = pair.server.as_ref();
        for message in &joined.pending {
            raw.send_with_array_buffer(message)?;
        }
        if let Some(viewers) = self.viewers.get() {
            pair.server
                .send_with_str(SocketNote::Viewers(viewers).encode())?;
        }
        Response::from_websocket(pair.client)
    }

    /// Sends one message of the stream to every socket; after a gap, ends
    /// every stream here first (see [`Push`]).
    fn push(&self, number: u64, prev: Option<u64>, message: &js_sys::ArrayBuffer) {
        let decided = self.core.borrow_mut().push(
            number,
            prev,
            now_ms(),
            message.clone(),
            message.byte_length() as usize,
        );
        let Push::Send { missed } = decided else {
            return;
        };
        if let Some((first, last)) = missed {
            worker::console_warn!(
                "relay missed pushes {first}..{last}: its clients resume from the stream"
            );
            for socket in self.sockets() {
                let _ = socket.close(Some(1012), Some("relay missed a round"));
            }
        }
        for socket in self.sockets() {
            let raw: &web_sys::WebSocket = socket.as_ref();
            if let Err(err) = raw.send_with_array_buffer(message) {
                worker::console_warn!("send to a subscriber failed: {err:?}");
            }
        }
    }

    /// Tells the stream object how many clients the sockets here serve, now
    /// or at the alarm once that is allowed.
    async fn report(&self) -> Result<()> {
        let sockets = self.sockets();
        let members = stubs::members_served(&sockets);
        let tell = self.audience.borrow_mut().offer(members, now_ms());
        match tell {
            Tell::Now(members) => {
                let tags = sockets.first().map(|ws| self.state.get_tags(ws));
                let Some((stream, index)) =
                    tags.iter().flatten().find_map(|tag| parse_relay_name(tag))
                else {
                    return Ok(());
                };
                let told = match StreamStub::new(&self.env, stream.to_owned()) {
                    Ok(stub) => stub.relay_viewers(index, members).await,
                    Err(err) => Err(err),
                };
                if let Err(err) = told {
                    worker::console_warn!(
                        "telling {stream} the viewers of relay {index} failed: {err}"
                    );
                }
            }
            Tell::At(at) => crate::platform::alarm_at(&self.state, at).await?,
            Tell::Nothing => {}
        }
        Ok(())
    }

    /// After a socket left: when it was the last, the stream object is told,
    /// so it stops pushing here (and counts none of its viewers).
    async fn left(&self, ws: &WebSocket) {
        let _ = ws.serialize_attachment(0u64);
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
            if let Err(err) = self.report().await {
                worker::console_warn!("relay viewers: {err}");
            }
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
