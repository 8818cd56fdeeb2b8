//! The state of one sandbox: everything a single call can reach.

use super::bindings::mcp_host::plugin::{host, types};
use super::shadow::OUTSIDE_MOUNTS;
use crate::capability::network::{Denial, NetworkHooks};
use crate::policy::Grants;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use types::LogLevel;

/// A boxed future the observer returns.
pub type Notify<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Receives what a plugin reports while it runs (the MCP front forwards it
/// to the client). Kept abstract so the runtime knows nothing of MCP.
pub trait CallObserver: Send + Sync {
    /// A log line from the plugin.
    fn log(&self, level: LogLevel, message: String) -> Notify<'_>;
    /// A progress report from the plugin.
    fn progress(&self, progress: f64, total: Option<f64>, message: Option<String>) -> Notify<'_>;
}

/// An observer that drops everything (for calls no client waits on).
pub struct Unobserved;

impl CallObserver for Unobserved {
    fn log(&self, _: LogLevel, _: String) -> Notify<'_> {
        Box::pin(std::future::ready(()))
    }
    fn progress(&self, _: f64, _: Option<f64>, _: Option<String>) -> Notify<'_> {
        Box::pin(std::future::ready(()))
    }
}

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

/// Store data of one sandbox.
pub struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) http: WasiHttpCtx,
    pub(super) hooks: NetworkHooks,
    pub(super) limiter: MemoryLimiter,
    pub(super) call: CallContext,
    pub(super) log_lines: usize,
    /// Set when the call used up its CPU budget.
    pub(super) cpu_exhausted: bool,
    grants: Arc<Grants>,
    denials: Denials,
    /// Preopened descriptors (by resource rep) and their guest paths.
    mounts: Vec<(u32, String)>,
}

impl CallState {
    pub(super) fn new(
        wasi: WasiCtx,
        grants: Arc<Grants>,
        denials: Denials,
        limiter: MemoryLimiter,
        call: CallContext,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(10_000);
        let hooks = NetworkHooks::new(
            grants.guardrails.clone(),
            grants.http.clone(),
            grants.max_response_bytes,
            denials.clone(),
        );
        CallState {
            wasi,
            table,
            http: WasiHttpCtx::new(),
            hooks,
            limiter,
            call,
            log_lines: 0,
            cpu_exhausted: false,
            grants,
            denials,
            mounts: Vec::new(),
        }
    }

    /// Records that `rule` refused `attempt`.
    pub(super) fn deny(&self, rule: &str, attempt: String) {
        tracing::info!(rule, attempt, "denied");
        if let Ok(mut denials) = self.denials.lock() {
            denials.push(Denial {
                rule: rule.to_owned(),
                attempt,
            });
        }
    }

    /// Remembers that the descriptor `rep` is the mount at `guest`.
    pub(super) fn remember_mount(&mut self, rep: u32, guest: String) {
        self.mounts.push((rep, guest));
    }

    /// Whether `fd` is the catch-all mount standing for "outside every mount".
    pub(super) fn is_outside_mounts<T: 'static>(&self, fd: &Resource<T>) -> bool {
        self.mounts
            .iter()
            .any(|(rep, guest)| *rep == fd.rep() && guest == OUTSIDE_MOUNTS)
    }

    /// `verb` and the guest path `path` names relative to `fd`.
    pub(super) fn describe_path<T: 'static>(
        &self,
        fd: &Resource<T>,
        verb: &str,
        path: &str,
    ) -> String {
        match self.mounts.iter().find(|(rep, _)| *rep == fd.rep()) {
            Some((_, mount)) => {
                let mount = mount.trim_end_matches('/');
                format!("{verb} {mount}/{path}")
            }
            None => format!("{verb} {path} (in an opened directory)"),
        }
    }

    /// Whether the policy grants name lookup.
    pub(super) fn name_lookup_granted(&self) -> bool {
        self.grants.sockets.name_lookup
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
            hooks: &mut self.hooks,
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
        let message = message.map(|mut m| {
            truncate(&mut m, MAX_LOG_LINE_BYTES);
            m
        });
        self.call.observer.progress(progress, total, message).await;
        Ok(())
    }

    async fn env(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        let granted = self.grants.env.iter().find(|var| var.name == name);
        if granted.is_none() {
            self.deny(
                "policy (no [env] grant)",
                format!("read the environment variable {name}"),
            );
        }
        Ok(granted.map(|var| var.value.clone()))
    }

    async fn is_cancelled(&mut self) -> wasmtime::Result<bool> {
        Ok(self.call.cancel.is_cancelled())
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// Store limits that also remember whether a memory grow was refused, so a
/// crash after it can be reported as what it is: the memory limit.
pub struct MemoryLimiter {
    limits: StoreLimits,
    pub(super) refused: bool,
}

impl MemoryLimiter {
    pub fn new(limits: StoreLimits) -> Self {
        MemoryLimiter {
            limits,
            refused: false,
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
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
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

/// Requests a call's network hooks refused, shared with the hooks.
pub type Denials = Arc<Mutex<Vec<Denial>>>;
