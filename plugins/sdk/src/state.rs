//! State a plugin keeps between calls: the key-value buckets its policy
//! grants (`[keyvalue.NAME]` in `policies/<plugin>.toml`).
//!
//! ```ignore
//! let notes = Bucket::open("notes")?;
//! notes.set_json("note-1", &note)?;
//! let count = notes.increment("count", 1)?;
//! ```
//!
//! A bucket is the plugin's own (or, with `scope = "user"`, the calling
//! user's own). A tool writes only if it declares
//! [`Effects::WRITE_STATE`](crate::Effects) and the policy grants the
//! bucket read-write; otherwise writes fail with the host's refusal.

use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a bucket operation failed, in the host's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError(pub String);

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StateError {}

fn describe(bucket: &str, error: store::Error) -> StateError {
    // The name as asked for, which may be anything: cut to a readable size.
    let bucket = match bucket.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &bucket[..at]),
        None => bucket.to_owned(),
    };
    StateError(match error {
        store::Error::NoSuchStore => format!(
            "no bucket {bucket:?} is granted to this plugin (add [keyvalue.{bucket}] to its policy)"
        ),
        store::Error::AccessDenied => format!(
            "the bucket {bucket} refused this: it is read-only here (granted read-only, or the \
             tool does not declare write-state), or per user with no user calling"
        ),
        store::Error::Other(text) => text,
    })
}

/// An open bucket.
pub struct Bucket {
    name: String,
    inner: store::Bucket,
}

impl Bucket {
    /// Opens the bucket the policy grants as `name`.
    pub fn open(name: &str) -> Result<Bucket, StateError> {
        let inner = store::open(name).map_err(|e| describe(name, e))?;
        Ok(Bucket {
            name: name.to_owned(),
            inner,
        })
    }

    fn check<T>(&self, result: Result<T, store::Error>) -> Result<T, StateError> {
        result.map_err(|e| describe(&self.name, e))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.check(self.inner.get(key))
    }

    /// The value of `key`, read as JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError(format!("{key:?} does not hold the JSON expected: {e}"))),
        }
    }

    /// Sets `key` to `value`; durable when it returns.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.check(self.inner.set(key, value))
    }

    /// Sets `key` to `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StateError(e.to_string()))?;
        self.set(key, &bytes)
    }

    /// Removes `key`; nothing when it is absent.
    pub fn delete(&self, key: &str) -> Result<(), StateError> {
        self.check(self.inner.delete(key))
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool, StateError> {
        self.check(self.inner.exists(key))
    }

    /// Every key, in key order (read a page at a time).
    pub fn keys(&self) -> Result<Vec<String>, StateError> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.check(self.inner.list_keys(cursor.as_deref()))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// The values of `keys`, in order.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StateError> {
        let found = self.check(batch::get_many(&self.inner, keys))?;
        Ok(found.into_iter().map(|pair| pair.map(|(_, v)| v)).collect())
    }

    /// Sets every key of `pairs` together: all or none.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StateError> {
        self.check(batch::set_many(&self.inner, pairs))
    }

    /// Adds `delta` to the integer `key` holds (0 when absent); the sum.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StateError> {
        self.check(atomics::increment(&self.inner, key, delta))
    }

    /// Changes the JSON value of `key` with `change`, retrying when another
    /// call changed it in between (compare-and-swap); the value written.
    pub fn update_json<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<T>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut cas = self.check(atomics::Cas::new(&self.inner, key))?;
        for _ in 0..100 {
            let current = match self.check(cas.current())? {
                Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                    StateError(format!("{key:?} does not hold the JSON expected: {e}"))
                })?),
                None => None,
            };
            let next = change(current)?;
            let bytes = serde_json::to_vec(&next).map_err(|e| StateError(e.to_string()))?;
            match atomics::swap(cas, &bytes) {
                Ok(()) => return Ok(next),
                Err(atomics::CasError::CasFailed(retry)) => cas = retry,
                Err(atomics::CasError::StoreError(e)) => return Err(describe(&self.name, e)),
            }
        }
        Err(StateError(format!(
            "{key:?} kept changing under 100 attempts to update it"
        )))
    }
}
