//! Reading the `games` change events ahead of the durable consumer.
//!
//! The durable consumer delivers at most `max_ack_pending` messages at a
//! time. Rounds of a game ingest does not know yet are nak'd until its
//! `games` event arrives; enough of them fill every slot, and then the
//! `games` event that would resolve them is never delivered. So ingest also
//! reads the games subjects with an ordered consumer of its own (no acks, no
//! slots to share), from the start of the stream, and the dispatcher looks a
//! missing game up here before nak'ing a round. The durable consumer still
//! handles every `games` event in stream order (registry bucket, updates);
//! this only fills in games the dispatcher has not seen yet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::debezium::{self, Decoded, GameInfo};

/// Games read ahead, first version seen of each.
#[derive(Default)]
pub struct Learned {
    games: Mutex<HashMap<i64, GameInfo>>,
    caught_up: AtomicBool,
}

impl Learned {
    /// The game `id`, if its change event was read.
    pub fn get(&self, id: i64) -> Option<GameInfo> {
        self.lock().get(&id).cloned()
    }

    /// Whether every games event the stream held when the reader last
    /// looked has been read (or the reader cannot read them: then nothing
    /// is waited for). Read this before [`Learned::get`]: a game read before
    /// the flag was set is then found.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// A `Learned` that waits for nothing (no games subject is consumed).
    pub fn nothing_to_read() -> Self {
        let learned = Self::default();
        learned.caught_up.store(true, Ordering::Release);
        learned
    }

    fn learn(&self, info: GameInfo) {
        self.lock().entry(info.id).or_insert(info);
    }

    fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, GameInfo>> {
        self.games.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The consumed subjects that carry `games` change events: those whose last
/// token is `games` (`<prefix>.<schema>.games`, wildcards allowed).
pub fn games_subjects(subjects: &[String]) -> Vec<String> {
    subjects
        .iter()
        .filter(|s| s.rsplit('.').next() == Some("games"))
        .cloned()
        .collect()
}

/// Reads the games subjects of `stream` into `learned` until `stop` flips;
/// on any error, says so, stops waiting for the reader (so the bound on
/// unknown-game deliveries alone decides) and starts over.
pub async fn read_ahead(
    js: jetstream::Context,
    stream: String,
    subjects: Vec<String>,
    prefix: String,
    learned: Arc<Learned>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let read = read_once(&js, &stream, &subjects, &prefix, &learned);
        let result = tokio::select! {
            result = read => result,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        if let Err(err) = result {
            warn!(error = %err, "reading games events ahead failed: retrying");
            learned.set_caught_up();
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

async fn read_once(
    js: &jetstream::Context,
    stream: &str,
    subjects: &[String],
    prefix: &str,
    learned: &Learned,
) -> anyhow::Result<()> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subjects: subjects.to_vec(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    if consumer.cached_info().num_pending == 0 {
        learned.set_caught_up();
    }
    let mut messages = consumer.messages().await?;
    let mut read = 0u64;
    while let Some(message) = messages.next().await {
        let message = message?;
        if let Ok(Decoded::Game(info)) =
            debezium::decode(message.subject.as_str(), &message.payload, prefix)
        {
            debug!(game_id = info.id, slug = %info.slug, "game read ahead");
            learned.learn(info);
        }
        read += 1;
        if message.info().is_ok_and(|i| i.pending == 0) && !learned.caught_up() {
            info!(events = read, "games events read ahead");
            learned.set_caught_up();
        }
    }
    anyhow::bail!("the games events' ordered consumer ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn games_subjects_are_those_ending_in_games() {
        let subjects = [
            "dbserver1.public.rounds".to_string(),
            "dbserver1.public.games".to_string(),
            "dbserver1.*.games".to_string(),
            "dbserver1.public.gamesx".to_string(),
        ];
        assert_eq!(
            games_subjects(&subjects),
            ["dbserver1.public.games", "dbserver1.*.games"]
        );
    }

    #[test]
    fn the_first_version_of_a_game_is_kept() {
        let learned = Learned::default();
        assert!(!learned.caught_up());
        let game = |slug: &str| GameInfo {
            id: 7,
            slug: slug.into(),
            game_type: "crash".into(),
        };
        learned.learn(game("a"));
        learned.learn(game("b"));
        assert_eq!(learned.get(7), Some(game("a")));
        assert_eq!(learned.get(8), None);
        assert!(Learned::nothing_to_read().caught_up());
    }
}
