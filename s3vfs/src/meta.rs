//! Metadata caches: attributes of looked-up paths and "no such file" answers, each trusted
//! for a TTL.
//!
//! Invariant: an entry is served only while younger than its TTL, so a change made by
//! another machine is seen at most one TTL later. Both maps are bounded: past the bound,
//! expired entries are swept, and if that is not enough the whole map is dropped (the
//! cost is extra requests, never a wrong answer).

use crate::namespace::FsPath;
use crate::store::ETag;
use crate::vfs::FileKind;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Most entries per cache before sweeping.
const MAX_ENTRIES: usize = 1 << 20;

/// What the store told us about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// File or directory.
    pub kind: FileKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// ETag of the object, for files.
    pub etag: Option<ETag>,
    /// Storage class of the object, for files (`None` = STANDARD).
    pub storage_class: Option<String>,
}

impl Stat {
    /// A directory with modification time `mtime`.
    pub fn directory(mtime: SystemTime) -> Self {
        Self {
            kind: FileKind::Directory,
            size: 0,
            mtime,
            etag: None,
            storage_class: None,
        }
    }
}

/// Attribute cache and negative cache of one file system.
#[derive(Debug)]
pub struct MetaCache {
    ttl: Duration,
    negative_ttl: Duration,
    stats: Mutex<HashMap<FsPath, (Stat, Instant)>>,
    missing: Mutex<HashMap<FsPath, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Cache maps hold plain values; a poisoned lock still guards a consistent map.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MetaCache {
    /// Caches with these TTLs (zero disables a cache).
    pub fn new(ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            ttl,
            negative_ttl,
            stats: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The TTL of positive entries.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh cached stat of `path`.
    pub fn get(&self, path: &FsPath) -> Option<Stat> {
        let stats = lock(&self.stats);
        let (stat, at) = stats.get(path)?;
        (at.elapsed() < self.ttl).then(|| stat.clone())
    }

    /// Records `stat` for `path` and forgets any negative entry.
    pub fn put(&self, path: &FsPath, stat: Stat) {
        lock(&self.missing).remove(path);
        if self.ttl.is_zero() {
            return;
        }
        let mut stats = lock(&self.stats);
        if stats.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            stats.retain(|_, (_, at)| at.elapsed() < ttl);
            if stats.len() >= MAX_ENTRIES {
                stats.clear();
            }
        }
        stats.insert(path.clone(), (stat, Instant::now()));
    }

    /// Whether `path` is freshly known not to exist.
    pub fn is_missing(&self, path: &FsPath) -> bool {
        lock(&self.missing)
            .get(path)
            .is_some_and(|at| at.elapsed() < self.negative_ttl)
    }

    /// Records that `path` does not exist.
    pub fn put_missing(&self, path: &FsPath) {
        lock(&self.stats).remove(path);
        if self.negative_ttl.is_zero() {
            return;
        }
        let mut missing = lock(&self.missing);
        if missing.len() >= MAX_ENTRIES {
            let ttl = self.negative_ttl;
            missing.retain(|_, at| at.elapsed() < ttl);
            if missing.len() >= MAX_ENTRIES {
                missing.clear();
            }
        }
        missing.insert(path.clone(), Instant::now());
    }

    /// Forgets everything about `path`.
    pub fn invalidate(&self, path: &FsPath) {
        lock(&self.stats).remove(path);
        lock(&self.missing).remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let cache = MetaCache::new(Duration::from_millis(30), Duration::from_millis(30));
        let p = FsPath::parse("a").unwrap();
        cache.put(&p, Stat::directory(SystemTime::UNIX_EPOCH));
        assert!(cache.get(&p).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(&p).is_none());
        cache.put_missing(&p);
        assert!(cache.is_missing(&p));
        cache.put(&p, Stat::directory(SystemTime::UNIX_EPOCH));
        assert!(!cache.is_missing(&p));
    }

    #[test]
    fn zero_ttl_disables() {
        let cache = MetaCache::new(Duration::ZERO, Duration::ZERO);
        let p = FsPath::parse("a").unwrap();
        cache.put(&p, Stat::directory(SystemTime::UNIX_EPOCH));
        cache.put_missing(&p);
        assert!(cache.get(&p).is_none());
        assert!(!cache.is_missing(&p));
    }
}
