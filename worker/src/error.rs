//! One error type for every handler, rendered as the JSON of DESIGN §3.3.

use shared::error::{ErrorBody, ErrorCode};
use worker::{Headers, Response};

/// A failed request: what the client is told. Internal details go to the log,
/// never into `message`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub(crate) retry_after: Option<u32>,
}

/// Handler result.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    /// The JSON response; if even that cannot be built, a bare 500.
    pub(crate) fn into_response(self) -> worker::Result<Response> {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set("cache-control", "no-store")?;
        if let Some(secs) = self.retry_after {
            headers.set("retry-after", &secs.to_string())?;
        }
        let body = ErrorBody::new(self.code, self.message).to_json();
        Ok(Response::builder()
            .with_status(self.code.status())
            .with_headers(headers)
            .fixed(body.into_bytes()))
    }
}

/// Runtime failures (KV, Durable Object stubs, streams) are logged and
/// answered as 503 so callers retry: they are almost always transient.
impl From<worker::Error> for ApiError {
    fn from(err: worker::Error) -> Self {
        worker::console_error!("runtime error: {err}");
        Self::unavailable("a dependency of the edge is unavailable, retry shortly")
    }
}

impl From<worker::KvError> for ApiError {
    fn from(err: worker::KvError) -> Self {
        worker::Error::from(err).into()
    }
}

/// Serialising our own types does not fail; if it ever does, it is a bug.
impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        worker::console_error!("serialisation failed: {err}");
        Self::new(shared::error::ErrorCode::Internal, "internal error")
    }
}
