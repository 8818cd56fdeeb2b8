//! Running one call in a fresh sandbox.
//!
//! Each call gets a new `Store` instantiated from the plugin's pre-linked
//! component, with a WASI context built from its grants and nothing else;
//! the store is dropped when the call ends, however it ends. A trap, an
//! endless loop, runaway memory or a hung network read in one call becomes
//! a [`CallError`] for that call alone.

use super::cache::ComponentCache;
use super::capture::Capture;
use super::engine::{self, EPOCH_TICK, EngineConfig, EpochTicker};
use super::handler::{Exports, Handler};
use super::state::{CallContext, CallState, MemoryLimiter};
use crate::capability::denials::{Denials, Refusals};
use crate::capability::{Preparing, SandboxGrants};
use crate::digest::Digest;
use crate::interface::INTERFACE_VERSION;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;

/// The version of the plugin interface named by `names` (a component's
/// imports and exports), when it is not [`INTERFACE_VERSION`].
fn other_interface_version<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names
        .filter_map(|name| name.strip_prefix("mcp-host:plugin/"))
        .filter_map(|rest| rest.split_once('@').map(|(_, version)| version))
        .find(|version| *version != INTERFACE_VERSION)
}

/// How much of a plugin's stderr a crash's message quotes: the end, where a
/// panic message is.
const STDERR_TAIL_BYTES: usize = 2 * 1024;

/// The shared engine and linker every sandbox is made from.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    sandboxes: Arc<Semaphore>,
    max_sandboxes: usize,
    cache: ComponentCache,
    _ticker: EpochTicker,
}

/// A component ready to instantiate, and the line its calls wait in.
#[derive(Clone)]
pub struct Prepared {
    pre: InstancePre<CallState>,
    exports: Arc<Exports>,
    running: Arc<Semaphore>,
}

impl Prepared {
    /// The same component, with its own line of at most `max_concurrency`
    /// calls at once.
    pub fn with_concurrency(&self, max_concurrency: u32) -> Prepared {
        Prepared {
            pre: self.pre.clone(),
            exports: self.exports.clone(),
            running: Arc::new(Semaphore::new(max_concurrency as usize)),
        }
    }
}

/// What a call left besides its result: captured output and refusals.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub stdout: String,
    pub stderr: String,
    pub denials: Refusals,
    /// What the call did in its key-value buckets.
    pub state: Vec<crate::capability::keyvalue::BucketActivity>,
}

/// Why a call produced no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// It ran past its time limit.
    Timeout,
    /// It used up its CPU budget.
    CpuLimit,
    /// It made more refused attempts than a call may.
    RefusalLimit,
    /// It tried to grow its memory past its limit.
    OutOfMemory,
    /// It passed the host more in one transfer than its limits allow.
    TransferLimit,
    /// It trapped (a panic, `unreachable`, a bad memory access, ...).
    Crashed,
    /// The client cancelled it.
    Cancelled,
    /// Too many calls of this plugin were waiting already.
    Busy,
    /// The sandbox could not be set up.
    Setup,
}

impl FailureKind {
    /// The kind as the audit log names it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::CpuLimit => "cpu-limit",
            FailureKind::RefusalLimit => "refusal-limit",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::TransferLimit => "transfer-limit",
            FailureKind::Crashed => "crashed",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Busy => "busy",
            FailureKind::Setup => "setup-failed",
        }
    }
}

/// A call that produced no result, explained.
#[derive(Debug)]
pub struct CallError {
    pub kind: FailureKind,
    pub message: String,
    pub diagnostics: Diagnostics,
}

/// The host's one line on why the call failed, then what the sandbox
/// refused; for a crash only, the end of the plugin's stderr (where its
/// panic message is). A call stopped at a limit failed for the limit's
/// reason, whatever the plugin printed: its output reached the client's log
/// already, as log notifications.
impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for line in self.diagnostics.denials.lines() {
            write!(f, "\n{line}")?;
        }
        let stderr = self.diagnostics.stderr.trim();
        if self.kind == FailureKind::Crashed && !stderr.is_empty() {
            let mut start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
            while !stderr.is_char_boundary(start) {
                start += 1;
            }
            let elided = if start > 0 { "…" } else { "" };
            write!(f, "\nthe plugin's stderr:\n{elided}{}", &stderr[start..])?;
        }
        Ok(())
    }
}

/// A call's entry point: given the instance's exports and its store, the
/// future of the export call.
pub type Entry<R> = Box<
    dyn for<'a> FnOnce(
            &'a Handler<'a>,
            &'a mut Store<CallState>,
        ) -> Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send,
>;

impl Runtime {
    /// The engine, its epoch ticker, and a linker with WASI, wasi:http and
    /// the host interface.
    pub fn new(config: &EngineConfig) -> anyhow::Result<Runtime> {
        let engine = engine::build(config)?;
        let mut linker = Linker::new(&engine);
        let link = |e: wasmtime::Error| anyhow::anyhow!("cannot link the plugin interface: {e}");
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        crate::interface::mcp_host::plugin::types::add_to_linker::<
            _,
            wasmtime::component::HasSelf<_>,
        >(&mut linker, |state| state)
        .map_err(link)?;
        crate::interface::mcp_host::plugin::host::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state| state,
        )
        .map_err(link)?;
        crate::capability::add_to_linker(&mut linker).map_err(link)?;
        let cache = match &config.cache_dir {
            Some(dir) => ComponentCache::open(dir, &engine).unwrap_or_else(|why| {
                tracing::warn!("{why}");
                ComponentCache::disabled()
            }),
            None => ComponentCache::disabled(),
        };
        Ok(Runtime {
            _ticker: EpochTicker::start(&engine)?,
            cache,
            sandboxes: Arc::new(Semaphore::new(config.max_sandboxes as usize)),
            max_sandboxes: config.max_sandboxes as usize,
            engine,
            linker,
        })
    }

    /// The component in `bytes`, whose SHA-256 is `hash`: from the cache
    /// when it holds it, else compiled. CPU-bound: call it off the async
    /// workers.
    pub fn component(&self, hash: &Digest, bytes: &[u8]) -> anyhow::Result<Component> {
        self.cache.component(&self.engine, hash, bytes)
    }

    /// How many sandboxes are alive now.
    pub fn sandboxes_in_use(&self) -> usize {
        self.max_sandboxes - self.sandboxes.available_permits()
    }

    /// The folder compiled components are cached in, if any.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache.dir()
    }

    /// Links `component` against the plugin world, checking that it imports
    /// nothing the host does not offer and exports the plugin interface.
    /// At most `max_concurrency` of its calls run at once.
    pub fn prepare(&self, component: &Component, max_concurrency: u32) -> anyhow::Result<Prepared> {
        let ty = component.component_type();
        let imports = ty.imports(&self.engine).map(|(name, _)| name);
        let exports = ty.exports(&self.engine).map(|(name, _)| name);
        if let Some(version) = other_interface_version(imports.chain(exports)) {
            anyhow::bail!(
                "it was built for version {version} of the plugin interface, and this host \
                 speaks {INTERFACE_VERSION}: rebuild it against the current wit/ (the plugin \
                 SDK in plugins/sdk follows it)"
            );
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let exports = Exports::find(component)?;
        Ok(Prepared {
            pre,
            exports: Arc::new(exports),
            running: Arc::new(Semaphore::new(max_concurrency as usize)),
        })
    }

    /// Runs `entry` in a fresh sandbox of `plugin` holding exactly `grants`.
    pub async fn run<R: Send + 'static>(
        &self,
        plugin: &Prepared,
        grants: &Arc<SandboxGrants>,
        call: CallContext,
        entry: Entry<R>,
    ) -> Result<(R, Diagnostics), CallError> {
        let limits = &grants.limits;
        let fail = |kind, message: String, diagnostics| CallError {
            kind,
            message,
            diagnostics,
        };

        // Take a turn at once if one is free; else wait at most as long as
        // the call itself may take.
        let free = plugin
            .running
            .try_acquire()
            .ok()
            .zip(self.sandboxes.try_acquire().ok());
        let permits = match free {
            Some(permits) => Ok(Some(permits)),
            None => {
                tokio::time::timeout(limits.timeout(), async {
                    let own = plugin.running.acquire().await;
                    let shared = self.sandboxes.acquire().await;
                    own.ok().zip(shared.ok())
                })
                .await
            }
        };
        let Ok(Some(_permits)) = permits else {
            let message = format!(
                "the plugin is busy: {} calls are running and none finished within {} ms; \
                 try again later",
                limits.max_concurrency, limits.timeout_ms
            );
            return Err(fail(FailureKind::Busy, message, Diagnostics::default()));
        };

        let stdout = Capture::default();
        let stderr = Capture::default();
        let denials = Denials::default();
        let store = self.store(grants, call.clone(), &stdout, &stderr, &denials);
        let mut store = match store {
            Ok(store) => store,
            Err(e) => {
                let message = format!("cannot set up the sandbox: {e:#}");
                return Err(fail(FailureKind::Setup, message, Diagnostics::default()));
            }
        };

        let work = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            entry(&Handler::new(instance, &plugin.exports), &mut store).await
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(limits.timeout(), work) => Some(outcome),
            () = call.cancel.cancelled() => None,
        };
        let memory_refused = store.data().limiter.refused;
        let cpu_exhausted = store.data().cpu_exhausted;
        let refused_too_often = store.data().refused_too_often();
        let state = crate::capability::CallData::capabilities_mut(store.data_mut())
            .keyvalue
            .take_activity();
        drop(store);

        let diagnostics = Diagnostics {
            stdout: stdout.text(),
            stderr: stderr.text(),
            denials: denials.snapshot(),
            state,
        };
        match outcome {
            Some(Ok(_)) if refused_too_often => Err(fail(
                FailureKind::RefusalLimit,
                crate::capability::denials::limit_message(),
                diagnostics,
            )),
            Some(Ok(Ok(value))) => Ok((value, diagnostics)),
            Some(Ok(Err(_))) if cpu_exhausted => {
                let message = format!(
                    "the plugin used up its CPU budget of {} ms and was stopped",
                    limits.cpu_ms()
                );
                Err(fail(FailureKind::CpuLimit, message, diagnostics))
            }
            Some(Ok(Err(_))) if memory_refused => {
                let message = format!(
                    "the plugin ran out of memory: it tried to grow past its limit of {} MiB \
                     ([limits] memory_mib in its policy)",
                    limits.memory_mib
                );
                Err(fail(FailureKind::OutOfMemory, message, diagnostics))
            }
            Some(Ok(Err(error))) if is_transfer_refused(&error) => {
                let message = format!(
                    "the plugin passed the host more than {} MiB in one transfer (the larger of \
                     its memory and output limits; every reference to the same memory counts)",
                    limits.transfer_bytes() >> 20
                );
                Err(fail(FailureKind::TransferLimit, message, diagnostics))
            }
            Some(Ok(Err(error))) => {
                let message = format!("the plugin crashed: {}", describe_trap(&error));
                Err(fail(FailureKind::Crashed, message, diagnostics))
            }
            Some(Err(_elapsed)) => {
                let message = format!(
                    "the plugin did not finish within its time limit of {} ms and was stopped",
                    limits.timeout_ms
                );
                Err(fail(FailureKind::Timeout, message, diagnostics))
            }
            None => {
                let message = "the call was cancelled by the client and stopped".to_owned();
                Err(fail(FailureKind::Cancelled, message, diagnostics))
            }
        }
    }

    /// A store holding exactly what `grants` allow.
    fn store(
        &self,
        grants: &Arc<SandboxGrants>,
        call: CallContext,
        stdout: &Capture,
        stderr: &Capture,
        denials: &Denials,
    ) -> anyhow::Result<Store<CallState>> {
        // `new` inherits nothing: no stdin, env, args, preopens or sockets.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        let capabilities = grants.prepare(&mut Preparing {
            wasi: &mut wasi,
            denials,
            user: call.user.as_deref(),
        })?;
        wasi.max_random_size(1 << 20);
        let counts = StoreLimitsBuilder::new()
            .instances(64)
            .tables(64)
            .memories(8)
            .build();
        let wasi = wasi.build();
        let state = CallState::new(
            wasi,
            capabilities,
            grants.clone(),
            denials.clone(),
            MemoryLimiter::new(counts, grants.limits.memory_bytes()),
            call,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // What the host copies out of the guest in one transfer (a host
        // call's arguments, or the call's answer) is counted as it is
        // lifted, each reference to the same bytes again, and refused past
        // this: the guest cannot make the host hold more than its limits.
        store.set_hostcall_fuel(grants.limits.transfer_bytes());
        // At every epoch tick spent running wasm: charge the CPU budget, and
        // yield to the async runtime, so a busy guest never holds a worker
        // thread and the call's timeout can always fire. Ticks spent waiting
        // in host calls are not charged: the deadline is only checked in wasm.
        let budget = grants
            .limits
            .cpu_ms()
            .div_ceil(EPOCH_TICK.as_millis() as u64);
        let mut spent = 0;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut store| {
            spent += 1;
            if store.data().refused_too_often() {
                return Ok(UpdateDeadline::Interrupt);
            }
            if spent > budget {
                store.data_mut().cpu_exhausted = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        Ok(store)
    }
}

/// Whether `error` is wasmtime refusing a transfer past the store's hostcall
/// fuel. Its error type is private: the message is matched, and the e2e
/// test of the transfer limit fails if wasmtime rewords it.
fn is_transfer_refused(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// A trap's one-line description.
fn describe_trap(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_version_is_the_wit_packages() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(wit.contains(&format!("package mcp-host:plugin@{INTERFACE_VERSION};")));
    }

    #[test]
    fn a_component_without_the_handler_is_refused_by_name() {
        let runtime = Runtime::new(&EngineConfig::default()).expect("the wasm runtime");
        // The smallest component: its header, exporting nothing.
        let empty = b"\0asm\x0d\0\x01\0";
        let component = runtime
            .component(&crate::digest::sha256(empty), empty)
            .expect("an empty component compiles");
        let refused = runtime.prepare(&component, 1).err().expect("refused");
        assert_eq!(
            refused.to_string(),
            format!("it does not export mcp-host:plugin/handler@{INTERFACE_VERSION}")
        );
    }

    #[test]
    fn components_built_for_another_interface_version_are_named() {
        let current = [
            "wasi:io/streams@0.2.12",
            "mcp-host:plugin/host@0.3.0",
            "mcp-host:plugin/handler@0.3.0",
        ];
        assert_eq!(other_interface_version(current.into_iter()), None);
        let old = [
            "mcp-host:plugin/types@0.1.0",
            "mcp-host:plugin/handler@0.1.0",
        ];
        assert_eq!(other_interface_version(old.into_iter()), Some("0.1.0"));
    }
}
