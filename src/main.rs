//! The `flashdrop` command: `flashdrop serve [--config FILE] [--data-dir DIR] [--port N]`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    },
}

fn main() -> ExitCode {
    let Cli {
        command:
            Command::Serve {
                config,
                data_dir,
                port,
            },
    } = Cli::parse();
    let config = match Config::load(config.as_deref(), &Overrides { data_dir, port }) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("flashdrop: {error}");
            return ExitCode::from(2);
        }
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
