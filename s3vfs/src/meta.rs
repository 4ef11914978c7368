//! Metadata caches: attributes of looked-up paths and "no such file" answers, each trusted
//! for a TTL.
//!
//! Invariant: an entry is served only while younger than its TTL, so a change made by
//! another machine is seen at most one TTL later. Both maps are bounded: each time one has
//! doubled since its last sweep, entries no longer worth keeping are swept out (expired
//! "no such file" answers, and expired stats except up to [`MAX_KEPT_HEADS`] read by HEAD,
//! which hold what a LIST cannot tell and are reused for the same object version), so a
//! walk over millions of names keeps about one TTL's worth; past [`MAX_ENTRIES`] the whole map is dropped
//! (the cost is extra requests, never a wrong answer).

use crate::attrs::PosixMeta;
use crate::namespace::FsPath;
use crate::presence::Presences;
use crate::store::{ETag, ListPage, ListedObject, ObjectMeta};
use crate::sync::lock;
use crate::vfs::FileKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Most entries per cache; past it, the cache is emptied.
const MAX_ENTRIES: usize = 1 << 20;

/// A map is not swept before it holds this many entries.
const SWEEP_FLOOR: usize = 4096;

/// Most stats read by HEAD kept past their TTL (s3fs's stat cache holds as many): each
/// spares the next listing of its directory a HEAD, for ~250 bytes. Past it the others go
/// at the next sweep, so a walk of millions of small objects keeps only these; the cost is
/// HEADs, never a wrong answer.
const MAX_KEPT_HEADS: usize = 100_000;

/// Which cached stats (each with when it was stored) a sweep keeps: the fresh ones, and of
/// the expired ones, those read by HEAD of a path `in_use` names, up to [`MAX_KEPT_HEADS`].
fn stats_worth_keeping(
    ttl: Duration,
    in_use: impl Fn(&FsPath) -> bool,
) -> impl FnMut(&FsPath, &(Stat, Instant)) -> bool {
    let mut kept = 0;
    move |path, (stat, at)| {
        if at.elapsed() < ttl {
            return true;
        }
        let keep = stat.from_head && kept < MAX_KEPT_HEADS && in_use(path);
        kept += usize::from(keep);
        keep
    }
}

/// A map of entries by path, swept each time it has doubled since its last sweep: an
/// amortized constant cost per insert, and never more than about twice the entries worth
/// keeping. Reads and removals go straight to the map.
#[derive(Debug)]
struct Swept<V> {
    map: HashMap<FsPath, V>,
    /// Size at which the next insert sweeps first.
    sweep_at: usize,
}

impl<V> Default for Swept<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            sweep_at: SWEEP_FLOOR,
        }
    }
}

impl<V> std::ops::Deref for Swept<V> {
    type Target = HashMap<FsPath, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<V> std::ops::DerefMut for Swept<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl<V> Swept<V> {
    /// Inserts `value` for `path`, first keeping only the entries `keep` wants if the map
    /// has doubled since the last sweep.
    fn insert_sweeping(&mut self, path: &FsPath, value: V, keep: impl FnMut(&FsPath, &V) -> bool) {
        if self.map.len() >= self.sweep_at {
            self.sweep(keep);
        }
        self.map.insert(path.clone(), value);
    }

    /// Keeps only the entries `keep` wants (all of them dropped past [`MAX_ENTRIES`]) and
    /// gives back the room of the others.
    fn sweep(&mut self, mut keep: impl FnMut(&FsPath, &V) -> bool) {
        self.map.retain(|path, v| keep(path, v));
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
        }
        let len = self.map.len();
        if self.map.capacity() > 4 * len.max(SWEEP_FLOOR) {
            self.map.shrink_to(2 * len);
        }
        self.sweep_at = (2 * len).clamp(SWEEP_FLOOR, MAX_ENTRIES);
    }
}

/// What the store told us about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// What the path is.
    pub kind: FileKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// ETag of the object, for files.
    pub etag: Option<ETag>,
    /// Storage class of the object, for files (`None` = STANDARD).
    pub storage_class: Option<String>,
    /// Mode, owner and mtime from the object's metadata (empty when unknown).
    pub posix: PosixMeta,
    /// Whether the object's metadata was read (HEAD); a LIST does not return it.
    pub from_head: bool,
}

impl Stat {
    /// A directory with modification time `mtime`.
    pub(crate) fn directory(mtime: SystemTime) -> Self {
        Self {
            kind: FileKind::Directory,
            size: 0,
            mtime,
            etag: None,
            storage_class: None,
            posix: PosixMeta::default(),
            from_head: false,
        }
    }

    /// A directory whose `dir/` marker has the attributes `posix` (its mtime, if stated,
    /// else the marker's `last_modified`).
    pub(crate) fn marker(posix: PosixMeta, etag: Option<ETag>, last_modified: SystemTime) -> Self {
        Self {
            kind: FileKind::Directory,
            size: 0,
            mtime: posix.mtime.unwrap_or(last_modified),
            etag,
            storage_class: None,
            posix,
            from_head: true,
        }
    }

    /// A directory from what HEAD said of its marker.
    pub(crate) fn of_marker(head: &ObjectMeta) -> Self {
        Self::marker(
            PosixMeta::from_user_metadata(&head.user_metadata),
            head.etag.clone(),
            head.last_modified,
        )
    }

    /// What HEAD said of an object: the mode header decides between file, symlink and
    /// special file (an object is never a directory, whatever its mode says).
    pub(crate) fn from_head(meta: &ObjectMeta) -> Self {
        let posix = PosixMeta::from_user_metadata(&meta.user_metadata);
        let kind = match posix.kind() {
            Some(FileKind::Directory) | None => FileKind::File,
            Some(kind) => kind,
        };
        Self {
            kind,
            size: meta.size,
            mtime: posix.mtime.unwrap_or(meta.last_modified),
            etag: meta.etag.clone(),
            storage_class: meta.storage_class.clone(),
            posix,
            from_head: true,
        }
    }

    /// What a LIST entry says; metadata learnt earlier for the same object version
    /// (`previous` with the same ETag) is kept, since LIST does not return it.
    pub(crate) fn from_listing(object: &ListedObject, previous: Option<&Stat>) -> Self {
        if let Some(prev) = previous {
            if prev.from_head && prev.etag.is_some() && prev.etag == object.etag {
                return Self {
                    size: object.size,
                    storage_class: object.storage_class.clone(),
                    ..prev.clone()
                };
            }
        }
        Self {
            kind: FileKind::File,
            size: object.size,
            mtime: object.last_modified,
            etag: object.etag.clone(),
            storage_class: object.storage_class.clone(),
            posix: PosixMeta::default(),
            from_head: false,
        }
    }
}

/// Attribute cache and negative cache of one file system.
#[derive(Debug)]
pub(crate) struct MetaCache {
    ttl: Duration,
    negative_ttl: Duration,
    stats: Mutex<Swept<(Stat, Instant)>>,
    missing: Mutex<Swept<Instant>>,
    /// Whole directory listings (name, stat), by directory.
    listings: Mutex<HashMap<FsPath, (Listing, Instant)>>,
    /// First LIST pages of directories that a lookup asked for, for the listing that
    /// usually follows at once (`ls -l dir`: lookup, then readdir).
    first_pages: Mutex<HashMap<FsPath, (ListPage, Instant)>>,
    /// What directories hold, for "no such file" without a request (see `presence`).
    pub(crate) presence: Presences,
}

/// A directory listing: names and stats.
pub(crate) type Listing = Arc<Vec<(String, Stat)>>;

/// Most listing entries cached across all directories.
const MAX_LISTING_ENTRIES: usize = 2_000_000;

/// Most first pages kept (see [`MetaCache::put_first_page`]).
const MAX_FIRST_PAGES: usize = 16;

/// How long a lookup's first page may stand in for a listing's first request (less if
/// the metadata TTL is shorter). A listing follows its lookup within milliseconds; past
/// this the page is asked for again.
const FIRST_PAGE_LIFE: Duration = Duration::from_secs(1);

impl MetaCache {
    /// Caches with these TTLs (zero disables a cache).
    pub(crate) fn new(ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            ttl,
            negative_ttl,
            stats: Mutex::new(Swept::default()),
            missing: Mutex::new(Swept::default()),
            listings: Mutex::new(HashMap::new()),
            first_pages: Mutex::new(HashMap::new()),
            presence: Presences::new(negative_ttl),
        }
    }

    /// A fresh cached stat of `path`.
    pub(crate) fn get(&self, path: &FsPath) -> Option<Stat> {
        let stats = lock(&self.stats);
        let (stat, at) = stats.get(path)?;
        (at.elapsed() < self.ttl).then(|| stat.clone())
    }

    /// The last stat recorded for `path`, however old (for what LIST cannot tell).
    pub(crate) fn get_any(&self, path: &FsPath) -> Option<Stat> {
        lock(&self.stats).get(path).map(|(stat, _)| stat.clone())
    }

    /// A fresh cached listing of directory `dir`.
    pub(crate) fn listing(&self, dir: &FsPath) -> Option<Listing> {
        let listings = lock(&self.listings);
        let (entries, at) = listings.get(dir)?;
        (at.elapsed() < self.ttl).then(|| Arc::clone(entries))
    }

    /// Caches the whole listing of directory `dir`.
    pub(crate) fn put_listing(&self, dir: &FsPath, entries: Vec<(String, Stat)>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut listings = lock(&self.listings);
        let ttl = self.ttl;
        listings.retain(|_, (_, at)| at.elapsed() < ttl);
        let total: usize = listings.values().map(|(e, _)| e.len()).sum();
        if total + entries.len() > MAX_LISTING_ENTRIES {
            return;
        }
        listings.insert(dir.clone(), (Arc::new(entries), Instant::now()));
    }

    /// Keeps `page`, the first LIST page of directory `dir` (as `Core::dir_listing` asks
    /// for it, without a token) that a lookup fetched, for the next listing of `dir` to
    /// start from instead of asking again; for at most [`FIRST_PAGE_LIFE`] and the TTL.
    pub(crate) fn put_first_page(&self, dir: &FsPath, page: ListPage) {
        let life = self.first_page_life();
        if life.is_zero() {
            return;
        }
        let mut pages = lock(&self.first_pages);
        pages.retain(|_, (_, at)| at.elapsed() < life);
        if pages.len() >= MAX_FIRST_PAGES && !pages.contains_key(dir) {
            let oldest = pages
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(d, _)| d.clone());
            if let Some(oldest) = oldest {
                pages.remove(&oldest);
            }
        }
        pages.insert(dir.clone(), (page, Instant::now()));
    }

    /// The first LIST page of directory `dir` a lookup just fetched, if still fresh and
    /// the directory has not changed since; it is handed out once.
    pub(crate) fn take_first_page(&self, dir: &FsPath) -> Option<ListPage> {
        let (page, at) = lock(&self.first_pages).remove(dir)?;
        (at.elapsed() < self.first_page_life()).then_some(page)
    }

    fn first_page_life(&self) -> Duration {
        self.ttl.min(FIRST_PAGE_LIFE)
    }

    /// Drops every entry no longer worth keeping — expired stats (but those read by HEAD
    /// of a path that `in_use` still names), "no such file" answers, listings and
    /// presences — and the room they took. Inserts sweep as the maps grow; this is for
    /// when they stop growing (after a walk over millions of names, nothing else would
    /// give that memory back).
    ///
    /// What HEAD told is kept past its TTL so that the next listing of the directory need
    /// not ask again for the same object version; once the path is no longer in use (the
    /// kernel forgot it), that saving is not worth ~250 bytes per name of a walk.
    /// [`MAX_KEPT_HEADS`] bounds them when the kernel holds millions.
    pub(crate) fn sweep_expired(&self, in_use: impl Fn(&FsPath) -> bool) {
        let (ttl, negative_ttl) = (self.ttl, self.negative_ttl);
        lock(&self.stats).sweep(stats_worth_keeping(ttl, in_use));
        lock(&self.missing).sweep(|_, at| at.elapsed() < negative_ttl);
        {
            let mut listings = lock(&self.listings);
            listings.retain(|_, (_, at)| at.elapsed() < ttl);
            listings.shrink_to_fit();
        }
        let life = self.first_page_life();
        lock(&self.first_pages).retain(|_, (_, at)| at.elapsed() < life);
        self.presence.sweep_expired();
    }

    /// Entries held: stats, "no such file" answers, listing entries, directories with a
    /// presence (for the debug log of the sweeps).
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        let listed = lock(&self.listings).values().map(|(l, _)| l.len()).sum();
        (
            lock(&self.stats).len(),
            lock(&self.missing).len(),
            listed,
            self.presence.len(),
        )
    }

    /// Drops the cached listing (and first page) of the directory holding `path`: it
    /// changed.
    fn listing_changed(&self, path: &FsPath) {
        if !path.is_root() {
            self.drop_listing(&path.parent());
        }
    }

    /// Drops the cached listing and first page of directory `dir`.
    fn drop_listing(&self, dir: &FsPath) {
        lock(&self.listings).remove(dir);
        lock(&self.first_pages).remove(dir);
    }

    /// Drops the cached listings and first pages of every directory `gone` says.
    fn drop_listings_where(&self, gone: impl Fn(&FsPath) -> bool) {
        lock(&self.listings).retain(|dir, _| !gone(dir));
        lock(&self.first_pages).retain(|dir, _| !gone(dir));
    }

    /// Records `stat` for `path` and forgets any negative entry. A stat that differs from
    /// the one known (a new name, another kind, size or version) also drops the cached
    /// listing of the parent directory, so the mount's own changes show in listings.
    pub(crate) fn put(&self, path: &FsPath, stat: Stat) {
        self.presence.touch(path);
        let was_missing = lock(&self.missing).remove(path).is_some();
        let previous = lock(&self.stats)
            .get(path)
            .map(|(s, _)| (s.kind, s.size, s.etag.clone()));
        if was_missing || previous != Some((stat.kind, stat.size, stat.etag.clone())) {
            self.listing_changed(path);
        }
        self.store_stat(path, stat);
    }

    /// Records `stat` for `path` after this mount changed what a listing shows of it
    /// without changing its kind, size or version (a chmod, chown or utimens rewrites the
    /// metadata, and a copy in place keeps the ETag): drops the parent's cached listing.
    pub(crate) fn put_changed(&self, path: &FsPath, stat: Stat) {
        self.presence.touch(path);
        lock(&self.missing).remove(path);
        self.listing_changed(path);
        self.store_stat(path, stat);
    }

    /// Records `stat` of an entry seen in a listing of its directory (which the listing
    /// cache holds already).
    pub(crate) fn put_listed(&self, path: &FsPath, stat: Stat) {
        lock(&self.missing).remove(path);
        self.store_stat(path, stat);
    }

    fn store_stat(&self, path: &FsPath, stat: Stat) {
        if self.ttl.is_zero() {
            return;
        }
        let ttl = self.ttl;
        lock(&self.stats).insert_sweeping(
            path,
            (stat, Instant::now()),
            stats_worth_keeping(ttl, |_| true),
        );
    }

    /// Whether `path` is freshly known not to exist.
    pub(crate) fn is_missing(&self, path: &FsPath) -> bool {
        lock(&self.missing)
            .get(path)
            .is_some_and(|at| at.elapsed() < self.negative_ttl)
    }

    /// Records that `path` does not exist.
    pub(crate) fn put_missing(&self, path: &FsPath) {
        self.presence.touch(path);
        if lock(&self.stats).remove(path).is_some() {
            self.listing_changed(path);
        }
        if self.negative_ttl.is_zero() {
            return;
        }
        let ttl = self.negative_ttl;
        lock(&self.missing).insert_sweeping(path, Instant::now(), |_, at| at.elapsed() < ttl);
    }

    /// Something now exists at `path`, whose ancestors may be new (implied) directories:
    /// forgets "no such file" for every ancestor and the cached listings that could miss
    /// one of them.
    pub(crate) fn forget_missing_ancestors(&self, path: &FsPath) {
        self.presence.touch(path);
        let mut ancestors = Vec::new();
        let mut at = path.parent();
        while !at.is_root() {
            let parent = at.parent();
            ancestors.push(at);
            at = parent;
        }
        ancestors.push(FsPath::root());
        {
            let mut missing = lock(&self.missing);
            for ancestor in &ancestors {
                missing.remove(ancestor);
                self.presence.touch(ancestor);
            }
        }
        for ancestor in &ancestors {
            self.drop_listing(ancestor);
        }
    }

    /// Forgets the stats and "no such file" entries of every path below directory `dir`
    /// (not of `dir` itself) and the cached listings of `dir` and below: the tree was
    /// moved, and a name below the old place must not answer from what it was.
    pub(crate) fn forget_below(&self, dir: &FsPath) {
        self.presence.forget_tree(dir);
        if dir.is_root() {
            lock(&self.stats).clear();
            lock(&self.missing).clear();
            self.drop_listings_where(|_| true);
            return;
        }
        let below = format!("{}/", dir.as_str());
        let is_below = |path: &FsPath| path.as_str().starts_with(&below);
        lock(&self.stats).retain(|path, _| !is_below(path));
        lock(&self.missing).retain(|path, _| !is_below(path));
        self.drop_listings_where(|path| path == dir || is_below(path));
    }

    /// Forgets everything about `path`.
    pub(crate) fn invalidate(&self, path: &FsPath) {
        self.presence.touch(path);
        self.presence.forget_tree(path);
        lock(&self.stats).remove(path);
        lock(&self.missing).remove(path);
        self.listing_changed(path);
        let below = format!("{}/", path.as_str());
        self.drop_listings_where(|dir| {
            dir == path || (!path.is_root() && dir.as_str().starts_with(&below))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_attributes_drops_the_parents_listing() {
        let cache = MetaCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let dir = FsPath::parse("dir").unwrap();
        let path = FsPath::parse("dir/file").unwrap();
        let stat = Stat::directory(SystemTime::UNIX_EPOCH);
        cache.put(&path, stat.clone());
        cache.put_listing(&dir, vec![("file".to_owned(), stat.clone())]);
        // The same kind, size and version: a lookup keeps the listing.
        cache.put(&path, stat.clone());
        assert!(cache.listing(&dir).is_some());
        // A chmod (same kind, size and version too) drops it.
        cache.put_changed(&path, stat);
        assert!(cache.listing(&dir).is_none());
    }

    #[test]
    fn a_sweep_gives_back_what_expired_after_the_maps_stopped_growing() {
        let cache = MetaCache::new(Duration::from_millis(20), Duration::from_millis(20));
        let stat = Stat::directory(SystemTime::UNIX_EPOCH);
        let mut from_head = stat.clone();
        from_head.from_head = true;
        for i in 0..3000 {
            let dir = FsPath::parse(&format!("d{i}")).unwrap();
            cache.put(&FsPath::parse(&format!("d{i}/f")).unwrap(), stat.clone());
            cache.put_missing(&FsPath::parse(&format!("d{i}/gone")).unwrap());
            cache.put_listing(&dir, vec![("f".to_owned(), stat.clone())]);
            cache.presence.made_empty(&dir);
        }
        let kept = FsPath::parse("headed").unwrap();
        let forgotten = FsPath::parse("headed-and-forgotten").unwrap();
        cache.put(&kept, from_head.clone());
        cache.put(&forgotten, from_head);
        std::thread::sleep(Duration::from_millis(40));
        cache.sweep_expired(|path| *path == kept);
        assert_eq!(
            lock(&cache.stats).len(),
            1,
            "only what a HEAD read of a path in use is kept"
        );
        assert!(lock(&cache.missing).is_empty());
        assert!(lock(&cache.listings).is_empty());
        assert!(cache.get_any(&kept).is_some());
        assert!(cache.get_any(&forgotten).is_none());
        assert_eq!(cache.presence.len(), 0);
    }

    #[test]
    fn stats_read_by_head_are_kept_past_their_ttl_only_up_to_a_bound() {
        let cache = MetaCache::new(Duration::from_millis(20), Duration::from_millis(20));
        let mut stat = Stat::directory(SystemTime::UNIX_EPOCH);
        stat.kind = FileKind::File;
        stat.from_head = true;
        for i in 0..MAX_KEPT_HEADS + 500 {
            cache.put(&FsPath::parse(&format!("f{i}")).unwrap(), stat.clone());
        }
        std::thread::sleep(Duration::from_millis(40));
        cache.sweep_expired(|_| true);
        assert_eq!(lock(&cache.stats).len(), MAX_KEPT_HEADS);
    }

    #[test]
    fn a_moved_tree_forgets_everything_below_it() {
        let cache = MetaCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let path = |p: &str| FsPath::parse(p).unwrap();
        let stat = Stat::directory(SystemTime::UNIX_EPOCH);
        for p in ["d", "d/e", "d/e/f", "de/x"] {
            cache.put(&path(p), stat.clone());
        }
        cache.put_missing(&path("d/gone"));
        cache.put_listing(&path("d/e"), Vec::new());
        cache.forget_below(&path("d"));
        assert!(cache.get(&path("d")).is_some());
        assert!(cache.get(&path("d/e")).is_none());
        assert!(cache.get(&path("d/e/f")).is_none());
        assert!(cache.get(&path("de/x")).is_some(), "only below d/");
        assert!(!cache.is_missing(&path("d/gone")));
        assert!(cache.listing(&path("d/e")).is_none());
    }

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
    fn a_long_walk_keeps_about_one_ttl_and_what_only_head_tells() {
        let cache = MetaCache::new(Duration::from_millis(20), Duration::from_millis(20));
        let path = |i: usize| FsPath::parse(&format!("d/f{i}")).unwrap();
        let listed = Stat::directory(SystemTime::UNIX_EPOCH);
        let headed = Stat {
            from_head: true,
            ..listed.clone()
        };
        cache.put(&path(0), headed.clone());
        for i in 1..SWEEP_FLOOR {
            cache.put_listed(&path(i), listed.clone());
            cache.put_missing(&FsPath::parse(&format!("gone{i}")).unwrap());
        }
        std::thread::sleep(Duration::from_millis(30));
        // The next walk of as many names: the expired ones go at the first sweep.
        for i in SWEEP_FLOOR..3 * SWEEP_FLOOR {
            cache.put_listed(&path(i), listed.clone());
            cache.put_missing(&FsPath::parse(&format!("gone{i}")).unwrap());
        }
        let stats = lock(&cache.stats);
        assert!(stats.len() <= 2 * SWEEP_FLOOR + 1, "{} stats", stats.len());
        assert!(!stats.contains_key(&path(1)), "expired and listed: swept");
        drop(stats);
        assert!(lock(&cache.missing).len() <= 2 * SWEEP_FLOOR);
        assert_eq!(
            cache.get_any(&path(0)),
            Some(headed),
            "what HEAD told is kept past the TTL"
        );
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
