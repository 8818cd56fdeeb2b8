//! Linker entries that stand in front of a few WASI functions so that what
//! the sandbox refuses is seen, recorded and reported.
//!
//! wasmtime-wasi stays the enforcement point for files: each wrapper calls
//! through to it and only watches for refusals (`not-permitted`, `access`,
//! `read-only`). Two things it cannot see are handled here:
//!
//! - paths outside every mount never reach the host (the guest's libc fails
//!   them itself), so every sandbox also mounts an empty, read-only folder at
//!   `/`: such paths then arrive on that descriptor, and are refused here
//!   without touching it;
//! - name lookup is refused here unless the policy grants it, instead of
//!   failing silently inside wasmtime-wasi.

use super::state::CallState;
use wasmtime::component::{Linker, Resource};
use wasmtime::{Result, StoreContextMut};
use wasmtime_wasi::filesystem::{Descriptor, Dir, WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, DescriptorFlags, ErrorCode, HostDescriptor, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types::DescriptorStat};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{self, Network};
use wasmtime_wasi::sockets::WasiSocketsView;
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtxBuilder};

/// The guest path of the catch-all mount.
pub const OUTSIDE_MOUNTS: &str = "/";

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
const NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// The rule named when wasmtime-wasi refuses: a path leaving its mount (by
/// `..` or a symlink) or a change in a read-only mount.
const SANDBOX_REFUSAL: &str = "the sandbox (the path leaves its mount, or the mount is read-only)";

/// Whether `code` means the sandbox refused, rather than that the operation
/// failed for an ordinary reason (no such file, not empty, ...).
fn is_refusal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotPermitted | ErrorCode::Access | ErrorCode::ReadOnly
    )
}

/// Wraps a `descriptor.<method>-at` function: refuses outright on the
/// catch-all descriptor, else calls through and records a refusal.
macro_rules! watch_at {
    ($types:ident, $name:literal, $verb:literal, $method:ident,
     ($($arg:ident: $ty:ty),*), path: $path:ident, returns $ret:ty) => {
        $types.func_wrap_async(
            $name,
            |mut store: StoreContextMut<'_, CallState>, (fd, $($arg,)*): (Resource<Descriptor>, $($ty,)*)| {
                Box::new(async move {
                    let attempt = store.data().describe_path(&fd, $verb, &$path);
                    if store.data().is_outside_mounts(&fd) {
                        store.data().deny("policy (no mount holds this path)", attempt);
                        return Ok((Err(ErrorCode::NotPermitted),));
                    }
                    let mut view = store.data_mut().filesystem();
                    let result: std::result::Result<$ret, _> =
                        match HostDescriptor::$method(&mut view, fd, $($arg),*).await {
                            Ok(value) => Ok(value),
                            Err(error) => Err(fs::Host::convert_error_code(&mut view, error)?),
                        };
                    if let Err(code) = &result && is_refusal(*code) {
                        store.data().deny(SANDBOX_REFUSAL, attempt);
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
pub fn add_to_linker(linker: &mut Linker<CallState>, outside_mounts: Dir) -> Result<()> {
    linker.allow_shadowing(true);

    let mut preopens = linker.instance(FS_PREOPENS)?;
    preopens.func_wrap(
        "get-directories",
        move |mut store: StoreContextMut<'_, CallState>, (): ()| {
            let mut view = store.data_mut().filesystem();
            let mut directories = preopens::Host::get_directories(&mut view)?;
            let root = view.table.push(Descriptor::Dir(outside_mounts.clone()))?;
            directories.push((root, OUTSIDE_MOUNTS.to_owned()));
            for (fd, guest) in &directories {
                store.data_mut().remember_mount(fd.rep(), guest.clone());
            }
            Ok((directories,))
        },
    )?;

    let mut types = linker.instance(FS_TYPES)?;
    watch_at!(types, "[method]descriptor.open-at", "open", open_at,
        (path_flags: PathFlags, path: String, open_flags: OpenFlags, flags: DescriptorFlags),
        path: path, returns Resource<Descriptor>);
    watch_at!(types, "[method]descriptor.stat-at", "stat", stat_at,
        (path_flags: PathFlags, path: String), path: path, returns DescriptorStat);
    watch_at!(types, "[method]descriptor.set-times-at", "set the times of", set_times_at,
        (path_flags: PathFlags, path: String, atime: NewTimestamp, mtime: NewTimestamp),
        path: path, returns ());
    watch_at!(types, "[method]descriptor.readlink-at", "read the link", readlink_at,
        (path: String), path: path, returns String);
    watch_at!(types, "[method]descriptor.create-directory-at", "create the directory",
        create_directory_at, (path: String), path: path, returns ());
    watch_at!(types, "[method]descriptor.remove-directory-at", "remove the directory",
        remove_directory_at, (path: String), path: path, returns ());
    watch_at!(types, "[method]descriptor.unlink-file-at", "delete", unlink_file_at,
        (path: String), path: path, returns ());
    watch_at!(types, "[method]descriptor.symlink-at", "create a symlink at", symlink_at,
        (old_path: String, new_path: String), path: new_path, returns ());
    watch_at!(types, "[method]descriptor.rename-at", "rename", rename_at,
        (old_path: String, new_fd: Resource<Descriptor>, new_path: String),
        path: old_path, returns ());
    watch_at!(types, "[method]descriptor.link-at", "hard-link", link_at,
        (old_flags: PathFlags, old_path: String, new_fd: Resource<Descriptor>, new_path: String),
        path: old_path, returns ());

    let mut lookup = linker.instance(NAME_LOOKUP)?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store: StoreContextMut<'_, CallState>, (net, name): (Resource<Network>, String)| {
            if !store.data().name_lookup_granted() {
                let attempt = format!("resolve the host name {name}");
                store
                    .data()
                    .deny("policy (no [sockets] name_lookup grant)", attempt);
                return Ok((Err::<Resource<ResolveAddressStream>, _>(
                    network::ErrorCode::PermanentResolverFailure,
                ),));
            }
            let mut view = store.data_mut().sockets();
            let result = match ip_name_lookup::Host::resolve_addresses(&mut view, net, name) {
                Ok(stream) => Ok(stream),
                Err(error) => Err(network::Host::convert_error_code(&mut view, error)?),
            };
            Ok((result,))
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
