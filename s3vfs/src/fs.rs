//! [`S3Fs`]: the file system over one bucket (and prefix), implementing [`Vfs`].
//!
//! It owns the inode table, the metadata caches and the open handles. Lookups ask the
//! store for the file (HEAD) and the directory (LIST of `name/`, one key) at once; a
//! directory shadows a file of the same name. Listings come from LIST pages, whose sizes
//! and mtimes also fill the attribute cache, so `ls -l` costs no HEAD per entry.
//!
//! The write side is not built yet: every change is refused with `EROFS`.

use crate::attrs::MAX_SYMLINK_TARGET;
use crate::config::FsConfig;
use crate::dir::{Listed, ListingMerger};
use crate::error::{VfsError, VfsResult};
use crate::inode::InodeTable;
use crate::meta::{MetaCache, Stat};
use crate::namespace::{FileName, FsPath, Namespace};
use crate::read::Prefetcher;
use crate::store::{
    storage_class, GetRequest, ListRequest, ObjectKey, ObjectMeta, ObjectStore, StoreErrorKind,
};
use crate::vfs::{
    DirEntry, Entry, FileAttr, FileKind, Handle, Ino, OpenFlags, SetAttr, StatFs, Vfs,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// HEAD requests in flight while a listing looks for symbolic links among small objects.
const LISTING_HEADS_IN_FLIGHT: usize = 32;

/// Most distinct hidden keys remembered, so each is warned about once.
const MAX_HIDDEN_WARNINGS: usize = 10_000;

/// An open handle.
enum OpenHandle {
    File(Arc<Prefetcher>),
    Dir(Arc<tokio::sync::Mutex<DirStream>>),
}

/// The state of one open directory: a window of produced entries over the LIST stream.
///
/// Entries are numbered by offset (`.` is 1, `..` is 2, then the listing). The window keeps
/// entries the caller has not confirmed yet (those after the offset it last passed), so a
/// reply buffer that filled up can be re-read; an offset before the window restarts the
/// listing from the start and skips forward.
struct DirStream {
    path: FsPath,
    ino: Ino,
    parent: Ino,
    window: VecDeque<DirEntry>,
    produced: u64,
    token: Option<String>,
    listing_done: bool,
    merger: ListingMerger,
}

/// The file system over one bucket.
pub struct S3Fs {
    store: Arc<dyn ObjectStore>,
    config: FsConfig,
    ns: Namespace,
    inodes: InodeTable,
    meta: MetaCache,
    handles: Mutex<HashMap<u64, OpenHandle>>,
    next_handle: AtomicU64,
    started: SystemTime,
    hidden_warned: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for S3Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fs")
            .field("store", &self.store)
            .field("prefix", &self.ns.prefix())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // These maps hold plain values updated in single statements; a poisoned lock still
    // guards a consistent map.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl S3Fs {
    /// A file system over `store`, rooted at `config.prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, config: FsConfig) -> Arc<Self> {
        let prefix = config.prefix.clone();
        let meta = MetaCache::new(config.metadata_ttl, config.negative_ttl);
        Arc::new(Self {
            store,
            ns: Namespace::new(&prefix),
            meta,
            config,
            inodes: InodeTable::new(),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            started: SystemTime::now(),
            hidden_warned: Mutex::new(HashSet::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Drops an open file or directory handle (what `release`/`releasedir` do), for
    /// callers that cannot await.
    pub fn close_handle(&self, handle: Handle) {
        lock(&self.handles).remove(&handle.0);
    }

    /// The path of `ino`, for callers that resolved it.
    pub fn path_of(&self, ino: Ino) -> Option<FsPath> {
        self.inodes.get(ino).map(|info| info.path)
    }

    fn attr(&self, ino: Ino, stat: &Stat) -> FileAttr {
        let (default_perm, nlink) = match stat.kind {
            FileKind::Directory => (self.config.dir_mode, 2),
            FileKind::Symlink => (0o777, 1),
            FileKind::File => (self.config.file_mode, 1),
        };
        FileAttr {
            ino,
            kind: stat.kind,
            size: stat.size,
            mtime: stat.mtime,
            perm: stat
                .posix
                .perm()
                .filter(|p| *p != 0)
                .unwrap_or(default_perm),
            uid: stat.posix.uid.unwrap_or(self.config.uid),
            gid: stat.posix.gid.unwrap_or(self.config.gid),
            nlink,
            blksize: self.config.block_size,
        }
    }

    fn entry(&self, ino: Ino, stat: &Stat) -> Entry {
        Entry {
            attr: self.attr(ino, stat),
            ttl: self.config.metadata_ttl,
        }
    }

    fn refuse_write(&self, what: &str) -> VfsError {
        VfsError::ReadOnly(format!("{what}: this mount is read-only"))
    }

    fn dir_path(&self, ino: Ino) -> VfsResult<FsPath> {
        let info = self
            .inodes
            .get(ino)
            .ok_or_else(|| VfsError::NotFound(format!("inode {}", ino.0)))?;
        if info.kind != FileKind::Directory {
            return Err(VfsError::NotADirectory(info.path.to_string()));
        }
        Ok(info.path)
    }

    fn warn_hidden(&self, key: &str, problem: crate::namespace::NameProblem) {
        let mut warned = lock(&self.hidden_warned);
        if warned.len() < MAX_HIDDEN_WARNINGS && warned.insert(key.to_owned()) {
            tracing::warn!(key, reason = %problem, "key cannot be shown as a file; hidden");
        }
    }

    /// What `path` is now: from the cache while fresh, else HEAD and LIST at once.
    pub(crate) async fn stat_path(&self, path: &FsPath) -> VfsResult<Stat> {
        if path.is_root() {
            return Ok(Stat::directory(self.started));
        }
        if let Some(stat) = self.meta.get(path) {
            return Ok(stat);
        }
        if self.meta.is_missing(path) {
            return Err(VfsError::NotFound(path.to_string()));
        }
        let key = self.ns.file_key(path)?;
        let list = ListRequest {
            prefix: self.ns.dir_prefix(path),
            max_keys: Some(1),
            ..ListRequest::default()
        };
        let (head, listing) = futures::join!(self.store.head(&key), self.store.list(list));
        let listing = listing.map_err(|e| VfsError::from_store(path.as_str(), e))?;
        let stat = if !listing.objects.is_empty() || !listing.common_prefixes.is_empty() {
            Stat::directory(self.started)
        } else {
            match head {
                Ok(meta) => Stat::from_head(&meta),
                Err(e) if e.kind == StoreErrorKind::NotFound => {
                    self.meta.put_missing(path);
                    return Err(VfsError::NotFound(path.to_string()));
                }
                Err(e) => return Err(VfsError::from_store(path.as_str(), e)),
            }
        };
        self.meta.put(path, stat.clone());
        Ok(stat)
    }

    fn new_handle(&self, handle: OpenHandle) -> Handle {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(id, handle);
        Handle(id)
    }

    fn dir_handle(&self, handle: Handle) -> VfsResult<Arc<tokio::sync::Mutex<DirStream>>> {
        match lock(&self.handles).get(&handle.0) {
            Some(OpenHandle::Dir(d)) => Ok(Arc::clone(d)),
            _ => Err(VfsError::BadHandle),
        }
    }

    fn file_handle(&self, handle: Handle) -> VfsResult<Arc<Prefetcher>> {
        match lock(&self.handles).get(&handle.0) {
            Some(OpenHandle::File(f)) => Ok(Arc::clone(f)),
            _ => Err(VfsError::BadHandle),
        }
    }

    fn new_dir_stream(&self, path: FsPath, ino: Ino) -> DirStream {
        let parent = match path.as_str().rsplit_once('/') {
            Some((parent, _)) => FsPath::parse(parent)
                .ok()
                .and_then(|p| self.inodes.find(&p))
                .unwrap_or(Ino::ROOT),
            None => Ino::ROOT,
        };
        let merger = ListingMerger::new(&self.ns.dir_prefix(&path));
        let mut stream = DirStream {
            path,
            ino,
            parent,
            window: VecDeque::new(),
            produced: 0,
            token: None,
            listing_done: false,
            merger,
        };
        stream.restart(&self.ns);
        stream
    }

    /// Fetches one LIST page into the stream's window.
    async fn fill_dir(&self, stream: &mut DirStream) -> VfsResult<()> {
        let request = ListRequest {
            prefix: self.ns.dir_prefix(&stream.path),
            delimiter: Some("/".to_owned()),
            continuation_token: stream.token.take(),
            max_keys: Some(self.config.list_page_size),
            start_after: None,
        };
        let page = self
            .store
            .list(request)
            .await
            .map_err(|e| VfsError::from_store(stream.path.as_str(), e))?;
        let last_page = page.next_continuation_token.is_none();
        stream.token = page.next_continuation_token.clone();
        let mut items = Vec::new();
        stream.merger.push_page(page, &mut items);
        if last_page {
            stream.merger.finish(&mut items);
            stream.listing_done = true;
        }
        // What LIST cannot tell: whether a small object is a symbolic link (its mode is in
        // the metadata). Such objects are looked at with HEAD, in parallel, unless this
        // version was looked at before; larger objects cannot be links.
        let mut listed = Vec::with_capacity(items.len());
        for item in items {
            let (name, stat) = match item {
                Listed::Hidden(key, problem) => {
                    self.warn_hidden(&key, problem);
                    continue;
                }
                Listed::Dir(name) => (name, Stat::directory(self.started)),
                Listed::File(name, object) => {
                    let Ok(file_name) = FileName::check(&name) else {
                        continue;
                    };
                    let previous = self.meta.get_any(&stream.path.join(&file_name));
                    (name, Stat::from_listing(&object, previous.as_ref()))
                }
            };
            let Ok(file_name) = FileName::check(&name) else {
                continue;
            };
            listed.push((name, stream.path.join(&file_name), stat));
        }
        let candidates: Vec<(usize, ObjectKey)> = listed
            .iter()
            .enumerate()
            .filter(|(_, (_, _, stat))| {
                stat.kind != FileKind::Directory
                    && !stat.from_head
                    && (1..=MAX_SYMLINK_TARGET).contains(&stat.size)
            })
            .filter_map(|(i, (_, path, _))| Some((i, self.ns.file_key(path).ok()?)))
            .collect();
        let store = Arc::clone(&self.store);
        let found: Vec<(usize, Option<ObjectMeta>)> = futures::stream::iter(candidates)
            .map(move |(i, key)| {
                let store = Arc::clone(&store);
                async move { (i, store.head(&key).await.ok()) }
            })
            .buffer_unordered(LISTING_HEADS_IN_FLIGHT)
            .collect()
            .await;
        for (i, meta) in found {
            // An object deleted since the LIST keeps what LIST said; the next lookup tells.
            if let (Some(meta), Some(entry)) = (meta, listed.get_mut(i)) {
                entry.2 = Stat::from_head(&meta);
            }
        }
        for (name, path, stat) in listed {
            let ino = self.inodes.assign(&path, stat.kind);
            self.meta.put(&path, stat.clone());
            stream.produced += 1;
            stream.window.push_back(DirEntry {
                ino,
                name,
                kind: stat.kind,
                next_offset: stream.produced,
                attr: Some(self.attr(ino, &stat)),
            });
        }
        Ok(())
    }
}

impl DirStream {
    /// Back to the first entry.
    fn restart(&mut self, ns: &Namespace) {
        self.window.clear();
        self.window.push_back(DirEntry {
            ino: self.ino,
            name: ".".to_owned(),
            kind: FileKind::Directory,
            next_offset: 1,
            attr: None,
        });
        self.window.push_back(DirEntry {
            ino: self.parent,
            name: "..".to_owned(),
            kind: FileKind::Directory,
            next_offset: 2,
            attr: None,
        });
        self.produced = 2;
        self.token = None;
        self.listing_done = false;
        self.merger = ListingMerger::new(&ns.dir_prefix(&self.path));
    }

    /// Offset before the first entry in the window.
    fn window_base(&self) -> u64 {
        self.window
            .front()
            .map_or(self.produced, |e| e.next_offset - 1)
    }
}

#[async_trait]
impl Vfs for S3Fs {
    async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry> {
        let parent_path = self.dir_path(parent)?;
        let name = FileName::from_os(name)?;
        let path = parent_path.join(&name);
        let stat = self.stat_path(&path).await?;
        let ino = self.inodes.assign(&path, stat.kind);
        Ok(self.entry(ino, &stat))
    }

    fn forget(&self, _ino: Ino, _nlookup: u64) {
        // Inode numbers stay assigned for the life of the file system (stable per path).
    }

    async fn getattr(&self, ino: Ino) -> VfsResult<Entry> {
        let info = self
            .inodes
            .get(ino)
            .ok_or_else(|| VfsError::NotFound(format!("inode {}", ino.0)))?;
        let stat = self.stat_path(&info.path).await?;
        if stat.kind != info.kind {
            // The path is now something else (another inode); this one is gone.
            self.inodes.assign(&info.path, stat.kind);
            return Err(VfsError::ObjectChanged(info.path.to_string()));
        }
        Ok(self.entry(ino, &stat))
    }

    async fn setattr(&self, _ino: Ino, _handle: Option<Handle>, _c: SetAttr) -> VfsResult<Entry> {
        Err(self.refuse_write("setattr"))
    }

    async fn readlink(&self, ino: Ino) -> VfsResult<Bytes> {
        let info = self
            .inodes
            .get(ino)
            .ok_or_else(|| VfsError::NotFound(format!("inode {}", ino.0)))?;
        let stat = self.stat_path(&info.path).await?;
        if stat.kind != FileKind::Symlink {
            return Err(VfsError::InvalidArgument(format!(
                "{} is not a symbolic link",
                info.path
            )));
        }
        let key = self.ns.file_key(&info.path)?;
        let request = GetRequest {
            key,
            range: None,
            if_match: stat.etag.clone(),
        };
        let fetched = async { self.store.get(request).await?.collect().await };
        fetched
            .await
            .map_err(|e| VfsError::from_store(info.path.as_str(), e))
    }

    async fn opendir(&self, ino: Ino) -> VfsResult<Handle> {
        let path = self.dir_path(ino)?;
        let stream = self.new_dir_stream(path, ino);
        Ok(self.new_handle(OpenHandle::Dir(Arc::new(tokio::sync::Mutex::new(stream)))))
    }

    async fn readdir(
        &self,
        _ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        let stream = self.dir_handle(handle)?;
        // One reader of a directory handle at a time: the stream is a cursor.
        let mut stream = stream.lock().await;
        if offset < stream.window_base() {
            stream.restart(&self.ns);
        }
        let wanted = offset.saturating_add(max_entries as u64);
        while stream.produced < wanted && !stream.listing_done {
            self.fill_dir(&mut stream).await?;
        }
        while stream
            .window
            .front()
            .is_some_and(|e| e.next_offset <= offset)
        {
            stream.window.pop_front();
        }
        Ok(stream
            .window
            .iter()
            .filter(|e| e.next_offset > offset)
            .take(max_entries)
            .cloned()
            .collect())
    }

    async fn releasedir(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        lock(&self.handles).remove(&handle.0);
        Ok(())
    }

    async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle> {
        if flags.write || flags.truncate || flags.append {
            return Err(self.refuse_write("open for writing"));
        }
        let info = self
            .inodes
            .get(ino)
            .ok_or_else(|| VfsError::NotFound(format!("inode {}", ino.0)))?;
        let mut stat = self.stat_path(&info.path).await?;
        match stat.kind {
            FileKind::Directory => return Err(VfsError::IsADirectory(info.path.to_string())),
            FileKind::Symlink => {
                return Err(VfsError::InvalidArgument(format!(
                    "{} is a symbolic link",
                    info.path
                )))
            }
            FileKind::File => {}
        }
        let key = self.ns.file_key(&info.path)?;
        if storage_class::is_archived(stat.storage_class.as_deref()) {
            // LIST does not say whether an archived object was restored; HEAD does.
            let head = self
                .store
                .head(&key)
                .await
                .map_err(|e| VfsError::from_store(info.path.as_str(), e))?;
            if !head.restored {
                let class = stat.storage_class.clone().unwrap_or_default();
                tracing::warn!(key = %key, storage_class = %class,
                    "object is archived; restore it before reading");
                return Err(VfsError::Archived {
                    path: info.path.to_string(),
                    storage_class: class,
                });
            }
            stat.etag = head.etag;
            stat.size = head.size;
        }
        let reader = Prefetcher::new(
            Arc::clone(&self.store),
            key,
            info.path.to_string(),
            stat.etag.clone(),
            stat.size,
            &self.config,
        );
        Ok(self.new_handle(OpenHandle::File(Arc::new(reader))))
    }

    async fn read(&self, _ino: Ino, handle: Handle, offset: u64, size: u32) -> VfsResult<Bytes> {
        let reader = self.file_handle(handle)?;
        reader.read(offset, u64::from(size)).await
    }

    async fn write(&self, _ino: Ino, _h: Handle, _offset: u64, _data: Bytes) -> VfsResult<u32> {
        Err(self.refuse_write("write"))
    }

    async fn flush(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.file_handle(handle).map(|_| ())
    }

    async fn fsync(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.file_handle(handle).map(|_| ())
    }

    async fn release(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        lock(&self.handles).remove(&handle.0);
        Ok(())
    }

    async fn create(
        &self,
        _parent: Ino,
        _name: &OsStr,
        _mode: u32,
        _flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)> {
        Err(self.refuse_write("create"))
    }

    async fn mkdir(&self, _parent: Ino, _name: &OsStr, _mode: u32) -> VfsResult<Entry> {
        Err(self.refuse_write("mkdir"))
    }

    async fn unlink(&self, _parent: Ino, _name: &OsStr) -> VfsResult<()> {
        Err(self.refuse_write("unlink"))
    }

    async fn rmdir(&self, _parent: Ino, _name: &OsStr) -> VfsResult<()> {
        Err(self.refuse_write("rmdir"))
    }

    async fn rename(
        &self,
        _parent: Ino,
        _name: &OsStr,
        _new_parent: Ino,
        _new_name: &OsStr,
        _no_replace: bool,
    ) -> VfsResult<()> {
        Err(self.refuse_write("rename"))
    }

    async fn symlink(&self, _parent: Ino, _name: &OsStr, _target: &OsStr) -> VfsResult<Entry> {
        Err(self.refuse_write("symlink"))
    }

    async fn getxattr(&self, _ino: Ino, name: &OsStr) -> VfsResult<Bytes> {
        Err(VfsError::NoAttribute(name.to_string_lossy().into_owned()))
    }

    async fn listxattr(&self, _ino: Ino) -> VfsResult<Vec<String>> {
        Ok(Vec::new())
    }

    async fn setxattr(&self, _ino: Ino, _name: &OsStr, _value: Bytes) -> VfsResult<()> {
        Err(self.refuse_write("setxattr"))
    }

    async fn removexattr(&self, _ino: Ino, _name: &OsStr) -> VfsResult<()> {
        Err(self.refuse_write("removexattr"))
    }

    async fn statfs(&self) -> VfsResult<StatFs> {
        Ok(StatFs::unlimited(self.config.block_size))
    }
}
