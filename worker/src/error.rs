//! The Worker's errors.
//!
//! - [`Error`]: a failure between the Worker's own parts (the runtime, KV,
//!   the Durable Objects, Upstash), with a [`Kind`] that callers decide on:
//!   whether to retry, and what the client is told. Its context goes to the
//!   log, never to a client.
//! - [`ApiError`]: what a client is told, rendered as the JSON error body of
//!   `docs/protocol.md` ("Errors"). The HTTP status and code of every
//!   [`Kind`] are decided in one place, `From<Error> for ApiError`.

use std::fmt;

use shared::error::{ErrorBody, ErrorCode};
use worker::{Headers, Response};

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A part did not answer within its bound: trying again may work.
    Timeout,
    /// The runtime or a part failed to carry the call (a network or
    /// runtime error, a part restarting): trying again may work.
    Unavailable,
    /// A part answered and refused the call: the same call will be
    /// refused again.
    Refused,
    /// An answer that could not be read: a bug or two versions that
    /// disagree. Retrying does not help.
    Protocol,
}

impl Kind {
    /// Whether trying the same call again may succeed.
    pub(crate) fn is_transient(self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable)
    }
}

/// A failure between the Worker's parts (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct Error {
    kind: Kind,
    context: String,
}

/// Result of calls between the Worker's parts.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind`; `context` says what was being done, for the log.
    pub(crate) fn new(kind: Kind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
        }
    }

    /// See [`Kind::Timeout`].
    pub(crate) fn timeout(context: impl Into<String>) -> Self {
        Self::new(Kind::Timeout, context)
    }

    /// See [`Kind::Refused`].
    pub(crate) fn refused(context: impl Into<String>) -> Self {
        Self::new(Kind::Refused, context)
    }

    /// See [`Kind::Protocol`].
    pub(crate) fn protocol(context: impl Into<String>) -> Self {
        Self::new(Kind::Protocol, context)
    }

    /// The kind, for callers that decide on it.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Timeout => "timed out",
            Kind::Unavailable => "unavailable",
            Kind::Refused => "refused",
            Kind::Protocol => "unreadable answer",
        };
        write!(f, "{kind}: {}", self.context)
    }
}

impl std::error::Error for Error {}

/// The runtime's errors carry no kind: they are a call that did not go
/// through.
impl From<worker::Error> for Error {
    fn from(err: worker::Error) -> Self {
        Self::new(Kind::Unavailable, err.to_string())
    }
}

impl From<worker::KvError> for Error {
    fn from(err: worker::KvError) -> Self {
        worker::Error::from(err).into()
    }
}

/// Serialising our own types does not fail; if it ever does, it is a bug.
impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::protocol(format!("JSON: {err}"))
    }
}

/// A Durable Object's handler answers with the runtime's error type.
impl From<Error> for worker::Error {
    fn from(err: Error) -> Self {
        worker::Error::RustError(err.to_string())
    }
}

/// A failed request: what the client is told. Internal details go to the log,
/// never into `message`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub(crate) retry_after: Option<u32>,
    /// The request's origin is what was refused: the answer carries no
    /// CORS headers, so that page cannot read it.
    pub(crate) origin_refused: bool,
}

/// Handler result.
pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            origin_refused: false,
        }
    }

    /// 403: the key may not be used from the request's origin.
    pub(crate) fn origin_refused() -> Self {
        Self {
            origin_refused: true,
            ..Self::new(ErrorCode::Forbidden, "origin not allowed for this API key")
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(ErrorCode::Unavailable, message)
        }
    }

    /// The JSON response; if even that cannot be built, a bare 500.
    pub(crate) fn into_response(self) -> worker::Result<Response> {
        self.into_response_for(None)
    }

    /// The JSON response to a request of a public route from a page at
    /// `origin`: readable by that page (with `Retry-After` exposed, so a
    /// client can honour it) unless the origin itself was refused. A key
    /// the request did not prove, or proved and allows there, says nothing
    /// a page of that origin should not read.
    pub(crate) fn into_response_for(self, origin: Option<&str>) -> worker::Result<Response> {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set("cache-control", "no-store")?;
        if let Some(origin) = origin.filter(|_| !self.origin_refused) {
            headers.set("access-control-allow-origin", origin)?;
            headers.set("access-control-expose-headers", "retry-after")?;
            headers.set("vary", "origin")?;
        }
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

/// The one place a failure of the Worker's parts becomes a client's answer:
/// logged with its context; a transient or refused call is a 503 with
/// `Retry-After` (the client retries), an unreadable answer a 500.
impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        worker::console_error!("{err}");
        match err.kind {
            Kind::Timeout | Kind::Unavailable | Kind::Refused => {
                Self::unavailable("a dependency of the edge is unavailable, retry shortly")
            }
            Kind::Protocol => Self::new(ErrorCode::Internal, "internal error"),
        }
    }
}

impl From<worker::Error> for ApiError {
    fn from(err: worker::Error) -> Self {
        Error::from(err).into()
    }
}

impl From<worker::KvError> for ApiError {
    fn from(err: worker::KvError) -> Self {
        Error::from(err).into()
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        Error::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_kinds_are_retried() {
        assert!(Kind::Timeout.is_transient());
        assert!(Kind::Unavailable.is_transient());
        assert!(!Kind::Refused.is_transient());
        assert!(!Kind::Protocol.is_transient());
        let err = Error::timeout("relay:game:crash:0 push 7");
        assert_eq!(err.to_string(), "timed out: relay:game:crash:0 push 7");
    }
}
