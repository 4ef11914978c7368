//! The transfer engine against in-memory buckets, with counted requests and injected
//! faults: server-side and streamed copies, the request cap, resume after a kill, retries,
//! a source changed mid-copy, verification, sync.

use s3vfs::store::{Backend, Capabilities, ObjectKey, PutOptions, StoreError, StoreErrorKind};
use s3vfs::transfer::{
    plan::SyncAction, Job, Method, ObjectUrl, Outcome, Transfer, TransferConfig, Verified,
};
use s3vfs_testkit::fault::Op;
use s3vfs_testkit::InstrumentedBuckets;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIB: usize = 1024;

/// Buckets `names` of one endpoint, with parts as small as 1 KiB so multipart copies stay
/// small, each request delayed by `latency`.
fn endpoint_with_latency(names: &[&str], latency: Duration) -> InstrumentedBuckets {
    let caps = Capabilities {
        min_part_size: KIB as u64,
        max_single_put: 64 * KIB as u64,
        ..Capabilities::default()
    };
    names
        .iter()
        .fold(InstrumentedBuckets::new(), |endpoint, name| {
            endpoint.with_bucket(name, caps, latency)
        })
}

fn endpoint(names: &[&str]) -> InstrumentedBuckets {
    endpoint_with_latency(names, Duration::ZERO)
}

fn config() -> TransferConfig {
    TransferConfig {
        part_size: 4 * KIB as u64,
        copy_part_size: 4 * KIB as u64,
        multipart_threshold: 8 * KIB as u64,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..TransferConfig::default()
    }
}

fn same_endpoint(endpoint: &InstrumentedBuckets, config: TransferConfig) -> Transfer {
    let provider = Arc::new(endpoint.clone());
    Transfer::new(provider.clone(), provider, config)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn job(source: &str, dest: &str) -> Job {
    Job {
        source: ObjectUrl::parse(source).unwrap(),
        dest: ObjectUrl::parse(dest).unwrap(),
    }
}

fn with_metadata() -> PutOptions {
    PutOptions {
        user_metadata: BTreeMap::from([
            ("mode".to_owned(), "33188".to_owned()),
            ("uid".to_owned(), "1000".to_owned()),
            ("mtime".to_owned(), "1700000000".to_owned()),
        ]),
        content_type: Some("video/mp4".to_owned()),
        tags: BTreeMap::from([("show".to_owned(), "evening news".to_owned())]),
        ..PutOptions::default()
    }
}

#[tokio::test]
async fn server_side_copies_move_no_bytes_through_the_client_and_keep_metadata() {
    let endpoint = endpoint(&["videos", "archive"]);
    let small = data(5 * KIB, 1);
    let big = data(30 * KIB + 17, 2);
    endpoint
        .get("videos")
        .mem
        .insert_with("s.mp4", small.clone(), with_metadata());
    endpoint
        .get("videos")
        .mem
        .insert_with("b.mp4", big.clone(), with_metadata());
    let transfer = same_endpoint(&endpoint, config());

    let one = transfer
        .copy(&job("s3://videos/s.mp4", "s3://archive/s.mp4"))
        .await;
    assert_eq!(one.result, Outcome::Copied, "{one:?}");
    assert_eq!(one.method, Method::CopyObject);
    assert_eq!(one.verified, Verified::SizeAndEtag);
    assert_eq!(one.bytes_through_client, 0);

    let parts = transfer
        .copy(&job("s3://videos/b.mp4", "s3://archive/in/b.mp4"))
        .await;
    assert_eq!(parts.result, Outcome::Copied, "{parts:?}");
    assert_eq!(parts.method, Method::PartCopy);
    assert_eq!(parts.parts, 8, "30 KiB in 4 KiB parts");
    assert_eq!(parts.verified, Verified::SizeAndEtag);

    let archive = &endpoint.get("archive").mem;
    assert_eq!(archive.get_bytes("s.mp4").unwrap(), small);
    assert_eq!(archive.get_bytes("in/b.mp4").unwrap(), big);
    for key in ["s.mp4", "in/b.mp4"] {
        let meta = archive.meta(key).unwrap();
        assert_eq!(meta.user_metadata, with_metadata().user_metadata, "{key}");
        assert_eq!(meta.content_type, with_metadata().content_type, "{key}");
        let tags = archive.get_tags(&ObjectKey::new(key)).await.unwrap();
        assert_eq!(tags, with_metadata().tags, "{key}");
    }
    let counts = &endpoint.get("archive").counts;
    assert_eq!(counts.count(Op::Copy), 1);
    assert_eq!(counts.count(Op::UploadPartCopy), 8);
    for op in [Op::Put, Op::UploadPart, Op::Get] {
        assert_eq!(counts.count(op), 0, "{op}");
    }
    assert_eq!(endpoint.get("videos").counts.count(Op::Get), 0);
    assert_eq!(archive.open_uploads(), 0);
}

#[tokio::test]
async fn streamed_copies_between_endpoints_are_verified_part_by_part() {
    let from = endpoint(&["videos"]);
    let to = endpoint(&["archive"]);
    let big = data(21 * KIB, 3);
    from.get("videos")
        .mem
        .insert_with("b.mp4", big.clone(), with_metadata());
    from.get("videos").mem.insert("small", data(100, 4));
    let config = TransferConfig {
        server_side: false,
        ..config()
    };
    let transfer = Transfer::new(Arc::new(from.clone()), Arc::new(to.clone()), config);
    let report = transfer
        .copy(&job("s3://videos/b.mp4", "s3://archive/b.mp4"))
        .await;
    assert_eq!(report.result, Outcome::Copied, "{report:?}");
    assert_eq!(report.method, Method::StreamedParts);
    assert_eq!(report.parts, 6);
    assert_eq!(report.bytes_through_client, big.len() as u64);
    assert_eq!(report.verified, Verified::SizeAndEtag);
    assert_eq!(to.get("archive").mem.get_bytes("b.mp4").unwrap(), big);
    let meta = to.get("archive").mem.meta("b.mp4").unwrap();
    assert_eq!(meta.user_metadata, with_metadata().user_metadata);
    let tags = to
        .get("archive")
        .mem
        .get_tags(&ObjectKey::new("b.mp4"))
        .await;
    assert_eq!(tags.unwrap(), with_metadata().tags);
    let small = transfer
        .copy(&job("s3://videos/small", "s3://archive/small"))
        .await;
    assert_eq!(
        (small.result, small.method),
        (Outcome::Copied, Method::StreamedPut)
    );
    assert_eq!(small.verified, Verified::SizeAndEtag);
    // Every GET was a ranged one pinned to the source's version (the whole object once
    // for the small one).
    assert_eq!(from.get("videos").counts.count(Op::Get), 7);
}

#[tokio::test]
async fn a_thousand_objects_never_exceed_the_request_cap() {
    let endpoint = endpoint_with_latency(&["a", "b"], Duration::from_millis(2));
    for i in 0..1000 {
        endpoint
            .get("a")
            .mem
            .insert(format!("small/{i:04}"), data(64, i as u8));
    }
    let cap = 8;
    let transfer = same_endpoint(
        &endpoint,
        TransferConfig {
            max_concurrent_requests: cap,
            max_concurrent_objects: 64,
            ..config()
        },
    );
    let jobs = transfer
        .list_jobs(
            &ObjectUrl::parse("s3://a/small").unwrap(),
            &ObjectUrl::parse("s3://b/copy/").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1000);
    let summary = transfer
        .run(futures::stream::iter(jobs.into_iter().map(Ok)), |_| {})
        .await;
    assert_eq!(summary.copied, 1000, "{summary:?}");
    assert!(summary.all_ok());
    assert_eq!(endpoint.get("b").mem.len(), 1000);
    assert_eq!(
        endpoint.get("b").mem.get_bytes("copy/0007").unwrap(),
        data(64, 7)
    );
    // Requests in flight at both buckets together stayed within the cap, and reached it.
    assert_eq!(endpoint.get("b").counts.max_in_flight(), cap as u64);
}

#[tokio::test]
async fn a_killed_copy_resumes_with_only_the_missing_parts() {
    let endpoint = endpoint_with_latency(&["a", "b"], Duration::from_millis(20));
    let big = data(40 * KIB, 5);
    endpoint.get("a").mem.insert("v.mp4", big.clone());
    let journals = tempfile::tempdir().unwrap();
    let config = TransferConfig {
        max_concurrent_requests: 2,
        journal_dir: Some(journals.path().to_owned()),
        ..config()
    };
    let done_parts = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&done_parts);
    let transfer = same_endpoint(&endpoint, config.clone()).on_event(move |event| {
        if let s3vfs::transfer::Event::Copied(_) = event {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let the_job = job("s3://a/v.mp4", "s3://b/v.mp4");
    let running = tokio::spawn({
        let (transfer, the_job) = (transfer.clone(), the_job.clone());
        async move { transfer.copy(&the_job).await }
    });
    while done_parts.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    running.abort(); // as a kill would: nothing runs after this point
    let _ = running.await;
    let before = endpoint.get("b").counts.count(Op::UploadPartCopy);
    assert!(
        (4..10).contains(&before),
        "{before} parts copied before the kill"
    );
    assert_eq!(
        endpoint.get("b").mem.open_uploads(),
        1,
        "the upload is kept for a resume"
    );
    assert!(endpoint.get("b").mem.get_bytes("v.mp4").is_none());

    endpoint.get("b").counts.reset();
    let resumed = same_endpoint(&endpoint, config).copy(&the_job).await;
    assert_eq!(resumed.result, Outcome::Copied, "{resumed:?}");
    assert_eq!(resumed.parts, 10);
    let recorded = u64::from(resumed.resumed_parts);
    assert!(recorded >= 4, "{recorded} parts found in the journal");
    let again = endpoint.get("b").counts.count(Op::UploadPartCopy);
    assert_eq!(
        again,
        10 - recorded,
        "only the missing parts are copied again"
    );
    assert_eq!(endpoint.get("b").counts.count(Op::CreateMultipart), 0);
    assert_eq!(endpoint.get("b").mem.get_bytes("v.mp4").unwrap(), big);
    assert_eq!(endpoint.get("b").mem.open_uploads(), 0);
    assert_eq!(
        std::fs::read_dir(journals.path()).unwrap().count(),
        0,
        "journal removed"
    );
}

#[tokio::test]
async fn a_resume_after_the_source_changed_aborts_the_old_upload_and_starts_over() {
    let endpoint = endpoint(&["a", "b"]);
    endpoint.get("a").mem.insert("v.mp4", data(20 * KIB, 6));
    let journals = tempfile::tempdir().unwrap();
    let config = TransferConfig {
        max_attempts: 1,
        journal_dir: Some(journals.path().to_owned()),
        ..config()
    };
    let the_job = job("s3://a/v.mp4", "s3://b/v.mp4");
    endpoint.get("b").faults.fail_nth(
        Op::UploadPartCopy,
        3,
        StoreError::new(StoreErrorKind::Transient, "boom"),
    );
    let failed = same_endpoint(&endpoint, config.clone())
        .copy(&the_job)
        .await;
    assert_eq!(failed.result, Outcome::Failed);
    assert_eq!(
        endpoint.get("b").mem.open_uploads(),
        1,
        "kept: a retryable failure resumes"
    );

    let changed = data(20 * KIB, 7);
    endpoint.get("a").mem.insert("v.mp4", changed.clone());
    let fresh = same_endpoint(&endpoint, config).copy(&the_job).await;
    assert_eq!(fresh.result, Outcome::Copied, "{fresh:?}");
    assert_eq!(fresh.resumed_parts, 0);
    assert_eq!(endpoint.get("b").mem.get_bytes("v.mp4").unwrap(), changed);
    assert_eq!(
        endpoint.get("b").mem.open_uploads(),
        0,
        "the old upload was aborted"
    );
}

#[tokio::test]
async fn slowdown_storms_timeouts_and_failed_parts_end_copied_or_reported() {
    let endpoint = endpoint(&["a", "b"]);
    let big = data(24 * KIB, 8);
    endpoint.get("a").mem.insert("v.mp4", big.clone());
    let transfer = same_endpoint(
        &endpoint,
        TransferConfig {
            max_attempts: 12,
            ..config()
        },
    );
    // A storm of SlowDown answers: retried with backoff, the copy finishes.
    endpoint.get("b").faults.throttle_next(10);
    let report = transfer.copy(&job("s3://a/v.mp4", "s3://b/storm")).await;
    assert_eq!(report.result, Outcome::Copied, "{report:?}");
    assert_eq!(endpoint.get("b").mem.get_bytes("storm").unwrap(), big);

    // A part that fails for good: the copy is reported failed, its upload aborted, and
    // nothing appears at the destination.
    endpoint.get("b").faults.fail_nth(
        Op::UploadPartCopy,
        2,
        StoreError::new(StoreErrorKind::AccessDenied, "denied"),
    );
    let report = transfer.copy(&job("s3://a/v.mp4", "s3://b/denied")).await;
    assert_eq!(report.result, Outcome::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("denied"),
        "{report:?}"
    );
    assert!(endpoint.get("b").mem.get_bytes("denied").is_none());
    assert_eq!(endpoint.get("b").mem.open_uploads(), 0);

    // Requests the server holds without answering: abandoned at the timeout, tried again.
    let timed = same_endpoint(
        &endpoint,
        TransferConfig {
            request_timeout: Duration::from_millis(100),
            ..config()
        },
    );
    endpoint
        .get("b")
        .faults
        .stall_next(3, Duration::from_secs(3600));
    let report = timed.copy(&job("s3://a/v.mp4", "s3://b/stalled")).await;
    assert_eq!(report.result, Outcome::Copied, "{report:?}");
    assert_eq!(endpoint.get("b").mem.get_bytes("stalled").unwrap(), big);
}

#[tokio::test]
async fn a_request_past_its_timeout_is_abandoned_and_retried() {
    let endpoint = endpoint_with_latency(&["a", "b"], Duration::from_millis(300));
    endpoint.get("a").mem.insert("v", data(100, 10));
    let transfer = same_endpoint(
        &endpoint,
        TransferConfig {
            request_timeout: Duration::from_millis(50),
            max_attempts: 2,
            ..config()
        },
    );
    let started = Instant::now();
    let report = transfer.copy(&job("s3://a/v", "s3://b/v")).await;
    assert_eq!(report.result, Outcome::Failed);
    let error = report.error.unwrap();
    assert!(error.contains("no answer within"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout bounds the wait"
    );
    assert_eq!(endpoint.get("a").counts.count(Op::Head), 2, "tried twice");
}

#[tokio::test]
async fn a_source_changed_during_a_part_copy_fails_and_leaves_nothing() {
    let endpoint = endpoint(&["a", "b"]);
    endpoint.get("a").mem.insert("v", data(20 * KIB, 11));
    // The first part copy finds a new version of the source.
    let mem = endpoint.get("a").mem.clone();
    endpoint.get("b").faults.fail_matching(
        move |op, _key| {
            if op == Op::UploadPartCopy && mem.len() == 1 {
                mem.insert("v", data(20 * KIB, 12));
                mem.insert("marker", "x");
            }
            false
        },
        StoreError::new(StoreErrorKind::Other, "unused"),
    );
    let report = same_endpoint(&endpoint, config())
        .copy(&job("s3://a/v", "s3://b/v"))
        .await;
    assert_eq!(report.result, Outcome::Failed, "{report:?}");
    assert!(report.error.unwrap().contains("precondition"));
    assert!(endpoint.get("b").mem.get_bytes("v").is_none());
    assert_eq!(endpoint.get("b").mem.open_uploads(), 0);
}

#[tokio::test]
async fn a_deadline_interrupts_and_the_copy_is_the_same_object_check() {
    let endpoint = endpoint_with_latency(&["a", "b"], Duration::from_millis(50));
    endpoint.get("a").mem.insert("v", data(40 * KIB, 13));
    let transfer = same_endpoint(
        &endpoint,
        TransferConfig {
            deadline: Some(Instant::now() + Duration::from_millis(120)),
            ..config()
        },
    );
    let report = transfer.copy(&job("s3://a/v", "s3://b/v")).await;
    assert_eq!(report.result, Outcome::Interrupted, "{report:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        endpoint.get("b").mem.open_uploads(),
        0,
        "no journal: the upload is aborted"
    );
    let same = same_endpoint(&endpoint, config())
        .copy(&job("s3://a/v", "s3://a/v"))
        .await;
    assert_eq!(same.result, Outcome::Failed);
}

#[tokio::test]
async fn sync_copies_what_differs_skips_what_is_the_same_and_deletes_on_request() {
    let endpoint = endpoint(&["a", "b"]);
    let a = &endpoint.get("a").mem;
    let b = &endpoint.get("b").mem;
    a.insert("src/same", "same");
    a.insert("src/changed", "new!");
    a.insert("src/new", "n");
    b.insert("dst/same", "same");
    b.insert("dst/changed", "old!");
    b.insert("dst/extra", "x");
    let transfer = same_endpoint(&endpoint, config());
    let (source, dest) = (
        ObjectUrl::parse("s3://a/src").unwrap(),
        ObjectUrl::parse("s3://b/dst").unwrap(),
    );
    let plan = transfer.plan_sync(&source, &dest, true).await.unwrap();
    let mut copies: Vec<String> = Vec::new();
    let mut skips = Vec::new();
    let mut deletes = Vec::new();
    for action in &plan {
        match action {
            SyncAction::Copy(job) => copies.push(job.dest.key.clone()),
            SyncAction::Skip(job, _) => skips.push(job.dest.key.clone()),
            SyncAction::Delete(url) => deletes.push(url.key.clone()),
        }
    }
    assert_eq!(copies, ["dst/changed", "dst/new"]);
    assert_eq!(skips, ["dst/same"]);
    assert_eq!(deletes, ["dst/extra"]);
    let without_delete = transfer.plan_sync(&source, &dest, false).await.unwrap();
    assert!(!without_delete
        .iter()
        .any(|a| matches!(a, SyncAction::Delete(_))));
}
