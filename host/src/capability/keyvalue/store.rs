//! Where granted buckets keep their data: the [`KeyValueStore`] backend
//! trait, the namespaces that keep plugins' and users' data apart, and the
//! quota arithmetic every backend shares.
//!
//! A backend never sees a bucket name a plugin chose: the capability
//! matches the plugin's `open` against its policy and hands the backend a
//! [`Namespace`] built from the plugin's own name, the granted bucket and
//! the user the call runs for. Those are encoded length-prefixed, so no
//! two namespaces share an encoding and no key of one is a key of another.

use async_trait::async_trait;

pub use crate::interface::keyvalue::Namespace;

/// What one namespace may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub max_keys: u64,
    /// Keys and values together, in bytes.
    pub max_bytes: u64,
}

/// What one namespace holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub keys: u64,
    /// Keys and values together, in bytes.
    pub bytes: u64,
}

impl Usage {
    /// The usage after `key` changes from holding `old` bytes to holding
    /// `new` (`None`: no value), or why that is over `quota`. A change that
    /// takes nothing new (a delete, a smaller value) is never refused.
    pub fn after(
        self,
        key: &str,
        old: Option<usize>,
        new: Option<usize>,
        quota: &Quota,
    ) -> Result<Usage, StoreError> {
        let size = |value: Option<usize>| value.map_or(0, |v| (key.len() + v) as u64);
        let keys = self.keys - u64::from(old.is_some()) + u64::from(new.is_some());
        let bytes = (self.bytes + size(new)).saturating_sub(size(old));
        if keys > self.keys && keys > quota.max_keys {
            return Err(StoreError::OverQuota(format!(
                "the bucket holds its most keys (max_keys = {})",
                quota.max_keys
            )));
        }
        if bytes > self.bytes && bytes > quota.max_bytes {
            return Err(StoreError::OverQuota(format!(
                "the bucket would hold {bytes} bytes (max_kib = {})",
                quota.max_bytes / 1024
            )));
        }
        Ok(Usage { keys, bytes })
    }
}

/// Why a store operation did not happen. Whatever the error, the store is
/// as it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The write would take the namespace past its quota.
    #[error("{0}")]
    OverQuota(String),
    /// `increment` on a value that is not a 64-bit integer, or an
    /// increment past one.
    #[error("{0}")]
    NotAnInteger(String),
    /// The backend cannot be reached or failed.
    #[error("the key-value store is unavailable: {0}")]
    Unavailable(String),
}

/// The value `increment` adds to, from what the key holds.
pub fn integer(key: &str, value: Option<&[u8]>) -> Result<i64, StoreError> {
    let Some(value) = value else {
        return Ok(0);
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| {
            StoreError::NotAnInteger(format!(
                "{key:?} does not hold an integer (increment keeps its value as decimal text)"
            ))
        })
}

/// `current + delta`, or why not.
pub fn add(key: &str, current: i64, delta: i64) -> Result<i64, StoreError> {
    current
        .checked_add(delta)
        .ok_or_else(|| StoreError::NotAnInteger(format!("{key:?} would pass a 64-bit integer")))
}

/// One change of a write: `key` set to a value, or deleted (`None`).
pub type Change = (String, Option<Vec<u8>>);

/// A backend for granted buckets. Every write applies whole or not at all,
/// is durable when it returns, and keeps each namespace within the quota it
/// is given; reads see every write that returned.
#[async_trait]
pub trait KeyValueStore: Send + Sync {
    /// The value of `key`.
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The values of `keys`, in order.
    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Up to `limit` keys after `after`, in order.
    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Applies `changes` together, or none of them when they would take
    /// `ns` past `quota`.
    async fn write(
        &self,
        ns: &Namespace,
        changes: Vec<Change>,
        quota: &Quota,
    ) -> Result<(), StoreError>;

    /// Adds `delta` to the integer `key` holds (0 when absent); the sum.
    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, StoreError>;

    /// Sets `key` to `value` if it holds `expected`; otherwise leaves it
    /// and gives back what it holds (`Ok(Err(current))`).
    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        quota: &Quota,
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError>;

    /// Every namespace holding data, with what it holds.
    async fn namespaces(&self) -> Result<Vec<(Namespace, Usage)>, StoreError>;

    /// Every key of `ns` with its value, in key order.
    async fn entries(&self, ns: &Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Removes everything `ns` holds; how many keys that was.
    async fn remove(&self, ns: &Namespace) -> Result<u64, StoreError>;

    /// Where the data is, for people.
    fn describe(&self) -> String;

    /// What the store takes on disk, in bytes, when it knows (a shared
    /// store reports its own).
    fn stored_bytes(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(plugin: &str, bucket: &str, user: Option<&str>) -> Namespace {
        Namespace {
            plugin: plugin.into(),
            bucket: bucket.into(),
            user: user.map(str::to_owned),
        }
    }

    #[test]
    fn no_key_of_one_namespace_is_a_key_of_another() {
        // Parts that run into each other when joined naively.
        let spaces = [
            ns("a", "bc", None),
            ns("ab", "c", None),
            ns("a", "b", Some("c")),
            ns("a", "b", Some("")),
            ns("a", "b", None),
            ns("a/b", "c", None),
        ];
        for (i, one) in spaces.iter().enumerate() {
            let stored = one.key("k/../x");
            let (decoded, rest) = Namespace::decode(&stored).unwrap();
            assert_eq!((&decoded, rest), (one, b"k/../x".as_slice()));
            for other in &spaces[i + 1..] {
                assert!(!other.key("").starts_with(&one.encode()), "{one} {other}");
                assert!(!one.key("").starts_with(&other.encode()), "{one} {other}");
            }
        }
    }

    #[test]
    fn quotas_refuse_growth_but_never_shrinking() {
        let quota = Quota {
            max_keys: 2,
            max_bytes: 20,
        };
        let usage = Usage::default();
        let one = usage.after("a", None, Some(5), &quota).unwrap();
        assert_eq!(one, Usage { keys: 1, bytes: 6 });
        let two = one.after("b", None, Some(5), &quota).unwrap();
        assert!(matches!(
            two.after("c", None, Some(1), &quota),
            Err(StoreError::OverQuota(_))
        ));
        assert!(matches!(
            two.after("b", Some(5), Some(30), &quota),
            Err(StoreError::OverQuota(_))
        ));
        assert_eq!(
            two.after("b", Some(5), None, &quota).unwrap(),
            Usage { keys: 1, bytes: 6 }
        );
        // Already over (a quota lowered since): shrinking still works.
        let over = Usage {
            keys: 5,
            bytes: 100,
        };
        assert!(over.after("a", Some(10), Some(5), &quota).is_ok());
    }

    #[test]
    fn increments_add_to_decimal_text() {
        assert_eq!(integer("k", None), Ok(0));
        assert_eq!(integer("k", Some(b"-41")), Ok(-41));
        assert!(integer("k", Some(b"4.5")).is_err());
        assert!(add("k", i64::MAX, 1).is_err());
    }
}
