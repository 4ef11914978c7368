//! The file system's operations, on a context of its components ([`Ops`]: the shared
//! [`Core`], the open files, the handle table), one file a job. `fs.rs` only dispatches
//! the `Vfs` calls here:
//!
//! - `lookup`: what a path is (caches, else HEAD and LIST at once), getattr, readlink;
//! - `listing`: opendir and readdir(plus), listing caches;
//! - `open`: open, create, flush, and the release of handles;
//! - `copy_range`: copy_file_range, server-side when a whole file is copied into an empty
//!   one;
//! - `dir`: mkdir, rmdir, and `dir/` marker objects (reading their metadata, keeping a
//!   directory alive when its last key goes);
//! - `unlink`: unlink;
//! - `rename`: rename — the checks, and moving one file;
//! - `tree`: moving a whole directory prefix (copy everything, then delete; roll back on a
//!   failed copy) and bulk deletes;
//! - `node`: symlink and mknod (objects complete when made: links, fifos, devices,
//!   sockets);
//! - `metadata`: a file's or directory's user metadata rewritten in place
//!   (`objects::metadata`), open files following;
//! - `setattr`: chmod, chown, utimens and truncate;
//! - `xattr`: extended attributes in s3fs's `x-amz-meta-xattr` format.
//!
//! What happens to open files during a namespace change is said here, in one place per
//! operation: each calls `open_files` (`sync_path`, `note_renamed`, `note_unlinked`, …)
//! explicitly.
//!
//! Invariants kept by every operation here: `check_writable` comes first (`EROFS` on a
//! read-only mount) and the guard rails (`allow_delete`, `allow_overwrite`) before any
//! request that changes the bucket; names are validated into [`FileName`]s and every key is
//! built by the mount's [`Namespace`](crate::namespace::Namespace), so no key outside the
//! prefix is ever written; creations are conditional (`If-None-Match: *`) and replacements
//! pinned (`If-Match`) unless the mount chose last writer wins; a directory never vanishes
//! as a side effect of removing or moving its last entry.

mod copy_range;
mod dir;
mod listing;
mod lookup;
mod metadata;
mod node;
mod open;
mod rename;
mod setattr;
mod tree;
mod unlink;
mod xattr;

use crate::core::Core;
use crate::error::{VfsError, VfsResult};
use crate::handles::HandleTable;
use crate::meta::Stat;
use crate::namespace::{FileName, FsPath};
use crate::open_files::OpenFiles;
use crate::vfs::FileKind;
use std::sync::Arc;

/// `path` relative to the mount from a key's remainder `rel` (after a directory prefix),
/// only if every component is a valid file name; `None` for keys the namespace hides.
fn strict_path(base: &FsPath, rel: &str) -> Option<FsPath> {
    let mut path = base.clone();
    for part in rel.split('/') {
        path = path.join(&FileName::check(part).ok()?);
    }
    Some(path)
}

/// What the operations work on: the components of one file system, borrowed for one call.
pub(crate) struct Ops<'a> {
    pub(crate) core: &'a Arc<Core>,
    pub(crate) open_files: &'a Arc<OpenFiles>,
    pub(crate) handles: &'a HandleTable,
}

impl Ops<'_> {
    /// What `path` is, or `None` when nothing is there.
    async fn stat_optional(&self, path: &FsPath) -> VfsResult<Option<Stat>> {
        match self.stat_path(path).await {
            Ok(stat) => Ok(Some(stat)),
            Err(VfsError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ENOENT` unless `dir` exists, `ENOTDIR` unless it is a directory.
    async fn require_directory(&self, dir: &FsPath) -> VfsResult<()> {
        match self.stat_path(dir).await?.kind {
            FileKind::Directory => Ok(()),
            _ => Err(VfsError::NotADirectory(dir.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_subtrees() {
        let p = |s: &str| FsPath::parse(s).unwrap();
        assert_eq!(p("a/b/c").parent(), p("a/b"));
        assert_eq!(p("a").parent(), FsPath::root());
        assert_eq!(FsPath::root().parent(), FsPath::root());
        assert!(p("a/b").is_within(&p("a")));
        assert!(p("a").is_within(&p("a")));
        assert!(!p("ab").is_within(&p("a")));
        assert!(p("x").is_within(&FsPath::root()));
        assert_eq!(strict_path(&p("d"), "x/y"), Some(p("d/x/y")));
        assert_eq!(strict_path(&p("d"), "x//y"), None);
        assert_eq!(strict_path(&p("d"), "x/../y"), None);
    }
}
