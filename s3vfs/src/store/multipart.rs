//! One multipart upload: create, parts, complete — and abort when it is dropped
//! unfinished, so no failure path leaves parts behind to accumulate cost.
//!
//! Every multipart upload of the crate goes through [`MultipartUpload`]: a file streamed
//! as it is written, a staged file (changed parts uploaded, unchanged ones copied from the
//! old version), a server-side copy above the single-request limit, and a re-upload from
//! the recovery directory. Callers choose how many parts run at once (a stream spawns
//! them, the others run them as a buffered stream); the part numbers are checked against
//! the store's limit before any part goes up.
//!
//! Part sizes come from one of two rules: [`part_size`] for an object of known size (the
//! smallest size at least the preferred one that fits the store's part limit), and
//! [`stream_part_size`] for one whose size is not known while it is sent (the preferred
//! size, doubling every [`PARTS_PER_SIZE_STEP`] parts, so that 5 TiB fits in 10,000
//! parts).

use super::{
    Backend, ByteRange, Capabilities, CompletedPart, CopySource, ObjectKey, PutOptions, PutResult,
    StoreError, StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;

/// Parts of an upload of unknown size keep one size for this many parts, then double.
pub const PARTS_PER_SIZE_STEP: u32 = 1000;

/// The part size for an object of `size` bytes: `preferred`, at least the store's
/// minimum, grown so the object fits in the store's part limit. An error when even the
/// largest parts cannot hold it.
pub fn part_size(caps: &Capabilities, preferred: u64, size: u64) -> StoreResult<u64> {
    let by_count = size.div_ceil(u64::from(caps.max_parts.max(1)));
    let part = preferred.max(caps.min_part_size).max(by_count).max(1);
    if part > caps.max_part_size {
        return Err(StoreError::new(
            StoreErrorKind::InvalidRequest,
            format!(
                "{size} bytes do not fit in {} parts of at most {} bytes",
                caps.max_parts, caps.max_part_size
            ),
        ));
    }
    Ok(part)
}

/// The size of part `number` (1-based) of an upload whose total size is not known:
/// `preferred` (at least the store's minimum), doubled every [`PARTS_PER_SIZE_STEP`]
/// parts, at most the store's largest part.
pub fn stream_part_size(caps: &Capabilities, preferred: u64, number: u32) -> u64 {
    let base = preferred.max(caps.min_part_size).max(1);
    let steps = (number.saturating_sub(1) / PARTS_PER_SIZE_STEP).min(20);
    (base << steps).min(caps.max_part_size)
}

/// The parts of an object of `size` bytes cut in parts of `part_size` (the last one
/// shorter): each part's number (from 1) and byte range. No part for an empty object.
pub fn part_ranges(size: u64, part_size: u64) -> impl Iterator<Item = (u32, ByteRange)> {
    let part_size = part_size.max(1);
    (0..size.div_ceil(part_size)).map(move |i| {
        let start = i * part_size;
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        (number, ByteRange::new(start, (start + part_size).min(size)))
    })
}

/// Where the bytes of one part come from.
#[derive(Clone, Debug)]
pub enum PartSource {
    /// The bytes themselves (UploadPart).
    Bytes(Bytes),
    /// A range of an object, copied server-side (UploadPartCopy).
    Copy {
        /// The object copied from (in this bucket or another of the same endpoint).
        source: CopySource,
        /// The bytes of it.
        range: ByteRange,
    },
}

/// A multipart upload under way. Dropping it before [`complete`](Self::complete) aborts
/// it in the background.
#[derive(Debug)]
pub struct MultipartUpload {
    store: Arc<dyn Backend>,
    key: ObjectKey,
    id: Option<UploadId>,
    /// Whether dropping it unfinished aborts it (not when a journal keeps it for a resume).
    abort_on_drop: bool,
}

impl MultipartUpload {
    /// CreateMultipartUpload of `key` with `options` (their condition is ignored: the
    /// completion takes it).
    pub async fn begin(
        store: Arc<dyn Backend>,
        key: ObjectKey,
        options: PutOptions,
    ) -> StoreResult<Self> {
        let id = store.create_multipart(&key, options).await?;
        Ok(Self::resume(store, key, id))
    }

    /// The upload `id` of `key`, created earlier (by this process, or by one whose journal
    /// recorded it).
    pub fn resume(store: Arc<dyn Backend>, key: ObjectKey, id: UploadId) -> Self {
        Self {
            store,
            key,
            id: Some(id),
            abort_on_drop: true,
        }
    }

    /// Dropping the upload unfinished leaves it open (a journal records it, so that a later
    /// run resumes it or aborts it).
    pub fn keep_on_drop(&mut self) {
        self.abort_on_drop = false;
    }

    /// Marks the upload completed by the caller (with its own CompleteMultipartUpload
    /// request): dropping it aborts nothing.
    pub fn completed(mut self) {
        self.id = None;
    }

    /// The key uploaded to.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The upload's id (for a record that outlives a crash).
    pub fn id(&self) -> Option<&UploadId> {
        self.id.as_ref()
    }

    /// The request that uploads part `number` (1-based) from `source`. It owns what it
    /// needs, so callers may spawn it or run several at once; numbers outside the store's
    /// part limit are refused without a request.
    pub fn part(
        &self,
        number: u32,
        source: PartSource,
    ) -> impl Future<Output = StoreResult<CompletedPart>> + Send + 'static {
        let store = Arc::clone(&self.store);
        let key = self.key.clone();
        let id = self.upload_id();
        async move {
            let id = id?;
            let max = store.capabilities().max_parts;
            if number == 0 || number > max {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidRequest,
                    format!("part {number} is outside 1..={max}"),
                )
                .with_key(key.as_str()));
            }
            match source {
                PartSource::Bytes(body) => store.upload_part(&key, &id, number, body).await,
                PartSource::Copy { source, range } => {
                    store
                        .upload_part_copy(&key, &id, number, &source, Some(range))
                        .await
                }
            }
        }
    }

    /// Completes the upload with `parts` (in any order), under `condition`; on failure
    /// the upload is aborted.
    pub async fn complete(
        mut self,
        mut parts: Vec<CompletedPart>,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        let id = self.upload_id()?;
        parts.sort_by_key(|p| p.part_number);
        let done = self
            .store
            .complete_multipart(&self.key, &id, parts, condition)
            .await?;
        self.id = None;
        Ok(done)
    }

    /// Aborts the upload and waits for the answer; a failure is logged (a lifecycle rule
    /// or `s3vfs recover --abort-stale` has to remove the parts then).
    pub async fn abort(mut self) {
        if let Some(id) = self.id.take() {
            if let Err(err) = self.store.abort_multipart(&self.key, &id).await {
                tracing::warn!(key = %self.key, upload = %id.0, error = %err,
                    "could not abort a multipart upload; its parts stay until it is aborted");
            }
        }
    }

    fn upload_id(&self) -> StoreResult<UploadId> {
        self.id.clone().ok_or_else(|| {
            StoreError::new(StoreErrorKind::Other, "the multipart upload is finished")
                .with_key(self.key.as_str())
        })
    }
}

impl Drop for MultipartUpload {
    fn drop(&mut self) {
        if !self.abort_on_drop {
            return;
        }
        if let Some(id) = self.id.take() {
            abort_in_background(&self.store, &self.key, id);
        }
    }
}

/// Aborts upload `id` of `key` on the current runtime, without waiting (for `Drop`s); a
/// failure is logged, and so is the lack of a runtime.
fn abort_in_background(store: &Arc<dyn Backend>, key: &ObjectKey, id: UploadId) {
    let store = Arc::clone(store);
    let key = key.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(err) = store.abort_multipart(&key, &id).await {
                    tracing::warn!(key = %key, error = %err, "abort of a multipart upload failed");
                }
            });
        }
        Err(_) => tracing::warn!(key = %key, "multipart upload left open: no runtime to abort it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parts_grow_to_fit_the_part_limit_and_refuse_what_cannot_fit() {
        let caps = Capabilities::default();
        assert_eq!(part_size(&caps, 8 * MIB, 100 * MIB).unwrap(), 8 * MIB);
        assert_eq!(
            part_size(&caps, MIB, 100 * MIB).unwrap(),
            5 * MIB,
            "S3's minimum"
        );
        let five_tib = 5u64 << 40;
        let part = part_size(&caps, 8 * MIB, five_tib).unwrap();
        assert!(five_tib.div_ceil(part) <= 10_000 && part <= caps.max_part_size);
        assert!(part_size(&caps, 8 * MIB, 1 << 62).is_err());
    }

    #[test]
    fn part_ranges_cover_the_object_once_in_order() {
        let ranges: Vec<_> = part_ranges(10, 4).collect();
        assert_eq!(
            ranges,
            [
                (1, ByteRange::new(0, 4)),
                (2, ByteRange::new(4, 8)),
                (3, ByteRange::new(8, 10))
            ]
        );
        assert_eq!(part_ranges(8, 4).count(), 2);
        assert_eq!(part_ranges(0, 4).count(), 0);
    }

    #[test]
    fn stream_parts_double_every_thousand_and_reach_five_tib() {
        let caps = Capabilities::default();
        assert_eq!(stream_part_size(&caps, 8 * MIB, 1), 8 * MIB);
        assert_eq!(stream_part_size(&caps, 8 * MIB, 1000), 8 * MIB);
        assert_eq!(stream_part_size(&caps, 8 * MIB, 1001), 16 * MIB);
        assert_eq!(stream_part_size(&caps, MIB, 1), 5 * MIB, "S3's minimum");
        let total: u64 = (1..=caps.max_parts)
            .map(|n| stream_part_size(&caps, 8 * MIB, n))
            .sum();
        assert!(total >= 5u64 << 40, "{total} bytes in 10,000 parts");
        assert!(stream_part_size(&caps, 8 * MIB, u32::MAX) <= caps.max_part_size);
    }
}
