//! Open files: the registry of open inodes and what every handle of one shares, and the
//! write path (one file a job: `read`, `write`, `stream`, `upload`, `copy`, `close`,
//! `follow`).
//!
//! Every open inode has one [`OpenFile`], shared by all its handles, so a write through one
//! handle is read back through another. Its content is a view over three sources: bytes
//! written locally (kept in a staging file and tracked in a [`RangeSet`]), the object
//! version it was opened on (`base`, read with GETs pinned to its ETag) for the bytes below
//! `base_len`, and zeros beyond (a truncate up).
//!
//! Uploads:
//! - a new or truncated file written sequentially from offset 0 is *streamed*: full parts
//!   go up as a multipart upload while the writer continues (at most
//!   `upload_concurrency` parts in flight; past that the writer waits), and `flush`
//!   uploads the tail and completes; a file smaller than one part is a single PUT;
//! - anything else (random writes, appends to an existing object, truncation) is staged
//!   and uploaded by `flush`: unchanged ranges of the old object are reused with
//!   UploadPartCopy, changed ones are assembled from the staging file, the old object and
//!   zeros;
//! - a whole object copied into an empty open file (`copy_file_range`) is copied
//!   server-side at once, and the file then builds on the copy as after a flush;
//! - the staging file holds every written byte while the staging cap allows, so a
//!   streamed file can still fall back to staging (a random write, a read back). Past the
//!   cap a stream keeps going without it, and only then are such writes refused.
//!
//! Durability contract: `flush` (every close) and `fsync` return success only when the
//! object is complete in the store. Uploads are conditional (`If-None-Match: *` for a new
//! key, `If-Match: <etag opened on>` for an existing one) unless the mount chose last
//! writer wins, so another machine's newer version is never silently replaced; the
//! previous content of the key stays intact until the new one is complete, and a failed
//! multipart upload is aborted. A failed upload keeps the local data dirty, so a later
//! `fsync`/`close` may try again; the error is returned and logged with the key.

use crate::attrs::PosixMeta;
use crate::core::Core;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::ranges::RangeSet;
use crate::read::Prefetcher;
use crate::store::{ETag, ObjectKey, StoreError, StoreErrorKind};
use crate::sync::lock;
use crate::vfs::{FileKind, Ino, OpenFlags};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

mod close;
mod copy;
mod follow;
mod read;
mod stream;
mod upload;
mod write;

use copy::CopiedFrom;
use stream::Stream;

pub(crate) use crate::recovery::Kept;

/// The objects a rename copied: for each new key, the ETag copied and the ETag of the copy.
pub(crate) type Copies = HashMap<ObjectKey, (Option<ETag>, Option<ETag>)>;

/// The open files of one file system, and the staging space they use.
pub(crate) struct OpenFiles {
    core: Arc<Core>,
    by_ino: Mutex<HashMap<Ino, Arc<OpenFile>>>,
    staging_used: Arc<AtomicU64>,
}

/// What every handle of one open inode shares.
pub(crate) struct OpenFile {
    handles: AtomicUsize,
    /// Path, key and the stat to show while the file has local changes; readable without
    /// waiting for an upload in progress.
    shadow: Mutex<Shadow>,
    /// Reader of the clean object version, rebuilt when the version changes.
    reader: Mutex<Option<Arc<Prefetcher>>>,
    state: tokio::sync::Mutex<FileState>,
}

struct Shadow {
    path: FsPath,
    key: ObjectKey,
    /// The file as this mount sees it while it differs from the store (`None`: clean).
    dirty_stat: Option<Stat>,
    /// Unlinked while open: nothing is uploaded any more.
    unlinked: bool,
    /// Current object version (for readers of a clean file).
    etag: Option<ETag>,
    size: u64,
}

/// The object version an open file builds on.
#[derive(Clone, Debug)]
struct Base {
    etag: Option<ETag>,
}

struct FileState {
    /// The version the content builds on; `None` for a file that is not in the store.
    base: Option<Base>,
    /// Bytes `[0, base_len)` not written locally come from `base`.
    base_len: u64,
    /// Current size.
    size: u64,
    /// Attributes to store with the next upload.
    posix: PosixMeta,
    /// chmod/chown/utimens made while the file had unsaved writes: they override the
    /// object's own metadata at the next upload.
    attr_changes: PosixMeta,
    /// Why this open file can no longer be stored as written (a part of its stream
    /// failed, or bytes streamed past the staging cap were lost): every later write,
    /// flush and fsync fails with it until the file is opened afresh.
    poisoned: Option<String>,
    /// Whether the content differs from the store.
    dirty: bool,
    /// Why the latest upload failed, when nothing changed since: the last release keeps
    /// the file rather than trying again (the writer was told it failed).
    upload_failed: Option<String>,
    /// Bytes written locally.
    written: RangeSet,
    staging: Option<Staging>,
    /// Whether the staging file holds every written byte.
    staged_all: bool,
    stream: Option<Stream>,
    /// Streaming is off until the next upload (the file was not written sequentially).
    no_stream: bool,
    /// The source of the server-side copy that made the version the file builds on, for
    /// the copy's follow-up calls (see `copy`).
    copied_from: Option<CopiedFrom>,
}

struct Staging {
    /// The local copy. Behind a mutex because a streamed write copies into it on the
    /// blocking pool while it copies into the stream (see `write_file`): every other user
    /// locks it, so none can read it (or write over it) before that copy has landed, even
    /// if the write's caller stopped waiting for it.
    file: Arc<Mutex<std::fs::File>>,
    /// Bytes charged to the staging cap.
    charged: u64,
    used: Arc<AtomicU64>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.used.fetch_sub(self.charged, Ordering::Relaxed);
    }
}

impl OpenFiles {
    /// No open files yet, over the shared parts `core`.
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            by_ino: Mutex::new(HashMap::new()),
            staging_used: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The open file of `ino`, if any.
    fn get(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        lock(&self.by_ino).get(&ino).cloned()
    }

    fn all(&self) -> Vec<Arc<OpenFile>> {
        lock(&self.by_ino).values().cloned().collect()
    }
}

impl OpenFile {
    fn path(&self) -> FsPath {
        lock(&self.shadow).path.clone()
    }

    fn key(&self) -> ObjectKey {
        lock(&self.shadow).key.clone()
    }
}

impl FileState {
    fn clean(stat: Option<&Stat>) -> Self {
        Self {
            base: stat.map(|s| Base {
                etag: s.etag.clone(),
            }),
            base_len: stat.map_or(0, |s| s.size),
            size: stat.map_or(0, |s| s.size),
            posix: stat.map(|s| s.posix).unwrap_or_default(),
            attr_changes: PosixMeta::default(),
            poisoned: None,
            dirty: false,
            upload_failed: None,
            written: RangeSet::new(),
            staging: None,
            staged_all: true,
            stream: None,
            no_stream: false,
            copied_from: None,
        }
    }

    /// Sets the size: bytes past it are dropped, bytes up to it that were never written
    /// read as zeros.
    ///
    /// A stream cannot take bytes back once they are in a sent part: a truncate below
    /// what it sent ends it (the staging file still holds everything, or the file is
    /// poisoned when it does not); a truncate within its unsent buffer just shortens that.
    fn truncate(&mut self, size: u64, key: &ObjectKey) {
        if let Some(stream) = self.stream.as_mut() {
            if size >= stream.sent {
                let keep = (size - stream.sent).min(stream.buffer.len() as u64);
                stream.buffer.truncate(keep as usize);
            } else {
                let sent = stream.sent;
                // Dropping the stream aborts its multipart upload.
                self.stream = None;
                if !self.staged_all && size != 0 {
                    self.poison(
                        key,
                        format!(
                            "truncated to {size} bytes below the {sent} bytes already streamed \
                         past the staging cap: the bytes kept cannot be read back"
                        ),
                    );
                }
            }
        }
        self.written.truncate(size);
        self.base_len = self.base_len.min(size);
        self.size = size;
        self.dirty = true;
        self.upload_failed = None;
        self.no_stream = self.no_stream || size != 0;
    }

    /// Marks the file as unable to be stored as written: its stream (if any) is aborted
    /// and every later write, flush and fsync fails until the file is opened afresh. The
    /// written bytes stay where they are (the staging file) for the last close to keep.
    fn poison(&mut self, key: &ObjectKey, why: String) {
        tracing::error!(key = %key, reason = %why,
            "open file poisoned: every later write, fsync and close of it fails until it is reopened");
        // Dropping the stream aborts its multipart upload.
        self.stream = None;
        self.poisoned.get_or_insert(why);
    }

    /// The error of a poisoned file, if it is.
    fn check_poisoned(&self, key: &ObjectKey) -> VfsResult<()> {
        match &self.poisoned {
            Some(why) => Err(VfsError::Io(
                StoreError::new(StoreErrorKind::Other, why.clone()).with_key(key.as_str()),
            )),
            None => Ok(()),
        }
    }
}

impl OpenFiles {
    /// The stat of `path` while an open file there has changes not yet in the store.
    pub(crate) fn open_file_stat(&self, path: &FsPath) -> Option<Stat> {
        let ino = self.core.inodes.find(path)?;
        let file = self.get(ino)?;
        let shadow = lock(&file.shadow);
        if shadow.unlinked || shadow.path != *path {
            return None;
        }
        shadow.dirty_stat.clone()
    }

    /// Names of files in directory `dir` created by this mount and not uploaded yet (a
    /// listing of the store cannot show them).
    pub(crate) fn pending_names(&self, dir: &FsPath) -> Vec<(String, Stat)> {
        self.all()
            .into_iter()
            .filter_map(|file| {
                let shadow = lock(&file.shadow);
                let stat = shadow.dirty_stat.clone()?;
                let name = shadow.path.file_name()?.to_owned();
                (!shadow.unlinked && shadow.path.parent() == *dir).then_some((name, stat))
            })
            .collect()
    }

    /// The open file of `ino`, created from `stat` (`None`: a new file) if not open yet;
    /// counts one more handle.
    fn open_file(&self, ino: Ino, path: &FsPath, stat: Option<&Stat>) -> VfsResult<Arc<OpenFile>> {
        let key = self.core.ns.file_key(path)?;
        let mut map = lock(&self.by_ino);
        // A clean open file of another version than the one this open found (the object
        // was replaced, and the kernel has not released the previous handles yet: FUSE
        // sends RELEASE after close(2) returns) is left to its handles; this open starts
        // afresh on the version it found. Close-to-open consistency.
        if let (Some(stat), Some(existing)) = (stat, map.get(&ino)) {
            let shadow = lock(&existing.shadow);
            let other_version = shadow.dirty_stat.is_none()
                && !shadow.unlinked
                && stat.etag.is_some()
                && stat.etag != shadow.etag;
            drop(shadow);
            if other_version {
                tracing::debug!(%key, "reopened after a replacement: a fresh open file");
                map.remove(&ino);
            }
        }
        let file = map.entry(ino).or_insert_with(|| {
            Arc::new(OpenFile {
                handles: AtomicUsize::new(0),
                shadow: Mutex::new(Shadow {
                    path: path.clone(),
                    key,
                    dirty_stat: None,
                    unlinked: false,
                    etag: stat.and_then(|s| s.etag.clone()),
                    size: stat.map_or(0, |s| s.size),
                }),
                reader: Mutex::new(None),
                state: tokio::sync::Mutex::new(FileState::clean(stat)),
            })
        });
        file.handles.fetch_add(1, Ordering::AcqRel);
        Ok(Arc::clone(file))
    }

    /// Opens an existing file for `flags` (reading, writing or both).
    pub(crate) async fn open_existing(
        &self,
        ino: Ino,
        path: &FsPath,
        stat: &Stat,
        flags: OpenFlags,
    ) -> VfsResult<Arc<OpenFile>> {
        if flags.write || flags.truncate {
            self.core.check_writable("open for writing")?;
            if flags.truncate || !flags.append {
                self.core.check_overwrite_allowed(path)?;
            }
        }
        let writing = flags.write || flags.append || flags.truncate;
        let headed;
        let stat = if writing && !stat.from_head && self.get(ino).is_none() {
            headed = self.head_for_writing(path).await?;
            &headed
        } else {
            stat
        };
        let file = self.open_file(ino, path, Some(stat))?;
        if flags.truncate && (flags.write || flags.append) {
            let mut state = file.state.lock().await;
            if state.size != 0 || state.base.is_some() {
                state.truncate(0, &file.key());
                // An O_TRUNC open starts a fresh sequential write.
                state.no_stream = false;
                self.mark_dirty(&file, &state);
            }
        }
        Ok(file)
    }

    /// A HEAD of the file at `path`, for a writer opening it on what a listing said: the
    /// mode, owner and mtime it shows while it has unsaved changes come from here (a LIST
    /// does not return them), and the version it builds on is the one seen now.
    async fn head_for_writing(&self, path: &FsPath) -> VfsResult<Stat> {
        let key = self.core.ns.file_key(path)?;
        match self.core.store.head(&key).await {
            Ok(meta) => {
                let stat = Stat::from_head(&meta);
                self.core.meta.put(path, stat.clone());
                stat.kind.require_regular(path)?;
                Ok(stat)
            }
            Err(e) => {
                if e.kind == StoreErrorKind::NotFound {
                    self.core.meta.put_missing(path);
                }
                Err(VfsError::from_store(path.as_str(), e))
            }
        }
    }

    /// The stat of an open file as this mount sees it.
    /// A new file `path` (inode `ino`, permission bits `mode`), open and not in the store
    /// yet; with the stat it shows.
    pub(crate) async fn open_new(
        &self,
        ino: Ino,
        path: &FsPath,
        mode: u32,
    ) -> VfsResult<(Arc<OpenFile>, Stat)> {
        let file = self.open_file(ino, path, None)?;
        let stat = {
            let mut state = file.state.lock().await;
            state.posix = self.core.new_posix_meta(FileKind::File, mode);
            state.dirty = true;
            self.mark_dirty(&file, &state)
        };
        Ok((file, stat))
    }

    pub(crate) async fn current_stat(&self, file: &Arc<OpenFile>) -> Stat {
        let state = file.state.lock().await;
        self.stat_of_state(&state)
    }

    fn stat_of_state(&self, state: &FileState) -> Stat {
        Stat {
            kind: FileKind::File,
            size: state.size,
            mtime: state.posix.mtime.unwrap_or_else(SystemTime::now),
            etag: state.base.as_ref().and_then(|b| b.etag.clone()),
            storage_class: None,
            posix: state.posix,
            from_head: true,
        }
    }

    /// Records that `state` differs from the store; returns the stat to show.
    fn mark_dirty(&self, file: &OpenFile, state: &FileState) -> Stat {
        // No stored version holds these contents: the stat shown has no ETag. With the
        // ETag of the version the changes build on, an open that read this stat just
        // before the upload finished took it for a newer version found in the store, and
        // began a fresh open file pinned to the old one (its reads: ESTALE).
        let stat = Stat {
            etag: None,
            ..self.stat_of_state(state)
        };
        lock(&file.shadow).dirty_stat = Some(stat.clone());
        stat
    }
}
