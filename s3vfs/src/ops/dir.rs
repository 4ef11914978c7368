//! Directories that are objects: mkdir, rmdir, and the `dir/` marker objects.
//!
//! A directory exists while any key starts with `dir/`. The zero-byte marker object
//! `dir/` makes an empty directory exist and carries the directory's mode, owner and mtime
//! in the s3fs headers (`x-amz-meta-mode` with `S_IFDIR`, …), which a lookup reads back.
//! Removing the last key of a directory without a marker would make it vanish, so every
//! operation that deletes a key first makes sure the parent keeps existing
//! ([`keep_directory`](S3Fs::keep_directory)).

use super::Ops;
use crate::attrs::PosixMeta;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::{FsPath, Namespace};
use crate::store::{ListedObject, StoreErrorKind, WriteCondition};
use crate::vfs::{Entry, FileKind, Ino};
use bytes::Bytes;
use std::ffi::OsStr;
use std::time::SystemTime;

/// What a directory holds, as far as removing or replacing it is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Contents {
    /// Nothing but (maybe) its marker.
    Empty,
    /// At least one entry that a listing shows.
    Entries,
    /// Keys that cannot be shown as files (e.g. `dir//x`): the directory looks empty but
    /// is not.
    HiddenKeys(String),
}

impl Ops<'_> {
    /// Creates directory `name` in `parent`: a zero-byte `name/` marker with the s3fs
    /// headers (`S_IFDIR | mode`, owner, mtime), created only if absent.
    pub(crate) async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Entry> {
        self.core.check_writable("mkdir")?;
        let (parent_path, path) = self.core.child_path(parent, name)?;
        self.require_directory(&parent_path).await?;
        if self.stat_optional(&path).await?.is_some() {
            tracing::debug!(path = %path, "mkdir refused: the name exists");
            return Err(VfsError::Exists(path.to_string()));
        }
        let posix = self.core.new_posix_meta(FileKind::Directory, mode);
        if !self.core.config.directory_markers {
            // No marker can be stored: the directory lives in this file system until a
            // key below it makes it exist in the bucket (see `local_dirs`).
            let stat = Stat::marker(posix, None, SystemTime::now());
            self.core.local_dirs.insert(&path, stat.clone());
            self.core.meta.put(&path, stat.clone());
            self.core.meta.presence.made_empty(&path);
            let ino = self.core.inodes.lookup(&path, FileKind::Directory);
            return Ok(self.core.entry(ino, &stat));
        }
        let key = self.core.marker_key(&path)?;
        let mut options = self.core.new_object_options(posix);
        options.condition = self.core.write_condition(None);
        let put = self
            .core
            .store
            .put(&key, Bytes::new(), options)
            .await
            .map_err(|e| VfsError::from_create(&path, e))?;
        let stat = Stat::marker(posix, put.etag, SystemTime::now());
        self.core.meta.put(&path, stat.clone());
        // The marker was created only if absent, and nothing lay below it (the name was
        // free): the new directory is empty.
        self.core.meta.presence.made_empty(&path);
        let ino = self.core.inodes.lookup(&path, FileKind::Directory);
        Ok(self.core.entry(ino, &stat))
    }

    /// Removes the empty directory `name` in `parent`: deletes its marker.
    pub(crate) async fn rmdir(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.core.check_writable("rmdir")?;
        let (parent_path, path) = self.core.child_path(parent, name)?;
        self.core.check_delete_allowed(&path)?;
        if self.stat_path(&path).await?.kind != FileKind::Directory {
            return Err(VfsError::NotADirectory(path.to_string()));
        }
        self.require_empty(&path).await?;
        self.keep_directory(&parent_path).await?;
        if self.core.config.directory_markers {
            let key = self.core.marker_key(&path)?;
            self.core.store.delete(&key).await.map_err(|e| {
                tracing::warn!(path = %path, error = %e, "rmdir: could not delete the marker");
                VfsError::from_store(path.as_str(), e)
            })?;
        }
        self.core.local_dirs.remove(&path);
        self.core.meta.put_missing(&path);
        // A directory made again under this name is another inode: the kernel marks the
        // removed one dead, and a descriptor still open on it must not reach the new one.
        self.core.inodes.detach(&path);
        Ok(())
    }

    /// `ENOTEMPTY` unless directory `dir` holds nothing but its marker.
    pub(super) async fn require_empty(&self, dir: &FsPath) -> VfsResult<()> {
        // A file created in it and not uploaded yet is an entry too.
        if !self.open_files.pending_names(dir).is_empty() || self.core.local_dirs.any_below(dir) {
            return Err(VfsError::NotEmpty(dir.to_string()));
        }
        match self.directory_contents(dir).await? {
            Contents::Empty => Ok(()),
            Contents::Entries => Err(VfsError::NotEmpty(dir.to_string())),
            Contents::HiddenKeys(example) => {
                tracing::warn!(path = %dir, example_key = %example,
                    "directory looks empty but holds keys that cannot be shown as files; \
                     it cannot be removed until they are deleted with another tool");
                Err(VfsError::NotEmpty(dir.to_string()))
            }
        }
    }

    /// What directory `dir` holds: one LIST of at most two keys (the marker sorts first).
    pub(super) async fn directory_contents(&self, dir: &FsPath) -> VfsResult<Contents> {
        let prefix = self.core.ns.dir_prefix(dir);
        let page = self
            .core
            .store
            .list(self.core.dir_listing(dir, 2, None))
            .await
            .map_err(|e| VfsError::from_store(dir.as_str(), e))?;
        let listed = page
            .objects
            .iter()
            .map(|o| o.key.as_str())
            .chain(page.common_prefixes.iter().map(String::as_str));
        let mut hidden = None;
        for key in listed {
            match Namespace::child_name(&prefix, key) {
                Ok(None) => {}
                Ok(Some(_)) => return Ok(Contents::Entries),
                Err(_) => hidden = Some(key.to_owned()),
            }
        }
        Ok(hidden.map_or(Contents::Empty, Contents::HiddenKeys))
    }

    /// Makes sure directory `dir` outlives the removal of its last key.
    ///
    /// S3 has no directories: one without a `dir/` marker exists only while some key lies
    /// below it, so `rm parent/x` of its last file would make `parent` vanish, which no
    /// POSIX program expects. Before a key is deleted (unlink, rmdir, the source side of a
    /// rename) its parent therefore gets a zero-byte marker, written only if absent
    /// (`If-None-Match: *`; a 412 means it is there). Costs one PUT, none for the mount
    /// root or when a lookup saw the marker within the metadata TTL; without conditional
    /// writes (or with last writer wins) a HEAD first, so an existing marker's attributes
    /// are never overwritten.
    pub(super) async fn keep_directory(&self, dir: &FsPath) -> VfsResult<()> {
        if dir.is_root() {
            return Ok(());
        }
        if !self.core.config.directory_markers {
            // Kept in this file system only (see `local_dirs`), with every directory above
            // it: a marker would imply them, a recorded directory does not (`mv a/b/f g`
            // of the only key below `a` must leave `a` and `a/b`).
            let mut kept = dir.clone();
            while !kept.is_root() && self.core.local_dirs.get(&kept).is_none() {
                let stat = self
                    .core
                    .meta
                    .get_any(&kept)
                    .filter(|s| s.kind == FileKind::Directory)
                    .unwrap_or_else(|| Stat::directory(self.core.started));
                self.core.local_dirs.insert(&kept, stat);
                kept = kept.parent();
            }
            return Ok(());
        }
        if self
            .core
            .meta
            .get(dir)
            .is_some_and(|s| s.kind == FileKind::Directory && s.etag.is_some())
        {
            return Ok(());
        }
        let key = self.core.marker_key(dir)?;
        let condition = self.core.write_condition(None);
        if condition == WriteCondition::None {
            match self.core.store.head(&key).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind == StoreErrorKind::NotFound => {}
                Err(e) => return Err(VfsError::from_store(dir.as_str(), e)),
            }
        }
        let mut options = self.core.new_object_options(PosixMeta::default());
        options.condition = condition;
        match self.core.store.put(&key, Bytes::new(), options).await {
            Ok(put) => {
                tracing::debug!(path = %dir, "wrote a directory marker so that the directory stays");
                let mtime = self
                    .core
                    .meta
                    .get_any(dir)
                    .map_or(self.core.started, |s| s.mtime);
                self.core
                    .meta
                    .put(dir, Stat::marker(PosixMeta::default(), put.etag, mtime));
                Ok(())
            }
            Err(e) if e.kind == StoreErrorKind::PreconditionFailed => Ok(()),
            Err(e) => {
                tracing::warn!(path = %dir, error = %e, "could not write a directory marker");
                Err(VfsError::from_store(dir.as_str(), e))
            }
        }
    }

    /// The stat of directory `path`, found to exist by a LIST whose first object was
    /// `first`: when that is the directory's own marker, its attributes come from the
    /// marker's metadata (one HEAD, skipped when this version of the marker was read
    /// before); otherwise the mount's defaults.
    pub(crate) async fn directory_stat(
        &self,
        path: &FsPath,
        first: Option<&ListedObject>,
    ) -> VfsResult<Stat> {
        let prefix = self.core.ns.dir_prefix(path);
        let Some(marker) = first.filter(|o| o.key.as_str() == prefix) else {
            return Ok(Stat::directory(self.core.started));
        };
        if let Some(previous) = self.core.meta.get_any(path) {
            if previous.kind == FileKind::Directory
                && previous.from_head
                && previous.etag.is_some()
                && previous.etag == marker.etag
            {
                return Ok(previous);
            }
        }
        match self.core.store.head(&marker.key).await {
            Ok(head) => Ok(Stat::of_marker(&head)),
            // Deleted since the LIST: the directory still exists through its other keys.
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(Stat::directory(self.core.started)),
            Err(e) => Err(VfsError::from_store(path.as_str(), e)),
        }
    }
}
