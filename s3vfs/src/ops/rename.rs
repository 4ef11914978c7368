//! rename: the checks POSIX asks for, and moving one file or symlink.
//!
//! S3 cannot rename: a file is moved by a server-side copy (metadata kept) and a delete of
//! the source. The copy is pinned to the source version seen (`x-amz-copy-source-if-match`)
//! and conditional on the destination (`If-None-Match: *` when the name was free,
//! `If-Match: <etag>` of the file being replaced), so a concurrent change by another
//! machine is never overwritten: the rename fails instead, after one retry with fresh
//! lookups in case only our cached view was old. Directories are moved by `tree`.

use super::Ops;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::objects::copy::ObjectCopy;
use crate::open_files::Copies;
use crate::store::{MetadataDirective, WriteCondition};
use crate::vfs::{FileKind, Ino};
use std::ffi::OsStr;
use std::time::SystemTime;

/// Lookups and checks before a rename may start.
enum Plan {
    /// Source and destination are the same existing name: nothing to do.
    Nothing,
    /// Move a file or symlink over `dest` (absent, or a file or symlink).
    File {
        source: Box<Stat>,
        dest: Option<Box<Stat>>,
    },
    /// Move a directory; `dest_existed` when it replaces an empty directory.
    Directory { dest_existed: bool },
}

impl Ops<'_> {
    /// Renames `name` in `parent` to `new_name` in `new_parent`; with `no_replace`
    /// (`RENAME_NOREPLACE`) an existing destination is `EEXIST`.
    pub(crate) async fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> VfsResult<()> {
        self.core.check_writable("rename")?;
        let (src_parent, src) = self.core.child_path(parent, name)?;
        let (dst_parent, dst) = self.core.child_path(new_parent, new_name)?;
        self.core.check_delete_allowed(&src)?;
        // A file with unsaved writes is uploaded first, so the copy carries them; only
        // once rename(2)'s rules allow the rename (a refused one uploads nothing).
        if self.open_files.open_file_stat(&src).is_some() {
            if let Plan::Nothing = self
                .plan_rename(&src, &dst_parent, &dst, no_replace)
                .await?
            {
                return Ok(());
            }
            self.open_files.sync_path(&src).await?;
        }
        let mut retried = false;
        loop {
            let plan = self
                .plan_rename(&src, &dst_parent, &dst, no_replace)
                .await?;
            let moved = match plan {
                Plan::Nothing => return Ok(()),
                Plan::Directory { dest_existed } => {
                    return self.move_tree(&src_parent, &src, &dst, dest_existed).await
                }
                Plan::File { source, dest } => {
                    self.move_file(&src_parent, &src, &source, &dst, dest.as_deref())
                        .await
                }
            };
            match moved {
                Err(VfsError::WriteConflict(_)) if !retried => {
                    // Perhaps only our cached view was old: look again, once.
                    retried = true;
                    self.core.meta.invalidate(&src);
                    self.core.meta.invalidate(&dst);
                }
                other => return other,
            }
        }
    }

    /// Looks both names up and applies rename(2)'s rules.
    async fn plan_rename(
        &self,
        src: &FsPath,
        dst_parent: &FsPath,
        dst: &FsPath,
        no_replace: bool,
    ) -> VfsResult<Plan> {
        let source = self.stat_path(src).await?;
        if src == dst {
            return Ok(Plan::Nothing);
        }
        let is_dir = source.kind == FileKind::Directory;
        if is_dir && dst.is_within(src) {
            tracing::debug!(src = %src, dst = %dst, "rename refused: a directory into itself");
            return Err(VfsError::InvalidArgument(format!(
                "cannot move {src} into its own subdirectory {dst}"
            )));
        }
        self.require_directory(dst_parent).await?;
        let dest = self.stat_optional(dst).await?;
        if let Some(existing) = &dest {
            if no_replace {
                return Err(VfsError::Exists(dst.to_string()));
            }
            match (is_dir, existing.kind == FileKind::Directory) {
                (false, true) => return Err(VfsError::IsADirectory(dst.to_string())),
                (true, false) => return Err(VfsError::NotADirectory(dst.to_string())),
                (true, true) => self.require_empty(dst).await?,
                (false, false) => {}
            }
            self.core.check_overwrite_allowed(dst)?;
        }
        Ok(if is_dir {
            Plan::Directory {
                dest_existed: dest.is_some(),
            }
        } else {
            Plan::File {
                source: Box::new(source),
                dest: dest.map(Box::new),
            }
        })
    }

    /// Copies file `src` to `dst` keeping its metadata, then deletes `src`.
    async fn move_file(
        &self,
        src_parent: &FsPath,
        src: &FsPath,
        source: &Stat,
        dst: &FsPath,
        dest: Option<&Stat>,
    ) -> VfsResult<()> {
        let src_key = self.core.ns.file_key(src)?;
        let dst_key = self.core.ns.file_key(dst)?;
        if !dst.is_within(src_parent) {
            self.keep_directory(src_parent).await?;
        }
        let condition = match dest {
            None => self.core.write_condition(None),
            Some(existing) => match &existing.etag {
                Some(etag) => self.core.write_condition(Some(etag)),
                None => WriteCondition::None,
            },
        };
        let caps = self.core.store.capabilities();
        // CopyObject with the COPY directive keeps every header, but resets the storage
        // class to STANDARD: an object of another class is copied with its metadata
        // restated (REPLACE), which needs them from a HEAD. (Multipart copies always do.)
        let (metadata, source_etag, size) =
            if source.storage_class.is_some() && source.size <= caps.max_single_put {
                let head = self
                    .core
                    .store
                    .head(&src_key)
                    .await
                    .map_err(|e| VfsError::from_store(src.as_str(), e))?;
                let size = head.size;
                (
                    MetadataDirective::Replace(self.core.kept_options(&head)),
                    head.etag,
                    size,
                )
            } else {
                (MetadataDirective::Copy, source.etag.clone(), source.size)
            };
        // From the copy until open files follow the new name, no upload may land on
        // either name: one on the source would be deleted with it.
        let _names = self
            .core
            .names
            .for_rename(&[(src.clone(), false), (dst.clone(), false)])
            .await;
        let copied = self
            .core
            .copy_object(ObjectCopy {
                source: src_key.clone(),
                source_etag: source_etag.clone(),
                size,
                dest: dst_key.clone(),
                metadata,
                condition,
            })
            .await
            .map_err(|e| VfsError::from_write(dst, e))?;
        let copies = Copies::from([(dst_key, (source_etag, copied.etag.clone()))]);
        let moved = Stat {
            etag: copied.etag,
            mtime: source.posix.mtime.unwrap_or_else(SystemTime::now),
            ..source.clone()
        };
        self.core.meta.put(dst, moved);
        self.core.meta.put_missing(src);
        self.open_files.note_renamed(src, dst, &copies).await;
        self.core.store.delete(&src_key).await.map_err(|e| {
            tracing::error!(src = %src, dst = %dst, error = %e,
                "rename copied the file but could not delete the source: it exists under both names");
            self.core.meta.invalidate(src);
            VfsError::from_store(src.as_str(), e)
        })
    }
}
