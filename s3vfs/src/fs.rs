//! [`S3Fs`]: the file system over one bucket (and prefix), implementing [`Vfs`].
//!
//! It owns its components and dispatches each call to them:
//! - [`Core`](crate::core::Core): the store, the configuration, the namespace, the inode
//!   table, the metadata caches, the name locks and the memory budget;
//! - `open_files`: every open file (its local changes, streamed and staged uploads, the
//!   last close's upload or recovery);
//! - `handles`: the open file and directory handles;
//! - the operations (`ops/`: lookups, listings, opening, and every namespace change) work
//!   on those three, borrowed for one call.

use crate::cache::{self, CachingStore, DataCache};
use crate::config::FsConfig;
use crate::core::Core;
use crate::error::VfsResult;
use crate::handles::HandleTable;
use crate::namespace::FsPath;
use crate::open_files::OpenFiles;
use crate::ops::Ops;
use crate::store::Backend;
use crate::vfs::{
    self, DirEntry, Entry, Handle, Ino, OpenFlags, SetAttr, ShutdownReport, StatFs, Vfs,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

/// The file system over one bucket.
///
/// It owns its components: the shared core (store, caches, inode table), the open files,
/// and the handle table; the operations work on them.
pub struct S3Fs {
    core: Arc<Core>,
    /// The data cache `store` reads through, if any.
    data_cache: Option<Arc<dyn DataCache>>,
    open_files: Arc<OpenFiles>,
    handles: HandleTable,
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
    pub fn new(store: Arc<dyn Backend>, config: FsConfig) -> Arc<Self> {
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
        store: Arc<dyn Backend>,
        config: FsConfig,
    ) -> Result<Arc<Self>, cache::CacheError> {
        let data_cache = cache::from_config(&config.data_cache)?;
        Ok(Self::build(store, config, data_cache, ""))
    }

    /// A file system whose reads are cached in `data_cache` (any [`DataCache`]
    /// implementation, in blocks of `config.data_cache.block_size` bytes), whatever the
    /// sizes in `config.data_cache` say.
    pub fn with_data_cache(
        store: Arc<dyn Backend>,
        config: FsConfig,
        data_cache: Arc<dyn DataCache>,
    ) -> Arc<Self> {
        Self::build(store, config, Some(data_cache), "")
    }

    /// A file system over `store`, its pinned reads cached in `data_cache` (if any) under
    /// `scope` (what tells this store's keys from those of other stores sharing the cache).
    pub(crate) fn build(
        store: Arc<dyn Backend>,
        config: FsConfig,
        data_cache: Option<Arc<dyn DataCache>>,
        scope: &str,
    ) -> Arc<Self> {
        let store: Arc<dyn Backend> = match &data_cache {
            Some(data_cache) => Arc::new(CachingStore::new(
                store,
                Arc::clone(data_cache),
                config.data_cache.block_size,
                scope,
            )),
            None => store,
        };
        let core = Arc::new(Core::new(store, config));
        sweep_metadata_while_alive(&core);
        Arc::new(Self {
            open_files: Arc::new(OpenFiles::new(Arc::clone(&core))),
            core,
            data_cache,
            handles: HandleTable::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &FsConfig {
        &self.core.config
    }

    /// The store underneath (wrapped in a [`CachingStore`] when a data cache is on).
    pub fn store(&self) -> &Arc<dyn Backend> {
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
        self.ops().close_handle(handle);
    }

    /// Closes a handle like [`close_handle`](Self::close_handle), waiting for the last
    /// close's upload (or its keeping in the recovery directory).
    pub async fn release_handle(&self, handle: Handle) {
        self.ops().release_handle(handle).await;
    }

    /// Number of inodes the file system holds (the root included): those the kernel (or a
    /// library caller) has looked up and not forgotten, those open, and at most
    /// 65,536 more shown in listings. For monitoring and tests.
    pub fn inode_count(&self) -> usize {
        self.core.inodes.len()
    }

    /// Entries the metadata caches hold: attributes, "no such file" answers, names of
    /// cached listings and directories whose contents are known. For monitoring and
    /// tests; expired entries go at the next periodic sweep (every 30 s).
    pub fn cached_metadata_entries(&self) -> usize {
        let (stats, missing, listed, presences) = self.core.meta.sizes();
        stats + missing + listed + presences
    }

    /// The path of `ino`, for callers that resolved it.
    pub fn path_of(&self, ino: Ino) -> Option<FsPath> {
        self.core.inodes.get(ino).map(|info| info.path)
    }

    /// The operations, on this file system's components.
    fn ops(&self) -> Ops<'_> {
        Ops {
            core: &self.core,
            open_files: &self.open_files,
            handles: &self.handles,
        }
    }
}

#[async_trait]
impl Vfs for S3Fs {
    async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry> {
        self.ops().lookup(parent, name).await
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        self.core.inodes.forget(ino, nlookup);
    }

    async fn getattr(&self, ino: Ino) -> VfsResult<Entry> {
        self.ops().getattr(ino).await
    }

    async fn setattr(
        &self,
        ino: Ino,
        handle: Option<Handle>,
        changes: SetAttr,
    ) -> VfsResult<Entry> {
        self.ops().setattr(ino, handle, changes).await
    }

    async fn readlink(&self, ino: Ino) -> VfsResult<Bytes> {
        self.ops().readlink(ino).await
    }

    async fn opendir(&self, ino: Ino) -> VfsResult<Handle> {
        self.ops().opendir(ino).await
    }

    async fn readdir(
        &self,
        _ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        self.ops()
            .list_dir(handle, offset, max_entries, false)
            .await
    }

    async fn readdirplus(
        &self,
        _ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        self.ops().list_dir(handle, offset, max_entries, true).await
    }

    async fn releasedir(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.ops().close_handle(handle);
        Ok(())
    }

    async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle> {
        self.ops().open(ino, flags).await
    }

    async fn read(&self, _ino: Ino, handle: Handle, offset: u64, size: u32) -> VfsResult<Bytes> {
        let (file, _) = self.handles.file(handle)?;
        self.open_files
            .read_file(&file, offset, u64::from(size))
            .await
    }

    async fn write(&self, _ino: Ino, handle: Handle, offset: u64, data: Bytes) -> VfsResult<u32> {
        let (file, flags) = self.handles.file(handle)?;
        self.open_files.write_file(&file, flags, offset, data).await
    }

    async fn flush(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.ops().flush(handle).await
    }

    async fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Handle,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Handle,
        offset_out: u64,
        len: u64,
    ) -> VfsResult<u64> {
        let server_side = self
            .ops()
            .copy_file_range(fh_in, offset_in, fh_out, offset_out, len)
            .await?;
        match server_side {
            Some(copied) => Ok(copied),
            None => {
                vfs::copy_through_handles(
                    self, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
                )
                .await
            }
        }
    }

    async fn fsync(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        let (file, _) = self.handles.file(handle)?;
        self.open_files.upload(&file).await
    }

    async fn shutdown(&self, timeout: std::time::Duration) -> ShutdownReport {
        self.open_files.shutdown_writes(timeout).await
    }

    async fn release(&self, _ino: Ino, handle: Handle) -> VfsResult<()> {
        self.ops().release_handle(handle).await;
        Ok(())
    }

    fn release_detached(&self, _ino: Ino, handle: Handle) {
        self.ops().close_handle(handle);
    }

    async fn read_chunks(
        &self,
        _ino: Ino,
        handle: Handle,
        offset: u64,
        size: u32,
    ) -> VfsResult<Vec<Bytes>> {
        let (file, _) = self.handles.file(handle)?;
        self.open_files
            .read_file_chunks(&file, offset, u64::from(size))
            .await
    }

    fn implicit_dir(&self, path: &FsPath) -> VfsResult<Ino> {
        self.ops().implicit_dir(path)
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)> {
        self.ops().create(parent, name, mode, flags).await
    }

    async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Entry> {
        self.ops().mkdir(parent, name, mode).await
    }

    async fn unlink(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.ops().unlink(parent, name).await
    }

    async fn rmdir(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        self.ops().rmdir(parent, name).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()> {
        self.ops()
            .rename(parent, name, new_parent, new_name, no_replace)
            .await
    }

    async fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Entry> {
        self.ops().symlink(parent, name, target).await
    }

    async fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> VfsResult<Entry> {
        self.ops().mknod(parent, name, mode, rdev).await
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> VfsResult<Bytes> {
        self.ops().getxattr(ino, name).await
    }

    async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>> {
        self.ops().listxattr(ino).await
    }

    async fn setxattr(&self, ino: Ino, name: &OsStr, value: Bytes) -> VfsResult<()> {
        self.ops().setxattr(ino, name, value).await
    }

    async fn removexattr(&self, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.ops().removexattr(ino, name).await
    }

    async fn statfs(&self) -> VfsResult<StatFs> {
        Ok(StatFs::unlimited(self.core.config.block_size))
    }
}

/// How often the metadata caches are swept of expired entries when nothing else sweeps
/// them (see [`MetaCache::sweep_expired`](crate::meta::MetaCache::sweep_expired)).
const METADATA_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Sweeps `core`'s metadata caches every [`METADATA_SWEEP_INTERVAL`] (or TTL, if longer)
/// on the current tokio runtime, until the file system is dropped. Without a runtime the
/// caches are swept only as they grow.
fn sweep_metadata_while_alive(core: &Arc<Core>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = METADATA_SWEEP_INTERVAL.max(core.config.metadata_ttl);
    let core = Arc::downgrade(core);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else {
                return;
            };
            core.meta
                .sweep_expired(|path| core.inodes.find(path).is_some());
            let (stats, missing, listed, presences) = core.meta.sizes();
            tracing::debug!(
                inodes = core.inodes.len(),
                stats,
                missing,
                listed,
                presences,
                "metadata caches swept"
            );
        }
    });
}
