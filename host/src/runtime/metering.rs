//! Disk quotas at the WASI boundary: what each filesystem operation would
//! add to or free from a writable mount, worked out before it runs (see
//! [`crate::capability::filesystem::quota`]), and output streams that charge each write
//! past a file's end as it is made.
//!
//! [`super::shadow`] calls these around wasmtime-wasi's own functions, which
//! stay the enforcement point for where a path may go.

use super::state::CallState;
use crate::capability::denials::{Denial, Denials, Rule};
use crate::capability::filesystem::quota::{Ledger, OverQuota, Quota, Usage};
use std::sync::Arc;
use wasmtime::StoreContextMut;
use wasmtime::component::Resource;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorStat, DescriptorType, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

/// The store of a call, as the shadowing wrappers hold it.
type Store<'a, 'b> = &'a mut StoreContextMut<'b, CallState>;

/// What `path` beneath the folder `dir` is now, not following a link.
async fn stat_at(store: Store<'_, '_>, dir: u32, path: &str) -> Option<DescriptorStat> {
    let fd = Resource::<Descriptor>::new_borrow(dir);
    let mut view = store.data_mut().filesystem();
    HostDescriptor::stat_at(&mut view, fd, PathFlags::empty(), path.to_owned())
        .await
        .ok()
}

/// What the open descriptor `fd` is now.
async fn stat(store: Store<'_, '_>, fd: u32) -> Option<DescriptorStat> {
    let fd = Resource::<Descriptor>::new_borrow(fd);
    let mut view = store.data_mut().filesystem();
    HostDescriptor::stat(&mut view, fd).await.ok()
}

/// What deleting an entry described by `stat` frees: the entry, and its
/// bytes unless another link keeps them.
fn freed_by_deleting(stat: &DescriptorStat) -> Usage {
    let bytes = match stat.type_ {
        DescriptorType::RegularFile if stat.link_count <= 1 => stat.size,
        _ => 0,
    };
    Usage::entry(bytes)
}

/// Charges `usage` to `quota` in `ledger`, recording a refusal of `attempt`.
fn charge(
    store: Store<'_, '_>,
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
pub async fn open_at(
    store: Store<'_, '_>,
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

/// `create-directory-at`, `symlink-at` and `link-at`: one more entry in the
/// folder `dir`.
pub fn add_entry(store: Store<'_, '_>, dir: u32, attempt: &str) -> Result<Ledger, OverQuota> {
    let mut ledger = Ledger::default();
    if let Some(quota) = store.data().quota_of(dir) {
        charge(store, &mut ledger, &quota, Usage::entry(0), attempt)?;
    }
    Ok(ledger)
}

/// `unlink-file-at` and `remove-directory-at`: what `path` held is freed.
pub async fn remove(store: Store<'_, '_>, dir: u32, path: &str) -> Ledger {
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
pub async fn rename(
    store: Store<'_, '_>,
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
    if !same && let Some(moved) = stat_at(store, from_dir, from).await {
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
pub async fn grow_to(
    store: Store<'_, '_>,
    fd: u32,
    end: u64,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    resize(store, fd, end, false, attempt).await
}

/// `set-size` to `size`: growing charges bytes, shrinking frees them.
pub async fn set_size(
    store: Store<'_, '_>,
    fd: u32,
    size: u64,
    attempt: &str,
) -> Result<Ledger, OverQuota> {
    resize(store, fd, size, true, attempt).await
}

/// The file `fd` ending at `end`: what lies past its size now is charged;
/// with `shrinks`, what lies before it is freed once that succeeds.
async fn resize(
    store: Store<'_, '_>,
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
pub async fn meter_stream(
    store: Store<'_, '_>,
    fd: u32,
    stream: Resource<DynOutputStream>,
    offset: Option<u64>,
    attempt: String,
) -> wasmtime::Result<Resource<DynOutputStream>> {
    let Some(quota) = store.data().quota_of(fd) else {
        return Ok(stream);
    };
    let end = stat(store, fd).await.map_or(0, |s| s.size);
    let state = store.data_mut();
    let inner = state.table.delete(stream)?;
    let metered: DynOutputStream = Box::new(MeteredStream {
        inner,
        quota,
        position: offset.unwrap_or(end),
        appending: offset.is_none(),
        end,
        denials: state.denials().clone(),
        attempt,
    });
    Ok(state.table.push(metered)?)
}

/// An output stream to a file in a folder with a quota.
struct MeteredStream {
    inner: DynOutputStream,
    quota: Arc<Quota>,
    /// Where the next write lands.
    position: u64,
    /// Whether every write lands at the end.
    appending: bool,
    /// The file's end as far as this stream knows.
    end: u64,
    denials: Denials,
    attempt: String,
}

#[wasmtime_wasi::async_trait]
impl Pollable for MeteredStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

impl OutputStream for MeteredStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let start = if self.appending {
            self.end
        } else {
            self.position
        };
        let after = start.saturating_add(bytes.len() as u64);
        let growth = after.saturating_sub(self.end);
        if growth > 0 && self.quota.charge(Usage::bytes(growth)).is_err() {
            let rule = Rule::DiskQuota {
                max_mib: self.quota.limits.max_bytes >> 20,
                max_entries: self.quota.limits.max_entries,
            };
            self.denials.record(Denial::new(rule, self.attempt.clone()));
            return Err(StreamError::LastOperationFailed(wasmtime::format_err!(
                "the disk quota of {} is used up",
                self.quota.guest
            )));
        }
        if let Err(e) = self.inner.write(bytes) {
            self.quota.credit(Usage::bytes(growth));
            return Err(e);
        }
        self.position = after;
        self.end = self.end.max(after);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }
}
