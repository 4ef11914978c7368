//! [`Core`]: the parts every component of one file system shares, and the rules they all
//! apply.
//!
//! The store, the configuration, the namespace (paths to keys), the inode table, the
//! metadata caches, the name locks between renames and uploads, and the memory budget.
//! Its methods are the checks and conversions every operation needs: the attributes shown
//! for a stat, the guard rails (`EROFS`, `EPERM`), the options and write condition of a new
//! object, the path of an inode or a key. Components ([`OpenFiles`](crate::open_files),
//! the operations in `ops/`) hold an `Arc<Core>` or borrow it; none of them holds another
//! component's state.

use crate::budget::MemoryBudget;
use crate::config::FsConfig;
use crate::error::{VfsError, VfsResult};
use crate::inode::InodeTable;
use crate::local_dirs::LocalDirs;
use crate::meta::{MetaCache, Stat};
use crate::name_locks::NameLocks;
use crate::namespace::{FileName, FsPath, Namespace, MAX_KEY_LEN};
use crate::recovery::{RecoveryDir, UploadRecord};
use crate::store::{Backend, ETag, ListRequest, ObjectKey, PutOptions, UploadId, WriteCondition};
use crate::sync::lock;
use crate::vfs::{Entry, FileAttr, FileKind, Ino};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Most distinct hidden keys remembered, so each is warned about once.
const MAX_HIDDEN_WARNINGS: usize = 10_000;

/// What the components of one file system share.
pub(crate) struct Core {
    /// The bucket (through the data cache, when one is on).
    pub(crate) store: Arc<dyn Backend>,
    pub(crate) config: FsConfig,

    /// Paths to keys, under the mount's prefix.
    pub(crate) ns: Namespace,
    pub(crate) inodes: InodeTable,

    /// Attributes, "no such file" and directory listings, each for its TTL.
    pub(crate) meta: MetaCache,

    /// Exclusion between renames and uploads of the same names.
    pub(crate) names: NameLocks,

    /// Memory for read-ahead and upload buffers.
    pub(crate) budget: MemoryBudget,

    /// Directories only this file system sees (a store without `dir/` markers).
    pub(crate) local_dirs: LocalDirs,

    /// Set by [`Vfs::shutdown`](crate::vfs::Vfs::shutdown): opens and writes are refused.
    pub(crate) closing: AtomicBool,

    /// When the file system was made (the root's mtime, a marker's default).
    pub(crate) started: SystemTime,
    hidden_warned: Mutex<HashSet<String>>,
}

impl Core {
    /// The parts of a file system over `store` with `config`.
    pub(crate) fn new(store: Arc<dyn Backend>, config: FsConfig) -> Self {
        Self {
            store,
            ns: Namespace::new(&config.prefix),
            meta: MetaCache::new(config.metadata_ttl, config.negative_ttl),
            budget: MemoryBudget::new(config.memory_budget),
            local_dirs: LocalDirs::default(),
            config,
            inodes: InodeTable::new(),
            names: NameLocks::default(),
            closing: AtomicBool::new(false),
            started: SystemTime::now(),
            hidden_warned: Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn attr(&self, ino: Ino, stat: &Stat) -> FileAttr {
        let (default_perm, nlink) = match stat.kind {
            FileKind::Directory => (self.config.dir_mode, 2),
            FileKind::Symlink => (0o777, 1),
            FileKind::File
            | FileKind::Fifo
            | FileKind::CharDevice
            | FileKind::BlockDevice
            | FileKind::Socket => (self.config.file_mode, 1),
        };
        let rdev = match stat.kind {
            FileKind::CharDevice | FileKind::BlockDevice => stat.posix.rdev.unwrap_or(0),
            _ => 0,
        };
        FileAttr {
            ino,
            kind: stat.kind,
            size: stat.size,
            mtime: stat.mtime,
            perm: stat.posix.perm().unwrap_or(default_perm),
            uid: stat.posix.uid.unwrap_or(self.config.uid),
            gid: stat.posix.gid.unwrap_or(self.config.gid),
            nlink,
            blksize: self.config.block_size,
            rdev,
        }
    }
    pub(crate) fn entry(&self, ino: Ino, stat: &Stat) -> Entry {
        Entry {
            attr: self.attr(ino, stat),
            ttl: self.config.metadata_ttl,
        }
    }
    pub(crate) fn refuse_write(&self, what: &str) -> VfsError {
        VfsError::ReadOnly(format!("{what}: this mount is read-only"))
    }

    /// `EROFS` unless the file system may change the bucket.
    pub(crate) fn check_writable(&self, what: &str) -> VfsResult<()> {
        if self.config.read_only {
            Err(self.refuse_write(what))
        } else {
            Ok(())
        }
    }

    /// `EPERM` when deletes are switched off (a guard rail).
    pub(crate) fn check_delete_allowed(&self, path: &FsPath) -> VfsResult<()> {
        self.check_writable("delete")?;
        if self.config.allow_delete {
            Ok(())
        } else {
            tracing::warn!(path = %path, "delete refused: deletes are disabled on this mount");
            Err(VfsError::NotPermitted(format!(
                "{path}: deletes are disabled on this mount"
            )))
        }
    }

    /// `EPERM` when changing existing objects is switched off (a guard rail).
    pub(crate) fn check_overwrite_allowed(&self, path: &FsPath) -> VfsResult<()> {
        self.check_writable("overwrite")?;
        if self.config.allow_overwrite {
            Ok(())
        } else {
            tracing::warn!(path = %path, "change refused: overwrites are disabled on this mount");
            Err(VfsError::NotPermitted(format!(
                "{path}: overwrites are disabled on this mount"
            )))
        }
    }

    /// Options for a new object: the mount's storage class and encryption, and `meta`.
    pub(crate) fn new_object_options(&self, meta: crate::attrs::PosixMeta) -> PutOptions {
        let mut options = PutOptions {
            storage_class: self.config.storage_class.clone(),
            sse: self.config.sse.clone(),
            ..PutOptions::default()
        };
        meta.write_to(&mut options.user_metadata);
        options
    }

    /// The condition an upload must meet: the key must still be absent (`expected` is
    /// `None`) or still hold `expected`. Unconditional when the mount chose last writer
    /// wins or the store cannot check conditions.
    pub(crate) fn write_condition(&self, expected: Option<&ETag>) -> WriteCondition {
        if self.config.last_writer_wins || !self.store.capabilities().conditional_writes {
            return WriteCondition::None;
        }
        match expected {
            None => WriteCondition::IfNoneMatch,
            Some(etag) => WriteCondition::IfMatch(etag.clone()),
        }
    }

    /// The attributes of a new inode created by this mount.
    pub(crate) fn new_posix_meta(&self, kind: FileKind, perm: u32) -> crate::attrs::PosixMeta {
        crate::attrs::PosixMeta {
            mode: Some(crate::attrs::type_bits(kind) | (perm & 0o7777)),
            uid: Some(self.config.uid),
            gid: Some(self.config.gid),
            mtime: Some(SystemTime::now()),
            rdev: None,
        }
    }
    pub(crate) fn dir_path(&self, ino: Ino) -> VfsResult<FsPath> {
        let info = self.inodes.info(ino)?;
        if info.kind != FileKind::Directory {
            return Err(VfsError::NotADirectory(info.path.to_string()));
        }
        Ok(info.path)
    }
    pub(crate) fn warn_hidden(&self, key: &str, problem: crate::namespace::NameProblem) {
        let mut warned = lock(&self.hidden_warned);
        if warned.len() < MAX_HIDDEN_WARNINGS && warned.insert(key.to_owned()) {
            tracing::warn!(key, reason = %problem, "key cannot be shown as a file; hidden");
        }
    }

    /// The validated path of `name` in directory `parent`, with the parent's path.
    pub(crate) fn child_path(&self, parent: Ino, name: &OsStr) -> VfsResult<(FsPath, FsPath)> {
        let parent_path = self.dir_path(parent)?;
        let name = FileName::from_os(name)?;
        let path = parent_path.join(&name);
        Ok((parent_path, path))
    }

    /// The path of inode `ino`.
    pub(crate) fn inode_path(&self, ino: Ino) -> VfsResult<(FsPath, FileKind)> {
        let info = self.inodes.info(ino)?;
        Ok((info.path, info.kind))
    }

    /// The LIST of directory `dir`'s entries (its keys and common prefixes, delimiter
    /// `/`): `max_keys` of them, after continuation `token`.
    pub(crate) fn dir_listing(
        &self,
        dir: &FsPath,
        max_keys: u32,
        token: Option<String>,
    ) -> ListRequest {
        ListRequest {
            prefix: self.ns.dir_prefix(dir),
            delimiter: Some("/".to_owned()),
            continuation_token: token,
            max_keys: Some(max_keys),
            start_after: None,
        }
    }

    /// The key of the `dir/` marker object of directory `dir` (not the root); `ENOTSUP`
    /// when this file system writes no markers (see
    /// [`FsConfig::directory_markers`](crate::config::FsConfig::directory_markers)), as
    /// what would be stored on one cannot be.
    pub(crate) fn marker_key(&self, dir: &FsPath) -> VfsResult<ObjectKey> {
        if !self.config.directory_markers {
            tracing::info!(path = %dir, "refused: this store keeps no directory markers, \
                so a directory's attributes cannot be stored");
            return Err(VfsError::Unsupported(format!(
                "{dir}: the store keeps no directory markers, where a directory's attributes live"
            )));
        }
        let key = self.ns.dir_prefix(dir);
        if key.len() > MAX_KEY_LEN {
            return Err(VfsError::NameTooLong(dir.to_string()));
        }
        Ok(ObjectKey::new(key))
    }

    /// Records a multipart upload this mount starts, so that if the process is killed
    /// `s3vfs recover` can find and abort it. Best effort: a recovery directory that
    /// cannot be written is logged, and the upload goes on.
    pub(crate) fn record_upload(&self, key: &ObjectKey, id: &UploadId) -> Option<UploadRecord> {
        let dir = self.config.recovery_dir();
        match RecoveryDir::open(&dir).and_then(|r| r.record_upload(self.store.bucket(), key, &id.0))
        {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(key = %key, %err, "cannot record a multipart upload in the recovery directory");
                None
            }
        }
    }

    /// Refuses `what` once the file system is shutting down.
    pub(crate) fn check_not_closing(&self, what: &str) -> VfsResult<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(VfsError::ShuttingDown(format!(
                "{what} refused: the file system is being unmounted"
            )));
        }
        Ok(())
    }
    pub(crate) fn path_of_key(&self, key: &ObjectKey) -> FsPath {
        let rest = key
            .as_str()
            .strip_prefix(self.ns.prefix())
            .unwrap_or(key.as_str());
        FsPath::parse(rest).unwrap_or_default()
    }
}
