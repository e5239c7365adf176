//! The `verify-worker` binary: `verify-worker` consumes and sends until SIGTERM or SIGINT;
//! `verify-worker dead-letters list|replay [--events]` and `verify-worker stats` are for operators.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use common::process::shutdown_on_signals;
use common::settings::{SettingError, Settings};
use verify_worker::{Worker, WorkerConfig, dead_letters};

/// The command line: the settings, and what to do (consume and send when no command is given).
#[derive(Parser)]
#[command(
    name = "verify-worker",
    about = "Sends verification codes by SMS from the RabbitMQ send queue",
    after_help = common::settings::AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    config: WorkerConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// print every queue's depth, consumers and oldest waiting send
    Stats,
    /// the dead-letter queues (of send jobs; of events with --events)
    #[command(subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum DeadLetters {
    /// print every message of the dead-letter queue with its reason
    List {
        /// the events dead-letter queue instead of the send jobs'
        #[arg(long)]
        events: bool,
    },
    /// send again those whose verification is still pending and unexpired (with --events:
    /// deliver again every readable dead event, with its webhook-id)
    Replay {
        /// the events dead-letter queue instead of the send jobs'
        #[arg(long)]
        events: bool,
    },
}

impl Settings for Cli {
    fn check(&self) -> Result<(), SettingError> {
        self.config.check()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { config, command } = match common::settings::load("verify-worker") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    common::observability::init_logging(&config.shared.log_format);
    let result = match command {
        None => run(config).await,
        Some(Command::Stats) => stats(config).await,
        Some(Command::DeadLetters(DeadLetters::List { events: false })) => {
            dead_letters::list(&config, &mut std::io::stdout()).await.map(drop)
        }
        Some(Command::DeadLetters(DeadLetters::List { events: true })) => {
            dead_letters::list_events(&config, &mut std::io::stdout())
                .await
                .map(drop)
        }
        Some(Command::DeadLetters(DeadLetters::Replay { events: false })) => replay(config).await,
        Some(Command::DeadLetters(DeadLetters::Replay { events: true })) => {
            dead_letters::replay_events(&config, &mut std::io::stdout())
                .await
                .map(drop)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "verify-worker stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signals();
    let worker = Worker::build(config, &shutdown).await?;
    worker.run(shutdown).await
}

async fn replay(config: WorkerConfig) -> anyhow::Result<()> {
    // A replay changes deliveries (`failed` → `queued`): events like any other change.
    let events = config.shared.events.enabled();
    let pool = common::db::pool_with_events(config.shared.database_url.expose(), 2, false, events)?;
    common::db::migrate(&pool).await?;
    dead_letters::replay(&config, &pool, &mut std::io::stdout())
        .await
        .map(drop)
}

async fn stats(config: WorkerConfig) -> anyhow::Result<()> {
    let pool = common::db::pool(config.shared.database_url.expose(), 2, false)?;
    common::db::migrate(&pool).await?;
    let views = verify_worker::stats::read(&config, &pool).await?;
    verify_worker::stats::print(&views, &mut std::io::stdout())?;
    Ok(())
}
