//! What the host offers capabilities beyond a policy's text (Spin's
//! runtime config): one handle, built at start from the host config and
//! handed to every capability when it resolves a grant. Each service is a
//! trait with the implementation this host uses today behind it, so
//! another (a vault for secrets, a shared store across replicas) is chosen
//! here without touching a capability.

use std::sync::Arc;

/// Where granted secrets come from: the values of `env` grants that name
/// a host variable (`from_host`).
pub trait Secrets: Send + Sync {
    /// The secret `name`, if the source has it.
    fn get(&self, name: &str) -> Option<String>;
}

/// The host process's own environment.
pub struct ProcessEnvironment;

impl Secrets for ProcessEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Two amounts counted together against two limits (a disk quota's bytes
/// and entries).
pub type Amounts = [u64; 2];

/// Running totals capabilities keep against limits: what replicas of the
/// host sharing the thing counted (a network folder) would have to share.
pub trait Tallies: Send + Sync {
    /// The tally `key` (a mount's folder), starting from `measured`: the
    /// thing counted was just measured, so that is what it holds.
    fn start(&self, key: &str, measured: Amounts) -> Arc<dyn Tally>;
}

/// One running total.
pub trait Tally: Send + Sync {
    /// What it holds now.
    fn get(&self) -> Amounts;
    /// Adds `amounts`, or nothing when a nonzero part of it would take its
    /// total past its limit in `limits`; whether it added.
    fn add_within(&self, amounts: Amounts, limits: Amounts) -> bool;
    /// Takes `amounts` off, stopping at zero.
    fn subtract(&self, amounts: Amounts);
}

/// Tallies in this process's memory: each one the count of one holder.
pub struct MemoryTallies;

impl Tallies for MemoryTallies {
    fn start(&self, _key: &str, measured: Amounts) -> Arc<dyn Tally> {
        Arc::new(MemoryTally(std::sync::Mutex::new(measured)))
    }
}

struct MemoryTally(std::sync::Mutex<Amounts>);

impl MemoryTally {
    fn lock(&self) -> std::sync::MutexGuard<'_, Amounts> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tally for MemoryTally {
    fn get(&self) -> Amounts {
        *self.lock()
    }

    fn add_within(&self, amounts: Amounts, limits: Amounts) -> bool {
        let mut total = self.lock();
        let sum = [0, 1].map(|i| total[i].saturating_add(amounts[i]));
        if (0..2).any(|i| amounts[i] > 0 && sum[i] > limits[i]) {
            return false;
        }
        *total = sum;
        true
    }

    fn subtract(&self, amounts: Amounts) {
        let mut total = self.lock();
        *total = [0, 1].map(|i| total[i].saturating_sub(amounts[i]));
    }
}

/// The host's services.
#[derive(Clone)]
pub struct HostServices {
    pub secrets: Arc<dyn Secrets>,
    /// Where disk quotas count what their folders hold.
    pub tallies: Arc<dyn Tallies>,
    /// Where key-value buckets keep their data.
    pub keyvalue: Arc<dyn super::keyvalue::store::KeyValueStore>,
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}

impl Default for HostServices {
    /// Secrets from the host's environment; tallies and buckets in memory.
    fn default() -> Self {
        HostServices {
            secrets: Arc::new(ProcessEnvironment),
            tallies: Arc::new(MemoryTallies),
            keyvalue: Arc::new(super::keyvalue::embedded::EmbeddedStore::in_memory()),
        }
    }
}

impl<F: Fn(&str) -> Option<String> + Send + Sync> Secrets for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}
