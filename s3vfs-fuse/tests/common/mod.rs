//! The one harness of the FUSE tests: a loopback S3 endpoint serving the test's bucket,
//! the real S3 client and `S3Fs` over it, mounted at a fresh temporary directory; and the
//! helpers the test files share (errno, short-read loops, tree snapshots, external tools).
//!
//! [`TestMount::vault`] mounts the vault layout instead, made in (or opened from) the same
//! kind of bucket.
//!
//! Tests are plain (blocking) `#[test]`s: the file system runs on the harness's own
//! multi-threaded runtime, so the test thread can make blocking file system calls into the
//! mount. Failing to mount panics with the reason, and so does a missing tool: these tests
//! never skip. Dropping the harness unmounts, also while a failed test unwinds.
//!
//! Tests that must hold with every data cache setting take a [`CacheSetting`] and are run
//! once per setting by [`test_with_every_cache!`]; the caches are small, in small blocks,
//! so that reads cross block boundaries and blocks are evicted.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

pub mod binary;

use s3vfs::config::DataCacheConfig;
use s3vfs::store::Backend;
use s3vfs::vault::{KdfParams, VaultConfig, VaultFs};
use s3vfs::{FsConfig, S3Fs};
use s3vfs_fuse::local::{pseudo_random, LocalS3};
use s3vfs_fuse::{MountGuard, MountOptions};
use s3vfs_testkit::fault::{CountingStore, FaultStore};
use s3vfs_testkit::MemStore;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// Name of the bucket every test mounts.
pub const BUCKET: &str = "test-bucket";

/// One MiB, in bytes.
pub const MIB: u64 = 1024 * 1024;

/// Part size of uploads in the write tests: S3's smallest, so that a few MiB already make
/// a multipart upload.
pub const WRITE_PART_SIZE: u64 = 5 * MIB;

/// The file system configuration of the write tests: writable, with small upload parts.
pub fn write_config() -> FsConfig {
    FsConfig::default()
        .with_write_part_size(WRITE_PART_SIZE)
        .with_upload_concurrency(4)
        // Failures these tests provoke keep files: under the target directory, not /tmp.
        .with_recovery_dir(Some(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuse-recovery"),
        ))
}

/// Passphrase of the vaults [`TestMount::vault`] mounts.
pub const VAULT_PASSPHRASE: &[u8] = b"correct horse battery staple";

/// The vault configuration of the tests: the cheapest key derivation, and changes that
/// cannot be stored kept under the target directory, not /tmp.
pub fn vault_config() -> VaultConfig {
    VaultConfig::default()
        .with_kdf(KdfParams::insecure_for_tests())
        .with_recovery_dir(Some(
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuse-recovery"),
        ))
}

/// Block size of the tests' data caches, in bytes: small, so that reads cross many block
/// boundaries (and not smaller, so that a 16 MiB file is a thousand block files, not four).
pub const CACHE_BLOCK_SIZE: u64 = 16 * 1024;

/// Byte cap of the tests' memory caches: less than the files of a few hundred KiB the
/// tests read, so that blocks are evicted.
pub const CACHE_MEMORY_CAP: u64 = 128 * 1024;

/// Byte cap of the tests' disk caches (block file headers included): larger than the
/// memory cap, so that with both the disk holds blocks memory dropped, yet small enough to
/// evict too.
pub const CACHE_DISK_CAP: u64 = 512 * 1024;

/// Which data cache a test mount runs with. The disk cache lives in the mount's own
/// temporary directory, so no two mounts share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSetting {
    /// No data cache: the test's own configuration, unchanged.
    Off,
    /// [`CACHE_MEMORY_CAP`] bytes in memory.
    Memory,
    /// [`CACHE_DISK_CAP`] bytes on disk.
    Disk,
    /// Both, memory in front of disk.
    MemoryAndDisk,
}

impl CacheSetting {
    /// Whether a data cache is on.
    pub fn is_on(self) -> bool {
        self != CacheSetting::Off
    }

    /// `config` with this data cache, its disk part (if any) in `dir`.
    pub fn apply(self, config: FsConfig, dir: &Path) -> FsConfig {
        let cache = DataCacheConfig::default().with_block_size(CACHE_BLOCK_SIZE);
        let cache = match self {
            CacheSetting::Off => return config,
            CacheSetting::Memory => cache.with_memory(CACHE_MEMORY_CAP),
            CacheSetting::Disk => cache.with_disk(dir, CACHE_DISK_CAP),
            CacheSetting::MemoryAndDisk => cache
                .with_memory(CACHE_MEMORY_CAP)
                .with_disk(dir, CACHE_DISK_CAP),
        };
        config.with_data_cache(cache)
    }
}

/// Runs each named function, which takes a [`CacheSetting`], as four tests, one per
/// setting: `NAME::no_cache`, `NAME::memory_cache`, `NAME::disk_cache` and
/// `NAME::memory_and_disk_cache` (so `cargo test NAME` still runs them all).
#[allow(unused_macros)]
macro_rules! test_with_every_cache {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use crate::common::CacheSetting;

            #[test]
            fn no_cache() {
                super::$name(CacheSetting::Off)
            }

            #[test]
            fn memory_cache() {
                super::$name(CacheSetting::Memory)
            }

            #[test]
            fn disk_cache() {
                super::$name(CacheSetting::Disk)
            }

            #[test]
            fn memory_and_disk_cache() {
                super::$name(CacheSetting::MemoryAndDisk)
            }
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use test_with_every_cache;

/// What a [`TestMount`] serves, and so what its [`fresh_mount`](TestMount::fresh_mount)
/// mounts again.
#[derive(Clone)]
enum Layout {
    /// `S3Fs` with this configuration and data cache.
    Plain(FsConfig, CacheSetting),
    /// The vault at the bucket's root with this configuration: made if the bucket is
    /// empty, else opened.
    Vault(VaultConfig),
}

/// A mounted test bucket.
pub struct TestMount {
    // Dropped in this order after `Drop::drop` unmounted: the endpoint needs the runtime.
    guard: Option<MountGuard>,
    /// `None` for a vault.
    fs: Option<Arc<S3Fs>>,
    local: Option<LocalS3>,
    runtime: Option<Runtime>,
    mountpoint: PathBuf,
    options: MountOptions,
    layout: Layout,
    _dir: TempDir,
}

impl TestMount {
    /// Mounts `store` with the default file system configuration and mount options.
    pub fn new(store: MemStore) -> Self {
        Self::with(store, FsConfig::default(), MountOptions::default())
    }

    /// Mounts `store` with [`write_config`] and the default mount options.
    pub fn writable(store: MemStore) -> Self {
        Self::with(store, write_config(), MountOptions::default())
    }

    /// Mounts `store` with `config` and `options`.
    pub fn with(store: MemStore, config: FsConfig, options: MountOptions) -> Self {
        let served = Arc::new(store.clone());
        Self::serving(store, served, config, options)
    }

    /// Mounts `store` with `config`, the default mount options and the data cache `cache`.
    pub fn cached(store: MemStore, config: FsConfig, cache: CacheSetting) -> Self {
        let served = Arc::new(store.clone());
        Self::start(
            store,
            served,
            MountOptions::default(),
            Layout::Plain(config, cache),
        )
    }

    /// Mounts the vault layout in `store`: a vault made there with `config` and
    /// [`VAULT_PASSPHRASE`] when `store` is empty, else the vault `store` holds.
    pub fn vault(store: MemStore, config: VaultConfig) -> Self {
        let served = Arc::new(store.clone());
        Self::start(
            store,
            served,
            MountOptions::default(),
            Layout::Vault(config),
        )
    }

    /// Mounts `store` with `config` and the data cache `cache`, the endpoint serving it
    /// through a [`CountingStore`]: what the mount asked of the bucket.
    pub fn counted(
        store: MemStore,
        config: FsConfig,
        cache: CacheSetting,
    ) -> (Self, CountingStore) {
        let counting = CountingStore::new(Arc::new(store.clone()));
        let mount = Self::start(
            store,
            Arc::new(counting.clone()),
            MountOptions::default(),
            Layout::Plain(config, cache),
        );
        (mount, counting)
    }

    /// Mounts `store` with `config`, the endpoint serving it through a [`FaultStore`] that
    /// the test can tell to fail requests.
    pub fn with_faults(store: MemStore, config: FsConfig) -> (Self, FaultStore) {
        let faults = FaultStore::new(Arc::new(store.clone()));
        let mount = Self::serving(
            store,
            Arc::new(faults.clone()),
            config,
            MountOptions::default(),
        );
        (mount, faults)
    }

    /// Mounts the bucket `store`, the endpoint serving `served` (`store` or a wrapper of
    /// it), with `config` and `options`.
    pub fn serving(
        store: MemStore,
        served: Arc<dyn Backend>,
        config: FsConfig,
        options: MountOptions,
    ) -> Self {
        Self::start(
            store,
            served,
            options,
            Layout::Plain(config, CacheSetting::Off),
        )
    }

    /// [`serving`](Self::serving) of `layout`.
    fn start(
        store: MemStore,
        served: Arc<dyn Backend>,
        options: MountOptions,
        layout: Layout,
    ) -> Self {
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
        let failed = |err: s3vfs_fuse::local::LocalError| -> ! {
            panic!(
                "cannot mount the test bucket at {}: {err}",
                mountpoint.display()
            )
        };
        let (local, fs, guard) = runtime.block_on(async {
            let local = LocalS3::start_serving(BUCKET, store, served, 0)
                .await
                .expect("cannot start the local S3 endpoint");
            match &layout {
                Layout::Plain(config, cache) => {
                    let config = cache.apply(config.clone(), &dir.path().join("cache"));
                    let (fs, guard) = local
                        .mount_fs(config, &mountpoint, &options)
                        .await
                        .unwrap_or_else(|err| failed(err));
                    (local, Some(fs), guard)
                }
                Layout::Vault(config) => {
                    let store = local.connect().await.unwrap_or_else(|err| failed(err));
                    let (config, ttl) = (config.clone(), config.metadata_ttl);
                    let vault = if local.store().keys().is_empty() {
                        VaultFs::init(store, "", VAULT_PASSPHRASE, config).await
                    } else {
                        VaultFs::open(store, "", VAULT_PASSPHRASE, config).await
                    }
                    .expect("cannot make or open the test vault");
                    let guard = local
                        .mount_vfs(Arc::new(vault), ttl, &mountpoint, &options)
                        .await
                        .unwrap_or_else(|err| failed(err));
                    (local, None, guard)
                }
            }
        });
        Self {
            mountpoint: guard.mountpoint().to_owned(),
            guard: Some(guard),
            fs,
            local: Some(local),
            runtime: Some(runtime),
            options,
            layout,
            _dir: dir,
        }
    }

    /// A second, fresh mount of the same bucket with the same layout, configuration and
    /// data cache setting: it shares no cache with this one (its disk cache has a directory
    /// of its own; a vault is opened anew), so it shows what reached the store.
    pub fn fresh_mount(&self) -> TestMount {
        let served = Arc::new(self.store().clone());
        Self::start(
            self.store().clone(),
            served,
            self.options.clone(),
            self.layout.clone(),
        )
    }

    /// The file system a plain-layout mount serves, to look at its state (e.g. its inode
    /// count).
    pub fn fs(&self) -> &Arc<S3Fs> {
        self.fs
            .as_ref()
            .expect("the plain layout's file system lives as long as the mount")
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

    /// The body of object `key`, panicking with the bucket's keys when it is missing.
    pub fn object(&self, key: &str) -> Vec<u8> {
        match self.store().get_bytes(key) {
            Some(body) => body.to_vec(),
            None => panic!(
                "no object {key:?}; the bucket has {:?}",
                self.store().keys()
            ),
        }
    }

    /// The keys of the bucket starting with `prefix`.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.store()
            .keys()
            .into_iter()
            .filter(|key| key.starts_with(prefix))
            .collect()
    }

    /// The keys of the bucket starting with `prefix`, without directory markers (`dir/`).
    pub fn files_under(&self, prefix: &str) -> Vec<String> {
        let mut keys = self.keys_under(prefix);
        keys.retain(|key| !key.ends_with('/'));
        keys
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
            drop(self.fs.take());
            drop(self.local.take());
            drop(_inside);
            runtime.shutdown_background();
        }
    }
}

/// The errno of an OS error.
pub fn errno(err: &io::Error) -> i32 {
    err.raw_os_error()
        .unwrap_or_else(|| panic!("not an OS error: {err}"))
}

/// Reads up to `len` bytes at `offset`, looping over short reads; fewer only at EOF.
pub fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut done = 0;
    while done < len {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Closes `file` with close(2) and returns its result, which dropping a `File` ignores.
pub fn close(file: File) -> io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by its owner and is closed exactly once here.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs an external tool, panicking if it is not installed (the tests never skip) or if it
/// fails; returns its output.
pub fn run(command: &mut Command) -> Output {
    let output = run_status(command);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs an external tool that may fail, panicking only if it is not installed.
pub fn run_status(command: &mut Command) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(err) if err.kind() == io::ErrorKind::NotFound => panic!(
            "{:?} is not installed: the FUSE tests need it (see .ci/run)",
            command.get_program()
        ),
        Err(err) => panic!("cannot run {command:?}: {err}"),
    }
}

/// The trimmed standard output of a successful run of `command`.
pub fn run_stdout(command: &mut Command) -> String {
    String::from_utf8_lossy(&run(command).stdout)
        .trim()
        .to_owned()
}

/// One entry of a [`snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// A fifo, device or socket: its type as `ls -l` shows it (`p`, `c`, `b`, `s`) and its
    /// device number. Never opened: a fifo would block.
    Special(char, u64),
}

/// The letter `ls -l` shows for a fifo (`p`), character device (`c`), block device (`b`)
/// or socket (`s`); `None` for other files.
pub fn special_type(meta: &fs::Metadata) -> Option<char> {
    let kind = meta.file_type();
    [
        (kind.is_fifo(), 'p'),
        (kind.is_char_device(), 'c'),
        (kind.is_block_device(), 'b'),
        (kind.is_socket(), 's'),
    ]
    .into_iter()
    .find_map(|(is, letter)| is.then_some(letter))
}

/// Every entry below `root` (not `root` itself), by path relative to it.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            let node = if meta.is_dir() {
                walk(root, &path, out);
                Node::Dir
            } else if meta.file_type().is_symlink() {
                Node::Symlink(fs::read_link(&path).expect("readlink"))
            } else if let Some(kind) = special_type(&meta) {
                Node::Special(kind, meta.rdev())
            } else {
                Node::File(
                    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
                )
            };
            out.insert(relative, node);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts that two snapshots are equal, naming the first entry that differs instead of
/// printing megabytes of file content.
pub fn assert_same_tree(got: &BTreeMap<String, Node>, expected: &BTreeMap<String, Node>) {
    let describe = |node: Option<&Node>| match node {
        None => "missing".to_owned(),
        Some(Node::Dir) => "a directory".to_owned(),
        Some(Node::File(bytes)) => format!("a file of {} bytes", bytes.len()),
        Some(Node::Symlink(target)) => format!("a symlink to {}", target.display()),
        Some(Node::Special(kind, rdev)) => format!("a special file of type {kind} ({rdev:#x})"),
    };
    for name in got.keys().chain(expected.keys()) {
        let (g, e) = (got.get(name), expected.get(name));
        assert!(
            g == e,
            "{name}: got {}, expected {}",
            describe(g),
            describe(e)
        );
    }
}

/// Creates a tree of nested directories under `root` (which must exist): empty files,
/// small files, files of a few MiB, an empty directory and a deep path. Deterministic for
/// `seed`.
pub fn make_tree(root: &Path, seed: u64) {
    let files: &[(&str, usize)] = &[
        ("empty.txt", 0),
        ("small.txt", 13),
        ("a/one.bin", 4096),
        ("a/zero", 0),
        ("a/b/big.bin", 3 * MIB as usize + 123),
        ("a/b/c/d/deep.txt", 777),
        ("a/b/c/d/empty", 0),
        ("x/y/medium.bin", 1024 * 1024 + 1),
        ("x/y/z.txt", 1),
        ("x/larger.bin", 6 * MIB as usize + 5),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        let path = root.join(name);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir -p");
        fs::write(&path, pseudo_random(*len, seed + i as u64)).expect("write a tree file");
    }
    fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    fs::create_dir_all(root.join("x/empty-inner")).expect("mkdir");
    fs::set_permissions(root.join("small.txt"), fs::Permissions::from_mode(0o600)).expect("chmod");
}
