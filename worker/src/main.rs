//! The `verify-worker` binary: `verify-worker` consumes and sends until SIGTERM or SIGINT;
//! `verify-worker dead-letters list|replay` and `verify-worker stats` are for operators.

use std::process::ExitCode;

use common::process::{load_config, parse_args, shutdown_on_signals};
use verify_worker::{SETTINGS, Worker, WorkerConfig, dead_letters};

const ABOUT: &str = "sends verification codes by SMS from the RabbitMQ send queue\n\n\
Subcommands:\n  stats                 print every queue's depth, consumers and oldest waiting send\n  dead-letters list     print every message of the dead-letter queue with its reason\n  \
dead-letters replay   send again those whose verification is still pending and unexpired";

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(
        "verify-worker",
        ABOUT,
        SETTINGS,
        &["stats", "dead-letters", "list", "replay"],
    ) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let config = match load_config("verify-worker", SETTINGS, WorkerConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    common::observability::init_logging(&config.log_format);
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => run(config).await,
        ["stats"] => stats(config).await,
        ["dead-letters", "list"] => dead_letters::list(&config, &mut std::io::stdout()).await.map(drop),
        ["dead-letters", "replay"] => replay(config).await,
        _ => {
            eprintln!(
                "verify-worker: usage: verify-worker [stats | dead-letters list | dead-letters replay] (try --help)"
            );
            return ExitCode::from(2);
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
    let pool = common::db::pool(config.database_url.expose(), 2, false)?;
    common::db::migrate(&pool).await?;
    dead_letters::replay(&config, &pool, &mut std::io::stdout())
        .await
        .map(drop)
}

async fn stats(config: WorkerConfig) -> anyhow::Result<()> {
    let pool = common::db::pool(config.database_url.expose(), 2, false)?;
    common::db::migrate(&pool).await?;
    let views = verify_worker::stats::read(&config, &pool).await?;
    verify_worker::stats::print(&views, &mut std::io::stdout())?;
    Ok(())
}
