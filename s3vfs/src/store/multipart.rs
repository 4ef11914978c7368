//! One multipart upload: create, parts, complete — and abort when it is dropped
//! unfinished, so no failure path leaves parts behind to accumulate cost.
//!
//! The part-count limit is checked before a part goes up, and [`part_size`] is the rule
//! that makes an object of a known size fit in it.

use super::{
    Capabilities, CompletedPart, ObjectKey, ObjectStore, PutOptions, PutResult, StoreError,
    StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use bytes::Bytes;
use std::sync::Arc;

/// The part size for an object of `size` bytes: `preferred`, at least the store's
/// minimum, grown so the object fits in the store's part limit, at most its largest part.
/// An error when even the largest parts cannot hold it.
pub fn part_size(caps: &Capabilities, preferred: u64, size: u64) -> StoreResult<u64> {
    let by_count = size.div_ceil(u64::from(caps.max_parts.max(1)));
    let part = preferred.max(caps.min_part_size).max(by_count).max(1);
    if part > caps.max_part_size {
        return Err(StoreError::new(
            StoreErrorKind::Other,
            format!(
                "{size} bytes do not fit in {} parts of at most {} bytes",
                caps.max_parts, caps.max_part_size
            ),
        ));
    }
    Ok(part)
}

/// A multipart upload under way. Dropping it before [`complete`](Self::complete) aborts
/// it in the background.
#[derive(Debug)]
pub struct MultipartUpload {
    store: Arc<dyn ObjectStore>,
    key: ObjectKey,
    id: Option<UploadId>,
    parts: Vec<CompletedPart>,
}

impl MultipartUpload {
    /// CreateMultipartUpload of `key` with `options` (their condition is ignored: the
    /// completion takes it).
    pub async fn begin(
        store: Arc<dyn ObjectStore>,
        key: ObjectKey,
        options: PutOptions,
    ) -> StoreResult<Self> {
        let id = store.create_multipart(&key, options).await?;
        Ok(Self {
            store,
            key,
            id: Some(id),
            parts: Vec::new(),
        })
    }

    /// Uploads part `number` (1-based), refusing numbers past the store's part limit.
    pub async fn upload_part(&mut self, number: u32, body: Bytes) -> StoreResult<()> {
        let max = self.store.capabilities().max_parts;
        if number == 0 || number > max {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("part {number} is outside 1..={max}"),
            )
            .with_key(self.key.as_str()));
        }
        let id = self.upload_id()?;
        let done = self.store.upload_part(&self.key, &id, number, body).await?;
        self.parts.push(done);
        Ok(())
    }

    /// Completes the upload with the parts uploaded, under `condition`; on failure the
    /// upload is aborted.
    pub async fn complete(mut self, condition: WriteCondition) -> StoreResult<PutResult> {
        let id = self.upload_id()?;
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.part_number);
        let done = self
            .store
            .complete_multipart(&self.key, &id, parts, condition)
            .await?;
        self.id = None;
        Ok(done)
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
        if let Some(id) = self.id.take() {
            abort_in_background(&self.store, &self.key, id);
        }
    }
}

/// Aborts upload `id` of `key` on the current runtime, without waiting (for `Drop`s); a
/// failure is logged, and so is the lack of a runtime.
pub(crate) fn abort_in_background(store: &Arc<dyn ObjectStore>, key: &ObjectKey, id: UploadId) {
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

    #[test]
    fn parts_grow_to_fit_the_part_limit_and_refuse_what_cannot_fit() {
        let caps = Capabilities::default();
        let mib = 1024 * 1024;
        assert_eq!(part_size(&caps, 8 * mib, 100 * mib).unwrap(), 8 * mib);
        assert_eq!(
            part_size(&caps, mib, 100 * mib).unwrap(),
            5 * mib,
            "S3's minimum"
        );
        let five_tib = 5u64 << 40;
        let part = part_size(&caps, 8 * mib, five_tib).unwrap();
        assert!(five_tib.div_ceil(part) <= 10_000 && part <= caps.max_part_size);
        assert!(part_size(&caps, 8 * mib, 1 << 62).is_err());
    }
}
