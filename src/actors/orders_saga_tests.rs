//! The checkout saga against a fake stock service and a fake payment
//! provider: no HTTP, no SKU actors, no sandbox. Each test scripts what the
//! provider does and checks what the saga made of it: the order's state,
//! and that no money moved twice and no unit was sold twice.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32};

use super::*;
use crate::actors::registry::SkuInfo;
use crate::clock::ManualClock;
use crate::domain::order::Phase;
use crate::domain::product::{Money, Product, ProductStatus, Sku};
use crate::domain::stock::{ReleaseOutcome, ReservationState, ReservationView, ReserveOutcome};
use crate::domain::Receipt;
use crate::persistence::{Store, SyncMode, WriterStart};
use crate::services::inventory::StockFuture;

const BUYER: UserId = UserId(7);
const SELLER: TenantId = TenantId(9);
const SKU: u64 = 1;
const WAIT: Duration = Duration::from_secs(10);

/// One SKU with unlimited stock; remembers every hold, sale and release.
#[derive(Default)]
struct Ledger {
    next_seq: u64,
    by_key: HashMap<String, u64>,
    committed: Vec<u64>,
    released: Vec<u64>,
}

struct FakeStock {
    info: Arc<SkuInfo>,
    ledger: Mutex<Ledger>,
}

impl FakeStock {
    fn new() -> Arc<Self> {
        let product = Arc::new(Product {
            id: 1,
            tenant: id_text(SELLER),
            version: 1,
            status: ProductStatus::Active,
            title: "Tee".into(),
            description: String::new(),
            brand: String::new(),
            category: String::new(),
            attributes: Vec::new(),
            images: Vec::new(),
            options: Vec::new(),
            skus: vec![Sku {
                id: SKU,
                code: "TEE".into(),
                price: Money {
                    amount: 2_500,
                    currency: "EUR".into(),
                },
                compare_at: None,
                options: Vec::new(),
                attributes: Vec::new(),
                low_stock_threshold: 0,
            }],
            created_at_ms: 0,
            updated_at_ms: 0,
            updated_by: String::new(),
        });
        Arc::new(Self {
            info: Arc::new(SkuInfo {
                id: SkuId(SKU),
                product,
                index: 0,
            }),
            ledger: Mutex::new(Ledger::default()),
        })
    }

    fn view(seq: u64, state: ReservationState) -> ReservationView {
        ReservationView {
            seq,
            buyer: id_text(BUYER),
            quantity: 1,
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
            state,
        }
    }
}

impl StockPort for FakeStock {
    fn sku(&self, code: &SkuCode) -> Result<Arc<SkuInfo>, InventoryError> {
        (code.as_str() == "TEE")
            .then(|| self.info.clone())
            .ok_or(InventoryError::UnknownSku)
    }

    fn sku_info(&self, sku: SkuId) -> Option<Arc<SkuInfo>> {
        (sku.0 == SKU).then(|| self.info.clone())
    }

    fn in_drop(&self, _: SkuId) -> bool {
        false
    }

    fn reserve(&self, _: Arc<SkuInfo>, cmd: ReserveCmd) -> StockFuture<'_, ReserveOutcome> {
        let mut ledger = self.ledger.lock();
        let key = cmd.idempotency.map(|(k, _)| k.as_str().to_owned());
        let (seq, replayed) = match key.as_ref().and_then(|k| ledger.by_key.get(k)) {
            Some(seq) => (*seq, true),
            None => {
                ledger.next_seq += 1;
                let seq = ledger.next_seq;
                if let Some(key) = key {
                    ledger.by_key.insert(key, seq);
                }
                (seq, false)
            }
        };
        let outcome = ReserveOutcome {
            receipt: Receipt {
                seq,
                quantity: cmd.quantity,
                created_at_ms: 0,
                expires_at_ms: u64::MAX,
            },
            replayed,
        };
        Box::pin(async move { Ok(outcome) })
    }

    fn commit(&self, id: ReservationId, _: BuyerId) -> StockFuture<'_, CommitOutcome> {
        let mut ledger = self.ledger.lock();
        let outcome = if ledger.committed.contains(&id.seq) {
            CommitOutcome::AlreadyCommitted(Self::view(id.seq, ReservationState::Committed))
        } else {
            ledger.committed.push(id.seq);
            CommitOutcome::Committed(Self::view(id.seq, ReservationState::Committed))
        };
        Box::pin(async move { Ok(outcome) })
    }

    fn release(&self, id: ReservationId, _: BuyerId) -> StockFuture<'_, ReleaseOutcome> {
        let mut ledger = self.ledger.lock();
        let outcome = if ledger.released.contains(&id.seq) {
            ReleaseOutcome::AlreadyReleased
        } else {
            ledger.released.push(id.seq);
            ReleaseOutcome::Released
        };
        Box::pin(async move { Ok(outcome) })
    }

    fn restock(&self, _: SkuCode, _: TenantKey, _: u32, _: String) -> StockFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// What the fake provider does with the next authorisation.
#[derive(Debug, Clone, Copy)]
enum Next {
    Decline,
    /// No answer and no effect (a timeout before the provider saw it).
    Unavailable,
    /// The payment is authorised, but the answer is lost on the way back.
    AuthorizeThenLoseAnswer,
    /// An asynchronous method: the provider decides later (or never).
    Pending,
}

#[derive(Default)]
struct Provider {
    script: VecDeque<Next>,
    /// Payments by authorisation key.
    payments: HashMap<String, PaymentView>,
    authorize_calls: u32,
    /// Capture keys seen, and how much each capture moved.
    captures: Vec<(String, i64)>,
}

#[derive(Default)]
struct FakeGateway {
    provider: Mutex<Provider>,
    /// Captures never answer (the process dies in the middle of one).
    hang_captures: AtomicBool,
    /// This many voids fail without an answer before one succeeds.
    failing_voids: AtomicU32,
    capture_calls: AtomicU32,
}

impl FakeGateway {
    fn scripted(script: &[Next]) -> Arc<Self> {
        let gateway = Self::default();
        gateway.provider.lock().script = script.iter().copied().collect();
        Arc::new(gateway)
    }

    fn payment(&self, id: &str) -> Option<PaymentView> {
        let provider = self.provider.lock();
        provider.payments.values().find(|p| p.id == id).cloned()
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut PaymentView)) -> Option<PaymentView> {
        let mut provider = self.provider.lock();
        let payment = provider.payments.values_mut().find(|p| p.id == id)?;
        change(payment);
        Some(payment.clone())
    }
}

fn answer<T: Send + 'static>(result: Result<T, GatewayError>) -> GatewayFuture<T> {
    Box::pin(async move { result })
}

use crate::payments::GatewayFuture;

impl PaymentGateway for FakeGateway {
    fn authorize(&self, request: ChargeRequest) -> GatewayFuture<PaymentView> {
        let mut provider = self.provider.lock();
        provider.authorize_calls += 1;
        if let Some(seen) = provider.payments.get(&request.key) {
            return answer(Ok(seen.clone()));
        }
        let next = provider.script.pop_front();
        if let Some(Next::Unavailable) = next {
            return answer(Err(GatewayError::Unavailable("timed out".into())));
        }
        let declined = matches!(next, Some(Next::Decline));
        let payment = PaymentView {
            id: format!("pay_{}", provider.payments.len() + 1),
            reference: request.reference,
            status: match next {
                Some(Next::Decline) => PspStatus::Declined,
                Some(Next::Pending) => PspStatus::Pending,
                _ => PspStatus::Authorized,
            },
            amount_minor: request.amount_minor,
            currency: request.currency,
            captured_minor: 0,
            refunded_minor: 0,
            decline_code: declined.then(|| "card_declined".into()),
        };
        provider.payments.insert(request.key, payment.clone());
        match next {
            Some(Next::AuthorizeThenLoseAnswer) => {
                answer(Err(GatewayError::Unavailable("connection reset".into())))
            }
            _ => answer(Ok(payment)),
        }
    }

    fn capture(&self, payment_id: String, key: String) -> GatewayFuture<PaymentView> {
        self.capture_calls.fetch_add(1, Ordering::SeqCst);
        if self.hang_captures.load(Ordering::SeqCst) {
            return Box::pin(std::future::pending());
        }
        let mut provider = self.provider.lock();
        if !provider.captures.iter().any(|(k, _)| *k == key) {
            let Some(payment) = provider.payments.values_mut().find(|p| p.id == payment_id) else {
                return answer(Err(GatewayError::NotFound));
            };
            payment.status = PspStatus::Captured;
            payment.captured_minor = payment.amount_minor;
            let amount = payment.amount_minor;
            provider.captures.push((key, amount));
        }
        drop(provider);
        answer(self.payment(&payment_id).ok_or(GatewayError::NotFound))
    }

    fn void(&self, payment_id: String, _: String) -> GatewayFuture<PaymentView> {
        let failing = self.failing_voids.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_voids.store(failing - 1, Ordering::SeqCst);
            return answer(Err(GatewayError::Unavailable("timed out".into())));
        }
        let voided = self.update(&payment_id, |p| {
            if matches!(p.status, PspStatus::Authorized | PspStatus::Pending) {
                p.status = PspStatus::Voided;
            }
        });
        answer(voided.ok_or(GatewayError::NotFound))
    }

    fn refund(&self, payment_id: String, amount: i64, _: String) -> GatewayFuture<PaymentView> {
        let refunded = self.update(&payment_id, |p| {
            p.refunded_minor += amount;
            if p.refunded_minor >= p.captured_minor {
                p.status = PspStatus::Refunded;
            }
        });
        answer(refunded.ok_or(GatewayError::NotFound))
    }

    fn status(&self, payment_id: String) -> GatewayFuture<PaymentView> {
        answer(self.payment(&payment_id).ok_or(GatewayError::NotFound))
    }

    fn find(&self, authorize_key: String) -> GatewayFuture<Option<PaymentView>> {
        answer(Ok(self
            .provider
            .lock()
            .payments
            .get(&authorize_key)
            .cloned()))
    }
}

/// Remembers every state announced, in order.
#[derive(Default)]
struct Heard {
    reached: Mutex<Vec<(OrderId, OrderState)>>,
}

impl OrderListener for Heard {
    fn reached(&self, order: &Order, state: OrderState, _: u64) {
        self.reached.lock().push((order.id, state));
    }

    fn changed(&self, _: &Order) {}
}

/// A WAL on a temporary directory and a clock the test moves.
struct Bench {
    _dir: tempfile::TempDir,
    wal: WalHandle,
    archive: Arc<OrderArchive>,
    clock: Arc<ManualClock>,
    config: Arc<Config>,
}

impl Bench {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(
            Store::open(
                dir.path(),
                8 << 20,
                SyncMode::None,
                std::time::Duration::from_secs(10),
            )
            .expect("store"),
        );
        let mut config = Config::default();
        config.orders.retry_backoff_ms = 1;
        // Timers run on real time: keep the provider polls short.
        config.payments.poll_interval_ms = 10;
        adjust(&mut config);
        let archive = Arc::new(OrderArchive::open(store.clone()).expect("order archive"));
        let (wal, _writer) =
            crate::persistence::wal::start(store, config.wal_settings(), WriterStart::default());
        Self {
            _dir: dir,
            wal,
            archive,
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
            config: Arc::new(config),
        }
    }

    /// Orders over `recovered`, started (sagas resumed).
    fn orders(
        &self,
        recovered: Vec<Order>,
        stock: &Arc<FakeStock>,
        gateway: &Arc<FakeGateway>,
    ) -> (Arc<Orders>, Arc<Heard>) {
        let heard = Arc::new(Heard::default());
        let deps = OrderDeps::new(
            self.wal.clone(),
            self.clock.clone(),
            self.config.clone(),
            gateway.clone(),
            stock.clone(),
            heard.clone(),
            Arc::new(crate::services::OpenLines::default()),
        );
        let orders =
            Orders::new(recovered, deps, self.archive.clone(), Vec::new()).expect("orders");
        orders.start();
        (orders, heard)
    }
}

fn draft(method: &str) -> OrderDraft {
    OrderDraft {
        buyer: BUYER,
        items: vec![ItemRequest {
            sku: SkuCode::parse("TEE").unwrap(),
            quantity: 1,
            reservations: Vec::new(),
        }],
        shipping_address: "1 Main St".into(),
        payment_method: method.into(),
        idempotency: None,
        shipping: Vec::new(),
    }
}

/// Moves the clock a second at a time (so back-offs end) until the order
/// satisfies `done`; the order as it then stands.
async fn until(
    bench: &Bench,
    orders: &Arc<Orders>,
    id: OrderId,
    done: impl Fn(&Order) -> bool,
) -> Order {
    for _ in 0..200 {
        let order = orders.get(id).unwrap();
        if done(&order) {
            return order;
        }
        bench.clock.advance_ms(1_000);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    orders.get(id).unwrap()
}

/// Waits until the saga has nothing left to do now.
async fn settled(orders: &Arc<Orders>, id: OrderId) -> Order {
    orders.settle(id, WAIT).await.expect("the order settles")
}

#[actix_rt::test]
async fn a_declined_payment_leaves_the_holds_and_paying_again_sells_once() {
    let bench = Bench::new();
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&[Next::Decline]));
    let (orders, heard) = bench.orders(Vec::new(), &stock, &gateway);

    let (placed, _) = orders.place(draft("pm_card_declined")).await.unwrap();
    let declined = settled(&orders, placed.id).await;
    assert_eq!(declined.state, OrderState::PaymentPending);
    assert_eq!(declined.payment.status, PaymentStatus::Declined);
    assert_eq!(declined.lines[0].reservations, vec![1], "the hold stays");
    assert!(stock.ledger.lock().committed.is_empty());

    orders
        .pay(placed.id, BUYER, "pm_card_visa".into())
        .await
        .unwrap();
    let paid = settled(&orders, placed.id).await;
    assert_eq!(paid.state, OrderState::Paid);
    assert_eq!(
        paid.payment.attempt,
        declined.payment.attempt + 1,
        "a second attempt, with its own keys"
    );
    let ledger = stock.ledger.lock();
    assert_eq!(ledger.committed, vec![1], "the one hold is sold once");
    assert!(ledger.released.is_empty());
    let provider = gateway.provider.lock();
    assert_eq!(provider.payments.len(), 2, "one declined, one authorised");
    assert_eq!(provider.captures.len(), 1, "money moved once");
    assert_eq!(provider.captures[0].1, 2_500);
    let states: Vec<OrderState> = heard.reached.lock().iter().map(|(_, s)| *s).collect();
    assert_eq!(states, [OrderState::PaymentPending, OrderState::Paid]);
}

#[actix_rt::test]
async fn a_provider_that_times_out_is_asked_again_and_charged_once() {
    let bench = Bench::new();
    let script = [Next::Unavailable, Next::Unavailable, Next::Unavailable];
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&script));
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);

    let (placed, _) = orders.place(draft("pm_card_visa")).await.unwrap();
    // Each timeout backs off; the saga repeats the step once its wait is over.
    let order = until(&bench, &orders, placed.id, |o| o.state == OrderState::Paid).await;
    assert_eq!(order.state, OrderState::Paid);
    let timeouts = order
        .saga_log
        .iter()
        .filter(|e| e.step == SagaStep::Authorize && e.phase == Phase::Failed)
        .count();
    assert_eq!(timeouts, 3, "each timeout is logged");
    let provider = gateway.provider.lock();
    assert_eq!(
        provider.authorize_calls, 4,
        "three timeouts, then an answer"
    );
    assert_eq!(provider.payments.len(), 1);
    assert_eq!(provider.captures.len(), 1);
    assert_eq!(stock.ledger.lock().committed, vec![1]);
}

#[actix_rt::test]
async fn a_payment_deadline_passing_while_the_provider_is_down_releases_the_holds() {
    let bench = Bench::new();
    let script = [Next::Unavailable; 64];
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&script));
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);

    let (placed, _) = orders.place(draft("pm_card_visa")).await.unwrap();
    let calls_within_a_second = || gateway.provider.lock().authorize_calls;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        calls_within_a_second() <= 2,
        "a provider that is down is not asked again before the back-off ends: {}",
        calls_within_a_second()
    );
    bench
        .clock
        .advance_ms(bench.config.orders.payment_deadline_s * 1000 + 1);
    let order = until(&bench, &orders, placed.id, Order::settled).await;
    assert!(order.settled(), "the order ends: {:?}", order.state);
    assert_ne!(order.state, OrderState::Paid);
    let ledger = stock.ledger.lock();
    assert_eq!(ledger.released, vec![1], "the hold goes back");
    assert!(ledger.committed.is_empty(), "nothing is sold");
    assert!(
        gateway.provider.lock().captures.is_empty(),
        "no money moved"
    );
}

#[actix_rt::test]
async fn an_authorisation_whose_answer_was_lost_is_found_by_its_key_and_captured_once() {
    let bench = Bench::new();
    let script = [Next::AuthorizeThenLoseAnswer];
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&script));
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);

    let (placed, _) = orders.place(draft("pm_card_visa")).await.unwrap();
    let order = until(&bench, &orders, placed.id, |o| o.state == OrderState::Paid).await;
    assert_eq!(order.state, OrderState::Paid);
    let provider = gateway.provider.lock();
    assert_eq!(
        provider.payments.len(),
        1,
        "asking again with the same key finds the payment the lost answer made"
    );
    assert_eq!(provider.captures.len(), 1, "captured once");
    assert_eq!(order.payment.payment_id.as_deref(), Some("pay_1"));
    assert_eq!(stock.ledger.lock().committed, vec![1]);
}

#[actix_rt::test]
async fn a_crash_between_a_captures_start_and_its_answer_resumes_it_with_the_same_key() {
    let bench = Bench::new();
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&[]));
    gateway.hang_captures.store(true, Ordering::SeqCst);
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);

    let (placed, _) = orders.place(draft("pm_card_visa")).await.unwrap();
    // The capture has started (and is logged as started) but never answers.
    let mut logged = orders.get(placed.id).unwrap();
    for _ in 0..500 {
        if logged.pending == Some(SagaStep::Capture)
            && gateway.capture_calls.load(Ordering::SeqCst) > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        logged = orders.get(placed.id).unwrap();
    }
    assert_eq!(logged.pending, Some(SagaStep::Capture));
    assert!(gateway.provider.lock().captures.is_empty());

    // The process dies here: what is durable is `logged`. A new process
    // recovers it; the provider is reachable again.
    gateway.hang_captures.store(false, Ordering::SeqCst);
    let (recovered, _) = bench.orders(vec![logged.clone()], &stock, &gateway);
    let order = settled(&recovered, placed.id).await;
    assert_eq!(order.state, OrderState::Paid);
    let provider = gateway.provider.lock();
    assert_eq!(provider.captures.len(), 1, "money moved once");
    assert_eq!(
        provider.captures[0].0,
        logged.payment.key(logged.id, "capture"),
        "the repeat carries the key of the step that started"
    );
    assert_eq!(stock.ledger.lock().committed, vec![1], "sold once");
}

#[actix_rt::test]
async fn a_crash_during_the_commit_repeats_it_and_the_unit_is_sold_once() {
    let bench = Bench::new();
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&[]));
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);
    let (placed, _) = orders.place(draft("pm_card_visa")).await.unwrap();
    let paid = settled(&orders, placed.id).await;
    assert_eq!(paid.state, OrderState::Paid);

    // The same order as logged when its commit had started and the stock had
    // taken it, before the step's completion was logged.
    let mut logged = paid.clone();
    logged.state = OrderState::PaymentPending;
    logged.pending = Some(SagaStep::Commit);
    let (recovered, _) = bench.orders(vec![logged], &stock, &gateway);
    let order = settled(&recovered, placed.id).await;
    assert_eq!(order.state, OrderState::Paid);
    assert_eq!(stock.ledger.lock().committed, vec![1], "sold once");
    assert_eq!(gateway.provider.lock().captures.len(), 1);
}

#[actix_rt::test]
async fn a_void_that_fails_while_an_asynchronous_payment_waits_is_repeated_after_its_back_off() {
    let bench = Bench::new();
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&[Next::Pending]));
    gateway.failing_voids.store(2, Ordering::SeqCst);
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);

    let (placed, _) = orders.place(draft("pm_async")).await.unwrap();
    let waiting = until(&bench, &orders, placed.id, |o| {
        o.payment.status == PaymentStatus::Pending
    })
    .await;
    assert_eq!(waiting.state, OrderState::PaymentPending);
    // The deadline passes with the payment still pending: the saga voids it,
    // and the provider fails the first two voids. The saga must not wait for
    // a poll that a step under way never answers.
    bench
        .clock
        .advance_ms(bench.config.orders.payment_deadline_s * 1000 + 1);
    let order = until(&bench, &orders, placed.id, Order::settled).await;
    assert!(
        order.settled(),
        "stalled: {:?} {:?} {:#?}",
        order.state,
        order.payment,
        order.saga_log
    );
    assert_eq!(order.state, OrderState::Cancelled);
    let voids_failed = order
        .saga_log
        .iter()
        .filter(|e| e.step == SagaStep::Void && e.phase == Phase::Failed)
        .count();
    assert_eq!(voids_failed, 2);
    assert_eq!(stock.ledger.lock().released, vec![1]);
    assert!(gateway.provider.lock().captures.is_empty());
}

#[actix_rt::test]
async fn settled_orders_leave_memory_past_the_cap_and_are_read_back_from_disk() {
    let bench = Bench::with(|config| {
        config.orders.resident_max = 2;
        config.orders.actor_idle_s = 1;
    });
    let (stock, gateway) = (FakeStock::new(), FakeGateway::scripted(&[]));
    let (orders, _) = bench.orders(Vec::new(), &stock, &gateway);
    let mut ids = Vec::new();
    for n in 0..6u64 {
        let mut order = draft("pm_card_visa");
        order.idempotency = Some((format!("key-{n}"), n));
        let (placed, _) = orders.place(order).await.unwrap();
        assert_eq!(settled(&orders, placed.id).await.state, OrderState::Paid);
        ids.push(placed.id);
    }
    // A settled order's actor stops after a second idle; then the cap holds.
    for _ in 0..100 {
        if orders.count() <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(orders.count(), 2, "only the cap stays in memory");

    // Every order reads back, and the indexes page over all of them.
    for id in &ids {
        assert_eq!(orders.get(*id).expect("read back").state, OrderState::Paid);
    }
    let newest: Vec<OrderId> = ids.iter().rev().copied().collect();
    let first = orders.page(Some(BUYER), None, None, 4);
    assert_eq!(first.iter().map(|o| o.id).collect::<Vec<_>>(), newest[..4]);
    let rest = orders.page(Some(BUYER), None, Some(first[3].id), 4);
    assert_eq!(rest.iter().map(|o| o.id).collect::<Vec<_>>(), newest[4..]);
    assert_eq!(orders.page(None, Some(SELLER), None, 10).len(), 6);
    assert!(orders
        .page(Some(UserId(BUYER.0 + 1)), None, None, 10)
        .is_empty());

    // The idempotency keys are on disk too.
    let replayed = orders
        .replay(BUYER, "key-0", 0)
        .expect("known key")
        .unwrap();
    assert_eq!(replayed.id, ids[0]);
    assert_eq!(
        orders.replay(BUYER, "key-0", 99).expect("known key"),
        Err(OrdersError::IdempotencyKeyReused)
    );
    let mut again = draft("pm_card_visa");
    again.idempotency = Some(("key-1".into(), 1));
    let (same, replay) = orders.place(again).await.unwrap();
    assert!(
        replay && same.id == ids[1],
        "the same request answers the same order"
    );

    // A command for an order that left memory brings it back, and its
    // change is durable once it leaves again.
    let shipped = orders
        .fulfil(ids[0], SELLER, OrderState::Packed, None, false)
        .await
        .unwrap();
    assert_eq!(shipped.sub_orders[0].state, OrderState::Packed);
    assert!(orders.host.get(ids[0]).is_some(), "it is back in memory");
    assert_eq!(orders.count(), 2, "and another left in its place");
    let mut on_disk = None;
    for _ in 0..100 {
        on_disk = orders.archive.load(ids[0]).unwrap();
        if on_disk.as_ref().map(|o| o.sub_orders[0].state) == Some(OrderState::Packed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let on_disk = on_disk.expect("snapshotted");
    assert_eq!(
        on_disk.sub_orders[0].state,
        OrderState::Packed,
        "the change is in its snapshot"
    );
    assert_eq!(
        stock.ledger.lock().committed.len(),
        6,
        "each order sold once"
    );
}
