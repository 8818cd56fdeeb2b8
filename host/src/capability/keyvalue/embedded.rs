//! The embedded backend: one redb file (ACID, copy-on-write B-trees) under
//! the host's state folder, or memory for tests and `check`.
//!
//! Each write is one redb transaction that changes the keys and the
//! namespace's usage together and commits durably (fsync) before the
//! guest's call returns: a write the plugin saw succeed survives the host
//! being killed, and one refused by the quota leaves nothing behind. Writes
//! run on tokio's blocking threads (a commit waits for the disk); reads,
//! served from redb's cache, run where they are asked.

use super::store::{Change, KeyValueStore, Namespace, Quota, StoreError, Usage, add, integer};
use async_trait::async_trait;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Every key of every namespace: the namespace's encoding, then the key.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// What each namespace holds: (keys, bytes).
const USAGE: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("usage");

/// The store file's name in the state folder.
pub const FILE: &str = "keyvalue.redb";

/// A redb database, opened when first needed: a host that grants no bucket
/// never creates the file, and one whose file another host holds still
/// serves everything else (each bucket operation says why it cannot).
pub struct EmbeddedStore {
    place: Place,
    database: Mutex<Option<Arc<Database>>>,
}

enum Place {
    File(PathBuf),
    Memory,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// The store in `state_dir`'s [`FILE`].
    pub fn in_folder(state_dir: &Path) -> EmbeddedStore {
        EmbeddedStore {
            place: Place::File(state_dir.join(FILE)),
            database: Mutex::new(None),
        }
    }

    /// A store in memory, gone with the process.
    pub fn in_memory() -> EmbeddedStore {
        EmbeddedStore {
            place: Place::Memory,
            database: Mutex::new(None),
        }
    }

    /// The database, opened (and created) on first use.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        let mut held = self.database.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(database) = &*held {
            return Ok(database.clone());
        }
        let database = match &self.place {
            Place::Memory => Database::builder()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(unavailable)?,
            Place::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Database::create(path).map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => unavailable(format!(
                        "{} is open in another host process; give each host its own state \
                         folder, or share state through Redis",
                        path.display()
                    )),
                    e => unavailable(format!("cannot open {}: {e}", path.display())),
                })?
            }
        };
        let database = Arc::new(database);
        *held = Some(database.clone());
        Ok(database)
    }

    /// Opens the store now, so that a problem shows at start.
    pub fn open(&self) -> Result<(), StoreError> {
        self.database().map(drop)
    }

    /// Runs `change` in one write transaction on a blocking thread:
    /// committed durably when it returns `Ok`, aborted (nothing changed)
    /// when it returns an error.
    async fn write_with<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Tables) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let database = self.database()?;
        tokio::task::spawn_blocking(move || {
            let txn = database.begin_write().map_err(unavailable)?;
            let result = {
                let mut tables = Tables {
                    entries: txn.open_table(ENTRIES).map_err(unavailable)?,
                    usage: txn.open_table(USAGE).map_err(unavailable)?,
                };
                change(&mut tables)
            };
            match result {
                Ok(value) => {
                    txn.commit().map_err(unavailable)?;
                    Ok(value)
                }
                Err(e) => {
                    txn.abort().map_err(unavailable)?;
                    Err(e)
                }
            }
        })
        .await
        .map_err(unavailable)?
    }

    /// Runs `read` on a read transaction's entries table (`None`: nothing
    /// was ever written).
    fn read_with<R>(
        &self,
        read: impl FnOnce(Option<&redb::ReadOnlyTable<&[u8], &[u8]>>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let database = self.database()?;
        let txn = database.begin_read().map_err(unavailable)?;
        match txn.open_table(ENTRIES) {
            Ok(table) => read(Some(&table)),
            Err(redb::TableError::TableDoesNotExist(_)) => read(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The tables of one write transaction.
struct Tables<'txn> {
    entries: Table<'txn, &'static [u8], &'static [u8]>,
    usage: Table<'txn, &'static [u8], (u64, u64)>,
}

impl Tables<'_> {
    fn usage(&self, ns: &[u8]) -> Result<Usage, StoreError> {
        Ok(match self.usage.get(ns).map_err(unavailable)? {
            Some(found) => {
                let (keys, bytes) = found.value();
                Usage { keys, bytes }
            }
            None => Usage::default(),
        })
    }

    fn set_usage(&mut self, ns: &[u8], usage: Usage) -> Result<(), StoreError> {
        if usage.keys == 0 {
            self.usage.remove(ns).map_err(unavailable)?;
        } else {
            self.usage
                .insert(ns, (usage.keys, usage.bytes))
                .map_err(unavailable)?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .entries
            .get(key)
            .map_err(unavailable)?
            .map(|v| v.value().to_vec()))
    }

    /// Sets (or, with `None`, deletes) `key` of `ns`, keeping its usage
    /// within `quota`.
    fn change(
        &mut self,
        ns: &Namespace,
        key: &str,
        value: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), StoreError> {
        let prefix = ns.encode();
        let full = ns.key(key);
        let old = self
            .entries
            .get(full.as_slice())
            .map_err(unavailable)?
            .map(|v| v.value().len());
        let usage = self
            .usage(&prefix)?
            .after(key, old, value.map(<[u8]>::len), quota)?;
        match value {
            Some(value) => {
                self.entries
                    .insert(full.as_slice(), value)
                    .map_err(unavailable)?;
            }
            None => {
                self.entries.remove(full.as_slice()).map_err(unavailable)?;
            }
        }
        self.set_usage(&prefix, usage)
    }
}

#[async_trait]
impl KeyValueStore for EmbeddedStore {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = ns.key(key);
        self.read_with(|table| match table {
            Some(table) => Ok(table
                .get(full.as_slice())
                .map_err(unavailable)?
                .map(|v| v.value().to_vec())),
            None => Ok(None),
        })
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read_with(|table| {
            keys.iter()
                .map(|key| match table {
                    Some(table) => Ok(table
                        .get(ns.key(key).as_slice())
                        .map_err(unavailable)?
                        .map(|v| v.value().to_vec())),
                    None => Ok(None),
                })
                .collect()
        })
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = ns.encode();
        self.read_with(|table| {
            let Some(table) = table else {
                return Ok(Vec::new());
            };
            let start = ns.key(after.unwrap_or_default());
            let mut keys = Vec::new();
            for entry in table.range(start.as_slice()..).map_err(unavailable)? {
                let (key, _) = entry.map_err(unavailable)?;
                let Some(rest) = key.value().strip_prefix(prefix.as_slice()) else {
                    break;
                };
                let key = String::from_utf8_lossy(rest).into_owned();
                if after == Some(key.as_str()) {
                    continue;
                }
                keys.push(key);
                if keys.len() == limit {
                    break;
                }
            }
            Ok(keys)
        })
    }

    async fn write(
        &self,
        ns: &Namespace,
        changes: Vec<Change>,
        quota: &Quota,
    ) -> Result<(), StoreError> {
        let (ns, quota) = (ns.clone(), *quota);
        self.write_with(move |tables| {
            for (key, value) in &changes {
                tables.change(&ns, key, value.as_deref(), &quota)?;
            }
            Ok(())
        })
        .await
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, StoreError> {
        let (ns, key, quota) = (ns.clone(), key.to_owned(), *quota);
        self.write_with(move |tables| {
            let current = tables.get(&ns.key(&key))?;
            let sum = add(&key, integer(&key, current.as_deref())?, delta)?;
            tables.change(&ns, &key, Some(sum.to_string().as_bytes()), &quota)?;
            Ok(sum)
        })
        .await
    }

    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        quota: &Quota,
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
        let (ns, key, quota) = (ns.clone(), key.to_owned(), *quota);
        let expected = expected.map(<[u8]>::to_vec);
        self.write_with(move |tables| {
            let current = tables.get(&ns.key(&key))?;
            if current != expected {
                return Ok(Err(current));
            }
            tables.change(&ns, &key, Some(&value), &quota)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn namespaces(&self) -> Result<Vec<(Namespace, Usage)>, StoreError> {
        let database = self.database()?;
        let txn = database.begin_read().map_err(unavailable)?;
        let table = match txn.open_table(USAGE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let mut found = Vec::with_capacity(table.len().map_err(unavailable)? as usize);
        for entry in table.iter().map_err(unavailable)? {
            let (ns, usage) = entry.map_err(unavailable)?;
            if let Some((ns, _)) = Namespace::decode(ns.value()) {
                let (keys, bytes) = usage.value();
                found.push((ns, Usage { keys, bytes }));
            }
        }
        Ok(found)
    }

    async fn entries(&self, ns: &Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = ns.encode();
        self.read_with(|table| {
            let Some(table) = table else {
                return Ok(Vec::new());
            };
            let mut found = Vec::new();
            for entry in table.range(prefix.as_slice()..).map_err(unavailable)? {
                let (key, value) = entry.map_err(unavailable)?;
                let Some(rest) = key.value().strip_prefix(prefix.as_slice()) else {
                    break;
                };
                found.push((
                    String::from_utf8_lossy(rest).into_owned(),
                    value.value().to_vec(),
                ));
            }
            Ok(found)
        })
    }

    async fn remove(&self, ns: &Namespace) -> Result<u64, StoreError> {
        let prefix = ns.encode();
        self.write_with(move |tables| {
            let from = prefix.clone();
            let removed = tables
                .entries
                .extract_if(from.as_slice().., |key: &[u8], _: &[u8]| {
                    key.starts_with(&prefix)
                })
                .map_err(unavailable)?
                .count() as u64;
            tables.usage.remove(from.as_slice()).map_err(unavailable)?;
            Ok(removed)
        })
        .await
    }

    fn stored_bytes(&self) -> Option<u64> {
        match &self.place {
            Place::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Place::Memory => None,
        }
    }

    fn describe(&self) -> String {
        match &self.place {
            Place::File(path) => format!("embedded ({})", path.display()),
            Place::Memory => "in memory".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(user: Option<&str>) -> Namespace {
        Namespace {
            plugin: "journal".into(),
            bucket: "insights".into(),
            user: user.map(str::to_owned),
        }
    }

    const ROOMY: Quota = Quota {
        max_keys: 100,
        max_bytes: 1 << 20,
    };

    #[tokio::test]
    async fn writes_are_kept_apart_by_namespace_and_counted() {
        let store = EmbeddedStore::in_memory();
        let (alice, bob) = (ns(Some("alice")), ns(Some("bob")));
        store
            .write(&alice, vec![("k".into(), Some(b"v1".to_vec()))], &ROOMY)
            .await
            .unwrap();
        assert_eq!(store.get(&alice, "k").await.unwrap(), Some(b"v1".to_vec()));
        assert_eq!(store.get(&bob, "k").await.unwrap(), None);
        assert_eq!(
            store.list_keys(&bob, None, 10).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.increment(&bob, "n", 5, &ROOMY).await.unwrap(), 5);
        assert_eq!(store.increment(&bob, "n", -7, &ROOMY).await.unwrap(), -2);
        let spaces = store.namespaces().await.unwrap();
        assert_eq!(spaces.len(), 2);
        assert!(spaces.contains(&(alice.clone(), Usage { keys: 1, bytes: 3 })));
        assert_eq!(store.remove(&alice).await.unwrap(), 1);
        assert_eq!(store.get(&alice, "k").await.unwrap(), None);
        assert_eq!(store.namespaces().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_write_over_quota_changes_nothing() {
        let store = EmbeddedStore::in_memory();
        let quota = Quota {
            max_keys: 2,
            max_bytes: 100,
        };
        let space = ns(None);
        let three = vec![
            ("a".into(), Some(b"1".to_vec())),
            ("b".into(), Some(b"2".to_vec())),
            ("c".into(), Some(b"3".to_vec())),
        ];
        let refused = store.write(&space, three, &quota).await.unwrap_err();
        assert!(matches!(refused, StoreError::OverQuota(_)), "{refused}");
        assert!(store.entries(&space).await.unwrap().is_empty());
        assert!(store.namespaces().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn swaps_happen_only_on_the_value_expected() {
        let store = EmbeddedStore::in_memory();
        let space = ns(None);
        assert_eq!(
            store
                .swap(&space, "k", None, b"a".to_vec(), &ROOMY)
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            store
                .swap(&space, "k", None, b"b".to_vec(), &ROOMY)
                .await
                .unwrap(),
            Err(Some(b"a".to_vec()))
        );
        assert_eq!(
            store
                .swap(&space, "k", Some(b"a"), b"c".to_vec(), &ROOMY)
                .await
                .unwrap(),
            Ok(())
        );
        assert_eq!(store.get(&space, "k").await.unwrap(), Some(b"c".to_vec()));
    }

    #[tokio::test]
    async fn keys_list_in_pages_after_a_cursor() {
        let store = EmbeddedStore::in_memory();
        let space = ns(None);
        let changes = (0..5)
            .map(|i| (format!("k{i}"), Some(vec![b'x'])))
            .collect();
        store.write(&space, changes, &ROOMY).await.unwrap();
        // Another namespace's keys sort right after: never listed.
        store
            .write(&ns(Some("z")), vec![("k9".into(), Some(vec![1]))], &ROOMY)
            .await
            .unwrap();
        let first = store.list_keys(&space, None, 2).await.unwrap();
        assert_eq!(first, ["k0", "k1"]);
        let rest = store.list_keys(&space, Some("k1"), 10).await.unwrap();
        assert_eq!(rest, ["k2", "k3", "k4"]);
    }

    #[tokio::test]
    async fn a_file_store_keeps_what_it_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let space = ns(None);
        {
            let store = EmbeddedStore::in_folder(dir.path());
            store
                .write(&space, vec![("k".into(), Some(b"kept".to_vec()))], &ROOMY)
                .await
                .unwrap();
        }
        let store = EmbeddedStore::in_folder(dir.path());
        assert_eq!(
            store.get(&space, "k").await.unwrap(),
            Some(b"kept".to_vec())
        );
        // Another handle on the same file is refused, with what to do.
        let other = EmbeddedStore::in_folder(dir.path());
        let refused = other.open().unwrap_err().to_string();
        assert!(refused.contains("another host process"), "{refused}");
    }
}
