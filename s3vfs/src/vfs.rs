//! The inode-based file-system interface that front ends (FUSE, tests) call.
//!
//! It mirrors the kernel's view: entries are found by `(parent inode, name)`, files and
//! directories are opened into handles, reads take an offset. The core has no `fuser`
//! types; the FUSE crate translates one to one.

use crate::error::{VfsError, VfsResult};

pub use crate::attrs::is_user_xattr;
use async_trait::async_trait;
use bytes::Bytes;
use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

/// An inode number. Stable for a path while a caller holds a lookup of it or a handle on
/// it (see [`Vfs::forget`]); never reused for another file. 1 is the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);
}

/// An open file or directory handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(pub u64);

/// What an inode is.
///
/// Fifos, devices and sockets ("special files") are empty objects whose mode header has
/// their type; the file system stores them and their attributes, but never their data:
/// the kernel opens them itself (see SEMANTICS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file (an object).
    File,
    /// A directory (a common prefix or a `dir/` marker).
    Directory,
    /// A symbolic link.
    Symlink,
    /// A named pipe (`S_IFIFO`).
    Fifo,
    /// A character device (`S_IFCHR`).
    CharDevice,
    /// A block device (`S_IFBLK`).
    BlockDevice,
    /// A unix domain socket (`S_IFSOCK`).
    Socket,
}

impl FileKind {
    /// What opening or truncating `path`, of this kind, as a regular file answers:
    /// `EISDIR` for a directory, `EINVAL` for a symlink or a special file (the kernel
    /// opens those itself).
    pub(crate) fn require_regular(self, path: &dyn std::fmt::Display) -> VfsResult<()> {
        match self {
            FileKind::File => Ok(()),
            FileKind::Directory => Err(VfsError::IsADirectory(path.to_string())),
            FileKind::Symlink => Err(VfsError::InvalidArgument(format!(
                "{path} is a symbolic link"
            ))),
            kind => Err(VfsError::InvalidArgument(format!("{path} is a {kind}"))),
        }
    }

    /// Whether this is a fifo, a device or a socket: an object with no data of its own.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            FileKind::Fifo | FileKind::CharDevice | FileKind::BlockDevice | FileKind::Socket
        )
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::File => "regular file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symbolic link",
            FileKind::Fifo => "fifo",
            FileKind::CharDevice => "character device",
            FileKind::BlockDevice => "block device",
            FileKind::Socket => "socket",
        })
    }
}

/// Attributes of an inode, as `stat` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileAttr {
    /// Inode number.
    pub ino: Ino,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (Last-Modified, or `x-amz-meta-mtime`).
    pub mtime: SystemTime,
    /// Permission bits (e.g. `0o644`), without the file-type bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Preferred I/O size in bytes.
    pub blksize: u32,
    /// Device number of a character or block device, as `st_rdev` shows it (Linux
    /// `makedev` encoding, the one FUSE uses); 0 for every other kind.
    pub rdev: u32,
}

impl FileAttr {
    /// Number of 512-byte blocks, for `st_blocks`.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

/// An entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's inode.
    pub ino: Ino,
    /// Its name (one path component).
    pub name: String,
    /// Its kind.
    pub kind: FileKind,
    /// The offset to pass to `readdir` to continue after this entry.
    pub next_offset: u64,
    /// Its attributes when known from the listing (always for files listed from S3).
    pub attr: Option<FileAttr>,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Truncate on open (`O_TRUNC`).
    pub truncate: bool,
    /// Append (`O_APPEND`).
    pub append: bool,
    /// With create: fail if the file exists (`O_EXCL`).
    pub exclusive: bool,
}

impl OpenFlags {
    /// From POSIX `open(2)` flags.
    pub fn from_posix(flags: i32) -> Self {
        let acc = flags & libc::O_ACCMODE;
        Self {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }

    /// Read-only.
    pub fn read_only() -> Self {
        Self {
            read: true,
            ..Self::default()
        }
    }
}

/// File-system statistics for `statfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Total blocks (S3 has no limit: a large number).
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size in bytes.
    pub bsize: u32,
    /// Longest name in bytes.
    pub namelen: u32,
}

impl StatFs {
    /// Statistics of a store without a capacity limit (S3): large constant numbers, so
    /// tools that check free space before writing do not refuse.
    pub fn unlimited(block_size: u32) -> Self {
        const BLOCKS: u64 = 1 << 40;
        Self {
            blocks: BLOCKS,
            bfree: BLOCKS,
            bavail: BLOCKS,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: block_size,
            namelen: crate::namespace::MAX_NAME_LEN as u32,
        }
    }
}

/// Which attributes a `setattr` changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (truncate).
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
}

/// The answer to `lookup`/`getattr`: attributes and how long the kernel may cache them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The attributes.
    pub attr: FileAttr,
    /// How long the caller may cache them.
    pub ttl: Duration,
}

/// A POSIX-ish asynchronous file system addressed by inode.
///
/// Every call may be made concurrently from many tasks. Errors carry one errno each
/// ([`VfsError::errno`](crate::error::VfsError::errno)).
///
/// Lookup counts, as FUSE keeps them: every successful call that hands out an entry —
/// [`lookup`](Vfs::lookup), [`create`](Vfs::create), [`mkdir`](Vfs::mkdir),
/// [`symlink`](Vfs::symlink), and each entry but `.` and `..` of
/// [`readdirplus`](Vfs::readdirplus) — counts one lookup of its inode before it returns;
/// the caller gives each back with [`forget`](Vfs::forget) when it no longer needs the
/// number. An inode stays (and keeps its number) while it has lookups or open handles; then
/// the file system may drop it. Numbers shown by plain [`readdir`](Vfs::readdir) count
/// nothing and may be dropped at any time. The root is never dropped.
#[async_trait]
pub trait Vfs: Send + Sync + 'static {
    /// Finds `name` in directory `parent`. Counts one lookup.
    async fn lookup(&self, parent: Ino, name: &OsStr) -> VfsResult<Entry>;
    /// Gives back `nlookup` lookups of `ino` (FUSE `FORGET`); an inode left with none and
    /// without open handles is dropped. Unknown numbers are ignored.
    fn forget(&self, ino: Ino, nlookup: u64);
    /// Attributes of `ino`.
    async fn getattr(&self, ino: Ino) -> VfsResult<Entry>;
    /// Changes attributes (chmod, chown, truncate, utimens).
    async fn setattr(&self, ino: Ino, handle: Option<Handle>, changes: SetAttr)
        -> VfsResult<Entry>;
    /// Target of a symbolic link.
    async fn readlink(&self, ino: Ino) -> VfsResult<Bytes>;

    /// Opens a directory for listing.
    async fn opendir(&self, ino: Ino) -> VfsResult<Handle>;
    /// Up to `max_entries` entries from `offset` (0 = the start; then an entry's
    /// `next_offset`). `.` and `..` come first. An empty answer is the end.
    async fn readdir(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>>;
    /// Like [`readdir`](Vfs::readdir), for FUSE `READDIRPLUS`: every entry but `.` and
    /// `..` has its attributes and counts one lookup (the kernel keeps them as
    /// looked up). A caller that does not pass an entry on forgets it.
    ///
    /// The default lists with `readdir` and looks each entry up (leaving out entries gone
    /// since); file systems that know attributes from the listing do better.
    async fn readdirplus(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        max_entries: usize,
    ) -> VfsResult<Vec<DirEntry>> {
        let listed = self.readdir(ino, handle, offset, max_entries).await?;
        let mut entries = Vec::with_capacity(listed.len());
        for mut entry in listed {
            if entry.name == "." || entry.name == ".." {
                entries.push(entry);
                continue;
            }
            match self.lookup(ino, OsStr::new(&entry.name)).await {
                Ok(found) => {
                    entry.ino = found.attr.ino;
                    entry.kind = found.attr.kind;
                    entry.attr = Some(found.attr);
                    entries.push(entry);
                }
                Err(err) if err.errno() == libc::ENOENT => {}
                Err(err) => {
                    for counted in entries.iter().filter(|e| e.name != "." && e.name != "..") {
                        self.forget(counted.ino, 1);
                    }
                    return Err(err);
                }
            }
        }
        Ok(entries)
    }
    /// Closes a directory handle.
    async fn releasedir(&self, ino: Ino, handle: Handle) -> VfsResult<()>;

    /// Opens a file.
    async fn open(&self, ino: Ino, flags: OpenFlags) -> VfsResult<Handle>;
    /// Reads up to `size` bytes at `offset`; fewer only at end of file.
    async fn read(&self, ino: Ino, handle: Handle, offset: u64, size: u32) -> VfsResult<Bytes>;
    /// Writes `data` at `offset`; returns the number of bytes written.
    async fn write(&self, ino: Ino, handle: Handle, offset: u64, data: Bytes) -> VfsResult<u32>;
    /// Called on every `close` of a file descriptor: uploads pending writes.
    async fn flush(&self, ino: Ino, handle: Handle) -> VfsResult<()>;
    /// Makes written data durable in the store.
    async fn fsync(&self, ino: Ino, handle: Handle) -> VfsResult<()>;
    /// The last reference to a handle is gone.
    async fn release(&self, ino: Ino, handle: Handle) -> VfsResult<()>;
    /// Releases a file or directory handle without waiting: what a library handle dropped
    /// outside an `await` does. The work left (a last close's upload, or keeping unsaved
    /// changes in the recovery directory) goes on in the background.
    fn release_detached(&self, ino: Ino, handle: Handle);
    /// Reads like [`read`](Self::read), as the fetched slices in order, without joining
    /// them (for callers that copy into a buffer of their own anyway).
    async fn read_chunks(
        &self,
        ino: Ino,
        handle: Handle,
        offset: u64,
        size: u32,
    ) -> VfsResult<Vec<Bytes>> {
        Ok(vec![self.read(ino, handle, offset, size).await?])
    }
    /// Copies up to `len` bytes at `offset_in` of the file open as `fh_in` to `offset_out`
    /// of the file open as `fh_out`, as `copy_file_range(2)`: returns the bytes copied, 0
    /// at the end of the source, never more than [`MAX_COPY_REPLY`] (callers loop, as for
    /// `write`). `fh_in` must be open for reading and `fh_out` for writing, not appending
    /// (`EBADF`).
    ///
    /// The default copies through the handles: at most [`COPY_CHUNK`] bytes read, then
    /// written. [`S3Fs`](crate::S3Fs) copies a whole file into an empty one server-side.
    #[allow(clippy::too_many_arguments)]
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
        copy_through_handles(
            self, ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len,
        )
        .await
    }
    /// The inode of directory `path` without asking the store: for a file created under
    /// a prefix that has no object yet (the directory appears with the file, as in any
    /// object store). Fails if `path` is known to be something else. Counts one lookup.
    fn implicit_dir(&self, path: &crate::namespace::FsPath) -> VfsResult<Ino>;

    /// Creates and opens a regular file. Counts one lookup.
    async fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: OpenFlags,
    ) -> VfsResult<(Entry, Handle)>;
    /// Creates a directory. Counts one lookup.
    async fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> VfsResult<Entry>;
    /// Removes a file or symlink.
    async fn unlink(&self, parent: Ino, name: &OsStr) -> VfsResult<()>;
    /// Removes an empty directory.
    async fn rmdir(&self, parent: Ino, name: &OsStr) -> VfsResult<()>;
    /// Renames; `no_replace` is `RENAME_NOREPLACE`.
    async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()>;
    /// Creates a symbolic link `name` in `parent` pointing at `target`. Counts one lookup.
    async fn symlink(&self, parent: Ino, name: &OsStr, target: &OsStr) -> VfsResult<Entry>;
    /// Creates `name` in `parent` as `mknod(2)` does: `mode` holds the type bits
    /// (`S_IFIFO`, `S_IFCHR`, `S_IFBLK`, `S_IFSOCK`, or `S_IFREG`/0 for an empty regular
    /// file) and the permission bits; `rdev` is the device number of a device (Linux
    /// `makedev` encoding) and is ignored for the other types.
    async fn mknod(&self, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> VfsResult<Entry>;

    /// Whether [`link`](Vfs::link) can make hard links. The default: no (a layout of
    /// one object per key has no second name for a file).
    fn hard_links(&self) -> bool {
        false
    }
    /// Makes `new_name` in `new_parent` another name of file `ino`, as `link(2)`. Counts
    /// one lookup. The default refuses with `ENOTSUP` ([`hard_links`](Vfs::hard_links)
    /// is false).
    async fn link(&self, ino: Ino, new_parent: Ino, new_name: &OsStr) -> VfsResult<Entry> {
        let _ = (ino, new_parent);
        Err(VfsError::Unsupported(format!(
            "hard link {}: this layout has no second name for a file",
            new_name.to_string_lossy()
        )))
    }

    /// Value of an extended attribute.
    async fn getxattr(&self, ino: Ino, name: &OsStr) -> VfsResult<Bytes>;
    /// Names of the extended attributes.
    async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>>;
    /// Sets an extended attribute.
    async fn setxattr(&self, ino: Ino, name: &OsStr, value: Bytes) -> VfsResult<()>;
    /// Removes an extended attribute.
    async fn removexattr(&self, ino: Ino, name: &OsStr) -> VfsResult<()>;

    /// File-system statistics.
    async fn statfs(&self) -> VfsResult<StatFs>;

    /// Stops taking changes and saves what is unsaved, before an unmount (a stop signal):
    /// new opens and writes fail, every open file with changes not in the store is
    /// uploaded, within `timeout` in all; what cannot be uploaded in time is kept in the
    /// recovery directory. Says what happened to each.
    async fn shutdown(&self, timeout: std::time::Duration) -> ShutdownReport;
}

/// The most bytes one [`Vfs::copy_file_range`] reports: what a FUSE reply can carry (its
/// byte count is 32 bits), rounded down to 4 KiB so that the caller's next call starts
/// page-aligned.
pub const MAX_COPY_REPLY: u64 = u32::MAX as u64 & !(COPY_ALIGN - 1);

/// The alignment of [`MAX_COPY_REPLY`], in bytes: a page.
const COPY_ALIGN: u64 = 4096;

/// The most bytes a [`Vfs::copy_file_range`] that is not server-side moves in one call:
/// read into memory, then written. A few MiB, so that a copy through the handles never
/// holds more, whatever length the caller asks for.
pub const COPY_CHUNK: u32 = 4 * 1024 * 1024;

/// [`Vfs::copy_file_range`] through the handles: one read of at most [`COPY_CHUNK`] bytes
/// from `fh_in`, then one write of what it returned to `fh_out`; 0 at the end of the
/// source. The handles' own checks apply (a write past the largest file is `EFBIG`, an
/// offset that overflows too).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy_through_handles<V: Vfs + ?Sized>(
    vfs: &V,
    ino_in: Ino,
    fh_in: Handle,
    offset_in: u64,
    ino_out: Ino,
    fh_out: Handle,
    offset_out: u64,
    len: u64,
) -> VfsResult<u64> {
    let chunk = u32::try_from(len).map_or(COPY_CHUNK, |len| len.min(COPY_CHUNK));
    if chunk == 0 {
        return Ok(0);
    }
    let data = vfs.read(ino_in, fh_in, offset_in, chunk).await?;
    if data.is_empty() {
        return Ok(0);
    }
    let written = vfs.write(ino_out, fh_out, offset_out, data).await?;
    Ok(u64::from(written))
}

/// What [`Vfs::shutdown`] did with the unsaved files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Files uploaded.
    pub uploaded: Vec<String>,
    /// Files that could not be uploaded, with the recovery manifest keeping each.
    pub kept: Vec<(String, std::path::PathBuf)>,
    /// Files whose changes are lost (streamed past the staging cap, or not keepable).
    pub lost: Vec<String>,
}

impl ShutdownReport {
    /// Adds another file system's report to this one.
    pub fn merge(&mut self, other: ShutdownReport) {
        self.uploaded.extend(other.uploaded);
        self.kept.extend(other.kept);
        self.lost.extend(other.lost);
    }
}
