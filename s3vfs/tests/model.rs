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
use s3vfs::store::Capabilities;
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
    Memory,
    Disk,
    Both,
}

/// Tiny blocks (model contents are up to 24 bytes) and caps of a few blocks.
fn cache_config(cache: Cache, dir: &std::path::Path) -> DataCacheConfig {
    let base = DataCacheConfig::default().with_block_size(5);
    match cache {
        Cache::None => DataCacheConfig::default(),
        Cache::Memory => base.with_memory(40),
        Cache::Disk => base.with_disk(dir, 600),
        Cache::Both => base.with_memory(20).with_disk(dir, 400),
    }
}

fn run(ops: &[FsOp], ttl: Duration) -> Result<(), TestCaseError> {
    run_with(ops, ttl, Cache::None)
}

fn run_with(ops: &[FsOp], ttl: Duration, cache: Cache) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        // Parts of 8 bytes: most files are uploaded in parts (streamed, or staged with
        // unchanged parts copied), so the multipart paths meet every other operation.
        let store = MemStore::with_capabilities(Capabilities {
            min_part_size: PART,
            ..Capabilities::default()
        });
        let faults = FaultStore::new(Arc::new(store.clone()));
        let vfs = S3Vfs::new(
            Arc::new(faults.clone()),
            FsConfig::default()
                .with_metadata_ttl(ttl)
                .with_write_part_size(PART)
                .with_recovery_dir(Some(dir.path().join("recovery")))
                .with_data_cache(cache_config(cache, dir.path())),
        );
        let mut model = ModelFs::default();
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let got = apply_to_vfs(&vfs, &store, &faults, op).await;
            prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            let seen = walk(&vfs)
                .await
                .map_err(|e| TestCaseError::fail(format!("step {step}: walk failed: {e}")))?;
            prop_assert_eq!(seen, model.tree(), "step {}: after {:?}", step, op);
        }
        // Uploads a failure abandoned are aborted in the background.
        for _ in 0..100 {
            if store.open_uploads() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        prop_assert_eq!(store.open_uploads(), 0);
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

fn any_cache() -> impl Strategy<Value = Cache> {
    prop_oneof![Just(Cache::Memory), Just(Cache::Disk), Just(Cache::Both)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases((cases() / 5).max(1)))]

    /// Every data-cache setting, with other clients changing the bucket: a cached block
    /// must never outlive its object version.
    #[test]
    fn namespace_matches_model_with_every_data_cache(
        ops in proptest::collection::vec(strategies::op(), 1..14),
        cache in any_cache(),
    ) {
        run_with(&ops, Duration::ZERO, cache)?;
    }

    /// Every data-cache setting, alone on the bucket with long-lived caches.
    #[test]
    fn namespace_matches_model_with_every_data_cache_and_caches(
        ops in proptest::collection::vec(strategies::local_op(), 1..14),
        cache in any_cache(),
    ) {
        run_with(&ops, Duration::from_secs(60), cache)?;
    }
}
