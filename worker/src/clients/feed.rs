//! An isolate's feed of one stream: one WebSocket to the stream object (or
//! a relay) shared by up to `FEED_GROUP` of the isolate's clients of that
//! stream, instead of one socket per client. Every decision (who holds the
//! socket, who gets which frames, when the socket moves) is the
//! [`FeedCore`]'s; this module wires the socket and the clients to it and
//! carries out its actions.
//!
//! Why: with a socket per client, every round costs the object one send per
//! client and the isolate one WebSocket message event per client. With a
//! feed, the object sends once per isolate and each client costs one
//! `enqueue` into its response body.
//!
//! workerd ties a socket to the request that opened it, but lets any request
//! enqueue into another request's body while that request is alive (each
//! client's heartbeat timer keeps it so). So the socket lives in one
//! member's request, and when another member must take it over, the feed
//! resolves that member's wake promise, whose continuation runs in that
//! member's request and opens the new socket there.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures_channel::oneshot;
use js_sys::Uint8Array;
use shared::cursor::StreamName;
use shared::sse;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, WebSocket};

use crate::error::{Error, Kind, Result};
use crate::fanout::feed::{Action, Caller, FeedCore, Frames, Handle, MemberId};
use crate::fanout::message::{FeedResume, MessageHead, Start};
use crate::objects::protocol::{JoinRefused, SocketNote, stream_object};
use crate::objects::stubs::{Opening, RelayStub, StreamStub, Subscription};
use crate::platform::deadline::within;
use crate::platform::now_ms;

type Handler = Closure<dyn FnMut(JsValue)>;

/// How often a join or a socket placement is tried before giving up.
const ATTEMPTS: usize = 4;
/// How long opening a feed's socket may take (placement, and the relay's
/// join when there is one): milliseconds when all is well. Past it the feed
/// fails, its members resume, and joiners try a new feed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a feed needs of a client's stream (`clients::client` implements
/// it; the feed never names the client type, so neither imports the other
/// both ways).
pub(crate) trait Sink {
    /// The client's id, unique in the isolate.
    fn id(&self) -> MemberId;
    /// Its environment.
    fn env(&self) -> &Env;
    /// Writes one message of member stream `index` to the client.
    fn deliver(&self, index: usize, frames: &Uint8Array);
    /// Ends the client's stream cleanly: the browser reconnects and resumes.
    fn resume_elsewhere(&self);
    /// Asks the client, from another request, to take a socket over.
    fn wake(&self);
    /// When its timer last ran (ms).
    fn last_tick(&self) -> f64;
    /// Whether its stream ended.
    fn has_ended(&self) -> bool;
    /// Fault injection: behave as if the runtime killed its request.
    fn silence(&self);
    /// Records a feed joined: from now on the client may be asked to take
    /// the feed's socket over, and leaves it when it ends.
    fn joined(&self, feed: Rc<Feed>);
    /// Whether its frames are rewritten for a multiplexed connection.
    fn multiplexed(&self) -> bool;
}

/// A member as the core sees it.
#[derive(Clone)]
pub(crate) struct Member {
    id: MemberId,
    rewrites: bool,
    client: Weak<dyn Sink>,
}

impl Member {
    fn of(client: &Rc<dyn Sink>) -> Self {
        Self {
            id: client.id(),
            rewrites: client.multiplexed(),
            client: Rc::downgrade(client),
        }
    }
}

impl Handle for Member {
    fn id(&self) -> MemberId {
        self.id
    }

    fn alive(&self) -> bool {
        self.client.upgrade().is_some_and(|c| !c.has_ended())
    }

    fn last_tick(&self) -> Option<f64> {
        self.client.upgrade().map(|c| c.last_tick())
    }

    fn rewrites(&self) -> bool {
        self.rewrites
    }
}

impl Frames for Uint8Array {
    fn is_empty(&self) -> bool {
        self.length() == 0
    }

    fn len(&self) -> usize {
        self.length() as usize
    }
}

/// The isolate's feeds, by stream object name (see `crate::isolate`).
#[derive(Default)]
pub(crate) struct Feeds(RefCell<HashMap<String, Vec<Rc<Feed>>>>);

/// The feed's socket and the callbacks wired to it.
struct Socket {
    socket: WebSocket,
    _handlers: Vec<Handler>,
}

/// See the module documentation.
pub(crate) struct Feed {
    stream: StreamName,
    env: Env,
    core: RefCell<FeedCore<Uint8Array, Member>>,
    socket: RefCell<Option<Socket>>,
    /// Joiners waiting for the socket's first message (`true`) or its
    /// failure (`false`).
    waiting: RefCell<Vec<oneshot::Sender<bool>>>,
}

impl Feed {
    /// A feed of `stream` with room for one more client, made if needed.
    fn for_stream(env: &Env, stream: &StreamName) -> Rc<Self> {
        let config = crate::config::get(env).feed;
        let feeds = crate::isolate::get::<Feeds>();
        let mut feeds = feeds.0.borrow_mut();
        let list = feeds.entry(stream_object(stream)).or_default();
        list.retain(|f| !f.core.borrow().is_closed());
        let feed = match list.iter().find(|f| f.core.borrow().has_room(config.group)) {
            Some(feed) => Rc::clone(feed),
            None => {
                let feed = Rc::new(Self {
                    stream: stream.clone(),
                    env: env.clone(),
                    core: RefCell::new(FeedCore::new(
                        config.rotate_after,
                        config.viewers_every.as_millis() as f64,
                    )),
                    socket: RefCell::new(None),
                    waiting: RefCell::default(),
                });
                list.push(Rc::clone(&feed));
                feed
            }
        };
        feed.core.borrow_mut().reserve();
        feed
    }

    /// Carries out the core's actions, in order. The core is not borrowed
    /// meanwhile: ending a client makes it leave its feeds, this one too.
    fn carry_out(self: &Rc<Self>, actions: Vec<Action<Uint8Array, Member>>) {
        for action in actions {
            match action {
                Action::Deliver { frames, to } => {
                    for (member, index) in to {
                        if let Some(client) = member.client.upgrade() {
                            client.deliver(index, &frames);
                        }
                    }
                }
                Action::End(member) => {
                    if let Some(client) = member.client.upgrade() {
                        client.resume_elsewhere();
                    }
                }
                Action::CloseSocket => self.close_socket(),
                Action::Wake(member) => {
                    if let Some(client) = member.client.upgrade() {
                        client.wake();
                    }
                }
                Action::TakeOver(member) => {
                    if let Some(client) = member.client.upgrade() {
                        wasm_bindgen_futures::spawn_local(Rc::clone(self).take_over(client));
                    }
                }
                Action::Answer(live) => {
                    for waiter in self.waiting.borrow_mut().drain(..) {
                        let _ = waiter.send(live);
                    }
                }
                Action::KeeperSilent(ms) => worker::console_error!(
                    "feed of {}: its keeper was silent for {ms} ms; another member takes the socket over",
                    self.stream
                ),
            }
        }
    }

    /// Waits until the feed's socket delivered its first message, opening
    /// it from `client`'s request if nobody is.
    async fn ensure_live(self: &Rc<Self>, client: &Rc<dyn Sink>) -> bool {
        let opens = self.core.borrow_mut().begin_opening();
        if opens {
            self.connect(client, FeedResume::Live).await;
        }
        {
            let core = self.core.borrow();
            if core.is_closed() || core.is_live() {
                return core.is_live();
            }
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().push(tx);
        // The request opening the socket bounds its own wait (see
        // `connect`), unless the runtime killed it: then nobody would ever
        // answer these joiners, nor the ones after them.
        if let Some(answer) = within(2 * OPEN_TIMEOUT, rx).await {
            return answer.unwrap_or(false);
        }
        let actions = self.core.borrow_mut().wait_expired();
        if !actions.is_empty() {
            worker::console_error!(
                "feed of {}: its socket was never opened; its members resume elsewhere",
                self.stream
            );
        }
        self.carry_out(actions);
        self.core.borrow().is_live()
    }

    /// Opens the feed's socket from `client`'s request; a socket that
    /// cannot be opened within [`OPEN_TIMEOUT`] fails the feed.
    async fn connect(self: &Rc<Self>, client: &Rc<dyn Sink>, resume: FeedResume) {
        let why = match within(OPEN_TIMEOUT, self.place(client, resume)).await {
            Some(Ok(())) => return,
            Some(Err(err)) => err.to_string(),
            None => format!("no socket within {} s", OPEN_TIMEOUT.as_secs()),
        };
        worker::console_error!("feed of {}: {why}", self.stream);
        self.fail();
    }

    async fn place(self: &Rc<Self>, client: &Rc<dyn Sink>, resume: FeedResume) -> Result<()> {
        let object = StreamStub::of(&self.env, &self.stream)?;
        let mut full = None;
        for _ in 0..ATTEMPTS {
            match object.subscribe(resume, full).await? {
                Subscription::Direct(socket) => {
                    // Its first message comes on the socket.
                    self.wire(client, socket);
                    return Ok(());
                }
                Subscription::Relayed { ticket, first } => {
                    let relay = RelayStub::new(&self.env, object.name(), ticket.relay)?;
                    match relay.join(ticket).await? {
                        Ok(socket) => {
                            // The first message came with the ticket; the
                            // relay's messages follow it.
                            self.on_message(&first);
                            self.wire(client, socket);
                            return Ok(());
                        }
                        Err(JoinRefused::Full) => full = Some(ticket.relay),
                        Err(JoinRefused::Stale) => full = None,
                    }
                }
            }
        }
        Err(Error::new(Kind::Refused, "no relay took the feed"))
    }

    /// Wires the socket's callbacks in the owner's request and accepts it.
    fn wire(self: &Rc<Self>, client: &Rc<dyn Sink>, socket: WebSocket) {
        let feed = Rc::downgrade(self);
        let on_message = Handler::new(move |event: JsValue| {
            let data = event.unchecked_into::<web_sys::MessageEvent>().data();
            let Some(feed) = feed.upgrade() else {
                return;
            };
            // Frames come as binary messages, notes (viewers) as text.
            match data.dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buffer) => feed.on_message(&Uint8Array::new(&buffer)),
                Err(data) => {
                    if let Some(text) = data.as_string() {
                        feed.on_note(&text);
                    }
                }
            }
        });
        let feed = Rc::downgrade(self);
        let on_close = Handler::new(move |_| {
            if let Some(feed) = feed.upgrade() {
                feed.fail();
            }
        });
        let raw: &web_sys::WebSocket = socket.as_ref();
        raw.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        raw.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        raw.set_onerror(Some(on_close.as_ref().unchecked_ref()));
        if let Err(err) = socket.accept() {
            worker::console_error!("feed of {}: accept failed: {err}", self.stream);
            self.fail();
            return;
        }
        *self.socket.borrow_mut() = Some(Socket {
            socket,
            _handlers: vec![on_message, on_close],
        });
        self.core.borrow_mut().wired(Member::of(client), now_ms());
    }

    /// One message from the socket: its head, the `initial` frame, then
    /// the frames, each a view of the same JS buffer.
    fn on_message(self: &Rc<Self>, message: &Uint8Array) {
        let len = MessageHead::LEN as u32;
        let total = message.length();
        if total < len {
            return;
        }
        let mut raw = [0u8; MessageHead::LEN];
        message.subarray(0, len).copy_to(&mut raw);
        let Some(head) = MessageHead::decode(&raw) else {
            worker::console_error!("feed of {}: a message without a head", self.stream);
            return;
        };
        let initial_len = head.initial.unwrap_or(0);
        let Some(skip) = len.checked_add(initial_len).filter(|skip| *skip <= total) else {
            worker::console_error!("feed of {}: a message shorter than its head", self.stream);
            return;
        };
        let frames = message.subarray(skip, total);
        let initial = head.initial.map(|n| message.subarray(len, len + n));
        let actions = self
            .core
            .borrow_mut()
            .on_message(&head, frames, initial, now_ms());
        self.carry_out(actions);
        self.report(Caller::Socket);
    }

    /// A text message from the socket's other end: the stream's viewers,
    /// for every member.
    fn on_note(&self, text: &str) {
        let Some(SocketNote::Viewers(viewers)) = SocketNote::decode(text) else {
            return;
        };
        let to = self.core.borrow_mut().viewers(viewers);
        let frame = self.viewers_frame(viewers);
        for (member, index) in to {
            if let Some(client) = member.client.upgrade() {
                client.deliver(index, &frame);
            }
        }
    }

    fn viewers_frame(&self, viewers: u64) -> Uint8Array {
        let frame = sse::viewers_frame(&stream_object(&self.stream), viewers);
        Uint8Array::from(frame.as_slice())
    }

    /// Tells the socket's other end how many clients the feed serves, when
    /// that is due (see [`FeedCore::report`]); `from` says whose request
    /// this runs in.
    fn report(&self, from: Caller) {
        let Some(members) = self.core.borrow_mut().report(from, now_ms()) else {
            return;
        };
        if let Some(socket) = self.socket.borrow().as_ref()
            && let Err(err) = socket
                .socket
                .send_with_str(SocketNote::Members(members).encode())
        {
            worker::console_warn!("feed of {}: telling its members failed: {err}", self.stream);
        }
    }

    /// A member left (see [`FeedCore::detach`]).
    pub(crate) fn detach(self: &Rc<Self>, id: MemberId) {
        let actions = self.core.borrow_mut().detach(id, now_ms());
        self.carry_out(actions);
    }

    /// The watchdog, run on every member's timer tick (in its request):
    /// see [`FeedCore::watch`].
    pub(crate) fn watch(self: &Rc<Self>, member: &Rc<dyn Sink>, now: f64, stale_after: f64) {
        let actions = self
            .core
            .borrow_mut()
            .watch(&Member::of(member), now, stale_after);
        self.carry_out(actions);
        self.report(Caller::Member(member.id()));
    }

    /// Whether `id` is this feed's heir.
    pub(crate) fn is_heir(&self, id: MemberId) -> bool {
        self.core.borrow().is_heir(id)
    }

    /// In the heir's request (its wake continuation, or the watchdog's
    /// tick): opens a new socket that resumes after the last message
    /// delivered.
    pub(crate) async fn take_over(self: Rc<Self>, heir: Rc<dyn Sink>) {
        let resume = self.core.borrow().take_over(heir.id());
        if let Some(resume) = resume {
            self.connect(&heir, resume).await;
        }
    }

    /// Fault injection (`PUT /admin/faults/feed-owners`): the socket's
    /// owner behaves as if the runtime had killed its request: the socket's
    /// messages no longer reach the feed, and the owner's timer stops.
    /// Returns the owner, for the caller to stop its timer.
    fn silence_owner(&self) -> Option<Rc<dyn Sink>> {
        let socket = self.socket.borrow();
        unhook(&socket.as_ref()?.socket);
        self.core.borrow().owner()?.client.upgrade()
    }

    fn close_socket(&self) {
        if let Some(old) = self.socket.borrow_mut().take() {
            unhook(&old.socket);
            let _ = old.socket.close(Some(1000), Some("feed handed over"));
            // The callbacks may be running: drop them after they returned.
            wasm_bindgen_futures::spawn_local(async move { drop(old) });
        }
    }

    /// The socket closed or could not be opened: every member's stream
    /// ends (browsers reconnect and resume), and joiners go elsewhere.
    fn fail(self: &Rc<Self>) {
        let actions = self.core.borrow_mut().fail();
        self.carry_out(actions);
    }
}

/// Stops a socket's events from reaching the feed.
fn unhook(socket: &WebSocket) {
    let raw: &web_sys::WebSocket = socket.as_ref();
    raw.set_onmessage(None);
    raw.set_onclose(None);
    raw.set_onerror(None);
}

/// Fault injection for tests: every feed owner of this isolate goes silent
/// as a killed request would (see [`Feed::silence_owner`]). Returns how many.
pub(crate) fn silence_owners() -> usize {
    let feeds: Vec<Rc<Feed>> = crate::isolate::get::<Feeds>()
        .0
        .borrow()
        .values()
        .flatten()
        .cloned()
        .collect();
    let owners: Vec<Rc<dyn Sink>> = feeds.iter().filter_map(|f| f.silence_owner()).collect();
    for owner in &owners {
        owner.silence();
    }
    owners.len()
}

/// One attempt of [`join`]: `false` when the feed could not take the client.
async fn try_join(
    feed: &Rc<Feed>,
    client: &Rc<dyn Sink>,
    index: usize,
    start: Start,
) -> Result<bool> {
    if !feed.ensure_live(client).await {
        return Ok(false);
    }
    // A client without Last-Event-ID joins with the `initial` frame the
    // feed's last message carried, and one resuming from a position the
    // feed still holds with the messages after it: no request to the
    // object, so a crowd (re)connecting costs it nothing. Checked and
    // attached in one synchronous step.
    let from_feed = {
        let core = feed.core.borrow();
        match start {
            Start::Latest => core.fresh_opening(),
            Start::After(position) => core
                .anchor(position)
                .map(|after| (after, Uint8Array::new_with_length(0))),
            Start::Rewind(_) => None,
        }
    };
    let (after, frames) = match from_feed {
        Some(opening) => opening,
        None => {
            let Opening { after, frames } = StreamStub::of(client.env(), &feed.stream)?
                .opening(start)
                .await?;
            // A client gone meanwhile is not attached; `open` sees it ended.
            if client.has_ended() {
                return Ok(true);
            }
            (after, frames)
        }
    };
    let first = feed
        .core
        .borrow_mut()
        .attach(Member::of(client), index, after, frames);
    let Some(first) = first else {
        return Ok(false);
    };
    // The opening, what the feed delivered since, then the live marker,
    // in the same step as the attach: nothing comes between them.
    let mut replayed = 0;
    for (i, frames) in first.iter().enumerate() {
        // A fresh client's opening is its `initial`, which counts as none:
        // not read, so the common join of a crowd copies nothing into wasm.
        if i > 0 || start != Start::Latest {
            replayed += sse::count_replayed(&frames.to_vec());
        }
        client.deliver(index, frames);
    }
    let live = sse::live_frame(&stream_object(&feed.stream), replayed);
    client.deliver(index, &Uint8Array::from(live.as_slice()));
    let viewers = feed.core.borrow().viewers_known();
    if let Some(viewers) = viewers {
        client.deliver(index, &feed.viewers_frame(viewers));
    }
    // The feed's opener joins in the socket's own request: it can tell the
    // other end at once.
    feed.report(Caller::Member(client.id()));
    Ok(true)
}

/// Joins `client` to a feed of `stream` as its member `index`, starting
/// at `start`: the client gets its opening, the `live` marker, then every
/// frame after it.
pub(crate) async fn join(
    client: &Rc<dyn Sink>,
    index: usize,
    stream: &StreamName,
    start: Start,
) -> Result<()> {
    for _ in 0..ATTEMPTS {
        let feed = Feed::for_stream(client.env(), stream);
        let joined = try_join(&feed, client, index, start).await;
        feed.core.borrow_mut().unreserve();
        match joined {
            Ok(true) => {
                // In the same step as the attach: from now on this client
                // may be asked to take the feed's socket over.
                client.joined(feed);
                return Ok(());
            }
            // A socket this request opened must not stay behind unowned.
            Ok(false) => feed.detach(client.id()),
            Err(err) => {
                feed.detach(client.id());
                return Err(err);
            }
        }
    }
    Err(Error::new(
        Kind::Unavailable,
        format!("{stream}: no feed could be joined"),
    ))
}
