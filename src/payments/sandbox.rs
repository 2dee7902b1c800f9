//! The sandbox gateway: a payment provider that behaves like a real one, for
//! development, tests and benchmarks. Its ledger is durable (a
//! `persistence::Book`, made durable before it answers), as a provider's books outlive a crash of
//! the shop, so tests can ask it whether any order was charged twice.
//!
//! Payment method tokens decide what happens:
//! - `pm_card_declined`, `pm_card_insufficient_funds`, `pm_card_expired`: declined
//!   (`card_declined`, `insufficient_funds`, `expired_card`);
//! - `pm_async`: pending, authorised `async_delay_ms` later (a webhook tells);
//! - `pm_async_declined`: pending, then declined the same way;
//! - `pm_no_response`: pending forever (the shop's deadline must end it);
//! - any other `pm_...` token: authorised.
//!
//! With `failure_rate` > 0, calls fail as `Unavailable`: half of them before
//! taking effect, half after (the answer is lost), so callers must retry with
//! the same key. Every change is announced by a webhook, delivered late, in
//! random order, and sometimes twice.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::persistence::{Book, StoreError};

use super::{ChargeRequest, GatewayError, GatewayFuture, PaymentGateway, PaymentView, PspStatus};

#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// Added to every call.
    pub latency_ms: u64,
    /// Share of calls that fail as `Unavailable` (0..=1).
    pub failure_rate: f64,
    /// When asynchronous methods are decided.
    pub async_delay_ms: u64,
    /// Webhooks wait a random time in this range before delivery ...
    pub webhook_delay_min_ms: u64,
    pub webhook_delay_max_ms: u64,
    /// ... and are sent twice this often.
    pub webhook_duplicate_rate: f64,
    pub webhook_attempts: u32,
    /// One webhook delivery may take this long.
    pub webhook_timeout: Duration,
}

/// A webhook event as the sandbox sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookEvent {
    pub id: String,
    /// payment.authorized, payment.failed, payment.captured, payment.voided, payment.refunded
    #[serde(rename = "type")]
    pub kind: String,
    pub created_ms: u64,
    pub data: PaymentView,
}

struct Inner {
    settings: SandboxSettings,
    /// The ledger, on disk only (memory does not grow with it): `p/` +
    /// payment id → the payment with its method and the keys of the
    /// operations applied to it (ids are UUIDv7, so key order is creation
    /// order); `k/` + authorisation key → the payment it created. Ledgers
    /// written before kept the method under `m/` + id and every operation
    /// key under `k/`; both are still read.
    book: Book,
    /// Serialises the read-change-write of payments.
    writing: Mutex<()>,
    webhooks: Option<mpsc::Sender<WebhookEvent>>,
}

#[derive(Clone)]
pub struct SandboxGateway {
    inner: Arc<Inner>,
}

const PAYMENT_PREFIX: &[u8] = b"p/";
const KEY_PREFIX: &[u8] = b"k/";
/// Where older ledgers kept a payment's method.
const LEGACY_METHOD_PREFIX: &[u8] = b"m/";

/// A payment as the ledger keeps it: what callers see, plus what the
/// provider needs to decide it later and to apply each operation once.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    view: PaymentView,
    /// Absent in ledgers written before it was kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    /// Keys of the captures, voids and refunds applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ops: Vec<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(why: &str) -> GatewayError {
    GatewayError::Unavailable(why.to_owned())
}

/// How a method token is decided: now, later, or never.
fn decide(method: &str) -> (PspStatus, Option<&'static str>) {
    match method {
        "pm_card_declined" => (PspStatus::Declined, Some("card_declined")),
        "pm_card_insufficient_funds" => (PspStatus::Declined, Some("insufficient_funds")),
        "pm_card_expired" => (PspStatus::Declined, Some("expired_card")),
        "pm_async" | "pm_async_declined" | "pm_no_response" => (PspStatus::Pending, None),
        _ => (PspStatus::Authorized, None),
    }
}

impl SandboxGateway {
    /// Opens the ledger in `book`; `webhooks` receives every event to deliver.
    pub fn open(
        settings: SandboxSettings,
        book: Book,
        webhooks: Option<mpsc::Sender<WebhookEvent>>,
    ) -> Result<Self, StoreError> {
        let gateway = Self {
            inner: Arc::new(Inner {
                settings,
                book,
                writing: Mutex::new(()),
                webhooks,
            }),
        };
        Ok(gateway)
    }

    /// Schedules the decision of asynchronous payments still pending (after a
    /// restart the timers that would have decided them are gone). Needs a
    /// runtime. Reads the whole ledger once.
    pub fn resume_pending(&self) {
        let pending: Vec<String> = self
            .payments(None)
            .filter(|p| p.status == PspStatus::Pending)
            .map(|p| p.id)
            .collect();
        for id in pending {
            self.decide_later(id);
        }
    }

    /// Payments in id (creation) order, after the payment `after`.
    fn payments(&self, after: Option<&str>) -> impl Iterator<Item = PaymentView> + '_ {
        let after = after.map(|id| [PAYMENT_PREFIX, id.as_bytes()].concat());
        self.inner
            .book
            .scan(PAYMENT_PREFIX, after.as_deref())
            .filter_map(|item| {
                let (_, value) = item
                    .map_err(|error| tracing::error!(%error, "sandbox ledger not read"))
                    .ok()?;
                serde_json::from_slice(&value).ok()
            })
    }

    /// Every payment in the ledger.
    #[cfg(test)]
    pub fn ledger(&self) -> Vec<PaymentView> {
        self.payments(None).collect()
    }

    /// A page of the ledger in payment id (creation) order: at most `limit`
    /// payments after the payment `after`, only those for `reference` when it
    /// is given; the flag says whether more follow. A page costs its own
    /// length, plus the payments skipped by the `reference` filter.
    pub fn ledger_page(
        &self,
        after: Option<&str>,
        reference: Option<&str>,
        limit: usize,
    ) -> (Vec<PaymentView>, bool) {
        let mut page: Vec<PaymentView> = self
            .payments(after)
            .filter(|payment| reference.is_none_or(|r| payment.reference == r))
            .take(limit.saturating_add(1))
            .collect();
        let more = page.len() > limit;
        page.truncate(limit);
        (page, more)
    }

    fn payment(&self, id: &str) -> Result<Option<PaymentView>, GatewayError> {
        Ok(self.stored(id)?.map(|stored| stored.view))
    }

    fn stored(&self, id: &str) -> Result<Option<Stored>, GatewayError> {
        let raw = self
            .inner
            .book
            .get(&[PAYMENT_PREFIX, id.as_bytes()].concat())
            .map_err(|e| unavailable(&format!("ledger: {e}")))?;
        raw.map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| unavailable(&format!("ledger: {e}")))
        })
        .transpose()
    }

    /// Whether the operation `key` was applied to `stored` already.
    fn applied(&self, stored: &Stored, key: &str) -> Result<bool, GatewayError> {
        if stored.ops.iter().any(|op| op == key) {
            return Ok(true);
        }
        // A payment of an older ledger kept its operation keys apart.
        Ok(stored.method.is_none() && self.keyed(key)?.is_some())
    }

    /// The payment operation key `key` concerned.
    fn keyed(&self, key: &str) -> Result<Option<String>, GatewayError> {
        let raw = self
            .inner
            .book
            .get(&[KEY_PREFIX, key.as_bytes()].concat())
            .map_err(|e| unavailable(&format!("ledger: {e}")))?;
        Ok(raw.map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    fn payment_by_key(&self, key: &str) -> Result<Option<PaymentView>, GatewayError> {
        match self.keyed(key)? {
            Some(id) => self.payment(&id),
            None => Ok(None),
        }
    }

    fn method_of(&self, id: &str) -> Option<String> {
        if let Some(method) = self.stored(id).ok().flatten()?.method {
            return Some(method);
        }
        self.inner
            .book
            .get(&[LEGACY_METHOD_PREFIX, id.as_bytes()].concat())
            .ok()
            .flatten()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn decide_later(&self, id: String) {
        let Some(method) = self.method_of(&id) else {
            return;
        };
        let outcome = match method.as_str() {
            "pm_async" => (PspStatus::Authorized, None),
            "pm_async_declined" => (PspStatus::Declined, Some("card_declined".to_owned())),
            _ => return,
        };
        let this = self.clone();
        let delay = Duration::from_millis(self.inner.settings.async_delay_ms);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let changed = this.change(&id, None, |p| {
                if p.status != PspStatus::Pending {
                    return Ok(false);
                }
                p.status = outcome.0;
                p.decline_code = outcome.1.clone();
                Ok(true)
            });
            if let Ok((view, true)) = changed {
                let _ = this.persisted().await;
                this.announce(&view);
            }
        });
    }

    /// Applies `f` to a payment under the ledger lock and writes it (not yet
    /// flushed). `op_key` is recorded so a repeat finds the same payment.
    fn change(
        &self,
        id: &str,
        op_key: Option<&str>,
        f: impl FnOnce(&mut PaymentView) -> Result<bool, GatewayError>,
    ) -> Result<(PaymentView, bool), GatewayError> {
        let _writing = self.inner.writing.lock();
        let mut stored = self.stored(id)?.ok_or(GatewayError::NotFound)?;
        if let Some(key) = op_key {
            if self.applied(&stored, key)? {
                return Ok((stored.view, false));
            }
        }
        let changed = f(&mut stored.view)?;
        if let Some(key) = op_key {
            stored.ops.push(key.to_owned());
        }
        self.write(&stored)?;
        Ok((stored.view, changed))
    }

    fn write(&self, stored: &Stored) -> Result<(), GatewayError> {
        let body = serde_json::to_vec(stored).map_err(|e| unavailable(&e.to_string()))?;
        self.inner
            .book
            .put(&[PAYMENT_PREFIX, stored.view.id.as_bytes()].concat(), &body)
            .map_err(|e| unavailable(&format!("ledger: {e}")))
    }

    async fn persisted(&self) -> Result<(), GatewayError> {
        if self.inner.book.durable().await {
            Ok(())
        } else {
            Err(unavailable("ledger flush failed"))
        }
    }

    fn announce(&self, view: &PaymentView) {
        let Some(tx) = &self.inner.webhooks else {
            return;
        };
        let kind = match view.status {
            PspStatus::Pending => return,
            PspStatus::Authorized => "payment.authorized",
            PspStatus::Declined => "payment.failed",
            PspStatus::Captured if view.refunded_minor > 0 => "payment.refunded",
            PspStatus::Captured => "payment.captured",
            PspStatus::Voided => "payment.voided",
            PspStatus::Refunded => "payment.refunded",
        };
        let event = WebhookEvent {
            id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
            kind: kind.to_owned(),
            created_ms: now_ms(),
            data: view.clone(),
        };
        if tx.try_send(event).is_err() {
            metrics::counter!("flashdrop_sandbox_webhooks_dropped_total").increment(1);
        }
    }

    /// Latency, then maybe a failure before the call takes effect.
    async fn enter(&self) -> Result<(), GatewayError> {
        let s = &self.inner.settings;
        if s.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(s.latency_ms)).await;
        }
        if s.failure_rate > 0.0 && fastrand::f64() < s.failure_rate / 2.0 {
            return Err(unavailable("sandbox: injected failure before the call"));
        }
        Ok(())
    }

    /// Maybe lose the answer of a call that took effect.
    fn leave(&self, view: PaymentView) -> Result<PaymentView, GatewayError> {
        let rate = self.inner.settings.failure_rate;
        if rate > 0.0 && fastrand::f64() < rate / 2.0 {
            return Err(unavailable("sandbox: injected failure after the call"));
        }
        Ok(view)
    }

    async fn authorize_now(&self, request: ChargeRequest) -> Result<PaymentView, GatewayError> {
        self.enter().await?;
        let view = {
            let _writing = self.inner.writing.lock();
            match self.payment_by_key(&request.key)? {
                Some(view) => (view, false),
                None => {
                    let id = format!("pay_{}", uuid::Uuid::now_v7().simple());
                    let (status, code) = decide(&request.method);
                    let view = PaymentView {
                        id: id.clone(),
                        reference: request.reference.clone(),
                        status,
                        amount_minor: request.amount_minor,
                        currency: request.currency.clone(),
                        captured_minor: 0,
                        refunded_minor: 0,
                        decline_code: code.map(str::to_owned),
                    };
                    self.write(&Stored {
                        view: view.clone(),
                        method: Some(request.method.clone()),
                        ops: Vec::new(),
                    })?;
                    self.inner
                        .book
                        .put(
                            &[KEY_PREFIX, request.key.as_bytes()].concat(),
                            id.as_bytes(),
                        )
                        .map_err(|e| unavailable(&format!("ledger: {e}")))?;
                    (view, true)
                }
            }
        };
        let (view, created) = view;
        self.persisted().await?;
        if created {
            metrics::counter!("flashdrop_sandbox_calls_total", "op" => "authorize").increment(1);
            if view.status == PspStatus::Pending {
                self.decide_later(view.id.clone());
            }
            self.announce(&view);
        }
        self.leave(view)
    }

    async fn operate(
        &self,
        op: &'static str,
        id: String,
        key: String,
        f: impl FnOnce(&mut PaymentView) -> Result<bool, GatewayError>,
    ) -> Result<PaymentView, GatewayError> {
        self.enter().await?;
        let (view, changed) = self.change(&id, Some(&key), f)?;
        self.persisted().await?;
        if changed {
            metrics::counter!("flashdrop_sandbox_calls_total", "op" => op).increment(1);
            self.announce(&view);
        }
        self.leave(view)
    }
}

impl PaymentGateway for SandboxGateway {
    fn authorize(&self, request: ChargeRequest) -> GatewayFuture<PaymentView> {
        let this = self.clone();
        Box::pin(async move { this.authorize_now(request).await })
    }

    fn capture(&self, payment_id: String, key: String) -> GatewayFuture<PaymentView> {
        let this = self.clone();
        Box::pin(async move {
            this.operate("capture", payment_id, key, |p| match p.status {
                PspStatus::Authorized => {
                    p.status = PspStatus::Captured;
                    p.captured_minor = p.amount_minor;
                    Ok(true)
                }
                PspStatus::Captured => Ok(false),
                other => Err(GatewayError::Refused(format!(
                    "cannot capture a payment that is {other:?}"
                ))),
            })
            .await
        })
    }

    fn void(&self, payment_id: String, key: String) -> GatewayFuture<PaymentView> {
        let this = self.clone();
        Box::pin(async move {
            this.operate("void", payment_id, key, |p| match p.status {
                PspStatus::Authorized | PspStatus::Pending => {
                    p.status = PspStatus::Voided;
                    Ok(true)
                }
                PspStatus::Voided | PspStatus::Declined => Ok(false),
                other => Err(GatewayError::Refused(format!(
                    "cannot void a payment that is {other:?}"
                ))),
            })
            .await
        })
    }

    fn refund(
        &self,
        payment_id: String,
        amount_minor: i64,
        key: String,
    ) -> GatewayFuture<PaymentView> {
        let this = self.clone();
        Box::pin(async move {
            this.operate("refund", payment_id, key, |p| {
                let left = p.captured_minor - p.refunded_minor;
                if p.status != PspStatus::Captured || amount_minor <= 0 || amount_minor > left {
                    return Err(GatewayError::Refused(format!(
                        "cannot refund {amount_minor} of a {:?} payment with {left} left",
                        p.status
                    )));
                }
                p.refunded_minor += amount_minor;
                if p.refunded_minor == p.captured_minor {
                    p.status = PspStatus::Refunded;
                }
                Ok(true)
            })
            .await
        })
    }

    fn status(&self, payment_id: String) -> GatewayFuture<PaymentView> {
        let this = self.clone();
        Box::pin(async move {
            this.enter().await?;
            this.payment(&payment_id)?.ok_or(GatewayError::NotFound)
        })
    }

    fn find(&self, authorize_key: String) -> GatewayFuture<Option<PaymentView>> {
        let this = self.clone();
        Box::pin(async move {
            this.enter().await?;
            this.payment_by_key(&authorize_key)
        })
    }
}

/// Delivers webhook events to `url`, each after a random delay (so they
/// arrive out of order), some twice, with retries on failure. Runs on an
/// actix arbiter (the HTTP client is single-threaded).
pub async fn deliver_webhooks(
    mut events: mpsc::Receiver<WebhookEvent>,
    url: String,
    secret: Vec<u8>,
    settings: SandboxSettings,
) {
    let client = awc::Client::builder()
        .timeout(settings.webhook_timeout)
        .finish();
    let secret: Arc<[u8]> = secret.into();
    while let Some(event) = events.recv().await {
        let Ok(body) = serde_json::to_vec(&event) else {
            continue;
        };
        let copies = if fastrand::f64() < settings.webhook_duplicate_rate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let span = settings
                .webhook_delay_max_ms
                .saturating_sub(settings.webhook_delay_min_ms);
            let delay = settings.webhook_delay_min_ms + fastrand::u64(0..=span);
            let (client, url, secret, body) =
                (client.clone(), url.clone(), secret.clone(), body.clone());
            let attempts = settings.webhook_attempts.max(1);
            actix_rt::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                for attempt in 0..attempts {
                    let header = super::signature::sign(&secret, now_ms() / 1000, &body);
                    let sent = client
                        .post(url.as_str())
                        .insert_header(("content-type", "application/json"))
                        .insert_header((super::signature::HEADER, header))
                        .send_body(body.clone())
                        .await;
                    let outcome = match &sent {
                        Ok(response) if response.status().is_success() => "delivered",
                        _ => "failed",
                    };
                    metrics::counter!("flashdrop_sandbox_webhooks_total", "outcome" => outcome)
                        .increment(1);
                    if outcome == "delivered" {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SandboxSettings {
        SandboxSettings {
            latency_ms: 0,
            failure_rate: 0.0,
            async_delay_ms: 10,
            webhook_delay_min_ms: 0,
            webhook_delay_max_ms: 0,
            webhook_duplicate_rate: 0.0,
            webhook_attempts: 1,
            webhook_timeout: Duration::from_secs(5),
        }
    }

    fn request(key: &str, method: &str) -> ChargeRequest {
        ChargeRequest {
            key: key.into(),
            reference: "order-1".into(),
            amount_minor: 1_000,
            currency: "EUR".into(),
            method: method.into(),
        }
    }

    #[tokio::test]
    async fn keys_make_every_operation_idempotent_and_the_ledger_survives_reopening() {
        let (_dir, store) = crate::persistence::store::temporary();
        let book = Book::open(&store, "psp").unwrap();
        let psp = SandboxGateway::open(settings(), book.clone(), None).unwrap();
        let a = psp.authorize(request("k1", "pm_card_visa")).await.unwrap();
        let again = psp.authorize(request("k1", "pm_card_visa")).await.unwrap();
        assert_eq!(a.id, again.id);
        assert_eq!(a.status, PspStatus::Authorized);
        let c = psp.capture(a.id.clone(), "c1".into()).await.unwrap();
        assert_eq!(c.captured_minor, 1_000);
        psp.capture(a.id.clone(), "c1".into()).await.unwrap();
        psp.refund(a.id.clone(), 400, "r1".into()).await.unwrap();
        let r = psp.refund(a.id.clone(), 400, "r1".into()).await.unwrap();
        assert_eq!(r.refunded_minor, 400, "the same refund key refunds once");
        assert!(matches!(
            psp.refund(a.id.clone(), 700, "r2".into()).await,
            Err(GatewayError::Refused(_))
        ));
        let reopened = SandboxGateway::open(settings(), book, None).unwrap();
        assert_eq!(reopened.ledger(), psp.ledger());
        assert_eq!(
            reopened.find("k1".into()).await.unwrap().map(|p| p.id),
            Some(a.id)
        );
    }

    #[tokio::test]
    async fn the_ledger_pages_in_creation_order_and_filters_by_reference() {
        let (_dir, store) = crate::persistence::store::temporary();
        let psp =
            SandboxGateway::open(settings(), Book::open(&store, "psp").unwrap(), None).unwrap();
        let mut made = Vec::new();
        for n in 0..7 {
            let mut charge = request(&format!("k{n}"), "pm_card_visa");
            charge.reference = format!("order-{}", n % 2);
            made.push(psp.authorize(charge).await.unwrap().id);
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (page, more) = psp.ledger_page(after.as_deref(), None, 3);
            assert!(page.len() <= 3);
            seen.extend(page.iter().map(|p| p.id.clone()));
            after = page.last().map(|p| p.id.clone());
            if !more {
                break;
            }
        }
        assert_eq!(seen, made, "every payment once, oldest first");
        let (odd, more) = psp.ledger_page(None, Some("order-1"), 10);
        assert!(!more);
        assert_eq!(odd.len(), 3);
        assert!(odd.iter().all(|p| p.reference == "order-1"));
        let (rest, more) = psp.ledger_page(Some(&odd[0].id), Some("order-1"), 1);
        assert_eq!((rest[0].id.as_str(), more), (odd[1].id.as_str(), true));
        assert_eq!(
            psp.ledger_page(None, Some("order-9"), 10),
            (Vec::new(), false)
        );
    }

    #[tokio::test]
    async fn methods_decline_wait_or_never_answer() {
        let (_dir, store) = crate::persistence::store::temporary();
        let psp =
            SandboxGateway::open(settings(), Book::open(&store, "psp").unwrap(), None).unwrap();
        let d = psp
            .authorize(request("k1", "pm_card_insufficient_funds"))
            .await
            .unwrap();
        assert_eq!(d.status, PspStatus::Declined);
        assert_eq!(d.decline_code.as_deref(), Some("insufficient_funds"));
        assert!(matches!(
            psp.capture(d.id, "c".into()).await,
            Err(GatewayError::Refused(_))
        ));
        let p = psp.authorize(request("k2", "pm_async")).await.unwrap();
        assert_eq!(p.status, PspStatus::Pending);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            psp.status(p.id).await.unwrap().status,
            PspStatus::Authorized
        );
        let n = psp
            .authorize(request("k3", "pm_no_response"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            psp.status(n.id.clone()).await.unwrap().status,
            PspStatus::Pending
        );
        assert_eq!(
            psp.void(n.id, "v".into()).await.unwrap().status,
            PspStatus::Voided
        );
    }

    #[tokio::test]
    async fn a_payment_is_one_entry_with_its_authorisation_key_beside_it() {
        let (_dir, store) = crate::persistence::store::temporary();
        let book = Book::open(&store, "psp").unwrap();
        let psp = SandboxGateway::open(settings(), book.clone(), None).unwrap();
        let a = psp.authorize(request("k1", "pm_card_visa")).await.unwrap();
        psp.capture(a.id.clone(), "c1".into()).await.unwrap();
        psp.refund(a.id.clone(), 100, "r1".into()).await.unwrap();
        let keys: Vec<String> = book
            .entries()
            .unwrap()
            .into_iter()
            .map(|(key, _)| String::from_utf8(key).unwrap())
            .collect();
        assert_eq!(keys, ["k/k1".to_owned(), format!("p/{}", a.id)]);
    }

    #[tokio::test]
    async fn a_ledger_written_before_still_applies_each_operation_once() {
        let (_dir, store) = crate::persistence::store::temporary();
        let book = Book::open(&store, "psp").unwrap();
        // The layout of older ledgers: the bare payment, its method and
        // every operation key in entries of their own.
        let captured = PaymentView {
            id: "pay_old".into(),
            reference: "order-1".into(),
            status: PspStatus::Captured,
            amount_minor: 1_000,
            currency: "EUR".into(),
            captured_minor: 1_000,
            refunded_minor: 0,
            decline_code: None,
        };
        let pending = PaymentView {
            id: "pay_late".into(),
            status: PspStatus::Pending,
            captured_minor: 0,
            ..captured.clone()
        };
        for view in [&captured, &pending] {
            book.put(
                format!("p/{}", view.id).as_bytes(),
                &serde_json::to_vec(view).unwrap(),
            )
            .unwrap();
        }
        for (key, value) in [
            ("k/auth-old", "pay_old"),
            ("k/cap-old", "pay_old"),
            ("m/pay_old", "pm_card_visa"),
            ("k/auth-late", "pay_late"),
            ("m/pay_late", "pm_async"),
        ] {
            book.put(key.as_bytes(), value.as_bytes()).unwrap();
        }
        let psp = SandboxGateway::open(settings(), book, None).unwrap();
        assert_eq!(
            psp.find("auth-old".into()).await.unwrap(),
            Some(captured.clone())
        );
        let refund = psp
            .refund("pay_old".into(), 300, "cap-old".into())
            .await
            .unwrap();
        assert_eq!(
            refund.refunded_minor, 0,
            "an old operation key is not applied again"
        );
        let refund = psp
            .refund("pay_old".into(), 300, "r1".into())
            .await
            .unwrap();
        assert_eq!(refund.refunded_minor, 300);
        let again = psp
            .refund("pay_old".into(), 300, "r1".into())
            .await
            .unwrap();
        assert_eq!(again.refunded_minor, 300, "nor a new one on an old payment");
        // The pending payment's method is read where older ledgers kept it,
        // so it is decided (`async_delay_ms` later).
        psp.resume_pending();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while psp.status("pay_late".into()).await.unwrap().status == PspStatus::Pending {
            assert!(std::time::Instant::now() < deadline, "never decided");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            psp.status("pay_late".into()).await.unwrap().status,
            PspStatus::Authorized
        );
    }
}
