//! The seam for state the host keeps across requests, which several
//! replicas of the host would have to share: rate buckets, gateway
//! signatures already accepted, sessions, tasks and disk-quota tallies.
//! Each is a trait with this process's in-memory version behind it, and
//! [`SharedState`] chooses the backend in one place, at start: another
//! (Redis) is one more variant there, and no caller changes.
//!
//! Capabilities reach theirs through the host's services
//! ([`SharedState::host_services`]): disk quotas keep their counts as
//! tallies, so hosts sharing a network folder could share its quota.
//!
//! What stays in the process whatever the backend: the work itself. A
//! task's sandbox runs where it was started, and a session's streams are
//! held open by the process that answered its `initialize` (rmcp's session
//! manager under the table), so replicas route a session to one process by
//! its `Mcp-Session-Id` (sticky routing in the proxy in front). The
//! cancellation tokens the stores hand out stop that local work; what a
//! shared table adds is the bookkeeping every replica must agree on: who
//! owns a session, and how many each owner holds.

mod rate;
mod replays;
mod sessions;
mod tasks;

pub use rate::MemoryRateBuckets;
pub use replays::MemoryReplays;
pub use sessions::{MemorySessions, SessionLimits};
pub use tasks::{MAX_TASKS, MAX_TASKS_PER_OWNER, MemoryTasks, TTL};

use crate::capability::services::{HostServices, MemoryTallies, Tallies};
use rmcp::model::{DetailedTask, JsonObject, Task};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Token buckets of one budget, by key (a principal, a client address, a
/// principal and tool).
pub trait RateBuckets: Send + Sync {
    /// Takes one token from `key`'s bucket at `now`; when it is empty, how
    /// long until it holds one again.
    fn take(&self, key: &str, now: Instant) -> Result<(), Duration>;

    /// Whether `key`'s bucket is empty at `now` (taking nothing); if so,
    /// how long until it holds a token again.
    fn check(&self, key: &str, now: Instant) -> Result<(), Duration>;
}

/// Why a gateway signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefused {
    /// It was accepted before.
    Replayed,
    /// Too many are remembered to take another.
    Full,
}

/// Gateway signatures accepted and still inside the skew window.
pub trait Replays: Send + Sync {
    /// Accepts the signature `tag` once, remembering it until `expires`
    /// (Unix seconds; `now` is the time).
    fn first_use(&self, tag: [u8; 32], expires: u64, now: u64) -> Result<(), ReplayRefused>;
}

/// Why a new session was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoom {
    /// The host holds its most sessions, none of which may be closed.
    Full,
    /// The owner holds its share, and every one is in use.
    OwnShareInUse,
}

/// Who may use a session, as a request shows it.
pub enum Claim {
    /// The requester owns it: the token that stops its calls when it ends.
    Owned(CancellationToken),
    /// No such session (never opened, expired, evicted or deleted).
    Unknown,
    /// Another owner's session.
    Foreign,
    /// A request of the session with the same id is still in flight.
    DuplicateId,
}

/// The Streamable HTTP sessions: who owns each, what is open on it, and
/// the bounds ([`SessionLimits`]) on how many there are. Owners are
/// principals (for anonymous clients, a principal at an address).
pub trait SessionTable: Send + Sync {
    /// The bounds the table keeps.
    fn limits(&self) -> SessionLimits;
    /// Reserves a place for a new session of `owner`, making room by
    /// removing idle sessions only (the ones returned, to be closed); the
    /// place counts against the bounds until [`SessionTable::bind`] or
    /// [`SessionTable::abandon`].
    fn admit(&self, owner: &Arc<str>) -> Result<Vec<Arc<str>>, NoRoom>;
    /// A reserved place becomes session `id` of `owner`; `ended` is the
    /// token that stops its calls (this process's: the session's work runs
    /// here).
    fn bind(&self, id: Arc<str>, owner: Arc<str>, ended: CancellationToken);
    /// Gives back a reserved place whose session did not open.
    fn abandon(&self);
    /// A request (with id key `request`, if it is one) of `owner` on
    /// session `id` at `now`; when owned, the session is in use until
    /// [`SessionTable::release`].
    fn claim(&self, id: &str, owner: &str, now: Instant, request: Option<u64>) -> Claim;
    /// Ends one use of session `id` that [`SessionTable::claim`] began.
    fn release(&self, id: &str, request: Option<u64>);
    /// Removes the sessions nobody has used for the idle time by `now`
    /// (nothing open on them), to be closed.
    fn expire(&self, now: Instant) -> Vec<Arc<str>>;
    /// Removes session `id` (deleted by its client); the token that stops
    /// its calls, if it was there.
    fn remove(&self, id: &str) -> Option<CancellationToken>;
}

/// How a task's work ended, when it was not cancelled.
pub enum Outcome {
    /// The tool's result (a tool error included).
    Completed(JsonObject),
    /// The call failed outside the tool: a JSON-RPC error object.
    Failed(JsonObject),
}

/// Calls running (or run) as tasks, each its starter's alone. The work of
/// a task runs in the process that started it; the token it is given
/// stops it.
pub trait TaskStore: Send + Sync {
    /// A new working task of `owner`, and the token that stops its work;
    /// `None` when the store is full.
    fn create(&self, owner: &str) -> Option<(Task, CancellationToken)>;
    /// `owner`'s task `id` as `tasks/get` shows it.
    fn get(&self, id: &str, owner: &str) -> Option<DetailedTask>;
    /// Asks `owner`'s task `id` to stop; whether it exists. A task that
    /// finished already keeps its outcome.
    fn cancel(&self, id: &str, owner: &str) -> bool;
    /// Shows `message` as the running task's status message.
    fn report(&self, id: &str, message: String);
    /// Ends the task `id` with `outcome`; a task whose cancellation was
    /// asked for ends cancelled, whatever its work returned.
    fn finish(&self, id: &str, outcome: Outcome);
}

/// Where the host keeps its shared state.
#[derive(Clone, Debug)]
pub struct SharedState {
    backend: Backend,
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// This process's memory: nothing is shared with another replica.
    Memory,
}

impl SharedState {
    /// Everything in this process's memory.
    pub fn in_memory() -> SharedState {
        SharedState {
            backend: Backend::Memory,
        }
    }

    /// Buckets holding `per_minute` tokens each (0: no limit).
    pub fn rate_buckets(&self, per_minute: u32) -> Arc<dyn RateBuckets> {
        match self.backend {
            Backend::Memory => Arc::new(MemoryRateBuckets::new(per_minute)),
        }
    }

    /// The session table, held to `limits`.
    pub fn sessions(&self, limits: SessionLimits) -> Arc<dyn SessionTable> {
        match self.backend {
            Backend::Memory => Arc::new(MemorySessions::new(limits)),
        }
    }

    /// The tasks store.
    pub fn tasks(&self) -> Arc<dyn TaskStore> {
        match self.backend {
            Backend::Memory => Arc::new(MemoryTasks::default()),
        }
    }

    /// The host's services for capabilities, their state kept here.
    pub fn host_services(&self) -> HostServices {
        let tallies: Arc<dyn Tallies> = match self.backend {
            Backend::Memory => Arc::new(MemoryTallies),
        };
        HostServices {
            tallies,
            ..HostServices::default()
        }
    }

    /// A record of accepted gateway signatures.
    pub fn replays(&self) -> Arc<dyn Replays> {
        match self.backend {
            Backend::Memory => Arc::new(MemoryReplays::default()),
        }
    }
}

impl Default for SharedState {
    fn default() -> Self {
        SharedState::in_memory()
    }
}
