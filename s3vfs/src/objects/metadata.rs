//! Rewriting the user metadata of an existing object in place (chmod, chown, utimens,
//! xattrs).
//!
//! S3 metadata cannot be edited: a file's object is copied onto itself with the
//! `REPLACE` directive, restating its other user metadata, content type and storage class
//! (other system headers such as `Cache-Control` or `Content-Encoding` are not carried by
//! the store interface and are dropped). The copy is pinned to the version read by the HEAD
//! before it (`x-amz-copy-source-if-match`, and `If-Match` on the destination when the
//! store supports conditional writes): a concurrent change makes it fail with
//! `WriteConflict` instead of being lost. A directory's attributes live on its `dir/`
//! marker, which is re-PUT (created if missing). The new metadata must fit S3's 2 KB limit,
//! otherwise `E2BIG` and nothing is written.

use super::copy::ObjectCopy;
use crate::attrs::PosixMeta;
use crate::core::Core;
use crate::error::{VfsError, VfsResult};
use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::store::{
    ETag, MetadataDirective, ObjectKey, ObjectMeta, StoreErrorKind, WriteCondition,
};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// S3's limit on user metadata, in bytes: names and values of all `x-amz-meta-*` headers.
pub(crate) const MAX_USER_METADATA: usize = 2048;

/// What each header name costs besides its own name: the `x-amz-meta-` prefix. S3's
/// documentation does not say whether it counts; counting it is the safe reading.
const HEADER_PREFIX_LEN: usize = "x-amz-meta-".len();

/// Bytes of user metadata as S3 counts them (with the header prefix, to be safe).
pub(crate) fn metadata_size(metadata: &BTreeMap<String, String>) -> usize {
    metadata
        .iter()
        .map(|(name, value)| HEADER_PREFIX_LEN + name.len() + value.len())
        .sum()
}

/// `E2BIG` when `metadata` is over S3's limit.
fn check_metadata_size(path: &FsPath, metadata: &BTreeMap<String, String>) -> VfsResult<()> {
    let size = metadata_size(metadata);
    if size > MAX_USER_METADATA {
        tracing::warn!(path = %path, size, limit = MAX_USER_METADATA,
            "refused: the object's metadata would exceed S3's 2 KB of user metadata");
        return Err(VfsError::TooLarge(format!(
            "{path}: {size} bytes of metadata, S3 allows {MAX_USER_METADATA}"
        )));
    }
    Ok(())
}

impl Core {
    /// HEAD of the object (file or marker) at `key`, `None` when it does not exist.
    pub(crate) async fn head_optional(
        &self,
        path: &FsPath,
        key: &ObjectKey,
    ) -> VfsResult<Option<ObjectMeta>> {
        match self.store.head(key).await {
            Ok(head) => Ok(Some(head)),
            Err(e) if e.kind == StoreErrorKind::NotFound => Ok(None),
            Err(e) => Err(VfsError::from_store(path.as_str(), e)),
        }
    }

    /// Applies `edit` to the user metadata of the object at `path` (a file, symlink or
    /// special file) by a copy onto itself pinned to the version read; returns the new
    /// stat and the ETag of the version replaced (open files built on it must follow).
    pub(crate) async fn rewrite_object<F>(
        &self,
        path: &FsPath,
        edit: F,
    ) -> VfsResult<(Stat, Option<ETag>)>
    where
        F: FnOnce(&mut BTreeMap<String, String>, SystemTime) -> VfsResult<()>,
    {
        let key = self.ns.file_key(path)?;
        let Some(head) = self.head_optional(path, &key).await? else {
            self.meta.put_missing(path);
            return Err(VfsError::NotFound(path.to_string()));
        };
        let current_mtime = Stat::from_head(&head).mtime;
        let mut options = self.kept_options(&head);
        edit(&mut options.user_metadata, current_mtime)?;
        check_metadata_size(path, &options.user_metadata)?;
        let condition = match &head.etag {
            Some(etag) => self.write_condition(Some(etag)),
            None => WriteCondition::None,
        };
        let copied = self
            .copy_object(ObjectCopy {
                source: key.clone(),
                source_etag: head.etag.clone(),
                size: head.size,
                dest: key,
                metadata: MetadataDirective::Replace(options.clone()),
                condition,
            })
            .await
            .map_err(|e| VfsError::from_write(path, e))?;
        let new_etag = copied.etag.or(head.etag.clone());
        let replaced = head.etag.clone();
        let stat = Stat::from_head(&ObjectMeta {
            etag: new_etag,
            last_modified: SystemTime::now(),
            user_metadata: options.user_metadata,
            content_type: options.content_type,
            storage_class: options.storage_class,
            ..head
        });
        Ok((stat, replaced))
    }

    /// Applies `edit` to the user metadata of directory `path`'s marker (re-PUT, created
    /// if missing).
    pub(crate) async fn rewrite_marker<F>(&self, path: &FsPath, edit: F) -> VfsResult<Stat>
    where
        F: FnOnce(&mut BTreeMap<String, String>, SystemTime) -> VfsResult<()>,
    {
        let key = self.marker_key(path)?;
        let head = self.head_optional(path, &key).await?;
        let (mut options, current_mtime, condition) = match &head {
            Some(head) => (
                self.kept_options(head),
                Stat::of_marker(head).mtime,
                match &head.etag {
                    Some(etag) => self.write_condition(Some(etag)),
                    None => WriteCondition::None,
                },
            ),
            None => (
                self.new_object_options(PosixMeta::default()),
                self.meta.get_any(path).map_or(self.started, |s| s.mtime),
                self.write_condition(None),
            ),
        };
        edit(&mut options.user_metadata, current_mtime)?;
        check_metadata_size(path, &options.user_metadata)?;
        options.condition = condition;
        let metadata = options.user_metadata.clone();
        let put = self
            .store
            .put(&key, Bytes::new(), options)
            .await
            .map_err(|e| VfsError::from_write(path, e))?;
        Ok(Stat::marker(
            PosixMeta::from_user_metadata(&metadata),
            put.etag,
            SystemTime::now(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn metadata_is_measured_with_the_header_prefix() {
        let mut m = BTreeMap::new();
        m.insert("mode".to_owned(), "33188".to_owned());
        assert_eq!(metadata_size(&m), 11 + 4 + 5);
        let p = FsPath::parse("f").unwrap();
        assert!(check_metadata_size(&p, &m).is_ok());
        m.insert("big".to_owned(), "x".repeat(MAX_USER_METADATA));
        assert!(matches!(
            check_metadata_size(&p, &m),
            Err(VfsError::TooLarge(_))
        ));
    }
}
