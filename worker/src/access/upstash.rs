//! The Worker's transport for the Upstash REST protocol of
//! `shared::upstash`: one `fetch` per call, aborted past `LIMITS_TIMEOUT_MS`.

use std::time::Duration;

use futures_util::future::{Either, select};
use shared::upstash::{self, Client, Error, Request};
use worker::{AbortController, Delay, Fetch, Headers, Method, RequestInit};

/// `fetch` to one Upstash endpoint with its token and a time bound.
#[derive(Debug, Clone)]
pub(crate) struct FetchTransport {
    url: String,
    token: String,
    timeout: Duration,
}

/// A client of the configured endpoint.
pub(crate) fn client(url: &str, token: &str, timeout: Duration) -> Client<FetchTransport> {
    Client::new(FetchTransport {
        url: url.to_string(),
        token: token.to_string(),
        timeout,
    })
}

impl FetchTransport {
    async fn fetch(
        &self,
        request: Request,
        signal: worker::AbortSignal,
    ) -> Result<(u16, Vec<u8>), Error> {
        let failed = |e: worker::Error| Error::Transport(e.to_string());
        let headers = Headers::new();
        headers
            .set("authorization", &format!("Bearer {}", self.token))
            .map_err(failed)?;
        headers
            .set("content-type", "application/json")
            .map_err(failed)?;
        if request.base64 {
            headers
                .set(upstash::ENCODING_HEADER, "base64")
                .map_err(failed)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            // The token goes nowhere else: a redirect is answered as its
            // own 3xx, which the protocol decoder reports as an error
            // (workerd does not implement `redirect: "error"`).
            .with_redirect(worker::RequestRedirect::Manual)
            .with_body(Some(
                js_sys::Uint8Array::from(request.body.as_slice()).into(),
            ));
        let url = format!("{}{}", self.url, request.path);
        let fetch = Fetch::Request(worker::Request::new_with_init(&url, &init).map_err(failed)?);
        let mut response = fetch.send_with_signal(&signal).await.map_err(failed)?;
        let status = response.status_code();
        let body = response.bytes().await.map_err(failed)?;
        Ok((status, body))
    }
}

impl upstash::Transport for FetchTransport {
    async fn send(&self, request: Request) -> Result<(u16, Vec<u8>), Error> {
        let controller = AbortController::default();
        let call = std::pin::pin!(self.fetch(request, controller.signal()));
        let timer = std::pin::pin!(Delay::from(self.timeout));
        match select(call, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                controller.abort();
                Err(Error::Timeout)
            }
        }
    }
}
