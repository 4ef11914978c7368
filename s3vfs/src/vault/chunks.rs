//! The data chunks of a vault: written under their keyed hash (If-None-Match: a chunk
//! already there is the same content), read back through a cache of plaintexts bounded in
//! bytes that shares fetches in flight ([`ChunkCache`]), each checked against its
//! reference's length and id.
//!
//! A chunk reused rather than written may be garbage that a concurrent `gc` is about to
//! delete (gc.rs has the whole argument). So every chunk handed to a flush comes with the
//! instant from which this host vouches for its LastModified ([`Stored::fresh_since`]):
//! a chunk this host wrote less than [`gc::refresh_age`] ago is reused without a request;
//! one it wrote longer ago, or found in the bucket (412 on If-None-Match), is written
//! again (same plaintext, fresh nonce), which moves its LastModified to now, and then
//! checked to still be there once a running gc's deletes in flight are over.

use super::chunk_cache::ChunkCache;
use super::codec::{self, ObjectKind};
use super::crypto::{ChunkId, Keys};
use super::error::VaultError;
use super::gc;
use super::inode::ChunkRef;
use super::io::{Location, Put};
use crate::error::{VfsError, VfsResult};
use crate::store::WriteCondition;
use bytes::Bytes;
use futures::FutureExt;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many chunk ids known to be stored are remembered (so they are not sent again).
const KNOWN_CAPACITY: usize = 64 * 1024;
/// How often a refreshed chunk found deleted meanwhile is written again before the
/// flush fails.
const REFRESH_ATTEMPTS: usize = 4;

/// The key of chunk `id`, relative to the prefix.
pub(crate) fn name(id: &ChunkId) -> String {
    format!("c/{id}")
}

/// The chunk id a key relative to the prefix names (the reverse of [`name`]); `None` for
/// any other key.
pub(crate) fn parse_name(name: &str) -> Option<ChunkId> {
    name.strip_prefix("c/").and_then(ChunkId::parse)
}

/// A chunk a flush may reference: its id, and since when its LastModified is vouched for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stored {
    /// The chunk.
    pub(crate) id: ChunkId,
    /// An instant (this host's monotonic clock) taken before the request that last set
    /// the chunk's LastModified: the inode naming it must be written less than
    /// [`gc::refresh_age`] after it (gc.rs).
    pub(crate) fresh_since: Instant,
}

/// The chunks of one vault.
#[derive(Debug)]
pub(crate) struct Chunks {
    location: Location,
    keys: Arc<Keys>,
    /// Chunks this host wrote, and the instant before each was last sent.
    known: Mutex<LruCache<ChunkId, Instant>>,
    reads: ChunkCache,
    /// [`VaultConfig::gc_grace_min`](super::VaultConfig::gc_grace_min).
    grace_min: Duration,
}

impl Chunks {
    /// The chunks at `location`, sealed with `keys`; up to `cache_bytes` of plaintexts
    /// kept; gc runs with a grace of at least `grace_min`.
    pub(crate) fn new(
        location: Location,
        keys: Arc<Keys>,
        cache_bytes: u64,
        grace_min: Duration,
    ) -> Self {
        Self {
            location,
            keys,
            known: Mutex::new(LruCache::new(
                NonZeroUsize::new(KNOWN_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
            reads: ChunkCache::new(cache_bytes),
            grace_min,
        }
    }

    /// How long after [`Stored::fresh_since`] a chunk may still be newly referenced.
    pub(crate) fn refresh_age(&self) -> Duration {
        gc::refresh_age(self.grace_min)
    }

    /// Stores `data` as a chunk, unless this host wrote it less than the refresh age ago.
    pub(crate) async fn put(&self, data: Bytes) -> VfsResult<Stored> {
        let keys = Arc::clone(&self.keys);
        let (id, data) = off_the_runtime(move || (keys.chunk_id(&data), data)).await?;
        let known = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            known.get(&id).copied()
        };
        if let Some(fresh_since) = known.filter(|at| at.elapsed() < self.refresh_age()) {
            // The common case, free: written (or refreshed) by this host a moment ago.
            return Ok(Stored { id, fresh_since });
        }
        let name = name(&id);
        let keys = Arc::clone(&self.keys);
        let sealed = {
            let name = name.clone();
            off_the_runtime(move || codec::seal(&keys.data, ObjectKind::Chunk, &name, &data))
                .await?
        };
        let sealed = Bytes::from(sealed);
        let fresh_since = if known.is_some() {
            // Written by this host too long ago: most likely there, possibly garbage a gc
            // is about to delete.
            self.refresh(&name, sealed).await?
        } else {
            let sent = Instant::now();
            // If-None-Match: a new chunk (the usual case) costs one request.
            match self
                .location
                .put(&name, sealed.clone(), WriteCondition::IfNoneMatch)
                .await?
            {
                Put::Done(_) => sent,
                // There already, written by another host or long ago: possibly garbage a
                // gc is about to delete.
                Put::ConditionFailed => self.refresh(&name, sealed).await?,
            }
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.put(id, fresh_since);
        Ok(Stored { id, fresh_since })
    }

    /// Writes the existing chunk `name` again (`sealed`: the same plaintext under a fresh
    /// nonce), so that its LastModified is now; then, once the deletes a running gc may
    /// have decided before this write are over, checks that it is still there (and
    /// writes it again if not). The instant from which its LastModified is vouched for.
    async fn refresh(&self, name: &str, sealed: Bytes) -> VfsResult<Instant> {
        for _ in 0..REFRESH_ATTEMPTS {
            let sent = Instant::now();
            self.location
                .put(name, sealed.clone(), WriteCondition::None)
                .await?;
            if gc::running(&self.location).await? {
                // A gc that listed the old copy sends its DELETE within the delete window
                // of that listing, which came before this write (gc.rs).
                tokio::time::sleep(2 * gc::delete_window(self.grace_min)).await;
            }
            // Without a gc running now, one may have finished since the write, having
            // deleted the chunk after it: look in any case.
            if self.location.head(name).await?.is_some() {
                return Ok(sent);
            }
            tracing::debug!(
                chunk = name,
                "a refreshed chunk was deleted by gc: writing it again"
            );
        }
        Err(VaultError::Conflict(self.location.key(name).into_string()).into())
    }

    /// The plaintext of the chunk `reference` names: cached, or joined to its fetch in
    /// flight, or fetched.
    pub(crate) async fn get(&self, reference: &ChunkRef) -> VfsResult<Bytes> {
        let reference = *reference;
        let load = || load(self.location.clone(), Arc::clone(&self.keys), reference).boxed();
        self.reads
            .get_or_load(reference.id, reference.len, load)
            .await
    }
}

/// Fetches and opens the chunk `reference` names from `location`.
async fn load(location: Location, keys: Arc<Keys>, reference: ChunkRef) -> VfsResult<Bytes> {
    let name = name(&reference.id);
    let len = reference.len as usize;
    let (body, _) = location
        .get(&name, (len + codec::OVERHEAD) as u64)
        .await?
        .ok_or_else(|| VaultError::corrupt(&name, "a referenced chunk is missing"))?;
    let id = reference.id;
    let data = off_the_runtime(move || {
        let plain = codec::open(&keys.data, ObjectKind::Chunk, &name, &body, len)?;
        if plain.len() != len || keys.chunk_id(&plain) != id {
            return Err(VaultError::corrupt(
                &name,
                "chunk content does not match its id",
            ));
        }
        Ok(Bytes::from(plain))
    })
    .await??;
    Ok(data)
}

/// Runs CPU-bound `work` (hashing, compression, sealing a chunk) on the blocking pool, so
/// that a chunk's milliseconds do not stall the runtime's other tasks.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> VfsResult<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(VfsError::ShuttingDown(
            "the async runtime stopped a chunk's work".to_owned(),
        )),
    }
}
