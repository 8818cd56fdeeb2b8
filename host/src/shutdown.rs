//! Stopping on SIGTERM or SIGINT. The first signal starts a graceful
//! shutdown: the host takes no new work, lets calls in flight finish (up to
//! a deadline) and delivers their answers, flushes the audit log, then
//! exits 0. A second signal exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The exit status after a second signal: 128 + the signal's number, as
/// shells report it.
const FORCED_EXIT: i32 = 130;

/// A token cancelled by the first SIGTERM or SIGINT.
pub fn on_signals() -> anyhow::Result<CancellationToken> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let stopping = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name}: finishing the calls in flight, then exiting (again to exit now)");
        stopping.cancel();
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::warn!("{name} again: exiting now, without waiting for calls in flight");
        std::process::exit(FORCED_EXIT);
    });
    Ok(token)
}
