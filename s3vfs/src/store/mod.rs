//! The pluggable object-store backend.
//!
//! [`Backend`] is everything the file system needs from one S3 bucket: HEAD, ranged GET,
//! one LIST page, single PUT, multipart upload, copy and delete. The real implementation is
//! [`s3::S3Store`] on `aws-sdk-s3`; `s3vfs-testkit` provides an in-memory one with S3's rules;
//! with the `object-store` feature, `object_store::ObjectStoreBackend` runs s3vfs over any
//! backend of the `object_store` crate (GCS, Azure, local disk, …).
//!
//! Invariants every implementation keeps:
//! - keys are opaque UTF-8 strings; the store never interprets `/` except as the LIST
//!   delimiter the caller passes;
//! - errors are [`StoreError`]s whose [`StoreErrorKind`] lets the caller decide (retry, map
//!   to an errno, report a conflict) without parsing messages.

pub(crate) mod backoff;
pub mod error;
pub mod multipart;
#[cfg(feature = "object-store")]
pub mod object_store;
mod paging;
mod payload_signing;
pub mod probe;
pub mod s3;
mod types;

pub use error::{StoreError, StoreErrorKind};
pub use paging::list_all;
pub(crate) use paging::PageCursor;
pub use payload_signing::PayloadSigning;
pub use s3::{S3Buckets, S3Store, S3StoreConfig, StaticCredentials};
pub use types::*;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// What one bucket of an S3-compatible store can do for a file system: the backend
/// every layer of s3vfs sits on.
///
/// (Named `Backend` rather than `ObjectStore` so that it does not read as the
/// `object_store` crate's trait;
#[cfg_attr(
    feature = "object-store",
    doc = "[`crate::store::object_store`] adapts that one to this.)"
)]
#[cfg_attr(
    not(feature = "object-store"),
    doc = "`crate::store::object_store`, with the `object-store` feature, adapts that one to this.)"
)]
///
/// Every method is one request (or one logical request with retries inside the
/// implementation). Implementations must be cheap to share: the file system holds an
/// `Arc<dyn Backend>` and calls it from many tasks at once.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Which optional features the store supports natively.
    fn capabilities(&self) -> Capabilities;

    /// The bucket's name, where the store knows it (for logs and recovery manifests).
    fn bucket(&self) -> Option<String> {
        None
    }

    /// HEAD: the object's metadata, or [`StoreErrorKind::NotFound`].
    async fn head(&self, key: &ObjectKey) -> StoreResult<ObjectMeta>;

    /// GET, optionally of a byte range and pinned to an ETag (`If-Match`).
    ///
    /// A range that starts at or past the end of a non-empty object is
    /// [`StoreErrorKind::InvalidRange`]; a range reaching past the end is clamped.
    async fn get(&self, request: GetRequest) -> StoreResult<GetResponse>;

    /// One page of ListObjectsV2, as the store sent it: a page that claims to be truncated
    /// but has no continuation token is returned as such (callers walk pages with a cursor
    /// that refuses it).
    async fn list(&self, request: ListRequest) -> StoreResult<ListPage>;

    /// Single-request PUT of a whole object.
    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: PutOptions,
    ) -> StoreResult<PutResult>;

    /// CreateMultipartUpload.
    async fn create_multipart(&self, key: &ObjectKey, options: PutOptions)
        -> StoreResult<UploadId>;

    /// UploadPart: part numbers run from 1 to 10,000.
    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Bytes,
    ) -> StoreResult<CompletedPart>;

    /// UploadPartCopy: a byte range (or all) of `source` becomes a part of the upload.
    async fn upload_part_copy(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        source: &CopySource,
        source_range: Option<ByteRange>,
    ) -> StoreResult<CompletedPart>;

    /// CompleteMultipartUpload, with an optional write condition.
    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        condition: WriteCondition,
    ) -> StoreResult<PutResult>;

    /// AbortMultipartUpload.
    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &UploadId) -> StoreResult<()>;

    /// CopyObject (server-side, up to 5 GiB).
    async fn copy(&self, request: CopyRequest) -> StoreResult<PutResult>;

    /// GetObjectTagging: the object's tags. A store without tags answers
    /// [`StoreErrorKind::InvalidRequest`] with code `NotImplemented`.
    async fn get_tags(&self, key: &ObjectKey) -> StoreResult<BTreeMap<String, String>>;

    /// DeleteObject. Deleting a missing key succeeds, as on S3.
    async fn delete(&self, key: &ObjectKey) -> StoreResult<()>;

    /// DeleteObjects (up to 1000 keys): returns the keys that could not be deleted.
    async fn delete_many(&self, keys: Vec<ObjectKey>) -> StoreResult<Vec<DeleteFailure>>;
}

/// A source of buckets: what a mount without a bucket argument shows at its root.
#[async_trait]
pub trait BucketProvider: Send + Sync + std::fmt::Debug + 'static {
    /// ListBuckets: the names of every bucket the credentials can see.
    async fn list_buckets(&self) -> StoreResult<Vec<String>>;

    /// A store for one bucket.
    fn bucket(&self, name: &str) -> StoreResult<Arc<dyn Backend>>;
}
