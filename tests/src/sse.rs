//! A minimal Server-Sent Events client for tests: it keeps the raw bytes.
//!
//! The stream's own news (`event: live`, `event: viewers`) is kept apart in
//! [`SseClient::markers`], with how many frames came before each, so tests
//! of the rounds read the rounds alone and tests of the markers see where
//! they came.

use std::time::Duration;

use anyhow::{Context, bail};

/// An open SSE response and everything received on it so far.
pub struct SseClient {
    response: reqwest::Response,
    /// Every byte received, in order, but for the markers: complete frames.
    pub received: Vec<u8>,
    /// A frame not complete yet.
    partial: Vec<u8>,
    /// The `live` and `viewers` frames, in order.
    pub markers: Vec<Marker>,
}

/// A `live` or `viewers` frame and where it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Complete frames received before it (`retry:` and heartbeats
    /// included, other markers not).
    pub after_frames: usize,
    /// `live` or `viewers`.
    pub event: String,
    /// Its `data:`.
    pub data: serde_json::Value,
}

/// The events kept in [`SseClient::markers`].
const MARKERS: [&str; 2] = ["live", "viewers"];

/// Status, headers and body of a refused connection.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
}

impl SseClient {
    /// Connects; `Err(Refused)` inside `Ok` when the server answered non-200.
    pub async fn connect(
        http: &reqwest::Client,
        url: &str,
    ) -> anyhow::Result<Result<Self, Refused>> {
        Self::connect_with(http, url, &[]).await
    }

    /// Connects with extra request headers (`Last-Event-ID`, `Origin`, …).
    pub async fn connect_with(
        http: &reqwest::Client,
        url: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Result<Self, Refused>> {
        let mut request = http.get(url).header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("GET {}", redact(url)))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Ok(Err(Refused { status, body }));
        }
        Ok(Ok(Self {
            response,
            received: Vec::new(),
            partial: Vec::new(),
            markers: Vec::new(),
        }))
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Reads until `frames` complete frames (each ended by a blank line) have
    /// arrived in total, or fails after `timeout`.
    pub async fn read_frames(&mut self, frames: usize, timeout: Duration) -> anyhow::Result<&[u8]> {
        let deadline = tokio::time::Instant::now() + timeout;
        while count_frames(&self.received) < frames {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .with_context(|| {
                    format!(
                        "timed out waiting for {frames} SSE frames; got {:?}",
                        String::from_utf8_lossy(&self.received)
                    )
                })?
                .context("reading the SSE stream")?;
            match chunk {
                Some(bytes) => self.take(&bytes),
                None => bail!(
                    "stream ended after {:?}",
                    String::from_utf8_lossy(&self.received)
                ),
            }
        }
        Ok(&self.received)
    }
}

impl SseClient {
    /// Takes a chunk: complete frames go to `received`, markers to
    /// `markers`, and a frame's start waits for its end.
    fn take(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = self.partial.drain(..end + 2).collect();
            match marker(&frame) {
                Some((event, data)) => self.markers.push(Marker {
                    after_frames: count_frames(&self.received),
                    event,
                    data,
                }),
                None => self.received.extend_from_slice(&frame),
            }
        }
    }

    /// The markers of one kind, `live` or `viewers`.
    pub fn markers_of(&self, event: &str) -> Vec<&Marker> {
        self.markers.iter().filter(|m| m.event == event).collect()
    }

    /// Reads until `count` markers of `event` arrived; fails after `timeout`.
    pub async fn read_markers(
        &mut self,
        event: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.markers_of(event).len() < count {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .with_context(|| {
                    format!(
                        "timed out waiting for {count} {event} markers; got {:?} and {:?}",
                        self.markers,
                        self.text()
                    )
                })?
                .context("reading the SSE stream")?;
            match chunk {
                Some(bytes) => self.take(&bytes),
                None => bail!(
                    "stream ended before {count} {event} markers: {:?}",
                    self.markers
                ),
            }
        }
        Ok(())
    }

    /// Reads until the markers received satisfy `until`; fails after
    /// `timeout`.
    pub async fn read_markers_until(
        &mut self,
        until: impl Fn(&[Marker]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !until(&self.markers) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .with_context(|| format!("timed out; markers so far {:?}", self.markers))?
                .context("reading the SSE stream")?;
            match chunk {
                Some(bytes) => self.take(&bytes),
                None => bail!("stream ended; markers so far {:?}", self.markers),
            }
        }
        Ok(())
    }

    /// Everything received, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Reads until the received text contains `needle`; fails after `timeout`.
    pub async fn read_until(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.text().contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .with_context(|| {
                    format!("timed out waiting for {needle:?}; got {:?}", self.text())
                })?
                .context("reading the SSE stream")?;
            match chunk {
                Some(bytes) => self.take(&bytes),
                None => bail!("stream ended before {needle:?}: {:?}", self.text()),
            }
        }
        Ok(())
    }

    /// Waits until the server ends the stream; fails after `timeout`.
    pub async fn read_to_end(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .context("timed out waiting for the stream to end")?;
            match chunk {
                Ok(Some(bytes)) => self.take(&bytes),
                // An aborted body also ends the stream.
                Ok(None) | Err(_) => {
                    let rest = std::mem::take(&mut self.partial);
                    self.received.extend_from_slice(&rest);
                    return Ok(());
                }
            }
        }
    }

    /// Frames received so far that are not heartbeat comments.
    pub fn frames(&self) -> Vec<String> {
        self.text()
            .split_inclusive("\n\n")
            .filter(|f| !f.starts_with(": heartbeat"))
            .map(str::to_owned)
            .collect()
    }
}

/// The event and data of a `live` or `viewers` frame.
fn marker(frame: &[u8]) -> Option<(String, serde_json::Value)> {
    let text = std::str::from_utf8(frame).ok()?;
    let mut event = None;
    let mut data = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("event: ") {
            event = Some(name);
        } else if let Some(json) = line.strip_prefix("data: ") {
            data = Some(json);
        }
    }
    let event = event.filter(|e| MARKERS.contains(e))?;
    Some((event.to_string(), serde_json::from_str(data?).ok()?))
}

/// Complete frames in `bytes`.
pub fn count_frames(bytes: &[u8]) -> usize {
    bytes.windows(2).filter(|w| w == b"\n\n").count()
}

/// `url` with any `api_key` or `token` value hidden, for messages.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    for name in ["api_key=", "token="] {
        if let Some(at) = out.find(name) {
            let value = at + name.len();
            let end = out[at..].find('&').map_or(out.len(), |e| at + e);
            out.replace_range(value..end, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_told_from_rounds() {
        let live = marker(b"event: live\ndata: {\"stream\":\"game:a\",\"replayed\":2}\n\n");
        assert_eq!(
            live,
            Some((
                "live".into(),
                serde_json::json!({"stream": "game:a", "replayed": 2})
            ))
        );
        assert_eq!(marker(b"id: 1\nevent: message\ndata: {}\n\n"), None);
        assert_eq!(marker(b": heartbeat 1\n\n"), None);
    }

    #[test]
    fn counts_frames_and_redacts_keys() {
        assert_eq!(count_frames(b"retry: 1\n\nid: 1\ndata: x\n\n"), 2);
        assert_eq!(count_frames(b"data: x\n"), 0);
        assert_eq!(
            redact("http://h/sse/x?api_key=sk_1&a=b"),
            "http://h/sse/x?api_key=<redacted>&a=b"
        );
        assert_eq!(
            redact("http://h/sse/x?api_key=sk_1"),
            "http://h/sse/x?api_key=<redacted>"
        );
        assert_eq!(
            redact("http://h/sse/x?token=st_a.b&last_event_id=3"),
            "http://h/sse/x?token=<redacted>&last_event_id=3"
        );
    }
}
