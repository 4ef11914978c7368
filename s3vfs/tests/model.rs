//! The whole namespace against the reference model: random sequences of file-system
//! operations and of PUT/DELETE by another client (including keys that are not valid file
//! names). After every step the result (success or errno) is the model's and the tree
//! seen through the file system — names, kinds, contents, link targets — is the model's.
//!
//! `S3VFS_MODEL_CASES` sets the number of cases (default 1000).

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::model::{apply_to_vfs, strategies, walk, FsOp, ModelFs};
use s3vfs_testkit::MemStore;
use std::sync::Arc;
use std::time::Duration;

fn cases() -> u32 {
    std::env::var("S3VFS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn run(ops: &[FsOp], ttl: Duration) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let store = MemStore::new();
        let vfs = S3Vfs::new(
            Arc::new(store.clone()),
            FsConfig::default().with_metadata_ttl(ttl),
        );
        let mut model = ModelFs::default();
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let got = apply_to_vfs(&vfs, &store, op).await;
            prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            let seen = walk(&vfs)
                .await
                .map_err(|e| TestCaseError::fail(format!("step {step}: walk failed: {e}")))?;
            prop_assert_eq!(seen, model.tree(), "step {}: after {:?}", step, op);
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
