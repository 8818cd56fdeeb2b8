//! What a policy's mounts are checked for before they are granted: plain
//! guest paths, no overlaps, and nothing of the host's own in reach.

use super::{Access, Mount};
use std::path::{Path, PathBuf};

/// Refuses mount sets where one mount lies inside another: with both a
/// read-only and a read-write view of the same files, the read-only promise
/// is hard to keep (see wasmtime advisory GHSA-4ch3-9j33-3pmj), and two
/// guest paths for one file confuse plugins.
pub(super) fn check_overlaps(mounts: &[Mount]) -> Result<(), String> {
    for (i, a) in mounts.iter().enumerate() {
        for b in &mounts[i + 1..] {
            if a.host.starts_with(&b.host) || b.host.starts_with(&a.host) {
                return Err(format!(
                    "mounts {} and {} overlap: mount each folder once",
                    a.host.display(),
                    b.host.display()
                ));
            }
            if a.guest == b.guest {
                return Err(format!("two mounts use the guest path {}", a.guest));
            }
        }
    }
    Ok(())
}

/// A path of the host's own that mounts must not reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protected {
    pub path: PathBuf,
    /// What it is, for the error: "the policies folder".
    pub what: &'static str,
    /// Whether read-only mounts are refused too (secrets inside), or only
    /// read-write ones that are it or hold it.
    pub secret: bool,
}

impl Protected {
    /// Protects `path` (resolved now, whether or not it exists yet).
    pub fn new(path: &Path, what: &'static str, secret: bool) -> Protected {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let path = absolute.canonicalize().unwrap_or_else(|_| {
            match (
                absolute.parent().and_then(|p| p.canonicalize().ok()),
                absolute.file_name(),
            ) {
                (Some(parent), Some(name)) => parent.join(name),
                _ => absolute.clone(),
            }
        });
        Protected { path, what, secret }
    }
}

/// A file or folder's identity: the same for every path that reaches it
/// (links, bind mounts, case-insensitive spellings).
type Identity = (u64, u64);

fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The identities of `path` and of every folder above it, up to `/`
/// (those of its parts that exist).
fn identities_up(path: &Path) -> Vec<Identity> {
    path.ancestors().filter_map(identity).collect()
}

/// Refuses mounts that would let a plugin reach the host's own files: its
/// policies (which a plugin could rewrite to widen its grants, and which may
/// hold secrets), its config file and the folder holding it, its
/// compiled-component cache (which the host executes), its audit log, or —
/// for writing — the plugins folder.
///
/// Compared by identity (device and inode) as well as by path, so no
/// spelling of a folder — a link, a bind mount, another case — gets past
/// it; and a protected file with a second hard link is refused outright,
/// since that link may sit in a mount.
pub(super) fn check_protected(mounts: &[Mount], protected: &[Protected]) -> Result<(), String> {
    for p in protected {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(&p.path)
            && meta.is_file()
            && meta.nlink() > 1
        {
            return Err(format!(
                "{} ({}) has {} hard links: another name for it could sit inside a mount; \
                 remove the other links",
                p.what,
                p.path.display(),
                meta.nlink()
            ));
        }
    }
    for mount in mounts {
        let mount_path = mount
            .host
            .canonicalize()
            .unwrap_or_else(|_| mount.host.clone());
        let mount_id = identity(&mount_path);
        let mount_up = identities_up(&mount_path);
        for p in protected {
            let protected_up = identities_up(&p.path);
            let holds = p.path.starts_with(&mount_path)
                || p.path.starts_with(&mount.host)
                || mount_id.is_some_and(|id| protected_up.contains(&id));
            let inside = mount_path.starts_with(&p.path)
                || mount.host.starts_with(&p.path)
                || identity(&p.path).is_some_and(|id| mount_up.contains(&id));
            let writable = mount.access == Access::ReadWrite;
            if holds && (p.secret || writable) || inside && p.secret {
                return Err(format!(
                    "folder {} would give the plugin access to {} ({}); mount something else",
                    mount.host.display(),
                    p.what,
                    p.path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Guest paths are absolute and plain: no `.`/`..` parts, no empty parts.
pub(super) fn check_guest_path(guest: &str) -> Result<(), String> {
    // Split by hand: `Path::components` quietly drops `.` parts.
    let plain = guest
        .strip_prefix('/')
        .is_some_and(|rest| rest.split('/').all(|part| !matches!(part, "" | "." | "..")));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "guest path {guest:?} must be absolute and plain, like /data/market"
        ))
    }
}
