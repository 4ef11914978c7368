//! The vault layout (issue 13; the format is FORMAT.md at the repository's root): a file
//! system that gives up one object per file for metadata objects apart from data chunks.
//!
//! - [`VaultFs`] implements [`Vfs`](crate::vfs::Vfs), so [`S3Vfs::over`](crate::S3Vfs::over)
//!   and the FUSE binding use it as they use the plain layout;
//! - [`VaultFs::init`] makes a vault, [`VaultFs::open`] opens one with its passphrase,
//!   [`change_passphrase`] rewraps the master key (one object rewritten);
//! - [`gc`] deletes what nothing references any more (chunks of deleted or overwritten
//!   content, inodes a crash left unnamed), safely while the vault is in use; [`fsck`]
//!   checks that every reference resolves (and repairs link counts).
//!
//! Inside: `crypto` (keys, Argon2id, sealing, chunk ids), `chunker` (FastCDC), `codec`
//! (the envelope: zstd when it helps, then the AEAD with the object's key as AAD),
//! `superblock`, `inode` (the stored form and its checks), `meta` (inodes in the bucket:
//! cache, If-Match updates), `chunks` (chunks in the bucket) and `chunk_cache` (their
//! plaintexts cached, fetches in flight shared), `read_ahead` (prefetch for sequential
//! readers), `overlay` and `file` (a file's unsaved writes, and storing them by
//! re-chunking only the regions they touch), `fs` (the operations), `gc` and `fsck`
//! (whole-vault maintenance).
//!
//! Invariants: data chunks are written before the inode naming them, a new inode before
//! the entry naming it; every inode rewrite is If-Match the version read; nothing read
//! from the bucket is believed before it authenticates and passes its checks, and no
//! buffer is sized by a number from the bucket without a bound.
//!
//! ```no_run
//! # async fn example(store: std::sync::Arc<dyn s3vfs::store::Backend>) -> Result<(), Box<dyn std::error::Error>> {
//! use s3vfs::vault::{VaultConfig, VaultFs};
//! use s3vfs::S3Vfs;
//! use std::sync::Arc;
//!
//! let fs = VaultFs::init(store, "home/", b"correct horse", VaultConfig::default()).await?;
//! let vfs = S3Vfs::over(Arc::new(fs));
//! vfs.write("notes.txt", "only ciphertext reaches the bucket").await?;
//! # Ok(()) }
//! ```

mod chunk_cache;
mod chunker;
mod chunks;
mod codec;
mod crypto;
mod error;
mod file;
mod fs;
mod fsck;
mod gc;
mod inode;
mod io;
mod meta;
mod overlay;
mod read_ahead;
mod recover;
mod superblock;

pub use chunker::ChunkParams;
pub use crypto::KdfParams;
pub use error::VaultError;
pub use fs::VaultFs;
pub use fsck::{fsck, FsckOptions, FsckReport};
pub use gc::{gc, GcOptions, GcReport, GC_GRACE_MIN};

use crate::store::Backend;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The format version this release writes and reads (FORMAT.md).
pub const FORMAT_VERSION: u32 = 1;

/// How a [`VaultFs`] works; the defaults suit a mount.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VaultConfig {
    /// Argon2id costs of a new vault's passphrase key (used by [`VaultFs::init`] only;
    /// an existing vault's are in its superblock).
    pub kdf: KdfParams,
    /// Chunk sizes of a new vault (used by [`VaultFs::init`] only).
    pub chunking: ChunkParams,
    /// How long an inode read from the bucket is used before it is read again (another
    /// host's changes show within this).
    pub metadata_ttl: Duration,
    /// How many inodes are cached.
    pub metadata_cache: usize,
    /// Bytes of chunk plaintexts cached for reads (read-ahead lands there too, and reads
    /// ahead at most half of it).
    pub chunk_cache_bytes: u64,
    /// The first read-ahead window of a file read sequentially, in bytes; it doubles with
    /// each sequential read up to [`read_ahead_max`](Self::read_ahead_max).
    pub read_ahead_initial: u64,
    /// The largest read-ahead window of one open file, in bytes (0: no read-ahead); at
    /// most half of [`chunk_cache_bytes`](Self::chunk_cache_bytes) is used, which also
    /// bounds the bytes read ahead by all open files together.
    pub read_ahead_max: u64,
    /// Chunks one open file's read-ahead fetches at once.
    pub read_ahead_concurrency: usize,
    /// Inodes a directory listing reads at once for its entries' attributes.
    pub listing_concurrency: usize,
    /// Whether a plain listing (`readdir`, [`S3Vfs::read_dir`](crate::S3Vfs::read_dir))
    /// gives the entries' attributes too, at one inode read per entry (cached for
    /// [`metadata_ttl`](Self::metadata_ttl)); off, only `readdirplus` reads them.
    pub listing_attrs: bool,
    /// Bytes written to one open file and held before they are stored without waiting
    /// for a flush; also the most one write call takes.
    pub max_dirty: u64,
    /// Chunks uploaded at once by one flush.
    pub upload_concurrency: usize,
    /// Owner of new files and directories.
    pub uid: u32,
    /// Group of new files and directories.
    pub gid: u32,
    /// `st_blksize` shown, in bytes.
    pub block_size: u32,
    /// Where changes that could not be stored are kept (`None`: `s3vfs-recovery` in the
    /// system's temporary directory). See [`recovery`](crate::recovery).
    pub recovery_dir: Option<PathBuf>,
    /// The smallest grace any [`gc`] of this vault runs with (its
    /// [`GcOptions::grace_min`]): a chunk this host wrote less than half of it ago is
    /// reused without a request, an older one is written again before an inode names it
    /// anew, and a flush writes its inode within half of it of its chunks. Default
    /// [`GC_GRACE_MIN`]; lowered only by tests, together with the gc's (under a minute
    /// the two must be equal).
    pub gc_grace_min: Duration,
}

impl Default for VaultConfig {
    fn default() -> Self {
        // SAFETY: geteuid/getegid cannot fail and have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Self {
            kdf: KdfParams::default(),
            chunking: ChunkParams::default(),
            metadata_ttl: Duration::from_secs(1),
            metadata_cache: 10_000,
            chunk_cache_bytes: 64 * 1024 * 1024,
            read_ahead_initial: 4 * 1024 * 1024,
            read_ahead_max: 32 * 1024 * 1024,
            read_ahead_concurrency: 16,
            listing_concurrency: 32,
            listing_attrs: true,
            max_dirty: 64 * 1024 * 1024,
            upload_concurrency: 4,
            uid,
            gid,
            block_size: 1024 * 1024,
            recovery_dir: None,
            gc_grace_min: GC_GRACE_MIN,
        }
    }
}

impl VaultConfig {
    /// Sets [`kdf`](Self::kdf).
    pub fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// Sets [`chunking`](Self::chunking).
    pub fn with_chunking(mut self, chunking: ChunkParams) -> Self {
        self.chunking = chunking;
        self
    }

    /// Sets [`metadata_ttl`](Self::metadata_ttl).
    pub fn with_metadata_ttl(mut self, ttl: Duration) -> Self {
        self.metadata_ttl = ttl;
        self
    }

    /// Sets [`max_dirty`](Self::max_dirty) (at least 1 byte).
    pub fn with_max_dirty(mut self, bytes: u64) -> Self {
        self.max_dirty = bytes.max(1);
        self
    }

    /// Sets [`chunk_cache_bytes`](Self::chunk_cache_bytes).
    pub fn with_chunk_cache(mut self, bytes: u64) -> Self {
        self.chunk_cache_bytes = bytes;
        self
    }

    /// Sets [`read_ahead_initial`](Self::read_ahead_initial) and
    /// [`read_ahead_max`](Self::read_ahead_max) (0: no read-ahead).
    pub fn with_read_ahead(mut self, initial: u64, max: u64) -> Self {
        self.read_ahead_initial = initial.min(max);
        self.read_ahead_max = max;
        self
    }

    /// Sets [`listing_concurrency`](Self::listing_concurrency) (at least 1).
    pub fn with_listing_concurrency(mut self, inodes: usize) -> Self {
        self.listing_concurrency = inodes.max(1);
        self
    }

    /// Sets [`listing_attrs`](Self::listing_attrs).
    pub fn with_listing_attrs(mut self, enabled: bool) -> Self {
        self.listing_attrs = enabled;
        self
    }

    /// Sets [`recovery_dir`](Self::recovery_dir).
    pub fn with_recovery_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.recovery_dir = dir;
        self
    }

    /// The recovery directory: where this file system keeps what it could not store.
    pub fn recovery_dir(&self) -> PathBuf {
        self.recovery_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(crate::recovery::DEFAULT_DIR_NAME))
    }

    /// Sets [`gc_grace_min`](Self::gc_grace_min) (at least 1 ms).
    pub fn with_gc_grace_min(mut self, grace_min: Duration) -> Self {
        self.gc_grace_min = grace_min.max(Duration::from_millis(1));
        self
    }

    /// Sets [`uid`](Self::uid) and [`gid`](Self::gid).
    pub fn with_owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// The Argon2id costs of the passphrase of the vault at `prefix` of `store`, as its
/// superblock stores them (in the clear; no passphrase needed): what `passwd` keeps when
/// no other costs are asked for.
pub async fn kdf_params(store: Arc<dyn Backend>, prefix: &str) -> Result<KdfParams, VaultError> {
    superblock::kdf_params(&io::Location::new(store, prefix)).await
}

/// Wraps the master key of the vault at `prefix` of `store` under passphrase `new` (with
/// `kdf` costs and a fresh salt) instead of `old`. Rewrites the superblock only (If-Match):
/// every other object stays as it is. A wrong `old` is [`VaultError::Unlock`].
pub async fn change_passphrase(
    store: Arc<dyn Backend>,
    prefix: &str,
    old: &[u8],
    new: &[u8],
    kdf: KdfParams,
) -> Result<(), VaultError> {
    kdf.validate()?;
    superblock::change_passphrase(&io::Location::new(store, prefix), old, new, kdf).await
}
