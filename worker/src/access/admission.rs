//! The one place a request is admitted: its credential (an API key or a
//! browser token), its origin, its scopes, and its key's limits.

use shared::apikey::{self, ApiKeyRecord};
use shared::cursor::StreamName;
use shared::error::ErrorCode;
use worker::{Env, Request};

use crate::access::limits::{self, LeaseHandle};
use crate::access::{keys, tokens};
use crate::error::{ApiError, ApiResult};
use crate::objects::directory;
use crate::platform::now_ms;

/// A request whose key (or browser token) may read what it asked for.
pub(crate) struct Admitted {
    /// The key's record; for a token, with the token's narrower scopes.
    pub(crate) record: ApiKeyRecord,
    /// `key:<sha256>` of the key (a token's parent), to re-check it while a
    /// stream is open.
    pub(crate) kv_key: String,
    /// Value for `Access-Control-Allow-Origin`, if any.
    pub(crate) allow_origin: Option<String>,
    /// The credential was a browser token, not the key itself.
    pub(crate) via_token: bool,
    /// When that token expires (ms since the epoch): a stream opened with
    /// it ends then (the page mints a new one and resumes).
    pub(crate) expires_ms: Option<i64>,
    /// That token's name (its signature), under which its streams are
    /// counted.
    pub(crate) token_tag: Option<String>,
    /// The stream's slot under the key's `max_streams`, while it is open.
    pub(crate) lease: Option<LeaseHandle>,
}

/// The credential from `?api_key=` or `?token=` (EventSource cannot send
/// headers) or from `Authorization: Bearer <key or token>`.
pub(crate) fn presented_key(req: &Request) -> Option<String> {
    if let Ok(url) = req.url()
        && let Some((_, key)) = url
            .query_pairs()
            .find(|(name, _)| name == "api_key" || name == "token")
    {
        return Some(key.into_owned());
    }
    crate::http::bearer(req)
}

/// Resolves the request's key, or answers 401 (missing, unknown, revoked,
/// expired), 403 (origin) or 503 (KV down).
pub(crate) async fn authenticate(req: &Request, env: &Env) -> ApiResult<Admitted> {
    let key = presented_key(req).ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingApiKey,
            "an API key is required: ?api_key=… or Authorization: Bearer …",
        )
    })?;
    let via_token = shared::token::looks_like_token(&key);
    let (record, kv_key, expires_ms) = if via_token {
        let resolved = tokens::resolve(env, &key).await?;
        (resolved.record, resolved.kv_key, Some(resolved.expires_ms))
    } else {
        let unknown = || ApiError::new(ErrorCode::InvalidApiKey, "unknown API key");
        if !apikey::is_well_formed(&key) {
            return Err(unknown());
        }
        let kv_key = apikey::kv_key(&key);
        let record = keys::lookup(env, &kv_key).await?.ok_or_else(unknown)?;
        record
            .check_usable(now_ms() as i64)
            .map_err(|why| ApiError::new(ErrorCode::InvalidApiKey, why.to_string()))?;
        (record, kv_key, None)
    };
    let origin = req.headers().get("origin").ok().flatten();
    let allow_origin = match (&record.origins, origin) {
        (None, _) => Some("*".to_string()),
        (Some(allowed), Some(origin)) if allowed.iter().any(|o| o == &origin) => Some(origin),
        (Some(_), Some(_)) => return Err(ApiError::origin_refused()),
        // Not a browser: origins restrict browsers only.
        (Some(_), None) => None,
    };
    Ok(Admitted {
        record,
        kv_key,
        allow_origin,
        via_token,
        expires_ms,
        token_tag: via_token.then(|| shared::token::tag(&key)).flatten(),
        lease: None,
    })
}

/// Authenticates, checks that the key may read every one of `streams` and
/// that each is known (404 otherwise, so no request makes an object for a
/// made-up name), and takes a slot under its stream limits.
///
/// This is the one place a stream is admitted.
pub(crate) async fn admit(req: &Request, env: &Env, streams: &[StreamName]) -> ApiResult<Admitted> {
    let mut admitted = authenticate(req, env).await?;
    check_scopes(env, &admitted.record, streams).await?;
    for stream in streams {
        check_known(env, stream).await?;
    }
    admitted.lease =
        limits::admit_stream(env, &admitted.record, admitted.token_tag.as_deref()).await?;
    Ok(admitted)
}

/// Authenticates a REST request, checks its scopes for `streams` (none for a
/// listing) and counts it under the key's request limit.
pub(crate) async fn admit_request(
    req: &Request,
    env: &Env,
    streams: &[StreamName],
) -> ApiResult<Admitted> {
    let admitted = authenticate(req, env).await?;
    check_scopes(env, &admitted.record, streams).await?;
    limits::admit_request(env, &admitted.record).await?;
    Ok(admitted)
}

/// 404 unless the directory knows `stream`. When the directory cannot be
/// asked, streams stay available: the stream is let through (its object
/// answers it as for any known name), and the outage is logged.
async fn check_known(env: &Env, stream: &StreamName) -> ApiResult<()> {
    match directory::knows(env, stream).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::not_found(match stream {
            StreamName::Game(slug) => format!("unknown game {slug}: no round of it was stored yet"),
            StreamName::Type(t) => {
                format!("unknown game type {t}: no round of a game of that type was stored yet")
            }
        })),
        Err(err) => {
            worker::console_error!(
                "admission: the games directory cannot be asked ({err}); stream {stream} let through"
            );
            Ok(())
        }
    }
}

/// 403 unless `record` may read every one of `streams` (the directory is
/// asked for a game's type only when the key is scoped by type).
pub(crate) async fn check_scopes(
    env: &Env,
    record: &ApiKeyRecord,
    streams: &[StreamName],
) -> ApiResult<()> {
    for stream in streams {
        let allowed = match stream {
            StreamName::Type(t) => record.allows_type(t),
            StreamName::Game(slug) if record.allows_game(slug, None) => true,
            // Only a key scoped by type needs to know the game's type.
            StreamName::Game(slug) if record.types.is_some() => {
                let game = directory::find_game(env, slug).await?;
                record.allows_game(slug, game.as_ref().map(|g| g.game_type.as_str()))
            }
            StreamName::Game(_) => false,
        };
        if !allowed {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                match stream {
                    StreamName::Game(slug) => format!("this API key may not read game {slug}"),
                    StreamName::Type(t) => format!("this API key may not read game type {t}"),
                },
            ));
        }
    }
    Ok(())
}
