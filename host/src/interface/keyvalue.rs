//! Host-side bindings of `wasi:keyvalue@0.2.0-draft2` (`wit/deps/keyvalue.wit`),
//! and what its handles stand for on the host: an open bucket is a grant
//! and the [`Namespace`] its data is in. The plugin world's bindings use
//! these (`with`); the keyvalue capability implements them. Kept here, below
//! every layer, so the interface imports nothing that imports it.

use std::sync::Arc;

wasmtime::component::bindgen!({
    world: "wasi:keyvalue/imports",
    path: "../wit/deps/keyvalue.wit",
    imports: { default: async | trappable },
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "wasi:keyvalue/atomics.cas": Cas,
    },
});

pub use wasi::keyvalue::{atomics, batch, store};

/// An open bucket: which of the call's bucket grants, and the namespace
/// its data is in.
pub struct Bucket {
    pub grant: usize,
    pub ns: Arc<Namespace>,
}

/// A compare-and-swap in progress.
pub struct Cas {
    pub grant: usize,
    pub ns: Arc<Namespace>,
    pub key: String,
    pub current: Option<Vec<u8>>,
}

/// Whose data a key belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace {
    /// The plugin (its file name): no plugin reaches another's buckets.
    pub plugin: String,
    /// The bucket as the policy grants it.
    pub bucket: String,
    /// For a per-user bucket, the user; `None` for the plugin's own.
    pub user: Option<String>,
}

impl Namespace {
    /// The namespace as a byte prefix: each part length-prefixed, so the
    /// encoding of one namespace followed by any key never equals another
    /// namespace's followed by any key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.plugin.len() + self.bucket.len());
        for part in [
            Some(self.plugin.as_str()),
            Some(self.bucket.as_str()),
            self.user.as_deref(),
        ] {
            match part {
                Some(text) => {
                    out.push(1);
                    out.extend((text.len() as u32).to_be_bytes());
                    out.extend(text.as_bytes());
                }
                None => out.push(0),
            }
        }
        out
    }

    /// The namespace `bytes` start with, and the rest of them.
    pub fn decode(bytes: &[u8]) -> Option<(Namespace, &[u8])> {
        let mut rest = bytes;
        let mut parts: [Option<String>; 3] = Default::default();
        for part in &mut parts {
            let (&tag, after) = rest.split_first()?;
            rest = after;
            if tag == 0 {
                continue;
            }
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let text = rest.get(4..4 + len)?;
            *part = Some(String::from_utf8(text.to_vec()).ok()?);
            rest = &rest[4 + len..];
        }
        let [plugin, bucket, user] = parts;
        Some((
            Namespace {
                plugin: plugin?,
                bucket: bucket?,
                user,
            },
            rest,
        ))
    }

    /// The key `key` of this namespace, as the backend stores it.
    pub fn key(&self, key: &str) -> Vec<u8> {
        let mut out = self.encode();
        out.extend(key.as_bytes());
        out
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.plugin, self.bucket)?;
        if let Some(user) = &self.user {
            write!(f, " (user {user})")?;
        }
        Ok(())
    }
}
