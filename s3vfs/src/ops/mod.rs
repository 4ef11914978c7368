//! Namespace operations that change the bucket: mkdir, unlink, rmdir, rename, symlink,
//! mknod, attribute changes and extended attributes. Each group is an `impl S3Fs` block in
//! its own module; `fs.rs` dispatches the `Vfs` calls to the `do_*` methods:
//!
//! - `dir`: mkdir, rmdir, and `dir/` marker objects (reading their metadata, keeping a
//!   directory alive when its last key goes);
//! - `unlink`: unlink;
//! - `rename`: rename — the checks, and moving one file;
//! - `tree`: moving a whole directory prefix (copy everything, then delete; roll back on a
//!   failed copy) and bulk deletes;
//! - `copy`: server-side copy of one object (CopyObject, or UploadPartCopy ranges above the
//!   single-request limit);
//! - `node`: symlink and mknod (objects complete when made: links, fifos, devices,
//!   sockets);
//! - `metadata`: rewriting an object's (or marker's) user metadata in place, under S3's 2 KB
//!   limit;
//! - `setattr`: chmod, chown, utimens and truncate;
//! - `xattr`: extended attributes in s3fs's `x-amz-meta-xattr` format.
//!
//! Invariants kept by every operation here: `check_writable` comes first (`EROFS` on a
//! read-only mount) and the guard rails (`allow_delete`, `allow_overwrite`) before any
//! request that changes the bucket; names are validated into [`FileName`]s and every key is
//! built by the mount's [`Namespace`](crate::namespace::Namespace), so no key outside the
//! prefix is ever written; creations are conditional (`If-None-Match: *`) and replacements
//! pinned (`If-Match`) unless the mount chose last writer wins; a directory never vanishes
//! as a side effect of removing or moving its last entry.

mod dir;
mod metadata;
mod node;
mod open;
mod rename;
mod setattr;
mod tree;
mod unlink;
mod xattr;

use crate::error::{VfsError, VfsResult};
use crate::fs::S3Fs;
use crate::meta::Stat;
use crate::namespace::{FileName, FsPath};
use crate::vfs::FileKind;

/// `path` relative to the mount from a key's remainder `rel` (after a directory prefix),
/// only if every component is a valid file name; `None` for keys the namespace hides.
fn strict_path(base: &FsPath, rel: &str) -> Option<FsPath> {
    let mut path = base.clone();
    for part in rel.split('/') {
        path = path.join(&FileName::check(part).ok()?);
    }
    Some(path)
}

impl S3Fs {
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
