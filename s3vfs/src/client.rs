//! The path-based library API: what a Rust program uses instead of a mount.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use s3vfs::store::s3::{S3Store, S3StoreConfig};
//! use s3vfs::{FsConfig, S3Vfs};
//! use tokio::io::AsyncReadExt;
//!
//! let store = S3Store::new(S3StoreConfig::new("my-bucket")).await?;
//! let vfs = S3Vfs::new(std::sync::Arc::new(store), FsConfig::default());
//! let mut file = vfs.open("datasets/part-0001.csv").await?;
//! let mut text = String::new();
//! file.read_to_string(&mut text).await?;
//! # Ok(()) }
//! ```

use crate::config::FsConfig;
use crate::error::{VfsError, VfsResult};
use crate::fs::S3Fs;
use crate::namespace::FsPath;
use crate::store::Backend;
use crate::vfs::{DirEntry, FileAttr, FileKind, Handle, Ino, OpenFlags, SetAttr, Vfs};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Smallest read a [`File`] asks the file system for; larger buffers read more at once.
const READ_CHUNK: usize = 1024 * 1024;

/// Largest single read of a whole-file [`S3Vfs::read`]: 64 MiB.
const WHOLE_READ_CHUNK: u32 = 64 * 1024 * 1024;
/// Entries fetched per `readdir` call by [`ReadDir`].
const DIR_BATCH: usize = 1024;

/// One lookup of an inode the library holds: given back (forgotten) when dropped, as the
/// kernel does when it stops caching a name, so that walking paths does not keep their
/// inodes in the table. Open handles hold their inode on their own.
struct Hold {
    fs: Arc<dyn Vfs>,
    ino: Ino,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.fs.forget(self.ino, 1);
    }
}

/// A path walked to its inode, held while this lives (the root needs no hold).
struct Resolved {
    attr: FileAttr,
    /// Given back on drop; moved out to outlive the attributes.
    hold: Option<Hold>,
}

impl Resolved {
    fn ino(&self) -> Ino {
        self.attr.ino
    }
}

/// A file system over S3 addressed by paths (`"a/b.txt"`, `"/a/b.txt"`), on any
/// [`Vfs`]: one bucket ([`S3Fs`], the default), every bucket of an account
/// ([`BucketsFs`](crate::BucketsFs): `"bucket/a/b.txt"`), or another layout.
pub struct S3Vfs<F: Vfs + 'static = S3Fs> {
    fs: Arc<F>,
    /// The same file system, for handles that outlive a borrow of this one.
    shared: Arc<dyn Vfs>,
}

impl<F: Vfs + 'static> Clone for S3Vfs<F> {
    fn clone(&self) -> Self {
        Self {
            fs: Arc::clone(&self.fs),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<F: Vfs + std::fmt::Debug + 'static> std::fmt::Debug for S3Vfs<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Vfs").field("fs", &self.fs).finish()
    }
}

/// Attributes of a file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    attr: FileAttr,
}

impl Metadata {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.attr.kind == FileKind::Directory
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.attr.kind == FileKind::File
    }

    /// Whether this is a symbolic link (the attributes of a path are never followed).
    pub fn is_symlink(&self) -> bool {
        self.attr.kind == FileKind::Symlink
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.attr.size
    }

    /// Whether the size is zero.
    pub fn is_empty(&self) -> bool {
        self.attr.size == 0
    }

    /// Modification time.
    pub fn modified(&self) -> SystemTime {
        self.attr.mtime
    }

    /// All attributes.
    pub fn attr(&self) -> &FileAttr {
        &self.attr
    }
}

/// How to open a file, like `std::fs::OpenOptions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
}

impl OpenOptions {
    /// Nothing set; call the setters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open for reading.
    pub fn read(&mut self, yes: bool) -> &mut Self {
        self.read = yes;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, yes: bool) -> &mut Self {
        self.write = yes;
        self
    }

    /// Append to the end.
    pub fn append(&mut self, yes: bool) -> &mut Self {
        self.append = yes;
        self
    }

    /// Truncate to zero length.
    pub fn truncate(&mut self, yes: bool) -> &mut Self {
        self.truncate = yes;
        self
    }

    /// Create the file if missing.
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.create = yes;
        self
    }

    /// Create the file; fail if it exists.
    pub fn create_new(&mut self, yes: bool) -> &mut Self {
        self.create_new = yes;
        self
    }

    fn flags(&self) -> OpenFlags {
        OpenFlags {
            read: self.read,
            write: self.write || self.append,
            truncate: self.truncate,
            append: self.append,
            exclusive: self.create_new,
        }
    }
}

impl S3Vfs {
    /// A file system over `store`.
    pub fn new(store: Arc<dyn Backend>, config: FsConfig) -> Self {
        Self::over(S3Fs::new(store, config))
    }

    /// A file system over `store` whose reads are cached in `data_cache` (see
    /// [`S3Fs::with_data_cache`]).
    pub fn with_data_cache(
        store: Arc<dyn Backend>,
        config: FsConfig,
        data_cache: Arc<dyn crate::cache::DataCache>,
    ) -> Self {
        Self::over(S3Fs::with_data_cache(store, config, data_cache))
    }

    /// Wraps an existing [`S3Fs`] (e.g. one also mounted through FUSE).
    pub fn from_fs(fs: Arc<S3Fs>) -> Self {
        Self::over(fs)
    }
}

impl<F: Vfs + 'static> S3Vfs<F> {
    /// Paths over the inode-based file system `fs` (e.g. a
    /// [`BucketsFs`](crate::BucketsFs), also mounted through FUSE).
    pub fn over(fs: Arc<F>) -> Self {
        let shared: Arc<dyn Vfs> = Arc::clone(&fs) as Arc<dyn Vfs>;
        Self { fs, shared }
    }

    /// The inode-based file system underneath.
    pub fn fs(&self) -> &Arc<F> {
        &self.fs
    }

    /// Walks `path` from the root; each directory's lookup is given back once its child
    /// is found, the last one when the result is dropped.
    async fn resolve(&self, path: &str) -> VfsResult<Resolved> {
        let path = FsPath::parse(path)?;
        let mut at = Resolved {
            attr: self.fs.getattr(Ino::ROOT).await?.attr,
            hold: None,
        };
        if path.is_root() {
            return Ok(at);
        }
        for part in path.as_str().split('/') {
            let attr = self.fs.lookup(at.ino(), OsStr::new(part)).await?.attr;
            at = Resolved {
                attr,
                hold: Some(self.hold(attr.ino)),
            };
        }
        Ok(at)
    }

    /// Holds one lookup of `ino` that the file system counted for us.
    fn hold(&self, ino: Ino) -> Hold {
        Hold {
            fs: Arc::clone(&self.shared),
            ino,
        }
    }

    /// Attributes of `path`.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn metadata(&self, path: impl AsRef<str>) -> VfsResult<Metadata> {
        Ok(Metadata {
            attr: self.resolve(path.as_ref()).await?.attr,
        })
    }

    /// Whether `path` exists: `Ok(false)` when it does not, an error when that cannot be
    /// told (the store failed, a parent is a file), like `tokio::fs::try_exists`.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn try_exists(&self, path: impl AsRef<str>) -> VfsResult<bool> {
        match self.resolve(path.as_ref()).await {
            Ok(_) => Ok(true),
            Err(VfsError::NotFound(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Lists directory `path`, one LIST page at a time.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn read_dir(&self, path: impl AsRef<str>) -> VfsResult<ReadDir> {
        let dir = self.resolve(path.as_ref()).await?;
        let handle = self.fs.opendir(dir.ino()).await?;
        Ok(ReadDir {
            fs: Arc::clone(&self.shared),
            ino: dir.ino(),
            handle,
            offset: 0,
            buffered: VecDeque::new(),
            pending: None,
            done: false,
        })
    }

    /// Opens `path` for reading.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn open(&self, path: impl AsRef<str>) -> VfsResult<File> {
        self.open_with(path, OpenOptions::new().read(true)).await
    }

    /// Opens `path` with `options` (like `std::fs::OpenOptions::open`).
    ///
    /// # Cancellation
    ///
    /// Nothing reaches S3 before the [`File`] is completed, closed or dropped, so dropping
    /// this future stores nothing: a file it was creating or truncating is, in S3, as it
    /// was.
    pub async fn open_with(&self, path: impl AsRef<str>, options: &OpenOptions) -> VfsResult<File> {
        let path = path.as_ref();
        let flags = options.flags();
        let (ino, handle, size) = match self.resolve(path).await {
            Ok(_) if options.create_new => return Err(VfsError::Exists(path.to_owned())),
            Ok(found) if found.attr.kind == FileKind::Directory => {
                return Err(VfsError::IsADirectory(path.to_owned()))
            }
            Ok(found) => {
                let handle = self.fs.open(found.ino(), flags).await?;
                let size = if flags.truncate && flags.write {
                    0
                } else {
                    found.attr.size
                };
                (found.ino(), handle, size)
            }
            Err(VfsError::NotFound(_)) if options.create || options.create_new => {
                let parsed = FsPath::parse(path)?;
                let (parent, name) = match parsed.as_str().rsplit_once('/') {
                    Some((parent, name)) => (parent.to_owned(), name.to_owned()),
                    None => (String::new(), parsed.as_str().to_owned()),
                };
                let (parent_ino, _parent_hold) = match self.resolve(&parent).await {
                    Ok(found) => (found.attr.ino, found.hold),
                    // Like any object store: a file may be created under a prefix that has
                    // no object yet; its directories appear with it.
                    Err(VfsError::NotFound(_)) => {
                        let ino = self.fs.implicit_dir(&FsPath::parse(&parent)?)?;
                        (ino, Some(self.hold(ino)))
                    }
                    Err(err) => return Err(err),
                };
                let (entry, handle) = self
                    .fs
                    .create(parent_ino, OsStr::new(&name), 0o644, flags)
                    .await?;
                // The handle holds the new inode; the lookup create counted is not kept.
                drop(self.hold(entry.attr.ino));
                (entry.attr.ino, handle, 0)
            }
            Err(err) => return Err(err),
        };
        Ok(File {
            fs: Arc::clone(&self.shared),
            ino,
            handle,
            size,
            pos: 0,
            buffered: VecDeque::new(),
            pending: None,
            pending_write: None,
            pending_upload: None,
        })
    }

    /// Creates (or truncates) `path` and opens it for writing. Missing parent directories
    /// are implied by the new object's key, as in any object store.
    ///
    /// # Cancellation
    ///
    /// As [`open_with`](Self::open_with): dropping the future stores nothing.
    pub async fn create(&self, path: impl AsRef<str>) -> VfsResult<File> {
        self.open_with(
            path,
            OpenOptions::new().write(true).create(true).truncate(true),
        )
        .await
    }

    /// Writes `data` as the whole content of `path` and waits until it is in the store.
    ///
    /// # Cancellation
    ///
    /// The write runs to its end on a task of its own, as `tokio::fs::write` does on a
    /// blocking thread: dropping the future does not stop it. `path` then holds all of
    /// `data`, or (when the upload fails) is as it was, the data kept in the recovery
    /// directory; never part of it. (A write stopped half-way would leave its file to
    /// the background close of a dropped [`File`], which stores what was written.)
    pub async fn write(&self, path: impl AsRef<str>, data: impl Into<Bytes>) -> VfsResult<()> {
        let (this, path, data) = (self.clone(), path.as_ref().to_owned(), data.into());
        to_the_end(async move { this.write_whole(&path, data).await }).await
    }

    /// [`write`](Self::write), on the caller's task.
    async fn write_whole(&self, path: &str, data: Bytes) -> VfsResult<()> {
        let file = self.create(path).await?;
        let mut at = 0usize;
        let written = loop {
            if at >= data.len() {
                break Ok(());
            }
            match self
                .fs
                .write(file.ino, file.handle, at as u64, data.slice(at..))
                .await
            {
                Ok(0) => {
                    break Err(VfsError::InvalidArgument(
                        "write made no progress".to_owned(),
                    ))
                }
                Ok(n) => at += n as usize,
                Err(e) => break Err(e),
            }
        };
        // Closed (and waited for) also after a failed write: the caller learns the
        // outcome only once the file is stored, or kept and gone from the namespace.
        let closed = file.close().await;
        written.and(closed)
    }

    /// The parent directory of `path` (held until dropped) and its last component.
    async fn parent_of(&self, path: &str) -> VfsResult<(Resolved, String)> {
        let parsed = FsPath::parse(path)?;
        let (parent, name) = match parsed.as_str().rsplit_once('/') {
            Some((parent, name)) => (parent.to_owned(), name.to_owned()),
            None => (String::new(), parsed.as_str().to_owned()),
        };
        if name.is_empty() {
            return Err(VfsError::InvalidArgument(
                "the root has no parent".to_owned(),
            ));
        }
        let dir = self.resolve(&parent).await?;
        if dir.attr.kind != FileKind::Directory {
            return Err(VfsError::NotADirectory(parent));
        }
        Ok((dir, name))
    }

    /// Creates directory `path` (its parent must exist), mode 0755.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the directory created or not (a request already sent
    /// may still land), and nothing else.
    pub async fn create_dir(&self, path: impl AsRef<str>) -> VfsResult<()> {
        let (parent, name) = self.parent_of(path.as_ref()).await?;
        let entry = self
            .fs
            .mkdir(parent.ino(), OsStr::new(&name), 0o755)
            .await?;
        drop(self.hold(entry.attr.ino));
        Ok(())
    }

    /// Creates directory `path` and every missing parent.
    ///
    /// # Cancellation
    ///
    /// Dropping the future keeps the directories created so far, outermost first.
    pub async fn create_dir_all(&self, path: impl AsRef<str>) -> VfsResult<()> {
        let parsed = FsPath::parse(path.as_ref())?;
        let mut at = String::new();
        for part in parsed.as_str().split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            match self.create_dir(&at).await {
                Ok(()) => {}
                Err(VfsError::Exists(_)) if self.metadata(&at).await?.is_dir() => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Removes file (or symbolic link) `path`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the file removed or not (a DELETE already sent may
    /// still land); its directory stays either way.
    pub async fn remove_file(&self, path: impl AsRef<str>) -> VfsResult<()> {
        let (parent, name) = self.parent_of(path.as_ref()).await?;
        self.fs.unlink(parent.ino(), OsStr::new(&name)).await
    }

    /// Removes empty directory `path`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the directory removed or not (a DELETE already sent
    /// may still land); its parent stays either way.
    pub async fn remove_dir(&self, path: impl AsRef<str>) -> VfsResult<()> {
        let (parent, name) = self.parent_of(path.as_ref()).await?;
        self.fs.rmdir(parent.ino(), OsStr::new(&name)).await
    }

    /// Copies file `from` to `to` (created, or truncated if it exists) and waits until the
    /// copy is in the store, like `tokio::fs::copy`: returns the bytes copied. A whole file
    /// of one bucket is copied server-side (CopyObject, or UploadPartCopy parts above the
    /// single-request limit) — no byte passes through this process; other copies go
    /// through the handles. `to` becomes visible only complete.
    ///
    /// # Cancellation
    ///
    /// The copy runs to its end on a task of its own, as `tokio::fs::copy` does on a
    /// blocking thread: dropping the future does not stop it, and `to` ends complete, or
    /// as it was when the copy fails. (A copy stopped half-way would leave `to` to the
    /// background close of its dropped handle, which stores it empty or partly copied.)
    pub async fn copy(&self, from: impl AsRef<str>, to: impl AsRef<str>) -> VfsResult<u64> {
        let this = self.clone();
        let (from, to) = (from.as_ref().to_owned(), to.as_ref().to_owned());
        to_the_end(async move { this.copy_whole(&from, &to).await }).await
    }

    /// [`copy`](Self::copy), on the caller's task.
    async fn copy_whole(&self, from: &str, to: &str) -> VfsResult<u64> {
        let source = self.open(from).await?;
        let dest = self.create(to).await?;
        let mut copied = 0u64;
        loop {
            let n = self
                .fs
                .copy_file_range(
                    source.ino,
                    source.handle,
                    copied,
                    dest.ino,
                    dest.handle,
                    copied,
                    source.size.saturating_sub(copied).max(1),
                )
                .await?;
            if n == 0 {
                break;
            }
            copied += n;
        }
        dest.close().await?;
        Ok(copied)
    }

    /// Renames `from` to `to`, replacing a file (or an empty directory) there.
    ///
    /// # Cancellation
    ///
    /// A file is renamed by a copy, then a delete of the old name: dropping the future
    /// leaves it under the old name, under both (copied, not yet deleted), or under the
    /// new one, never under neither. A directory's entries move one by one: some may have
    /// moved and the others not.
    pub async fn rename(&self, from: impl AsRef<str>, to: impl AsRef<str>) -> VfsResult<()> {
        let (from_parent, from_name) = self.parent_of(from.as_ref()).await?;
        let (to_parent, to_name) = self.parent_of(to.as_ref()).await?;
        self.fs
            .rename(
                from_parent.ino(),
                OsStr::new(&from_name),
                to_parent.ino(),
                OsStr::new(&to_name),
                false,
            )
            .await
    }

    /// Creates symbolic link `link` pointing at `target`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the link created or not (a request already sent may
    /// still land), and nothing else.
    pub async fn symlink(&self, target: impl AsRef<str>, link: impl AsRef<str>) -> VfsResult<()> {
        let (parent, name) = self.parent_of(link.as_ref()).await?;
        let entry = (self.fs)
            .symlink(parent.ino(), OsStr::new(&name), OsStr::new(target.as_ref()))
            .await?;
        drop(self.hold(entry.attr.ino));
        Ok(())
    }

    /// Makes `link` a second name of the file `original`, like `tokio::fs::hard_link`,
    /// where the file system has hard links ([`Vfs::hard_links`]: the vault layout).
    /// Elsewhere it fails with `ENOTSUP` ([`VfsError::Unsupported`]) without a request:
    /// in the plain layout of one object per key a file is its object, and a second key
    /// would be a second object, which a write through one name does not change.
    /// [`copy`](Self::copy) or [`symlink`](Self::symlink) instead. (The FUSE binding
    /// answers `link(2)` with `EPERM`, that call's errno for a file system without hard
    /// links.)
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the link made or not (a request already sent may still
    /// land).
    pub async fn hard_link(
        &self,
        original: impl AsRef<str>,
        link: impl AsRef<str>,
    ) -> VfsResult<()> {
        if !self.fs.hard_links() {
            return Err(VfsError::Unsupported(format!(
                "hard link {} to {}: one object per key has no second name",
                link.as_ref(),
                original.as_ref()
            )));
        }
        let file = self.resolve(original.as_ref()).await?;
        let (parent, name) = self.parent_of(link.as_ref()).await?;
        let entry = self
            .fs
            .link(file.ino(), parent.ino(), OsStr::new(&name))
            .await?;
        drop(self.hold(entry.attr.ino));
        Ok(())
    }

    /// The target of symbolic link `path`.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn read_link(&self, path: impl AsRef<str>) -> VfsResult<String> {
        let path = path.as_ref();
        let link = self.resolve(path).await?;
        let target = self.fs.readlink(link.ino()).await?;
        String::from_utf8(target.to_vec())
            .map_err(|_| VfsError::InvalidArgument(format!("{path}: target is not UTF-8")))
    }

    /// Sets the size of file `path` (truncating or extending with zeros), durably.
    ///
    /// # Cancellation
    ///
    /// The file is rewritten by one upload: dropping the future leaves it at its old size
    /// or at the new one (a request already sent may still land), never between.
    pub async fn set_len(&self, path: impl AsRef<str>, size: u64) -> VfsResult<()> {
        let file = self.resolve(path.as_ref()).await?;
        let changes = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.fs.setattr(file.ino(), None, changes).await.map(|_| ())
    }

    /// Sets the permission bits of `path` (stored as `x-amz-meta-mode`).
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the old bits or the new ones (a request already sent
    /// may still land).
    pub async fn set_permissions(&self, path: impl AsRef<str>, mode: u32) -> VfsResult<()> {
        let found = self.resolve(path.as_ref()).await?;
        let changes = SetAttr {
            mode: Some(mode & 0o7777),
            ..SetAttr::default()
        };
        self.fs
            .setattr(found.ino(), None, changes)
            .await
            .map(|_| ())
    }

    /// The extended attribute `name` (a `user.` one) of `path`.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn get_xattr(&self, path: impl AsRef<str>, name: &str) -> VfsResult<Bytes> {
        let found = self.resolve(path.as_ref()).await?;
        self.fs
            .getxattr(found.ino(), std::ffi::OsStr::new(name))
            .await
    }

    /// Sets the extended attribute `name` (a `user.` one) of `path` to `value`.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the old value or the new one (a request already sent
    /// may still land).
    pub async fn set_xattr(
        &self,
        path: impl AsRef<str>,
        name: &str,
        value: &[u8],
    ) -> VfsResult<()> {
        let found = self.resolve(path.as_ref()).await?;
        let value = Bytes::copy_from_slice(value);
        self.fs
            .setxattr(found.ino(), std::ffi::OsStr::new(name), value)
            .await
    }

    /// Reads the whole file at `path` (of any size that fits in memory), as it is when
    /// opened: a file replaced meanwhile fails with `ESTALE` rather than mixing versions.
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future drops what was read and closes the file.
    pub async fn read(&self, path: impl AsRef<str>) -> VfsResult<Bytes> {
        let path = path.as_ref();
        let file = self.open(path).await?;
        let size = usize::try_from(file.size).map_err(|_| {
            VfsError::InvalidArgument(format!("{path} is too large to read into memory"))
        })?;
        if size <= WHOLE_READ_CHUNK as usize {
            return self.fs.read(file.ino, file.handle, 0, size as u32).await;
        }
        let mut whole = bytes::BytesMut::with_capacity(size);
        while whole.len() < size {
            let at = whole.len() as u64;
            let want = u32::try_from(size - whole.len())
                .unwrap_or(WHOLE_READ_CHUNK)
                .min(WHOLE_READ_CHUNK);
            let piece = self.fs.read(file.ino, file.handle, at, want).await?;
            if piece.is_empty() {
                break;
            }
            whole.extend_from_slice(&piece);
        }
        Ok(whole.freeze())
    }

    /// Reads the whole file at `path` as UTF-8 text; `EINVAL` when it is not.
    ///
    /// # Cancellation
    ///
    /// As [`read`](Self::read): it changes nothing.
    pub async fn read_to_string(&self, path: impl AsRef<str>) -> VfsResult<String> {
        let path = path.as_ref();
        let bytes = self.read(path).await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| VfsError::InvalidArgument(format!("{path} is not UTF-8: {e}")))
    }

    /// Removes directory `path` and everything below it, like `tokio::fs::remove_dir_all`:
    /// files and links one by one, then each directory once empty. Stops at the first
    /// failure (what was removed stays removed).
    ///
    /// # Cancellation
    ///
    /// As after a failure: dropping the future stops the removal where it is; what was
    /// removed stays removed, the rest stays.
    pub async fn remove_dir_all(&self, path: impl AsRef<str>) -> VfsResult<()> {
        let root = FsPath::parse(path.as_ref())?;
        if !self.metadata(root.as_str()).await?.is_dir() {
            return Err(VfsError::NotADirectory(root.to_string()));
        }
        // Depth first, without recursion: directories are removed after their contents.
        let mut pending = vec![(root.as_str().to_owned(), false)];
        while let Some((dir, listed)) = pending.pop() {
            if listed {
                self.remove_dir(&dir).await?;
                continue;
            }
            pending.push((dir.clone(), true));
            let entries = self.read_dir(&dir).await?.collect().await?;
            for entry in entries {
                let child = if dir.is_empty() {
                    entry.name.clone()
                } else {
                    format!("{dir}/{}", entry.name)
                };
                if entry.kind == FileKind::Directory {
                    pending.push((child, false));
                } else {
                    self.remove_file(&child).await?;
                }
            }
        }
        Ok(())
    }
}

/// Runs `work` on a task of its own and waits for it: dropping the returned future does
/// not stop the work, as `tokio::fs`'s operations go on on their blocking thread. For the
/// operations that a stop half-way would leave worse than either end (a file written or
/// copied in part).
async fn to_the_end<T: Send + 'static>(
    work: impl Future<Output = VfsResult<T>> + Send + 'static,
) -> VfsResult<T> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(VfsError::ShuttingDown(
            "the async runtime stopped the operation".to_owned(),
        )),
    }
}

/// A directory being listed. Entries come without `.` and `..`.
///
/// Read it with [`next_entry`](Self::next_entry), or as a [`Stream`] of entries, like
/// `tokio_stream::wrappers::ReadDirStream`:
///
/// ```no_run
/// # async fn example(vfs: s3vfs::S3Vfs) -> s3vfs::VfsResult<()> {
/// use futures::TryStreamExt;
///
/// let names: Vec<String> = vfs
///     .read_dir("datasets")
///     .await?
///     .map_ok(|entry| entry.name)
///     .try_collect()
///     .await?;
/// # Ok(()) }
/// ```
///
/// An error does not end the stream: the next poll asks again for the same entries.
pub struct ReadDir {
    fs: Arc<dyn Vfs>,
    ino: Ino,
    handle: Handle,
    offset: u64,
    buffered: VecDeque<DirEntry>,
    /// The batch being fetched, kept across polls (and across dropped calls).
    pending: Option<BoxFuture<'static, VfsResult<Vec<DirEntry>>>>,
    done: bool,
}

impl std::fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDir")
            .field("ino", &self.ino)
            .finish_non_exhaustive()
    }
}

impl ReadDir {
    /// The next entry, or `None` at the end.
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: no entry is lost. A batch being fetched when the future is dropped
    /// is kept, and the next call (or poll of the stream) goes on with it.
    pub async fn next_entry(&mut self) -> VfsResult<Option<DirEntry>> {
        std::future::poll_fn(|cx| self.poll_next_entry(cx)).await
    }

    /// All remaining entries.
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops this `ReadDir` and the entries gathered so far; nothing
    /// else.
    pub async fn collect(mut self) -> VfsResult<Vec<DirEntry>> {
        let mut out = Vec::new();
        while let Some(entry) = self.next_entry().await? {
            out.push(entry);
        }
        Ok(out)
    }

    /// The next entry once it is there, fetching a batch when none is buffered.
    fn poll_next_entry(&mut self, cx: &mut Context<'_>) -> Poll<VfsResult<Option<DirEntry>>> {
        loop {
            if let Some(entry) = self.buffered.pop_front() {
                self.offset = entry.next_offset;
                if entry.name == "." || entry.name == ".." {
                    continue;
                }
                return Poll::Ready(Ok(Some(entry)));
            }
            if self.done {
                return Poll::Ready(Ok(None));
            }
            let pending = self.pending.get_or_insert_with(|| {
                let fs = Arc::clone(&self.fs);
                let (ino, handle, offset) = (self.ino, self.handle, self.offset);
                async move { fs.readdir(ino, handle, offset, DIR_BATCH).await }.boxed()
            });
            let batch = match pending.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(batch) => batch,
            };
            self.pending = None;
            let batch = batch?;
            self.done = batch.is_empty();
            self.buffered.extend(batch);
        }
    }
}

/// The entries, as `tokio_stream::wrappers::ReadDirStream` gives `tokio::fs`'s.
impl Stream for ReadDir {
    type Item = VfsResult<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_entry(cx).map(Result::transpose)
    }
}

impl Drop for ReadDir {
    fn drop(&mut self) {
        self.fs.release_detached(self.ino, self.handle);
    }
}

/// An open file: `AsyncRead + AsyncSeek` over the object, with read-ahead.
pub struct File {
    fs: Arc<dyn Vfs>,
    ino: Ino,
    handle: Handle,
    size: u64,
    /// Position of the next byte `poll_read` returns.
    pos: u64,
    /// Data already read from the file system, starting at `pos`.
    buffered: VecDeque<Bytes>,
    pending: Option<BoxFuture<'static, VfsResult<Vec<Bytes>>>>,
    pending_write: Option<BoxFuture<'static, VfsResult<u32>>>,
    pending_upload: Option<BoxFuture<'static, VfsResult<()>>>,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("ino", &self.ino)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl File {
    /// Size of the object version this handle reads.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Uploads what was written and waits until the object is complete in the store:
    /// the result of the upload. Writes are durable only after this (or `shutdown()`, or
    /// [`close`](Self::close)) succeeded; a `File` dropped without it is closed in the
    /// background, which uploads them (or keeps them in the recovery directory) with
    /// nobody to tell the outcome.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the changes with the `File` (a request already sent
    /// may still land): the next `complete` or `close`, or dropping the `File`, uploads
    /// them.
    pub async fn complete(&mut self) -> VfsResult<()> {
        self.fs.flush(self.ino, self.handle).await
    }

    /// Completes the file ([`complete`](Self::complete)) and closes it, waiting for the
    /// close to finish: when this returns, the file is in the store, or (on an error) it
    /// is not and its data was kept in the recovery directory. Dropping a `File` closes
    /// it in the background instead.
    ///
    /// # Cancellation
    ///
    /// No change is lost: dropping the future closes the file in the background, as
    /// dropping a `File` does, which uploads what is not uploaded yet (or keeps it in the
    /// recovery directory).
    pub async fn close(mut self) -> VfsResult<()> {
        let completed = self.complete().await;
        // The handle is released here (the drop that follows finds nothing to close), on
        // a task of its own: a release stopped half-way would neither upload nor keep.
        let (fs, ino, handle) = (Arc::clone(&self.fs), self.ino, self.handle);
        let released = to_the_end(async move { fs.release(ino, handle).await }).await;
        completed.and(released)
    }

    /// Sets the size of the file through this handle (like `ftruncate`): bytes past it
    /// are dropped, bytes up to it never written read as zeros. Stored by the next
    /// [`complete`](Self::complete) or [`close`](Self::close).
    ///
    /// # Cancellation
    ///
    /// A change of this open file only, which S3 sees at the next `complete` or `close`:
    /// dropping the future leaves the size changed or not.
    pub async fn set_len(&self, size: u64) -> VfsResult<()> {
        let changes = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.fs
            .setattr(self.ino, Some(self.handle), changes)
            .await
            .map(|_| ())
    }

    /// Writes `data` at `offset` without moving the position (like `pwrite`).
    ///
    /// # Cancellation
    ///
    /// A write is not in S3 before the next `complete` or `close` (or the drop of the
    /// `File`): dropping the future leaves all, some or none of `data` written at
    /// `offset`, to be uploaded then.
    pub async fn write_at(&self, offset: u64, data: impl Into<Bytes>) -> VfsResult<u32> {
        self.fs
            .write(self.ino, self.handle, offset, data.into())
            .await
    }

    /// Reads up to `len` bytes at `offset` without moving the position (like `pread`).
    ///
    /// # Cancellation
    ///
    /// It changes nothing: dropping the future leaves nothing behind.
    pub async fn read_at(&self, offset: u64, len: u32) -> VfsResult<Bytes> {
        self.fs.read(self.ino, self.handle, offset, len).await
    }
}

impl File {
    /// Makes sure data at `pos` is buffered (fetching at least `want` bytes when it is
    /// not); ready with `false` at the end of the file.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<std::io::Result<bool>> {
        if !self.buffered.is_empty() {
            return Poll::Ready(Ok(true));
        }
        if self.pending.is_none() {
            let fs = Arc::clone(&self.fs);
            let (ino, handle, pos) = (self.ino, self.handle, self.pos);
            let len = want.max(READ_CHUNK).min(u32::MAX as usize) as u32;
            self.pending = Some(async move { fs.read_chunks(ino, handle, pos, len).await }.boxed());
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        match pending.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.pending = None;
                self.buffered = result?.into_iter().filter(|b| !b.is_empty()).collect();
                Poll::Ready(Ok(!self.buffered.is_empty()))
            }
        }
    }

    /// Takes up to `max` buffered bytes at the position, without copying them.
    fn take_buffered(&mut self, max: usize) -> Bytes {
        let Some(front) = self.buffered.front_mut() else {
            return Bytes::new();
        };
        let piece = front.split_to(front.len().min(max));
        if front.is_empty() {
            self.buffered.pop_front();
        }
        self.pos += piece.len() as u64;
        piece
    }

    /// Reads the next bytes at the position, at most `max`, as they were fetched: no copy
    /// into a buffer of the caller's (the zero-copy counterpart of `read`). An empty
    /// answer means the end of the file (or `max == 0`).
    ///
    /// ```no_run
    /// # async fn example(mut file: s3vfs::File) -> std::io::Result<()> {
    /// let mut total = 0;
    /// loop {
    ///     let piece = file.read_bytes(8 << 20).await?;
    ///     if piece.is_empty() {
    ///         break;
    ///     }
    ///     total += piece.len(); // hand `piece` on: it is reference-counted, not copied
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancellation
    ///
    /// Cancel-safe: bytes being fetched when the future is dropped are kept, and the next
    /// read returns them; nothing is skipped.
    pub async fn read_bytes(&mut self, max: usize) -> std::io::Result<Bytes> {
        if max == 0 {
            return Ok(Bytes::new());
        }
        let has_data = std::future::poll_fn(|cx| self.poll_fill(cx, max)).await?;
        Ok(if has_data {
            self.take_buffered(max)
        } else {
            Bytes::new()
        })
    }
}

impl AsyncRead for File {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.poll_fill(cx, buf.remaining()) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Ready(Ok(_)) => {}
        }
        // One copy: from the fetched chunks straight into the caller's buffer.
        while buf.remaining() > 0 && !this.buffered.is_empty() {
            let piece = this.take_buffered(buf.remaining());
            buf.put_slice(&piece);
        }
        Poll::Ready(Ok(()))
    }
}

/// Buffered reading without a copy: `fill_buf` hands out the fetched bytes themselves.
impl AsyncBufRead for File {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        let this = self.get_mut();
        match this.poll_fill(cx, READ_CHUNK) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(this.buffered.front().map_or(&[], |b| &b[..]))),
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        let mut left = amt;
        while left > 0 && !this.buffered.is_empty() {
            left -= this.take_buffered(left).len();
        }
    }
}

impl AsyncWrite for File {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.pending_write.is_none() {
            let fs = Arc::clone(&this.fs);
            let (ino, handle, pos) = (this.ino, this.handle, this.pos);
            let data = Bytes::copy_from_slice(buf);
            this.pending_write =
                Some(async move { fs.write(ino, handle, pos, data).await }.boxed());
        }
        let Some(pending) = this.pending_write.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        match pending.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.pending_write = None;
                let n = u64::from(result?);
                this.buffered.clear();
                this.pos += n;
                this.size = this.size.max(this.pos);
                Poll::Ready(Ok(n as usize))
            }
        }
    }

    /// Writes are handed to the file system at once; durability needs `shutdown`.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Uploads what was written: `Ok` means the object is complete in the store.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pending_upload.is_none() {
            let fs = Arc::clone(&this.fs);
            let (ino, handle) = (this.ino, this.handle);
            this.pending_upload = Some(async move { fs.flush(ino, handle).await }.boxed());
        }
        let Some(pending) = this.pending_upload.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match pending.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.pending_upload = None;
                Poll::Ready(result.map_err(std::io::Error::from))
            }
        }
    }
}

impl AsyncSeek for File {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let target = match position {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        if target != self.pos {
            self.pos = target;
            self.buffered.clear();
            self.pending = None;
        }
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

impl Drop for File {
    fn drop(&mut self) {
        self.fs.release_detached(self.ino, self.handle);
    }
}
