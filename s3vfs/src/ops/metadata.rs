//! Changing the user metadata of a file or directory (chmod, chown, utimens, xattrs): the
//! object or marker is rewritten in place (`objects::metadata`), then open files and the
//! attribute cache take the new version.

use super::Ops;
use crate::error::VfsResult;
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::vfs::FileKind;
use std::collections::BTreeMap;
use std::time::SystemTime;

impl Ops<'_> {
    /// Applies `edit` to the user metadata of `path` (a `kind`) and stores the result.
    ///
    /// `edit` gets the current metadata and the current mtime (for callers that must state
    /// one); an error from it aborts without a request that changes anything. Returns the
    /// new stat, which is also cached.
    pub(crate) async fn rewrite_metadata<F>(
        &self,
        path: &FsPath,
        kind: FileKind,
        edit: F,
    ) -> VfsResult<Stat>
    where
        F: FnOnce(&mut BTreeMap<String, String>, SystemTime) -> VfsResult<()>,
    {
        let stat = match kind {
            FileKind::Directory => self.core.rewrite_marker(path, edit).await?,
            FileKind::File
            | FileKind::Symlink
            | FileKind::Fifo
            | FileKind::CharDevice
            | FileKind::BlockDevice
            | FileKind::Socket => return self.open_files.rewrite_file_metadata(path, edit).await,
        };
        self.core.meta.put_changed(path, stat.clone());
        Ok(stat)
    }
}
