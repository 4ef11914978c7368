//! The `s3vfs` binary in tests: started against a loopback endpoint serving a test's
//! bucket, waited for, signalled, and never left mounted when a test fails.

use s3vfs_fuse::local::LocalS3;
use s3vfs_testkit::MemStore;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `s3vfs` binary, started in the background; killed on drop.
pub struct Binary(Option<Child>);

impl Binary {
    /// `s3vfs demo MOUNTPOINT`.
    pub fn demo(mountpoint: &Path) -> Self {
        Self::start(
            Command::new(env!("CARGO_BIN_EXE_s3vfs"))
                .arg("demo")
                .arg(mountpoint),
        )
    }

    /// Starts `command`, its output captured.
    pub fn start(command: &mut Command) -> Self {
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Binary(Some(child))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        let child = self.0.as_ref().expect("running");
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to exit; its output.
    pub fn wait(mut self) -> std::process::Output {
        let child = self.0.take().expect("running");
        child.wait_with_output().unwrap()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Detaches whatever is still mounted at a path when dropped, so that a failing test
/// leaves no dead mount behind.
pub struct DetachOnDrop<'a>(pub &'a Path);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(self.0)
                .status();
        }
    }
}

/// Waits until `path` exists (the mount is up), failing after a while.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let path = path.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(path))
}

/// A loopback S3 endpoint serving `store` as the bucket `bucket`, on a runtime of its own
/// (which the caller keeps for as long as the endpoint serves).
pub fn serve_bucket(store: &MemStore) -> (tokio::runtime::Runtime, LocalS3) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let local = runtime
        .block_on(LocalS3::start("bucket", store.clone(), 0))
        .expect("cannot start the local S3 endpoint");
    (runtime, local)
}

/// `s3vfs ARGS…` against `local`, with its connection flags and credentials; nothing
/// else is asked for any (`AWS_EC2_METADATA_DISABLED`).
pub fn s3vfs_command(local: &LocalS3, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_s3vfs"));
    command
        .args(args)
        .args(["--force-path-style", "--region", "us-east-1"])
        .args(["--endpoint-url", &local.endpoint_url()])
        .env("AWS_ACCESS_KEY_ID", local.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", local.secret_access_key())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

/// `s3vfs mount TARGET MOUNTPOINT` against `local` ([`s3vfs_command`]).
pub fn mount_command(local: &LocalS3, target: &str, mountpoint: &Path) -> Command {
    let mountpoint = mountpoint.to_str().expect("a UTF-8 mountpoint");
    s3vfs_command(local, &["mount", target, mountpoint])
}

/// Waits (a minute at most) until `path` is a mountpoint.
pub fn wait_until_mounted(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_mounted(path) {
        assert!(
            Instant::now() < deadline,
            "{} was never mounted",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An empty directory `mnt` in `dir`, by its canonical path (as /proc/mounts shows it).
pub fn new_mountpoint(dir: &tempfile::TempDir) -> PathBuf {
    let mountpoint = dir.path().canonicalize().unwrap().join("mnt");
    fs::create_dir(&mountpoint).unwrap();
    mountpoint
}

/// `fusermount3 -u mountpoint`, which must succeed.
pub fn unmount(mountpoint: &Path) {
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .status()
        .unwrap();
    assert!(status.success(), "fusermount3 -u {}", mountpoint.display());
}
