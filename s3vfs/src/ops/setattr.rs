//! setattr: truncate (through the write path), and chmod, chown and utimens, which are
//! stored in the s3fs headers (`x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`) by rewriting
//! the object's metadata in place (see `metadata`).
//!
//! A rewrite states all four attributes — the ones not being changed keep the values shown
//! now (the mount's defaults for an object that had no headers, and its Last-Modified as
//! mtime, so that a chmod does not change the mtime). The mount root is not an object: a
//! change of its attributes is accepted and not stored, so tools that set the times of the
//! directory they copy into (`cp -a`, `rsync -a`) do not fail; the root keeps showing the
//! mount's settings.

use super::Ops;
use crate::attrs::{type_bits, PosixMeta};
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::vfs::{Entry, FileKind, Handle, Ino, SetAttr};

impl Ops<'_> {
    /// Changes the attributes of `ino`: size (truncate), mode, owner, group and mtime.
    pub(crate) async fn setattr(
        &self,
        ino: Ino,
        handle: Option<Handle>,
        changes: SetAttr,
    ) -> VfsResult<Entry> {
        self.core.check_writable("setattr")?;
        let (path, kind) = self.core.inode_path(ino)?;
        if let Some(size) = changes.size {
            kind.require_regular(&path)?;
            self.core.check_overwrite_allowed(&path)?;
            // Not cached here: through a handle the open file shows the new size until
            // its upload (a failed one must leave nothing behind), and an uploaded
            // truncate has cached what it stored.
            self.truncate_file(ino, handle, size).await?;
        }
        let attributes_change = changes.mode.is_some()
            || changes.uid.is_some()
            || changes.gid.is_some()
            || changes.mtime.is_some();
        if !attributes_change {
            let stat = self.stat_path(&path).await?;
            return Ok(self.core.entry(ino, &stat));
        }
        if path.is_root() {
            tracing::debug!(
                ?changes,
                "attributes of the mount root are not stored; ignored"
            );
            let stat = self.stat_path(&path).await?;
            return Ok(self.core.entry(ino, &stat));
        }
        self.core.check_overwrite_allowed(&path)?;
        if kind != FileKind::Directory {
            let pending = PosixMeta {
                mode: changes.mode.map(|m| type_bits(kind) | (m & 0o7777)),
                uid: changes.uid,
                gid: changes.gid,
                mtime: changes.mtime,
                rdev: None,
            };
            if let Some(stat) = self
                .open_files
                .set_attributes_of_open_file(&path, pending)
                .await
            {
                // Stored by the file's next upload, with its data.
                return Ok(self.core.entry(ino, &stat));
            }
        }
        // An inode no longer named by its path (its file was unlinked or replaced through
        // this mount, or the name now holds another kind of object) is reached only through
        // a descriptor still open on it; a directory removed since it was opened keeps its
        // name but is gone. POSIX lets fchmod/fchown/futimens succeed on both, and there is
        // nothing left to store: whatever has the name now is not this inode's.
        let detached = self.core.inodes.find(&path) != Some(ino);
        let current = match self.stat_path(&path).await {
            Err(VfsError::NotFound(_)) if detached || kind == FileKind::Directory => None,
            Ok(_) if detached => None,
            other => Some(other?),
        };
        let Some(current) = current else {
            tracing::debug!(path = %path, ?changes,
                "attributes of a removed file or directory changed through an open descriptor; not stored");
            return Ok(self
                .core
                .entry(ino, &removed_stat(kind, self.core.started, &changes)));
        };
        if current.kind != kind {
            // The path is something else now (another inode).
            return Err(VfsError::ObjectChanged(path.to_string()));
        }
        let shown = self.core.attr(ino, &current);
        let stat = self
            .rewrite_metadata(&path, kind, |metadata, mtime| {
                let stored = PosixMeta::from_user_metadata(metadata);
                let perm = changes
                    .mode
                    .or(stored.mode.filter(|m| m & 0o7777 != 0))
                    .unwrap_or(u32::from(shown.perm));
                PosixMeta {
                    mode: Some(type_bits(kind) | (perm & 0o7777)),
                    uid: changes.uid.or(stored.uid).or(Some(shown.uid)),
                    gid: changes.gid.or(stored.gid).or(Some(shown.gid)),
                    mtime: changes.mtime.or(stored.mtime).or(Some(mtime)),
                    // A device keeps its number: the header is left as it is.
                    rdev: None,
                }
                .write_to(metadata);
                Ok(())
            })
            .await?;
        tracing::debug!(path = %path, ?changes, "attributes stored");
        Ok(self.core.entry(ino, &stat))
    }
}

/// What a removed file or directory shows after `changes` to its attributes.
fn removed_stat(kind: FileKind, mtime: std::time::SystemTime, changes: &SetAttr) -> Stat {
    let mut stat = Stat::directory(mtime);
    stat.kind = kind;
    stat.posix = PosixMeta {
        mode: changes.mode.map(|m| type_bits(kind) | (m & 0o7777)),
        uid: changes.uid,
        gid: changes.gid,
        mtime: changes.mtime,
        rdev: None,
    };
    stat
}

impl Ops<'_> {
    /// Sets the size of file `ino` (through `handle` if given). Without a handle the
    /// result is uploaded at once.
    pub(crate) async fn truncate_file(
        &self,
        ino: Ino,
        handle: Option<Handle>,
        size: u64,
    ) -> VfsResult<Stat> {
        self.core.check_writable("truncate")?;
        let info = self.core.inodes.info(ino)?;
        self.core.check_overwrite_allowed(&info.path)?;
        self.core.check_not_closing("truncate")?;
        self.open_files.check_file_size(&info.path, size)?;
        if let Some(handle) = handle {
            if let Ok((file, _)) = self.handles.file(handle) {
                return Ok(self.open_files.truncate_open(&file, size).await);
            }
        }
        let stat = self.stat_path(&info.path).await?;
        stat.kind.require_regular(&info.path)?;
        self.open_files
            .truncate_closed(ino, &info.path, &stat, size)
            .await
    }
}
