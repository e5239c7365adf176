use std::process::ExitCode;

use common::process::{load_config, parse_args, shutdown_on_signals};
use verify_worker::{SETTINGS, Worker, WorkerConfig};

const ABOUT: &str = "sends verification codes by SMS from the RabbitMQ send queue";

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(code) = parse_args("verify-worker", ABOUT, SETTINGS, &[]) {
        return code;
    }
    let config = match load_config("verify-worker", SETTINGS, WorkerConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    common::observability::init_logging(&config.log_format);
    let shutdown = shutdown_on_signals();
    let result = async {
        let worker = Worker::build(config, &shutdown).await?;
        worker.run(shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "verify-worker stopped");
            ExitCode::FAILURE
        }
    }
}
