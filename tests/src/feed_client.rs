//! SSE clients that behave as browsers do across faults: they reconnect after
//! the server's `retry:` with the last `id:` they saw as `Last-Event-ID`,
//! and report every event they get, with when they got it.
//!
//! Two kinds: a raw client written here over reqwest, and the npm
//! `eventsource` package (a third-party, spec-following EventSource) in a
//! Node process, `tests/faults/es-client.mjs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::repo_root;

/// One thing a client saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Index of the client.
    pub client: usize,
    /// SSE event type (`message`, `initial`, `update`, `reset`), or `open`,
    /// `error`, `refused <status>`, `closed` for the connection itself.
    pub event: String,
    /// The event's `id:` (the last event id in force).
    pub id: Option<String>,
    /// `data:`.
    pub data: String,
    /// When it arrived.
    pub at: Instant,
}

/// Longest silence (no byte, not even a heartbeat) before a raw client
/// gives a connection up and reconnects.
const IDLE: Duration = Duration::from_secs(60);

/// Runs a raw reconnecting client of `url` until the channel closes.
pub async fn raw_client(client: usize, url: String, out: mpsc::UnboundedSender<Seen>) {
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
    {
        Ok(http) => http,
        Err(_) => return,
    };
    let mut last_id: Option<String> = None;
    let mut retry = Duration::from_millis(3000);
    let say = |event: &str, id: Option<String>, data: String| {
        out.send(Seen {
            client,
            event: event.to_string(),
            id,
            data,
            at: Instant::now(),
        })
        .is_ok()
    };
    loop {
        let mut request = http.get(&url).header("accept", "text/event-stream");
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        match request.send().await {
            Ok(response) if response.status() == 200 => {
                if !say("open", last_id.clone(), String::new()) {
                    return;
                }
                let mut body = response.bytes_stream();
                let mut buffer: Vec<u8> = Vec::new();
                let mut frame = Frame::default();
                loop {
                    let chunk = match tokio::time::timeout(IDLE, body.next()).await {
                        Ok(Some(Ok(chunk))) => chunk,
                        _ => break,
                    };
                    buffer.extend_from_slice(&chunk);
                    while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=end).collect();
                        let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        if let Some(done) = frame.line(&line) {
                            if let Some(ms) = done.retry {
                                retry = Duration::from_millis(ms);
                            }
                            if let Some(id) = &done.id {
                                last_id = Some(id.clone());
                            }
                            if let Some(data) = done.data
                                && !say(&done.event, last_id.clone(), data)
                            {
                                return;
                            }
                        }
                    }
                }
                if !say("error", last_id.clone(), "stream ended".into()) {
                    return;
                }
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                if !say(&format!("refused {status}"), last_id.clone(), body) {
                    return;
                }
            }
            Err(err) => {
                if !say("error", last_id.clone(), err.to_string()) {
                    return;
                }
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// A frame being read, line by line (the edge writes LF line ends only).
#[derive(Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
}

/// A finished frame.
struct Done {
    event: String,
    id: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
}

impl Frame {
    /// Takes one line; a blank line ends the frame and returns it.
    fn line(&mut self, line: &str) -> Option<Done> {
        if line.is_empty() {
            let taken = std::mem::take(self);
            return Some(Done {
                event: taken.event.unwrap_or_else(|| "message".into()),
                id: taken.id,
                data: taken.data,
                retry: taken.retry,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_string()),
            "id" => self.id = Some(value.to_string()),
            "retry" => self.retry = value.parse().ok(),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

/// The npm `eventsource` clients: one Node process, one EventSource per URL,
/// reporting client indexes from `first` on.
pub struct EventSourceClients {
    child: tokio::process::Child,
}

impl Drop for EventSourceClients {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl EventSourceClients {
    /// Starts them; every event they report is sent to `out`.
    pub fn start(
        first: usize,
        urls: &[String],
        out: mpsc::UnboundedSender<Seen>,
    ) -> anyhow::Result<Self> {
        let root = repo_root();
        let mut child = tokio::process::Command::new(root.join("node_modules/.bin/node"))
            .arg(root.join("tests/faults/es-client.mjs"))
            .arg(serde_json::to_string(urls)?)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node tests/faults/es-client.mjs")?;
        let stdout = child.stdout.take().context("no stdout")?;
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let at = Instant::now();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let seen = Seen {
                    client: first + v["c"].as_u64().unwrap_or(0) as usize,
                    event: v["t"].as_str().unwrap_or("?").to_string(),
                    id: v["id"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    data: v["d"].as_str().unwrap_or("").to_string(),
                    at,
                };
                if out.send(seen).is_err() {
                    return;
                }
            }
        });
        Ok(Self { child })
    }

    /// Whether the Node process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
