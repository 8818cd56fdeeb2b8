//! Resource limits for one plugin's calls.

use super::{Capability, Preparing, Reach, Resolving};
use crate::interface::types::Effects;
use serde::Deserialize;
use std::time::Duration;

/// Upper bound on any plugin's memory: the pooling allocator reserves this
/// much address space per sandbox slot.
pub const MAX_MEMORY_MIB: u32 = 4096;

/// How much a plugin's calls may use. Every field has a default, so a plugin
/// without a policy still runs inside firm bounds.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Memory per call, in MiB: every linear memory and table of the call's
    /// component together.
    pub memory_mib: u32,
    /// Wall-clock time per call, in milliseconds, including time spent
    /// waiting on the network.
    pub timeout_ms: u64,
    /// CPU time per call (time spent running wasm), in milliseconds;
    /// defaults to `timeout_ms`.
    pub cpu_ms: Option<u64>,
    /// Calls of this plugin running at once; more wait in line.
    pub max_concurrency: u32,
    /// Size of one call's result (text, JSON and binary content), in KiB.
    pub max_output_kib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 64,
            timeout_ms: 10_000,
            cpu_ms: None,
            max_concurrency: 8,
            max_output_kib: 1024,
        }
    }
}

impl Limits {
    /// What the limits are, for `check` and `explain`.
    fn describe(&self) -> super::Description {
        super::Description {
            title: "Limits",
            summary: vec![format!(
                "limits: {} MiB memory, {} ms per call, {} calls at once, {} KiB output",
                self.memory_mib, self.timeout_ms, self.max_concurrency, self.max_output_kib
            )],
            explained: vec![format!(
                "{} MiB of memory, {} ms per call ({} ms of CPU), {} calls at once, {} KiB per result",
                self.memory_mib,
                self.timeout_ms,
                self.cpu_ms(),
                self.max_concurrency,
                self.max_output_kib
            )],
        }
    }

    /// Checks the limits are usable, naming the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return Err(format!("memory_mib must be 1 to {MAX_MEMORY_MIB}"));
        }
        if !(1..=3_600_000).contains(&self.timeout_ms) {
            return Err("timeout_ms must be 1 to 3600000 (one hour)".into());
        }
        if self
            .cpu_ms
            .is_some_and(|cpu| !(1..=3_600_000).contains(&cpu))
        {
            return Err("cpu_ms must be 1 to 3600000 (one hour)".into());
        }
        if !(1..=1024).contains(&self.max_concurrency) {
            return Err("max_concurrency must be 1 to 1024".into());
        }
        if !(1..=65_536).contains(&self.max_output_kib) {
            return Err("max_output_kib must be 1 to 65536".into());
        }
        Ok(())
    }

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_mib as usize * 1024 * 1024
    }

    /// The most the host copies out of the guest in one transfer: the
    /// larger of the memory and output limits. Without aliasing, a guest
    /// cannot hand over more than its memory holds, nor need to hand over
    /// more than its answer may be.
    pub fn transfer_bytes(&self) -> usize {
        self.memory_bytes().max(self.max_output_bytes())
    }

    /// The wall-clock limit per call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The CPU budget per call, in milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        self.cpu_ms.unwrap_or(self.timeout_ms)
    }

    /// The result size limit in bytes.
    pub fn max_output_bytes(&self) -> usize {
        self.max_output_kib as usize * 1024
    }
}

/// Resource limits: memory, time, CPU, concurrency and output, the same
/// for every tool of a plugin.
pub struct ResourceLimits;

impl Capability for ResourceLimits {
    const SECTION: &'static str = "limits";
    type Spec = Limits;
    type Grant = Limits;

    fn resolve(limits: &Limits, _host: &Resolving) -> Result<Limits, String> {
        limits.validate().map_err(|e| format!("[limits] {e}"))?;
        Ok(limits.clone())
    }

    fn narrow(limits: &Limits, _effects: Effects) -> Limits {
        limits.clone()
    }

    fn reach(_limits: &Limits) -> Reach {
        Reach::default()
    }

    fn describe(limits: &Limits) -> super::Description {
        limits.describe()
    }

    /// The runtime applies the limits to the store itself (memory, CPU,
    /// deadline, transfers): they bound the whole call, not one interface.
    type Call = ();

    fn prepare(_limits: &Limits, _call: &mut Preparing) -> anyhow::Result<()> {
        Ok(())
    }
}
