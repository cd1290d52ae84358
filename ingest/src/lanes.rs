//! Delivery lanes: one per game, so each game's events reach the edge in
//! commit order while games proceed in parallel.
//!
//! A lane batches its queue (bounded by count, bytes and linger time), posts
//! the batch, and ends every message of it on purpose: ack after the edge's
//! 2xx; on a transient failure it keeps the batch, tells JetStream it is still
//! working on it (`Progress`) and retries with backoff, so a later event of
//! the game can never overtake an earlier one; a batch the edge rejects (400)
//! is retried event by event and only the offending event is dead-lettered
//! and terminated; a 413 halves the batch. While stopping, a failed batch is
//! nak'd instead of retried, so a restart redelivers it.
//!
//! Every message a lane holds (in its channel, its queue or the batch being
//! collected, posted or retried) is in the lane's [`Held`] set from the moment
//! it is pushed until it is ended, and the lane's own timer sends `Progress`
//! for all of them at a third of the ack wait, whatever the lane is doing: so
//! JetStream redelivers nothing a lane holds, however long it waits.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::{self, AckKind, Message};
use shared::{IngestBatch, IngestReply, RoundEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::edge::{EdgeClient, EdgeError, Posted};
use crate::metrics::Metrics;

/// What every lane shares.
pub struct Ctx {
    /// The edge.
    pub edge: EdgeClient,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// For dead letters.
    pub js: jetstream::Context,
    /// `<prefix>.<subject>` receives dead letters.
    pub dead_letter_prefix: String,
    /// Most events per POST.
    pub batch_max: usize,
    /// Most bytes of round JSON per POST.
    pub batch_max_bytes: usize,
    /// Wait for more events once one arrived.
    pub linger: Duration,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Flips to `true` when ingest is stopping.
    pub stopping: watch::Receiver<bool>,
    /// The consumer's ack wait: held messages get `Progress` well within it.
    pub ack_wait: Duration,
}

/// A message and the event it carries.
pub struct Item {
    /// The JetStream message, ended by the lane.
    pub message: Message,
    /// The round event.
    pub event: RoundEvent,
    /// Approximate JSON size of the event.
    pub size: usize,
}

impl Item {
    /// Wraps a message and its event.
    pub fn new(message: Message, event: RoundEvent) -> Self {
        let round = &event.round;
        let size = 160
            + round.extras.len()
            + round.finished_at.len()
            + round.game_slug.len()
            + round.game_type.len();
        Self {
            message,
            event,
            size,
        }
    }
}

/// Redelivery delay of a message whose dead-letter copy could not be stored
/// (it is nak'd, not terminated, so nothing is lost).
pub const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);

/// The messages a lane holds, by reply subject (each delivery has its own):
/// what its keep-alive timer sends `Progress` for.
#[derive(Default)]
struct Held {
    replies: Mutex<BTreeSet<Subject>>,
}

impl Held {
    fn insert(&self, message: &Message) {
        if let Some(reply) = &message.reply {
            self.lock().insert(reply.clone());
        }
    }

    fn remove(&self, message: &Message) {
        if let Some(reply) = &message.reply {
            self.lock().remove(reply);
        }
    }

    fn contains(&self, reply: &Subject) -> bool {
        self.lock().contains(reply)
    }

    fn snapshot(&self) -> Vec<Subject> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Subject>> {
        // The set stays consistent even if a holder panicked mid-way.
        self.replies.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends `Progress` for everything in `held` every `period`, forever.
async fn keep_alive(client: async_nats::Client, held: &Held, period: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for reply in held.snapshot() {
            // Ended meanwhile: a late `Progress` would only postpone the
            // redelivery a nak asked for.
            if !held.contains(&reply) {
                continue;
            }
            if let Err(err) = client
                .publish(reply, bytes::Bytes::from_static(b"+WPI"))
                .await
            {
                warn!(error = %err, "could not send progress");
            }
        }
    }
}

/// One lane's handles.
struct LaneHandle {
    sender: mpsc::UnboundedSender<Item>,
    held: Arc<Held>,
    task: JoinHandle<()>,
}

/// The lanes, by game slug.
pub struct Lanes {
    ctx: Arc<Ctx>,
    lanes: HashMap<String, LaneHandle>,
}

impl Lanes {
    /// No lanes yet.
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self {
            ctx,
            lanes: HashMap::new(),
        }
    }

    /// Queues `item` on the lane of `game`. Unbounded per lane, bounded in
    /// total by the consumer's `max_ack_pending`.
    pub fn push(&mut self, game: &str, item: Item) {
        let handle = self.lanes.entry(game.to_string()).or_insert_with(|| {
            let (sender, rx) = mpsc::unbounded_channel();
            let held = Arc::new(Held::default());
            let task = tokio::spawn(lane(Arc::clone(&self.ctx), rx, Arc::clone(&held)));
            LaneHandle { sender, held, task }
        });
        // Held from now on: kept alive while it waits in the channel too.
        handle.held.insert(&item.message);
        if let Err(mpsc::error::SendError(item)) = handle.sender.send(item) {
            // The lane ended (it only does when its sender is dropped); let
            // JetStream redeliver rather than lose the message.
            handle.held.remove(&item.message);
            let message = item.message;
            let metrics = Arc::clone(&self.ctx.metrics);
            tokio::spawn(async move {
                metrics.nak("lane_closed");
                end(&message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            });
        }
    }

    /// Lets every lane finish what it holds (one attempt each while
    /// stopping), then returns.
    pub async fn close(self) {
        let tasks: Vec<JoinHandle<()>> = self.lanes.into_values().map(|h| h.task).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// A lane's waiting items: the channel, and what was taken out of it early
/// (because it did not fit a batch); and the set of everything the lane holds.
struct Inbox {
    rx: mpsc::UnboundedReceiver<Item>,
    queue: VecDeque<Item>,
    held: Arc<Held>,
}

impl Inbox {
    async fn next(&mut self) -> Option<Item> {
        match self.queue.pop_front() {
            Some(item) => Some(item),
            None => self.rx.recv().await,
        }
    }

    async fn next_until(&mut self, deadline: tokio::time::Instant) -> Option<Item> {
        match self.queue.pop_front() {
            Some(item) => Some(item),
            None => tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()
                .flatten(),
        }
    }

    /// Ends `item`'s message and stops holding it.
    async fn finish(&self, item: &Item, kind: AckKind) {
        self.held.remove(&item.message);
        end(&item.message, kind).await;
    }
}

async fn lane(ctx: Arc<Ctx>, rx: mpsc::UnboundedReceiver<Item>, held: Arc<Held>) {
    // Progress well within the ack wait, for everything held, whatever the
    // lane is doing (collecting, posting, backing off, dead-lettering).
    let keep_alive = keep_alive(ctx.js.client(), &held, ctx.ack_wait / 3);
    tokio::select! {
        () = run(&ctx, rx, Arc::clone(&held)) => {}
        () = keep_alive => {}
    }
}

async fn run(ctx: &Ctx, rx: mpsc::UnboundedReceiver<Item>, held: Arc<Held>) {
    let mut inbox = Inbox {
        rx,
        queue: VecDeque::new(),
        held,
    };
    while let Some(first) = inbox.next().await {
        let mut bytes = first.size;
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + ctx.linger;
        while batch.len() < ctx.batch_max {
            match inbox.next_until(deadline).await {
                Some(item) if bytes + item.size > ctx.batch_max_bytes => {
                    inbox.queue.push_front(item);
                    break;
                }
                Some(item) => {
                    bytes += item.size;
                    batch.push(item);
                }
                None => break,
            }
        }
        deliver(ctx, batch, &mut inbox).await;
    }
}

type Delivery<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Delivers `batch` until it is acked, dead-lettered, or (while stopping)
/// nak'd.
fn deliver<'a>(ctx: &'a Ctx, batch: Vec<Item>, inbox: &'a mut Inbox) -> Delivery<'a> {
    // Boxed: a split delivers its halves through this same function.
    Box::pin(async move {
        let mut delay = ctx.retry_min;
        loop {
            let posted = post(ctx, &batch).await;
            match verdict(posted.result, batch.len()) {
                Verdict::Stored(reply) => {
                    return acknowledge(ctx, &batch, inbox, &reply, posted.elapsed).await;
                }
                Verdict::Split => return split(ctx, batch, inbox).await,
                Verdict::Dead { label, reason } => {
                    return dead_letter(ctx, inbox, &batch[0], label, &reason).await;
                }
                Verdict::Retry(err) if *ctx.stopping.borrow() => {
                    return leave_to_redelivery(ctx, &batch, inbox, &err).await;
                }
                Verdict::Retry(err) => {
                    back_off(ctx, batch.len(), &err, delay).await;
                    delay = (delay * 2).min(ctx.retry_max);
                }
            }
        }
    })
}

/// What one POST means for its batch.
enum Verdict {
    /// The edge stored every event: ack them all.
    Stored(IngestReply),
    /// The edge refused a batch of several events (400, 413): deliver it in
    /// halves, down to the one event it cannot store, or to a size it takes.
    Split,
    /// The edge refused the batch's only event: it can never be stored.
    Dead {
        /// The `terminated` metric's label.
        label: &'static str,
        /// The `Gamefeed-Dead-Reason` header.
        reason: String,
    },
    /// Nothing proves the batch was stored, nor that it never can be: keep
    /// it and try again.
    Retry(EdgeError),
}

/// Reads the edge's answer for a batch of `events` events. Only a 400 or a
/// 413 is the edge's word that an event can never be stored; every other
/// failure (including a 401 and an answer that proves nothing) is retried,
/// since dropping a round for a configuration mistake would be loss.
fn verdict(result: Result<IngestReply, EdgeError>, events: usize) -> Verdict {
    match result {
        Ok(reply) => Verdict::Stored(reply),
        Err(EdgeError::Rejected(_)) | Err(EdgeError::TooLarge) if events > 1 => Verdict::Split,
        Err(EdgeError::Rejected(why)) => Verdict::Dead {
            label: "rejected",
            reason: format!("rejected by the edge: {why}"),
        },
        Err(EdgeError::TooLarge) => Verdict::Dead {
            label: "too_large",
            reason: "too large for the edge (413)".to_string(),
        },
        Err(err) => Verdict::Retry(err),
    }
}

/// Posts `batch` once and records the attempt in the metrics, whatever its
/// outcome.
async fn post(ctx: &Ctx, batch: &[Item]) -> Posted {
    let events = IngestBatch {
        events: batch.iter().map(|i| i.event.clone()).collect(),
    };
    // However slow the POST, the lane's keep-alive keeps the batch
    // and everything queued behind it from being redelivered.
    let posted = ctx.edge.post(&events).await;
    ctx.metrics.edge(&posted.status);
    ctx.metrics
        .post_seconds
        .observe(posted.elapsed.as_secs_f64());
    ctx.metrics.batch_events.observe(batch.len() as f64);
    posted
}

/// Acks every message of a batch the edge stored: the only way a round's
/// message is acknowledged.
async fn acknowledge(
    ctx: &Ctx,
    batch: &[Item],
    inbox: &Inbox,
    reply: &IngestReply,
    elapsed: Duration,
) {
    debug!(
        events = batch.len(),
        stored = reply.stored,
        duplicates = reply.duplicates,
        ms = elapsed.as_millis() as u64,
        "batch delivered"
    );
    for item in batch {
        inbox.finish(item, AckKind::Ack).await;
    }
    ctx.metrics.acked.inc_by(batch.len() as u64);
}

/// Delivers a refused batch in two halves, first half first, so the game's
/// order holds and only the event the edge cannot store ends up
/// dead-lettered.
async fn split(ctx: &Ctx, mut batch: Vec<Item>, inbox: &mut Inbox) {
    warn!(
        events = batch.len(),
        "edge refused a batch: delivering it in smaller parts"
    );
    let second = batch.split_off(batch.len() / 2);
    deliver(ctx, batch, inbox).await;
    deliver(ctx, second, inbox).await;
}

/// While stopping, a failed batch gets no retry: its messages are nak'd so
/// the next ingest delivers them again, rather than holding shutdown up for
/// an edge that may stay down.
async fn leave_to_redelivery(ctx: &Ctx, batch: &[Item], inbox: &Inbox, err: &EdgeError) {
    info!(events = batch.len(), error = %err, "stopping: leaving the batch to redelivery");
    for item in batch {
        ctx.metrics.nak("shutdown");
        inbox.finish(item, AckKind::Nak(Some(ctx.retry_min))).await;
    }
}

/// Says why a batch of `events` events failed, then waits `delay` before it
/// is tried again (less if ingest starts stopping meanwhile, so the last
/// attempt comes at once).
async fn back_off(ctx: &Ctx, events: usize, err: &EdgeError, delay: Duration) {
    match err {
        EdgeError::Unauthorized => error!(
            events,
            retry_in_ms = delay.as_millis() as u64,
            "edge refused our signature: INGEST_SECRET differs from the Worker's; holding the batch, nothing is dropped"
        ),
        EdgeError::Redirected { .. } | EdgeError::BadReply(_) => error!(
            events,
            error = %err,
            retry_in_ms = delay.as_millis() as u64,
            "the edge's answer does not prove the batch was stored (is EDGE_URL the Worker itself, not a redirect or a proxy?): holding the batch, nothing is acknowledged"
        ),
        _ => warn!(
            events,
            error = %err,
            retry_in_ms = delay.as_millis() as u64,
            "delivery failed: retrying"
        ),
    }
    // Still ours, and so are the rounds queued behind it; the
    // lane's keep-alive stops JetStream redelivering any of
    // them meanwhile (that would duplicate them in memory, and
    // let them overtake).
    let mut stopping = ctx.stopping.clone();
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = stopping.wait_for(|stop| *stop) => {}
    }
}

/// Dead-letters `item`'s message (see [`dead_letter_message`]) and stops
/// holding it.
async fn dead_letter(ctx: &Ctx, inbox: &Inbox, item: &Item, label: &str, reason: &str) {
    inbox.held.remove(&item.message);
    dead_letter_message(
        &ctx.js,
        &ctx.dead_letter_prefix,
        &ctx.metrics,
        &item.message,
        label,
        reason,
    )
    .await;
}

/// Copies `message` to the dead-letter subject with the reason in a header
/// and, once JetStream stored the copy, terminates it (metric `terminated`,
/// `label`). If the copy was not stored, the message is nak'd instead
/// (metric `nakked`, `dead_letter_unavailable`) and comes back after
/// [`DEAD_LETTER_RETRY`]: nothing is terminated without its copy.
pub async fn dead_letter_message(
    js: &jetstream::Context,
    prefix: &str,
    metrics: &Metrics,
    message: &Message,
    label: &str,
    reason: &str,
) {
    match copy_to_dead_letter(js, prefix, message, reason).await {
        Ok(()) => {
            metrics.term(label);
            end(message, AckKind::Term).await;
        }
        Err(_) => {
            metrics.nak("dead_letter_unavailable");
            end(message, AckKind::Nak(Some(DEAD_LETTER_RETRY))).await;
        }
    }
}

/// Publishes a copy of `message` on `<prefix>.<subject>` with headers
/// `Gamefeed-Dead-Reason` and `Gamefeed-Original-Subject`; `Ok` once
/// JetStream acknowledged storing it, else why not (already logged here).
pub async fn copy_to_dead_letter(
    js: &jetstream::Context,
    prefix: &str,
    message: &Message,
    reason: &str,
) -> Result<(), String> {
    let subject = format!("{prefix}.{}", message.subject);
    let mut headers = message.headers.clone().unwrap_or_default();
    // Header values are single-line and bounded.
    let clean: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    headers.insert("Gamefeed-Dead-Reason", clean.as_str());
    headers.insert("Gamefeed-Original-Subject", message.subject.as_str());
    let stored = match js
        .publish_with_headers(subject.clone(), headers, message.payload.clone())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match stored {
        Ok(()) => {
            error!(subject = %message.subject, dead_letter = %subject, reason = %clean, "message dead-lettered");
            Ok(())
        }
        Err(e) => {
            error!(
                subject = %message.subject,
                reason = %clean,
                error = %e,
                retry_in_s = DEAD_LETTER_RETRY.as_secs(),
                "dead letter not stored, so the message is kept (nak'd, not terminated): create a JetStream stream on {prefix}.> to keep them"
            );
            Err(e)
        }
    }
}

/// Ends a message; a failed ack only means redelivery later, which the edge
/// absorbs (it is idempotent by round id).
pub async fn end(message: &Message, kind: AckKind) {
    if let Err(err) = message.ack_with(kind).await {
        warn!(error = %err, ?kind, "could not end message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_edges_refusal_of_a_single_event_dead_letters_it() {
        let stored = IngestReply {
            stored: 1,
            duplicates: 1,
        };
        assert!(matches!(verdict(Ok(stored), 2), Verdict::Stored(_)));
        for events in [2, 256] {
            let rejected = Err(EdgeError::Rejected("bad round".into()));
            assert!(matches!(verdict(rejected, events), Verdict::Split));
            assert!(matches!(
                verdict(Err(EdgeError::TooLarge), events),
                Verdict::Split
            ));
        }
        let rejected = verdict(Err(EdgeError::Rejected("bad round".into())), 1);
        assert!(matches!(
            rejected,
            Verdict::Dead { label: "rejected", ref reason } if reason == "rejected by the edge: bad round"
        ));
        assert!(matches!(
            verdict(Err(EdgeError::TooLarge), 1),
            Verdict::Dead {
                label: "too_large",
                ..
            }
        ));
        for events in [1, 2] {
            let transient = [
                EdgeError::Unauthorized,
                EdgeError::Redirected {
                    status: 307,
                    location: "https://elsewhere".into(),
                },
                EdgeError::BadReply("stored 0 of 1".into()),
                EdgeError::Retryable("503".into()),
            ];
            for err in transient {
                let shown = err.to_string();
                let kept = verdict(Err(err), events);
                assert!(matches!(kept, Verdict::Retry(_)), "{shown}");
            }
        }
    }
}
