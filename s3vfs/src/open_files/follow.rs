//! Open files through namespace changes: uploads before a rename moves a file's name, and
//! open files following renames, unlinks and metadata rewrites of their objects.

use super::{Copies, OpenFiles};
use crate::attrs::PosixMeta;
use crate::error::VfsResult;
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::store::ETag;
use crate::sync::lock;
use std::time::SystemTime;

impl OpenFiles {
    /// Uploads the unsaved writes of an open file at `path`, if any, so that a copy of the
    /// object (rename) sees them.
    pub(crate) async fn sync_path(&self, path: &FsPath) -> VfsResult<()> {
        let Some(ino) = self.core.inodes.find(path) else {
            return Ok(());
        };
        match self.get(ino) {
            Some(file) => self.upload(&file).await,
            None => Ok(()),
        }
    }

    /// Uploads the unsaved writes of every open file at or below `dir` (a directory
    /// about to be renamed).
    pub(crate) async fn sync_below(&self, dir: &FsPath) -> VfsResult<()> {
        for file in self.all() {
            let below = {
                let shadow = lock(&file.shadow);
                !shadow.unlinked && shadow.path.is_within(dir)
            };
            if below {
                self.upload(&file).await?;
            }
        }
        Ok(())
    }

    /// chmod/chown/utimens of a file with unsaved writes: kept with the file and stored
    /// by its next upload (the object may not even exist yet). `None` when the file at
    /// `path` has no unsaved writes.
    pub(crate) async fn set_attributes_of_open_file(
        &self,
        path: &FsPath,
        changes: PosixMeta,
    ) -> Option<Stat> {
        let ino = self.core.inodes.find(path)?;
        let file = self.get(ino)?;
        let mut state = file.state.lock().await;
        if !state.dirty || lock(&file.shadow).unlinked {
            return None;
        }
        tracing::debug!(path = %path, ?changes, "attributes kept for the next upload");
        let overlay = &mut state.attr_changes;
        overlay.mode = changes.mode.or(overlay.mode);
        overlay.uid = changes.uid.or(overlay.uid);
        overlay.gid = changes.gid.or(overlay.gid);
        overlay.mtime = changes.mtime.or(overlay.mtime);
        let overlay = state.attr_changes;
        let posix = &mut state.posix;
        posix.mode = overlay.mode.or(posix.mode);
        posix.uid = overlay.uid.or(posix.uid);
        posix.gid = overlay.gid.or(posix.gid);
        posix.mtime = overlay.mtime.or(posix.mtime);
        Some(self.mark_dirty(&file, &state))
    }

    /// The object at `path` got a new version `new`, with the attributes `posix`, by a
    /// metadata rewrite of version `old`: open handles built on `old` follow it (their
    /// content did not change), and their next upload keeps the new attributes.
    pub(crate) async fn note_new_version(
        &self,
        path: &FsPath,
        old: Option<&ETag>,
        new: Option<ETag>,
        posix: PosixMeta,
    ) {
        let Some(file) = self.core.inodes.find(path).and_then(|ino| self.get(ino)) else {
            return;
        };
        let mut state = file.state.lock().await;
        let follows = state.base.as_ref().is_some_and(|b| b.etag.as_ref() == old);
        if follows {
            if let Some(base) = state.base.as_mut() {
                base.etag = new.clone();
            }
            // Without this, the file's first write after a chmod of the clean open file
            // would show (and store) the attributes it was opened with.
            state.posix = posix;
        }
        let mut shadow = lock(&file.shadow);
        if shadow.etag.as_ref() == old {
            shadow.etag = new;
        }
    }

    /// `path` was unlinked: open handles of it stop uploading on close.
    pub(crate) fn note_unlinked(&self, path: &FsPath) {
        // Open handles keep their (now nameless) file; the name is free for a new one.
        let mut map = lock(&self.by_ino);
        map.retain(|_, file| {
            let mut shadow = lock(&file.shadow);
            if shadow.path == *path {
                shadow.unlinked = true;
                shadow.dirty_stat = None;
                false
            } else {
                true
            }
        });
        drop(map);
        self.core.inodes.detach(path);
    }

    /// `from` was renamed to `to` (a file, or a directory and everything below it): open
    /// handles follow it. `copies` maps each new key to the ETag copied and the ETag of
    /// its copy: an open file built on the version copied builds on the copy from now on,
    /// so its next upload's `If-Match` names what is at its new key (a copy of a
    /// multipart, SSE-KMS or >5 GiB object gets a new ETag). A multipart upload streaming
    /// to the old key is abandoned: the staging file still holds its bytes (or, past the
    /// staging cap, the file is poisoned).
    pub(crate) async fn note_renamed(&self, from: &FsPath, to: &FsPath, copies: &Copies) {
        self.core.inodes.rename(from, to);
        let prefix = format!("{}/", from.as_str());
        for file in self.all() {
            let moved = {
                let mut shadow = lock(&file.shadow);
                let path = if shadow.path == *from {
                    Some(to.clone())
                } else {
                    shadow
                        .path
                        .as_str()
                        .strip_prefix(&prefix)
                        .and_then(|rest| FsPath::parse(&format!("{}/{rest}", to.as_str())).ok())
                };
                match path.map(|p| (self.core.ns.file_key(&p), p)) {
                    Some((Ok(key), path)) => {
                        shadow.key = key.clone();
                        shadow.path = path;
                        Some(key)
                    }
                    _ => None,
                }
            };
            let Some(key) = moved else {
                continue;
            };
            let mut state = file.state.lock().await;
            // A stream that has not begun its upload begins it under the file's new key;
            // one that has is tied to the old key.
            if state.stream.as_ref().is_some_and(|s| s.upload.is_some()) {
                if state.staged_all {
                    state.stream = None;
                    state.no_stream = true;
                } else {
                    state.poison(
                        &key,
                        "renamed while streaming past the staging cap to its old name".to_owned(),
                    );
                }
            }
            let Some((copied, copy)) = copies.get(&key) else {
                continue;
            };
            if let Some(base) = state.base.as_mut().filter(|b| b.etag == *copied) {
                base.etag = copy.clone();
            }
            let mut shadow = lock(&file.shadow);
            if shadow.etag == *copied {
                shadow.etag = copy.clone();
            }
        }
    }

    /// Applies `edit` to the user metadata of the file object at `path` in place, and
    /// has the open file built on the version replaced follow the new one.
    pub(crate) async fn rewrite_file_metadata<F>(&self, path: &FsPath, edit: F) -> VfsResult<Stat>
    where
        F: FnOnce(&mut std::collections::BTreeMap<String, String>, SystemTime) -> VfsResult<()>,
    {
        let (stat, replaced) = self.core.rewrite_object(path, edit).await?;
        // Also when the ETag stayed (S3 keeps it for a copy of unchanged bytes): open
        // handles must take the new attributes.
        self.note_new_version(path, replaced.as_ref(), stat.etag.clone(), stat.posix)
            .await;
        self.core.meta.put_changed(path, stat.clone());
        Ok(stat)
    }
}
