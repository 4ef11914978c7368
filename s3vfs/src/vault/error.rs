//! Errors of the vault layout: opening a vault, and what its objects failed.
//!
//! Each converts into exactly one [`VfsError`], whose errno is the error's errno: a store
//! failure keeps the store's kind, a failed check of anything read is
//! [`VfsError::Corrupt`] (`EIO`), a lost conditional update is
//! [`VfsError::WriteConflict`] (`EIO`).

use crate::error::VfsError;
use crate::store::StoreError;

/// An error of the vault layout.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// A request to the store failed.
    #[error("{key}: {source}")]
    Store {
        /// The object's key.
        key: String,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// There is no superblock under the prefix.
    #[error("no vault at {0:?}: it has no superblock (run `vault init` first)")]
    NotAVault(String),
    /// `init` found a superblock under the prefix already.
    #[error("a vault exists at {0:?} already")]
    AlreadyExists(String),
    /// The superblock is of a format version this release does not read.
    #[error("vault format version {0} is not supported (this release reads version {ver})", ver = super::FORMAT_VERSION)]
    UnsupportedVersion(u32),
    /// The passphrase does not unwrap the master key: it is wrong, or the superblock was
    /// tampered with (the two cannot be told apart).
    #[error("wrong passphrase, or the superblock was tampered with")]
    Unlock,
    /// An object failed authentication, is malformed, or says something impossible.
    #[error("{key}: {reason}")]
    Corrupt {
        /// The object's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object is larger than anything the format allows; it was not read.
    #[error("{key}: {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The object's key.
        key: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Another writer changed the object every time it was read again; nothing was
    /// overwritten.
    #[error("{0} kept being changed by another writer; the change was not made")]
    Conflict(String),
    /// Another gc of the vault is running (its marker object is this key); gc runs
    /// alone.
    #[error("another gc of this vault is running (marker {0}); try again when it is done")]
    GcRunning(String),
    /// A configuration value is out of range, or the store cannot hold a vault.
    #[error("invalid vault configuration: {0}")]
    Config(String),
}

impl VaultError {
    /// A [`VaultError::Corrupt`] for `key`.
    pub(crate) fn corrupt(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A [`VaultError::Store`] for `key`.
    pub(crate) fn store(key: impl Into<String>, source: StoreError) -> Self {
        Self::Store {
            key: key.into(),
            source,
        }
    }

    /// The errno this error stands for: the one of the [`VfsError`] it becomes.
    pub fn errno(&self) -> i32 {
        VfsError::from(self.clone()).errno()
    }
}

impl From<VaultError> for VfsError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::Store { key, source } => VfsError::from_store(&key, source),
            VaultError::NotAVault(prefix) => VfsError::NotFound(prefix),
            VaultError::AlreadyExists(prefix) => VfsError::Exists(prefix),
            VaultError::UnsupportedVersion(_) => VfsError::Unsupported(err.to_string()),
            VaultError::Unlock | VaultError::Corrupt { .. } | VaultError::TooLarge { .. } => {
                VfsError::Corrupt(err.to_string())
            }
            VaultError::Conflict(key) => VfsError::WriteConflict(key),
            VaultError::GcRunning(_) => VfsError::Busy(StoreError::new(
                crate::store::StoreErrorKind::Throttled,
                err.to_string(),
            )),
            VaultError::Config(_) => VfsError::InvalidArgument(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreErrorKind;

    #[test]
    fn each_error_has_its_errno() {
        assert_eq!(VaultError::corrupt("k", "bad tag").errno(), libc::EIO);
        assert_eq!(VaultError::Conflict("k".into()).errno(), libc::EIO);
        assert_eq!(VaultError::NotAVault("p/".into()).errno(), libc::ENOENT);
        assert_eq!(VaultError::AlreadyExists("p/".into()).errno(), libc::EEXIST);
        assert_eq!(VaultError::Config("x".into()).errno(), libc::EINVAL);
        let missing = StoreError::new(StoreErrorKind::NotFound, "");
        assert_eq!(VaultError::store("k", missing).errno(), libc::ENOENT);
    }
}
