//! unlink: removing a file or symbolic link (one DeleteObject).

use super::Ops;
use crate::error::{VfsError, VfsResult};
use crate::vfs::{FileKind, Ino};
use std::ffi::OsStr;

impl Ops<'_> {
    /// Removes file or symlink `name` from `parent`.
    ///
    /// `EISDIR` for a directory, `ENOENT` when missing, `EPERM` when deletes are disabled.
    /// The parent keeps existing even if this was its last entry: it gets a `parent/`
    /// marker first when it has none (see [`keep_directory`](Self::keep_directory)).
    pub(crate) async fn unlink(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.core.check_writable("unlink")?;
        let (parent_path, path) = self.core.child_path(parent, name)?;
        self.core.check_delete_allowed(&path)?;
        let stat = self.stat_path(&path).await?;
        if stat.kind == FileKind::Directory {
            tracing::debug!(path = %path, "unlink refused: a directory");
            return Err(VfsError::IsADirectory(path.to_string()));
        }
        let key = self.core.ns.file_key(&path)?;
        // An upload of this name under way (a last close's, after mmap write-back) lands
        // first; one that starts later finds the file unlinked. Without this, an upload
        // could bring the file back after unlink returned.
        let _name = self.core.names.for_rename(&[(path.clone(), false)]).await;
        self.keep_directory(&parent_path).await?;
        self.core.store.delete(&key).await.map_err(|e| {
            tracing::warn!(path = %path, error = %e, "unlink failed");
            VfsError::from_store(path.as_str(), e)
        })?;
        self.core.meta.put_missing(&path);
        self.open_files.note_unlinked(&path);
        Ok(())
    }
}
