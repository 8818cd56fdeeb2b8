//! Folders: a plugin sees only the folders its policy mounts, each read-only
//! or read-write. wasmtime-wasi enforces the mount boundary itself (no `..`,
//! absolute paths or symlinks out); this module decides what is mounted.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// What a plugin may do in a mounted folder.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        })
    }
}

/// The last segment of a mount's host folder that stands for the caller's
/// user id: `plugins/strategies/users/{user}` gives each principal a folder
/// of its own.
pub const USER_PLACEHOLDER: &str = "{user}";

/// A mount as written in a policy file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// The host folder, relative to the host's root folder (or absolute,
    /// inside it).
    pub host: PathBuf,
    /// Where the plugin sees it, an absolute guest path such as `/data`.
    pub guest: String,
    /// `read-only` or `read-write`.
    pub access: Access,
}

/// A resolved mount: an existing host folder inside the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The folder; for a per-user mount, the folder holding the users'.
    pub host: PathBuf,
    pub guest: String,
    pub access: Access,
    /// Whether each caller gets its own folder, `host/<user id>`.
    pub per_user: bool,
}

impl Mount {
    /// Adds the mount to a sandbox's WASI context; a per-user mount shows
    /// `user`'s own folder, created on first use.
    pub fn apply(&self, wasi: &mut WasiCtxBuilder, user: Option<&str>) -> anyhow::Result<()> {
        let perms = match self.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        let host = if self.per_user {
            self.user_folder(user)?
        } else {
            self.host.clone()
        };
        wasi.preopened_dir(&host, &self.guest, perms)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", host.display()))?;
        Ok(())
    }

    /// `user`'s folder of a per-user mount: one plain segment under
    /// `host`, never a symlink, so no user id reaches another's folder.
    fn user_folder(&self, user: Option<&str>) -> anyhow::Result<PathBuf> {
        let user = user
            .filter(|user| crate::auth::valid_principal(user))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is per user, and the caller has no usable user id",
                    self.guest
                )
            })?;
        let folder = self.host.join(user);
        match std::fs::symlink_metadata(&folder) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => anyhow::bail!("{} is not a plain folder", folder.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&folder)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", folder.display()))?,
            Err(e) => anyhow::bail!("cannot use {}: {e}", folder.display()),
        }
        Ok(folder)
    }

    /// The host folder as the policy says it.
    pub fn describe_host(&self) -> String {
        if self.per_user {
            self.host.join(USER_PLACEHOLDER).display().to_string()
        } else {
            self.host.display().to_string()
        }
    }
}

/// Resolves `spec` against `root`: the folder must lie inside the root once
/// symlinks are followed. A missing read-write folder is created (the
/// operator asked for a place to write); a missing read-only one is an
/// error.
pub fn resolve(spec: &MountSpec, root: &Path) -> Result<Mount, String> {
    check_guest_path(&spec.guest)?;
    let per_user = spec.host.file_name() == Some(USER_PLACEHOLDER.as_ref());
    let written = spec.host.to_string_lossy();
    if written.matches(USER_PLACEHOLDER).count() > usize::from(per_user) {
        return Err(format!(
            "{written}: {USER_PLACEHOLDER} may only be the last segment of a mount's host folder"
        ));
    }
    // A per-user mount resolves the folder holding the users' folders.
    let joined = match (per_user, spec.host.parent()) {
        (true, Some(parent)) => root.join(parent),
        _ => root.join(&spec.host),
    };
    if !joined.exists() && (spec.access == Access::ReadWrite || per_user) {
        std::fs::create_dir_all(&joined)
            .map_err(|e| format!("cannot create {}: {e}", joined.display()))?;
    }
    let host = joined
        .canonicalize()
        .map_err(|e| format!("folder {} is not usable: {e}", joined.display()))?;
    let root = root
        .canonicalize()
        .map_err(|e| format!("root folder {} is not usable: {e}", root.display()))?;
    if !host.starts_with(&root) {
        return Err(format!(
            "folder {} is outside the root folder {}",
            host.display(),
            root.display()
        ));
    }
    if !host.is_dir() {
        return Err(format!("{} is not a folder", host.display()));
    }
    Ok(Mount {
        host,
        guest: spec.guest.clone(),
        access: spec.access,
        per_user,
    })
}

/// Refuses mount sets where one mount lies inside another: with both a
/// read-only and a read-write view of the same files, the read-only promise
/// is hard to keep (see wasmtime advisory GHSA-4ch3-9j33-3pmj), and two
/// guest paths for one file confuse plugins.
pub fn check_overlaps(mounts: &[Mount]) -> Result<(), String> {
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

/// Refuses mounts that would let a plugin reach the host's own files: its
/// policies (which a plugin could rewrite to widen its grants, and which may
/// hold secrets), its compiled-component cache (which the host executes),
/// its audit log, or — for writing — the plugins folder.
pub fn check_protected(mounts: &[Mount], protected: &[Protected]) -> Result<(), String> {
    for mount in mounts {
        for p in protected {
            let holds = p.path.starts_with(&mount.host);
            let inside = mount.host.starts_with(&p.path);
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
fn check_guest_path(guest: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {

    #[test]
    fn per_user_mounts_give_each_user_a_folder_of_their_own() {
        let root = tempfile::tempdir().unwrap();
        let spec = MountSpec {
            host: "users/{user}".into(),
            guest: "/data".into(),
            access: Access::ReadWrite,
        };
        let mount = resolve(&spec, root.path()).unwrap();
        assert!(mount.per_user && mount.host.ends_with("users"));
        assert_eq!(
            mount.describe_host(),
            mount.host.join("{user}").display().to_string()
        );
        let alice = mount.user_folder(Some("alice")).unwrap();
        assert_eq!(alice, mount.host.join("alice"));
        assert!(alice.is_dir(), "created on first use");
        for bad in [Some(".."), Some("a/b"), Some(""), None] {
            assert!(mount.user_folder(bad).is_err(), "{bad:?}");
        }
        std::os::unix::fs::symlink(root.path(), mount.host.join("mallory")).unwrap();
        assert!(
            mount.user_folder(Some("mallory")).is_err(),
            "a symlink is not a user folder"
        );
        let nested = MountSpec {
            host: "{user}/x".into(),
            ..spec
        };
        assert!(resolve(&nested, root.path()).is_err());
    }
    use super::*;

    fn spec(host: &str, guest: &str, access: Access) -> MountSpec {
        MountSpec {
            host: host.into(),
            guest: guest.into(),
            access,
        }
    }

    #[test]
    fn resolves_inside_the_root_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("data")).unwrap();
        let mount = resolve(&spec("data", "/data", Access::ReadOnly), root.path()).unwrap();
        assert!(mount.host.ends_with("data"));
        let escape = resolve(&spec("..", "/up", Access::ReadOnly), root.path());
        assert!(escape.unwrap_err().contains("outside the root"));
        let absolute = resolve(&spec("/etc", "/etc", Access::ReadOnly), root.path());
        assert!(absolute.unwrap_err().contains("outside the root"));
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        let linked = resolve(&spec("link", "/data", Access::ReadOnly), root.path());
        assert!(linked.unwrap_err().contains("outside the root"));
    }

    #[test]
    fn creates_missing_read_write_folders_but_not_read_only_ones() {
        let root = tempfile::tempdir().unwrap();
        assert!(resolve(&spec("new", "/new", Access::ReadWrite), root.path()).is_ok());
        assert!(root.path().join("new").is_dir());
        assert!(resolve(&spec("missing", "/m", Access::ReadOnly), root.path()).is_err());
    }

    #[test]
    fn guest_paths_must_be_plain_and_absolute() {
        for bad in ["data", "/", "/a/../b", "/a/./b", "//a", ""] {
            assert!(check_guest_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_guest_path("/data/market").is_ok());
    }

    #[test]
    fn the_hosts_own_files_cannot_be_mounted() {
        let mount = |host: &str, access| Mount {
            host: host.into(),
            guest: "/m".into(),
            access,
            per_user: false,
        };
        let protected = [
            Protected {
                path: "/r/policies".into(),
                what: "the policies folder",
                secret: true,
            },
            Protected {
                path: "/r/plugins".into(),
                what: "the plugins folder",
                secret: false,
            },
        ];
        let check = |m| check_protected(&[m], &protected);
        assert!(check(mount("/r/policies", Access::ReadOnly)).is_err());
        assert!(check(mount("/r", Access::ReadOnly)).is_err());
        assert!(check(mount("/r/policies/sub", Access::ReadOnly)).is_err());
        assert!(check(mount("/r/plugins", Access::ReadWrite)).is_err());
        assert!(check(mount("/r/plugins", Access::ReadOnly)).is_ok());
        assert!(check(mount("/r/plugins/strategies/saved", Access::ReadWrite)).is_ok());
        assert!(check(mount("/r/data", Access::ReadWrite)).is_ok());
    }

    #[test]
    fn overlapping_mounts_are_refused() {
        let mount = |host: &str, guest: &str, access| Mount {
            host: host.into(),
            guest: guest.into(),
            access,
            per_user: false,
        };
        let nested = [
            mount("/r/data", "/a", Access::ReadOnly),
            mount("/r/data/market", "/b", Access::ReadWrite),
        ];
        assert!(check_overlaps(&nested).is_err());
        let siblings = [
            mount("/r/data", "/a", Access::ReadOnly),
            mount("/r/database", "/b", Access::ReadWrite),
        ];
        assert!(check_overlaps(&siblings).is_ok());
    }
}
