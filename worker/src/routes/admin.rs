//! Admin routes, guarded by `Authorization: Bearer
//! <ADMIN_TOKEN>`: create, list and revoke API keys, and look at a stream.
//!
//! KV layout: `key:<sha256 hex>` → the key's record (the only lookup the
//! streams need) and `id:<key id>` → `<sha256 hex>` (so a key can be revoked
//! by id without ever storing the key).

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use shared::apikey::{self, ApiKeyRecord};
use shared::cursor::StreamName;
use shared::error::ErrorCode;
use shared::names;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use worker::{Date, Env, Headers, Request, Response};

use crate::access::keys::{self, ID_PREFIX};
use crate::access::limits;
use crate::config::KEYS;
use crate::error::{ApiError, ApiResult};
use crate::http::{self, to_json};
use crate::metrics::exposition::{self, Scrape};
use crate::metrics::series;
use crate::objects::directory;
use crate::objects::stubs::StreamStub;
use crate::platform::random_bytes;

/// Longest id looked up. Ids are `key_` and 16 hex digits; KV refuses keys
/// over 512 bytes with an error (a 503), so a longer id in a URL is simply
/// no key.
const MAX_ID_LEN: usize = 64;

fn no_such_key() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no API key with this id")
}

/// Refuses the request unless it carries the admin token.
pub(crate) fn authorize(req: &Request, env: &Env) -> ApiResult<()> {
    let refused = || ApiError::new(ErrorCode::Unauthorized, "admin token required");
    let config = crate::config::get(env);
    let Some(expected) = config.admin_token.as_deref() else {
        return Err(refused());
    };
    let presented = http::bearer(req).ok_or_else(refused)?;
    // Constant-time: the comparison must not tell how much of a guess was right.
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Body of `POST /admin/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default)]
    games: Option<Vec<String>>,
    #[serde(default)]
    types: Option<Vec<String>>,
    #[serde(default)]
    origins: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    max_streams: Option<u32>,
    #[serde(default)]
    connects_per_minute: Option<u32>,
    #[serde(default)]
    requests_per_minute: Option<u32>,
    /// `sk_test_` instead of `sk_live_`.
    #[serde(default)]
    test: bool,
}

/// Answer of `POST /admin/keys`: the record plus, this once, the key.
#[derive(Serialize)]
struct Created {
    key: String,
    #[serde(flatten)]
    record: ApiKeyRecord,
}

fn now_rfc3339() -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(Date::now().as_millis()) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn validate_names(list: &Option<Vec<String>>, what: &str) -> ApiResult<()> {
    for name in list.iter().flatten() {
        if names::validate(name).is_err() {
            return Err(ApiError::bad_request(format!(
                "{what}: invalid name {name:?}"
            )));
        }
    }
    Ok(())
}

fn validate_origins(origins: &Option<Vec<String>>) -> ApiResult<()> {
    for origin in origins.iter().flatten() {
        let parsed = url::Url::parse(origin).ok();
        let ok = parsed.is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && !origin.ends_with('/')
        });
        if !ok {
            return Err(ApiError::bad_request(format!(
                "origins: {origin:?} is not an origin like https://example.com"
            )));
        }
    }
    Ok(())
}

/// `POST /admin/keys`.
pub(crate) async fn create_key(mut req: Request, env: Env) -> ApiResult<Response> {
    let body = req.bytes().await?;
    let input: CreateKey = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid key request: {e}")))?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("name must be 1 to 100 characters"));
    }
    validate_names(&input.games, "games")?;
    validate_names(&input.types, "types")?;
    validate_origins(&input.origins)?;
    if let Some(expires) = &input.expires_at {
        let at = OffsetDateTime::parse(expires, &Rfc3339).map_err(|_| {
            ApiError::bad_request("expires_at must be RFC 3339, e.g. 2027-01-01T00:00:00Z")
        })?;
        if at.unix_timestamp_nanos() / 1_000_000 <= i128::from(Date::now().as_millis()) {
            return Err(ApiError::bad_request("expires_at is in the past"));
        }
    }
    let mut failed = false;
    let prefix = if input.test {
        apikey::PREFIX_TEST
    } else {
        apikey::PREFIX_LIVE
    };
    let key = apikey::generate(prefix, |buf| failed |= random_bytes(buf).is_err());
    let mut id_bytes = [0u8; 8];
    if failed || random_bytes(&mut id_bytes).is_err() {
        return Err(ApiError::unavailable("no randomness available, retry"));
    }
    let id: String = std::iter::once("key_".to_string())
        .chain(id_bytes.iter().map(|b| format!("{b:02x}")))
        .collect();
    let record = ApiKeyRecord {
        id: id.clone(),
        name: name.to_string(),
        games: input.games,
        types: input.types,
        origins: input.origins,
        max_streams: input.max_streams,
        connects_per_minute: input.connects_per_minute,
        requests_per_minute: input.requests_per_minute,
        created_at: now_rfc3339(),
        expires_at: input.expires_at,
        revoked: false,
    };
    let kv = env.kv(KEYS)?;
    let hash = apikey::hash_hex(&key);
    kv.put(
        &format!("{}{hash}", apikey::KV_PREFIX),
        serde_json::to_string(&record)?,
    )?
    .execute()
    .await?;
    kv.put(&format!("{ID_PREFIX}{id}"), hash)?.execute().await?;
    worker::console_log!("admin: created API key {id}");
    respond(201, to_json(&Created { key, record })?)
}

/// `GET /admin/keys`: every record, never a key or a hash.
pub(crate) async fn list_keys(env: Env) -> ApiResult<Response> {
    #[derive(Serialize)]
    struct Body {
        keys: Vec<ApiKeyRecord>,
    }
    let keys = all_records(&env).await?;
    respond(200, to_json(&Body { keys })?)
}

/// Every key's record, oldest first.
async fn all_records(env: &Env) -> ApiResult<Vec<ApiKeyRecord>> {
    let kv = env.kv(KEYS)?;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = kv.list().prefix(apikey::KV_PREFIX.to_string());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await?;
        names.extend(page.keys.into_iter().map(|k| k.name));
        match page.cursor {
            Some(c) if !page.list_complete => cursor = Some(c),
            _ => break,
        }
    }
    // Read at once, not one after another: a scrape reads every record.
    let read = join_all(names.iter().map(|name| kv.get(name).json::<ApiKeyRecord>())).await;
    let mut keys = Vec::with_capacity(names.len());
    for record in read {
        keys.extend(record?);
    }
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(keys)
}

/// `DELETE /admin/keys/:id`: revokes; the record stays, marked revoked.
pub(crate) async fn revoke_key(env: Env, id: &str) -> ApiResult<Response> {
    if id.len() > MAX_ID_LEN {
        return Err(no_such_key());
    }
    let kv = env.kv(KEYS)?;
    let hash = kv
        .get(&format!("{ID_PREFIX}{id}"))
        .text()
        .await?
        .ok_or_else(no_such_key)?;
    let kv_key = format!("{}{hash}", apikey::KV_PREFIX);
    let mut record = kv
        .get(&kv_key)
        .json::<ApiKeyRecord>()
        .await?
        .ok_or_else(no_such_key)?;
    record.revoked = true;
    kv.put(&kv_key, serde_json::to_string(&record)?)?
        .execute()
        .await?;
    keys::forget(&kv_key);
    worker::console_log!("admin: revoked API key {id}");
    respond(200, to_json(&record)?)
}

/// `GET /admin/keys/:id/usage?days=N` (1–90, default 7): the key's usage per
/// UTC day, newest first; 404 for an unknown id.
pub(crate) async fn usage(req: &Request, env: Env, id: &str) -> ApiResult<Response> {
    let days = match http::query(req, "days") {
        None => 7,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=shared::limits::USAGE_KEEP_DAYS).contains(d))
            .ok_or_else(|| ApiError::bad_request("days must be 1 to 90"))?,
    };
    if id.len() > MAX_ID_LEN || keys::kv_key_of_id(&env, id).await?.is_none() {
        return Err(no_such_key());
    }
    let body = limits::usage(&env, id, days).await?;
    respond(200, to_json(&body)?)
}

/// `GET /admin/limits`: whether limits are on, and what this isolate saw of
/// Upstash: admissions let through without it, and calls it refused (a
/// wrong token, a spent quota). Per isolate, since it started.
pub(crate) fn limits_health(env: &Env) -> ApiResult<Response> {
    #[derive(Serialize)]
    struct Body {
        limits: &'static str,
        #[serde(flatten)]
        seen: limits::Health,
    }
    let body = Body {
        limits: super::limits_state(env),
        seen: limits::health(),
    };
    respond(200, to_json(&body)?)
}

/// `PUT`/`DELETE /admin/faults/directory`: makes the games directory fail
/// (or heal), for tests of what keeps working without it. Only where the
/// `ALLOW_FAULTS` variable is `1` (never in the deployed environments);
/// elsewhere the route does not exist.
pub(crate) async fn directory_fault(env: Env, fail: bool) -> ApiResult<Response> {
    faults_allowed(&env)?;
    directory::set_failing(&env, fail).await?;
    Ok(Response::from_json(
        &serde_json::json!({ "failing": fail }),
    )?)
}

/// `PUT /admin/faults/feed-owners`: the isolate's feed owners go silent as
/// if the runtime had killed their requests, for tests of the feeds'
/// watchdog. `ALLOW_FAULTS` only, as above.
pub(crate) fn feed_owners_fault(env: &Env) -> ApiResult<Response> {
    faults_allowed(env)?;
    let silenced = crate::clients::feed::silence_owners();
    Ok(Response::from_json(
        &serde_json::json!({ "silenced": silenced }),
    )?)
}

fn faults_allowed(env: &Env) -> ApiResult<()> {
    if crate::config::get(env).faults.allowed {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no such route"))
    }
}

/// The stream `/admin/streams/:kind/:name` names.
fn stream_of(kind: &str, name: &str) -> ApiResult<StreamName> {
    let name =
        names::validate(name).map_err(|e| ApiError::bad_request(format!("invalid name: {e}")))?;
    match kind {
        "game" => Ok(StreamName::Game(name.to_owned())),
        "type" => Ok(StreamName::Type(name.to_owned())),
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such route")),
    }
}

/// `GET /admin/streams/:kind/:name`: a stream object's socket count, stored
/// rounds and instance id (which changes when the object was evicted and
/// rebuilt). `POST …/disconnect` ends every client's stream (they reconnect
/// and resume).
pub(crate) async fn stream_admin(
    env: Env,
    kind: &str,
    name: &str,
    disconnect: bool,
) -> ApiResult<Response> {
    let object = StreamStub::of(&env, &stream_of(kind, name)?)?;
    let body = if disconnect {
        to_json(&object.disconnect().await?)?
    } else {
        object.stats().await?
    };
    respond(200, body)
}

/// `GET /admin/streams/:kind/:name/series?minutes=N` (1–1440, default 60):
/// the stream's figures per minute (`metrics::series::Series`).
pub(crate) async fn stream_series(
    req: &Request,
    env: Env,
    kind: &str,
    name: &str,
) -> ApiResult<Response> {
    let minutes = series::parse_minutes(http::query(req, "minutes").as_deref())
        .map_err(ApiError::bad_request)?;
    let object = StreamStub::of(&env, &stream_of(kind, name)?)?;
    respond(200, object.series(minutes).await?)
}

/// `GET /admin/streams/:kind/:name/rounds?limit=N` (as the public route:
/// 1–1000, default 50):
/// the stream's latest rounds, newest first, as `GET /api/games/:game/rounds`
/// answers them (the console shows them without an API key).
pub(crate) async fn stream_rounds(
    req: &Request,
    env: Env,
    kind: &str,
    name: &str,
) -> ApiResult<Response> {
    let limit = super::api::rounds_limit(req)?;
    let object = StreamStub::of(&env, &stream_of(kind, name)?)?;
    let array = object.rounds(limit, i64::MAX).await?;
    respond(200, super::api::rounds_body(&array))
}

/// Everything a scrape shows, gathered with `2 + S` object calls whatever
/// the audience: the directory's games and its fail-open total, then one
/// call to each of the S streams (every game and game type; relays are
/// not called). Keys come from KV and, with limits on, one Upstash
/// pipeline. A stream that does not answer, or Upstash, is left out of the
/// scrape (and logged) rather than failing all of it.
async fn gather(env: &Env) -> ApiResult<Scrape> {
    let games = directory::games(env).await?;
    let mut streams: Vec<StreamName> = games
        .iter()
        .map(|g| StreamName::Game(g.slug.clone()))
        .collect();
    let mut types: Vec<&str> = games.iter().map(|g| g.game_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    streams.extend(types.into_iter().map(|t| StreamName::Type(t.to_owned())));
    let asked = join_all(streams.iter().map(|stream| async move {
        let figures = match StreamStub::of(env, stream) {
            Ok(stub) => stub.figures().await,
            Err(err) => Err(err),
        };
        figures.inspect_err(|err| worker::console_warn!("metrics: {stream} did not answer: {err}"))
    }))
    .await;
    let failed_open = directory::failed_open(env).await?;
    let mut records = all_records(env).await?;
    records.retain(|r| !r.revoked);
    // Without Upstash the scrape still answers (its fail-open total is what
    // an operator needs then); the keys' figures are left out.
    let keys = limits::keys_now(env, &records)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(Scrape {
        streams: asked.into_iter().filter_map(Result::ok).collect(),
        keys,
        failed_open,
    })
}

/// `GET /admin/metrics`: the edge's figures for Prometheus (see
/// `metrics::exposition`).
pub(crate) async fn metrics(env: Env) -> ApiResult<Response> {
    let scrape = gather(&env).await?;
    let text = exposition::render(&scrape)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the metrics could not be written"))?;
    let headers = Headers::new();
    headers.set("content-type", exposition::CONTENT_TYPE)?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::builder()
        .with_headers(headers)
        .fixed(text.into_bytes()))
}

/// `GET /admin/overview`: the same figures as JSON, with the Worker's
/// health (the console's first read).
pub(crate) async fn overview(env: Env) -> ApiResult<Response> {
    #[derive(Serialize)]
    struct Body {
        #[serde(flatten)]
        scrape: Scrape,
        limits: &'static str,
        config: serde_json::Value,
    }
    let body = Body {
        scrape: gather(&env).await?,
        limits: super::limits_state(&env),
        config: super::config_state(&env),
    };
    respond(200, to_json(&body)?)
}

fn respond(status: u16, body: Vec<u8>) -> ApiResult<Response> {
    Ok(http::json(status, body, None)?)
}
