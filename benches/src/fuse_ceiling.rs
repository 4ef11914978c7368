//! Item 1's ceiling row: the fastest any fuser-based mount reads on this machine.
//!
//! A minimal fuser file system with one file whose bytes are already in memory: `read`
//! answers a slice of that buffer on the FUSE thread (no S3, no network, no task, no copy
//! before the reply). It is mounted in this process with the kernel settings the s3vfs
//! adapter negotiates (1 MiB read-ahead and requests, 64 background requests, async
//! reads, the same number of FUSE threads) and read like the s3vfs in-process row.
//!
//! What it measures is the kernel's share of a mount read: a FUSE request per 1 MiB, the
//! reply copied into the page cache, the page cache copied into the reader. A real mount
//! must do all of that *and* receive the bytes from S3, so, with the server on the same
//! cores, no mount can read faster than this row, whatever it does in user space.

use anyhow::{Context, Result};
use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyEntry, ReplyOpen,
    Request,
};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The one file's name in the mount's root.
const FILE_NAME: &str = "data";
/// The file's inode (the root is 1).
const FILE_INO: u64 = 2;
/// Kernel read-ahead and largest request, as the s3vfs adapter asks for.
const MAX_REQUEST: u32 = 1024 * 1024;
/// Background requests in flight, as the s3vfs adapter asks for.
const MAX_BACKGROUND: u16 = 64;
/// FUSE threads, as the s3vfs mount runs.
const THREADS: usize = 2;
/// How long the kernel may cache the attributes.
const TTL: Duration = Duration::from_secs(3600);

/// A file system of one read-only file of `data`.
struct MemoryFile {
    data: Bytes,
}

impl MemoryFile {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, perm, nlink) = if ino == FILE_INO {
            (FileType::RegularFile, self.data.len() as u64, 0o444, 1)
        } else {
            (FileType::Directory, 0, 0o555, 2)
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for MemoryFile {
    fn init(&mut self, _req: &Request, kernel: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = kernel.set_max_readahead(MAX_REQUEST) {
            let _ = kernel.set_max_readahead(nearest);
        }
        if let Err(nearest) = kernel.set_max_write(MAX_REQUEST) {
            let _ = kernel.set_max_write(nearest);
        }
        let _ = kernel.set_max_background(MAX_BACKGROUND);
        let _ = kernel.add_capabilities(InitFlags::FUSE_ASYNC_READ);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == FILE_NAME {
            reply.entry(&TTL, &self.attr(FILE_INO), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 | FILE_INO => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == FILE_INO {
            reply.opened(FileHandle(0), FopenFlags::empty());
        } else {
            reply.error(Errno::EISDIR);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino.0 != FILE_INO {
            reply.error(Errno::EISDIR);
            return;
        }
        let len = self.data.len() as u64;
        let start = offset.min(len) as usize;
        let end = offset.saturating_add(u64::from(size)).min(len) as usize;
        reply.data(&self.data[start..end]);
    }
}

/// The mounted ceiling file system; unmounted when dropped.
pub struct Ceiling {
    session: Option<fuser::BackgroundSession>,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ceiling {
    /// Mounts a file of `size` bytes (a repeating pattern) in a new temporary directory.
    pub fn mount(size: u64) -> Result<Ceiling> {
        let len = usize::try_from(size).context("object too large for memory")?;
        let data: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        let dir = tempfile::Builder::new()
            .prefix("s3vfs-bench-ceiling")
            .tempdir()
            .context("temporary mountpoint")?;
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("s3vfs-bench-ceiling".to_owned()),
            MountOption::RO,
            MountOption::NoAtime,
        ];
        config.n_threads = Some(THREADS);
        let session = fuser::spawn_mount(MemoryFile { data }, dir.path(), &config)
            .context("mounting the in-memory FUSE file system")?;
        raise_read_ahead(dir.path());
        Ok(Ceiling {
            session: Some(session),
            file: dir.path().join(FILE_NAME),
            _dir: dir,
        })
    }

    /// The file to read.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if let Err(err) = session.umount_and_join() {
                eprintln!("warning: unmounting the ceiling file system: {err}");
            }
        }
    }
}

/// Raises the mount's kernel read-ahead to [`MAX_REQUEST`], as the s3vfs mount does.
fn raise_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(err) = std::fs::write(&knob, format!("{}", MAX_REQUEST / 1024)) {
        eprintln!("warning: {knob}: {err}");
    }
}
