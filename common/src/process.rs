//! What both binaries do at stop: a shutdown token cancelled by SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

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
