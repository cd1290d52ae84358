//! Server-Sent Events framing (docs/protocol.md#server-sent-events).
//!
//! A frame is built field by field and ends with a blank line. The encoder
//! follows the WHATWG `text/event-stream` rules: `data` may span lines (each
//! line becomes its own `data:` field, which the browser joins with `\n`);
//! `id` and `event` are single-line by definition, so a line break in them is
//! an error rather than something to repair silently; `id` also must not
//! contain NUL, which browsers treat as "ignore this id".
//!
//! Written here rather than taken from axum's `Event` because it must build
//! for wasm32 without tokio or hyper, and the Durable Object sends the very
//! same bytes the client receives.

use std::fmt::Write as _;

/// `event:` name of the first frame on connect: the stream's latest round.
pub const EVENT_INITIAL: &str = "initial";
/// `event:` name of a newly committed round.
pub const EVENT_MESSAGE: &str = "message";
/// `event:` name of a corrected round.
pub const EVENT_UPDATE: &str = "update";
/// `event:` name telling a resuming client its `Last-Event-ID` is older than
/// the retained history: drop what you have, an `initial` follows.
pub const EVENT_RESET: &str = "reset";
/// `event:` name of the frame that ends a stream's opening (its `initial`,
/// rewind or resume backlog): what follows is news.
pub const EVENT_LIVE: &str = "live";
/// `event:` name of a stream's audience: the clients it has open.
pub const EVENT_VIEWERS: &str = "viewers";

/// A field value that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `id` or `event` contained `\n` or `\r`.
    #[error("SSE `{0}` field must not contain a line break")]
    LineBreak(&'static str),
    /// `id` contained NUL.
    #[error("SSE `id` field must not contain NUL")]
    Nul,
}

/// Builds one SSE frame (a block of fields ended by a blank line).
///
/// ```
/// use shared::sse::Frame;
/// let frame = Frame::new().id("7").unwrap().event("message").unwrap().data("{}").finish();
/// assert_eq!(frame, b"id: 7\nevent: message\ndata: {}\n\n");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Frame {
    buf: Vec<u8>,
}

impl Frame {
    /// An empty frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty frame whose buffer already holds `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    fn field(&mut self, name: &str, value: &str) {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(b'\n');
    }

    /// Adds `id: <id>`.
    pub fn id(mut self, id: &str) -> Result<Self, FrameError> {
        if id.contains(['\n', '\r']) {
            return Err(FrameError::LineBreak("id"));
        }
        if id.contains('\0') {
            return Err(FrameError::Nul);
        }
        self.field("id", id);
        Ok(self)
    }

    /// Adds `event: <name>`.
    pub fn event(mut self, name: &str) -> Result<Self, FrameError> {
        if name.contains(['\n', '\r']) {
            return Err(FrameError::LineBreak("event"));
        }
        self.field("event", name);
        Ok(self)
    }

    /// Adds one `data:` line per line of `data` (`\n`, `\r\n` and `\r` all end
    /// a line, as the browser's parser sees them).
    pub fn data(mut self, data: &str) -> Self {
        for line in split_lines(data) {
            self.field("data", line);
        }
        self
    }

    /// Adds `retry: <ms>`: how long the browser waits before reconnecting.
    pub fn retry(mut self, millis: u64) -> Self {
        let mut value = String::new();
        // Writing to a String cannot fail.
        let _ = write!(value, "{millis}");
        self.field("retry", &value);
        self
    }

    /// Adds a comment line per line of `text` (`: text`), ignored by browsers
    /// but enough to keep proxies from closing an idle connection.
    pub fn comment(mut self, text: &str) -> Self {
        for line in split_lines(text) {
            self.buf.extend_from_slice(b": ");
            self.buf.extend_from_slice(line.as_bytes());
            self.buf.push(b'\n');
        }
        self
    }

    /// Ends the frame with the blank line and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(b'\n');
        self.buf
    }
}

/// Splits on `\r\n`, `\n` or `\r`; an empty string is one empty line, so
/// `data("")` still dispatches an event with empty data.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\n', '\r']) {
            Some(at) => {
                let skip = if current[at..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = Some(&current[at + skip..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// The `retry:` frame every stream starts with.
pub fn retry_frame(millis: u64) -> Vec<u8> {
    Frame::new().retry(millis).finish()
}

/// A connection's `retry:` when reconnects are spread: `unit` (uniform in
/// 0..1) places it between a third of `retry_ms` and twice it (1 to 6 s for
/// the default 3 s), so browsers that all lost their stream at once (a
/// deploy, an object restart) do not all come back in the same second.
pub fn jittered_retry_ms(retry_ms: u64, unit: f64) -> u64 {
    let low = retry_ms / 3;
    let high = retry_ms.saturating_mul(2);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    (low + ((high - low) as f64 * unit) as u64).clamp(low.max(1), high.max(1))
}

/// The `: heartbeat <unix seconds>` comment frame.
pub fn heartbeat_frame(unix_seconds: u64) -> Vec<u8> {
    Frame::new()
        .comment(&format!("heartbeat {unix_seconds}"))
        .finish()
}

/// A round frame: `id: <id>`, `event: <event>`, `data: <json>`; the id is
/// the round id, or an update's [`crate::cursor::Position`].
///
/// `json` is the round's serialised JSON, which never contains a raw line
/// break (serde_json escapes them), so it is always a single `data:` line.
pub fn round_frame(
    event: &str,
    id: impl std::fmt::Display,
    json: &str,
) -> Result<Vec<u8>, FrameError> {
    let mut id_text = String::new();
    let _ = write!(id_text, "{id}");
    let id = id_text;
    Ok(Frame::with_capacity(json.len() + event.len() + 32)
        .id(&id)?
        .event(event)?
        .data(json)
        .finish())
}

/// The `live` frame that ends a stream's opening: `stream` is the stream's
/// name, `replayed` how many rounds and updates the opening held before it
/// (an `initial` counts as none: it is the stream's state, not history).
pub fn live_frame(stream: &str, replayed: u64) -> Vec<u8> {
    named_frame(EVENT_LIVE, &stream_json(stream, "replayed", replayed))
}

/// The `viewers` frame: how many clients `stream` has open.
pub fn viewers_frame(stream: &str, viewers: u64) -> Vec<u8> {
    named_frame(EVENT_VIEWERS, &stream_json(stream, "viewers", viewers))
}

/// `{"stream":<stream>,"<field>":<value>}`, the stream first.
fn stream_json(stream: &str, field: &str, value: u64) -> String {
    let stream = serde_json::Value::from(stream);
    format!("{{\"stream\":{stream},\"{field}\":{value}}}")
}

/// A frame of one of this module's event names (no line break, so nothing
/// can fail) and one line of JSON (serde_json escapes line breaks).
fn named_frame(event: &'static str, json: &str) -> Vec<u8> {
    format!("event: {event}\ndata: {json}\n\n").into_bytes()
}

/// How many frames of `frames` (complete frames, as this crate writes
/// them) are rounds or updates replayed: `message` and `update` events.
pub fn count_replayed(frames: &[u8]) -> u64 {
    frames
        .split(|b| *b == b'\n')
        .filter(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            line == b"event: message" || line == b"event: update"
        })
        .count() as u64
}

/// Rewrites the `id:` line of every frame in `frames` (a run of complete
/// frames) with `new_id(old_id)`, leaving all other bytes as they are. Used by
/// multiplexed streams, whose `id:` is a cursor over all member streams.
pub fn rewrite_ids(frames: &str, mut new_id: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(frames.len() + 64);
    for line in frames.split_inclusive('\n') {
        match line.strip_prefix("id: ") {
            Some(rest) => {
                let old = rest.trim_end_matches(['\n', '\r']);
                let replacement = new_id(old);
                // A replacement with a line break would split the frame:
                // keep the original id instead.
                if replacement.contains(['\n', '\r', '\0']) {
                    out.push_str(line);
                } else {
                    out.push_str("id: ");
                    out.push_str(&replacement);
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_spread_between_a_third_and_twice_the_setting() {
        assert_eq!(jittered_retry_ms(3000, 0.0), 1000);
        assert_eq!(jittered_retry_ms(3000, 1.0), 6000);
        assert_eq!(jittered_retry_ms(3000, 0.5), 3500);
        assert_eq!(jittered_retry_ms(3000, -1.0), 1000);
        assert_eq!(jittered_retry_ms(3000, f64::NAN), 3500);
        assert_eq!(
            jittered_retry_ms(1, 0.0),
            1,
            "never 0: a browser would spin"
        );
        assert_eq!(jittered_retry_ms(3_600_000, 1.0), 7_200_000);
        // Evenly spread: a tenth of the unit is a tenth of the span.
        let spread: Vec<u64> = (0..=10)
            .map(|i| jittered_retry_ms(3000, f64::from(i) / 10.0))
            .collect();
        assert_eq!(
            spread,
            [
                1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000
            ]
        );
    }

    #[test]
    fn data_only() {
        assert_eq!(Frame::new().data("foobar").finish(), b"data: foobar\n\n");
    }

    #[test]
    fn data_keeps_a_leading_space() {
        // The parser strips exactly one space after the colon, so a value that
        // starts with a space needs the separator space too.
        assert_eq!(Frame::new().data(" foobar").finish(), b"data:  foobar\n\n");
    }

    #[test]
    fn multi_line_data_becomes_several_data_fields() {
        assert_eq!(
            Frame::new().data("foo\nbar").finish(),
            b"data: foo\ndata: bar\n\n"
        );
        assert_eq!(
            Frame::new().data("a\r\nb\rc\n").finish(),
            b"data: a\ndata: b\ndata: c\ndata: \n\n"
        );
    }

    #[test]
    fn empty_data_still_dispatches() {
        assert_eq!(Frame::new().data("").finish(), b"data: \n\n");
    }

    #[test]
    fn id_event_data_in_order() {
        let frame = Frame::new()
            .id("42")
            .unwrap()
            .event("update")
            .unwrap()
            .data("{}")
            .finish();
        assert_eq!(frame, b"id: 42\nevent: update\ndata: {}\n\n");
    }

    #[test]
    fn id_and_event_reject_line_breaks_and_nul() {
        assert_eq!(
            Frame::new().id("1\n2").unwrap_err(),
            FrameError::LineBreak("id")
        );
        assert_eq!(
            Frame::new().id("1\r").unwrap_err(),
            FrameError::LineBreak("id")
        );
        assert_eq!(Frame::new().id("1\0").unwrap_err(), FrameError::Nul);
        assert_eq!(
            Frame::new().event("a\nb").unwrap_err(),
            FrameError::LineBreak("event")
        );
        assert_eq!(
            Frame::new().event("a\rb").unwrap_err(),
            FrameError::LineBreak("event")
        );
    }

    #[test]
    fn comments_one_line_each() {
        assert_eq!(
            Frame::new().comment("keep-alive").finish(),
            b": keep-alive\n\n"
        );
        assert_eq!(Frame::new().comment("a\nb").finish(), b": a\n: b\n\n");
    }

    #[test]
    fn retry_and_heartbeat_frames() {
        assert_eq!(retry_frame(3000), b"retry: 3000\n\n");
        assert_eq!(
            heartbeat_frame(1_768_621_542),
            b": heartbeat 1768621542\n\n"
        );
    }

    #[test]
    fn ids_are_rewritten_and_nothing_else() {
        let frames = "id: 3\nevent: message\ndata: {\"id: 9\"}\n\n: heartbeat 1\n\nid: 4\nevent: update\ndata: x\n\n";
        let mut seen = Vec::new();
        let out = rewrite_ids(frames, |old| {
            seen.push(old.to_string());
            format!("g:crash:{old}")
        });
        assert_eq!(seen, ["3", "4"]);
        assert_eq!(
            out,
            "id: g:crash:3\nevent: message\ndata: {\"id: 9\"}\n\n: heartbeat 1\n\nid: g:crash:4\nevent: update\ndata: x\n\n"
        );
        assert_eq!(rewrite_ids("id: 1\n\n", |_| "a\nb".into()), "id: 1\n\n");
    }

    #[test]
    fn live_and_viewers_frames_are_byte_exact() {
        assert_eq!(
            String::from_utf8_lossy(&live_frame("game:crash", 3)),
            "event: live\ndata: {\"stream\":\"game:crash\",\"replayed\":3}\n\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&viewers_frame("type:dice", 1234)),
            "event: viewers\ndata: {\"stream\":\"type:dice\",\"viewers\":1234}\n\n"
        );
    }

    #[test]
    fn replayed_frames_are_rounds_and_updates_only() {
        let mut frames = Vec::new();
        frames.extend(Frame::new().event(EVENT_RESET).unwrap().data("{}").finish());
        frames.extend(round_frame(EVENT_INITIAL, 3, "{}").unwrap());
        assert_eq!(count_replayed(&frames), 0);
        frames.extend(round_frame(EVENT_MESSAGE, 4, "{\"event: message\"}").unwrap());
        frames.extend(round_frame(EVENT_UPDATE, "4.1", "{}").unwrap());
        frames.extend(b"event: message\r\ndata: x\r\n\r\n");
        frames.extend(heartbeat_frame(9));
        assert_eq!(count_replayed(&frames), 3);
        assert_eq!(count_replayed(b""), 0);
    }

    #[test]
    fn round_frame_is_byte_exact() {
        let json = r#"{"round_id":3,"extras":"{\"a\": 1}"}"#;
        assert_eq!(
            round_frame(EVENT_MESSAGE, 3, json).unwrap(),
            b"id: 3\nevent: message\ndata: {\"round_id\":3,\"extras\":\"{\\\"a\\\": 1}\"}\n\n"
                .to_vec()
        );
        assert_eq!(
            round_frame("bad\nname", 3, "{}").unwrap_err(),
            FrameError::LineBreak("event")
        );
    }
}
