//! Configuration of the file system: one struct, documented field by field.

use crate::store::probe::{self, Verdict};
use crate::store::{Backend, ServerSideEncryption};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How an [`S3Fs`](crate::fs::S3Fs) presents a bucket and how hard it works the store.
///
/// ```
/// use s3vfs::config::FsConfig;
/// use std::time::Duration;
/// let config = FsConfig::default()
///     .with_prefix("datasets/2026")
///     .with_metadata_ttl(Duration::from_secs(5));
/// assert_eq!(config.prefix, "datasets/2026/");
/// ```
///
/// New settings may be added in any release: build one from [`FsConfig::default`] and the
/// `with_*` methods (or assign fields of a default), not with a struct literal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsConfig {
    /// Key prefix the file system is rooted at: `""` for the whole bucket, otherwise a
    /// prefix ending with `/`. No key outside it is ever read or written.
    pub prefix: String,
    /// Owner shown for every inode.
    pub uid: u32,
    /// Group shown for every inode.
    pub gid: u32,
    /// Permission bits of files without their own mode metadata.
    pub file_mode: u16,
    /// Permission bits of directories.
    pub dir_mode: u16,
    /// How long looked-up attributes and directory listings are trusted before the store is
    /// asked again. Changes by other machines show up within this time.
    pub metadata_ttl: Duration,
    /// How long "no such file" is remembered.
    pub negative_ttl: Duration,
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
    /// Size of one ranged GET of read-ahead, in bytes.
    pub read_part_size: u64,
    /// First read-ahead window after open, in bytes (grows on sequential reads).
    pub initial_read_window: u64,
    /// Largest read-ahead window per open file, in bytes.
    pub max_read_window: u64,
    /// Keys per LIST page when listing directories (S3 caps at 1000).
    pub list_page_size: u32,
    /// Block size reported by `stat`/`statfs`, in bytes.
    pub block_size: u32,
    /// Allow unlink, rmdir and the delete half of rename (off: `EPERM`, a guard rail).
    pub allow_delete: bool,
    /// Allow changing existing objects: overwrite, append, truncate, chmod, rename over
    /// (off: `EPERM`, a guard rail).
    pub allow_overwrite: bool,
    /// Last writer wins: upload without `If-None-Match`/`If-Match`, replacing whatever
    /// another machine wrote meanwhile. Off by default: a conflicting upload fails.
    pub last_writer_wins: bool,
    /// Keep directories as zero-byte `dir/` marker objects (on by default). Off for stores
    /// that cannot keep them (`rclone serve s3` turns one into a file that blocks the
    /// directory): then `mkdir` makes a directory this file system alone sees until a file
    /// is written in it, an emptied directory stays only as long as this file system
    /// runs, and a directory's mode, owner, times and xattrs cannot be changed (`ENOTSUP`).
    pub directory_markers: bool,
    /// Storage class of new objects (`None`: the bucket's default).
    pub storage_class: Option<String>,
    /// Server-side encryption of new objects.
    pub sse: Option<ServerSideEncryption>,
    /// Size of one uploaded part, in bytes; grown automatically so that an object fits in
    /// the store's part limit (10,000 on S3).
    pub write_part_size: u64,
    /// Largest file, in bytes: a write or truncate past it fails with `EFBIG` before
    /// anything is allocated or uploaded. Never above what the store can hold in one
    /// object (S3: 5 TiB, its part limit times its largest part).
    pub max_file_size: u64,
    /// Parts uploaded (or copied) at once per file.
    pub upload_concurrency: usize,
    /// Directory for staging files of files written out of order (`None`: the system
    /// temporary directory).
    pub staging_dir: Option<PathBuf>,
    /// Most bytes of staging files on disk at once, across all files, in bytes.
    pub staging_cap: u64,
    /// Where files that could not be uploaded are kept (`None`: `s3vfs-recovery` in the
    /// staging directory). See [`recovery`](crate::recovery).
    pub recovery_dir: Option<PathBuf>,
    /// Objects copied or deleted at once when renaming or removing a directory tree.
    pub rename_concurrency: usize,
    /// Bytes of read-ahead and upload buffers held at once across all open files; past
    /// it reads fetch only what is asked and writers wait for uploads to finish.
    pub memory_budget: u64,
    /// The optional cache of object data (off by default).
    pub data_cache: DataCacheConfig,
}

/// The optional data cache: blocks of objects kept in memory and/or in a local directory,
/// so that re-reading an unchanged object costs no GET. Off when both sizes are zero (the
/// default). See [`cache`](crate::cache).
///
/// ```
/// use s3vfs::config::{DataCacheConfig, FsConfig};
/// let config = FsConfig::default().with_data_cache(
///     DataCacheConfig::default()
///         .with_memory(256 * 1024 * 1024)
///         .with_disk("/var/cache/s3vfs", 10 * 1024 * 1024 * 1024),
/// );
/// assert!(config.data_cache.is_enabled());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataCacheConfig {
    /// Bytes of blocks kept in memory (0: no memory cache).
    pub memory_bytes: u64,
    /// Directory of the disk cache (`None`: no disk cache). The cache uses (and empties at
    /// start) its own subdirectory `s3vfs-cache-v1` there.
    pub disk_dir: Option<PathBuf>,
    /// Bytes of block files kept in `disk_dir`, headers included (0: no disk cache).
    pub disk_bytes: u64,
    /// Most bytes of block data waiting to be written to `disk_dir`. Blocks are written
    /// behind the reader by one thread, so a first read is not slowed to the disk's write
    /// speed; a block that would grow the backlog past this is not cached (counted in
    /// [`CacheStats::dropped`](crate::cache::CacheStats::dropped)). Waiting blocks are
    /// served from memory. This memory comes on top of
    /// [`FsConfig::memory_budget`], which does not count it. The default, 256 MiB, keeps
    /// most of a fast 1 GiB first read cached on a disk slower than the network while
    /// bounding the memory; 0 caches nothing on disk.
    pub disk_write_backlog: u64,
    /// Size of one cached block, in bytes: a read of a missing block fetches the whole
    /// block (the object's last block may be shorter).
    pub block_size: u64,
}

impl Default for DataCacheConfig {
    fn default() -> Self {
        Self {
            memory_bytes: 0,
            disk_dir: None,
            disk_bytes: 5 * 1024 * 1024 * 1024,
            disk_write_backlog: 256 * 1024 * 1024,
            block_size: 1024 * 1024,
        }
    }
}

impl DataCacheConfig {
    /// Whether any cache is enabled.
    pub fn is_enabled(&self) -> bool {
        self.memory_bytes > 0 || (self.disk_dir.is_some() && self.disk_bytes > 0)
    }

    /// Keeps up to `bytes` of blocks in memory.
    pub fn with_memory(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// Keeps up to `bytes` of blocks in `dir`.
    pub fn with_disk(mut self, dir: impl Into<PathBuf>, bytes: u64) -> Self {
        self.disk_dir = Some(dir.into());
        self.disk_bytes = bytes;
        self
    }

    /// Lets up to `bytes` of blocks wait to be written to the disk cache.
    pub fn with_disk_write_backlog(mut self, bytes: u64) -> Self {
        self.disk_write_backlog = bytes;
        self
    }

    /// Sets the block size in bytes (at least 1).
    pub fn with_block_size(mut self, bytes: u64) -> Self {
        self.block_size = bytes.max(1);
        self
    }
}

/// The largest object Amazon S3 stores: 5 TiB.
pub const MAX_S3_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// What to tell the user about `check` of what the store does, `[has, lacks]` in words
/// ("honours conditional writes", "does not honour …"): `fallback` when it lacks it, that
/// it was assumed when the check failed, nothing when it works.
fn fallback_notice(
    check: &probe::Check,
    [has, lacks]: [&str; 2],
    fallback: &str,
) -> Option<String> {
    match check.verdict {
        Verdict::Works => None,
        Verdict::Lacks => Some(format!("the server {lacks} ({}); {fallback}", check.detail)),
        Verdict::Failed => Some(format!(
            "could not check whether the server {has} ({}); assuming it does",
            check.detail
        )),
    }
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            prefix: String::new(),
            uid,
            gid,
            file_mode: 0o644,
            dir_mode: 0o755,
            metadata_ttl: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            read_only: false,
            read_part_size: 8 * 1024 * 1024,
            initial_read_window: 1024 * 1024 + 128 * 1024,
            max_read_window: 64 * 1024 * 1024,
            list_page_size: 1000,
            block_size: 1024 * 1024,
            allow_delete: true,
            allow_overwrite: true,
            last_writer_wins: false,
            directory_markers: true,
            storage_class: None,
            sse: None,
            write_part_size: 8 * 1024 * 1024,
            max_file_size: MAX_S3_OBJECT_SIZE,
            upload_concurrency: 8,
            staging_dir: None,
            staging_cap: 64 * 1024 * 1024 * 1024,
            recovery_dir: None,
            rename_concurrency: 16,
            memory_budget: 512 * 1024 * 1024,
            data_cache: DataCacheConfig::default(),
        }
    }
}

impl FsConfig {
    /// The recovery directory: where this file system keeps what it could not upload.
    pub fn recovery_dir(&self) -> PathBuf {
        self.recovery_dir.clone().unwrap_or_else(|| {
            self.staging_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .join(crate::recovery::DEFAULT_DIR_NAME)
        })
    }

    /// Caps the size of a file, in bytes (see [`max_file_size`](Self::max_file_size)).
    pub fn with_max_file_size(mut self, bytes: u64) -> Self {
        self.max_file_size = bytes;
        self
    }

    /// Roots the file system at `prefix` (a trailing `/` is added; leading ones removed).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        self.prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        self
    }

    /// Sets the owner and group shown for every inode.
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Sets default permission bits for files and directories.
    pub fn with_modes(mut self, file_mode: u16, dir_mode: u16) -> Self {
        self.file_mode = file_mode & 0o7777;
        self.dir_mode = dir_mode & 0o7777;
        self
    }

    /// Sets the metadata TTL (and the negative-lookup TTL to the same value).
    pub fn with_metadata_ttl(mut self, ttl: Duration) -> Self {
        self.metadata_ttl = ttl;
        self.negative_ttl = ttl;
        self
    }

    /// Sets the read-only flag.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets read-ahead sizes: part size, first window and largest window, in bytes.
    pub fn with_read_ahead(mut self, part_size: u64, initial_window: u64, max_window: u64) -> Self {
        self.read_part_size = part_size.max(64 * 1024);
        self.initial_read_window = initial_window.max(1);
        self.max_read_window = max_window.max(initial_window);
        self
    }

    /// Sets the data cache.
    pub fn with_data_cache(mut self, data_cache: DataCacheConfig) -> Self {
        self.data_cache = data_cache;
        self
    }

    /// How long "no such file" is remembered (see [`negative_ttl`](Self::negative_ttl)).
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Sets the keys per LIST page (1 to 1000, S3's cap).
    pub fn with_list_page_size(mut self, keys: u32) -> Self {
        self.list_page_size = keys.clamp(1, 1000);
        self
    }

    /// Sets the block size `stat` and `statfs` report.
    pub fn with_block_size(mut self, bytes: u32) -> Self {
        self.block_size = bytes.max(1);
        self
    }

    /// Allows or refuses deletes (see [`allow_delete`](Self::allow_delete)).
    pub fn with_allow_delete(mut self, allow: bool) -> Self {
        self.allow_delete = allow;
        self
    }

    /// Allows or refuses changes to existing objects (see [`allow_overwrite`](Self::allow_overwrite)).
    pub fn with_allow_overwrite(mut self, allow: bool) -> Self {
        self.allow_overwrite = allow;
        self
    }

    /// Uploads without conditions (see [`last_writer_wins`](Self::last_writer_wins)).
    pub fn with_last_writer_wins(mut self, on: bool) -> Self {
        self.last_writer_wins = on;
        self
    }

    /// Fits this configuration to what `store` really does, found by trying it under this
    /// configuration's prefix ([`probe`]); nothing is tried for a read-only file system.
    /// Returns the notices to show the user, one per contract changed:
    /// - a store that ignores or refuses write conditions ([`probe::conditional_writes`])
    ///   makes it [`last_writer_wins`](Self::last_writer_wins), since conditional uploads
    ///   would protect nothing (or fail every write);
    /// - a store that cannot keep `dir/` markers ([`probe::directory_markers`]) turns
    ///   [`directory_markers`](Self::directory_markers) off, since a marker would break the
    ///   directory or vanish.
    ///
    /// A check that cannot be made (access denied, network) leaves its setting as it is
    /// and returns a notice too.
    pub async fn fit_to_store(&mut self, store: &Arc<dyn Backend>) -> Vec<String> {
        let mut notices = Vec::new();
        if self.read_only {
            return notices;
        }
        if !self.last_writer_wins {
            let check = probe::conditional_writes(store, &self.prefix).await;
            self.last_writer_wins = check.verdict == Verdict::Lacks;
            notices.extend(fallback_notice(
                &check,
                [
                    "honours conditional writes",
                    "does not honour conditional writes",
                ],
                "this mount is last-writer-wins: when two machines change one file, the last \
                 upload replaces the other's without an error",
            ));
        }
        if self.directory_markers {
            let check = probe::directory_markers(store, &self.prefix).await;
            self.directory_markers = check.verdict != Verdict::Lacks;
            notices.extend(fallback_notice(
                &check,
                ["keeps directory markers", "cannot keep directory markers"],
                "this mount writes none: mkdir makes a directory only this mount sees until a \
                 file is written in it, empty directories last only while it runs, and \
                 directories' modes, owners, times and xattrs cannot be changed",
            ));
        }
        notices
    }

    /// Keeps directories as `dir/` markers, or only in memory (see
    /// [`directory_markers`](Self::directory_markers)).
    pub fn with_directory_markers(mut self, on: bool) -> Self {
        self.directory_markers = on;
        self
    }

    /// Sets the storage class of new objects (`None`: the bucket's default).
    pub fn with_storage_class(mut self, class: Option<String>) -> Self {
        self.storage_class = class;
        self
    }

    /// Sets the server-side encryption of new objects.
    pub fn with_sse(mut self, sse: Option<ServerSideEncryption>) -> Self {
        self.sse = sse;
        self
    }

    /// Sets the size of one uploaded part (grown to fit the store's part limit).
    pub fn with_write_part_size(mut self, bytes: u64) -> Self {
        self.write_part_size = bytes.max(1);
        self
    }

    /// Sets how many parts of one file are uploaded (or copied) at once.
    pub fn with_upload_concurrency(mut self, parts: usize) -> Self {
        self.upload_concurrency = parts.max(1);
        self
    }

    /// Sets the directory of staging files (`None`: the system temporary directory).
    pub fn with_staging_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.staging_dir = dir;
        self
    }

    /// Caps the bytes of staging files on disk at once, across all files.
    pub fn with_staging_cap(mut self, bytes: u64) -> Self {
        self.staging_cap = bytes;
        self
    }

    /// Sets where files that could not be uploaded are kept (`None`: in the staging directory).
    pub fn with_recovery_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.recovery_dir = dir;
        self
    }

    /// Sets how many objects are copied or deleted at once in a directory rename or removal.
    pub fn with_rename_concurrency(mut self, objects: usize) -> Self {
        self.rename_concurrency = objects.max(1);
        self
    }

    /// Sets the bytes of read-ahead and upload buffers held at once across all open files.
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }
}
