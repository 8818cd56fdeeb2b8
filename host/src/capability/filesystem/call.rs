//! What one call holds of the filesystem capability (wasmtime-wasi's
//! `XCtx`): the folders its guest finds preopened, and for each descriptor
//! it opened, which mount it is and which quota it writes against; and the
//! view through which the capability's guest functions reach it in the
//! store (wasmtime-wasi's `XView`).

use super::Mount;
use super::quota::Quota;
use crate::capability::CallData;
use crate::capability::denials::{Denials, Rule};
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::filesystem::{Dir, WasiFilesystemView};

/// The guest path of the catch-all mount: the folder that answers for
/// every path outside the granted mounts (see `guest`).
pub const OUTSIDE_MOUNTS: &str = "/";

/// A folder the guest finds preopened.
#[derive(Clone)]
pub struct Preopen {
    pub dir: Dir,
    /// Where the guest finds it.
    pub guest: String,
    /// What it may hold, when it is writable.
    pub quota: Option<Arc<Quota>>,
}

/// One call's filesystem state.
#[derive(Default)]
pub struct FilesCall {
    /// The folders this call's guest finds preopened.
    pub(super) preopens: Vec<Preopen>,
    /// Preopened descriptors (by resource rep) and their guest paths.
    mounts: Vec<(u32, String)>,
    /// Descriptors (by resource rep) in a folder with a disk quota, and it.
    quotas: HashMap<u32, Arc<Quota>>,
}

impl FilesCall {
    /// The state of a call holding `mounts`, for `user` (whose folder each
    /// per-user mount shows): each folder as held since the policy was
    /// loaded, a per-user one opened beneath its held parent.
    pub fn prepare(mounts: &[Mount], user: Option<&str>) -> anyhow::Result<FilesCall> {
        let preopens = mounts
            .iter()
            .map(|mount| {
                let (dir, quota) = mount.open_for(user)?;
                let guest = mount.guest.clone();
                Ok(Preopen { dir, guest, quota })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(FilesCall {
            preopens,
            ..FilesCall::default()
        })
    }
}

/// The filesystem's view of a call's store data (wasmtime-wasi's `XView`):
/// its call state, the resource table and the refusal log, with WASI's own
/// filesystem view beside them (the capability stands in front of
/// wasmtime-wasi, which stays the enforcement point for paths).
pub trait FilesView: WasiFilesystemView + 'static {
    fn files(&self) -> &FilesCall;
    fn files_mut(&mut self) -> &mut FilesCall;
    fn resources(&mut self) -> &mut ResourceTable;
    fn denials(&self) -> &Denials;

    /// Records that `rule` refused `attempt` (see [`Denials::refuse`]).
    fn deny(&self, rule: Rule, attempt: String) -> wasmtime::Result<()> {
        self.denials().refuse(rule, attempt)
    }

    /// Records that writing past the quota of the folder at `quota.guest`
    /// was refused.
    fn deny_quota(&self, quota: &Quota, attempt: String) -> wasmtime::Result<()> {
        self.deny(Rule::disk_quota(quota), attempt)
    }

    /// Remembers that the descriptor `rep` is the mount at `guest`.
    fn remember_mount(&mut self, rep: u32, guest: String) {
        self.files_mut().mounts.push((rep, guest));
    }

    /// The disk quota of what the descriptor `rep` reaches, if it has one.
    fn quota_of(&self, rep: u32) -> Option<Arc<Quota>> {
        self.files().quotas.get(&rep).cloned()
    }

    /// Sets (or clears) the disk quota of the descriptor `rep`: resource
    /// reps are reused, so every new descriptor sets its own.
    fn set_quota(&mut self, rep: u32, quota: Option<Arc<Quota>>) {
        let quotas = &mut self.files_mut().quotas;
        match quota {
            Some(quota) => quotas.insert(rep, quota),
            None => quotas.remove(&rep),
        };
    }

    /// Whether `fd` is the catch-all mount standing for "outside every mount".
    fn is_outside_mounts<T: 'static>(&self, fd: &Resource<T>) -> bool {
        self.files()
            .mounts
            .iter()
            .any(|(rep, guest)| *rep == fd.rep() && guest == OUTSIDE_MOUNTS)
    }

    /// `verb` and the guest path `path` names relative to `fd`.
    fn describe_path<T: 'static>(&self, fd: &Resource<T>, verb: &str, path: &str) -> String {
        match self.files().mounts.iter().find(|(rep, _)| *rep == fd.rep()) {
            Some((_, mount)) => {
                let mount = mount.trim_end_matches('/');
                format!("{verb} {mount}/{path}")
            }
            None => format!("{verb} {path} (in an opened directory)"),
        }
    }
}

impl<T: CallData> FilesView for T {
    fn files(&self) -> &FilesCall {
        &self.capabilities().mounts
    }

    fn files_mut(&mut self) -> &mut FilesCall {
        &mut self.capabilities_mut().mounts
    }

    fn resources(&mut self) -> &mut ResourceTable {
        self.ctx().table
    }

    fn denials(&self) -> &Denials {
        CallData::denials(self)
    }
}
