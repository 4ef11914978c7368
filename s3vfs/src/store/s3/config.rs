//! Configuration of the S3 backend: credentials (or none), endpoint, region, retries and
//! timeouts, and building the one SDK client a store (or every bucket of an account) uses,
//! in the bucket's own region when none is configured.

use super::access::{BucketAccess, WithBucketAccess};
use crate::store::{Capabilities, PayloadSigning, StoreError, StoreErrorKind, StoreResult};
use aws_sdk_s3::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Builder, Credentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::{debug, info};

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
    /// Bucket name. Ignored by [`S3Buckets`](super::S3Buckets), which serves every bucket.
    pub bucket: String,
    /// AWS region. `None`: without static credentials, the default region chain
    /// (environment, profile, instance metadata); when that has none either (or with
    /// static credentials), the bucket is asked for its region, as Mountpoint does
    /// (HeadBucket's `x-amz-bucket-region`, else GetBucketLocation). When the bucket does
    /// not tell, [`DEFAULT_REGION`] with static credentials or an
    /// [`endpoint_url`](Self::endpoint_url), otherwise building the store fails.
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
    /// Send every request unsigned, without looking up any credentials (the AWS CLI's and
    /// Mountpoint's `--no-sign-request`), for buckets that anyone may read. Takes
    /// precedence over [`credentials`](Self::credentials).
    pub anonymous: bool,
    /// Send `x-amz-request-payer: requester` with every request that takes it (GET,
    /// HEAD, LIST, PUT, multipart, copies, deletes, tags): this account pays for the
    /// requests and the data transfer of a requester-pays bucket, which refuses requests
    /// without it (403).
    pub requester_pays: bool,
    /// The account id (12 digits) that must own the bucket: sent as
    /// `x-amz-expected-bucket-owner` with every request that takes it, so that S3 refuses
    /// (403) any request to a bucket of the same name owned by someone else.
    pub expected_bucket_owner: Option<String>,
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
    /// What [`Backend::capabilities`](crate::store::Backend::capabilities) reports: lower it for stores that lack a
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
            anonymous: false,
            requester_pays: false,
            expected_bucket_owner: None,
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

    /// The bucket and key prefix of an `s3://BUCKET[/PREFIX]` URL, as the AWS CLI takes
    /// them: a configuration for the bucket, and the prefix (empty for the whole bucket).
    pub fn from_url(url: &str) -> StoreResult<(S3StoreConfig, String)> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!("{url:?} is not an s3://BUCKET[/PREFIX] URL"),
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!("{url:?} names no bucket"),
            ));
        }
        Ok((S3StoreConfig::new(bucket), prefix.to_owned()))
    }

    /// A configuration for `bucket` from the environment, as the AWS SDKs read it:
    /// `AWS_ENDPOINT_URL_S3` (else `AWS_ENDPOINT_URL`), `AWS_REGION` (else
    /// `AWS_DEFAULT_REGION`) and `AWS_PROFILE`. With an endpoint, buckets are addressed by
    /// path (what S3-compatible stores need) unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` is
    /// `true`. Credentials stay with the SDK's default chain, which reads `AWS_*` too.
    pub fn from_env(bucket: impl Into<String>) -> S3StoreConfig {
        Self::from_vars(bucket, |name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with `var` for the environment.
    fn from_vars(bucket: impl Into<String>, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut config = S3StoreConfig::new(bucket);
        config.endpoint_url = set("AWS_ENDPOINT_URL_S3").or_else(|| set("AWS_ENDPOINT_URL"));
        config.region = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION"));
        config.profile = set("AWS_PROFILE");
        let virtual_hosted =
            set("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        config.force_path_style = config.endpoint_url.is_some() && !virtual_hosted;
        config
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

    /// Sets [`anonymous`](Self::anonymous).
    pub fn anonymous(mut self, on: bool) -> Self {
        self.anonymous = on;
        self
    }

    /// Sets [`requester_pays`](Self::requester_pays).
    pub fn requester_pays(mut self, on: bool) -> Self {
        self.requester_pays = on;
        self
    }

    /// Sets [`expected_bucket_owner`](Self::expected_bucket_owner).
    pub fn expected_bucket_owner(mut self, account_id: impl Into<String>) -> Self {
        self.expected_bucket_owner = Some(account_id.into());
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
pub(super) struct ResumePolicy {
    pub(super) max_attempts: u32,
    pub(super) initial_backoff: Duration,
    pub(super) max_backoff: Duration,
}

impl ResumePolicy {
    /// The wait before retry number `retry` (1-based).
    pub(super) fn backoff(&self, retry: u32) -> Duration {
        crate::store::backoff::Backoff {
            initial: self.initial_backoff,
            max: self.max_backoff,
        }
        .delay(retry)
    }
}

/// Gives every client its own retry quota, so that one store's failures do not use up the
/// retries of another (the SDK's default quota is process-wide per service).
pub(super) fn next_retry_partition() -> RetryPartition {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    RetryPartition::new(format!("s3vfs-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Builds the one SDK client of a store (or of an [`S3Buckets`], `bucket` `None`). Without
/// a configured region, `bucket` is asked for its own (see [`S3StoreConfig::region`]).
pub(super) async fn build_client(
    config: &S3StoreConfig,
    bucket: Option<&str>,
) -> StoreResult<Client> {
    let (mut builder, region) = credentials_and_region(config).await;
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
    let region = match region {
        Some(region) => region,
        None => detected_region(&builder, config, bucket).await?,
    };
    Ok(Client::from_conf(builder.region(region).build()))
}

/// The SDK configuration with its credentials, and the region if one is configured.
async fn credentials_and_region(config: &S3StoreConfig) -> (Builder, Option<Region>) {
    let configured = config.region.clone().map(Region::new);
    match &config.credentials {
        Some(creds) if !config.anonymous => {
            // Built by hand rather than through aws-config, so that no default provider
            // (environment, profile, instance metadata) is consulted at all.
            let builder = aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .credentials_provider(Credentials::new(
                    creds.access_key_id.clone(),
                    creds.secret_access_key.clone(),
                    creds.session_token.clone(),
                    None,
                    "s3vfs-static",
                ));
            (builder, configured)
        }
        _ => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if config.anonymous {
                // No credentials provider at all: requests go unsigned.
                loader = loader.no_credentials();
            }
            if let Some(profile) = &config.profile {
                loader = loader.profile_name(profile);
            }
            if let Some(region) = configured {
                loader = loader.region(region);
            }
            let sdk_config = loader.load().await;
            let region = sdk_config.region().cloned();
            (Builder::from(&sdk_config), region)
        }
    }
}

/// The region `bucket` says it is in, asked through a client for [`DEFAULT_REGION`] (S3
/// names the right region also when it refuses or redirects a request); when it does not
/// tell, [`DEFAULT_REGION`] for static credentials or an endpoint of an S3-compatible
/// store, which mostly ignore it, and an error otherwise.
async fn detected_region(
    builder: &Builder,
    config: &S3StoreConfig,
    bucket: Option<&str>,
) -> StoreResult<Region> {
    let why = match bucket.filter(|b| !b.is_empty()) {
        Some(bucket) => {
            let client =
                Client::from_conf(builder.clone().region(Region::new(DEFAULT_REGION)).build());
            match ask_bucket_region(&client, bucket, &BucketAccess::new(config)).await {
                Ok(region) => {
                    info!(bucket, region = %region, "no region configured: using the bucket's");
                    return Ok(Region::new(region));
                }
                Err(why) => why,
            }
        }
        None => "no bucket to ask".to_owned(),
    };
    if config.credentials.is_some() || config.endpoint_url.is_some() {
        debug!("no region configured and none detected ({why}): using {DEFAULT_REGION}");
        return Ok(Region::new(DEFAULT_REGION));
    }
    Err(StoreError::new(
        StoreErrorKind::InvalidRequest,
        format!(
            "no AWS region configured (set one in the store config, AWS_REGION or the profile), \
             and none detected: {why}"
        ),
    ))
}

/// The header of S3's answers to HeadBucket (also of its refusals and redirects) that
/// names the bucket's region.
const BUCKET_REGION_HEADER: &str = "x-amz-bucket-region";

/// `bucket`'s region: HeadBucket's `x-amz-bucket-region`, else GetBucketLocation (whose
/// empty answer means us-east-1, and `EU` eu-west-1). `Err` says why neither told.
async fn ask_bucket_region(
    client: &Client,
    bucket: &str,
    access: &BucketAccess,
) -> Result<String, String> {
    let head = client
        .head_bucket()
        .bucket(bucket)
        .with_access(access)
        .send()
        .await;
    let named = match &head {
        Ok(out) => out.bucket_region().map(str::to_owned),
        Err(e) => e
            .raw_response()
            .and_then(|r| r.headers().get(BUCKET_REGION_HEADER))
            .map(str::to_owned),
    };
    if let Some(region) = named.filter(|r| !r.is_empty()) {
        return Ok(region);
    }
    let location = client
        .get_bucket_location()
        .bucket(bucket)
        .with_access(access)
        .send()
        .await
        .map_err(|e| {
            format!(
                "HeadBucket named no region and GetBucketLocation failed: {}",
                DisplayErrorContext(&e)
            )
        })?;
    Ok(match location.location_constraint().map(|c| c.as_str()) {
        None | Some("") => "us-east-1",
        Some("EU") => "eu-west-1",
        Some(other) => other,
    }
    .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_give_bucket_and_prefix() {
        let (config, prefix) = S3StoreConfig::from_url("s3://b/some/prefix/").unwrap();
        assert_eq!(
            (config.bucket.as_str(), prefix.as_str()),
            ("b", "some/prefix/")
        );
        let (config, prefix) = S3StoreConfig::from_url("s3://b").unwrap();
        assert_eq!((config.bucket.as_str(), prefix.as_str()), ("b", ""));
        assert!(S3StoreConfig::from_url("s3:///x").is_err());
        assert!(S3StoreConfig::from_url("https://b/x").is_err());
    }

    #[test]
    fn the_environment_gives_endpoint_region_profile_and_path_style() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let config = S3StoreConfig::from_vars(
            "b",
            env(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_PROFILE", "p"),
            ]),
        );
        assert_eq!(
            config.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.profile.as_deref(), Some("p"));
        assert!(config.force_path_style);
        let config = S3StoreConfig::from_vars(
            "b",
            env(&[
                ("AWS_ENDPOINT_URL", "http://a"),
                ("AWS_ENDPOINT_URL_S3", "http://s3"),
                ("AWS_REGION", "us-west-2"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "TRUE"),
            ]),
        );
        assert_eq!(config.endpoint_url.as_deref(), Some("http://s3"));
        assert_eq!(config.region.as_deref(), Some("us-west-2"));
        assert!(!config.force_path_style);
        let config = S3StoreConfig::from_vars("b", env(&[("AWS_REGION", "")]));
        assert_eq!((config.region, config.endpoint_url), (None, None));
        assert!(!config.force_path_style);
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
