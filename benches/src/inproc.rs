//! A file system mounted in the benchmark's own process (read-only), shared by the
//! benchmark binaries.

use anyhow::{Context, Result};
use s3vfs::vfs::Vfs;
use s3vfs_fuse::{MountGuard, MountOptions};
use std::path::Path;
use std::sync::Arc;

/// Mounts `fs` read-only at `dir` under the name `fs_name`, served on the current tokio
/// runtime; the kernel's setup runs on the blocking pool.
pub async fn mount_read_only<V: Vfs + ?Sized + 'static>(
    fs: Arc<V>,
    dir: &Path,
    fs_name: &str,
) -> Result<MountGuard> {
    let options = MountOptions::default()
        .with_read_only(true)
        .with_fs_name(fs_name);
    let runtime = tokio::runtime::Handle::current();
    let path = dir.to_owned();
    tokio::task::spawn_blocking(move || s3vfs_fuse::mount(fs, &path, &options, runtime))
        .await
        .context("mount thread failed")?
        .context("cannot mount (run with --no-fuse to skip the FUSE measurements)")
}
