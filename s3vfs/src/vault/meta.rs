//! The inodes of a vault in its bucket: read (through a cache with a TTL), created
//! (If-None-Match), changed (If-Match, retried on the new version when another writer
//! won), deleted.
//!
//! A cached inode is used for at most the TTL; one this host wrote is cached as written,
//! so its own changes are seen at once. A failed If-Match drops the cached copy.

use super::codec::{self, ObjectKind};
use super::crypto::Keys;
use super::error::VaultError;
use super::inode::Inode;
use super::io::{Location, Put};
use crate::error::{VfsError, VfsResult};
use crate::store::{ETag, ObjectKey, WriteCondition};
use bytes::Bytes;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest inode object, stored or decompressed, in bytes.
const MAX_INODE_OBJECT: usize = 64 * 1024 * 1024;
/// How often a change is tried on a new version before it fails.
pub(crate) const MAX_ATTEMPTS: usize = 8;

/// How many locks serialize this host's updates of inodes (by inode number modulo).
const UPDATE_LOCKS: usize = 64;
/// The longest pause before trying an update again on a new version, per attempt made.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// An inode and the ETag of the object it was read from (or written as).
#[derive(Clone, Debug)]
pub(crate) struct Versioned {
    /// The inode.
    pub(crate) inode: Arc<Inode>,
    /// Its object's ETag.
    pub(crate) etag: ETag,
}

/// The inodes of one vault.
#[derive(Debug)]
pub(crate) struct Inodes {
    location: Location,
    keys: Arc<Keys>,
    cache: Mutex<LruCache<u64, (Versioned, Instant)>>,
    ttl: Duration,
    /// One host's updates of one inode take turns, so that they never race each other
    /// through If-Match: only other hosts' changes make an update try again.
    update_locks: Vec<tokio::sync::Mutex<()>>,
}

/// The key of inode `ino`, relative to the prefix.
pub(crate) fn name(ino: u64) -> String {
    format!("i/{ino:016x}")
}

/// The inode number a key relative to the prefix names (the reverse of [`name`]); `None`
/// for any other key.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("i/")?;
    if hex.len() != 16 || hex.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Inodes {
    /// The full key of inode `ino`'s object.
    pub(crate) fn key(&self, ino: u64) -> ObjectKey {
        self.location.key(&name(ino))
    }

    /// The bucket, where the store knows it.
    pub(crate) fn bucket(&self) -> Option<String> {
        self.location.bucket()
    }

    /// The inodes at `location`, sealed with `keys`, `capacity` of them cached for `ttl`.
    pub(crate) fn new(location: Location, keys: Arc<Keys>, capacity: usize, ttl: Duration) -> Self {
        Self {
            location,
            keys,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            ttl,
            update_locks: (0..UPDATE_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    fn cached(&self, ino: u64) -> Option<Versioned> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&ino) {
            Some((found, at)) if at.elapsed() < self.ttl => Some(found.clone()),
            Some(_) => {
                cache.pop(&ino);
                None
            }
            None => None,
        }
    }

    fn remember(&self, found: &Versioned) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.put(found.inode.ino, (found.clone(), Instant::now()));
    }

    /// Drops the cached copy of `ino`.
    pub(crate) fn forget(&self, ino: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.pop(&ino);
    }

    /// Inode `ino`, cached if read less than the TTL ago.
    pub(crate) async fn get(&self, ino: u64) -> VfsResult<Versioned> {
        match self.cached(ino) {
            Some(found) => Ok(found),
            None => self.fetch(ino).await,
        }
    }

    /// Inode `ino` as the store has it now.
    pub(crate) async fn fetch(&self, ino: u64) -> VfsResult<Versioned> {
        let found = self
            .read(ino)
            .await?
            .ok_or_else(|| VfsError::NotFound(format!("inode {ino}")))?;
        self.remember(&found);
        Ok(found)
    }

    /// Inode `ino` as the store has it now, checked, not cached; `None` when there is
    /// none.
    pub(crate) async fn read(&self, ino: u64) -> Result<Option<Versioned>, VaultError> {
        let name = name(ino);
        let Some((body, etag)) = self
            .location
            .get(&name, (MAX_INODE_OBJECT + codec::OVERHEAD) as u64)
            .await?
        else {
            return Ok(None);
        };
        let plain = codec::open(
            &self.keys.meta,
            ObjectKind::Inode,
            &name,
            &body,
            MAX_INODE_OBJECT,
        )?;
        let inode: Inode = serde_json::from_slice(&plain)
            .map_err(|e| VaultError::corrupt(&name, format!("unreadable inode: {e}")))?;
        inode
            .check(ino)
            .map_err(|reason| VaultError::corrupt(&name, reason))?;
        let etag = etag.ok_or_else(|| VaultError::corrupt(&name, "the store gave no ETag"))?;
        Ok(Some(Versioned {
            inode: Arc::new(inode),
            etag,
        }))
    }

    fn seal(&self, inode: &Inode) -> VfsResult<Bytes> {
        let json = serde_json::to_vec(inode)
            .map_err(|e| VfsError::InvalidArgument(format!("inode {}: {e}", inode.ino)))?;
        if json.len() > MAX_INODE_OBJECT {
            return Err(VfsError::TooLarge(format!(
                "inode {} would take {} bytes, over the limit of {MAX_INODE_OBJECT}",
                inode.ino,
                json.len()
            )));
        }
        let sealed = codec::seal(&self.keys.meta, ObjectKind::Inode, &name(inode.ino), &json);
        Ok(Bytes::from(sealed))
    }

    /// Writes `inode` under `condition`; `None` when the condition failed.
    async fn write(&self, inode: Inode, condition: WriteCondition) -> VfsResult<Option<Versioned>> {
        let body = self.seal(&inode)?;
        match self.location.put(&name(inode.ino), body, condition).await? {
            Put::Done(etag) => {
                let written = Versioned {
                    inode: Arc::new(inode),
                    etag,
                };
                self.remember(&written);
                Ok(Some(written))
            }
            Put::ConditionFailed => {
                self.forget(inode.ino);
                Ok(None)
            }
        }
    }

    /// Writes a new inode; `EEXIST` if its number is taken.
    pub(crate) async fn create(&self, inode: Inode) -> VfsResult<Versioned> {
        let ino = inode.ino;
        self.write(inode, WriteCondition::IfNoneMatch)
            .await?
            .ok_or_else(|| VfsError::Exists(format!("inode {ino}")))
    }

    /// Replaces the version `etag` of the inode with `inode`; `None` if the stored
    /// version is another one now.
    pub(crate) async fn replace(&self, inode: Inode, etag: &ETag) -> VfsResult<Option<Versioned>> {
        self.write(inode, WriteCondition::IfMatch(etag.clone()))
            .await
    }

    /// Applies `change` to inode `ino` and writes it If-Match; when another writer
    /// changed it meanwhile, applies `change` again to the new version, up to
    /// [`MAX_ATTEMPTS`] times. `change` may refuse (its error is returned, nothing
    /// written) or answer `None`: nothing to write.
    pub(crate) async fn update<T>(
        &self,
        ino: u64,
        mut change: impl FnMut(&mut Inode) -> VfsResult<Option<T>>,
    ) -> VfsResult<(Versioned, Option<T>)> {
        // An async lock, held across the requests on purpose: it orders this host's
        // updates of the inode as a kernel's inode lock would.
        let _turn = self.update_locks[(ino % UPDATE_LOCKS as u64) as usize]
            .lock()
            .await;
        let mut current = self.get(ino).await?;
        for attempt in 1..=MAX_ATTEMPTS {
            let mut next = Inode::clone(&current.inode);
            let Some(answer) = change(&mut next)? else {
                return Ok((current, None));
            };
            if let Some(written) = self.replace(next, &current.etag).await? {
                return Ok((written, Some(answer)));
            }
            // Another host won: a random pause, longer each time, so that hosts racing
            // for one directory do not keep colliding.
            let pause = RETRY_PAUSE.mul_f64(attempt as f64 * rand::random::<f64>());
            tokio::time::sleep(pause).await;
            current = self.fetch(ino).await?;
        }
        Err(VaultError::Conflict(self.location.key(&name(ino)).into_string()).into())
    }

    /// Deletes inode `ino`.
    pub(crate) async fn delete(&self, ino: u64) -> VfsResult<()> {
        self.forget(ino);
        Ok(self.location.delete(&name(ino)).await?)
    }
}
