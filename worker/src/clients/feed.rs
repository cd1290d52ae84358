//! An isolate's feed of one stream: one WebSocket to the stream object (or
//! a relay) shared by up to `FEED_GROUP` of the isolate's clients of that
//! stream, instead of one socket per client.
//!
//! Why: with a socket per client, every round costs the object one send per
//! client and the isolate one WebSocket message event per client. With a
//! feed, the object sends once per isolate and each client costs one
//! `enqueue` into its response body (measured: see ARCHITECTURE.md).
//!
//! workerd ties a socket to the request that opened it, but lets any request
//! enqueue into another request's body while that request is alive (each
//! client's heartbeat timer keeps it so). So the socket lives in one
//! client's request, the feed's owner, and when the owner leaves another
//! member takes over: the owner resolves the heir's wake promise, whose
//! continuation runs in the heir's request and opens a new socket that
//! resumes after the last position the feed delivered. Nothing is lost or
//! repeated in between.
//!
//! Every message of a stream object carries its number and the stream's
//! position after it ([`MessageHead`]). A client joins with its own opening
//! (from the object, naming the last message number it covers): messages
//! after that number come from the feed, those the feed delivered since come
//! from its ring of recent messages, and those still on their way are
//! skipped for it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;

use futures_channel::oneshot;
use js_sys::Uint8Array;
use shared::cursor::{Position, StreamName};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Date, Env, WebSocket};

use crate::bridge::{Client, End};
use crate::deadline::within;
use crate::objects::{
    FeedResume, JoinRefused, MessageHead, Opening, RelayStub, StreamStub, Subscription,
};

type Handler = Closure<dyn FnMut(JsValue)>;

/// Messages kept for clients still joining: at most this many…
const RING_MESSAGES: usize = 64;
/// …and none older than this.
const RING_MS: f64 = 10_000.0;
/// How often a join or a socket placement is tried before giving up.
const ATTEMPTS: usize = 4;
/// How long opening a feed's socket may take (placement, and the relay's
/// join when there is one): milliseconds when all is well. Past it the feed
/// fails, its members resume, and joiners try a new feed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames a socket's owner hands to members before another member takes
/// the socket over (`FEED_ROTATE_AFTER`): at the ~10 µs each measured
/// locally, about 2 s of the owner request's CPU.
const ROTATE_AFTER: u64 = 200_000;

thread_local! {
    /// The isolate's feeds, by stream object name.
    static FEEDS: RefCell<HashMap<String, Vec<Rc<Feed>>>> = RefCell::default();
}

/// A message kept in the ring: its number, arrival (ms), the stream's
/// position after it, and its frames.
struct Kept {
    number: u64,
    at: f64,
    position: Option<Position>,
    frames: Uint8Array,
}

/// One client's membership: which of its member streams, and the last
/// message number its opening (or the feed) already gave it.
struct Sink {
    client: Weak<Client>,
    client_id: u64,
    index: usize,
    after: u64,
}

/// The feed's socket and the callbacks wired to it.
struct Socket {
    socket: WebSocket,
    owner: u64,
    _handlers: Vec<Handler>,
}

/// See the module documentation.
pub(crate) struct Feed {
    stream: StreamName,
    env: Env,
    socket: RefCell<Option<Socket>>,
    /// A socket is being opened (by a joiner, or by an heir).
    opening: Cell<bool>,
    /// Joiners waiting for the socket's first message (`true`) or its
    /// failure (`false`).
    waiting: RefCell<Vec<oneshot::Sender<bool>>>,
    /// The first message of the current socket arrived.
    live: Cell<bool>,
    /// Number of the last message received.
    number: Cell<u64>,
    /// The stream's position after it (`None`: no round yet).
    position: Cell<Option<Position>>,
    /// The `initial` frame a client joining now gets (empty: no round
    /// yet); `None` after a message that did not end its batch.
    initial: RefCell<Option<Uint8Array>>,
    /// Recent messages (number, arrival, frames); joiners whose opening is
    /// at least `covered_from` get the ones after their opening from here.
    ring: RefCell<VecDeque<Kept>>,
    /// Messages before this one cannot anchor a resume (see [`Feed::anchor`]).
    anchors_from: Cell<u64>,
    covered_from: Cell<u64>,
    sinks: RefCell<Vec<Sink>>,
    /// The member asked to take over the socket, while one is.
    heir: Cell<u64>,
    /// Failed or left empty: no longer listed, joins go elsewhere.
    closed: Cell<bool>,
    /// Clients on their way to joining: they count against `FEED_GROUP`.
    joining: Cell<usize>,
    /// Frames handed to members since the current socket opened: the work
    /// runs in the owner's request and counts against its CPU limit (30 s
    /// per request on Cloudflare), so past `rotate_after` another member
    /// takes the socket over.
    spent: Cell<u64>,
    rotate_after: u64,
    /// The keeper (the socket's owner, or the heir asked to open the next
    /// socket) and when it became keeper; its own timer ticks show it is
    /// alive (see [`Feed::watch`]).
    keeper: RefCell<(Weak<Client>, f64)>,
}

impl Feed {
    /// A feed of `stream` with room for one more client, made if needed.
    fn for_stream(env: &Env, stream: &StreamName, group: usize) -> Rc<Self> {
        let rotate_after = env
            .var("FEED_ROTATE_AFTER")
            .ok()
            .and_then(|v| v.to_string().trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(ROTATE_AFTER);
        let key = crate::objects::stream_object(stream);
        FEEDS.with(|feeds| {
            let mut feeds = feeds.borrow_mut();
            let list = feeds.entry(key).or_default();
            list.retain(|f| !f.closed.get());
            if let Some(feed) = list
                .iter()
                .find(|f| group == 0 || f.sinks.borrow().len() + f.joining.get() < group)
            {
                feed.joining.set(feed.joining.get() + 1);
                return Rc::clone(feed);
            }
            let feed = Rc::new(Self {
                stream: stream.clone(),
                env: env.clone(),
                socket: RefCell::new(None),
                opening: Cell::new(false),
                waiting: RefCell::default(),
                live: Cell::new(false),
                number: Cell::new(0),
                position: Cell::new(None),
                initial: RefCell::new(None),
                ring: RefCell::default(),
                anchors_from: Cell::new(0),
                covered_from: Cell::new(u64::MAX),
                sinks: RefCell::default(),
                heir: Cell::new(0),
                closed: Cell::new(false),
                joining: Cell::new(1),
                spent: Cell::new(0),
                rotate_after,
                keeper: RefCell::new((Weak::new(), 0.0)),
            });
            list.push(Rc::clone(&feed));
            feed
        })
    }

    /// Waits until the feed's socket delivered its first message, opening
    /// it from `client`'s request if nobody is.
    async fn ensure_live(self: &Rc<Self>, client: &Rc<Client>) -> bool {
        if !self.opening.get() && !self.live.get() && !self.closed.get() {
            self.connect(client, FeedResume::Live).await;
        }
        if self.closed.get() {
            return false;
        }
        if self.live.get() {
            return true;
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().push(tx);
        // The request opening the socket bounds its own wait (see
        // `connect`), unless the runtime killed it: then nobody would ever
        // answer these joiners, nor the ones after them.
        match within(2 * OPEN_TIMEOUT, rx).await {
            Some(answer) => answer.unwrap_or(false),
            None => {
                if !self.live.get() && !self.closed.get() {
                    worker::console_error!(
                        "feed of {}: its socket was never opened; its members resume elsewhere",
                        self.stream
                    );
                    self.fail();
                }
                self.live.get() && !self.closed.get()
            }
        }
    }

    /// Opens the feed's socket from `client`'s request. `opening` stays set
    /// until the socket's first message arrived (or it failed).
    async fn connect(self: &Rc<Self>, client: &Rc<Client>, resume: FeedResume) {
        self.opening.set(true);
        let why = match within(OPEN_TIMEOUT, self.place(client, resume)).await {
            Some(Ok(())) => return,
            Some(Err(err)) => err.to_string(),
            None => format!("no socket within {} s", OPEN_TIMEOUT.as_secs()),
        };
        worker::console_error!("feed of {}: {why}", self.stream);
        self.fail();
    }

    async fn place(self: &Rc<Self>, client: &Rc<Client>, resume: FeedResume) -> worker::Result<()> {
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
                    match relay.join(ticket.clone()).await? {
                        Ok(socket) => {
                            // The first message came with the ticket; the
                            // relay's messages follow it.
                            self.on_message(&first.buffer(), first.byte_length());
                            self.wire(client, socket);
                            return Ok(());
                        }
                        Err(JoinRefused::Full) => full = Some(ticket.relay),
                        Err(JoinRefused::Stale) => full = None,
                    }
                }
            }
        }
        Err(worker::Error::RustError("no relay took the feed".into()))
    }

    /// Wires the socket's callbacks in the owner's request and accepts it.
    fn wire(self: &Rc<Self>, client: &Rc<Client>, socket: WebSocket) {
        let feed = Rc::downgrade(self);
        let on_message = Handler::new(move |event: JsValue| {
            let data = event.unchecked_into::<web_sys::MessageEvent>().data();
            if let (Some(feed), Ok(buffer)) =
                (feed.upgrade(), data.dyn_into::<js_sys::ArrayBuffer>())
            {
                let length = buffer.byte_length();
                feed.on_message(&buffer, length);
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
            owner: client.id(),
            _handlers: vec![on_message, on_close],
        });
        self.set_keeper(client);
    }

    /// One message from the socket: its head, then frames for every member
    /// whose opening does not already hold them.
    fn on_message(&self, buffer: &js_sys::ArrayBuffer, length: u32) {
        let len = MessageHead::LEN as u32;
        let mut raw = [0u8; MessageHead::LEN];
        if length < len {
            return;
        }
        Uint8Array::new_with_byte_offset_and_length(buffer, 0, len).copy_to(&mut raw);
        let Some(head) = MessageHead::decode(&raw) else {
            worker::console_error!("feed of {}: a message without a head", self.stream);
            return;
        };
        let initial_len = head.initial.unwrap_or(0);
        let Some(skip) = len.checked_add(initial_len).filter(|skip| *skip <= length) else {
            worker::console_error!("feed of {}: a message shorter than its head", self.stream);
            return;
        };
        let frames = Uint8Array::new_with_byte_offset_and_length(buffer, skip, length - skip);
        *self.initial.borrow_mut() = head
            .initial
            .map(|n| Uint8Array::new_with_byte_offset_and_length(buffer, len, n));
        let first = !self.live.get();
        let previous = self.number.get();
        self.number.set(head.number.max(previous));
        self.position.set(head.position);
        if first {
            self.first_message(head.number, previous, &frames);
            return;
        }
        let now = now_ms();
        {
            let mut ring = self.ring.borrow_mut();
            ring.push_back(Kept {
                number: head.number,
                at: now,
                position: head.position,
                frames: frames.clone(),
            });
            while ring
                .front()
                .is_some_and(|kept| ring.len() > RING_MESSAGES || now - kept.at > RING_MS)
            {
                if let Some(kept) = ring.pop_front() {
                    self.covered_from.set(kept.number);
                }
            }
            if frames.length() == 0 {
                // A silent change (a backfill) moved the position without
                // frames; a resume from before it is the object's to plan.
                self.anchors_from.set(head.number);
            }
        }
        if frames.length() > 0 {
            self.deliver(head.number, &frames);
        }
    }

    /// The first message of a socket: the feed is live. After a take-over
    /// it holds what the members missed since the old socket's last
    /// message (`previous`): members whose opening reaches into that span
    /// cannot be served without a repeat and are ended (they resume).
    fn first_message(&self, number: u64, previous: u64, frames: &Uint8Array) {
        self.ring.borrow_mut().clear();
        self.covered_from.set(number);
        self.anchors_from.set(number);
        self.live.set(true);
        self.opening.set(false);
        self.heir.set(0);
        self.spent.set(0);
        if frames.length() > 0 {
            let overlapping: Vec<Rc<Client>> = self
                .sinks
                .borrow()
                .iter()
                .filter(|s| s.after > previous && s.after < number)
                .filter_map(|s| s.client.upgrade())
                .collect();
            for client in overlapping {
                client.end(End::ObjectClosed);
            }
            self.deliver(number, frames);
        }
        for waiter in self.waiting.borrow_mut().drain(..) {
            let _ = waiter.send(true);
        }
    }

    fn deliver(&self, number: u64, frames: &Uint8Array) {
        // A member may end (too slow) while frames are handed out, which
        // changes the list: hand out from a copy.
        let targets: Vec<(Weak<Client>, usize)> = self
            .sinks
            .borrow()
            .iter()
            .filter(|s| s.after < number)
            .map(|s| (s.client.clone(), s.index))
            .collect();
        self.spent.set(self.spent.get() + targets.len() as u64);
        for (client, index) in targets {
            if let Some(client) = client.upgrade() {
                client.on_message(index, frames);
            }
        }
        if self.spent.get() >= self.rotate_after {
            self.spent.set(0);
            let owner = self.socket.borrow().as_ref().map(|s| s.owner);
            if let Some(owner) = owner {
                self.hand_over(owner);
            }
        }
    }

    /// Adds a member whose opening is `opening`; `false` if the feed can no
    /// longer tell which messages it lacks (it asks again).
    fn attach(&self, client: &Rc<Client>, index: usize, opening: &Opening) -> bool {
        if self.closed.get() || !self.live.get() || opening.after < self.covered_from.get() {
            return false;
        }
        client.on_message(index, &opening.frames);
        if opening.after < self.number.get() {
            let missed: Vec<Uint8Array> = self
                .ring
                .borrow()
                .iter()
                .filter(|kept| kept.number > opening.after)
                .map(|kept| kept.frames.clone())
                .collect();
            for frames in &missed {
                client.on_message(index, frames);
            }
        }
        self.sinks.borrow_mut().push(Sink {
            client: Rc::downgrade(client),
            client_id: client.id(),
            index,
            after: opening.after.max(self.number.get()),
        });
        true
    }

    /// The number of the message after which a client that last saw
    /// `position` resumes, when the feed can serve it: the current position,
    /// or the position after a message still in the ring (and after the last
    /// silent change). Else the object plans the resume.
    fn anchor(&self, position: Position) -> Option<u64> {
        if self.position.get() == Some(position) {
            return Some(self.number.get());
        }
        self.ring
            .borrow()
            .iter()
            .rev()
            .find(|kept| kept.position == Some(position))
            .map(|kept| kept.number)
            .filter(|number| {
                *number >= self.anchors_from.get() && *number >= self.covered_from.get()
            })
    }

    /// A member left. If it held the socket, another member takes over; a
    /// feed without members closes its socket.
    pub(crate) fn detach(self: &Rc<Self>, client_id: u64) {
        self.sinks.borrow_mut().retain(|s| s.client_id != client_id);
        let owned = self
            .socket
            .borrow()
            .as_ref()
            .is_some_and(|s| s.owner == client_id);
        let heir_left = self.heir.get() == client_id;
        if !owned && !heir_left {
            return;
        }
        if self.sinks.borrow().is_empty() {
            self.close();
            return;
        }
        self.hand_over(client_id);
    }

    /// Closes the socket and asks a member other than `not` to open the
    /// next one; with no such member, the feed closes (every member then
    /// resumes on its own).
    fn hand_over(&self, not: u64) {
        let heir = self
            .sinks
            .borrow()
            .iter()
            .filter_map(|s| s.client.upgrade())
            .find(|c| !c.has_ended() && c.id() != not);
        let Some(heir) = heir else {
            if self
                .socket
                .borrow()
                .as_ref()
                .is_some_and(|s| s.owner == not)
            {
                // The owner is the only member and stays: it keeps paying
                // only for itself.
                return;
            }
            self.fail();
            return;
        };
        self.appoint(&heir);
        heir.wake();
    }

    /// Closes the socket and makes `heir` the member to open the next one.
    /// Joiners meanwhile wait for the heir's socket rather than open one
    /// that would skip what the members have not seen yet.
    fn appoint(&self, heir: &Rc<Client>) {
        self.close_socket();
        self.live.set(false);
        self.opening.set(true);
        self.heir.set(heir.id());
        self.set_keeper(heir);
    }

    fn set_keeper(&self, client: &Rc<Client>) {
        *self.keeper.borrow_mut() = (Rc::downgrade(client), now_ms());
    }

    /// The member whose request keeps the feed going: the heir asked to
    /// open the next socket, else the socket's owner.
    fn keeper(&self) -> Option<u64> {
        match self.heir.get() {
            0 => self.socket.borrow().as_ref().map(|s| s.owner),
            heir => Some(heir),
        }
    }

    /// The watchdog, run on every member's timer tick (in its request).
    ///
    /// A keeper's request can end without its abort handler running (the
    /// runtime kills a request past its CPU limit, say): its socket's
    /// messages and its timer stop, and the members would wait on a
    /// silent feed while their own heartbeats keep their browsers from
    /// reconnecting. So a member that sees no tick of the keeper's own timer
    /// for `stale_after` ms (whether or not the keeper is a member yet: an
    /// opener may still be joining) takes the socket over itself,
    /// resuming after the last message delivered, and ends the silent
    /// keeper's stream (a keeper that was only slow reconnects and resumes).
    pub(crate) fn watch(self: &Rc<Self>, member: &Rc<Client>, now: f64, stale_after: f64) {
        if self.closed.get() {
            return;
        }
        let Some(keeper) = self.keeper() else {
            return;
        };
        if keeper == member.id() {
            return;
        }
        let (keeper_client, since) = self.keeper.borrow().clone();
        let seen = keeper_client
            .upgrade()
            .map_or(since, |k| k.last_tick().max(since));
        let silent = now - seen;
        if silent <= stale_after {
            return;
        }
        worker::console_error!(
            "feed of {}: its keeper was silent for {silent} ms; another member takes the socket over",
            self.stream
        );
        let silent_keeper = keeper_client.upgrade();
        self.appoint(member);
        wasm_bindgen_futures::spawn_local(Rc::clone(self).take_over(Rc::clone(member)));
        if let Some(keeper) = silent_keeper {
            keeper.end(End::ObjectClosed);
        }
    }

    /// Fault injection (`PUT /admin/faults/feed-owners`): the socket's
    /// owner behaves as if the runtime had killed its request: the socket's
    /// messages no longer reach the feed, and the owner's timer stops.
    /// Returns the owner, for the caller to stop its timer.
    fn silence_owner(&self) -> Option<Rc<Client>> {
        let socket = self.socket.borrow();
        let socket = socket.as_ref()?;
        unhook(&socket.socket);
        self.sinks
            .borrow()
            .iter()
            .find(|s| s.client_id == socket.owner)
            .and_then(|s| s.client.upgrade())
    }

    /// In the heir's request (its wake continuation): opens a new socket
    /// that resumes after the last message delivered.
    pub(crate) async fn take_over(self: Rc<Self>, heir: Rc<Client>) {
        if self.heir.get() != heir.id() || self.closed.get() {
            return;
        }
        let resume = match self.position.get() {
            Some(position) => FeedResume::At(position),
            None => FeedResume::Start,
        };
        self.connect(&heir, resume).await;
    }

    /// Whether `client` is this feed's heir.
    pub(crate) fn is_heir(&self, client_id: u64) -> bool {
        self.heir.get() == client_id
    }

    fn close_socket(&self) {
        if let Some(old) = self.socket.borrow_mut().take() {
            unhook(&old.socket);
            let _ = old.socket.close(Some(1000), Some("feed handed over"));
            // The callbacks may be running: drop them after they returned.
            wasm_bindgen_futures::spawn_local(async move { drop(old) });
        }
    }

    /// Unlists the feed and closes its socket.
    fn close(&self) {
        self.closed.set(true);
        self.opening.set(false);
        self.close_socket();
        for waiter in self.waiting.borrow_mut().drain(..) {
            let _ = waiter.send(false);
        }
    }

    /// The socket closed or could not be opened: every member's stream
    /// ends (browsers reconnect and resume), and joiners go elsewhere.
    fn fail(&self) {
        self.close();
        let members: Vec<Rc<Client>> = self
            .sinks
            .borrow_mut()
            .drain(..)
            .filter_map(|s| s.client.upgrade())
            .collect();
        for client in members {
            client.end(End::ObjectClosed);
        }
    }
}

/// Stops a socket's events from reaching the feed.
fn unhook(socket: &WebSocket) {
    let raw: &web_sys::WebSocket = socket.as_ref();
    raw.set_onmessage(None);
    raw.set_onclose(None);
    raw.set_onerror(None);
}

fn now_ms() -> f64 {
    Date::now().as_millis() as f64
}

/// Fault injection for tests: every feed owner of this isolate goes silent
/// as a killed request would (see [`Feed::silence_owner`]). Returns how many.
pub(crate) fn silence_owners() -> usize {
    let feeds: Vec<Rc<Feed>> =
        FEEDS.with(|feeds| feeds.borrow().values().flatten().cloned().collect());
    let owners: Vec<Rc<Client>> = feeds.iter().filter_map(|f| f.silence_owner()).collect();
    for owner in &owners {
        owner.silence();
    }
    owners.len()
}

/// One attempt of [`join`]: `false` when the feed could not take the client.
async fn try_join(
    feed: &Rc<Feed>,
    client: &Rc<Client>,
    index: usize,
    stream: &StreamName,
    resume: Option<Position>,
) -> worker::Result<bool> {
    if !feed.ensure_live(client).await {
        return Ok(false);
    }
    // A client without Last-Event-ID joins with the `initial` frame the
    // feed's last message carried, and one resuming from a position the
    // feed still holds with the messages after it: no request to the
    // object, so a crowd (re)connecting costs it nothing. Checked and
    // attached in one synchronous step.
    let from_feed = match resume {
        None => feed.initial.borrow().clone().map(|frames| Opening {
            after: feed.number.get(),
            frames,
        }),
        Some(position) => feed.anchor(position).map(|after| Opening {
            after,
            frames: Uint8Array::new_with_length(0),
        }),
    };
    if let Some(opening) = from_feed {
        return Ok(feed.attach(client, index, &opening));
    }
    let opening = StreamStub::of(client.env(), stream)?
        .opening(resume)
        .await?;
    // A client gone meanwhile is not attached; `open` sees it ended.
    Ok(client.has_ended() || feed.attach(client, index, &opening))
}

/// Joins `client` to a feed of `stream` as its member `index`, resuming
/// after `resume`: the client gets its opening, then every frame after it.
pub(crate) async fn join(
    client: &Rc<Client>,
    index: usize,
    stream: &StreamName,
    resume: Option<Position>,
    group: usize,
) -> worker::Result<Rc<Feed>> {
    let env = client.env();
    for _ in 0..ATTEMPTS {
        let feed = Feed::for_stream(env, stream, group);
        let joined = try_join(&feed, client, index, stream, resume).await;
        feed.joining.set(feed.joining.get().saturating_sub(1));
        match joined {
            Ok(true) => {
                // In the same step as the attach: from now on this client
                // may be asked to take the feed's socket over.
                client.add_feed(Rc::clone(&feed));
                return Ok(feed);
            }
            // A socket this request opened must not stay behind unowned.
            Ok(false) => feed.detach(client.id()),
            Err(err) => {
                feed.detach(client.id());
                return Err(err);
            }
        }
    }
    Err(worker::Error::RustError(format!(
        "{stream}: no feed could be joined"
    )))
}
