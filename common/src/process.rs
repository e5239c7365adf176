//! What both binaries do at start and stop: `--help`, settings errors (exit 2), signals.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::settings::{Env, Setting, SettingError, help_text};

/// Handles the command line shared by both binaries: `--help` prints every setting and
/// exits 0; anything unexpected exits 2. Returns the remaining arguments (subcommands).
pub fn parse_args(
    binary: &str,
    about: &str,
    settings: &[Setting],
    subcommands: &[&str],
) -> Result<Vec<String>, ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", help_text(binary, about, settings));
        return Err(ExitCode::SUCCESS);
    }
    if let Some(bad) = args.iter().find(|a| !subcommands.contains(&a.as_str())) {
        eprintln!("{binary}: unknown argument {bad:?} (try --help)");
        return Err(ExitCode::from(2));
    }
    Ok(args)
}

/// Reads the configuration, or prints one line naming the bad variable and gives exit code 2.
pub fn load_config<T>(
    binary: &str,
    settings: &'static [Setting],
    from_env: impl FnOnce(&Env) -> Result<T, SettingError>,
) -> Result<T, ExitCode> {
    from_env(&Env::from_process(settings)).map_err(|e| {
        eprintln!("{binary}: bad setting {e}");
        ExitCode::from(2)
    })
}

/// A token cancelled at the first SIGTERM or SIGINT. The handlers are installed before this
/// returns, so a signal that arrives any time later is never lost to the default action.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    #[cfg(unix)]
    let mut int =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::spawn(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        #[cfg(not(unix))]
        drop(tokio::signal::ctrl_c().await);
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}
