//! Disk quotas: how much a read-write mount may hold, in bytes and entries.
//!
//! A quota is measured when a call first gets its folder writable (walking
//! it beneath the held descriptor, never following a link, and stopping
//! once past the limit), then kept up to date by the sandbox's own changes:
//! every create, write past a file's end, size change, delete and replace is
//! charged before it happens, and refused with `quota` when it would pass
//! the limit. What other programs write there is seen at the next
//! measurement, when the policy is next loaded.

use crate::capability::services::{Amounts, Tallies, Tally};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// A read-write mount's default limit, in MiB.
pub const DEFAULT_MAX_MIB: u64 = 256;
/// A read-write mount's default limit on files, folders and links.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;

/// What a mount may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLimits {
    pub max_bytes: u64,
    pub max_entries: u64,
}

impl QuotaLimits {
    /// Limits from a policy's `max_mib` and `max_entries`.
    pub fn new(max_mib: Option<u64>, max_entries: Option<u64>) -> QuotaLimits {
        QuotaLimits {
            max_bytes: max_mib.unwrap_or(DEFAULT_MAX_MIB).saturating_mul(1 << 20),
            max_entries: max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
        }
    }
}

/// Bytes and entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
}

impl Usage {
    fn amounts(self) -> Amounts {
        [self.bytes, self.entries]
    }

    pub fn bytes(bytes: u64) -> Usage {
        Usage { bytes, entries: 0 }
    }

    pub fn entry(bytes: u64) -> Usage {
        Usage { bytes, entries: 1 }
    }
}

/// A change refused because it would pass a quota.
#[derive(Debug, PartialEq, Eq)]
pub enum OverQuota {
    /// It would take more than the quota has left.
    Full,
    /// It would put a folder deeper than [`MAX_DEPTH`] below the mount,
    /// where no measurement reaches (the guest sees `quota`).
    TooDeep,
    /// It would move a folder, or link a file, from one quota into
    /// another: what it holds could not be charged exactly, so like a move
    /// between disks it is refused (the guest sees `cross-device`).
    Crossing,
}

/// What a folder or a symlink takes on disk: one block.
pub const ENTRY_BLOCK: u64 = 4096;

/// One folder's quota and what it holds now.
pub struct Quota {
    /// The mount's guest path, for refusals.
    pub guest: String,
    pub limits: QuotaLimits,
    /// What it holds, kept where the host's services keep tallies.
    used: Arc<dyn Tally>,
    /// The mount's folder (device and inode), where depths are counted from.
    root: Option<(u64, u64)>,
}

impl Quota {
    /// The quota of the folder `dir`, measured now, its count kept as the
    /// tally `key` of `tallies`.
    pub fn measure(
        dir: &impl AsFd,
        guest: &str,
        limits: QuotaLimits,
        tallies: &dyn Tallies,
        key: &str,
    ) -> Quota {
        let mut used = Usage::default();
        if !walk(dir.as_fd(), &limits, &mut used, 0) {
            tracing::warn!(
                mount = guest,
                "part of the folder could not be measured (deeper than {MAX_DEPTH} folders, or \
                 unreadable): its quota counts as used up until it is cleared"
            );
            used = Usage {
                bytes: limits.max_bytes,
                entries: limits.max_entries,
            };
        }
        Quota {
            guest: guest.to_owned(),
            limits,
            used: tallies.start(key, used.amounts()),
            root: rustix::fs::fstat(dir).ok().map(|stat| identity(&stat)),
        }
    }

    /// How many folders `dir` lies below the mount's folder (0 for the
    /// folder itself), found by following `..` from the held descriptor, so
    /// no path spelling or link can make it look shallower. `None` when it is
    /// not below the mount, or deeper than [`MAX_DEPTH`].
    pub fn depth_of(&self, dir: std::os::fd::BorrowedFd<'_>) -> Option<usize> {
        let root = self.root?;
        let mut here = rustix::io::fcntl_dupfd_cloexec(dir, 0).ok()?;
        for depth in 0..=MAX_DEPTH {
            if identity(&rustix::fs::fstat(&here).ok()?) == root {
                return Some(depth);
            }
            here = rustix::fs::openat(&here, "..", FOLDER, Mode::empty()).ok()?;
        }
        None
    }

    /// Whether a folder of `height` levels (1 for an empty one) may be
    /// placed in the folder `parent`: it may if its deepest folder is still
    /// within reach of a measurement.
    pub fn may_hold(
        &self,
        parent: std::os::fd::BorrowedFd<'_>,
        height: usize,
    ) -> Result<(), OverQuota> {
        match self.depth_of(parent) {
            Some(depth) if depth.saturating_add(height) <= MAX_DEPTH => Ok(()),
            _ => Err(OverQuota::TooDeep),
        }
    }

    /// What the folder holds now.
    pub fn used(&self) -> Usage {
        let [bytes, entries] = self.used.get();
        Usage { bytes, entries }
    }

    /// Takes `usage` from the quota, or nothing if it would pass a limit.
    pub fn charge(&self, usage: Usage) -> Result<(), OverQuota> {
        let limits = [self.limits.max_bytes, self.limits.max_entries];
        match self.used.add_within(usage.amounts(), limits) {
            true => Ok(()),
            false => Err(OverQuota::Full),
        }
    }

    /// Gives `usage` back (a delete, a shrink, or a charge not used).
    pub fn credit(&self, usage: Usage) {
        self.used.subtract(usage.amounts());
    }
}

/// The quota changes of one filesystem operation: charged before it runs,
/// and settled once it is known whether it did.
#[derive(Default)]
pub struct Ledger {
    charged: Vec<(Arc<Quota>, Usage)>,
    freed: Vec<(Arc<Quota>, Usage)>,
}

impl Ledger {
    /// Charges `usage` to `quota` now; `Err` if that would pass its limit.
    pub fn charge(&mut self, quota: &Arc<Quota>, usage: Usage) -> Result<(), OverQuota> {
        quota.charge(usage)?;
        self.charged.push((quota.clone(), usage));
        Ok(())
    }

    /// Credits `usage` to `quota` if the operation succeeds.
    pub fn free_on_success(&mut self, quota: &Arc<Quota>, usage: Usage) {
        self.freed.push((quota.clone(), usage));
    }

    /// Keeps the charges and applies the credits if the operation
    /// `succeeded`; otherwise gives the charges back.
    pub fn settle(self, succeeded: bool) {
        let settled = if succeeded { self.freed } else { self.charged };
        for (quota, usage) in settled {
            quota.credit(usage);
        }
    }
}

/// The deepest folder a mount may hold, counting the mount's own folder as
/// 0. The sandbox refuses to create or move a folder deeper; a folder put
/// deeper by something else cannot be measured, so the quota counts as used
/// up (it fails closed: nothing can hide below the limit).
pub const MAX_DEPTH: usize = 256;

/// How folders are opened to walk them: never following a link.
const FOLDER: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What identifies a folder on this machine.
fn identity(stat: &rustix::fs::Stat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

/// How many levels of folders `dir` holds, itself included (1 when it
/// holds none), or `None` when that is more than `limit` or some part
/// cannot be read.
pub fn height(dir: std::os::fd::BorrowedFd<'_>, limit: usize) -> Option<usize> {
    if limit == 0 {
        return None;
    }
    // Opened again to be readable: `dir` may be a path-only descriptor.
    let dir = rustix::fs::openat(dir, ".", FOLDER, Mode::empty()).ok()?;
    let dir = dir.as_fd();
    let mut tallest = 1;
    for entry in rustix::fs::Dir::read_from(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") || entry.file_type() == FileType::Symlink {
            continue;
        }
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let sub = rustix::fs::openat(dir, name, FOLDER, Mode::empty()).ok()?;
            tallest = tallest.max(1 + height(sub.as_fd(), limit - 1)?);
        }
    }
    Some(tallest)
}

/// Adds what `dir` holds to `used`, stopping once past `limits`: a regular
/// file its size, a folder or symlink one block. Returns `false` when some
/// part could not be measured.
fn walk(
    dir: std::os::fd::BorrowedFd<'_>,
    limits: &QuotaLimits,
    used: &mut Usage,
    depth: usize,
) -> bool {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else { return false };
        if used.entries > limits.max_entries || used.bytes > limits.max_bytes {
            return true;
        }
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        used.entries += 1;
        let Ok(stat) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            return false;
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => used.bytes += stat.st_size.max(0) as u64,
            FileType::Directory => {
                used.bytes += ENTRY_BLOCK;
                let sub: Result<OwnedFd, _> = rustix::fs::openat(dir, name, FOLDER, Mode::empty());
                let measured = match sub {
                    Ok(sub) if depth < MAX_DEPTH => walk(sub.as_fd(), limits, used, depth + 1),
                    _ => false,
                };
                if !measured {
                    return false;
                }
            }
            FileType::Symlink => used.bytes += ENTRY_BLOCK,
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::services::MemoryTallies;

    /// The quota of `held`, its count in memory.
    fn measured(held: &impl AsFd, limits: QuotaLimits) -> Quota {
        Quota::measure(held, "/rw", limits, &MemoryTallies, "/rw")
    }

    fn limits(max_bytes: u64, max_entries: u64) -> QuotaLimits {
        QuotaLimits {
            max_bytes,
            max_entries,
        }
    }

    #[test]
    fn measures_files_and_folders_beneath_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![0u8; 50]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![0u8; 10_000]).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let held = std::fs::File::open(dir.path()).unwrap();
        let quota = measured(&held, limits(1 << 20, 100));
        assert_eq!(
            quota.used(),
            Usage {
                bytes: 150 + 2 * ENTRY_BLOCK,
                entries: 4
            }
        );
    }

    #[test]
    fn a_tree_too_deep_to_measure_counts_as_full() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d/".repeat(MAX_DEPTH + 2));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("hidden"), vec![0u8; 10]).unwrap();
        let held = std::fs::File::open(dir.path()).unwrap();
        let quota = measured(&held, limits(1 << 20, 100_000));
        assert_eq!(quota.used().bytes, 1 << 20);
        let shallow = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(shallow.path().join("d/".repeat(70))).unwrap();
        let held = std::fs::File::open(shallow.path()).unwrap();
        let quota = measured(&held, limits(1 << 20, 100_000));
        assert_eq!(
            quota.used(),
            Usage {
                bytes: 70 * ENTRY_BLOCK,
                entries: 70
            }
        );
    }

    #[test]
    fn depth_is_counted_from_the_held_folder_not_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::os::unix::fs::symlink("a/b/c", dir.path().join("link")).unwrap();
        let held = std::fs::File::open(dir.path()).unwrap();
        let quota = measured(&held, limits(1 << 20, 100));
        let depth = |path: &str| {
            let folder = std::fs::File::open(dir.path().join(path)).unwrap();
            quota.depth_of(folder.as_fd())
        };
        assert_eq!(depth("."), Some(0));
        assert_eq!(depth("a/b"), Some(2));
        assert_eq!(depth("link"), Some(3));
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = std::fs::File::open(elsewhere.path()).unwrap();
        assert_eq!(quota.depth_of(outside.as_fd()), None);
        let c = std::fs::File::open(dir.path().join("a/b/c")).unwrap();
        assert!(quota.may_hold(c.as_fd(), MAX_DEPTH - 3).is_ok());
        assert_eq!(
            quota.may_hold(c.as_fd(), MAX_DEPTH - 2),
            Err(OverQuota::TooDeep)
        );
    }

    #[test]
    fn height_counts_folder_levels_not_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("a/file"), b"x").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("x/loop")).unwrap();
        let held = std::fs::File::open(dir.path()).unwrap();
        assert_eq!(height(held.as_fd(), MAX_DEPTH), Some(4));
        assert_eq!(height(held.as_fd(), 4), Some(4));
        assert_eq!(height(held.as_fd(), 3), None);
        let deep = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(deep.path().join("d/".repeat(100))).unwrap();
        let held = std::fs::File::open(deep.path().join("d")).unwrap();
        assert_eq!(height(held.as_fd(), MAX_DEPTH), Some(100));
    }

    #[test]
    fn measuring_stops_once_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..50 {
            std::fs::write(dir.path().join(i.to_string()), b"x").unwrap();
        }
        let held = std::fs::File::open(dir.path()).unwrap();
        let quota = measured(&held, limits(1 << 20, 10));
        assert_eq!(quota.used().entries, 11);
        assert!(quota.charge(Usage::entry(0)).is_err());
    }

    #[test]
    fn a_charge_past_either_limit_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let held = std::fs::File::open(dir.path()).unwrap();
        let quota = measured(&held, limits(100, 2));
        assert!(quota.charge(Usage::entry(60)).is_ok());
        assert!(quota.charge(Usage::entry(60)).is_err());
        assert_eq!(
            quota.used(),
            Usage {
                bytes: 60,
                entries: 1
            }
        );
        assert!(quota.charge(Usage::entry(40)).is_ok());
        assert!(quota.charge(Usage::entry(0)).is_err());
        // Freeing is always allowed, and makes room again.
        quota.credit(Usage::entry(60));
        assert!(quota.charge(Usage::bytes(60)).is_ok());
        assert_eq!(
            quota.used(),
            Usage {
                bytes: 100,
                entries: 1
            }
        );
    }

    #[test]
    fn a_ledger_keeps_charges_of_what_succeeded_and_refunds_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let held = std::fs::File::open(dir.path()).unwrap();
        let quota = Arc::new(measured(&held, limits(100, 10)));
        let mut failed = Ledger::default();
        failed.charge(&quota, Usage::entry(30)).unwrap();
        failed.settle(false);
        assert_eq!(quota.used(), Usage::default());
        let mut done = Ledger::default();
        done.charge(&quota, Usage::entry(30)).unwrap();
        done.settle(true);
        let mut deleted = Ledger::default();
        deleted.free_on_success(&quota, Usage::entry(30));
        assert_eq!(quota.used(), Usage::entry(30));
        deleted.settle(true);
        assert_eq!(quota.used(), Usage::default());
    }
}
