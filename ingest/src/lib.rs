//! ingest: Debezium change events from NATS JetStream to the edge, nothing
//! lost, nothing twice.
//!
//! The major components are:
//! - [`config`]: the one `Config`, from flags and environment.
//! - [`debezium`]: decoding change events into round events (pure, no I/O).
//! - [`edge`]: the signed HTTP client of `POST /internal/rounds`.
//! - [`lanes`]: per-game delivery lanes: batching, retries, acks, dead letters.
//! - [`games`]: reading `games` change events ahead, so rounds waiting for
//!   their game cannot starve the event that resolves them.
//! - [`metrics`] and [`ops`]: Prometheus metrics and `/healthz`, `/readyz`,
//!   `/metrics` on their own address.
//! - [`decode_cmd`]: `ingest decode`, the connector-output checker.
//! - [`run`]: connects, checks the stream, creates the durable consumer, and
//!   dispatches every message to its end.
//!
//! Invariant: a message is acknowledged only after the edge answered 2xx for
//! the batch that carried it (or when it carries nothing to deliver); it is
//! nak'd for redelivery on any doubt, and terminated (after a copy to the
//! dead-letter subject) only when it can never succeed.
#![forbid(unsafe_code)]

pub mod config;
pub mod debezium;
pub mod decode_cmd;
pub mod edge;
pub mod games;
pub mod lanes;
pub mod metrics;
pub mod ops;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{
    self, AckKind, Message,
    consumer::{DeliverPolicy, PullConsumer, pull},
    context::ConsumerInfoErrorKind,
    stream,
};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{Checked, Config};
use crate::debezium::{Decoded, GameInfo};
use crate::edge::EdgeClient;
use crate::games::Learned;
use crate::lanes::{Ctx, Item, Lanes, dead_letter_message, end};
use crate::metrics::Metrics;
use crate::ops::OpsState;

/// Redelivery delay of a `games` event that could not be kept in the
/// registry bucket.
const REGISTRY_RETRY: Duration = Duration::from_secs(2);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn connect(config: &Config, ops: Arc<OpsState>) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name("ingest")
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let ops = Arc::clone(&ops);
            async move {
                match event {
                    async_nats::Event::Connected => {
                        ops.nats_connected.store(true, Ordering::Relaxed);
                        info!("connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        ops.nats_connected.store(false, Ordering::Relaxed);
                        warn!("disconnected from NATS: reconnecting");
                    }
                    other => debug!(event = %other, "NATS event"),
                }
            }
        });
    if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.nats_token {
        options = options.token(token.clone());
    }
    if let Some(creds) = &config.nats_creds {
        options = options
            .credentials_file(creds)
            .await
            .context("NATS_CREDS")?;
    }
    if config.nats_tls {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.nats_tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let urls: Vec<&str> = config.nats_url.split(',').map(str::trim).collect();
    options
        .connect(urls.as_slice())
        .await
        .with_context(|| format!("connecting to NATS at {}", config.nats_url))
}

/// The durable consumer, on a stream checked to carry what it consumes.
async fn consumer(
    js: &jetstream::Context,
    config: &Config,
    checked: &Checked,
) -> anyhow::Result<PullConsumer> {
    let stream = checked_stream(js, config, checked).await?;
    durable_consumer(&stream, config, checked).await
}

/// The stream Debezium publishes into. An existing stream must capture every
/// consumed subject: a consumer filtered on a subject the stream does not
/// hold would wait for rounds that never come, so that stops ingest at start
/// with the setting to fix.
async fn checked_stream(
    js: &jetstream::Context,
    config: &Config,
    checked: &Checked,
) -> anyhow::Result<stream::Stream> {
    if config.create_stream {
        return js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.>", config.prefix)],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {}", config.stream));
    }
    let mut stream = js.get_stream(&config.stream).await.with_context(|| {
        format!(
            "JetStream stream {:?} (NATS_STREAM) not found: create it with subjects {}.> or pass --create-stream",
            config.stream, config.prefix
        )
    })?;
    let info = stream.info().await?;
    for subject in &checked.subjects {
        let covered = info
            .config
            .subjects
            .iter()
            .any(|s| subject_matches(s, subject));
        anyhow::ensure!(
            covered,
            "stream {:?} does not capture subject {subject:?} (its subjects: {:?}); add it or fix SUBJECTS",
            config.stream,
            info.config.subjects
        );
    }
    Ok(stream)
}

/// The durable consumer as this start needs it: created on a first start,
/// taken as it is when the last ingest acknowledged everything it was
/// given, and recreated from its ack floor when it did not.
async fn durable_consumer(
    stream: &stream::Stream,
    config: &Config,
    checked: &Checked,
) -> anyhow::Result<PullConsumer> {
    // Only "no such consumer" means a first start: any other error (JetStream
    // busy, timed out) must not skip the check below.
    let info = match stream.consumer_info(&config.durable).await {
        Ok(info) => info,
        Err(err) if err.kind() == ConsumerInfoErrorKind::NotFound => {
            return stream
                .create_consumer(consumer_config(config, checked, DeliverPolicy::All))
                .await
                .with_context(|| creating(config));
        }
        Err(err) => {
            return Err(err).with_context(|| {
                format!("reading durable consumer {} (DURABLE_NAME)", config.durable)
            });
        }
    };
    info!(
        ack_floor = info.ack_floor.stream_sequence,
        unacknowledged = info.num_ack_pending,
        pending = info.num_pending,
        "durable consumer found"
    );
    if info.num_ack_pending == 0 {
        return stream
            .get_consumer(&config.durable)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| creating(config));
    }
    recreate_from_ack_floor(stream, config, checked, &info).await
}

/// Replaces the durable consumer of an ingest that died holding messages
/// delivered and never acknowledged.
///
/// JetStream would redeliver them only after the ack wait, behind newer
/// messages of the same games, which would overtake them (an update before
/// its insert, which the edge then cannot tell from a replay). Starting again
/// from the ack floor delivers everything after it in stream order; what the
/// edge already stored is a duplicate there. (One ingest per durable
/// consumer: see ARCHITECTURE.md.)
async fn recreate_from_ack_floor(
    stream: &stream::Stream,
    config: &Config,
    checked: &Checked,
    info: &jetstream::consumer::Info,
) -> anyhow::Result<PullConsumer> {
    let floor = info.ack_floor.stream_sequence;
    warn!(
        unacknowledged = info.num_ack_pending,
        from_stream_sequence = floor + 1,
        "an earlier ingest left messages unacknowledged: delivering again from the ack floor, in order"
    );
    stream
        .delete_consumer(&config.durable)
        .await
        .with_context(|| format!("replacing durable consumer {}", config.durable))?;
    stream
        .create_consumer(consumer_config(
            config,
            checked,
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            },
        ))
        .await
        .with_context(|| creating(config))
}

/// The durable consumer's settings. Created and recreated alike, so only
/// where it starts can differ between a first start and a recovery.
fn consumer_config(
    config: &Config,
    checked: &Checked,
    deliver_policy: DeliverPolicy,
) -> pull::Config {
    pull::Config {
        durable_name: Some(config.durable.clone()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(config.ack_wait_secs),
        max_ack_pending: config.max_ack_pending,
        filter_subjects: checked.subjects.clone(),
        deliver_policy,
        ..Default::default()
    }
}

/// The context of a failure to get the durable consumer, naming its setting
/// as every start-up error does.
fn creating(config: &Config) -> String {
    format!(
        "creating durable consumer {} (DURABLE_NAME)",
        config.durable
    )
}

/// Whether NATS subject pattern `pattern` (with `*` and `>`) matches `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Runs until `shutdown` resolves or a fatal error occurs.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let checked = config
        .check()
        .map_err(anyhow::Error::msg)
        .context("invalid configuration")?;
    // reqwest is built without a default crypto provider; ring is already in
    // the tree through async-nats.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ops, ops_task) = serve_ops(config.metrics_addr, &metrics, stop_rx.clone());

    let edge = EdgeClient::new(
        &checked.edge_url,
        &checked.secret,
        Duration::from_millis(config.edge_timeout_ms),
    )?;
    let client = connect(&config, Arc::clone(&ops)).await?;
    ops.nats_connected.store(true, Ordering::Relaxed);
    let js = jetstream::new(client.clone());
    let consumer = consumer(&js, &config, &checked).await?;
    let (registry, games) = games_registry(&js, &config.games_bucket).await?;
    info!(games = games.len(), bucket = %config.games_bucket, "games registry loaded");
    let (learned, read_ahead) = read_games_ahead(&js, &config, &checked, stop_rx.clone());
    let probes = probe(edge.clone(), ops, consumer.clone(), stop_rx.clone());

    let ctx = Arc::new(lane_ctx(&config, edge, metrics, &js, stop_rx));
    let mut dispatcher = Dispatcher {
        lanes: Lanes::new(Arc::clone(&ctx)),
        games,
        learned,
        registry,
        ctx,
        prefix: config.prefix.clone(),
        unknown_game_max_deliveries: config.unknown_game_max_deliveries,
        unknown_game_delay: Duration::from_millis(config.unknown_game_delay_ms),
    };
    info!(stream = %config.stream, durable = %config.durable, edge = %checked.edge_url, subjects = ?checked.subjects, "ingest running");

    pull_and_dispatch(&consumer, config.batch_max, &mut dispatcher, shutdown).await;
    Running {
        stop: stop_tx,
        lanes: dispatcher.lanes,
        probes,
        read_ahead,
        client,
        ops_task,
    }
    .stop()
    .await
}

/// Serves `/healthz`, `/readyz` and `/metrics` until `stop` flips. Started
/// before NATS is reached, so an ingest stuck connecting already answers
/// (not ready) rather than looking dead.
fn serve_ops(
    addr: SocketAddr,
    metrics: &Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> (Arc<OpsState>, JoinHandle<anyhow::Result<()>>) {
    let ops = Arc::new(OpsState {
        metrics: Arc::clone(metrics),
        nats_connected: AtomicBool::new(false),
        edge_reachable: AtomicBool::new(false),
    });
    let task = tokio::spawn(ops::serve(addr, Arc::clone(&ops), async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }));
    (ops, task)
}

/// Starts reading the games subjects ahead of the durable consumer (see
/// [`games`]), until `stop` flips. When no games subject is consumed there
/// is no `games` event to wait for, so rounds of unknown games are given up
/// on their delivery count alone and no reader runs.
fn read_games_ahead(
    js: &jetstream::Context,
    config: &Config,
    checked: &Checked,
    stop: watch::Receiver<bool>,
) -> (Arc<Learned>, Option<JoinHandle<()>>) {
    let games_subjects = games::games_subjects(&checked.subjects);
    if games_subjects.is_empty() {
        return (Arc::new(Learned::nothing_to_read()), None);
    }
    let learned = Arc::new(Learned::default());
    let task = tokio::spawn(games::read_ahead(
        js.clone(),
        config.stream.clone(),
        games_subjects,
        config.prefix.clone(),
        Arc::clone(&learned),
        stop,
    ));
    (learned, Some(task))
}

/// Background probes until `stop` flips: the edge's health (for `/readyz`)
/// and the consumer's lag (for `/metrics`), every 5 s. Apart from the pull
/// loop, so a slow edge or JetStream answer never holds up a round.
fn probe(
    edge: EdgeClient,
    ops: Arc<OpsState>,
    mut consumer: PullConsumer,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            ops.edge_reachable
                .store(edge.healthy().await, Ordering::Relaxed);
            if let Ok(info) = consumer.info().await {
                ops.metrics
                    .consumer_pending
                    .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
                ops.metrics
                    .consumer_ack_pending
                    .set(i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX));
            }
        }
    })
}

/// What every lane shares, from the configuration. `stopping` is how a lane
/// learns to make one last attempt instead of retrying.
fn lane_ctx(
    config: &Config,
    edge: EdgeClient,
    metrics: Arc<Metrics>,
    js: &jetstream::Context,
    stopping: watch::Receiver<bool>,
) -> Ctx {
    Ctx {
        edge,
        metrics,
        js: js.clone(),
        dead_letter_prefix: config.dead_letter_prefix.clone(),
        batch_max: config.batch_max,
        batch_max_bytes: config.batch_max_bytes,
        linger: config.linger(),
        retry_min: Duration::from_millis(config.retry_min_ms),
        retry_max: Duration::from_millis(config.retry_max_ms),
        stopping,
        ack_wait: Duration::from_secs(config.ack_wait_secs),
    }
}

/// Pulls from the durable consumer and dispatches every message, in stream
/// order, until `shutdown` resolves. Only shutdown ends it: a pull that
/// cannot start or that ends (NATS reconnecting, the server restarted) is
/// started again, since the consumer keeps our place.
async fn pull_and_dispatch(
    consumer: &PullConsumer,
    batch_max: usize,
    dispatcher: &mut Dispatcher,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(batch_max)
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(err) => {
                warn!(error = %err, "cannot pull from the consumer: retrying");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if dispatch_pulled(&mut messages, dispatcher, &mut shutdown)
            .await
            .is_break()
        {
            return;
        }
    }
}

/// Dispatches what one pull yields until it ends (`Continue`: pull again)
/// or `shutdown` resolves (`Break`). Errors within a pull are not fatal.
async fn dispatch_pulled(
    messages: &mut pull::Stream,
    dispatcher: &mut Dispatcher,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> ControlFlow<()> {
    loop {
        let next = tokio::select! {
            _ = &mut *shutdown => return ControlFlow::Break(()),
            next = messages.next() => next,
        };
        match next {
            Some(Ok(message)) => dispatcher.dispatch(message).await,
            Some(Err(err)) => {
                // Not fatal (a missed heartbeat, a reconnect in progress);
                // pause briefly so a persistent error cannot spin.
                warn!(error = %err, "pull error: continuing");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => {
                warn!("pull stream ended: starting a new one");
                return ControlFlow::Continue(());
            }
        }
    }
}

/// What `run` started, to be stopped in the order [`Running::stop`] keeps.
struct Running {
    /// Flips every background task and lane to stopping.
    stop: watch::Sender<bool>,
    lanes: Lanes,
    probes: JoinHandle<()>,
    read_ahead: Option<JoinHandle<()>>,
    client: async_nats::Client,
    ops_task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The shutdown sequence, once pulling stopped: one last attempt per
    /// lane (failures nak'd), then the background tasks, then the acks
    /// flushed before NATS is drained, and the ops endpoints last, so they
    /// answer until ingest is done.
    async fn stop(self) -> anyhow::Result<()> {
        info!("stopping: finishing in-flight batches");
        let _ = self.stop.send(true);
        self.lanes.close().await;
        let _ = self.probes.await;
        if let Some(task) = self.read_ahead {
            let _ = task.await;
        }
        // Acks are publishes: wait until the server has every one of them.
        // `drain` only starts closing the connection and returns at once, so a
        // process exiting right after it could take the last acks with it (the
        // next ingest would then deliver those rounds again).
        if let Err(err) = self.client.flush().await {
            warn!(error = %err, "could not flush the last acks: their rounds may be delivered again");
        }
        self.client.drain().await.context("draining NATS")?;
        let _ = self.ops_task.await;
        info!("stopped");
        Ok(())
    }
}

/// The games registry, from the `games` table's change events, kept in a
/// JetStream key-value bucket (key = game id, value = `{"slug","type"}`) and
/// loaded at start.
async fn games_registry(
    js: &jetstream::Context,
    bucket: &str,
) -> anyhow::Result<(jetstream::kv::Store, HashMap<i64, GameInfo>)> {
    let store = match js.get_key_value(bucket).await {
        Ok(store) => store,
        Err(_) => js
            .create_key_value(jetstream::kv::Config {
                bucket: bucket.to_string(),
                history: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating key-value bucket {bucket} (GAMES_BUCKET)"))?,
    };
    let mut games = HashMap::new();
    let mut keys = store
        .keys()
        .await
        .with_context(|| format!("listing {bucket}"))?;
    while let Some(key) = keys.next().await {
        let key = key.with_context(|| format!("listing {bucket}"))?;
        let (Ok(id), Some(value)) = (key.parse::<i64>(), store.get(&key).await?) else {
            continue;
        };
        let Ok(entry) = serde_json::from_slice::<serde_json::Value>(&value) else {
            continue;
        };
        if let (Some(slug), Some(game_type)) = (entry["slug"].as_str(), entry["type"].as_str()) {
            games.insert(
                id,
                GameInfo {
                    id,
                    slug: slug.to_string(),
                    game_type: game_type.to_string(),
                },
            );
        }
    }
    Ok((store, games))
}

/// Turns each message into its end: a lane, an ack, a nak or a dead letter.
struct Dispatcher {
    lanes: Lanes,
    /// Games registry from the `games` table's change events.
    games: HashMap<i64, GameInfo>,
    /// Games read ahead of the consumer, for rounds that arrive before
    /// their game's event is delivered here.
    learned: Arc<Learned>,
    /// Where the registry is kept across restarts.
    registry: jetstream::kv::Store,
    ctx: Arc<Ctx>,
    prefix: String,
    /// Deliveries of a round of an unknown game before it is dead-lettered.
    unknown_game_max_deliveries: i64,
    /// Redelivery delay of a round of an unknown game.
    unknown_game_delay: Duration,
}

impl Dispatcher {
    async fn dispatch(&mut self, message: Message) {
        let metrics = &self.ctx.metrics;
        metrics.received.inc();
        match debezium::decode(message.subject.as_str(), &message.payload, &self.prefix) {
            Ok(Decoded::Round { kind, row }) => {
                let (round_id, game_id) = (row.round.round_id, row.round.game_id);
                // Before the lookup: once the reader has caught up, a game it
                // read is found.
                let caught_up = self.learned.caught_up();
                if !row.self_described
                    && !self.games.contains_key(&game_id)
                    && let Some(info) = self.learned.get(game_id)
                {
                    self.games.insert(game_id, info);
                }
                match debezium::enrich(kind, row, |id| self.games.get(&id).cloned()) {
                    Some(event) => {
                        let game = event.round.game_slug.clone();
                        self.lanes.push(&game, Item::new(message, event));
                    }
                    None => {
                        self.unknown_game(message, round_id, game_id, caught_up)
                            .await
                    }
                }
            }
            Ok(Decoded::Game(info)) => {
                let value =
                    serde_json::json!({ "slug": info.slug, "type": info.game_type }).to_string();
                // Kept before the ack: a restart must still know the game.
                if let Err(err) = self.registry.put(info.id.to_string(), value.into()).await {
                    warn!(game_id = info.id, error = %err, "could not keep the game in the registry: redelivering later");
                    metrics.nak("registry");
                    end(&message, AckKind::Nak(Some(REGISTRY_RETRY))).await;
                    return;
                }
                debug!(game_id = info.id, slug = %info.slug, game_type = %info.game_type, "game registered");
                self.games.insert(info.id, info);
                metrics.acked.inc();
                end(&message, AckKind::Ack).await;
            }
            Ok(Decoded::Skip(reason)) => {
                debug!(subject = %message.subject, reason, "no event");
                metrics.skip(reason);
                metrics.acked.inc();
                end(&message, AckKind::Ack).await;
            }
            Err(err) => {
                dead_letter_message(
                    &self.ctx.js,
                    &self.ctx.dead_letter_prefix,
                    metrics,
                    &message,
                    "undecodable",
                    &err.to_string(),
                )
                .await;
            }
        }
    }

    /// A round whose game is not known: nak'd to wait for the game's event,
    /// and dead-lettered once it was delivered `unknown_game_max_deliveries`
    /// times, so such rounds cannot hold the consumer's slots for ever. Never
    /// given up before the games events already in the stream were read
    /// ahead (`caught_up` false), so a round whose game's event is merely
    /// behind it is never dropped.
    async fn unknown_game(&self, message: Message, round_id: i64, game_id: i64, caught_up: bool) {
        let metrics = &self.ctx.metrics;
        // A message without delivery metadata is not from JetStream's
        // consumer; count it as a first delivery.
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        if caught_up && delivered >= self.unknown_game_max_deliveries {
            warn!(
                round_id,
                game_id, delivered, "round of a game still unknown: giving up on it"
            );
            let reason = format!(
                "round {round_id} of unknown game {game_id}: no games change event for it after {delivered} deliveries"
            );
            dead_letter_message(
                &self.ctx.js,
                &self.ctx.dead_letter_prefix,
                metrics,
                &message,
                "unknown_game",
                &reason,
            )
            .await;
            return;
        }
        if delivered <= 1 {
            info!(
                round_id,
                game_id, "round of a game not known yet: redelivering later"
            );
        } else {
            debug!(
                round_id,
                game_id, delivered, "round of a game still unknown"
            );
        }
        metrics.nak("unknown_game");
        end(&message, AckKind::Nak(Some(self.unknown_game_delay))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_patterns() {
        assert!(subject_matches("dbserver1.>", "dbserver1.public.rounds"));
        assert!(subject_matches(
            "dbserver1.*.rounds",
            "dbserver1.public.rounds"
        ));
        assert!(subject_matches(
            "dbserver1.public.rounds",
            "dbserver1.public.rounds"
        ));
        assert!(!subject_matches("dbserver1.*", "dbserver1.public.rounds"));
        assert!(!subject_matches("other.>", "dbserver1.public.rounds"));
        assert!(!subject_matches(
            "dbserver1.public.rounds.x",
            "dbserver1.public.rounds"
        ));
    }
}
