//! The life of a feed, pure: an isolate's clients of one stream sharing one
//! socket to the stream object (or a relay). `clients::feed` feeds it the
//! socket's messages, joins, departures and timer ticks, and carries out
//! the [`Action`]s it returns; every ordering rule is here, tested natively.
//!
//! The socket lives in one member's request, the owner's (workerd ties a
//! socket to the request that opened it). When the owner leaves, or after
//! `rotate_after` units of work done in its request (see [`work`]), another
//! member, the heir,
//! is asked to open the next socket, which resumes after the last position
//! the feed delivered: nothing is lost or repeated in between.
//!
//! Every message carries its number in the stream and the position after
//! it (see `fanout::message`). A member joins with an opening that covers
//! up to some message number: messages after it come from the feed, those
//! the feed delivered since from its ring, and those still on their way are
//! skipped for it.

use shared::cursor::Position;

use crate::fanout::message::{FeedResume, MessageHead};
use crate::fanout::ring::Ring;
use crate::fanout::viewers::{Tell, Throttle};

/// Messages kept for clients still joining: at most this many…
pub(crate) const RING_MESSAGES: usize = 64;
/// …and none older than this…
pub(crate) const RING_MS: f64 = 10_000.0;
/// …and no more bytes than this per feed (an isolate keeps one ring per
/// stream it serves, within its 128 MB).
pub(crate) const RING_BYTES: usize = 1024 * 1024;

/// A member's id, unique in the isolate.
pub(crate) type MemberId = u64;

/// Bytes of a message rewritten for a member of a multiplexed connection
/// that count as one more unit of work (see [`work`]).
///
/// A frame for a client of one stream goes out as the same JS buffer; one
/// for a member of a multiplexed connection is copied into wasm, its ids
/// rewritten into the connection's cursor, and copied out. Measured with
/// `BENCH_EXTRAS_BYTES=4096 BENCH_MULTIPLEXED=1 bash scripts/bench-edge.sh`
/// against the same run without `BENCH_MULTIPLEXED` (1000 clients, workerd
/// CPU per client per round): a delivery costs about 85 µs; the rewrite
/// adds about 3 µs at 150-byte frames and 14 to 25 µs at 4 KiB, about
/// 5 µs per KiB, so one unit (85 µs) is rewritten with about 16 KiB. Half
/// that, rounded up per message, keeps the count on the safe side.
pub(crate) const REWRITE_BYTES_PER_UNIT: usize = 8 * 1024;

/// The work of handing a message of `bytes` bytes to one member: 1, plus,
/// for a member whose frames are rewritten (a multiplexed connection's),
/// one unit per started [`REWRITE_BYTES_PER_UNIT`].
pub(crate) fn work(rewrites: bool, bytes: usize) -> u64 {
    if rewrites {
        1 + bytes.div_ceil(REWRITE_BYTES_PER_UNIT) as u64
    } else {
        1
    }
}

/// What the core needs of a member (a client's stream, in the shell).
pub(crate) trait Handle: Clone {
    /// Its id.
    fn id(&self) -> MemberId;
    /// Still connected: it may be asked to take the socket over.
    fn alive(&self) -> bool;
    /// When its own timer last ran (ms); `None` once it is gone.
    fn last_tick(&self) -> Option<f64>;
    /// Its frames are rewritten (a member of a multiplexed connection),
    /// which costs the owner's request more (see [`work`]).
    fn rewrites(&self) -> bool {
        false
    }
}

/// A message's frames: the shell's JS buffer, or anything in tests.
pub(crate) trait Frames: Clone {
    /// Whether there are none (a message that only moves the position).
    fn is_empty(&self) -> bool;
    /// Their size in bytes.
    fn len(&self) -> usize;
}

/// Where a feed is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Made; nobody opens its socket yet.
    Idle,
    /// A joiner opens the first socket; joiners wait for its first message.
    Opening,
    /// The last socket was closed and `heir` was asked to open the next
    /// one; joiners wait for it rather than open one that would skip what
    /// the members have not seen yet.
    HandingOver {
        /// The member asked.
        heir: MemberId,
    },
    /// The socket's first message arrived: frames flow.
    Live,
    /// Failed or left empty: no longer listed, joins go elsewhere.
    Closed,
}

/// Where a call into the feed runs (see [`FeedCore::report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A callback of the socket: in its owner's request.
    Socket,
    /// In this member's own request: its timer's tick, or its join.
    Member(MemberId),
}

/// What the shell must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action<F, M> {
    /// Hand `frames` to each member, as its member stream `usize`.
    Deliver {
        /// One message's frames.
        frames: F,
        /// The members and their member stream index.
        to: Vec<(M, usize)>,
    },
    /// End this member's stream (the browser reconnects and resumes).
    End(M),
    /// Close the current socket (it was handed over, or the feed closed).
    CloseSocket,
    /// Ask this member, from its own request, to open the next socket
    /// (its wake promise).
    Wake(M),
    /// Open the next socket now, from this member's request (it is running:
    /// the watchdog found the keeper silent).
    TakeOver(M),
    /// Answer the joiners waiting for the socket: live, or failed.
    Answer(bool),
    /// The keeper was silent this long (ms): said in the log.
    KeeperSilent(f64),
}

struct Member<M> {
    handle: M,
    /// [`Handle::rewrites`], read once.
    rewrites: bool,
    index: usize,
    /// The last message number this member already has.
    after: u64,
}

/// See the module documentation.
pub(crate) struct FeedCore<F, M> {
    phase: Phase,
    /// The member whose request holds the current socket.
    owner: Option<MemberId>,
    /// The keeper (the socket's owner, or the heir asked to open the next
    /// socket) and since when; its own timer ticks show it is alive.
    keeper: Option<(M, f64)>,
    members: Vec<Member<M>>,
    /// Clients on their way to joining: they count against the group.
    joining: usize,
    /// Number of the last message received.
    number: u64,
    /// The stream's position after it (`None`: no round yet).
    position: Option<Position>,
    /// The `initial` frame a client joining now gets (empty: no round
    /// yet); `None` after a message that did not end its batch.
    initial: Option<F>,
    /// Recent messages with the position after each.
    ring: Ring<(Option<Position>, F)>,
    /// Messages before this one cannot anchor a resume (see [`Self::anchor`]).
    anchors_from: u64,
    /// Joiners whose opening is at least this number get what they miss
    /// from the ring.
    covered_from: u64,
    /// The member count last told to the socket's other end (see
    /// [`Self::report`]).
    reported: Throttle,
    /// The stream's viewers as the other end last told them.
    viewers: Option<u64>,
    /// Work done since the current socket opened (see [`work`]): it runs in the owner's request and counts
    /// against its CPU limit, so past `rotate_after` another member takes
    /// the socket over.
    spent: u64,
    rotate_after: u64,
}

impl<F: Frames, M: Handle> FeedCore<F, M> {
    /// A new feed; its owner hands the socket on after `rotate_after` units
    /// of work, and tells its member count at most every `viewers_every_ms`.
    pub(crate) fn new(rotate_after: u64, viewers_every_ms: f64) -> Self {
        Self {
            phase: Phase::Idle,
            owner: None,
            keeper: None,
            members: Vec::new(),
            joining: 0,
            number: 0,
            position: None,
            initial: None,
            ring: Ring::new(RING_MESSAGES, RING_MS, RING_BYTES),
            anchors_from: 0,
            covered_from: u64::MAX,
            reported: Throttle::new(viewers_every_ms),
            viewers: None,
            spent: 0,
            rotate_after: rotate_after.max(1),
        }
    }

    /// Where the feed is.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the socket delivers.
    pub(crate) fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Whether the feed is done with.
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes its ring keeps.
    #[cfg(test)]
    pub(crate) fn kept_bytes(&self) -> usize {
        self.ring.bytes()
    }

    /// Whether one more client fits (`group` 0: no limit).
    pub(crate) fn has_room(&self, group: usize) -> bool {
        !self.is_closed() && (group == 0 || self.members.len() + self.joining < group)
    }

    /// A client starts joining.
    pub(crate) fn reserve(&mut self) {
        self.joining += 1;
    }

    /// A client is done joining (joined or not).
    pub(crate) fn unreserve(&mut self) {
        self.joining = self.joining.saturating_sub(1);
    }

    /// A joiner finds the feed idle: it opens the socket (`true`), and
    /// others wait.
    pub(crate) fn begin_opening(&mut self) -> bool {
        let idle = self.phase == Phase::Idle;
        if idle {
            self.phase = Phase::Opening;
        }
        idle
    }

    /// The socket opened from `owner`'s request is wired and accepted.
    pub(crate) fn wired(&mut self, owner: M, now: f64) {
        self.owner = Some(owner.id());
        self.keeper = Some((owner, now));
    }

    /// The member that owns the socket, if it is a member.
    pub(crate) fn owner(&self) -> Option<M> {
        let owner = self.owner?;
        self.members
            .iter()
            .find(|m| m.handle.id() == owner)
            .map(|m| m.handle.clone())
    }

    /// One message from the socket, with its `frames` and the `initial`
    /// frame of a client joining right after it (if it ends its batch).
    pub(crate) fn on_message(
        &mut self,
        head: &MessageHead,
        frames: F,
        initial: Option<F>,
        now: f64,
    ) -> Vec<Action<F, M>> {
        self.initial = initial;
        let previous = self.number;
        self.number = head.number.max(previous);
        self.position = head.position;
        if self.phase != Phase::Live {
            return self.first_message(head.number, previous, frames, now);
        }
        let bytes = frames.len();
        if let Some(dropped) =
            self.ring
                .push(head.number, now, (head.position, frames.clone()), bytes)
        {
            self.covered_from = dropped;
        }
        if frames.is_empty() {
            // A silent change (a backfill) moved the position without
            // frames; a resume from before it is the object's to plan.
            self.anchors_from = head.number;
            return Vec::new();
        }
        self.deliver(head.number, frames, now)
    }

    /// The first message of a socket: the feed is live. After a take-over
    /// it holds what the members missed since the old socket's last
    /// message (`previous`): members whose opening reaches into that span
    /// cannot be served without a repeat and are ended (they resume).
    fn first_message(
        &mut self,
        number: u64,
        previous: u64,
        frames: F,
        now: f64,
    ) -> Vec<Action<F, M>> {
        self.ring.clear();
        self.covered_from = number;
        self.anchors_from = number;
        self.phase = Phase::Live;
        // A new socket: its other end knows nothing of this feed yet.
        self.reported.forget();
        self.spent = 0;
        let mut actions = Vec::new();
        if !frames.is_empty() {
            let (overlapping, kept) = std::mem::take(&mut self.members)
                .into_iter()
                .partition(|m| m.after > previous && m.after < number);
            self.members = kept;
            let overlapping: Vec<Member<M>> = overlapping;
            actions.extend(overlapping.into_iter().map(|m| Action::End(m.handle)));
            actions.extend(self.deliver(number, frames, now));
        }
        actions.push(Action::Answer(true));
        actions
    }

    fn deliver(&mut self, number: u64, frames: F, now: f64) -> Vec<Action<F, M>> {
        let bytes = frames.len();
        let mut spent = 0;
        let to: Vec<(M, usize)> = self
            .members
            .iter()
            .filter(|m| m.after < number)
            .inspect(|m| spent += work(m.rewrites, bytes))
            .map(|m| (m.handle.clone(), m.index))
            .collect();
        self.spent += spent;
        let mut actions = vec![Action::Deliver { frames, to }];
        if self.spent >= self.rotate_after {
            self.spent = 0;
            if let Some(owner) = self.owner {
                actions.extend(self.hand_over(owner, now));
            }
        }
        actions
    }

    /// The member count to tell the socket's other end, if it is due: only
    /// from the owner's request (the socket's own callbacks, or the owner's
    /// timer or join: workerd lets no other request write to the socket),
    /// while the feed is live and has members (an empty one closes its
    /// socket, which counts it out), at once on a new socket, and then at
    /// most once per period (a crowd joining costs one message per period,
    /// not one per client). Offered again at every message and owner tick,
    /// so no change stays untold.
    pub(crate) fn report(&mut self, from: Caller, now: f64) -> Option<u64> {
        let owner = self.owner?;
        if self.phase != Phase::Live || self.members.is_empty() {
            return None;
        }
        if let Caller::Member(id) = from
            && id != owner
        {
            return None;
        }
        match self.reported.offer(self.members.len() as u64, now) {
            Tell::Now(count) => Some(count),
            Tell::At(_) | Tell::Nothing => None,
        }
    }

    /// The other end told the stream's viewers: the members to tell.
    pub(crate) fn viewers(&mut self, viewers: u64) -> Vec<(M, usize)> {
        self.viewers = Some(viewers);
        self.members
            .iter()
            .map(|m| (m.handle.clone(), m.index))
            .collect()
    }

    /// The stream's viewers, once the other end told them: a member joining
    /// gets them right after its opening.
    pub(crate) fn viewers_known(&self) -> Option<u64> {
        self.viewers
    }

    /// What a client without `Last-Event-ID` joins with: the `initial`
    /// frame the feed's last message carried, and the number it covers.
    pub(crate) fn fresh_opening(&self) -> Option<(u64, F)> {
        self.initial.clone().map(|frames| (self.number, frames))
    }

    /// The number of the message after which a client that last saw
    /// `position` resumes, when the feed can serve it: the current position,
    /// or the position after a message still in the ring (and after the last
    /// silent change). Else the object plans the resume. (A message still
    /// in the ring is covered: only dropped ones are not.)
    pub(crate) fn anchor(&self, position: Position) -> Option<u64> {
        if self.position == Some(position) {
            return Some(self.number);
        }
        self.ring
            .iter()
            .rev()
            .find(|kept| kept.item.0 == Some(position))
            .map(|kept| kept.number)
            .filter(|n| *n >= self.anchors_from)
    }

    /// Adds a member whose opening covers up to message `after` with
    /// `frames`: returns what to hand it first (the opening, then what the
    /// feed delivered since, from the ring), or `None` if the feed can no
    /// longer tell which messages it lacks (it asks again).
    pub(crate) fn attach(
        &mut self,
        handle: M,
        index: usize,
        after: u64,
        frames: F,
    ) -> Option<Vec<F>> {
        if self.phase != Phase::Live || after < self.covered_from {
            return None;
        }
        let mut first = vec![frames];
        if after < self.number {
            first.extend(self.ring.after(after).map(|kept| kept.item.1.clone()));
        }
        self.members.push(Member {
            rewrites: handle.rewrites(),
            handle,
            index,
            after: after.max(self.number),
        });
        Some(first)
    }

    /// A member left. If it held the socket (or was asked to open the
    /// next), another member takes over; a feed without members closes.
    pub(crate) fn detach(&mut self, id: MemberId, now: f64) -> Vec<Action<F, M>> {
        self.members.retain(|m| m.handle.id() != id);
        let owned = self.owner == Some(id);
        let heir_left = self.phase == Phase::HandingOver { heir: id };
        if !owned && !heir_left {
            return Vec::new();
        }
        if self.members.is_empty() {
            return self.close();
        }
        self.hand_over(id, now)
    }

    /// Closes the socket and asks a member other than `not` to open the
    /// next one; with no such member, the feed fails (every member then
    /// resumes on its own), unless `not` owns the socket and stays.
    fn hand_over(&mut self, not: MemberId, now: f64) -> Vec<Action<F, M>> {
        let heir = self
            .members
            .iter()
            .map(|m| &m.handle)
            .find(|h| h.id() != not && h.alive())
            .cloned();
        match heir {
            Some(heir) => {
                let mut actions = self.appoint(heir.clone(), now);
                actions.push(Action::Wake(heir));
                actions
            }
            // The owner is the only member and stays: it keeps paying only
            // for itself.
            None if self.owner == Some(not) => Vec::new(),
            None => self.fail(),
        }
    }

    /// Closes the socket and makes `heir` the member to open the next one.
    fn appoint(&mut self, heir: M, now: f64) -> Vec<Action<F, M>> {
        self.owner = None;
        self.phase = Phase::HandingOver { heir: heir.id() };
        self.keeper = Some((heir, now));
        vec![Action::CloseSocket]
    }

    /// The keeper's id: the heir asked to open the next socket, else the
    /// socket's owner.
    fn keeper_id(&self) -> Option<MemberId> {
        match self.phase {
            Phase::HandingOver { heir } => Some(heir),
            _ => self.owner,
        }
    }

    /// The watchdog, run on every member's timer tick (in its request).
    ///
    /// A keeper's request can end without its abort handler running (the
    /// runtime kills a request past its CPU limit, say): its socket's
    /// messages and its timer stop, and the members would wait on a silent
    /// feed while their own heartbeats keep their browsers from
    /// reconnecting. So a member that sees no tick of the keeper's own timer
    /// for `stale_after` ms (whether or not the keeper is a member yet: an
    /// opener may still be joining) takes the socket over itself, resuming
    /// after the last message delivered, and ends the silent keeper's stream
    /// (a keeper that was only slow reconnects and resumes).
    ///
    /// The same holds for any other member: one whose own timer has not run
    /// for `stale_after` ms was killed with its request, and would keep its
    /// slot under the key's limits (the others' ticks refresh every lease of
    /// the isolate). It is reaped: dropped and ended, which gives its slot
    /// back.
    pub(crate) fn watch(&mut self, member: &M, now: f64, stale_after: f64) -> Vec<Action<F, M>> {
        if self.is_closed() {
            return Vec::new();
        }
        let mut actions = self.reap(member, now, stale_after);
        actions.extend(self.watch_keeper(member, now, stale_after));
        actions
    }

    /// Drops and ends the members other than `watcher` and the keeper whose
    /// timer has been silent past `stale_after`.
    fn reap(&mut self, watcher: &M, now: f64, stale_after: f64) -> Vec<Action<F, M>> {
        let keeper = self.keeper_id();
        let (silent, kept): (Vec<Member<M>>, Vec<Member<M>>) = std::mem::take(&mut self.members)
            .into_iter()
            .partition(|m| {
                let id = m.handle.id();
                id != watcher.id()
                    && Some(id) != keeper
                    && m.handle.last_tick().is_some_and(|t| now - t > stale_after)
            });
        self.members = kept;
        silent.into_iter().map(|m| Action::End(m.handle)).collect()
    }

    fn watch_keeper(&mut self, member: &M, now: f64, stale_after: f64) -> Vec<Action<F, M>> {
        let Some(keeper_id) = self.keeper_id() else {
            return Vec::new();
        };
        if keeper_id == member.id() {
            return Vec::new();
        }
        let Some((keeper, since)) = self.keeper.clone() else {
            return Vec::new();
        };
        let seen = keeper.last_tick().map_or(since, |tick| tick.max(since));
        let silent = now - seen;
        if silent <= stale_after {
            return Vec::new();
        }
        let mut actions = vec![Action::KeeperSilent(silent)];
        actions.extend(self.appoint(member.clone(), now));
        actions.push(Action::TakeOver(member.clone()));
        if keeper.last_tick().is_some() {
            actions.push(Action::End(keeper));
        }
        actions
    }

    /// Whether `id` is the heir asked to open the next socket.
    pub(crate) fn is_heir(&self, id: MemberId) -> bool {
        self.phase == Phase::HandingOver { heir: id }
    }

    /// Where the heir `id`'s socket starts: after the last message
    /// delivered. `None` when `id` is no longer the heir.
    pub(crate) fn take_over(&self, id: MemberId) -> Option<FeedResume> {
        self.is_heir(id).then_some(match self.position {
            Some(position) => FeedResume::At(position),
            None => FeedResume::Start,
        })
    }

    /// The socket closed, could not be opened, or its opening took too
    /// long: every member's stream ends (browsers reconnect and resume),
    /// and joiners go elsewhere.
    pub(crate) fn fail(&mut self) -> Vec<Action<F, M>> {
        let mut actions = self.close();
        actions.extend(
            std::mem::take(&mut self.members)
                .into_iter()
                .map(|m| Action::End(m.handle)),
        );
        actions
    }

    /// A joiner waited longer than the opening may take: unless the socket
    /// went live meanwhile, the feed fails.
    pub(crate) fn wait_expired(&mut self) -> Vec<Action<F, M>> {
        match self.phase {
            Phase::Live | Phase::Closed => Vec::new(),
            _ => self.fail(),
        }
    }

    /// Unlists the feed and closes its socket; what it kept is freed.
    fn close(&mut self) -> Vec<Action<F, M>> {
        self.phase = Phase::Closed;
        self.owner = None;
        self.ring.clear();
        self.initial = None;
        vec![Action::CloseSocket, Action::Answer(false)]
    }
}

#[cfg(test)]
mod tests;
