//! The JSON error body of every public route (docs/protocol.md#errors):
//! `{"error":{"code":"invalid_api_key","message":"…"}}`.

use serde::{Deserialize, Serialize};

/// Every error code the edge answers with, and its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a query parameter, slug, type or cursor is malformed.
    BadRequest,
    /// 400: the ingest batch is not valid JSON of the expected shape.
    InvalidBatch,
    /// 401: no API key was given.
    MissingApiKey,
    /// 401: the API key is unknown, revoked or expired.
    InvalidApiKey,
    /// 401: the ingest signature is missing, wrong or too old.
    InvalidSignature,
    /// 401: the admin token is missing or wrong.
    Unauthorized,
    /// 401: a browser token is expired, forged or malformed, or its key revoked.
    InvalidToken,
    /// 403: the key may not read this stream, or not from this origin.
    Forbidden,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 413: the body is over the size bound.
    PayloadTooLarge,
    /// 429: the key's connect or request rate was hit (comes with `Retry-After`).
    RateLimited,
    /// 429: the key holds its most concurrent streams (comes with `Retry-After`).
    TooManyStreams,
    /// 503: a dependency is overloaded or unavailable (comes with `Retry-After`).
    Unavailable,
    /// 500: a bug; details are logged, not returned.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidBatch => 400,
            Self::MissingApiKey
            | Self::InvalidApiKey
            | Self::InvalidSignature
            | Self::Unauthorized
            | Self::InvalidToken => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::PayloadTooLarge => 413,
            Self::RateLimited | Self::TooManyStreams => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

/// `{"code":…,"message":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation; never internals, never a key.
    pub message: String,
}

/// The whole error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error body with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and an enum cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"error":{"code":"internal","message":"internal error"}}"#.to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_json_shape() {
        let body = ErrorBody::new(ErrorCode::InvalidApiKey, "unknown API key");
        assert_eq!(
            body.to_json(),
            r#"{"error":{"code":"invalid_api_key","message":"unknown API key"}}"#
        );
        assert_eq!(
            serde_json::from_str::<ErrorBody>(&body.to_json()).unwrap(),
            body
        );
    }

    #[test]
    fn statuses() {
        assert_eq!(ErrorCode::InvalidApiKey.status(), 401);
        assert_eq!(ErrorCode::InvalidSignature.status(), 401);
        assert_eq!(ErrorCode::Forbidden.status(), 403);
        assert_eq!(ErrorCode::InvalidBatch.status(), 400);
        assert_eq!(ErrorCode::PayloadTooLarge.status(), 413);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
        assert_eq!(ErrorCode::TooManyStreams.status(), 429);
        assert_eq!(ErrorCode::InvalidToken.status(), 401);
        assert_eq!(
            serde_json::to_string(&ErrorCode::TooManyStreams).unwrap(),
            r#""too_many_streams""#
        );
    }
}
