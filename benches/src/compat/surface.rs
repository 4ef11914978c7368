//! The two ways a program uses s3vfs, behind one interface so that every scenario is
//! written once: [`Library`] (the path-based [`S3Vfs`] API) and [`Mount`] (plain `std::fs`
//! calls into a FUSE mount of another `S3Fs`).
//!
//! Every write is made durable before the call returns (`complete` for the library,
//! `fsync` for the mount), so a failed upload is an error of the call that wrote, not a
//! log line at a later close.

use crate::outcome::{Failure, Outcome};
use async_trait::async_trait;
use s3vfs::OpenOptions;
use s3vfs::{S3Vfs, VfsError};
use std::ffi::CString;
use std::io::{self, Read, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Size of one read of a streaming read, in bytes.
pub const READ_CHUNK: usize = 1024 * 1024;

/// A file opened for writing whose upload has not been asked for yet.
#[async_trait]
pub trait PendingWrite: Send {
    /// Uploads what was written and closes: the upload's outcome.
    async fn close(self: Box<Self>) -> Outcome<()>;
}

/// File operations of one surface. Paths are relative to the file system's root.
#[async_trait]
pub trait Surface: Send + Sync {
    /// `library` or `mount`.
    fn name(&self) -> &'static str;
    /// Creates or truncates `path` and writes `data` as its content.
    async fn write(&self, path: &str, data: Vec<u8>) -> Outcome<()>;
    /// Appends `data` to `path` (`O_APPEND`).
    async fn append(&self, path: &str, data: Vec<u8>) -> Outcome<()>;
    /// Writes `data` at `offset` of the existing `path`, keeping the other bytes.
    async fn write_at(&self, path: &str, offset: u64, data: Vec<u8>) -> Outcome<()>;
    /// Sets the size of `path` (`truncate(2)`).
    async fn truncate(&self, path: &str, len: u64) -> Outcome<()>;
    /// Opens `path` with `O_TRUNC` and writes `data`, leaving the upload to the caller.
    async fn write_pending(&self, path: &str, data: Vec<u8>) -> Outcome<Box<dyn PendingWrite>>;
    /// The whole content of `path`.
    async fn read(&self, path: &str) -> Outcome<Vec<u8>>;
    /// Reads `path` from start to end in [`READ_CHUNK`] pieces, giving each piece and its
    /// offset to `check`: the number of bytes read.
    async fn stream(&self, path: &str, check: ChunkCheck) -> Outcome<u64>;
    /// Whether `path` exists (`stat`).
    async fn exists(&self, path: &str) -> Outcome<bool>;
    /// The permission bits of `path`.
    async fn mode(&self, path: &str) -> Outcome<u32>;
    /// `rename(2)`.
    async fn rename(&self, from: &str, to: &str) -> Outcome<()>;
    /// Copies file `from` to `to` (`std::fs::copy`, which is `copy_file_range(2)`).
    async fn copy(&self, from: &str, to: &str) -> Outcome<()>;
    /// `mkdir(2)`.
    async fn mkdir(&self, path: &str) -> Outcome<()>;
    /// `rmdir(2)`.
    async fn rmdir(&self, path: &str) -> Outcome<()>;
    /// The names in directory `path`.
    async fn list(&self, path: &str) -> Outcome<Vec<String>>;
    /// `symlink(target, link)`.
    async fn symlink(&self, target: &str, link: &str) -> Outcome<()>;
    /// `readlink(2)`.
    async fn readlink(&self, link: &str) -> Outcome<String>;
    /// `chmod(2)`.
    async fn chmod(&self, path: &str, mode: u32) -> Outcome<()>;
    /// `setxattr(2)` of a `user.` attribute.
    async fn set_xattr(&self, path: &str, name: &str, value: &[u8]) -> Outcome<()>;
    /// `getxattr(2)`.
    async fn get_xattr(&self, path: &str, name: &str) -> Outcome<Vec<u8>>;
}

/// Checks one piece of a streaming read: `(offset, bytes)`.
pub type ChunkCheck = fn(u64, &[u8]) -> Outcome<()>;

/// The path-based library API.
pub struct Library {
    vfs: S3Vfs,
}

impl Library {
    /// Uses `vfs`.
    pub fn new(vfs: S3Vfs) -> Self {
        Self { vfs }
    }

    async fn open(&self, path: &str, options: &OpenOptions) -> Outcome<s3vfs::File> {
        Ok(self.vfs.open_with(path, options).await?)
    }
}

struct LibraryPending(s3vfs::File);

#[async_trait]
impl PendingWrite for LibraryPending {
    async fn close(mut self: Box<Self>) -> Outcome<()> {
        Ok(self.0.complete().await?)
    }
}

#[async_trait]
impl Surface for Library {
    fn name(&self) -> &'static str {
        "library"
    }

    async fn write(&self, path: &str, data: Vec<u8>) -> Outcome<()> {
        Ok(self.vfs.write(path, data).await?)
    }

    async fn append(&self, path: &str, data: Vec<u8>) -> Outcome<()> {
        let mut file = self.open(path, OpenOptions::new().append(true)).await?;
        let end = file.len();
        write_all_at(&mut file, end, data).await?;
        Ok(file.complete().await?)
    }

    async fn write_at(&self, path: &str, offset: u64, data: Vec<u8>) -> Outcome<()> {
        let mut file = self.open(path, OpenOptions::new().write(true)).await?;
        write_all_at(&mut file, offset, data).await?;
        Ok(file.complete().await?)
    }

    async fn truncate(&self, path: &str, len: u64) -> Outcome<()> {
        Ok(self.vfs.set_len(path, len).await?)
    }

    async fn write_pending(&self, path: &str, data: Vec<u8>) -> Outcome<Box<dyn PendingWrite>> {
        let mut file = self
            .open(path, OpenOptions::new().write(true).truncate(true))
            .await?;
        write_all_at(&mut file, 0, data).await?;
        Ok(Box::new(LibraryPending(file)))
    }

    async fn read(&self, path: &str) -> Outcome<Vec<u8>> {
        Ok(self.vfs.read(path).await?.to_vec())
    }

    async fn stream(&self, path: &str, check: ChunkCheck) -> Outcome<u64> {
        let mut file = self.vfs.open(path).await?;
        let mut offset = 0u64;
        loop {
            let piece = file.read_bytes(READ_CHUNK).await?;
            if piece.is_empty() {
                return Ok(offset);
            }
            check(offset, &piece)?;
            offset += piece.len() as u64;
        }
    }

    async fn exists(&self, path: &str) -> Outcome<bool> {
        match self.vfs.metadata(path).await {
            Ok(_) => Ok(true),
            Err(VfsError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn mode(&self, path: &str) -> Outcome<u32> {
        Ok(u32::from(self.vfs.metadata(path).await?.attr().perm))
    }

    async fn rename(&self, from: &str, to: &str) -> Outcome<()> {
        Ok(self.vfs.rename(from, to).await?)
    }

    async fn copy(&self, from: &str, to: &str) -> Outcome<()> {
        self.vfs.copy(from, to).await?;
        Ok(())
    }

    async fn mkdir(&self, path: &str) -> Outcome<()> {
        Ok(self.vfs.create_dir(path).await?)
    }

    async fn rmdir(&self, path: &str) -> Outcome<()> {
        Ok(self.vfs.remove_dir(path).await?)
    }

    async fn list(&self, path: &str) -> Outcome<Vec<String>> {
        let entries = self.vfs.read_dir(path).await?.collect().await?;
        Ok(entries.into_iter().map(|e| e.name).collect())
    }

    async fn symlink(&self, target: &str, link: &str) -> Outcome<()> {
        Ok(self.vfs.symlink(target, link).await?)
    }

    async fn readlink(&self, link: &str) -> Outcome<String> {
        Ok(self.vfs.read_link(link).await?)
    }

    async fn chmod(&self, path: &str, mode: u32) -> Outcome<()> {
        Ok(self.vfs.set_permissions(path, mode).await?)
    }

    async fn set_xattr(&self, path: &str, name: &str, value: &[u8]) -> Outcome<()> {
        Ok(self.vfs.set_xattr(path, name, value).await?)
    }

    async fn get_xattr(&self, path: &str, name: &str) -> Outcome<Vec<u8>> {
        Ok(self.vfs.get_xattr(path, name).await?.to_vec())
    }
}

/// Writes all of `data` at `offset` through `file` (through its `AsyncWrite`: the
/// futures of `File::write_at` borrow the file shared, and `File` is not `Sync`).
async fn write_all_at(file: &mut s3vfs::File, offset: u64, data: Vec<u8>) -> Outcome<()> {
    file.seek(SeekFrom::Start(offset)).await?;
    file.write_all(&data).await?;
    Ok(())
}

/// A FUSE mount, used through `std::fs` on blocking threads.
pub struct Mount {
    root: PathBuf,
}

impl Mount {
    /// The mount at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Runs `f` on the path of `path` on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        path: &str,
        f: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
    ) -> Outcome<T> {
        let full = self.root.join(path);
        let result = tokio::task::spawn_blocking(move || f(&full))
            .await
            .map_err(|e| Failure::new(format!("blocking task failed: {e}")))?;
        Ok(result?)
    }
}

struct MountPending(std::fs::File);

#[async_trait]
impl PendingWrite for MountPending {
    async fn close(self: Box<Self>) -> Outcome<()> {
        let file = self.0;
        let result = tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| Failure::new(format!("blocking task failed: {e}")))?;
        Ok(result?)
    }
}

#[async_trait]
impl Surface for Mount {
    fn name(&self) -> &'static str {
        "mount"
    }

    async fn write(&self, path: &str, data: Vec<u8>) -> Outcome<()> {
        self.with(path, move |p| {
            let mut file = std::fs::File::create(p)?;
            file.write_all(&data)?;
            file.sync_all()
        })
        .await
    }

    async fn append(&self, path: &str, data: Vec<u8>) -> Outcome<()> {
        self.with(path, move |p| {
            let mut file = std::fs::OpenOptions::new().append(true).open(p)?;
            file.write_all(&data)?;
            file.sync_all()
        })
        .await
    }

    async fn write_at(&self, path: &str, offset: u64, data: Vec<u8>) -> Outcome<()> {
        self.with(path, move |p| {
            let file = std::fs::OpenOptions::new().write(true).open(p)?;
            file.write_all_at(&data, offset)?;
            file.sync_all()
        })
        .await
    }

    async fn truncate(&self, path: &str, len: u64) -> Outcome<()> {
        self.with(path, move |p| {
            let c = c_path(p)?;
            let len = libc::off_t::try_from(len).map_err(io::Error::other)?;
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            match unsafe { libc::truncate(c.as_ptr(), len) } {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
        .await
    }

    async fn write_pending(&self, path: &str, data: Vec<u8>) -> Outcome<Box<dyn PendingWrite>> {
        let file = self
            .with(path, move |p| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(p)?;
                file.write_all(&data)?;
                Ok(file)
            })
            .await?;
        Ok(Box::new(MountPending(file)))
    }

    async fn read(&self, path: &str) -> Outcome<Vec<u8>> {
        self.with(path, |p| std::fs::read(p)).await
    }

    async fn stream(&self, path: &str, check: ChunkCheck) -> Outcome<u64> {
        self.with(path, move |p| {
            let mut file = std::fs::File::open(p)?;
            let mut buf = vec![0u8; READ_CHUNK];
            let mut offset = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(offset);
                }
                check(offset, &buf[..n]).map_err(io::Error::other)?;
                offset += n as u64;
            }
        })
        .await
    }

    async fn exists(&self, path: &str) -> Outcome<bool> {
        self.with(path, |p| match std::fs::symlink_metadata(p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    async fn mode(&self, path: &str) -> Outcome<u32> {
        self.with(path, |p| {
            Ok(std::fs::metadata(p)?.permissions().mode() & 0o7777)
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Outcome<()> {
        let to = self.root.join(to);
        self.with(from, move |p| std::fs::rename(p, to)).await
    }

    async fn copy(&self, from: &str, to: &str) -> Outcome<()> {
        let to = self.root.join(to);
        self.with(from, move |p| std::fs::copy(p, to).map(|_| ()))
            .await
    }

    async fn mkdir(&self, path: &str) -> Outcome<()> {
        self.with(path, |p| std::fs::create_dir(p)).await
    }

    async fn rmdir(&self, path: &str) -> Outcome<()> {
        self.with(path, |p| std::fs::remove_dir(p)).await
    }

    async fn list(&self, path: &str) -> Outcome<Vec<String>> {
        self.with(path, |p| {
            std::fs::read_dir(p)?
                .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .await
    }

    async fn symlink(&self, target: &str, link: &str) -> Outcome<()> {
        let target = target.to_owned();
        self.with(link, move |p| std::os::unix::fs::symlink(target, p))
            .await
    }

    async fn readlink(&self, link: &str) -> Outcome<String> {
        self.with(link, |p| {
            Ok(std::fs::read_link(p)?.to_string_lossy().into_owned())
        })
        .await
    }

    async fn chmod(&self, path: &str, mode: u32) -> Outcome<()> {
        self.with(path, move |p| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        })
        .await
    }

    async fn set_xattr(&self, path: &str, name: &str, value: &[u8]) -> Outcome<()> {
        let name = CString::new(name).map_err(io::Error::other)?;
        let value = value.to_vec();
        self.with(path, move |p| {
            let c = c_path(p)?;
            // SAFETY: both strings are NUL-terminated and `value` is valid for its length;
            // all outlive the call.
            let rc = unsafe {
                libc::setxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            match rc {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            }
        })
        .await
    }

    async fn get_xattr(&self, path: &str, name: &str) -> Outcome<Vec<u8>> {
        let name = CString::new(name).map_err(io::Error::other)?;
        self.with(path, move |p| {
            let c = c_path(p)?;
            let mut buf = vec![0u8; 64 * 1024];
            // SAFETY: both strings are NUL-terminated and `buf` is valid for writes of its
            // length; all outlive the call.
            let n = unsafe {
                libc::getxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            buf.truncate(n);
            Ok(buf)
        })
        .await
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}
