//! The whole namespace against the reference model: random sequences of file-system
//! operations and of PUT/DELETE by another client (including keys that are not valid file
//! names). After every step the result (success or errno) is the model's and the tree
//! seen through the file system — names, kinds, contents, link targets — is the model's.
//!
//! The same runs are repeated with every data-cache setting (memory, disk, both), with
//! tiny blocks and caps so that blocks are split and evicted all the time.
//!
//! The bucket takes parts of 8 bytes and the file system uploads such parts, so most files
//! span several parts; some operations are tried while the bucket refuses every change.
//!
//! `S3VFS_MODEL_CASES` sets the number of cases (default 1000; a fifth of it per cache
//! setting).

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use s3vfs::config::DataCacheConfig;
#[cfg(feature = "object-store")]
use s3vfs::store::object_store::ObjectStoreBackend;
use s3vfs::store::{Backend, Capabilities};
use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::fault::FaultStore;
use s3vfs_testkit::model::{apply_to_vfs, strategies, walk, FsOp, ModelFs};
use s3vfs_testkit::MemStore;
use std::sync::Arc;
use std::time::Duration;

/// Part size of the test bucket and of the file system's uploads, in bytes.
const PART: u64 = 8;

fn cases() -> u32 {
    std::env::var("S3VFS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The data cache settings the model runs with besides none.
#[derive(Clone, Copy, Debug)]
enum Cache {
    None,
    #[cfg(feature = "data-cache")]
    Memory,
    #[cfg(feature = "data-cache")]
    Disk,
    #[cfg(feature = "data-cache")]
    Both,
}

/// Tiny blocks (model contents are up to 24 bytes) and caps of a few blocks.
#[cfg_attr(not(feature = "data-cache"), allow(unused_variables))]
fn cache_config(cache: Cache, dir: &std::path::Path) -> DataCacheConfig {
    #[cfg(feature = "data-cache")]
    let tiny = || DataCacheConfig::default().with_block_size(5);
    match cache {
        Cache::None => DataCacheConfig::default(),
        #[cfg(feature = "data-cache")]
        Cache::Memory => tiny().with_memory(40),
        #[cfg(feature = "data-cache")]
        Cache::Disk => tiny().with_disk(dir, 600),
        #[cfg(feature = "data-cache")]
        Cache::Both => tiny().with_memory(20).with_disk(dir, 400),
    }
}

/// The bucket a run's file system sits on.
#[derive(Clone, Copy, Debug)]
enum Bucket {
    /// The testkit's `MemStore`, with S3's rules.
    Mem,
    /// `ObjectStoreBackend` over `object_store`'s `InMemory`.
    #[cfg(feature = "object-store")]
    ObjectStoreMemory,
    /// `ObjectStoreBackend` over `object_store`'s `LocalFileSystem` in a temporary directory.
    #[cfg(feature = "object-store")]
    ObjectStoreLocal,
}

/// The bucket's backend, as the other client reaches it, and a check that no multipart
/// upload is left open.
type OpenUploads = Box<dyn Fn() -> usize>;

#[cfg_attr(not(feature = "object-store"), allow(unused_variables))]
fn bucket(
    kind: Bucket,
    dir: &std::path::Path,
) -> Result<(Arc<dyn Backend>, OpenUploads), TestCaseError> {
    // Parts of 8 bytes: most files are uploaded in parts (streamed, or staged with
    // unchanged parts copied), so the multipart paths meet every other operation.
    let caps = Capabilities {
        min_part_size: PART,
        ..Capabilities::default()
    };
    Ok(match kind {
        Bucket::Mem => {
            let store = MemStore::with_capabilities(caps);
            let open = store.clone();
            (Arc::new(store), Box::new(move || open.open_uploads()))
        }
        #[cfg(feature = "object-store")]
        Bucket::ObjectStoreMemory => {
            let inner = Arc::new(object_store::memory::InMemory::new());
            let store = Arc::new(ObjectStoreBackend::new(inner).with_part_limits(caps));
            let open = Arc::clone(&store);
            (store, Box::new(move || open.open_uploads()))
        }
        #[cfg(feature = "object-store")]
        Bucket::ObjectStoreLocal => {
            let root = dir.join("bucket");
            std::fs::create_dir(&root).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let url = format!("file://{}", root.display());
            let store = ObjectStoreBackend::from_url(&url)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .with_part_limits(caps);
            let store = Arc::new(store);
            let open = Arc::clone(&store);
            (store, Box::new(move || open.open_uploads()))
        }
    })
}

fn run(ops: &[FsOp], ttl: Duration) -> Result<(), TestCaseError> {
    run_with(ops, ttl, Cache::None, Bucket::Mem)
}

fn run_with(ops: &[FsOp], ttl: Duration, cache: Cache, kind: Bucket) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let (store, open_uploads) = bucket(kind, dir.path())?;
        let faults = FaultStore::new(Arc::clone(&store));
        let mut config = FsConfig::default()
            .with_metadata_ttl(ttl)
            .with_write_part_size(PART)
            .with_recovery_dir(Some(dir.path().join("recovery")))
            .with_data_cache(cache_config(cache, dir.path()));
        if !matches!(kind, Bucket::Mem) {
            // Listings of a few pages, so that the adapter's paging meets every operation.
            config.list_page_size = 2;
        }
        // Markers or not, as the probe finds the store.
        let faulty: Arc<dyn Backend> = Arc::new(faults.clone());
        config.fit_to_store(&faulty).await;
        let vfs = S3Vfs::new(faulty, config);
        let mut model = ModelFs::default();
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let got = apply_to_vfs(&vfs, store.as_ref(), &faults, op).await;
            prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            let seen = walk(&vfs)
                .await
                .map_err(|e| TestCaseError::fail(format!("step {step}: walk failed: {e}")))?;
            prop_assert_eq!(seen, model.tree(), "step {}: after {:?}", step, op);
        }
        // Uploads a failure abandoned are aborted in the background.
        for _ in 0..100 {
            if open_uploads() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        prop_assert_eq!(open_uploads(), 0);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// With another client changing the bucket, nothing is cached (TTL 0), so every step
    /// must see the bucket as it is.
    #[test]
    fn namespace_matches_model_with_other_clients(
        ops in proptest::collection::vec(strategies::op(), 1..14)
    ) {
        run(&ops, Duration::ZERO)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases() / 4))]

    /// Alone on the bucket with long-lived caches: the mount's own changes must keep its
    /// caches coherent.
    #[test]
    fn namespace_matches_model_with_caches(
        ops in proptest::collection::vec(strategies::local_op(), 1..14)
    ) {
        run(&ops, Duration::from_secs(60))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases() / 4))]

    /// Some operations tried while the bucket refuses every change (they fail with `EIO`
    /// and change nothing), with other clients and with long-lived caches: what follows a
    /// failure must work as if it had not been tried.
    #[test]
    fn namespace_matches_model_after_failures(
        ops in proptest::collection::vec(strategies::op_or_failing(), 1..14)
    ) {
        run(&ops, Duration::ZERO)?;
    }

    #[test]
    fn namespace_matches_model_after_failures_with_caches(
        ops in proptest::collection::vec(
            strategies::op_or_failing().prop_filter("local only", |op| {
                !matches!(op, FsOp::RemotePut { .. } | FsOp::RemoteDelete(_))
            }),
            1..14,
        )
    ) {
        run(&ops, Duration::from_secs(60))?;
    }
}

#[cfg(feature = "data-cache")]
fn any_cache() -> impl Strategy<Value = Cache> {
    prop_oneof![Just(Cache::Memory), Just(Cache::Disk), Just(Cache::Both)]
}

#[cfg(feature = "data-cache")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases((cases() / 5).max(1)))]

    /// Every data-cache setting, with other clients changing the bucket: a cached block
    /// must never outlive its object version.
    #[test]
    fn namespace_matches_model_with_every_data_cache(
        ops in proptest::collection::vec(strategies::op(), 1..14),
        cache in any_cache(),
    ) {
        run_with(&ops, Duration::ZERO, cache, Bucket::Mem)?;
    }

    /// Every data-cache setting, alone on the bucket with long-lived caches.
    #[test]
    fn namespace_matches_model_with_every_data_cache_and_caches(
        ops in proptest::collection::vec(strategies::local_op(), 1..14),
        cache in any_cache(),
    ) {
        run_with(&ops, Duration::from_secs(60), cache, Bucket::Mem)?;
    }
}

/// Local operations an `object_store` backend can take: no chmod (of a directory it is
/// `ENOTSUP`, as no marker holds its mode; the model keeps markers), and on a backend
/// without attributes (a local directory) no symbolic link (`ENOTSUP`: it would come back
/// as a plain file).
#[cfg(feature = "object-store")]
fn object_store_op(kind: Bucket) -> impl Strategy<Value = FsOp> {
    strategies::local_op().prop_filter("what the backend takes", move |op| match op {
        FsOp::Chmod { .. } => false,
        FsOp::Symlink { .. } => !matches!(kind, Bucket::ObjectStoreLocal),
        _ => true,
    })
}

#[cfg(feature = "object-store")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases((cases() / 5).max(1)))]

    /// Over `object_store`'s `InMemory` through `ObjectStoreBackend`, with nothing cached
    /// (TTL 0: what the file system shows is what the backend kept) and with long-lived
    /// caches.
    #[test]
    fn namespace_matches_model_over_object_store_in_memory(
        ops in proptest::collection::vec(object_store_op(Bucket::ObjectStoreMemory), 1..14),
        ttl in prop_oneof![Just(Duration::ZERO), Just(Duration::from_secs(60))],
    ) {
        run_with(&ops, ttl, Cache::None, Bucket::ObjectStoreMemory)?;
    }

    /// Over `object_store`'s `LocalFileSystem` in a temporary directory, likewise.
    #[test]
    fn namespace_matches_model_over_object_store_local_directory(
        ops in proptest::collection::vec(object_store_op(Bucket::ObjectStoreLocal), 1..14),
        ttl in prop_oneof![Just(Duration::ZERO), Just(Duration::from_secs(60))],
    ) {
        run_with(&ops, ttl, Cache::None, Bucket::ObjectStoreLocal)?;
    }
}
