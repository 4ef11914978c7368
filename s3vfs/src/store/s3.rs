//! The real backend: [`S3Store`] on `aws-sdk-s3`.
//!
//! This module owns the one SDK client a mount uses (connection pool, retry quota, timeouts)
//! and the translation between [`ObjectStore`] calls and S3 requests. Invariants:
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
//!   fails because the first attempt succeeded) are handled in one place, [`quirks`].

mod quirks;

use super::{
    BucketProvider, ByteRange, Capabilities, CompletedPart, CopyRequest, DeleteFailure, ETag,
    GetRequest, GetResponse, ListPage, ListRequest, ListedObject, MetadataDirective, ObjectKey,
    ObjectMeta, ObjectStore, PageCursor, PayloadSigning, PutOptions, PutResult,
    ServerSideEncryption, StoreError, StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use async_trait::async_trait;
use aws_sdk_s3::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::{ByteStream as SdkByteStream, DateTime};
use aws_sdk_s3::types;
use aws_sdk_s3::Client;
use aws_smithy_types::retry::ErrorKind as RetryErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{debug, warn};

/// Region used when static credentials are given without a region (S3-compatible stores
/// usually ignore it, but SigV4 needs one).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Default for [`S3StoreConfig::max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Default for [`S3StoreConfig::initial_backoff`].
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// Default for [`S3StoreConfig::max_backoff`].
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Default for [`S3StoreConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3_100);

/// Default for [`S3StoreConfig::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Most keys one DeleteObjects request may carry.
pub const MAX_DELETE_BATCH: usize = 1000;

/// Static credentials: an access key id, its secret and an optional session token.
///
/// `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// Access key id (e.g. `AKIA…`).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl StaticCredentials {
    /// Long-term credentials without a session token.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// Adds the session token of temporary credentials.
    pub fn with_session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How to reach a bucket: endpoint, credentials, retries and timeouts.
///
/// ```
/// use s3vfs::store::s3::{S3StoreConfig, StaticCredentials};
/// use std::time::Duration;
///
/// let config = S3StoreConfig::new("my-bucket")
///     .region("eu-west-1")
///     .endpoint_url("http://127.0.0.1:9000")
///     .force_path_style(true)
///     .credentials(StaticCredentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG"))
///     .max_attempts(3)
///     .connect_timeout(Duration::from_secs(1));
/// assert_eq!(config.bucket, "my-bucket");
/// ```
#[derive(Clone, Debug)]
pub struct S3StoreConfig {
    /// Bucket name. Ignored by [`S3Buckets`], which serves every bucket.
    pub bucket: String,
    /// AWS region. `None`: [`DEFAULT_REGION`] with static credentials, otherwise the
    /// default region chain (environment, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store (e.g. `http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint_url: Option<String>,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`. Most
    /// S3-compatible stores need this.
    pub force_path_style: bool,
    /// Named profile of `~/.aws/config` for the default credential and region chains.
    pub profile: Option<String>,
    /// Static credentials. `None`: the SDK's default chain (environment, profile, SSO,
    /// web identity, ECS, instance metadata). With static credentials no other provider
    /// (and in particular no instance-metadata endpoint) is ever consulted.
    pub credentials: Option<StaticCredentials>,
    /// Most attempts per request, first one included (SDK retries), and most consecutive
    /// attempts without progress when resuming a GET body.
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles per retry, with full jitter.
    pub initial_backoff: Duration,
    /// Upper bound of the backoff between two attempts.
    pub max_backoff: Duration,
    /// Time allowed to establish a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed between sending a request and the first byte of the response, per
    /// attempt. `None`: unbounded.
    pub read_timeout: Option<Duration>,
    /// Time allowed for one attempt of a request (headers of the response received).
    /// `None`: unbounded. Keep it above the time a large part upload takes.
    pub operation_attempt_timeout: Option<Duration>,
    /// Time allowed for a request with all its retries. `None`: unbounded.
    pub operation_timeout: Option<Duration>,
    /// Send CRC32 checksums with uploads and validate them on downloads (the SDK's
    /// default). Turn off for stores that reject `aws-chunked` bodies with trailers.
    pub request_checksums: bool,
    /// When upload bodies are covered by the signature (see [`PayloadSigning`]); by
    /// default only over plain HTTP to another host.
    pub payload_signing: PayloadSigning,
    /// What [`ObjectStore::capabilities`] reports: lower it for stores that lack a
    /// feature (e.g. `conditional_writes: false` for Garage, which ignores the headers).
    pub capabilities: Capabilities,
}

impl Default for S3StoreConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            region: None,
            endpoint_url: None,
            force_path_style: false,
            profile: None,
            credentials: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: Some(DEFAULT_READ_TIMEOUT),
            operation_attempt_timeout: None,
            operation_timeout: None,
            request_checksums: true,
            payload_signing: PayloadSigning::Auto,
            capabilities: Capabilities::default(),
        }
    }
}

impl S3StoreConfig {
    /// Defaults for `bucket`.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            ..Self::default()
        }
    }

    /// Sets [`bucket`](Self::bucket).
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// Sets [`region`](Self::region).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets [`endpoint_url`](Self::endpoint_url).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Sets [`force_path_style`](Self::force_path_style).
    pub fn force_path_style(mut self, on: bool) -> Self {
        self.force_path_style = on;
        self
    }

    /// Sets [`profile`](Self::profile).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Sets [`credentials`](Self::credentials).
    pub fn credentials(mut self, credentials: StaticCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts) (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets [`initial_backoff`](Self::initial_backoff).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// Sets [`max_backoff`](Self::max_backoff).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`read_timeout`](Self::read_timeout).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`operation_attempt_timeout`](Self::operation_attempt_timeout).
    pub fn operation_attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.operation_attempt_timeout = timeout;
        self
    }

    /// Sets [`operation_timeout`](Self::operation_timeout).
    pub fn operation_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets [`request_checksums`](Self::request_checksums).
    pub fn request_checksums(mut self, on: bool) -> Self {
        self.request_checksums = on;
        self
    }

    /// Sets [`payload_signing`](Self::payload_signing).
    pub fn payload_signing(mut self, signing: PayloadSigning) -> Self {
        self.payload_signing = signing;
        self
    }

    /// Sets [`capabilities`](Self::capabilities).
    pub fn capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Sets `capabilities.conditional_writes`.
    pub fn conditional_writes(mut self, supported: bool) -> Self {
        self.capabilities.conditional_writes = supported;
        self
    }
}

/// The retry settings this module applies itself (GET body resumption).
#[derive(Clone, Copy, Debug)]
struct ResumePolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl ResumePolicy {
    /// Exponential backoff with full jitter before retry number `retry` (1-based).
    fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let jittered = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling_us);
        Duration::from_micros(jittered)
    }
}

/// Gives every client its own retry quota, so that one store's failures do not use up the
/// retries of another (the SDK's default quota is process-wide per service).
fn next_retry_partition() -> RetryPartition {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    RetryPartition::new(format!("s3vfs-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Builds the one SDK client of a store (or of an [`S3Buckets`]).
async fn build_client(config: &S3StoreConfig) -> StoreResult<Client> {
    let mut builder = match &config.credentials {
        Some(creds) => {
            // Built by hand rather than through aws-config, so that no default provider
            // (environment, profile, instance metadata) is consulted at all.
            let region = config
                .region
                .clone()
                .unwrap_or_else(|| DEFAULT_REGION.to_owned());
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region))
                .credentials_provider(Credentials::new(
                    creds.access_key_id.clone(),
                    creds.secret_access_key.clone(),
                    creds.session_token.clone(),
                    None,
                    "s3vfs-static",
                ))
        }
        None => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(profile) = &config.profile {
                loader = loader.profile_name(profile);
            }
            if let Some(region) = &config.region {
                loader = loader.region(Region::new(region.clone()));
            }
            let sdk_config = loader.load().await;
            if sdk_config.region().is_none() {
                return Err(StoreError::new(
                    StoreErrorKind::InvalidRequest,
                    "no AWS region configured (set one in the store config, AWS_REGION or the profile)",
                ));
            }
            aws_sdk_s3::config::Builder::from(&sdk_config)
        }
    };

    let retry = RetryConfig::standard()
        .with_max_attempts(config.max_attempts.max(1))
        .with_initial_backoff(config.initial_backoff)
        .with_max_backoff(config.max_backoff);
    let mut timeouts = TimeoutConfig::builder().connect_timeout(config.connect_timeout);
    if let Some(t) = config.read_timeout {
        timeouts = timeouts.read_timeout(t);
    }
    if let Some(t) = config.operation_attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    if let Some(t) = config.operation_timeout {
        timeouts = timeouts.operation_timeout(t);
    }
    builder = builder
        .force_path_style(config.force_path_style)
        .retry_config(retry)
        .retry_partition(next_retry_partition())
        .timeout_config(timeouts.build());
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url.clone());
    }
    if !config.request_checksums {
        builder = builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Ok(Client::from_conf(builder.build()))
}

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

/// One bucket of S3 (or of an S3-compatible store) as an [`ObjectStore`].
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
    /// Builds the client for `config.bucket`. Makes no request.
    pub async fn new(config: S3StoreConfig) -> StoreResult<S3Store> {
        if config.bucket.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                "S3StoreConfig::bucket is empty",
            ));
        }
        let client = build_client(&config).await?;
        Ok(Self::with_client(client, config.bucket.clone(), &config))
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
        }
    }

    /// The bucket's name.
    pub fn bucket_name(&self) -> &str {
        &self.bucket
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
        }
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
impl ObjectStore for S3Store {
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
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| map_sdk_error("HeadObject", key.as_str(), e))?;
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
        source: &ObjectKey,
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
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(&upload_id.0)
            .part_number(part_number_i32(key, part_number)?)
            .copy_source(copy_source(&self.bucket, source))
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
            .bucket(&self.bucket)
            .key(dest.as_str())
            .copy_source(copy_source(&self.bucket, &request.source))
            .set_copy_source_if_match(
                request
                    .source_if_match
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

    async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
        debug!(op = "DeleteObject", key = %key, "request");
        let result = self
            .client
            .delete_object()
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
        let client = build_client(&config).await?;
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

    fn bucket(&self, name: &str) -> StoreResult<Arc<dyn ObjectStore>> {
        if name.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                "empty bucket name",
            ));
        }
        Ok(Arc::new(self.store(name)))
    }
}

/// A GET body that resumes after a failure: on a body error or an early end it re-GETs the
/// missing range, pinned to the ETag, after a backoff. `failures` counts consecutive
/// attempts that brought no byte; at `max_attempts` the last error is returned.
struct ResumableBody {
    store: S3Store,
    key: ObjectKey,
    /// The ETag every resumption must match; without one, no resumption is safe.
    etag: Option<ETag>,
    /// The current response body, if a request is open.
    body: Option<SdkByteStream>,
    /// Absolute offset in the object of the next byte `body` yields.
    body_offset: u64,
    /// Absolute offset of the next byte the caller needs.
    pos: u64,
    /// One past the last byte the caller needs.
    end: u64,
    failures: u32,
    done: bool,
}

impl ResumableBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, StoreError>> {
        loop {
            if self.done || self.pos >= self.end {
                self.body = None;
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                match self.reopen().await {
                    Ok(()) => continue,
                    Err(e) => {
                        if let Some(e) = self.fail(e).await {
                            return Some(Err(e));
                        }
                        continue;
                    }
                }
            };
            let error = match body.try_next().await {
                Ok(Some(chunk)) => match self.take(chunk) {
                    Some(piece) => return Some(Ok(piece)),
                    None => continue,
                },
                Ok(None) => StoreError::new(
                    StoreErrorKind::Transient,
                    format!("body ended at byte {} of {}", self.pos, self.end),
                ),
                Err(e) => StoreError::new(
                    StoreErrorKind::Transient,
                    format!(
                        "body failed at byte {}: {}",
                        self.pos,
                        DisplayErrorContext(&e)
                    ),
                ),
            };
            self.body = None;
            if let Some(e) = self.fail(error.with_key(self.key.as_str())).await {
                return Some(Err(e));
            }
        }
    }

    /// The part of `chunk` (which starts at `body_offset`) that lies in `[pos, end)`.
    fn take(&mut self, chunk: Bytes) -> Option<Bytes> {
        let chunk_start = self.body_offset;
        let chunk_len = chunk.len() as u64;
        self.body_offset += chunk_len;
        let from = self.pos.saturating_sub(chunk_start);
        let to = self.end.min(self.body_offset).saturating_sub(chunk_start);
        if from >= to {
            return None;
        }
        // Both bounds are within the chunk, whose length is a usize.
        let piece = chunk.slice(from as usize..to as usize);
        self.pos += piece.len() as u64;
        self.failures = 0;
        Some(piece)
    }

    /// Records a failed attempt: gives up (returning the error) when the error is final or
    /// the attempts are used up, otherwise waits for the backoff and returns `None`.
    async fn fail(&mut self, error: StoreError) -> Option<StoreError> {
        self.failures += 1;
        let policy = self.store.policy;
        if !error.is_retryable() || self.etag.is_none() || self.failures >= policy.max_attempts {
            warn!(op = "GetObject", key = %self.key, pos = self.pos, attempts = self.failures,
                "giving up on body: {error}");
            self.done = true;
            self.body = None;
            return Some(error);
        }
        let delay = policy.backoff(self.failures);
        warn!(op = "GetObject", key = %self.key, pos = self.pos, attempt = self.failures,
            ?delay, "resuming body after: {error}");
        tokio::time::sleep(delay).await;
        None
    }

    /// Re-GETs `[pos, end)` pinned to the ETag.
    async fn reopen(&mut self) -> StoreResult<()> {
        let range = ByteRange::new(self.pos, self.end);
        let out = self
            .store
            .send_get(&self.key, Some(range), self.etag.as_ref())
            .await?;
        let start = match out.content_range() {
            Some(header) => parse_content_range(header).map(|(r, _)| r.start),
            // The store ignored the range: the body starts at byte 0.
            None => Some(0),
        };
        match start {
            Some(start) if start <= self.pos => {
                self.body_offset = start;
                self.body = Some(out.body);
                Ok(())
            }
            _ => Err(StoreError::new(
                StoreErrorKind::Other,
                format!("resumed GET answered {:?}", out.content_range()),
            )
            .with_key(self.key.as_str())),
        }
    }
}

/// Maps an SDK error to a [`StoreError`] for `key` (or bucket/prefix).
fn map_sdk_error<E>(op: &'static str, key: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    // An answer the SDK read an error code from is an ordinary error; one it could not
    // read says so (with what the body holds), whatever its status.
    let unparsable = if err.code().is_none_or(str::is_empty) {
        quirks::unparsable_answer(&err)
    } else {
        None
    };
    let error = match (unparsable, &err) {
        (Some(unparsable), _) => unparsable,
        (None, SdkError::ServiceError(_)) => {
            let code = err.code().filter(|c| !c.is_empty());
            let kind = StoreError::kind_for_code(code.unwrap_or(""), status);
            let mut message = err.message().unwrap_or_default().to_owned();
            if message.is_empty() {
                if let Some(status) = status {
                    message = format!("HTTP {status}");
                }
            }
            let mut e = StoreError::new(kind, message);
            if let Some(code) = code {
                e = e.with_code(code);
            }
            e
        }
        (None, SdkError::TimeoutError(_)) => {
            StoreError::new(StoreErrorKind::Transient, "timed out")
        }
        (None, SdkError::DispatchFailure(failure)) => {
            // I/O errors and timeouts (connection refused, reset, closed before the answer)
            // are worth retrying, and so is what the connector classifies as transient.
            // Anything else (a malformed request, no credentials) is not.
            let kind = match failure.as_other() {
                _ if failure.is_io() || failure.is_timeout() => StoreErrorKind::Transient,
                Some(RetryErrorKind::ThrottlingError) => StoreErrorKind::Throttled,
                Some(RetryErrorKind::TransientError | RetryErrorKind::ServerError) => {
                    StoreErrorKind::Transient
                }
                _ => StoreErrorKind::Other,
            };
            StoreError::new(kind, DisplayErrorContext(&err).to_string())
        }
        (None, SdkError::ResponseError(_)) => StoreError::new(
            StoreErrorKind::Transient,
            DisplayErrorContext(&err).to_string(),
        ),
        (None, _) => StoreError::new(StoreErrorKind::Other, DisplayErrorContext(&err).to_string()),
    };
    let error = if key.is_empty() {
        error
    } else {
        error.with_key(key)
    };
    debug!(op, key, kind = %error.kind, code = ?error.code, "failed");
    error
}

fn missing_field(op: &str, key: &ObjectKey, field: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Other,
        format!("{op} response has no {field}"),
    )
    .with_key(key.as_str())
}

fn build_error(op: &str, key: &ObjectKey, err: aws_sdk_s3::error::BuildError) -> StoreError {
    StoreError::new(StoreErrorKind::InvalidRequest, format!("{op}: {err}")).with_key(key.as_str())
}

fn is_missing_key(e: &StoreError) -> bool {
    e.kind == StoreErrorKind::NotFound
        && !matches!(
            e.code.as_deref(),
            Some("NoSuchBucket") | Some("NoSuchUpload")
        )
}

fn part_number_i32(key: &ObjectKey, part_number: u32) -> StoreResult<i32> {
    i32::try_from(part_number).map_err(|_| {
        StoreError::new(
            StoreErrorKind::InvalidRequest,
            format!("part number {part_number} out of range"),
        )
        .with_key(key.as_str())
    })
}

fn non_negative(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

fn system_time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `None` for STANDARD, so that stores that omit the header and stores that send it agree.
fn storage_class_name(class: Option<&str>) -> Option<String> {
    class
        .filter(|c| !c.is_empty() && *c != "STANDARD")
        .map(str::to_owned)
}

fn user_metadata(metadata: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// Whether `x-amz-restore` (e.g. `ongoing-request="false", expiry-date="…"`) says that a
/// restored copy is available.
fn restore_completed(header: &str) -> bool {
    header
        .split(',')
        .filter_map(|part| part.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("ongoing-request")
                && value.trim().trim_matches('"').eq_ignore_ascii_case("false")
        })
}

/// Parses `bytes first-last/size` into the covered range and the object's size.
fn parse_content_range(header: &str) -> Option<(ByteRange, u64)> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (span, size) = rest.split_once('/')?;
    let size: u64 = size.trim().parse().ok()?;
    let (first, last) = span.trim().split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if first > last || last >= size {
        return None;
    }
    Some((ByteRange::new(first, last + 1), size))
}

/// `x-amz-copy-source`: `bucket/key`, the key percent-encoded except for `/`.
fn copy_source(bucket: &str, key: &ObjectKey) -> String {
    let mut out = String::with_capacity(bucket.len() + 1 + key.as_str().len() * 3);
    out.push_str(bucket);
    out.push('/');
    for &b in key.as_str().as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 0-99/1234"),
            Some((ByteRange::new(0, 100), 1234))
        );
        assert_eq!(
            parse_content_range("bytes 5-5/6"),
            Some((ByteRange::new(5, 6), 6))
        );
        assert_eq!(parse_content_range("bytes */1234"), None);
        assert_eq!(parse_content_range("bytes 7-3/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
    }

    #[test]
    fn restore_header_parses() {
        assert!(restore_completed(
            r#"ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT""#
        ));
        assert!(!restore_completed(r#"ongoing-request="true""#));
        assert!(!restore_completed(""));
    }

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(
            copy_source("b", &ObjectKey::new("dir/a b+c%d/é")),
            "b/dir/a%20b%2Bc%25d/%C3%A9"
        );
    }

    #[test]
    fn backoff_is_bounded() {
        let policy = ResumePolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        };
        for retry in 1..40 {
            assert!(policy.backoff(retry) <= Duration::from_millis(40));
        }
        assert!(policy.backoff(1) <= Duration::from_millis(10));
    }

    #[test]
    fn credentials_debug_hides_secret() {
        let creds = StaticCredentials::new("AKIDEXAMPLE", "very-secret").with_session_token("tok");
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("very-secret"));
        assert!(!shown.contains("tok\""));
    }
}
