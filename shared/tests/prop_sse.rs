//! Property tests of the SSE encoder (`shared::sse`): whatever it accepts
//! reaches a browser as exactly what was encoded, and what it refuses is an
//! error, never a panic.
//!
//! The browser side is [`parse`] below, written from the WHATWG HTML
//! standard, §9.2 "Server-sent events", "Interpreting an event stream"
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>)
//! rather than taken from a crate: the crates on crates.io
//! (`eventsource-stream` and others) are client conveniences that differ from
//! the standard in details that matter here (the `id` NUL rule, a trailing
//! CR, the last event id kept across events).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{any_text, config, tricky_char, tricky_string};
use proptest::prelude::*;
use shared::sse::{Frame, FrameError, heartbeat_frame, retry_frame, rewrite_ids, round_frame};

/// One dispatched `MessageEvent`, as a page sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    /// `event.type`.
    kind: String,
    /// `event.data`.
    data: String,
    /// `event.lastEventId`.
    last_event_id: String,
}

/// What a stream did to an `EventSource`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Outcome {
    events: Vec<Event>,
    /// The reconnection time last set by `retry:`.
    retry: Option<u64>,
    /// The `EventSource`'s last event ID string at the end (what it sends as
    /// `Last-Event-ID` when it reconnects).
    last_event_id: String,
}

/// Feeds a whole stream to a standard-following `EventSource` parser.
fn parse(stream: &[u8]) -> Outcome {
    // "Streams must be decoded using the UTF-8 decode algorithm": invalid
    // bytes become U+FFFD, and one leading BOM is dropped.
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);

    let mut out = Outcome::default();
    let mut data = String::new();
    let mut kind = String::new();
    let mut id_buffer = String::new();

    // Lines end with CRLF, LF or CR; what follows the last line end is an
    // incomplete line, discarded at the end of the stream.
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                lines.push(std::mem::take(&mut line));
            }
            '\n' => lines.push(std::mem::take(&mut line)),
            c => line.push(c),
        }
    }

    for line in lines {
        if line.is_empty() {
            // Dispatch the event.
            out.last_event_id.clone_from(&id_buffer);
            if data.is_empty() {
                kind.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            out.events.push(Event {
                kind: if kind.is_empty() {
                    "message".to_string()
                } else {
                    std::mem::take(&mut kind)
                },
                data: std::mem::take(&mut data),
                last_event_id: out.last_event_id.clone(),
            });
            kind.clear();
            continue;
        }
        if line.starts_with(':') {
            continue; // a comment
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => kind = value.to_string(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            // An id with NUL is ignored.
            "id" if !value.contains('\0') => id_buffer = value.to_string(),
            // Only all digits; browsers keep what fits, and every value
            // here fits in u64.
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                out.retry = value.parse().ok();
            }
            _ => {} // ignored
        }
    }
    out
}

/// What `data` reads as in the browser: each line end (CRLF, LF, CR) is one LF.
fn as_read(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// What `event.type` reads as: an empty name is the default type.
fn type_of(name: &str) -> String {
    if name.is_empty() {
        "message".to_string()
    } else {
        name.to_string()
    }
}

/// A string the `id` field accepts (no CR, LF or NUL).
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(tricky_char(), 0..24),
        prop::collection::vec(any::<char>(), 0..24),
    ]
    .prop_map(|c| {
        c.into_iter()
            .filter(|c| !matches!(c, '\n' | '\r' | '\0'))
            .collect()
    })
}

/// A string the `event` field accepts (no CR or LF; NUL is allowed).
fn event_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(tricky_char(), 0..24),
        prop::collection::vec(any::<char>(), 0..24),
    ]
    .prop_map(|c| {
        c.into_iter()
            .filter(|c| !matches!(c, '\n' | '\r'))
            .collect()
    })
}

/// One frame's fields, each optional.
#[derive(Debug, Clone)]
struct Fields {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        prop::option::of(id_text()),
        prop::option::of(event_text()),
        prop::option::of(any_text(48)),
    )
        .prop_map(|(id, event, data)| Fields { id, event, data })
}

impl Fields {
    fn encode(&self) -> Vec<u8> {
        let mut frame = Frame::new();
        if let Some(id) = &self.id {
            frame = frame.id(id).unwrap();
        }
        if let Some(event) = &self.event {
            frame = frame.event(event).unwrap();
        }
        if let Some(data) = &self.data {
            frame = frame.data(data);
        }
        frame.finish()
    }
}

/// What a browser sees from `frames` in a row: one event per frame with
/// data, the last event id carried over frames without `id:`.
fn expected(frames: &[Fields]) -> Outcome {
    let mut out = Outcome::default();
    for frame in frames {
        if let Some(id) = &frame.id {
            out.last_event_id.clone_from(id);
        }
        if let Some(data) = &frame.data {
            out.events.push(Event {
                kind: type_of(frame.event.as_deref().unwrap_or("")),
                data: as_read(data),
                last_event_id: out.last_event_id.clone(),
            });
        }
    }
    out
}

proptest! {
    #![proptest_config(config(1000))]

    /// One frame of any accepted id, event name and data is one event with
    /// that type, data (line ends read as LF) and last event id; a frame
    /// without data dispatches nothing but still sets the id.
    #[test]
    fn a_frame_round_trips(frame in fields(), retry in prop::option::of(any::<u64>())) {
        let mut bytes = frame.encode();
        if let Some(millis) = retry {
            let mut with_retry = retry_frame(millis);
            with_retry.append(&mut bytes);
            bytes = with_retry;
        }
        let mut want = expected(std::slice::from_ref(&frame));
        want.retry = retry;
        prop_assert_eq!(parse(&bytes), want);
    }

    /// `id` refuses exactly CR, LF and NUL, and `event` exactly CR and LF,
    /// with the documented error; nothing panics.
    #[test]
    fn refused_fields_are_errors(text in any_text(32)) {
        let id = Frame::new().id(&text).map(Frame::finish);
        if text.contains(['\n', '\r']) {
            prop_assert_eq!(id, Err(FrameError::LineBreak("id")));
        } else if text.contains('\0') {
            prop_assert_eq!(id, Err(FrameError::Nul));
        } else {
            prop_assert_eq!(id, Ok(format!("id: {text}\n\n").into_bytes()));
        }
        let event = Frame::new().event(&text).map(Frame::finish);
        if text.contains(['\n', '\r']) {
            prop_assert_eq!(event, Err(FrameError::LineBreak("event")));
        } else {
            prop_assert_eq!(event, Ok(format!("event: {text}\n\n").into_bytes()));
        }
        prop_assert_eq!(
            round_frame(&text, 1, "{}").is_err(),
            text.contains(['\n', '\r'])
        );
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// A stream as the objects send it (`retry:` first, frames, heartbeats in
    /// between) is seen as exactly the encoded events, in order, each with
    /// the last id sent before it.
    #[test]
    fn a_stream_of_frames_round_trips(
        retry in any::<u64>(),
        frames in prop::collection::vec((fields(), prop::option::of(any::<u64>())), 0..8),
    ) {
        let mut bytes = retry_frame(retry);
        for (frame, heartbeat) in &frames {
            if let Some(seconds) = heartbeat {
                bytes.extend(heartbeat_frame(*seconds));
            }
            bytes.extend(frame.encode());
        }
        let frames: Vec<Fields> = frames.into_iter().map(|(frame, _)| frame).collect();
        let mut want = expected(&frames);
        want.retry = Some(retry);
        prop_assert_eq!(parse(&bytes), want);
    }

    /// A round frame is one event: `id` the round id, the given type, the
    /// JSON as data.
    #[test]
    fn a_round_frame_round_trips(event in event_text(), round_id in any::<i64>(), json in any_text(64)) {
        let bytes = round_frame(&event, round_id, &json).unwrap();
        prop_assert_eq!(parse(&bytes), Outcome {
            events: vec![Event {
                kind: type_of(&event),
                data: as_read(&json),
                last_event_id: round_id.to_string(),
            }],
            retry: None,
            last_event_id: round_id.to_string(),
        });
    }

    /// Comments of any text, anywhere in a frame, change nothing a page sees.
    #[test]
    fn comments_are_invisible(
        frame in fields(),
        before in any_text(32),
        after in any_text(32),
    ) {
        let mut encoded = Frame::new().comment(&before);
        if let Some(id) = &frame.id {
            encoded = encoded.id(id).unwrap();
        }
        if let Some(event) = &frame.event {
            encoded = encoded.event(event).unwrap();
        }
        encoded = encoded.comment(&after);
        if let Some(data) = &frame.data {
            encoded = encoded.data(data);
        }
        let bytes = encoded.finish();
        prop_assert_eq!(parse(&bytes), expected(std::slice::from_ref(&frame)));
        // A comment frame on its own dispatches nothing.
        prop_assert_eq!(parse(&Frame::new().comment(&before).finish()), Outcome::default());
    }

    /// `rewrite_ids` over frames the encoder wrote gives byte for byte the
    /// frames encoded with the new ids, keeping an id whose replacement could
    /// not be encoded; nothing else changes.
    #[test]
    fn rewritten_ids_are_the_encoding_of_the_new_ids(
        frames in prop::collection::vec((fields(), prop::option::of(any::<u64>())), 0..6),
        prefix in tricky_string(12),
    ) {
        let encode = |frames: &[(Fields, Option<u64>)]| {
            let mut bytes = Vec::new();
            for (frame, heartbeat) in frames {
                if let Some(seconds) = heartbeat {
                    bytes.extend(heartbeat_frame(*seconds));
                }
                bytes.extend(frame.encode());
            }
            String::from_utf8(bytes).unwrap()
        };
        let new_id = |old: &str| format!("{prefix}{old}");
        let renamed: Vec<(Fields, Option<u64>)> = frames
            .iter()
            .map(|(frame, heartbeat)| {
                let id = frame.id.as_ref().map(|old| {
                    let new = new_id(old);
                    if new.contains(['\n', '\r', '\0']) { old.clone() } else { new }
                });
                (Fields { id, ..frame.clone() }, *heartbeat)
            })
            .collect();
        let mut seen = Vec::new();
        let rewritten = rewrite_ids(&encode(&frames), |old| {
            seen.push(old.to_string());
            new_id(old)
        });
        prop_assert_eq!(rewritten, encode(&renamed));
        let ids: Vec<String> = frames.iter().filter_map(|(f, _)| f.id.clone()).collect();
        prop_assert_eq!(seen, ids);
    }

    /// `rewrite_ids` never panics on arbitrary text, and leaves every line
    /// that is not an `id: ` line as it was.
    #[test]
    fn rewrite_ids_of_any_text_keeps_other_lines(text in any_text(96), replacement in tricky_string(8)) {
        let out = rewrite_ids(&text, |_| replacement.clone());
        let others = |s: &str| -> Vec<String> {
            s.split_inclusive('\n')
                .filter(|line| !line.starts_with("id: "))
                .map(str::to_owned)
                .collect()
        };
        prop_assert_eq!(others(&out), others(&text));
    }
}

/// The parser itself, on the standard's own examples (and a few more of its
/// rules), so the properties above rest on a parser known to be right.
#[test]
fn the_parser_follows_the_standard() {
    let event = |data: &str, id: &str| Event {
        kind: "message".into(),
        data: data.into(),
        last_event_id: id.into(),
    };
    // §9.2.6's examples.
    assert_eq!(
        parse(b"data: YHOO\ndata: +2\ndata: 10\n\n").events,
        [event("YHOO\n+2\n10", "")]
    );
    let out = parse(
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n",
    );
    assert_eq!(
        out.events,
        [event("first event", "1"), event("second event", "")]
    );
    assert_eq!(
        parse(b"data\n\ndata\ndata\n\ndata:").events,
        [event("", ""), event("\n", "")]
    );
    assert_eq!(
        parse(b"data:test\n\ndata: test\n\n").events,
        [event("test", ""), event("test", "")]
    );
    // CR and CRLF end lines too; a BOM at the start is dropped; an id with
    // NUL is ignored; a `retry:` that is not all digits is ignored; an
    // unknown field is ignored; an empty `event:` is the default type.
    assert_eq!(
        parse(b"data: a\rdata: b\r\ndata: c\n\r").events,
        [event("a\nb\nc", "")]
    );
    assert_eq!(
        parse("\u{FEFF}data: x\n\n".as_bytes()).events,
        [event("x", "")]
    );
    let out = parse(b"id: 1\n\nid: 2\0\nretry: 12a\nfoo: bar\nevent:\ndata: x\n\n");
    assert_eq!(out.events, [event("x", "1")]);
    assert_eq!(out.retry, None);
    assert_eq!(parse(b"retry: 1500\n\n").retry, Some(1500));
    let out = parse(b"event: update\ndata: y\n\ndata: z\n\n");
    assert_eq!(out.events[0].kind, "update");
    assert_eq!(out.events[1].kind, "message");
}
