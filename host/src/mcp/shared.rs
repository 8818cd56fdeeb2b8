//! What every connection shares: the registry being served, the runtime,
//! the audit log, and the host-wide state of calls (tasks, rate budgets,
//! what is in flight).

use super::drain::InFlight;
use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::plugin::{Change, Registry};
use crate::runtime::{Placement, Runtime};
use crate::shared_state::{RateBuckets, SharedState, TaskStore};
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// What every connection shares.
pub struct Shared {
    pub registry: ArcSwap<Registry>,
    pub runtime: Arc<Runtime>,
    pub audit: AuditLog,
    /// Reloads announce here which lists changed.
    pub changes: broadcast::Sender<Change>,
    /// How often each plugin's state changed (for everyone, per user).
    pub state: super::subscriptions::StateGenerations,
    /// Calls that changed a plugin's state announce it here, so that
    /// watchers look for updated resources.
    pub state_changed: broadcast::Sender<()>,
    /// Whether `host__noop` is served (for benchmarks).
    pub native_noop: bool,
    /// Which thread a plugin call runs on.
    pub placement: Placement,
    /// Calls running (or run) as tasks.
    pub tasks: Arc<dyn TaskStore>,
    /// Tool calls per principal and tool (not for the local user).
    pub tool_calls: Arc<dyn RateBuckets>,
    /// What `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Plugin calls running now, which shutdown waits for.
    pub in_flight: InFlight,
    /// Where buckets keep their data, for `/metrics`.
    pub keyvalue: Option<Arc<dyn crate::capability::keyvalue::store::KeyValueStore>>,
}

impl Shared {
    /// What every connection shares, its tasks and tool-call budgets kept
    /// in `state` (`tool_calls_per_minute` per principal and tool).
    pub fn new(
        registry: Registry,
        runtime: Arc<Runtime>,
        audit: AuditLog,
        state: &SharedState,
        tool_calls_per_minute: u32,
    ) -> Shared {
        Shared {
            registry: ArcSwap::from_pointee(registry),
            runtime,
            audit,
            changes: broadcast::channel(16).0,
            state: Default::default(),
            state_changed: broadcast::channel(16).0,
            native_noop: false,
            placement: Placement::default(),
            tasks: state.tasks(),
            tool_calls: state.rate_buckets(tool_calls_per_minute),
            metrics: Arc::default(),
            in_flight: InFlight::default(),
            keyvalue: None,
        }
    }
}
