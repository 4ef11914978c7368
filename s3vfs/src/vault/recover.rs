//! A vault's changes that could not be stored, kept in the recovery directory as the plain
//! layout keeps its files, and laid over their inode again later.
//!
//! An entry's manifest (layout `vault`) names the inode object (`key`), the version the
//! changes build on (`base_etag`), the size below which that version's bytes count
//! (`base_len`: lower after a truncation), the file's size and the written ranges; the data
//! file holds those ranges at their offsets. Those bytes are plaintext, readable by the
//! owner only (0600 in a 0700 directory), as the kernel's page cache and the plain
//! layout's staging files hold written data: a vault encrypts what reaches the bucket.
//! They are bounded by what an open file holds before it stores ([`max_dirty`] plus one
//! write), so storing them again reads them whole.
//!
//! [`max_dirty`]: super::VaultConfig::max_dirty

use super::file::Pending;
use super::inode::Inode;
use super::meta::Versioned;
use crate::recovery::{Kept, Layout, Manifest, RecoveredFile, RecoveryDir, RecoveryError};
use crate::store::ObjectKey;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The manifest's metadata entry naming the inode number (16 hex digits).
const INO_FIELD: &str = "vault-ino";

/// Keeps `pending`, the unsaved changes of inode `ino` (object `key` in `bucket`) laid
/// over version `base`, in the recovery directory `dir`, and says so at ERROR with the
/// place; if even that fails, says what is lost.
pub(super) fn keep(
    dir: &Path,
    bucket: Option<String>,
    key: &ObjectKey,
    ino: u64,
    base: &Versioned,
    pending: &Pending,
    error: &str,
) -> Kept {
    if !pending.is_dirty() {
        return Kept::Nothing;
    }
    let written: Vec<(u64, u64)> = pending
        .extents()
        .map(|(off, data)| (off, off + data.len() as u64))
        .collect();
    let mut metadata = BTreeMap::new();
    metadata.insert(INO_FIELD.to_owned(), format!("{ino:016x}"));
    let path = format!("inode {ino:016x}");
    let manifest = Manifest::new(
        bucket,
        key,
        path.clone(),
        Some(&base.etag),
        pending.base_end(&base.inode),
        pending.size(&base.inode),
        written,
        metadata,
        error.to_owned(),
    )
    .of_layout(Layout::Vault);
    let kept = RecoveryDir::open(dir).and_then(|recovery| {
        recovery.keep(&manifest, |out| {
            for (off, data) in pending.extents() {
                out.write_all_at(data, off)?;
            }
            Ok(())
        })
    });
    match kept {
        Ok(manifest_path) => {
            tracing::error!(key = %key, path, error, kept = %manifest_path.display(),
                "closed with changes that could not be stored in the vault: they are kept in the recovery directory; `s3vfs recover --layout vault` stores them again");
            Kept::At(manifest_path)
        }
        Err(keep_error) => {
            tracing::error!(key = %key, path, error, %keep_error,
                "closed with changes that could not be stored in the vault, and the recovery directory could not keep them: they are lost");
            Kept::Lost
        }
    }
}

/// The inode number an entry kept by a vault names, if it is a vault's entry.
pub(super) fn inode_of(file: &RecoveredFile) -> Result<u64, RecoveryError> {
    let layout_error = || RecoveryError::Layout {
        id: file.id.clone(),
        layout: file.manifest.layout,
    };
    if file.manifest.layout != Layout::Vault {
        return Err(layout_error());
    }
    file.manifest
        .metadata
        .get(INO_FIELD)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(layout_error)
}

/// The kept changes as unsaved writes over `base` (the version they were made on): the
/// truncation first (bytes of `base` past `base_len` do not count), then the size, then
/// the written ranges.
pub(super) fn pending_over(file: &RecoveredFile, base: &Inode) -> Result<Pending, RecoveryError> {
    let m = &file.manifest;
    let mut pending = Pending::clean(base.size);
    if m.base_len < base.size {
        pending.truncate(m.base_len);
    }
    if m.size != pending.size(base) {
        pending.truncate(m.size);
    }
    for (off, data) in file.written_bytes()? {
        pending.write(off, data);
    }
    Ok(pending)
}
