//! [`S3Fs`]: the file system over one bucket (and prefix), implementing [`Vfs`].
//!
//! It owns the inode table, the metadata caches and the open handles. Lookups ask the
//! store for the file (HEAD) and the directory (LIST of `name/`, one key) at once; a
//! directory shadows a file of the same name. Listings come from LIST pages, whose sizes
//! and mtimes also fill the attribute cache, so `ls -l` costs no HEAD per entry.
//!
//! Writes go through open files (`write.rs`: staging, streamed and staged uploads, the
//! last close's upload or recovery) and namespace changes through `ops/`.

use crate::attrs::MAX_SYMLINK_TARGET;
use crate::cache::{self, CachingStore, DataCache};
use crate::config::FsConfig;
use crate::core::Core;
use crate::dir::{Listed, ListingMerger};
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::{FileName, FsPath, Namespace};
use crate::open_files::{OpenFile, OpenFiles};
use crate::store::{
    storage_class, GetRequest, ListRequest, ObjectKey, ObjectMeta, ObjectStore, PageCursor,
    StoreErrorKind,
};
use crate::sync::lock;
use crate::vfs::{DirEntry, Entry, FileKind, Handle, Ino, OpenFlags, SetAttr, StatFs, Vfs};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// HEAD requests in flight while a listing looks for symbolic links and special files among
/// small objects.
const LISTING_HEADS_IN_FLIGHT: usize = 32;

use crate::meta::Listing;

/// Largest directory whose listing is cached, in entries.
const MAX_CACHED_LISTING: usize = 200_000;

/// An open handle.
enum OpenHandle {
    File {
        ino: Ino,
        file: Arc<OpenFile>,
        flags: OpenFlags,
    },
    Dir {
        ino: Ino,
        stream: Arc<tokio::sync::Mutex<DirStream>>,
    },
}

impl OpenHandle {
    fn ino(&self) -> Ino {
        match self {
            OpenHandle::File { ino, .. } | OpenHandle::Dir { ino, .. } => *ino,
        }
    }
}

/// The number of a listed entry before it is handed out (numbers are taken then, so that
/// one handed to the kernel is counted and one forgotten meanwhile is not handed out).
const UNNUMBERED: Ino = Ino(0);

/// A produced entry of an open directory.
struct WindowEntry {
    /// The entry; its number is [`UNNUMBERED`] unless it is `.` or `..`.
    entry: DirEntry,
    /// Its path; `None` for `.` and `..`, whose numbers are fixed at open.
    path: Option<FsPath>,
}

/// The state of one open directory: a window of produced entries over the LIST stream.
///
/// Entries are numbered by offset (`.` is 1, `..` is 2, then the listing); inode numbers
/// are taken when an entry is handed out. The window keeps
/// entries the caller has not confirmed yet (those after the offset it last passed), so a
/// reply buffer that filled up can be re-read; an offset before the window restarts the
/// listing from the start and skips forward.
struct DirStream {
    path: FsPath,
    ino: Ino,
    parent: Ino,
    window: VecDeque<WindowEntry>,
    produced: u64,
    /// The continuation token of the next LIST page.
    token: Option<String>,
    /// Checks the pages of the pass over the store, so that a malformed one fails the
    /// listing instead of ending it early or looping.
    cursor: PageCursor,
    listing_done: bool,
    merger: ListingMerger,
    /// Files created here by this mount and not uploaded yet, not seen in the listing so
    /// far; listed at the end.
    pending: Vec<(String, Stat)>,
    /// A fresh cached listing being served, and the next index in it.
    cached: Option<(Listing, usize)>,
    /// What a full pass over the store listed so far, to cache at its end (`None` when the
    /// pass did not start at the beginning or grew past the cache's bound).
    collected: Option<Vec<(String, Stat)>>,
}

/// The file system over one bucket.
///
/// It owns its components: the shared [`Core`] (store, caches, inode table), the open
/// files, and the handle table; namespace operations (`ops/`) work on them.
pub struct S3Fs {
    pub(crate) core: Arc<Core>,
    /// The data cache `store` reads through, if any.
    data_cache: Option<Arc<dyn DataCache>>,
    pub(crate) open_files: Arc<OpenFiles>,
    handles: Mutex<HashMap<u64, OpenHandle>>,
    next_handle: AtomicU64,
}

impl std::fmt::Debug for S3Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Fs")
            .field("store", &self.core.store)
            .field("prefix", &self.core.ns.prefix())
            .finish_non_exhaustive()
    }
}

impl S3Fs {
    /// A file system over `store`, rooted at `config.prefix`, with the data cache
    /// `config.data_cache` asks for. A disk cache that cannot be set up is logged and left
    /// out; use [`try_new`](Self::try_new) to fail instead.
    pub fn new(store: Arc<dyn ObjectStore>, config: FsConfig) -> Arc<Self> {
        match cache::from_config(&config.data_cache) {
            Ok(data_cache) => Self::build(store, config, data_cache, ""),
            Err(err) => {
                tracing::error!("{err}; running without the data cache");
                Self::build(store, config, None, "")
            }
        }
    }

    /// Like [`new`](Self::new), but fails if the data cache cannot be set up (e.g. its
    /// directory is not writable).
    pub fn try_new(
        store: Arc<dyn ObjectStore>,
        config: FsConfig,
    ) -> Result<Arc<Self>, cache::CacheError> {
        let data_cache = cache::from_config(&config.data_cache)?;
        Ok(Self::build(store, config, data_cache, ""))
    }

    /// A file system whose reads are cached in `data_cache` (any [`DataCache`]
    /// implementation, in blocks of `config.data_cache.block_size` bytes), whatever the
    /// sizes in `config.data_cache` say.
    pub fn with_data_cache(
        store: Arc<dyn ObjectStore>,
        config: FsConfig,
        data_cache: Arc<dyn DataCache>,
    ) -> Arc<Self> {
        Self::build(store, config, Some(data_cache), "")
    }

    /// A file system over `store`, its pinned reads cached in `data_cache` (if any) under
    /// `scope` (what tells this store's keys from those of other stores sharing the cache).
    pub(crate) fn build(
        store: Arc<dyn ObjectStore>,
        config: FsConfig,
        data_cache: Option<Arc<dyn DataCache>>,
        scope: &str,
    ) -> Arc<Self> {
        let store: Arc<dyn ObjectStore> = match &data_cache {
            Some(data_cache) => Arc::new(CachingStore::new(
                store,
                Arc::clone(data_cache),
                config.data_cache.block_size,
                scope,
            )),
            None => store,
        };
        let core = Arc::new(Core::new(store, config));
        Arc::new(Self {
            core: Arc::clone(&core),
            data_cache,
            open_files: Arc::new(OpenFiles::new(Arc::clone(&core))),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FsConfig {
        &self.core.config
    }

    /// The store underneath (wrapped in a [`CachingStore`] when a data cache is on).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.core.store
    }

    /// The data cache reads go through, if one is on: for its
    /// [`stats`](DataCache::stats), or to [`flush`](DataCache::flush) a disk cache's
    /// pending writes.
    pub fn data_cache(&self) -> Option<&Arc<dyn DataCache>> {
        self.data_cache.as_ref()
    }

    /// Drops an open file or directory handle (what `release`/`releasedir` do), for
    /// callers that cannot await.
    ///
    /// The last handle of a file with changes not in the store (mmap pages written back
    /// after close, a failed upload) uploads them in the background, and keeps them in
    /// the recovery directory if that fails.
    pub fn close_handle(&self, handle: Handle) {
        let Some(removed) = lock(&self.handles).remove(&handle.0) else {
            return;
        };
        let ino = removed.ino();
        if let OpenHandle::File { file, .. } = &removed {
            if self.open_files.drop_file_handle(ino, file) {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    // The inode stays held until the file is saved or kept.
                    let (files, core, file) = (
                        Arc::clone(&self.open_files),
                        Arc::clone(&self.core),
                        Arc::clone(file),
                    );
                    runtime.spawn(async move {
                        files.finish_last_close(ino, &file).await;
                        core.inodes.close(ino);
                    });
                    return;
                }
                self.open_files.keep_unsaved_now(ino, file);
            }
        }
        self.core.inodes.close(ino);
    }

    /// Closes a handle like [`close_handle`](Self::close_handle), waiting for the last
    /// close's upload (or its keeping in the recovery directory).
    pub async fn release_handle(&self, handle: Handle) {
        let Some(removed) = lock(&self.handles).remove(&handle.0) else {
            return;
        };
        let ino = removed.ino();
        if let OpenHandle::File { file, .. } = &removed {
            if self.open_files.drop_file_handle(ino, file) {
                self.open_files.finish_last_close(ino, file).await;
            }
        }
        self.core.inodes.close(ino);
    }

    /// Number of inodes the file system holds (the root included): those the kernel (or a
    /// library caller) has looked up and not forgotten, those open, and at most
    /// [`MAX_UNREFERENCED`](crate::inode::MAX_UNREFERENCED) more shown in listings. For
    /// monitoring and tests.
    pub fn inode_count(&self) -> usize {
        self.core.inodes.len()
    }

    /// The inode of directory `path` without asking the store: for library users creating
    /// a file under a prefix that has no object yet (the directory appears with the file,
    /// as in any object store). Fails if `path` is known to be something else.
    ///
    /// Counts one lookup of the inode, as [`Vfs::lookup`] does: [`forget`](Vfs::forget) it
    /// when done.
    pub fn implicit_dir(&self, path: &FsPath) -> VfsResult<Ino> {
        if let Some(stat) = self
            .open_files
            .open_file_stat(path)
            .or_else(|| self.core.meta.get(path))
        {
            if stat.kind != FileKind::Directory {
                return Err(VfsError::NotADirectory(path.to_string()));
            }
        }
        Ok(self.core.inodes.lookup(path, FileKind::Directory))
    }

    /// Reads through an open file handle as slices of the fetched data, without joining
    /// them: for the library's `File`, which copies into the caller's buffer anyway.
    pub async fn read_chunks(
        &self,
        handle: Handle,
        offset: u64,
        len: u32,
    ) -> VfsResult<Vec<Bytes>> {
        let (file, _) = self.file_of_handle(handle)?;
        self.open_files
            .read_file_chunks(&file, offset, u64::from(len))
            .await
    }

    /// The path of `ino`, for callers that resolved it.
    pub fn path_of(&self, ino: Ino) -> Option<FsPath> {
        self.core.inodes.get(ino).map(|info| info.path)
    }

    /// What `path` is now: from the cache while fresh, else HEAD and LIST at once.
    pub(crate) async fn stat_path(&self, path: &FsPath) -> VfsResult<Stat> {
        if path.is_root() {
            return Ok(Stat::directory(self.core.started));
        }
        if let Some(stat) = self.open_files.open_file_stat(path) {
            return Ok(stat);
        }
        if let Some(stat) = self.core.meta.get(path) {
            return Ok(stat);
        }
        if self.core.meta.is_missing(path) {
            return Err(VfsError::NotFound(path.to_string()));
        }
        let key = self.core.ns.file_key(path)?;
        let list = ListRequest {
            prefix: self.core.ns.dir_prefix(path),
            max_keys: Some(1),
            ..ListRequest::default()
        };
        let (head, listing) =
            futures::join!(self.core.store.head(&key), self.core.store.list(list));
        let listing = listing.map_err(|e| VfsError::from_store(path.as_str(), e))?;
        let stat = if !listing.objects.is_empty() || !listing.common_prefixes.is_empty() {
            // Mode, owner and mtime of a directory live on its `dir/` marker, if any.
            self.directory_stat(path, listing.objects.first()).await?
        } else {
            match head {
                Ok(meta) => Stat::from_head(&meta),
                Err(e) if e.kind == StoreErrorKind::NotFound => {
                    self.core.meta.put_missing(path);
                    return Err(VfsError::NotFound(path.to_string()));
                }
                Err(e) => return Err(VfsError::from_store(path.as_str(), e)),
            }
        };
        self.core.meta.put(path, stat.clone());
        Ok(stat)
    }

    /// Registers `handle`; its inode stays in the table until the handle is closed.
    fn new_handle(&self, handle: OpenHandle) -> Handle {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        if !self.core.inodes.open(handle.ino()) {
            // Every caller opens an inode it holds a lookup of; only one that broke the
            // protocol gets here, and its handle then works by the path it resolved.
            tracing::debug!(ino = handle.ino().0, "a handle opened on a forgotten inode");
        }
        lock(&self.handles).insert(id, handle);
        Handle(id)
    }

    fn dir_handle(&self, handle: Handle) -> VfsResult<Arc<tokio::sync::Mutex<DirStream>>> {
        match lock(&self.handles).get(&handle.0) {
            Some(OpenHandle::Dir { stream, .. }) => Ok(Arc::clone(stream)),
            _ => Err(VfsError::BadHandle),
        }
    }

    /// The open file behind a file handle, and the flags it was opened with.
    pub(crate) fn file_of_handle(&self, handle: Handle) -> VfsResult<(Arc<OpenFile>, OpenFlags)> {
        match lock(&self.handles).get(&handle.0) {
            Some(OpenHandle::File { file, flags, .. }) => Ok((Arc::clone(file), *flags)),
            _ => Err(VfsError::BadHandle),
        }
    }

    /// A new handle on an open file.
    pub(crate) fn new_file_handle(
        &self,
        ino: Ino,
        file: Arc<OpenFile>,
        flags: OpenFlags,
    ) -> Handle {
        self.new_handle(OpenHandle::File { ino, file, flags })
    }

    fn new_dir_stream(&self, path: FsPath, ino: Ino) -> DirStream {
        let parent = self.core.inodes.find(&path.parent()).unwrap_or(Ino::ROOT);
        let prefix = self.core.ns.dir_prefix(&path);
        let mut stream = DirStream {
            path,
            ino,
            parent,
            window: VecDeque::new(),
            produced: 0,
            token: None,
            listing_done: false,
            merger: ListingMerger::new(&prefix),
            cursor: PageCursor::objects(prefix),
            pending: Vec::new(),
            cached: None,
            collected: None,
        };
        self.restart_dir(&mut stream);
        stream
    }

    fn restart_dir(&self, stream: &mut DirStream) {
        stream.restart(&self.core.ns);
        stream.pending = self.open_files.pending_names(&stream.path);
        stream.cached = self.core.meta.listing(&stream.path).map(|l| (l, 0));
        stream.collected = stream.cached.is_none().then(Vec::new);
    }

    /// The next entries of a listing served from the listing cache.
    fn fill_from_cache(&self, stream: &mut DirStream) -> Vec<(String, FsPath, Stat)> {
        let Some((listing, at)) = stream.cached.as_mut() else {
            return Vec::new();
        };
        let end = (*at + self.core.config.list_page_size.max(1) as usize).min(listing.len());
        let page: Vec<(String, FsPath, Stat)> = listing[*at..end]
            .iter()
            .filter_map(|(name, stat)| {
                let file_name = FileName::check(name).ok()?;
                Some((name.clone(), stream.path.join(&file_name), stat.clone()))
            })
            .collect();
        *at = end;
        if end == listing.len() {
            stream.listing_done = true;
        }
        page
    }

    /// Fetches one LIST page into the stream's window.
    async fn fill_dir(&self, stream: &mut DirStream) -> VfsResult<()> {
        let mut listed = if stream.cached.is_some() {
            self.fill_from_cache(stream)
        } else {
            self.fill_from_store(stream).await?
        };
        if !stream.pending.is_empty() {
            stream
                .pending
                .retain(|(name, _)| !listed.iter().any(|(listed, _, _)| listed == name));
            if stream.listing_done {
                for (name, stat) in std::mem::take(&mut stream.pending) {
                    if let Ok(file_name) = FileName::check(&name) {
                        listed.push((name, stream.path.join(&file_name), stat));
                    }
                }
            }
        }
        for (name, path, stat) in listed {
            // A file with local changes shows them, not the store's version.
            let stat = self.open_files.open_file_stat(&path).unwrap_or(stat);
            self.core.meta.put_listed(&path, stat.clone());
            stream.produced += 1;
            stream.window.push_back(WindowEntry {
                entry: DirEntry {
                    ino: UNNUMBERED,
                    name,
                    kind: stat.kind,
                    next_offset: stream.produced,
                    attr: Some(self.core.attr(UNNUMBERED, &stat)),
                },
                path: Some(path),
            });
        }
        Ok(())
    }

    /// Up to `max_entries` entries of the open directory `handle` from `offset` (see
    /// [`Vfs::readdir`]), numbered now; with `counted`, each but `.` and `..` counts one
    /// lookup (`readdirplus`), else the numbers are only shown.
    async fn list_dir(
        &self,
        handle: Handle,
        offset: u64,
        max_entries: usize,
        counted: bool,
    ) -> VfsResult<Vec<DirEntry>> {
        let stream = self.dir_handle(handle)?;
        // One reader of a directory handle at a time: the stream is a cursor.
        let mut stream = stream.lock().await;
        if offset < stream.window_base() {
            self.restart_dir(&mut stream);
        }
        let wanted = offset.saturating_add(max_entries as u64);
        while stream.produced < wanted && !stream.listing_done {
            self.fill_dir(&mut stream).await?;
        }
        while stream
            .window
            .front()
            .is_some_and(|e| e.entry.next_offset <= offset)
        {
            stream.window.pop_front();
        }
        Ok(stream
            .window
            .iter()
            .filter(|e| e.entry.next_offset > offset)
            .take(max_entries)
            .map(|produced| {
                let mut entry = produced.entry.clone();
                if let Some(path) = &produced.path {
                    entry.ino = if counted {
                        self.core.inodes.lookup(path, entry.kind)
                    } else {
                        self.core.inodes.assign(path, entry.kind)
                    };
                    if let Some(attr) = entry.attr.as_mut() {
                        attr.ino = entry.ino;
                    }
                }
                entry
            })
            .collect())
    }

    /// One LIST page of the directory, as entries; the last page stores the whole listing
    /// in the listing cache.
    async fn fill_from_store(
        &self,
        stream: &mut DirStream,
    ) -> VfsResult<Vec<(String, FsPath, Stat)>> {
        let request = ListRequest {
            prefix: self.core.ns.dir_prefix(&stream.path),
            delimiter: Some("/".to_owned()),
            continuation_token: stream.token.take(),
            max_keys: Some(self.core.config.list_page_size),
            start_after: None,
        };
        let page = self
            .core
            .store
            .list(request)
            .await
            .map_err(|e| VfsError::from_store(stream.path.as_str(), e))?;
        stream.token = stream
            .cursor
            .next_page(&page)
            .map_err(|e| VfsError::from_store(stream.path.as_str(), e))?;
        let last_page = stream.token.is_none();
        let mut items = Vec::new();
        stream.merger.push_page(page, &mut items);
        if last_page {
            stream.merger.finish(&mut items);
            stream.listing_done = true;
        }
        // What LIST cannot tell: whether a small object is a symbolic link, or an empty one
        // a fifo, device or socket (the type is in the mode, in the metadata). Such objects
        // are looked at with HEAD, in parallel, unless this version was looked at before;
        // larger objects cannot be links, and special files are empty.
        let mut listed = Vec::with_capacity(items.len());
        for item in items {
            let (name, stat) = match item {
                Listed::Hidden(key, problem) => {
                    self.core.warn_hidden(&key, problem);
                    continue;
                }
                Listed::Dir(name) => {
                    // Keep what the directory's marker said (its mode), if it was read.
                    let previous = FileName::check(&name)
                        .ok()
                        .and_then(|n| self.core.meta.get_any(&stream.path.join(&n)))
                        .filter(|p| p.kind == FileKind::Directory && p.from_head);
                    let stat = previous.unwrap_or_else(|| Stat::directory(self.core.started));
                    (name, stat)
                }
                Listed::File(name, object) => {
                    let Ok(file_name) = FileName::check(&name) else {
                        continue;
                    };
                    let previous = self.core.meta.get_any(&stream.path.join(&file_name));
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
                    && stat.size <= MAX_SYMLINK_TARGET
            })
            .filter_map(|(i, (_, path, _))| Some((i, self.core.ns.file_key(path).ok()?)))
            .collect();
        let store = Arc::clone(&self.core.store);
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
        if let Some(collected) = stream.collected.as_mut() {
            collected.extend(
                listed
                    .iter()
                    .map(|(name, _, stat)| (name.clone(), stat.clone())),
            );
            if collected.len() > MAX_CACHED_LISTING {
                stream.collected = None;
            }
        }
        if stream.listing_done {
            if let Some(collected) = stream.collected.take() {
                self.core.meta.put_listing(&stream.path, collected);
            }
        }
        Ok(listed)
    }
}

impl DirStream {
    /// Back to the first entry.
    fn restart(&mut self, ns: &Namespace) {
        self.window.clear();
        for (ino, name) in [(self.ino, "."), (self.parent, "..")] {
            self.window.push_back(WindowEntry {
                entry: DirEntry {
                    ino,
                    name: name.to_owned(),
                    kind: FileKind::Directory,
                    next_offset: self.window.len() as u64 + 1,
                    attr: None,
                },
                path: None,
            });
        }
        self.produced = 2;
        self.token = None;
        self.listing_done = false;
        let prefix = ns.dir_prefix(&self.path);
        self.merger = ListingMerger::new(&prefix);
        self.cursor = PageCursor::objects(prefix);
    }

    /// Offset before the first entry in the window.
    fn window_base(&self) -> u64 {
        self.window
            .front()
            .map_or(self.produced, |e| e.entry.next_offset - 1)
    }
}

#[async_trait]
impl Vfs for S3Fs {
    async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry> {
        let parent_path = self.core.dir_path(parent)?;
        let name = FileName::from_os(name)?;
        let path = parent_path.join(&name);
        let stat = self.stat_path(&path).await?;
        let ino = self.core.inodes.lookup(&path, stat.kind);
        Ok(self.core.entry(ino, &stat))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        self.core.inodes.forget(ino, nlookup);
    }

    async fn getattr(&self, ino: Ino) -> VfsResult<Entry> {
        let info = self.core.inodes.info(ino)?;
        let stat = self.stat_path(&info.path).await?;
        if stat.kind != info.kind {
            // The path is now something else (another inode); this one is gone.
            self.core.inodes.assign(&info.path, stat.kind);
            return Err(VfsError::ObjectChanged(info.path.to_string()));
        }
        Ok(self.core.entry(ino, &stat))
    }

    async fn setattr(
        &self,
        ino: Ino,
        handle: Option<Handle>,
        changes: SetAttr,
    ) -> VfsResult<Entry> {
        self.do_setattr(ino, handle, changes).await
    }

    async fn readlink(&self, ino: Ino) -> VfsResult<Bytes> {
        let info = self.core.inodes.info(ino)?;
        let stat = self.stat_path(&info.path).await?;
        if stat.kind != FileKind::Symlink {
            return Err(VfsError::InvalidArgument(format!(
                "{} is not a symbolic link",
                info.path
            )));
        }
        let key = self.core.ns.file_key(&info.path)?;
        let request = GetRequest {
            key,
            range: None,
            if_match: stat.etag.clone(),
        };
        let fetched = async { self.core.store.get(request).await?.collect().await };
        fetched
            .await
            .map_err(|e| VfsError::from_store(info.path.as_str(), e))
    }

    async fn opendir(&self, ino: Ino) -> VfsResult<Handle> {
        let path = self.core.dir_path(ino)?;
        let stream = self.new_dir_stream(path, ino);
        Ok(self.new_handle(OpenHandle::Dir {
            ino,
            stream: Arc::new(tokio::sync::Mutex::new(stream)),
        }))
    }

    async fn readdir(
        &self,
        _ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        self.list_dir(handle, offset, max_entries, false).await
    }

    async fn readdirplus(
        &self,
        _ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        self.list_dir(handle, offset, max_entries, true).await
    }

    async fn releasedir(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.close_handle(handle);
        Ok(())
    }

    async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle> {
        self.core.check_not_closing("open")?;
        let info = self.core.inodes.info(ino)?;
        let mut stat = self.stat_path(&info.path).await?;
        match stat.kind {
            FileKind::Directory => return Err(VfsError::IsADirectory(info.path.to_string())),
            FileKind::Symlink => {
                return Err(VfsError::InvalidArgument(format!(
                    "{} is a symbolic link",
                    info.path
                )))
            }
            // The kernel opens these itself: a library caller has no pipe or device to get.
            FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice | FileKind::Socket => {
                return Err(VfsError::InvalidArgument(format!(
                    "{} is a {}",
                    info.path, stat.kind
                )))
            }
            FileKind::File => {}
        }
        let key = self.core.ns.file_key(&info.path)?;
        if storage_class::is_archived(stat.storage_class.as_deref()) && !flags.truncate {
            // Whether an archived object was restored (and for how long) only a fresh HEAD
            // tells.
            let head = self
                .core
                .store
                .head(&key)
                .await
                .map_err(|e| VfsError::from_store(info.path.as_str(), e))?;
            if !head.restored {
                let class = head.storage_class.clone().unwrap_or_default();
                tracing::warn!(key = %key, storage_class = %class,
                    "object is archived; restore it before reading");
                return Err(VfsError::Archived {
                    path: info.path.to_string(),
                    storage_class: class,
                });
            }
            stat = Stat::from_head(&head);
        }
        let file = self
            .open_files
            .open_existing(ino, &info.path, &stat, flags)
            .await?;
        Ok(self.new_file_handle(ino, file, flags))
    }

    async fn read(&self, _ino: Ino, handle: Handle, offset: u64, size: u32) -> VfsResult<Bytes> {
        let (file, _) = self.file_of_handle(handle)?;
        self.open_files
            .read_file(&file, offset, u64::from(size))
            .await
    }

    async fn write(&self, _ino: Ino, handle: Handle, offset: u64, data: Bytes) -> VfsResult<u32> {
        let (file, flags) = self.file_of_handle(handle)?;
        self.open_files.write_file(&file, flags, offset, data).await
    }

    async fn flush(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        let (file, flags) = self.file_of_handle(handle)?;
        // Closing a descriptor that could not write publishes nothing: another writer's
        // unfinished file must not become visible because a reader closed it.
        if !(flags.write || flags.append || flags.truncate) {
            return Ok(());
        }
        self.open_files.upload(&file).await
    }

    async fn fsync(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        let (file, _) = self.file_of_handle(handle)?;
        self.open_files.upload(&file).await
    }

    async fn shutdown(&self, timeout: std::time::Duration) -> crate::vfs::ShutdownReport {
        self.open_files.shutdown_writes(timeout).await
    }

    async fn release(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.release_handle(handle).await;
        Ok(())
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)> {
        self.do_create(parent, name, mode, flags).await
    }

    async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Entry> {
        self.do_mkdir(parent, name, mode).await
    }

    async fn unlink(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.do_unlink(parent, name).await
    }

    async fn rmdir(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.do_rmdir(parent, name).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()> {
        self.do_rename(parent, name, new_parent, new_name, no_replace)
            .await
    }

    async fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Entry> {
        self.do_symlink(parent, name, target).await
    }

    async fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> VfsResult<Entry> {
        self.do_mknod(parent, name, mode, rdev).await
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> VfsResult<Bytes> {
        self.do_getxattr(ino, name).await
    }

    async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>> {
        self.do_listxattr(ino).await
    }

    async fn setxattr(&self, ino: Ino, name: &OsStr, value: Bytes) -> VfsResult<()> {
        self.do_setxattr(ino, name, value).await
    }

    async fn removexattr(&self, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.do_removexattr(ino, name).await
    }

    async fn statfs(&self) -> VfsResult<StatFs> {
        Ok(StatFs::unlimited(self.core.config.block_size))
    }
}
