//! The guest's `wasi:keyvalue` functions: where every bucket operation is
//! checked against the call's (narrowed) grant before it reaches the store.

use super::store::{Change, Namespace, StoreError};
use super::{Access, BucketGrant, KeyValueGrant, MAX_KEY_BYTES, Scope};
use crate::capability::denials::{Denials, Rule};
use crate::interface::keyvalue::{Bucket, Cas, atomics, batch, store};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

/// Keys a `list-keys` page holds.
const PAGE: usize = 256;

/// Buckets and swaps one call may hold open at once.
const MAX_HANDLES: usize = 1024;

/// Distinct written keys an audit record names per bucket; the rest are
/// counted.
const NAMED_KEYS: usize = 20;
/// The longest key an audit record names, in bytes.
const NAMED_KEY_BYTES: usize = 128;

/// What one call did with one bucket, for the audit log: operations
/// counted, written keys named (never values).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BucketActivity {
    pub bucket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub reads: u64,
    pub writes: u64,
    /// The first distinct keys written, each cut to 128 bytes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Distinct keys written beyond those named.
    #[serde(skip_serializing_if = "is_zero")]
    pub more_keys: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one call holds of its buckets.
pub struct KeyValueCall {
    grant: KeyValueGrant,
    user: Option<String>,
    denials: Denials,
    table: ResourceTable,
    activity: Vec<BucketActivity>,
}

impl KeyValueCall {
    pub(super) fn new(grant: &KeyValueGrant, user: Option<&str>, denials: &Denials) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HANDLES);
        KeyValueCall {
            user: (!grant.is_empty())
                .then(|| user.map(str::to_owned))
                .flatten(),
            grant: grant.clone(),
            denials: denials.clone(),
            table,
            activity: Vec::new(),
        }
    }

    /// What the call did with its buckets, taken once it has ended.
    pub fn take_activity(&mut self) -> Vec<BucketActivity> {
        std::mem::take(&mut self.activity)
    }

    /// The activity record of the bucket whose data is in `ns`.
    fn activity_of(&mut self, ns: &Namespace) -> &mut BucketActivity {
        let found = self
            .activity
            .iter()
            .position(|a| a.bucket == ns.bucket && a.user == ns.user);
        let at = found.unwrap_or_else(|| {
            self.activity.push(BucketActivity {
                bucket: ns.bucket.clone(),
                user: ns.user.clone(),
                ..BucketActivity::default()
            });
            self.activity.len() - 1
        });
        &mut self.activity[at]
    }

    /// The namespace and grant (its index) of `handle`, counting `reads`
    /// reads of it. Nothing is copied but a reference count: reads are
    /// the common case, and cheap in the store.
    fn reading(
        &mut self,
        handle: &Resource<Bucket>,
        reads: usize,
    ) -> wasmtime::Result<(Arc<Namespace>, usize)> {
        let bucket = self.table.get(handle)?;
        let (ns, index) = (bucket.ns.clone(), bucket.grant);
        self.activity_of(&ns).reads += reads as u64;
        Ok((ns, index))
    }

    fn note_writes<'k>(&mut self, ns: &Namespace, keys: impl Iterator<Item = &'k str>) {
        let activity = self.activity_of(ns);
        for key in keys {
            activity.writes += 1;
            let mut named = key.to_owned();
            crate::printable::truncate(&mut named, NAMED_KEY_BYTES);
            if activity.keys.contains(&named) {
                continue;
            }
            if activity.keys.len() < NAMED_KEYS {
                activity.keys.push(named);
            } else {
                activity.more_keys += 1;
            }
        }
    }

    fn bucket(&self, handle: &Resource<Bucket>) -> wasmtime::Result<(&Bucket, &BucketGrant)> {
        let bucket = self.table.get(handle)?;
        Ok((bucket, &self.grant.buckets[bucket.grant]))
    }

    /// The store, and the bucket of `handle` if it may be written:
    /// otherwise the refusal, recorded.
    fn writable(
        &self,
        handle: &Resource<Bucket>,
        what: &str,
    ) -> wasmtime::Result<Result<(Arc<Namespace>, BucketGrant), store::Error>> {
        let (bucket, grant) = self.bucket(handle)?;
        if grant.access == Access::ReadOnly {
            self.denials.refuse(
                Rule::ReadOnlyBucket(grant.name.clone()),
                format!("{what} in the key-value bucket {}", grant.name),
            )?;
            return Ok(Err(store::Error::AccessDenied));
        }
        Ok(Ok((bucket.ns.clone(), grant.clone())))
    }

    /// Whether `key` and `value` are within the bucket's limits; if not,
    /// the refusal, recorded.
    fn within_limits(
        &self,
        grant: &BucketGrant,
        key: &str,
        value: Option<&[u8]>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let refusal = if key.len() > MAX_KEY_BYTES {
            Some(format!("keys are at most {MAX_KEY_BYTES} bytes"))
        } else {
            value
                .filter(|v| v.len() as u64 > grant.max_value_bytes)
                .map(|value| {
                    format!(
                        "a value of {} bytes is over max_value_kib = {}",
                        value.len(),
                        grant.max_value_bytes / 1024
                    )
                })
        };
        let Some(why) = refusal else {
            return Ok(Ok(()));
        };
        self.refuse_limit(grant, &why, key)
    }

    fn refuse_limit<T>(
        &self,
        grant: &BucketGrant,
        why: &str,
        key: &str,
    ) -> wasmtime::Result<Result<T, store::Error>> {
        self.denials.refuse(
            Rule::BucketLimit {
                bucket: grant.name.clone(),
                why: why.to_owned(),
            },
            format!("write {key:?} in the key-value bucket {}", grant.name),
        )?;
        Ok(Err(store::Error::Other(format!(
            "refused by the limits of the bucket {}: {why}",
            grant.name
        ))))
    }

    /// What a store error becomes for the guest: a quota hit is a refusal,
    /// recorded; the rest are errors.
    fn failed<T>(
        &self,
        grant: &BucketGrant,
        key: &str,
        error: StoreError,
    ) -> wasmtime::Result<Result<T, store::Error>> {
        match error {
            StoreError::OverQuota(why) => self.refuse_limit(grant, &why, key),
            other => Ok(Err(store::Error::Other(other.to_string()))),
        }
    }

    fn store(&self) -> &dyn super::store::KeyValueStore {
        // A bucket is open only where something is granted, and a grant
        // with buckets always has its store.
        &*self
            .grant
            .store
            .as_ref()
            .expect("a grant with buckets has a store")
            .0
    }
}

/// Adds the `wasi:keyvalue` interfaces to `linker`, each call reaching its
/// own [`KeyValueCall`].
pub fn add_to_linker<T: crate::capability::CallData>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    fn call<T: crate::capability::CallData>(data: &mut T) -> &mut KeyValueCall {
        &mut data.capabilities_mut().keyvalue
    }
    store::add_to_linker::<T, HasSelf<KeyValueCall>>(linker, call)?;
    atomics::add_to_linker::<T, HasSelf<KeyValueCall>>(linker, call)?;
    batch::add_to_linker::<T, HasSelf<KeyValueCall>>(linker, call)?;
    Ok(())
}

type Answer<T> = wasmtime::Result<Result<T, store::Error>>;

/// Unwraps a checked step: a refusal or error goes back to the guest.
macro_rules! checked {
    ($step:expr) => {
        match $step? {
            Ok(value) => value,
            Err(error) => return Ok(Err(error)),
        }
    };
}

impl store::Host for KeyValueCall {
    async fn open(&mut self, identifier: String) -> Answer<Resource<Bucket>> {
        let Some(index) = self.grant.buckets.iter().position(|b| b.name == identifier) else {
            self.denials.refuse(
                Rule::NoBucketGrant,
                format!("open the key-value bucket {identifier:?}"),
            )?;
            return Ok(Err(store::Error::NoSuchStore));
        };
        let grant = &self.grant.buckets[index];
        let user = match grant.scope {
            Scope::Plugin => None,
            Scope::User => match self.user.as_deref() {
                Some(user) if user != crate::principal::ANONYMOUS => Some(user.to_owned()),
                _ => {
                    self.denials.refuse(
                        Rule::NoUserForBucket(grant.name.clone()),
                        format!("open the per-user key-value bucket {}", grant.name),
                    )?;
                    return Ok(Err(store::Error::AccessDenied));
                }
            },
        };
        let ns = Namespace {
            plugin: self.grant.plugin.to_string(),
            bucket: grant.name.clone(),
            user,
        };
        self.activity_of(&ns);
        Ok(Ok(self.table.push(Bucket {
            grant: index,
            ns: Arc::new(ns),
        })?))
    }
}

impl store::HostBucket for KeyValueCall {
    async fn get(&mut self, handle: Resource<Bucket>, key: String) -> Answer<Option<Vec<u8>>> {
        let (ns, index) = self.reading(&handle, 1)?;
        match self.store().get(&ns, &key).await {
            Ok(value) => Ok(Ok(value)),
            Err(error) => self.failed(&self.grant.buckets[index], &key, error),
        }
    }

    async fn set(&mut self, handle: Resource<Bucket>, key: String, value: Vec<u8>) -> Answer<()> {
        self.set_many_in(&handle, vec![(key, Some(value))], "set")
            .await
    }

    async fn delete(&mut self, handle: Resource<Bucket>, key: String) -> Answer<()> {
        self.set_many_in(&handle, vec![(key, None)], "delete").await
    }

    async fn exists(&mut self, handle: Resource<Bucket>, key: String) -> Answer<bool> {
        let (ns, index) = self.reading(&handle, 1)?;
        match self.store().get(&ns, &key).await {
            Ok(value) => Ok(Ok(value.is_some())),
            Err(error) => self.failed(&self.grant.buckets[index], &key, error),
        }
    }

    async fn list_keys(
        &mut self,
        handle: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Answer<store::KeyResponse> {
        let (ns, index) = self.reading(&handle, 1)?;
        match self.store().list_keys(&ns, cursor.as_deref(), PAGE).await {
            Ok(keys) => Ok(Ok(store::KeyResponse {
                cursor: (keys.len() == PAGE).then(|| keys[PAGE - 1].clone()),
                keys,
            })),
            Err(error) => self.failed(&self.grant.buckets[index], "", error),
        }
    }

    async fn drop(&mut self, handle: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl KeyValueCall {
    /// Applies `changes` to the bucket of `handle`, together, if it may be
    /// written and each change is within its limits.
    async fn set_many_in(
        &mut self,
        handle: &Resource<Bucket>,
        changes: Vec<Change>,
        what: &str,
    ) -> Answer<()> {
        let (ns, grant) = checked!(self.writable(handle, what));
        for (key, value) in &changes {
            checked!(self.within_limits(&grant, key, value.as_deref()));
        }
        let keys: Vec<String> = changes.iter().map(|(key, _)| key.clone()).collect();
        match self.store().write(&ns, changes, &grant.quota).await {
            Ok(()) => {
                self.note_writes(&ns, keys.iter().map(String::as_str));
                Ok(Ok(()))
            }
            Err(error) => {
                let first = keys.first().map(String::as_str).unwrap_or_default();
                self.failed(&grant, first, error)
            }
        }
    }
}

impl atomics::Host for KeyValueCall {
    async fn increment(
        &mut self,
        handle: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Answer<i64> {
        let (ns, grant) = checked!(self.writable(&handle, "increment a key"));
        checked!(self.within_limits(&grant, &key, Some(&[0; 20])));
        match self.store().increment(&ns, &key, delta, &grant.quota).await {
            Ok(sum) => {
                self.note_writes(&ns, std::iter::once(key.as_str()));
                Ok(Ok(sum))
            }
            Err(error) => self.failed(&grant, &key, error),
        }
    }

    async fn swap(
        &mut self,
        handle: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(handle)?;
        let grant = self.grant.buckets[cas.grant].clone();
        let store_error = |e| Ok(Err(atomics::CasError::StoreError(e)));
        if grant.access == Access::ReadOnly {
            self.denials.refuse(
                Rule::ReadOnlyBucket(grant.name.clone()),
                format!("swap a key in the key-value bucket {}", grant.name),
            )?;
            return store_error(store::Error::AccessDenied);
        }
        if let Err(e) = self.within_limits(&grant, &cas.key, Some(&value))? {
            return store_error(e);
        }
        let swapped = self
            .store()
            .swap(
                &cas.ns,
                &cas.key,
                cas.current.as_deref(),
                value,
                &grant.quota,
            )
            .await;
        match swapped {
            Ok(Ok(())) => {
                self.note_writes(&cas.ns, std::iter::once(cas.key.as_str()));
                Ok(Ok(()))
            }
            Ok(Err(current)) => {
                let retry = self.table.push(Cas { current, ..cas })?;
                Ok(Err(atomics::CasError::CasFailed(retry)))
            }
            Err(error) => match self.failed::<()>(&grant, &cas.key, error)? {
                Ok(()) => Ok(Ok(())),
                Err(e) => store_error(e),
            },
        }
    }
}

impl atomics::HostCas for KeyValueCall {
    async fn new(&mut self, handle: Resource<Bucket>, key: String) -> Answer<Resource<Cas>> {
        let (bucket, grant) = self.bucket(&handle)?;
        let (ns, index) = (bucket.ns.clone(), bucket.grant);
        let current = match self.store().get(&ns, &key).await {
            Ok(value) => value,
            Err(error) => return self.failed(&grant.clone(), &key, error),
        };
        Ok(Ok(self.table.push(Cas {
            grant: index,
            ns,
            key,
            current,
        })?))
    }

    async fn current(&mut self, handle: Resource<Cas>) -> Answer<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&handle)?.current.clone()))
    }

    async fn drop(&mut self, handle: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl batch::Host for KeyValueCall {
    async fn get_many(
        &mut self,
        handle: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Answer<Vec<Option<(String, Vec<u8>)>>> {
        let (ns, index) = self.reading(&handle, keys.len())?;
        match self.store().get_many(&ns, &keys).await {
            Ok(values) => Ok(Ok(keys
                .into_iter()
                .zip(values)
                .map(|(key, value)| value.map(|value| (key, value)))
                .collect())),
            Err(error) => self.failed(&self.grant.buckets[index], "", error),
        }
    }

    async fn set_many(
        &mut self,
        handle: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Answer<()> {
        let changes = key_values.into_iter().map(|(k, v)| (k, Some(v))).collect();
        self.set_many_in(&handle, changes, "set").await
    }

    async fn delete_many(&mut self, handle: Resource<Bucket>, keys: Vec<String>) -> Answer<()> {
        let changes = keys.into_iter().map(|key| (key, None)).collect();
        self.set_many_in(&handle, changes, "delete").await
    }
}
