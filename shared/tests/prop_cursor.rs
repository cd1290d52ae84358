//! Property tests of the multiplexed stream's member list and resume cursor
//! (`shared::cursor`), which the Worker reads from `?games=`, `?types=` and
//! the client's `Last-Event-ID`: any text is a value or an error, never a
//! panic, and every cursor the Worker writes reads back as itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{ByteEdit, any_text, byte_edit, config, tricky_string};
use proptest::prelude::*;
use shared::cursor::{self, Cursor, CursorError, MAX_MEMBERS, Position, StreamName};
use shared::names;

/// A valid game slug or type (`[a-z0-9][a-z0-9_-]{0,63}`), mostly short.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9_-]{0,8}",
        1 => "[a-z0-9][a-z0-9_-]{0,63}",
    ]
}

fn stream() -> impl Strategy<Value = StreamName> {
    prop_oneof![
        name().prop_map(StreamName::Game),
        name().prop_map(StreamName::Type),
    ]
}

/// A connection's members and a cursor over some of them.
fn members_and_cursor() -> impl Strategy<Value = (Vec<StreamName>, Cursor)> {
    prop::collection::btree_set(stream(), 1..=MAX_MEMBERS)
        .prop_map(|set| set.into_iter().collect::<Vec<_>>())
        .prop_flat_map(|members| {
            let number = || prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)];
            let position = (number(), prop::option::of(number()))
                .prop_map(|(round, update)| Position { round, update });
            let ids = prop::collection::vec(prop::option::of(position), members.len());
            (Just(members), ids)
        })
        .prop_map(|(members, ids)| {
            let cursor = members
                .iter()
                .zip(ids)
                .filter_map(|(member, id)| Some((member.clone(), id?)))
                .collect();
            (members, cursor)
        })
}

/// Text shaped like a cursor, and broken in many ways.
fn cursor_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        (
            prop::sample::select(vec!["g", "t", "x", "", "G"]),
            prop_oneof![name(), tricky_string(6)],
            prop_oneof![
                any::<i64>().prop_map(|i| i.to_string()),
                (any::<i64>(), any::<i64>()).prop_map(|(r, u)| format!("{r}.{u}")),
                "[-+0-9.]{0,22}",
                tricky_string(4)
            ],
        )
            .prop_map(|(kind, name, id)| format!("{kind}:{name}:{id}")),
        tricky_string(10),
    ];
    prop::collection::vec(part, 0..5).prop_map(|parts| parts.join(","))
}

proptest! {
    #![proptest_config(config(1000))]

    /// A cursor the Worker writes reads back as the same cursor, and reads
    /// back the same after a second trip.
    #[test]
    fn a_formatted_cursor_parses_back((members, cursor) in members_and_cursor()) {
        let text = cursor::format(&cursor);
        let parsed = cursor::parse(&text, &members);
        prop_assert_eq!(parsed.as_ref(), Ok(&cursor), "{}", text);
        prop_assert_eq!(cursor::format(&parsed.unwrap()), text);
    }

    /// Any `Last-Event-ID` text is a cursor or an error, never a panic; a
    /// cursor read from it names only requested streams and formats to text
    /// that reads back as the same cursor.
    #[test]
    fn any_text_is_a_cursor_or_an_error(
        members in prop::collection::vec(stream(), 1..=MAX_MEMBERS),
        text in prop_oneof![any_text(64), cursor_like()],
    ) {
        if let Ok(parsed) = cursor::parse(&text, &members) {
            prop_assert!(parsed.keys().all(|stream| members.contains(stream)));
            prop_assert!(parsed.len() <= members.len());
            let again = cursor::format(&parsed);
            prop_assert_eq!(cursor::parse(&again, &members), Ok(parsed));
        }
    }

    /// A one-byte edit of a real cursor is a cursor or an error, never a
    /// panic; when it still parses, it is a cursor of the same connection.
    #[test]
    fn an_edited_cursor_is_a_cursor_or_an_error(
        (members, cursor) in members_and_cursor(),
        edits in prop::collection::vec(byte_edit(), 1..4),
    ) {
        let mut text = cursor::format(&cursor);
        for edit in &edits {
            if text.is_empty() {
                break;
            }
            if let Some(edited) = ByteEdit::apply_str(edit, &text) {
                text = edited;
            }
        }
        if let Ok(parsed) = cursor::parse(&text, &members) {
            prop_assert!(parsed.keys().all(|stream| members.contains(stream)));
            prop_assert_eq!(cursor::parse(&cursor::format(&parsed), &members), Ok(parsed));
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Any `?games=` and `?types=` text gives 1 to 6 valid, distinct members
    /// or an error, never a panic.
    #[test]
    fn any_member_lists_are_members_or_an_error(
        games in prop::option::of(prop_oneof![any_text(48), tricky_string(48)]),
        types in prop::option::of(prop_oneof![any_text(48), tricky_string(48)]),
    ) {
        match cursor::parse_members(games.as_deref(), types.as_deref()) {
            Ok(members) => {
                prop_assert!((1..=MAX_MEMBERS).contains(&members.len()));
                let distinct: BTreeSet<_> = members.iter().collect();
                prop_assert_eq!(distinct.len(), members.len());
                for member in &members {
                    let (StreamName::Game(n) | StreamName::Type(n)) = member;
                    prop_assert!(names::validate(n).is_ok(), "{:?}", member);
                }
            }
            Err(CursorError::BadName(bad)) => prop_assert!(names::validate(&bad).is_err()),
            Err(CursorError::Empty | CursorError::TooMany) => {}
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }

    /// Valid lists read back as their members, in order, without duplicates,
    /// whatever the spaces and empty entries around them.
    #[test]
    fn valid_member_lists_round_trip(
        games in prop::collection::vec((name(), "[ ]{0,2}", "[ ]{0,2}", any::<bool>()), 0..5),
        types in prop::collection::vec((name(), "[ ]{0,2}", "[ ]{0,2}", any::<bool>()), 0..5),
    ) {
        let list = |entries: &[(String, String, String, bool)]| {
            entries
                .iter()
                .map(|(name, before, after, empty_next)| {
                    format!("{before}{name}{after}{}", if *empty_next { ", " } else { "" })
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut want: Vec<StreamName> = Vec::new();
        for member in games
            .iter()
            .map(|g| StreamName::Game(g.0.clone()))
            .chain(types.iter().map(|t| StreamName::Type(t.0.clone())))
        {
            if !want.contains(&member) {
                want.push(member);
            }
        }
        let got = cursor::parse_members(Some(&list(&games)), Some(&list(&types)));
        match want.len() {
            0 => prop_assert_eq!(got, Err(CursorError::Empty)),
            n if n > MAX_MEMBERS => prop_assert_eq!(got, Err(CursorError::TooMany)),
            _ => prop_assert_eq!(got, Ok(want)),
        }
    }
}
