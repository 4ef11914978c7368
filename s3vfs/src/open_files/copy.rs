//! A whole object copied into an empty open file server-side (`copy_file_range`, as `cp`
//! makes it): the copy is the file's upload, made with the write condition and the
//! metadata its flush would use, and the file then builds on the copy, clean, as after a
//! flush — its close uploads nothing more.
//!
//! Invariants: the source is pinned to the ETag of the version its handle reads (a copy
//! never mixes two versions, nor copies one the handle would not read); the destination
//! is left as it was when the copy fails; a destination that was written to, or is
//! unlinked, is never copied into (the caller copies through the handles instead). The
//! copy's origin is remembered while the file is unchanged since, so that the caller's
//! follow-up calls (one reply reports at most 4 GiB) are answered without a request.

use super::{OpenFile, OpenFiles};
use crate::attrs::PosixMeta;
use crate::error::{VfsError, VfsResult};
use crate::objects::copy::ObjectCopy;
use crate::store::{ETag, MetadataDirective, ObjectKey};
use crate::sync::lock;
use std::time::SystemTime;

/// An object version an open file reads as it is, without local changes: what a
/// server-side copy of that file's content copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CleanVersion {
    /// The object's key.
    pub(crate) key: ObjectKey,
    /// The version's ETag.
    pub(crate) etag: ETag,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// Where the version an open file builds on came from, when a server-side copy made it.
#[derive(Clone, Debug)]
pub(super) struct CopiedFrom {
    /// The version copied.
    source: CleanVersion,
    /// The ETag of the copy: the record holds while the file builds on it, unchanged.
    etag: ETag,
}

impl OpenFiles {
    /// The object version `file` reads, when its content is exactly that version (no
    /// local changes, a known ETag, not unlinked); `None` otherwise.
    pub(crate) async fn clean_version(&self, file: &OpenFile) -> Option<CleanVersion> {
        let state = file.state.lock().await;
        let shadow = lock(&file.shadow);
        let unchanged = !state.dirty
            && state.stream.is_none()
            && state.poisoned.is_none()
            && state.base_len == state.size
            && shadow.dirty_stat.is_none()
            && !shadow.unlinked
            && shadow.size == state.size;
        let etag = state.base.as_ref()?.etag.clone()?;
        (unchanged && shadow.etag.as_ref() == Some(&etag)).then(|| CleanVersion {
            key: shadow.key.clone(),
            etag,
            size: state.size,
        })
    }

    /// Whether `dest` holds a server-side copy of exactly `source`, unchanged since: its
    /// bytes are the source's at every offset.
    pub(crate) async fn holds_copy_of(&self, dest: &OpenFile, source: &CleanVersion) -> bool {
        let state = dest.state.lock().await;
        let builds_on = state.base.as_ref().and_then(|b| b.etag.as_ref());
        state.copied_from.as_ref().is_some_and(|from| {
            from.source == *source
                && !state.dirty
                && state.size == source.size
                && builds_on == Some(&from.etag)
        })
    }

    /// Fills `dest`, an open file that is empty, with the object version `source` by a
    /// server-side copy (see the module docs). `Ok(false)`, with nothing asked of the
    /// store, when `dest` is not empty or is unlinked, or the store cannot copy an object
    /// of that size: the caller copies through the handles. On failure `dest` is left as
    /// it was.
    pub(crate) async fn copy_object_into(
        &self,
        dest: &OpenFile,
        source: &CleanVersion,
    ) -> VfsResult<bool> {
        let caps = self.core.store.capabilities();
        if source.size > caps.max_single_put && !caps.upload_part_copy {
            return Ok(false);
        }
        let _name = self.hold_name(dest).await;
        let mut state = dest.state.lock().await;
        let key = dest.key();
        state.check_poisoned(&key)?;
        if state.size != 0 || lock(&dest.shadow).unlinked {
            return Ok(false);
        }
        let path = dest.path();
        self.check_file_size(&path, source.size)?;
        // What the flush of a write of these bytes would store: the write's mtime, the
        // file's attributes (a chmod made since it was created included), and for a
        // replaced object its kept metadata.
        let posix = PosixMeta {
            mtime: Some(SystemTime::now()),
            ..state.posix
        };
        let changes = PosixMeta {
            mtime: None,
            ..state.attr_changes
        };
        let options = self
            .upload_options_for(&key, state.base.is_some(), posix, changes)
            .await?;
        let condition = self.upload_condition(&key, &state);
        let copied = self
            .core
            .copy_object(ObjectCopy {
                source: source.key.clone(),
                source_etag: Some(source.etag.clone()),
                size: source.size,
                dest: key.clone(),
                metadata: MetadataDirective::Replace(options),
                condition,
            })
            .await
            .map_err(|e| VfsError::from_write(&path, e))?;
        tracing::debug!(source = %source.key, dest = %key, size = source.size, "copied server-side");
        if let Some(stream) = state.stream.take() {
            // Empty: nothing of it was sent.
            self.abort_stream(&key, stream);
        }
        state.posix = posix;
        state.size = source.size;
        self.settle_uploaded(dest, &mut state, copied.etag.clone());
        state.copied_from = copied.etag.map(|etag| CopiedFrom {
            source: source.clone(),
            etag,
        });
        Ok(true)
    }
}
