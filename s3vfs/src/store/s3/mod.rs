//! The real backend: [`S3Store`] on `aws-sdk-s3`.
//!
//! This module owns the one SDK client a mount uses (connection pool, retry quota, timeouts)
//! and the translation between [`Backend`] calls and S3 requests. Invariants:
//! - every request goes through one shared [`aws_sdk_s3::Client`]; [`S3Buckets`] hands out
//!   stores that share it, so connections are reused across buckets;
//! - request-level failures (5xx, SlowDown/throttling, timeouts, dropped connections before
//!   the response) are retried by the SDK's standard strategy: exponential backoff with
//!   jitter, at most [`S3StoreConfig::max_attempts`] attempts;
//! - a GET body that fails or ends early is resumed from the first missing byte with a
//!   ranged GET pinned to the object's ETag (`If-Match`), so a dropped connection never
//!   shows up as a short read; a changed object shows up as
//!   [`StoreErrorKind::PreconditionFailed`] instead of mixed data;
//! - errors become [`StoreError`]s carrying the key and the S3 error code; nothing logged or
//!   returned contains credentials or signed URLs (logs name the operation and key only);
//! - answers that are not what S3 would send (a misnamed XML root, a lost reply whose retry
//!   fails because the first attempt succeeded) are handled in one place, `quirks`.
//!
//! One concern a file: `config` (settings, credentials, the SDK client), `access` (the
//! requester-pays and bucket-owner headers every request carries), `errors` (SDK
//! errors to store errors), `resume` (the resuming GET body), `convert` (the store's types
//! to the SDK's and back), `quirks`; this file holds the store and its requests.

mod access;
mod config;
mod convert;
mod errors;
mod quirks;
mod resume;

use crate::store::{
    Backend, BucketProvider, ByteRange, Capabilities, CompletedPart, CopyRequest, CopySource,
    DeleteFailure, ETag, GetRequest, GetResponse, ListPage, ListRequest, ListedObject,
    MetadataDirective, ObjectKey, ObjectMeta, PageCursor, PutOptions, PutResult,
    ServerSideEncryption, StoreError, StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use access::{BucketAccess, WithBucketAccess};
use async_trait::async_trait;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types;
use aws_sdk_s3::Client;
use bytes::Bytes;
use config::{build_client, ResumePolicy};
pub use config::{
    S3StoreConfig, StaticCredentials, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DEFAULT_READ_TIMEOUT, DEFAULT_REGION,
    MAX_DELETE_BATCH,
};
use convert::{
    copy_source, non_negative, parse_content_range, part_number_i32, restore_completed,
    storage_class_name, system_time, tagging_header, user_metadata,
};
use errors::{build_error, is_missing_key, map_sdk_error, missing_field};
use futures::StreamExt;
pub use quirks::{is_unparsable_success, upload_id_despite};
use resume::ResumableBody;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::debug;

/// Applies the fields of a [`PutOptions`] (except the condition, which each operation
/// places itself) to a PutObject, CreateMultipartUpload or CopyObject builder.
macro_rules! apply_put_options {
    ($req:ident, $options:expr) => {{
        let options: &PutOptions = &$options;
        if !options.user_metadata.is_empty() {
            let metadata: HashMap<String, String> = options
                .user_metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            $req = $req.set_metadata(Some(metadata));
        }
        if let Some(content_type) = &options.content_type {
            $req = $req.content_type(content_type);
        }
        if let Some(class) = &options.storage_class {
            $req = $req.storage_class(types::StorageClass::from(class.as_str()));
        }
        if !options.tags.is_empty() {
            $req = $req.tagging(tagging_header(&options.tags));
        }
        match &options.sse {
            None => {}
            Some(ServerSideEncryption::S3) => {
                $req = $req.server_side_encryption(types::ServerSideEncryption::Aes256);
            }
            Some(ServerSideEncryption::Kms { key_id }) => {
                $req = $req
                    .server_side_encryption(types::ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(key_id.clone());
            }
        }
    }};
}

/// One bucket of S3 (or of an S3-compatible store) as an [`Backend`].
///
/// Cheap to clone: clones share the SDK client and its connection pool.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    policy: ResumePolicy,
    capabilities: Capabilities,
    /// Whether PutObject and UploadPart bodies are signed (SHA-256 of the body).
    sign_payloads: bool,
    /// The requester-pays and bucket-owner headers of every request.
    access: BucketAccess,
    /// Whether the server answered a HEAD of a key it does not list with a 5xx (logged once).
    head_5xx_seen: Arc<AtomicBool>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("capabilities", &self.capabilities)
            .field("sign_payloads", &self.sign_payloads)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client for `config.bucket`. Makes no request, unless no region is
    /// configured: then the bucket is asked for its region (see
    /// [`S3StoreConfig::region`]), and the answer logged at info level.
    pub async fn new(config: S3StoreConfig) -> StoreResult<S3Store> {
        if config.bucket.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                "S3StoreConfig::bucket is empty",
            ));
        }
        let client = build_client(&config, Some(&config.bucket)).await?;
        Ok(Self::with_client(client, config.bucket.clone(), &config))
    }

    /// A store over an SDK client built elsewhere (its endpoint, region, credentials and
    /// retries are the client's), for `config.bucket`; the rest of `config` (resumption of
    /// GET bodies, capabilities, payload signing, requester pays, the expected bucket
    /// owner) applies as in [`new`](Self::new).
    pub fn from_client(client: Client, config: &S3StoreConfig) -> StoreResult<S3Store> {
        if config.bucket.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                "S3StoreConfig::bucket is empty",
            ));
        }
        Ok(Self::with_client(client, config.bucket.clone(), config))
    }

    fn with_client(client: Client, bucket: String, config: &S3StoreConfig) -> Self {
        Self {
            client,
            bucket,
            policy: ResumePolicy {
                max_attempts: config.max_attempts.max(1),
                initial_backoff: config.initial_backoff,
                max_backoff: config.max_backoff,
            },
            capabilities: config.capabilities,
            sign_payloads: config
                .payload_signing
                .signs_uploads_to(config.endpoint_url.as_deref()),
            access: BucketAccess::new(config),
            head_5xx_seen: Arc::default(),
        }
    }

    /// The bucket's name.
    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    /// The region requests are signed for: the configured one, or the one the bucket
    /// named when none was.
    pub fn region(&self) -> Option<&str> {
        self.client.config().region().map(|r| r.as_ref())
    }

    /// The underlying SDK client, for requests this trait does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A provider of every bucket the credentials can see, sharing this store's client.
    pub fn buckets(&self) -> S3Buckets {
        S3Buckets {
            client: self.client.clone(),
            policy: self.policy,
            capabilities: self.capabilities,
            sign_payloads: self.sign_payloads,
            access: self.access.clone(),
        }
    }

    /// The `x-amz-copy-source` of `source`: its bucket (this one unless it names
    /// another) and its key, encoded.
    fn copy_source(&self, source: &CopySource) -> String {
        copy_source(self.source_bucket(source), &source.key)
    }

    /// The bucket `source` is in.
    fn source_bucket<'a>(&'a self, source: &'a CopySource) -> &'a str {
        source.bucket.as_deref().unwrap_or(&self.bucket)
    }

    /// The `x-amz-source-expected-bucket-owner` of a copy from `source`.
    fn source_owner(&self, source: &CopySource) -> Option<String> {
        self.access
            .source_owner(self.source_bucket(source) == self.bucket)
    }

    /// Sends one GetObject (with the SDK's retries).
    async fn send_get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
        if_match: Option<&ETag>,
    ) -> StoreResult<GetObjectOutput> {
        debug!(op = "GetObject", key = %key, ?range, "request");
        let range_header = range.map(|r| {
            // HTTP cannot ask for zero bytes: ask for one and trim the answer.
            let last = if r.is_empty() { r.start } else { r.end - 1 };
            format!("bytes={}-{}", r.start, last)
        });
        self.client
            .get_object()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .set_range(range_header)
            .set_if_match(if_match.map(|t| t.as_str().to_owned()))
            .send()
            .await
            .map_err(|e| map_sdk_error("GetObject", key.as_str(), e))
    }
}

#[async_trait]
impl Backend for S3Store {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn bucket(&self) -> Option<String> {
        Some(self.bucket.clone())
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<ObjectMeta> {
        debug!(op = "HeadObject", key = %key, "request");
        let out = self
            .client
            .head_object()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let error = map_sdk_error("HeadObject", key.as_str(), e);
                return Err(quirks::head_failed(self, key, error).await);
            }
        };
        Ok(ObjectMeta {
            key: key.clone(),
            size: non_negative(out.content_length()),
            last_modified: system_time(out.last_modified()),
            etag: out.e_tag().map(ETag::new),
            storage_class: storage_class_name(out.storage_class().map(|c| c.as_str())),
            content_type: out.content_type().map(str::to_owned),
            user_metadata: user_metadata(out.metadata()),
            restored: out.restore().is_some_and(restore_completed),
        })
    }

    async fn get(&self, request: GetRequest) -> StoreResult<GetResponse> {
        let key = request.key.clone();
        let first = self
            .send_get(&key, request.range, request.if_match.as_ref())
            .await;
        let out = match first {
            Ok(out) => out,
            // Some stores refuse any range on an empty object; ask for the whole object and
            // let the clamping below decide.
            Err(e)
                if e.kind == StoreErrorKind::InvalidRange
                    && request.range.is_some_and(|r| r.start == 0) =>
            {
                self.send_get(&key, None, request.if_match.as_ref()).await?
            }
            Err(e) => return Err(e),
        };

        let (covered, size) = match (out.content_range(), out.content_length()) {
            (Some(header), _) => parse_content_range(header).ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Other,
                    format!("unparsable Content-Range {header:?}"),
                )
                .with_key(key.as_str())
            })?,
            (None, Some(length)) => {
                let length = non_negative(Some(length));
                (ByteRange::new(0, length), length)
            }
            // Without a length, a short body could not be told from a whole one.
            (None, None) => {
                return Err(StoreError::new(
                    StoreErrorKind::Other,
                    "GET answer without Content-Length or Content-Range",
                )
                .with_key(key.as_str()))
            }
        };
        let target = match request.range {
            None => ByteRange::new(0, size),
            Some(r) => {
                if r.start >= size && size > 0 {
                    return Err(StoreError::range_past_end(key.as_str(), r.start, size));
                }
                ByteRange::new(r.start.min(size), r.end.min(size))
            }
        };
        if !target.is_empty() && (target.start < covered.start || target.end > covered.end) {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("store answered bytes {covered:?} for a request of {target:?}"),
            )
            .with_key(key.as_str()));
        }

        let meta = ObjectMeta {
            key: key.clone(),
            size,
            last_modified: system_time(out.last_modified()),
            etag: out.e_tag().map(ETag::new),
            storage_class: storage_class_name(out.storage_class().map(|c| c.as_str())),
            content_type: out.content_type().map(str::to_owned),
            user_metadata: user_metadata(out.metadata()),
            restored: out.restore().is_some_and(restore_completed),
        };
        let pin = request.if_match.clone().or_else(|| meta.etag.clone());
        let body = ResumableBody {
            store: self.clone(),
            key,
            etag: pin,
            body: Some(out.body),
            body_offset: covered.start,
            pos: target.start,
            end: target.end,
            failures: 0,
            done: target.is_empty(),
        };
        let stream = futures::stream::unfold(body, |mut state| async move {
            let item = state.next_chunk().await?;
            Some((item, state))
        });
        Ok(GetResponse {
            meta,
            range: target,
            body: stream.boxed(),
        })
    }

    async fn list(&self, request: ListRequest) -> StoreResult<ListPage> {
        debug!(op = "ListObjectsV2", prefix = %request.prefix, "request");
        let out = self
            .client
            .list_objects_v2()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .set_prefix((!request.prefix.is_empty()).then(|| request.prefix.clone()))
            .set_delimiter(request.delimiter.clone())
            .set_continuation_token(request.continuation_token.clone())
            .set_max_keys(
                request
                    .max_keys
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            )
            .set_start_after(request.start_after.clone())
            .send()
            .await
            .map_err(|e| map_sdk_error("ListObjectsV2", &request.prefix, e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ListedObject {
                    key: ObjectKey::new(o.key()?),
                    size: non_negative(o.size()),
                    last_modified: system_time(o.last_modified()),
                    etag: o.e_tag().map(ETag::new),
                    storage_class: storage_class_name(o.storage_class().map(|c| c.as_str())),
                })
            })
            .collect();
        let common_prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_owned))
            .collect();
        // Passed on as sent: a truncated page without a token is for the caller's cursor
        // to refuse, not to be read as the last page. A store that leaves out IsTruncated
        // (it is required) is taken at its token.
        let token = out.next_continuation_token().filter(|t| !t.is_empty());
        let is_truncated = out.is_truncated().unwrap_or(token.is_some());
        Ok(ListPage {
            objects,
            common_prefixes,
            is_truncated,
            next_continuation_token: token.filter(|_| is_truncated).map(str::to_owned),
        })
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: PutOptions,
    ) -> StoreResult<PutResult> {
        debug!(op = "PutObject", key = %key, len = body.len(), "request");
        let length = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let mut req = self
            .client
            .put_object()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(length)
            .body(SdkByteStream::from(body.clone()));
        // Kept (a reference, not a copy) in case the outcome must be checked.
        let sent_body = body;
        apply_put_options!(req, options);
        match &options.condition {
            WriteCondition::None => {}
            WriteCondition::IfNoneMatch => req = req.if_none_match("*"),
            WriteCondition::IfMatch(tag) => req = req.if_match(tag.as_str()),
        }
        let attempts = quirks::Attempts::default();
        let mut req = req.customize().interceptor(attempts.clone());
        if !self.sign_payloads {
            req = req.disable_payload_signing();
        }
        match req.send().await {
            Ok(out) => Ok(PutResult {
                etag: out.e_tag().map(ETag::new),
            }),
            Err(e) => {
                let expected = || Some(quirks::Expected::put(&sent_body, &options.user_metadata));
                quirks::upload_failed(self, "PutObject", key, e, &attempts, expected).await
            }
        }
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        options: PutOptions,
    ) -> StoreResult<UploadId> {
        debug!(op = "CreateMultipartUpload", key = %key, "request");
        let mut req = self
            .client
            .create_multipart_upload()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str());
        apply_put_options!(req, options);
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                return match quirks::upload_id_despite(&e) {
                    Some(id) => Ok(UploadId(id)),
                    None => Err(map_sdk_error("CreateMultipartUpload", key.as_str(), e)),
                }
            }
        };
        out.upload_id()
            .map(|id| UploadId(id.to_owned()))
            .ok_or_else(|| missing_field("CreateMultipartUpload", key, "UploadId"))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Bytes,
    ) -> StoreResult<CompletedPart> {
        debug!(op = "UploadPart", key = %key, part_number, len = body.len(), "request");
        let length = i64::try_from(body.len()).unwrap_or(i64::MAX);
        let req = self
            .client
            .upload_part()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(&upload_id.0)
            .part_number(part_number_i32(key, part_number)?)
            .content_length(length)
            .body(SdkByteStream::from(body));
        let sent = if self.sign_payloads {
            req.send().await
        } else {
            req.customize().disable_payload_signing().send().await
        };
        let out = sent.map_err(|e| map_sdk_error("UploadPart", key.as_str(), e))?;
        let etag = out
            .e_tag()
            .ok_or_else(|| missing_field("UploadPart", key, "ETag"))?;
        Ok(CompletedPart {
            part_number,
            etag: ETag::new(etag),
        })
    }

    async fn upload_part_copy(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        source: &CopySource,
        source_range: Option<ByteRange>,
    ) -> StoreResult<CompletedPart> {
        debug!(op = "UploadPartCopy", key = %key, source = %source, part_number, "request");
        let range = match source_range {
            Some(r) if r.is_empty() => {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidRequest,
                    "UploadPartCopy of an empty range",
                )
                .with_key(key.as_str()));
            }
            Some(r) => Some(format!("bytes={}-{}", r.start, r.end - 1)),
            None => None,
        };
        let out = self
            .client
            .upload_part_copy()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(&upload_id.0)
            .part_number(part_number_i32(key, part_number)?)
            .copy_source(self.copy_source(source))
            .set_expected_source_bucket_owner(self.source_owner(source))
            .set_copy_source_if_match(source.if_match.as_ref().map(|t| t.as_str().to_owned()))
            .set_copy_source_range(range)
            .send()
            .await
            .map_err(|e| map_sdk_error("UploadPartCopy", key.as_str(), e))?;
        let etag = out
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .ok_or_else(|| missing_field("UploadPartCopy", key, "ETag"))?;
        Ok(CompletedPart {
            part_number,
            etag: ETag::new(etag),
        })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        mut parts: Vec<CompletedPart>,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        debug!(op = "CompleteMultipartUpload", key = %key, parts = parts.len(), "request");
        parts.sort_by_key(|p| p.part_number);
        let mut sdk_parts = Vec::with_capacity(parts.len());
        for p in &parts {
            sdk_parts.push(
                types::CompletedPart::builder()
                    .part_number(part_number_i32(key, p.part_number)?)
                    .e_tag(p.etag.as_str())
                    .build(),
            );
        }
        let mut req = self
            .client
            .complete_multipart_upload()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(&upload_id.0)
            .multipart_upload(
                types::CompletedMultipartUpload::builder()
                    .set_parts(Some(sdk_parts))
                    .build(),
            );
        match &condition {
            WriteCondition::None => {}
            WriteCondition::IfNoneMatch => req = req.if_none_match("*"),
            WriteCondition::IfMatch(tag) => req = req.if_match(tag.as_str()),
        }
        let attempts = quirks::Attempts::default();
        match req.customize().interceptor(attempts.clone()).send().await {
            Ok(out) => Ok(PutResult {
                etag: out.e_tag().map(ETag::new),
            }),
            Err(e) => {
                let expected = || quirks::Expected::multipart(&parts);
                let op = "CompleteMultipartUpload";
                quirks::upload_failed(self, op, key, e, &attempts, expected).await
            }
        }
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &UploadId) -> StoreResult<()> {
        debug!(op = "AbortMultipartUpload", key = %key, "request");
        self.client
            .abort_multipart_upload()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(&upload_id.0)
            .send()
            .await
            .map_err(|e| map_sdk_error("AbortMultipartUpload", key.as_str(), e))?;
        Ok(())
    }

    async fn copy(&self, request: CopyRequest) -> StoreResult<PutResult> {
        let dest = &request.dest;
        debug!(op = "CopyObject", key = %dest, source = %request.source, "request");
        let mut req = self
            .client
            .copy_object()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(dest.as_str())
            .copy_source(self.copy_source(&request.source))
            .set_expected_source_bucket_owner(self.source_owner(&request.source))
            .set_copy_source_if_match(
                request
                    .source
                    .if_match
                    .as_ref()
                    .map(|t| t.as_str().to_owned()),
            );
        match &request.metadata {
            MetadataDirective::Copy => {
                req = req.metadata_directive(types::MetadataDirective::Copy);
            }
            MetadataDirective::Replace(options) => {
                req = req.metadata_directive(types::MetadataDirective::Replace);
                apply_put_options!(req, options);
                if !options.tags.is_empty() {
                    req = req.tagging_directive(types::TaggingDirective::Replace);
                }
            }
        }
        match &request.condition {
            WriteCondition::None => {}
            WriteCondition::IfNoneMatch => req = req.if_none_match("*"),
            WriteCondition::IfMatch(tag) => req = req.if_match(tag.as_str()),
        }
        let out = req
            .send()
            .await
            .map_err(|e| map_sdk_error("CopyObject", dest.as_str(), e))?;
        Ok(PutResult {
            etag: out
                .copy_object_result()
                .and_then(|r| r.e_tag())
                .map(ETag::new),
        })
    }

    async fn get_tags(&self, key: &ObjectKey) -> StoreResult<BTreeMap<String, String>> {
        debug!(op = "GetObjectTagging", key = %key, "request");
        let out = self
            .client
            .get_object_tagging()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error("GetObjectTagging", key.as_str(), e))?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
        debug!(op = "DeleteObject", key = %key, "request");
        let result = self
            .client
            .delete_object()
            .with_access(&self.access)
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error("DeleteObject", key.as_str(), e));
        match result {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing key; some stores answer NoSuchKey.
            Err(e) if is_missing_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_many(&self, keys: Vec<ObjectKey>) -> StoreResult<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for batch in keys.chunks(MAX_DELETE_BATCH) {
            debug!(op = "DeleteObjects", keys = batch.len(), first = %batch[0], "request");
            let mut ids = Vec::with_capacity(batch.len());
            for key in batch {
                ids.push(
                    types::ObjectIdentifier::builder()
                        .key(key.as_str())
                        .build()
                        .map_err(|e| build_error("DeleteObjects", key, e))?,
                );
            }
            let delete = types::Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| build_error("DeleteObjects", &batch[0], e))?;
            let out = self
                .client
                .delete_objects()
                .with_access(&self.access)
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| map_sdk_error("DeleteObjects", batch[0].as_str(), e))?;
            for err in out.errors() {
                let key = err.key().unwrap_or_default();
                let code = err.code().unwrap_or_default();
                let mut error = StoreError::new(
                    StoreError::kind_for_code(code, None),
                    err.message().unwrap_or_default(),
                )
                .with_key(key);
                if !code.is_empty() {
                    error = error.with_code(code);
                }
                if is_missing_key(&error) {
                    continue;
                }
                failures.push(DeleteFailure {
                    key: ObjectKey::new(key),
                    error,
                });
            }
        }
        Ok(failures)
    }
}

/// Every bucket an account can see, as a [`BucketProvider`] over one shared SDK client.
#[derive(Clone)]
pub struct S3Buckets {
    client: Client,
    policy: ResumePolicy,
    capabilities: Capabilities,
    sign_payloads: bool,
    access: BucketAccess,
}

impl fmt::Debug for S3Buckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Buckets")
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl S3Buckets {
    /// Builds the client; `config.bucket` is ignored. Makes no request.
    pub async fn new(config: S3StoreConfig) -> StoreResult<S3Buckets> {
        let client = build_client(&config, None).await?;
        let store = S3Store::with_client(client, String::new(), &config);
        Ok(store.buckets())
    }

    /// A store for bucket `name`, sharing this provider's client.
    pub fn store(&self, name: &str) -> S3Store {
        S3Store {
            client: self.client.clone(),
            bucket: name.to_owned(),
            policy: self.policy,
            capabilities: self.capabilities,
            sign_payloads: self.sign_payloads,
            access: self.access.clone(),
            head_5xx_seen: Arc::default(),
        }
    }
}

#[async_trait]
impl BucketProvider for S3Buckets {
    async fn list_buckets(&self) -> StoreResult<Vec<String>> {
        debug!(op = "ListBuckets", "request");
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut cursor = PageCursor::buckets();
        loop {
            let out = self
                .client
                .list_buckets()
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map_sdk_error("ListBuckets", "", e))?;
            names.extend(
                out.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
            // ListBuckets has no IsTruncated: a token means more pages.
            let next = out.continuation_token().filter(|t| !t.is_empty());
            match cursor.next(next.is_some(), next)? {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(names)
    }

    fn bucket(&self, name: &str) -> StoreResult<Arc<dyn Backend>> {
        if name.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                "empty bucket name",
            ));
        }
        Ok(Arc::new(self.store(name)))
    }
}
