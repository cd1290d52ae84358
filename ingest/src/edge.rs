//! The signed HTTP client for `POST /internal/rounds` (docs/protocol.md#ingest-to-edge).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::{IngestBatch, IngestReply, signature};

/// How a delivery failed, which decides what happens to the messages.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// 400: the edge says the batch can never be stored.
    #[error("edge rejected the batch (400): {0}")]
    Rejected(String),
    /// 413: the batch is too big; smaller ones may pass.
    #[error("edge refused the batch as too large (413)")]
    TooLarge,
    /// 401: our signature was refused, a configuration problem. Retry,
    /// drop nothing.
    #[error("edge refused the signature (401): check that INGEST_SECRET matches the Worker's")]
    Unauthorized,
    /// 3xx: EDGE_URL does not point at the Worker itself. Never followed
    /// (that would hand the signed batch to another address); retry, drop
    /// nothing.
    #[error(
        "edge answered {status} redirecting to {location:?}: not followed; EDGE_URL must be the Worker's own URL"
    )]
    Redirected {
        /// The 3xx status.
        status: u16,
        /// Its `Location` header, if any.
        location: String,
    },
    /// A 2xx whose body is not the edge's reply for this batch (unparsable,
    /// or counting other than the events sent): nothing proves the events
    /// were stored, so retry, never acknowledge.
    #[error("edge answered 2xx without a valid reply: {0}")]
    BadReply(String),
    /// Anything else (5xx, 429, timeout, network): retry.
    #[error("edge unavailable: {0}")]
    Retryable(String),
}

/// Most bytes of an answer ingest reads: the edge's replies are tiny, and
/// whatever stands at EDGE_URL must not make ingest hold a huge body.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A pooled client bound to one edge and one secret.
#[derive(Clone)]
pub struct EdgeClient {
    http: reqwest::Client,
    base: String,
    url: String,
    secret: Vec<u8>,
}

/// One POST's answer and how long it took.
pub struct Posted {
    /// The edge's verdict.
    pub result: Result<IngestReply, EdgeError>,
    /// Status label for metrics (`200`, `503`, `307`, `bad_reply`, `error`,
    /// `timeout`, …).
    pub status: String,
    /// Wall time of the POST.
    pub elapsed: Duration,
}

impl EdgeClient {
    /// A client posting to `<base_url>/internal/rounds`.
    pub fn new(base_url: &str, secret: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            // A redirect would send the body and its signature to another
            // address: never follow one, report it (see `EdgeError::Redirected`).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = base_url.trim_end_matches('/').to_string();
        Ok(Self {
            http,
            url: format!("{base}/internal/rounds"),
            base,
            secret: secret.as_bytes().to_vec(),
        })
    }

    /// Posts one batch; `Ok` only on a 2xx whose reply accounts for every
    /// event of the batch.
    pub async fn post(&self, batch: &IngestBatch) -> Posted {
        let started = Instant::now();
        let (result, status) = self.post_inner(batch).await;
        Posted {
            result,
            status,
            elapsed: started.elapsed(),
        }
    }

    async fn post_inner(&self, batch: &IngestBatch) -> (Result<IngestReply, EdgeError>, String) {
        let body = match serde_json::to_vec(batch) {
            Ok(body) => body,
            Err(e) => return (Err(EdgeError::Rejected(e.to_string())), "error".into()),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let Ok(header) =
            signature::sign(&self.secret, i64::try_from(now).unwrap_or(i64::MAX), &body)
        else {
            return (Err(EdgeError::Unauthorized), "error".into());
        };
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(signature::HEADER, header)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let label = if e.is_timeout() { "timeout" } else { "error" };
                return (Err(EdgeError::Retryable(e.to_string())), label.into());
            }
        };
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(200)
                    .collect()
            })
            .unwrap_or_default();
        let body = read_capped(response, MAX_REPLY_BYTES).await;
        let text = || {
            body.as_ref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(500)
                        .collect::<String>()
                })
                .unwrap_or_else(|e| e.clone())
        };
        match status {
            200..=299 => match body {
                Ok(body) => match check_reply(&body, batch.events.len()) {
                    Ok(reply) => (Ok(reply), status.to_string()),
                    Err(why) => (Err(EdgeError::BadReply(why)), "bad_reply".into()),
                },
                Err(why) => (Err(EdgeError::BadReply(why)), "bad_reply".into()),
            },
            300..=399 => (
                Err(EdgeError::Redirected { status, location }),
                status.to_string(),
            ),
            400 => (Err(EdgeError::Rejected(text())), status.to_string()),
            401 => (Err(EdgeError::Unauthorized), status.to_string()),
            413 => (Err(EdgeError::TooLarge), status.to_string()),
            code => (
                Err(EdgeError::Retryable(format!("status {code}"))),
                status.to_string(),
            ),
        }
    }

    /// Whether the edge answers `/healthz`.
    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(format!("{}/healthz", self.base)).send().await, Ok(r) if r.status().is_success())
    }
}

/// The body of `response`, or why it could not be read whole within `cap`
/// bytes.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > cap => {
                return Err(format!("answer over {cap} bytes"));
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
}

/// The edge's reply to a batch of `sent` events, if `body` is one: an
/// [`IngestReply`] whose `stored + duplicates` is exactly `sent`.
fn check_reply(body: &[u8], sent: usize) -> Result<IngestReply, String> {
    let reply: IngestReply = serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(200).collect();
        format!("not an ingest reply ({e}): {start:?}")
    })?;
    let counted = u64::from(reply.stored) + u64::from(reply.duplicates);
    if counted != sent as u64 {
        return Err(format!(
            "reply counts {counted} events (stored {}, duplicates {}) for {sent} sent",
            reply.stored, reply.duplicates
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reply_accounting_for_every_event_is_a_success() {
        assert_eq!(
            check_reply(br#"{"stored":2,"duplicates":1}"#, 3),
            Ok(IngestReply {
                stored: 2,
                duplicates: 1
            })
        );
        for (body, sent) in [
            (&br#"{"stored":2,"duplicates":0}"#[..], 3),
            (br#"{"stored":4,"duplicates":0}"#, 3),
            (br#"{}"#, 1),
            (b"", 1),
            (b"<html>welcome</html>", 1),
            (br#"{"stored":"3","duplicates":0}"#, 3),
            (br#"{"stored":4294967295,"duplicates":4294967295}"#, 2),
        ] {
            assert!(
                check_reply(body, sent).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
