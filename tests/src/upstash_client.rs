//! The native transport of the Upstash REST protocol (`shared::upstash`):
//! reqwest, every call bounded in time. Tests and tools use it to read what
//! the Worker wrote to Redis through the same protocol the Worker speaks.

use std::time::Duration;

use shared::upstash::{self, Client, Error, Request};

/// reqwest to one endpoint with its token.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    http: reqwest::Client,
    url: String,
    token: String,
    timeout: Duration,
}

/// A client of the endpoint at `url` (no trailing slash needed).
pub fn client(url: &str, token: &str, timeout: Duration) -> Client<ReqwestTransport> {
    Client::new(ReqwestTransport {
        http: crate::http_client(),
        url: url.trim_end_matches('/').to_string(),
        token: token.to_string(),
        timeout,
    })
}

impl upstash::Transport for ReqwestTransport {
    async fn send(&self, request: Request) -> Result<(u16, Vec<u8>), Error> {
        let mut call = self
            .http
            .post(format!("{}{}", self.url, request.path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .timeout(self.timeout)
            .body(request.body);
        if request.base64 {
            call = call.header(upstash::ENCODING_HEADER, "base64");
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout
            } else {
                Error::Transport(e.to_string())
            }
        };
        let response = call.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(failed)?;
        Ok((status, body.to_vec()))
    }
}
