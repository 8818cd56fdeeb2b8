//! Resource subscriptions: which resources a client watches, and when one
//! has changed.
//!
//! A plugin's resources are read in a fresh sandbox each time, so what a
//! resource says can only change when the plugin serving it does: a new
//! component or a new policy. A subscribed resource is reported updated
//! when the version of the plugin serving it changes, or when no plugin
//! serves it any more.

use crate::digest::Digest;
use crate::plugin::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most resources one session watches.
pub const MAX_PER_SESSION: usize = 256;

/// The most resources all sessions together watch.
pub const MAX_IN_ALL: usize = 65_536;

/// How many resources all sessions watch now.
static IN_ALL: AtomicUsize = AtomicUsize::new(0);

/// The version of what serves a resource: component and policy digests.
type Version = Option<(Digest, Digest)>;

/// The resources one client watches, each with the version it last saw.
#[derive(Default)]
pub struct Watched {
    versions: HashMap<String, Version>,
}

impl Watched {
    /// Starts watching `uri` as `registry` serves it now, unless this
    /// session or the host already watches its most.
    pub fn add(&mut self, uri: String, registry: &Registry) -> Result<(), String> {
        let version = version(registry, &uri);
        if let Some(seen) = self.versions.get_mut(&uri) {
            *seen = version;
            return Ok(());
        }
        if self.versions.len() >= MAX_PER_SESSION {
            return Err(format!(
                "this session already watches {MAX_PER_SESSION} resources, the most it may; \
                 unsubscribe from one first"
            ));
        }
        let taken = IN_ALL.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_IN_ALL).then_some(n + 1)
        });
        if taken.is_err() {
            return Err("the host watches as many resources as it may; retry later".into());
        }
        self.versions.insert(uri, version);
        Ok(())
    }

    pub fn remove(&mut self, uri: &str) {
        if self.versions.remove(uri).is_some() {
            IN_ALL.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The watched resources `registry` serves differently from when they
    /// were last seen; each is then seen as it is now.
    pub fn updated(&mut self, registry: &Registry) -> Vec<String> {
        let mut updated = Vec::new();
        for (uri, seen) in &mut self.versions {
            let now = version(registry, uri);
            if now != *seen {
                *seen = now;
                updated.push(uri.clone());
            }
        }
        updated.sort();
        updated
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        IN_ALL.fetch_sub(self.versions.len(), Ordering::AcqRel);
    }
}

fn version(registry: &Registry, uri: &str) -> Version {
    registry
        .resource_owner(uri)
        .map(|plugin| (plugin.compiled.hash, plugin.policy_digest))
}
