//! A GET body that resumes after a cut: the rest is fetched with a ranged GET pinned to
//! the object's ETag, so a dropped connection never shows up as a short read.

use crate::store::{ByteRange, ETag, ObjectKey, StoreError, StoreErrorKind, StoreResult};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use bytes::Bytes;
use tracing::warn;

use super::convert::parse_content_range;
use super::S3Store;
/// A GET body that resumes after a failure: on a body error or an early end it re-GETs the
/// missing range, pinned to the ETag, after a backoff. `failures` counts consecutive
/// attempts that brought no byte; at `max_attempts` the last error is returned.
pub(super) struct ResumableBody {
    pub(super) store: S3Store,
    pub(super) key: ObjectKey,
    /// The ETag every resumption must match; without one, no resumption is safe.
    pub(super) etag: Option<ETag>,
    /// The current response body, if a request is open.
    pub(super) body: Option<SdkByteStream>,
    /// Absolute offset in the object of the next byte `body` yields.
    pub(super) body_offset: u64,
    /// Absolute offset of the next byte the caller needs.
    pub(super) pos: u64,
    /// One past the last byte the caller needs.
    pub(super) end: u64,
    pub(super) failures: u32,
    pub(super) done: bool,
}

impl ResumableBody {
    pub(super) async fn next_chunk(&mut self) -> Option<Result<Bytes, StoreError>> {
        loop {
            if self.done || self.pos >= self.end {
                self.body = None;
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                match self.reopen().await {
                    Ok(()) => continue,
                    Err(e) => {
                        if let Some(e) = self.fail(e).await {
                            return Some(Err(e));
                        }
                        continue;
                    }
                }
            };
            let error = match body.try_next().await {
                Ok(Some(chunk)) => match self.take(chunk) {
                    Some(piece) => return Some(Ok(piece)),
                    None => continue,
                },
                Ok(None) => StoreError::new(
                    StoreErrorKind::Transient,
                    format!("body ended at byte {} of {}", self.pos, self.end),
                ),
                Err(e) => StoreError::new(
                    StoreErrorKind::Transient,
                    format!(
                        "body failed at byte {}: {}",
                        self.pos,
                        DisplayErrorContext(&e)
                    ),
                ),
            };
            self.body = None;
            if let Some(e) = self.fail(error.with_key(self.key.as_str())).await {
                return Some(Err(e));
            }
        }
    }

    /// The part of `chunk` (which starts at `body_offset`) that lies in `[pos, end)`.
    pub(super) fn take(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chunk_start = self.body_offset;
        let chunk_len = chunk.len() as u64;
        self.body_offset += chunk_len;
        let from = self.pos.saturating_sub(chunk_start);
        let to = self.end.min(self.body_offset).saturating_sub(chunk_start);
        if from >= to {
            return None;
        }
        // Both bounds are within the chunk, whose length is a usize.
        let piece = chunk.slice(from as usize..to as usize);
        self.pos += piece.len() as u64;
        self.failures = 0;
        Some(piece)
    }

    /// Records a failed attempt: gives up (returning the error) when the error is final or
    /// the attempts are used up, otherwise waits for the backoff and returns `None`.
    pub(super) async fn fail(&mut self, error: StoreError) -> Option<StoreError> {
        self.failures += 1;
        let policy = self.store.policy;
        if !error.is_retryable() || self.etag.is_none() || self.failures >= policy.max_attempts {
            warn!(op = "GetObject", key = %self.key, pos = self.pos, attempts = self.failures,
                "giving up on body: {error}");
            self.done = true;
            self.body = None;
            return Some(error);
        }
        let delay = policy.backoff(self.failures);
        warn!(op = "GetObject", key = %self.key, pos = self.pos, attempt = self.failures,
            ?delay, "resuming body after: {error}");
        tokio::time::sleep(delay).await;
        None
    }

    /// Re-GETs `[pos, end)` pinned to the ETag.
    pub(super) async fn reopen(&mut self) -> StoreResult<()> {
        let range = ByteRange::new(self.pos, self.end);
        let out = self
            .store
            .send_get(&self.key, Some(range), self.etag.as_ref())
            .await?;
        let start = match out.content_range() {
            Some(header) => parse_content_range(header).map(|(r, _)| r.start),
            // The store ignored the range: the body starts at byte 0.
            None => Some(0),
        };
        match start {
            Some(start) if start <= self.pos => {
                self.body_offset = start;
                self.body = Some(out.body);
                Ok(())
            }
            _ => Err(StoreError::new(
                StoreErrorKind::Other,
                format!("resumed GET answered {:?}", out.content_range()),
            )
            .with_key(self.key.as_str())),
        }
    }
}
