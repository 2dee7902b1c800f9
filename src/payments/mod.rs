//! Payments: the `PaymentGateway` trait every provider adapter implements, the
//! sandbox gateway that behaves like a real PSP (latency, failures, declines,
//! asynchronous methods, late, duplicated and reordered webhooks), and the
//! HMAC-SHA256 signature of webhooks.

pub mod sandbox;
pub mod signature;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use sandbox::{SandboxGateway, SandboxSettings};

/// An authorisation request. `key` makes it idempotent: the same key always
/// names the same payment, however often it is sent.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub key: String,
    /// The order it pays for (shown in webhooks and the ledger).
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    /// A payment method token (`pm_...`).
    pub method: String,
}

/// What the provider says a payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PspStatus {
    /// Not decided yet (asynchronous methods): a webhook will tell.
    Pending,
    Authorized,
    Declined,
    Captured,
    Voided,
    /// Every captured unit of money went back.
    Refunded,
}

/// A payment as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    pub id: String,
    pub reference: String,
    pub status: PspStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub decline_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The call failed without an answer; whether it took effect is unknown.
    /// Repeating it with the same key is safe.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the operation in this payment's state.
    #[error("payment provider refused: {0}")]
    Refused(String),
    #[error("the payment provider does not know this payment")]
    NotFound,
}

pub type GatewayFuture<T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send>>;

/// A payment provider. Every state-changing call carries an idempotency key
/// derived from the order, so repeating a call after a crash or a lost answer
/// never moves money twice.
pub trait PaymentGateway: Send + Sync {
    fn authorize(&self, request: ChargeRequest) -> GatewayFuture<PaymentView>;
    fn capture(&self, payment_id: String, key: String) -> GatewayFuture<PaymentView>;
    /// Cancels an authorisation (or a pending payment) that will not be captured.
    fn void(&self, payment_id: String, key: String) -> GatewayFuture<PaymentView>;
    fn refund(
        &self,
        payment_id: String,
        amount_minor: i64,
        key: String,
    ) -> GatewayFuture<PaymentView>;
    fn status(&self, payment_id: String) -> GatewayFuture<PaymentView>;
    /// The payment an authorisation key created, if the provider saw it.
    fn find(&self, authorize_key: String) -> GatewayFuture<Option<PaymentView>>;
}
