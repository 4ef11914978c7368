//! [`DiskCache`]: one checksummed file per block in a directory, within a byte cap.
//!
//! The cache owns the subdirectory [`SUBDIR`] of the directory it is given, and empties it
//! when created: nothing survives a restart, so there is no stale state to trust. The
//! index of files (an LRU by total bytes) lives in memory; a file is added to it only once
//! it is written whole (written under a temporary name, then renamed). Reads check the
//! whole header and the CRC-32C of the data: a bad file is logged, deleted and a miss.
//! Disk errors (full disk, permissions) only mean the block is not cached. The files hold
//! bucket data, so the directories are made 0700 and the files 0600 whatever the umask,
//! like the staging files.
//!
//! Blocks are written behind the reader: `put` only queues them for the cache's writer
//! thread ([`write_behind`](super::write_behind)), within a byte backlog past which blocks
//! are dropped (not cached), and a block waiting there is served from memory. File reads
//! run on tokio's blocking threads.

use super::block_file;
use super::write_behind::{BlockSink, WriteBehind};
use super::{BlockId, CacheError, CacheStats, Counters, DataCache};
use crate::config::DataCacheConfig;
use async_trait::async_trait;
use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The subdirectory of the configured directory that the cache owns (and empties).
pub(super) const SUBDIR: &str = "s3vfs-cache-v1";

/// The mode of every directory the cache creates: only the mounting user may look in.
const PRIVATE_DIR: u32 = 0o700;
/// The mode of every file the cache creates.
const PRIVATE_FILE: u32 = 0o600;

/// Blocks on disk within a byte cap (file headers included), written behind the reader.
#[derive(Debug)]
pub struct DiskCache {
    files: Arc<BlockFiles>,
    writer: WriteBehind,
    /// Whether the first block dropped for a full backlog was logged.
    told_backlog_full: AtomicBool,
}

/// The directory of block files and its index: what the writer thread writes into and
/// lookups read from.
#[derive(Debug)]
struct BlockFiles {
    root: PathBuf,
    cap: u64,
    state: Mutex<State>,
    counters: Counters,
    next_temp: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Block → size of its file.
    files: LruCache<BlockId, u64>,
    bytes: u64,
}

impl DiskCache {
    /// A cache in `dir/s3vfs-cache-v1/` of at most `cap` bytes, with the default write
    /// backlog ([`DataCacheConfig::disk_write_backlog`]); that subdirectory is emptied (or
    /// created, with `dir` if needed) now.
    pub fn new(dir: &Path, cap: u64) -> Result<Self, CacheError> {
        Self::with_write_backlog(dir, cap, DataCacheConfig::default().disk_write_backlog)
    }

    /// Like [`new`](Self::new), with at most `backlog` bytes of blocks waiting to be
    /// written (held in memory); a block that would exceed it is not cached.
    pub fn with_write_backlog(dir: &Path, cap: u64, backlog: u64) -> Result<Self, CacheError> {
        let root = dir.join(SUBDIR);
        let fail = |source| CacheError::Directory {
            path: root.clone(),
            source,
        };
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        create_private_dir(&root).map_err(fail)?;
        // A directory we cannot write to is better refused now than on every block.
        let probe = root.join(".probe");
        write_private_file(&probe, b"").map_err(fail)?;
        std::fs::remove_file(&probe).map_err(fail)?;
        tracing::debug!(root = %root.display(), cap, backlog, "disk cache emptied");
        let files = Arc::new(BlockFiles {
            root,
            cap,
            state: Mutex::new(State {
                files: LruCache::unbounded(),
                bytes: 0,
            }),
            counters: Counters::default(),
            next_temp: AtomicU64::new(0),
        });
        let writer = WriteBehind::start(Arc::clone(&files), backlog).map_err(CacheError::Writer)?;
        Ok(Self {
            files,
            writer,
            told_backlog_full: AtomicBool::new(false),
        })
    }

    /// The directory holding the block files.
    pub fn root(&self) -> &Path {
        &self.files.root
    }

    /// The byte cap.
    pub fn cap(&self) -> u64 {
        self.files.cap
    }

    /// Where block `id` is kept: named by a SHA-256 of the whole id, in one of 256
    /// subdirectories so that no directory grows huge.
    pub fn path_of(&self, id: &BlockId) -> PathBuf {
        self.files.path_of(id)
    }

    /// Bytes of block data waiting to be written.
    pub fn queued_bytes(&self) -> u64 {
        self.writer.queued_bytes()
    }

    /// Forgets block `id` (its file is gone or bad), waiting or written.
    fn forget(&self, id: &BlockId) {
        self.writer.remove(id);
        self.files.forget(id);
    }

    /// Test hook: while `held`, the writer thread writes nothing.
    #[cfg(test)]
    fn hold_writes(&self, held: bool) {
        self.writer.hold(held);
    }
}

impl BlockFiles {
    fn path_of(&self, id: &BlockId) -> PathBuf {
        let mut hasher = Sha256::new();
        for part in [
            id.scope.as_bytes(),
            id.key.as_str().as_bytes(),
            id.etag.as_str().as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.update(id.index.to_le_bytes());
        let name = hex::encode(hasher.finalize());
        self.root.join(&name[..2]).join(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Updates keep `bytes` in step with `files` within one critical section.
        crate::sync::lock(&self.state)
    }

    /// Forgets the file of block `id`.
    fn forget(&self, id: &BlockId) {
        let mut state = self.lock();
        if let Some(size) = state.files.pop(id) {
            state.bytes -= size;
        }
    }
}

impl BlockSink for BlockFiles {
    fn write(&self, id: &BlockId, data: &Bytes) -> Option<u64> {
        let contents = block_file::encode(id, data);
        let size = contents.len() as u64;
        let path = self.path_of(id);
        let temp = self.root.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        match write_atomically(&path, &temp, &contents) {
            Ok(()) => Some(size),
            Err(e) => {
                self.counters.rejected();
                tracing::warn!(key = %id.key, block = id.index, path = %path.display(), error = %e,
                    "cannot write a block to the data cache; not cached");
                None
            }
        }
    }

    fn publish(&self, id: BlockId, size: u64) -> Vec<BlockId> {
        let mut evicted = Vec::new();
        {
            let mut state = self.lock();
            if let Some(old) = state.files.put(id, size) {
                state.bytes -= old;
            }
            state.bytes += size;
            while state.bytes > self.cap {
                let Some((old_id, old_size)) = state.files.pop_lru() else {
                    break;
                };
                state.bytes -= old_size;
                evicted.push(old_id);
            }
        }
        self.counters.insert();
        self.counters.evicted(evicted.len() as u64);
        evicted
    }

    fn delete(&self, ids: &[BlockId]) {
        for id in ids {
            let path = self.path_of(id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete a cache block");
                }
            }
        }
    }
}

/// Writes `contents` to `path` atomically, through a temporary file `temp` in the cache
/// root; the directory of `path` is created on the first block that goes there.
fn write_atomically(path: &Path, temp: &Path, contents: &[u8]) -> std::io::Result<()> {
    let written =
        write_private_file(temp, contents).and_then(|()| match std::fs::rename(temp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    create_private_dir(parent)?;
                }
                std::fs::rename(temp, path)
            }
            renamed => renamed,
        });
    if written.is_err() {
        // Best effort: a failed write must not leave a partial file behind.
        let _ = std::fs::remove_file(temp);
    }
    written
}

/// Creates directory `path`, and its missing parents, as [`PRIVATE_DIR`]: `path` itself is
/// set to exactly that mode, so neither a permissive nor a restrictive umask changes it.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(path)?;
    std::fs::set_permissions(path, Permissions::from_mode(PRIVATE_DIR))
}

/// Creates file `path` (it must not exist) as [`PRIVATE_FILE`] and writes `contents`.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)?
        .write_all(contents)
}

#[async_trait]
impl DataCache for DiskCache {
    async fn get(&self, id: &BlockId) -> Option<Bytes> {
        let files = &self.files;
        if let Some(data) = self.writer.get(id) {
            files.counters.hit();
            return Some(data);
        }
        if files.lock().files.get(id).is_none() {
            files.counters.miss();
            return None;
        }
        let path = files.path_of(id);
        let read_path = path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(read_path)).await;
        let failure = match read {
            Ok(Ok(file)) => match block_file::decode(id, Bytes::from(file)) {
                Ok(data) => {
                    files.counters.hit();
                    return Some(data);
                }
                Err(e) => {
                    files.counters.corrupt();
                    tracing::warn!(key = %id.key, block = id.index, path = %path.display(), error = %e,
                        "damaged block in the data cache; dropped");
                    e.to_string()
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(key = %id.key, block = id.index, path = %path.display(), error = %e,
                    "cannot read a block of the data cache; dropped");
                e.to_string()
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(reason = failure, "data cache miss after a failed read");
        self.forget(id);
        let (deleter, id_owned) = (Arc::clone(files), id.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || deleter.delete(&[id_owned])).await {
            tracing::warn!(error = %e, "cache block deletion task failed");
        }
        files.counters.miss();
        None
    }

    async fn put(&self, id: BlockId, data: Bytes) {
        let files = &self.files;
        if block_file::encoded_len(&id, data.len()) > files.cap {
            files.counters.rejected();
            return;
        }
        let (key, index, len) = (id.key.clone(), id.index, data.len());
        if !self.writer.push(id, data) {
            files.counters.dropped();
            let queued = self.writer.queued_bytes();
            if !self.told_backlog_full.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    queued,
                    "the disk is slower than the reads filling the data \
                    cache: blocks past the write backlog are not cached (logged once)"
                );
            }
            tracing::debug!(%key, block = index, len, queued, "disk cache write backlog full; block not cached");
        }
    }

    fn stats(&self) -> CacheStats {
        let state = self.files.lock();
        self.files
            .counters
            .snapshot(state.bytes, state.files.len() as u64)
    }

    async fn flush(&self) {
        self.writer.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{drop_without_hanging, test_id};

    fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    pending.push(entry.path());
                } else {
                    out.push((entry.path(), meta.len()));
                }
            }
        }
        out
    }

    fn block(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        let data = Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>());
        cache.put(test_id("a/b", 3), data.clone()).await;
        cache.flush().await;
        assert_eq!(cache.get(&test_id("a/b", 3)).await, Some(data));
        assert_eq!(cache.get(&test_id("a/b", 4)).await, None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.blocks), (1, 1, 1));
        assert_eq!(files_under(cache.root()).len(), 1);
    }

    /// Sets the process umask while alive, and puts the old one back when dropped.
    struct Umask(libc::mode_t);

    impl Umask {
        fn set(mask: libc::mode_t) -> Self {
            // SAFETY: umask only swaps the process's file mode creation mask.
            Self(unsafe { libc::umask(mask) })
        }
    }

    impl Drop for Umask {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { libc::umask(self.0) };
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn only_the_owner_can_read_the_cache_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("made/by/us");
        let cache = {
            let _mask = Umask::set(0);
            let cache = DiskCache::new(&given, 1 << 20).unwrap();
            cache.put(test_id("k", 0), block(100, 1)).await;
            cache.flush().await;
            cache
        };
        let file = cache.path_of(&test_id("k", 0));
        assert!(file.exists());
        let subdir = file.parent().unwrap();
        for d in [
            dir.path().join("made"),
            given.clone(),
            cache.root().into(),
            subdir.into(),
        ] {
            assert_eq!(format!("{:o}", mode_of(&d)), "700", "{}", d.display());
        }
        assert_eq!(format!("{:o}", mode_of(&file)), "600");
        assert_eq!(files_under(cache.root()).len(), 1, "no temporary file left");
    }

    #[tokio::test]
    async fn eviction_keeps_the_directory_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 10_000;
        let cache = DiskCache::new(dir.path(), cap).unwrap();
        for i in 0..40u64 {
            cache.put(test_id("k", i), block(1000, i as u8)).await;
            cache.flush().await;
            let on_disk: u64 = files_under(cache.root()).iter().map(|(_, n)| n).sum();
            assert!(on_disk <= cap, "{on_disk} bytes on disk after block {i}");
            assert_eq!(on_disk, cache.stats().bytes);
        }
        assert!(cache.stats().evictions > 0);
        assert_eq!(cache.get(&test_id("k", 0)).await, None, "oldest evicted");
        assert_eq!(cache.get(&test_id("k", 39)).await, Some(block(1000, 39)));
    }

    #[tokio::test]
    async fn a_flipped_byte_is_a_miss_and_the_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        let id = test_id("k", 0);
        cache.put(id.clone(), block(4096, 7)).await;
        cache.flush().await;
        let path = cache.path_of(&id);
        let mut file = std::fs::read(&path).unwrap();
        let last = file.len() - 100;
        file[last] ^= 1;
        std::fs::write(&path, file).unwrap();
        assert_eq!(cache.get(&id).await, None);
        assert!(!path.exists(), "damaged file removed");
        assert_eq!(cache.stats().corrupt, 1);
        assert_eq!(cache.stats().bytes, 0);
        // And the block can be cached again.
        cache.put(id.clone(), block(4096, 7)).await;
        assert_eq!(cache.get(&id).await, Some(block(4096, 7)));
    }

    #[tokio::test]
    async fn a_truncated_or_missing_file_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        let (a, b) = (test_id("k", 0), test_id("k", 1));
        cache.put(a.clone(), block(4096, 1)).await;
        cache.put(b.clone(), block(4096, 2)).await;
        cache.flush().await;
        let file = std::fs::read(cache.path_of(&a)).unwrap();
        std::fs::write(cache.path_of(&a), &file[..file.len() - 1]).unwrap();
        std::fs::remove_file(cache.path_of(&b)).unwrap();
        assert_eq!(cache.get(&a).await, None);
        assert_eq!(cache.get(&b).await, None);
        assert!(!cache.path_of(&a).exists());
        assert_eq!(cache.stats().blocks, 0);
    }

    #[tokio::test]
    async fn a_file_of_another_block_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        let (a, b) = (test_id("k", 0), test_id("k", 1));
        cache.put(a.clone(), block(10, 1)).await;
        cache.put(b.clone(), block(10, 2)).await;
        cache.flush().await;
        std::fs::copy(cache.path_of(&a), cache.path_of(&b)).unwrap();
        assert_eq!(cache.get(&b).await, None);
        assert_eq!(cache.get(&a).await, Some(block(10, 1)));
    }

    #[tokio::test]
    async fn creation_empties_only_its_own_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"not ours").unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        cache.put(test_id("k", 0), block(100, 1)).await;
        cache.flush().await;
        assert_eq!(files_under(cache.root()).len(), 1);
        let stale = cache.root().join("leftover");
        std::fs::write(&stale, b"old").unwrap();
        drop(cache);
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        assert!(files_under(cache.root()).is_empty());
        assert_eq!(cache.get(&test_id("k", 0)).await, None);
        assert_eq!(
            std::fs::read(dir.path().join("keep.txt")).unwrap(),
            b"not ours"
        );
    }

    #[tokio::test]
    async fn an_unusable_directory_is_an_error_and_disk_errors_are_misses() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"x").unwrap();
        let err = DiskCache::new(&not_a_dir, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("s3vfs-cache-v1"), "{err}");

        // The directory vanishes (or the disk fails) after creation: nothing is cached,
        // nothing panics.
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        std::fs::remove_dir_all(cache.root()).unwrap();
        std::fs::write(cache.root(), b"now a file").unwrap();
        cache.put(test_id("k", 0), block(100, 1)).await;
        cache.flush().await;
        assert_eq!(cache.get(&test_id("k", 0)).await, None);
        assert_eq!(cache.stats().rejected, 1);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[tokio::test]
    async fn a_flushed_block_is_on_disk_and_read_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        let id = test_id("k", 0);
        cache.put(id.clone(), block(3000, 4)).await;
        cache.flush().await;
        assert_eq!(cache.queued_bytes(), 0);
        let path = cache.path_of(&id);
        let file = Bytes::from(std::fs::read(&path).unwrap());
        assert_eq!(block_file::decode(&id, file), Ok(block(3000, 4)));
        assert_eq!(cache.get(&id).await, Some(block(3000, 4)));
        // Served from the file, not from memory: a damaged file is noticed.
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(cache.get(&id).await, None);
        assert_eq!(cache.stats().corrupt, 1);
    }

    #[tokio::test]
    async fn a_queued_block_is_served_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        cache.hold_writes(true);
        let id = test_id("k", 0);
        cache.put(id.clone(), block(2000, 1)).await;
        assert!(files_under(cache.root()).is_empty(), "nothing written yet");
        assert_eq!(cache.get(&id).await, Some(block(2000, 1)));
        // Put again while queued: the new data replaces the old, counted once.
        cache.put(id.clone(), block(2000, 2)).await;
        assert_eq!(cache.get(&id).await, Some(block(2000, 2)));
        assert_eq!(cache.queued_bytes(), 2000);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.blocks, stats.inserts), (2, 0, 0));
        cache.hold_writes(false);
        cache.flush().await;
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.inserts), (1, 1), "written once");
        assert_eq!(files_under(cache.root()).len(), 1);
        assert_eq!(cache.get(&id).await, Some(block(2000, 2)));
    }

    #[tokio::test]
    async fn blocks_past_the_write_backlog_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::with_write_backlog(dir.path(), 1 << 20, 2500).unwrap();
        cache.hold_writes(true);
        for i in 0..3 {
            cache.put(test_id("k", i), block(1000, i as u8)).await;
        }
        assert_eq!(cache.stats().dropped, 1);
        assert_eq!(cache.queued_bytes(), 2000);
        assert_eq!(
            cache.get(&test_id("k", 2)).await,
            None,
            "the third did not fit"
        );
        cache.hold_writes(false);
        cache.flush().await;
        // The backlog is free again.
        cache.put(test_id("k", 2), block(1000, 2)).await;
        cache.flush().await;
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.dropped, stats.rejected), (3, 1, 0));
        for i in 0..3 {
            assert_eq!(
                cache.get(&test_id("k", i)).await,
                Some(block(1000, i as u8))
            );
        }
    }

    #[tokio::test]
    async fn a_forgotten_or_evicted_block_leaves_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two 1000-byte blocks with their headers, not three.
        let one = block_file::encoded_len(&test_id("k", 0), 1000);
        let cache = DiskCache::new(dir.path(), 2 * one + 10).unwrap();
        cache.hold_writes(true);
        let (a, b) = (test_id("k", 0), test_id("k", 1));
        cache.put(a.clone(), block(1000, 1)).await;
        cache.put(b.clone(), block(1000, 2)).await;
        cache.forget(&a);
        assert_eq!(cache.get(&a).await, None);
        assert_eq!(cache.queued_bytes(), 1000);
        cache.hold_writes(false);
        cache.flush().await;
        assert!(
            !cache.path_of(&a).exists(),
            "a forgotten block is never written"
        );
        assert_eq!(cache.stats().blocks, 1);

        // Block b is on disk and the least recently used; a new version of it is queued
        // behind two others. Writing those evicts b, and with it its queued version.
        let (c, d) = (test_id("k", 2), test_id("k", 3));
        cache.hold_writes(true);
        cache.put(c.clone(), block(1000, 3)).await;
        cache.put(d.clone(), block(1000, 4)).await;
        cache.put(b.clone(), block(1000, 2)).await;
        cache.hold_writes(false);
        cache.flush().await;
        let stats = cache.stats();
        assert_eq!((stats.blocks, stats.evictions), (2, 1), "{stats:?}");
        assert_eq!(cache.get(&b).await, None, "evicted, and not written again");
        assert!(!cache.path_of(&b).exists());
        assert_eq!(cache.queued_bytes(), 0);
        assert_eq!(files_under(cache.root()).len(), 2);
    }

    #[tokio::test]
    async fn dropping_the_cache_with_queued_blocks_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path(), 1 << 20).unwrap();
        let root = cache.root().to_path_buf();
        cache.hold_writes(true);
        for i in 0..20 {
            cache.put(test_id("k", i), block(1000, 1)).await;
        }
        drop_without_hanging(cache);
        assert!(files_under(&root).is_empty(), "queued blocks are discarded");
    }
}
