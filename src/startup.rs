//! Building and running the application: bind first (port 0 in tests), answer
//! `/healthz` and a 503 `/readyz` while recovery runs, then serve everything.
//! On SIGTERM: stop accepting, let in-flight requests finish, flush the WAL.

use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App, HttpServer};

use crate::app::{Externals, Node, StartError};
use crate::clock::Clock;
use crate::config::{Config, Placement};
use crate::http::{self, extract::AppState};

type WorkerArbiters = Arc<parking_lot::Mutex<Vec<(std::thread::ThreadId, actix::ArbiterHandle)>>>;

/// The HTTP workers' arbiters, once every worker has started.
async fn worker_arbiters(
    workers: &WorkerArbiters,
    expected: usize,
) -> Result<Vec<actix::ArbiterHandle>, StartError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        {
            let registered = workers.lock();
            if registered.len() >= expected {
                return Ok(registered.iter().map(|(_, a)| a.clone()).collect());
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(StartError::Internal("HTTP workers did not start".into()));
        }
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
}

pub struct Application {
    port: u16,
    server: Server,
    engine: Arc<OnceLock<Arc<Node>>>,
    starting: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Externals::system()).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::build_with(config, Externals::with_clock(clock)).await
    }

    /// Binds the listener and starts serving; recovery continues in the
    /// background. `externals` are the clock and the resolver (tests swap them).
    pub async fn build_with(mut config: Config, externals: Externals) -> anyhow::Result<Self> {
        config.resolve_secrets()?;
        let config = Arc::new(config);
        let listener = listen(
            &config.server.host,
            config.server.port,
            config.server.listen_backlog,
        )?;
        let port = listener.local_addr()?.port();
        let engine = Arc::new(OnceLock::new());
        let state = web::Data::new(AppState::new(engine.clone(), config.clone()));
        let admission = web::Data::from(state.admission.clone());
        let max_body_bytes = config.server.max_body_bytes;
        let send_buffer_bytes = config.server.send_buffer_bytes;
        // Each worker registers its arbiter, for `placement = "http_workers"`.
        let workers: WorkerArbiters = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let registering = workers.clone();
        let server_config = config.server.clone();
        let server = HttpServer::new(move || {
            let thread = std::thread::current().id();
            let mut seen = registering.lock();
            if !seen.iter().any(|(t, _)| *t == thread) {
                seen.push((thread, actix::Arbiter::current()));
            }
            drop(seen);
            let cors = http::security::cors(&server_config);
            App::new()
                .app_data(state.clone())
                .app_data(admission.clone())
                .wrap(from_fn(http::admission::limit_in_flight))
                .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
                .wrap(from_fn(http::observe))
                .configure(|cfg| http::routes(cfg, max_body_bytes))
        })
        .on_connect(move |connection, _| {
            if send_buffer_bytes == 0 {
                return;
            }
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                if let Err(error) =
                    socket2::SockRef::from(tcp).set_send_buffer_size(send_buffer_bytes)
                {
                    tracing::warn!(%error, "server.send_buffer_bytes not applied");
                }
            }
        })
        .workers(config.http_workers())
        .max_connections(config.server.max_connections)
        .keep_alive(Duration::from_secs(config.server.keep_alive_s))
        .shutdown_timeout(config.server.shutdown_timeout_s)
        // Signals are ours (run_until_stopped_then): WebSockets close first.
        .disable_signals()
        .listen(listener)?
        .run();

        let slot = engine.clone();
        let mut engine_config = (*config).clone();
        if engine_config.payments.webhook_url.is_empty() {
            // The sandbox calls this very server back.
            engine_config.payments.webhook_url =
                format!("http://127.0.0.1:{port}/v1/payments/webhook");
        }
        let expected_workers = config.http_workers();
        let starting = actix_web::rt::spawn(async move {
            let placement = match engine_config.actors.placement {
                Placement::Arbiters => None,
                Placement::HttpWorkers => Some(worker_arbiters(&workers, expected_workers).await?),
            };
            let started = Node::start_on(engine_config, externals, placement).await?;
            let _ = slot.set(started);
            tracing::info!("ready");
            Ok(())
        });
        Ok(Self {
            port,
            server,
            engine,
            starting,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Set once recovery has finished.
    pub fn engine(&self) -> Arc<OnceLock<Arc<Node>>> {
        self.engine.clone()
    }

    /// Serves until the server stops (SIGTERM, SIGINT or a handle), then
    /// flushes the WAL. A failed start-up stops the server and is returned.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until_stopped_then(|_| {}).await
    }

    /// `run_until_stopped`, calling `on_started` once start-up has fully
    /// succeeded (lock, recovery, bootstrap admin): never if it fails.
    /// SIGTERM and SIGINT close every WebSocket ("going away", 1001), let
    /// in-flight requests finish (`server.shutdown_timeout_s`), then stop.
    pub async fn run_until_stopped_then(self, on_started: impl FnOnce(u16)) -> anyhow::Result<()> {
        let port = self.port;
        let mut on_started = Some(on_started);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let Application {
            server,
            engine,
            mut starting,
            ..
        } = self;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        let mut started = false;
        let mut failure = None;
        loop {
            tokio::select! {
                result = &mut server => {
                    result?;
                    break;
                }
                joined = &mut starting, if !started => {
                    started = true;
                    failure = match joined {
                        Ok(Ok(())) => {
                            if let Some(on_started) = on_started.take() {
                                on_started(port);
                            }
                            continue;
                        }
                        Ok(Err(error)) => Some(anyhow::Error::new(error)),
                        Err(join) => Some(anyhow::anyhow!("start-up task failed: {join}")),
                    };
                    // Only ask: the server future polled by this loop carries out the stop.
                    drop(handle.stop(false));
                }
                _ = terminate.recv() => stop_gracefully(&engine, &handle, "SIGTERM"),
                _ = interrupt.recv() => stop_gracefully(&engine, &handle, "SIGINT"),
            }
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        if let Some(engine) = engine.get() {
            engine.shutdown().await;
        }
        Ok(())
    }
}

/// WebSockets are closed first: the server's graceful stop would otherwise
/// wait `server.shutdown_timeout_s` for connections that never end.
fn stop_gracefully(engine: &OnceLock<Arc<Node>>, handle: &ServerHandle, signal: &str) {
    tracing::info!(signal, "stopping: closing WebSockets, finishing requests");
    if let Some(engine) = engine.get() {
        engine.hub().go_away();
    }
    drop(handle.stop(true));
}

/// Binds `host:port` with a listen backlog of `backlog` (std's `bind` asks
/// for 128, which a drop opening overflows).
fn listen(host: &str, port: u16, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let address = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::listen;

    /// The kernel completes handshakes up to the backlog before any accept:
    /// 200 at once fit a backlog of 1024 (std's `bind`, at 128, would drop
    /// the SYNs past it and these connects would time out).
    #[test]
    fn the_backlog_holds_a_burst_of_connections_before_any_accept() {
        let listener = listen("127.0.0.1", 0, 1024).unwrap();
        let address = listener.local_addr().unwrap();
        let open: Vec<_> = (0..200)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"))
            })
            .collect();
        assert_eq!(open.len(), 200);
        assert!(listen("no-such-host.invalid", 0, 16).is_err());
    }
}
