//! [`BucketsFs`]: a file system whose root lists every bucket, each a directory.
//!
//! Used when a mount names no bucket. Each bucket is served by its own [`S3Fs`], created
//! on first use and kept for the life of the file system. Inode numbers and handles of
//! the bucket file systems are mapped into one space: bucket number `b` (from 1) owns
//! numbers `b << BUCKET_SHIFT | n`, so the mapping is a pure function both ways and a
//! number never changes meaning. Number 1 is the root of the bucket list.

use crate::cache::{self, DataCache};
use crate::config::FsConfig;
use crate::error::{VfsError, VfsResult};
use crate::fs::S3Fs;
use crate::namespace::{FileName, FsPath};
use crate::store::BucketProvider;
use crate::vfs::{
    DirEntry, Entry, FileAttr, FileKind, Handle, Ino, OpenFlags, SetAttr, StatFs, Vfs,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Bits of an inode number or handle that belong to the bucket's own file system.
const BUCKET_SHIFT: u32 = 40;
const LOCAL_MASK: u64 = (1 << BUCKET_SHIFT) - 1;

#[derive(Default)]
struct State {
    /// Bucket file systems by number - 1.
    mounted: Vec<(String, Arc<S3Fs>)>,
    by_name: HashMap<String, usize>,
    /// Last ListBuckets answer and when it was fetched.
    listing: Option<(Vec<String>, Instant)>,
    /// Root directory handles: a snapshot of the bucket names.
    root_handles: HashMap<u64, Vec<String>>,
    next_root_handle: u64,
}

/// The root of all buckets a provider can see.
pub struct BucketsFs {
    provider: Arc<dyn BucketProvider>,
    config: FsConfig,
    /// One data cache for every bucket (keys told apart by bucket name).
    data_cache: Option<Arc<dyn DataCache>>,
    started: SystemTime,
    state: Mutex<State>,
}

impl std::fmt::Debug for BucketsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketsFs")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

fn global(bucket: usize, local: u64) -> u64 {
    ((bucket as u64 + 1) << BUCKET_SHIFT) | local
}

fn split(global: u64) -> (usize, u64) {
    (
        ((global >> BUCKET_SHIFT) as usize).wrapping_sub(1),
        global & LOCAL_MASK,
    )
}

impl BucketsFs {
    /// A root over `provider`; every bucket file system gets `config` (without a prefix).
    /// A data cache that cannot be set up is logged and left out; use
    /// [`try_new`](Self::try_new) to fail instead.
    pub fn new(provider: Arc<dyn BucketProvider>, config: FsConfig) -> Arc<Self> {
        let data_cache = cache::from_config(&config.data_cache).unwrap_or_else(|err| {
            tracing::error!("{err}; running without the data cache");
            None
        });
        Self::assemble(provider, config, data_cache)
    }

    /// Like [`new`](Self::new), but fails if the data cache cannot be set up.
    pub fn try_new(
        provider: Arc<dyn BucketProvider>,
        config: FsConfig,
    ) -> Result<Arc<Self>, cache::CacheError> {
        let data_cache = cache::from_config(&config.data_cache)?;
        Ok(Self::assemble(provider, config, data_cache))
    }

    fn assemble(
        provider: Arc<dyn BucketProvider>,
        config: FsConfig,
        data_cache: Option<Arc<dyn DataCache>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider,
            config: config.with_prefix(""),
            data_cache,
            started: SystemTime::now(),
            state: Mutex::new(State {
                next_root_handle: 1,
                ..State::default()
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state holds plain maps updated in single statements; still consistent.
        crate::sync::lock(&self.state)
    }

    fn root_attr(&self) -> Entry {
        Entry {
            attr: FileAttr {
                ino: Ino::ROOT,
                kind: FileKind::Directory,
                size: 0,
                mtime: self.started,
                perm: self.config.dir_mode,
                uid: self.config.uid,
                gid: self.config.gid,
                nlink: 2,
                blksize: self.config.block_size,
                rdev: 0,
            },
            ttl: self.config.metadata_ttl,
        }
    }

    /// Bucket names, from the cache while fresh.
    async fn bucket_names(&self) -> VfsResult<Vec<String>> {
        if let Some((names, at)) = &self.lock().listing {
            if at.elapsed() < self.config.metadata_ttl {
                return Ok(names.clone());
            }
        }
        let names = self
            .provider
            .list_buckets()
            .await
            .map_err(|e| VfsError::from_store("/", e))?;
        self.lock().listing = Some((names.clone(), Instant::now()));
        Ok(names)
    }

    /// The number of bucket `name`, creating its file system on first use.
    fn bucket_index(&self, name: &str) -> VfsResult<usize> {
        if let Some(&index) = self.lock().by_name.get(name) {
            return Ok(index);
        }
        let store = self
            .provider
            .bucket(name)
            .map_err(|e| VfsError::from_store(name, e))?;
        let fs = S3Fs::build(store, self.config.clone(), self.data_cache.clone(), name);
        let mut state = self.lock();
        if let Some(&index) = state.by_name.get(name) {
            return Ok(index);
        }
        let index = state.mounted.len();
        state.mounted.push((name.to_owned(), fs));
        state.by_name.insert(name.to_owned(), index);
        Ok(index)
    }

    /// The bucket file system owning global number `ino`, and the local number.
    fn route(&self, ino: Ino) -> VfsResult<(usize, Arc<S3Fs>, Ino)> {
        let (bucket, local) = split(ino.0);
        let state = self.lock();
        let (_, fs) = state
            .mounted
            .get(bucket)
            .ok_or_else(|| VfsError::NotFound(format!("inode {}", ino.0)))?;
        Ok((bucket, Arc::clone(fs), Ino(local)))
    }

    fn to_global(bucket: usize, mut entry: Entry) -> Entry {
        entry.attr.ino = Ino(global(bucket, entry.attr.ino.0));
        entry
    }

    /// Entries listed by bucket `bucket` in its directory `local`, with global numbers.
    fn globalize(bucket: usize, local: Ino, mut entries: Vec<DirEntry>) -> Vec<DirEntry> {
        for entry in &mut entries {
            entry.ino = if local == Ino::ROOT && entry.name == ".." {
                Ino::ROOT
            } else {
                Ino(global(bucket, entry.ino.0))
            };
            if let Some(attr) = entry.attr.as_mut() {
                attr.ino = entry.ino;
            }
        }
        entries
    }

    /// Number of inodes held across the bucket file systems opened so far (each counts
    /// its root; see [`S3Fs::inode_count`]), plus the bucket list's root.
    pub fn inode_count(&self) -> usize {
        let mounted: Vec<Arc<S3Fs>> = self
            .lock()
            .mounted
            .iter()
            .map(|(_, fs)| Arc::clone(fs))
            .collect();
        1 + mounted.iter().map(|fs| fs.inode_count()).sum::<usize>()
    }

    fn refuse(&self, what: &str) -> VfsError {
        VfsError::ReadOnly(format!("{what}: the bucket list cannot be changed"))
    }
}

#[async_trait]
impl Vfs for BucketsFs {
    async fn shutdown(&self, timeout: std::time::Duration) -> crate::vfs::ShutdownReport {
        let mounted: Vec<Arc<S3Fs>> = self
            .lock()
            .mounted
            .iter()
            .map(|(_, fs)| Arc::clone(fs))
            .collect();
        let reports =
            futures::future::join_all(mounted.iter().map(|fs| fs.shutdown(timeout))).await;
        let mut all = crate::vfs::ShutdownReport::default();
        for report in reports {
            all.merge(report);
        }
        all
    }

    async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry> {
        if parent != Ino::ROOT {
            let (bucket, fs, local) = self.route(parent)?;
            return Ok(Self::to_global(bucket, fs.lookup(local, name).await?));
        }
        let name = FileName::from_os(name)?;
        if !self
            .bucket_names()
            .await?
            .iter()
            .any(|b| b == name.as_str())
        {
            return Err(VfsError::NotFound(format!("/{name}")));
        }
        let bucket = self.bucket_index(name.as_str())?;
        let (_, fs, _) = self.route(Ino(global(bucket, Ino::ROOT.0)))?;
        Ok(Self::to_global(bucket, fs.getattr(Ino::ROOT).await?))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        if let Ok((_, fs, local)) = self.route(ino) {
            fs.forget(local, nlookup);
        }
    }

    async fn getattr(&self, ino: Ino) -> VfsResult<Entry> {
        if ino == Ino::ROOT {
            return Ok(self.root_attr());
        }
        let (bucket, fs, local) = self.route(ino)?;
        Ok(Self::to_global(bucket, fs.getattr(local).await?))
    }

    async fn setattr(
        &self,
        ino: Ino,
        handle: Option<Handle>,
        changes: SetAttr,
    ) -> VfsResult<Entry> {
        if ino == Ino::ROOT {
            return Err(self.refuse("setattr"));
        }
        let (bucket, fs, local) = self.route(ino)?;
        let handle = handle.map(|h| Handle(split(h.0).1));
        Ok(Self::to_global(
            bucket,
            fs.setattr(local, handle, changes).await?,
        ))
    }

    async fn readlink(&self, ino: Ino) -> VfsResult<Bytes> {
        let (_, fs, local) = self.route(ino)?;
        fs.readlink(local).await
    }

    async fn opendir(&self, ino: Ino) -> VfsResult<Handle> {
        if ino == Ino::ROOT {
            let names = self.bucket_names().await?;
            let mut state = self.lock();
            let id = state.next_root_handle;
            state.next_root_handle += 1;
            state.root_handles.insert(id, names);
            return Ok(Handle(id));
        }
        let (bucket, fs, local) = self.route(ino)?;
        Ok(Handle(global(bucket, fs.opendir(local).await?.0)))
    }

    async fn readdir(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        if ino == Ino::ROOT {
            let names = self
                .lock()
                .root_handles
                .get(&handle.0)
                .cloned()
                .ok_or(VfsError::BadHandle)?;
            let mut entries = vec![
                DirEntry {
                    ino: Ino::ROOT,
                    name: ".".to_owned(),
                    kind: FileKind::Directory,
                    next_offset: 1,
                    attr: None,
                },
                DirEntry {
                    ino: Ino::ROOT,
                    name: "..".to_owned(),
                    kind: FileKind::Directory,
                    next_offset: 2,
                    attr: None,
                },
            ];
            for (i, name) in names.iter().enumerate() {
                if FileName::check(name).is_err() {
                    continue;
                }
                let bucket = self.bucket_index(name)?;
                entries.push(DirEntry {
                    ino: Ino(global(bucket, Ino::ROOT.0)),
                    name: name.clone(),
                    kind: FileKind::Directory,
                    next_offset: i as u64 + 3,
                    attr: None,
                });
            }
            return Ok(entries
                .into_iter()
                .filter(|e| e.next_offset > offset)
                .take(max_entries)
                .collect());
        }
        let (bucket, fs, local) = self.route(ino)?;
        let local_handle = Handle(split(handle.0).1);
        let entries = fs.readdir(local, local_handle, offset, max_entries).await?;
        Ok(Self::globalize(bucket, local, entries))
    }

    async fn readdirplus(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        if ino == Ino::ROOT {
            // Bucket roots are never dropped, so handing them out counts nothing.
            let mut entries = self.readdir(ino, handle, offset, max_entries).await?;
            for entry in &mut entries {
                if entry.name != "." && entry.name != ".." {
                    entry.attr = Some(self.getattr(entry.ino).await?.attr);
                }
            }
            return Ok(entries);
        }
        let (bucket, fs, local) = self.route(ino)?;
        let local_handle = Handle(split(handle.0).1);
        let entries = fs
            .readdirplus(local, local_handle, offset, max_entries)
            .await?;
        Ok(Self::globalize(bucket, local, entries))
    }

    async fn releasedir(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        if ino == Ino::ROOT {
            self.lock().root_handles.remove(&handle.0);
            return Ok(());
        }
        let (_, fs, local) = self.route(ino)?;
        fs.releasedir(local, Handle(split(handle.0).1)).await
    }

    async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle> {
        if ino == Ino::ROOT {
            return Err(VfsError::IsADirectory("/".to_owned()));
        }
        let (bucket, fs, local) = self.route(ino)?;
        Ok(Handle(global(bucket, fs.open(local, flags).await?.0)))
    }

    async fn read(&self, ino: Ino, handle: Handle, offset: u64, size: u32) -> VfsResult<Bytes> {
        let (_, fs, local) = self.route(ino)?;
        fs.read(local, Handle(split(handle.0).1), offset, size)
            .await
    }

    async fn write(&self, ino: Ino, handle: Handle, offset: u64, data: Bytes) -> VfsResult<u32> {
        let (_, fs, local) = self.route(ino)?;
        fs.write(local, Handle(split(handle.0).1), offset, data)
            .await
    }

    async fn flush(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        let (_, fs, local) = self.route(ino)?;
        fs.flush(local, Handle(split(handle.0).1)).await
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
        let (bucket_in, fs, local_in) = self.route(ino_in)?;
        let (bucket_out, _, local_out) = self.route(ino_out)?;
        if bucket_in != bucket_out {
            // Between buckets: through the handles, each on its own bucket.
            return crate::vfs::copy_through_handles(
                self, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
            )
            .await;
        }
        let (fh_in, fh_out) = (Handle(split(fh_in.0).1), Handle(split(fh_out.0).1));
        fs.copy_file_range(
            local_in, fh_in, offset_in, local_out, fh_out, offset_out, len,
        )
        .await
    }

    async fn fsync(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        let (_, fs, local) = self.route(ino)?;
        fs.fsync(local, Handle(split(handle.0).1)).await
    }

    async fn release(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        let (_, fs, local) = self.route(ino)?;
        fs.release(local, Handle(split(handle.0).1)).await
    }

    fn release_detached(&self, ino: Ino, handle: Handle) {
        if let Ok((_, fs, local)) = self.route(ino) {
            fs.release_detached(local, Handle(split(handle.0).1));
        }
    }

    async fn read_chunks(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        size: u32,
    ) -> VfsResult<Vec<Bytes>> {
        let (_, fs, local) = self.route(ino)?;
        fs.read_chunks(local, Handle(split(handle.0).1), offset, size)
            .await
    }

    fn implicit_dir(&self, path: &FsPath) -> VfsResult<Ino> {
        // The first component is the bucket (which must exist: buckets are not made by
        // writing into them), the rest a directory inside it.
        let mut parts = path.as_str().splitn(2, '/');
        let bucket_name = parts.next().unwrap_or_default();
        if bucket_name.is_empty() {
            return Ok(Ino::ROOT);
        }
        let known = self
            .lock()
            .listing
            .as_ref()
            .is_some_and(|(names, _)| names.iter().any(|b| b == bucket_name));
        if !known {
            return Err(VfsError::NotFound(format!("/{bucket_name}")));
        }
        let bucket = self.bucket_index(bucket_name)?;
        let (_, fs, _) = self.route(Ino(global(bucket, Ino::ROOT.0)))?;
        let rest = FsPath::parse(parts.next().unwrap_or_default())?;
        Ok(Ino(global(bucket, fs.implicit_dir(&rest)?.0)))
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)> {
        if parent == Ino::ROOT {
            return Err(self.refuse("create"));
        }
        let (bucket, fs, local) = self.route(parent)?;
        let (entry, handle) = fs.create(local, name, mode, flags).await?;
        Ok((
            Self::to_global(bucket, entry),
            Handle(global(bucket, handle.0)),
        ))
    }

    async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Entry> {
        if parent == Ino::ROOT {
            return Err(self.refuse("mkdir"));
        }
        let (bucket, fs, local) = self.route(parent)?;
        Ok(Self::to_global(bucket, fs.mkdir(local, name, mode).await?))
    }

    async fn unlink(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        if parent == Ino::ROOT {
            return Err(self.refuse("unlink"));
        }
        let (_, fs, local) = self.route(parent)?;
        fs.unlink(local, name).await
    }

    async fn rmdir(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        if parent == Ino::ROOT {
            return Err(self.refuse("rmdir"));
        }
        let (_, fs, local) = self.route(parent)?;
        fs.rmdir(local, name).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()> {
        if parent == Ino::ROOT || new_parent == Ino::ROOT {
            return Err(self.refuse("rename"));
        }
        let (bucket, fs, local) = self.route(parent)?;
        let (new_bucket, _, new_local) = self.route(new_parent)?;
        if bucket != new_bucket {
            return Err(VfsError::CrossDevice("rename between buckets".to_owned()));
        }
        fs.rename(local, name, new_local, new_name, no_replace)
            .await
    }

    async fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Entry> {
        if parent == Ino::ROOT {
            return Err(self.refuse("symlink"));
        }
        let (bucket, fs, local) = self.route(parent)?;
        Ok(Self::to_global(
            bucket,
            fs.symlink(local, name, target).await?,
        ))
    }

    async fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> VfsResult<Entry> {
        if parent == Ino::ROOT {
            return Err(self.refuse("mknod"));
        }
        let (bucket, fs, local) = self.route(parent)?;
        Ok(Self::to_global(
            bucket,
            fs.mknod(local, name, mode, rdev).await?,
        ))
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> VfsResult<Bytes> {
        if ino == Ino::ROOT {
            return Err(VfsError::NoAttribute(name.to_string_lossy().into_owned()));
        }
        let (_, fs, local) = self.route(ino)?;
        fs.getxattr(local, name).await
    }

    async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>> {
        if ino == Ino::ROOT {
            return Ok(Vec::new());
        }
        let (_, fs, local) = self.route(ino)?;
        fs.listxattr(local).await
    }

    async fn setxattr(&self, ino: Ino, name: &OsStr, value: Bytes) -> VfsResult<()> {
        if ino == Ino::ROOT {
            return Err(self.refuse("setxattr"));
        }
        let (_, fs, local) = self.route(ino)?;
        fs.setxattr(local, name, value).await
    }

    async fn removexattr(&self, ino: Ino, name: &OsStr) -> VfsResult<()> {
        if ino == Ino::ROOT {
            return Err(self.refuse("removexattr"));
        }
        let (_, fs, local) = self.route(ino)?;
        fs.removexattr(local, name).await
    }

    async fn statfs(&self) -> VfsResult<StatFs> {
        Ok(StatFs::unlimited(self.config.block_size))
    }
}
