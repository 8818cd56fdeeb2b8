//! Which thread a call's sandbox runs on.
//!
//! A host serving one client over stdio reads, calls and answers on one
//! thread of its own: a call that runs where its request was read needs no
//! other core woken and no task handed between threads, which on a
//! two-vCPU VM is a fifth of a trivial plugin call (BENCHMARKS.md, "One
//! thread for the stdio client"). A call that arrives while another one
//! runs on that thread goes to the worker pool instead, so a client's
//! overlapping calls still run side by side on every core.
//!
//! Placement changes nothing about a call but where it runs: the same
//! sandbox, grants, limits and cancellation either way.

use super::{CallContext, CallError, Diagnostics, Entry, FailureKind, Prepared, Runtime};
use crate::capability::SandboxGrants;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::runtime::Handle;
use tokio_util::task::AbortOnDropHandle;

/// Where calls run.
#[derive(Debug, Default)]
pub enum Placement {
    /// On the task that received the request, wherever the runtime put it
    /// (HTTP: a multi-threaded runtime spreads requests over its workers).
    #[default]
    Inline,
    /// On the receiving thread while it runs no other call; on `pool`
    /// while it does.
    ThreadFirst {
        pool: Handle,
        running_here: AtomicBool,
    },
}

impl Placement {
    /// Calls that overlap one already running here go to `pool`.
    pub fn thread_first(pool: Handle) -> Placement {
        Placement::ThreadFirst {
            pool,
            running_here: AtomicBool::new(false),
        }
    }

    /// Runs `entry` of `plugin` under `grants`, as [`Runtime::run`] does,
    /// on the thread this placement chooses. Dropping the future ends the
    /// call wherever it runs.
    pub async fn run<R: Send + 'static>(
        &self,
        runtime: &Arc<Runtime>,
        plugin: &Prepared,
        grants: &Arc<SandboxGrants>,
        call: CallContext,
        entry: Entry<R>,
    ) -> Result<(R, Diagnostics), CallError> {
        let (pool, running_here) = match self {
            Placement::Inline => return runtime.run(plugin, grants, call, entry).await,
            Placement::ThreadFirst { pool, running_here } => (pool, running_here),
        };
        if let Some(_turn) = Turn::take(running_here) {
            return runtime.run(plugin, grants, call, entry).await;
        }
        let (runtime, plugin, grants) = (runtime.clone(), plugin.clone(), grants.clone());
        let task = AbortOnDropHandle::new(
            pool.spawn(async move { runtime.run(&plugin, &grants, call, entry).await }),
        );
        match task.await {
            Ok(outcome) => outcome,
            Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
            Err(_) => Err(CallError {
                kind: FailureKind::Setup,
                message: "the host is shutting down: the call was not run".into(),
                diagnostics: Diagnostics::default(),
            }),
        }
    }
}

/// The receiving thread's one call, while it runs.
struct Turn<'a>(&'a AtomicBool);

impl<'a> Turn<'a> {
    /// The turn, if no call holds it.
    fn take(running_here: &'a AtomicBool) -> Option<Turn<'a>> {
        running_here
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Turn(running_here))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_turn_at_a_time_and_free_again_when_dropped() {
        let running = AtomicBool::new(false);
        let first = Turn::take(&running).expect("a free turn");
        assert!(Turn::take(&running).is_none(), "taken while held");
        drop(first);
        assert!(Turn::take(&running).is_some(), "free once dropped");
    }
}
