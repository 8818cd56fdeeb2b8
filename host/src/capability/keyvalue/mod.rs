//! Key-value buckets (`wasi:keyvalue`): state a plugin keeps between calls,
//! in buckets its policy names.
//!
//! ```toml
//! [keyvalue.insights]
//! access = "read-write"   # or "read-only" (the default)
//! scope = "user"          # one bucket per user; "plugin" (the default): one for the plugin
//! max_keys = 10000
//! max_kib = 16384         # keys and values together
//! max_value_kib = 64
//! ```
//!
//! A plugin opens a bucket by the exact name its policy grants; any other
//! name is refused and recorded. Its data lives in a namespace the host
//! makes from the plugin's own name, the granted bucket and (for `user`
//! scope) the user the call runs for, so no name a plugin passes reaches
//! another plugin's or user's data. A tool that does not declare
//! `write-state` gets every bucket read-only, and so do resource reads,
//! prompts and completions. Where the data is kept is the host's choice
//! (its services' store), not the policy's.

pub mod embedded;
mod guest;
pub mod redis;
pub mod store;

pub use guest::{BucketActivity, KeyValueCall};

use super::{Capability, Description, Need, Preparing, Reach, Resolving};
use crate::interface::types::Effects;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use store::{KeyValueStore, Quota};

/// The longest bucket name a policy may grant.
pub const MAX_BUCKET_NAME: usize = 64;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The largest value any policy may allow, in KiB.
pub const MAX_VALUE_KIB: u64 = 16 * 1024;

/// Who may change a bucket.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    #[default]
    ReadOnly,
    ReadWrite,
}

/// Whose a bucket's data is.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// One bucket for the plugin, whoever calls.
    #[default]
    Plugin,
    /// One bucket per user: a call sees only its user's keys.
    User,
}

/// One `[keyvalue.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub scope: Scope,
    /// Keys the bucket may hold [default: 10000].
    pub max_keys: Option<u64>,
    /// Keys and values together, in KiB [default: 16384].
    pub max_kib: Option<u64>,
    /// The largest value, in KiB [default: 64].
    pub max_value_kib: Option<u64>,
}

/// A bucket a plugin's calls may open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketGrant {
    pub name: String,
    pub access: Access,
    pub scope: Scope,
    pub quota: Quota,
    pub max_value_bytes: u64,
}

/// The store buckets live in, shared by every grant.
#[derive(Clone)]
pub struct StoreHandle(pub Arc<dyn KeyValueStore>);

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

/// The buckets a plugin may open, and where their data is.
#[derive(Clone, Debug, Default)]
pub struct KeyValueGrant {
    /// The plugin the buckets belong to: part of every namespace.
    pub plugin: Arc<str>,
    pub buckets: Arc<[BucketGrant]>,
    /// `None` when nothing is granted.
    pub store: Option<StoreHandle>,
}

impl KeyValueGrant {
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Whether `name` may name a bucket: 1 to 64 of `[a-z0-9_-]`, starting
/// with a letter or digit. One spelling per bucket, nothing that reads as
/// a path or looks like another name.
fn valid_bucket_name(name: &str) -> bool {
    (1..=MAX_BUCKET_NAME).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn resolve_bucket(name: &str, spec: &BucketSpec) -> Result<BucketGrant, String> {
    if !valid_bucket_name(name) {
        return Err(format!(
            "[keyvalue.{name}]: a bucket name is 1 to {MAX_BUCKET_NAME} of a-z, 0-9, _ and -, \
             starting with a letter or digit"
        ));
    }
    let max_value_kib = spec.max_value_kib.unwrap_or(64);
    if max_value_kib == 0 || max_value_kib > MAX_VALUE_KIB {
        return Err(format!(
            "[keyvalue.{name}] max_value_kib must be 1 to {MAX_VALUE_KIB}"
        ));
    }
    let max_kib = spec.max_kib.unwrap_or(16 * 1024);
    if max_kib == 0 || max_kib > 1 << 30 {
        return Err(format!(
            "[keyvalue.{name}] max_kib must be 1 to {}",
            1u64 << 30
        ));
    }
    let max_keys = spec.max_keys.unwrap_or(10_000);
    if max_keys == 0 {
        return Err(format!("[keyvalue.{name}] max_keys must be at least 1"));
    }
    Ok(BucketGrant {
        name: name.to_owned(),
        access: spec.access,
        scope: spec.scope,
        quota: Quota {
            max_keys,
            max_bytes: max_kib * 1024,
        },
        max_value_bytes: max_value_kib * 1024,
    })
}

/// Key-value buckets: exactly the ones a policy names, read-only unless
/// granted read-write and the tool declares `write-state`.
pub struct KeyValue;

impl Capability for KeyValue {
    const SECTION: &'static str = "keyvalue";
    type Spec = BTreeMap<String, BucketSpec>;
    type Grant = KeyValueGrant;
    type Call = KeyValueCall;

    fn resolve(
        spec: &BTreeMap<String, BucketSpec>,
        host: &Resolving,
    ) -> Result<KeyValueGrant, String> {
        let buckets = spec
            .iter()
            .map(|(name, spec)| resolve_bucket(name, spec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyValueGrant {
            plugin: host.plugin.into(),
            store: (!buckets.is_empty()).then(|| StoreHandle(host.services.keyvalue.clone())),
            buckets: buckets.into(),
        })
    }

    fn narrow(grant: &KeyValueGrant, effects: Effects) -> KeyValueGrant {
        match Need::of(effects, Effects::empty(), Effects::WRITE_STATE) {
            Need::Write => grant.clone(),
            Need::Read | Need::Nothing => KeyValueGrant {
                buckets: grant
                    .buckets
                    .iter()
                    .map(|bucket| BucketGrant {
                        access: Access::ReadOnly,
                        ..bucket.clone()
                    })
                    .collect(),
                ..grant.clone()
            },
        }
    }

    fn reach(grant: &KeyValueGrant) -> Reach {
        Reach {
            writes: grant.buckets.iter().any(|b| b.access == Access::ReadWrite),
            open_world: false,
        }
    }

    fn describe(grant: &KeyValueGrant) -> Description {
        let lines: Vec<String> = grant
            .buckets
            .iter()
            .map(|b| {
                format!(
                    "{} ({}, {}; at most {} keys, {} KiB, {} KiB a value)",
                    b.name,
                    match b.access {
                        Access::ReadOnly => "read-only",
                        Access::ReadWrite => "read-write",
                    },
                    match b.scope {
                        Scope::Plugin => "one for the plugin",
                        Scope::User => "one per user",
                    },
                    b.quota.max_keys,
                    b.quota.max_bytes / 1024,
                    b.max_value_bytes / 1024,
                )
            })
            .collect();
        let mut explained = lines.clone();
        explained.push(match lines.is_empty() {
            true => "none: every bucket is refused".to_owned(),
            false => "then: every other bucket is refused".to_owned(),
        });
        Description {
            title: "Key-value buckets",
            summary: lines.iter().map(|line| format!("bucket {line}")).collect(),
            explained,
        }
    }

    fn narrowed(grant: &KeyValueGrant, effects: Effects) -> Option<&'static str> {
        let writable = grant.buckets.iter().any(|b| b.access == Access::ReadWrite);
        (writable && !effects.contains(Effects::WRITE_STATE))
            .then_some("its buckets are read-only (it does not declare write-state)")
    }

    fn prepare(grant: &KeyValueGrant, call: &mut Preparing) -> anyhow::Result<KeyValueCall> {
        Ok(KeyValueCall::new(grant, call.user, call.denials))
    }

    fn add_to_linker<T: super::CallData>(
        linker: &mut wasmtime::component::Linker<T>,
    ) -> wasmtime::Result<()> {
        guest::add_to_linker(linker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> BTreeMap<String, BucketSpec> {
        toml::from_str(text).unwrap()
    }

    fn grant(text: &str) -> Result<KeyValueGrant, String> {
        let root = crate::capability::filesystem::Root::open(std::path::Path::new("/")).unwrap();
        let services = crate::capability::services::HostServices::default();
        let host = Resolving {
            plugin: "journal",
            root: &root,
            protected: &[],
            market_data: None,
            orders: None,
            services: &services,
        };
        KeyValue::resolve(&spec(text), &host)
    }

    #[test]
    fn buckets_have_one_spelling() {
        for bad in [
            "Insights",
            "../x",
            "a/b",
            "a.b",
            "-a",
            "insights\u{0131}",
            "",
        ] {
            let text = format!("[{bad:?}]\naccess = \"read-write\"\n");
            assert!(grant(&text).is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_BUCKET_NAME + 1);
        assert!(grant(&format!("[{long}]\n")).is_err());
        let ok = grant("[insights]\naccess = \"read-write\"\nscope = \"user\"\n").unwrap();
        assert_eq!(&*ok.plugin, "journal");
        assert_eq!(ok.buckets[0].scope, Scope::User);
        assert_eq!(ok.buckets[0].max_value_bytes, 64 * 1024);
    }

    #[test]
    fn limits_are_checked_and_fields_are_strict() {
        assert!(grant("[a]\nmax_value_kib = 0\n").is_err());
        assert!(grant("[a]\nmax_keys = 0\n").is_err());
        assert!(
            toml::from_str::<BTreeMap<String, BucketSpec>>("[a]\nacces = \"read-write\"\n")
                .is_err()
        );
        assert!(
            toml::from_str::<BTreeMap<String, BucketSpec>>("[a]\naccess = \"write\"\n").is_err()
        );
    }

    #[test]
    fn without_write_state_every_bucket_is_read_only() {
        let granted = grant("[a]\naccess = \"read-write\"\n[b]\n").unwrap();
        assert!(KeyValue::reach(&granted).writes);
        let reading = KeyValue::narrow(&granted, Effects::READ_FILES | Effects::NETWORK_WRITE);
        assert!(reading.buckets.iter().all(|b| b.access == Access::ReadOnly));
        assert!(!KeyValue::reach(&reading).writes);
        assert!(KeyValue::narrowed(&granted, Effects::empty()).is_some());
        let writing = KeyValue::narrow(&granted, Effects::WRITE_STATE);
        assert_eq!(writing.buckets[0].access, Access::ReadWrite);
        assert!(KeyValue::narrowed(&granted, Effects::WRITE_STATE).is_none());
    }
}
