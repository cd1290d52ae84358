//! Stream names and resume cursors.
//!
//! A single stream's SSE `id:` is a [`Position`] in it: the round id for a
//! round (`12`), and for an update of an earlier round the newest round id
//! and the update's number in the stream (`12.3`). A resume from either
//! misses and repeats nothing. A multiplexed stream (`/sse?games=a,b&types=x`)
//! carries several member streams on one connection, so its `id:` is a cursor
//! holding the last position seen on each member: `g:crash:12,t:dice:40.2`.
//! Slugs and types never contain `:`, `,` or `.` (see [`crate::names`]), so
//! the format needs no escaping.

use std::collections::BTreeMap;
use std::fmt;

use crate::names;

/// Most member streams on one multiplexed connection. A Worker request may
/// hold only 6 connections open at once, and each member is one WebSocket to
/// a Durable Object.
pub const MAX_MEMBERS: usize = 6;

/// One stream: a game's or a game type's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamName {
    /// `game:<slug>`.
    Game(String),
    /// `type:<type>`.
    Type(String),
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Game(slug) => write!(f, "g:{slug}"),
            Self::Type(t) => write!(f, "t:{t}"),
        }
    }
}

/// A cursor or member list that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not of the documented shape.
    #[error("malformed stream cursor")]
    Malformed,
    /// Names a stream that is not part of this connection.
    #[error("cursor names a stream that is not requested")]
    Foreign,
    /// No member stream requested.
    #[error("ask for at least one stream: ?games=a,b and/or ?types=x")]
    Empty,
    /// Too many member streams.
    #[error("at most {MAX_MEMBERS} streams per connection; open another connection for more")]
    TooMany,
    /// A slug or type is invalid.
    #[error("invalid game slug or type {0:?}")]
    BadName(String),
}

/// The member streams of `?games=` and `?types=` (comma-separated), in
/// order, without duplicates.
pub fn parse_members(
    games: Option<&str>,
    types: Option<&str>,
) -> Result<Vec<StreamName>, CursorError> {
    let mut members = Vec::new();
    let split = |list: Option<&str>| -> Vec<String> {
        list.unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for (list, make) in [
        (split(games), StreamName::Game as fn(String) -> StreamName),
        (split(types), StreamName::Type as fn(String) -> StreamName),
    ] {
        for name in list {
            if names::validate(&name).is_err() {
                return Err(CursorError::BadName(name));
            }
            let member = make(name);
            if !members.contains(&member) {
                members.push(member);
            }
        }
    }
    match members.len() {
        0 => Err(CursorError::Empty),
        n if n > MAX_MEMBERS => Err(CursorError::TooMany),
        _ => Ok(members),
    }
}

/// A position in one stream: just after the round `round`, or, with
/// `update`, just after the update numbered `update` that the stream sent
/// while `round` was its newest round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The stream's newest round at that point.
    pub round: i64,
    /// The update's number (the stream's update log), if it was an update.
    pub update: Option<i64>,
}

impl Position {
    /// Just after round `round`.
    pub fn round(round: i64) -> Self {
        Self {
            round,
            update: None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.update {
            None => write!(f, "{}", self.round),
            Some(update) => write!(f, "{}.{update}", self.round),
        }
    }
}

impl std::str::FromStr for Position {
    type Err = CursorError;

    /// `R` or `R.U`, both decimal integers.
    fn from_str(text: &str) -> Result<Self, CursorError> {
        let number = |s: &str| {
            // `i64::from_str` also takes a leading `+`: not our format.
            if s.starts_with('+') {
                return Err(CursorError::Malformed);
            }
            s.parse::<i64>().map_err(|_| CursorError::Malformed)
        };
        match text.split_once('.') {
            None => Ok(Self::round(number(text)?)),
            Some((round, update)) => Ok(Self {
                round: number(round)?,
                update: Some(number(update)?),
            }),
        }
    }
}

/// Last position per member stream.
pub type Cursor = BTreeMap<StreamName, Position>;

/// Reads a cursor, refusing streams outside `members`.
pub fn parse(text: &str, members: &[StreamName]) -> Result<Cursor, CursorError> {
    let mut cursor = Cursor::new();
    if text.is_empty() {
        return Ok(cursor);
    }
    for part in text.split(',') {
        let mut fields = part.splitn(3, ':');
        let (Some(kind), Some(name), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(CursorError::Malformed);
        };
        if names::validate(name).is_err() {
            return Err(CursorError::Malformed);
        }
        let stream = match kind {
            "g" => StreamName::Game(name.to_owned()),
            "t" => StreamName::Type(name.to_owned()),
            _ => return Err(CursorError::Malformed),
        };
        let id = id.parse::<Position>()?;
        if !members.contains(&stream) {
            return Err(CursorError::Foreign);
        }
        cursor.insert(stream, id);
    }
    Ok(cursor)
}

/// Writes a cursor (members in a stable order).
pub fn format(cursor: &Cursor) -> String {
    let mut out = String::new();
    for (stream, id) in cursor {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("{stream}:{id}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> StreamName {
        StreamName::Game(s.into())
    }
    fn t(s: &str) -> StreamName {
        StreamName::Type(s.into())
    }

    #[test]
    fn members_are_parsed_deduplicated_and_bounded() {
        assert_eq!(
            parse_members(Some("crash,dice, crash"), Some("multiplier")).unwrap(),
            vec![g("crash"), g("dice"), t("multiplier")]
        );
        assert_eq!(parse_members(None, None), Err(CursorError::Empty));
        assert_eq!(parse_members(Some(",,"), Some("")), Err(CursorError::Empty));
        assert_eq!(
            parse_members(Some("a,b,c,d,e,f,g"), None),
            Err(CursorError::TooMany)
        );
        assert_eq!(
            parse_members(Some("a,b,c"), Some("d,e,f")).unwrap().len(),
            6
        );
        assert_eq!(
            parse_members(Some("Bad!"), None),
            Err(CursorError::BadName("Bad!".into()))
        );
    }

    #[test]
    fn cursor_round_trips() {
        let members = [g("crash"), t("dice")];
        let cursor = parse("g:crash:12,t:dice:40", &members).unwrap();
        assert_eq!(cursor.get(&g("crash")), Some(&Position::round(12)));
        assert_eq!(cursor.get(&t("dice")), Some(&Position::round(40)));
        assert_eq!(format(&cursor), "g:crash:12,t:dice:40");
        let with_update = parse("g:crash:12.3", &members).unwrap();
        assert_eq!(
            with_update.get(&g("crash")),
            Some(&Position {
                round: 12,
                update: Some(3)
            })
        );
        assert_eq!(format(&with_update), "g:crash:12.3");
        assert_eq!(parse(&format(&cursor), &members).unwrap(), cursor);
        assert_eq!(parse("", &members).unwrap(), Cursor::new());
    }

    #[test]
    fn positions_round_trip() {
        for text in ["12", "12.3", "-1", "0.0"] {
            let position: Position = text.parse().unwrap();
            assert_eq!(position.to_string(), text);
        }
        for bad in ["", ".", "1.", ".1", "1.2.3", "+1", "1.+2", "x"] {
            assert_eq!(
                bad.parse::<Position>(),
                Err(CursorError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_cursors_are_refused() {
        let members = [g("crash")];
        for bad in [
            "12",
            "g:crash",
            "x:crash:1",
            "g:crash:one",
            "g:Crash:1",
            "g:crash:1,",
            ",g:crash:1",
            "g:crash:1.",
            "g:crash:.1",
            "g:crash:1.2.3",
            "g:crash:+1",
        ] {
            assert_eq!(parse(bad, &members), Err(CursorError::Malformed), "{bad:?}");
        }
        assert_eq!(parse("g:dice:1", &members), Err(CursorError::Foreign));
    }
}
