//! The application: the set of services a running flashdrop is made of, and
//! how it stops. `boot` starts it as named steps; HTTP handlers, the CLI and
//! tests reach each service through it. It holds no rules and routes nothing
//! itself.

mod boot;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use actix::{Arbiter, ArbiterHandle};
use tokio::sync::oneshot;

use crate::actors::carts::Carts;
use crate::actors::drops::Drops;
use crate::actors::orders::Orders;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::notify::Notifier;
use crate::events::outbound::{HostResolver, Outbound, SystemResolver};
use crate::events::Hub;
use crate::payments::{PaymentGateway, SandboxGateway};
use crate::persistence::{self, RecoveryStats, Store, WalHandle, WalOp};
use crate::services::identity::DirectoryService;
use crate::services::{Catalog, Categories, Imports, Inventory};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the data directory {path}: {source}")]
    Open {
        path: String,
        source: persistence::StoreError,
    },
    #[error("recovery failed: {0}")]
    Recovery(persistence::StoreError),
    #[error("{0}")]
    Internal(String),
}

/// What the application takes from outside the process, so a test can swap it.
#[derive(Clone)]
pub struct Externals {
    pub clock: Arc<dyn Clock>,
    /// Resolves the host names of outbound requests (store webhooks).
    pub resolver: Arc<dyn HostResolver>,
    /// The payment provider orders are charged through; `None` is the
    /// built-in sandbox. (The sandbox's ledger route reads the sandbox
    /// either way.)
    pub payments: Option<Arc<dyn PaymentGateway>>,
}

impl Externals {
    /// The system clock and the system resolver.
    pub fn system() -> Self {
        Self::with_clock(Arc::new(crate::clock::SystemClock))
    }

    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            resolver: Arc::new(SystemResolver),
            payments: None,
        }
    }
}

/// The services, each built by `boot` from what it depends on.
pub struct Services {
    pub identity: Arc<DirectoryService>,
    pub inventory: Arc<Inventory>,
    pub catalog: Arc<Catalog>,
    pub categories: Arc<Categories>,
    pub imports: Arc<Imports>,
    pub drops: Arc<Drops>,
    pub carts: Arc<Carts>,
    pub orders: Arc<Orders>,
    pub notifier: Arc<Notifier>,
    pub hub: Arc<Hub>,
    pub outbound: Arc<Outbound>,
    /// The sandbox payment provider (its ledger is an admin route).
    pub sandbox: SandboxGateway,
}

/// What runs underneath the services and stops with the application.
struct Runtime {
    store: Arc<Store>,
    wal: WalHandle,
    wal_thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Arbiters the application started itself (none when actors live on
    /// HTTP workers), and the ones actors are placed on.
    arbiters: Vec<Arbiter>,
    placement: Vec<ArbiterHandle>,
    /// `shutdown` has begun / has finished.
    shutting_down: AtomicBool,
    shut_down: tokio::sync::watch::Sender<bool>,
}

pub struct Node {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    recovery: RecoveryStats,
    services: Services,
    runtime: Runtime,
}

impl Node {
    /// Starts flashdrop with its own arbiters. Must run inside an actix `System`.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        Self::start_on(config, Externals::with_clock(clock), None).await
    }

    /// Like `start`, with actors placed on `arbiters` (the HTTP workers')
    /// instead of arbiters of its own.
    pub async fn start_on(
        config: Config,
        externals: Externals,
        arbiters: Option<Vec<ArbiterHandle>>,
    ) -> Result<Arc<Self>, StartError> {
        boot::start(config, externals, arbiters).await
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn recovery_stats(&self) -> &RecoveryStats {
        &self.recovery
    }

    /// Accounts, sessions, stores and staff, follows, audit.
    pub fn directory(&self) -> &Arc<DirectoryService> {
        &self.services.identity
    }

    /// SKU routing and stock.
    pub fn inventory(&self) -> &Arc<Inventory> {
        &self.services.inventory
    }

    /// Products and each store's quota.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.services.catalog
    }

    pub fn categories(&self) -> &Arc<Categories> {
        &self.services.categories
    }

    /// Bulk import jobs.
    pub fn imports(&self) -> &Arc<Imports> {
        &self.services.imports
    }

    pub fn drops(&self) -> &Arc<Drops> {
        &self.services.drops
    }

    /// Where outbound requests on a store's behalf may go.
    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.services.outbound
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.services.notifier
    }

    pub fn carts(&self) -> &Arc<Carts> {
        &self.services.carts
    }

    pub fn orders(&self) -> &Arc<Orders> {
        &self.services.orders
    }

    /// The sandbox payment provider.
    pub fn sandbox(&self) -> &SandboxGateway {
        &self.services.sandbox
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.services.hub
    }

    /// The storage underneath, for tests and the operator's offline commands
    /// (never for a request handler).
    pub fn store(&self) -> &Arc<Store> {
        &self.runtime.store
    }

    /// The arbiters actors run on (placement is a hash of the entity's id).
    pub fn arbiter_handles(&self) -> Vec<ArbiterHandle> {
        self.runtime.placement.clone()
    }

    /// SKUs by actor state, for the memory benchmark and operators.
    pub fn census(&self) -> HashMap<&'static str, usize> {
        self.services.inventory.census()
    }

    /// Commits everything queued, completes pending snapshots, stops the WAL
    /// writer and the arbiters. Requests after this fail with `Unavailable`.
    /// Safe to call more than once (the server's own stop and a test's may
    /// race): later callers wait for the first one to finish. A second
    /// `Shutdown` sent to a writer that has already stopped would sit in its
    /// channel forever, and its caller with it.
    pub async fn shutdown(&self) {
        let runtime = &self.runtime;
        let mut done = runtime.shut_down.subscribe();
        if runtime.shutting_down.swap(true, Ordering::AcqRel) {
            let _ = done.wait_for(|finished| *finished).await;
            return;
        }
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let ack: persistence::Ack = Box::new(move || {
            let _ = tx.send(());
        });
        if runtime.wal.send(WalOp::Shutdown { ack }).is_ok() {
            let _ = rx.await;
        }
        // Taken in its own statement: the guard must not live across the await.
        let thread = runtime.wal_thread.lock().take();
        if let Some(thread) = thread {
            let _ = boot::blocking(move || thread.join()).await;
        }
        for arbiter in &runtime.arbiters {
            arbiter.stop();
        }
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            "WAL flushed and closed"
        );
        runtime.shut_down.send_replace(true);
    }
}
