//! [`TieredCache`]: a fast cache (memory) in front of a large one (disk).

use super::{BlockId, CacheStats, DataCache};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Looks in `front` first, then in `back` (copying a block found there to `front`);
/// stores every block in both.
#[derive(Debug)]
pub struct TieredCache {
    front: Arc<dyn DataCache>,
    back: Arc<dyn DataCache>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl TieredCache {
    /// `front` (e.g. a [`MemoryCache`](super::MemoryCache)) before `back` (e.g. a
    /// [`DiskCache`](super::DiskCache)).
    pub fn new(front: Arc<dyn DataCache>, back: Arc<dyn DataCache>) -> Self {
        Self {
            front,
            back,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The front tier's counters.
    pub fn front_stats(&self) -> CacheStats {
        self.front.stats()
    }

    /// The back tier's counters.
    pub fn back_stats(&self) -> CacheStats {
        self.back.stats()
    }
}

#[async_trait]
impl DataCache for TieredCache {
    async fn get(&self, id: &BlockId) -> Option<Bytes> {
        if let Some(data) = self.front.get(id).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(data);
        }
        let Some(data) = self.back.get(id).await else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.front.put(id.clone(), data.clone()).await;
        Some(data)
    }

    async fn put(&self, id: BlockId, data: Bytes) {
        self.front.put(id.clone(), data.clone()).await;
        self.back.put(id, data).await;
    }

    /// Flushes both tiers.
    async fn flush(&self) {
        self.front.flush().await;
        self.back.flush().await;
    }

    /// Hits and misses of the pair (a block found in either tier is a hit); the other
    /// counters and gauges are the sums of both tiers.
    fn stats(&self) -> CacheStats {
        let (f, b) = (self.front.stats(), self.back.stats());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserts: f.inserts + b.inserts,
            evictions: f.evictions + b.evictions,
            corrupt: f.corrupt + b.corrupt,
            rejected: f.rejected + b.rejected,
            dropped: f.dropped + b.dropped,
            bytes: f.bytes + b.bytes,
            blocks: f.blocks + b.blocks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{test_id, DiskCache, MemoryCache};

    #[tokio::test]
    async fn memory_in_front_of_disk() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(MemoryCache::new(100));
        let disk = Arc::new(DiskCache::new(dir.path(), 1 << 20).unwrap());
        let cache = TieredCache::new(
            Arc::clone(&memory) as Arc<dyn DataCache>,
            Arc::clone(&disk) as Arc<dyn DataCache>,
        );
        let (a, b) = (test_id("k", 0), test_id("k", 1));
        cache.put(a.clone(), Bytes::from(vec![1; 80])).await;
        cache.put(b.clone(), Bytes::from(vec![2; 80])).await;
        cache.flush().await;
        assert_eq!(disk.stats().blocks, 2, "flushed to disk");
        // Memory holds one block only; the evicted one comes back from disk.
        assert_eq!(memory.stats().blocks, 1);
        assert_eq!(cache.get(&a).await, Some(Bytes::from(vec![1; 80])));
        assert_eq!(disk.stats().hits, 1);
        // ... and is now in memory.
        assert_eq!(cache.get(&a).await, Some(Bytes::from(vec![1; 80])));
        assert_eq!(disk.stats().hits, 1);
        assert_eq!(cache.get(&test_id("k", 2)).await, None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (2, 1));
    }
}
