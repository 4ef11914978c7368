//! Moving a whole directory: every key below `src/` is copied to `dst/`, and only when
//! all copies succeeded are the sources deleted.
//!
//! S3 has no atomic rename of a prefix, so the move is made safe instead of atomic:
//! - the keys are listed (all pages, no delimiter — hidden keys such as `src//x` move too)
//!   and copied `rename_concurrency` at a time, each only if its destination key is free;
//! - the marker is copied last (or, if the source had none, a `dst/` marker is created, so
//!   the moved directory exists even when empty);
//! - if any copy fails, nothing is deleted: the copies already made are removed again and
//!   the rename fails with `EIO`, the source tree intact;
//! - if deleting sources fails after every copy succeeded, both trees hold the data; the
//!   keys left at the old place are logged and the rename fails with `EIO`.
//!
//! Each failure logs exactly what is where. The listing is held in memory (about 200
//! bytes per key).

use super::{strict_path, Ops};
use crate::attrs::PosixMeta;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::{FsPath, MAX_KEY_LEN};
use crate::objects::copy::ObjectCopy;
use crate::open_files::Copies;
use crate::store::s3::MAX_DELETE_BATCH;
use crate::store::{
    ETag, ListRequest, ListedObject, MetadataDirective, ObjectKey, PageCursor, StoreError,
    StoreErrorKind, StoreResult, WriteCondition,
};
use crate::vfs::FileKind;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// Most keys named in one log line.
const LOGGED_KEYS: usize = 20;

/// One object to move.
#[derive(Clone, Debug)]
struct Move {
    source: ObjectKey,
    /// The version listed: the copy is pinned to it.
    etag: Option<ETag>,
    dest: ObjectKey,
    size: u64,
    storage_class: Option<String>,
}

/// How copying a batch went.
#[derive(Debug, Default)]
struct CopyOutcome {
    /// Destinations written.
    copied: Vec<ObjectKey>,
    /// For each destination written, the ETag copied and the ETag of the copy.
    copies: Copies,
    /// The first failure, if any.
    failure: Option<StoreError>,
    /// Copies that failed.
    failed: usize,
    /// Copies not started because an earlier one failed.
    skipped: usize,
}

fn first_keys(keys: &[ObjectKey]) -> Vec<&str> {
    keys.iter()
        .take(LOGGED_KEYS)
        .map(ObjectKey::as_str)
        .collect()
}

impl Ops<'_> {
    /// Moves directory `src` (in `src_parent`) to `dst`, which is absent or an empty
    /// directory (`dest_existed`). See the module docs.
    pub(super) async fn move_tree(
        &self,
        src_parent: &FsPath,
        src: &FsPath,
        dst: &FsPath,
        dest_existed: bool,
    ) -> VfsResult<()> {
        let src_prefix = self.core.ns.dir_prefix(src);
        let dst_prefix = self.core.ns.dir_prefix(dst);
        // Open files with unsaved writes are uploaded first, so the copies carry them.
        self.open_files.sync_below(src).await?;
        // From the listing until open files follow the new names, no upload may land
        // below either name: one on a source after its copy would be deleted with it.
        let _names = self
            .core
            .names
            .for_rename(&[(src.clone(), true), (dst.clone(), true)])
            .await;
        let objects = self
            .list_tree(&src_prefix)
            .await
            .map_err(|e| VfsError::from_store(src.as_str(), e))?;
        if objects.is_empty() {
            if self.core.local_dirs.get(src).is_some() {
                // Only this file system knows it: nothing to copy.
                self.keep_directory(src_parent).await?;
                self.move_local_dirs(src, dst);
                self.core.meta.forget_below(src);
                self.core.meta.put_missing(src);
                self.core.meta.invalidate(dst);
                self.open_files
                    .note_renamed(src, dst, &Copies::default())
                    .await;
                return Ok(());
            }
            self.core.meta.put_missing(src);
            return Err(VfsError::NotFound(src.to_string()));
        }
        let mut moves = Vec::with_capacity(objects.len());
        let mut marker = None;
        for object in objects {
            let Some(rest) = object.key.as_str().strip_prefix(&src_prefix) else {
                continue;
            };
            let dest = format!("{dst_prefix}{rest}");
            if dest.len() > MAX_KEY_LEN {
                tracing::warn!(src = %src, dst = %dst, key = %object.key,
                    "rename refused: a key would be longer than 1024 bytes at the new place");
                return Err(VfsError::NameTooLong(format!("{dst}/{rest}")));
            }
            let is_marker = rest.is_empty();
            let item = Move {
                etag: object.etag,
                dest: ObjectKey::new(dest),
                size: object.size,
                storage_class: object.storage_class,
                source: object.key,
            };
            if is_marker {
                marker = Some(item);
            } else {
                moves.push(item);
            }
        }
        if !dst.is_within(src_parent) {
            self.keep_directory(src_parent).await?;
        }

        // The marker carries the directory's mode, owner and mtime to the new place; what
        // this mount read of it stays known there (a listing cannot tell it).
        let moved_stat = marker.as_ref().and(
            self.core
                .meta
                .get_any(src)
                .filter(|stat| stat.kind == FileKind::Directory && stat.from_head),
        );
        let total = moves.len() + usize::from(marker.is_some());
        let mut outcome = self.copy_all(&moves).await;
        if outcome.failure.is_none() {
            if let Err(e) = self.place_marker(marker.as_ref(), dst, dest_existed).await {
                outcome.failed += 1;
                outcome.failure = Some(e);
            }
        }
        if let Some(error) = outcome.failure.take() {
            let left = self.delete_keys(outcome.copied.clone()).await;
            let left_keys: Vec<ObjectKey> = left.into_iter().map(|(k, _)| k).collect();
            tracing::error!(
                src = %src_prefix, dst = %dst_prefix, objects = total,
                copied = outcome.copied.len(), failed = outcome.failed, not_started = outcome.skipped,
                removed_again = outcome.copied.len() - left_keys.len(),
                left_at_destination = left_keys.len(), left_keys = ?first_keys(&left_keys),
                error = %error,
                "directory rename failed while copying: no source was deleted, the source tree \
                 is intact; copies made were removed again except the ones listed"
            );
            self.forget_tree(dst, &dst_prefix, &moves, |m| &m.dest, false);
            return Err(VfsError::Io(error));
        }

        let sources: Vec<ObjectKey> = moves
            .iter()
            .chain(marker.iter())
            .map(|m| m.source.clone())
            .collect();
        let carried = self.carried_stats(src, &src_prefix, dst, &moves, &outcome.copies);
        let failures = self.delete_keys(sources).await;
        // Names below the old place that no moved key covers (a file created here and not
        // uploaded yet, a cached lookup) must not answer from what they were.
        self.core.meta.forget_below(src);
        self.forget_tree(src, &src_prefix, &moves, |m| &m.source, true);
        self.forget_tree(dst, &dst_prefix, &moves, |m| &m.dest, false);
        if let Some(stat) = moved_stat {
            self.core.meta.put(dst, stat);
        }
        for (path, stat) in carried {
            self.core.meta.put(&path, stat);
        }
        self.move_local_dirs(src, dst);
        self.open_files
            .note_renamed(src, dst, &outcome.copies)
            .await;
        if let Some((_, error)) = failures.first() {
            let left: Vec<ObjectKey> = failures.iter().map(|(k, _)| k.clone()).collect();
            tracing::error!(
                src = %src_prefix, dst = %dst_prefix, objects = total, copied = total,
                not_deleted = left.len(), left_at_source = ?first_keys(&left), error = %error,
                "directory rename copied everything but could not delete some sources: \
                 the new place is complete, the listed keys are still also at the old place"
            );
            self.core.meta.invalidate(src);
            return Err(VfsError::Io(error.clone()));
        }
        tracing::info!(src = %src_prefix, dst = %dst_prefix, objects = total, "directory renamed");
        Ok(())
    }

    /// Copies every move, `rename_concurrency` at a time; after a failure no further copy
    /// starts (the ones under way finish and are accounted for).
    async fn copy_all(&self, moves: &[Move]) -> CopyOutcome {
        let stop = AtomicBool::new(false);
        let stop = &stop;
        // Indices rather than `&Move`s: a closure over references would not be `Send` for
        // every lifetime, as the async trait needs.
        let results: Vec<Option<(usize, StoreResult<Option<ETag>>)>> =
            futures::stream::iter(0..moves.len())
                .map(|i| async move {
                    let item = &moves[i];
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    let condition = self.core.write_condition(None);
                    let result = self.copy_moved(item, condition).await;
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    Some((i, result))
                })
                .buffer_unordered(self.core.config.rename_concurrency.max(1))
                .collect()
                .await;
        let mut outcome = CopyOutcome::default();
        for result in results {
            match result {
                None => outcome.skipped += 1,
                Some((i, Ok(etag))) => {
                    let item = &moves[i];
                    outcome.copied.push(item.dest.clone());
                    outcome
                        .copies
                        .insert(item.dest.clone(), (item.etag.clone(), etag));
                }
                Some((_, Err(e))) => {
                    outcome.failed += 1;
                    outcome.failure.get_or_insert(e);
                }
            }
        }
        outcome
    }

    /// Copies one object to its new key, pinned to the version listed, keeping its
    /// metadata and storage class; the copy's ETag.
    async fn copy_moved(
        &self,
        item: &Move,
        condition: WriteCondition,
    ) -> StoreResult<Option<ETag>> {
        let caps = self.core.store.capabilities();
        let metadata = if item.storage_class.is_some() && item.size <= caps.max_single_put {
            // COPY would reset the storage class to STANDARD.
            let head = self.core.store.head(&item.source).await?;
            MetadataDirective::Replace(self.core.kept_options(&head))
        } else {
            MetadataDirective::Copy
        };
        self.core
            .copy_object(ObjectCopy {
                source: item.source.clone(),
                source_etag: item.etag.clone(),
                size: item.size,
                dest: item.dest.clone(),
                metadata,
                condition,
            })
            .await
            .map(|done| done.etag)
    }

    /// Gives the moved directory its marker: the source's, or a new empty one when the
    /// source had none and nothing exists at `dst` yet.
    async fn place_marker(
        &self,
        marker: Option<&Move>,
        dst: &FsPath,
        dest_existed: bool,
    ) -> StoreResult<()> {
        // Over an existing (empty) directory the old marker is simply replaced.
        let condition = if dest_existed {
            WriteCondition::None
        } else {
            self.core.write_condition(None)
        };
        match marker {
            Some(item) => self.copy_moved(item, condition).await.map(|_| ()),
            None if dest_existed => Ok(()),
            // The moved keys imply the directory.
            None if !self.core.config.directory_markers => Ok(()),
            None => {
                let key = ObjectKey::new(self.core.ns.dir_prefix(dst));
                let mut options = self.core.new_object_options(PosixMeta::default());
                options.condition = condition;
                match self.core.store.put(&key, Bytes::new(), options).await {
                    Err(e) if e.kind == StoreErrorKind::PreconditionFailed => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        }
    }

    /// Moves the directories only this file system knows from below `src` to below `dst`
    /// (a directory replaced at `dst` is gone).
    fn move_local_dirs(&self, src: &FsPath, dst: &FsPath) {
        self.core.local_dirs.remove(dst);
        self.core.local_dirs.move_tree(src, dst);
    }

    /// Every key below `prefix`, all pages.
    pub(super) async fn list_tree(&self, prefix: &str) -> StoreResult<Vec<ListedObject>> {
        let mut objects = Vec::new();
        let mut token = None;
        let mut cursor = PageCursor::objects(prefix);
        loop {
            let page = self
                .core
                .store
                .list(ListRequest {
                    prefix: prefix.to_owned(),
                    delimiter: None,
                    continuation_token: token,
                    max_keys: Some(self.core.config.list_page_size),
                    start_after: None,
                })
                .await?;
            token = cursor.next_page(&page)?;
            objects.extend(page.objects);
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    /// Deletes `keys` (DeleteObjects batches of 1000 when the store has it, else one by
    /// one), `rename_concurrency` requests at a time. Returns the keys not deleted.
    pub(super) async fn delete_keys(&self, keys: Vec<ObjectKey>) -> Vec<(ObjectKey, StoreError)> {
        let in_flight = self.core.config.rename_concurrency.max(1);
        let failures: Vec<Vec<(ObjectKey, StoreError)>> =
            if self.core.store.capabilities().delete_many {
                let batches: Vec<Vec<ObjectKey>> =
                    keys.chunks(MAX_DELETE_BATCH).map(<[_]>::to_vec).collect();
                futures::stream::iter(batches)
                    .map(|batch| async move {
                        match self.core.store.delete_many(batch.clone()).await {
                            Ok(failed) => failed.into_iter().map(|f| (f.key, f.error)).collect(),
                            Err(e) => batch.into_iter().map(|k| (k, e.clone())).collect(),
                        }
                    })
                    .buffer_unordered(in_flight)
                    .collect()
                    .await
            } else {
                futures::stream::iter(keys)
                    .map(|key| async move {
                        match self.core.store.delete(&key).await {
                            Ok(()) => Vec::new(),
                            Err(e) => vec![(key, e)],
                        }
                    })
                    .buffer_unordered(in_flight)
                    .collect()
                    .await
            };
        failures.into_iter().flatten().collect()
    }

    /// Drops cached knowledge of the tree at `root` (whose keys start with `prefix`) and
    /// of every path the moved keys (`key_of`) name in it; with `gone`, records them as
    /// missing instead.
    /// What this mount read (HEAD) of the moved files' metadata, at their new names with
    /// their copies' ETags: a listing of the new place cannot tell mode, owner or mtime,
    /// and the copy kept them. Only stats of the very version copied are carried.
    fn carried_stats(
        &self,
        src: &FsPath,
        src_prefix: &str,
        dst: &FsPath,
        moves: &[Move],
        copies: &Copies,
    ) -> Vec<(FsPath, Stat)> {
        moves
            .iter()
            .filter_map(|item| {
                let rest = item.source.as_str().strip_prefix(src_prefix)?;
                let old = strict_path(src, rest)?;
                let new = strict_path(dst, rest)?;
                let stat = self.core.meta.get_any(&old).filter(|stat| {
                    stat.from_head && stat.kind != FileKind::Directory && stat.etag == item.etag
                })?;
                let (_, etag) = copies.get(&item.dest)?;
                Some((
                    new,
                    Stat {
                        etag: etag.clone(),
                        ..stat
                    },
                ))
            })
            .collect()
    }

    fn forget_tree(
        &self,
        root: &FsPath,
        prefix: &str,
        moves: &[Move],
        key_of: impl Fn(&Move) -> &ObjectKey,
        gone: bool,
    ) {
        let mut paths = BTreeSet::new();
        for item in moves {
            let Some(rest) = key_of(item).as_str().strip_prefix(prefix) else {
                continue;
            };
            let mut path = strict_path(root, rest.trim_end_matches('/'));
            while let Some(p) = path {
                if &p == root || !paths.insert(p.clone()) {
                    break;
                }
                path = Some(p.parent());
            }
        }
        paths.insert(root.clone());
        for path in &paths {
            if gone {
                self.core.meta.put_missing(path);
            } else {
                self.core.meta.invalidate(path);
            }
        }
    }
}
