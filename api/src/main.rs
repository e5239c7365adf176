//! The `verify-api` binary: reads the settings (exit 2 on a bad one), builds the application and
//! serves until SIGTERM or SIGINT.

use std::process::ExitCode;

use common::process::{load_config, parse_args, shutdown_on_signals};
use verify_api::{ApiConfig, Application, SETTINGS};

const ABOUT: &str = "HTTP API of the phone verification service";

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(code) = parse_args("verify-api", ABOUT, SETTINGS, &[]) {
        return code;
    }
    let config = match load_config("verify-api", SETTINGS, ApiConfig::from_env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    common::observability::init_logging(&config.log_format);
    let shutdown = shutdown_on_signals();
    let result = async {
        let app = Application::build(config, &shutdown).await?;
        app.run(shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "verify-api stopped");
            ExitCode::FAILURE
        }
    }
}
