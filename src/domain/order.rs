//! Orders and their checkout saga as plain Rust: the order and its
//! sub-orders (one per seller), the state machine of each, and the saga's
//! next step. Time is passed in; the actor runs the steps (stock, payment)
//! and feeds their outcomes back here, logging the order before and after
//! every step so a restart resumes exactly where it stopped.

use serde::Serialize;

use super::pricing::SellerCharges;
use super::{OrderId, TenantId, UserId};

/// Where an order, or one seller's part of it, is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Created,
    Reserved,
    PaymentPending,
    Paid,
    Packed,
    Shipped,
    Delivered,
    ReturnRequested,
    Refunded,
    Closed,
    Cancelled,
}

impl OrderState {
    pub const ALL: [OrderState; 11] = [
        OrderState::Created,
        OrderState::Reserved,
        OrderState::PaymentPending,
        OrderState::Paid,
        OrderState::Packed,
        OrderState::Shipped,
        OrderState::Delivered,
        OrderState::ReturnRequested,
        OrderState::Refunded,
        OrderState::Closed,
        OrderState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Reserved => "reserved",
            OrderState::PaymentPending => "payment_pending",
            OrderState::Paid => "paid",
            OrderState::Packed => "packed",
            OrderState::Shipped => "shipped",
            OrderState::Delivered => "delivered",
            OrderState::ReturnRequested => "return_requested",
            OrderState::Refunded => "refunded",
            OrderState::Closed => "closed",
            OrderState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Paid, and every state a paid order can reach.
    pub fn is_paid(self) -> bool {
        self >= OrderState::Paid && self != OrderState::Cancelled
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderState::Refunded | OrderState::Closed | OrderState::Cancelled
        )
    }

    /// The moves a seller may make on a sub-order in this state.
    pub fn seller_moves(self) -> &'static [OrderState] {
        match self {
            OrderState::Paid => &[OrderState::Packed],
            OrderState::Packed => &[OrderState::Shipped],
            OrderState::Shipped => &[OrderState::Delivered],
            OrderState::ReturnRequested => &[OrderState::Refunded, OrderState::Closed],
            _ => &[],
        }
    }
}

/// A step of the checkout saga, or of a compensation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SagaStep {
    /// Hold every line's stock (all or nothing).
    Reserve,
    Authorize,
    Capture,
    /// Turn every hold into a sale.
    Commit,
    /// Compensation: cancel an authorisation that will not be captured.
    Void,
    /// Compensation: give back every hold; the order ends cancelled.
    Release,
    /// Compensation: the whole capture back (the stock could not be committed).
    RefundAll,
    /// A seller accepted a return: refund its part (and restock it if asked).
    Refund {
        seller: TenantId,
    },
    /// Put a refunded part's units back in stock (at most once: a restart
    /// during this step skips it rather than risk counting units twice).
    Restock {
        seller: TenantId,
    },
}

impl SagaStep {
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStep::Reserve => "reserve",
            SagaStep::Authorize => "authorize",
            SagaStep::Capture => "capture",
            SagaStep::Commit => "commit",
            SagaStep::Void => "void",
            SagaStep::Release => "release",
            SagaStep::RefundAll => "refund_all",
            SagaStep::Refund { .. } => "refund",
            SagaStep::Restock { .. } => "restock",
        }
    }
}

/// What the payment provider last told us about this order's payment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// No attempt yet (or a new attempt was asked for).
    None,
    /// The provider has not decided (asynchronous methods); a webhook will tell.
    Pending,
    /// The last call failed without an answer: the attempt's outcome is unknown.
    Unknown,
    Authorized,
    Declined,
    Captured,
    Voided,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Payment {
    /// 1 for the first attempt; `/pay` starts the next.
    pub attempt: u32,
    pub method: String,
    /// The provider's id for the current attempt, once known.
    pub payment_id: Option<String>,
    pub status: PaymentStatus,
    pub decline_code: Option<String>,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    /// Transient failures in a row of the current step (for back-off).
    pub failures: u32,
}

impl Payment {
    /// Idempotency key of an operation of the current attempt: the same key
    /// every time the saga repeats it, so a resumed saga never charges twice.
    pub fn key(&self, order: OrderId, op: &str) -> String {
        format!("{:032x}-{}-{op}", order.0, self.attempt)
    }
}

/// One line: a SKU, its seller and the price the buyer agreed to.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct OrderLine {
    pub sku: u64,
    pub code: String,
    pub seller: TenantId,
    pub quantity: u32,
    pub unit_price_minor: i64,
    /// Its holds, once reserved (per-SKU sequence numbers; a cart may have
    /// taken several as its quantity grew).
    pub reservations: Vec<u64>,
    /// The hold came from the cart (reserve on add) rather than the saga.
    pub adopted: bool,
}

impl OrderLine {
    pub fn total_minor(&self) -> i64 {
        self.unit_price_minor * i64::from(self.quantity)
    }
}

/// One seller's part of an order, fulfilled on its own.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SubOrder {
    pub seller: TenantId,
    pub state: OrderState,
    pub tracking: Option<String>,
    pub history: Vec<(OrderState, u64)>,
    /// Return accepted with restock: the units go back to stock with the refund.
    pub restock: bool,
    pub return_reason: Option<String>,
    /// The seller accepted the return; the refund step has not finished yet.
    pub refund_pending: bool,
    /// Refunded with restock; the units are not back in stock yet.
    pub restock_pending: bool,
    pub refunded_minor: i64,
    /// Subtotal, shipping and tax, fixed at checkout (format 5 on; older
    /// orders read as their lines only).
    pub charges: SellerCharges,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Started,
    Completed,
    Failed,
}

/// One line of the saga log, kept with the order.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SagaEntry {
    pub step: SagaStep,
    pub phase: Phase,
    pub at_ms: u64,
    pub detail: String,
}

/// Why an order was cancelled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Some line could not be held (out of stock, drop rules, unknown SKU).
    Rejected,
    BuyerCancelled,
    /// No successful payment before the deadline.
    PaymentTimeout,
    /// Paid, but a hold was gone before it could be committed: refunded.
    StockLost,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub buyer: UserId,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    pub sub_orders: Vec<SubOrder>,
    pub shipping_address: String,
    pub state: OrderState,
    pub history: Vec<(OrderState, u64)>,
    /// The step being run: set (and logged) before it starts, cleared with its outcome.
    pub pending: Option<SagaStep>,
    pub saga_log: Vec<SagaEntry>,
    pub payment: Payment,
    pub created_at_ms: u64,
    pub payment_deadline_ms: u64,
    /// Cancellation asked for (by the buyer or the deadline) and not yet done.
    pub cancelling: Option<CancelReason>,
    pub cancel_reason: Option<CancelReason>,
    /// Why the reserve step failed, for the buyer (e.g. "out_of_stock: TEE-M").
    pub rejection: Option<String>,
    /// `(Idempotency-Key, request fingerprint)` it was created with.
    pub idempotency: Option<(String, u64)>,
    /// A step failed transiently; the saga waits until then before retrying.
    pub retry_at_ms: u64,
}

/// A move the state machine does not allow, with the moves it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot move from {} to {}", from.as_str(), to)]
pub struct TransitionError {
    pub from: OrderState,
    pub to: String,
    pub allowed: Vec<OrderState>,
}

impl TransitionError {
    fn new(from: OrderState, to: impl Into<String>, allowed: &[OrderState]) -> Self {
        Self {
            from,
            to: to.into(),
            allowed: allowed.to_vec(),
        }
    }
}

/// What a new order is made of.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: OrderId,
    pub buyer: UserId,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    pub shipping_address: String,
    pub payment_method: String,
    pub now_ms: u64,
    pub payment_deadline_ms: u64,
    pub idempotency: Option<(String, u64)>,
    /// Each seller's shipping and tax, priced at checkout; a seller left
    /// out is charged its lines only.
    pub charges: Vec<(TenantId, SellerCharges)>,
}

/// Saga log entries an order keeps (the newest), so a payment retried many
/// times cannot grow it without bound.
pub const SAGA_LOG_MAX: usize = 64;

impl Order {
    /// A new order: lines grouped into one sub-order per seller, in the
    /// order the sellers first appear.
    pub fn new(new: NewOrder) -> Self {
        let NewOrder {
            id,
            buyer,
            currency,
            lines,
            shipping_address,
            payment_method,
            now_ms,
            payment_deadline_ms,
            idempotency,
            charges,
        } = new;
        let mut sub_orders: Vec<SubOrder> = Vec::new();
        for line in &lines {
            if !sub_orders.iter().any(|s| s.seller == line.seller) {
                let subtotal = lines
                    .iter()
                    .filter(|l| l.seller == line.seller)
                    .map(OrderLine::total_minor)
                    .sum();
                let charges = charges
                    .iter()
                    .find(|(seller, _)| *seller == line.seller)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_else(|| SellerCharges::lines_only(subtotal));
                sub_orders.push(SubOrder {
                    charges,
                    seller: line.seller,
                    state: OrderState::Created,
                    tracking: None,
                    history: vec![(OrderState::Created, now_ms)],
                    restock: false,
                    return_reason: None,
                    refund_pending: false,
                    restock_pending: false,
                    refunded_minor: 0,
                });
            }
        }
        Self {
            id,
            buyer,
            currency,
            lines,
            sub_orders,
            shipping_address,
            state: OrderState::Created,
            history: vec![(OrderState::Created, now_ms)],
            pending: None,
            saga_log: Vec::new(),
            payment: Payment {
                attempt: 1,
                method: payment_method,
                payment_id: None,
                status: PaymentStatus::None,
                decline_code: None,
                captured_minor: 0,
                refunded_minor: 0,
                failures: 0,
            },
            created_at_ms: now_ms,
            payment_deadline_ms,
            cancelling: None,
            cancel_reason: None,
            rejection: None,
            idempotency,
            retry_at_ms: 0,
        }
    }

    /// What the buyer pays: every seller's subtotal, shipping and added tax.
    pub fn total_minor(&self) -> i64 {
        self.sub_orders
            .iter()
            .map(|s| s.charges.total_minor())
            .sum()
    }

    /// The lines' prices times quantities, of every seller.
    pub fn subtotal_minor(&self) -> i64 {
        self.lines.iter().map(OrderLine::total_minor).sum()
    }

    pub fn shipping_minor(&self) -> i64 {
        self.sub_orders
            .iter()
            .map(|s| s.charges.shipping_minor)
            .sum()
    }

    /// The tax in the total, added or included.
    pub fn tax_minor(&self) -> i64 {
        self.sub_orders.iter().map(|s| s.charges.tax_minor).sum()
    }

    /// What the buyer pays one seller (what refunding its part gives back).
    pub fn seller_total_minor(&self, seller: TenantId) -> i64 {
        self.sub_orders
            .iter()
            .filter(|s| s.seller == seller)
            .map(|s| s.charges.total_minor())
            .sum()
    }

    pub fn sellers(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.sub_orders.iter().map(|s| s.seller)
    }

    fn log(&mut self, step: SagaStep, phase: Phase, now_ms: u64, detail: impl Into<String>) {
        if self.saga_log.len() >= SAGA_LOG_MAX {
            self.saga_log.remove(0);
        }
        self.saga_log.push(SagaEntry {
            step,
            phase,
            at_ms: now_ms,
            detail: detail.into(),
        });
    }

    fn move_to(&mut self, to: OrderState, now_ms: u64) {
        if self.state != to {
            self.state = to;
            self.history.push((to, now_ms));
        }
    }

    fn move_all_subs(&mut self, to: OrderState, now_ms: u64) {
        for sub in &mut self.sub_orders {
            if sub.state != to {
                sub.state = to;
                sub.history.push((to, now_ms));
            }
        }
    }

    /// After payment the order follows its sub-orders: a return asked for
    /// anywhere shows first, then the least advanced open part; once every
    /// part is final, refunded if any part was.
    fn follow_sub_orders(&mut self, now_ms: u64) {
        let subs = &self.sub_orders;
        let to = if subs.iter().any(|s| s.state == OrderState::ReturnRequested) {
            OrderState::ReturnRequested
        } else if let Some(least) = subs
            .iter()
            .filter(|s| !s.state.is_final())
            .map(|s| s.state)
            .min()
        {
            least
        } else if subs.iter().any(|s| s.state == OrderState::Refunded) {
            OrderState::Refunded
        } else {
            OrderState::Closed
        };
        self.move_to(to, now_ms);
    }

    /// The saga step to run now, if any. `None`: the order waits for someone
    /// (the buyer's payment retry, a webhook, a seller) or is done.
    pub fn next_step(&self, now_ms: u64) -> Option<SagaStep> {
        // A step that failed transiently is repeated once its back-off is
        // over, not at once: a provider that is down is not hammered.
        if now_ms < self.retry_at_ms {
            return None;
        }
        if let Some(step) = self.pending {
            return Some(step);
        }
        if let Some(sub) = self.sub_orders.iter().find(|s| s.restock_pending) {
            return Some(SagaStep::Restock { seller: sub.seller });
        }
        match self.state {
            OrderState::Created => Some(if self.cancelling.is_some() {
                SagaStep::Release
            } else {
                SagaStep::Reserve
            }),
            OrderState::Reserved | OrderState::PaymentPending => {
                let cancel = self.cancelling.is_some() || now_ms >= self.payment_deadline_ms;
                match self.payment.status {
                    PaymentStatus::Captured => Some(SagaStep::Commit),
                    PaymentStatus::Refunded => Some(SagaStep::Release),
                    PaymentStatus::Authorized => Some(if cancel {
                        SagaStep::Void
                    } else {
                        SagaStep::Capture
                    }),
                    PaymentStatus::Pending | PaymentStatus::Unknown if cancel => {
                        Some(SagaStep::Void)
                    }
                    PaymentStatus::Pending => None,
                    PaymentStatus::Unknown | PaymentStatus::None => Some(if cancel {
                        SagaStep::Release
                    } else {
                        SagaStep::Authorize
                    }),
                    PaymentStatus::Declined | PaymentStatus::Voided => {
                        cancel.then_some(SagaStep::Release)
                    }
                }
            }
            OrderState::ReturnRequested => self
                .sub_orders
                .iter()
                .find(|s| s.state == OrderState::ReturnRequested && s.refund_pending)
                .map(|s| SagaStep::Refund { seller: s.seller }),
            _ => None,
        }
    }

    /// Logs a step as started; it stays pending until its outcome is applied.
    pub fn begin(&mut self, step: SagaStep, now_ms: u64) {
        if self.pending != Some(step) {
            self.pending = Some(step);
            self.log(step, Phase::Started, now_ms, "");
        }
    }

    /// Ends a step whose outcome only changed the payment's status: the saga
    /// decides again from there.
    pub fn finish(&mut self, step: SagaStep, now_ms: u64, detail: &str) {
        self.complete(step, now_ms, detail);
    }

    fn complete(&mut self, step: SagaStep, now_ms: u64, detail: impl Into<String>) {
        self.pending = None;
        self.payment.failures = 0;
        self.retry_at_ms = 0;
        self.log(step, Phase::Completed, now_ms, detail);
    }

    /// The step failed for a reason that may pass: it stays pending and is
    /// tried again after `backoff_ms`.
    pub fn step_failed_transiently(&mut self, now_ms: u64, backoff_ms: u64, detail: &str) {
        let Some(step) = self.pending else { return };
        self.payment.failures = self.payment.failures.saturating_add(1);
        self.retry_at_ms = now_ms + backoff_ms;
        self.log(step, Phase::Failed, now_ms, detail);
    }

    /// Takes the holds the reserve step made (`None`: the line had its own).
    pub fn take_holds(&mut self, holds: &[Option<u64>]) {
        for (line, seq) in self.lines.iter_mut().zip(holds) {
            if let Some(seq) = seq {
                if !line.reservations.contains(seq) {
                    line.reservations.push(*seq);
                }
            }
        }
    }

    /// Every line is held: the order waits for its payment.
    pub fn reserved(&mut self, holds: &[Option<u64>], now_ms: u64) {
        self.take_holds(holds);
        self.complete(SagaStep::Reserve, now_ms, "");
        self.move_to(OrderState::Reserved, now_ms);
        self.move_all_subs(OrderState::Reserved, now_ms);
        self.move_to(OrderState::PaymentPending, now_ms);
        self.move_all_subs(OrderState::PaymentPending, now_ms);
    }

    /// Some line could not be held: what was held goes back, the order is rejected.
    pub fn reserve_failed(&mut self, holds: &[Option<u64>], why: String, now_ms: u64) {
        self.take_holds(holds);
        self.rejection = Some(why.clone());
        self.complete(SagaStep::Reserve, now_ms, why);
        self.pending = Some(SagaStep::Release);
        self.cancelling = Some(CancelReason::Rejected);
    }

    /// The outcome of an authorisation (or what a webhook or a status query says).
    pub fn payment_seen(
        &mut self,
        status: PaymentStatus,
        payment_id: Option<String>,
        decline_code: Option<String>,
        now_ms: u64,
    ) {
        if payment_id.is_some() {
            self.payment.payment_id = payment_id;
        }
        if status == PaymentStatus::Declined {
            self.payment.decline_code = decline_code;
        }
        self.payment.status = status;
        if self.pending == Some(SagaStep::Authorize) {
            self.complete(SagaStep::Authorize, now_ms, status_text(status));
        }
    }

    pub fn captured(&mut self, now_ms: u64) {
        self.payment.status = PaymentStatus::Captured;
        self.payment.captured_minor = self.total_minor();
        self.complete(SagaStep::Capture, now_ms, "");
    }

    /// Every hold is a sale: the order is paid.
    pub fn committed(&mut self, now_ms: u64) {
        self.complete(SagaStep::Commit, now_ms, "");
        self.move_to(OrderState::Paid, now_ms);
        self.move_all_subs(OrderState::Paid, now_ms);
    }

    /// Paid, but a hold was gone: the whole payment goes back.
    pub fn commit_failed(&mut self, why: String, now_ms: u64) {
        self.complete(SagaStep::Commit, now_ms, why);
        self.pending = Some(SagaStep::RefundAll);
        self.cancelling = Some(CancelReason::StockLost);
    }

    pub fn refunded_all(&mut self, now_ms: u64) {
        self.payment.status = PaymentStatus::Refunded;
        self.payment.refunded_minor = self.payment.captured_minor;
        self.complete(SagaStep::RefundAll, now_ms, "");
    }

    pub fn voided(&mut self, now_ms: u64) {
        self.payment.status = PaymentStatus::Voided;
        self.complete(SagaStep::Void, now_ms, "");
    }

    /// Every hold is back: the order ends cancelled.
    pub fn released(&mut self, now_ms: u64) {
        self.complete(SagaStep::Release, now_ms, "");
        let reason = self
            .cancelling
            .take()
            .unwrap_or(if now_ms >= self.payment_deadline_ms {
                CancelReason::PaymentTimeout
            } else {
                CancelReason::BuyerCancelled
            });
        self.cancel_reason = Some(reason);
        self.move_to(OrderState::Cancelled, now_ms);
        self.move_all_subs(OrderState::Cancelled, now_ms);
    }

    /// The buyer cancels: allowed until the order is paid and while no
    /// capture is under way.
    pub fn request_cancel(&mut self) -> Result<(), TransitionError> {
        let capturing = matches!(
            self.pending,
            Some(SagaStep::Capture | SagaStep::Commit | SagaStep::RefundAll)
        ) || self.payment.status == PaymentStatus::Captured;
        if self.state.is_paid() || self.state == OrderState::Cancelled || capturing {
            return Err(TransitionError::new(
                self.state,
                OrderState::Cancelled.as_str(),
                &[],
            ));
        }
        self.cancelling.get_or_insert(CancelReason::BuyerCancelled);
        Ok(())
    }

    /// The buyer pays again (another method) after a decline.
    pub fn retry_payment(&mut self, method: String, now_ms: u64) -> Result<(), TransitionError> {
        let retryable = self.state == OrderState::PaymentPending
            && self.cancelling.is_none()
            && self.pending.is_none()
            && now_ms < self.payment_deadline_ms
            && matches!(
                self.payment.status,
                PaymentStatus::Declined | PaymentStatus::Voided
            );
        if !retryable {
            return Err(TransitionError::new(self.state, "payment_retry", &[]));
        }
        self.payment.attempt += 1;
        self.payment.method = method;
        self.payment.payment_id = None;
        self.payment.decline_code = None;
        self.payment.status = PaymentStatus::None;
        Ok(())
    }

    /// A seller moves its sub-order (packed, shipped, delivered; or, on a
    /// return, refunded or closed).
    pub fn fulfil(
        &mut self,
        seller: TenantId,
        to: OrderState,
        tracking: Option<String>,
        restock: bool,
        now_ms: u64,
    ) -> Result<(), FulfilError> {
        let sub = self
            .sub_orders
            .iter_mut()
            .find(|s| s.seller == seller)
            .ok_or(FulfilError::NotYours)?;
        let allowed = sub.state.seller_moves();
        if !allowed.contains(&to) || sub.refund_pending {
            return Err(FulfilError::Transition(TransitionError::new(
                sub.state,
                to.as_str(),
                allowed,
            )));
        }
        if to == OrderState::Refunded {
            // The refund runs as a saga step; the sub-order moves once it is done.
            sub.refund_pending = true;
            sub.restock = restock;
            return Ok(());
        }
        if tracking.is_some() {
            sub.tracking = tracking;
        }
        sub.state = to;
        sub.history.push((to, now_ms));
        self.follow_sub_orders(now_ms);
        Ok(())
    }

    /// The buyer asks to return what was delivered, within `window_ms` of delivery.
    pub fn request_return(
        &mut self,
        reason: String,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<TenantId>, TransitionError> {
        let mut asked = Vec::new();
        for sub in &mut self.sub_orders {
            let delivered_at = sub
                .history
                .iter()
                .rev()
                .find(|(s, _)| *s == OrderState::Delivered)
                .map(|(_, at)| *at);
            if sub.state == OrderState::Delivered
                && delivered_at.is_some_and(|at| now_ms <= at + window_ms)
            {
                sub.state = OrderState::ReturnRequested;
                sub.history.push((OrderState::ReturnRequested, now_ms));
                sub.return_reason = Some(reason.clone());
                asked.push(sub.seller);
            }
        }
        if asked.is_empty() {
            return Err(TransitionError::new(
                self.state,
                OrderState::ReturnRequested.as_str(),
                &[],
            ));
        }
        self.follow_sub_orders(now_ms);
        Ok(asked)
    }

    /// A seller's part was refunded through the gateway.
    pub fn refunded(&mut self, seller: TenantId, now_ms: u64) {
        let amount = self.seller_total_minor(seller);
        if let Some(sub) = self.sub_orders.iter_mut().find(|s| s.seller == seller) {
            sub.refunded_minor = amount;
            sub.refund_pending = false;
            sub.restock_pending = sub.restock;
            sub.state = OrderState::Refunded;
            sub.history.push((OrderState::Refunded, now_ms));
        }
        self.payment.refunded_minor += amount;
        self.complete(SagaStep::Refund { seller }, now_ms, "");
        self.follow_sub_orders(now_ms);
    }

    /// A refunded part's units are back in stock (or, `skipped`, the step was
    /// interrupted and is not repeated: someone counts them by hand).
    pub fn restocked(&mut self, seller: TenantId, skipped: bool, now_ms: u64) {
        if let Some(sub) = self.sub_orders.iter_mut().find(|s| s.seller == seller) {
            sub.restock_pending = false;
        }
        let detail = if skipped {
            "skipped after a restart"
        } else {
            ""
        };
        self.complete(SagaStep::Restock { seller }, now_ms, detail);
    }

    /// Delivered parts whose return window has passed are closed.
    pub fn close_expired_returns(&mut self, window_ms: u64, now_ms: u64) -> bool {
        let mut changed = false;
        for sub in &mut self.sub_orders {
            let delivered_at = sub
                .history
                .last()
                .filter(|(s, _)| *s == OrderState::Delivered)
                .map(|(_, at)| *at);
            if delivered_at.is_some_and(|at| now_ms > at + window_ms) {
                sub.state = OrderState::Closed;
                sub.history.push((OrderState::Closed, now_ms));
                changed = true;
            }
        }
        if changed {
            self.follow_sub_orders(now_ms);
        }
        changed
    }

    /// Nothing left for the saga to do, ever.
    pub fn settled(&self) -> bool {
        self.pending.is_none()
            && (self.state == OrderState::Cancelled || self.state.is_paid())
            && !matches!(self.state, OrderState::ReturnRequested)
            && !self.sub_orders.iter().any(|s| s.restock_pending)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FulfilError {
    #[error("this order has no part sold by your store")]
    NotYours,
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

pub fn status_text(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::None => "none",
        PaymentStatus::Pending => "pending",
        PaymentStatus::Unknown => "unknown",
        PaymentStatus::Authorized => "authorized",
        PaymentStatus::Declined => "declined",
        PaymentStatus::Captured => "captured",
        PaymentStatus::Voided => "voided",
        PaymentStatus::Refunded => "refunded",
    }
}

/// Orders as formats 0..=4 wrote them, before checkout pricing: they read
/// as orders charged their lines only (no shipping, no tax).
pub mod legacy {
    use super::{
        CancelReason, Order, OrderId, OrderLine, OrderState, Payment, SagaEntry, SagaStep,
        SellerCharges, SubOrder, TenantId, UserId,
    };

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct SubOrderV1 {
        pub seller: TenantId,
        pub state: OrderState,
        pub tracking: Option<String>,
        pub history: Vec<(OrderState, u64)>,
        pub restock: bool,
        pub return_reason: Option<String>,
        pub refund_pending: bool,
        pub restock_pending: bool,
        pub refunded_minor: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub struct OrderV1 {
        pub id: OrderId,
        pub buyer: UserId,
        pub currency: String,
        pub lines: Vec<OrderLine>,
        pub sub_orders: Vec<SubOrderV1>,
        pub shipping_address: String,
        pub state: OrderState,
        pub history: Vec<(OrderState, u64)>,
        pub pending: Option<SagaStep>,
        pub saga_log: Vec<SagaEntry>,
        pub payment: Payment,
        pub created_at_ms: u64,
        pub payment_deadline_ms: u64,
        pub cancelling: Option<CancelReason>,
        pub cancel_reason: Option<CancelReason>,
        pub rejection: Option<String>,
        pub idempotency: Option<(String, u64)>,
        pub retry_at_ms: u64,
    }

    impl From<OrderV1> for Order {
        fn from(old: OrderV1) -> Self {
            let lines = old.lines;
            let sub_orders = old
                .sub_orders
                .into_iter()
                .map(|s| {
                    let subtotal = lines
                        .iter()
                        .filter(|l| l.seller == s.seller)
                        .map(OrderLine::total_minor)
                        .sum();
                    SubOrder {
                        seller: s.seller,
                        state: s.state,
                        tracking: s.tracking,
                        history: s.history,
                        restock: s.restock,
                        return_reason: s.return_reason,
                        refund_pending: s.refund_pending,
                        restock_pending: s.restock_pending,
                        refunded_minor: s.refunded_minor,
                        charges: SellerCharges::lines_only(subtotal),
                    }
                })
                .collect();
            Order {
                id: old.id,
                buyer: old.buyer,
                currency: old.currency,
                lines,
                sub_orders,
                shipping_address: old.shipping_address,
                state: old.state,
                history: old.history,
                pending: old.pending,
                saga_log: old.saga_log,
                payment: old.payment,
                created_at_ms: old.created_at_ms,
                payment_deadline_ms: old.payment_deadline_ms,
                cancelling: old.cancelling,
                cancel_reason: old.cancel_reason,
                rejection: old.rejection,
                idempotency: old.idempotency,
                retry_at_ms: old.retry_at_ms,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(sellers: &[u128]) -> Order {
        Order::new(order_parts(sellers))
    }

    fn order_parts(sellers: &[u128]) -> NewOrder {
        let lines = sellers
            .iter()
            .enumerate()
            .map(|(i, seller)| OrderLine {
                sku: i as u64 + 1,
                code: format!("SKU-{i}"),
                seller: TenantId(*seller),
                quantity: 2,
                unit_price_minor: 500,
                reservations: Vec::new(),
                adopted: false,
            })
            .collect();
        NewOrder {
            id: OrderId(9),
            buyer: UserId(7),
            currency: "EUR".into(),
            lines,
            shipping_address: "1 Main St".into(),
            payment_method: "pm_card_visa".into(),
            now_ms: 1_000,
            payment_deadline_ms: 61_000,
            idempotency: None,
            charges: Vec::new(),
        }
    }

    #[test]
    fn an_order_costs_each_sellers_charges_and_older_orders_their_lines() {
        let mut new = NewOrder {
            charges: vec![(
                TenantId(2),
                SellerCharges {
                    subtotal_minor: 1_000,
                    shipping_method: Some("express".into()),
                    shipping_minor: 300,
                    tax_rate_bp: 1_000,
                    tax_minor: 130,
                    tax_included: false,
                },
            )],
            ..order_parts(&[1, 2])
        };
        new.now_ms = 1_000;
        let o = Order::new(new);
        assert_eq!(o.subtotal_minor(), 2_000);
        assert_eq!(o.seller_total_minor(TenantId(1)), 1_000, "lines only");
        assert_eq!(o.seller_total_minor(TenantId(2)), 1_430);
        assert_eq!(
            (o.shipping_minor(), o.tax_minor(), o.total_minor()),
            (300, 130, 2_430)
        );

        let old = legacy::OrderV1 {
            id: o.id,
            buyer: o.buyer,
            currency: o.currency.clone(),
            lines: o.lines.clone(),
            sub_orders: o
                .sub_orders
                .iter()
                .map(|s| legacy::SubOrderV1 {
                    seller: s.seller,
                    state: s.state,
                    tracking: None,
                    history: s.history.clone(),
                    restock: false,
                    return_reason: None,
                    refund_pending: false,
                    restock_pending: false,
                    refunded_minor: 0,
                })
                .collect(),
            shipping_address: o.shipping_address.clone(),
            state: o.state,
            history: o.history.clone(),
            pending: None,
            saga_log: Vec::new(),
            payment: o.payment.clone(),
            created_at_ms: o.created_at_ms,
            payment_deadline_ms: o.payment_deadline_ms,
            cancelling: None,
            cancel_reason: None,
            rejection: None,
            idempotency: None,
            retry_at_ms: 0,
        };
        let read = Order::from(old);
        assert_eq!(read.total_minor(), 2_000);
        assert_eq!(read.sub_orders[1].charges, SellerCharges::lines_only(1_000));
    }

    fn run_to_paid(o: &mut Order) {
        assert_eq!(o.next_step(1_000), Some(SagaStep::Reserve));
        o.begin(SagaStep::Reserve, 1_000);
        let holds: Vec<Option<u64>> = (0..o.lines.len() as u64).map(Some).collect();
        o.reserved(&holds, 1_100);
        assert_eq!(o.state, OrderState::PaymentPending);
        assert_eq!(o.next_step(1_100), Some(SagaStep::Authorize));
        o.begin(SagaStep::Authorize, 1_100);
        o.payment_seen(PaymentStatus::Authorized, Some("pay_1".into()), None, 1_200);
        assert_eq!(o.next_step(1_200), Some(SagaStep::Capture));
        o.begin(SagaStep::Capture, 1_200);
        o.captured(1_300);
        assert_eq!(o.next_step(1_300), Some(SagaStep::Commit));
        o.begin(SagaStep::Commit, 1_300);
        o.committed(1_400);
    }

    #[test]
    fn the_happy_path_logs_every_step_and_groups_sellers() {
        let mut o = order(&[1, 2, 1]);
        assert_eq!(o.sub_orders.len(), 2);
        assert_eq!(o.total_minor(), 3_000);
        run_to_paid(&mut o);
        assert_eq!(o.state, OrderState::Paid);
        assert!(o.sub_orders.iter().all(|s| s.state == OrderState::Paid));
        assert_eq!(o.next_step(2_000), None);
        let steps: Vec<_> = o.saga_log.iter().map(|e| (e.step, e.phase)).collect();
        assert_eq!(steps.len(), 8, "{steps:?}");
        assert!(o
            .saga_log
            .chunks(2)
            .all(|pair| pair[0].phase == Phase::Started
                && pair[1].phase == Phase::Completed
                && pair[0].step == pair[1].step));
        assert_eq!(o.payment.captured_minor, 3_000);
        assert!(o.settled());
    }

    #[test]
    fn a_pending_step_is_what_a_restart_runs_again() {
        let mut o = order(&[1]);
        o.begin(SagaStep::Reserve, 1_000);
        assert_eq!(o.next_step(999_999), Some(SagaStep::Reserve));
        o.step_failed_transiently(1_000, 500, "unavailable");
        assert_eq!(o.next_step(1_200), None, "backing off");
        assert_eq!(o.next_step(1_500), Some(SagaStep::Reserve));
    }

    #[test]
    fn a_failed_reservation_releases_what_was_held_and_cancels() {
        let mut o = order(&[1, 2]);
        o.begin(SagaStep::Reserve, 1_000);
        o.reserve_failed(&[Some(4), None], "out_of_stock: SKU-1".into(), 1_100);
        assert_eq!(o.lines[0].reservations, vec![4]);
        assert_eq!(o.next_step(1_100), Some(SagaStep::Release));
        o.released(1_200);
        assert_eq!(o.state, OrderState::Cancelled);
        assert_eq!(o.cancel_reason, Some(CancelReason::Rejected));
        assert!(o.settled());
    }

    #[test]
    fn a_decline_waits_for_a_retry_until_the_deadline() {
        let mut o = order(&[1]);
        o.begin(SagaStep::Reserve, 1_000);
        o.reserved(&[Some(1)], 1_000);
        o.begin(SagaStep::Authorize, 1_000);
        o.payment_seen(
            PaymentStatus::Declined,
            Some("p".into()),
            Some("card_declined".into()),
            1_100,
        );
        assert_eq!(o.next_step(1_100), None);
        assert!(o.retry_payment("pm_card_visa".into(), 1_200).is_ok());
        assert_eq!(o.payment.attempt, 2);
        assert_ne!(o.payment.key(o.id, "authorize"), {
            let mut first = o.payment.clone();
            first.attempt = 1;
            first.key(o.id, "authorize")
        });
        assert_eq!(o.next_step(1_200), Some(SagaStep::Authorize));
        o.begin(SagaStep::Authorize, 1_200);
        o.payment_seen(PaymentStatus::Declined, None, Some("x".into()), 1_300);
        assert_eq!(o.next_step(61_000), Some(SagaStep::Release));
        o.begin(SagaStep::Release, 61_000);
        o.released(61_000);
        assert_eq!(o.cancel_reason, Some(CancelReason::PaymentTimeout));
    }

    #[test]
    fn cancelling_an_authorised_order_voids_then_releases() {
        let mut o = order(&[1]);
        o.begin(SagaStep::Reserve, 1_000);
        o.reserved(&[Some(1)], 1_000);
        o.begin(SagaStep::Authorize, 1_000);
        o.payment_seen(PaymentStatus::Authorized, Some("p".into()), None, 1_000);
        o.request_cancel().unwrap();
        assert_eq!(o.next_step(1_000), Some(SagaStep::Void));
        o.begin(SagaStep::Void, 1_000);
        o.voided(1_000);
        assert_eq!(o.next_step(1_000), Some(SagaStep::Release));
        o.begin(SagaStep::Release, 1_000);
        o.released(1_000);
        assert_eq!(o.cancel_reason, Some(CancelReason::BuyerCancelled));
        assert!(o.request_cancel().is_err());
    }

    #[test]
    fn fulfilment_follows_the_state_machine_and_the_order_follows_its_parts() {
        let mut o = order(&[1, 2]);
        run_to_paid(&mut o);
        let err = o
            .fulfil(TenantId(1), OrderState::Shipped, None, false, 2_000)
            .unwrap_err();
        assert_eq!(
            err,
            FulfilError::Transition(TransitionError::new(
                OrderState::Paid,
                "shipped",
                &[OrderState::Packed]
            ))
        );
        assert_eq!(
            o.fulfil(TenantId(3), OrderState::Packed, None, false, 2_000),
            Err(FulfilError::NotYours)
        );
        for to in [
            OrderState::Packed,
            OrderState::Shipped,
            OrderState::Delivered,
        ] {
            o.fulfil(TenantId(1), to, Some("TRK".into()), false, 2_000)
                .unwrap();
        }
        assert_eq!(o.state, OrderState::Paid, "seller 2 has not moved");
        for to in [
            OrderState::Packed,
            OrderState::Shipped,
            OrderState::Delivered,
        ] {
            o.fulfil(TenantId(2), to, None, false, 3_000).unwrap();
        }
        assert_eq!(o.state, OrderState::Delivered);
        assert!(o.request_return("too big".into(), 1_000, 5_000).is_err());
        assert_eq!(
            o.request_return("too big".into(), 10_000, 5_000),
            Ok(vec![TenantId(1), TenantId(2)])
        );
        assert_eq!(o.state, OrderState::ReturnRequested);
        o.fulfil(TenantId(2), OrderState::Closed, None, false, 6_000)
            .unwrap();
        o.fulfil(TenantId(1), OrderState::Refunded, None, true, 6_000)
            .unwrap();
        assert_eq!(
            o.next_step(6_000),
            Some(SagaStep::Refund {
                seller: TenantId(1)
            })
        );
        o.begin(
            SagaStep::Refund {
                seller: TenantId(1),
            },
            6_000,
        );
        o.refunded(TenantId(1), 6_100);
        assert_eq!(o.state, OrderState::Refunded);
        assert_eq!(o.payment.refunded_minor, 1_000);
        assert!(!o.settled(), "the restock is still to do");
        assert_eq!(
            o.next_step(6_100),
            Some(SagaStep::Restock {
                seller: TenantId(1)
            })
        );
        o.begin(
            SagaStep::Restock {
                seller: TenantId(1),
            },
            6_100,
        );
        o.restocked(TenantId(1), false, 6_200);
        assert_eq!(o.next_step(6_200), None);
        assert!(o.settled());
    }

    #[test]
    fn an_interrupted_restock_is_recorded_as_skipped_and_not_run_again() {
        let mut o = order(&[1]);
        run_to_paid(&mut o);
        for to in [
            OrderState::Packed,
            OrderState::Shipped,
            OrderState::Delivered,
        ] {
            o.fulfil(TenantId(1), to, None, false, 2_000).unwrap();
        }
        o.request_return("broken".into(), 10_000, 3_000).unwrap();
        o.fulfil(TenantId(1), OrderState::Refunded, None, true, 3_000)
            .unwrap();
        o.begin(
            SagaStep::Refund {
                seller: TenantId(1),
            },
            3_000,
        );
        o.refunded(TenantId(1), 3_000);
        o.begin(
            SagaStep::Restock {
                seller: TenantId(1),
            },
            3_000,
        );
        o.restocked(TenantId(1), true, 3_100);
        let last = o.saga_log.last().unwrap();
        assert_eq!(
            (last.step, last.phase),
            (
                SagaStep::Restock {
                    seller: TenantId(1)
                },
                Phase::Completed
            )
        );
        assert_eq!(last.detail, "skipped after a restart");
        assert_eq!(o.next_step(3_100), None);
        assert!(o.settled());
    }

    #[test]
    fn delivered_parts_close_when_the_return_window_passes() {
        let mut o = order(&[1]);
        run_to_paid(&mut o);
        for to in [
            OrderState::Packed,
            OrderState::Shipped,
            OrderState::Delivered,
        ] {
            o.fulfil(TenantId(1), to, None, false, 2_000).unwrap();
        }
        assert!(!o.close_expired_returns(1_000, 3_000));
        assert!(o.close_expired_returns(1_000, 3_001));
        assert_eq!(o.state, OrderState::Closed);
    }

    #[test]
    fn a_lost_hold_after_capture_refunds_everything() {
        let mut o = order(&[1]);
        o.begin(SagaStep::Reserve, 1_000);
        o.reserved(&[Some(1)], 1_000);
        o.begin(SagaStep::Authorize, 1_000);
        o.payment_seen(PaymentStatus::Authorized, Some("p".into()), None, 1_000);
        o.begin(SagaStep::Capture, 1_000);
        o.captured(1_000);
        assert!(
            o.request_cancel().is_err(),
            "a captured order is not cancelled by the buyer"
        );
        o.begin(SagaStep::Commit, 1_000);
        o.commit_failed("reservation_expired".into(), 1_000);
        assert_eq!(o.next_step(1_000), Some(SagaStep::RefundAll));
        o.refunded_all(1_000);
        assert_eq!(o.next_step(1_000), Some(SagaStep::Release));
        o.begin(SagaStep::Release, 1_000);
        o.released(1_000);
        assert_eq!(o.cancel_reason, Some(CancelReason::StockLost));
    }
}
