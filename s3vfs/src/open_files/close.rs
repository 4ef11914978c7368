//! Closing: the last handle of a file uploads what is left or keeps it in the recovery
//! directory, and a shutdown uploads every open file within its timeout.

use super::{FileState, Kept, OpenFile, OpenFiles};
use crate::recovery::{Manifest, RecoveryDir};
use crate::sync::lock;
use crate::vfs::{Ino, ShutdownReport};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl OpenFiles {
    /// One handle of `ino` is gone. True when it was the last and the file has changes
    /// not in the store: the file stays registered (a new open shares it) until
    /// [`finish_last_close`](Self::finish_last_close) has uploaded or kept them. A clean
    /// file's last handle unregisters it at once.
    pub(crate) fn drop_file_handle(&self, ino: Ino, file: &Arc<OpenFile>) -> bool {
        // The count drops under the map's lock, as `open_file` raises it: otherwise an
        // open could take this file from the map between the last handle going and the
        // removal, and write into a file no later open finds (RELEASE comes after
        // close(2) returns, so it races with the next open).
        let mut map = lock(&self.by_ino);
        if file.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return false;
        }
        let pending = {
            let shadow = lock(&file.shadow);
            shadow.dirty_stat.is_some() && !shadow.unlinked
        };
        if !pending && map.get(&ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
            map.remove(&ino);
        }
        pending
    }

    /// Unregisters `file` if no handle took it meanwhile; whether it did.
    pub(super) fn unregister_if_unused(&self, ino: Ino, file: &Arc<OpenFile>) -> bool {
        let mut map = lock(&self.by_ino);
        if file.handles.load(Ordering::Acquire) != 0 {
            return false;
        }
        if map.get(&ino).is_some_and(|f| Arc::ptr_eq(f, file)) {
            map.remove(&ino);
        }
        true
    }

    /// The last handle of a file with unsaved changes is gone (pages of a shared mapping
    /// written back after close, or a close whose upload failed): changes made since the
    /// last upload attempt are uploaded; what was not, or fails now, is kept in the
    /// recovery directory. Nothing is discarded.
    pub(crate) async fn finish_last_close(&self, ino: Ino, file: &Arc<OpenFile>) {
        // Changes whose upload already failed (the close said so) are kept as they are;
        // changes made since the last flush (mmap write-back) are uploaded first.
        let failed_before = file.state.lock().await.upload_failed.clone();
        let result = match failed_before {
            Some(why) => Err(why),
            None => self.upload(file).await.map_err(|e| e.to_string()),
        };
        if !self.unregister_if_unused(ino, file) {
            // Opened again meanwhile: the new handles own the changes now.
            return;
        }
        if let Err(why) = result {
            let mut state = file.state.lock().await;
            self.keep_unsaved(file, &mut state, &why);
        }
    }

    /// Without a runtime to upload on (a library handle dropped outside one): keep the
    /// unsaved changes in the recovery directory at once.
    pub(crate) fn keep_unsaved_now(&self, ino: Ino, file: &Arc<OpenFile>) {
        if !self.unregister_if_unused(ino, file) {
            return;
        }
        match file.state.try_lock() {
            Ok(mut state) => {
                self.keep_unsaved(
                    file,
                    &mut state,
                    "closed outside an async runtime: not uploaded",
                );
            }
            Err(_) => tracing::error!(key = %file.key(),
                "closed outside an async runtime while busy: its unsaved changes are lost"),
        }
    }

    /// Moves what `file` could not upload into the recovery directory and says so at
    /// ERROR with the place; if even that fails, says what is lost. Either way the file
    /// no longer counts as having unsaved changes (a later release does not keep them
    /// twice).
    pub(super) fn keep_unsaved(&self, file: &OpenFile, state: &mut FileState, error: &str) -> Kept {
        let (key, path) = (file.key(), file.path());
        if !state.dirty {
            return Kept::Nothing;
        }
        state.dirty = false;
        lock(&file.shadow).dirty_stat = None;
        if !state.staged_all {
            tracing::error!(key = %key, error,
                "closed with changes that could not be uploaded and were streamed past the staging cap: they are lost");
            return Kept::Lost;
        }
        let written: Vec<(u64, u64)> = state
            .written
            .split(0, state.size)
            .into_iter()
            .filter_map(|(s, e, w)| w.then_some((s, e)))
            .collect();
        let mut metadata = std::collections::BTreeMap::new();
        state.posix.write_to(&mut metadata);
        let manifest = Manifest::new(
            self.core.store.bucket(),
            &key,
            path.to_string(),
            state.base.as_ref().and_then(|b| b.etag.as_ref()),
            state.base_len,
            state.size,
            written.clone(),
            metadata,
            error.to_owned(),
        );
        let dir = self.core.config.recovery_dir();
        let kept = RecoveryDir::open(&dir).and_then(|recovery| {
            recovery.keep(&manifest, |out| {
                let Some(staging) = &state.staging else {
                    return Ok(());
                };
                let staged = lock(&staging.file);
                for &(s, e) in &written {
                    crate::recovery::copy_range(&staged, out, s, e, &dir)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Ok(())
            })
        });
        match kept {
            Ok(manifest_path) => {
                tracing::error!(key = %key, path = %path, error,
                    kept = %manifest_path.display(),
                    "closed with changes that could not be uploaded: they are kept in the recovery directory; `s3vfs recover` lists and re-uploads them");
                Kept::At(manifest_path)
            }
            Err(keep_error) => {
                tracing::error!(key = %key, path = %path, error, %keep_error,
                    "closed with changes that could not be uploaded, and the recovery directory could not keep them: they are lost");
                Kept::Lost
            }
        }
    }

    /// [`Vfs::shutdown`](crate::vfs::Vfs::shutdown): refuses new opens and writes, then
    /// uploads every open file with unsaved changes (`upload_concurrency` at once) until
    /// `timeout`; what is not uploaded by then is kept in the recovery directory.
    pub(crate) async fn shutdown_writes(&self, timeout: std::time::Duration) -> ShutdownReport {
        self.core.closing.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + timeout;
        let unsaved: Vec<Arc<OpenFile>> = self
            .all()
            .into_iter()
            .filter(|file| {
                let shadow = lock(&file.shadow);
                shadow.dirty_stat.is_some() && !shadow.unlinked
            })
            .collect();
        tracing::info!(
            files = unsaved.len(),
            ?timeout,
            "shutting down: uploading files with unsaved changes"
        );
        let outcomes: Vec<(String, Kept)> = futures::stream::iter(unsaved)
            .map(|file| async move {
                let path = file.path().to_string();
                let error = match tokio::time::timeout_at(deadline, self.upload(&file)).await {
                    Ok(Ok(())) => return (path, Kept::Nothing),
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("not uploaded within the shutdown timeout ({timeout:?})"),
                };
                // A writer still holding the file gets a moment; past it the file is
                // reported lost rather than the shutdown waiting without bound.
                let grace = std::time::Duration::from_secs(5);
                match tokio::time::timeout(grace, file.state.lock()).await {
                    Ok(mut state) => {
                        let kept = self.keep_unsaved(&file, &mut state, &error);
                        (path, kept)
                    }
                    Err(_) => {
                        tracing::error!(path, "busy at shutdown: its unsaved changes are lost");
                        (path, Kept::Lost)
                    }
                }
            })
            .buffer_unordered(self.core.config.upload_concurrency.max(1))
            .collect()
            .await;
        let mut report = ShutdownReport::default();
        for (path, kept) in outcomes {
            match kept {
                Kept::Nothing => report.uploaded.push(path),
                Kept::At(manifest) => report.kept.push((path, manifest)),
                Kept::Lost => report.lost.push(path),
            }
        }
        report
    }
}
