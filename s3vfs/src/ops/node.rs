//! Objects that are whole when made: symbolic links and the nodes of `mknod` (fifos,
//! devices, sockets, empty regular files), in the s3fs convention: one PUT of an object
//! whose `x-amz-meta-mode` has the type, with owner and mtime.
//!
//! - A symbolic link's body is the target, its mode `S_IFLNK | 0777`; `readlink` (in
//!   `fs.rs`) reads the body back; s3fs, goofys and rclone read the same.
//! - A fifo, device or socket is empty; a device's number goes in `x-amz-meta-rdev`. The
//!   file system never opens one: on a mount the kernel does (a fifo is a kernel pipe, a
//!   socket is bound by the kernel, a device is its driver's).

use super::Ops;
use crate::attrs::{kind_of_mode, MAX_SYMLINK_TARGET, S_IFMT};
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::store::ObjectMeta;
use crate::vfs::{Entry, FileKind, Ino};
use bytes::Bytes;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

/// What a new node is: its kind, permission bits, device number and body.
struct NewNode {
    kind: FileKind,
    perm: u32,
    rdev: Option<u32>,
    body: Bytes,
}

impl Ops<'_> {
    /// Creates symbolic link `name` in `parent` pointing at `target`: one PUT, only if the
    /// name is free (`EEXIST` otherwise).
    pub(crate) async fn symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
    ) -> VfsResult<Entry> {
        self.core.check_writable("symlink")?;
        let (parent_path, path) = self.core.child_path(parent, name)?;
        let body = Bytes::copy_from_slice(target.as_bytes());
        if body.is_empty() {
            return Err(VfsError::NotFound(format!("{path}: empty symlink target")));
        }
        if body.len() as u64 > MAX_SYMLINK_TARGET {
            return Err(VfsError::NameTooLong(format!(
                "{path}: symlink target of {} bytes",
                body.len()
            )));
        }
        let node = NewNode {
            kind: FileKind::Symlink,
            perm: 0o777,
            rdev: None,
            body,
        };
        self.create_node(&parent_path, path, node).await
    }

    /// Creates `name` in `parent` as `mknod(2)` does (see [`Vfs::mknod`]): an empty object
    /// whose mode has the type, only if the name is free. `EPERM` for a directory type (as
    /// mknod(2); `mkdir` makes those), `EINVAL` for a symlink or unknown type.
    ///
    /// [`Vfs::mknod`]: crate::vfs::Vfs::mknod
    pub(crate) async fn mknod(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> VfsResult<Entry> {
        self.core.check_writable("mknod")?;
        let (parent_path, path) = self.core.child_path(parent, name)?;
        let kind = match kind_of_mode(mode) {
            // mknod(2): no type is a regular file.
            None if mode & S_IFMT == 0 => FileKind::File,
            Some(FileKind::Directory) => {
                return Err(VfsError::NotPermitted(format!(
                    "{path}: mknod cannot make a directory"
                )))
            }
            Some(FileKind::Symlink) | None => {
                return Err(VfsError::InvalidArgument(format!(
                    "{path}: mknod of file type {:o}",
                    mode & S_IFMT
                )))
            }
            Some(kind) => kind,
        };
        let rdev = matches!(kind, FileKind::CharDevice | FileKind::BlockDevice).then_some(rdev);
        let node = NewNode {
            kind,
            perm: mode,
            rdev,
            body: Bytes::new(),
        };
        self.create_node(&parent_path, path, node).await
    }

    /// PUTs `node` as `path` (in `parent_path`) with `If-None-Match: *`: `EEXIST` when
    /// the name is taken (or was taken meanwhile), `ENOENT`/`ENOTDIR` for a parent that is
    /// gone or not a directory.
    async fn create_node(
        &self,
        parent_path: &FsPath,
        path: FsPath,
        node: NewNode,
    ) -> VfsResult<Entry> {
        self.require_directory(parent_path).await?;
        if self.stat_optional(&path).await?.is_some() {
            tracing::debug!(path = %path, kind = %node.kind, "creation refused: the name exists");
            return Err(VfsError::Exists(path.to_string()));
        }
        let key = self.core.ns.file_key(&path)?;
        let mut posix = self.core.new_posix_meta(node.kind, node.perm);
        posix.rdev = node.rdev;
        let mut options = self.core.new_object_options(posix);
        options.condition = self.core.write_condition(None);
        let size = node.body.len() as u64;
        let put = self
            .core
            .store
            .put(&key, node.body, options.clone())
            .await
            .map_err(|e| VfsError::from_create(&path, e))?;
        let stat = Stat::from_head(&ObjectMeta {
            key,
            size,
            last_modified: SystemTime::now(),
            etag: put.etag,
            storage_class: options.storage_class,
            content_type: options.content_type,
            user_metadata: options.user_metadata,
            restored: false,
        });
        self.core.meta.put(&path, stat.clone());
        let ino = self.core.inodes.lookup(&path, node.kind);
        Ok(self.core.entry(ino, &stat))
    }
}
