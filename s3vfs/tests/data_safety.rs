//! Data-safety regressions of the write path, each reproduced as a user met it: what
//! `close`/`fsync` acknowledged is in the store, what a truncate or a rename does to an
//! open file's upload, and what happens after a failed part. Small parts (the store
//! accepts 64 KiB parts here) keep multipart shapes fast.

use bytes::Bytes;
use s3vfs::store::{Capabilities, StoreError, StoreErrorKind};
use s3vfs::vfs::{Handle, Ino, OpenFlags, SetAttr, Vfs};
use s3vfs::{FsConfig, S3Fs};
use s3vfs_testkit::fault::{FaultStore, LatencyStore, Op};
use s3vfs_testkit::MemStore;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

const PART: u64 = 64 * 1024;

fn small_parts() -> Capabilities {
    Capabilities {
        min_part_size: PART,
        ..Capabilities::default()
    }
}

fn store() -> MemStore {
    MemStore::with_capabilities(small_parts())
}

fn config() -> FsConfig {
    FsConfig::default()
        .with_write_part_size(PART)
        // Failures these tests provoke keep files: under the target directory, not /tmp.
        .with_recovery_dir(Some(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("data-safety-recovery"),
        ))
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// Compares contents without printing megabytes: the lengths and the first difference.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    let first_difference = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "{what}: {} bytes, expected {}; first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
}

fn rw() -> OpenFlags {
    OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::default()
    }
}

async fn create(fs: &S3Fs, parent: Ino, name: &str) -> (Ino, Handle) {
    let (entry, handle) = fs
        .create(parent, OsStr::new(name), 0o644, rw())
        .await
        .expect("create");
    (entry.attr.ino, handle)
}

async fn open(fs: &S3Fs, parent: Ino, name: &str, flags: OpenFlags) -> (Ino, Handle) {
    let ino = fs
        .lookup(parent, OsStr::new(name))
        .await
        .expect("lookup")
        .attr
        .ino;
    (ino, fs.open(ino, flags).await.expect("open"))
}

async fn write_all(fs: &S3Fs, ino: Ino, h: Handle, mut offset: u64, data: &[u8], chunk: usize) {
    for piece in data.chunks(chunk) {
        let n = fs
            .write(ino, h, offset, Bytes::copy_from_slice(piece))
            .await
            .expect("write");
        offset += u64::from(n);
    }
}

async fn close(fs: &S3Fs, ino: Ino, h: Handle) -> Result<(), s3vfs::VfsError> {
    let flushed = fs.flush(ino, h).await;
    fs.release(ino, h).await.expect("release");
    flushed
}

/// A file written in parts (so its ETag is a multipart one, which a server-side copy
/// changes), closed.
async fn multipart_file(fs: &S3Fs, parent: Ino, name: &str, len: usize) -> Bytes {
    let data = pattern(len, 3);
    let (ino, h) = create(fs, parent, name).await;
    write_all(fs, ino, h, 0, &data, 16 * 1024).await;
    close(fs, ino, h).await.expect("close");
    data
}

fn append() -> OpenFlags {
    OpenFlags {
        write: true,
        append: true,
        ..OpenFlags::default()
    }
}

#[tokio::test]
async fn an_open_appender_follows_its_multipart_file_across_a_rename() {
    let inner = store();
    let fs = S3Fs::new(Arc::new(inner.clone()), config());
    let data = multipart_file(&fs, Ino::ROOT, "app.log", 5 * PART as usize + 100).await;
    let old_etag = inner.meta("app.log").unwrap().etag;
    let (ino, h) = open(&fs, Ino::ROOT, "app.log", append()).await;
    fs.rename(
        Ino::ROOT,
        OsStr::new("app.log"),
        Ino::ROOT,
        OsStr::new("app.log.1"),
        false,
    )
    .await
    .expect("rename");
    assert_ne!(
        inner.meta("app.log.1").unwrap().etag,
        old_etag,
        "the copy gave the new key another ETag (the case under test)"
    );
    write_all(&fs, ino, h, 0, b"seventeen bytes!\n", 17).await;
    close(&fs, ino, h).await.expect("close after the rename");
    let mut expected = data.to_vec();
    expected.extend_from_slice(b"seventeen bytes!\n");
    assert_same(
        &inner.get_bytes("app.log.1").unwrap(),
        &expected,
        "app.log.1",
    );
    assert!(
        inner.get_bytes("app.log").is_none(),
        "nothing at the old name"
    );
}

#[tokio::test]
async fn an_open_writer_follows_its_file_across_a_directory_rename() {
    let inner = store();
    let fs = S3Fs::new(Arc::new(inner.clone()), config());
    let dir = fs
        .mkdir(Ino::ROOT, OsStr::new("logs"), 0o755)
        .await
        .expect("mkdir")
        .attr
        .ino;
    let data = multipart_file(&fs, dir, "app.log", 3 * PART as usize + 7).await;
    let (ino, h) = open(&fs, dir, "app.log", append()).await;
    fs.rename(
        Ino::ROOT,
        OsStr::new("logs"),
        Ino::ROOT,
        OsStr::new("old-logs"),
        false,
    )
    .await
    .expect("rename");
    write_all(&fs, ino, h, 0, b"tail", 4).await;
    close(&fs, ino, h).await.expect("close after the rename");
    let mut expected = data.to_vec();
    expected.extend_from_slice(b"tail");
    assert_same(
        &inner.get_bytes("old-logs/app.log").unwrap(),
        &expected,
        "old-logs/app.log",
    );
    assert!(inner.get_bytes("logs/app.log").is_none());
}

#[tokio::test]
async fn a_truncate_below_a_streamed_write_ends_the_stream() {
    // open(O_CREAT|O_TRUNC), 100 × 'A', ftruncate(0), pwrite(100 × 'B' at 100), close.
    let inner = store();
    let fs = S3Fs::new(Arc::new(inner.clone()), config());
    let (ino, h) = create(&fs, Ino::ROOT, "t").await;
    write_all(&fs, ino, h, 0, &[b'A'; 100], 100).await;
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(ino, Some(h), truncate).await.expect("ftruncate");
    write_all(&fs, ino, h, 100, &[b'B'; 100], 100).await;
    let mut expected = vec![0u8; 100];
    expected.extend_from_slice(&[b'B'; 100]);
    assert_same(
        &fs.read(ino, h, 0, 1000).await.unwrap(),
        &expected,
        "read back",
    );
    close(&fs, ino, h).await.expect("close");
    assert_same(&inner.get_bytes("t").unwrap(), &expected, "t");
}

#[tokio::test]
async fn a_truncate_below_parts_already_sent_keeps_only_what_is_left() {
    let inner = store();
    let fs = S3Fs::new(Arc::new(inner.clone()), config());
    let data = pattern(4 * PART as usize, 9);
    let (ino, h) = create(&fs, Ino::ROOT, "t").await;
    write_all(&fs, ino, h, 0, &data, 8 * 1024).await;
    let cut = PART + 10;
    let truncate = SetAttr {
        size: Some(cut),
        ..SetAttr::default()
    };
    fs.setattr(ino, Some(h), truncate).await.expect("ftruncate");
    // And the writer goes on where the file now ends.
    write_all(&fs, ino, h, cut, b"end", 3).await;
    close(&fs, ino, h).await.expect("close");
    let mut expected = data[..cut as usize].to_vec();
    expected.extend_from_slice(b"end");
    assert_same(&inner.get_bytes("t").unwrap(), &expected, "t");
    tokio::task::yield_now().await;
    assert_eq!(inner.open_uploads(), 0, "the first stream was aborted");
}

#[tokio::test]
async fn a_writer_that_goes_on_after_a_failed_part_never_gets_a_short_object() {
    let inner = store();
    let faults = Arc::new(FaultStore::new(Arc::new(inner.clone())));
    faults.fail_nth(
        Op::UploadPart,
        2,
        StoreError::new(StoreErrorKind::Other, "injected part failure"),
    );
    let fs = S3Fs::new(faults.clone(), config());
    let (ino, h) = create(&fs, Ino::ROOT, "w.bin").await;
    let data = pattern(8 * PART as usize, 4);
    let mut failed_writes = 0;
    for (i, piece) in data.chunks(8 * 1024).enumerate() {
        let offset = (i * 8 * 1024) as u64;
        if fs
            .write(ino, h, offset, Bytes::copy_from_slice(piece))
            .await
            .is_err()
        {
            failed_writes += 1;
        }
        // Let part uploads finish, so the failure is noticed by a later write.
        tokio::task::yield_now().await;
    }
    assert!(
        failed_writes > 0,
        "the failed part is reported to the writer"
    );
    let after = pattern(100, 1);
    let offset = data.len() as u64;
    assert!(
        fs.write(ino, h, offset, after).await.is_err(),
        "every write after the failure fails"
    );
    assert!(fs.fsync(ino, h).await.is_err(), "fsync fails");
    assert!(close(&fs, ino, h).await.is_err(), "close fails");
    assert!(
        inner.get_bytes("w.bin").is_none(),
        "no object, short or not"
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(inner.open_uploads(), 0, "the upload was aborted");
}

/// A close that lands while a rename is copying its file: with the rename holding the
/// names, the upload waits and follows the file to its new name; without, it would land
/// on the old key and be deleted with it after `close` returned 0.
async fn close_racing_a_rename(dir_rename: bool) {
    let inner = store();
    // Deletes are slow, so the close lands between the rename's copy and its delete.
    let slow_deletes = LatencyStore::new(Arc::new(inner.clone()), Duration::ZERO)
        .with_op_delay(Op::Delete, Duration::from_millis(300))
        .with_op_delay(Op::DeleteMany, Duration::from_millis(300));
    let fs = S3Fs::new(Arc::new(slow_deletes), config());
    let dir = fs
        .mkdir(Ino::ROOT, OsStr::new("d"), 0o755)
        .await
        .expect("mkdir")
        .attr
        .ino;
    let data = multipart_file(&fs, dir, "f", 2 * PART as usize + 1).await;
    let (ino, h) = open(&fs, dir, "f", append()).await;
    let (from_parent, from, to) = if dir_rename {
        (Ino::ROOT, "d", "e")
    } else {
        (dir, "f", "g")
    };
    let rename = {
        let fs = Arc::clone(&fs);
        tokio::spawn(async move {
            fs.rename(
                from_parent,
                OsStr::new(from),
                from_parent,
                OsStr::new(to),
                false,
            )
            .await
        })
    };
    // The rename has copied and is deleting now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_all(&fs, ino, h, 0, b"late", 4).await;
    close(&fs, ino, h).await.expect("close during the rename");
    rename.await.expect("task").expect("rename");
    let mut expected = data.to_vec();
    expected.extend_from_slice(b"late");
    let new_key = if dir_rename { "e/f" } else { "d/g" };
    assert_same(&inner.get_bytes(new_key).unwrap(), &expected, new_key);
    assert!(
        inner.get_bytes("d/f").is_none(),
        "nothing left at the old name"
    );
}

#[tokio::test]
async fn a_close_racing_a_file_rename_keeps_its_data() {
    close_racing_a_rename(false).await;
}

#[tokio::test]
async fn a_close_racing_a_directory_rename_keeps_its_data() {
    close_racing_a_rename(true).await;
}

/// An unlink while a close is uploading the same file: the unlink waits for the upload
/// and then removes the file; without, the upload landed after the delete and the file
/// came back after unlink returned 0.
#[tokio::test]
async fn an_unlink_during_a_close_leaves_no_file() {
    let inner = store();
    let slow_puts = LatencyStore::new(Arc::new(inner.clone()), Duration::ZERO)
        .with_op_delay(Op::Put, Duration::from_millis(300));
    let fs = S3Fs::new(Arc::new(slow_puts), config());
    let (ino, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("f"),
            0o644,
            OpenFlags::from_posix(libc::O_WRONLY),
        )
        .await
        .map(|(entry, h)| (entry.attr.ino, h))
        .expect("create");
    write_all(&fs, ino, h, 0, b"data", 4).await;
    let closing = {
        let fs = Arc::clone(&fs);
        tokio::spawn(async move { close(&fs, ino, h).await })
    };
    // The close is uploading now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    fs.unlink(Ino::ROOT, OsStr::new("f")).await.expect("unlink");
    closing.await.expect("task").expect("close");
    assert!(
        inner.get_bytes("f").is_none(),
        "the file came back after unlink"
    );
}

#[tokio::test]
async fn sizes_past_the_largest_object_are_efbig_and_nothing_is_uploaded() {
    let inner = store();
    let counting = Arc::new(s3vfs_testkit::fault::CountingStore::new(Arc::new(
        inner.clone(),
    )));
    let fs = S3Fs::new(counting.clone(), config());
    let (ino, h) = create(&fs, Ino::ROOT, "f").await;
    write_all(&fs, ino, h, 0, b"kept", 4).await;
    close(&fs, ino, h).await.expect("close");
    counting.reset();
    for size in [1u64 << 62, 999_999_999_999_999, (5u64 << 40) + 1, u64::MAX] {
        let truncate = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        let err = fs.setattr(ino, None, truncate).await.expect_err("truncate");
        assert_eq!(err.errno(), libc::EFBIG, "truncate to {size}: {err}");
    }
    let (ino, h) = open(&fs, Ino::ROOT, "f", rw()).await;
    let truncate = SetAttr {
        size: Some(1 << 62),
        ..SetAttr::default()
    };
    let err = fs
        .setattr(ino, Some(h), truncate)
        .await
        .expect_err("ftruncate");
    assert_eq!(err.errno(), libc::EFBIG);
    for offset in [5u64 << 40, u64::MAX - 1] {
        let err = fs
            .write(ino, h, offset, Bytes::from_static(b"xy"))
            .await
            .expect_err("pwrite past the largest object");
        assert_eq!(err.errno(), libc::EFBIG, "pwrite at {offset}: {err}");
    }
    close(&fs, ino, h).await.expect("close");
    let changes = counting.total() - counting.count(Op::Head) - counting.count(Op::List);
    assert_eq!(changes, 0, "nothing written: {:?}", counting.counts());
    assert_eq!(inner.get_bytes("f").unwrap(), "kept");
}

#[tokio::test]
async fn a_configured_max_file_size_is_enforced() {
    let inner = store();
    let fs = S3Fs::new(
        Arc::new(inner.clone()),
        config().with_max_file_size(10 * PART),
    );
    let (ino, h) = create(&fs, Ino::ROOT, "f").await;
    let truncate = SetAttr {
        size: Some(10 * PART + 1),
        ..SetAttr::default()
    };
    let err = fs
        .setattr(ino, Some(h), truncate)
        .await
        .expect_err("ftruncate");
    assert_eq!(err.errno(), libc::EFBIG);
    let at_limit = SetAttr {
        size: Some(10 * PART),
        ..SetAttr::default()
    };
    fs.setattr(ino, Some(h), at_limit)
        .await
        .expect("up to the limit");
    close(&fs, ino, h).await.expect("close");
    let stored = inner.get_bytes("f").unwrap();
    assert_eq!(stored.len() as u64, 10 * PART);
    assert!(stored.iter().all(|b| *b == 0));
}

#[tokio::test]
async fn a_truncate_up_to_many_parts_stores_zeros() {
    // A sparse 40-part file: every part body is a slice of the shared zero buffer
    // (`zeros.rs` tests that the slices share one buffer).
    let inner = store();
    let fs = S3Fs::new(Arc::new(inner.clone()), config());
    let (ino, h) = create(&fs, Ino::ROOT, "sparse").await;
    close(&fs, ino, h).await.expect("close");
    let size = 40 * PART + 3;
    let truncate = SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    fs.setattr(ino, None, truncate).await.expect("truncate up");
    let stored = inner.get_bytes("sparse").unwrap();
    assert_eq!(stored.len() as u64, size);
    assert!(stored.iter().all(|b| *b == 0));
}

fn with_recovery(dir: &std::path::Path) -> FsConfig {
    config().with_recovery_dir(Some(dir.join("recovery")))
}

fn store_down() -> StoreError {
    StoreError::new(StoreErrorKind::Transient, "injected: the store is down")
}

fn is_write(op: Op) -> bool {
    matches!(
        op,
        Op::Put | Op::CreateMultipart | Op::UploadPart | Op::UploadPartCopy | Op::CompleteMultipart
    )
}

#[tokio::test]
async fn what_cannot_be_uploaded_is_kept_and_reuploaded_later() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = store();
    // An existing multipart object, changed in the middle: the kept file holds only the
    // change, and re-uploading rebuilds the rest from the version it was opened on.
    let old = pattern(5 * PART as usize + 11, 7);
    inner.insert("dir/f", old.clone());
    let faults = Arc::new(FaultStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(faults.clone(), with_recovery(tmp.path()));
    let dir = fs
        .lookup(Ino::ROOT, OsStr::new("dir"))
        .await
        .unwrap()
        .attr
        .ino;
    let (ino, h) = open(&fs, dir, "f", rw()).await;
    write_all(&fs, ino, h, 2 * PART + 5, b"CHANGED", 7).await;
    faults.fail_matching(|op, _| is_write(op), store_down());
    assert!(
        close(&fs, ino, h).await.is_err(),
        "close reports the failure"
    );
    assert_same(
        &inner.get_bytes("dir/f").unwrap(),
        &old,
        "the store keeps the old version",
    );

    let recovery = s3vfs::recovery::RecoveryDir::open(tmp.path().join("recovery")).unwrap();
    let kept = recovery.list().unwrap();
    assert_eq!(kept.len(), 1, "one entry: {kept:?}");
    let m = &kept[0].manifest;
    assert_eq!(m.key, "dir/f");
    assert_eq!(m.size, old.len() as u64);
    assert_eq!(m.written, vec![(2 * PART + 5, 2 * PART + 12)]);
    assert_eq!(
        m.base_etag.as_deref(),
        inner
            .meta("dir/f")
            .unwrap()
            .etag
            .map(|e| e.as_str().to_owned())
            .as_deref()
    );
    assert!(m.error.contains("injected"), "{}", m.error);

    faults.clear();
    recovery
        .reupload(faults.clone(), &kept[0], PART)
        .await
        .expect("re-upload");
    let mut expected = old.to_vec();
    expected[(2 * PART + 5) as usize..(2 * PART + 12) as usize].copy_from_slice(b"CHANGED");
    assert_same(&inner.get_bytes("dir/f").unwrap(), &expected, "re-uploaded");
    assert!(recovery.list().unwrap().is_empty(), "the entry is gone");
    tokio::task::yield_now().await;
    assert_eq!(inner.open_uploads(), 0);
}

#[tokio::test]
async fn a_kept_file_is_never_uploaded_over_a_newer_object() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = store();
    let faults = Arc::new(FaultStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(faults.clone(), with_recovery(tmp.path()));
    let (ino, h) = create(&fs, Ino::ROOT, "new.txt").await;
    write_all(&fs, ino, h, 0, b"mine", 4).await;
    faults.fail_matching(|op, _| is_write(op), store_down());
    assert!(close(&fs, ino, h).await.is_err());
    faults.clear();
    inner.insert("new.txt", Bytes::from_static(b"someone else's"));
    let recovery = s3vfs::recovery::RecoveryDir::open(tmp.path().join("recovery")).unwrap();
    let kept = recovery.list().unwrap();
    assert_eq!(kept.len(), 1);
    let err = recovery
        .reupload(faults.clone(), &kept[0], PART)
        .await
        .expect_err("a newer object is there");
    assert!(
        matches!(err, s3vfs::recovery::RecoveryError::Changed { .. }),
        "{err}"
    );
    assert_eq!(inner.get_bytes("new.txt").unwrap(), "someone else's");
    assert_eq!(recovery.list().unwrap().len(), 1, "the entry stays");
}

#[tokio::test]
async fn writes_after_the_last_flush_are_uploaded_at_the_last_release() {
    // Shared mmap pages are written back at munmap: after close(2)'s flush, before the
    // release. They must reach the store, not be discarded.
    let tmp = tempfile::tempdir().unwrap();
    let inner = store();
    let fs = S3Fs::new(Arc::new(inner.clone()), with_recovery(tmp.path()));
    let (ino, h) = create(&fs, Ino::ROOT, "mapped").await;
    write_all(&fs, ino, h, 0, &[0u8; 4096], 4096).await;
    fs.flush(ino, h).await.expect("flush at close(2)");
    write_all(&fs, ino, h, 10, b"from the mapping", 16).await;
    fs.release(ino, h).await.expect("release");
    let stored = inner.get_bytes("mapped").unwrap();
    assert_eq!(&stored[10..26], b"from the mapping");
    assert_eq!(stored.len(), 4096);
}

#[tokio::test]
async fn a_shutdown_uploads_unsaved_files_keeps_what_it_cannot_and_refuses_new_work() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = store();
    let faults = Arc::new(FaultStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(faults.clone(), with_recovery(tmp.path()));
    let (saved, hs) = create(&fs, Ino::ROOT, "saved").await;
    write_all(&fs, saved, hs, 0, b"written, not closed", 19).await;
    let (kept, hk) = create(&fs, Ino::ROOT, "kept").await;
    write_all(&fs, kept, hk, 0, b"store refuses", 13).await;
    let (clean, hc) = create(&fs, Ino::ROOT, "clean").await;
    close(&fs, clean, hc).await.expect("close");
    faults.fail_matching(|op, key| is_write(op) && key == "kept", store_down());

    let report = fs.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.uploaded, vec!["/saved".to_owned()]);
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert_eq!(report.kept[0].0, "/kept");
    assert!(report.lost.is_empty());
    assert_eq!(inner.get_bytes("saved").unwrap(), "written, not closed");
    assert!(inner.get_bytes("kept").is_none());
    let recovery = s3vfs::recovery::RecoveryDir::open(tmp.path().join("recovery")).unwrap();
    assert_eq!(recovery.list().unwrap()[0].manifest.key, "kept");

    let err = fs
        .write(saved, hs, 19, Bytes::from_static(b"more"))
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::ESHUTDOWN);
    let err = fs.open(clean, rw()).await.unwrap_err();
    assert_eq!(err.errno(), libc::ESHUTDOWN);
    let err = fs
        .create(Ino::ROOT, OsStr::new("new"), 0o644, rw())
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::ESHUTDOWN);
    // The releases that follow the unmount neither upload nor keep anything twice.
    close(&fs, saved, hs).await.expect("nothing left to upload");
    let _ = close(&fs, kept, hk).await;
    assert_eq!(recovery.list().unwrap().len(), 1);
}

#[tokio::test]
async fn a_shutdown_keeps_what_it_cannot_upload_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let inner = store();
    let slow = LatencyStore::new(Arc::new(inner.clone()), Duration::ZERO)
        .with_op_delay(Op::Put, Duration::from_secs(30));
    let fs = S3Fs::new(Arc::new(slow), with_recovery(tmp.path()));
    let (ino, h) = create(&fs, Ino::ROOT, "slow").await;
    write_all(&fs, ino, h, 0, b"late", 4).await;
    let started = std::time::Instant::now();
    let report = fs.shutdown(Duration::from_millis(200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert_eq!(report.kept.len(), 1, "{report:?}");
    let recovery = s3vfs::recovery::RecoveryDir::open(tmp.path().join("recovery")).unwrap();
    let entry = &recovery.list().unwrap()[0];
    assert_eq!(std::fs::read(entry.data_path()).unwrap(), b"late");
    assert!(
        entry.manifest.error.contains("timeout"),
        "{}",
        entry.manifest.error
    );
}

/// Found by the reference model: a truncate through the handle of a new file cached the
/// file's stat, so after its upload failed the name still looked taken (EEXIST) though
/// nothing was stored.
#[tokio::test]
async fn a_failed_new_file_truncated_through_its_handle_leaves_the_name_free() {
    let inner = store();
    let faults = FaultStore::new(Arc::new(inner.clone()));
    let vfs = s3vfs::S3Vfs::new(
        Arc::new(faults.clone()),
        config().with_metadata_ttl(Duration::from_secs(60)),
    );
    let file = vfs.create("b").await.expect("create");
    file.set_len(0).await.expect("ftruncate");
    faults.fail_next(Op::Put, 1, store_down());
    assert_eq!(file.close().await.unwrap_err().errno(), libc::EIO);
    assert!(inner.get_bytes("b").is_none());
    vfs.symlink("a", "b")
        .await
        .expect("the name is free: nothing was stored");
}
