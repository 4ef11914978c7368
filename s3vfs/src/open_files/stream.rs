//! The streamed upload of a file written sequentially: full parts go up as the writer
//! goes, at most `upload_concurrency` in flight; the last part and the completion at flush.

use super::{FileState, OpenFile, OpenFiles};
use crate::error::{VfsError, VfsResult};
use crate::recovery::UploadRecord;
use crate::store::multipart::{self, MultipartUpload, PartSource};
use crate::store::{
    CompletedPart, ETag, ObjectKey, PutOptions, StoreError, StoreErrorKind, WriteCondition,
};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// A stream's buffer is given its whole part size at once when it would grow past this.
const PART_BUFFER_PREALLOCATE_FROM: usize = 1024 * 1024;

/// A multipart upload fed as a new file is written sequentially. Dropping it aborts
/// the upload (in the background) unless it was completed.
pub(super) struct Stream {
    /// The multipart upload, from the first full part on (`None`: everything is still in
    /// the buffer, and a flush makes one PUT).
    pub(super) upload: Option<MultipartUpload>,
    /// Bytes handed to part uploads.
    pub(super) sent: u64,
    /// Bytes written but not yet sent (the start of the next part).
    pub(super) buffer: BytesMut,
    pub(super) next_part: u32,
    /// Part uploads under way (or finished and not looked at yet).
    pub(super) parts: Vec<JoinHandle<Result<CompletedPart, StoreError>>>,
    /// Parts known to be stored.
    pub(super) done: Vec<CompletedPart>,
    pub(super) permits: Arc<Semaphore>,
    /// The upload's record in the recovery directory, while it is under way.
    pub(super) record: Option<UploadRecord>,
}
impl Stream {
    /// Records the parts that have finished; the first failure among them, if any.
    pub(super) async fn reap_finished(&mut self) -> Result<(), StoreError> {
        let mut failure = None;
        let mut pending = Vec::with_capacity(self.parts.len());
        for part in std::mem::take(&mut self.parts) {
            if !part.is_finished() {
                pending.push(part);
                continue;
            }
            match part.await {
                Ok(Ok(done)) => self.done.push(done),
                Ok(Err(err)) => failure = failure.or(Some(err)),
                Err(join) => failure = failure.or(Some(part_task_error(&join))),
            }
        }
        self.parts = pending;
        failure.map_or(Ok(()), Err)
    }

    /// Waits for every part; all of them, in order, or the first failure.
    pub(super) async fn all_parts(&mut self) -> Result<Vec<CompletedPart>, StoreError> {
        let mut failure = None;
        for part in std::mem::take(&mut self.parts) {
            match part.await {
                Ok(Ok(done)) => self.done.push(done),
                Ok(Err(err)) => failure = failure.or(Some(err)),
                Err(join) => failure = failure.or(Some(part_task_error(&join))),
            }
        }
        if let Some(err) = failure {
            return Err(err);
        }
        Ok(std::mem::take(&mut self.done))
    }
}
fn part_task_error(join: &tokio::task::JoinError) -> StoreError {
    StoreError::new(StoreErrorKind::Other, format!("part upload task: {join}"))
}
impl Drop for Stream {
    fn drop(&mut self) {
        // The parts first; the upload itself is aborted when it is dropped next.
        for part in &self.parts {
            part.abort();
        }
    }
}

impl OpenFiles {
    /// The size of part `number` (1-based) of a streamed upload.
    fn stream_part_size(&self, number: u32) -> u64 {
        let caps = self.core.store.capabilities();
        multipart::stream_part_size(&caps, self.core.config.write_part_size, number)
    }

    /// Appends `data` to the stream, sending every full part.
    pub(super) async fn feed_stream(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        data: Bytes,
    ) -> VfsResult<()> {
        let key = file.key();
        let (rewrite, posix, changes) = (state.base.is_some(), state.posix, state.attr_changes);
        let stream = state.stream.get_or_insert_with(|| Stream {
            upload: None,
            sent: 0,
            buffer: BytesMut::new(),
            next_part: 1,
            parts: Vec::new(),
            done: Vec::new(),
            record: None,
            permits: Arc::new(Semaphore::new(self.core.config.upload_concurrency.max(1))),
        });
        let needed = stream.buffer.len() + data.len();
        if needed > stream.buffer.capacity() && needed >= PART_BUFFER_PREALLOCATE_FROM {
            // A large file: give the part its whole size once, rather than letting the
            // buffer double its way up (copying each time). Small files grow as needed.
            let part_size = self.stream_part_size(stream.next_part) as usize;
            stream
                .buffer
                .reserve(part_size.max(needed) - stream.buffer.len());
        }
        stream.buffer.extend_from_slice(&data);
        loop {
            let part_size = self.stream_part_size(stream.next_part);
            if (stream.buffer.len() as u64) < part_size {
                break;
            }
            if stream.next_part > self.core.store.capabilities().max_parts {
                return Err(VfsError::FileTooLarge(format!(
                    "{}: more parts than the store takes in one upload",
                    file.path()
                )));
            }
            let body = stream.buffer.split_to(part_size as usize).freeze();
            if stream.upload.is_none() {
                let options = self
                    .upload_options_for(&key, rewrite, posix, changes)
                    .await?;
                let upload =
                    MultipartUpload::begin(Arc::clone(&self.core.store), key.clone(), options)
                        .await
                        .map_err(|e| VfsError::from_write(&file.path(), e))?;
                stream.record = upload.id().and_then(|id| self.core.record_upload(&key, id));
                stream.upload = Some(upload);
            }
            let Some(upload) = stream.upload.as_ref() else {
                break;
            };
            // Back-pressure: wait while `upload_concurrency` parts are in flight.
            let permit = Arc::clone(&stream.permits)
                .acquire_owned()
                .await
                .map_err(|_| {
                    VfsError::Io(StoreError::new(StoreErrorKind::Other, "upload stopped"))
                })?;
            let reservation = self.core.budget.reserve(body.len() as u64).await;
            stream.sent += body.len() as u64;
            let part = upload.part(stream.next_part, PartSource::Bytes(body));
            stream.next_part += 1;
            stream.parts.push(tokio::spawn(async move {
                let result = part.await;
                drop(permit);
                drop(reservation);
                result
            }));
        }
        // A part that already failed fails the write now rather than at close.
        stream
            .reap_finished()
            .await
            .map_err(|e| VfsError::from_write(&file.path(), e))
    }

    /// Aborts a stream's multipart upload in the background.
    pub(super) fn abort_stream(&self, key: &ObjectKey, stream: Stream) {
        tracing::debug!(key = %key, "abandoning a streamed upload");
        drop(stream);
    }

    /// Sends the stream's last part and completes it (a single PUT if it never filled one).
    pub(super) async fn finish_stream(
        &self,
        key: &ObjectKey,
        state: &FileState,
        mut stream: Stream,
        condition: WriteCondition,
    ) -> VfsResult<Option<ETag>> {
        let path = self.core.path_of_key(key);
        let Some(upload) = stream.upload.take() else {
            let body = stream.buffer.split().freeze();
            let options = PutOptions {
                condition,
                ..self.upload_options(key, state).await?
            };
            let done = self
                .core
                .store
                .put(key, body, options)
                .await
                .map_err(|e| VfsError::from_write(&path, e))?;
            return Ok(done.etag);
        };
        if !stream.buffer.is_empty() {
            if stream.next_part > self.core.store.capabilities().max_parts {
                self.abort_stream(key, stream);
                return Err(VfsError::FileTooLarge(format!(
                    "{path}: more parts than the store takes in one upload"
                )));
            }
            let body = stream.buffer.split().freeze();
            let part = upload.part(stream.next_part, PartSource::Bytes(body));
            stream.parts.push(tokio::spawn(part));
        }
        let parts = match stream.all_parts().await {
            Ok(parts) => parts,
            Err(err) => {
                self.abort_stream(key, stream);
                return Err(VfsError::from_write(&path, err));
            }
        };
        // A failed completion drops (aborts) the upload.
        let done = upload
            .complete(parts, condition)
            .await
            .map_err(|e| VfsError::from_write(&path, e))?;
        Ok(done.etag)
    }
}
