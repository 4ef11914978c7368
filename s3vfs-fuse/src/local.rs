//! Everything on one machine: a loopback S3 endpoint serving one in-memory bucket, the real
//! `S3Store` client talking HTTP to it, `S3Fs` over that and a FUSE mount of the result.
//!
//! This is the wiring of `s3vfs demo`, `s3vfs serve` and the mount tests, so that all three
//! run every production layer with only the network replaced by loopback. It adds no file
//! system behaviour: the pieces are the core's, the testkit's and [`mount`](crate::mount()).
//!
//! Credentials are always the testkit's static key pair, so no credential provider (and in
//! particular no instance-metadata endpoint) is ever consulted.

use crate::mount::{mount, MountError, MountGuard, MountOptions};
use bytes::Bytes;
use s3vfs::store::{Backend, S3Store};
use s3vfs::vfs::Vfs;
use s3vfs::{FsConfig, S3Fs};
use s3vfs_testkit::server::{S3Server, ServerCredentials};
use s3vfs_testkit::{MemStore, SingleBucket};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Name of the bucket `s3vfs demo` serves.
pub const DEMO_BUCKET: &str = "demo";

/// Size of the binary sample file of the demo bucket, in bytes.
pub const DEMO_BINARY_SIZE: usize = 8 * 1024 * 1024 + 12_345;

/// Why a local mount could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The S3 client for the local endpoint could not be built.
    #[error("cannot create the S3 client for the local endpoint: {0}")]
    Client(#[from] s3vfs::store::StoreError),
    /// The data cache `FsConfig::data_cache` asks for could not be set up.
    #[error(transparent)]
    Cache(#[from] s3vfs::cache::CacheError),
    /// Mounting failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The mount task did not finish.
    #[error("the mount task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A loopback S3 endpoint (`127.0.0.1`) serving one bucket backed by a [`MemStore`].
#[derive(Debug)]
pub struct LocalS3 {
    server: S3Server,
    bucket: String,
    store: MemStore,
}

impl LocalS3 {
    /// Serves `store` as bucket `bucket` on `127.0.0.1:port` (0: any free port), accepting
    /// [`ServerCredentials::test`].
    ///
    /// # Errors
    ///
    /// When the port cannot be bound.
    pub async fn start(bucket: &str, store: MemStore, port: u16) -> io::Result<LocalS3> {
        let served = Arc::new(store.clone());
        Self::start_serving(bucket, store, served, port).await
    }

    /// Like [`start`](Self::start), but the endpoint serves `served`, a store wrapped around
    /// `store` (e.g. a `FaultStore` that injects failures), while [`store`](Self::store)
    /// still shows the bucket's contents underneath.
    ///
    /// # Errors
    ///
    /// When the port cannot be bound.
    pub async fn start_serving(
        bucket: &str,
        store: MemStore,
        served: Arc<dyn Backend>,
        port: u16,
    ) -> io::Result<LocalS3> {
        let provider = SingleBucket::new(bucket, served);
        let server = S3Server::start_on(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Arc::new(provider),
            ServerCredentials::test(),
        )
        .await?;
        tracing::info!(endpoint = %server.endpoint_url(), bucket, "local S3 endpoint started");
        Ok(LocalS3 {
            server,
            bucket: bucket.to_owned(),
            store,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint_url(&self) -> String {
        self.server.endpoint_url()
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The endpoint itself, to change what it allows and names or to see what it received
    /// ([`S3Server::allow_anonymous`], [`S3Server::set_region`],
    /// [`S3Server::record_requests`]).
    pub fn server(&self) -> &S3Server {
        &self.server
    }

    /// The bucket's contents, to change behind the file system's back.
    pub fn store(&self) -> &MemStore {
        &self.store
    }

    /// The access key id the endpoint accepts.
    pub fn access_key_id(&self) -> &str {
        &self.server.credentials().access_key_id
    }

    /// The secret access key the endpoint accepts.
    pub fn secret_access_key(&self) -> &str {
        &self.server.credentials().secret_access_key
    }

    /// A real `S3Store` client for the bucket, over HTTP: path-style, region `us-east-1`,
    /// static credentials.
    ///
    /// # Errors
    ///
    /// When the client cannot be built.
    /// The client takes the served bucket's limits (a test bucket may accept parts
    /// smaller than S3's 5 MiB, so that multipart shapes stay small and fast).
    pub async fn connect(&self) -> Result<Arc<dyn Backend>, LocalError> {
        let config = self
            .server
            .store_config(&self.bucket)
            .capabilities(self.store.capabilities());
        let store = S3Store::new(config).await?;
        Ok(Arc::new(store))
    }

    /// Mounts the bucket at `mountpoint`: `S3Fs` with `config` over [`connect`](Self::connect),
    /// served by FUSE on the current tokio runtime. The kernel caches attributes from
    /// listings for `config.metadata_ttl`, like those from lookups.
    ///
    /// # Errors
    ///
    /// When the client cannot be built, the data cache cannot be set up (like the `s3vfs`
    /// binary, a cache asked for is never silently left out) or the mount fails.
    pub async fn mount(
        &self,
        config: FsConfig,
        mountpoint: &Path,
        options: &MountOptions,
    ) -> Result<MountGuard, LocalError> {
        Ok(self.mount_fs(config, mountpoint, options).await?.1)
    }

    /// Like [`mount`](Self::mount), and also returns the mounted [`S3Fs`], so that the
    /// caller can look at it while it serves the kernel (e.g. its
    /// [`inode_count`](S3Fs::inode_count)).
    ///
    /// # Errors
    ///
    /// As [`mount`](Self::mount).
    pub async fn mount_fs(
        &self,
        config: FsConfig,
        mountpoint: &Path,
        options: &MountOptions,
    ) -> Result<(Arc<S3Fs>, MountGuard), LocalError> {
        let ttl = config.metadata_ttl;
        let fs = S3Fs::try_new(self.connect().await?, config)?;
        let guard = self
            .mount_vfs(Arc::clone(&fs), ttl, mountpoint, options)
            .await?;
        Ok((fs, guard))
    }

    /// Mounts `vfs`, a file system of any layout over [`connect`](Self::connect) (e.g. a
    /// vault), at `mountpoint`, served by FUSE on the current tokio runtime. The kernel
    /// caches attributes from listings for `listing_ttl`, like those from lookups.
    ///
    /// # Errors
    ///
    /// When the mount fails.
    pub async fn mount_vfs<V: Vfs + ?Sized>(
        &self,
        vfs: Arc<V>,
        listing_ttl: Duration,
        mountpoint: &Path,
        options: &MountOptions,
    ) -> Result<MountGuard, LocalError> {
        let runtime = tokio::runtime::Handle::current();
        let mut options = options.clone();
        options.adapter.listing_ttl = listing_ttl;
        let mountpoint = mountpoint.to_owned();
        Ok(
            tokio::task::spawn_blocking(move || mount(vfs, &mountpoint, &options, runtime))
                .await??,
        )
    }

    /// Stops the endpoint and drops its connections.
    pub async fn stop(mut self) {
        self.server.shutdown();
    }
}

/// Sets `AWS_EC2_METADATA_DISABLED=true`, so that nothing in this process ever asks an
/// instance-metadata endpoint, whatever the SDK's credential chain would do.
///
/// Call it at the start of `main`, before any other thread exists (changing the
/// environment races with threads that read it).
pub fn disable_instance_metadata() {
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

/// Fills `store` with the demo files: a README, a nested directory with a few small files
/// and a binary file of [`DEMO_BINARY_SIZE`] bytes.
pub fn seed_demo(store: &MemStore) {
    store.insert(
        "README.txt",
        "Welcome to s3vfs!\n\n\
         This directory is the bucket `demo`, served by a local S3 endpoint on 127.0.0.1 and\n\
         read through the same S3 client and file system a real bucket uses.\n\
         Every file here is an object; every directory is a key prefix.\n",
    );
    store.insert(
        "docs/guide/getting-started.md",
        "# Getting started\n\nMount a bucket:\n\n    s3vfs mount my-bucket /mnt/bucket\n",
    );
    store.insert(
        "docs/guide/options.md",
        "# Options\n\n--read-only, --allow-other, --metadata-ttl SECONDS, --file-mode 0644 …\n",
    );
    store.insert("docs/numbers.csv", numbers_csv());
    store.insert("data/random.bin", pseudo_random(DEMO_BINARY_SIZE, 0x5eed));
}

fn numbers_csv() -> String {
    let mut csv = String::from("n,square,cube\n");
    for n in 1..=100u64 {
        csv.push_str(&format!("{n},{},{}\n", n * n, n * n * n));
    }
    csv
}

/// `len` deterministic pseudo-random bytes (xorshift64*), the same for the same `seed`.
pub fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_bucket_is_seeded() {
        let store = MemStore::new();
        seed_demo(&store);
        assert!(store.keys().contains(&"README.txt".to_owned()));
        assert_eq!(
            store.get_bytes("data/random.bin").map(|b| b.len()),
            Some(DEMO_BINARY_SIZE)
        );
        assert_eq!(pseudo_random(100, 1), pseudo_random(100, 1));
        assert_ne!(pseudo_random(100, 1), pseudo_random(100, 2));
    }
}
