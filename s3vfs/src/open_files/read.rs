//! Reading an open file: a clean file through the shared read-ahead of its version, a
//! file with local changes from its three sources (written bytes, the version it builds
//! on, zeros).

use super::{FileState, OpenFile, OpenFiles};
use crate::error::{VfsError, VfsResult};
use crate::read::Prefetcher;
use crate::store::{ByteRange, GetRequest, StoreError, StoreErrorKind};
use crate::sync::lock;
use bytes::{Bytes, BytesMut};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

impl OpenFiles {
    /// Reads through an open file: clean files through the shared read-ahead, files with
    /// local changes from their three sources.
    pub(crate) async fn read_file(
        &self,
        file: &Arc<OpenFile>,
        offset: u64,
        len: u64,
    ) -> VfsResult<Bytes> {
        Ok(crate::read::join(
            self.read_file_chunks(file, offset, len).await?,
        ))
    }

    /// Reads through an open file as a list of slices, without joining them.
    pub(crate) async fn read_file_chunks(
        &self,
        file: &Arc<OpenFile>,
        offset: u64,
        len: u64,
    ) -> VfsResult<Vec<Bytes>> {
        if lock(&file.shadow).dirty_stat.is_none() {
            if let Some(reader) = self.clean_reader(file) {
                return reader.read_chunks(offset, len).await;
            }
        }
        let state = file.state.lock().await;
        if !state.dirty {
            drop(state);
            let reader = self
                .clean_reader(file)
                .ok_or_else(|| VfsError::NotFound(file.path().to_string()))?;
            return reader.read_chunks(offset, len).await;
        }
        let end = offset.saturating_add(len).min(state.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        Ok(vec![self.assemble(file, &state, offset, end).await?])
    }

    /// A reader of the clean object version, shared by the file's handles.
    pub(super) fn clean_reader(&self, file: &OpenFile) -> Option<Arc<Prefetcher>> {
        let (key, path, etag, size) = {
            let shadow = lock(&file.shadow);
            if shadow.dirty_stat.is_some() {
                return None;
            }
            (
                shadow.key.clone(),
                shadow.path.clone(),
                shadow.etag.clone(),
                shadow.size,
            )
        };
        let mut reader = lock(&file.reader);
        if let Some(r) = reader.as_ref() {
            if r.etag() == etag.as_ref() && r.size() == size && r.key() == &key {
                return Some(Arc::clone(r));
            }
        }
        let fresh = Arc::new(Prefetcher::new(
            Arc::clone(&self.core.store),
            key,
            path.to_string(),
            etag,
            size,
            &self.core.config,
            self.core.budget.clone(),
        ));
        *reader = Some(Arc::clone(&fresh));
        Some(fresh)
    }

    /// The bytes `[start, end)` of a file with local changes.
    pub(super) async fn assemble(
        &self,
        file: &OpenFile,
        state: &FileState,
        start: u64,
        end: u64,
    ) -> VfsResult<Bytes> {
        let path = file.path();
        let len = usize::try_from(end - start).map_err(|_| {
            VfsError::FileTooLarge(format!("{path}: {} bytes at once", end - start))
        })?;
        if start >= state.base_len && !state.written.overlaps(start, end) {
            // Only zeros: never materialised.
            return Ok(crate::zeros::zeros(len));
        }
        // Zeroed memory is only touched where something is copied into it.
        let mut out = BytesMut::zeroed(len);
        for (s, e, written) in state.written.split(start, end) {
            let at = (s - start) as usize;
            if written {
                out[at..at + (e - s) as usize]
                    .copy_from_slice(&self.read_written(file, state, s, e)?);
                continue;
            }
            let base_end = e.min(state.base_len);
            if s < base_end {
                let etag = state.base.as_ref().and_then(|b| b.etag.clone());
                let request = GetRequest {
                    key: file.key(),
                    range: Some(ByteRange::new(s, base_end)),
                    if_match: etag,
                };
                let fetched = async { self.core.store.get(request).await?.collect().await };
                let bytes = fetched.await.map_err(|e| VfsError::from_write(&path, e))?;
                if bytes.len() as u64 != base_end - s {
                    return Err(VfsError::Io(StoreError::new(
                        StoreErrorKind::Other,
                        format!(
                            "{path}: the store sent {} bytes for a range of {}",
                            bytes.len(),
                            base_end - s
                        ),
                    )));
                }
                out[at..at + bytes.len()].copy_from_slice(&bytes);
            }
        }
        Ok(out.freeze())
    }

    /// Locally written bytes `[s, e)`: from the staging file, or from a stream's buffer.
    pub(super) fn read_written(
        &self,
        file: &OpenFile,
        state: &FileState,
        s: u64,
        e: u64,
    ) -> VfsResult<Vec<u8>> {
        if state.staged_all {
            if let Some(staging) = &state.staging {
                let mut buf = vec![0u8; (e - s) as usize];
                // Reads of the local staging file are page-cache copies: done in place.
                lock(&staging.file).read_exact_at(&mut buf, s).map_err(|err| {
                    tracing::error!(path = %file.path(), error = %err, "staging file read failed");
                    VfsError::Io(StoreError::new(
                        StoreErrorKind::Other,
                        format!("staging read: {err}"),
                    ))
                })?;
                return Ok(buf);
            }
        }
        if let Some(stream) = &state.stream {
            if s >= stream.sent && e <= stream.sent + stream.buffer.len() as u64 {
                let from = (s - stream.sent) as usize;
                return Ok(stream.buffer[from..from + (e - s) as usize].to_vec());
            }
        }
        Err(VfsError::Unsupported(format!(
            "{}: data already streamed to the store past the staging cap cannot be read back before close",
            file.path()
        )))
    }
}
