//! The state of one sandbox: everything a single call can reach.

use crate::capability::denials::Denials;
use crate::capability::{CallData, CallStates, SandboxGrants};
use crate::interface::mcp_host::plugin::{host, types};
use crate::printable::truncate;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::observer::{CallObserver, Unobserved};
pub use types::LogLevel;

/// Who is waiting on a call, and how to reach them.
#[derive(Clone)]
pub struct CallContext {
    pub observer: Arc<dyn CallObserver>,
    pub cancel: CancellationToken,
    /// The user id per-user mounts resolve to; `None` mounts none of them.
    pub user: Option<String>,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            observer: Arc::new(Unobserved),
            cancel: CancellationToken::new(),
            user: None,
        }
    }
}

/// The most a plugin may log in one call; the rest is dropped, with a note.
const MAX_LOG_LINES: usize = 1000;
const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

/// Progress reports a call sends freely before they are rate limited.
const PROGRESS_BURST: u32 = 100;
/// The shortest time between two progress reports past the burst.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Which of a plugin's progress reports reach the client: finite values
/// that go up (as MCP requires); past the first [`PROGRESS_BURST`], at most
/// one per [`PROGRESS_INTERVAL`] besides the one that reaches the total. A
/// plugin reporting in a tight loop sends a few notifications a second, not
/// hundreds of thousands.
#[derive(Default)]
pub(super) struct ProgressGate {
    sent: u32,
    last: Option<(f64, std::time::Instant)>,
}

impl ProgressGate {
    /// Whether a report of `progress` out of `total` at `now` is sent;
    /// records it if so.
    fn admits(&mut self, progress: f64, total: Option<f64>, now: std::time::Instant) -> bool {
        let rising = progress.is_finite() && self.last.is_none_or(|(value, _)| progress > value);
        let done = total.is_some_and(|total| progress >= total);
        let due = self.sent < PROGRESS_BURST
            || self
                .last
                .is_none_or(|(_, at)| now.duration_since(at) >= PROGRESS_INTERVAL);
        let admitted = rising && (due || done);
        if admitted {
            self.sent += 1;
            self.last = Some((progress, now));
        }
        admitted
    }
}

/// Store data of one sandbox.
pub struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) http: WasiHttpCtx,
    pub(super) limiter: MemoryLimiter,
    pub(super) call: CallContext,
    pub(super) log_lines: usize,
    progress: ProgressGate,
    /// Set when the call used up its CPU budget.
    pub(super) cpu_exhausted: bool,
    grants: Arc<SandboxGrants>,
    denials: Denials,
    /// What the call holds of each capability.
    capabilities: CallStates,
}

impl CallState {
    pub(super) fn new(
        wasi: WasiCtx,
        capabilities: CallStates,
        grants: Arc<SandboxGrants>,
        denials: Denials,
        limiter: MemoryLimiter,
        call: CallContext,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(10_000);
        CallState {
            wasi,
            table,
            http: WasiHttpCtx::new(),
            limiter,
            call,
            log_lines: 0,
            progress: ProgressGate::default(),
            cpu_exhausted: false,
            grants,
            denials,
            capabilities,
        }
    }

    /// Whether the call made more refusals than it may, and must stop.
    pub(super) fn refused_too_often(&self) -> bool {
        self.denials.over_limit()
    }
}

impl CallData for CallState {
    fn capabilities(&self) -> &CallStates {
        &self.capabilities
    }

    fn capabilities_mut(&mut self) -> &mut CallStates {
        &mut self.capabilities
    }

    fn grants(&self) -> &SandboxGrants {
        &self.grants
    }

    fn denials(&self) -> &Denials {
        &self.denials
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.capabilities.http,
        }
    }
}

impl types::Host for CallState {}

impl host::Host for CallState {
    async fn log(&mut self, level: LogLevel, mut message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return Ok(());
        }
        if self.log_lines == MAX_LOG_LINES {
            message = format!("more than {MAX_LOG_LINES} log lines in one call; dropping the rest");
        }
        truncate(&mut message, MAX_LOG_LINE_BYTES);
        self.call.observer.log(level, message).await;
        Ok(())
    }

    async fn progress(
        &mut self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        let total = total.filter(|total| total.is_finite());
        if !self
            .progress
            .admits(progress, total, std::time::Instant::now())
        {
            return Ok(());
        }
        let message = message.map(|mut m| {
            truncate(&mut m, MAX_LOG_LINE_BYTES);
            m
        });
        self.call.observer.progress(progress, total, message).await;
        Ok(())
    }

    async fn env(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        crate::capability::env::answer(&self.grants.env, &name, &self.denials)
    }

    async fn is_cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.call.cancel.is_cancelled())
    }
}

/// One memory budget for a whole call: every linear memory and table of
/// every core instance in the component counts against it, so a component
/// with several memories gets no more than one with a single memory. It also
/// remembers whether a grow was refused, so a crash after it can be reported
/// as what it is: the memory limit.
pub struct MemoryLimiter {
    /// Counts of instances, tables and memories.
    limits: StoreLimits,
    budget: usize,
    used: usize,
    pub(super) refused: bool,
}

/// What one table element is charged: a reference the host stores.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

impl MemoryLimiter {
    /// A limiter allowing `budget` bytes across all memories and tables.
    pub fn new(limits: StoreLimits, budget: usize) -> Self {
        MemoryLimiter {
            limits,
            budget,
            used: 0,
            refused: false,
        }
    }

    /// Charges growing by `bytes`, if the budget has room.
    fn charge(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(used) if used <= self.budget => {
                self.used = used;
                true
            }
            _ => {
                self.refused = true;
                false
            }
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.charge(desired.saturating_sub(current)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let elements = desired.saturating_sub(current);
        Ok(self.charge(elements.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store, StoreLimitsBuilder};

    /// A core module with one memory of 200 pages (12.5 MiB).
    const ONE_MEMORY: &[u8] = b"\0asm\x01\0\0\0\x05\x04\x01\x00\xc8\x01";

    fn limiter(mib: usize) -> MemoryLimiter {
        let counts = StoreLimitsBuilder::new()
            .instances(64)
            .memories(8)
            .tables(64)
            .build();
        MemoryLimiter::new(counts, mib << 20)
    }

    #[test]
    fn several_memories_share_one_budget() {
        let engine = Engine::default();
        let module = Module::new(&engine, ONE_MEMORY).unwrap();
        let mut store = Store::new(&engine, limiter(16));
        store.limiter(|limiter| limiter);
        Instance::new(&mut store, &module, &[]).expect("12.5 MiB fits in 16");
        assert!(
            Instance::new(&mut store, &module, &[]).is_err(),
            "25 MiB does not"
        );
        assert!(store.data().refused);
        let mut roomy = Store::new(&engine, limiter(64));
        roomy.limiter(|limiter| limiter);
        for _ in 0..5 {
            Instance::new(&mut roomy, &module, &[]).expect("5 x 12.5 MiB fit in 64");
        }
        assert!(Instance::new(&mut roomy, &module, &[]).is_err());
    }

    #[test]
    fn progress_is_finite_rising_and_rate_limited_past_a_burst() {
        let mut gate = ProgressGate::default();
        let start = std::time::Instant::now();
        let at = |ms| start + std::time::Duration::from_millis(ms);
        assert!(!gate.admits(f64::NAN, None, at(0)));
        assert!(!gate.admits(f64::INFINITY, None, at(0)));
        assert!(gate.admits(1.0, None, at(0)));
        assert!(!gate.admits(1.0, None, at(0)), "not rising");
        let burst = (2..200)
            .filter(|i| gate.admits(f64::from(*i), None, at(0)))
            .count();
        assert_eq!(burst as u32, PROGRESS_BURST - 1);
        assert!(!gate.admits(500.0, None, at(10)), "too soon");
        assert!(
            gate.admits(501.0, Some(501.0), at(10)),
            "the last report always goes"
        );
        let flood = (0..100_000)
            .filter(|i| gate.admits(f64::from(*i) + 1000.0, None, at(100 + *i as u64 / 100)))
            .count();
        assert!(flood <= 21, "{flood} reports in a second");
    }

    #[test]
    fn tables_count_against_the_same_budget() {
        let mut limiter = limiter(1);
        assert!(limiter.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!limiter.table_growing(0, 1 << 17, None).unwrap());
        assert!(limiter.table_growing(0, 1 << 10, None).unwrap());
        assert!(!limiter.memory_growing(1 << 19, 1 << 20, None).unwrap());
        assert!(limiter.refused);
    }
}
