//! Method and path → handler: the Worker's only entry point. Hand-written
//! rather than `worker::Router` because the route set is small and this
//! keeps the 404/405 distinction, CORS preflight and the JSON error
//! rendering in one obvious place. Every route, its credential and its
//! errors are in `docs/protocol.md`.
//!
//! - [`sse`]: the streams; [`api`]: the public REST routes; [`tokens`]:
//!   minting browser tokens; [`admin`]: keys, usage, stream stats, faults;
//!   [`ingest`]: `POST /internal/rounds`.
//!
//! Below it: `clients` (a stream's response), `access`, `objects`, the base.

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod ingest;
pub(crate) mod sse;
pub(crate) mod tokens;

use shared::cursor::StreamName;
use shared::error::ErrorCode;
use shared::names;
use worker::{Context, Env, Headers, Method, Request, Response, Result};

use crate::access::{admission, limits};
use crate::error::{ApiError, ApiResult};

/// Handles one request to the Worker.
///
/// `ctx` keeps the request alive for work that must finish after the
/// response ended (a stream giving its limit slot back).
pub async fn handle(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let path = req.path();
    let method = req.method();
    // `worker::Method` reads every method it does not know (PROPFIND, PURGE,
    // LOCK, …) as GET, which would serve them as GET: they are refused here.
    let raw_method = req.inner().method();
    if raw_method != method.as_ref() {
        return ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("method {raw_method} not allowed here"),
        )
        .into_response();
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // A page reads the public routes' errors too (`Retry-After` included).
    let origin = is_public(&segments)
        .then(|| req.headers().get("origin").ok().flatten())
        .flatten();
    // Fail-open admissions of earlier requests, added to the global total.
    limits::report_failed_open(&env, &ctx);
    let outcome = route(req, env, ctx, &method, &segments).await;
    match outcome {
        Ok(response) => Ok(response),
        Err(err) => err.into_response_for(origin.as_deref()),
    }
}

/// The routes a page calls with a key or token: `/sse…` and `/api/…`.
fn is_public(segments: &[&str]) -> bool {
    matches!(segments.first(), Some(&"sse") | Some(&"api"))
}

async fn route(
    req: Request,
    env: Env,
    ctx: Context,
    method: &Method,
    segments: &[&str],
) -> ApiResult<Response> {
    use Method::{Delete, Get, Head, Options, Post, Put};
    if *method == Options && is_public(segments) {
        return preflight(&req, &env).await;
    }
    match segments {
        [""] | ["demo"] => {
            allow(method, &[Get, Head])?;
            demo_page()
        }
        ["client.js"] => {
            allow(method, &[Get, Head])?;
            client_script()
        }
        [name @ ("console" | "console.js" | "console.css")] => {
            allow(method, &[Get, Head])?;
            console_file(name)
        }
        ["favicon.ico"] => Ok(Response::builder().with_status(204).empty()),
        ["healthz"] => {
            allow(method, &[Get, Head])?;
            healthz(&env)
        }
        ["sse"] => {
            allow(method, &[Get])?;
            sse::multiplexed_stream(req, env, ctx).await
        }
        ["sse", "type", game_type] => {
            allow(method, &[Get])?;
            let game_type = names::validate(game_type)
                .map_err(|e| ApiError::bad_request(format!("invalid game type: {e}")))?;
            sse::single_stream(req, env, ctx, StreamName::Type(game_type.to_owned())).await
        }
        ["sse", game] => {
            allow(method, &[Get])?;
            let slug = names::validate(game)
                .map_err(|e| ApiError::bad_request(format!("invalid game slug: {e}")))?;
            sse::single_stream(req, env, ctx, StreamName::Game(slug.to_owned())).await
        }
        ["api", "tokens"] => {
            allow(method, &[Post])?;
            tokens::mint(req, env).await
        }
        ["api", "games"] => {
            allow(method, &[Get])?;
            api::games(req, env).await
        }
        ["api", "games", game, "latest"] => {
            allow(method, &[Get])?;
            api::latest(req, env, game).await
        }
        ["api", "games", game, "rounds"] => {
            allow(method, &[Get])?;
            api::rounds(req, env, game).await
        }
        ["api", "games", game, "viewers"] => {
            allow(method, &[Get])?;
            api::viewers(req, env, game).await
        }
        ["internal", "rounds"] => {
            allow(method, &[Post])?;
            ingest::post_rounds(req, env, ctx).await
        }
        ["admin", "keys"] => {
            allow(method, &[Get, Post])?;
            admin::authorize(&req, &env)?;
            if *method == Post {
                admin::create_key(req, env).await
            } else {
                admin::list_keys(env).await
            }
        }
        ["admin", "limits"] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::limits_health(&env)
        }
        ["admin", "keys", id, "usage"] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::usage(&req, env, id).await
        }
        ["admin", "keys", id] => {
            allow(method, &[Delete])?;
            admin::authorize(&req, &env)?;
            admin::revoke_key(env, id).await
        }
        ["admin", "faults", "directory"] => {
            allow(method, &[Put, Delete])?;
            admin::authorize(&req, &env)?;
            admin::directory_fault(env, *method == Put).await
        }
        ["admin", "faults", "feed-owners"] => {
            allow(method, &[Put])?;
            admin::authorize(&req, &env)?;
            admin::feed_owners_fault(&env)
        }
        ["admin", "streams", kind, name] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::stream_admin(env, kind, name, false).await
        }
        ["admin", "streams", kind, name, "series"] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::stream_series(&req, env, kind, name).await
        }
        ["admin", "streams", kind, name, "rounds"] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::stream_rounds(&req, env, kind, name).await
        }
        ["admin", "metrics"] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::metrics(env).await
        }
        ["admin", "overview"] => {
            allow(method, &[Get])?;
            admin::authorize(&req, &env)?;
            admin::overview(env).await
        }
        ["admin", "streams", kind, name, "disconnect"] => {
            allow(method, &[Post])?;
            admin::authorize(&req, &env)?;
            admin::stream_admin(env, kind, name, true).await
        }
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such route")),
    }
}

fn allow(method: &Method, allowed: &[Method]) -> ApiResult<()> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("method {method} not allowed here"),
        ))
    }
}

/// A page or script compiled into the Worker, with its headers.
fn asset(body: &'static str, headers: &[(&str, &str)]) -> ApiResult<Response> {
    let out = Headers::new();
    for (name, value) in headers {
        out.set(name, value)?;
    }
    Ok(Response::builder()
        .with_headers(out)
        .fixed(body.as_bytes().to_vec()))
}

/// The demo page: one card per game, live over EventSource with the key
/// from the page's own URL. Static, so it is compiled in.
fn demo_page() -> ApiResult<Response> {
    asset(
        include_str!("demo.html"),
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("cache-control", "no-cache"),
            (
                "content-security-policy",
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            ("referrer-policy", "no-referrer"),
        ],
    )
}

/// `GET /client.js`: the browser client (`@gamefeed/client`, built from
/// `client/`), for pages on any origin to import as a module.
fn client_script() -> ApiResult<Response> {
    asset(
        include_str!("../../../client/dist/index.js"),
        &[
            ("content-type", "text/javascript; charset=utf-8"),
            ("cache-control", "public, max-age=300"),
            // A module script from another origin is fetched with CORS.
            ("access-control-allow-origin", "*"),
            ("x-content-type-options", "nosniff"),
        ],
    )
}

/// Headers of the console's page and files: its own scripts and styles
/// only, calls to this origin only, no frame, no referrer, and no form
/// ever submitted by the browser itself (a form that did would put what
/// it holds in a URL).
const CONSOLE_HEADERS: [(&str, &str); 5] = [
    ("cache-control", "no-cache"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
];

/// `GET /console`, `/console.js`, `/console.css`: the operators' console
/// (built from `console/`). Public files; every figure it shows comes from
/// the admin routes, with the token the operator types.
fn console_file(name: &str) -> ApiResult<Response> {
    let (body, kind) = match name {
        "console.js" => (
            include_str!("../../../console/dist/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "console.css" => (
            include_str!("../../../console/dist/console.css"),
            "text/css; charset=utf-8",
        ),
        _ => (
            include_str!("../../../console/index.html"),
            "text/html; charset=utf-8",
        ),
    };
    let mut headers = vec![("content-type", kind)];
    headers.extend(CONSOLE_HEADERS);
    asset(body, &headers)
}

/// `{"status":"ok","limits":"on"|"off","config":"ok"|[names]}`: `config`
/// lists the variables whose values could not be used (names only, never
/// values). Public: it says nothing a caller could use to time an attack
/// on the limits (how often they fail open is `GET /admin/limits`).
fn healthz(env: &Env) -> ApiResult<Response> {
    #[derive(serde::Serialize)]
    struct Health {
        status: &'static str,
        limits: &'static str,
        config: serde_json::Value,
    }
    let health = Health {
        status: "ok",
        limits: limits_state(env),
        config: config_state(env),
    };
    Ok(crate::http::json(
        200,
        crate::http::to_json(&health)?,
        None,
    )?)
}

/// `"ok"`, or the names of the variables whose values could not be used.
fn config_state(env: &Env) -> serde_json::Value {
    let problems = crate::config::get(env).problem_names();
    if problems.is_empty() {
        serde_json::json!("ok")
    } else {
        serde_json::json!(problems)
    }
}

/// `"on"` or `"off"`: whether per-key limits are on.
fn limits_state(env: &Env) -> &'static str {
    if limits::enabled(env) { "on" } else { "off" }
}

/// CORS preflight of the public routes. When the URL carries the key or a
/// token (`?api_key=`, `?token=`), its allowed origins decide; a key sent as a header cannot
/// be seen here, so the preflight passes and the real request is checked.
async fn preflight(req: &Request, env: &Env) -> ApiResult<Response> {
    let origin = req.headers().get("origin").ok().flatten();
    let headers = Headers::new();
    if let Some(origin) = origin {
        let key_in_url = req.url().ok().is_some_and(|u| {
            u.query_pairs()
                .any(|(name, _)| name == "api_key" || name == "token")
        });
        let allow_origin = if key_in_url {
            admission::authenticate(req, env)
                .await?
                .allow_origin
                .unwrap_or(origin)
        } else {
            origin
        };
        headers.set("access-control-allow-origin", &allow_origin)?;
        headers.set("access-control-allow-methods", "GET, HEAD, POST, OPTIONS")?;
        headers.set(
            "access-control-allow-headers",
            "authorization, last-event-id, cache-control, content-type",
        )?;
        headers.set("access-control-max-age", "86400")?;
        headers.set("vary", "origin")?;
    }
    Ok(Response::builder()
        .with_status(204)
        .with_headers(headers)
        .empty())
}
