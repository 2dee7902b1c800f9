//! The `flashdrop` command: `flashdrop serve [--config FILE] [--data-dir DIR]
//! [--port N] [--dev]`, and against a stopped server's data `flashdrop admin
//! create --email ADDRESS` (a platform admin; password from
//! `FLASHDROP_ADMIN_PASSWORD` or stdin) and `flashdrop admin promote --email
//! ADDRESS` (an existing account becomes a platform admin).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use flashdrop::app::Node;
use flashdrop::clock::SystemClock;
use flashdrop::config::{Config, Overrides};
use flashdrop::startup::Application;
use flashdrop::telemetry;

#[derive(Parser)]
#[command(
    name = "flashdrop",
    version,
    about = "A commerce engine for high-traffic product drops"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (embedded defaults when no config file is given).
    Serve {
        /// A config.toml; environment variables FLASHDROP__SECTION__KEY win over it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where sled keeps the WAL and snapshots.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Port to listen on (0 picks a free one; the chosen port is printed).
        #[arg(long)]
        port: Option<u16>,
        /// Dev mode: without `auth.jwt_secret`, a random one per start (tokens
        /// die at restart). Never for production.
        #[arg(long)]
        dev: bool,
    },
    /// Administration that runs against a stopped server's data directory.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// Where an administration command finds the stopped server's data.
#[derive(clap::Args)]
struct Offline {
    /// The server's config.toml (for `storage.data_dir` and the argon2 cost).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server's data directory (default: `storage.data_dir`, ./flashdrop-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Accept dev mode's argon2 cost, as `serve --dev` does.
    #[arg(long)]
    dev: bool,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a platform admin account (password from FLASHDROP_ADMIN_PASSWORD, else stdin).
    Create {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        offline: Offline,
    },
    /// Make an existing account (without a store) a platform admin.
    Promote {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        offline: Offline,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve {
            config,
            data_dir,
            port,
            dev,
        } => serve(
            config,
            Overrides {
                data_dir,
                port,
                dev,
                offline: false,
            },
        ),
        Command::Admin { command } => match command {
            AdminCommand::Create { email, offline } => create_admin(offline, email),
            AdminCommand::Promote { email, offline } => promote_admin(offline, email),
        },
    }
}

impl Offline {
    fn load(self) -> Result<Config, ExitCode> {
        load(
            self.config,
            &Overrides {
                data_dir: self.data_dir,
                port: None,
                dev: self.dev,
                offline: true,
            },
        )
    }
}

/// Runs `work` on an engine opened on the stopped server's data, then
/// closes it; prints `done` on success, one line on failure.
fn offline<F, Fut>(config: Config, done: String, work: F) -> ExitCode
where
    F: FnOnce(Arc<Node>) -> Fut + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let result = actix_web::rt::System::new().block_on(async move {
        let engine = Node::start(config, Arc::new(SystemClock)).await?;
        let outcome = work(engine.clone()).await;
        engine.shutdown().await;
        outcome
    });
    match result {
        Ok(()) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("flashdrop: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(config: Option<PathBuf>, overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load(config.as_deref(), overrides).map_err(|error| {
        eprintln!("flashdrop: {error}");
        ExitCode::from(2)
    })
}

fn serve(config: Option<PathBuf>, overrides: Overrides) -> ExitCode {
    let config = match load(config, &overrides) {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init_logs(&config.log);
    let host = config.server.host.clone();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let serving = started.clone();
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        tracing::info!(port = app.port(), "bound; recovering");
        app.run_until_stopped_then(|port| {
            serving.store(true, std::sync::atomic::Ordering::Release);
            // Machine-readable, and only once start-up fully succeeded: tools
            // and tests read the port from this line.
            println!("flashdrop listening on http://{host}:{port}");
            tracing::info!(port, "listening");
        })
        .await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(error) if !started.load(std::sync::atomic::Ordering::Acquire) => {
            // One line says why; nothing else is printed for it.
            eprintln!("flashdrop: cannot start: {error:#}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("flashdrop: stopped with an error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn create_admin(offline_args: Offline, email: String) -> ExitCode {
    let config = match offline_args.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init_logs(&config.log);
    let password = match std::env::var("FLASHDROP_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() {
                eprintln!("flashdrop: no password on stdin");
                return ExitCode::from(2);
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let address = email.clone();
    offline(
        config,
        format!("created platform admin {email}"),
        move |engine| async move {
            let created = engine
                .directory()
                .bootstrap_admin(&address, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if !created {
                anyhow::bail!(
                    "an account with that address exists already; to make it a platform admin: \
                     flashdrop admin promote --email {address}"
                );
            }
            Ok(())
        },
    )
}

fn promote_admin(offline_args: Offline, email: String) -> ExitCode {
    let config = match offline_args.load() {
        Ok(config) => config,
        Err(code) => return code,
    };
    telemetry::init_logs(&config.log);
    let address = email.clone();
    offline(
        config,
        format!("{email} is a platform admin"),
        move |engine| async move {
            engine
                .directory()
                .promote_to_admin(&address)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        },
    )
}
