//! Errors of the file-system layer, each with exactly one errno.

use crate::store::{StoreError, StoreErrorKind};

/// Result of a file-system call.
pub type VfsResult<T> = Result<T, VfsError>;

/// An error of the file system. Each variant maps to one errno ([`VfsError::errno`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum VfsError {
    /// No such file or directory.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// A path component is not a directory.
    #[error("not a directory: {0}")]
    NotADirectory(String),
    /// The operation needs a file but found a directory.
    #[error("is a directory: {0}")]
    IsADirectory(String),
    /// The directory is not empty.
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    /// The name exists already.
    #[error("file exists: {0}")]
    Exists(String),
    /// The file system (or this operation on it) is read-only.
    #[error("read-only file system: {0}")]
    ReadOnly(String),
    /// A name that cannot be a file name here (`.`, `..`, `/`, NUL, empty).
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// A name over 255 bytes, or a key over S3's 1024 bytes.
    #[error("name too long: {0}")]
    NameTooLong(String),
    /// The object is in an archived storage class and must be restored before reading.
    #[error("{path} is archived in {storage_class}; restore it before reading")]
    Archived {
        /// The file.
        path: String,
        /// Its storage class.
        storage_class: String,
    },
    /// The object changed in the store while it was open for reading.
    #[error("{0} was replaced in the store while open; reopen it")]
    ObjectChanged(String),
    /// The mount's guard rails forbid this (deletes or overwrites are disabled), or the
    /// operation is not allowed on this kind of file (hard links).
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    /// Another writer changed the object since it was opened (a conditional upload
    /// failed): nothing was overwritten.
    #[error("{0} was changed by another writer; the upload was refused so as not to overwrite it")]
    WriteConflict(String),
    /// The operation would cross from one bucket to another (rename): `EXDEV`, so that
    /// tools like `mv` fall back to copying.
    #[error("cannot move across buckets: {0}")]
    CrossDevice(String),
    /// The staging area is full.
    #[error("no space left for staging: {0}")]
    NoSpace(String),
    /// The file system is shutting down (a stop signal): no new opens or writes.
    #[error("shutting down: {0}")]
    ShuttingDown(String),
    /// A file would grow past the largest object the store holds (S3: 5 TiB), or past
    /// the mount's `max_file_size`.
    #[error("file too large: {0}")]
    FileTooLarge(String),
    /// The value is too large for the store (e.g. S3's 2 KB of user metadata).
    #[error("too large: {0}")]
    TooLarge(String),
    /// The handle is not open (or not open for this operation).
    #[error("bad file handle")]
    BadHandle,
    /// An argument is invalid (bad offset, unsupported flag).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The operation is not supported.
    #[error("operation not supported: {0}")]
    Unsupported(String),
    /// No such extended attribute.
    #[error("no such attribute: {0}")]
    NoAttribute(String),
    /// Access denied by the store.
    #[error("permission denied: {0}")]
    PermissionDenied(#[source] StoreError),
    /// The store throttled us beyond the retry budget.
    #[error("store busy, try again: {0}")]
    Busy(#[source] StoreError),
    /// Any other store failure.
    #[error("I/O error: {0}")]
    Io(#[source] StoreError),
    /// What the store returned failed a check: an encrypted object that does not
    /// authenticate (tampered with, or moved to another key), or one that is malformed or
    /// over its size limit. Never returned as data.
    #[error("corrupt or tampered data: {0}")]
    Corrupt(String),
}

impl VfsError {
    /// The errno this error stands for.
    pub fn errno(&self) -> i32 {
        match self {
            Self::NotFound(_) => libc::ENOENT,
            Self::NotADirectory(_) => libc::ENOTDIR,
            Self::IsADirectory(_) => libc::EISDIR,
            Self::NotEmpty(_) => libc::ENOTEMPTY,
            Self::Exists(_) => libc::EEXIST,
            Self::ReadOnly(_) => libc::EROFS,
            Self::InvalidName(_) => libc::EINVAL,
            Self::NameTooLong(_) => libc::ENAMETOOLONG,
            Self::Archived { .. } => libc::EACCES,
            Self::ObjectChanged(_) => libc::ESTALE,
            Self::NotPermitted(_) => libc::EPERM,
            Self::WriteConflict(_) => libc::EIO,
            Self::CrossDevice(_) => libc::EXDEV,
            Self::NoSpace(_) => libc::ENOSPC,
            Self::FileTooLarge(_) => libc::EFBIG,
            Self::ShuttingDown(_) => libc::ESHUTDOWN,
            Self::TooLarge(_) => libc::E2BIG,
            Self::BadHandle => libc::EBADF,
            Self::InvalidArgument(_) => libc::EINVAL,
            Self::Unsupported(_) => libc::ENOTSUP,
            Self::NoAttribute(_) => libc::ENODATA,
            Self::PermissionDenied(_) => libc::EACCES,
            Self::Busy(_) => libc::EAGAIN,
            Self::Io(_) => libc::EIO,
            Self::Corrupt(_) => libc::EIO,
        }
    }

    /// Converts a store error about `path` from a read or lookup, keeping the kinds a
    /// caller acts on. A 412 there means the version pinned by the read is gone: `ESTALE`.
    ///
    /// The one store-error mapping of the crate: its variants for writes and creations
    /// differ only in what a 412 means (another writer's change, `EIO`; a name taken
    /// meanwhile, `EEXIST`).
    pub fn from_store(path: &str, err: StoreError) -> Self {
        match err.kind {
            StoreErrorKind::NotFound => Self::NotFound(path.to_owned()),
            StoreErrorKind::PreconditionFailed => Self::ObjectChanged(path.to_owned()),
            StoreErrorKind::AccessDenied => Self::PermissionDenied(err),
            StoreErrorKind::Throttled => Self::Busy(err),
            StoreErrorKind::Archived => Self::Archived {
                path: path.to_owned(),
                storage_class: "an archive class".to_owned(),
            },
            // A feature the store lacks (a backend without metadata asked to keep a
            // symbolic link): the operation is not supported there, nothing broke.
            StoreErrorKind::InvalidRequest if err.code.as_deref() == Some("NotImplemented") => {
                Self::Unsupported(format!("{path}: {err}"))
            }
            _ => Self::Io(err),
        }
    }

    /// Converts a store error about `path` from a replacement (an upload, a metadata
    /// rewrite, a rename's copy): a 412 means another writer changed the object since it
    /// was read, and nothing was overwritten ([`WriteConflict`](Self::WriteConflict),
    /// `EIO`). Logged: the caller returns it to a writer.
    pub(crate) fn from_write(path: &dyn std::fmt::Display, err: StoreError) -> Self {
        if err.kind == StoreErrorKind::PreconditionFailed {
            tracing::warn!(path = %path, error = %err,
                "changed by another writer; nothing was overwritten");
            Self::WriteConflict(path.to_string())
        } else {
            tracing::error!(path = %path, error = %err, "upload failed: the store refused the change");
            Self::from_store(&path.to_string(), err)
        }
    }

    /// Converts a store error about `path` from a creation (`If-None-Match: *`): a 412
    /// means the key appeared meanwhile ([`Exists`](Self::Exists), `EEXIST`).
    pub(crate) fn from_create(path: &dyn std::fmt::Display, err: StoreError) -> Self {
        if err.kind == StoreErrorKind::PreconditionFailed {
            tracing::info!(path = %path, "created by another writer meanwhile");
            Self::Exists(path.to_string())
        } else {
            tracing::warn!(path = %path, error = %err, "the store refused a creation");
            Self::from_store(&path.to_string(), err)
        }
    }
}

impl From<VfsError> for std::io::Error {
    fn from(err: VfsError) -> Self {
        let errno = err.errno();
        std::io::Error::new(std::io::Error::from_raw_os_error(errno).kind(), err)
    }
}
