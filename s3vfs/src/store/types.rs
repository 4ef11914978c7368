//! Plain data types exchanged with an [`Backend`](super::Backend).

use super::StoreError;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

/// A full object key inside a bucket (prefix included). Not validated: S3 accepts any
/// UTF-8 string of up to 1024 bytes, and the file system decides what it can show.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the key into its string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ObjectKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for ObjectKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// An entity tag as S3 returns it, quotes included (e.g. `"9b2cf535f27731c974343645a3985328"`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag(String);

impl ETag {
    /// Wraps an ETag, adding the surrounding quotes if they are missing so that tags from
    /// different sources compare equal.
    pub fn new(tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') {
            Self(tag)
        } else {
            Self(format!("\"{tag}\""))
        }
    }

    /// The tag with its quotes, as sent in `If-Match`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A multipart upload's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(pub String);

/// A half-open byte range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    /// `[start, end)`; `end` must not be below `start`.
    pub fn new(start: u64, end: u64) -> Self {
        debug_assert!(start <= end);
        Self { start, end }
    }

    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the range holds no byte.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// S3 storage classes the file system treats differently.
pub mod storage_class {
    /// Archived classes: listed, but a GET fails until the object is restored.
    pub const ARCHIVED: &[&str] = &["GLACIER", "DEEP_ARCHIVE"];

    /// Whether objects of this class must be restored before they can be read.
    pub fn is_archived(class: Option<&str>) -> bool {
        class.is_some_and(|c| ARCHIVED.contains(&c))
    }
}

/// What HEAD (or GET) says about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: ObjectKey,
    /// Size in bytes of the whole object.
    pub size: u64,
    /// Last-Modified.
    pub last_modified: SystemTime,
    /// ETag, when the store sent one.
    pub etag: Option<ETag>,
    /// Storage class; `None` means STANDARD.
    pub storage_class: Option<String>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`), names lower-case without the prefix.
    pub user_metadata: BTreeMap<String, String>,
    /// Whether an archived object has been restored (`x-amz-restore` with
    /// `ongoing-request="false"`).
    pub restored: bool,
}

/// Request for a GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetRequest {
    /// Key to read.
    pub key: ObjectKey,
    /// Byte range, or the whole object.
    pub range: Option<ByteRange>,
    /// Fail with [`StoreErrorKind::PreconditionFailed`](super::StoreErrorKind) unless the
    /// object still has this ETag.
    pub if_match: Option<ETag>,
}

impl GetRequest {
    /// GET of a whole object.
    pub fn whole(key: ObjectKey) -> Self {
        Self {
            key,
            range: None,
            if_match: None,
        }
    }
}

/// A stream of body chunks, in order.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// Answer to a GET: metadata and a body stream.
pub struct GetResponse {
    /// The object's metadata (`size` is the whole object's size).
    pub meta: ObjectMeta,
    /// The range the body covers.
    pub range: ByteRange,
    /// The body.
    pub body: ByteStream,
}

impl fmt::Debug for GetResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetResponse")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl GetResponse {
    /// Reads the whole body into one buffer.
    pub async fn collect(self) -> Result<Bytes, StoreError> {
        use futures::StreamExt;
        let mut body = self.body;
        let expected = self.range.len();
        let mut buf = bytes::BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk?);
        }
        if buf.len() as u64 != expected {
            return Err(StoreError::new(
                super::StoreErrorKind::Transient,
                format!("body ended after {} of {} bytes", buf.len(), expected),
            )
            .with_key(self.meta.key.as_str()));
        }
        Ok(buf.freeze())
    }
}

/// Request for one page of ListObjectsV2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to common prefixes at the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Continue after a previous page.
    pub continuation_token: Option<String>,
    /// At most this many keys and common prefixes (S3 caps at 1000).
    pub max_keys: Option<u32>,
    /// Only keys after this one.
    pub start_after: Option<String>,
}

/// One object in a LIST page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Full key.
    pub key: ObjectKey,
    /// Size in bytes.
    pub size: u64,
    /// Last-Modified.
    pub last_modified: SystemTime,
    /// ETag, when the store sent one.
    pub etag: Option<ETag>,
    /// Storage class; `None` means STANDARD.
    pub storage_class: Option<String>,
}

/// One page of ListObjectsV2.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<ListedObject>,
    /// Common prefixes (each ending with the delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// Whether the store said more pages follow (`IsTruncated`).
    pub is_truncated: bool,
    /// Token for the next page, if the listing is truncated. A truncated page without one is
    /// malformed: the listing cannot go on, and must not be taken as complete.
    pub next_continuation_token: Option<String>,
}

/// A condition on a write (S3 conditional writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WriteCondition {
    /// Write unconditionally.
    #[default]
    None,
    /// `If-None-Match: *`: only if no object has the key.
    IfNoneMatch,
    /// `If-Match: etag`: only if the object still has this ETag.
    IfMatch(ETag),
}

/// Server-side encryption for new objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3 (AES256).
    S3,
    /// SSE-KMS with an optional key id (the bucket default otherwise).
    Kms {
        /// KMS key id or ARN.
        key_id: Option<String>,
    },
}

/// Options of a PUT, CreateMultipartUpload or a copy that replaces metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// User metadata, names without `x-amz-meta-`.
    pub user_metadata: BTreeMap<String, String>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// Storage class (e.g. `STANDARD_IA`); the bucket default when `None`.
    pub storage_class: Option<String>,
    /// Server-side encryption.
    pub sse: Option<ServerSideEncryption>,
    /// Object tags (`x-amz-tagging`). Empty on a copy: the source's tags are kept.
    pub tags: BTreeMap<String, String>,
    /// Write condition (single PUT only; multipart takes it at completion).
    pub condition: WriteCondition,
}

/// What a successful write returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The new object's ETag.
    pub etag: Option<ETag>,
}

/// A part of a multipart upload, as CompleteMultipartUpload needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1..=10,000.
    pub part_number: u32,
    /// The part's ETag.
    pub etag: ETag,
}

/// What a copy does with the metadata of the source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetadataDirective {
    /// Keep the source's metadata.
    #[default]
    Copy,
    /// Replace it with these options.
    Replace(PutOptions),
}

/// The object a server-side copy (CopyObject or UploadPartCopy) reads.
///
/// It lives in the destination's bucket unless `bucket` names another bucket of the same
/// endpoint, reachable with the same credentials (`x-amz-copy-source: bucket/key`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySource {
    /// The source's bucket, when it is not the destination's.
    pub bucket: Option<String>,
    /// The source's key in its bucket.
    pub key: ObjectKey,
    /// Only if the source still has this ETag (`x-amz-copy-source-if-match`), so a copy
    /// never mixes two versions of its source.
    pub if_match: Option<ETag>,
}

impl CopySource {
    /// `key` in the destination's bucket, whatever its version.
    pub fn new(key: ObjectKey) -> Self {
        Self {
            bucket: None,
            key,
            if_match: None,
        }
    }

    /// `key` in bucket `bucket` of the same endpoint.
    pub fn in_bucket(bucket: impl Into<String>, key: ObjectKey) -> Self {
        Self {
            bucket: Some(bucket.into()),
            key,
            if_match: None,
        }
    }

    /// The same source, pinned to the version with ETag `etag` (none: any version).
    #[must_use]
    pub fn pinned(mut self, etag: Option<ETag>) -> Self {
        self.if_match = etag;
        self
    }
}

impl From<ObjectKey> for CopySource {
    fn from(key: ObjectKey) -> Self {
        Self::new(key)
    }
}

impl fmt::Display for CopySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.bucket {
            Some(bucket) => write!(f, "{bucket}/{}", self.key),
            None => write!(f, "{}", self.key),
        }
    }
}

/// A server-side copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyRequest {
    /// The object copied, and the version it must be.
    pub source: CopySource,
    /// Destination key.
    pub dest: ObjectKey,
    /// Metadata of the destination.
    pub metadata: MetadataDirective,
    /// Condition on the destination.
    pub condition: WriteCondition,
}

/// A key DeleteObjects could not delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The key.
    pub key: ObjectKey,
    /// Why.
    pub error: StoreError,
}

/// Optional store features, so callers can choose a strategy instead of failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `If-None-Match: *` / `If-Match` on PUT and CompleteMultipartUpload.
    pub conditional_writes: bool,
    /// UploadPartCopy.
    pub upload_part_copy: bool,
    /// DeleteObjects (batch delete).
    pub delete_many: bool,
    /// Smallest part size except the last, in bytes.
    pub min_part_size: u64,
    /// Largest part size, in bytes.
    pub max_part_size: u64,
    /// Most parts in one upload.
    pub max_parts: u32,
    /// Largest object a single PUT or CopyObject accepts, in bytes.
    pub max_single_put: u64,
}

impl Default for Capabilities {
    /// The limits of Amazon S3.
    fn default() -> Self {
        Self {
            conditional_writes: true,
            upload_part_copy: true,
            delete_many: true,
            min_part_size: 5 * 1024 * 1024,
            max_part_size: 5 * 1024 * 1024 * 1024,
            max_parts: 10_000,
            max_single_put: 5 * 1024 * 1024 * 1024,
        }
    }
}
