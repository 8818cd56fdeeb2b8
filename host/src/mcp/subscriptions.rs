//! Resource subscriptions: which resources a client watches, and when one
//! has changed.
//!
//! A plugin's resources are read in a fresh sandbox each time, so what a
//! resource says can only change when the plugin serving it does (a new
//! component or a new policy) or when its state does (a call wrote one of
//! its key-value buckets). A subscribed resource is reported updated when
//! the version of the plugin serving it changes, when its state changes
//! for everyone or for the subscriber's user, or when no plugin serves it
//! any more.

use crate::digest::Digest;
use crate::plugin::Registry;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The most resources one session watches.
pub const MAX_PER_SESSION: usize = 256;

/// The most resources all sessions together watch.
pub const MAX_IN_ALL: usize = 65_536;

/// How many resources all sessions watch now.
static IN_ALL: AtomicUsize = AtomicUsize::new(0);

/// State change counters: one slot a plugin's shared buckets count in,
/// one a plugin and user's per-user buckets count in. A fixed table of
/// slots found by a hash, so it stays the same size however many users
/// write: two that share a slot get an extra notification, never a missed
/// one.
pub struct StateGenerations {
    slots: Box<[AtomicU64]>,
    hasher: std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>,
}

/// Slots in the state counters' table.
const STATE_SLOTS: usize = 4096;

impl Default for StateGenerations {
    fn default() -> Self {
        StateGenerations {
            slots: (0..STATE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: Default::default(),
        }
    }
}

impl StateGenerations {
    fn slot(&self, plugin: &str, user: Option<&str>) -> &AtomicU64 {
        let hash = self.hasher.hash_one((plugin, user));
        &self.slots[(hash % STATE_SLOTS as u64) as usize]
    }

    /// `plugin`'s state changed: for `user` (a per-user bucket), or for
    /// everyone (`None`).
    pub fn changed(&self, plugin: &str, user: Option<&str>) {
        self.slot(plugin, user).fetch_add(1, Ordering::Relaxed);
    }

    /// How often `plugin`'s state changed for everyone, and for `user`.
    fn of(&self, plugin: &str, user: Option<&str>) -> (u64, u64) {
        let everyone = self.slot(plugin, None).load(Ordering::Relaxed);
        let theirs = user.map_or(0, |user| {
            self.slot(plugin, Some(user)).load(Ordering::Relaxed)
        });
        (everyone, theirs)
    }
}

/// The version of what serves a resource: component and policy digests,
/// and how often its state changed (for everyone, for the user).
type Version = Option<(Digest, Digest, (u64, u64))>;

/// The resources one client watches, each with the version it last saw.
#[derive(Default)]
pub struct Watched {
    versions: HashMap<String, Version>,
    /// Whose per-user state counts for these resources: the session's
    /// user.
    user: Option<String>,
}

impl Watched {
    /// Resources watched for `user` (the session's principal).
    pub fn for_user(user: String) -> Watched {
        Watched {
            versions: HashMap::new(),
            user: Some(user),
        }
    }

    /// Sets whose per-user state counts (the session's user, who never
    /// changes).
    pub fn set_user(&mut self, user: String) {
        self.user = Some(user);
    }

    /// Starts watching `uri` as `registry` serves it now, unless this
    /// session or the host already watches its most.
    pub fn add(
        &mut self,
        uri: String,
        registry: &Registry,
        state: &StateGenerations,
    ) -> Result<(), String> {
        let version = version(registry, state, &uri, self.user.as_deref());
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
    /// were last seen, or whose state changed; each is then seen as it is
    /// now.
    pub fn updated(&mut self, registry: &Registry, state: &StateGenerations) -> Vec<String> {
        let mut updated = Vec::new();
        for (uri, seen) in &mut self.versions {
            let now = version(registry, state, uri, self.user.as_deref());
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

fn version(
    registry: &Registry,
    state: &StateGenerations,
    uri: &str,
    user: Option<&str>,
) -> Version {
    registry.resource_owner(uri).map(|plugin| {
        let changes = state.of(&plugin.name, user);
        (plugin.compiled.hash, plugin.policy_digest, changes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_count_for_their_user_or_for_everyone() {
        let state = StateGenerations::default();
        let before = (
            state.of("journal", Some("alice")),
            state.of("journal", Some("bob")),
        );
        state.changed("journal", Some("alice"));
        assert_ne!(state.of("journal", Some("alice")), before.0);
        state.changed("journal", None);
        let (everyone, _) = state.of("journal", Some("bob"));
        assert_eq!(
            everyone,
            before.1.0 + 1,
            "a shared bucket's change is everyone's"
        );
        assert_eq!(
            state.of("workspace", None).0,
            0,
            "another plugin's count is its own"
        );
    }
}
