//! [`FuseAdapter`]: `fuser::Filesystem` over any [`Vfs`].
//!
//! Every callback converts its arguments into owned core types, spawns the core call on the
//! tokio runtime it was given and replies from that task, so the FUSE session thread only
//! ever parses requests and never waits on the network. A reply that is dropped unsent (the
//! runtime shut down under it) answers `EIO`, fuser's default.
//!
//! Invariants:
//! - every [`VfsError`] becomes exactly its own [`VfsError::errno`];
//! - inode numbers and file handles pass through unchanged (`Ino(n)` is `INodeNo(n)`);
//! - `flush` (sent on every close) answers only once the core's upload is over, so
//!   close(2) returns the upload's error; `fsync` likewise;
//! - `copy_file_range` is the core's (server-side for `cp` of a whole file within the
//!   mount), any flag `EINVAL`; a reply carries at most [`vfs::MAX_COPY_REPLY`] bytes,
//!   and the kernel calls again for the rest;
//! - no open keeps the kernel's cached pages (`FOPEN_KEEP_CACHE`), so a file another
//!   machine replaced is read afresh by the next open;
//! - write-only handles bypass the page cache (`FOPEN_DIRECT_IO`), readable ones use it
//!   unless the mount asked for direct I/O everywhere ([`AdapterConfig::direct_io`]);
//! - the core counts every lookup the kernel gets (lookup, create, mkdir, symlink and each
//!   `readdirplus` entry but `.` and `..`) before the reply is sent, so its count is never
//!   below the kernel's; `readdirplus` entries that do not fit the kernel's buffer are
//!   forgotten again at once, and `forget`/`batch_forget` pass the kernel's counts on to
//!   [`Vfs::forget`] unchanged.

use bytes::Bytes;
use fuser::{
    CopyFileRangeFlags, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags as FuseOpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use s3vfs::error::{VfsError, VfsResult};
use s3vfs::vfs::{self, DirEntry, Entry, FileKind, Handle, Ino, OpenFlags, SetAttr, Vfs};
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle as RuntimeHandle;
use tokio::sync::watch;

/// Inode generation: the core never reuses an inode number for another file while mounted.
const GENERATION: Generation = Generation(0);

/// How the adapter talks to the kernel: sizes it negotiates in `init` and how it lists.
///
/// ```
/// use s3vfs_fuse::AdapterConfig;
/// use std::time::Duration;
/// let config = AdapterConfig::default().with_readdirplus(false).with_listing_ttl(Duration::ZERO);
/// assert!(!config.readdirplus);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterConfig {
    /// Answer `readdirplus`, so that `ls -l` gets attributes with the listing instead of one
    /// lookup per entry.
    pub readdirplus: bool,
    /// How long the kernel may cache attributes learnt from a listing (`readdirplus`);
    /// lookups use the core's own [`Entry::ttl`]. Usually the core's metadata TTL.
    pub listing_ttl: Duration,
    /// Largest read-ahead the kernel does on its own, in bytes (capped by the kernel).
    pub max_readahead: u32,
    /// Largest single write request, in bytes (capped by the kernel and fuser at 16 MiB).
    pub max_write: u32,
    /// Requests (mostly read-ahead) the kernel keeps in flight at once.
    pub max_background: u16,
    /// Directory entries asked of the core per `readdir`; what does not fit the kernel's
    /// buffer is asked again from the next offset.
    pub readdir_batch: usize,
    /// Serve extended attributes. Off, every xattr call is answered `ENOSYS` once and the
    /// kernel stops asking (applications then get `EOPNOTSUPP`).
    pub xattrs: bool,
    /// Every handle bypasses the page cache (`FOPEN_DIRECT_IO`), not only write-only
    /// ones: each read(2) becomes one request of at most the caller's size, answered from
    /// the core's read-ahead. Large sequential reads save the page-cache copy and leave
    /// no cached pages behind; small reads cost a round trip each, and nothing is served
    /// twice from the page cache. Shared `mmap` still works where the kernel supports
    /// `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux 6.6+); elsewhere it fails with `ENODEV`.
    pub direct_io: bool,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            readdirplus: true,
            listing_ttl: Duration::from_secs(1),
            max_readahead: 1024 * 1024,
            max_write: 1024 * 1024,
            max_background: 64,
            readdir_batch: 256,
            xattrs: true,
            direct_io: false,
        }
    }
}

impl AdapterConfig {
    /// Enables or disables `readdirplus`.
    pub fn with_readdirplus(mut self, enabled: bool) -> Self {
        self.readdirplus = enabled;
        self
    }

    /// Sets how long attributes from listings are cached by the kernel.
    pub fn with_listing_ttl(mut self, ttl: Duration) -> Self {
        self.listing_ttl = ttl;
        self
    }

    /// Enables or disables extended attributes (see [`AdapterConfig::xattrs`]).
    pub fn with_xattrs(mut self, enabled: bool) -> Self {
        self.xattrs = enabled;
        self
    }

    /// Enables or disables direct I/O for every handle (see [`AdapterConfig::direct_io`]).
    pub fn with_direct_io(mut self, enabled: bool) -> Self {
        self.direct_io = enabled;
        self
    }

    /// Sets the kernel's read-ahead and the largest write request, in bytes.
    pub fn with_io_sizes(mut self, max_readahead: u32, max_write: u32) -> Self {
        self.max_readahead = max_readahead.max(4096);
        self.max_write = max_write.max(4096);
        self
    }
}

/// Sends `true` once the session is over: on `destroy`, or when the adapter is dropped.
#[derive(Debug)]
struct EndSignal(watch::Sender<bool>);

impl Drop for EndSignal {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// A `fuser::Filesystem` that forwards every request to a [`Vfs`].
///
/// ```no_run
/// # fn example(vfs: std::sync::Arc<dyn s3vfs::vfs::Vfs>) {
/// use s3vfs_fuse::{AdapterConfig, FuseAdapter};
/// let adapter = FuseAdapter::new(vfs, tokio::runtime::Handle::current(), AdapterConfig::default());
/// # drop(adapter);
/// # }
/// ```
pub struct FuseAdapter<V: Vfs + ?Sized = dyn Vfs> {
    vfs: Arc<V>,
    runtime: RuntimeHandle,
    config: AdapterConfig,
    ended: EndSignal,
}

impl<V: Vfs + ?Sized> std::fmt::Debug for FuseAdapter<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<V: Vfs + ?Sized> FuseAdapter<V> {
    /// An adapter that runs the core's calls on `runtime`.
    pub fn new(vfs: Arc<V>, runtime: RuntimeHandle, config: AdapterConfig) -> Self {
        Self {
            vfs,
            runtime,
            config,
            ended: EndSignal(watch::channel(false).0),
        }
    }

    /// A receiver that turns `true` when the session ends (the file system was unmounted,
    /// by us or by `fusermount3 -u`), or when the adapter is dropped.
    pub fn session_end(&self) -> watch::Receiver<bool> {
        self.ended.0.subscribe()
    }

    /// Spawns the core call `call` and gives its result to `ok`, or its errno to `reply`.
    fn run<T, R, Fut>(
        &self,
        op: &'static str,
        call: Fut,
        reply: R,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        T: Send + 'static,
        R: ErrorReply,
        Fut: Future<Output = VfsResult<T>> + Send + 'static,
    {
        self.runtime.spawn(async move {
            match call.await {
                Ok(value) => ok(reply, value),
                Err(err) => reply.error(errno(op, &err)),
            }
        });
    }
}

/// The errno for `err`, logged at a level that fits how surprising it is.
fn errno(op: &str, err: &VfsError) -> Errno {
    let code = err.errno();
    match code {
        libc::ENOENT | libc::ENODATA | libc::EEXIST | libc::ENOTEMPTY | libc::EROFS => {
            tracing::trace!(op, %err, "request failed")
        }
        libc::EIO | libc::EAGAIN | libc::EACCES | libc::ESTALE | libc::ENOSPC => {
            tracing::warn!(op, %err, "request failed")
        }
        _ => tracing::debug!(op, %err, "request failed"),
    }
    Errno::from_i32(code)
}

/// The replies that can carry an errno.
trait ErrorReply: Send + 'static {
    fn error(self, errno: Errno);
}

macro_rules! error_reply {
    ($($reply:ty),*) => {
        $(impl ErrorReply for $reply {
            fn error(self, errno: Errno) {
                <$reply>::error(self, errno)
            }
        })*
    };
}

error_reply!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

/// The fuser file type of a core kind.
fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
    }
}

/// The kernel's view of a core inode's attributes. S3 keeps one time per object, so access,
/// change and creation times all show the modification time.
fn fuse_attr(attr: &vfs::FileAttr) -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size,
        blocks: attr.blocks(),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: attr.mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: attr.blksize,
        flags: 0,
    }
}

/// Attributes for `.` and `..` in a `readdirplus` answer when the core gives none: the
/// kernel takes only their inode number and type from it, and never caches them.
fn dot_attr(entry: &DirEntry) -> vfs::FileAttr {
    vfs::FileAttr {
        ino: entry.ino,
        kind: entry.kind,
        size: 0,
        mtime: SystemTime::UNIX_EPOCH,
        perm: 0,
        uid: 0,
        gid: 0,
        nlink: 2,
        blksize: 4096,
        rdev: 0,
    }
}

fn is_dot(name: &str) -> bool {
    name == "." || name == ".."
}

fn entry_reply(reply: ReplyEntry, entry: Entry) {
    reply.entry(&entry.ttl, &fuse_attr(&entry.attr), GENERATION);
}

fn attr_reply(reply: ReplyAttr, entry: Entry) {
    reply.attr(&entry.ttl, &fuse_attr(&entry.attr));
}

/// Answers an xattr request of `size` bytes with `value`, as getxattr(2) defines it: the
/// size alone when asked with 0, `ERANGE` when it does not fit.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(len) = u32::try_from(value.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl<V: Vfs + ?Sized> Filesystem for FuseAdapter<V> {
    fn init(&mut self, _req: &Request, kernel: &mut KernelConfig) -> io::Result<()> {
        // Each setter answers the nearest allowed value when ours is out of range.
        if let Err(nearest) = kernel.set_max_readahead(self.config.max_readahead) {
            let _ = kernel.set_max_readahead(nearest);
        }
        if let Err(nearest) = kernel.set_max_write(self.config.max_write) {
            let _ = kernel.set_max_write(nearest);
        }
        if let Err(nearest) = kernel.set_max_background(self.config.max_background) {
            let _ = kernel.set_max_background(nearest);
        }
        let mut wanted = InitFlags::FUSE_ASYNC_READ
            // Lookups in one directory may run at once: each is a network round trip.
            | InitFlags::FUSE_PARALLEL_DIROPS
            // Drop cached pages when the size or mtime of a file changes in the store.
            | InitFlags::FUSE_AUTO_INVAL_DATA
            // O_TRUNC reaches `open` instead of a separate truncate to zero first.
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_CACHE_SYMLINKS;
        if self.config.readdirplus {
            wanted |= InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        }
        for flag in wanted.iter() {
            if kernel.add_capabilities(flag).is_err() {
                tracing::debug!(?flag, "the kernel does not support this FUSE capability");
            }
        }
        if self.config.direct_io
            && kernel
                .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
                .is_err()
        {
            tracing::warn!(
                "this kernel cannot mmap direct-I/O files (needs Linux 6.6+): \
                 shared mmap of files on this mount fails with ENODEV"
            );
        }
        tracing::debug!(kernel_abi = ?kernel.kernel_abi(), "FUSE session initialised");
        Ok(())
    }

    fn destroy(&mut self) {
        self.ended.0.send_replace(true);
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let call = async move { vfs.lookup(Ino(parent.0), &name).await };
        self.run("lookup", call, reply, entry_reply);
    }

    // `batch_forget` keeps fuser's default, which calls this once per inode of the batch
    // (fuser 0.18 does not export `ForgetOne`, the type an override would have to name).
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.getattr(Ino(ino.0)).await };
        self.run("getattr", call, reply, attr_reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // S3 keeps no access or change time: setting only those is a successful no-op.
        let changes = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            mtime: mtime.map(|t| match t {
                TimeOrNow::SpecificTime(time) => time,
                TimeOrNow::Now => SystemTime::now(),
            }),
        };
        let vfs = self.vfs.clone();
        let handle = fh.map(|fh| Handle(fh.0));
        let call = async move { vfs.setattr(Ino(ino.0), handle, changes).await };
        self.run("setattr", call, reply, attr_reply);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.readlink(Ino(ino.0)).await };
        self.run("readlink", call, reply, |reply, target| reply.data(&target));
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // Fifos, devices, sockets (bind(2) of a unix socket comes here) and empty regular
        // files: each one object, stored before the reply.
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let call = async move { vfs.mknod(Ino(parent.0), &name, mode, rdev).await };
        self.run("mknod", call, reply, entry_reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let call = async move { vfs.mkdir(Ino(parent.0), &name, mode & 0o7777).await };
        self.run("mkdir", call, reply, entry_reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let call = async move { vfs.unlink(Ino(parent.0), &name).await };
        self.run("unlink", call, reply, |reply, ()| reply.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let call = async move { vfs.rmdir(Ino(parent.0), &name).await };
        self.run("rmdir", call, reply, |reply, ()| reply.ok());
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let vfs = self.vfs.clone();
        let name = link_name.to_owned();
        let target = target.as_os_str().to_owned();
        let call = async move { vfs.symlink(Ino(parent.0), &name, &target).await };
        self.run("symlink", call, reply, entry_reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // renameat2(2): a flag the file system does not support is EINVAL.
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let vfs = self.vfs.clone();
        let (name, newname) = (name.to_owned(), newname.to_owned());
        let call = async move {
            vfs.rename(Ino(parent.0), &name, Ino(newparent.0), &newname, no_replace)
                .await
        };
        self.run("rename", call, reply, |reply, ()| reply.ok());
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // link(2): EPERM when the file system does not support hard links (the plain
        // layout: one object per key has no second name for a file).
        if !self.vfs.hard_links() {
            return reply.error(Errno::EPERM);
        }
        let vfs = self.vfs.clone();
        let newname = newname.to_owned();
        let call = async move { vfs.link(Ino(ino.0), Ino(newparent.0), &newname).await };
        self.run("link", call, reply, entry_reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        let vfs = self.vfs.clone();
        let fopen = open_reply_flags(flags.0, self.config.direct_io);
        let flags = OpenFlags::from_posix(flags.0);
        let call = async move { vfs.open(Ino(ino.0), flags).await };
        // No FOPEN_KEEP_CACHE: every open drops the kernel's pages, so a file another
        // machine replaced in the store is read afresh by the next open (close-to-open
        // consistency; comparing versions here could keep pages of a file that changed
        // within the metadata TTL). Handles that can read keep the page cache (large
        // read requests, shared mmap); write-only handles bypass it (`open_reply_flags`).
        self.run("open", call, reply, move |reply, handle: Handle| {
            reply.opened(FileHandle(handle.0), fopen)
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.read(Ino(ino.0), Handle(fh.0), offset, size).await };
        self.run("read", call, reply, |reply, data: Bytes| reply.data(&data));
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let vfs = self.vfs.clone();
        // fuser reuses its request buffer: the data must be copied out before returning.
        let data = Bytes::copy_from_slice(data);
        let call = async move { vfs.write(Ino(ino.0), Handle(fh.0), offset, data).await };
        self.run("write", call, reply, |reply, written| {
            reply.written(written)
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // copy_file_range(2) defines no flags yet.
        if flags.bits() != 0 {
            return reply.error(Errno::EINVAL);
        }
        let vfs = self.vfs.clone();
        let call = async move {
            let (ino_in, fh_in) = (Ino(ino_in.0), Handle(fh_in.0));
            let (ino_out, fh_out) = (Ino(ino_out.0), Handle(fh_out.0));
            vfs.copy_file_range(ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len)
                .await
        };
        self.run("copy_file_range", call, reply, |reply, copied| {
            // The core reports at most MAX_COPY_REPLY bytes a call, which fits.
            reply.written(u32::try_from(copied.min(vfs::MAX_COPY_REPLY)).unwrap_or(u32::MAX))
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.flush(Ino(ino.0), Handle(fh.0)).await };
        self.run("flush", call, reply, |reply, ()| reply.ok());
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        let (ino, handle) = (Ino(ino.0), Handle(fh.0));
        let call = async move {
            let flushed = if flush {
                vfs.flush(ino, handle).await
            } else {
                Ok(())
            };
            // The handle is released even when the flush failed: the kernel forgets it.
            let released = vfs.release(ino, handle).await;
            flushed.and(released)
        };
        self.run("release", call, reply, |reply, ()| reply.ok());
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.fsync(Ino(ino.0), Handle(fh.0)).await };
        self.run("fsync", call, reply, |reply, ()| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.opendir(Ino(ino.0)).await };
        self.run("opendir", call, reply, |reply, handle: Handle| {
            reply.opened(FileHandle(handle.0), FopenFlags::empty())
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let vfs = self.vfs.clone();
        let batch = self.config.readdir_batch;
        let call = async move { vfs.readdir(Ino(ino.0), Handle(fh.0), offset, batch).await };
        self.run("readdir", call, reply, |mut reply, entries| {
            for entry in entries {
                let full = reply.add(
                    INodeNo(entry.ino.0),
                    entry.next_offset,
                    file_type(entry.kind),
                    &entry.name,
                );
                if full {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let vfs = self.vfs.clone();
        let batch = self.config.readdir_batch;
        let listing_ttl = self.config.listing_ttl;
        self.runtime.spawn(async move {
            let parent = Ino(ino.0);
            let entries = match vfs.readdirplus(parent, Handle(fh.0), offset, batch).await {
                Ok(entries) => entries,
                Err(err) => return reply.error(errno("readdirplus", &err)),
            };
            let mut entries = entries.into_iter();
            for entry in entries.by_ref() {
                // The core counted a lookup of each entry but `.` and `..`.
                let counted = !is_dot(&entry.name);
                // Without attributes (only `.` and `..` come so) the kernel gets the number
                // and type, valid for no time: it asks again before using them.
                let (attr, ttl) = match entry.attr {
                    Some(attr) if counted => (attr, listing_ttl),
                    _ => (dot_attr(&entry), Duration::ZERO),
                };
                let full = reply.add(
                    INodeNo(attr.ino.0),
                    entry.next_offset,
                    &entry.name,
                    &ttl,
                    &fuse_attr(&attr),
                    GENERATION,
                );
                if full {
                    if counted {
                        vfs.forget(entry.ino, 1);
                    }
                    break;
                }
            }
            // What did not fit never reaches the kernel: its lookups go back.
            for entry in entries.filter(|e| !is_dot(&e.name)) {
                vfs.forget(entry.ino, 1);
            }
            reply.ok();
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        reply: ReplyEmpty,
    ) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.releasedir(Ino(ino.0), Handle(fh.0)).await };
        self.run("releasedir", call, reply, |reply, ()| reply.ok());
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes reach the store when they are made; nothing is pending.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let vfs = self.vfs.clone();
        let call = async move { vfs.statfs().await };
        self.run("statfs", call, reply, |reply, st: vfs::StatFs| {
            reply.statfs(
                st.blocks, st.bfree, st.bavail, st.files, st.ffree, st.bsize, st.namelen, st.bsize,
            )
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if !self.config.xattrs {
            return reply.error(Errno::from_i32(libc::ENOSYS));
        }
        if position != 0 {
            return reply.error(Errno::EINVAL);
        }
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let value = Bytes::copy_from_slice(value);
        let call = async move {
            let ino = Ino(ino.0);
            // XATTR_CREATE / XATTR_REPLACE: the core's setxattr takes no flags, so they are
            // checked here first (not atomic against a concurrent change).
            if flags & (libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
                let exists = match vfs.getxattr(ino, &name).await {
                    Ok(_) => true,
                    Err(VfsError::NoAttribute(_)) => false,
                    Err(err) => return Err(err),
                };
                let name = name.to_string_lossy().into_owned();
                if exists && flags & libc::XATTR_CREATE != 0 {
                    return Err(VfsError::Exists(name));
                }
                if !exists && flags & libc::XATTR_REPLACE != 0 {
                    return Err(VfsError::NoAttribute(name));
                }
            }
            vfs.setxattr(ino, &name, value).await
        };
        self.run("setxattr", call, reply, |reply, ()| reply.ok());
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        use std::os::unix::ffi::OsStrExt;
        if !self.config.xattrs {
            reply.error(Errno::from_i32(libc::ENOSYS));
            return;
        }
        // `ls -l` asks for security.* and system.* names of every entry: the core keeps
        // no name outside `user.`, so answer at once, without a task. ENOTSUP (as the
        // core answers) tells `ls` the file system has none, and it stops asking.
        if !s3vfs::vfs::is_user_xattr(name.as_bytes()) {
            reply.error(Errno::from_i32(libc::ENOTSUP));
            return;
        }
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let call = async move { vfs.getxattr(Ino(ino.0), &name).await };
        self.run("getxattr", call, reply, move |reply, value: Bytes| {
            xattr_reply(reply, size, &value)
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.config.xattrs {
            reply.error(Errno::from_i32(libc::ENOSYS));
            return;
        }
        let vfs = self.vfs.clone();
        let call = async move { vfs.listxattr(Ino(ino.0)).await };
        self.run(
            "listxattr",
            call,
            reply,
            move |reply, names: Vec<String>| {
                // listxattr(2): the names, each terminated by a NUL.
                let mut buffer = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
                for name in names {
                    buffer.extend_from_slice(name.as_bytes());
                    buffer.push(0);
                }
                xattr_reply(reply, size, &buffer)
            },
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if !self.config.xattrs {
            reply.error(Errno::from_i32(libc::ENOSYS));
            return;
        }
        let vfs = self.vfs.clone();
        let name: OsString = name.to_owned();
        let call = async move { vfs.removexattr(Ino(ino.0), &name).await };
        self.run("removexattr", call, reply, |reply, ()| reply.ok());
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // No file here answers an ioctl. `isatty` (every `open` from Python asks) expects
        // ENOTTY; fuser's default answers ENOSYS with a warning per call, which flooded the
        // log of a healthy mount.
        tracing::trace!(ino = ino.0, cmd, "ioctl: ENOTTY");
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permissions are the kernel's (`default_permissions`); without that option every
        // access is allowed, as the mount's owner settings say nothing more.
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let vfs = self.vfs.clone();
        let name = name.to_owned();
        let fopen = open_reply_flags(flags, self.config.direct_io);
        let flags = OpenFlags::from_posix(flags);
        let call = async move { vfs.create(Ino(parent.0), &name, mode & 0o7777, flags).await };
        self.run(
            "create",
            call,
            reply,
            move |reply, (entry, handle): (Entry, Handle)| {
                reply.created(
                    &entry.ttl,
                    &fuse_attr(&entry.attr),
                    GENERATION,
                    FileHandle(handle.0),
                    fopen,
                )
            },
        );
    }
}

/// The `FOPEN_*` flags of the reply to `open`/`create` with POSIX `flags`: every handle
/// bypasses the page cache when the mount was asked to (`direct_io`), and otherwise only
/// write-only ones do.
///
/// A write-only handle gets `FOPEN_DIRECT_IO`: its writes go from the writer's buffer
/// straight into the FUSE request instead of first into page-cache pages the writer can
/// never read back through it (mmap needs a readable descriptor). That saves a copy and
/// keeps a 100 GB `cp` from filling the page cache with pages nobody asked for. FUSE's
/// direct I/O has no alignment rules, so writers see no difference. Handles that can
/// read stay cached: kernel read-ahead turns their reads into large requests.
fn open_reply_flags(posix: i32, direct_io: bool) -> FopenFlags {
    if direct_io || posix & libc::O_ACCMODE == libc::O_WRONLY {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_write_only_handles_bypass_the_page_cache() {
        let direct = |flags| open_reply_flags(flags, false).contains(FopenFlags::FOPEN_DIRECT_IO);
        assert!(direct(libc::O_WRONLY));
        assert!(direct(
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND
        ));
        assert!(!direct(libc::O_RDONLY));
        assert!(!direct(libc::O_RDWR));
        assert!(!direct(libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC));
        // A --direct-io mount: every handle.
        for flags in [libc::O_RDONLY, libc::O_RDWR, libc::O_WRONLY] {
            assert!(open_reply_flags(flags, true).contains(FopenFlags::FOPEN_DIRECT_IO));
        }
    }

    #[test]
    fn attributes_keep_kind_perm_and_size() {
        let attr = vfs::FileAttr {
            ino: Ino(7),
            kind: FileKind::Symlink,
            size: 1025,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(42),
            perm: 0o640,
            uid: 1,
            gid: 2,
            nlink: 1,
            blksize: 4096,
            rdev: 0,
        };
        let fuse = fuse_attr(&attr);
        assert_eq!(fuse.ino, INodeNo(7));
        assert_eq!(fuse.kind, FileType::Symlink);
        assert_eq!(fuse.perm, 0o640);
        assert_eq!(fuse.size, 1025);
        assert_eq!(fuse.blocks, 3);
        assert_eq!(fuse.atime, attr.mtime);
        assert_eq!((fuse.uid, fuse.gid, fuse.blksize), (1, 2, 4096));
    }

    #[test]
    fn special_files_keep_their_type_and_device_number() {
        let attr = vfs::FileAttr {
            ino: Ino(9),
            kind: FileKind::CharDevice,
            size: 0,
            mtime: SystemTime::UNIX_EPOCH,
            perm: 0o666,
            uid: 0,
            gid: 0,
            nlink: 1,
            blksize: 4096,
            rdev: (1 << 8) | 3,
        };
        let fuse = fuse_attr(&attr);
        assert_eq!((fuse.kind, fuse.rdev), (FileType::CharDevice, 259));
        for (kind, expected) in [
            (FileKind::Fifo, FileType::NamedPipe),
            (FileKind::BlockDevice, FileType::BlockDevice),
            (FileKind::Socket, FileType::Socket),
        ] {
            assert_eq!(file_type(kind), expected);
        }
    }

    #[test]
    fn errors_keep_their_errno() {
        let err = VfsError::ObjectChanged("a".into());
        assert_eq!(errno("read", &err).code(), libc::ESTALE);
        let err = VfsError::ReadOnly("a".into());
        assert_eq!(errno("write", &err).code(), libc::EROFS);
    }
}
