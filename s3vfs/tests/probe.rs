//! The capability probe (`s3vfs doctor`, and the mount's conditional-write check): what it
//! says of a store that does everything, of stores that lack something, and that it leaves
//! nothing behind.

use s3vfs::store::probe::{self, Verdict, CONDITIONAL_WRITES};
use s3vfs::store::{Backend, Capabilities, S3Store, StoreError, StoreErrorKind};
use s3vfs_testkit::fault::{FaultStore, Op};
use s3vfs_testkit::server::S3Server;
use s3vfs_testkit::MemStore;
use std::sync::Arc;

/// S3's limits with parts small enough for a quick test.
fn small_parts() -> Capabilities {
    Capabilities {
        min_part_size: 1024,
        ..Capabilities::default()
    }
}

fn verdicts(checks: &[probe::Check]) -> Vec<(&'static str, Verdict)> {
    checks.iter().map(|c| (c.name, c.verdict.clone())).collect()
}

#[tokio::test]
async fn every_check_works_on_a_store_that_does_what_s3_does_and_nothing_is_left() {
    let mem = MemStore::with_capabilities(small_parts());
    mem.insert("data/kept", "a user's object");
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    let checks = probe::run(&store, "data/").await;
    assert_eq!(checks.len(), 10, "{checks:#?}");
    for check in &checks {
        assert_eq!(check.verdict, Verdict::Works, "{check:#?}");
    }
    assert_eq!(mem.keys(), vec!["data/kept".to_owned()]);
    assert_eq!(mem.open_uploads(), 0);
}

#[tokio::test]
async fn every_check_works_through_the_s3_client_over_http() {
    let mem = MemStore::with_capabilities(small_parts());
    let server = S3Server::serve_store("probe-bucket", Arc::new(mem.clone()))
        .await
        .expect("server starts");
    let config = server
        .store_config("probe-bucket")
        .capabilities(small_parts());
    let store: Arc<dyn Backend> = Arc::new(S3Store::new(config).await.expect("client"));
    let checks = probe::run(&store, "").await;
    for check in &checks {
        assert_eq!(check.verdict, Verdict::Works, "{check:#?}");
    }
    assert!(mem.is_empty(), "{:?}", mem.keys());
}

#[tokio::test]
async fn a_store_that_ignores_write_conditions_lacks_conditional_writes() {
    // Garage and `rclone serve s3` store the object whatever If-None-Match and If-Match say.
    let mem = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..small_parts()
    });
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    let check = probe::conditional_writes(&store, "").await;
    assert_eq!(check.name, CONDITIONAL_WRITES);
    assert_eq!(check.verdict, Verdict::Lacks, "{check:#?}");
    assert!(check.detail.contains("ignored"), "{}", check.detail);
    assert!(
        check.detail.contains("last-writer-wins"),
        "{}",
        check.detail
    );
    assert!(mem.is_empty(), "{:?}", mem.keys());

    let checks = probe::run(&store, "").await;
    let lacking: Vec<_> = verdicts(&checks)
        .into_iter()
        .filter(|(_, v)| *v != Verdict::Works)
        .collect();
    assert_eq!(lacking, vec![(CONDITIONAL_WRITES, Verdict::Lacks)]);
}

#[tokio::test]
async fn a_store_that_honours_conditions_passes_the_mount_check() {
    let store: Arc<dyn Backend> = Arc::new(MemStore::new());
    let check = probe::conditional_writes(&store, "p/").await;
    assert_eq!(check.verdict, Verdict::Works, "{check:#?}");
}

#[tokio::test]
async fn refused_markers_and_denied_access_are_told_apart() {
    let mem = MemStore::with_capabilities(small_parts());
    let faults = FaultStore::new(Arc::new(mem.clone()));
    // `rclone serve s3` answers InternalError to a PUT of a `dir/` key.
    faults.fail_matching(
        |op, key| op == Op::Put && key.ends_with("/dir/"),
        StoreError::new(StoreErrorKind::Other, "cannot store a dir").with_code("InternalError"),
    );
    let store: Arc<dyn Backend> = Arc::new(faults.clone());
    let checks = probe::run(&store, "").await;
    let markers = checks
        .iter()
        .find(|c| c.name.starts_with("directory markers"))
        .expect("a marker check");
    assert_eq!(markers.verdict, Verdict::Lacks, "{markers:#?}");
    assert!(
        markers.detail.contains("marker fails"),
        "{}",
        markers.detail
    );
    assert!(mem.is_empty(), "{:?}", mem.keys());

    faults.clear();
    faults.fail_matching(
        |_, _| true,
        StoreError::new(StoreErrorKind::AccessDenied, "denied").with_code("AccessDenied"),
    );
    let checks = probe::run(&store, "").await;
    assert_eq!(checks.len(), 1, "nothing more is tried without a listing");
    assert_eq!(checks[0].verdict, Verdict::Failed);
    assert!(
        checks[0].detail.contains("AccessDenied"),
        "{}",
        checks[0].detail
    );
}
