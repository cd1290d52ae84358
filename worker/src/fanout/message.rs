//! The messages a stream object sends on its sockets: each starts with a
//! [`MessageHead`]; an [`Outbox`] packs SSE frames into such messages.

use shared::cursor::Position;

/// Where a feed socket starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FeedResume {
    /// From now on: the first message holds no frames.
    Live,
    /// Everything stored: the stream had no round when last heard of.
    Start,
    /// Everything after this position (or a reset and the latest round
    /// when the stream no longer holds it).
    At(Position),
}

/// The most rounds a stream may open with (`rewind=N`).
pub(crate) const MAX_REWIND: u32 = 100;

/// Where one client's stream of one member starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// With the stream's latest round as `initial`.
    Latest,
    /// With the stream's last `n` rounds (1 to [`MAX_REWIND`]) by arrival
    /// as `message`, oldest first, and the updates sent since the first of
    /// them: `rewind=N` on a first connection.
    Rewind(u32),
    /// After this position: everything missed since (or a reset and the
    /// latest round when the stream no longer holds it).
    After(Position),
}

/// The head of every message a stream object sends on a socket: the
/// message's number in the stream (one counter for every socket and relay),
/// the stream's position once the message is read (`None`: no round yet),
/// and the length of the `initial` frame a client joining right after this
/// message would get (`None` when the message does not end its batch). Then
/// come that `initial` frame and the message's SSE frames, forwarded to
/// clients as they are. Four little-endian `f64`s (numbers and ids are exact
/// below 2^53; NaN for none) so JS can read them as easily as Rust.
///
/// Why the `initial` frame rides along: a new client without
/// `Last-Event-ID` then joins its isolate's feed without asking the object
/// for its opening, so a crowd (re)connecting costs the object nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageHead {
    pub(crate) number: u64,
    pub(crate) position: Option<Position>,
    pub(crate) initial: Option<u32>,
}

impl MessageHead {
    /// Bytes of a head.
    pub(crate) const LEN: usize = 32;

    /// The head as bytes.
    pub(crate) fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let round = self.position.map_or(f64::NAN, |p| p.round as f64);
        let update = self
            .position
            .and_then(|p| p.update)
            .map_or(f64::NAN, |u| u as f64);
        let initial = self.initial.map_or(f64::NAN, f64::from);
        out[..8].copy_from_slice(&(self.number as f64).to_le_bytes());
        out[8..16].copy_from_slice(&round.to_le_bytes());
        out[16..24].copy_from_slice(&update.to_le_bytes());
        out[24..].copy_from_slice(&initial.to_le_bytes());
        out
    }

    /// A head from bytes; `None` for one no stream object wrote.
    pub(crate) fn decode(bytes: &[u8; Self::LEN]) -> Option<Self> {
        let read = |i: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i..i + 8]);
            f64::from_le_bytes(word)
        };
        let exact = |v: f64| {
            (v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_991.0)
                .then_some(v as i64)
        };
        let number = exact(read(0)).and_then(|n| u64::try_from(n).ok())?;
        let position = exact(read(8)).map(|round| Position {
            round,
            update: exact(read(16)),
        });
        let initial = match read(24) {
            v if v.is_nan() => None,
            v => Some(exact(v).and_then(|n| u32::try_from(n).ok())?),
        };
        Some(Self {
            number,
            position,
            initial,
        })
    }

    /// The whole message: this head, the `initial` frame, the frames.
    pub(crate) fn message(
        number: u64,
        position: Option<Position>,
        initial: Option<&[u8]>,
        frames: &[u8],
    ) -> Vec<u8> {
        let head = Self {
            number,
            position,
            initial: initial.map(|i| i.len() as u32),
        };
        let initial = initial.unwrap_or_default();
        let mut out = Vec::with_capacity(Self::LEN + initial.len() + frames.len());
        out.extend_from_slice(&head.encode());
        out.extend_from_slice(initial);
        out.extend_from_slice(frames);
        out
    }
}

/// Largest message the object puts on a socket. Cloudflare caps a WebSocket
/// message at 1 MiB; a resume backlog of big rounds can be larger, so frames
/// are packed into messages of at most this size (a frame is never split).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Frames packed into socket messages, each with the position of its last
/// frame that has an id.
#[derive(Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<(Vec<u8>, Option<Position>)>,
}

impl Outbox {
    pub(crate) fn extend(&mut self, frame: Vec<u8>, id: Option<Position>) {
        match self.messages.last_mut() {
            Some((last, position)) if last.len() + frame.len() <= MAX_MESSAGE_BYTES => {
                last.extend(frame);
                *position = id.or(*position);
            }
            _ => self.messages.push((frame, id)),
        }
    }

    pub(crate) fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.messages.iter().map(|(bytes, _)| bytes.as_slice())
    }

    /// The messages with their heads, numbered from `first` on; `base`:
    /// the stream's position before them; `initial`: the `initial` frame
    /// once they are all read, carried by the last one.
    pub(crate) fn numbered(
        &self,
        first: u64,
        base: Option<Position>,
        initial: &[u8],
    ) -> Vec<Vec<u8>> {
        let mut position = base;
        let last = self.messages.len().saturating_sub(1);
        self.messages
            .iter()
            .enumerate()
            .map(|(i, (bytes, id))| {
                position = id.or(position);
                let initial = (i == last).then_some(initial);
                MessageHead::message(first + i as u64, position, initial, bytes)
            })
            .collect()
    }

    /// The first messages of a new socket: all numbered `after` (the last
    /// message sent before it), with the stream's position `head`; at least
    /// one, which tells the number even without frames.
    pub(crate) fn first_messages(
        &self,
        after: u64,
        head: Option<Position>,
        initial: &[u8],
    ) -> Vec<Vec<u8>> {
        if self.messages.is_empty() {
            return vec![MessageHead::message(after, head, Some(initial), &[])];
        }
        let last = self.messages.len() - 1;
        self.messages
            .iter()
            .enumerate()
            .map(|(i, (bytes, _))| {
                MessageHead::message(after, head, (i == last).then_some(initial), bytes)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_heads_round_trip() {
        for position in [
            None,
            Some(Position::round(12)),
            Some(Position {
                round: 12,
                update: Some(3),
            }),
            Some(Position::round(-5)),
            Some(Position::round((1 << 53) - 1)),
        ] {
            for initial in [None, Some(0), Some(77)] {
                let head = MessageHead {
                    number: 41,
                    position,
                    initial,
                };
                assert_eq!(MessageHead::decode(&head.encode()), Some(head));
            }
        }
        let mut junk = [0xffu8; MessageHead::LEN];
        assert_eq!(MessageHead::decode(&junk), None, "NaN number");
        junk[..8].copy_from_slice(&(-1f64).to_le_bytes());
        assert_eq!(MessageHead::decode(&junk), None, "negative number");
        junk[..8].copy_from_slice(&1f64.to_le_bytes());
        junk[24..].copy_from_slice(&(-3f64).to_le_bytes());
        assert_eq!(MessageHead::decode(&junk), None, "negative initial length");
        let message = MessageHead::message(5, None, Some(b"ini"), b"frames");
        assert_eq!(&message[MessageHead::LEN..], b"iniframes");
    }

    #[test]
    fn frames_are_packed_without_splitting_and_within_the_bound() {
        let mut out = Outbox::default();
        let small = vec![b'a'; 1000];
        let big = vec![b'b'; MAX_MESSAGE_BYTES + 10];
        for i in 0..300 {
            out.extend(small.clone(), Some(Position::round(i)));
        }
        out.extend(big.clone(), None);
        out.extend(small.clone(), None);
        let messages: Vec<&[u8]> = out.messages().collect();
        // 300 × 1000 bytes fill one message of 262 frames and start a second.
        assert_eq!(messages[0].len(), 262 * 1000);
        assert_eq!(messages[1].len(), 38 * 1000);
        assert_eq!(messages[2], &big[..], "an oversized frame travels alone");
        assert_eq!(messages[3], &small[..]);
        assert_eq!(messages.len(), 4);

        // Numbered from 7 on, each message tells the position after it: the
        // id-less ones keep the one before.
        let numbered = out.numbered(7, None, b"ini");
        let heads: Vec<MessageHead> = numbered
            .iter()
            .map(|m| {
                let mut head = [0u8; MessageHead::LEN];
                head.copy_from_slice(&m[..MessageHead::LEN]);
                MessageHead::decode(&head).unwrap()
            })
            .collect();
        let positions: Vec<(u64, Option<i64>)> = heads
            .iter()
            .map(|h| (h.number, h.position.map(|p| p.round)))
            .collect();
        assert_eq!(
            positions,
            [
                (7, Some(261)),
                (8, Some(299)),
                (9, Some(299)),
                (10, Some(299))
            ]
        );
        assert_eq!(&numbered[2][MessageHead::LEN..], &big[..]);
        let initials: Vec<Option<u32>> = heads.iter().map(|h| h.initial).collect();
        assert_eq!(
            initials,
            [None, None, None, Some(3)],
            "the last one carries it"
        );
        assert_eq!(&numbered[3][MessageHead::LEN..MessageHead::LEN + 3], b"ini");
        let first = out.first_messages(4, None, b"");
        assert_eq!(first.len(), 4);
        let empty = Outbox::default().first_messages(4, Some(Position::round(9)), b"x");
        assert_eq!(empty.len(), 1, "a first message even without frames");
    }
}
