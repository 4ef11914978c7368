//! The read side of a vault's chunks: plaintexts kept in an LRU bounded in bytes, and the
//! fetches in flight, shared, so that a chunk wanted by a read and by read-ahead at once is
//! asked of the store once.
//!
//! Invariants: the cache never holds more than its capacity in bytes (a chunk larger than
//! the whole capacity is not kept); an entry of the in-flight map lives exactly as long as
//! its fetch: it goes when the fetch ends (its plaintext is in the cache by then) or fails,
//! and when every waiter gave up on it (the fetch is dropped with the last of them). A
//! failed fetch is never remembered: whoever joined it fetches anew, once.

use super::crypto::ChunkId;
use crate::error::VfsResult;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use lru::LruCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A fetch of one chunk's plaintext that several waiters share.
type Fetch = Shared<BoxFuture<'static, VfsResult<Bytes>>>;

/// A chunk in flight is known by its id and the length its reference gives (a corrupt
/// reference naming the same id with another length does not share the fetch).
type Key = (ChunkId, u32);

/// Chunk plaintexts, cached and in flight.
#[derive(Debug)]
pub(crate) struct ChunkCache {
    shared: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// The most bytes of plaintext kept.
    capacity: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    cached: LruCache<ChunkId, Bytes>,
    /// Bytes of `cached`.
    bytes: u64,
    /// Fetches in flight, weakly: the waiters own them.
    in_flight: HashMap<Key, InFlight>,
    /// Tells a fetch's entry from a later one for the same chunk.
    next_generation: u64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("cached", &self.cached.len())
            .field("bytes", &self.bytes)
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

struct InFlight {
    generation: u64,
    fetch: WeakShared<BoxFuture<'static, VfsResult<Bytes>>>,
}

/// Removes a fetch's in-flight entry when the fetch ends or is dropped unfinished.
struct Finished {
    state: Arc<State>,
    key: Key,
    generation: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut inner = self.state.lock();
        if inner
            .in_flight
            .get(&self.key)
            .is_some_and(|f| f.generation == self.generation)
        {
            inner.in_flight.remove(&self.key);
        }
    }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, id: ChunkId, data: Bytes) {
        let len = data.len() as u64;
        if len > self.capacity {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.cached.put(id, data) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += len;
        while inner.bytes > self.capacity {
            match inner.cached.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len() as u64,
                None => break,
            }
        }
    }
}

impl ChunkCache {
    /// A cache of at most `capacity` bytes of plaintext.
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            shared: Arc::new(State {
                capacity,
                inner: Mutex::new(Inner {
                    cached: LruCache::unbounded(),
                    bytes: 0,
                    in_flight: HashMap::new(),
                    next_generation: 0,
                }),
            }),
        }
    }

    /// The plaintext of chunk `id` of `len` bytes: from the cache, from the fetch of it
    /// already in flight, or from a fetch made by `load` (and kept in the cache). When a
    /// joined fetch fails, `load` is tried once more: one waiter's failure (read-ahead's,
    /// say) is not another's.
    pub(crate) async fn get_or_load(
        &self,
        id: ChunkId,
        len: u32,
        load: impl Fn() -> BoxFuture<'static, VfsResult<Bytes>>,
    ) -> VfsResult<Bytes> {
        let (fetch, joined) = {
            let mut inner = self.shared.lock();
            if let Some(data) = inner.cached.get(&id).filter(|d| d.len() == len as usize) {
                return Ok(data.clone());
            }
            let found = inner
                .in_flight
                .get(&(id, len))
                .and_then(|f| f.fetch.upgrade());
            match found {
                Some(fetch) => (fetch, true),
                None => (self.start(&mut inner, (id, len), load()), false),
            }
        };
        match fetch.await {
            Err(err) if joined => {
                tracing::debug!(chunk = %id, error = %err, "a shared chunk fetch failed; fetching it again");
                let fetch = {
                    let mut inner = self.shared.lock();
                    self.start(&mut inner, (id, len), load())
                };
                fetch.await
            }
            done => done,
        }
    }

    /// Makes `load` the fetch in flight of `key` (replacing any entry there: a dead one, or
    /// one that failed and is about to go).
    fn start(
        &self,
        inner: &mut Inner,
        key: Key,
        load: BoxFuture<'static, VfsResult<Bytes>>,
    ) -> Fetch {
        let generation = inner.next_generation;
        inner.next_generation += 1;
        let finished = Finished {
            state: Arc::clone(&self.shared),
            key,
            generation,
        };
        let fetch = async move {
            let loaded = load.await;
            if let Ok(data) = &loaded {
                // Cached before the in-flight entry goes: a newcomer finds one or the
                // other.
                finished.state.insert(key.0, data.clone());
            }
            drop(finished);
            loaded
        }
        .boxed()
        .shared();
        if let Some(weak) = fetch.downgrade() {
            // The entry replaced (if any) is only a weak reference: dropping it drops no
            // fetch, so this runs no `Finished` under the lock.
            inner.in_flight.insert(
                key,
                InFlight {
                    generation,
                    fetch: weak,
                },
            );
        }
        fetch
    }

    /// Bytes of plaintext cached.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.shared.lock().bytes
    }

    /// Fetches in flight.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.shared.lock().in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VfsError;
    use crate::vault::crypto::{Keys, SecretKey};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn id(n: u8) -> ChunkId {
        Keys::derive(&SecretKey::from_bytes([7; 32])).chunk_id(&[n])
    }

    /// A loader of `len` bytes of `fill` that takes `delay`, counting its calls, failing
    /// the first `failures` of them.
    fn loader(
        calls: &Arc<AtomicUsize>,
        len: usize,
        fill: u8,
        delay: Duration,
        failures: usize,
    ) -> impl Fn() -> BoxFuture<'static, VfsResult<Bytes>> {
        let calls = Arc::clone(calls);
        move || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                if call < failures {
                    Err(VfsError::Corrupt("injected".into()))
                } else {
                    Ok(Bytes::from(vec![fill; len]))
                }
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_one_fetch() {
        let cache = ChunkCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let load = loader(&calls, 10, 1, Duration::from_millis(20), 0);
        let (a, b, c) = tokio::join!(
            cache.get_or_load(id(1), 10, &load),
            cache.get_or_load(id(1), 10, &load),
            cache.get_or_load(id(1), 10, &load),
        );
        assert_eq!(
            (a.unwrap(), b.unwrap(), c.unwrap()),
            (vec![1; 10].into(), vec![1; 10].into(), vec![1; 10].into())
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.in_flight(), 0);
        // Cached now: no fetch at all.
        cache.get_or_load(id(1), 10, &load).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_joined_fetch_that_fails_is_fetched_again_and_never_remembered() {
        let cache = ChunkCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let load = loader(&calls, 10, 2, Duration::from_millis(20), 1);
        let first = cache.get_or_load(id(2), 10, &load);
        let joined = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            cache.get_or_load(id(2), 10, &load).await
        };
        let (first, joined) = tokio::join!(first, joined);
        assert!(first.is_err(), "the fetch that failed answers its error");
        assert_eq!(joined.unwrap(), Bytes::from(vec![2; 10]));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.in_flight(), 0);

        // A failure alone leaves nothing behind: the next get fetches anew.
        let calls = Arc::new(AtomicUsize::new(0));
        let load = loader(&calls, 10, 3, Duration::from_millis(1), 1);
        assert!(cache.get_or_load(id(3), 10, &load).await.is_err());
        assert_eq!(cache.in_flight(), 0);
        assert_eq!(
            cache.get_or_load(id(3), 10, &load).await.unwrap(),
            Bytes::from(vec![3; 10])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_every_waiter_dropped_goes_with_them() {
        let cache = ChunkCache::new(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let load = loader(&calls, 10, 4, Duration::from_secs(10), 0);
        let gave_up = tokio::time::timeout(
            Duration::from_millis(5),
            cache.get_or_load(id(4), 10, &load),
        )
        .await;
        assert!(gave_up.is_err());
        assert_eq!(
            cache.in_flight(),
            0,
            "nobody waits for it: no entry is left"
        );
        assert_eq!(cache.get_or_load(id(4), 10, &load).await.unwrap().len(), 10);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_in_bytes() {
        let cache = ChunkCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        for n in 0..10u8 {
            let load = loader(&calls, 30, n, Duration::ZERO, 0);
            cache.get_or_load(id(n), 30, load).await.unwrap();
            assert!(cache.bytes() <= 100);
        }
        assert_eq!(cache.bytes(), 90);
        // The most recent three are kept, the others were evicted.
        let before = calls.load(Ordering::SeqCst);
        let load = loader(&calls, 30, 9, Duration::ZERO, 0);
        cache.get_or_load(id(9), 30, &load).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), before);
        cache.get_or_load(id(0), 30, &load).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), before + 1);
        // Larger than the whole cache: answered, not kept.
        let load = loader(&calls, 101, 1, Duration::ZERO, 0);
        assert_eq!(
            cache.get_or_load(id(11), 101, load).await.unwrap().len(),
            101
        );
        assert_eq!(cache.bytes(), 90);
    }
}
