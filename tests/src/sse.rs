//! A minimal Server-Sent Events client for tests: it keeps the raw bytes.

use std::time::Duration;

use anyhow::{Context, bail};

/// An open SSE response and everything received on it so far.
pub struct SseClient {
    response: reqwest::Response,
    /// Every byte received, in order.
    pub received: Vec<u8>,
}

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
                Some(bytes) => self.received.extend_from_slice(&bytes),
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
                Some(bytes) => self.received.extend_from_slice(&bytes),
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
                Ok(Some(bytes)) => self.received.extend_from_slice(&bytes),
                Ok(None) => return Ok(()),
                // An aborted body also ends the stream.
                Err(_) => return Ok(()),
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
