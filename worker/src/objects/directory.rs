//! The directory of known games: one Durable Object (`directory`) holding
//! each game's slug, id, type and latest round id, kept by the ingest route
//! after every stored batch. It answers `GET /api/games` and tells the API key
//! check which type a game has. Each isolate keeps a short-lived copy.

// The `#[durable_object]` macro generates undocumented public glue.
#![allow(missing_docs)]

use std::cell::RefCell;

use serde::Deserialize;
use shared::cursor::StreamName;
use worker::{
    DurableObject, Env, Request, Response, Result, SqlStorageValue, State, durable_object,
};

use crate::error;
use crate::objects::protocol::{DirectoryCall, FailedOpen, GameEntry};
use crate::objects::stubs::{self, DirectoryStub};
use crate::platform::now_ms;

/// Storage key of the fault-injection switch.
const FAULT_KEY: &str = "fault:failing";

/// The directory's Durable Object.
#[durable_object]
pub struct Directory {
    state: State,
    /// Fault injection for tests (`ALLOW_FAULTS`): answer 503 to everything
    /// but the switch itself. Kept in storage so it survives eviction.
    failing: std::cell::Cell<Option<bool>>,
    /// `ALLOW_FAULTS=1`. Without it a switch left in storage (by a test
    /// run over the same state) is ignored and cleared: faults off means off.
    faults_allowed: bool,
}

impl DurableObject for Directory {
    fn new(state: State, env: Env) -> Self {
        let created = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS games (
                slug TEXT PRIMARY KEY,
                game_id INTEGER NOT NULL,
                game_type TEXT NOT NULL,
                latest_round_id INTEGER NOT NULL
            )",
            None,
        );
        if let Err(err) = created {
            worker::console_error!("creating the games table failed: {err}");
        }
        // Totals over all isolates (`failed_open`: admissions let in while
        // Upstash could not be asked).
        let created = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            None,
        );
        if let Err(err) = created {
            worker::console_error!("creating the counters table failed: {err}");
        }
        Self {
            state,
            failing: std::cell::Cell::new(None),
            faults_allowed: crate::config::get(&env).faults.allowed,
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let call = match stubs::read_call(&mut req, true, DirectoryCall::decode).await {
            Ok((_, call)) => call,
            Err(refusal) => return stubs::refusal(refusal),
        };
        if let DirectoryCall::Fault(fail) = call {
            if !self.faults_allowed {
                return Response::error("fault injection is off", 404);
            }
            self.state.storage().put(FAULT_KEY, fail).await?;
            self.failing.set(Some(fail));
            return Response::from_json(&serde_json::json!({ "failing": fail }));
        }
        if self.failing().await {
            return Response::error("directory failing on purpose (fault injection)", 503);
        }
        let sql = self.state.storage().sql();
        match call {
            DirectoryCall::Upsert(entries) => {
                for e in entries {
                    sql.exec(
                        "INSERT INTO games (slug, game_id, game_type, latest_round_id) VALUES (?, ?, ?, ?)
                         ON CONFLICT(slug) DO UPDATE SET game_id = excluded.game_id,
                           game_type = excluded.game_type,
                           latest_round_id = MAX(latest_round_id, excluded.latest_round_id)",
                        vec![e.slug.into(), e.game_id.into(), e.game_type.into(), e.latest_round_id.into()],
                    )?;
                }
                Response::ok("")
            }
            DirectoryCall::Games => {
                let rows: Vec<Row> = sql
                    .exec(
                        "SELECT slug, game_id, game_type, latest_round_id FROM games ORDER BY slug",
                        None,
                    )?
                    .to_array()?;
                let games: Vec<GameEntry> = rows.into_iter().map(Row::into_entry).collect();
                Response::from_json(&games)
            }
            DirectoryCall::AddFailedOpen(n) => {
                sql.exec(
                    "INSERT INTO counters (name, value) VALUES ('failed_open', ?)
                     ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    vec![SqlStorageValue::Integer(
                        i64::try_from(n).unwrap_or(i64::MAX),
                    )],
                )?;
                Response::ok("")
            }
            DirectoryCall::FailedOpen => {
                #[derive(Deserialize)]
                struct Value {
                    value: i64,
                }
                let rows: Vec<Value> = sql
                    .exec(
                        "SELECT value FROM counters WHERE name = 'failed_open'",
                        None,
                    )?
                    .to_array()?;
                Response::from_json(&FailedOpen {
                    failed_open: rows
                        .first()
                        .map_or(0, |v| u64::try_from(v.value).unwrap_or(0)),
                })
            }
            DirectoryCall::Fault(_) => Response::error("unreachable", 500),
        }
    }
}

impl Directory {
    async fn failing(&self) -> bool {
        if let Some(known) = self.failing.get() {
            return known;
        }
        let stored = self.state.storage().get::<bool>(FAULT_KEY).await;
        let mut known = stored.ok().flatten().unwrap_or(false);
        if known && !self.faults_allowed {
            worker::console_warn!("directory: a stored fault is cleared, ALLOW_FAULTS is off");
            if let Err(err) = self.state.storage().delete(FAULT_KEY).await {
                worker::console_error!("directory: clearing the stored fault failed: {err}");
            }
            known = false;
        }
        self.failing.set(Some(known));
        known
    }
}

#[derive(Deserialize)]
struct Row {
    slug: String,
    game_id: i64,
    game_type: String,
    latest_round_id: i64,
}

impl Row {
    fn into_entry(self) -> GameEntry {
        GameEntry {
            slug: self.slug,
            game_id: self.game_id,
            game_type: self.game_type,
            latest_round_id: self.latest_round_id,
        }
    }
}

/// The isolate's copy of the directory (see `crate::isolate`): when it was
/// read, and the games in it.
#[derive(Default)]
pub(crate) struct DirectoryCopy(RefCell<Option<(f64, Vec<GameEntry>)>>);

/// How long an isolate reuses its copy of the directory for admission
/// checks. A game's type almost never changes; without this, every connect
/// of a type-scoped key would call the one directory object.
const COPY_TTL_MS: f64 = 10_000.0;

/// Least time between two reads of the directory by one isolate for games
/// its copy does not know: requests naming made-up games cannot turn into a
/// flood of calls to the one directory object.
const MISS_REREAD_MS: f64 = 1_000.0;

fn copy_if(now: f64, fresh_within: f64) -> Option<Vec<GameEntry>> {
    crate::isolate::get::<DirectoryCopy>()
        .0
        .borrow()
        .as_ref()
        .filter(|(at, _)| now - at < fresh_within)
        .map(|(_, games)| games.clone())
}

async fn reread(env: &Env, now: f64) -> error::Result<Vec<GameEntry>> {
    let fresh = games(env).await?;
    *crate::isolate::get::<DirectoryCopy>().0.borrow_mut() = Some((now, fresh.clone()));
    Ok(fresh)
}

/// Every known game, from the directory object.
pub(crate) async fn games(env: &Env) -> error::Result<Vec<GameEntry>> {
    DirectoryStub::new(env)?.games().await
}

/// Records what a stored batch taught about games.
pub(crate) async fn upsert(env: &Env, entries: Vec<GameEntry>) -> error::Result<()> {
    DirectoryStub::new(env)?.upsert(entries).await
}

/// Adds an isolate's fail-open admissions to the total.
pub(crate) async fn add_failed_open(env: &Env, count: u64) -> error::Result<()> {
    DirectoryStub::new(env)?.add_failed_open(count).await
}

/// Fail-open admissions over all isolates.
pub(crate) async fn failed_open(env: &Env) -> error::Result<u64> {
    DirectoryStub::new(env)?.failed_open().await
}

/// Turns the directory's fault injection on or off (admin route, only with
/// `ALLOW_FAULTS`): while on, every read and write of it fails.
pub(crate) async fn set_failing(env: &Env, fail: bool) -> error::Result<()> {
    DirectoryStub::new(env)?.fault(fail).await
}

/// Forgets the isolate's copy (this isolate just recorded a new game).
pub(crate) fn invalidate_copy() {
    *crate::isolate::get::<DirectoryCopy>().0.borrow_mut() = None;
}

/// The games, as recently as `COPY_TTL_MS` ago, for telling a game's type.
pub(crate) async fn games_for_admission(env: &Env) -> error::Result<Vec<GameEntry>> {
    let now = now_ms();
    match copy_if(now, COPY_TTL_MS) {
        Some(games) => Ok(games),
        None => reread(env, now).await,
    }
}

/// The game `slug`, `None` if no round of it was ever stored. A game newer
/// than the isolate's copy is looked up in the directory itself, at most
/// once per `MISS_REREAD_MS`.
pub(crate) async fn find_game(env: &Env, slug: &str) -> error::Result<Option<GameEntry>> {
    find(env, |g| g.slug == slug).await
}

/// Whether `stream` names something the directory knows: a game some round
/// of which was stored, or a type such a game has. Looked up as
/// [`find_game`] is.
pub(crate) async fn knows(env: &Env, stream: &StreamName) -> error::Result<bool> {
    let found = match stream {
        StreamName::Game(slug) => find(env, |g| g.slug == *slug).await?,
        StreamName::Type(t) => find(env, |g| g.game_type == *t).await?,
    };
    Ok(found.is_some())
}

/// The first game `matches` picks, from a recent copy or, when that has
/// none, from the directory (at most once per `MISS_REREAD_MS`).
async fn find(env: &Env, matches: impl Fn(&GameEntry) -> bool) -> error::Result<Option<GameEntry>> {
    let pick = |games: Vec<GameEntry>| games.into_iter().find(|g| matches(g));
    if let Some(game) = pick(games_for_admission(env).await?) {
        return Ok(Some(game));
    }
    let now = now_ms();
    match copy_if(now, MISS_REREAD_MS) {
        Some(games) => Ok(pick(games)),
        None => Ok(pick(reread(env, now).await?)),
    }
}
