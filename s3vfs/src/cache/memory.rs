//! [`MemoryCache`]: blocks in memory, least recently used dropped first, within a byte cap.

use super::{BlockId, CacheStats, Counters, DataCache};
use async_trait::async_trait;
use bytes::Bytes;
use lru::LruCache;
use std::sync::Mutex;

/// An LRU of blocks in memory holding at most `cap` bytes of block data.
///
/// ```
/// # tokio_test_block_on(async {
/// use s3vfs::cache::{BlockId, DataCache, MemoryCache};
/// use s3vfs::store::{ETag, ObjectKey};
/// let cache = MemoryCache::new(1024 * 1024);
/// let id = BlockId { scope: "".into(), key: ObjectKey::new("k"), etag: ETag::new("e"), index: 0 };
/// cache.put(id.clone(), bytes::Bytes::from_static(b"data")).await;
/// assert_eq!(cache.get(&id).await.as_deref(), Some(&b"data"[..]));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryCache {
    cap: u64,
    state: Mutex<State>,
    counters: Counters,
}

#[derive(Debug)]
struct State {
    blocks: LruCache<BlockId, Bytes>,
    bytes: u64,
}

impl MemoryCache {
    /// A cache of at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            state: Mutex::new(State {
                blocks: LruCache::unbounded(),
                bytes: 0,
            }),
            counters: Counters::default(),
        }
    }

    /// The byte cap.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few statements that keep `bytes` in step with `blocks`; a
        // poisoned lock still guards a usable map.
        crate::sync::lock(&self.state)
    }
}

#[async_trait]
impl DataCache for MemoryCache {
    async fn get(&self, id: &BlockId) -> Option<Bytes> {
        let found = self.lock().blocks.get(id).cloned();
        match found {
            Some(_) => self.counters.hit(),
            None => self.counters.miss(),
        }
        found
    }

    async fn put(&self, id: BlockId, data: Bytes) {
        let len = data.len() as u64;
        if len > self.cap {
            self.counters.rejected();
            return;
        }
        let mut evicted = 0;
        {
            let mut state = self.lock();
            if let Some(old) = state.blocks.put(id, data) {
                state.bytes -= old.len() as u64;
            }
            state.bytes += len;
            while state.bytes > self.cap {
                let Some((_, old)) = state.blocks.pop_lru() else {
                    break;
                };
                state.bytes -= old.len() as u64;
                evicted += 1;
            }
        }
        self.counters.insert();
        if evicted > 0 {
            self.counters.evicted(evicted);
        }
    }

    fn stats(&self) -> CacheStats {
        let state = self.lock();
        self.counters
            .snapshot(state.bytes, state.blocks.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_id;

    fn block(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[tokio::test]
    async fn evicts_least_recently_used_by_bytes() {
        let cache = MemoryCache::new(300);
        cache.put(test_id("a", 0), block(100, 1)).await;
        cache.put(test_id("a", 1), block(100, 2)).await;
        cache.put(test_id("a", 2), block(100, 3)).await;
        // Touch block 0 so block 1 is the least recently used.
        assert_eq!(cache.get(&test_id("a", 0)).await, Some(block(100, 1)));
        cache.put(test_id("b", 0), block(50, 4)).await;
        assert_eq!(cache.get(&test_id("a", 1)).await, None, "LRU block evicted");
        assert_eq!(cache.get(&test_id("a", 0)).await, Some(block(100, 1)));
        assert_eq!(cache.get(&test_id("a", 2)).await, Some(block(100, 3)));
        assert_eq!(cache.get(&test_id("b", 0)).await, Some(block(50, 4)));
        let stats = cache.stats();
        assert_eq!(stats.bytes, 250);
        assert_eq!(stats.blocks, 3);
        assert_eq!(stats.evictions, 1);
        assert_eq!((stats.hits, stats.misses), (4, 1));
    }

    #[tokio::test]
    async fn never_holds_more_than_the_cap() {
        let cache = MemoryCache::new(1000);
        for i in 0..100u64 {
            cache
                .put(test_id("k", i % 17), block(37 + (i as usize * 13) % 200, 0))
                .await;
            assert!(cache.stats().bytes <= 1000, "{:?}", cache.stats());
        }
        // A block larger than the whole cache is not kept, and evicts nothing.
        let before = cache.stats();
        cache.put(test_id("big", 0), block(1001, 9)).await;
        assert_eq!(cache.get(&test_id("big", 0)).await, None);
        assert_eq!(cache.stats().bytes, before.bytes);
        assert_eq!(cache.stats().rejected, 1);
    }

    #[tokio::test]
    async fn replacing_a_block_counts_its_bytes_once() {
        let cache = MemoryCache::new(1000);
        cache.put(test_id("k", 0), block(400, 1)).await;
        cache.put(test_id("k", 0), block(300, 2)).await;
        assert_eq!(cache.stats().bytes, 300);
        assert_eq!(cache.get(&test_id("k", 0)).await, Some(block(300, 2)));
    }
}
