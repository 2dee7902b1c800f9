//! Notifications that leave the engine: a store's webhook (HMAC-signed) and
//! the buyer's e-mail (SMTP). Jobs are kept in a durable queue
//! (`persistence::JobQueue`) until delivered, retried with exponential back-off, and moved to a dead-letter
//! list after `max_attempts`; an operator can send a dead letter again.
//! Each message's key is marked when it is queued, so announcing again is a
//! no-op; marks older than `retention.notification_keys_s` are purged.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Mac, SimpleHmac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::domain::TenantId;
use crate::persistence::{JobQueue, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// SMTP relay for e-mail ("" = no e-mail).
    pub smtp_host: String,
    pub smtp_port: u16,
    pub from: String,
    /// Key from which each store's webhook signing key is derived.
    pub signing_secret: String,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    /// Pending jobs kept at most; past it new ones are dropped (counted).
    pub queue_max: usize,
    /// One delivery may take this long.
    pub delivery_timeout: Duration,
    /// Dead letters kept at most; past it the oldest go.
    pub dead_letters_max: usize,
    /// With nothing due, the delivery loop looks again after this long.
    pub idle_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Webhook,
    Email,
}

/// One message to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub channel: Channel,
    /// The webhook URL or the e-mail address.
    pub target: String,
    /// order.placed, order.paid, order.shipped, order.delivered, order.refunded
    pub event: String,
    /// Webhooks: the store whose key signs it (its `TenantId`'s number: the
    /// queue stores jobs as JSON, and this is how they were written).
    pub tenant: Option<u128>,
    pub subject: String,
    pub body: String,
    pub attempts: u32,
    pub next_at_ms: u64,
    pub last_error: Option<String>,
}

/// A store's webhook signing key: HMAC-SHA256(signing_secret, store id), hex.
pub fn store_key(signing_secret: &str, tenant: TenantId) -> String {
    let mut mac = <SimpleHmac<Sha256> as Mac>::new_from_slice(signing_secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(crate::domain::identity::id_text(tenant).as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a delivery did not happen.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt later.
    Transient(String),
    /// The target is somewhere store webhooks may not go: no retry.
    Refused(String),
}

pub struct Notifier {
    settings: NotifySettings,
    outbound: Arc<super::outbound::Outbound>,
    queue: JobQueue<Job>,
    /// Dates the marks (the engine's clock, which order states are dated by).
    clock: Arc<dyn Clock>,
    wake: Notify,
}

impl Notifier {
    pub fn open(
        store: &Store,
        settings: NotifySettings,
        outbound: Arc<super::outbound::Outbound>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let queue = JobQueue::open(store, "notifications", clock.now_ms())?;
        Ok(Arc::new(Self {
            settings,
            outbound,
            queue,
            clock,
            wake: Notify::new(),
        }))
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// Queues a message unless one with this `key` was queued before; it is
    /// delivered at least once from here on.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        key: String,
        channel: Channel,
        target: String,
        event: &str,
        tenant: Option<TenantId>,
        subject: String,
        body: String,
    ) {
        if channel == Channel::Email && self.settings.smtp_host.is_empty() {
            return;
        }
        if self.queue.pending_len() >= self.settings.queue_max {
            metrics::counter!("flashdrop_notifications_dropped_total").increment(1);
            return;
        }
        // Seen keys are skipped; the mark follows the job, so a crash in
        // between repeats a message rather than losing it.
        if self.queue.is_marked(key.as_bytes()).unwrap_or(false) {
            return;
        }
        let job = Job {
            id: self.queue.next_id(),
            channel,
            target,
            event: event.to_owned(),
            tenant: tenant.map(u128::from),
            subject,
            body,
            attempts: 0,
            next_at_ms: 0,
            last_error: None,
        };
        if let Err(error) = self.queue.put(job.id, &job) {
            tracing::error!(%error, "notification not stored");
            return;
        }
        if let Err(error) = self.queue.mark(key.as_bytes(), self.clock.now_ms()) {
            tracing::error!(%error, "notification key not marked");
        }
        self.wake.notify_one();
    }

    /// Forgets at most `max` marks queued `keep_ms` or longer ago; returns
    /// how many went.
    pub fn purge_keys(&self, keep_ms: u64, max: usize) -> Result<usize, StoreError> {
        let Some(cutoff) = self.clock.now_ms().checked_sub(keep_ms) else {
            return Ok(0);
        };
        let purged = self.queue.purge_marks(cutoff, max)?;
        metrics::counter!("flashdrop_notification_keys_purged_total").increment(purged as u64);
        Ok(purged)
    }

    /// Marks held on disk.
    pub fn marked_keys(&self) -> usize {
        self.queue.marked_len()
    }

    /// Dead letters after `after` (an id), oldest first, at most `limit`, and
    /// whether more follow.
    pub fn dead_letters(&self, after: Option<u64>, limit: usize) -> (Vec<Job>, bool) {
        self.queue.dead_page(after, limit)
    }

    /// How many dead letters are kept.
    pub fn dead_count(&self) -> usize {
        self.queue.dead_len()
    }

    /// Moves a job to the dead letters; past `dead_letters_max` the oldest go.
    fn bury(&self, job: &Job) {
        match self.queue.bury(job.id, job, self.settings.dead_letters_max) {
            Ok(dropped) => {
                metrics::counter!("flashdrop_notification_dead_letters_dropped_total")
                    .increment(dropped as u64);
            }
            Err(error) => tracing::error!(%error, "dead letter not stored"),
        }
    }

    pub fn pending_count(&self) -> usize {
        self.queue.pending_len()
    }

    /// Sends a dead letter again (attempts start over); `None` if there is none.
    pub fn retry(&self, id: u64) -> Option<Job> {
        let mut job = self.queue.unbury(id).ok()??;
        job.attempts = 0;
        job.next_at_ms = 0;
        self.queue.put(job.id, &job).ok()?;
        self.wake.notify_one();
        Some(job)
    }

    /// Delivers due jobs until the process ends. Runs on an actix arbiter
    /// (the HTTP client is single-threaded).
    pub async fn run(self: Arc<Self>) {
        let http = self.outbound.client(self.settings.delivery_timeout);
        loop {
            let now = now_ms();
            let mut next_due = u64::MAX;
            for job in self.queue.pending() {
                if job.next_at_ms > now {
                    next_due = next_due.min(job.next_at_ms);
                    continue;
                }
                let outcome = self.deliver(&http, &job).await;
                self.settle(job, outcome, &mut next_due);
            }
            let wait = if next_due == u64::MAX {
                self.settings.idle_wait
            } else {
                Duration::from_millis(next_due.saturating_sub(now_ms()).max(1))
            };
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    fn settle(&self, mut job: Job, outcome: Result<(), Failure>, next_due: &mut u64) {
        let channel = match job.channel {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        };
        match outcome {
            Ok(()) => {
                if let Err(error) = self.queue.remove(job.id) {
                    tracing::error!(%error, "delivered notification not removed");
                }
                metrics::counter!("flashdrop_notifications_total", "channel" => channel, "outcome" => "delivered").increment(1);
            }
            Err(Failure::Refused(why)) => {
                job.attempts += 1;
                job.last_error = Some(why);
                self.bury(&job);
                metrics::counter!("flashdrop_notifications_total", "channel" => channel, "outcome" => "refused").increment(1);
            }
            Err(Failure::Transient(error)) => {
                job.attempts += 1;
                job.last_error = Some(error);
                if job.attempts >= self.settings.max_attempts {
                    self.bury(&job);
                    metrics::counter!("flashdrop_notifications_total", "channel" => channel, "outcome" => "dead_letter").increment(1);
                } else {
                    let backoff = self.settings.backoff_ms << (job.attempts - 1).min(16);
                    job.next_at_ms = now_ms() + backoff;
                    *next_due = (*next_due).min(job.next_at_ms);
                    if let Err(error) = self.queue.put(job.id, &job) {
                        tracing::error!(%error, "notification retry not stored");
                    }
                    metrics::counter!("flashdrop_notifications_total", "channel" => channel, "outcome" => "retried").increment(1);
                }
            }
        }
    }

    async fn deliver(&self, http: &awc::Client, job: &Job) -> Result<(), Failure> {
        match job.channel {
            Channel::Webhook => {
                if let Err(refusal) = self.outbound.check_target(&job.target) {
                    return Err(Failure::Refused(format!("refused: {refusal}")));
                }
                let key = store_key(
                    &self.settings.signing_secret,
                    TenantId(job.tenant.unwrap_or(0)),
                );
                let signature = crate::payments::signature::sign(
                    key.as_bytes(),
                    now_ms() / 1000,
                    job.body.as_bytes(),
                );
                let response = http
                    .post(job.target.as_str())
                    .insert_header(("content-type", "application/json"))
                    .insert_header((crate::payments::signature::HEADER, signature))
                    .insert_header(("flashdrop-event", job.event.as_str()))
                    .insert_header(("flashdrop-delivery", job.id.to_string()))
                    .send_body(job.body.clone())
                    .await
                    .map_err(|error| match super::outbound::Outbound::refusal(&error) {
                        Some(refusal) => Failure::Refused(format!("refused: {refusal}")),
                        None => Failure::Transient(error.to_string()),
                    })?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(Failure::Transient(format!("HTTP {}", response.status())))
                }
            }
            Channel::Email => self.send_email(job).await.map_err(Failure::Transient),
        }
    }

    async fn send_email(&self, job: &Job) -> Result<(), String> {
        use lettre::transport::smtp::extension::ClientId;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let message = Message::builder()
            .from(
                self.settings
                    .from
                    .parse()
                    .map_err(|e| format!("from: {e}"))?,
            )
            .to(job.target.parse().map_err(|e| format!("to: {e}"))?)
            .subject(job.subject.clone())
            .body(job.body.clone())
            .map_err(|e| e.to_string())?;
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            self.settings.smtp_host.as_str(),
        )
        .port(self.settings.smtp_port)
        .hello_name(ClientId::Domain("flashdrop".into()))
        .timeout(Some(self.settings.delivery_timeout))
        .build();
        mailer
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(db: &Store) -> Arc<Notifier> {
        clocked(db, Arc::new(crate::clock::SystemClock))
    }

    fn clocked(db: &Store, clock: Arc<dyn Clock>) -> Arc<Notifier> {
        Notifier::open(
            db,
            NotifySettings {
                smtp_host: String::new(),
                smtp_port: 25,
                from: "a <a@b.c>".into(),
                signing_secret: "0123456789abcdef".into(),
                max_attempts: 2,
                backoff_ms: 1,
                queue_max: 10,
                delivery_timeout: Duration::from_secs(1),
                dead_letters_max: 3,
                idle_wait: Duration::from_secs(1),
            },
            crate::events::outbound::Outbound::new(
                Default::default(),
                Arc::new(crate::events::outbound::SystemResolver),
                Duration::from_secs(3),
            ),
            clock,
        )
        .unwrap()
    }

    fn webhook(n: &Notifier, key: &str) {
        n.enqueue(
            key.into(),
            Channel::Webhook,
            "http://x".into(),
            "order.paid",
            Some(TenantId(1)),
            String::new(),
            "{}".into(),
        );
    }

    #[test]
    fn marks_older_than_their_retention_are_purged_oldest_first_and_a_key_may_then_queue_again() {
        let (_dir, db) = crate::persistence::store::temporary();
        let clock = Arc::new(crate::clock::ManualClock::new(1_000_000));
        let n = clocked(&db, clock.clone());
        webhook(&n, "o1/order.paid/webhook/s");
        clock.advance_ms(500);
        webhook(&n, "o2/order.paid/webhook/s");
        webhook(&n, "o3/order.paid/webhook/s");
        assert_eq!(n.marked_keys(), 3);
        assert_eq!(n.purge_keys(1_000, 10).unwrap(), 0, "none is old enough");
        clock.advance_ms(499);
        assert_eq!(n.purge_keys(1_000, 10).unwrap(), 0);
        clock.advance_ms(1);
        assert_eq!(n.purge_keys(1_000, 10).unwrap(), 1, "o1 is 1,000 ms old");
        clock.advance_ms(10_000);
        assert_eq!(n.purge_keys(1_000, 1).unwrap(), 1, "at most max per call");
        assert_eq!(n.purge_keys(1_000, 10).unwrap(), 1);
        assert_eq!(n.marked_keys(), 0);
        assert_eq!(n.queue.aged_marks(), 0, "the index goes with the marks");
        let before = n.pending_count();
        webhook(&n, "o1/order.paid/webhook/s");
        assert_eq!(n.pending_count(), before + 1, "a purged key is new again");
    }

    #[test]
    fn marks_written_without_a_time_are_dated_at_the_first_open_and_purged_later() {
        let (_dir, db) = crate::persistence::store::temporary();
        let legacy = db.tree("notifications_seen").unwrap();
        legacy.insert(b"o9/order.paid/email", &[]).unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(5_000));
        let n = clocked(&db, clock.clone());
        assert_eq!(n.purge_keys(1_000, 10).unwrap(), 0, "dated now, not at 0");
        webhook(&n, "o9/order.paid/email");
        assert_eq!(n.pending_count(), 0, "the legacy mark still skips a repeat");
        clock.advance_ms(1_000);
        assert_eq!(n.purge_keys(1_000, 10).unwrap(), 1);
        assert_eq!(n.marked_keys(), 0);
    }

    #[test]
    fn a_message_is_queued_once_per_key_and_dead_letters_go_back_to_the_queue() {
        let (_dir, db) = crate::persistence::store::temporary();
        let n = notifier(&db);
        for _ in 0..3 {
            webhook(&n, "o1/order.paid/webhook/s");
        }
        n.enqueue(
            "o1/order.paid/email".into(),
            Channel::Email,
            "a@b.c".into(),
            "order.paid",
            None,
            "s".into(),
            "b".into(),
        );
        assert_eq!(
            n.pending_count(),
            1,
            "e-mail is off without an SMTP host; repeats are skipped"
        );
        let job = n.queue.pending().remove(0);
        let mut due = u64::MAX;
        n.settle(
            job.clone(),
            Err(Failure::Transient("connection refused".into())),
            &mut due,
        );
        assert!(due < u64::MAX, "a failed delivery is retried later");
        n.settle(
            n.queue.pending().remove(0),
            Err(Failure::Transient("connection refused".into())),
            &mut due,
        );
        assert_eq!(n.pending_count(), 0);
        let (dead, more) = n.dead_letters(None, 10);
        assert_eq!((dead.len(), more), (1, false));
        assert_eq!(dead[0].attempts, 2);
        assert_eq!(n.retry(dead[0].id).map(|j| j.attempts), Some(0));
        assert_eq!(n.pending_count(), 1);
        assert!(n.dead_letters(None, 10).0.is_empty());
        assert_eq!(n.dead_count(), 0);
        assert!(n.retry(dead[0].id).is_none());
        // Reopened (a restart): the keys still skip repeats.
        drop(n);
        let again = notifier(&db);
        webhook(&again, "o1/order.paid/webhook/s");
        assert_eq!(again.pending_count(), 1);
    }

    #[test]
    fn dead_letters_are_bounded_oldest_out_and_paged_across_a_restart() {
        let (_dir, db) = crate::persistence::store::temporary();
        let n = notifier(&db);
        let mut buried = Vec::new();
        for i in 0..5 {
            webhook(&n, &format!("o{i}/order.paid/webhook/s"));
            let job = n.queue.pending().remove(0);
            buried.push(job.id);
            n.settle(
                job,
                Err(Failure::Refused("inside".into())),
                &mut u64::MAX.clone(),
            );
        }
        assert_eq!(n.dead_count(), 3, "dead_letters_max is 3");
        let (first, more) = n.dead_letters(None, 2);
        assert!(more);
        let (rest, more) = n.dead_letters(Some(first[1].id), 2);
        assert!(!more);
        let kept: Vec<u64> = first.iter().chain(&rest).map(|j| j.id).collect();
        assert_eq!(kept, buried[2..], "the two oldest went");
        drop(n);
        let reopened = notifier(&db);
        assert_eq!(reopened.dead_count(), 3, "counted again at open");
        assert!(reopened.retry(rest[0].id).is_some());
        assert_eq!(reopened.dead_count(), 2);
    }
}
