//! Opening and closing files: `open`, `create` (`O_CREAT`: a new name, or an existing
//! file opened for writing), and the release of handles, whose last one of a file uploads
//! what is left or keeps it in the recovery directory.

use super::Ops;
use crate::error::{VfsError, VfsResult};
use crate::handles::OpenHandle;
use crate::meta::Stat;
use crate::namespace::FileName;
use crate::store::storage_class;
use crate::vfs::{Entry, FileKind, Handle, Ino, OpenFlags};
use std::ffi::OsStr;
use std::sync::Arc;

impl Ops<'_> {
    /// `flush` (each `close` of a descriptor): uploads the file's changes, unless the
    /// handle could not write.
    pub(crate) async fn flush(&self, handle: Handle) -> VfsResult<()> {
        let (file, flags) = self.handles.file(handle)?;
        // Closing a descriptor that could not write publishes nothing: another writer's
        // unfinished file must not become visible because a reader closed it.
        if !(flags.write || flags.append || flags.truncate) {
            return Ok(());
        }
        self.open_files.upload(&file).await
    }

    /// Opens file `ino` with `flags`; nothing is asked of the store but its lookup.
    pub(crate) async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle> {
        self.core.check_not_closing("open")?;
        let info = self.core.inodes.info(ino)?;
        let mut stat = self.stat_path(&info.path).await?;
        // A library caller gets no pipe or device: the kernel opens those itself.
        stat.kind.require_regular(&info.path)?;
        let key = self.core.ns.file_key(&info.path)?;
        if storage_class::is_archived(stat.storage_class.as_deref()) && !flags.truncate {
            // Whether an archived object was restored (and for how long) only a fresh HEAD
            // tells.
            let head = self
                .core
                .store
                .head(&key)
                .await
                .map_err(|e| VfsError::from_store(info.path.as_str(), e))?;
            if !head.restored {
                let class = head.storage_class.clone().unwrap_or_default();
                tracing::warn!(key = %key, storage_class = %class,
                    "object is archived; restore it before reading");
                return Err(VfsError::Archived {
                    path: info.path.to_string(),
                    storage_class: class,
                });
            }
            stat = Stat::from_head(&head);
        }
        let file = self
            .open_files
            .open_existing(ino, &info.path, &stat, flags)
            .await?;
        Ok(self.handles.open_file(&self.core.inodes, ino, file, flags))
    }

    /// Drops an open file or directory handle (what `release`/`releasedir` do), for
    /// callers that cannot await.
    ///
    /// The last handle of a file with changes not in the store (mmap pages written back
    /// after close, a failed upload) uploads them in the background, and keeps them in
    /// the recovery directory if that fails.
    pub(crate) fn close_handle(&self, handle: Handle) {
        let Some(removed) = self.handles.remove(handle) else {
            return;
        };
        let ino = removed.ino();
        if let OpenHandle::File { file, .. } = &removed {
            if self.open_files.drop_file_handle(ino, file) {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    // The inode stays held until the file is saved or kept.
                    let (files, core, file) = (
                        Arc::clone(self.open_files),
                        Arc::clone(self.core),
                        Arc::clone(file),
                    );
                    runtime.spawn(async move {
                        files.finish_last_close(ino, &file).await;
                        core.inodes.close(ino);
                    });
                    return;
                }
                self.open_files.keep_unsaved_now(ino, file);
            }
        }
        self.core.inodes.close(ino);
    }

    /// Closes a handle like [`close_handle`](Self::close_handle), waiting for the last
    /// close's upload (or its keeping in the recovery directory).
    pub(crate) async fn release_handle(&self, handle: Handle) {
        let Some(removed) = self.handles.remove(handle) else {
            return;
        };
        let ino = removed.ino();
        if let OpenHandle::File { file, .. } = &removed {
            if self.open_files.drop_file_handle(ino, file) {
                self.open_files.finish_last_close(ino, file).await;
            }
        }
        self.core.inodes.close(ino);
    }

    /// Creates and opens a new file.
    pub(crate) async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)> {
        self.core.check_writable("create")?;
        self.core.check_not_closing("create")?;
        let dir = self.core.dir_path(parent)?;
        let name = FileName::from_os(name)?;
        let path = dir.join(&name);
        match self.stat_path(&path).await {
            Ok(stat) => {
                stat.kind.require_regular(&path)?;
                if flags.exclusive {
                    return Err(VfsError::Exists(path.to_string()));
                }
                let ino = self.core.inodes.lookup(&path, stat.kind);
                let flags = OpenFlags {
                    write: true,
                    ..flags
                };
                // The lookup counted above goes with a failed open: nobody will forget it.
                let file = (self
                    .open_files
                    .open_existing(ino, &path, &stat, flags)
                    .await)
                    .inspect_err(|_| self.core.inodes.forget(ino, 1))?;
                let stat = self.open_files.current_stat(&file).await;
                let handle = self.handles.open_file(&self.core.inodes, ino, file, flags);
                return Ok((self.core.entry(ino, &stat), handle));
            }
            Err(VfsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let ino = self.core.inodes.lookup(&path, FileKind::File);
        let (file, stat) = (self.open_files.open_new(ino, &path, mode).await)
            .inspect_err(|_| self.core.inodes.forget(ino, 1))?;
        self.core.meta.invalidate(&path);
        self.core.meta.forget_missing_ancestors(&path);
        // The handle that created the file publishes it on close even when it was opened
        // without write access (`open(O_CREAT | O_RDONLY)`, as lock files are made): a
        // flush of a read-only handle publishes nothing, and the new file would vanish.
        let flags = OpenFlags {
            write: true,
            ..flags
        };
        let handle = self.handles.open_file(&self.core.inodes, ino, file, flags);
        Ok((self.core.entry(ino, &stat), handle))
    }
}
