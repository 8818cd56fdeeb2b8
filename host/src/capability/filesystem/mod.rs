//! Folders: a plugin sees only the folders its policy mounts, each read-only
//! or read-write.
//!
//! A mount is checked and then **held**: its folder is opened once, when the
//! policy is loaded, beneath the root folder one segment at a time without
//! following a single symlink, and that open directory — not its path — is
//! what every call gets. Renaming a parent, or swapping a folder for a
//! symlink, between calls changes nothing a plugin sees; the next load opens
//! and checks again. Inside a mount, wasmtime-wasi keeps the plugin in (no
//! `..`, absolute paths or symlinks out). Per-user folders are opened (and
//! created on first use) beneath the held folder the same way.
//!
//! [`resolve`] only reads: `host check` and `host policy explain` create
//! nothing. Missing read-write folders are created by [`create_missing`],
//! which serving calls once every check has passed.

mod call;
mod checks;
mod guest;
pub mod market_data;
mod metering;
pub mod quota;

pub use call::{FilesCall, FilesView, OUTSIDE_MOUNTS, Preopen};
pub use checks::Protected;
use checks::{check_guest_path, check_overlaps, check_protected};
use guest::{add_to_linker, open_outside_mounts};

use super::services::Tallies;
use super::{Capability, Need, Preparing, Reach, Resolving};
use crate::interface::types::Effects;
use quota::{Quota, QuotaLimits};
use rustix::fs::{Mode, OFlags};
use serde::Deserialize;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime_wasi::filesystem::Dir;
use wasmtime_wasi::{FsPerms, OpenMode};

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
    /// A read-write mount's quota in MiB [default 256].
    #[serde(default)]
    pub max_mib: Option<u64>,
    /// A read-write mount's quota of files, folders and links [default 10000].
    #[serde(default)]
    pub max_entries: Option<u64>,
}

/// `mounts` narrowed to a call that needs `need` of them: none, every one
/// read-only, or as granted.
fn narrow(mounts: &[Mount], need: Need) -> Vec<Mount> {
    match need {
        Need::Nothing => Vec::new(),
        Need::Read => mounts
            .iter()
            .map(|mount| Mount {
                access: Access::ReadOnly,
                ..mount.clone()
            })
            .collect(),
        Need::Write => mounts.to_vec(),
    }
}

/// A resolved mount.
#[derive(Clone)]
pub struct Mount {
    /// Where the folder is: the canonical root joined with the policy's
    /// path (no symlink on the way, so this is its real place); for a
    /// per-user mount, the folder holding the users'.
    pub host: PathBuf,
    pub guest: String,
    pub access: Access,
    /// Whether each caller gets its own folder, `host/<user id>`.
    pub per_user: bool,
    /// The path below the root, one plain segment at a time.
    segments: Vec<std::ffi::OsString>,
    /// The folder, held open; `None` while it does not exist yet (a
    /// read-write folder that serving will create).
    held: Option<Dir>,
    /// What a read-write mount may hold.
    pub quota: QuotaLimits,
    /// The quota of each folder measured so far: the mount's, or each
    /// user's of a per-user mount. Shared by every copy of the mount.
    measured: Arc<Mutex<HashMap<Option<String>, Arc<Quota>>>>,
    /// Where the quotas keep their counts (the host's services).
    tallies: Arc<dyn Tallies>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("host", &self.host)
            .field("guest", &self.guest)
            .field("access", &self.access)
            .field("per_user", &self.per_user)
            .field("held", &self.held.is_some())
            .finish()
    }
}

/// What `mounts` allow, for `check` and `explain`.
fn describe(mounts: &[Mount]) -> super::Description {
    let line = |m: &Mount| {
        format!(
            "{} = {} ({})",
            m.guest,
            m.describe_host(),
            m.describe_access()
        )
    };
    let mut explained: Vec<String> = mounts.iter().map(line).collect();
    if explained.is_empty() {
        explained.push("none: every path is refused".to_owned());
    }
    super::Description {
        title: "Files",
        summary: mounts
            .iter()
            .map(|m| format!("folder {}", line(m)))
            .collect(),
        explained,
    }
}

/// Opens `name` in `parent` as a directory, refusing a symlink.
fn open_beneath(
    parent: &impl std::os::fd::AsFd,
    name: &std::ffi::OsStr,
) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// Why `name` could not be opened, in words that say what to do.
fn open_error(path: &Path, error: std::io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => format!(
            "{} is a symlink or not a folder: mounts never follow links; mount the folder itself",
            path.display()
        ),
        _ => format!("folder {} is not usable: {error}", path.display()),
    }
}

/// The root folder every mount lies in, open.
pub struct Root {
    /// Canonical.
    pub path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    /// Opens the root folder `path`.
    pub fn open(path: &Path) -> Result<Root, String> {
        let unusable = |e: &dyn std::fmt::Display| {
            format!("root folder {} is not usable: {e}", path.display())
        };
        let canonical = path.canonicalize().map_err(|e| unusable(&e))?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&canonical, flags, Mode::empty()).map_err(|e| unusable(&e))?;
        Ok(Root {
            path: canonical,
            fd,
        })
    }
}

impl Mount {
    /// The folder a call of `user` gets, with `access` (which a tool's
    /// declared effects may have narrowed): the held folder itself, or for a
    /// per-user mount `user`'s folder beneath it, created on first use and
    /// never a symlink. A writable folder comes with its quota.
    pub fn open_for(&self, user: Option<&str>) -> anyhow::Result<(Dir, Option<Arc<Quota>>)> {
        let held = self
            .held
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("{} is not open", self.host.display()))?;
        let (mut dir, user) = if self.per_user {
            let (dir, user) = self.user_folder(held, user)?;
            (dir, Some(user))
        } else {
            (held.clone(), None)
        };
        let quota = match self.access {
            Access::ReadOnly => None,
            Access::ReadWrite => Some(self.quota_of(&dir, user)),
        };
        (dir.perms, dir.open_mode) = match self.access {
            Access::ReadOnly => (FsPerms::ReadOnly, OpenMode::READ),
            Access::ReadWrite => (FsPerms::ReadWrite, OpenMode::READ | OpenMode::WRITE),
        };
        Ok((dir, quota))
    }

    /// The quota of `dir` (the folder of `user`, or the mount's), measured
    /// the first time it is asked for.
    fn quota_of(&self, dir: &Dir, user: Option<String>) -> Arc<Quota> {
        let mut measured = self.measured.lock().unwrap_or_else(|e| e.into_inner());
        measured
            .entry(user)
            .or_insert_with_key(|user| {
                let folder = match user {
                    Some(user) => self.host.join(user),
                    None => self.host.clone(),
                };
                let key = folder.to_string_lossy();
                let tallies = self.tallies.as_ref();
                Arc::new(Quota::measure(
                    dir.dir.as_ref(),
                    &self.guest,
                    self.quota,
                    tallies,
                    &key,
                ))
            })
            .clone()
    }

    /// `user`'s folder of a per-user mount: one plain segment under the
    /// held folder, never a symlink, so no user id reaches another's folder.
    fn user_folder(&self, held: &Dir, user: Option<&str>) -> anyhow::Result<(Dir, String)> {
        let user = user
            .filter(|user| crate::principal::valid_principal(user))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is per user, and the caller has no usable user id",
                    self.guest
                )
            })?;
        let path = self.host.join(user);
        let parent = held.dir.as_ref();
        let opened = match open_beneath(parent, user.as_ref()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                match rustix::fs::mkdirat(parent, user, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => anyhow::bail!("cannot create {}: {e}", path.display()),
                }
                open_beneath(parent, user.as_ref())
            }
            opened => opened,
        };
        let fd = opened.map_err(|e| anyhow::anyhow!("{}", open_error(&path, e)))?;
        let dir = Dir::new(fd.into(), FsPerms::ReadOnly, OpenMode::READ, false);
        Ok((dir, user.to_owned()))
    }

    /// What the plugin may do there: `read-only`, or `read-write` with the
    /// quota.
    pub fn describe_access(&self) -> String {
        match self.access {
            Access::ReadOnly => self.access.to_string(),
            Access::ReadWrite => format!(
                "{}, at most {} MiB in {} files, folders and links",
                self.access,
                self.quota.max_bytes >> 20,
                self.quota.max_entries
            ),
        }
    }

    /// The host folder as the policy says it, and whether it is missing.
    pub fn describe_host(&self) -> String {
        let host = if self.per_user {
            self.host.join(USER_PLACEHOLDER)
        } else {
            self.host.clone()
        };
        let missing = if self.held.is_none() {
            " (missing: `host serve` will create it)"
        } else {
            ""
        };
        format!("{}{missing}", host.display())
    }

    /// A mount of `host` that holds no folder, for tests of the checks.
    #[cfg(test)]
    pub fn unheld(host: &str, guest: &str, access: Access) -> Mount {
        Mount {
            host: host.into(),
            guest: guest.into(),
            access,
            per_user: false,
            segments: Vec::new(),
            held: None,
            quota: QuotaLimits::new(None, None),
            measured: Arc::default(),
            tallies: Arc::new(super::services::MemoryTallies),
        }
    }

    /// Whether the folder is missing and serving will create it.
    pub fn to_be_created(&self) -> bool {
        self.held.is_none()
    }
}

/// Resolves `spec` inside `root`: the folder must lie inside the root, and
/// is opened one segment at a time without following any symlink. A missing
/// read-write (or per-user) folder is left for [`create_missing`]; a missing
/// read-only one is an error. Creates nothing.
fn resolve(spec: &MountSpec, root: &Root, tallies: Arc<dyn Tallies>) -> Result<Mount, String> {
    check_guest_path(&spec.guest)?;
    let per_user = spec.host.file_name() == Some(USER_PLACEHOLDER.as_ref());
    let written = spec.host.to_string_lossy();
    if written.matches(USER_PLACEHOLDER).count() > usize::from(per_user) {
        return Err(format!(
            "{written}: {USER_PLACEHOLDER} may only be the last segment of a mount's host folder"
        ));
    }
    // A per-user mount resolves the folder holding the users' folders.
    let folder = match (per_user, spec.host.parent()) {
        (true, Some(parent)) => parent,
        _ => spec.host.as_path(),
    };
    let relative = if folder.is_absolute() {
        folder.strip_prefix(&root.path).map_err(|_| {
            format!(
                "folder {} is outside the root folder {}",
                folder.display(),
                root.path.display()
            )
        })?
    } else {
        folder
    };
    let mut segments = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(name) => segments.push(name.to_owned()),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "folder {} is outside the root folder {}, or names it with `..`:                      write the path below the root",
                    spec.host.display(),
                    root.path.display()
                ));
            }
        }
    }
    let host = segments
        .iter()
        .fold(root.path.clone(), |path, s| path.join(s));
    let creatable = spec.access == Access::ReadWrite || per_user;
    let held = match open_segments(root, &segments) {
        Ok(fd) => Some(Dir::new(
            fd.into(),
            FsPerms::ReadOnly,
            OpenMode::READ,
            false,
        )),
        Err((_, e)) if e.kind() == std::io::ErrorKind::NotFound && creatable => None,
        Err((at, e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "folder {} does not exist (a read-only mount is never created)",
                at.display()
            ));
        }
        Err((at, e)) => return Err(open_error(&at, e)),
    };
    if spec.access == Access::ReadOnly && (spec.max_mib.is_some() || spec.max_entries.is_some()) {
        return Err(format!(
            "mount {}: max_mib and max_entries limit what a read-write mount may hold; \
             a read-only mount holds what it holds",
            spec.guest
        ));
    }
    Ok(Mount {
        host,
        guest: spec.guest.clone(),
        access: spec.access,
        per_user,
        segments,
        held,
        quota: QuotaLimits::new(spec.max_mib, spec.max_entries),
        measured: Arc::default(),
        tallies,
    })
}

/// Opens `segments` beneath `root`, none of them a symlink; on failure, the
/// path that failed and why.
fn open_segments(
    root: &Root,
    segments: &[std::ffi::OsString],
) -> Result<OwnedFd, (PathBuf, std::io::Error)> {
    let mut path = root.path.clone();
    let mut fd = rustix::io::dup(&root.fd).map_err(|e| (path.clone(), e.into()))?;
    for segment in segments {
        path.push(segment);
        fd = open_beneath(&fd, segment).map_err(|e| (path.clone(), e))?;
    }
    Ok(fd)
}

/// Creates the missing folders of `mounts` beneath `root`, never through a
/// symlink, and holds them. Call it only once every check has passed.
fn create_missing(mounts: &mut [Mount], root: &Root) -> Result<(), String> {
    for mount in mounts.iter_mut().filter(|m| m.held.is_none()) {
        let mut path = root.path.clone();
        let mut fd = rustix::io::dup(&root.fd).map_err(|e| format!("{e}"))?;
        for segment in &mount.segments {
            path.push(segment);
            let opened = match open_beneath(&fd, segment) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(&fd, segment.as_os_str(), Mode::from_raw_mode(0o755))
                    {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
                    }
                    open_beneath(&fd, segment)
                }
                opened => opened,
            };
            fd = opened.map_err(|e| open_error(&path, e))?;
        }
        mount.held = Some(Dir::new(
            fd.into(),
            FsPerms::ReadOnly,
            OpenMode::READ,
            false,
        ));
    }
    Ok(())
}

/// Folders: the `[[mounts]]` a policy grants, each read-only or
/// read-write (with a quota), held open from load; a tool that declares no
/// file effect sees none, one that does not declare `write-files` sees
/// them read-only.
pub struct Files;

impl Capability for Files {
    const SECTION: &'static str = "mounts";
    type Spec = Vec<MountSpec>;
    type Grant = Vec<Mount>;

    fn resolve(spec: &Vec<MountSpec>, host: &Resolving) -> Result<Vec<Mount>, String> {
        let mounts = spec
            .iter()
            .map(|spec| resolve(spec, host.root, host.services.tallies.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        check_overlaps(&mounts)?;
        check_protected(&mounts, host.protected)?;
        if let Some(guard) = host.market_data {
            guard.check_mounts(&mounts)?;
        }
        Ok(mounts)
    }

    fn create(mounts: &mut Vec<Mount>, host: &Resolving) -> Result<(), String> {
        create_missing(mounts, host.root)
    }

    fn narrow(mounts: &Vec<Mount>, effects: Effects) -> Vec<Mount> {
        narrow(
            mounts,
            Need::of(effects, Effects::READ_FILES, Effects::WRITE_FILES),
        )
    }

    fn reach(mounts: &Vec<Mount>) -> Reach {
        Reach {
            writes: mounts.iter().any(|m| m.access == Access::ReadWrite),
            open_world: false,
        }
    }

    fn describe(mounts: &Vec<Mount>) -> super::Description {
        describe(mounts)
    }

    type Call = FilesCall;

    fn prepare(mounts: &Vec<Mount>, call: &mut Preparing) -> anyhow::Result<FilesCall> {
        FilesCall::prepare(mounts, call.user)
    }

    /// Every sandbox's guest also finds the empty root, opened here once.
    fn add_to_linker<T: super::CallData>(
        linker: &mut wasmtime::component::Linker<T>,
    ) -> wasmtime::Result<()> {
        let outside = open_outside_mounts().map_err(|e| wasmtime::format_err!("{e:#}"))?;
        add_to_linker(linker, outside)
    }

    fn narrowed(mounts: &Vec<Mount>, effects: Effects) -> Option<&'static str> {
        match Need::of(effects, Effects::READ_FILES, Effects::WRITE_FILES) {
            Need::Nothing if !mounts.is_empty() => {
                Some("it sees no folder (it declares no file effect)")
            }
            Need::Read if mounts.iter().any(|m| m.access == Access::ReadWrite) => {
                Some("its mounts are read-only (it does not declare write-files)")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Arc<dyn Tallies> {
        Arc::new(crate::capability::services::MemoryTallies)
    }
    use std::os::unix::fs::symlink;

    fn spec(host: &str, guest: &str, access: Access) -> MountSpec {
        MountSpec {
            host: host.into(),
            guest: guest.into(),
            access,
            max_mib: None,
            max_entries: None,
        }
    }

    fn root_of(dir: &tempfile::TempDir) -> Root {
        Root::open(dir.path()).unwrap()
    }

    /// What a call sees in `dir`: its file names.
    fn listing(dir: &Dir) -> Vec<String> {
        let through = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(dir.dir.as_ref())
        );
        let mut names: Vec<String> = std::fs::read_dir(through)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn per_user_mounts_give_each_user_a_folder_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let root = root_of(&dir);
        let mut mounts = [resolve(
            &spec("users/{user}", "/data", Access::ReadWrite),
            &root,
            memory(),
        )
        .unwrap()];
        assert!(mounts[0].to_be_created() && !dir.path().join("users").exists());
        create_missing(&mut mounts, &root).unwrap();
        let mount = &mounts[0];
        assert!(mount.per_user && mount.host.ends_with("users"));
        assert_eq!(
            mount.describe_host(),
            mount.host.join("{user}").display().to_string()
        );
        let (alice, _) = mount.open_for(Some("alice")).unwrap();
        assert!(
            dir.path().join("users/alice").is_dir(),
            "created on first use"
        );
        assert_eq!(alice.perms, FsPerms::ReadWrite);
        for bad in [Some(".."), Some("a/b"), Some(""), None] {
            assert!(mount.open_for(bad).is_err(), "{bad:?}");
        }
        symlink(dir.path(), dir.path().join("users/mallory")).unwrap();
        assert!(
            mount.open_for(Some("mallory")).is_err(),
            "a symlink is not a user folder"
        );
        let nested = MountSpec {
            host: "{user}/x".into(),
            ..spec("", "/data", Access::ReadWrite)
        };
        assert!(resolve(&nested, &root, memory()).is_err());
    }

    #[test]
    fn a_swapped_parent_of_the_users_folders_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("users")).unwrap();
        let root = root_of(&dir);
        let mount = resolve(
            &spec("users/{user}", "/data", Access::ReadWrite),
            &root,
            memory(),
        )
        .unwrap();
        std::fs::rename(dir.path().join("users"), dir.path().join("moved")).unwrap();
        symlink(outside.path(), dir.path().join("users")).unwrap();
        mount.open_for(Some("bob")).unwrap();
        assert!(
            dir.path().join("moved/bob").is_dir(),
            "created in the held folder"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_held_folder_is_what_calls_get_whatever_happens_to_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("data/share")).unwrap();
        std::fs::write(dir.path().join("data/share/mine"), "x").unwrap();
        let root = root_of(&dir);
        let mount = resolve(
            &spec("data/share", "/share", Access::ReadOnly),
            &root,
            memory(),
        )
        .unwrap();
        // Swap the folder for a symlink out of the root, then its parent too.
        std::fs::rename(dir.path().join("data/share"), dir.path().join("data/old")).unwrap();
        symlink(outside.path(), dir.path().join("data/share")).unwrap();
        assert_eq!(listing(&mount.open_for(None).unwrap().0), ["mine"]);
        std::fs::rename(dir.path().join("data"), dir.path().join("gone")).unwrap();
        symlink(outside.path(), dir.path().join("data")).unwrap();
        assert_eq!(listing(&mount.open_for(None).unwrap().0), ["mine"]);
        // A new load refuses the planted links.
        let again = resolve(
            &spec("data/share", "/share", Access::ReadOnly),
            &root,
            memory(),
        );
        assert!(again.unwrap_err().contains("symlink"));
    }

    #[test]
    fn resolves_inside_the_root_only_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/in")).unwrap();
        symlink(outside.path(), dir.path().join("link")).unwrap();
        symlink(dir.path().join("data"), dir.path().join("inner-link")).unwrap();
        let root = root_of(&dir);
        let mount = resolve(&spec("data", "/data", Access::ReadOnly), &root, memory()).unwrap();
        assert_eq!(mount.host, root.path.join("data"));
        let inside = root.path.join("data/in");
        assert!(
            resolve(
                &spec(inside.to_str().unwrap(), "/in", Access::ReadOnly),
                &root,
                memory()
            )
            .is_ok()
        );
        for (host, why) in [
            ("..", "outside the root"),
            ("data/../..", "outside the root"),
            ("/etc", "outside the root"),
            ("link", "symlink"),
            ("link/sub", "symlink"),
            ("inner-link", "symlink"),
            ("inner-link/in", "symlink"),
        ] {
            for access in [Access::ReadOnly, Access::ReadWrite] {
                let error = resolve(&spec(host, "/m", access), &root, memory()).unwrap_err();
                assert!(error.contains(why), "{host}: {error}");
            }
        }
    }

    #[test]
    fn resolving_creates_nothing_and_creating_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = root_of(&dir);
        let mut mounts = [resolve(
            &spec("new/deep", "/new", Access::ReadWrite),
            &root,
            memory(),
        )
        .unwrap()];
        assert!(!dir.path().join("new").exists());
        assert!(resolve(&spec("missing", "/m", Access::ReadOnly), &root, memory()).is_err());
        // A link planted between the check and the creation is refused.
        symlink(outside.path(), dir.path().join("new")).unwrap();
        assert!(
            create_missing(&mut mounts, &root)
                .unwrap_err()
                .contains("symlink")
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        std::fs::remove_file(dir.path().join("new")).unwrap();
        create_missing(&mut mounts, &root).unwrap();
        assert!(dir.path().join("new/deep").is_dir());
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
        let check =
            |host, access| check_protected(&[Mount::unheld(host, "/m", access)], &protected);
        assert!(check("/r/policies", Access::ReadOnly).is_err());
        assert!(check("/r", Access::ReadOnly).is_err());
        assert!(check("/r/policies/sub", Access::ReadOnly).is_err());
        assert!(check("/r/plugins", Access::ReadWrite).is_err());
        assert!(check("/r/plugins", Access::ReadOnly).is_ok());
        assert!(check("/r/plugins/strategies/saved", Access::ReadWrite).is_ok());
        assert!(check("/r/data", Access::ReadWrite).is_ok());
    }

    #[test]
    fn overlapping_mounts_are_refused() {
        let nested = [
            Mount::unheld("/r/data", "/a", Access::ReadOnly),
            Mount::unheld("/r/data/market", "/b", Access::ReadWrite),
        ];
        assert!(check_overlaps(&nested).is_err());
        let siblings = [
            Mount::unheld("/r/data", "/a", Access::ReadOnly),
            Mount::unheld("/r/database", "/b", Access::ReadWrite),
        ];
        assert!(check_overlaps(&siblings).is_ok());
    }
}
