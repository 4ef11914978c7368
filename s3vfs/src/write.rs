//! Open files and the write path.
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
use crate::error::{VfsError, VfsResult};
use crate::fs::S3Fs;
use crate::meta::Stat;
use crate::namespace::{FileName, FsPath};
use crate::ranges::RangeSet;
use crate::read::Prefetcher;
use crate::recovery::{Manifest, RecoveryDir, UploadRecord};
use crate::store::{
    ByteRange, CompletedPart, ETag, GetRequest, ObjectKey, ObjectStore, PutOptions, StoreError,
    StoreErrorKind, UploadId, WriteCondition,
};
use crate::sync::lock;
use crate::vfs::{Entry, FileKind, Handle, Ino, OpenFlags, ShutdownReport};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Parts of a streamed upload keep one size for this many parts, then double, so that an
/// object of any size S3 accepts (5 TiB) fits in 10,000 parts without knowing its size.
const PARTS_PER_SIZE_STEP: u32 = 1000;

/// A stream's buffer is given its whole part size at once when it would grow past this.
const PART_BUFFER_PREALLOCATE_FROM: usize = 1024 * 1024;

/// What became of unsaved changes that could not be uploaded.
pub(crate) enum Kept {
    /// There were none (or they were uploaded).
    Nothing,
    /// Kept in the recovery directory, under this manifest.
    At(std::path::PathBuf),
    /// Lost: no local copy, or the recovery directory could not take them.
    Lost,
}

/// The objects a rename copied: for each new key, the ETag copied and the ETag of the copy.
pub(crate) type Copies = HashMap<ObjectKey, (Option<ETag>, Option<ETag>)>;

/// The open files of one file system, and the staging space they use.
#[derive(Default)]
pub(crate) struct OpenFiles {
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
}

struct Staging {
    file: std::fs::File,
    /// Bytes charged to the staging cap.
    charged: u64,
    used: Arc<AtomicU64>,
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.used.fetch_sub(self.charged, Ordering::Relaxed);
    }
}

/// A multipart upload fed as a new file is written sequentially. Dropping it aborts
/// the upload (in the background) unless it was completed.
struct Stream {
    store: Arc<dyn ObjectStore>,
    key: ObjectKey,
    upload_id: Option<UploadId>,
    /// Bytes handed to part uploads.
    sent: u64,
    /// Bytes written but not yet sent (the start of the next part).
    buffer: BytesMut,
    next_part: u32,
    /// Part uploads under way (or finished and not looked at yet).
    parts: Vec<JoinHandle<Result<CompletedPart, StoreError>>>,
    /// Parts known to be stored.
    done: Vec<CompletedPart>,
    permits: Arc<Semaphore>,
    /// The upload's record in the recovery directory, while it is under way.
    record: Option<UploadRecord>,
}

impl Stream {
    /// Records the parts that have finished; the first failure among them, if any.
    async fn reap_finished(&mut self) -> Result<(), StoreError> {
        let mut failure = None;
        let mut pending = Vec::with_capacity(self.parts.len());
        for part in std::mem::take(&mut self.parts) {
            if !part.is_finished() {
                pending.push(part);
                continue;
            }
            match part.await {
                Ok(Ok(done)) => self.done.push(done),
                Ok(Err(err)) => failure = failure.or(Some(err)),
                Err(join) => failure = failure.or(Some(part_task_error(&join))),
            }
        }
        self.parts = pending;
        failure.map_or(Ok(()), Err)
    }

    /// Waits for every part; all of them, in order, or the first failure.
    async fn all_parts(&mut self) -> Result<Vec<CompletedPart>, StoreError> {
        let mut failure = None;
        for part in std::mem::take(&mut self.parts) {
            match part.await {
                Ok(Ok(done)) => self.done.push(done),
                Ok(Err(err)) => failure = failure.or(Some(err)),
                Err(join) => failure = failure.or(Some(part_task_error(&join))),
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }
}

fn part_task_error(join: &tokio::task::JoinError) -> StoreError {
    StoreError::new(StoreErrorKind::Other, format!("part upload task: {join}"))
}

impl Drop for Stream {
    fn drop(&mut self) {
        for part in &self.parts {
            part.abort();
        }
        if let Some(id) = self.upload_id.take() {
            crate::store::multipart::abort_in_background(&self.store, &self.key, id);
        }
    }
}

impl OpenFiles {
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

fn store_err(path: &FsPath, err: StoreError) -> VfsError {
    if err.kind == StoreErrorKind::PreconditionFailed {
        tracing::error!(path = %path, error = %err, "upload refused: the object was changed by another writer");
        VfsError::WriteConflict(path.to_string())
    } else {
        tracing::error!(path = %path, error = %err, "upload failed");
        VfsError::from_store(path.as_str(), err)
    }
}

impl S3Fs {
    /// The stat of `path` while an open file there has changes not yet in the store.
    pub(crate) fn open_file_stat(&self, path: &FsPath) -> Option<Stat> {
        let ino = self.core.inodes.find(path)?;
        let file = self.open_files.get(ino)?;
        let shadow = lock(&file.shadow);
        if shadow.unlinked || shadow.path != *path {
            return None;
        }
        shadow.dirty_stat.clone()
    }

    /// Names of files in directory `dir` created by this mount and not uploaded yet (a
    /// listing of the store cannot show them).
    pub(crate) fn pending_names(&self, dir: &FsPath) -> Vec<(String, Stat)> {
        self.open_files
            .all()
            .into_iter()
            .filter_map(|file| {
                let shadow = lock(&file.shadow);
                let stat = shadow.dirty_stat.clone()?;
                let name = shadow.path.file_name()?.to_owned();
                (!shadow.unlinked && shadow.path.parent() == *dir).then_some((name, stat))
            })
            .collect()
    }

    /// Uploads the unsaved writes of an open file at `path`, if any, so that a copy of the
    /// object (rename) sees them.
    pub(crate) async fn sync_path(&self, path: &FsPath) -> VfsResult<()> {
        let Some(ino) = self.core.inodes.find(path) else {
            return Ok(());
        };
        match self.open_files.get(ino) {
            Some(file) => self.upload(&file).await,
            None => Ok(()),
        }
    }

    /// Uploads the unsaved writes of every open file at or below `dir` (a directory
    /// about to be renamed).
    pub(crate) async fn sync_below(&self, dir: &FsPath) -> VfsResult<()> {
        for file in self.open_files.all() {
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
        let file = self.open_files.get(ino)?;
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
        let Some(file) = self
            .core
            .inodes
            .find(path)
            .and_then(|ino| self.open_files.get(ino))
        else {
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
        let mut map = lock(&self.open_files.by_ino);
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
        for file in self.open_files.all() {
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
            if let Some(stream) = state.stream.as_mut() {
                if stream.upload_id.is_none() {
                    stream.key = key.clone();
                } else if state.staged_all {
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

    /// The open file of `ino`, created from `stat` (`None`: a new file) if not open yet;
    /// counts one more handle.
    fn open_file(&self, ino: Ino, path: &FsPath, stat: Option<&Stat>) -> VfsResult<Arc<OpenFile>> {
        let key = self.core.ns.file_key(path)?;
        let mut map = lock(&self.open_files.by_ino);
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

    /// One handle of `ino` is gone. True when it was the last and the file has changes
    /// not in the store: the file stays registered (a new open shares it) until
    /// [`finish_last_close`](Self::finish_last_close) has uploaded or kept them. A clean
    /// file's last handle unregisters it at once.
    pub(crate) fn drop_file_handle(&self, ino: Ino, file: &Arc<OpenFile>) -> bool {
        // The count drops under the map's lock, as `open_file` raises it: otherwise an
        // open could take this file from the map between the last handle going and the
        // removal, and write into a file no later open finds (RELEASE comes after
        // close(2) returns, so it races with the next open).
        let mut map = lock(&self.open_files.by_ino);
        if file.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return false;
        }
        let pending = {
            let shadow = lock(&file.shadow);
            shadow.dirty_stat.is_some() && !shadow.unlinked
        };
        if !pending && map.get(&ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
            map.remove(&ino);
        }
        pending
    }

    /// Unregisters `file` if no handle took it meanwhile; whether it did.
    fn unregister_if_unused(&self, ino: Ino, file: &Arc<OpenFile>) -> bool {
        let mut map = lock(&self.open_files.by_ino);
        if file.handles.load(Ordering::Acquire) != 0 {
            return false;
        }
        if map.get(&ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
            map.remove(&ino);
        }
        true
    }

    /// The last handle of a file with unsaved changes is gone (pages of a shared mapping
    /// written back after close, or a close whose upload failed): changes made since the
    /// last upload attempt are uploaded; what was not, or fails now, is kept in the
    /// recovery directory. Nothing is discarded.
    pub(crate) async fn finish_last_close(&self, ino: Ino, file: &Arc<OpenFile>) {
        // Changes whose upload already failed (the close said so) are kept as they are;
        // changes made since the last flush (mmap write-back) are uploaded first.
        let failed_before = file.state.lock().await.upload_failed.clone();
        let result = match failed_before {
            Some(why) => Err(why),
            None => self.upload(file).await.map_err(|e| e.to_string()),
        };
        if !self.unregister_if_unused(ino, file) {
            // Opened again meanwhile: the new handles own the changes now.
            return;
        }
        if let Err(why) = result {
            let mut state = file.state.lock().await;
            self.keep_unsaved(file, &mut state, &why);
        }
    }

    /// Without a runtime to upload on (a library handle dropped outside one): keep the
    /// unsaved changes in the recovery directory at once.
    pub(crate) fn keep_unsaved_now(&self, ino: Ino, file: &Arc<OpenFile>) {
        if !self.unregister_if_unused(ino, file) {
            return;
        }
        match file.state.try_lock() {
            Ok(mut state) => {
                self.keep_unsaved(
                    file,
                    &mut state,
                    "closed outside an async runtime: not uploaded",
                );
            }
            Err(_) => tracing::error!(key = %file.key(),
                "closed outside an async runtime while busy: its unsaved changes are lost"),
        }
    }

    /// Moves what `file` could not upload into the recovery directory and says so at
    /// ERROR with the place; if even that fails, says what is lost. Either way the file
    /// no longer counts as having unsaved changes (a later release does not keep them
    /// twice).
    fn keep_unsaved(&self, file: &OpenFile, state: &mut FileState, error: &str) -> Kept {
        let (key, path) = (file.key(), file.path());
        if !state.dirty {
            return Kept::Nothing;
        }
        state.dirty = false;
        lock(&file.shadow).dirty_stat = None;
        if !state.staged_all {
            tracing::error!(key = %key, error,
                "closed with changes that could not be uploaded and were streamed past the staging cap: they are lost");
            return Kept::Lost;
        }
        let written: Vec<(u64, u64)> = state
            .written
            .split(0, state.size)
            .into_iter()
            .filter_map(|(s, e, w)| w.then_some((s, e)))
            .collect();
        let mut metadata = std::collections::BTreeMap::new();
        state.posix.write_to(&mut metadata);
        let manifest = Manifest::new(
            self.core.store.bucket(),
            &key,
            path.to_string(),
            state.base.as_ref().and_then(|b| b.etag.as_ref()),
            state.base_len,
            state.size,
            written.clone(),
            metadata,
            error.to_owned(),
        );
        let dir = self.core.config.recovery_dir();
        let kept = RecoveryDir::open(&dir).and_then(|recovery| {
            recovery.keep(&manifest, |out| {
                let Some(staging) = &state.staging else {
                    return Ok(());
                };
                for &(s, e) in &written {
                    crate::recovery::copy_range(&staging.file, out, s, e, &dir)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Ok(())
            })
        });
        match kept {
            Ok(manifest_path) => {
                tracing::error!(key = %key, path = %path, error,
                    kept = %manifest_path.display(),
                    "closed with changes that could not be uploaded: they are kept in the recovery directory; `s3vfs recover` lists and re-uploads them");
                Kept::At(manifest_path)
            }
            Err(keep_error) => {
                tracing::error!(key = %key, path = %path, error, %keep_error,
                    "closed with changes that could not be uploaded, and the recovery directory could not keep them: they are lost");
                Kept::Lost
            }
        }
    }

    /// [`Vfs::shutdown`](crate::vfs::Vfs::shutdown): refuses new opens and writes, then
    /// uploads every open file with unsaved changes (`upload_concurrency` at once) until
    /// `timeout`; what is not uploaded by then is kept in the recovery directory.
    pub(crate) async fn shutdown_writes(&self, timeout: std::time::Duration) -> ShutdownReport {
        self.core.closing.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + timeout;
        let unsaved: Vec<Arc<OpenFile>> = self
            .open_files
            .all()
            .into_iter()
            .filter(|file| {
                let shadow = lock(&file.shadow);
                shadow.dirty_stat.is_some() && !shadow.unlinked
            })
            .collect();
        tracing::info!(
            files = unsaved.len(),
            ?timeout,
            "shutting down: uploading files with unsaved changes"
        );
        let outcomes: Vec<(String, Kept)> = futures::stream::iter(unsaved)
            .map(|file| async move {
                let path = file.path().to_string();
                let error = match tokio::time::timeout_at(deadline, self.upload(&file)).await {
                    Ok(Ok(())) => return (path, Kept::Nothing),
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("not uploaded within the shutdown timeout ({timeout:?})"),
                };
                // A writer still holding the file gets a moment; past it the file is
                // reported lost rather than the shutdown waiting without bound.
                let grace = std::time::Duration::from_secs(5);
                match tokio::time::timeout(grace, file.state.lock()).await {
                    Ok(mut state) => {
                        let kept = self.keep_unsaved(&file, &mut state, &error);
                        (path, kept)
                    }
                    Err(_) => {
                        tracing::error!(path, "busy at shutdown: its unsaved changes are lost");
                        (path, Kept::Lost)
                    }
                }
            })
            .buffer_unordered(self.core.config.upload_concurrency.max(1))
            .collect()
            .await;
        let mut report = ShutdownReport::default();
        for (path, kept) in outcomes {
            match kept {
                Kept::Nothing => report.uploaded.push(path),
                Kept::At(manifest) => report.kept.push((path, manifest)),
                Kept::Lost => report.lost.push(path),
            }
        }
        report
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
        let stat = if writing && !stat.from_head && self.open_files.get(ino).is_none() {
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
                if stat.kind != FileKind::File {
                    return Err(VfsError::InvalidArgument(format!(
                        "{path} is a {}",
                        stat.kind
                    )));
                }
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
                let file = (self.open_existing(ino, &path, &stat, flags).await)
                    .inspect_err(|_| self.core.inodes.forget(ino, 1))?;
                let stat = self.current_stat(&file).await;
                let handle = self.new_file_handle(ino, file, flags);
                return Ok((self.core.entry(ino, &stat), handle));
            }
            Err(VfsError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let ino = self.core.inodes.lookup(&path, FileKind::File);
        let file =
            (self.open_file(ino, &path, None)).inspect_err(|_| self.core.inodes.forget(ino, 1))?;
        let stat = {
            let mut state = file.state.lock().await;
            state.posix = self.core.new_posix_meta(FileKind::File, mode);
            state.dirty = true;
            self.mark_dirty(&file, &state)
        };
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

    /// The stat of an open file as this mount sees it.
    async fn current_stat(&self, file: &Arc<OpenFile>) -> Stat {
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
        let stat = self.stat_of_state(state);
        lock(&file.shadow).dirty_stat = Some(stat.clone());
        stat
    }

    /// Reads through an open file: clean files through the shared read-ahead, files with
    /// local changes from their three sources.
    pub(crate) async fn read_file(
        &self,
        file: &Arc<OpenFile>,
        offset: u64,
        len: u64,
    ) -> VfsResult<Bytes> {
        Ok(crate::read::join(
            self.read_file_chunks(file, offset, len).await?,
        ))
    }

    /// Reads through an open file as a list of slices, without joining them.
    pub(crate) async fn read_file_chunks(
        &self,
        file: &Arc<OpenFile>,
        offset: u64,
        len: u64,
    ) -> VfsResult<Vec<Bytes>> {
        if lock(&file.shadow).dirty_stat.is_none() {
            if let Some(reader) = self.clean_reader(file) {
                return reader.read_chunks(offset, len).await;
            }
        }
        let state = file.state.lock().await;
        if !state.dirty {
            drop(state);
            let reader = self
                .clean_reader(file)
                .ok_or_else(|| VfsError::NotFound(file.path().to_string()))?;
            return reader.read_chunks(offset, len).await;
        }
        let end = offset.saturating_add(len).min(state.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        Ok(vec![self.assemble(file, &state, offset, end).await?])
    }

    /// A reader of the clean object version, shared by the file's handles.
    fn clean_reader(&self, file: &OpenFile) -> Option<Arc<Prefetcher>> {
        let (key, path, etag, size) = {
            let shadow = lock(&file.shadow);
            if shadow.dirty_stat.is_some() {
                return None;
            }
            (
                shadow.key.clone(),
                shadow.path.clone(),
                shadow.etag.clone(),
                shadow.size,
            )
        };
        let mut reader = lock(&file.reader);
        if let Some(r) = reader.as_ref() {
            if r.etag() == etag.as_ref() && r.size() == size && r.key() == &key {
                return Some(Arc::clone(r));
            }
        }
        let fresh = Arc::new(Prefetcher::new(
            Arc::clone(&self.core.store),
            key,
            path.to_string(),
            etag,
            size,
            &self.core.config,
            self.core.budget.clone(),
        ));
        *reader = Some(Arc::clone(&fresh));
        Some(fresh)
    }

    /// The bytes `[start, end)` of a file with local changes.
    async fn assemble(
        &self,
        file: &OpenFile,
        state: &FileState,
        start: u64,
        end: u64,
    ) -> VfsResult<Bytes> {
        let path = file.path();
        let len = usize::try_from(end - start).map_err(|_| {
            VfsError::FileTooLarge(format!("{path}: {} bytes at once", end - start))
        })?;
        if start >= state.base_len && !state.written.overlaps(start, end) {
            // Only zeros: never materialised.
            return Ok(crate::zeros::zeros(len));
        }
        // Zeroed memory is only touched where something is copied into it.
        let mut out = BytesMut::zeroed(len);
        for (s, e, written) in state.written.split(start, end) {
            let at = (s - start) as usize;
            if written {
                out[at..at + (e - s) as usize]
                    .copy_from_slice(&self.read_written(file, state, s, e)?);
                continue;
            }
            let base_end = e.min(state.base_len);
            if s < base_end {
                let etag = state.base.as_ref().and_then(|b| b.etag.clone());
                let request = GetRequest {
                    key: file.key(),
                    range: Some(ByteRange::new(s, base_end)),
                    if_match: etag,
                };
                let fetched = async { self.core.store.get(request).await?.collect().await };
                let bytes = fetched.await.map_err(|e| store_err(&path, e))?;
                if bytes.len() as u64 != base_end - s {
                    return Err(VfsError::Io(StoreError::new(
                        StoreErrorKind::Other,
                        format!(
                            "{path}: the store sent {} bytes for a range of {}",
                            bytes.len(),
                            base_end - s
                        ),
                    )));
                }
                out[at..at + bytes.len()].copy_from_slice(&bytes);
            }
        }
        Ok(out.freeze())
    }

    /// Locally written bytes `[s, e)`: from the staging file, or from a stream's buffer.
    fn read_written(
        &self,
        file: &OpenFile,
        state: &FileState,
        s: u64,
        e: u64,
    ) -> VfsResult<Vec<u8>> {
        if state.staged_all {
            if let Some(staging) = &state.staging {
                let mut buf = vec![0u8; (e - s) as usize];
                // Reads of the local staging file are page-cache copies: done in place.
                staging.file.read_exact_at(&mut buf, s).map_err(|err| {
                    tracing::error!(path = %file.path(), error = %err, "staging file read failed");
                    VfsError::Io(StoreError::new(
                        StoreErrorKind::Other,
                        format!("staging read: {err}"),
                    ))
                })?;
                return Ok(buf);
            }
        }
        if let Some(stream) = &state.stream {
            if s >= stream.sent && e <= stream.sent + stream.buffer.len() as u64 {
                let from = (s - stream.sent) as usize;
                return Ok(stream.buffer[from..from + (e - s) as usize].to_vec());
            }
        }
        Err(VfsError::Unsupported(format!(
            "{}: data already streamed to the store past the staging cap cannot be read back before close",
            file.path()
        )))
    }

    /// Writes `data` at `offset` (at the end for append handles); returns the byte count.
    pub(crate) async fn write_file(
        &self,
        file: &Arc<OpenFile>,
        flags: OpenFlags,
        offset: u64,
        data: Bytes,
    ) -> VfsResult<u32> {
        if !(flags.write || flags.append) {
            return Err(VfsError::BadHandle);
        }
        let len = data.len() as u64;
        let count = u32::try_from(data.len())
            .map_err(|_| VfsError::InvalidArgument("write larger than 4 GiB".to_owned()))?;
        self.core.check_not_closing("write")?;
        let mut state = file.state.lock().await;
        state.check_poisoned(&file.key())?;
        let offset = if flags.append { state.size } else { offset };
        let end = offset
            .checked_add(len)
            .ok_or_else(|| VfsError::FileTooLarge(format!("{}: offset overflows", file.path())))?;
        if len == 0 {
            return Ok(0);
        }
        self.check_file_size(&file.path(), end)?;
        // Keep streaming only for writes that continue exactly where the stream ends.
        let streams = match &state.stream {
            Some(stream) => offset == stream.sent + stream.buffer.len() as u64,
            None => !state.no_stream && offset == 0 && state.size == 0 && state.base_len == 0,
        };
        if !streams {
            if let Some(stream) = state.stream.take() {
                if !state.staged_all {
                    state.stream = Some(stream);
                    return Err(VfsError::Unsupported(format!(
                        "{}: out-of-order write after streaming past the staging cap",
                        file.path()
                    )));
                }
                self.abort_stream(&file.key(), stream);
            }
            state.no_stream = true;
        }
        self.stage(file, &mut state, offset, &data)?;
        if streams {
            if let Err(err) = self.feed_stream(file, &mut state, data).await {
                // The stream lost a part (or the bytes handed to it): it can never be
                // completed as written, and the writer must not be told otherwise later.
                state.poison(&file.key(), format!("a part of the upload failed: {err}"));
                return Err(err);
            }
        }
        state.written.insert(offset, end);
        state.size = state.size.max(end);
        state.dirty = true;
        state.upload_failed = None;
        state.posix.mtime = Some(SystemTime::now());
        state.attr_changes.mtime = None;
        self.mark_dirty(file, &state);
        Ok(count)
    }

    /// Copies written bytes into the staging file while the cap allows.
    fn stage(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        offset: u64,
        data: &[u8],
    ) -> VfsResult<()> {
        if !state.staged_all {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        if state.staging.is_none() {
            let dir = self
                .core
                .config
                .staging_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            let file = tempfile::tempfile_in(&dir).map_err(|err| {
                tracing::error!(dir = %dir.display(), error = %err, "cannot create a staging file");
                VfsError::NoSpace(format!("staging file in {}: {err}", dir.display()))
            })?;
            state.staging = Some(Staging {
                file,
                charged: 0,
                used: Arc::clone(&self.open_files.staging_used),
            });
        }
        let Some(staging) = state.staging.as_mut() else {
            return Ok(());
        };
        if end > staging.charged {
            let more = end - staging.charged;
            let used = self
                .open_files
                .staging_used
                .fetch_add(more, Ordering::AcqRel)
                + more;
            if used > self.core.config.staging_cap {
                self.open_files
                    .staging_used
                    .fetch_sub(more, Ordering::AcqRel);
                if state.stream.is_some() || (offset == 0 && state.size == 0 && !state.no_stream) {
                    // A sequential writer can go on without staging.
                    tracing::info!(path = %file.path(), "staging cap reached; streaming without a local copy");
                    state.staging = None;
                    state.staged_all = false;
                    return Ok(());
                }
                tracing::error!(path = %file.path(), cap = self.core.config.staging_cap, "staging cap reached");
                return Err(VfsError::NoSpace(format!(
                    "{}: the staging area is full ({} bytes)",
                    file.path(),
                    self.core.config.staging_cap
                )));
            }
            staging.charged = end;
        }
        // Writes to the local staging file are page-cache copies: done in place.
        staging.file.write_all_at(data, offset).map_err(|err| {
            tracing::error!(path = %file.path(), error = %err, "staging file write failed");
            VfsError::NoSpace(format!("{}: staging write: {err}", file.path()))
        })
    }

    /// Refuses (`EFBIG`) a size past the mount's `max_file_size` or what the store can
    /// hold in one object, before anything is allocated or uploaded.
    fn check_file_size(&self, path: &FsPath, size: u64) -> VfsResult<()> {
        let caps = self.core.store.capabilities();
        let store_limit = caps.max_part_size.saturating_mul(u64::from(caps.max_parts));
        let limit = self.core.config.max_file_size.min(store_limit);
        if size > limit {
            tracing::warn!(path = %path, size, limit, "refused: the file would be larger than the largest object allowed");
            return Err(VfsError::FileTooLarge(format!(
                "{path}: {size} bytes is more than the largest file allowed ({limit} bytes)"
            )));
        }
        Ok(())
    }

    /// The size of part `number` (1-based) of a streamed upload.
    fn stream_part_size(&self, number: u32) -> u64 {
        let caps = self.core.store.capabilities();
        let base = self.core.config.write_part_size.max(caps.min_part_size);
        let steps = (number.saturating_sub(1) / PARTS_PER_SIZE_STEP).min(20);
        (base << steps).min(caps.max_part_size)
    }

    /// Appends `data` to the stream, sending every full part.
    async fn feed_stream(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        data: Bytes,
    ) -> VfsResult<()> {
        let key = file.key();
        let (rewrite, posix, changes) = (state.base.is_some(), state.posix, state.attr_changes);
        let stream = state.stream.get_or_insert_with(|| Stream {
            store: Arc::clone(&self.core.store),
            key,
            upload_id: None,
            sent: 0,
            buffer: BytesMut::new(),
            next_part: 1,
            parts: Vec::new(),
            done: Vec::new(),
            record: None,
            permits: Arc::new(Semaphore::new(self.core.config.upload_concurrency.max(1))),
        });
        let needed = stream.buffer.len() + data.len();
        if needed > stream.buffer.capacity() && needed >= PART_BUFFER_PREALLOCATE_FROM {
            // A large file: give the part its whole size once, rather than letting the
            // buffer double its way up (copying each time). Small files grow as needed.
            let part_size = self.stream_part_size(stream.next_part) as usize;
            stream
                .buffer
                .reserve(part_size.max(needed) - stream.buffer.len());
        }
        stream.buffer.extend_from_slice(&data);
        loop {
            let part_size = self.stream_part_size(stream.next_part);
            if (stream.buffer.len() as u64) < part_size {
                break;
            }
            if stream.next_part > self.core.store.capabilities().max_parts {
                return Err(VfsError::FileTooLarge(format!(
                    "{}: more parts than the store takes in one upload",
                    file.path()
                )));
            }
            let body = stream.buffer.split_to(part_size as usize).freeze();
            let key = file.key();
            if stream.upload_id.is_none() {
                let options = self
                    .upload_options_for(&key, rewrite, posix, changes)
                    .await?;
                let id = self
                    .core
                    .store
                    .create_multipart(&key, options)
                    .await
                    .map_err(|e| store_err(&file.path(), e))?;
                stream.record = self.core.record_upload(&key, &id);
                stream.upload_id = Some(id);
            }
            let Some(upload_id) = stream.upload_id.clone() else {
                break;
            };
            // Back-pressure: wait while `upload_concurrency` parts are in flight.
            let permit = Arc::clone(&stream.permits)
                .acquire_owned()
                .await
                .map_err(|_| {
                    VfsError::Io(StoreError::new(StoreErrorKind::Other, "upload stopped"))
                })?;
            let reservation = self.core.budget.reserve(body.len() as u64).await;
            let store = Arc::clone(&self.core.store);
            let number = stream.next_part;
            stream.sent += body.len() as u64;
            stream.next_part += 1;
            stream.parts.push(tokio::spawn(async move {
                let result = store.upload_part(&key, &upload_id, number, body).await;
                drop(permit);
                drop(reservation);
                result
            }));
        }
        // A part that already failed fails the write now rather than at close.
        stream
            .reap_finished()
            .await
            .map_err(|e| store_err(&file.path(), e))
    }

    /// Aborts a stream's multipart upload in the background.
    fn abort_stream(&self, key: &ObjectKey, stream: Stream) {
        tracing::debug!(key = %key, "abandoning a streamed upload");
        drop(stream);
    }

    /// The options of an upload of `key`: a new file gets the mount's storage class,
    /// encryption and its attributes; a rewrite of an existing object keeps the object's
    /// metadata (mode, owner, xattrs, content type, storage class; a chmod made while the
    /// file was open included) and updates its mtime.
    async fn upload_options(&self, key: &ObjectKey, state: &FileState) -> VfsResult<PutOptions> {
        self.upload_options_for(key, state.base.is_some(), state.posix, state.attr_changes)
            .await
    }

    async fn upload_options_for(
        &self,
        key: &ObjectKey,
        rewrite: bool,
        posix: PosixMeta,
        changes: PosixMeta,
    ) -> VfsResult<PutOptions> {
        if !rewrite {
            return Ok(self.core.new_object_options(posix));
        }
        let head = match self.core.store.head(key).await {
            Ok(head) => head,
            // Deleted meanwhile: the conditional upload will say so.
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                return Ok(self.core.new_object_options(posix))
            }
            Err(e) => return Err(store_err(&self.core.path_of_key(key), e)),
        };
        let mut user_metadata = head.user_metadata;
        PosixMeta {
            mtime: posix.mtime,
            ..PosixMeta::default()
        }
        .write_to(&mut user_metadata);
        changes.write_to(&mut user_metadata);
        let storage_class = head
            .storage_class
            .filter(|c| c != "STANDARD" && !crate::store::storage_class::is_archived(Some(c)))
            .or_else(|| self.core.config.storage_class.clone());
        Ok(PutOptions {
            user_metadata,
            content_type: head.content_type,
            storage_class,
            sse: self.core.config.sse.clone(),
            condition: WriteCondition::None,
        })
    }

    /// Makes the file's local changes durable in the store (flush, fsync, close).
    pub(crate) async fn upload(&self, file: &Arc<OpenFile>) -> VfsResult<()> {
        // The name is held before the state is locked (a rename holds names, then the
        // state of the open files it moves), and looked at again once held: a rename that
        // ran meanwhile gave the file another one.
        let _name = loop {
            let path = file.path();
            let guard = self.core.names.for_upload(&path).await;
            if file.path() == path {
                break guard;
            }
        };
        let mut state = file.state.lock().await;
        state.check_poisoned(&file.key())?;
        if !state.dirty {
            return Ok(());
        }
        if lock(&file.shadow).unlinked {
            if let Some(stream) = state.stream.take() {
                self.abort_stream(&file.key(), stream);
            }
            state.dirty = false;
            return Ok(());
        }
        let path = file.path();
        let key = file.key();
        let expected = state.base.as_ref().and_then(|b| b.etag.clone());
        if state.base.is_some() && expected.is_none() && !self.core.config.last_writer_wins {
            tracing::warn!(key = %key, "the store gave no ETag: this overwrite cannot be conditional");
        }
        let condition = match (&state.base, &expected) {
            (Some(_), None) => WriteCondition::None,
            _ => self.core.write_condition(expected.as_ref()),
        };
        // Attributes changed after a streamed multipart upload began are not in its
        // metadata.
        let late_changes = state
            .stream
            .as_ref()
            .filter(|s| s.upload_id.is_some() && state.attr_changes != PosixMeta::default())
            .map(|_| state.attr_changes);
        let result = match state.stream.take() {
            Some(stream) if stream.sent + stream.buffer.len() as u64 == state.size => {
                self.finish_stream(&key, &state, stream, condition).await
            }
            Some(stream) => {
                self.abort_stream(&key, stream);
                self.upload_staged(file, &state, condition).await
            }
            None => self.upload_staged(file, &state, condition).await,
        };
        match result {
            Ok(etag) => {
                tracing::debug!(key = %key, size = state.size, "uploaded");
                state.base = Some(Base { etag: etag.clone() });
                state.base_len = state.size;
                state.written = RangeSet::new();
                state.staging = None;
                state.staged_all = true;
                state.dirty = false;
                state.upload_failed = None;
                // An empty file (e.g. flushed when a shell redirection or `dd` closed a
                // duplicate of the descriptor before writing) may still stream: writes
                // from offset 0 replace it as a new sequential upload.
                state.no_stream = state.size != 0;
                state.attr_changes = PosixMeta::default();
                let stat = Stat {
                    etag: etag.clone(),
                    ..self.stat_of_state(&state)
                };
                {
                    let mut shadow = lock(&file.shadow);
                    shadow.dirty_stat = None;
                    shadow.etag = etag;
                    shadow.size = state.size;
                }
                self.core.meta.put(&path, stat);
                self.core.meta.forget_missing_ancestors(&path);
                drop(state);
                if let Some(changes) = late_changes {
                    // The multipart upload's metadata was fixed when it began; attributes
                    // changed later are stored by one metadata rewrite.
                    self.rewrite_metadata(&path, FileKind::File, |metadata, _| {
                        changes.write_to(metadata);
                        Ok(())
                    })
                    .await?;
                }
                Ok(())
            }
            Err(err) => {
                state.upload_failed = Some(err.to_string());
                if !state.staged_all {
                    // The streamed bytes exist nowhere else: the data is lost. Say so, and
                    // leave the file as it was in the store.
                    state.dirty = false;
                    state.poison(&key, format!(
                        "the upload failed ({err}) and the data written was streamed past the staging cap: it is lost"
                    ));
                    lock(&file.shadow).dirty_stat = None;
                } else {
                    // The stream is gone; what was written is all staged.
                    state.no_stream = true;
                }
                Err(err)
            }
        }
    }

    /// Sends the stream's last part and completes it (a single PUT if it never filled one).
    async fn finish_stream(
        &self,
        key: &ObjectKey,
        state: &FileState,
        mut stream: Stream,
        condition: WriteCondition,
    ) -> VfsResult<Option<ETag>> {
        let path = self.core.path_of_key(key);
        let Some(upload_id) = stream.upload_id.clone() else {
            let body = stream.buffer.split().freeze();
            let options = PutOptions {
                condition,
                ..self.upload_options(key, state).await?
            };
            let done = self
                .core
                .store
                .put(key, body, options)
                .await
                .map_err(|e| store_err(&path, e))?;
            return Ok(done.etag);
        };
        if !stream.buffer.is_empty() {
            if stream.next_part > self.core.store.capabilities().max_parts {
                self.abort_stream(key, stream);
                return Err(VfsError::FileTooLarge(format!(
                    "{path}: more parts than the store takes in one upload"
                )));
            }
            let body = stream.buffer.split().freeze();
            let store = Arc::clone(&self.core.store);
            let (k, id, number) = (key.clone(), upload_id.clone(), stream.next_part);
            stream.parts.push(tokio::spawn(async move {
                store.upload_part(&k, &id, number, body).await
            }));
        }
        let parts = match stream.all_parts().await {
            Ok(parts) => parts,
            Err(err) => {
                self.abort_stream(key, stream);
                return Err(store_err(&path, err));
            }
        };
        match self
            .core
            .store
            .complete_multipart(key, &upload_id, parts, condition)
            .await
        {
            Ok(done) => {
                stream.upload_id = None;
                Ok(done.etag)
            }
            Err(err) => {
                self.abort_stream(key, stream);
                Err(store_err(&path, err))
            }
        }
    }

    /// The part size for an object of `size` bytes: the configured size, grown until the
    /// object fits the store's part limit.
    fn part_size_for(&self, size: u64) -> u64 {
        let caps = self.core.store.capabilities();
        let mut part = self.core.config.write_part_size.max(caps.min_part_size);
        while size.div_ceil(part) > u64::from(caps.max_parts) && part < caps.max_part_size {
            part = part.saturating_mul(2);
        }
        part.min(caps.max_part_size)
    }

    /// Uploads a staged file: one PUT when small, else a multipart upload that copies the
    /// unchanged ranges of the old object server-side.
    async fn upload_staged(
        &self,
        file: &OpenFile,
        state: &FileState,
        condition: WriteCondition,
    ) -> VfsResult<Option<ETag>> {
        let path = file.path();
        let key = file.key();
        let options = self.upload_options(&key, state).await?;
        let part_size = self.part_size_for(state.size);
        if state.size <= part_size {
            let body = self.assemble(file, state, 0, state.size).await?;
            let options = PutOptions {
                condition,
                ..options
            };
            let done = self
                .core
                .store
                .put(&key, body, options)
                .await
                .map_err(|e| store_err(&path, e))?;
            return Ok(done.etag);
        }
        let caps = self.core.store.capabilities();
        let part_count = state.size.div_ceil(part_size);
        if part_count > u64::from(caps.max_parts) {
            return Err(VfsError::FileTooLarge(format!(
                "{path}: {} bytes need {part_count} parts of {part_size}; the store takes {}",
                state.size, caps.max_parts
            )));
        }
        // Server-side copies of old ranges are safe only when the completion is pinned to
        // the old version (If-Match): otherwise they could copy a newer object's bytes.
        let may_copy = caps.upload_part_copy && matches!(condition, WriteCondition::IfMatch(_));
        let upload_id = self
            .core
            .store
            .create_multipart(&key, options)
            .await
            .map_err(|e| store_err(&path, e))?;
        let _record = self.core.record_upload(&key, &upload_id);
        let ranges: Vec<(u32, u64, u64)> = (0..state.size.div_ceil(part_size))
            .map(|i| {
                let start = i * part_size;
                ((i + 1) as u32, start, (start + part_size).min(state.size))
            })
            .collect();
        let results: Vec<Result<CompletedPart, VfsError>> = futures::stream::iter(ranges)
            .map(|(number, start, end)| {
                let key = key.clone();
                let upload_id = upload_id.clone();
                let path = path.clone();
                async move {
                    let reusable =
                        may_copy && end <= state.base_len && !state.written.overlaps(start, end);
                    if reusable {
                        let range = Some(ByteRange::new(start, end));
                        self.core
                            .store
                            .upload_part_copy(&key, &upload_id, number, &key, range)
                            .await
                            .map_err(|e| store_err(&path, e))
                    } else {
                        let _reservation = self.core.budget.reserve(end - start).await;
                        let body = self.assemble(file, state, start, end).await?;
                        self.core
                            .store
                            .upload_part(&key, &upload_id, number, body)
                            .await
                            .map_err(|e| store_err(&path, e))
                    }
                }
            })
            .buffered(self.core.config.upload_concurrency.max(1))
            .collect()
            .await;
        let parts: Result<Vec<CompletedPart>, VfsError> = results.into_iter().collect();
        let completed = match parts {
            Ok(parts) => self
                .core
                .store
                .complete_multipart(&key, &upload_id, parts, condition)
                .await
                .map_err(|e| store_err(&path, e)),
            Err(err) => Err(err),
        };
        if completed.is_err() {
            if let Err(err) = self.core.store.abort_multipart(&key, &upload_id).await {
                tracing::warn!(key = %key, error = %err, "abort of a failed multipart upload failed");
            }
        }
        Ok(completed?.etag)
    }

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
        self.check_file_size(&info.path, size)?;
        if let Some(handle) = handle {
            if let Ok((file, _)) = self.file_of_handle(handle) {
                let mut state = file.state.lock().await;
                if state.size != size {
                    state.truncate(size, &file.key());
                    return Ok(self.mark_dirty(&file, &state));
                }
                return Ok(self.stat_of_state(&state));
            }
        }
        let stat = self.stat_path(&info.path).await?;
        match stat.kind {
            FileKind::Directory => return Err(VfsError::IsADirectory(info.path.to_string())),
            FileKind::Symlink => {
                return Err(VfsError::InvalidArgument(format!(
                    "{} is a symbolic link",
                    info.path
                )))
            }
            FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice | FileKind::Socket => {
                return Err(VfsError::InvalidArgument(format!(
                    "{} is a {}",
                    info.path, stat.kind
                )))
            }
            FileKind::File => {}
        }
        let file = self.open_file(ino, &info.path, Some(&stat))?;
        let result = async {
            {
                let mut state = file.state.lock().await;
                if state.size == size {
                    return Ok(self.stat_of_state(&state));
                }
                state.truncate(size, &file.key());
                self.mark_dirty(&file, &state);
            }
            self.upload(&file).await?;
            Ok(self.current_stat(&file).await)
        }
        .await;
        if self.drop_file_handle(ino, &file) && self.unregister_if_unused(ino, &file) {
            // A refused truncate of a file nobody has open: the caller has the error and
            // the store the file as it was; there is nothing written to keep.
            tracing::debug!(path = %info.path, "refused truncate dropped");
        }
        result
    }
}
