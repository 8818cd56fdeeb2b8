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

/// The version of what serves a resource: component and policy digests.
type Version = Option<(Digest, Digest)>;

/// The resources one client watches, each with the version it last saw.
#[derive(Default)]
pub struct Watched {
    versions: HashMap<String, Version>,
}

impl Watched {
    /// Starts watching `uri` as `registry` serves it now.
    pub fn add(&mut self, uri: String, registry: &Registry) {
        let version = version(registry, &uri);
        self.versions.insert(uri, version);
    }

    pub fn remove(&mut self, uri: &str) {
        self.versions.remove(uri);
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

fn version(registry: &Registry, uri: &str) -> Version {
    registry
        .resource_owner(uri)
        .map(|plugin| (plugin.compiled.hash, plugin.policy_digest))
}
