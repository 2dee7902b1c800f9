//! The `flashdrop` command: `flashdrop serve [--config FILE] [--data-dir DIR]
//! [--port N] [--dev]` and `flashdrop admin create --email ADDRESS` (the first
//! platform admin; password from `FLASHDROP_ADMIN_PASSWORD` or stdin).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use flashdrop::actors::Engine;
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

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a platform admin account (password from FLASHDROP_ADMIN_PASSWORD, else stdin).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        dev: bool,
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
        Command::Admin {
            command:
                AdminCommand::Create {
                    email,
                    config,
                    data_dir,
                    dev,
                },
        } => create_admin(
            config,
            Overrides {
                data_dir,
                port: None,
                dev,
                offline: true,
            },
            email,
        ),
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
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        // Machine-readable: tools and tests read the port from this line.
        println!("flashdrop listening on http://{host}:{}", app.port());
        tracing::info!(port = app.port(), "listening; recovering");
        app.run_until_stopped().await
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "flashdrop stopped with an error");
            eprintln!("flashdrop: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn create_admin(config: Option<PathBuf>, overrides: Overrides, email: String) -> ExitCode {
    let config = match load(config, &overrides) {
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
    let result = actix_web::rt::System::new().block_on(async move {
        let engine = Engine::start(config, Arc::new(SystemClock)).await?;
        let created = engine
            .directory()
            .bootstrap_admin(&address, &password)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"));
        engine.shutdown().await;
        match created? {
            true => Ok(()),
            false => Err(anyhow::anyhow!(
                "an account with that address exists already"
            )),
        }
    });
    match result {
        Ok(()) => {
            println!("created platform admin {email}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("flashdrop: {error:#}");
            ExitCode::FAILURE
        }
    }
}
