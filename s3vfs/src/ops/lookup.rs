//! Lookups: what a path is now (from the caches, else one HEAD and one LIST at once; a
//! directory shadows a file of the same name), the entries and attributes handed out,
//! and symbolic links' targets.

use super::Ops;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::{FileName, FsPath};
use crate::presence::{Absence, MAX_PRESENCE_NAMES};
use crate::store::{GetRequest, StoreErrorKind};
use crate::vfs::{Entry, FileKind, Ino};
use bytes::Bytes;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Instant;

impl Ops<'_> {
    /// What `path` is now: from the cache while fresh, else HEAD and LIST at once.
    pub(crate) async fn stat_path(&self, path: &FsPath) -> VfsResult<Stat> {
        if path.is_root() {
            return Ok(Stat::directory(self.core.started));
        }
        if let Some(stat) = self.open_files.open_file_stat(path) {
            return Ok(stat);
        }
        if let Some(stat) = self.core.local_dirs.get(path) {
            return Ok(stat);
        }
        if let Some(stat) = self.core.meta.get(path) {
            return Ok(stat);
        }
        if self.core.meta.is_missing(path) {
            return Err(VfsError::NotFound(path.to_string()));
        }
        match self.core.meta.presence.lookup(path) {
            Absence::Absent => return Err(VfsError::NotFound(path.to_string())),
            Absence::Unknown(Some(asked)) => self.renew_presence(path.parent(), asked),
            Absence::Unknown(None) => {}
        }
        let key = self.core.ns.file_key(path)?;
        // The directory's first page, as its listing asks for it: it costs what a LIST of
        // one key costs, and a listing that follows (`ls -l dir`) starts from it.
        let list = self
            .core
            .dir_listing(path, self.core.config.list_page_size, None);
        let (head, listing) =
            futures::join!(self.core.store.head(&key), self.core.store.list(list));
        let listing = listing.map_err(|e| VfsError::from_store(path.as_str(), e))?;
        let stat = if !listing.objects.is_empty() || !listing.common_prefixes.is_empty() {
            // Mode, owner and mtime of a directory live on its `dir/` marker, if any.
            let stat = self.directory_stat(path, listing.objects.first()).await?;
            self.core.meta.put_first_page(path, listing);
            stat
        } else {
            match head {
                Ok(meta) => Stat::from_head(&meta),
                Err(e) if e.kind == StoreErrorKind::NotFound => {
                    self.core.meta.put_missing(path);
                    if let Some(asked) = self.core.meta.presence.missed(path) {
                        self.renew_presence(path.parent(), asked);
                    }
                    return Err(VfsError::NotFound(path.to_string()));
                }
                Err(e) => return Err(VfsError::from_store(path.as_str(), e)),
            }
        };
        self.core.meta.put(path, stat.clone());
        Ok(stat)
    }

    /// LISTs directory `dir` (one page) in the background, asked for at `asked`, for its
    /// presence (see `presence`): the names if they fit the page, else none.
    fn renew_presence(&self, dir: FsPath, asked: Instant) {
        let core = Arc::clone(self.core);
        tokio::spawn(async move {
            let prefix = core.ns.dir_prefix(&dir);
            let request = core.dir_listing(&dir, MAX_PRESENCE_NAMES as u32, None);
            match core.store.list(request).await {
                Ok(page) if !page.is_truncated => {
                    let files = page.objects.iter().map(|o| o.key.as_str());
                    let dirs = page.common_prefixes.iter().map(String::as_str);
                    let names: HashSet<String> = files
                        .chain(dirs)
                        .filter_map(|key| key.strip_prefix(&prefix))
                        .map(|name| name.trim_end_matches('/'))
                        .filter(|name| !name.is_empty())
                        .map(str::to_owned)
                        .collect();
                    core.meta.presence.listed(&dir, names, asked);
                }
                Ok(_) => core.meta.presence.unlisted(&dir),
                Err(e) => {
                    tracing::debug!(dir = %dir, error = %e, "LIST for the directory's presence failed");
                    core.meta.presence.unlisted(&dir);
                }
            }
        });
    }

    /// The entry of `name` in directory `parent`, counting one lookup of its inode.
    pub(crate) async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry> {
        let parent_path = self.core.dir_path(parent)?;
        let name = FileName::from_os(name)?;
        let path = parent_path.join(&name);
        let stat = self.stat_path(&path).await?;
        let ino = self.core.inodes.lookup(&path, stat.kind);
        Ok(self.core.entry(ino, &stat))
    }

    /// The attributes of `ino`; `ESTALE` when its path is now another kind of file.
    pub(crate) async fn getattr(&self, ino: Ino) -> VfsResult<Entry> {
        let info = self.core.inodes.info(ino)?;
        let stat = self.stat_path(&info.path).await?;
        if stat.kind != info.kind {
            // The path is now something else (another inode); this one is gone.
            self.core.inodes.assign(&info.path, stat.kind);
            return Err(VfsError::ObjectChanged(info.path.to_string()));
        }
        Ok(self.core.entry(ino, &stat))
    }

    /// The target of symbolic link `ino`: the object's body, pinned to the version seen.
    pub(crate) async fn readlink(&self, ino: Ino) -> VfsResult<Bytes> {
        let info = self.core.inodes.info(ino)?;
        let stat = self.stat_path(&info.path).await?;
        if stat.kind != FileKind::Symlink {
            return Err(VfsError::InvalidArgument(format!(
                "{} is not a symbolic link",
                info.path
            )));
        }
        let key = self.core.ns.file_key(&info.path)?;
        let request = GetRequest {
            key,
            range: None,
            if_match: stat.etag.clone(),
        };
        let fetched = async { self.core.store.get(request).await?.collect().await };
        fetched
            .await
            .map_err(|e| VfsError::from_store(info.path.as_str(), e))
    }

    /// The inode of directory `path` without asking the store: for library users creating
    /// a file under a prefix that has no object yet (the directory appears with the file,
    /// as in any object store). Fails if `path` is known to be something else.
    ///
    /// Counts one lookup of the inode, as [`Vfs::lookup`] does: [`forget`](Vfs::forget) it
    /// when done.
    pub(crate) fn implicit_dir(&self, path: &FsPath) -> VfsResult<Ino> {
        if let Some(stat) = self
            .open_files
            .open_file_stat(path)
            .or_else(|| self.core.meta.get(path))
        {
            if stat.kind != FileKind::Directory {
                return Err(VfsError::NotADirectory(path.to_string()));
            }
        }
        Ok(self.core.inodes.lookup(path, FileKind::Directory))
    }
}
