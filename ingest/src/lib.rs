//! ingest: Debezium change events from NATS JetStream to the edge, nothing
//! lost, nothing twice.
//!
//! The major components are:
//! - [`config`]: the one `Config`, from flags and environment.
//! - [`debezium`]: decoding change events into round events (pure, no I/O).
//! - [`edge`]: the signed HTTP client of `POST /internal/rounds`.
//! - [`run`]: the delivery loop: a durable pull consumer, batches bounded by
//!   count and linger time, and an explicit end for every message.
//!
//! Invariant: a message is acknowledged only after the edge answered 2xx for
//! the batch that carried it; it is nak'd (redelivered later) on any doubt, and
//! terminated only when it can never succeed.
#![forbid(unsafe_code)]

pub mod config;
pub mod debezium;
pub mod edge;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, Message, consumer::pull, stream};
use futures::StreamExt;
use shared::{IngestBatch, RoundEvent};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::debezium::{Decoded, GameInfo};
use crate::edge::{EdgeClient, EdgeError};

/// Redelivery delay of a message whose batch could not be delivered.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Redelivery delay of a round whose game is not known yet.
const UNKNOWN_GAME_DELAY: Duration = Duration::from_secs(2);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs until `shutdown` resolves or a fatal error occurs.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    // reqwest is built without a default crypto provider; ring is already in
    // the tree through async-nats.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let edge = EdgeClient::new(
        &config.edge_url,
        &config.ingest_secret,
        Duration::from_millis(config.edge_timeout_ms),
    )?;

    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(config.nats_url.as_str())
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))?;
    let js = jetstream::new(client.clone());
    let subjects = vec![
        format!("{}.public.rounds", config.prefix),
        format!("{}.public.games", config.prefix),
    ];
    let stream = if config.create_stream {
        js.get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.prefix)],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating stream {}", config.stream))?
    } else {
        js.get_stream(&config.stream).await.with_context(|| {
            format!(
                "JetStream stream {:?} not found: create it or pass --create-stream",
                config.stream
            )
        })?
    };
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                // Long enough for a slow POST plus retries inside one batch.
                ack_wait: Duration::from_secs(30),
                // Bounds memory: at most this many unacknowledged messages.
                max_ack_pending: 10_000,
                filter_subjects: subjects,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("creating durable consumer {}", config.durable))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(config.batch_max)
        .heartbeat(Duration::from_secs(5))
        .messages()
        .await
        .context("starting to pull messages")?;
    info!(stream = %config.stream, durable = %config.durable, edge = %config.edge_url, "ingest running");

    let mut games: HashMap<i64, GameInfo> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => break,
            next = messages.next() => next,
        };
        let first = match first {
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                // Not fatal (a missed heartbeat, a reconnect in progress);
                // pause briefly so a persistent error cannot spin the loop.
                warn!(error = %err, "pull error (retrying)");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => anyhow::bail!("JetStream message stream ended"),
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.linger();
        while batch.len() < config.batch_max {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => batch.push(message),
                Ok(Some(Err(err))) => warn!(error = %err, "pull error (retrying)"),
                Ok(None) | Err(_) => break,
            }
        }
        process(&edge, &config.prefix, &mut games, batch).await;
    }
    info!("shutting down: draining NATS connection");
    client.drain().await.context("draining NATS")?;
    Ok(())
}

/// Decodes, delivers and ends every message of one batch.
async fn process(
    edge: &EdgeClient,
    prefix: &str,
    games: &mut HashMap<i64, GameInfo>,
    batch: Vec<Message>,
) {
    let mut pending: Vec<(Message, RoundEvent)> = Vec::new();
    for message in batch {
        match debezium::decode(message.subject.as_str(), &message.payload, prefix) {
            Ok(Decoded::Round { kind, row }) => {
                let round_id = row.round.round_id;
                let game_id = row.round.game_id;
                match debezium::enrich(kind, row, |id| games.get(&id).cloned()) {
                    Some(event) => pending.push((message, event)),
                    None => {
                        info!(
                            round_id,
                            game_id, "round of a game not known yet: redelivering later"
                        );
                        end(&message, AckKind::Nak(Some(UNKNOWN_GAME_DELAY))).await;
                    }
                }
            }
            Ok(Decoded::Game(info)) => {
                debug!(game_id = info.id, slug = %info.slug, "game registered");
                games.insert(info.id, info);
                end(&message, AckKind::Ack).await;
            }
            Ok(Decoded::Skip(reason)) => {
                debug!(subject = %message.subject, reason, "no event");
                end(&message, AckKind::Ack).await;
            }
            Err(err) => {
                error!(subject = %message.subject, error = %err, "terminating undecodable message");
                end(&message, AckKind::Term).await;
            }
        }
    }
    if pending.is_empty() {
        return;
    }
    let events = IngestBatch {
        events: pending.iter().map(|(_, e)| e.clone()).collect(),
    };
    let outcome = match edge.post(&events).await {
        Ok(reply) => {
            debug!(
                events = events.events.len(),
                stored = reply.stored,
                duplicates = reply.duplicates,
                "batch delivered"
            );
            AckKind::Ack
        }
        Err(EdgeError::Rejected(why)) => {
            error!(events = events.events.len(), reason = %why, "edge rejected batch: terminating its messages");
            AckKind::Term
        }
        Err(err @ EdgeError::Unauthorized) => {
            error!(error = %err, "delivery refused: will retry, nothing dropped");
            AckKind::Nak(Some(RETRY_DELAY * 5))
        }
        Err(err) => {
            warn!(error = %err, "delivery failed: will retry");
            AckKind::Nak(Some(RETRY_DELAY))
        }
    };
    for (message, _) in &pending {
        end(message, outcome).await;
    }
}

async fn end(message: &Message, kind: AckKind) {
    if let Err(err) = message.ack_with(kind).await {
        // Without the ack the message is redelivered after ack_wait; the edge
        // is idempotent, so this costs time, not correctness.
        warn!(error = %err, ?kind, "could not end message");
    }
}
