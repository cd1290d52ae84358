//! The feed's rules, natively: hand-written cases for each rule, and a
//! model of a whole isolate (a stream object numbering messages, a feed,
//! clients joining, leaving, going silent) run through random histories,
//! checking that no client ever misses or repeats a frame.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use proptest::prelude::*;
use shared::cursor::Position;

use super::*;

/// Frames of a message: the numbers of the stream's messages they carry
/// (a take-over's first message carries several; a silent change none).
#[derive(Debug, Clone, PartialEq, Default)]
struct Carried(Vec<u64>);

impl Frames for Carried {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        // As if each message's frames were 100 KiB.
        self.0.len() * 100 * 1024
    }
}

/// A client as the model keeps it.
#[derive(Debug, Default)]
struct ClientState {
    alive: bool,
    /// Its timer stopped (the runtime killed its request).
    killed: bool,
    last_tick: f64,
    /// It holds everything up to this message number.
    start: u64,
    received: Vec<u64>,
    member: bool,
    /// Its `Handle::rewrites`.
    rewrites: bool,
}

type Clients = Rc<RefCell<BTreeMap<MemberId, ClientState>>>;

#[derive(Clone)]
struct C {
    id: MemberId,
    clients: Clients,
}

impl std::fmt::Debug for C {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "C{}", self.id)
    }
}

impl PartialEq for C {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Handle for C {
    fn id(&self) -> MemberId {
        self.id
    }
    fn alive(&self) -> bool {
        self.clients.borrow().get(&self.id).is_some_and(|c| c.alive)
    }
    fn last_tick(&self) -> Option<f64> {
        let clients = self.clients.borrow();
        let client = clients.get(&self.id)?;
        client.alive.then_some(client.last_tick)
    }
    fn rewrites(&self) -> bool {
        self.clients
            .borrow()
            .get(&self.id)
            .is_some_and(|c| c.rewrites)
    }
}

fn head(number: u64, position: u64) -> MessageHead {
    MessageHead {
        number,
        position: Some(Position::round(position as i64)),
        initial: Some(0),
    }
}

/// The isolate: a stream object, one feed, its clients.
struct World {
    feed: FeedCore<Carried, C>,
    clients: Clients,
    next_id: MemberId,
    /// The object's last message number; silent ones carry no frames.
    counter: u64,
    silent: Vec<u64>,
    /// The feed's socket is open and its messages reach the feed.
    socket: bool,
    /// Messages sent on the socket, not yet arrived (lost if the socket
    /// closes first).
    in_flight: std::collections::VecDeque<u64>,
    /// Whether the clients made from now on are multiplexed.
    rewriting: bool,
    /// Members asked to open the next socket, whose continuation has not
    /// run yet (a wake promise, or a spawned take-over).
    pending: Vec<C>,
    /// Joiners whose opening the object answered (covering up to a
    /// number, with frames, resuming after a start), not yet attached.
    openings: Vec<(C, u64, Carried, u64)>,
    now: f64,
}

/// What may happen next.
#[derive(Debug, Clone)]
enum Step {
    Publish,
    PublishSilent,
    Arrive,
    JoinFresh,
    /// Resume from the message `back` before the newest, from the ring if
    /// the feed can.
    JoinResume(u64),
    /// Resume from the message `back` before the newest with an opening
    /// the object answers now and the feed attaches later.
    JoinSlow(u64),
    Leave(usize),
    /// The runtime kills a member's request: its timer stops and, if it
    /// owns the socket, so do the socket's messages.
    Kill(usize),
    /// Pending continuations run.
    RunPending,
    /// Time passes and every live member's timer ticks.
    Tick(u32),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => Just(Step::Publish),
        1 => Just(Step::PublishSilent),
        4 => Just(Step::Arrive),
        3 => Just(Step::JoinFresh),
        3 => (0u64..80).prop_map(Step::JoinResume),
        2 => (0u64..80).prop_map(Step::JoinSlow),
        2 => (0usize..16).prop_map(Step::Leave),
        1 => (0usize..16).prop_map(Step::Kill),
        3 => Just(Step::RunPending),
        2 => (1u32..30).prop_map(Step::Tick),
    ];
    proptest::collection::vec(step, 1..160)
}

const STALE_AFTER: f64 = 3_000.0;

impl World {
    fn new(rotate_after: u64) -> Self {
        Self {
            feed: FeedCore::new(rotate_after, 10_000.0),
            clients: Rc::default(),
            next_id: 1,
            counter: 0,
            silent: Vec::new(),
            socket: false,
            in_flight: Default::default(),
            rewriting: false,
            pending: Vec::new(),
            openings: Vec::new(),
            now: 1_000.0,
        }
    }

    fn client(&mut self) -> C {
        let id = self.next_id;
        self.next_id += 1;
        self.clients.borrow_mut().insert(
            id,
            ClientState {
                alive: true,
                last_tick: self.now,
                rewrites: self.rewriting,
                ..ClientState::default()
            },
        );
        C {
            id,
            clients: Rc::clone(&self.clients),
        }
    }

    fn members(&self) -> Vec<C> {
        self.clients
            .borrow()
            .iter()
            .filter(|(_, c)| c.member && c.alive)
            .map(|(id, _)| C {
                id: *id,
                clients: Rc::clone(&self.clients),
            })
            .collect()
    }

    fn carried_after(&self, after: u64) -> Carried {
        Carried(
            (after + 1..=self.counter)
                .filter(|n| !self.silent.contains(n))
                .collect(),
        )
    }

    fn apply(&mut self, actions: Vec<Action<Carried, C>>) {
        for action in actions {
            match action {
                Action::Deliver { frames, to } => {
                    for (client, _) in to {
                        if let Some(c) = self.clients.borrow_mut().get_mut(&client.id) {
                            c.received.extend(&frames.0);
                        }
                    }
                }
                Action::End(client) => self.end(client.id),
                Action::CloseSocket => {
                    self.socket = false;
                    self.in_flight.clear();
                }
                Action::Wake(client) | Action::TakeOver(client) => self.pending.push(client),
                Action::Answer(_) | Action::KeeperSilent(_) => {}
            }
        }
    }

    /// A client's stream ends: it leaves the feed, as the shell's `end`
    /// does.
    fn end(&mut self, id: MemberId) {
        let was = self
            .clients
            .borrow_mut()
            .get_mut(&id)
            .map(|c| std::mem::replace(&mut c.alive, false));
        if was == Some(true) {
            let actions = self.feed.detach(id, self.now);
            self.apply(actions);
        }
    }

    /// The object answers a new socket: its first message, numbered as the
    /// last message sent, with what `resume` asks for.
    fn open_socket(&mut self, by: C, resume: FeedResume) {
        self.feed.wired(by, self.now);
        self.socket = true;
        let frames = match resume {
            FeedResume::Live => Carried::default(),
            FeedResume::Start => self.carried_after(0),
            FeedResume::At(position) => self.carried_after(position.round as u64),
        };
        let actions = self.feed.on_message(
            &head(self.counter, self.counter),
            frames,
            Some(Carried::default()),
            self.now,
        );
        self.apply(actions);
    }

    fn publish(&mut self, silent: bool) {
        self.counter += 1;
        if silent {
            self.silent.push(self.counter);
        }
        if self.socket {
            self.in_flight.push_back(self.counter);
        }
    }

    /// The messages on their way reach the feed.
    fn arrive(&mut self) {
        while let Some(number) = self.in_flight.pop_front() {
            let frames = if self.silent.contains(&number) {
                Carried::default()
            } else {
                Carried(vec![number])
            };
            let actions = self.feed.on_message(
                &head(number, number),
                frames,
                Some(Carried::default()),
                self.now,
            );
            self.apply(actions);
        }
    }

    /// A round published and arrived.
    fn round(&mut self) {
        self.publish(false);
        self.arrive();
    }

    /// A client joins, resuming after `resume` (`None`: fresh), as
    /// `clients::feed::try_join` does; only once the feed is live (joiners
    /// wait for that otherwise).
    fn join(&mut self, resume: Option<u64>) {
        if self.feed.begin_opening() {
            let opener = self.client();
            self.open_socket(opener.clone(), FeedResume::Live);
            self.attach(opener, None);
            return;
        }
        if !self.feed.is_live() {
            return;
        }
        let client = self.client();
        self.attach(client, resume);
    }

    fn attach_opening(&mut self, client: C, after: u64, frames: Carried, start: u64) {
        let id = client.id;
        let first = if self.feed.is_live() {
            self.feed.attach(client, 0, after, frames)
        } else {
            None
        };
        let mut clients = self.clients.borrow_mut();
        let Some(c) = clients.get_mut(&id) else {
            return;
        };
        match first {
            Some(first) => {
                c.member = true;
                c.start = start;
                for frames in first {
                    c.received.extend(frames.0);
                }
            }
            // It asks again elsewhere: gone from here.
            None => c.alive = false,
        }
    }

    fn attach(&mut self, client: C, resume: Option<u64>) {
        let (after, frames, start) = match resume {
            None => match self.feed.fresh_opening() {
                Some((after, initial)) => (after, initial, after),
                None => return,
            },
            Some(from) => match self.feed.anchor(Position::round(from as i64)) {
                Some(after) => (after, Carried::default(), from),
                // The object plans the opening: everything after `from`.
                None => (self.counter, self.carried_after(from), from),
            },
        };
        let id = client.id;
        match self.feed.attach(client, 0, after, frames) {
            Some(first) => {
                let mut clients = self.clients.borrow_mut();
                let Some(c) = clients.get_mut(&id) else {
                    return;
                };
                c.member = true;
                c.start = start;
                for frames in first {
                    c.received.extend(frames.0);
                }
            }
            None => {
                // Not joined: it asks again elsewhere (gone from here).
                if let Some(c) = self.clients.borrow_mut().get_mut(&id) {
                    c.alive = false;
                }
                let actions = self.feed.detach(id, self.now);
                self.apply(actions);
            }
        }
    }

    fn nth_member(&self, n: usize) -> Option<C> {
        let members = self.members();
        (!members.is_empty()).then(|| members[n % members.len()].clone())
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Publish => self.publish(false),
            Step::PublishSilent => self.publish(true),
            Step::Arrive => self.arrive(),
            Step::JoinFresh => self.join(None),
            Step::JoinResume(back) => {
                let from = self.counter.saturating_sub(*back);
                if from > 0 && !self.silent.contains(&from) {
                    self.join(Some(from));
                }
            }
            Step::JoinSlow(back) => {
                let from = self.counter.saturating_sub(*back);
                if self.feed.is_live() && from > 0 && !self.silent.contains(&from) {
                    let client = self.client();
                    let frames = self.carried_after(from);
                    self.openings.push((client, self.counter, frames, from));
                }
            }
            Step::Leave(n) => {
                if let Some(member) = self.nth_member(*n) {
                    self.end(member.id);
                }
            }
            Step::Kill(n) => {
                if let Some(member) = self.nth_member(*n) {
                    if let Some(c) = self.clients.borrow_mut().get_mut(&member.id) {
                        c.killed = true;
                    }
                    if self.feed.owner().is_some_and(|o| o.id == member.id) {
                        // Its socket's messages no longer reach the feed.
                        self.socket = false;
                        self.in_flight.clear();
                    }
                    self.pending.retain(|p| p.id != member.id);
                }
            }
            Step::RunPending => {
                for heir in std::mem::take(&mut self.pending) {
                    let killed = self.clients.borrow().get(&heir.id).is_none_or(|c| c.killed);
                    if killed {
                        continue;
                    }
                    if let Some(resume) = self.feed.take_over(heir.id) {
                        self.open_socket(heir, resume);
                    }
                }
                for (client, after, frames, start) in std::mem::take(&mut self.openings) {
                    self.attach_opening(client, after, frames, start);
                }
            }
            Step::Tick(secs) => {
                self.now += f64::from(*secs) * 1000.0;
                for member in self.members() {
                    let ticking = {
                        let mut clients = self.clients.borrow_mut();
                        let Some(c) = clients.get_mut(&member.id) else {
                            continue;
                        };
                        if !c.killed {
                            c.last_tick = self.now;
                        }
                        !c.killed && c.alive
                    };
                    if ticking {
                        let actions = self.feed.watch(&member, self.now, STALE_AFTER);
                        self.apply(actions);
                    }
                }
            }
        }
    }

    /// Every client got, in order, exactly the frames after its start,
    /// with none missing in between and none twice.
    fn check(&self) -> Result<(), TestCaseError> {
        for (id, c) in self.clients.borrow().iter() {
            let Some(&last) = c.received.last() else {
                continue;
            };
            let want: Vec<u64> = (c.start + 1..=last)
                .filter(|n| !self.silent.contains(n))
                .collect();
            prop_assert_eq!(&c.received, &want, "client {} (start {})", id, c.start);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No gap and no repeat for any client, across joins (fresh, from the
    /// ring, from the object), departures, hand-overs, rotations and the
    /// watchdog's take-overs.
    #[test]
    fn no_client_misses_or_repeats_a_frame(steps in steps(), rotate in 1u64..40) {
        let mut world = World::new(rotate);
        for step in &steps {
            world.step(step);
            world.check()?;
        }
    }

    /// Members that stay get everything while a socket delivers: after the
    /// pending take-overs run and one more message is published, every
    /// member still there holds it.
    #[test]
    fn members_that_stay_are_served(steps in steps(), rotate in 1u64..40) {
        let mut world = World::new(rotate);
        for step in &steps {
            world.step(step);
        }
        // Let every pending take-over run (each may hand over again only
        // through a rotation, which needs frames).
        world.step(&Step::RunPending);
        world.step(&Step::RunPending);
        world.arrive();
        if world.socket && world.feed.is_live() {
            world.round();
            world.step(&Step::RunPending);
            let counter = world.counter;
            for member in world.members() {
                let clients = world.clients.borrow();
                let Some(c) = clients.get(&member.id) else { continue };
                prop_assert!(
                    c.received.contains(&counter) || c.killed,
                    "member {} missed {}: {:?}", member.id, counter, c.received
                );
            }
        }
        world.check()?;
    }
}

fn world_with_members(n: usize, rotate: u64) -> (World, Vec<C>) {
    let mut world = World::new(rotate);
    for _ in 0..n {
        world.join(None);
    }
    let members = world.members();
    assert_eq!(members.len(), n);
    (world, members)
}

fn received(world: &World, client: &C) -> Vec<u64> {
    world.clients.borrow()[&client.id].received.clone()
}

fn alive(world: &World, client: &C) -> bool {
    world.clients.borrow()[&client.id].alive
}

#[test]
fn the_first_joiner_opens_the_socket_and_later_ones_join_from_the_feed() {
    let mut world = World::new(1000);
    assert_eq!(world.feed.phase(), Phase::Idle);
    world.join(None);
    assert_eq!(world.feed.phase(), Phase::Live);
    world.round();
    world.join(None);
    world.round();
    let members = world.members();
    assert_eq!(received(&world, &members[0]), [1, 2]);
    assert_eq!(
        received(&world, &members[1]),
        [2],
        "joined after 1 with its initial"
    );
}

#[test]
fn an_owner_leaving_hands_the_socket_to_a_member_that_resumes() {
    let (mut world, members) = world_with_members(3, 1000);
    world.round();
    world.publish(false); // 2 is on its way when the owner leaves: lost
    world.end(members[0].id);
    assert_eq!(
        world.feed.phase(),
        Phase::HandingOver {
            heir: members[1].id
        }
    );
    assert!(!world.socket, "the old socket is closed");
    world.publish(false); // 3, on no socket
    world.step(&Step::RunPending);
    assert_eq!(world.feed.phase(), Phase::Live);
    world.round();
    assert_eq!(
        received(&world, &members[2]),
        [1, 2, 3, 4],
        "2 and 3 from the heir's socket"
    );
    world.check().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_socket_rotates_after_its_share_of_work() {
    let (mut world, members) = world_with_members(2, 4);
    world.round(); // 2 frames handed out
    world.round(); // 4: the owner hands the socket on
    assert_eq!(
        world.feed.phase(),
        Phase::HandingOver {
            heir: members[1].id
        }
    );
    world.step(&Step::RunPending);
    world.round();
    assert_eq!(world.feed.owner().map(|o| o.id), Some(members[1].id));
    assert_eq!(received(&world, &members[0]), [1, 2, 3]);
}

#[test]
fn rewriting_a_message_costs_by_its_bytes() {
    assert_eq!(work(false, 0), 1);
    assert_eq!(
        work(false, 256 * 1024),
        1,
        "a single stream's bytes go out as they are"
    );
    assert_eq!(work(true, 0), 1);
    assert_eq!(work(true, 150), 2);
    assert_eq!(work(true, REWRITE_BYTES_PER_UNIT), 2);
    assert_eq!(work(true, REWRITE_BYTES_PER_UNIT + 1), 3);
    assert_eq!(work(true, 256 * 1024), 33);
}

#[test]
fn members_of_multiplexed_connections_weigh_their_rewrites() {
    // A round here carries 100 KiB: 13 units more for each member whose
    // frames are rewritten.
    let per_member = work(true, 100 * 1024);
    assert_eq!(per_member, 14);
    // Two clients of one stream do 2 units a round: far from the bound.
    let (mut plain, _) = world_with_members(2, 2 * per_member);
    plain.round();
    assert_eq!(plain.feed.phase(), Phase::Live);
    // Two members of multiplexed connections reach it in one round.
    let mut world = World::new(2 * per_member);
    world.rewriting = true;
    world.join(None);
    world.join(None);
    let members = world.members();
    world.round();
    assert_eq!(
        world.feed.phase(),
        Phase::HandingOver {
            heir: members[1].id
        }
    );
}

#[test]
fn a_lone_owner_keeps_its_socket_and_an_empty_feed_closes() {
    let (mut world, members) = world_with_members(1, 1);
    world.round();
    world.round();
    assert_eq!(world.feed.phase(), Phase::Live, "nobody to hand over to");
    world.end(members[0].id);
    assert_eq!(world.feed.phase(), Phase::Closed);
    assert!(!world.feed.has_room(0));
}

#[test]
fn a_member_whose_opening_reaches_into_a_take_over_is_ended() {
    let (mut world, members) = world_with_members(2, 1000);
    world.round(); // the feed holds 1
    world.publish(false);
    world.publish(false); // 2 and 3 on their way
    // A client joins with the object's opening, which covers up to 3.
    let late = world.client();
    let first = world.feed.attach(late.clone(), 0, 3, Carried(vec![2, 3]));
    assert_eq!(first, Some(vec![Carried(vec![2, 3])]));
    if let Some(c) = world.clients.borrow_mut().get_mut(&late.id) {
        c.member = true;
        c.start = 1;
        c.received = vec![2, 3];
    }
    world.end(members[0].id); // 2 and 3 are lost with the owner's socket
    world.publish(false); // 4
    world.step(&Step::RunPending);
    // The heir's socket replays 2..=4: the late member would see 2 and 3
    // twice, so it is ended (it resumes) instead.
    assert_eq!(received(&world, &members[1]), [1, 2, 3, 4]);
    assert!(!alive(&world, &late));
    assert_eq!(received(&world, &late), [2, 3]);
    world.check().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_member_whose_opening_covers_the_replay_gets_only_what_follows() {
    let (mut world, members) = world_with_members(2, 1000);
    world.round();
    world.publish(false); // 2 on its way
    let late = world.client();
    world.feed.attach(late.clone(), 0, 2, Carried(vec![2]));
    if let Some(c) = world.clients.borrow_mut().get_mut(&late.id) {
        c.member = true;
        c.start = 1;
        c.received = vec![2];
    }
    world.end(members[0].id);
    world.step(&Step::RunPending); // replays 2, numbered 2: not for it
    world.round();
    assert!(alive(&world, &late));
    assert_eq!(received(&world, &late), [2, 3]);
}

#[test]
fn joins_from_the_ring_get_what_the_feed_delivered_since() {
    let (mut world, _) = world_with_members(1, 1000);
    for _ in 0..5 {
        world.round();
    }
    world.join(Some(2));
    let joined = world.members().pop().expect("joined");
    assert_eq!(received(&world, &joined), [3, 4, 5]);
    world.round();
    assert_eq!(received(&world, &joined), [3, 4, 5, 6]);
    // Past a silent change the ring cannot anchor: the object plans it.
    world.publish(true);
    world.arrive();
    assert_eq!(world.feed.anchor(Position::round(5)), None);
    assert_eq!(
        world.feed.anchor(Position::round(7)),
        Some(7),
        "the current position"
    );
}

#[test]
fn the_watchdog_takes_over_from_a_silent_keeper() {
    let (mut world, members) = world_with_members(2, 1000);
    world.step(&Step::Kill(0)); // the owner
    assert!(!world.socket);
    world.publish(false);
    world.step(&Step::Tick(2));
    assert_eq!(world.feed.phase(), Phase::Live, "not silent long enough");
    world.step(&Step::Tick(2));
    assert_eq!(
        world.feed.phase(),
        Phase::HandingOver {
            heir: members[1].id
        }
    );
    assert!(!alive(&world, &members[0]), "the silent keeper is ended");
    world.step(&Step::RunPending);
    world.round();
    assert_eq!(received(&world, &members[1]), [1, 2]);
}

#[test]
fn the_ring_is_bounded_by_bytes_and_freed_when_the_feed_closes() {
    let (mut world, members) = world_with_members(2, 1000);
    for _ in 0..20 {
        world.round();
    }
    // 20 messages of 100 KiB: the 1 MiB bound keeps the last 10.
    assert_eq!(world.feed.kept_bytes(), 10 * 100 * 1024);
    assert_eq!(world.feed.anchor(Position::round(11)), Some(11));
    assert_eq!(
        world.feed.anchor(Position::round(10)),
        None,
        "dropped: the object plans it"
    );
    world.end(members[0].id);
    world.end(members[1].id);
    assert!(world.feed.is_closed());
    assert_eq!(world.feed.kept_bytes(), 0, "freed at once");
    assert_eq!(world.feed.fresh_opening(), None);
}

#[test]
fn a_member_whose_timer_stopped_is_reaped_and_ended() {
    let (mut world, members) = world_with_members(3, 1000);
    world.step(&Step::Kill(2)); // not the owner: members[2]
    assert!(world.socket, "the owner's socket is untouched");
    world.step(&Step::Tick(2));
    world.round();
    assert_eq!(
        received(&world, &members[2]),
        [1],
        "still served: not silent long enough"
    );
    world.step(&Step::Tick(2));
    assert!(
        !alive(&world, &members[2]),
        "reaped: its stream ends, its slot is given back"
    );
    world.round();
    assert_eq!(received(&world, &members[2]), [1]);
    assert_eq!(received(&world, &members[1]), [1, 2]);
    assert_eq!(world.feed.phase(), Phase::Live, "nothing else changed");
}

#[test]
fn a_failed_socket_ends_every_member_and_answers_the_waiters() {
    let (mut world, _) = world_with_members(3, 1000);
    let actions = world.feed.fail();
    assert_eq!(actions[..2], [Action::CloseSocket, Action::Answer(false)]);
    assert_eq!(actions.len(), 5, "and an end per member");
    assert!(world.feed.is_closed());
    assert_eq!(world.feed.wait_expired(), Vec::new(), "closed already");
    let mut opening: FeedCore<Carried, C> = FeedCore::new(10, 10_000.0);
    assert!(opening.begin_opening());
    assert!(!opening.begin_opening(), "one opener");
    assert_eq!(
        opening.wait_expired(),
        [Action::CloseSocket, Action::Answer(false)]
    );
}

#[test]
fn the_member_count_is_told_from_the_owners_request_throttled() {
    let (mut world, members) = world_with_members(3, 1000);
    let owner = world.feed.owner().expect("an owner").id;
    let other = members.iter().find(|m| m.id != owner).expect("another").id;
    let now = world.now;
    // A new socket: told at once, from the socket's callbacks…
    assert_eq!(world.feed.report(Caller::Socket, now), Some(3));
    // …and then only when it changed, at most once per period.
    assert_eq!(world.feed.report(Caller::Member(owner), now + 1.0), None);
    world.join(None);
    assert_eq!(world.feed.report(Caller::Member(owner), now + 2.0), None);
    // Never from another member's request: workerd would refuse the send.
    // (Nor before the owner itself is a member: nothing to tell yet.)
    assert_eq!(
        world.feed.report(Caller::Member(other), now + 20_000.0),
        None
    );
    assert_eq!(
        world.feed.report(Caller::Member(owner), now + 20_000.0),
        Some(4)
    );
    // After a hand-over the new socket's other end is told at once.
    world.end(owner);
    world.step(&Step::RunPending);
    assert!(world.feed.is_live());
    assert_eq!(world.feed.report(Caller::Socket, now + 20_001.0), Some(3));
}

#[test]
fn viewers_told_by_the_other_end_reach_every_member_and_joiners() {
    let (mut world, members) = world_with_members(2, 1000);
    assert_eq!(world.feed.viewers_known(), None);
    let told: Vec<MemberId> = world.feed.viewers(7).iter().map(|(m, _)| m.id).collect();
    assert_eq!(told, members.iter().map(|m| m.id).collect::<Vec<_>>());
    assert_eq!(world.feed.viewers_known(), Some(7));
}

#[test]
fn a_feed_without_members_tells_nothing() {
    let mut world = World::new(1000);
    assert!(world.feed.begin_opening());
    let opener = world.client();
    world.open_socket(opener.clone(), FeedResume::Live);
    // Its opener is not a member yet: a 0 told now would make the 1 that
    // follows wait a whole period.
    assert_eq!(world.feed.report(Caller::Socket, world.now), None);
    world.attach(opener, None);
    assert_eq!(world.feed.report(Caller::Socket, world.now), Some(1));
}
