//! The write path against the in-memory store: streaming and staged uploads, overwrite,
//! append, random writes, truncation, read-after-write, conditional uploads between two
//! file systems, failures that must never leave a half object, and copy_file_range
//! (server-side for a whole file, through the handles otherwise).

use bytes::Bytes;
use s3vfs::store::{Capabilities, PutOptions, StoreError, StoreErrorKind};
use s3vfs::vfs::{Handle, Ino, OpenFlags, SetAttr, Vfs, COPY_CHUNK, MAX_COPY_REPLY};
use s3vfs::{FsConfig, S3Fs, S3Vfs, VfsResult};
use s3vfs_testkit::fault::{CountingStore, FaultStore, Op};
use s3vfs_testkit::server::{S3Server, ServerQuirks};
use s3vfs_testkit::MemStore;
use std::ffi::OsStr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect::<Vec<_>>()
        .into()
}

fn config() -> FsConfig {
    FsConfig::default()
        .with_write_part_size(5 * MIB as u64)
        // Failures these tests provoke keep files: under the target directory, not /tmp.
        .with_recovery_dir(Some(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("write-path-recovery"),
        ))
}

fn rw() -> OpenFlags {
    OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::default()
    }
}

async fn create(fs: &S3Fs, name: &str) -> (Ino, Handle) {
    let (entry, handle) = fs
        .create(Ino::ROOT, OsStr::new(name), 0o644, rw())
        .await
        .expect("create");
    (entry.attr.ino, handle)
}

async fn open(fs: &S3Fs, name: &str, flags: OpenFlags) -> (Ino, Handle) {
    let ino = fs
        .lookup(Ino::ROOT, OsStr::new(name))
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
        assert_eq!(n as usize, piece.len());
        offset += n as u64;
    }
}

#[tokio::test]
async fn a_small_new_file_is_one_put_visible_only_after_close() {
    let inner = MemStore::new();
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let (ino, h) = create(&fs, "hello.txt").await;
    write_all(&fs, ino, h, 0, b"hello, world", 5).await;
    assert!(
        inner.get_bytes("hello.txt").is_none(),
        "no object before close"
    );
    assert_eq!(
        fs.getattr(ino).await.unwrap().attr.size,
        12,
        "local size is seen"
    );
    assert_eq!(fs.read(ino, h, 7, 100).await.unwrap(), "world");
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    assert_eq!(inner.get_bytes("hello.txt").unwrap(), "hello, world");
    assert_eq!(counting.count(Op::Put), 1);
    assert_eq!(counting.count(Op::CreateMultipart), 0);
    let meta = inner.meta("hello.txt").unwrap();
    assert_eq!(
        meta.user_metadata.get("mode").map(String::as_str),
        Some("33188")
    );
}

#[tokio::test]
async fn a_large_sequential_write_streams_parts_while_writing() {
    let inner = MemStore::new();
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let data = pattern(23 * MIB + 123, 1);
    let (ino, h) = create(&fs, "big.bin").await;
    write_all(&fs, ino, h, 0, &data, 128 * 1024).await;
    // Four full 5 MiB parts went up before close.
    tokio::task::yield_now().await;
    assert_eq!(counting.count(Op::CreateMultipart), 1);
    assert!(inner.get_bytes("big.bin").is_none());
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    assert_eq!(inner.get_bytes("big.bin").unwrap(), data);
    assert_eq!(counting.count(Op::UploadPart), 5);
    assert_eq!(counting.count(Op::CompleteMultipart), 1);
    assert_eq!(inner.open_uploads(), 0);
}

#[tokio::test]
async fn a_file_flushed_empty_before_its_writes_still_streams() {
    // `cmd > file` and `dd of=file` close a duplicate of the new descriptor before writing:
    // FUSE flushes the empty file (an empty object is stored), then the writes come.
    let inner = MemStore::new();
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let data = pattern(17 * MIB + 5, 3);
    let (ino, h) = create(&fs, "redirected.bin").await;
    fs.flush(ino, h).await.expect("flush of the empty file");
    assert_eq!(inner.get_bytes("redirected.bin").unwrap().len(), 0);
    write_all(&fs, ino, h, 0, &data, MIB).await;
    tokio::task::yield_now().await;
    assert_eq!(
        counting.count(Op::CreateMultipart),
        1,
        "parts are uploaded while writing, not staged until close"
    );
    assert_eq!(
        inner.get_bytes("redirected.bin").unwrap().len(),
        0,
        "the empty object stays until close"
    );
    assert_eq!(
        fs.read(ino, h, 2 * MIB as u64, 3).await.unwrap(),
        data.slice(2 * MIB..2 * MIB + 3)
    );
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    assert_eq!(inner.get_bytes("redirected.bin").unwrap(), data);
    assert_eq!(counting.count(Op::UploadPart), 4);
    assert_eq!(counting.count(Op::UploadPartCopy), 0);
    assert_eq!(inner.open_uploads(), 0);
}

#[tokio::test]
async fn overwrite_with_truncate_replaces_the_content() {
    let store = MemStore::new();
    store.insert("f", pattern(3 * MIB, 2));
    let fs = S3Fs::new(Arc::new(store.clone()), config());
    let flags = OpenFlags {
        truncate: true,
        ..rw()
    };
    let (ino, h) = open(&fs, "f", flags).await;
    assert_eq!(fs.getattr(ino).await.unwrap().attr.size, 0);
    write_all(&fs, ino, h, 0, b"new", 3).await;
    assert_eq!(
        store.get_bytes("f").unwrap().len(),
        3 * MIB,
        "old content until close"
    );
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    assert_eq!(store.get_bytes("f").unwrap(), "new");
}

#[tokio::test]
async fn appending_to_a_large_object_copies_the_unchanged_parts() {
    let inner = MemStore::new();
    let old = pattern(12 * MIB, 3);
    inner.insert("log", old.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let flags = OpenFlags {
        append: true,
        write: true,
        ..OpenFlags::default()
    };
    let (ino, h) = open(&fs, "log", flags).await;
    write_all(&fs, ino, h, 0, b"appended line\n", 1024).await;
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    let mut expected = old.to_vec();
    expected.extend_from_slice(b"appended line\n");
    assert_eq!(inner.get_bytes("log").unwrap(), expected);
    // Two untouched 5 MiB parts copied server-side; only the last part uploaded.
    assert_eq!(counting.count(Op::UploadPartCopy), 2);
    assert_eq!(counting.count(Op::UploadPart), 1);
}

#[tokio::test]
async fn random_writes_read_back_through_any_handle_and_persist() {
    let store = MemStore::new();
    let base = pattern(7 * MIB, 4);
    store.insert("db", base.clone());
    let fs = S3Fs::new(Arc::new(store.clone()), config());
    let (ino, writer) = open(&fs, "db", rw()).await;
    let (_, reader) = open(&fs, "db", OpenFlags::read_only()).await;
    let mut expected = base.to_vec();
    for (offset, len, seed) in [
        (100u64, 5000usize, 9u8),
        (6 * MIB as u64, 300_000, 8),
        (1, 3, 7),
    ] {
        let piece = pattern(len, seed);
        write_all(&fs, ino, writer, offset, &piece, 4096).await;
        let end = offset as usize + len;
        if expected.len() < end {
            expected.resize(end, 0);
        }
        expected[offset as usize..end].copy_from_slice(&piece);
    }
    // A write past the end leaves a hole of zeros.
    let far = 8 * MIB as u64;
    write_all(&fs, ino, writer, far, b"tail", 4).await;
    expected.resize(far as usize, 0);
    expected.extend_from_slice(b"tail");
    let seen = fs
        .read(ino, reader, 0, expected.len() as u32 + 10)
        .await
        .unwrap();
    assert_eq!(seen.len(), expected.len());
    assert!(
        seen == expected[..],
        "read-after-write through another handle"
    );
    fs.fsync(ino, writer).await.unwrap();
    assert_eq!(store.get_bytes("db").unwrap(), expected);
    // More writes after fsync, then close.
    write_all(&fs, ino, writer, 0, b"ZZ", 2).await;
    fs.flush(ino, writer).await.unwrap();
    fs.release(ino, writer).await.unwrap();
    fs.release(ino, reader).await.unwrap();
    expected[..2].copy_from_slice(b"ZZ");
    assert_eq!(store.get_bytes("db").unwrap(), expected);
    assert_eq!(store.open_uploads(), 0);
}

#[tokio::test]
async fn truncate_up_and_down_without_a_handle() {
    let store = MemStore::new();
    store.insert("t", "0123456789");
    let fs = S3Fs::new(Arc::new(store.clone()), config());
    let ino = fs
        .lookup(Ino::ROOT, OsStr::new("t"))
        .await
        .unwrap()
        .attr
        .ino;
    let shrink = SetAttr {
        size: Some(4),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(ino, None, shrink).await.unwrap().attr.size, 4);
    assert_eq!(store.get_bytes("t").unwrap(), "0123");
    let grow = SetAttr {
        size: Some(8),
        ..SetAttr::default()
    };
    fs.setattr(ino, None, grow).await.unwrap();
    assert_eq!(store.get_bytes("t").unwrap(), &b"0123\0\0\0\0"[..]);
}

#[tokio::test]
async fn two_machines_never_both_overwrite_successfully() {
    let store = MemStore::new();
    store.insert("shared", "v0");
    let a = S3Fs::new(Arc::new(store.clone()), config());
    let b = S3Fs::new(Arc::new(store.clone()), config());
    let (ia, ha) = open(&a, "shared", rw()).await;
    let (ib, hb) = open(&b, "shared", rw()).await;
    write_all(&a, ia, ha, 0, b"from a", 16).await;
    write_all(&b, ib, hb, 0, b"from b", 16).await;
    let first = a.flush(ia, ha).await;
    let second = b.flush(ib, hb).await;
    assert!(first.is_ok());
    let err = second.expect_err("the second overwrite must not succeed");
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert_eq!(store.get_bytes("shared").unwrap(), "from a");
    a.release(ia, ha).await.unwrap();
    b.release(ib, hb).await.unwrap();

    // Two creates of the same new name: one wins.
    let (ca, hca) = create(&a, "new").await;
    let (cb, hcb) = create(&b, "new").await;
    write_all(&a, ca, hca, 0, b"a", 1).await;
    write_all(&b, cb, hcb, 0, b"b", 1).await;
    let results = [
        a.flush(ca, hca).await.is_ok(),
        b.flush(cb, hcb).await.is_ok(),
    ];
    assert_eq!(results, [true, false]);
    assert_eq!(store.get_bytes("new").unwrap(), "a");
}

#[tokio::test]
async fn last_writer_wins_when_asked() {
    let store = MemStore::new();
    store.insert("shared", "v0");
    let lww = config().with_last_writer_wins(true);
    let a = S3Fs::new(Arc::new(store.clone()), lww.clone());
    let b = S3Fs::new(Arc::new(store.clone()), lww);
    let (ia, ha) = open(&a, "shared", rw()).await;
    let (ib, hb) = open(&b, "shared", rw()).await;
    write_all(&a, ia, ha, 0, b"aaaa", 4).await;
    write_all(&b, ib, hb, 0, b"bbbb", 4).await;
    a.flush(ia, ha).await.unwrap();
    b.flush(ib, hb).await.unwrap();
    assert_eq!(store.get_bytes("shared").unwrap(), "bbbb");
}

#[tokio::test]
async fn changes_by_another_machine_are_seen_within_the_ttl() {
    let store = MemStore::new();
    let ttl = std::time::Duration::from_millis(100);
    let a = S3Vfs::new(Arc::new(store.clone()), config().with_metadata_ttl(ttl));
    let b = S3Vfs::new(Arc::new(store.clone()), config().with_metadata_ttl(ttl));
    assert!(b.metadata("doc").await.is_err());
    a.write("doc", "first").await.unwrap();
    tokio::time::sleep(ttl + std::time::Duration::from_millis(30)).await;
    assert_eq!(b.read("doc").await.unwrap(), "first");
    a.write("doc", "second version").await.unwrap();
    tokio::time::sleep(ttl + std::time::Duration::from_millis(30)).await;
    assert_eq!(b.metadata("doc").await.unwrap().len(), 14);
    assert_eq!(b.read("doc").await.unwrap(), "second version");
    a.rename("doc", "renamed").await.unwrap();
    tokio::time::sleep(ttl + std::time::Duration::from_millis(30)).await;
    assert!(b.metadata("doc").await.is_err());
    assert_eq!(b.read("renamed").await.unwrap(), "second version");
    a.remove_file("renamed").await.unwrap();
    tokio::time::sleep(ttl + std::time::Duration::from_millis(30)).await;
    assert!(b.metadata("renamed").await.is_err());
    let listed = b.read_dir("").await.unwrap().collect().await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

/// Every request type of the write path, failed: the close reports the error, the store
/// holds the old content (never a mix), and no multipart upload is left open.
#[tokio::test]
async fn failed_uploads_report_on_close_and_leave_old_content() {
    let old = pattern(11 * MIB, 5);
    let cases: Vec<(&str, Op, u64)> = vec![
        ("fail a part", Op::UploadPart, 2),
        ("fail a part copy", Op::UploadPartCopy, 1),
        ("fail the completion", Op::CompleteMultipart, 1),
        ("fail the create", Op::CreateMultipart, 1),
        ("fail a base read", Op::Get, 1),
    ];
    let throttled = || StoreError::new(StoreErrorKind::Throttled, "SlowDown").with_code("SlowDown");
    for (what, op, nth) in cases {
        let inner = MemStore::new();
        inner.insert("f", old.clone());
        let faults = FaultStore::new(Arc::new(inner.clone()));
        faults.fail_nth(
            op,
            nth,
            StoreError::new(StoreErrorKind::Transient, "injected"),
        );
        if op == Op::UploadPart {
            // And throttled beyond the retry budget on the first part.
            faults.fail_nth(Op::UploadPart, 1, throttled());
        }
        let fs = S3Fs::new(Arc::new(faults), config());
        let (ino, h) = open(&fs, "f", rw()).await;
        // One changed byte in the middle part, one in the last: parts 1 and 3 can be
        // copied, part 2 must be rebuilt from the old object and the change.
        write_all(&fs, ino, h, 6 * MIB as u64, b"X", 1).await;
        write_all(&fs, ino, h, 10 * MIB as u64 + 5, b"Y", 1).await;
        let err = fs.flush(ino, h).await.expect_err(what);
        let expected = if op == Op::UploadPart {
            libc::EAGAIN
        } else {
            libc::EIO
        };
        assert_eq!(err.errno(), expected, "{what}: {err}");
        assert_eq!(
            inner.get_bytes("f").unwrap(),
            old,
            "{what}: old content intact"
        );
        tokio::task::yield_now().await;
        assert_eq!(inner.open_uploads(), 0, "{what}: upload aborted");
        // The data is still dirty: a second try succeeds.
        fs.fsync(ino, h)
            .await
            .unwrap_or_else(|e| panic!("{what}: retry: {e}"));
        let mut expected = old.to_vec();
        expected[6 * MIB] = b'X';
        expected[10 * MIB + 5] = b'Y';
        assert_eq!(
            inner.get_bytes("f").unwrap(),
            expected,
            "{what}: new content"
        );
        fs.release(ino, h).await.unwrap();
    }
}

#[tokio::test]
async fn a_failed_streamed_upload_reports_on_close() {
    let inner = MemStore::new();
    let faults = FaultStore::new(Arc::new(inner.clone()));
    faults.fail_nth(
        Op::UploadPart,
        2,
        StoreError::new(StoreErrorKind::Transient, "injected"),
    );
    let fs = S3Fs::new(Arc::new(faults), config());
    let (ino, h) = create(&fs, "stream.bin").await;
    let data = pattern(17 * MIB, 6);
    let mut first_error = None;
    for (i, piece) in data.chunks(MIB).enumerate() {
        if let Err(e) = fs
            .write(ino, h, (i * MIB) as u64, Bytes::copy_from_slice(piece))
            .await
        {
            first_error = Some(e);
            break;
        }
    }
    let close = fs.flush(ino, h).await;
    assert!(
        first_error.is_some() || close.is_err(),
        "the failure is reported"
    );
    assert!(inner.get_bytes("stream.bin").is_none(), "no half object");
    fs.release(ino, h).await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(inner.open_uploads(), 0);
}

#[tokio::test]
async fn staging_cap_limits_random_writes_but_not_streams() {
    let store = MemStore::new();
    store.insert("existing", pattern(MIB, 1));
    let small = config().with_staging_cap(64 * 1024);
    let fs = S3Fs::new(Arc::new(store.clone()), small);
    let (ino, h) = open(&fs, "existing", rw()).await;
    let err = fs
        .write(ino, h, 500_000, Bytes::from(vec![1u8; 100_000]))
        .await
        .expect_err("over the cap");
    assert_eq!(err.errno(), libc::ENOSPC);
    fs.release(ino, h).await.unwrap();
    // A sequential new file streams past the cap.
    let (ino, h) = create(&fs, "streamed").await;
    let data = pattern(12 * MIB, 2);
    write_all(&fs, ino, h, 0, &data, 256 * 1024).await;
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    assert_eq!(store.get_bytes("streamed").unwrap(), data);
}

#[tokio::test]
async fn part_size_grows_to_fit_the_part_limit() {
    let caps = Capabilities {
        min_part_size: 64 * 1024,
        max_parts: 4,
        ..Capabilities::default()
    };
    let inner = MemStore::with_capabilities(caps);
    inner.insert("f", pattern(MIB, 1));
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(
        counting.clone(),
        FsConfig::default().with_write_part_size(64 * 1024),
    );
    let (ino, h) = open(&fs, "f", rw()).await;
    write_all(&fs, ino, h, 0, b"x", 1).await;
    fs.flush(ino, h).await.unwrap();
    assert!(counting.count(Op::UploadPart) + counting.count(Op::UploadPartCopy) <= 4);
    assert_eq!(inner.get_bytes("f").unwrap()[0], b'x');
}

#[tokio::test]
async fn library_writer_is_async_write_and_completes() {
    let store = MemStore::new();
    let vfs = S3Vfs::new(Arc::new(store.clone()), config());
    let data = pattern(6 * MIB + 7, 3);
    let mut file = vfs.create("out/data.bin").await.unwrap();
    let mut source = &data[..];
    tokio::io::copy(&mut source, &mut file).await.unwrap();
    file.shutdown().await.unwrap();
    assert_eq!(store.get_bytes("out/data.bin").unwrap(), data);
    let mut back = Vec::new();
    vfs.open("out/data.bin")
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert!(back == data);
    // create_new on an existing file fails; append adds.
    let mut options = s3vfs::OpenOptions::new();
    options.write(true).create_new(true);
    assert!(vfs.open_with("out/data.bin", &options).await.is_err());
    let mut options = s3vfs::OpenOptions::new();
    options.append(true);
    let mut appender = vfs.open_with("out/data.bin", &options).await.unwrap();
    appender.write_all(b"!").await.unwrap();
    appender.complete().await.unwrap();
    assert_eq!(
        store.get_bytes("out/data.bin").unwrap().len(),
        data.len() + 1
    );
}

#[tokio::test]
async fn read_only_and_guard_rails_refuse_writes() {
    let store = MemStore::new();
    store.insert("keep", "x");
    let ro = S3Fs::new(Arc::new(store.clone()), config().with_read_only(true));
    let err = ro
        .create(Ino::ROOT, OsStr::new("n"), 0o644, rw())
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EROFS);
    let guarded = S3Fs::new(
        Arc::new(store.clone()),
        config().with_allow_overwrite(false),
    );
    let ino = guarded
        .lookup(Ino::ROOT, OsStr::new("keep"))
        .await
        .unwrap()
        .attr
        .ino;
    assert_eq!(
        guarded.open(ino, rw()).await.unwrap_err().errno(),
        libc::EPERM
    );
    // New files are still allowed.
    let (ino, h) = create(&guarded, "fresh").await;
    write_all(&guarded, ino, h, 0, b"ok", 2).await;
    guarded.flush(ino, h).await.unwrap();
    assert_eq!(store.get_bytes("fresh").unwrap(), "ok");
}

#[tokio::test]
async fn closing_a_reader_does_not_publish_another_writers_file() {
    let store = MemStore::new();
    let fs = S3Fs::new(Arc::new(store.clone()), config());
    let (ino, writer) = create(&fs, "partial").await;
    write_all(&fs, ino, writer, 0, b"half of it", 4).await;
    let reader = fs.open(ino, OpenFlags::read_only()).await.unwrap();
    assert_eq!(fs.read(ino, reader, 0, 100).await.unwrap(), "half of it");
    fs.flush(ino, reader).await.unwrap();
    fs.release(ino, reader).await.unwrap();
    assert!(
        store.get_bytes("partial").is_none(),
        "nothing published by the reader's close"
    );
    write_all(&fs, ino, writer, 10, b", and the rest", 4).await;
    fs.flush(ino, writer).await.unwrap();
    assert_eq!(
        store.get_bytes("partial").unwrap(),
        "half of it, and the rest"
    );
}

#[tokio::test]
async fn attributes_changed_while_streaming_are_stored() {
    let store = MemStore::new();
    let fs = S3Fs::new(Arc::new(store.clone()), config());
    let (ino, h) = create(&fs, "big").await;
    write_all(&fs, ino, h, 0, &pattern(7 * MIB, 1), MIB).await;
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_234_567_890);
    let changes = SetAttr {
        mtime: Some(when),
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let entry = fs.setattr(ino, Some(h), changes).await.unwrap();
    assert_eq!(entry.attr.mtime, when);
    fs.flush(ino, h).await.unwrap();
    fs.release(ino, h).await.unwrap();
    let meta = store.meta("big").unwrap();
    assert_eq!(
        meta.user_metadata.get("mtime").map(String::as_str),
        Some("1234567890")
    );
    assert_eq!(
        meta.user_metadata.get("mode").map(String::as_str),
        Some("33152")
    );
    let fresh = S3Fs::new(Arc::new(store.clone()), config());
    let attr = fresh
        .lookup(Ino::ROOT, OsStr::new("big"))
        .await
        .unwrap()
        .attr;
    assert_eq!((attr.mtime, attr.perm), (when, 0o600));
}

/// FUSE sends RELEASE after close(2) returns, so the release of a file's last handle
/// races with the next open of that file. Whatever the order, a handle opened after an
/// unsaved write must read it: both handles share one open file, none is orphaned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_racing_with_the_last_release_shares_the_open_file() {
    let inner = MemStore::new();
    inner.insert("f", "old");
    let fs = Arc::new(S3Fs::new(Arc::new(inner.clone()), config()));
    let (ino, handle) = open(&fs, "f", OpenFlags::read_only()).await;
    fs.release(ino, handle).await.expect("release");
    for round in 0..10_000u32 {
        let first = fs.open(ino, OpenFlags::read_only()).await.expect("open");
        let releasing = {
            let fs = Arc::clone(&fs);
            tokio::spawn(async move { fs.release(ino, first).await })
        };
        let writer = fs.open(ino, rw()).await.expect("open for writing");
        let text = format!("round {round}");
        fs.write(ino, writer, 0, Bytes::from(text.clone()))
            .await
            .expect("write");
        let reader = fs.open(ino, OpenFlags::read_only()).await.expect("open");
        let read = fs.read(ino, reader, 0, 64).await.expect("read");
        assert_eq!(
            read,
            text.as_bytes(),
            "round {round}: the reader missed the write"
        );
        releasing.await.expect("join").expect("release");
        fs.flush(ino, writer).await.expect("flush");
        for handle in [writer, reader] {
            fs.release(ino, handle).await.expect("release");
        }
    }
}

/// `S3Fs` over the real S3 client and a loopback endpoint that answers like moto 5.2.0
/// (CompleteMultipartUpload with the root `CompleteMultipartUploadResponse`) or loses the
/// reply to a request it carried out: every close succeeds and the content is right.
#[tokio::test]
async fn uploads_succeed_when_the_answer_is_unparsable_or_lost_but_the_object_is_stored() {
    type Quirk = fn(&ServerQuirks);
    let cases: [(&str, Quirk); 3] = [
        ("moto's root element", |q| {
            q.rename_root(Op::CompleteMultipart, "CompleteMultipartUploadResponse")
        }),
        ("a lost CompleteMultipartUpload reply", |q| {
            q.drop_replies(Op::CompleteMultipart, 2)
        }),
        ("a lost PutObject reply", |q| q.drop_replies(Op::Put, 1)),
    ];
    for (what, quirk) in cases {
        let inner = MemStore::new();
        let old = pattern(11 * MIB, 3);
        inner.insert("old.bin", old.clone());
        let server = S3Server::serve_store("bucket", Arc::new(inner.clone()))
            .await
            .expect("server starts");
        quirk(server.quirks());
        let store = server.connect("bucket").await.expect("client builds");
        let fs = S3Fs::new(Arc::new(store), config());

        // A new file streamed in three parts (If-None-Match: *).
        let data = pattern(12 * MIB + 7, 9);
        let (ino, h) = create(&fs, "new.bin").await;
        write_all(&fs, ino, h, 0, &data, MIB).await;
        fs.flush(ino, h)
            .await
            .unwrap_or_else(|e| panic!("{what}: close of a new file: {e}"));
        fs.release(ino, h).await.unwrap();
        assert_eq!(inner.get_bytes("new.bin").unwrap(), data, "{what}");

        // An object rewritten in place: copied and uploaded parts (If-Match).
        let (ino, h) = open(&fs, "old.bin", rw()).await;
        write_all(&fs, ino, h, 6 * MIB as u64, b"X", 1).await;
        fs.flush(ino, h)
            .await
            .unwrap_or_else(|e| panic!("{what}: close of a rewrite: {e}"));
        fs.release(ino, h).await.unwrap();
        let mut expected = old.to_vec();
        expected[6 * MIB] = b'X';
        assert_eq!(inner.get_bytes("old.bin").unwrap(), expected, "{what}");

        // A small new file: one PUT (If-None-Match: *).
        let (ino, h) = create(&fs, "small.txt").await;
        write_all(&fs, ino, h, 0, b"small", 5).await;
        fs.flush(ino, h)
            .await
            .unwrap_or_else(|e| panic!("{what}: close of a small file: {e}"));
        fs.release(ino, h).await.unwrap();
        assert_eq!(inner.get_bytes("small.txt").unwrap(), "small", "{what}");

        assert_eq!(inner.open_uploads(), 0, "{what}");
        if what.contains("lost") {
            assert!(server.quirks().dropped() >= 1, "{what}: a reply was lost");
        }
    }
}

// ---------------------------------------------------------------------------------------
// copy_file_range

/// A length as large as `cp` asks for (it lets the kernel shorten it to the source).
const CP_LEN: u64 = i64::MAX as u64;

/// Copies as `cp` does: from the given offsets with a huge length, then on from where the
/// copy stands, until a call copies nothing. Returns the bytes copied and the largest
/// count one call reported.
async fn copy_all(
    fs: &S3Fs,
    (ino_in, h_in): (Ino, Handle),
    (ino_out, h_out): (Ino, Handle),
    offset_in: u64,
    offset_out: u64,
) -> VfsResult<(u64, u64)> {
    let (mut done, mut largest) = (0, 0);
    loop {
        let n = fs
            .copy_file_range(
                ino_in,
                h_in,
                offset_in + done,
                ino_out,
                h_out,
                offset_out + done,
                CP_LEN,
            )
            .await?;
        if n == 0 {
            return Ok((done, largest));
        }
        assert!(
            n <= MAX_COPY_REPLY,
            "one call reports at most MAX_COPY_REPLY"
        );
        largest = largest.max(n);
        done += n;
    }
}

/// A file's object inserted with the s3fs headers of another owner and mode, so that a
/// copy taking the source's metadata shows.
fn insert_foreign(store: &MemStore, key: &str, body: Bytes) {
    let mut options = PutOptions::default();
    for (name, value) in [("mode", "33152"), ("uid", "4242"), ("gid", "4343")] {
        options
            .user_metadata
            .insert(name.to_owned(), value.to_owned());
    }
    options
        .user_metadata
        .insert("mtime".to_owned(), "1000".to_owned());
    store.insert_with(key, body, options);
}

const KIB: u64 = 1024;

/// A bucket that takes at most 256 KiB in one CopyObject, and parts from 64 KiB: a copy
/// of a few hundred KiB is made of UploadPartCopy parts (with
/// `config().with_write_part_size(64 * KIB)`).
fn small_copies_store() -> MemStore {
    MemStore::with_capabilities(Capabilities {
        min_part_size: 64 * KIB,
        max_single_put: 256 * KIB,
        ..Capabilities::default()
    })
}

/// The s3fs headers (mode, uid, gid) of `key`.
fn owner_headers(store: &MemStore, key: &str) -> [Option<String>; 3] {
    let meta = store.meta(key).expect("the object");
    ["mode", "uid", "gid"].map(|name| meta.user_metadata.get(name).cloned())
}

#[tokio::test]
async fn copy_file_range_of_a_whole_file_is_one_copy_object_and_close_uploads_nothing() {
    let inner = MemStore::new();
    let data = pattern(3 * MIB + 17, 4);
    insert_foreign(&inner, "src.bin", data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config().with_owner(1000, 100));
    let source = open(&fs, "src.bin", OpenFlags::read_only()).await;
    let dest = create(&fs, "dst.bin").await;
    counting.reset();

    let (copied, largest) = copy_all(&fs, source, dest, 0, 0).await.expect("copy");
    assert_eq!((copied, largest), (data.len() as u64, data.len() as u64));
    let counts = counting.counts();
    assert_eq!(
        counts,
        [(Op::Copy, 1)].into_iter().collect(),
        "one CopyObject, no data moved through the mount; the call at the end asks nothing"
    );
    assert_eq!(
        inner.get_bytes("dst.bin").unwrap(),
        data,
        "visible when the copy returns"
    );
    assert_eq!(
        fs.getattr(dest.0).await.unwrap().attr.size,
        data.len() as u64
    );
    assert_eq!(
        fs.read(dest.0, dest.1, MIB as u64, 5).await.unwrap(),
        data.slice(MIB..MIB + 5),
        "the destination reads the copy"
    );
    counting.reset();
    fs.flush(dest.0, dest.1).await.unwrap();
    fs.fsync(dest.0, dest.1).await.unwrap();
    fs.release(dest.0, dest.1).await.unwrap();
    fs.release(source.0, source.1).await.unwrap();
    assert_eq!(
        counting.total(),
        0,
        "flush, fsync and close upload nothing more"
    );
    assert_eq!(inner.get_bytes("dst.bin").unwrap(), data);
    // The destination's metadata is a new file's of this mount, not the source's.
    assert_eq!(
        owner_headers(&inner, "dst.bin"),
        [
            Some("33188".into()),
            Some("1000".into()),
            Some("100".into())
        ]
    );
    let mtime: u64 = inner.meta("dst.bin").unwrap().user_metadata["mtime"]
        .parse()
        .unwrap();
    assert!(mtime > 1000, "the copy's mtime is now");
}

#[tokio::test]
async fn copy_file_range_of_a_large_file_copies_its_parts_server_side() {
    let inner = small_copies_store();
    let data = pattern(MIB + 123, 6);
    inner.insert("big.bin", data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config().with_write_part_size(64 * KIB));
    let source = open(&fs, "big.bin", OpenFlags::read_only()).await;
    let dest = create(&fs, "copy.bin").await;
    counting.reset();

    let (copied, _) = copy_all(&fs, source, dest, 0, 0).await.expect("copy");
    assert_eq!(copied, data.len() as u64);
    for op in [Op::Get, Op::Put, Op::UploadPart, Op::Copy] {
        assert_eq!(counting.count(op), 0, "no {op}");
    }
    assert_eq!(counting.count(Op::CreateMultipart), 1);
    assert_eq!(counting.count(Op::UploadPartCopy), 17, "parts of 64 KiB");
    assert_eq!(counting.count(Op::CompleteMultipart), 1);
    assert_eq!(counting.count(Op::Head), 2, "the source before and after");
    assert_eq!(inner.get_bytes("copy.bin").unwrap(), data);
    counting.reset();
    fs.flush(dest.0, dest.1).await.unwrap();
    fs.release(dest.0, dest.1).await.unwrap();
    assert_eq!(counting.total(), 0, "close uploads nothing more");
    assert_eq!(inner.open_uploads(), 0);
    assert_eq!(
        inner
            .meta("copy.bin")
            .unwrap()
            .user_metadata
            .get("mode")
            .map(String::as_str),
        Some("33188"),
        "the destination's attributes are stated"
    );
}

#[tokio::test]
async fn copy_file_range_follow_up_calls_ask_nothing_until_the_destination_changes() {
    let inner = MemStore::new();
    let data = pattern(2 * MIB, 7);
    inner.insert("src", data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let (si, sh) = open(&fs, "src", OpenFlags::read_only()).await;
    let (di, dh) = create(&fs, "dst").await;
    let copied = fs
        .copy_file_range(si, sh, 0, di, dh, 0, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(copied, data.len() as u64);
    counting.reset();
    // What the caller's next call would be had one reply not held it all.
    let again = fs
        .copy_file_range(si, sh, MIB as u64, di, dh, MIB as u64, 10)
        .await;
    assert_eq!(again.unwrap(), 10);
    assert_eq!(
        fs.copy_file_range(si, sh, 5, di, dh, 5, CP_LEN)
            .await
            .unwrap(),
        2 * MIB as u64 - 5
    );
    assert_eq!(counting.total(), 0, "answered from what the copy made");
    // Once the destination is written to, the same call copies through the handles.
    write_all(&fs, di, dh, 0, b"changed", 7).await;
    let n = fs
        .copy_file_range(si, sh, 0, di, dh, 0, CP_LEN)
        .await
        .unwrap();
    assert!(n > 0 && n <= u64::from(COPY_CHUNK), "a bounded chunk: {n}");
    assert_eq!(counting.count(Op::Copy), 0);
    fs.flush(di, dh).await.unwrap();
    fs.release(di, dh).await.unwrap();
    assert_eq!(
        inner.get_bytes("dst").unwrap(),
        data,
        "the bytes are the source's"
    );
}

#[tokio::test]
async fn copy_file_range_at_other_offsets_goes_through_the_handles() {
    let inner = MemStore::new();
    let source_data = pattern(9 * MIB + 3, 8);
    let dest_data = pattern(MIB, 9);
    inner.insert("src", source_data.clone());
    inner.insert("dst", dest_data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let source = open(&fs, "src", OpenFlags::read_only()).await;
    let dest = open(&fs, "dst", rw()).await;
    let (offset_in, offset_out) = (1000, MIB as u64 / 2);
    let (copied, largest) = copy_all(&fs, source, dest, offset_in, offset_out)
        .await
        .expect("copy");
    assert_eq!(copied, source_data.len() as u64 - offset_in);
    assert!(
        largest <= u64::from(COPY_CHUNK),
        "at most COPY_CHUNK a call: {largest}"
    );
    assert_eq!(counting.count(Op::Copy), 0);
    // A length that would overflow any offset is bounded by the source.
    let n = fs
        .copy_file_range(
            source.0,
            source.1,
            0,
            dest.0,
            dest.1,
            u64::MAX - 10,
            u64::MAX,
        )
        .await;
    assert_eq!(n.expect_err("past the largest file").errno(), libc::EFBIG);
    fs.flush(dest.0, dest.1).await.unwrap();
    fs.release(dest.0, dest.1).await.unwrap();
    let mut expected = dest_data[..offset_out as usize].to_vec();
    expected.extend_from_slice(&source_data[offset_in as usize..]);
    assert_eq!(inner.get_bytes("dst").unwrap(), expected);
}

#[tokio::test]
async fn copy_file_range_of_a_file_with_unsaved_writes_copies_them() {
    let inner = MemStore::new();
    let data = pattern(6 * MIB + 1, 10);
    inner.insert("src", data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    // The source is being written: one byte changed, not flushed.
    let (si, sh) = open(&fs, "src", rw()).await;
    write_all(&fs, si, sh, 4 * MIB as u64, b"Z", 1).await;
    let dest = create(&fs, "dst").await;
    let (copied, largest) = copy_all(&fs, (si, sh), dest, 0, 0).await.expect("copy");
    assert_eq!(copied, data.len() as u64);
    assert!(largest <= u64::from(COPY_CHUNK));
    assert_eq!(
        counting.count(Op::Copy),
        0,
        "not the object: it lacks the write"
    );
    fs.flush(dest.0, dest.1).await.unwrap();
    fs.release(dest.0, dest.1).await.unwrap();
    let mut expected = data.to_vec();
    expected[4 * MIB] = b'Z';
    assert_eq!(inner.get_bytes("dst").unwrap(), expected);
    assert_eq!(
        inner.get_bytes("src").unwrap(),
        data,
        "the source is not flushed by it"
    );
    fs.release(si, sh).await.unwrap();
}

#[tokio::test]
async fn copy_file_range_over_an_existing_file_is_conditional_on_the_version_opened() {
    let inner = MemStore::new();
    let data = pattern(MIB, 11);
    inner.insert("src", data.clone());
    insert_foreign(&inner, "dst", Bytes::from_static(b"old content"));
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let fs = S3Fs::new(counting.clone(), config());
    let truncating = OpenFlags {
        truncate: true,
        ..rw()
    };
    let source = open(&fs, "src", OpenFlags::read_only()).await;

    // `cp` over an existing file: O_TRUNC, then the copy replaces the version opened.
    let dest = open(&fs, "dst", truncating).await;
    counting.reset();
    let (copied, _) = copy_all(&fs, source, dest, 0, 0).await.expect("copy");
    assert_eq!(copied, data.len() as u64);
    assert_eq!(
        counting.counts(),
        [(Op::Head, 1), (Op::Copy, 1)].into_iter().collect(),
        "the replaced object's metadata, then the copy"
    );
    assert_eq!(inner.get_bytes("dst").unwrap(), data);
    assert_eq!(
        owner_headers(&inner, "dst"),
        [
            Some("33152".into()),
            Some("4242".into()),
            Some("4343".into())
        ],
        "a replaced object keeps its own attributes, as a rewrite does"
    );
    fs.flush(dest.0, dest.1).await.unwrap();
    fs.release(dest.0, dest.1).await.unwrap();

    // Another writer replaces the destination after it was opened: the copy is refused,
    // nothing is overwritten.
    let dest = open(&fs, "dst", truncating).await;
    inner.insert("dst", "the other writer's");
    let err = copy_all(&fs, source, dest, 0, 0).await.expect_err("412");
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert_eq!(inner.get_bytes("dst").unwrap(), "the other writer's");
    assert_eq!(
        fs.getattr(dest.0).await.unwrap().attr.size,
        0,
        "still empty"
    );
    fs.release(dest.0, dest.1).await.unwrap();
    fs.release(source.0, source.1).await.unwrap();
}

#[tokio::test]
async fn copy_file_range_of_a_source_replaced_since_open_never_mixes_versions() {
    let inner = small_copies_store();
    let fs = S3Fs::new(
        Arc::new(inner.clone()),
        config().with_write_part_size(64 * KIB),
    );
    // One CopyObject, a copy in parts, and a copy through the handles.
    for (what, size, offset) in [
        ("CopyObject", 100 * KIB, 0),
        ("UploadPartCopy", 600 * KIB, 0),
        ("through the handles", 100 * KIB, 10),
    ] {
        let name = format!("src-{size}-{offset}");
        inner.insert(name.as_str(), pattern(size as usize, 12));
        let source = open(&fs, &name, OpenFlags::read_only()).await;
        let dest_name = format!("{name}.copy");
        let dest = create(&fs, &dest_name).await;
        inner.insert(name.as_str(), pattern(size as usize, 13));
        let err = fs
            .copy_file_range(source.0, source.1, offset, dest.0, dest.1, offset, CP_LEN)
            .await
            .expect_err(what);
        let expected = if offset == 0 { libc::EIO } else { libc::ESTALE };
        assert_eq!(err.errno(), expected, "{what}: {err}");
        assert!(
            inner.get_bytes(&dest_name).is_none(),
            "{what}: nothing copied"
        );
        assert_eq!(inner.open_uploads(), 0, "{what}: no upload left open");
        assert_eq!(
            fs.getattr(dest.0).await.unwrap().attr.size,
            0,
            "{what}: still empty"
        );
        // The destination is the empty file it was: its close stores that.
        fs.flush(dest.0, dest.1).await.unwrap();
        fs.release(dest.0, dest.1).await.unwrap();
        assert_eq!(inner.get_bytes(&dest_name).unwrap().len(), 0, "{what}");
        fs.release(source.0, source.1).await.unwrap();
    }
}

#[tokio::test]
async fn copy_file_range_that_fails_leaves_the_destination_empty() {
    let inner = small_copies_store();
    let data = pattern(600 * KIB as usize, 14);
    inner.insert("src", data.clone());
    let faults = FaultStore::new(Arc::new(inner.clone()));
    let fs = S3Fs::new(
        Arc::new(faults.clone()),
        config().with_write_part_size(64 * KIB),
    );
    let source = open(&fs, "src", OpenFlags::read_only()).await;
    let dest = create(&fs, "dst").await;
    faults.fail_nth(
        Op::UploadPartCopy,
        3,
        StoreError::new(StoreErrorKind::Transient, "injected"),
    );
    let err = copy_all(&fs, source, dest, 0, 0)
        .await
        .expect_err("failed part");
    assert_eq!(err.errno(), libc::EIO, "{err}");
    tokio::task::yield_now().await;
    assert_eq!(inner.open_uploads(), 0, "the multipart copy is aborted");
    assert!(inner.get_bytes("dst").is_none());
    assert_eq!(fs.getattr(dest.0).await.unwrap().attr.size, 0);
    // Called again, the copy succeeds.
    let (copied, _) = copy_all(&fs, source, dest, 0, 0).await.expect("retry");
    assert_eq!(copied, data.len() as u64);
    fs.flush(dest.0, dest.1).await.unwrap();
    fs.release(dest.0, dest.1).await.unwrap();
    assert_eq!(inner.get_bytes("dst").unwrap(), data);
}

#[tokio::test]
async fn copy_file_range_checks_its_handles() {
    let inner = MemStore::new();
    inner.insert("src", "some bytes");
    let fs = S3Fs::new(Arc::new(inner.clone()), config());
    let write_only = OpenFlags {
        write: true,
        ..OpenFlags::default()
    };
    let appending = OpenFlags {
        append: true,
        ..write_only
    };
    let readable = open(&fs, "src", OpenFlags::read_only()).await;
    let not_readable = open(&fs, "src", write_only).await;
    let dest = create(&fs, "dst").await;
    let read_only_dest = open(&fs, "src", OpenFlags::read_only()).await;
    let appending_dest = open(&fs, "src", appending).await;
    for (what, (si, sh), (di, dh)) in [
        ("source not readable", not_readable, dest),
        ("destination read-only", readable, read_only_dest),
        ("destination appending", readable, appending_dest),
        ("no such handle", (readable.0, Handle(999)), dest),
    ] {
        let err = fs
            .copy_file_range(si, sh, 0, di, dh, 0, 10)
            .await
            .expect_err(what);
        assert_eq!(err.errno(), libc::EBADF, "{what}: {err}");
    }
    assert!(inner.get_bytes("dst").is_none());
}
