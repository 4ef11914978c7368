//! The data chunks of a vault: written once under their keyed hash (If-None-Match: a
//! chunk already there is the same content), read back through a cache of plaintexts
//! bounded in bytes that shares fetches in flight ([`ChunkCache`]), each checked against
//! its reference's length and id.

use super::chunk_cache::ChunkCache;
use super::codec::{self, ObjectKind};
use super::crypto::{ChunkId, Keys};
use super::error::VaultError;
use super::inode::ChunkRef;
use super::io::Location;
use crate::error::{VfsError, VfsResult};
use crate::store::WriteCondition;
use bytes::Bytes;
use futures::FutureExt;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// How many chunk ids known to be stored are remembered (so they are not sent again).
const KNOWN_CAPACITY: usize = 64 * 1024;

/// The key of chunk `id`, relative to the prefix.
pub(crate) fn name(id: &ChunkId) -> String {
    format!("c/{id}")
}

/// The chunks of one vault.
#[derive(Debug)]
pub(crate) struct Chunks {
    location: Location,
    keys: Arc<Keys>,
    known: Mutex<LruCache<ChunkId, ()>>,
    reads: ChunkCache,
}

impl Chunks {
    /// The chunks at `location`, sealed with `keys`; up to `cache_bytes` of plaintexts kept.
    pub(crate) fn new(location: Location, keys: Arc<Keys>, cache_bytes: u64) -> Self {
        Self {
            location,
            keys,
            known: Mutex::new(LruCache::new(
                NonZeroUsize::new(KNOWN_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
            reads: ChunkCache::new(cache_bytes),
        }
    }

    /// Stores `data` as a chunk (unless it is known to be stored): its id.
    pub(crate) async fn put(&self, data: Bytes) -> VfsResult<ChunkId> {
        let keys = Arc::clone(&self.keys);
        let (id, data) = off_the_runtime(move || (keys.chunk_id(&data), data)).await?;
        let known = {
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            known.get(&id).is_some()
        };
        if !known {
            let name = name(&id);
            let keys = Arc::clone(&self.keys);
            let sealed = {
                let name = name.clone();
                off_the_runtime(move || codec::seal(&keys.data, ObjectKind::Chunk, &name, &data))
                    .await?
            };
            // If-None-Match: a chunk of that name holds this content already, and is not
            // sent twice (nor rewritten under a reader).
            self.location
                .put(&name, Bytes::from(sealed), WriteCondition::IfNoneMatch)
                .await?;
            let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
            known.put(id, ());
        }
        Ok(id)
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
