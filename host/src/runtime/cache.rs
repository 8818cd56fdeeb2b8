//! The compiled-component cache on disk, so a restart (or putting back a
//! plugin served before) does not compile again.
//!
//! `Component::deserialize` trusts its bytes, so the cache is guarded:
//!
//! - entries are named by the component's SHA-256 and the engine's
//!   compatibility hash, so a different engine or build never reads them;
//! - each entry is the compiled component as wasmtime writes it, then a
//!   trailer: a tag and the BLAKE3 digest of what precedes it, checked
//!   before use: a corrupt, truncated or foreign entry is deleted and
//!   rebuilt, never executed. The file checked is the file mapped: wasmtime
//!   maps it through the descriptor that was read, not by its name again,
//!   so a start reads a 35 MB entry once and copies none of it;
//! - entries are written to a temporary file and renamed into place;
//! - the folder is used only if this user owns it and no one else can
//!   write it, and no policy may mount it (see the policy protections);
//! - it holds at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] bytes:
//!   after each write the least recently used entries (by modification
//!   time, which a read refreshes) go, whatever engine made them.

use crate::digest::Digest;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The tag that begins an entry's trailer (entries of the first format,
/// `MCPHOST1` at the front, are foreign now: rebuilt once).
const TAG: &[u8; 8] = b"MCPHOST2";
/// The trailer's length: the tag, then a BLAKE3 digest.
const TRAILER: u64 = TAG.len() as u64 + blake3::OUT_LEN as u64;

/// The most entries the cache keeps.
pub const MAX_ENTRIES: usize = 256;
/// The most bytes the cache keeps (a compiled plugin is a few MiB).
pub const MAX_BYTES: u64 = 2 << 30;

/// Where compiled components are kept, if anywhere.
pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    /// No cache: every component is compiled.
    pub fn disabled() -> Self {
        ComponentCache {
            dir: None,
            engine_key: String::new(),
        }
    }

    /// The cache in `dir` (created, private to this user) for `engine`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, String> {
        let problem =
            |why: String| format!("not using the component cache {}: {why}", dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| problem(e.to_string()))?;
        let meta = std::fs::metadata(dir).map_err(|e| problem(e.to_string()))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(problem(format!(
                "it belongs to user {}, not to this user ({me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(problem(format!(
                "others can write to it (mode {:o}); make it private with chmod 700",
                meta.mode() & 0o777
            )));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            dir: Some(dir.to_owned()),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The folder in use, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component in `bytes` (whose SHA-256 is `hash`): from the cache if
    /// a sound entry exists, else compiled (and cached).
    pub fn component(
        &self,
        engine: &Engine,
        hash: &Digest,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        let Some(dir) = &self.dir else {
            return compile(engine, bytes);
        };
        let path = dir.join(format!("{}-{}.cwasm", hex::encode(hash), self.engine_key));
        if let Some(component) = read_entry(engine, &path) {
            return Ok(component);
        }
        let component = compile(engine, bytes)?;
        if let Err(e) = write_entry(dir, &path, &component) {
            tracing::warn!(path = %path.display(), "cannot cache a compiled component: {e}");
        }
        prune(dir, &path, MAX_ENTRIES, MAX_BYTES);
        Ok(component)
    }
}

fn compile(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    let component = Component::new(engine, bytes).map_err(|e| anyhow::anyhow!("{e:#}"));
    release_freed_memory();
    component
}

/// Hands memory freed by the compiler back to the operating system.
/// Compiling a component allocates tens of MiB across the compiling threads;
/// glibc keeps what they free in per-thread arenas, where it stayed resident
/// for the life of the host (~6 MiB per compiled plugin, 130 MiB after a
/// cold start with 20).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A sound entry at `path`; an unsound one is deleted.
fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let file = std::fs::File::open(path).ok()?;
    let component = sound_entry(engine, &file);
    if component.is_none() {
        tracing::warn!(path = %path.display(), "discarding a corrupt or foreign cache entry");
        let _ = std::fs::remove_file(path);
    } else {
        // Used now: the last entry pruning would take.
        let _ = file.set_modified(std::time::SystemTime::now());
    }
    component
}

/// The component in the entry open as `file`, if its trailer vouches for it.
fn sound_entry(engine: &Engine, file: &std::fs::File) -> Option<Component> {
    let payload = file.metadata().ok()?.len().checked_sub(TRAILER)?;
    let mut trailer = [0u8; TRAILER as usize];
    file.read_exact_at(&mut trailer, payload).ok()?;
    let (tag, digest) = trailer.split_at(TAG.len());
    if tag != TAG {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file.take(payload)).ok()?;
    if hasher.finalize().as_bytes() != digest {
        return None;
    }
    // The descriptor just read, not the name, which may since name another
    // file: entries are only ever replaced by renaming, never written in
    // place, so what is mapped is what was checked.
    let held = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    if held.exists() {
        // SAFETY: the payload is what this host serialized for this engine:
        // its digest matches, the folder is private, and the file is never
        // modified once written (see above).
        unsafe { Component::deserialize_file(engine, &held) }.ok()
    } else {
        // No /proc: read the checked file again through its descriptor.
        let mut bytes = vec![0; usize::try_from(payload).ok()?];
        file.read_exact_at(&mut bytes, 0).ok()?;
        // SAFETY: as above.
        unsafe { Component::deserialize(engine, &bytes) }.ok()
    }
}

/// Removes the least recently used entries (never `keep`) until at most
/// `max_entries` entries of at most `max_bytes` in all remain.
fn prune(dir: &Path, keep: &Path, max_entries: usize, max_bytes: u64) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, u64, PathBuf)> = listing
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), entry.path()))
        })
        .collect();
    entries.sort();
    let mut count = entries.len();
    let mut bytes: u64 = entries.iter().map(|(_, len, _)| len).sum();
    for (_, len, path) in entries {
        if count <= max_entries && bytes <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            count -= 1;
            bytes -= len;
        }
    }
}

fn write_entry(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    let payload = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(&payload)?;
    file.write_all(TAG)?;
    file.write_all(blake3::hash(&payload).as_bytes())?;
    file.as_file().sync_data()?;
    file.persist(path)?;
    Ok(())
}

/// The default cache folder: `$XDG_CACHE_HOME/mcp-host`, else
/// `~/.cache/mcp-host`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("mcp-host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A minimal component: an empty one compiles fast and is still a
    // component as far as the cache is concerned.
    const EMPTY_COMPONENT: &[u8] = b"\x00asm\x0d\x00\x01\x00";

    #[test]
    fn entries_are_reused_and_bad_ones_rebuilt() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = ComponentCache::open(&cache_dir, &engine).unwrap();
        let hash = crate::digest::sha256(EMPTY_COMPONENT);
        cache.component(&engine, &hash, EMPTY_COMPONENT).unwrap();
        let entries: Vec<_> = std::fs::read_dir(&cache_dir).unwrap().collect();
        assert_eq!(entries.len(), 1);
        let entry = entries[0].as_ref().unwrap().path();
        assert!(read_entry(&engine, &entry).is_some());
        let sound = std::fs::read(&entry).unwrap();
        let payload = sound.len() - TRAILER as usize;

        // Each way an entry can be wrong: it is discarded, then rebuilt.
        let flipped = |at: usize| {
            let mut data = sound.clone();
            data[at] ^= 0x01;
            data
        };
        let mut old_format = TAG.to_vec();
        old_format[7] = b'1';
        old_format.extend_from_slice(&[0; 32]);
        old_format.extend_from_slice(&sound[..payload]);
        let wrong: Vec<(&str, Vec<u8>)> = vec![
            ("a byte of the component", flipped(payload / 2)),
            ("the first byte", flipped(0)),
            ("a byte of the digest", flipped(sound.len() - 1)),
            ("a byte of the tag", flipped(payload)),
            ("truncated", sound[..sound.len() - 7].to_vec()),
            ("no trailer", sound[..payload].to_vec()),
            ("shorter than a trailer", sound[..20].to_vec()),
            ("empty", Vec::new()),
            ("the first format", old_format),
        ];
        for (why, data) in wrong {
            std::fs::write(&entry, &data).unwrap();
            assert!(read_entry(&engine, &entry).is_none(), "{why}");
            assert!(!entry.exists(), "{why}");
            cache.component(&engine, &hash, EMPTY_COMPONENT).unwrap();
            assert_eq!(std::fs::read(&entry).unwrap(), sound, "{why}");
        }
    }

    #[test]
    fn an_entry_is_mapped_from_the_file_that_was_checked() {
        // Replaced by renaming after the check (as another host writing the
        // same entry would): the component comes from the checked file.
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::open(dir.path(), &engine).unwrap();
        let hash = crate::digest::sha256(EMPTY_COMPONENT);
        cache.component(&engine, &hash, EMPTY_COMPONENT).unwrap();
        let entry = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let file = std::fs::File::open(&entry).unwrap();
        std::fs::rename(&entry, dir.path().join("elsewhere")).unwrap();
        std::fs::write(&entry, b"not a component").unwrap();
        assert!(sound_entry(&engine, &file).is_some());
        assert!(sound_entry(&engine, &std::fs::File::open(&entry).unwrap()).is_none());
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_within_both_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::time::SystemTime::now() - std::time::Duration::from_secs(1000);
        let entry = |name: &str, age: u64, len: usize| {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; len]).unwrap();
            let file = std::fs::File::options().append(true).open(&path).unwrap();
            file.set_modified(base + std::time::Duration::from_secs(age))
                .unwrap();
            path
        };
        let oldest = entry("a.cwasm", 1, 10);
        let old = entry("b.cwasm", 2, 10);
        let newer = entry("c.cwasm", 3, 10);
        let newest = entry("d.cwasm", 4, 10);
        let other = entry("notes.txt", 0, 10);
        prune(dir.path(), &newest, 3, 1000);
        assert!(!oldest.exists() && old.exists() && newer.exists() && newest.exists());
        // By size: 25 bytes leave room for two.
        prune(dir.path(), &newest, 10, 25);
        assert!(!old.exists() && newer.exists() && newest.exists());
        // The entry just written stays even if it alone is too big.
        prune(dir.path(), &newest, 10, 5);
        assert!(!newer.exists() && newest.exists() && other.exists());
    }

    #[test]
    fn a_folder_others_can_write_is_not_used() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = ComponentCache::open(dir.path(), &engine).err().unwrap();
        assert!(refused.contains("others can write"), "{refused}");
    }
}
