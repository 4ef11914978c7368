//! [`VaultFs`]: the vault layout's operations behind the [`Vfs`] trait.
//!
//! Inode numbers are the vault's own (random, 1 the root), so there is no inode table:
//! `forget` has nothing to drop. Directories are their inode objects; an entry is created,
//! renamed or removed by one If-Match rewrite of each directory it touches. An open file
//! holds the version of its inode it reads and its unsaved writes ([`Pending`]); a flush
//! stores the changed regions' chunks, then the inode If-Match, and on a lost race lays
//! the same writes over the new version.
//!
//! Each open file has an async lock, held across its reads and flushes: it orders one
//! file's writes, reads and flushes as an inode lock does in a kernel. The maps of open
//! files and handles are plain locks, never held across an await.
//!
//! Reads go through the chunk cache, where an open file read sequentially has the chunks
//! past its reads fetched ahead ([`Prefetcher`]); listings read their entries' inodes
//! concurrently, batch by batch, and give their attributes (`readdirplus` without a lookup
//! per entry).

use super::chunker::ChunkParams;
use super::chunks::Chunks;
use super::crypto::Keys;
use super::error::VaultError;
use super::file::Pending;
use super::inode::{self, Entry as DirEntryMeta, Inode, Kind, Value};
use super::io::Location;
use super::meta::{Inodes, Versioned, MAX_ATTEMPTS};
use super::read_ahead::{Prefetcher, ReadAhead};
use super::recover;
use super::superblock;
use super::VaultConfig;
use crate::attrs::kind_of_mode;
use crate::error::{VfsError, VfsResult};
use crate::namespace::{FileName, FsPath};
use crate::recovery::{Kept, RecoveredFile, RecoveryDir, RecoveryError};
use crate::store::Backend;
use crate::vfs::{
    is_user_xattr, DirEntry, Entry, FileAttr, FileKind, Handle, Ino, OpenFlags, SetAttr,
    ShutdownReport, StatFs, Vfs,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The root directory's inode number.
pub(crate) const ROOT: u64 = 1;
/// How long a shutdown waits for a busy file before it reports its changes lost.
const SHUTDOWN_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How deep a rename's check for a directory moved into itself walks up.
const MAX_DEPTH: usize = 4096;

/// A file system in the vault layout over one bucket and prefix.
///
/// Cheap to share behind an `Arc`; every call may run concurrently.
#[derive(Debug)]
pub struct VaultFs {
    core: Arc<Core>,
}

#[derive(Debug)]
struct Core {
    inodes: Inodes,
    chunks: Arc<Chunks>,
    prefetcher: Prefetcher,
    chunking: ChunkParams,
    config: VaultConfig,
    /// Open files by inode: how many handles, and the file.
    open: Mutex<HashMap<u64, (usize, SharedFile)>>,
    handles: Mutex<HashMap<u64, Opened>>,
    /// The parent of each directory this host looked up (for `..` and rename's check).
    parents: Mutex<HashMap<u64, u64>>,
    /// The last version of each inode whose last name went while a handle here had it
    /// open: what getattr and setattr of it see (fstat, fchmod), as on a local file
    /// system, until its last handle closes. The bucket no longer holds it.
    unlinked: Mutex<HashMap<u64, Inode>>,
    next_handle: AtomicU64,
    shutting_down: AtomicBool,
}

/// An open file, shared by its handles.
type SharedFile = Arc<tokio::sync::Mutex<OpenFile>>;

/// What a handle has open.
#[derive(Clone, Debug)]
enum Opened {
    File {
        ino: u64,
        read: bool,
        write: bool,
        append: bool,
    },
    Dir {
        ino: u64,
        entries: Arc<Vec<(String, DirEntryMeta)>>,
    },
}

/// An open file: the inode version it is laid over, and its unsaved changes.
#[derive(Debug)]
struct OpenFile {
    base: Versioned,
    pending: Pending,
    /// When it was last written (its `mtime` once stored).
    written_at: SystemTime,
    /// Its last name is gone: changes are not stored.
    unlinked: bool,
    /// Whether it is read sequentially, and the chunks fetched ahead of its reader.
    read_ahead: ReadAhead,
}

impl OpenFile {
    /// The file as version `base` has it, unchanged.
    fn over(base: Versioned) -> Self {
        Self {
            pending: Pending::clean(base.inode.size),
            base,
            written_at: SystemTime::now(),
            unlinked: false,
            read_ahead: ReadAhead::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl VaultFs {
    /// Makes a new vault at `prefix` of `store`, with `passphrase` and the costs and chunk
    /// sizes of `config`, and opens it. A vault there already is
    /// [`VaultError::AlreadyExists`].
    pub async fn init(
        store: Arc<dyn Backend>,
        prefix: &str,
        passphrase: &[u8],
        config: VaultConfig,
    ) -> Result<Self, VaultError> {
        config.kdf.validate()?;
        let location = Location::checked(store, prefix)?;
        let unlocked =
            superblock::create(&location, passphrase, config.kdf, config.chunking).await?;
        Self::start(location, unlocked, config).await
    }

    /// Opens the vault at `prefix` of `store` with `passphrase`.
    pub async fn open(
        store: Arc<dyn Backend>,
        prefix: &str,
        passphrase: &[u8],
        config: VaultConfig,
    ) -> Result<Self, VaultError> {
        let location = Location::checked(store, prefix)?;
        let unlocked = superblock::unlock(&location, passphrase).await?;
        Self::start(location, unlocked, config).await
    }

    /// Opens the vault's parts; writes the root directory if it is missing (a crash of
    /// `init` between the superblock and the root).
    async fn start(
        location: Location,
        unlocked: superblock::Unlocked,
        config: VaultConfig,
    ) -> Result<Self, VaultError> {
        let keys = Arc::new(unlocked.keys);
        let chunks = Arc::new(Chunks::new(
            location.clone(),
            Arc::clone(&keys) as Arc<Keys>,
            config.chunk_cache_bytes,
            config.gc_grace_min,
        ));
        let core = Core {
            inodes: Inodes::new(
                location,
                Arc::clone(&keys),
                config.metadata_cache,
                config.metadata_ttl,
            ),
            prefetcher: Prefetcher::new(Arc::clone(&chunks), &config),
            chunks,
            chunking: unlocked.chunking,
            config,
            open: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            parents: Mutex::new(HashMap::new()),
            unlinked: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        };
        match core.inodes.fetch(ROOT).await {
            Ok(_) => {}
            Err(VfsError::NotFound(_)) => {
                let root = Inode::new(ROOT, Kind::Dir, 0o755, core.config.uid, core.config.gid);
                match core.inodes.create(root).await {
                    Ok(_) | Err(VfsError::Exists(_)) => {}
                    Err(err) => return Err(vault_error("root directory", err)),
                }
            }
            Err(err) => return Err(vault_error("root directory", err)),
        }
        Ok(Self {
            core: Arc::new(core),
        })
    }
}

/// A file-system error met while opening a vault, as a [`VaultError`].
fn vault_error(what: &str, err: VfsError) -> VaultError {
    match err {
        VfsError::Corrupt(reason) => VaultError::corrupt(what, reason),
        other => VaultError::Config(format!("{what}: {other}")),
    }
}

impl Core {
    fn entry(&self, attr: FileAttr) -> Entry {
        Entry {
            attr,
            ttl: self.config.metadata_ttl,
        }
    }

    fn check_running(&self) -> VfsResult<()> {
        if self.shutting_down.load(Ordering::Acquire) {
            Err(VfsError::ShuttingDown("the vault is shutting down".into()))
        } else {
            Ok(())
        }
    }

    fn open_file(&self, ino: u64) -> Option<SharedFile> {
        lock(&self.open).get(&ino).map(|(_, file)| Arc::clone(file))
    }

    fn handle(&self, handle: Handle) -> VfsResult<Opened> {
        lock(&self.handles)
            .get(&handle.0)
            .cloned()
            .ok_or(VfsError::BadHandle)
    }

    fn new_handle(&self, opened: Opened) -> Handle {
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(handle, opened);
        Handle(handle)
    }

    /// Whether a handle here has `ino` open.
    fn is_open(&self, ino: u64) -> bool {
        self.open_file(ino).is_some()
            || lock(&self.handles)
                .values()
                .any(|opened| matches!(opened, Opened::Dir { ino: dir, .. } if *dir == ino))
    }

    /// Forgets the last version of `ino` kept since its last name went, once no handle
    /// has it open.
    fn forget_unlinked_once_closed(&self, ino: u64) {
        let kept = lock(&self.unlinked).contains_key(&ino);
        if kept && !self.is_open(ino) {
            lock(&self.unlinked).remove(&ino);
        }
    }

    /// The attributes of `ino`, with an open file's unsaved size and time.
    async fn attr(&self, ino: u64) -> VfsResult<FileAttr> {
        let mut attr = match self.inodes.get(ino).await {
            Ok(found) => found.inode.attr(self.config.block_size),
            Err(VfsError::NotFound(what)) => lock(&self.unlinked)
                .get(&ino)
                .ok_or(VfsError::NotFound(what))?
                .attr(self.config.block_size),
            Err(err) => return Err(err),
        };
        if let Some(file) = self.open_file(ino) {
            let file = file.lock().await;
            attr.size = file.pending.size(&file.base.inode);
            if file.pending.is_dirty() {
                attr.mtime = file.written_at;
            }
        }
        Ok(attr)
    }

    /// The directory `ino`, or `ENOTDIR`.
    async fn dir(&self, ino: u64) -> VfsResult<Versioned> {
        let dir = self.inodes.get(ino).await?;
        if dir.inode.kind != Kind::Dir {
            return Err(VfsError::NotADirectory(format!("inode {ino}")));
        }
        Ok(dir)
    }

    /// Up to `max_entries` entries of the directory open as `handle` (inode `ino`) from
    /// `offset`, `.` and `..` first; with `with_attrs`, each other entry's attributes or
    /// the error reading them. The inodes of this batch only are read (memory follows the
    /// batch, not the directory), `listing_concurrency` at once, into the inode cache, so
    /// that a `getattr` or `lookup` that follows within the TTL asks the store nothing.
    async fn listing(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
        with_attrs: bool,
    ) -> VfsResult<Vec<(DirEntry, Option<VfsResult<FileAttr>>)>> {
        let Opened::Dir {
            ino: opened,
            entries,
        } = self.handle(handle)?
        else {
            return Err(VfsError::BadHandle);
        };
        if opened != ino.0 {
            return Err(VfsError::BadHandle);
        }
        let parent = if ino.0 == ROOT {
            ROOT
        } else {
            lock(&self.parents).get(&ino.0).copied().unwrap_or(ino.0)
        };
        let dots = [(".", ino.0), ("..", parent)]
            .into_iter()
            .map(|(name, ino)| (name.to_owned(), ino, FileKind::Directory, false));
        let listed = entries
            .iter()
            .map(|(name, entry)| (name.clone(), entry.ino, entry.kind.file_kind(), true));
        let batch: Vec<(usize, (String, u64, FileKind, bool))> = dots
            .chain(listed)
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(max_entries)
            .collect();
        {
            // What a lookup of each subdirectory would have learnt (for `..` and rename's
            // check), unless this host knows better: the listing is as of the opendir, a
            // rename since then is not in it.
            let mut parents = lock(&self.parents);
            for (_, (_, child, kind, named)) in &batch {
                if *named && *kind == FileKind::Directory {
                    parents.entry(*child).or_insert(ino.0);
                }
            }
        }
        let listed = futures::stream::iter(batch)
            .map(|(at, (name, child, kind, named))| async move {
                let attr = if named && with_attrs {
                    Some(self.attr(child).await)
                } else {
                    None
                };
                let entry = DirEntry {
                    ino: Ino(child),
                    name,
                    kind,
                    next_offset: at as u64 + 1,
                    attr: None,
                };
                (entry, attr)
            })
            .buffered(self.config.listing_concurrency.max(1))
            .collect()
            .await;
        Ok(listed)
    }

    /// Writes a new inode made by `make` from a fresh number (another is drawn in the
    /// unlikely case the number is taken).
    async fn create_inode(&self, make: impl Fn(u64) -> Inode) -> VfsResult<Versioned> {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let ino = loop {
                let candidate: u64 = rand::random();
                if candidate > ROOT {
                    break candidate;
                }
            };
            match self.inodes.create(make(ino)).await {
                Err(VfsError::Exists(what)) => last = Some(what),
                other => return other,
            }
        }
        Err(VfsError::Exists(last.unwrap_or_default()))
    }

    /// Creates `name` in `parent` as a new inode of `kind` with `mode`'s permission bits,
    /// owned by the configured owner, finished by `fill`: the inode first, then the entry
    /// (FORMAT.md, crash ordering). Counts nothing (no inode table).
    async fn make_node(
        &self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        mode: u32,
        fill: impl Fn(&mut Inode),
    ) -> VfsResult<Versioned> {
        let (uid, gid) = (self.config.uid, self.config.gid);
        let make = |ino| {
            let mut node = Inode::new(ino, kind, perm(mode), uid, gid);
            fill(&mut node);
            node
        };
        self.check_running()?;
        let name = FileName::from_os(name)?;
        let dir = self.dir(parent).await?;
        if dir.inode.entries.contains_key(name.as_str()) {
            return Err(VfsError::Exists(name.to_string()));
        }
        let child = self.create_inode(make).await?;
        let entry = DirEntryMeta {
            ino: child.inode.ino,
            kind: child.inode.kind,
        };
        let linked = self.add_entry(parent, &name, entry).await;
        if let Err(err) = linked {
            // Nothing names it: remove it now rather than leave it to gc.
            if let Err(cleanup) = self.inodes.delete(child.inode.ino).await {
                tracing::warn!(ino = child.inode.ino, error = %cleanup, "could not remove an unnamed inode");
            }
            return Err(err);
        }
        if entry.kind == Kind::Dir {
            lock(&self.parents).insert(entry.ino, parent);
        }
        Ok(child)
    }

    /// Adds `name` → `entry` to directory `dir` (If-Match, retried): `EEXIST` if the
    /// name is taken, `ENOTDIR` if `dir` is not a directory.
    async fn add_entry(&self, dir: u64, name: &FileName, entry: DirEntryMeta) -> VfsResult<()> {
        self.inodes
            .update(dir, |inode| {
                if inode.kind != Kind::Dir {
                    return Err(VfsError::NotADirectory(format!("inode {dir}")));
                }
                if inode.entries.contains_key(name.as_str()) {
                    return Err(VfsError::Exists(name.to_string()));
                }
                inode.entries.insert(name.to_string(), entry);
                inode.touch();
                Ok(Some(()))
            })
            .await
            .map(|_| ())
    }

    /// One name of `ino` is gone: deletes it at its last link.
    async fn drop_link(&self, ino: u64) -> VfsResult<()> {
        let current = match self.inodes.fetch(ino).await {
            Ok(found) => found,
            Err(VfsError::NotFound(_)) => return Ok(()),
            Err(err) => return Err(err),
        };
        if current.inode.nlink > 1 && current.inode.kind != Kind::Dir {
            self.inodes
                .update(ino, |inode| {
                    inode.nlink = inode.nlink.saturating_sub(1).max(1);
                    inode.ctime = inode::stamp(SystemTime::now());
                    Ok(Some(()))
                })
                .await?;
            return Ok(());
        }
        if let Some(file) = self.open_file(ino) {
            file.lock().await.unlinked = true;
        }
        if self.is_open(ino) {
            lock(&self.unlinked).insert(ino, Inode::clone(&current.inode));
        }
        lock(&self.parents).remove(&ino);
        self.inodes.delete(ino).await
    }

    /// `link(2)`: the link count first, then the entry, so that a crash between leaves a
    /// count too high (the file outlives its names until fsck) rather than a name of a
    /// deleted file.
    async fn link(&self, ino: u64, new_parent: u64, new_name: &OsStr) -> VfsResult<FileAttr> {
        self.check_running()?;
        let new_name = FileName::from_os(new_name)?;
        let dir = self.dir(new_parent).await?;
        if dir.inode.entries.contains_key(new_name.as_str()) {
            return Err(VfsError::Exists(new_name.to_string()));
        }
        let (counted, _) = self
            .inodes
            .update(ino, |inode| {
                if inode.kind == Kind::Dir {
                    return Err(VfsError::NotPermitted(format!(
                        "hard link {new_name} to a directory"
                    )));
                }
                inode.nlink = inode.nlink.saturating_add(1);
                inode.ctime = inode::stamp(SystemTime::now());
                Ok(Some(()))
            })
            .await?;
        let entry = DirEntryMeta {
            ino,
            kind: counted.inode.kind,
        };
        let named = self.add_entry(new_parent, &new_name, entry).await;
        if let Err(err) = named {
            // Not named after all: the count goes back down.
            self.inodes
                .update(ino, |inode| {
                    inode.nlink = inode.nlink.saturating_sub(1).max(1);
                    Ok(Some(()))
                })
                .await?;
            return Err(err);
        }
        if let Some(file) = self.open_file(ino) {
            file.lock().await.base = self.inodes.get(ino).await?;
        }
        self.attr(ino).await
    }

    /// [`Vfs::read`] (one buffer) and, with `slices`, [`Vfs::read_chunks`] (the chunks'
    /// own buffers, not copied, where nothing unsaved lies over them). The read is noted
    /// by the file's read-ahead first, so that what comes next is fetched meanwhile.
    async fn read(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        size: u32,
        slices: bool,
    ) -> VfsResult<Vec<Bytes>> {
        match self.handle(handle)? {
            Opened::File {
                ino: opened,
                read: true,
                ..
            } if opened == ino.0 => {}
            _ => return Err(VfsError::BadHandle),
        }
        let file = self.open_file(ino.0).ok_or(VfsError::BadHandle)?;
        let mut file = file.lock().await;
        let OpenFile {
            base,
            pending,
            read_ahead,
            ..
        } = &mut *file;
        let (len, base_end) = (u64::from(size), pending.base_end(&base.inode));
        self.prefetcher
            .on_read(read_ahead, &base.inode, base_end, offset, len);
        if slices {
            pending
                .read_slices(&self.chunks, &base.inode, offset, len)
                .await
        } else {
            Ok(vec![
                pending.read(&self.chunks, &base.inode, offset, len).await?,
            ])
        }
    }

    /// Stores the unsaved changes of `file` (inode `ino`): chunks, then the inode
    /// If-Match; a lost race lays the changes over the new version and tries again.
    async fn flush_file(&self, ino: u64, file: &mut OpenFile) -> VfsResult<()> {
        if !file.pending.is_dirty() {
            return Ok(());
        }
        if file.unlinked {
            // Nothing names the file any more: its writes are not stored, but its handles
            // keep reading them (held in memory, at most `max_dirty`: see `write`).
            return Ok(());
        }
        let mut base = file.base.clone();
        for _ in 0..MAX_ATTEMPTS {
            let stored = file
                .pending
                .store(
                    &self.chunks,
                    &self.chunking,
                    &base.inode,
                    self.config.upload_concurrency,
                )
                .await?;
            if stored
                .fresh_since
                .is_some_and(|since| since.elapsed() >= self.chunks.refresh_age())
            {
                // Too slow: a chunk may have aged into what a gc started meanwhile may
                // delete. Storing again writes the stale ones again (gc.rs).
                tracing::debug!(
                    ino,
                    "a flush outlived its chunks' refresh age: storing again"
                );
                continue;
            }
            let size = stored.size;
            let mut next = Inode::clone(&base.inode);
            next.chunks = stored.chunks;
            next.size = size;
            next.mtime = inode::stamp(file.written_at);
            next.ctime = inode::stamp(SystemTime::now());
            match self.inodes.replace(next, &base.etag).await? {
                Some(written) => {
                    file.base = written;
                    file.pending = Pending::clean(size);
                    return Ok(());
                }
                None => match self.inodes.fetch(ino).await {
                    Ok(newer) => base = newer,
                    Err(VfsError::NotFound(_)) => {
                        // Deleted by another host: like writes to an unlinked file, kept
                        // for this file's handles only.
                        file.unlinked = true;
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                },
            }
        }
        Err(VaultError::Conflict(format!("inode {ino}")).into())
    }

    async fn flush_handle(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        match self.handle(handle)? {
            Opened::File { ino: opened, .. } if opened == ino.0 => {}
            _ => return Err(VfsError::BadHandle),
        }
        let Some(file) = self.open_file(ino.0) else {
            return Err(VfsError::BadHandle);
        };
        let mut file = file.lock().await;
        self.flush_file(ino.0, &mut file).await
    }

    /// Moves the unsaved changes of `file` (inode `ino`) into the recovery directory,
    /// and says so at ERROR; the file no longer counts them as unsaved.
    fn keep_unsaved(&self, ino: u64, file: &mut OpenFile, error: &str) -> Kept {
        let kept = recover::keep(
            &self.config.recovery_dir(),
            self.inodes.bucket(),
            &self.inodes.key(ino),
            ino,
            &file.base,
            &file.pending,
            error,
        );
        file.pending = Pending::clean(file.pending.size(&file.base.inode));
        kept
    }

    /// One handle of open file `ino` is gone: the file, taken out of the open files, when
    /// it was the last one.
    fn count_down(&self, ino: u64) -> Option<SharedFile> {
        let mut open = lock(&self.open);
        let (handles, _) = open.get_mut(&ino)?;
        *handles -= 1;
        if *handles > 0 {
            return None;
        }
        open.remove(&ino).map(|(_, file)| file)
    }

    /// Closes `handle`: a file's last close stores its changes, or keeps them in the
    /// recovery directory when they cannot be stored (the error is still answered).
    async fn release(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        let Some(opened) = lock(&self.handles).remove(&handle.0) else {
            return Err(VfsError::BadHandle);
        };
        let Opened::File { ino: opened, .. } = opened else {
            return Ok(());
        };
        if opened != ino.0 {
            return Err(VfsError::BadHandle);
        }
        let Some(file) = self.open_file(ino.0) else {
            return Ok(());
        };
        let mut file = file.lock().await;
        let stored = self.flush_file(ino.0, &mut file).await;
        // Counted down under the file's lock: an open meanwhile either finds the file
        // (and its unsaved changes) or, once it is gone, reads the stored version.
        let last = self.count_down(ino.0).is_some();
        if let Err(err) = &stored {
            if last {
                self.keep_unsaved(ino.0, &mut file, &err.to_string());
            }
        }
        self.forget_unlinked_once_closed(ino.0);
        stored
    }

    /// Sets the size of file `ino`, and stores it at once.
    async fn truncate(&self, ino: u64, size: u64) -> VfsResult<()> {
        if size > inode::MAX_FILE_SIZE {
            return Err(VfsError::FileTooLarge(format!("inode {ino}: {size} bytes")));
        }
        if let Some(file) = self.open_file(ino) {
            let mut file = file.lock().await;
            file.pending.truncate(size);
            file.written_at = SystemTime::now();
            return self.flush_file(ino, &mut file).await;
        }
        let base = self.inodes.fetch(ino).await?;
        base.inode
            .kind
            .file_kind()
            .require_regular(&format!("inode {ino}"))?;
        let mut file = OpenFile::over(base);
        file.pending.truncate(size);
        self.flush_file(ino, &mut file).await
    }

    /// Rewrites inode `ino` with `change` (If-Match, retried), and hands the new version
    /// to its open file. An inode whose last name went while open here is changed for
    /// its handles only.
    async fn change_inode(
        &self,
        ino: u64,
        mut change: impl FnMut(&mut Inode) -> VfsResult<Option<()>>,
    ) -> VfsResult<()> {
        let written = match self.inodes.update(ino, &mut change).await {
            Ok((written, _)) => written,
            Err(VfsError::NotFound(what)) => {
                return match lock(&self.unlinked).get_mut(&ino) {
                    Some(inode) => change(inode).map(|_| ()),
                    None => Err(VfsError::NotFound(what)),
                };
            }
            Err(err) => return Err(err),
        };
        if let Some(file) = self.open_file(ino) {
            // The unsaved writes lie over any version; this one is the newest.
            file.lock().await.base = written;
        }
        Ok(())
    }

    /// Whether directory `ancestor` is `dir` or above it, as far as this host knows the
    /// tree.
    fn is_within(&self, dir: u64, ancestor: u64) -> bool {
        let parents = lock(&self.parents);
        let mut at = dir;
        for _ in 0..MAX_DEPTH {
            if at == ancestor {
                return true;
            }
            match parents.get(&at) {
                Some(parent) if *parent != at => at = *parent,
                _ => return false,
            }
        }
        false
    }

    async fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()> {
        self.check_running()?;
        let name = FileName::from_os(name)?;
        let new_name = FileName::from_os(new_name)?;
        let source = *self
            .dir(parent)
            .await?
            .inode
            .entries
            .get(name.as_str())
            .ok_or_else(|| VfsError::NotFound(name.to_string()))?;
        let replaced = self
            .dir(new_parent)
            .await?
            .inode
            .entries
            .get(new_name.as_str())
            .copied();
        // Checked first, as Linux does (`EINVAL` before anything about the target).
        if source.kind == Kind::Dir
            && source.ino != replaced.map_or(0, |t| t.ino)
            && self.is_within(new_parent, source.ino)
        {
            return Err(VfsError::InvalidArgument(format!(
                "cannot move directory {name} into itself"
            )));
        }
        if let Some(target) = replaced {
            if no_replace {
                return Err(VfsError::Exists(new_name.to_string()));
            }
            if target.ino == source.ino {
                return Ok(());
            }
            match (source.kind == Kind::Dir, target.kind == Kind::Dir) {
                (true, false) => return Err(VfsError::NotADirectory(new_name.to_string())),
                (false, true) => return Err(VfsError::IsADirectory(new_name.to_string())),
                (true, true) => {
                    if !self
                        .inodes
                        .fetch(target.ino)
                        .await?
                        .inode
                        .entries
                        .is_empty()
                    {
                        return Err(VfsError::NotEmpty(new_name.to_string()));
                    }
                }
                (false, false) => {}
            }
        }
        // The target entry must still be what was checked, in every attempt.
        let place = |dir: &mut Inode| -> VfsResult<()> {
            if dir.kind != Kind::Dir {
                return Err(VfsError::NotADirectory(format!("inode {new_parent}")));
            }
            if dir.entries.get(new_name.as_str()).copied() != replaced {
                return Err(VfsError::WriteConflict(new_name.to_string()));
            }
            dir.entries.insert(new_name.to_string(), source);
            dir.touch();
            Ok(())
        };
        if parent == new_parent {
            // One write: atomic to every reader.
            self.inodes
                .update(parent, |dir| {
                    if dir.entries.get(name.as_str()) != Some(&source) {
                        return Err(VfsError::NotFound(name.to_string()));
                    }
                    dir.entries.remove(name.as_str());
                    place(dir).map(Some)
                })
                .await?;
        } else {
            // The new name first, then the old one goes: a crash between leaves both.
            self.inodes
                .update(new_parent, |dir| place(dir).map(Some))
                .await?;
            self.inodes
                .update(parent, |dir| {
                    if dir.entries.get(name.as_str()) != Some(&source) {
                        return Ok(None);
                    }
                    dir.entries.remove(name.as_str());
                    dir.touch();
                    Ok(Some(()))
                })
                .await?;
            if source.kind == Kind::Dir {
                lock(&self.parents).insert(source.ino, new_parent);
            }
        }
        if let Some(target) = replaced {
            self.drop_link(target.ino).await?;
        }
        Ok(())
    }

    async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.shutting_down.store(true, Ordering::Release);
        let files: Vec<(u64, SharedFile)> = lock(&self.open)
            .iter()
            .map(|(ino, (_, file))| (*ino, Arc::clone(file)))
            .collect();
        let mut report = ShutdownReport::default();
        let deadline = tokio::time::Instant::now() + timeout;
        for (ino, file) in files {
            let store = async {
                let mut file = file.lock().await;
                let dirty = file.pending.is_dirty();
                self.flush_file(ino, &mut file).await.map(|()| dirty)
            };
            let name = format!("inode {ino:016x}");
            let error = match tokio::time::timeout_at(deadline, store).await {
                Ok(Ok(true)) => {
                    report.uploaded.push(name);
                    continue;
                }
                Ok(Ok(false)) => continue,
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("not stored within the shutdown timeout ({timeout:?})"),
            };
            // A writer still holding the file gets a moment; past it the changes are
            // reported lost rather than the shutdown waiting without bound.
            match tokio::time::timeout(SHUTDOWN_LOCK_WAIT, file.lock()).await {
                Ok(mut file) => match self.keep_unsaved(ino, &mut file, &error) {
                    Kept::At(manifest) => report.kept.push((name, manifest)),
                    Kept::Lost => report.lost.push(name),
                    Kept::Nothing => {}
                },
                Err(_) => {
                    tracing::error!(ino, "busy at shutdown: its unsaved changes are lost");
                    report.lost.push(name);
                }
            }
        }
        report
    }
}

impl Core {
    /// [`Vfs::release_detached`] without a runtime to store on: the handle goes, and at
    /// the file's last handle its unsaved changes go to the recovery directory at once.
    fn release_outside_runtime(&self, ino: Ino, handle: Handle) {
        if lock(&self.handles).remove(&handle.0).is_none() {
            return;
        }
        let file = self.count_down(ino.0);
        self.forget_unlinked_once_closed(ino.0);
        let Some(file) = file else { return };
        let kept = match file.try_lock() {
            Ok(mut file) => self.keep_unsaved(
                ino.0,
                &mut file,
                "closed outside an async runtime: not stored",
            ),
            Err(_) => {
                tracing::error!(
                    ino = ino.0,
                    "closed outside an async runtime while busy: its unsaved changes are lost"
                );
                Kept::Lost
            }
        };
        drop(kept);
    }
}

impl VaultFs {
    /// Stores an entry of the recovery directory that a vault kept (layout `vault`): its
    /// changes are laid over the inode again and stored, only while the inode is still
    /// the version they were made on (else [`RecoveryError::Changed`]); then the entry is
    /// dropped. An entry of another layout or another vault is refused and stays.
    pub async fn reupload_recovered(
        &self,
        recovery: &RecoveryDir,
        file: &RecoveredFile,
    ) -> Result<(), RecoveryError> {
        let core = &self.core;
        let ino = recover::inode_of(file)?;
        let m = &file.manifest;
        if core.inodes.key(ino).as_str() != m.key {
            return Err(RecoveryError::Elsewhere {
                id: file.id.clone(),
                key: m.key.clone(),
            });
        }
        let changed = |current: Option<String>| RecoveryError::Changed {
            key: m.key.clone(),
            base: m.base_etag.clone(),
            current,
        };
        let base = match core.inodes.fetch(ino).await {
            Ok(base) => base,
            Err(VfsError::NotFound(_)) => return Err(changed(None)),
            Err(err) => return Err(err.into()),
        };
        if m.base_etag.as_deref() != Some(base.etag.as_str()) {
            return Err(changed(Some(base.etag.as_str().to_owned())));
        }
        let mut open = OpenFile::over(base);
        open.pending = recover::pending_over(file, &open.base.inode)?;
        open.written_at = UNIX_EPOCH + Duration::from_secs(m.kept_at);
        core.flush_file(ino, &mut open).await?;
        if open.unlinked {
            // Deleted meanwhile: nothing was stored, and the entry stays.
            return Err(changed(None));
        }
        recovery.discard(file)?;
        tracing::info!(key = %m.key, id = %file.id, "kept vault changes stored");
        Ok(())
    }
}

/// `mode`'s permission bits.
fn perm(mode: u32) -> u32 {
    mode & 0o7777
}

#[async_trait]
impl Vfs for VaultFs {
    async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry> {
        let core = &self.core;
        let name = FileName::from_os(name)?;
        let dir = core.dir(parent.0).await?;
        let found = *dir
            .inode
            .entries
            .get(name.as_str())
            .ok_or_else(|| VfsError::NotFound(name.to_string()))?;
        let attr = core.attr(found.ino).await?;
        if found.kind == Kind::Dir {
            lock(&core.parents).insert(found.ino, parent.0);
        }
        Ok(core.entry(attr))
    }

    fn forget(&self, _ino: Ino, _nlookup: u64) {
        // Inode numbers are the vault's own: there is no table to drop them from.
    }

    async fn getattr(&self, ino: Ino) -> VfsResult<Entry> {
        Ok(self.core.entry(self.core.attr(ino.0).await?))
    }

    async fn setattr(
        &self,
        ino: Ino,
        _handle: Option<Handle>,
        changes: SetAttr,
    ) -> VfsResult<Entry> {
        let core = &self.core;
        core.check_running()?;
        if let Some(size) = changes.size {
            core.truncate(ino.0, size).await?;
        }
        if changes.mode.is_some()
            || changes.uid.is_some()
            || changes.gid.is_some()
            || changes.mtime.is_some()
        {
            if let Some(file) = core.open_file(ino.0) {
                // Unsaved writes go first, so their store does not undo a time set now.
                let mut file = file.lock().await;
                core.flush_file(ino.0, &mut file).await?;
            }
            core.change_inode(ino.0, |inode| {
                if let Some(mode) = changes.mode {
                    inode.perm = perm(mode);
                }
                if let Some(uid) = changes.uid {
                    inode.uid = uid;
                }
                if let Some(gid) = changes.gid {
                    inode.gid = gid;
                }
                if let Some(mtime) = changes.mtime {
                    inode.mtime = inode::stamp(mtime);
                }
                inode.ctime = inode::stamp(SystemTime::now());
                Ok(Some(()))
            })
            .await?;
        }
        self.getattr(ino).await
    }

    async fn readlink(&self, ino: Ino) -> VfsResult<Bytes> {
        let found = self.core.inodes.get(ino.0).await?;
        match &found.inode.target {
            Some(target) if found.inode.kind == Kind::Symlink => Ok(Bytes::from(target.0.clone())),
            _ => Err(VfsError::InvalidArgument(format!(
                "inode {} is not a symbolic link",
                ino.0
            ))),
        }
    }

    async fn opendir(&self, ino: Ino) -> VfsResult<Handle> {
        let dir = self.core.dir(ino.0).await?;
        let entries: Vec<(String, DirEntryMeta)> = dir
            .inode
            .entries
            .iter()
            .map(|(name, entry)| (name.clone(), *entry))
            .collect();
        Ok(self.core.new_handle(Opened::Dir {
            ino: ino.0,
            entries: Arc::new(entries),
        }))
    }

    async fn readdir(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        let with_attrs = self.core.config.listing_attrs;
        let listed = self
            .core
            .listing(ino, handle, offset, max_entries, with_attrs)
            .await?;
        Ok(listed
            .into_iter()
            .map(|(mut entry, attr)| {
                // An inode that cannot be read is the business of whoever uses it: the
                // listing shows the name without attributes, as before they were read.
                entry.attr = attr.and_then(Result::ok);
                entry
            })
            .collect())
    }

    async fn readdirplus(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        let listed = self
            .core
            .listing(ino, handle, offset, max_entries, true)
            .await?;
        let mut entries = Vec::with_capacity(listed.len());
        for (mut entry, attr) in listed {
            match attr {
                None => {}
                Some(Ok(attr)) => {
                    entry.kind = attr.kind;
                    entry.attr = Some(attr);
                }
                // Gone since the directory was opened: left out, as a lookup would find
                // nothing. Counting lookups costs nothing here (no inode table).
                Some(Err(err)) if err.errno() == libc::ENOENT => continue,
                Some(Err(err)) => return Err(err),
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn releasedir(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        let released = lock(&self.core.handles)
            .remove(&handle.0)
            .map(|_| ())
            .ok_or(VfsError::BadHandle);
        self.core.forget_unlinked_once_closed(ino.0);
        released
    }

    async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle> {
        let core = &self.core;
        if flags.write || flags.truncate {
            core.check_running()?;
        }
        let file = match core.open_file(ino.0) {
            Some(file) => {
                file.lock()
                    .await
                    .base
                    .inode
                    .kind
                    .file_kind()
                    .require_regular(&format!("inode {}", ino.0))?;
                let mut open = lock(&core.open);
                match open.get_mut(&ino.0) {
                    Some((handles, file)) => {
                        *handles += 1;
                        Arc::clone(file)
                    }
                    None => {
                        open.insert(ino.0, (1, Arc::clone(&file)));
                        file
                    }
                }
            }
            None => {
                // Close-to-open: a file opened anew is read as the store has it now.
                let base = core.inodes.fetch(ino.0).await?;
                base.inode
                    .kind
                    .file_kind()
                    .require_regular(&format!("inode {}", ino.0))?;
                let fresh = OpenFile::over(base);
                let mut open = lock(&core.open);
                let (handles, file) = open
                    .entry(ino.0)
                    .or_insert_with(|| (0, Arc::new(tokio::sync::Mutex::new(fresh))));
                *handles += 1;
                Arc::clone(file)
            }
        };
        if flags.truncate && flags.write {
            let mut file = file.lock().await;
            file.pending.truncate(0);
            file.written_at = SystemTime::now();
        }
        Ok(core.new_handle(Opened::File {
            ino: ino.0,
            read: flags.read,
            write: flags.write,
            append: flags.append,
        }))
    }

    async fn read(&self, ino: Ino, handle: Handle, offset: u64, size: u32) -> VfsResult<Bytes> {
        let mut read = self.core.read(ino, handle, offset, size, false).await?;
        Ok(read.pop().unwrap_or_default())
    }

    async fn read_chunks(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        size: u32,
    ) -> VfsResult<Vec<Bytes>> {
        self.core.read(ino, handle, offset, size, true).await
    }

    async fn write(&self, ino: Ino, handle: Handle, offset: u64, data: Bytes) -> VfsResult<u32> {
        let core = &self.core;
        core.check_running()?;
        let append = match core.handle(handle)? {
            Opened::File {
                ino: opened,
                write: true,
                append,
                ..
            } if opened == ino.0 => append,
            _ => return Err(VfsError::BadHandle),
        };
        let file = core.open_file(ino.0).ok_or(VfsError::BadHandle)?;
        // At most `max_dirty` (and what a u32 counts) per call: callers loop.
        let most =
            usize::try_from(core.config.max_dirty.min(u64::from(u32::MAX))).unwrap_or(usize::MAX);
        let data = data.slice(..data.len().min(most));
        let mut file = file.lock().await;
        let offset = if append {
            file.pending.size(&file.base.inode)
        } else {
            offset
        };
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= inode::MAX_FILE_SIZE)
            .ok_or_else(|| VfsError::FileTooLarge(format!("inode {}", ino.0)))?;
        let written = data.len() as u32;
        if file.unlinked && file.pending.held() + data.len() as u64 > core.config.max_dirty {
            // Its writes can go nowhere but memory: bounded, as every open file's are.
            tracing::warn!(
                ino = ino.0,
                max_dirty = core.config.max_dirty,
                "a write to an open file with no name left would hold more than max_dirty"
            );
            return Err(VfsError::NoSpace(format!(
                "inode {}: an open file whose last name is gone holds at most {} bytes of writes",
                ino.0, core.config.max_dirty
            )));
        }
        file.pending.write(offset, data);
        file.written_at = SystemTime::now();
        if file.pending.held() > core.config.max_dirty {
            tracing::debug!(ino = ino.0, end, "storing a file's writes before its flush");
            core.flush_file(ino.0, &mut file).await?;
        }
        Ok(written)
    }

    async fn flush(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        self.core.flush_handle(ino, handle).await
    }

    async fn fsync(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        self.core.flush_handle(ino, handle).await
    }

    async fn release(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        self.core.release(ino, handle).await
    }

    fn release_detached(&self, ino: Ino, handle: Handle) {
        let core = Arc::clone(&self.core);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = core.release(ino, handle).await {
                        tracing::error!(ino = ino.0, error = %err, "a dropped handle's changes were not stored");
                    }
                });
            }
            Err(_) => self.core.release_outside_runtime(ino, handle),
        }
    }

    fn implicit_dir(&self, path: &FsPath) -> VfsResult<Ino> {
        // A vault's directories are objects of their own: none is implied by a file.
        Err(VfsError::NotFound(path.to_string()))
    }

    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)> {
        let core = &self.core;
        let created = core
            .make_node(parent.0, name, Kind::File, mode, |_| {})
            .await?;
        let ino = created.inode.ino;
        let attr = created.inode.attr(core.config.block_size);
        let file = OpenFile::over(created);
        lock(&core.open)
            .entry(ino)
            .or_insert_with(|| (0, Arc::new(tokio::sync::Mutex::new(file))))
            .0 += 1;
        let handle = core.new_handle(Opened::File {
            ino,
            read: flags.read,
            write: true,
            append: flags.append,
        });
        Ok((core.entry(attr), handle))
    }

    async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Entry> {
        let core = &self.core;
        let created = core
            .make_node(parent.0, name, Kind::Dir, mode, |_| {})
            .await?;
        Ok(core.entry(created.inode.attr(core.config.block_size)))
    }

    async fn unlink(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        let core = &self.core;
        core.check_running()?;
        let name = FileName::from_os(name)?;
        let (_, removed) = core
            .inodes
            .update(parent.0, |dir| {
                if dir.kind != Kind::Dir {
                    return Err(VfsError::NotADirectory(format!("inode {}", parent.0)));
                }
                let entry = *dir
                    .entries
                    .get(name.as_str())
                    .ok_or_else(|| VfsError::NotFound(name.to_string()))?;
                if entry.kind == Kind::Dir {
                    return Err(VfsError::IsADirectory(name.to_string()));
                }
                dir.entries.remove(name.as_str());
                dir.touch();
                Ok(Some(entry))
            })
            .await?;
        match removed {
            Some(entry) => core.drop_link(entry.ino).await,
            None => Ok(()),
        }
    }

    async fn rmdir(&self, parent: Ino, name: &OsStr) -> VfsResult<()> {
        let core = &self.core;
        core.check_running()?;
        let name = FileName::from_os(name)?;
        let entry = *core
            .dir(parent.0)
            .await?
            .inode
            .entries
            .get(name.as_str())
            .ok_or_else(|| VfsError::NotFound(name.to_string()))?;
        if entry.kind != Kind::Dir {
            return Err(VfsError::NotADirectory(name.to_string()));
        }
        if !core.inodes.fetch(entry.ino).await?.inode.entries.is_empty() {
            return Err(VfsError::NotEmpty(name.to_string()));
        }
        core.inodes
            .update(parent.0, |dir| {
                if dir.entries.get(name.as_str()) != Some(&entry) {
                    return Err(VfsError::NotFound(name.to_string()));
                }
                dir.entries.remove(name.as_str());
                dir.touch();
                Ok(Some(()))
            })
            .await?;
        core.drop_link(entry.ino).await
    }

    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()> {
        self.core
            .rename(parent.0, name, new_parent.0, new_name, no_replace)
            .await
    }

    async fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Entry> {
        let core = &self.core;
        let target = target.as_bytes().to_vec();
        if target.is_empty() || target.len() > inode::MAX_TARGET_LEN {
            return Err(VfsError::NameTooLong(format!(
                "a symlink target of {} bytes",
                target.len()
            )));
        }
        let created = core
            .make_node(parent.0, name, Kind::Symlink, 0o777, |link| {
                link.size = target.len() as u64;
                link.target = Some(Value(target.clone()));
            })
            .await?;
        Ok(core.entry(created.inode.attr(core.config.block_size)))
    }

    async fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> VfsResult<Entry> {
        let core = &self.core;
        let kind = match kind_of_mode(mode) {
            None if mode & libc::S_IFMT == 0 => FileKind::File,
            Some(kind) if kind == FileKind::File || kind.is_special() => kind,
            _ => return Err(VfsError::InvalidArgument(format!("mknod of mode {mode:o}"))),
        };
        let created = core
            .make_node(parent.0, name, Kind::of(kind), mode, |node| {
                if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
                    node.rdev = rdev;
                }
            })
            .await?;
        Ok(core.entry(created.inode.attr(core.config.block_size)))
    }

    fn hard_links(&self) -> bool {
        true
    }

    async fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Entry> {
        let attr = self.core.link(ino.0, new_parent.0, new_name).await?;
        Ok(self.core.entry(attr))
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> VfsResult<Bytes> {
        let found = self.core.inodes.get(ino.0).await?;
        let name = name.to_string_lossy();
        found
            .inode
            .xattrs
            .get(name.as_ref())
            .map(|value| Bytes::from(value.0.clone()))
            .ok_or_else(|| VfsError::NoAttribute(name.into_owned()))
    }

    async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>> {
        let found = self.core.inodes.get(ino.0).await?;
        Ok(found.inode.xattrs.keys().cloned().collect())
    }

    async fn setxattr(&self, ino: Ino, name: &OsStr, value: Bytes) -> VfsResult<()> {
        self.core.check_running()?;
        let name = name
            .to_str()
            .filter(|n| is_user_xattr(n.as_bytes()) && n.len() <= crate::namespace::MAX_NAME_LEN)
            .ok_or_else(|| {
                VfsError::Unsupported(format!(
                    "extended attribute {}: only user.* names",
                    name.to_string_lossy()
                ))
            })?
            .to_owned();
        if value.len() > inode::MAX_XATTR_VALUE {
            return Err(VfsError::TooLarge(format!("value of {name}")));
        }
        self.core
            .change_inode(ino.0, |inode| {
                inode.xattrs.insert(name.clone(), Value(value.to_vec()));
                let total: usize = inode.xattrs.iter().map(|(n, v)| n.len() + v.0.len()).sum();
                if total > inode::MAX_XATTRS_TOTAL {
                    return Err(VfsError::TooLarge(format!(
                        "extended attributes of inode {}",
                        ino.0
                    )));
                }
                inode.ctime = inode::stamp(SystemTime::now());
                Ok(Some(()))
            })
            .await
    }

    async fn removexattr(&self, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.core.check_running()?;
        let name = name.to_string_lossy().into_owned();
        self.core
            .change_inode(ino.0, |inode| {
                if inode.xattrs.remove(&name).is_none() {
                    return Err(VfsError::NoAttribute(name.clone()));
                }
                inode.ctime = inode::stamp(SystemTime::now());
                Ok(Some(()))
            })
            .await
    }

    async fn statfs(&self) -> VfsResult<StatFs> {
        Ok(StatFs::unlimited(self.core.config.block_size))
    }

    async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        self.core.shutdown(timeout).await
    }
}
