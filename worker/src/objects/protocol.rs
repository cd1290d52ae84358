//! The one protocol between the Worker and its Durable Objects, as plain
//! data: object names, one call enum per object kind with its encoding and
//! decoding, and the replies. Pure (no JavaScript): both ends are tested
//! natively here; `objects::stubs` carries calls over the runtime.
//!
//! The wire form stays HTTP (a Durable Object's `fetch`), because the
//! subscriptions are WebSocket upgrades and because every call must be
//! readable in a log. A call is a method and a path with its query; a reply
//! is a status 200 with a typed body (or 101 with a socket). Status codes
//! carry no meaning beyond "answered" and "this is no call" (400/404, a
//! [`Refusal`]).

use serde::{Deserialize, Serialize};
use shared::RoundEvent;
use shared::cursor::StreamName;

pub(crate) use crate::fanout::message::{FeedResume, MAX_REWIND, Start};
pub(crate) use crate::fanout::relay::JoinRefused;
pub(crate) use crate::fanout::relays::Ticket;

/// Name of a game's stream object. Prefixed so that a game and a type with
/// the same spelling (a game `dice` of type `dice`) never share an object.
pub(crate) fn game_object(slug: &str) -> String {
    format!("game:{slug}")
}

/// Name of a game type's stream object.
pub(crate) fn type_object(game_type: &str) -> String {
    format!("type:{game_type}")
}

/// Name of a stream's object.
pub(crate) fn stream_object(stream: &StreamName) -> String {
    match stream {
        StreamName::Game(slug) => game_object(slug),
        StreamName::Type(t) => type_object(t),
    }
}

/// Name of the `index`-th relay of the stream object `stream`.
pub(crate) fn relay_object(stream: &str, index: u32) -> String {
    format!("relay:{stream}:{index}")
}

/// The stream object and index of a relay's name (`relay:<stream>:<n>`).
pub(crate) fn parse_relay_name(name: &str) -> Option<(&str, u32)> {
    let (stream, index) = name.strip_prefix("relay:")?.rsplit_once(':')?;
    Some((stream, index.parse().ok()?))
}

/// Object name of the one directory.
pub(crate) const DIRECTORY: &str = "directory";

/// The header naming the object a call is for: an object is not told its
/// own name by the runtime, and needs it to name its relays and to answer.
pub(crate) const OBJECT_HEADER: &str = "x-object";

/// The two methods calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// Reads, and the socket upgrades.
    Get,
    /// Everything that changes something.
    Post,
}

/// A call as it travels: method, path with query, and whether it asks for
/// a WebSocket. Bodies travel beside it (see each call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wire {
    /// The method.
    pub(crate) verb: Verb,
    /// Path and query, e.g. `/rounds?limit=5&before=9`.
    pub(crate) target: String,
    /// A WebSocket upgrade.
    pub(crate) upgrade: bool,
}

/// A request that is no call: what the object answers (400 or 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// 400 (a call with bad parameters) or 404 (no such call).
    pub(crate) status: u16,
    /// Why, for the log.
    pub(crate) reason: String,
}

impl Refusal {
    /// A call with bad parameters (400).
    pub(crate) fn bad(reason: impl Into<String>) -> Self {
        Self {
            status: 400,
            reason: reason.into(),
        }
    }

    /// No such call (404).
    pub(crate) fn unknown() -> Self {
        Self {
            status: 404,
            reason: "no such call".into(),
        }
    }
}

fn wire(verb: Verb, path: &str, query: &[(&str, String)], upgrade: bool) -> Wire {
    let mut target = path.to_string();
    for (i, (name, value)) in query.iter().enumerate() {
        target.push(if i == 0 { '?' } else { '&' });
        target.push_str(name);
        target.push('=');
        target.push_str(value);
    }
    Wire {
        verb,
        target,
        upgrade,
    }
}

/// A call's path and query parameters.
struct Target {
    path: String,
    pairs: Vec<(String, String)>,
}

impl Target {
    fn parse(target: &str) -> Result<Self, Refusal> {
        let url = url::Url::parse("https://object.internal")
            .and_then(|base| base.join(target))
            .map_err(|e| Refusal::bad(format!("bad target: {e}")))?;
        Ok(Self {
            path: url.path().to_string(),
            pairs: url.query_pairs().into_owned().collect(),
        })
    }

    fn param<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Refusal> {
        match self.pairs.iter().find(|(key, _)| key == name) {
            None => Ok(None),
            Some((_, raw)) => raw
                .parse()
                .map(Some)
                .map_err(|_| Refusal::bad(format!("bad {name}"))),
        }
    }

    fn required<T: std::str::FromStr>(&self, name: &str) -> Result<T, Refusal> {
        self.param(name)?
            .ok_or_else(|| Refusal::bad(format!("{name} missing")))
    }
}

/// A call to a stream object (`game:<slug>`, `type:<type>`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StreamCall {
    /// Open a feed socket (a WebSocket upgrade) for an isolate's clients of
    /// the stream: every message from now on, after a first one holding
    /// what `resume` asks for. `full`: a relay that turned the last
    /// placement away for being full. Answered with the socket, or a
    /// [`PlacementHead`] on a relay.
    Subscribe {
        /// Where the socket starts.
        resume: FeedResume,
        /// A relay found full by the last placement.
        full: Option<u32>,
    },
    /// What a client must see first, and the number of the last message
    /// it already covers: an [`OpeningHead`] and the frames.
    Opening {
        /// Where the client's stream starts.
        start: Start,
    },
    /// The newest round's JSON, or `null` when none is stored.
    Latest,
    /// Up to `limit` rounds with ids below `before`, newest first: a JSON
    /// array.
    Rounds {
        /// How many.
        limit: u32,
        /// Ids below this one.
        before: i64,
    },
    /// Socket counts (the object's own and each relay's) and stored rounds:
    /// the stats document (JSON).
    Stats,
    /// Close every subscriber socket, relays' included: `{"closed": n}`.
    Disconnect,
    /// Store a batch of ingest's events (the JSON body): an `IngestReply`.
    Store(Vec<RoundEvent>),
    /// A relay has no socket left.
    RelayIdle {
        /// The relay's index.
        relay: u32,
    },
    /// The stream's viewers: [`Viewers`].
    Viewers,
    /// The stream's figures per minute over the last `minutes` minutes:
    /// `metrics::series::Series` (JSON).
    Series {
        /// 1 to `metrics::series::KEEP_MINUTES`.
        minutes: u32,
    },
    /// What a scrape reads of the stream, without calling its relays:
    /// `metrics::exposition::StreamFigures` (JSON).
    Figures,
    /// A relay's sockets serve this many clients.
    RelayViewers {
        /// The relay's index.
        relay: u32,
        /// Clients its sockets serve.
        viewers: u64,
    },
}

impl StreamCall {
    /// The call on the wire; the body of [`StreamCall::Store`] is
    /// [`StreamCall::body`].
    pub(crate) fn encode(&self) -> Wire {
        match self {
            Self::Subscribe { resume, full } => {
                let mut query = Vec::new();
                match resume {
                    FeedResume::Live => {}
                    FeedResume::Start => query.push(("from", "start".to_string())),
                    FeedResume::At(id) => query.push(("last_event_id", id.to_string())),
                }
                if let Some(relay) = full {
                    query.push(("full", relay.to_string()));
                }
                wire(Verb::Get, "/subscribe", &query, true)
            }
            Self::Opening { start } => {
                let query = match start {
                    Start::Latest => Vec::new(),
                    Start::Rewind(n) => vec![("rewind", n.to_string())],
                    Start::After(id) => vec![("last_event_id", id.to_string())],
                };
                wire(Verb::Get, "/opening", &query, false)
            }
            Self::Latest => wire(Verb::Get, "/latest", &[], false),
            Self::Rounds { limit, before } => wire(
                Verb::Get,
                "/rounds",
                &[("limit", limit.to_string()), ("before", before.to_string())],
                false,
            ),
            Self::Stats => wire(Verb::Get, "/stats", &[], false),
            Self::Disconnect => wire(Verb::Post, "/disconnect", &[], false),
            Self::Store(_) => wire(Verb::Post, "/store", &[], false),
            Self::RelayIdle { relay } => wire(
                Verb::Post,
                "/relay-idle",
                &[("relay", relay.to_string())],
                false,
            ),
            Self::Viewers => wire(Verb::Get, "/viewers", &[], false),
            Self::Series { minutes } => wire(
                Verb::Get,
                "/series",
                &[("minutes", minutes.to_string())],
                false,
            ),
            Self::Figures => wire(Verb::Get, "/figures", &[], false),
            Self::RelayViewers { relay, viewers } => wire(
                Verb::Post,
                "/relay-viewers",
                &[
                    ("relay", relay.to_string()),
                    ("viewers", viewers.to_string()),
                ],
                false,
            ),
        }
    }

    /// The body the call carries, if any.
    pub(crate) fn body(&self) -> Option<Result<Vec<u8>, serde_json::Error>> {
        match self {
            Self::Store(events) => Some(serde_json::to_vec(events)),
            _ => None,
        }
    }

    /// Reads a call from its method, target and body.
    pub(crate) fn decode(verb: Verb, target: &str, body: &[u8]) -> Result<Self, Refusal> {
        let t = Target::parse(target)?;
        Ok(match (verb, t.path.as_str()) {
            (Verb::Get, "/subscribe") => Self::Subscribe {
                resume: match (t.param("last_event_id")?, t.param::<String>("from")?) {
                    (Some(position), _) => FeedResume::At(position),
                    (None, Some(from)) if from == "start" => FeedResume::Start,
                    (None, Some(_)) => return Err(Refusal::bad("bad from")),
                    (None, None) => FeedResume::Live,
                },
                full: t.param("full")?,
            },
            (Verb::Get, "/opening") => Self::Opening {
                start: match (t.param("last_event_id")?, t.param::<u32>("rewind")?) {
                    (Some(position), None) => Start::After(position),
                    (None, Some(n)) if (1..=MAX_REWIND).contains(&n) => Start::Rewind(n),
                    (None, None) => Start::Latest,
                    _ => return Err(Refusal::bad("bad opening")),
                },
            },
            (Verb::Get, "/latest") => Self::Latest,
            (Verb::Get, "/rounds") => Self::Rounds {
                limit: t.required("limit")?,
                before: t.required("before")?,
            },
            (Verb::Get, "/stats") => Self::Stats,
            (Verb::Post, "/disconnect") => Self::Disconnect,
            (Verb::Post, "/store") => Self::Store(
                serde_json::from_slice(body)
                    .map_err(|e| Refusal::bad(format!("bad events: {e}")))?,
            ),
            (Verb::Post, "/relay-idle") => Self::RelayIdle {
                relay: t.required("relay")?,
            },
            (Verb::Get, "/viewers") => Self::Viewers,
            (Verb::Get, "/series") => Self::Series {
                minutes: crate::metrics::series::parse_minutes(
                    t.param::<String>("minutes")?.as_deref(),
                )
                .map_err(Refusal::bad)?,
            },
            (Verb::Get, "/figures") => Self::Figures,
            (Verb::Post, "/relay-viewers") => Self::RelayViewers {
                relay: t.required("relay")?,
                viewers: t.required("viewers")?,
            },
            _ => return Err(Refusal::unknown()),
        })
    }
}

/// Reads the little-endian `f64` at `at` as an integer that JavaScript
/// numbers hold exactly.
fn exact_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    let v = f64::from_le_bytes(word);
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9_007_199_254_740_991.0)
        .then_some(v as u64)
}

/// The answer to a subscription placed on a relay: the [`Ticket`], then
/// the feed's first message (with its head), which it gets from here
/// rather than from the relay. Numbers are little-endian `f64`s, as in
/// the message head, so JavaScript could read them as easily.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlacementHead;

impl PlacementHead {
    /// Bytes before the first message.
    pub(crate) const LEN: usize = 24;

    /// The reply's first [`PlacementHead::LEN`] bytes.
    pub(crate) fn encode(ticket: &Ticket) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&f64::from(ticket.relay).to_le_bytes());
        out[8..16].copy_from_slice(&(ticket.after as f64).to_le_bytes());
        out[16..].copy_from_slice(&ticket.issued.to_le_bytes());
        out
    }

    /// The ticket of a reply's first [`PlacementHead::LEN`] bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Ticket> {
        let issued = f64::from_le_bytes(bytes.get(16..24)?.try_into().ok()?);
        Some(Ticket {
            relay: u32::try_from(exact_at(bytes, 0)?).ok()?,
            after: exact_at(bytes, 8)?,
            issued: issued.is_finite().then_some(issued)?,
        })
    }
}

/// The answer to [`StreamCall::Opening`]: the number of the last message
/// the opening covers (8 bytes, as in [`PlacementHead`]), then its frames.
pub(crate) struct OpeningHead;

impl OpeningHead {
    /// Bytes before the frames.
    pub(crate) const LEN: usize = 8;

    /// The reply's first [`OpeningHead::LEN`] bytes.
    pub(crate) fn encode(after: u64) -> [u8; Self::LEN] {
        (after as f64).to_le_bytes()
    }

    /// The number of a reply's first [`OpeningHead::LEN`] bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<u64> {
        exact_at(bytes, 0)
    }
}

/// A call to a relay (`relay:<stream>:<n>`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RelayCall {
    /// Open a subscriber socket (a WebSocket upgrade) with a ticket of the
    /// stream object; a [`JoinReply`] when it is refused.
    Join(Ticket),
    /// One message of frames (the body, read by the relay itself) for
    /// every socket; `prev`: the push the stream object last delivered to
    /// this relay, when it knows. A [`RelayCount`].
    Push {
        /// The push's number.
        number: u64,
        /// The push last delivered here.
        prev: Option<u64>,
    },
    /// The relay's socket count: a [`RelayCount`].
    Stats,
    /// Close every socket: a [`RelayCount`] of those closed.
    Disconnect,
    /// The stream forgot this relay (or places on it again) when its last
    /// message was `after`: end every stream, drop what is kept in memory,
    /// and take no ticket from before.
    Stop {
        /// The stream's last message number then.
        after: u64,
    },
    /// The stream's viewers, for every socket: a [`RelayCount`].
    Viewers(u64),
}

impl RelayCall {
    /// The call on the wire (a push's message travels as the body).
    pub(crate) fn encode(&self) -> Wire {
        match self {
            Self::Join(ticket) => wire(
                Verb::Get,
                "/join",
                &[
                    ("relay", ticket.relay.to_string()),
                    ("after", ticket.after.to_string()),
                    ("issued", ticket.issued.to_string()),
                ],
                true,
            ),
            Self::Push { number, prev } => {
                let mut query = vec![("number", number.to_string())];
                if let Some(prev) = prev {
                    query.push(("prev", prev.to_string()));
                }
                wire(Verb::Post, "/push", &query, false)
            }
            Self::Stats => wire(Verb::Get, "/stats", &[], false),
            Self::Disconnect => wire(Verb::Post, "/disconnect", &[], false),
            Self::Stop { after } => {
                wire(Verb::Post, "/stop", &[("after", after.to_string())], false)
            }
            Self::Viewers(viewers) => wire(
                Verb::Post,
                "/viewers",
                &[("viewers", viewers.to_string())],
                false,
            ),
        }
    }

    /// Reads a call from its method and target.
    pub(crate) fn decode(verb: Verb, target: &str) -> Result<Self, Refusal> {
        let t = Target::parse(target)?;
        Ok(match (verb, t.path.as_str()) {
            (Verb::Get, "/join") => Self::Join(Ticket {
                relay: t.required("relay")?,
                after: t.required("after")?,
                issued: t.required("issued")?,
            }),
            (Verb::Post, "/push") => Self::Push {
                number: t.required("number")?,
                prev: t.param("prev")?,
            },
            (Verb::Get, "/stats") => Self::Stats,
            (Verb::Post, "/disconnect") => Self::Disconnect,
            (Verb::Post, "/stop") => Self::Stop {
                after: t.required("after")?,
            },
            (Verb::Post, "/viewers") => Self::Viewers(t.required("viewers")?),
            _ => return Err(Refusal::unknown()),
        })
    }
}

/// The body of a refused join (a join that is not refused is answered with
/// its socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JoinReply {
    /// Why.
    pub(crate) refused: JoinRefused,
}

/// The answer of a relay: its socket count, and which instance answered
/// (random per construction: it changes when the relay slept and was rebuilt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RelayCount {
    /// Sockets held (or closed, for a disconnect).
    pub(crate) sockets: u64,
    /// The instance's id.
    pub(crate) instance: String,
}

/// The answer of [`StreamCall::Viewers`], and `GET /api/games/:game/viewers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Viewers {
    /// Clients the stream has open, across every isolate and relay.
    pub(crate) viewers: u64,
}

/// A text message on a feed socket (its frames travel as binary messages):
/// the feed tells the other end (the stream object, or a relay) how many
/// clients it serves; the stream object, or a relay passing it on, tells
/// the feed the stream's viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketNote {
    /// Feed → object or relay: clients this socket serves.
    Members(u64),
    /// Object or relay → feed: clients of the stream.
    Viewers(u64),
}

impl SocketNote {
    /// The note as text: `members 12`, `viewers 1234`.
    pub(crate) fn encode(&self) -> String {
        match self {
            Self::Members(n) => format!("members {n}"),
            Self::Viewers(n) => format!("viewers {n}"),
        }
    }

    /// A note from text; `None` for anything else (a peer's noise is
    /// ignored).
    pub(crate) fn decode(text: &str) -> Option<Self> {
        let (kind, n) = text.split_once(' ')?;
        let n = n.parse().ok()?;
        match kind {
            "members" => Some(Self::Members(n)),
            "viewers" => Some(Self::Viewers(n)),
            _ => None,
        }
    }
}

/// The answer of [`StreamCall::Disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Closed {
    /// Streams ended.
    pub(crate) closed: u64,
}

/// One game as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GameEntry {
    /// Slug.
    pub(crate) slug: String,
    /// `games.id`.
    pub(crate) game_id: i64,
    /// Type.
    #[serde(rename = "type")]
    pub(crate) game_type: String,
    /// Highest round id stored for the game.
    pub(crate) latest_round_id: i64,
}

/// A call to the directory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DirectoryCall {
    /// Every known game: a JSON array of [`GameEntry`].
    Games,
    /// Record what a stored batch taught about games (the JSON body).
    Upsert(Vec<GameEntry>),
    /// Fault injection (only with `ALLOW_FAULTS`): fail every other call
    /// while on.
    Fault(bool),
    /// An isolate let this many admissions in failing open.
    AddFailedOpen(u64),
    /// Admissions let in failing open over all isolates: [`FailedOpen`].
    FailedOpen,
}

/// The answer of [`DirectoryCall::FailedOpen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailedOpen {
    /// Since the directory was created.
    pub(crate) failed_open: u64,
}

impl DirectoryCall {
    /// The call on the wire; the body of [`DirectoryCall::Upsert`] is
    /// [`DirectoryCall::body`].
    pub(crate) fn encode(&self) -> Wire {
        match self {
            Self::Games => wire(Verb::Get, "/games", &[], false),
            Self::Upsert(_) => wire(Verb::Post, "/upsert", &[], false),
            Self::Fault(on) => wire(Verb::Post, "/fault", &[("failing", on.to_string())], false),
            Self::AddFailedOpen(n) => {
                wire(Verb::Post, "/failed-open", &[("n", n.to_string())], false)
            }
            Self::FailedOpen => wire(Verb::Get, "/failed-open", &[], false),
        }
    }

    /// The body the call carries, if any.
    pub(crate) fn body(&self) -> Option<Result<Vec<u8>, serde_json::Error>> {
        match self {
            Self::Upsert(entries) => Some(serde_json::to_vec(entries)),
            _ => None,
        }
    }

    /// Reads a call from its method, target and body.
    pub(crate) fn decode(verb: Verb, target: &str, body: &[u8]) -> Result<Self, Refusal> {
        let t = Target::parse(target)?;
        Ok(match (verb, t.path.as_str()) {
            (Verb::Get, "/games") => Self::Games,
            (Verb::Post, "/upsert") => Self::Upsert(
                serde_json::from_slice(body)
                    .map_err(|e| Refusal::bad(format!("bad entries: {e}")))?,
            ),
            (Verb::Post, "/fault") => Self::Fault(t.required("failing")?),
            (Verb::Post, "/failed-open") => Self::AddFailedOpen(t.required("n")?),
            (Verb::Get, "/failed-open") => Self::FailedOpen,
            _ => return Err(Refusal::unknown()),
        })
    }
}

#[cfg(test)]
mod tests;
