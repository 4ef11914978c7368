//! The optional data cache: blocks of object bytes kept in memory and/or on a local disk,
//! so that re-reading an unchanged object costs no GET.
//!
//! A block is identified by [`BlockId`]: the store it came from (`scope`, e.g. the bucket
//! of a mount of every bucket), the object key, the object's ETag and the block's number.
//! Bytes are only ever cached for GETs pinned to an ETag (`If-Match`), so key + ETag names
//! one immutable version: a replaced object has a new ETag and its old blocks are never
//! asked for again (they age out of the LRU). A changed object is therefore never served
//! stale beyond the metadata TTL, which decides when the file system sees the new ETag.
//!
//! Parts, one job each (the three caches with the `data-cache` feature):
//! - [`DataCache`]: the pluggable trait, with [`CacheStats`];
//! - `MemoryCache`: an LRU in memory with a byte cap;
//! - `DiskCache`: one checksummed file per block in a directory, with a byte cap,
//!   written behind the reader by one writer thread (`write_behind`);
//! - `TieredCache`: memory in front of disk;
//! - [`CachingStore`]: the [`Backend`](crate::store::Backend) decorator that
//!   splits pinned GETs into blocks, serves the cached ones and fetches the rest.
//!
//! A cache never fails a read: a block it cannot store, or finds damaged, is a miss.
//!
//! The memory, disk and tiered caches are built with the `data-cache` feature (on in the
//! `s3vfs` binary); without it [`from_config`] refuses a configuration that asks for one,
//! and the trait and the decorator stay, for a cache of the program's own.

#[cfg(feature = "data-cache")]
mod block_file;
#[cfg(feature = "data-cache")]
mod disk;
#[cfg(feature = "data-cache")]
mod memory;
mod store;
#[cfg(feature = "data-cache")]
mod tiered;
#[cfg(feature = "data-cache")]
mod write_behind;

#[cfg(feature = "data-cache")]
pub use disk::DiskCache;
#[cfg(feature = "data-cache")]
pub use memory::MemoryCache;
pub use store::CachingStore;
#[cfg(feature = "data-cache")]
pub use tiered::TieredCache;

use crate::config::DataCacheConfig;
use crate::store::{ETag, ObjectKey};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::PathBuf;
#[cfg(feature = "data-cache")]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One block of one object version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockId {
    /// Which store the key belongs to (`""` for a file system over one bucket, the bucket
    /// name when one cache serves several buckets).
    pub scope: Arc<str>,
    /// The object's key.
    pub key: ObjectKey,
    /// The object version's ETag.
    pub etag: ETag,
    /// Block number: the block holds bytes `[index * block_size, (index + 1) * block_size)`
    /// of the object (fewer for the last block).
    pub index: u64,
}

/// Counters of a cache, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found the block.
    pub hits: u64,
    /// Lookups that did not (including damaged blocks).
    pub misses: u64,
    /// Blocks stored.
    pub inserts: u64,
    /// Blocks dropped to stay under the byte cap.
    pub evictions: u64,
    /// Blocks found damaged (bad header or checksum) and removed.
    pub corrupt: u64,
    /// Blocks that could not be stored (disk errors) or were larger than the cap.
    pub rejected: u64,
    /// Blocks not cached because the disk cache's write backlog was full (the disk was
    /// slower than the reads filling it); always 0 for a memory cache.
    pub dropped: u64,
    /// Bytes held now (for a disk cache, those of the block files written, headers
    /// included; blocks still waiting to be written are not counted until they are).
    pub bytes: u64,
    /// Blocks held now (for a disk cache, those written).
    pub blocks: u64,
}

/// A store of object blocks. Implementations bound their size themselves and never fail:
/// a block they cannot keep is simply not found later.
///
/// A custom cache can be plugged in with [`S3Fs::with_data_cache`](crate::fs::S3Fs::with_data_cache).
#[async_trait]
pub trait DataCache: Send + Sync + std::fmt::Debug + 'static {
    /// The block, if cached. Must return exactly the bytes given to [`put`](Self::put).
    async fn get(&self, id: &BlockId) -> Option<Bytes>;

    /// Stores a block (replacing any block with the same id).
    async fn put(&self, id: BlockId, data: Bytes);

    /// Current counters.
    fn stats(&self) -> CacheStats;

    /// Waits until every block given to [`put`](Self::put) before this call is stored
    /// (or has failed to be). For a cache that stores in `put` itself, the default, this
    /// returns at once; a disk cache writes blocks behind the reader and waits here.
    async fn flush(&self) {}
}

/// Errors setting up a cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory could not be emptied or created.
    #[error("cannot prepare the data cache directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The disk cache's writer thread could not be started.
    #[error("cannot start the data cache's writer thread: {0}")]
    Writer(#[source] std::io::Error),
    /// The configuration asks for a cache, and this build has none (the `data-cache`
    /// feature is off).
    #[error("a data cache is configured, but s3vfs is built without its `data-cache` feature")]
    NotBuilt,
}

/// The cache `config` asks for: `None` when it enables none.
///
/// With both a memory and a disk size, memory is kept in front of disk. A disk cache
/// empties its own subdirectory of `disk_dir` now, so nothing survives a restart.
pub fn from_config(config: &DataCacheConfig) -> Result<Option<Arc<dyn DataCache>>, CacheError> {
    #[cfg(not(feature = "data-cache"))]
    return match config.is_enabled() {
        true => Err(CacheError::NotBuilt),
        false => Ok(None),
    };
    #[cfg(feature = "data-cache")]
    built(config)
}

/// The cache of [`from_config`], built.
#[cfg(feature = "data-cache")]
fn built(config: &DataCacheConfig) -> Result<Option<Arc<dyn DataCache>>, CacheError> {
    let memory = (config.memory_bytes > 0).then(|| MemoryCache::new(config.memory_bytes));
    let disk = match &config.disk_dir {
        Some(dir) if config.disk_bytes > 0 => Some(DiskCache::with_write_backlog(
            dir,
            config.disk_bytes,
            config.disk_write_backlog,
        )?),
        _ => None,
    };
    let cache: Option<Arc<dyn DataCache>> = match (memory, disk) {
        (Some(memory), Some(disk)) => {
            Some(Arc::new(TieredCache::new(Arc::new(memory), Arc::new(disk))))
        }
        (Some(memory), None) => Some(Arc::new(memory)),
        (None, Some(disk)) => Some(Arc::new(disk)),
        (None, None) => None,
    };
    if let Some(cache) = &cache {
        tracing::info!(
            memory_bytes = config.memory_bytes,
            disk_dir = ?config.disk_dir,
            disk_bytes = config.disk_bytes,
            disk_write_backlog = config.disk_write_backlog,
            block_size = config.block_size,
            "data cache enabled: {cache:?}"
        );
    }
    Ok(cache)
}

/// Shared counters behind [`CacheStats`] (the `bytes` and `blocks` gauges are kept by
/// each cache under its own lock).
#[cfg(feature = "data-cache")]
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
}

#[cfg(feature = "data-cache")]
impl Counters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn insert(&self) {
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, bytes: u64, blocks: u64) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes,
            blocks,
        }
    }
}

#[cfg(all(test, feature = "data-cache"))]
pub(crate) fn test_id(key: &str, index: u64) -> BlockId {
    BlockId {
        scope: Arc::from(""),
        key: ObjectKey::new(key),
        etag: ETag::new("e1"),
        index,
    }
}

/// Drops `value` on another thread and fails the test if that takes more than 10 s (a
/// drop that waits for a thread which never ends would hang the test run instead).
#[cfg(all(test, feature = "data-cache"))]
pub(crate) fn drop_without_hanging<T: Send + 'static>(value: T) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(value);
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the drop hangs");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the `data-cache` feature a configured cache is refused, never quietly
    /// dropped; with it, the configuration builds one.
    #[test]
    fn a_configured_cache_is_built_or_refused() {
        assert!(matches!(from_config(&DataCacheConfig::default()), Ok(None)));
        let memory = DataCacheConfig::default().with_memory(1 << 20);
        let built = from_config(&memory);
        #[cfg(feature = "data-cache")]
        assert!(matches!(built, Ok(Some(_))), "{built:?}");
        #[cfg(not(feature = "data-cache"))]
        assert!(matches!(built, Err(CacheError::NotBuilt)), "{built:?}");
    }
}
