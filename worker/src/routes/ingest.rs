//! `POST /internal/rounds`: a signed batch of round events from
//! ingest, split per Durable Object (the game's and the game type's), stored
//! by every one of them before the 2xx that lets ingest acknowledge.

use std::cell::RefCell;
use std::collections::HashMap;

use futures_util::StreamExt;
use futures_util::future::join_all;
use shared::error::ErrorCode;
use shared::{IngestBatch, IngestReply, RoundEvent, names, signature};
use worker::{Context, Date, Env, Headers, Request, Response};

use crate::error::{ApiError, ApiResult};
use crate::objects::directory;
use crate::objects::protocol::{GameEntry, game_object, type_object};
use crate::objects::stubs::StreamStub;
use crate::platform::background;

/// Largest accepted batch body.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Whether `n` survives JavaScript numbers unchanged. Events reach the
/// stream objects through `JSON.parse` and their ids SQLite through JS
/// numbers: an integer beyond ±(2^53 - 1) would be refused there (a 503 that
/// ingest would retry forever, stalling the game) or rounded into another
/// round's id. Browsers could not read it exactly either.
fn exact_in_js(n: i64) -> bool {
    n.unsigned_abs() < 1 << 53
}

/// Handles one batch.
pub(crate) async fn post_rounds(mut req: Request, env: Env, ctx: Context) -> ApiResult<Response> {
    let refused = || ApiError::new(ErrorCode::InvalidSignature, "invalid signature");
    let config = crate::config::get(&env);
    let secret = config.ingest_secret.as_deref().ok_or_else(refused)?;
    // Header first: a request with no fresh, well-formed signature is
    // refused before a byte of its body is read.
    let header = req.headers().get(signature::HEADER).ok().flatten();
    let now = (Date::now().as_millis() / 1000) as i64;
    let parsed = signature::precheck(header.as_deref(), now).map_err(|why| {
        worker::console_warn!("ingest batch refused: {why}");
        refused()
    })?;
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let body = read_capped(&mut req, MAX_BODY_BYTES).await?;
    if let Err(why) = parsed.verify(secret.as_bytes(), &body) {
        worker::console_warn!("ingest batch refused: {why}");
        return Err(refused());
    }
    let batch: IngestBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidBatch, format!("malformed batch: {e}")))?;
    for event in &batch.events {
        let round = &event.round;
        if names::validate(&round.game_slug).is_err() || names::validate(&round.game_type).is_err()
        {
            return Err(ApiError::new(
                ErrorCode::InvalidBatch,
                format!("round {}: invalid game slug or type", round.round_id),
            ));
        }
        if ![round.round_id, round.game_id, round.timestamp]
            .into_iter()
            .all(exact_in_js)
        {
            return Err(ApiError::new(
                ErrorCode::InvalidBatch,
                format!(
                    "round {}: round_id, game_id and timestamp must be within ±(2^53 - 1)",
                    round.round_id
                ),
            ));
        }
    }

    // Game objects first in the list; only their replies are summed, since
    // type objects see the same events a second time.
    let games = group(&batch.events, |e| game_object(&e.round.game_slug));
    let types = group(&batch.events, |e| type_object(&e.round.game_type));
    let game_count = games.len();
    let mut calls = Vec::with_capacity(games.len() + types.len());
    for (object, events) in games.into_iter().chain(types) {
        let stub = StreamStub::new(&env, object)?;
        calls.push(async move {
            let stored = stub.store(events).await;
            (stub, stored)
        });
    }
    let mut reply = IngestReply::default();
    for (index, (object, result)) in join_all(calls).await.into_iter().enumerate() {
        match result {
            Ok(part) if index < game_count => reply += part,
            Ok(_) => {}
            Err(err) => {
                worker::console_error!("store in {} failed: {err}", object.name());
                return Err(ApiError::unavailable(
                    "a stream could not store the batch, retry",
                ));
            }
        }
    }
    // After the stores: the directory never names a round no stream holds.
    // It is on the batch's path only for games this isolate has not yet seen
    // recorded there (new, or with a new type or id), so that every game
    // with a stored round is listed before ingest acknowledges it. Otherwise
    // only the latest round ids move, after the response: a failing
    // directory then stalls nothing but `/api/games`'s latest ids.
    let entries = directory_entries(&batch.events);
    if entries.iter().any(|e| !recorded(e)) {
        if let Err(err) = directory::upsert(&env, entries.clone()).await {
            worker::console_error!("directory update failed: {err}");
            return Err(ApiError::unavailable(
                "the games directory could not record a new game, retry",
            ));
        }
        remember(&entries);
        directory::invalidate_copy();
    } else {
        let env = env.clone();
        background::after_response(&ctx, async move {
            if let Err(err) = directory::upsert(&env, entries.clone()).await {
                worker::console_error!("directory update of latest round ids failed: {err}");
            }
        });
    }
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    let json = serde_json::to_vec(&reply)?;
    Ok(Response::builder().with_headers(headers).fixed(json))
}

/// Slug → (id, type) of games this isolate saw recorded in the directory
/// (see `crate::isolate`).
#[derive(Default)]
pub(crate) struct Recorded(RefCell<HashMap<String, (i64, String)>>);

/// Most games remembered as recorded; past it the memory starts over (which
/// costs one waiting directory write per game).
const RECORDED_MAX: usize = 10_000;

fn recorded(entry: &GameEntry) -> bool {
    crate::isolate::get::<Recorded>()
        .0
        .borrow()
        .get(&entry.slug)
        .is_some_and(|(id, t)| *id == entry.game_id && *t == entry.game_type)
}

fn remember(entries: &[GameEntry]) {
    let recorded = crate::isolate::get::<Recorded>();
    let mut r = recorded.0.borrow_mut();
    if r.len() + entries.len() > RECORDED_MAX {
        r.clear();
    }
    for e in entries {
        r.insert(e.slug.clone(), (e.game_id, e.game_type.clone()));
    }
}

/// One entry per game of the batch, with its highest round id.
fn directory_entries(events: &[RoundEvent]) -> Vec<GameEntry> {
    let mut entries: Vec<GameEntry> = Vec::new();
    for event in events {
        let round = &event.round;
        match entries.iter_mut().find(|e| e.slug == round.game_slug) {
            Some(entry) => {
                entry.latest_round_id = entry.latest_round_id.max(round.round_id);
                entry.game_type.clone_from(&round.game_type);
                entry.game_id = round.game_id;
            }
            None => entries.push(GameEntry {
                slug: round.game_slug.clone(),
                game_id: round.game_id,
                game_type: round.game_type.clone(),
                latest_round_id: round.round_id,
            }),
        }
    }
    entries
}

/// The request body, refused with 413 as soon as more than `cap` bytes
/// arrived: a chunked upload without `Content-Length` is never held whole.
async fn read_capped(req: &mut Request, cap: usize) -> ApiResult<Vec<u8>> {
    let mut stream = match req.stream() {
        Ok(stream) => stream,
        // No body at all (the signature check that follows refuses it).
        Err(_) => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > cap {
            worker::console_warn!("ingest batch refused: body over {cap} bytes");
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("batch over {MAX_BODY_BYTES} bytes: send smaller batches"),
    )
}

/// Groups events by object name, keeping first-seen order of objects and
/// arrival order within each (commit order per game, docs/protocol.md#the-debezium-mapping).
fn group(
    events: &[RoundEvent],
    name: impl Fn(&RoundEvent) -> String,
) -> Vec<(String, Vec<RoundEvent>)> {
    let mut groups: Vec<(String, Vec<RoundEvent>)> = Vec::new();
    for event in events {
        let key = name(event);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(event.clone()),
            None => groups.push((key, vec![event.clone()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{EventKind, Round};

    fn event(id: i64, slug: &str) -> RoundEvent {
        RoundEvent {
            kind: EventKind::New,
            round: Round {
                round_id: id,
                game_id: 1,
                game_slug: slug.into(),
                game_type: "t".into(),
                finished_at: String::new(),
                extras: "{}".into(),
                timestamp: 0,
            },
        }
    }

    #[test]
    fn only_integers_javascript_holds_exactly_are_accepted() {
        let max = (1i64 << 53) - 1;
        for ok in [0, 1, -1, max, -max] {
            assert!(exact_in_js(ok), "{ok}");
        }
        for bad in [max + 1, -max - 1, i64::MAX, i64::MIN] {
            assert!(!exact_in_js(bad), "{bad}");
        }
    }

    #[test]
    fn grouping_keeps_order_within_and_across_objects() {
        let events = [event(1, "a"), event(2, "b"), event(3, "a")];
        let groups = group(&events, |e| e.round.game_slug.clone());
        let ids: Vec<(String, Vec<i64>)> = groups
            .into_iter()
            .map(|(k, v)| (k, v.iter().map(|e| e.round.round_id).collect()))
            .collect();
        assert_eq!(ids, vec![("a".into(), vec![1, 3]), ("b".into(), vec![2])]);
    }

    #[test]
    fn directory_entries_keep_the_highest_round_per_game() {
        let entries = directory_entries(&[event(5, "a"), event(2, "b"), event(3, "a")]);
        let got: Vec<(String, i64)> = entries
            .into_iter()
            .map(|e| (e.slug, e.latest_round_id))
            .collect();
        assert_eq!(got, vec![("a".into(), 5), ("b".into(), 2)]);
    }
}
