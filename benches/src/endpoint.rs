//! Which S3 endpoint the benchmark talks to: the testkit's in-memory server, started here on
//! 127.0.0.1, or one named by environment variables (loopback only unless told otherwise).
//!
//! The local server runs on its own tokio runtime, so that its tasks never queue behind the
//! client's on the same worker threads (it still shares the machine's cores with the client,
//! as any server on the same host would). Its bucket is a [`MemStore`] the harness can fill
//! directly (fast seeding), wrapped in a [`CountingStore`] so that every request any client
//! makes (the library, a mount in another process, s3fs, rclone) is counted at the server.

use crate::cpus::CpuList;
use crate::loopback::is_loopback_url;
use anyhow::{bail, Context, Result};
use s3vfs::store::s3::{S3StoreConfig, StaticCredentials};
use s3vfs::store::Backend;
use s3vfs_testkit::fault::{CountingStore, LatencyStore};
use s3vfs_testkit::server::{S3Server, ServerCredentials, TEST_REGION};
use s3vfs_testkit::{MemStore, SingleBucket};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable naming an existing endpoint (`http://127.0.0.1:9000`).
pub const ENV_ENDPOINT: &str = "S3VFS_BENCH_ENDPOINT";

/// Whether [`ENV_ENDPOINT`] names an external server (else the bench starts its own).
pub fn is_external() -> bool {
    std::env::var(ENV_ENDPOINT).is_ok_and(|url| !url.is_empty())
}
/// Environment variable naming the bucket on that endpoint.
pub const ENV_BUCKET: &str = "S3VFS_BENCH_BUCKET";
/// Bucket name of the local in-memory server.
const LOCAL_BUCKET: &str = "bench";
/// Worker threads of the local server's runtime.
const SERVER_THREADS: usize = 2;
/// Connect timeout of every client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest silence on a connection before a request is failed (and retried).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The S3-like profile of the built-in server: what a client of real S3 meets that a
/// loopback server lacks.
#[derive(Clone, Copy, Debug)]
pub struct S3Like {
    /// Wait before every answer (a GET's first byte, a PUT's reply).
    pub first_byte: Duration,
    /// Bytes per second one connection carries, each way.
    pub bytes_per_sec: u64,
}

/// The endpoint in use, and what keeps it running.
/// The flags of the S3-like profile, shared by the benchmarks that start the built-in
/// server.
#[derive(Debug, clap::Args)]
pub struct S3LikeArgs {
    /// The S3-like profile: the built-in server answers every request only after
    /// --first-byte-ms and moves at most --connection-mibps per connection each way, as
    /// S3 does (tens of milliseconds to the first byte, ~100 MB/s per connection).
    #[arg(long, conflicts_with = "allow_remote")]
    s3_like: bool,
    /// First-byte latency of the S3-like profile, in milliseconds.
    #[arg(long, default_value_t = 20, requires = "s3_like")]
    first_byte_ms: u64,
    /// Bandwidth of one connection in the S3-like profile, in MiB/s (each way).
    #[arg(long, default_value_t = 100, requires = "s3_like")]
    connection_mibps: u64,
}

impl S3LikeArgs {
    /// The profile the flags ask for, if any.
    pub fn profile(&self) -> Option<S3Like> {
        self.s3_like.then(|| S3Like {
            first_byte: Duration::from_millis(self.first_byte_ms),
            bytes_per_sec: self.connection_mibps.max(1) * 1024 * 1024,
        })
    }
}

pub struct Endpoint {
    /// Client configuration (endpoint, bucket, credentials, region, path style).
    pub config: S3StoreConfig,
    /// One line saying which server this is, for the report header.
    pub description: String,
    /// A short name of the server for each row of the summary table.
    pub tag: &'static str,
    /// The local server's bucket, for seeding objects without HTTP; `None` when external.
    pub mem: Option<MemStore>,
    /// Requests the local server answered, by operation; `None` when external.
    pub server_requests: Option<CountingStore>,
    /// The local server and its runtime, if we started one. Dropped outside any runtime.
    local: Option<(S3Server, tokio::runtime::Runtime)>,
}

/// What a mount in another process needs to reach the endpoint.
#[derive(Clone, Debug)]
pub struct ChildEndpoint {
    /// Endpoint URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Bucket name.
    pub bucket: String,
    /// Region to sign for.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl Endpoint {
    /// The endpoint from the environment if [`ENV_ENDPOINT`] is set, else a new in-memory
    /// server on 127.0.0.1. Must be called outside any tokio runtime.
    /// With `profile`, the in-memory server is S3-like (an external endpoint is refused);
    /// with `cpus` (from [`CpuArgs`](crate::cpus::CpuArgs)) its threads run on those CPUs
    /// only.
    pub fn from_env_or_local(
        allow_remote: bool,
        profile: Option<S3Like>,
        cpus: &crate::cpus::CpuArgs,
    ) -> Result<Endpoint> {
        let url = std::env::var(ENV_ENDPOINT)
            .ok()
            .filter(|url| !url.is_empty());
        let server_cpus = cpus.server_cpus(url.is_some())?;
        match url {
            Some(url) if profile.is_some() => {
                bail!("--s3-like shapes the built-in server; unset {ENV_ENDPOINT}={url}")
            }
            Some(url) => Self::external(&url, allow_remote),
            None => Self::local(profile, server_cpus),
        }
    }

    fn local(profile: Option<S3Like>, cpus: Option<CpuList>) -> Result<Endpoint> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder
            .worker_threads(SERVER_THREADS)
            .thread_name("s3-server")
            .enable_all();
        if let Some(cpus) = cpus {
            // Checked once here, so a list this process may not use fails the run.
            let probe = cpus.clone();
            std::thread::spawn(move || probe.pin_current_thread())
                .join()
                .map_err(|_| anyhow::anyhow!("the CPU probe thread panicked"))??;
            builder.on_thread_start(move || {
                if let Err(err) = cpus.pin_current_thread() {
                    eprintln!("s3vfs-bench: server thread not pinned: {err:#}");
                }
            });
        }
        let runtime = builder
            .build()
            .context("cannot start the local server's runtime")?;
        let mem = MemStore::new();
        let server_requests = CountingStore::new(Arc::new(mem.clone()));
        let store: Arc<dyn Backend> = match profile {
            Some(profile) => Arc::new(LatencyStore::new(
                Arc::new(server_requests.clone()),
                profile.first_byte,
            )),
            None => Arc::new(server_requests.clone()),
        };
        let provider = Arc::new(SingleBucket::new(LOCAL_BUCKET, store));
        let server = runtime
            .block_on(S3Server::start_paced(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                provider,
                ServerCredentials::test(),
                profile.map(|p| p.bytes_per_sec),
            ))
            .context("cannot start the local S3 server on 127.0.0.1")?;
        let config = client_config(
            S3StoreConfig::new(LOCAL_BUCKET)
                .endpoint_url(server.endpoint_url())
                .region(TEST_REGION)
                .credentials(server.credentials().to_static()),
        );
        let mut description = format!(
            "s3vfs-testkit S3Server (s3s HTTP front end over an in-memory MemStore) in this \
             process on its own {SERVER_THREADS}-thread runtime, {} bucket {LOCAL_BUCKET}",
            server.endpoint_url()
        );
        if let Some(profile) = profile {
            description.push_str(&format!(
                "; S3-like profile: {} ms before every answer, {} MiB/s per connection each way",
                profile.first_byte.as_millis(),
                profile.bytes_per_sec / (1024 * 1024)
            ));
        }
        Ok(Endpoint {
            config,
            description,
            tag: if profile.is_some() { "s3like" } else { "mem" },
            mem: Some(mem),
            server_requests: Some(server_requests),
            local: Some((server, runtime)),
        })
    }

    fn external(url: &str, allow_remote: bool) -> Result<Endpoint> {
        let bucket = require_env(ENV_BUCKET)?;
        let key_id = require_env("AWS_ACCESS_KEY_ID")?;
        let secret = require_env("AWS_SECRET_ACCESS_KEY")?;
        if !allow_remote && !is_loopback_url(url) {
            bail!(
                "{ENV_ENDPOINT}={url} is not a loopback address (127.0.0.0/8, [::1], localhost); \
                 pass --allow-remote to benchmark it anyway"
            );
        }
        let region = std::env::var("AWS_REGION")
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| TEST_REGION.to_owned());
        let config = client_config(
            S3StoreConfig::new(&bucket)
                .endpoint_url(url)
                .region(region)
                .credentials(StaticCredentials::new(key_id, secret)),
        );
        Ok(Endpoint {
            config,
            description: format!("external endpoint {url} bucket {bucket} (from {ENV_ENDPOINT})"),
            tag: "ext",
            mem: None,
            server_requests: None,
            local: None,
        })
    }

    /// The endpoint as another process sees it (static credentials only).
    pub fn child(&self) -> Result<ChildEndpoint> {
        let config = &self.config;
        let credentials = config
            .credentials
            .as_ref()
            .context("the benchmark endpoint has no static credentials")?;
        Ok(ChildEndpoint {
            url: config
                .endpoint_url
                .clone()
                .context("the benchmark endpoint has no URL")?,
            bucket: config.bucket.clone(),
            region: config
                .region
                .clone()
                .unwrap_or_else(|| TEST_REGION.to_owned()),
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
        })
    }

    /// Stops the local server, if any. Must be called outside any tokio runtime.
    pub fn shutdown(mut self) {
        if let Some((mut server, runtime)) = self.local.take() {
            server.shutdown();
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Settings every benchmark client shares: path-style addressing, static credentials (set by
/// the caller) and timeouts that fail a stuck run instead of hanging it.
fn client_config(config: S3StoreConfig) -> S3StoreConfig {
    config
        .force_path_style(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(Some(READ_TIMEOUT))
}

fn require_env(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!("{ENV_ENDPOINT} is set, so {name} must be set too"),
    }
}
