//! Stopping on SIGTERM or SIGINT. The first signal starts a graceful
//! shutdown: the host takes no new work, lets calls in flight finish (up to
//! a deadline) and delivers their answers, flushes the audit log, then
//! exits 0. A second signal exits at once, and so does a host still
//! running well past the deadline (a client that stopped reading its
//! answers, on stdio or HTTP, cannot keep it alive).

use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The exit status after a second signal: 128 + the signal's number, as
/// shells report it.
const FORCED_EXIT: i32 = 130;

/// How long past the shutdown deadline the host may take to write its last
/// answers and flush the audit log before it exits anyway.
const GRACE: Duration = Duration::from_secs(10);

/// The exit status of a host that did not stop in time.
const OVERDUE_EXIT: i32 = 1;

/// A token cancelled by the first SIGTERM or SIGINT, which starts a
/// shutdown that ends by `deadline` (plus a short grace).
pub fn on_signals(deadline: Duration) -> anyhow::Result<CancellationToken> {
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
            () = tokio::time::sleep(deadline + GRACE) => {
                tracing::warn!(
                    "still running {} s after the signal (shutdown_deadline_s and a grace): \
                     exiting now; a client stopped reading its answers",
                    (deadline + GRACE).as_secs()
                );
                std::process::exit(OVERDUE_EXIT);
            }
        };
        tracing::warn!("{name} again: exiting now, without waiting for calls in flight");
        std::process::exit(FORCED_EXIT);
    });
    Ok(token)
}
