//! symlink, in the s3fs convention: an object whose body is the target and whose
//! `x-amz-meta-mode` has the `S_IFLNK` type (`S_IFLNK | 0777`), with owner and mtime.
//! `readlink` (in `fs.rs`) reads the body back; s3fs, goofys and rclone read the same.

use super::{create_error, S3Fs};
use crate::attrs::MAX_SYMLINK_TARGET;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::store::ObjectMeta;
use crate::vfs::{Entry, FileKind, Ino};
use bytes::Bytes;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

impl S3Fs {
    /// Creates symbolic link `name` in `parent` pointing at `target`: one PUT, only if the
    /// name is free (`EEXIST` otherwise).
    pub(crate) async fn do_symlink(
        &self,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
    ) -> VfsResult<Entry> {
        self.check_writable("symlink")?;
        let (parent_path, path) = self.child_path(parent, name)?;
        let body = Bytes::copy_from_slice(target.as_bytes());
        if body.is_empty() {
            return Err(VfsError::NotFound(format!("{path}: empty symlink target")));
        }
        if body.len() as u64 > MAX_SYMLINK_TARGET {
            return Err(VfsError::NameTooLong(format!(
                "{path}: symlink target of {} bytes",
                body.len()
            )));
        }
        self.require_directory(&parent_path).await?;
        if self.stat_optional(&path).await?.is_some() {
            tracing::debug!(path = %path, "symlink refused: the name exists");
            return Err(VfsError::Exists(path.to_string()));
        }
        let key = self.ns.file_key(&path)?;
        let posix = self.new_posix_meta(FileKind::Symlink, 0o777);
        let mut options = self.new_object_options(posix);
        options.condition = self.write_condition(None);
        let size = body.len() as u64;
        let put = self
            .store
            .put(&key, body, options.clone())
            .await
            .map_err(|e| create_error(&path, e))?;
        let stat = Stat::from_head(&ObjectMeta {
            key,
            size,
            last_modified: SystemTime::now(),
            etag: put.etag,
            storage_class: options.storage_class,
            content_type: options.content_type,
            user_metadata: options.user_metadata,
            restored: false,
        });
        self.meta.put(&path, stat.clone());
        let ino = self.inodes.lookup(&path, FileKind::Symlink);
        Ok(self.entry(ino, &stat))
    }
}
