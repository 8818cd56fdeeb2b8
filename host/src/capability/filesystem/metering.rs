//! Disk quotas at the WASI boundary: what each filesystem operation would
//! add to or free from a writable mount, worked out before it runs (see
//! [`crate::capability::filesystem::quota`]), and output streams that charge each write
//! past a file's end as it is made.
//!
//! [`super::guest`] calls these around wasmtime-wasi's own functions, which
//! stay the enforcement point for where a path may go.

use super::call::FilesView;
use super::quota::{self, ENTRY_BLOCK, Ledger, MAX_DEPTH, OverQuota, Quota, Usage};
use crate::capability::denials::{Denial, Denials, Rule};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::Descriptor;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorStat, DescriptorType, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// The store of a call, as the guest functions hold it.
type Store<'a, 'b, T> = &'a mut StoreContextMut<'b, T>;

/// What `path` beneath the folder `dir` is now, not following a link.
async fn stat_at<T: FilesView>(
    store: Store<'_, '_, T>,
    dir: u32,
    path: &str,
) -> Option<DescriptorStat> {
    let fd = Resource::<Descriptor>::new_borrow(dir);
    let mut view = store.data_mut().filesystem();
    HostDescriptor::stat_at(&mut view, fd, PathFlags::empty(), path.to_owned())
        .await
        .ok()
}

/// What the open descriptor `fd` is now.
async fn stat<T: FilesView>(store: Store<'_, '_, T>, fd: u32) -> Option<DescriptorStat> {
    let fd = Resource::<Descriptor>::new_borrow(fd);
    let mut view = store.data_mut().filesystem();
    HostDescriptor::stat(&mut view, fd).await.ok()
}

/// What deleting an entry described by `stat` frees: the entry, and its
/// bytes unless another link keeps them.
fn freed_by_deleting(stat: &DescriptorStat) -> Usage {
    let bytes = match stat.type_ {
        DescriptorType::RegularFile if stat.link_count <= 1 => stat.size,
        DescriptorType::Directory | DescriptorType::SymbolicLink => ENTRY_BLOCK,
        _ => 0,
    };
    Usage::entry(bytes)
}

/// Charges `usage` to `quota` in `ledger`, recording a refusal of `attempt`.
fn charge<T: FilesView>(
    store: Store<'_, '_, T>,
    ledger: &mut Ledger,
    quota: &Arc<Quota>,
    usage: Usage,
    attempt: &str,
) -> Result<(), OverQuota> {
    ledger.charge(quota, usage).inspect_err(|_| {
        // Past the refusal limit, the next epoch tick stops the call.
        let _ = store.data().deny_quota(quota, attempt.to_owned());
    })
}

/// `open-at`: creating a file adds an entry; truncating one frees its bytes.
pub async fn open_at<T: FilesView>(
    store: Store<'_, '_, T>,
    dir: u32,
    path: &str,
    flags: OpenFlags,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    let mut ledger = Ledger::default();
    let Some(quota) = store.data().quota_of(dir) else {
        return Ok(ledger);
    };
    if !flags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE) {
        return Ok(ledger);
    }
    match stat_at(store, dir, path).await {
        None if flags.contains(OpenFlags::CREATE) => {
            charge(store, &mut ledger, &quota, Usage::entry(0), attempt)?;
        }
        Some(stat) if flags.contains(OpenFlags::TRUNCATE) => {
            let freed = freed_by_deleting(&stat);
            ledger.free_on_success(&quota, Usage::bytes(freed.bytes));
        }
        _ => {}
    }
    Ok(ledger)
}

/// The folder the descriptor `dir` holds, or `path` beneath it resolved as
/// the sandbox resolves it (links followed only within the folder).
fn folder_at<T: FilesView>(
    store: Store<'_, '_, T>,
    dir: u32,
    path: &Path,
) -> Option<std::fs::File> {
    let held = match store
        .data_mut()
        .resources()
        .get(&Resource::<Descriptor>::new_borrow(dir))
    {
        Ok(Descriptor::Dir(held)) => held.dir.clone(),
        _ => return None,
    };
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    cap_primitives::fs::open_dir(&held, path).ok()
}

/// Refuses, as too deep for `quota`, placing a folder `height` levels tall
/// at `path` beneath `dir`.
fn within_depth<T: FilesView>(
    store: Store<'_, '_, T>,
    quota: &Quota,
    (dir, path): (u32, &str),
    height: usize,
    attempt: &str,
) -> Result<(), OverQuota> {
    let parent = Path::new(path).parent().unwrap_or(Path::new(""));
    let Some(parent) = folder_at(store, dir, parent) else {
        // Nowhere to create it: the operation fails on its own.
        return Ok(());
    };
    quota
        .may_hold(parent.as_fd(), height)
        .inspect_err(|_| deny_too_deep(store, quota, attempt))
}

/// Records that `attempt` would have put a folder out of a measurement's
/// reach.
fn deny_too_deep<T: FilesView>(store: Store<'_, '_, T>, quota: &Quota, attempt: &str) {
    let rule = Rule::TooDeep {
        mount: quota.guest.clone(),
    };
    // Past the refusal limit, the next epoch tick stops the call.
    let _ = store.data().deny(rule, attempt.to_owned());
}

/// `create-directory-at`: one more entry in the folder `dir` and the block
/// it takes, no deeper than a measurement reaches.
pub fn add_folder<T: FilesView>(
    store: Store<'_, '_, T>,
    dir: u32,
    path: &str,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    if let Some(quota) = store.data().quota_of(dir) {
        within_depth(store, &quota, (dir, path), 1, attempt)?;
    }
    add_entry(store, dir, attempt)
}

/// `symlink-at`: one more entry in the folder `dir`, and the block it takes.
pub fn add_entry<T: FilesView>(
    store: Store<'_, '_, T>,
    dir: u32,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    let mut ledger = Ledger::default();
    if let Some(quota) = store.data().quota_of(dir) {
        charge(
            store,
            &mut ledger,
            &quota,
            Usage::entry(ENTRY_BLOCK),
            attempt,
        )?;
    }
    Ok(ledger)
}

/// `link-at`: one more name, in the folder `to_dir`, for the file at `from`
/// in `from_dir`. Within one quota the bytes are already charged; a file
/// from outside any quota is charged in full, as a copy would be; a link
/// from one quota into another is refused, since deleting either name
/// could not then credit the right one.
pub async fn add_link<T: FilesView>(
    store: Store<'_, '_, T>,
    (from_dir, from): (u32, &str),
    to_dir: u32,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    let mut ledger = Ledger::default();
    let (source, target) = (
        store.data().quota_of(from_dir),
        store.data().quota_of(to_dir),
    );
    let Some(target) = &target else {
        return Ok(ledger);
    };
    let usage = match &source {
        Some(source) if Arc::ptr_eq(source, target) => Usage::entry(0),
        Some(_) => {
            let _ = store.data().deny_quota(target, attempt.to_owned());
            return Err(OverQuota::Crossing);
        }
        None => match stat_at(store, from_dir, from).await {
            Some(linked) => Usage::entry(linked.size),
            None => Usage::entry(0),
        },
    };
    charge(store, &mut ledger, target, usage, attempt)?;
    Ok(ledger)
}

/// `unlink-file-at` and `remove-directory-at`: what `path` held is freed.
pub async fn remove<T: FilesView>(store: Store<'_, '_, T>, dir: u32, path: &str) -> Ledger {
    let mut ledger = Ledger::default();
    if let Some(quota) = store.data().quota_of(dir)
        && let Some(stat) = stat_at(store, dir, path).await
    {
        ledger.free_on_success(&quota, freed_by_deleting(&stat));
    }
    ledger
}

/// `rename-at`: a replaced entry is freed; an entry moving to a folder with
/// another quota is charged there and freed here.
pub async fn rename<T: FilesView>(
    store: Store<'_, '_, T>,
    (from_dir, from): (u32, &str),
    (to_dir, to): (u32, &str),
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    let mut ledger = Ledger::default();
    let source = store.data().quota_of(from_dir);
    let target = store.data().quota_of(to_dir);
    if let Some(target) = &target
        && let Some(replaced) = stat_at(store, to_dir, to).await
    {
        ledger.free_on_success(target, freed_by_deleting(&replaced));
    }
    let same = match (&source, &target) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if same
        && let Some(quota) = &target
        && stat_at(store, from_dir, from)
            .await
            .map(|moved| moved.type_)
            == Some(DescriptorType::Directory)
        && let Some(moved) = folder_at(store, from_dir, Path::new(from))
    {
        // A folder moved within its mount stays within a measurement's reach.
        match quota::height(moved.as_fd(), MAX_DEPTH) {
            Some(height) => within_depth(store, quota, (to_dir, to), height, attempt)?,
            None => {
                deny_too_deep(store, quota, attempt);
                return Err(OverQuota::TooDeep);
            }
        }
    }
    if !same && let Some(moved) = stat_at(store, from_dir, from).await {
        // A folder's contents could not be charged exactly: refused.
        if moved.type_ == DescriptorType::Directory || moved.link_count > 1 {
            if let Some(quota) = target.as_ref().or(source.as_ref()) {
                let _ = store.data().deny_quota(quota, attempt.to_owned());
            }
            return Err(OverQuota::Crossing);
        }
        let usage = freed_by_deleting(&moved);
        if let Some(target) = &target {
            charge(store, &mut ledger, target, usage, attempt)?;
        }
        if let Some(source) = &source {
            ledger.free_on_success(source, usage);
        }
    }
    Ok(ledger)
}

/// `write`: growing the file `fd` to `end` bytes is charged.
pub async fn grow_to<T: FilesView>(
    store: Store<'_, '_, T>,
    fd: u32,
    end: u64,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    resize(store, fd, end, false, attempt).await
}

/// `set-size` to `size`: growing charges bytes, shrinking frees them.
pub async fn set_size<T: FilesView>(
    store: Store<'_, '_, T>,
    fd: u32,
    size: u64,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    resize(store, fd, size, true, attempt).await
}

/// The file `fd` ending at `end`: what lies past its size now is charged;
/// with `shrinks`, what lies before it is freed once that succeeds.
async fn resize<T: FilesView>(
    store: Store<'_, '_, T>,
    fd: u32,
    end: u64,
    shrinks: bool,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    let mut ledger = Ledger::default();
    let Some(quota) = store.data().quota_of(fd) else {
        return Ok(ledger);
    };
    let size = stat(store, fd).await.map_or(0, |s| s.size);
    if end > size {
        charge(
            store,
            &mut ledger,
            &quota,
            Usage::bytes(end - size),
            attempt,
        )?;
    } else if shrinks && end < size {
        ledger.free_on_success(&quota, Usage::bytes(size - end));
    }
    Ok(ledger)
}

/// Wraps the output stream just opened on the file `fd` at `offset` (its
/// end when `None`, for appending) so that its writes are charged.
pub fn meter_stream<T: FilesView>(
    store: Store<'_, '_, T>,
    fd: u32,
    stream: Resource<DynOutputStream>,
    offset: Option<u64>,
    attempt: String,
) -> wasmtime::Result<Resource<DynOutputStream>> {
    let Some(quota) = store.data().quota_of(fd) else {
        return Ok(stream);
    };
    let state = store.data_mut();
    let file = match state
        .resources()
        .get(&Resource::<Descriptor>::new_borrow(fd))?
    {
        Descriptor::File(file) => file.file.clone(),
        Descriptor::Dir(_) => wasmtime::bail!("an output stream on a folder"),
    };
    let inner = state.resources().delete(stream)?;
    let metered: DynOutputStream = Box::new(MeteredStream {
        inner,
        file,
        quota,
        position: offset,
        denials: state.denials().clone(),
        attempt,
    });
    Ok(state.resources().push(metered)?)
}

/// An output stream to a file in a folder with a quota.
///
/// Each write is charged for how far it takes the file past the end the
/// file has *now*, not the end it had when the stream was opened: a file
/// truncated (by another stream, `set-size` or a truncating open) while
/// this stream was open is charged again as it regrows. The inner stream
/// accepts a write only once its previous one has landed, so the size read
/// before a write that is accepted includes all of this stream's earlier
/// writes.
struct MeteredStream {
    inner: DynOutputStream,
    /// The file the stream writes, to read its size at each write.
    file: Arc<std::fs::File>,
    quota: Arc<Quota>,
    /// Where the next write lands; `None` when every write lands at the end.
    position: Option<u64>,
    denials: Denials,
    attempt: String,
}

impl MeteredStream {
    /// The file's size now. Unknown, it is taken as empty, so that the
    /// whole write is charged: over-charging is the safe mistake.
    fn size_now(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for MeteredStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

impl OutputStream for MeteredStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let size = self.size_now();
        let start = self.position.unwrap_or(size);
        let after = start.saturating_add(bytes.len() as u64);
        let growth = after.saturating_sub(size);
        if growth > 0 && self.quota.charge(Usage::bytes(growth)).is_err() {
            self.denials.record(Denial::new(
                Rule::disk_quota(&self.quota),
                self.attempt.clone(),
            ));
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "the disk quota of {} is used up",
                self.quota.guest
            )));
        }
        if let Err(e) = self.inner.write(bytes) {
            self.quota.credit(Usage::bytes(growth));
            return Err(e);
        }
        if let Some(position) = &mut self.position {
            *position = after;
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }
}
