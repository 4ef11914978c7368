//! A real S3 HTTP endpoint on loopback, serving any [`BucketProvider`].
//!
//! [`S3Server`] binds `127.0.0.1:<port>`, checks SigV4 signatures against one key pair
//! ([`ServerCredentials`]) and translates each S3 request into [`Backend`] calls, using
//! the `s3s` crate for HTTP parsing, signatures and XML. Errors go back as the S3 error code
//! and status of their [`StoreErrorKind`], so a client (the real [`S3Store`] in particular)
//! sees what it would see from S3; GET bodies are streamed, and a body stream that fails
//! mid-way aborts the connection, like a dropped connection would.
//!
//! Supported: ListBuckets, HeadBucket, GetBucketLocation, HeadObject, GetObject (Range,
//! If-Match),
//! ListObjectsV2 (with `encoding-type=url`), PutObject, CreateMultipartUpload, UploadPart,
//! UploadPartCopy, CompleteMultipartUpload, AbortMultipartUpload, CopyObject (also across
//! buckets), GetObjectTagging, DeleteObject, DeleteObjects. Everything else answers
//! `NotImplemented`. Requests signed for any region are accepted; HeadBucket and
//! GetBucketLocation name the one [`S3Server::set_region`] sets. Unsigned requests are
//! refused unless [`S3Server::allow_anonymous`] lets them through, as a public bucket does.
//!
//! [`S3Server::record_requests`] keeps every request's operation and headers, so that a
//! test can check what a client sends.
//!
//! [`ServerQuirks`] makes the server answer some requests the way other S3-compatible
//! servers do (a misnamed XML root, as moto and `rclone serve s3`) or not at all after
//! carrying them out (a reply lost on the way), so that a client's tolerance can be tested
//! through the real SDK.
//!
//! Invariant: the server only ever listens on a loopback address.

use crate::pace::PacedStream;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto;
use s3s::service::S3ServiceBuilder;
use s3s::stream::RemainingLength;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use s3vfs::store::{
    storage_class, Backend, BucketProvider, ByteRange, ByteStream, CompletedPart, CopyRequest,
    CopySource, ETag, GetRequest, ListRequest, MetadataDirective, ObjectKey, ObjectMeta,
    PutOptions, S3Buckets, S3Store, S3StoreConfig, ServerSideEncryption, StaticCredentials,
    StoreError, StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};

use crate::fault::Op;
use crate::SingleBucket;

/// Region the test endpoint claims and the client helpers sign for.
pub const TEST_REGION: &str = "us-east-1";

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(10);

/// Most requests [`S3Server::record_requests`] keeps; later ones are not recorded.
pub const MAX_RECORDED_REQUESTS: usize = 100_000;

/// The key pair the server accepts. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCredentials {
    /// Access key id (at least 8 characters, as stores like Garage require).
    pub access_key_id: String,
    /// Secret access key (at least 16 characters).
    pub secret_access_key: String,
}

impl ServerCredentials {
    /// A key pair.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    /// The fixed key pair of tests and demos.
    pub fn test() -> Self {
        Self::new("S3VFSTESTKEY0001", "s3vfs-test-secret-key-0123456789")
    }

    /// The same pair as client credentials.
    pub fn to_static(&self) -> StaticCredentials {
        StaticCredentials::new(&self.access_key_id, &self.secret_access_key)
    }
}

impl fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// A running loopback S3 endpoint. Stops on [`shutdown`](Self::shutdown) or drop.
///
/// ```
/// use s3vfs::store::{ObjectKey, Backend};
/// use s3vfs_testkit::server::{S3Server, ServerCredentials};
/// use s3vfs_testkit::MemBuckets;
/// use std::sync::Arc;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let buckets = MemBuckets::new();
/// buckets.create_bucket("photos").insert("a.jpg", &b"jpeg"[..]);
/// let server = S3Server::start(Arc::new(buckets), ServerCredentials::test()).await.unwrap();
/// let store = server.connect("photos").await.unwrap();
/// assert_eq!(store.head(&ObjectKey::new("a.jpg")).await.unwrap().size, 4);
/// # }
/// ```
pub struct S3Server {
    addr: SocketAddr,
    credentials: ServerCredentials,
    task: Option<JoinHandle<()>>,
    payloads: Arc<PayloadCounters>,
    quirks: ServerQuirks,
    settings: Arc<Settings>,
}

/// One request as the server received it (see [`S3Server::record_requests`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The S3 operation, as S3 names it (`GetObject`, `UploadPartCopy`, …).
    pub operation: String,
    /// Whether it was signed (with any key pair the server accepted); `false` for an
    /// anonymous request.
    pub signed: bool,
    /// Its headers, names in lower case; a repeated header's values joined by `,`.
    pub headers: BTreeMap<String, String>,
}

impl RecordedRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The region of the signature's credential scope (`Credential=KEY/DATE/REGION/s3/…`
    /// in `Authorization`); `None` unsigned.
    pub fn signing_region(&self) -> Option<&str> {
        let authorization = self.header("authorization")?;
        let scope = authorization.split("Credential=").nth(1)?;
        scope.split(['/', ',']).nth(2)
    }
}

/// What the server lets through, names and records; changeable while it runs.
#[derive(Debug)]
struct Settings {
    /// Whether unsigned requests are served.
    anonymous: AtomicBool,
    /// Whether requests are recorded.
    recording: AtomicBool,
    recorded: Mutex<Vec<RecordedRequest>>,
    /// The region HeadBucket and GetBucketLocation name.
    region: Mutex<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            anonymous: AtomicBool::new(false),
            recording: AtomicBool::new(false),
            recorded: Mutex::default(),
            region: Mutex::new(TEST_REGION.to_owned()),
        }
    }
}

impl Settings {
    fn region(&self) -> String {
        self.region
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The server's access check, which `s3s` runs before every operation: records the
/// request, and refuses it unsigned unless anonymous access is on.
struct Access {
    settings: Arc<Settings>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let signed = cx.credentials().is_some();
        if self.settings.recording.load(Ordering::Relaxed) {
            let mut headers = BTreeMap::<String, String>::new();
            for (name, value) in cx.headers() {
                let value = String::from_utf8_lossy(value.as_bytes());
                headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push(',');
                        v.push_str(&value);
                    })
                    .or_insert_with(|| value.into_owned());
            }
            let mut recorded = self.settings.recorded();
            if recorded.len() < MAX_RECORDED_REQUESTS {
                recorded.push(RecordedRequest {
                    operation: cx.s3_op().name().to_owned(),
                    signed,
                    headers,
                });
            }
        }
        if signed || self.settings.anonymous.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(s3s::s3_error!(AccessDenied, "Signature is required"))
        }
    }
}

/// How the bodies of the uploads (PutObject, UploadPart) a server received were signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UploadPayloads {
    /// Uploads whose `x-amz-content-sha256` was the body's SHA-256 (checked by `s3s`).
    pub signed: u64,
    /// Uploads sent as `UNSIGNED-PAYLOAD` (or an unsigned streaming variant).
    pub unsigned: u64,
}

/// Counters behind [`UploadPayloads`].
#[derive(Debug, Default)]
struct PayloadCounters {
    signed: AtomicU64,
    unsigned: AtomicU64,
}

impl PayloadCounters {
    /// Counts one upload by its `x-amz-content-sha256` header.
    fn record(&self, headers: &hyper::HeaderMap) {
        let unsigned = headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("UNSIGNED"));
        let counter = if unsigned {
            &self.unsigned
        } else {
            &self.signed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for S3Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Server")
            .field("addr", &self.addr)
            .field("running", &self.task.is_some())
            .finish()
    }
}

/// An S3 endpoint for a test ([`S3Server::compat_or_loopback`]).
#[derive(Debug)]
pub struct TestEndpoint {
    /// Its URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The bucket to use.
    pub bucket: String,
    /// The key pair it accepts.
    pub credentials: ServerCredentials,
    /// The loopback server, when no independent one was named: kept running as long as
    /// this is.
    pub server: Option<S3Server>,
}

impl S3Server {
    /// Serves `provider` on `127.0.0.1` at an ephemeral port.
    pub async fn start(
        provider: Arc<dyn BucketProvider>,
        credentials: ServerCredentials,
    ) -> io::Result<S3Server> {
        Self::start_on(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            provider,
            credentials,
        )
        .await
    }

    /// Where a test that needs an S3 server over HTTP runs: the independent server
    /// `S3VFS_COMPAT_ENDPOINT` names (`scripts/local-s3.sh start moto DIR`, then
    /// `source DIR/env`, which also sets `S3VFS_COMPAT_BUCKET`, `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`), else this server over an in-memory bucket `bucket`, kept
    /// running by the returned [`TestEndpoint`].
    pub async fn compat_or_loopback(bucket: &str) -> io::Result<TestEndpoint> {
        let Ok(url) = std::env::var("S3VFS_COMPAT_ENDPOINT") else {
            let server = Self::serve_store(bucket, Arc::new(crate::MemStore::new())).await?;
            return Ok(TestEndpoint {
                url: server.endpoint_url(),
                bucket: bucket.to_owned(),
                credentials: server.credentials().clone(),
                server: Some(server),
            });
        };
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("S3VFS_COMPAT_ENDPOINT is set, so {name} must be too (DIR/env)"),
                )
            })
        };
        Ok(TestEndpoint {
            url,
            bucket: var("S3VFS_COMPAT_BUCKET")?,
            credentials: ServerCredentials::new(
                var("AWS_ACCESS_KEY_ID")?,
                var("AWS_SECRET_ACCESS_KEY")?,
            ),
            server: None,
        })
    }

    /// Serves one store as bucket `bucket` (see [`SingleBucket`]), with the test key pair.
    pub async fn serve_store(bucket: &str, store: Arc<dyn Backend>) -> io::Result<S3Server> {
        Self::start(
            Arc::new(SingleBucket::new(bucket, store)),
            ServerCredentials::test(),
        )
        .await
    }

    /// Serves `provider` on `addr`, which must be a loopback address (port 0: any free
    /// port).
    pub async fn start_on(
        addr: SocketAddr,
        provider: Arc<dyn BucketProvider>,
        credentials: ServerCredentials,
    ) -> io::Result<S3Server> {
        Self::start_paced(addr, provider, credentials, None).await
    }

    /// Like [`start_on`](Self::start_on), with each connection's reads and writes capped
    /// at `bytes_per_sec` each ([`PacedStream`]; `None`: as fast as loopback goes), as
    /// one connection to S3 is.
    pub async fn start_paced(
        addr: SocketAddr,
        provider: Arc<dyn BucketProvider>,
        credentials: ServerCredentials,
        bytes_per_sec: Option<u64>,
    ) -> io::Result<S3Server> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing to serve S3 on non-loopback address {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let payloads = Arc::new(PayloadCounters::default());
        let quirks = ServerQuirks::default();
        let settings = Arc::new(Settings::default());
        let mut builder = S3ServiceBuilder::new(StoreService {
            provider,
            payloads: Arc::clone(&payloads),
            quirks: quirks.clone(),
            settings: Arc::clone(&settings),
        });
        builder.set_auth(SimpleAuth::from_single(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
        ));
        builder.set_access(Access {
            settings: Arc::clone(&settings),
        });
        let service = QuirkService {
            inner: builder.build(),
            quirks: quirks.clone(),
        };
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _peer)) => {
                            // Small responses must not wait for Nagle's algorithm.
                            let _ = stream.set_nodelay(true);
                            let service = service.clone();
                            connections.spawn(async move {
                                let builder = ConnBuilder::new(TokioExecutor::new());
                                let served = match bytes_per_sec {
                                    Some(rate) => {
                                        let io = TokioIo::new(PacedStream::new(stream, rate));
                                        builder.serve_connection(io, service).await
                                    }
                                    None => {
                                        builder.serve_connection(TokioIo::new(stream), service).await
                                    }
                                };
                                if let Err(e) = served {
                                    debug!("S3 test server connection ended: {e}");
                                }
                            });
                        }
                        Err(e) => {
                            warn!("S3 test server accept failed: {e}");
                            tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(S3Server {
            addr,
            credentials,
            task: Some(task),
            payloads,
            quirks,
            settings,
        })
    }

    /// Serve unsigned requests too (`true`), as a bucket anyone may read does, or refuse
    /// them with `AccessDenied` (`false`, the default). Signed ones must always be signed
    /// with the server's key pair.
    pub fn allow_anonymous(&self, on: bool) {
        self.settings.anonymous.store(on, Ordering::Relaxed);
    }

    /// Start (`true`) or stop recording every request the server receives (its operation
    /// and headers, up to [`MAX_RECORDED_REQUESTS`]); off at first. Starting drops what
    /// was recorded before.
    pub fn record_requests(&self, on: bool) {
        if on {
            self.settings.recorded().clear();
        }
        self.settings.recording.store(on, Ordering::Relaxed);
    }

    /// The requests recorded so far, in the order the server received them.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.settings.recorded().clone()
    }

    /// The region HeadBucket (`x-amz-bucket-region`) and GetBucketLocation name for every
    /// bucket ([`TEST_REGION`] at first).
    pub fn set_region(&self, region: &str) {
        *self
            .settings
            .region
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = region.to_owned();
    }

    /// The answers this server gets wrong on purpose (none at first).
    pub fn quirks(&self) -> &ServerQuirks {
        &self.quirks
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The key pair the server accepts.
    pub fn credentials(&self) -> &ServerCredentials {
        &self.credentials
    }

    /// How the uploads received so far were signed.
    pub fn upload_payloads(&self) -> UploadPayloads {
        UploadPayloads {
            signed: self.payloads.signed.load(Ordering::Relaxed),
            unsigned: self.payloads.unsigned.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting and drops every open connection. Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// A client configuration for `bucket` on this server: its endpoint, path-style
    /// addressing, region [`TEST_REGION`], the server's key pair, and short backoffs so
    /// that tests with injected failures run fast.
    pub fn store_config(&self, bucket: &str) -> S3StoreConfig {
        S3StoreConfig::new(bucket)
            .endpoint_url(self.endpoint_url())
            .region(TEST_REGION)
            .force_path_style(true)
            .credentials(self.credentials.to_static())
            .initial_backoff(Duration::from_millis(5))
            .max_backoff(Duration::from_millis(100))
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Some(Duration::from_secs(10)))
    }

    /// An [`S3Store`] for `bucket` on this server, configured by
    /// [`store_config`](Self::store_config).
    pub async fn connect(&self, bucket: &str) -> StoreResult<S3Store> {
        S3Store::new(self.store_config(bucket)).await
    }

    /// An [`S3Buckets`] for every bucket of this server, configured by
    /// [`store_config`](Self::store_config).
    pub async fn connect_buckets(&self) -> StoreResult<S3Buckets> {
        S3Buckets::new(self.store_config("")).await
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers the server gets wrong on purpose, like some S3-compatible servers, to test a
/// client's tolerance. Clones share the rules; they can be changed while the server runs.
///
/// ```
/// use s3vfs_testkit::fault::Op;
/// use s3vfs_testkit::server::ServerQuirks;
///
/// let quirks = ServerQuirks::default();
/// // moto 5.2.0's answer to CompleteMultipartUpload.
/// quirks.rename_root(Op::CompleteMultipart, "CompleteMultipartUploadResponse");
/// // A reply lost after the object was stored.
/// quirks.drop_replies(Op::Put, 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerQuirks {
    rules: Arc<Mutex<QuirkRules>>,
}

#[derive(Debug, Default)]
struct QuirkRules {
    /// The XML root element each operation's successful answers get instead of S3's.
    roots: BTreeMap<Op, String>,
    /// How many more successful requests of each operation go unanswered.
    drops: BTreeMap<Op, u64>,
    /// Replies dropped so far.
    dropped: u64,
    /// Whether HeadBucket leaves out `x-amz-bucket-region`.
    hide_bucket_region: bool,
}

impl ServerQuirks {
    /// Successful answers to `op` get the XML root element `root` instead of S3's (e.g.
    /// `CompleteMultipartUploadResponse` for [`Op::CompleteMultipart`], as moto 5.2.0;
    /// `InitiateMultipartUpload` for [`Op::CreateMultipart`], as `rclone serve s3`).
    pub fn rename_root(&self, op: Op, root: &str) {
        self.lock().roots.insert(op, root.to_owned());
    }

    /// The next `k` requests of `op` that succeed are carried out, then the connection is
    /// closed instead of answering: a reply lost on the way. The client's retry sees the
    /// result of the first attempt.
    pub fn drop_replies(&self, op: Op, k: u64) {
        self.lock().drops.insert(op, k);
    }

    /// HeadBucket answers without `x-amz-bucket-region`, as some S3-compatible servers
    /// do, so that a client looking for the region has to ask GetBucketLocation.
    pub fn hide_bucket_region(&self) {
        self.lock().hide_bucket_region = true;
    }

    /// How many replies were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Back to S3's answers.
    pub fn clear(&self) {
        let mut rules = self.lock();
        rules.roots.clear();
        rules.drops.clear();
        rules.hide_bucket_region = false;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuirkRules> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies the rules for `op` to a response of the real service.
    async fn apply(&self, op: Op, response: s3s::HttpResponse) -> io::Result<s3s::HttpResponse> {
        if !response.status().is_success() {
            return Ok(response);
        }
        let root = {
            let mut rules = self.lock();
            if let Some(left) = rules.drops.get_mut(&op).filter(|left| **left > 0) {
                *left -= 1;
                rules.dropped += 1;
                return Err(io::Error::other(format!("{op} reply dropped on purpose")));
            }
            rules.roots.get(&op).cloned()
        };
        let Some(root) = root else {
            return Ok(response);
        };
        let (mut parts, mut body) = response.into_parts();
        let bytes = body
            .store_all_limited(QUIRK_BODY_LIMIT)
            .await
            .map_err(io::Error::other)?;
        let renamed = rename_xml_root(&String::from_utf8_lossy(&bytes), &root);
        parts.headers.remove(hyper::header::CONTENT_LENGTH);
        Ok(s3s::HttpResponse::from_parts(
            parts,
            s3s::Body::from(renamed),
        ))
    }
}

/// Largest answer body [`ServerQuirks`] rewrites (XML answers are small).
const QUIRK_BODY_LIMIT: usize = 1024 * 1024;

/// `xml` with its root element (start and end tag) renamed to `root`.
fn rename_xml_root(xml: &str, root: &str) -> String {
    let mut search = 0;
    // Skip the declaration and comments: the root is the first tag starting with a name.
    while let Some(at) = xml[search..].find('<').map(|i| search + i) {
        let rest = &xml[at + 1..];
        if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let name_len = rest
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .unwrap_or(rest.len());
            let old = &rest[..name_len];
            let closing = format!("</{old}>");
            let mut out = format!("{}<{root}{}", &xml[..at], &rest[name_len..]);
            if let Some(end) = out.rfind(&closing) {
                out.replace_range(end..end + closing.len(), &format!("</{root}>"));
            }
            return out;
        }
        search = at + 1;
    }
    xml.to_owned()
}

/// The operation of an S3 request, from its method, query and headers (only what
/// [`ServerQuirks`] needs to tell apart).
fn request_op<B>(req: &hyper::Request<B>) -> Option<Op> {
    let has = |name: &str| {
        req.uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    let copy = req.headers().contains_key("x-amz-copy-source");
    let method = req.method();
    if method == hyper::Method::POST && has("uploads") {
        Some(Op::CreateMultipart)
    } else if method == hyper::Method::POST && has("uploadId") {
        Some(Op::CompleteMultipart)
    } else if method == hyper::Method::PUT && has("partNumber") {
        Some(if copy {
            Op::UploadPartCopy
        } else {
            Op::UploadPart
        })
    } else if method == hyper::Method::PUT {
        Some(if copy { Op::Copy } else { Op::Put })
    } else {
        None
    }
}

/// The `s3s` service behind [`ServerQuirks`].
#[derive(Clone)]
struct QuirkService {
    inner: s3s::service::S3Service,
    quirks: ServerQuirks,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for QuirkService {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let op = request_op(&req);
        let inner = self.inner.clone();
        let quirks = self.quirks.clone();
        Box::pin(async move {
            let response = hyper::service::Service::call(&inner, req).await?;
            match op {
                Some(op) => quirks
                    .apply(op, response)
                    .await
                    .map_err(|e| s3s::HttpError::new(Box::new(e))),
                None => Ok(response),
            }
        })
    }
}

/// The `s3s` service: every S3 operation becomes calls on the provider's stores.
struct StoreService {
    provider: Arc<dyn BucketProvider>,
    payloads: Arc<PayloadCounters>,
    quirks: ServerQuirks,
    settings: Arc<Settings>,
}

impl StoreService {
    /// The source of a copy into bucket `dest_bucket`: `x-amz-copy-source` (a bucket this
    /// server has) and `x-amz-copy-source-if-match`.
    fn copy_source(
        &self,
        dest_bucket: &str,
        header: &dto::CopySource,
        if_match: Option<dto::ETagCondition>,
    ) -> S3Result<CopySource> {
        let (bucket, key) = copy_source(header)?;
        let source = if bucket == dest_bucket {
            CopySource::new(key)
        } else {
            self.store(&bucket)?;
            CopySource::in_bucket(bucket, key)
        };
        let pin = match if_match {
            Some(dto::ETagCondition::ETag(tag)) => Some(ETag::new(tag.value())),
            _ => None,
        };
        Ok(source.pinned(pin))
    }

    /// `NoSuchBucket` unless the provider lists `bucket`.
    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let names = self.provider.list_buckets().await.map_err(s3_error)?;
        if names.iter().any(|name| name == bucket) {
            Ok(())
        } else {
            Err(S3Error::new(S3ErrorCode::NoSuchBucket))
        }
    }

    fn store(&self, bucket: &str) -> S3Result<Arc<dyn Backend>> {
        self.provider.bucket(bucket).map_err(|e| {
            if e.kind == StoreErrorKind::NotFound {
                s3_error(e.with_code("NoSuchBucket"))
            } else {
                s3_error(e)
            }
        })
    }
}

#[async_trait::async_trait]
impl S3 for StoreService {
    async fn list_buckets(
        &self,
        _req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let names = self.provider.list_buckets().await.map_err(s3_error)?;
        let buckets = names
            .into_iter()
            .map(|name| dto::Bucket {
                name: Some(name),
                creation_date: Some(dto::Timestamp::from(SystemTime::UNIX_EPOCH)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        let hidden = self.quirks.lock().hide_bucket_region;
        Ok(S3Response::new(dto::HeadBucketOutput {
            bucket_region: (!hidden).then(|| self.settings.region()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        // As S3: no constraint for us-east-1.
        let region = self.settings.region();
        Ok(S3Response::new(dto::GetBucketLocationOutput {
            location_constraint: (region != "us-east-1")
                .then(|| dto::BucketLocationConstraint::from(region)),
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let tags = store
            .get_tags(&ObjectKey::new(input.key))
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set: tags
                .into_iter()
                .map(|(key, value)| dto::Tag {
                    key: Some(key),
                    value: Some(value),
                })
                .collect(),
            version_id: None,
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let meta = store.head(&key).await.map_err(s3_error)?;
        if let Some(dto::ETagCondition::ETag(want)) = &input.if_match {
            if meta.etag.as_ref() != Some(&ETag::new(want.value())) {
                return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
            }
        }
        Ok(S3Response::new(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(to_i64(meta.size)),
            content_type: meta.content_type.clone(),
            e_tag: meta.etag.as_ref().map(to_dto_etag),
            last_modified: Some(dto::Timestamp::from(meta.last_modified)),
            metadata: user_metadata(&meta),
            restore: restore_header(&meta),
            storage_class: meta.storage_class.clone().map(dto::StorageClass::from),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let range = match input.range {
            None => None,
            Some(dto::Range::Int { first, last }) => Some(ByteRange::new(
                first,
                last.map_or(u64::MAX, |l| l.saturating_add(1)),
            )),
            Some(dto::Range::Suffix { length }) => {
                let size = store.head(&key).await.map_err(s3_error)?.size;
                if length == 0 {
                    return Err(S3Error::new(S3ErrorCode::InvalidRange));
                }
                Some(ByteRange::new(size.saturating_sub(length), size))
            }
        };
        let if_match = match input.if_match {
            Some(dto::ETagCondition::ETag(tag)) => Some(ETag::new(tag.value())),
            Some(dto::ETagCondition::Any) | None => None,
        };
        let response = store
            .get(GetRequest {
                key,
                range,
                if_match,
            })
            .await
            .map_err(s3_error)?;
        let meta = &response.meta;
        let served = response.range;
        let content_range = (range.is_some() && !served.is_empty())
            .then(|| format!("bytes {}-{}/{}", served.start, served.end - 1, meta.size));
        let output = dto::GetObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(to_i64(served.len())),
            content_range,
            content_type: meta.content_type.clone(),
            e_tag: meta.etag.as_ref().map(to_dto_etag),
            last_modified: Some(dto::Timestamp::from(meta.last_modified)),
            metadata: user_metadata(meta),
            restore: restore_header(meta),
            storage_class: meta.storage_class.clone().map(dto::StorageClass::from),
            body: Some(dto::StreamingBlob::new(BodyStream::new(
                response.body,
                served.len(),
            ))),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let url_encoded = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == dto::EncodingType::URL);
        let request = ListRequest {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            continuation_token: input.continuation_token.clone(),
            max_keys: input.max_keys.map(|n| u32::try_from(n).unwrap_or(0)),
            start_after: input.start_after.clone(),
        };
        let page = store.list(request).await.map_err(s3_error)?;
        let encode = |s: &str| {
            if url_encoded {
                url_encode(s)
            } else {
                s.to_owned()
            }
        };
        let contents: Vec<dto::Object> = page
            .objects
            .iter()
            .map(|o| dto::Object {
                key: Some(encode(o.key.as_str())),
                size: Some(to_i64(o.size)),
                last_modified: Some(dto::Timestamp::from(o.last_modified)),
                e_tag: o.etag.as_ref().map(to_dto_etag),
                storage_class: Some(dto::ObjectStorageClass::from(
                    o.storage_class
                        .clone()
                        .unwrap_or_else(|| "STANDARD".to_owned()),
                )),
                ..Default::default()
            })
            .collect();
        let common_prefixes: Vec<dto::CommonPrefix> = page
            .common_prefixes
            .iter()
            .map(|p| dto::CommonPrefix {
                prefix: Some(encode(p)),
            })
            .collect();
        let key_count = contents.len() + common_prefixes.len();
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode(input.prefix.as_deref().unwrap_or(""))),
            delimiter: input.delimiter.as_deref().map(encode),
            start_after: input.start_after.as_deref().map(encode),
            max_keys: Some(input.max_keys.unwrap_or(1000)),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.is_truncated),
            next_continuation_token: page.next_continuation_token,
            encoding_type: input.encoding_type,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        self.payloads.record(&req.headers);
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let mut options = put_options(
            input.metadata,
            input.content_type,
            input.storage_class,
            input.server_side_encryption,
            input.ssekms_key_id,
        );
        options.tags = parse_tagging(input.tagging.as_deref())?;
        options.condition = write_condition(input.if_match, input.if_none_match)?;
        let body = collect_body(input.body, input.content_length).await?;
        let result = store.put(&key, body, options).await.map_err(s3_error)?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: result.etag.as_ref().map(to_dto_etag),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let mut options = put_options(
            input.metadata,
            input.content_type,
            input.storage_class,
            input.server_side_encryption,
            input.ssekms_key_id,
        );
        options.tags = parse_tagging(input.tagging.as_deref())?;
        let upload_id = store
            .create_multipart(&key, options)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(key.into_string()),
            upload_id: Some(upload_id.0),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.payloads.record(&req.headers);
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let part_number = part_number(input.part_number)?;
        let body = collect_body(input.body, input.content_length).await?;
        let part = store
            .upload_part(&key, &UploadId(input.upload_id), part_number, body)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(to_dto_etag(&part.etag)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let upload_id = UploadId(input.upload_id);
        let part_number = part_number(input.part_number)?;
        let source = self.copy_source(
            &input.bucket,
            &input.copy_source,
            input.copy_source_if_match,
        )?;
        let range = input
            .copy_source_range
            .as_deref()
            .map(parse_copy_source_range)
            .transpose()?;
        let part = store
            .upload_part_copy(&key, &upload_id, part_number, &source, range)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(to_dto_etag(&part.etag)),
                last_modified: Some(dto::Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let key = ObjectKey::new(input.key);
        let condition = write_condition(input.if_match, input.if_none_match)?;
        let mut parts = Vec::new();
        for part in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let (Some(number), Some(etag)) = (part.part_number, part.e_tag) else {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidPart,
                    "a part lacks its number or ETag",
                ));
            };
            parts.push(CompletedPart {
                part_number: part_number(number)?,
                etag: ETag::new(etag.value()),
            });
        }
        let result = store
            .complete_multipart(&key, &UploadId(input.upload_id), parts, condition)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(key.into_string()),
            e_tag: result.etag.as_ref().map(to_dto_etag),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        store
            .abort_multipart(&ObjectKey::new(input.key), &UploadId(input.upload_id))
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        // s3s 0.14 does not parse the destination conditions of CopyObject: read them here.
        let if_match = header_condition(&req.headers, "if-match")?;
        let if_none_match = header_condition(&req.headers, "if-none-match")?;
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let dest = ObjectKey::new(input.key);
        let source = self.copy_source(
            &input.bucket,
            &input.copy_source,
            input.copy_source_if_match,
        )?;
        let replace = input.metadata_directive.as_ref().is_some_and(|d| {
            d.as_str()
                .eq_ignore_ascii_case(dto::MetadataDirective::REPLACE)
        });
        let replace_tags = input.tagging_directive.as_ref().is_some_and(|d| {
            d.as_str()
                .eq_ignore_ascii_case(dto::TaggingDirective::REPLACE)
        });
        let metadata = if replace {
            let mut options = put_options(
                input.metadata,
                input.content_type,
                input.storage_class,
                input.server_side_encryption,
                input.ssekms_key_id,
            );
            if replace_tags {
                options.tags = parse_tagging(input.tagging.as_deref())?;
            }
            MetadataDirective::Replace(options)
        } else {
            MetadataDirective::Copy
        };
        let condition = write_condition(if_match, if_none_match)?;
        let request = CopyRequest {
            source,
            dest,
            metadata,
            condition,
        };
        let etag = store.copy(request).await.map_err(s3_error)?.etag;
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: etag.as_ref().map(to_dto_etag),
                last_modified: Some(dto::Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        store
            .delete(&ObjectKey::new(input.key))
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let input = req.input;
        let store = self.store(&input.bucket)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let keys: Vec<ObjectKey> = input
            .delete
            .objects
            .into_iter()
            .map(|o| ObjectKey::new(o.key))
            .collect();
        let failures = store.delete_many(keys.clone()).await.map_err(s3_error)?;
        let errors: Vec<dto::Error> = failures
            .iter()
            .map(|f| {
                let code = s3_code(&f.error);
                dto::Error {
                    key: Some(f.key.as_str().to_owned()),
                    code: Some(code.as_str().to_owned()),
                    message: Some(f.error.message.clone()),
                    ..Default::default()
                }
            })
            .collect();
        let deleted = if quiet {
            Vec::new()
        } else {
            keys.into_iter()
                .filter(|k| !failures.iter().any(|f| &f.key == k))
                .map(|k| dto::DeletedObject {
                    key: Some(k.into_string()),
                    ..Default::default()
                })
                .collect()
        };
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}

/// A store's GET body as an `s3s` body of known length.
///
/// If the store's stream fails or ends early, the bytes produced so far are flushed to the
/// client first (hyper only flushes its write buffer when the body is not ready), then the
/// error makes hyper drop the connection: the client sees the headers and part of the
/// body, exactly like a connection dropped mid-transfer.
struct BodyStream {
    // Behind a mutex only because `s3s` wants `Sync` streams; `poll_next` has `&mut`
    // access and never locks.
    inner: Mutex<ByteStream>,
    remaining: u64,
    /// An error held back for one poll, so that hyper flushes first.
    failure: Option<s3s::StdError>,
    finished: bool,
}

impl BodyStream {
    fn new(inner: ByteStream, length: u64) -> Self {
        Self {
            inner: Mutex::new(inner),
            remaining: length,
            failure: None,
            finished: false,
        }
    }

    /// Holds `error` back and asks to be polled again right away.
    fn fail_after_flush(
        &mut self,
        error: s3s::StdError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<<Self as Stream>::Item>> {
        self.failure = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(error) = this.failure.take() {
            this.finished = true;
            return Poll::Ready(Some(Err(error)));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        let inner = this.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        match inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => this.fail_after_flush(Box::new(e), cx),
            Poll::Ready(None) if this.remaining > 0 => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("object body ended {} bytes early", this.remaining),
                );
                this.fail_after_flush(Box::new(e), cx)
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
        }
    }
}

impl s3s::stream::ByteStream for BodyStream {
    fn remaining_length(&self) -> RemainingLength {
        match usize::try_from(self.remaining) {
            Ok(n) => RemainingLength::new_exact(n),
            Err(_) => RemainingLength::unknown(),
        }
    }
}

/// The S3 error code for a store error: its own code when it is a known S3 code of the
/// same kind, the kind's usual code otherwise.
fn s3_code(e: &StoreError) -> S3ErrorCode {
    let own = e
        .code
        .as_deref()
        .filter(|c| {
            StoreError::kind_for_code(c, None) == e.kind || e.kind == StoreErrorKind::InvalidRequest
        })
        .and_then(|c| S3ErrorCode::from_bytes(c.as_bytes()))
        .filter(|c| !matches!(c, S3ErrorCode::Custom(_)));
    if let Some(code) = own {
        return code;
    }
    match e.kind {
        StoreErrorKind::NotFound => S3ErrorCode::NoSuchKey,
        StoreErrorKind::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        StoreErrorKind::Throttled => S3ErrorCode::SlowDown,
        StoreErrorKind::Transient | StoreErrorKind::Other => S3ErrorCode::InternalError,
        StoreErrorKind::AccessDenied => S3ErrorCode::AccessDenied,
        StoreErrorKind::Archived => S3ErrorCode::InvalidObjectState,
        StoreErrorKind::InvalidRange => S3ErrorCode::InvalidRange,
        StoreErrorKind::InvalidRequest => S3ErrorCode::InvalidRequest,
    }
}

/// A store error as the S3 error a client would get from S3.
fn s3_error(e: StoreError) -> S3Error {
    let code = s3_code(&e);
    let status = code.status_code().unwrap_or(match e.kind {
        StoreErrorKind::InvalidRequest => hyper::StatusCode::BAD_REQUEST,
        _ => hyper::StatusCode::INTERNAL_SERVER_ERROR,
    });
    debug!(code = code.as_str(), key = ?e.key, "S3 test server answers an error");
    let mut error = S3Error::with_message(code, e.message);
    error.set_status_code(status);
    error
}

fn bad_request(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::with_message(code, message.into())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .map_err(|_| bad_request(S3ErrorCode::InvalidArgument, format!("part number {n}")))
}

fn to_dto_etag(tag: &ETag) -> dto::ETag {
    dto::ETag::parse_http_header(tag.as_str().as_bytes())
        .unwrap_or_else(|_| dto::ETag::Strong(tag.as_str().trim_matches('"').to_owned()))
}

fn user_metadata(meta: &ObjectMeta) -> Option<dto::Metadata> {
    (!meta.user_metadata.is_empty()).then(|| {
        meta.user_metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// `x-amz-restore` for a restored archived object.
fn restore_header(meta: &ObjectMeta) -> Option<String> {
    (storage_class::is_archived(meta.storage_class.as_deref()) && meta.restored)
        .then(|| r#"ongoing-request="false""#.to_owned())
}

fn put_options(
    metadata: Option<dto::Metadata>,
    content_type: Option<String>,
    storage_class: Option<dto::StorageClass>,
    sse: Option<dto::ServerSideEncryption>,
    kms_key_id: Option<String>,
) -> PutOptions {
    let sse = sse.map(|s| {
        if s.as_str() == dto::ServerSideEncryption::AES256 {
            ServerSideEncryption::S3
        } else {
            ServerSideEncryption::Kms { key_id: kms_key_id }
        }
    });
    PutOptions {
        user_metadata: metadata
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        content_type,
        storage_class: storage_class
            .map(|c| c.as_str().to_owned())
            .filter(|c| c != "STANDARD"),
        sse,
        tags: BTreeMap::new(),
        condition: WriteCondition::None,
    }
}

/// The tags of an `x-amz-tagging` header: `key=value` pairs joined by `&`, URL-encoded.
fn parse_tagging(header: Option<&str>) -> S3Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for pair in header.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            percent_decode(text)
                .ok_or_else(|| s3s::s3_error!(InvalidArgument, "bad x-amz-tagging: {header:?}"))
        };
        tags.insert(decode(key)?, decode(value)?);
    }
    Ok(tags)
}

/// `%XX` escapes (and `+` as a space, as forms have it) decoded; `None` for a bad escape
/// or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The write condition of `If-Match` / `If-None-Match` (S3 accepts only `*` for the
/// latter).
fn write_condition(
    if_match: Option<dto::ETagCondition>,
    if_none_match: Option<dto::ETagCondition>,
) -> S3Result<WriteCondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(WriteCondition::None),
        (Some(dto::ETagCondition::ETag(tag)), None) => {
            Ok(WriteCondition::IfMatch(ETag::new(tag.value())))
        }
        (None, Some(dto::ETagCondition::Any)) => Ok(WriteCondition::IfNoneMatch),
        _ => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "only If-Match: <etag> or If-None-Match: * are supported on writes",
        )),
    }
}

fn header_condition(
    headers: &hyper::HeaderMap,
    name: &str,
) -> S3Result<Option<dto::ETagCondition>> {
    headers
        .get(name)
        .map(|v| {
            dto::ETagCondition::parse_http_header(v.as_bytes()).map_err(|_| {
                bad_request(
                    S3ErrorCode::InvalidArgument,
                    format!("invalid {name} header"),
                )
            })
        })
        .transpose()
}

/// The bucket and key of `x-amz-copy-source`.
fn copy_source(source: &dto::CopySource) -> S3Result<(String, ObjectKey)> {
    match source {
        dto::CopySource::Bucket {
            bucket,
            key,
            version_id: None,
        } => Ok((bucket.to_string(), ObjectKey::new(key.to_string()))),
        _ => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "only bucket/key copy sources without versionId are supported",
        )),
    }
}

/// `bytes=first-last` of `x-amz-copy-source-range`.
fn parse_copy_source_range(header: &str) -> S3Result<ByteRange> {
    let invalid = || {
        bad_request(
            S3ErrorCode::InvalidArgument,
            format!("invalid copy source range {header:?}"),
        )
    };
    let span = header.trim().strip_prefix("bytes=").ok_or_else(invalid)?;
    let (first, last) = span.split_once('-').ok_or_else(invalid)?;
    let first: u64 = first.trim().parse().map_err(|_| invalid())?;
    let last: u64 = last.trim().parse().map_err(|_| invalid())?;
    if first > last {
        return Err(invalid());
    }
    Ok(ByteRange::new(first, last.saturating_add(1)))
}

/// Reads a request body whole (the store API takes `Bytes`).
async fn collect_body(body: Option<dto::StreamingBlob>, length: Option<i64>) -> S3Result<Bytes> {
    let Some(mut body) = body else {
        return Ok(Bytes::new());
    };
    let capacity = length.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            S3Error::with_message(S3ErrorCode::IncompleteBody, format!("reading body: {e}"))
        })?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Percent-encoding of `encoding-type=url` listings: all but unreserved characters and
/// `/`.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
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
    fn copy_source_range_parses() {
        assert_eq!(
            parse_copy_source_range("bytes=0-9").unwrap(),
            ByteRange::new(0, 10)
        );
        assert!(parse_copy_source_range("bytes=9-0").is_err());
        assert!(parse_copy_source_range("0-9").is_err());
    }

    #[test]
    fn xml_roots_are_renamed() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="x"><ETag>"e"</ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(
            rename_xml_root(xml, "CompleteMultipartUploadResponse"),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResponse xmlns="x"><ETag>"e"</ETag></CompleteMultipartUploadResponse>"#
        );
        assert_eq!(rename_xml_root("<A/>", "B"), "<B/>");
        assert_eq!(rename_xml_root("no xml", "B"), "no xml");
    }

    #[test]
    fn requests_are_told_apart() {
        let req = |method: &str, uri: &str, copy: bool| {
            let mut builder = hyper::Request::builder().method(method).uri(uri);
            if copy {
                builder = builder.header("x-amz-copy-source", "b/src");
            }
            builder.body(()).unwrap()
        };
        assert_eq!(
            request_op(&req("POST", "/b/k?uploads", false)),
            Some(Op::CreateMultipart)
        );
        assert_eq!(
            request_op(&req("POST", "/b/k?uploadId=1", false)),
            Some(Op::CompleteMultipart)
        );
        assert_eq!(
            request_op(&req("PUT", "/b/k?partNumber=1&uploadId=1", false)),
            Some(Op::UploadPart)
        );
        assert_eq!(
            request_op(&req(
                "PUT",
                "/b/k?x-id=UploadPart&partNumber=1&uploadId=1",
                true
            )),
            Some(Op::UploadPartCopy)
        );
        assert_eq!(request_op(&req("PUT", "/b/k", false)), Some(Op::Put));
        assert_eq!(request_op(&req("PUT", "/b/k", true)), Some(Op::Copy));
        assert_eq!(request_op(&req("GET", "/b/k", false)), None);
    }

    #[test]
    fn listing_keys_are_url_encoded() {
        assert_eq!(url_encode("dir/a b+c%d/é~"), "dir/a%20b%2Bc%25d/%C3%A9~");
    }

    #[test]
    fn error_codes_follow_kinds() {
        let e =
            StoreError::new(StoreErrorKind::InvalidRequest, "small").with_code("EntityTooSmall");
        assert_eq!(s3_code(&e), S3ErrorCode::EntityTooSmall);
        let e = StoreError::not_found("k");
        assert_eq!(s3_code(&e), S3ErrorCode::NoSuchKey);
        let e = StoreError::new(StoreErrorKind::NotFound, "").with_code("NoSuchUpload");
        assert_eq!(s3_code(&e), S3ErrorCode::NoSuchUpload);
        let e = StoreError::new(StoreErrorKind::Throttled, "");
        assert_eq!(s3_code(&e), S3ErrorCode::SlowDown);
        let e = StoreError::new(StoreErrorKind::Archived, "");
        assert_eq!(
            s3_error(e).status_code(),
            Some(hyper::StatusCode::FORBIDDEN)
        );
        let e = StoreError::new(StoreErrorKind::InvalidRequest, "").with_code("Weird");
        assert_eq!(
            s3_error(e).status_code(),
            Some(hyper::StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn start_on_refuses_other_addresses() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let provider: Arc<dyn BucketProvider> = Arc::new(crate::MemBuckets::new());
        let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let err = rt
            .block_on(S3Server::start_on(
                addr,
                provider,
                ServerCredentials::test(),
            ))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
