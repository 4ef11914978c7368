//! Server-side copy of one object, whatever its size.
//!
//! Up to the store's single-request limit (`max_single_put`, 5 GiB on S3) a copy is one
//! CopyObject. Above it, a multipart upload whose parts are UploadPartCopy ranges of the
//! source (parts of at least `min_part_size`, at most `max_parts` of them, copied
//! `upload_concurrency` at a time), completed with the destination's write condition.
//! UploadPartCopy cannot be pinned to a version, so the source is looked at (HEAD) before
//! and again before completing: if it changed meanwhile the upload is aborted and the copy
//! fails with a precondition failure — a copy never mixes two versions. Any failure aborts
//! the upload, so no parts are left behind.

use crate::core::Core;
use crate::store::{
    ByteRange, CompletedPart, CopyRequest, ETag, MetadataDirective, ObjectKey, ObjectMeta,
    PutOptions, PutResult, StoreError, StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use futures::{StreamExt, TryStreamExt};

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

/// The part size for copying `size` bytes in parts: at least `preferred` and the store's
/// minimum, and large enough that the parts fit in the store's part limit.
fn copy_part_size(size: u64, preferred: u64, min: u64, max: u64, max_parts: u32) -> u64 {
    let by_count = size.div_ceil(u64::from(max_parts.max(1)));
    preferred.max(min).max(by_count).min(max).max(1)
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
    /// storage class, with the mount's encryption.
    pub(crate) fn kept_options(&self, head: &ObjectMeta) -> PutOptions {
        PutOptions {
            user_metadata: head.user_metadata.clone(),
            content_type: head.content_type.clone(),
            storage_class: head.storage_class.clone(),
            sse: self.config.sse.clone(),
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
                    source: copy.source,
                    source_if_match: copy.source_etag,
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
        // Parts cannot be pinned to a version: pin the whole copy to the version seen now.
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
        let part_size = copy_part_size(
            head.size,
            self.config.write_part_size,
            caps.min_part_size,
            caps.max_part_size,
            caps.max_parts,
        );
        let upload = self.store.create_multipart(dest, options).await?;
        let _record = self.record_upload(dest, &upload);
        let result = self
            .copy_parts_and_complete(source, head, dest, &upload, part_size, condition)
            .await;
        if let Err(e) = &result {
            tracing::warn!(source = %source, dest = %dest, error = %e, "multipart copy failed; aborting it");
            if let Err(abort) = self.store.abort_multipart(dest, &upload).await {
                tracing::warn!(dest = %dest, upload = %upload.0, error = %abort,
                    "could not abort a failed multipart copy; a lifecycle rule will have to");
            }
        }
        result
    }

    async fn copy_parts_and_complete(
        &self,
        source: &ObjectKey,
        head: &ObjectMeta,
        dest: &ObjectKey,
        upload: &UploadId,
        part_size: u64,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        let ranges: Vec<(u32, ByteRange)> = (0..head.size)
            .step_by(usize::try_from(part_size).unwrap_or(usize::MAX))
            .zip(1u32..)
            .map(|(start, n)| (n, ByteRange::new(start, (start + part_size).min(head.size))))
            .collect();
        tracing::debug!(source = %source, dest = %dest, parts = ranges.len(), part_size,
            "copying in parts");
        let mut parts: Vec<CompletedPart> = futures::stream::iter(ranges)
            .map(|(n, range)| {
                self.store
                    .upload_part_copy(dest, upload, n, source, Some(range))
            })
            .buffer_unordered(self.config.upload_concurrency.max(1))
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number);
        let now = self.store.head(source).await?;
        if now.etag != head.etag {
            return Err(source_changed(source));
        }
        self.store
            .complete_multipart(dest, upload, parts, condition)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_respect_the_limits() {
        const MIB: u64 = 1024 * 1024;
        // The preferred size when it fits.
        assert_eq!(
            copy_part_size(100 * MIB, 8 * MIB, 5 * MIB, 5 * 1024 * MIB, 10_000),
            8 * MIB
        );
        // Never below the minimum.
        assert_eq!(
            copy_part_size(100 * MIB, MIB, 5 * MIB, 5 * 1024 * MIB, 10_000),
            5 * MIB
        );
        // Grown so that 5 TiB fits in 10,000 parts.
        let size = 5 * 1024 * 1024 * MIB;
        let part = copy_part_size(size, 8 * MIB, 5 * MIB, 5 * 1024 * MIB, 10_000);
        assert!(size.div_ceil(part) <= 10_000);
    }
}
