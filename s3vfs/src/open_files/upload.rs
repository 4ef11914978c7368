//! Uploading a file's local changes (flush, fsync, close): the upload options (kept
//! metadata of a replaced object), a finished stream, or a staged upload that copies the
//! unchanged ranges of the old object server-side.

use super::{Base, FileState, OpenFile, OpenFiles};
use crate::attrs::PosixMeta;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::name_locks::NameGuard;
use crate::namespace::FsPath;
use crate::ranges::RangeSet;
use crate::store::multipart::{self, MultipartUpload, PartSource};
use crate::store::{
    ByteRange, CompletedPart, CopySource, ETag, ObjectKey, PutOptions, StoreErrorKind,
    WriteCondition,
};
use crate::sync::lock;
use futures::StreamExt;
use std::sync::Arc;

impl OpenFiles {
    /// The options of an upload of `key`: a new file gets the mount's storage class,
    /// encryption and its attributes; a rewrite of an existing object keeps the object's
    /// metadata (mode, owner, xattrs, content type, storage class; a chmod made while the
    /// file was open included) and updates its mtime.
    pub(super) async fn upload_options(
        &self,
        key: &ObjectKey,
        state: &FileState,
    ) -> VfsResult<PutOptions> {
        self.upload_options_for(key, state.base.is_some(), state.posix, state.attr_changes)
            .await
    }

    pub(super) async fn upload_options_for(
        &self,
        key: &ObjectKey,
        rewrite: bool,
        posix: PosixMeta,
        changes: PosixMeta,
    ) -> VfsResult<PutOptions> {
        if !rewrite {
            return Ok(self.core.new_object_options(posix));
        }
        let head = match self.core.store.head(key).await {
            Ok(head) => head,
            // Deleted meanwhile: the conditional upload will say so.
            Err(e) if e.kind == StoreErrorKind::NotFound => {
                return Ok(self.core.new_object_options(posix))
            }
            Err(e) => return Err(VfsError::from_write(&self.core.path_of_key(key), e)),
        };
        let mut user_metadata = head.user_metadata;
        PosixMeta {
            mtime: posix.mtime,
            ..PosixMeta::default()
        }
        .write_to(&mut user_metadata);
        changes.write_to(&mut user_metadata);
        let storage_class = head
            .storage_class
            .filter(|c| c != "STANDARD" && !crate::store::storage_class::is_archived(Some(c)))
            .or_else(|| self.core.config.storage_class.clone());
        Ok(PutOptions {
            user_metadata,
            content_type: head.content_type,
            storage_class,
            sse: self.core.config.sse.clone(),
            tags: Default::default(),
            condition: WriteCondition::None,
        })
    }

    /// Holds `file`'s name for an upload (see [`NameLocks`](crate::name_locks)). The name
    /// is held before the state is locked (a rename holds names, then the state of the
    /// open files it moves), and looked at again once held: a rename that ran meanwhile
    /// gave the file another one.
    pub(super) async fn hold_name(&self, file: &OpenFile) -> NameGuard<'_> {
        loop {
            let path = file.path();
            let guard = self.core.names.for_upload(&path).await;
            if file.path() == path {
                return guard;
            }
        }
    }

    /// The condition the next upload of `key` must meet: `If-Match` of the version the
    /// file builds on, `If-None-Match: *` for a new file (see
    /// [`Core::write_condition`](crate::core::Core::write_condition)); none when the
    /// store gave the version no ETag.
    pub(super) fn upload_condition(&self, key: &ObjectKey, state: &FileState) -> WriteCondition {
        let expected = state.base.as_ref().and_then(|b| b.etag.clone());
        if state.base.is_some() && expected.is_none() && !self.core.config.last_writer_wins {
            tracing::warn!(key = %key, "the store gave no ETag: this overwrite cannot be conditional");
        }
        match (&state.base, &expected) {
            (Some(_), None) => WriteCondition::None,
            _ => self.core.write_condition(expected.as_ref()),
        }
    }

    /// Records that `file`'s content (`state.size` bytes) is now the object version `etag`
    /// in the store, after an upload or a server-side copy into it: clean, building on
    /// that version, shown with its size. Returns the file's path.
    pub(super) fn settle_uploaded(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        etag: Option<ETag>,
    ) -> FsPath {
        let path = file.path();
        state.base = Some(Base { etag: etag.clone() });
        state.base_len = state.size;
        state.written = RangeSet::new();
        state.staging = None;
        state.staged_all = true;
        state.dirty = false;
        state.upload_failed = None;
        // An empty file (e.g. flushed when a shell redirection or `dd` closed a duplicate
        // of the descriptor before writing) may still stream: writes from offset 0
        // replace it as a new sequential upload.
        state.no_stream = state.size != 0;
        state.attr_changes = PosixMeta::default();
        state.copied_from = None;
        let stat = Stat {
            etag: etag.clone(),
            ..self.stat_of_state(state)
        };
        {
            let mut shadow = lock(&file.shadow);
            shadow.dirty_stat = None;
            shadow.etag = etag;
            shadow.size = state.size;
        }
        self.core.meta.put(&path, stat);
        self.core.meta.forget_missing_ancestors(&path);
        path
    }

    /// Makes the file's local changes durable in the store (flush, fsync, close).
    pub(crate) async fn upload(&self, file: &Arc<OpenFile>) -> VfsResult<()> {
        let _name = self.hold_name(file).await;
        let mut state = file.state.lock().await;
        state.check_poisoned(&file.key())?;
        if !state.dirty {
            return Ok(());
        }
        if lock(&file.shadow).unlinked {
            if let Some(stream) = state.stream.take() {
                self.abort_stream(&file.key(), stream);
            }
            state.dirty = false;
            return Ok(());
        }
        let key = file.key();
        let condition = self.upload_condition(&key, &state);
        // Attributes changed after a streamed multipart upload began are not in its
        // metadata.
        let late_changes = state
            .stream
            .as_ref()
            .filter(|s| s.upload.is_some() && state.attr_changes != PosixMeta::default())
            .map(|_| state.attr_changes);
        let result = match state.stream.take() {
            Some(stream) if stream.sent + stream.buffer.len() as u64 == state.size => {
                self.finish_stream(&key, &state, stream, condition).await
            }
            Some(stream) => {
                self.abort_stream(&key, stream);
                self.upload_staged(file, &state, condition).await
            }
            None => self.upload_staged(file, &state, condition).await,
        };
        match result {
            Ok(etag) => {
                tracing::debug!(key = %key, size = state.size, "uploaded");
                let path = self.settle_uploaded(file, &mut state, etag);
                drop(state);
                if let Some(changes) = late_changes {
                    // The multipart upload's metadata was fixed when it began; attributes
                    // changed later are stored by one metadata rewrite.
                    self.rewrite_file_metadata(&path, |metadata, _| {
                        changes.write_to(metadata);
                        Ok(())
                    })
                    .await?;
                }
                Ok(())
            }
            Err(err) => {
                state.upload_failed = Some(err.to_string());
                if !state.staged_all {
                    // The streamed bytes exist nowhere else: the data is lost. Say so, and
                    // leave the file as it was in the store.
                    state.dirty = false;
                    state.poison(&key, format!(
                        "the upload failed ({err}) and the data written was streamed past the staging cap: it is lost"
                    ));
                    lock(&file.shadow).dirty_stat = None;
                } else {
                    // The stream is gone; what was written is all staged.
                    state.no_stream = true;
                }
                Err(err)
            }
        }
    }

    /// Uploads a staged file: one PUT when small, else a multipart upload that copies the
    /// unchanged ranges of the old object server-side.
    pub(super) async fn upload_staged(
        &self,
        file: &OpenFile,
        state: &FileState,
        condition: WriteCondition,
    ) -> VfsResult<Option<ETag>> {
        let path = file.path();
        let key = file.key();
        let options = self.upload_options(&key, state).await?;
        let caps = self.core.store.capabilities();
        let part_size = multipart::part_size(&caps, self.core.config.write_part_size, state.size)
            .map_err(|e| VfsError::FileTooLarge(format!("{path}: {e}")))?;
        if state.size <= part_size {
            let body = self.assemble(file, state, 0, state.size).await?;
            let options = PutOptions {
                condition,
                ..options
            };
            let done = self
                .core
                .store
                .put(&key, body, options)
                .await
                .map_err(|e| VfsError::from_write(&path, e))?;
            return Ok(done.etag);
        }
        // Server-side copies of old ranges are safe only when the completion is pinned to
        // the old version (If-Match): otherwise they could copy a newer object's bytes.
        let old_version = match &condition {
            WriteCondition::IfMatch(tag) if caps.upload_part_copy => Some(tag.clone()),
            _ => None,
        };
        let may_copy = old_version.is_some();
        let upload = MultipartUpload::begin(Arc::clone(&self.core.store), key.clone(), options)
            .await
            .map_err(|e| VfsError::from_write(&path, e))?;
        let _record = upload.id().and_then(|id| self.core.record_upload(&key, id));
        let ranges: Vec<(u32, u64, u64)> = multipart::part_ranges(state.size, part_size)
            .map(|(number, range)| (number, range.start, range.end))
            .collect();
        let results: Vec<Result<CompletedPart, VfsError>> = futures::stream::iter(ranges)
            .map(|(number, start, end)| {
                let (upload, key, path, old_version) = (&upload, &key, &path, &old_version);
                async move {
                    let reusable =
                        may_copy && end <= state.base_len && !state.written.overlaps(start, end);
                    let _reservation;
                    let source = if reusable {
                        PartSource::Copy {
                            source: CopySource::new(key.clone()).pinned(old_version.clone()),
                            range: ByteRange::new(start, end),
                        }
                    } else {
                        _reservation = self.core.budget.reserve(end - start).await;
                        PartSource::Bytes(self.assemble(file, state, start, end).await?)
                    };
                    upload
                        .part(number, source)
                        .await
                        .map_err(|e| VfsError::from_write(path, e))
                }
            })
            .buffered(self.core.config.upload_concurrency.max(1))
            .collect()
            .await;
        let parts = match results.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(parts) => parts,
            Err(err) => {
                upload.abort().await;
                return Err(err);
            }
        };
        // A failed completion drops (aborts) the upload.
        let completed = upload
            .complete(parts, condition)
            .await
            .map_err(|e| VfsError::from_write(&path, e))?;
        Ok(completed.etag)
    }
}
