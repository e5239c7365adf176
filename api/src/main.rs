//! The `verify-api` binary: reads the settings (exit 2 on a bad one), builds the application and
//! serves until SIGTERM or SIGINT.

use std::process::ExitCode;

use common::process::shutdown_on_signals;
use verify_api::{ApiConfig, Application};

#[tokio::main]
async fn main() -> ExitCode {
    let config: ApiConfig = match common::settings::load("verify-api") {
        Ok(config) => config,
        Err(code) => return code,
    };
    common::observability::init_logging(&config.shared.log_format);
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
