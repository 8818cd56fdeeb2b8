//! The filesystem's guest functions: linker entries that stand in front of
//! a few WASI filesystem functions so that what the sandbox refuses is
//! seen, recorded and reported, and what a read-write mount holds is
//! metered against its quota.
//!
//! wasmtime-wasi stays the enforcement point for files: each wrapper calls
//! through to it and only watches for refusals (`not-permitted`, `access`,
//! `read-only`). Two things it cannot see are handled here:
//!
//! - paths outside every mount never reach the host (the guest's libc fails
//!   them itself), so every sandbox also mounts an empty, read-only folder at
//!   `/`: such paths then arrive on that descriptor, and are refused here
//!   without touching it;
//! - only regular files and folders are opened: a FIFO, device or socket
//!   placed in a mount (by anyone outside the sandbox: WASI cannot make
//!   one) is refused after a stat, which never blocks, instead of being
//!   opened, which would hold a host thread until something writes to it.

use super::call::{FilesView, OUTSIDE_MOUNTS, Preopen};
use super::metering;
use super::quota::{Ledger, OverQuota};
use crate::capability::denials::Rule;
use wasmtime::component::{Linker, Resource};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, DescriptorFlags, ErrorCode, HostDescriptor, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types::DescriptorStat};
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtxBuilder};

/// What `path` under `fd` is, when it exists and is neither a regular file
/// nor a folder: `a FIFO`, `a character device`, …. A stat follows links as
/// the open would (`path_flags`), and never blocks.
async fn special_file<T: FilesView>(
    store: &mut StoreContextMut<'_, T>,
    fd: &Resource<Descriptor>,
    path_flags: PathFlags,
    path: &str,
) -> Option<String> {
    use fs::DescriptorType as Type;
    let fd = Resource::<Descriptor>::new_borrow(fd.rep());
    let mut view = store.data_mut().filesystem();
    let stat = HostDescriptor::stat_at(&mut view, fd, path_flags, path.to_owned())
        .await
        .ok()?;
    match stat.type_ {
        Type::RegularFile | Type::Directory | Type::SymbolicLink => None,
        Type::Fifo => Some("a FIFO".into()),
        Type::CharacterDevice => Some("a character device".into()),
        Type::BlockDevice => Some("a block device".into()),
        Type::Socket => Some("a socket".into()),
        Type::Unknown => Some("a FIFO, a socket or a device".into()),
    }
}

/// Opens the empty, read-only folder every sandbox sees at
/// [`OUTSIDE_MOUNTS`], once for all calls.
///
/// The folder is removed as soon as it is open: nothing can be created in
/// it, nothing is left on disk however the host ends, and no call opens it
/// again (each call's guest gets the same descriptor; every access is
/// relative to it, and refused before it is touched).
pub fn open_outside_mounts() -> anyhow::Result<Dir> {
    let cannot = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("cannot create the sandbox's empty root folder: {e}")
    };
    let folder = tempfile::Builder::new()
        .prefix("host-outside-mounts-")
        .tempdir()
        .map_err(|e| cannot(&e))?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.preopened_dir(folder.path(), OUTSIDE_MOUNTS, FsPerms::ReadOnly)
        .map_err(|e| cannot(&e))?;
    let mut wasi = wasi.build();
    let mut table = ResourceTable::new();
    let mut view = WasiFilesystemCtxView {
        ctx: wasi.filesystem(),
        table: &mut table,
    };
    let opened = preopens::Host::get_directories(&mut view).map_err(|e| cannot(&e))?;
    let Some((fd, _)) = opened.into_iter().next() else {
        return Err(cannot(&"wasmtime-wasi did not open it"));
    };
    let Descriptor::Dir(root) = table.delete(fd).map_err(|e| cannot(&e))? else {
        return Err(cannot(&"it is not a folder"));
    };
    folder.close().map_err(|e| cannot(&e))?;
    Ok(root)
}

const FS_TYPES: &str = "wasi:filesystem/types@0.2.12";
const FS_PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";

/// Whether `code` means the sandbox refused, rather than that the operation
/// failed for an ordinary reason (no such file, not empty, ...).
fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotPermitted | ErrorCode::Access | ErrorCode::ReadOnly
    )
}

/// Wraps a `descriptor.<method>-at` function: refuses outright on the
/// catch-all descriptor, else calls through and records a refusal. With a
/// `quota` plan, the operation's disk-quota charges are made first (refused
/// with `quota` if they do not fit) and settled by its outcome; with
/// `inherit_quota`, the descriptor it opens shares its folder's quota.
macro_rules! watch_at {
    (@plan $store:ident, $fd:ident, $attempt:ident) => {
        Ok::<Ledger, OverQuota>(Ledger::default())
    };
    (@plan $store:ident, $fd:ident, $attempt:ident, |$st:ident, $dir:ident, $att:ident| $plan:expr) => {{
        let $st = &mut $store;
        let $dir = $fd.rep();
        let $att = $attempt.as_str();
        $plan.await
    }};
    ($types:ident, $name:literal, $verb:literal, $method:ident,
     ($($arg:ident: $ty:ty),*), path: $path:ident, returns $ret:ty
     $(, only_files: $follow:ident)?
     $(, quota: |$st:ident, $dir:ident, $att:ident| $plan:expr)?
     $(, inherit_quota: $inherit:ident)?) => {
        $types.func_wrap_async(
            $name,
            |mut store: StoreContextMut<'_, T>, (fd, $($arg,)*): (Resource<Descriptor>, $($ty,)*)| {
                Box::new(async move {
                    let attempt = store.data().describe_path(&fd, $verb, &$path);
                    if store.data().is_outside_mounts(&fd) {
                        store.data().deny(Rule::NoMount, attempt)?;
                        return Ok((Err(ErrorCode::NotPermitted),));
                    }
                    $(if let Some(kind) = special_file(&mut store, &fd, $follow, &$path).await {
                        store.data().deny(Rule::NotAFile(kind), attempt)?;
                        return Ok((Err(ErrorCode::NotPermitted),));
                    })?
                    let planned = watch_at!(@plan store, fd, attempt $(, |$st, $dir, $att| $plan)?);
                    let ledger = match planned {
                        Ok(ledger) => ledger,
                        Err(OverQuota::Full | OverQuota::TooDeep) => {
                            return Ok((Err(ErrorCode::Quota),));
                        }
                        Err(OverQuota::Crossing) => return Ok((Err(ErrorCode::CrossDevice),)),
                    };
                    $(let $inherit = fd.rep();)?
                    let mut view = store.data_mut().filesystem();
                    let result: std::result::Result<$ret, _> =
                        match HostDescriptor::$method(&mut view, fd, $($arg),*).await {
                            Ok(value) => Ok(value),
                            Err(error) => Err(fs::Host::convert_error_code(&mut view, error)?),
                        };
                    ledger.settle(result.is_ok());
                    $(if let Ok(opened) = &result {
                        let quota = store.data().quota_of($inherit);
                        store.data_mut().set_quota(opened.rep(), quota);
                    })?
                    if let Err(code) = &result && is_refusal(*code) {
                        store.data().deny(Rule::Sandbox, attempt)?;
                    }
                    Ok((result,))
                })
            },
        )?;
    };
}

/// Adds the wrappers to `linker`, which must already hold WASI. Every
/// sandbox's guest finds `outside_mounts` (see [`open_outside_mounts`]) at
/// [`OUTSIDE_MOUNTS`] beside its own mounts.
pub fn add_to_linker<T: FilesView>(linker: &mut Linker<T>, outside_mounts: Dir) -> Result<()> {
    linker.allow_shadowing(true);

    let mut preopens = linker.instance(FS_PREOPENS)?;
    preopens.func_wrap(
        "get-directories",
        move |mut store: StoreContextMut<'_, T>, (): ()| {
            let state = store.data_mut();
            let held = state.files().preopens.iter().cloned();
            let outside = std::iter::once(Preopen {
                dir: outside_mounts.clone(),
                guest: OUTSIDE_MOUNTS.to_owned(),
                quota: None,
            });
            let mut directories = Vec::new();
            for preopen in held.chain(outside).collect::<Vec<_>>() {
                let fd = state.resources().push(Descriptor::Dir(preopen.dir))?;
                state.remember_mount(fd.rep(), preopen.guest.clone());
                state.set_quota(fd.rep(), preopen.quota);
                directories.push((fd, preopen.guest));
            }
            Ok((directories,))
        },
    )?;

    let mut types = linker.instance(FS_TYPES)?;
    watch_at!(types, "[method]descriptor.open-at", "open", open_at,
        (path_flags: PathFlags, path: String, open_flags: OpenFlags, flags: DescriptorFlags),
        path: path, returns Resource<Descriptor>, only_files: path_flags,
        quota: |st, dir, att| metering::open_at(st, dir, &path, open_flags, att),
        inherit_quota: parent);
    watch_at!(types, "[method]descriptor.stat-at", "stat", stat_at,
        (path_flags: PathFlags, path: String), path: path, returns DescriptorStat);
    watch_at!(types, "[method]descriptor.set-times-at", "set the times of", set_times_at,
        (path_flags: PathFlags, path: String, atime: NewTimestamp, mtime: NewTimestamp),
        path: path, returns ());
    watch_at!(types, "[method]descriptor.readlink-at", "read the link", readlink_at,
        (path: String), path: path, returns String);
    watch_at!(types, "[method]descriptor.create-directory-at", "create the directory",
        create_directory_at, (path: String), path: path, returns (),
        quota: |st, dir, att| async { metering::add_folder(st, dir, &path, att) });
    watch_at!(types, "[method]descriptor.remove-directory-at", "remove the directory",
        remove_directory_at, (path: String), path: path, returns (),
        quota: |st, dir, _att| async { Ok::<_, OverQuota>(metering::remove(st, dir, &path).await) });
    watch_at!(types, "[method]descriptor.unlink-file-at", "delete", unlink_file_at,
        (path: String), path: path, returns (),
        quota: |st, dir, _att| async { Ok::<_, OverQuota>(metering::remove(st, dir, &path).await) });
    watch_at!(types, "[method]descriptor.symlink-at", "create a symlink at", symlink_at,
        (old_path: String, new_path: String), path: new_path, returns (),
        quota: |st, dir, att| async { metering::add_entry(st, dir, att) });
    watch_at!(types, "[method]descriptor.rename-at", "rename", rename_at,
        (old_path: String, new_fd: Resource<Descriptor>, new_path: String),
        path: old_path, returns (),
        quota: |st, dir, att| metering::rename(st, (dir, &old_path), (new_fd.rep(), &new_path), att));
    watch_at!(types, "[method]descriptor.link-at", "hard-link", link_at,
        (old_flags: PathFlags, old_path: String, new_fd: Resource<Descriptor>, new_path: String),
        path: old_path, returns (),
        quota: |st, dir, att| metering::add_link(st, (dir, &old_path), new_fd.rep(), att));

    types.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, T>,
         (fd, buffer, offset): (Resource<Descriptor>, Vec<u8>, u64)| {
            Box::new(async move {
                let end = offset.saturating_add(buffer.len() as u64);
                let attempt = format!("write {} bytes to a file", buffer.len());
                let Ok(ledger) = metering::grow_to(&mut store, fd.rep(), end, &attempt).await
                else {
                    return Ok((Err(ErrorCode::Quota),));
                };
                let mut view = store.data_mut().filesystem();
                let result = match HostDescriptor::write(&mut view, fd, buffer, offset).await {
                    Ok(written) => Ok(written),
                    Err(error) => Err(fs::Host::convert_error_code(&mut view, error)?),
                };
                ledger.settle(result.is_ok());
                Ok((result,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: StoreContextMut<'_, T>, (fd, size): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let attempt = format!("set a file's size to {size} bytes");
                let Ok(ledger) = metering::set_size(&mut store, fd.rep(), size, &attempt).await
                else {
                    return Ok((Err(ErrorCode::Quota),));
                };
                let mut view = store.data_mut().filesystem();
                let result = match HostDescriptor::set_size(&mut view, fd, size).await {
                    Ok(()) => Ok(()),
                    Err(error) => Err(fs::Host::convert_error_code(&mut view, error)?),
                };
                ledger.settle(result.is_ok());
                Ok((result,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.write-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd, offset): (Resource<Descriptor>, u64)| {
            Box::new(async move {
                let rep = fd.rep();
                let mut view = store.data_mut().filesystem();
                let stream = match HostDescriptor::write_via_stream(&mut view, fd, offset) {
                    Ok(stream) => stream,
                    Err(error) => {
                        return Ok((Err(fs::Host::convert_error_code(&mut view, error)?),));
                    }
                };
                let attempt = format!("write to a file past the quota, from offset {offset}");
                let stream =
                    metering::meter_stream(&mut store, rep, stream, Some(offset), attempt)?;
                Ok((Ok(stream),))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.append-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd,): (Resource<Descriptor>,)| {
            Box::new(async move {
                let rep = fd.rep();
                let mut view = store.data_mut().filesystem();
                let stream = match HostDescriptor::append_via_stream(&mut view, fd) {
                    Ok(stream) => stream,
                    Err(error) => {
                        return Ok((Err(fs::Host::convert_error_code(&mut view, error)?),));
                    }
                };
                let attempt = "append to a file past the quota".to_owned();
                let stream = metering::meter_stream(&mut store, rep, stream, None, attempt)?;
                Ok((Ok(stream),))
            })
        },
    )?;

    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_root_is_gone_from_disk_and_stays_empty() {
        use std::os::fd::AsRawFd;
        let root = open_outside_mounts().unwrap();
        let through = format!("/proc/self/fd/{}", root.dir.as_raw_fd());
        let target = std::fs::read_link(&through).unwrap();
        assert!(
            target.to_string_lossy().ends_with("(deleted)"),
            "{target:?}"
        );
        assert_eq!(std::fs::read_dir(&through).unwrap().count(), 0);
        assert!(std::fs::create_dir(format!("{through}/planted")).is_err());
    }
}
