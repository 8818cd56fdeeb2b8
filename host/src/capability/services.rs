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

/// The host's services.
#[derive(Clone)]
pub struct HostServices {
    pub secrets: Arc<dyn Secrets>,
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}

impl Default for HostServices {
    /// Secrets from the host's environment.
    fn default() -> Self {
        HostServices {
            secrets: Arc::new(ProcessEnvironment),
        }
    }
}

impl<F: Fn(&str) -> Option<String> + Send + Sync> Secrets for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}
