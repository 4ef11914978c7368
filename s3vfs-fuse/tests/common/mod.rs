//! The one harness of the FUSE tests: a loopback S3 endpoint serving the test's bucket,
//! the real S3 client and `S3Fs` over it, mounted at a fresh temporary directory.
//!
//! Tests are plain (blocking) `#[test]`s: the file system runs on the harness's own
//! multi-threaded runtime, so the test thread can make blocking file system calls into the
//! mount. Failing to mount panics with the reason: these tests never skip. Dropping the
//! harness unmounts, also while a failed test unwinds.

use s3vfs::FsConfig;
use s3vfs_fuse::local::LocalS3;
use s3vfs_fuse::{MountGuard, MountOptions};
use s3vfs_testkit::MemStore;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// Name of the bucket every test mounts.
pub const BUCKET: &str = "test-bucket";

/// A mounted test bucket.
pub struct TestMount {
    // Dropped in this order after `Drop::drop` unmounted: the endpoint needs the runtime.
    guard: Option<MountGuard>,
    local: Option<LocalS3>,
    runtime: Option<Runtime>,
    mountpoint: PathBuf,
    _dir: TempDir,
}

impl TestMount {
    /// Mounts `store` with the default file system configuration and mount options.
    pub fn new(store: MemStore) -> Self {
        Self::with(store, FsConfig::default(), MountOptions::default())
    }

    /// Mounts `store` with `config` and `options`.
    pub fn with(store: MemStore, config: FsConfig, options: MountOptions) -> Self {
        // `RUST_LOG=s3vfs=debug cargo test …` shows what a failing test did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("cannot build the test runtime");
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).expect("cannot create the mountpoint");
        let (local, guard) = runtime.block_on(async {
            let local = LocalS3::start(BUCKET, store, 0)
                .await
                .expect("cannot start the local S3 endpoint");
            let guard = local
                .mount(config, &mountpoint, &options)
                .await
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot mount the test bucket at {}: {err}",
                        mountpoint.display()
                    )
                });
            (local, guard)
        });
        Self {
            mountpoint: guard.mountpoint().to_owned(),
            guard: Some(guard),
            local: Some(local),
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    /// The mountpoint.
    pub fn root(&self) -> &Path {
        &self.mountpoint
    }

    /// `relative` inside the mount.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.mountpoint.join(relative)
    }

    /// The bucket, to change it behind the file system's back.
    pub fn store(&self) -> &MemStore {
        self.local
            .as_ref()
            .map(LocalS3::store)
            .expect("the endpoint lives as long as the mount")
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            if let Err(err) = guard.unmount() {
                eprintln!("unmounting {} failed: {err}", self.mountpoint.display());
            }
        }
        if let Some(runtime) = self.runtime.take() {
            let _inside = runtime.enter();
            drop(self.local.take());
            drop(_inside);
            runtime.shutdown_background();
        }
    }
}
