//! Creating files: `create` (`O_CREAT`) of a new name, or of an existing file, which it
//! opens for writing.

use super::S3Fs;
use crate::error::{VfsError, VfsResult};
use crate::namespace::FileName;
use crate::vfs::{Entry, FileKind, Handle, Ino, OpenFlags};
use std::ffi::OsStr;

impl S3Fs {
    /// Creates and opens a new file.
    pub(crate) async fn do_create(
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
            Ok(stat) if stat.kind == FileKind::Directory => {
                return Err(VfsError::IsADirectory(path.to_string()))
            }
            Ok(stat) if stat.kind == FileKind::Symlink => {
                return Err(VfsError::InvalidArgument(format!(
                    "{path} is a symbolic link"
                )))
            }
            Ok(stat) if stat.kind.is_special() => {
                return Err(VfsError::InvalidArgument(format!(
                    "{path} is a {}",
                    stat.kind
                )))
            }
            Ok(_) if flags.exclusive => return Err(VfsError::Exists(path.to_string())),
            Ok(stat) => {
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
                let handle = self.new_file_handle(ino, file, flags);
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
        let handle = self.new_file_handle(ino, file, flags);
        Ok((self.core.entry(ino, &stat), handle))
    }
}
