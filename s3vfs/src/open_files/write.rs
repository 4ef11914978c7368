//! Writing and truncating open files: bytes go to the staging file (and a stream, when
//! written sequentially), within the staging cap and the largest file S3 can hold.

use super::{FileState, OpenFile, OpenFiles, Staging};
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::sync::lock;
use crate::vfs::{Ino, OpenFlags};
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

impl OpenFiles {
    /// Writes `data` at `offset` (at the end for append handles); returns the byte count.
    pub(crate) async fn write_file(
        &self,
        file: &Arc<OpenFile>,
        flags: OpenFlags,
        offset: u64,
        data: Bytes,
    ) -> VfsResult<u32> {
        if !(flags.write || flags.append) {
            return Err(VfsError::BadHandle);
        }
        let len = data.len() as u64;
        let count = u32::try_from(data.len())
            .map_err(|_| VfsError::InvalidArgument("write larger than 4 GiB".to_owned()))?;
        self.core.check_not_closing("write")?;
        let mut state = file.state.lock().await;
        state.check_poisoned(&file.key())?;
        let offset = if flags.append { state.size } else { offset };
        let end = offset
            .checked_add(len)
            .ok_or_else(|| VfsError::FileTooLarge(format!("{}: offset overflows", file.path())))?;
        if len == 0 {
            return Ok(0);
        }
        self.check_file_size(&file.path(), end)?;
        // Keep streaming only for writes that continue exactly where the stream ends.
        let streams = match &state.stream {
            Some(stream) => offset == stream.sent + stream.buffer.len() as u64,
            None => !state.no_stream && offset == 0 && state.size == 0 && state.base_len == 0,
        };
        if !streams {
            if let Some(stream) = state.stream.take() {
                if !state.staged_all {
                    state.stream = Some(stream);
                    return Err(VfsError::Unsupported(format!(
                        "{}: out-of-order write after streaming past the staging cap",
                        file.path()
                    )));
                }
                self.abort_stream(&file.key(), stream);
            }
            state.no_stream = true;
        }
        let staging = self.staging_for(file, &mut state, offset, len)?;
        if streams {
            // The local copy and the stream's copy of the same bytes are independent, and
            // the first (a page-cache write) costs as much as the second: made at once.
            let copy = staging.map(|staging| {
                let (data, path) = (data.clone(), file.path());
                tokio::task::spawn_blocking(move || write_staging(&staging, &path, offset, &data))
            });
            let fed = self.feed_stream(file, &mut state, data).await;
            let copied = match copy {
                Some(task) => task.await.unwrap_or_else(|join| {
                    Err(VfsError::NoSpace(format!(
                        "{}: staging write did not finish: {join}",
                        file.path()
                    )))
                }),
                None => Ok(()),
            };
            if let Err(err) = fed {
                // The stream lost a part (or the bytes handed to it): it can never be
                // completed as written, and the writer must not be told otherwise later.
                state.poison(&file.key(), format!("a part of the upload failed: {err}"));
                return Err(err);
            }
            if let Err(err) = copied {
                // The bytes are in the stream: go on as past the staging cap.
                tracing::error!(path = %file.path(), error = %err,
                    "the local copy of a file written in order failed; streaming on without one");
                state.staging = None;
                state.staged_all = false;
            }
        } else if let Some(staging) = staging {
            write_staging(&staging, &file.path(), offset, &data)?;
        }
        state.written.insert(offset, end);
        state.size = state.size.max(end);
        state.dirty = true;
        state.upload_failed = None;
        state.posix.mtime = Some(SystemTime::now());
        state.attr_changes.mtime = None;
        self.mark_dirty(file, &state);
        Ok(count)
    }

    /// The staging file that `len` bytes written at `offset` go to, created if needed and
    /// charged to the staging cap; `None` if they are not staged (a file streamed past
    /// the cap). Past the cap a sequential writer goes on without staging; others fail.
    fn staging_for(
        &self,
        file: &OpenFile,
        state: &mut FileState,
        offset: u64,
        len: u64,
    ) -> VfsResult<Option<Arc<Mutex<std::fs::File>>>> {
        if !state.staged_all {
            return Ok(None);
        }
        let end = offset + len;
        if state.staging.is_none() {
            let dir = self
                .core
                .config
                .staging_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir);
            let file = tempfile::tempfile_in(&dir).map_err(|err| {
                tracing::error!(dir = %dir.display(), error = %err, "cannot create a staging file");
                VfsError::NoSpace(format!("staging file in {}: {err}", dir.display()))
            })?;
            state.staging = Some(Staging {
                file: Arc::new(Mutex::new(file)),
                charged: 0,
                used: Arc::clone(&self.staging_used),
            });
        }
        let Some(staging) = state.staging.as_mut() else {
            return Ok(None);
        };
        if end > staging.charged {
            let more = end - staging.charged;
            let used = self.staging_used.fetch_add(more, Ordering::AcqRel) + more;
            if used > self.core.config.staging_cap {
                self.staging_used.fetch_sub(more, Ordering::AcqRel);
                if state.stream.is_some() || (offset == 0 && state.size == 0 && !state.no_stream) {
                    // A sequential writer can go on without staging.
                    tracing::info!(path = %file.path(), "staging cap reached; streaming without a local copy");
                    state.staging = None;
                    state.staged_all = false;
                    return Ok(None);
                }
                tracing::error!(path = %file.path(), cap = self.core.config.staging_cap, "staging cap reached");
                return Err(VfsError::NoSpace(format!(
                    "{}: the staging area is full ({} bytes)",
                    file.path(),
                    self.core.config.staging_cap
                )));
            }
            staging.charged = end;
        }
        Ok(Some(Arc::clone(&staging.file)))
    }

    /// Refuses (`EFBIG`) a size past the mount's `max_file_size` or what the store can
    /// hold in one object, before anything is allocated or uploaded.
    pub(crate) fn check_file_size(&self, path: &FsPath, size: u64) -> VfsResult<()> {
        let caps = self.core.store.capabilities();
        let store_limit = caps.max_part_size.saturating_mul(u64::from(caps.max_parts));
        let limit = self.core.config.max_file_size.min(store_limit);
        if size > limit {
            tracing::warn!(path = %path, size, limit, "refused: the file would be larger than the largest object allowed");
            return Err(VfsError::FileTooLarge(format!(
                "{path}: {size} bytes is more than the largest file allowed ({limit} bytes)"
            )));
        }
        Ok(())
    }

    /// Sets the size of the open file `file` (a truncate through a handle): local, uploaded
    /// by the next flush.
    pub(crate) async fn truncate_open(&self, file: &Arc<OpenFile>, size: u64) -> Stat {
        let mut state = file.state.lock().await;
        if state.size != size {
            state.truncate(size, &file.key());
            return self.mark_dirty(file, &state);
        }
        self.stat_of_state(&state)
    }

    /// Sets the size of file `ino` at `path` (`stat`, a regular file) that no handle was
    /// given for, and uploads the result at once.
    pub(crate) async fn truncate_closed(
        &self,
        ino: Ino,
        path: &FsPath,
        stat: &Stat,
        size: u64,
    ) -> VfsResult<Stat> {
        let file = self.open_file(ino, path, Some(stat))?;
        let result = async {
            {
                let mut state = file.state.lock().await;
                if state.size == size {
                    return Ok(self.stat_of_state(&state));
                }
                state.truncate(size, &file.key());
                self.mark_dirty(&file, &state);
            }
            self.upload(&file).await?;
            Ok(self.current_stat(&file).await)
        }
        .await;
        if self.drop_file_handle(ino, &file) && self.unregister_if_unused(ino, &file) {
            // A refused truncate of a file nobody has open: the caller has the error and
            // the store the file as it was; there is nothing written to keep.
            tracing::debug!(path = %path, "refused truncate dropped");
        }
        result
    }
}

/// Writes `data` at `offset` of the staging file of `path`.
fn write_staging(
    staging: &Mutex<std::fs::File>,
    path: &FsPath,
    offset: u64,
    data: &[u8],
) -> VfsResult<()> {
    lock(staging).write_all_at(data, offset).map_err(|err| {
        tracing::error!(path = %path, error = %err, "staging file write failed");
        VfsError::NoSpace(format!("{path}: staging write: {err}"))
    })
}
