//! Server-side copy of one object, whatever its size.
//!
//! Up to the store's single-request limit (`max_single_put`, 5 GiB on S3) a copy is one
//! CopyObject. Above it, a multipart upload whose parts are UploadPartCopy ranges of the
//! source (parts of at least `min_part_size`, at most `max_parts` of them, copied
//! `upload_concurrency` at a time), completed with the destination's write condition.
//! The source is looked at (HEAD) before, every part is pinned to the ETag seen then
//! (`x-amz-copy-source-if-match`), and the source is looked at again before completing, for
//! servers that ignore the pin on UploadPartCopy: if it changed meanwhile the upload is
//! aborted and the copy fails with a precondition failure — a copy never mixes two
//! versions. Any failure aborts the upload, so no parts are left behind.

use crate::core::Core;
use crate::store::multipart::{self, MultipartUpload, PartSource};
use crate::store::{
    ByteRange, CompletedPart, CopyRequest, CopySource, ETag, MetadataDirective, ObjectKey,
    ObjectMeta, PutOptions, PutResult, StoreError, StoreErrorKind, StoreResult, WriteCondition,
};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

/// One server-side copy.
#[derive(Clone, Debug)]
pub(crate) struct ObjectCopy {
    /// Source key.
    pub(crate) source: ObjectKey,
    /// Fail unless the source still has this ETag.
    pub(crate) source_etag: Option<ETag>,
    /// Size of the source in bytes (chooses between CopyObject and a multipart copy).
    pub(crate) size: u64,
    /// Destination key (may be the source, with `Replace` metadata).
    pub(crate) dest: ObjectKey,
    /// Keep the source's metadata, or replace it.
    pub(crate) metadata: MetadataDirective,
    /// Condition on the destination.
    pub(crate) condition: WriteCondition,
}

fn source_changed(source: &ObjectKey) -> StoreError {
    StoreError::new(
        StoreErrorKind::PreconditionFailed,
        "the copy source changed while it was being copied",
    )
    .with_key(source.as_str())
}

impl Core {
    /// Options that recreate `head`'s metadata on a copy: user metadata, content type and
    /// storage class, with the mount's encryption (and no tags: a CopyObject keeps the
    /// source's).
    pub(crate) fn kept_options(&self, head: &ObjectMeta) -> PutOptions {
        PutOptions {
            user_metadata: head.user_metadata.clone(),
            content_type: head.content_type.clone(),
            storage_class: head.storage_class.clone(),
            sse: self.config.sse.clone(),
            tags: Default::default(),
            condition: WriteCondition::None,
        }
    }

    /// Copies one object server-side (see the module docs).
    pub(crate) async fn copy_object(&self, copy: ObjectCopy) -> StoreResult<PutResult> {
        let caps = self.store.capabilities();
        if copy.size <= caps.max_single_put {
            return self
                .store
                .copy(CopyRequest {
                    source: CopySource::new(copy.source).pinned(copy.source_etag),
                    dest: copy.dest,
                    metadata: copy.metadata,
                    condition: copy.condition,
                })
                .await;
        }
        if !caps.upload_part_copy {
            tracing::warn!(key = %copy.source, size = copy.size,
                "object too large for one CopyObject and the store has no UploadPartCopy");
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!(
                    "{} bytes is more than one CopyObject takes ({}) and the store cannot copy parts",
                    copy.size, caps.max_single_put
                ),
            )
            .with_key(copy.source.as_str()));
        }
        // Pin the whole copy to the version seen now.
        let head = self.store.head(&copy.source).await?;
        if copy.source_etag.is_some() && head.etag != copy.source_etag {
            return Err(source_changed(&copy.source));
        }
        let options = match copy.metadata {
            MetadataDirective::Replace(options) => options,
            MetadataDirective::Copy => self.kept_options(&head),
        };
        self.copy_in_parts(&copy.source, &head, &copy.dest, options, copy.condition)
            .await
    }

    async fn copy_in_parts(
        &self,
        source: &ObjectKey,
        head: &ObjectMeta,
        dest: &ObjectKey,
        options: PutOptions,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        let caps = self.store.capabilities();
        let part_size = multipart::part_size(&caps, self.config.write_part_size, head.size)?;
        let upload = MultipartUpload::begin(Arc::clone(&self.store), dest.clone(), options).await?;
        let _record = upload.id().and_then(|id| self.record_upload(dest, id));
        let ranges: Vec<(u32, ByteRange)> = multipart::part_ranges(head.size, part_size).collect();
        tracing::debug!(source = %source, dest = %dest, parts = ranges.len(), part_size,
            "copying in parts");
        let copied: StoreResult<Vec<CompletedPart>> = futures::stream::iter(ranges)
            .map(|(n, range)| {
                upload.part(
                    n,
                    PartSource::Copy {
                        source: CopySource::new(source.clone()).pinned(head.etag.clone()),
                        range,
                    },
                )
            })
            .buffer_unordered(self.config.upload_concurrency.max(1))
            .try_collect()
            .await;
        // The source must still be the version seen before the copy began (some servers
        // ignore the pin on UploadPartCopy).
        let unchanged = match copied {
            Ok(parts) => match self.store.head(source).await {
                Ok(now) if now.etag == head.etag => Ok(parts),
                Ok(_) => Err(source_changed(source)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let parts = match unchanged {
            Ok(parts) => parts,
            Err(e) => {
                tracing::warn!(source = %source, dest = %dest, error = %e, "multipart copy failed; aborting it");
                upload.abort().await;
                return Err(e);
            }
        };
        // A failed completion drops (aborts) the upload.
        upload.complete(parts, condition).await
    }
}
