//! The `tokio::fs`-shaped surface of `S3Vfs`: `try_exists`, `read_to_string`,
//! `remove_dir_all`, `Metadata::is_symlink`, a whole-file `read` larger than one read
//! call takes, `ReadDir` as a stream, paths of any string type, `hard_link`, what a
//! dropped future leaves behind, and that every async method documents it.

use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::MemStore;
use std::sync::Arc;

fn vfs(store: &MemStore) -> S3Vfs {
    S3Vfs::new(Arc::new(store.clone()), FsConfig::default())
}

fn errno<T: std::fmt::Debug>(result: s3vfs::VfsResult<T>) -> i32 {
    result.expect_err("expected an error").errno()
}

#[tokio::test]
async fn try_exists_read_to_string_and_is_symlink() {
    let store = MemStore::new();
    store.insert("d/f.txt", "héllo");
    store.insert("bin", vec![0xff, 0xfe]);
    let vfs = vfs(&store);
    assert!(vfs.try_exists("d/f.txt").await.unwrap());
    assert!(vfs.try_exists("d").await.unwrap());
    assert!(!vfs.try_exists("d/missing").await.unwrap());
    assert!(!vfs.try_exists("nowhere/x").await.unwrap());
    assert_eq!(errno(vfs.try_exists("d/f.txt/x").await), libc::ENOTDIR);

    assert_eq!(vfs.read_to_string("d/f.txt").await.unwrap(), "héllo");
    assert_eq!(errno(vfs.read_to_string("bin").await), libc::EINVAL);

    vfs.symlink("f.txt", "d/link").await.unwrap();
    assert!(vfs.metadata("d/link").await.unwrap().is_symlink());
    assert!(!vfs.metadata("d/f.txt").await.unwrap().is_symlink());
}

#[tokio::test]
async fn remove_dir_all_removes_a_tree_and_nothing_else() {
    let store = MemStore::new();
    for key in ["t/a", "t/b/c", "t/b/d/e", "t/x/", "tt/keep", "keep"] {
        store.insert(key, "");
    }
    let vfs = vfs(&store);
    vfs.symlink("a", "t/b/link").await.unwrap();
    vfs.create_dir("t/empty").await.unwrap();
    vfs.remove_dir_all("t").await.unwrap();
    assert!(!vfs.try_exists("t").await.unwrap());
    let mut keys = store.keys();
    keys.sort();
    assert_eq!(keys, ["keep", "tt/keep"]);
    assert_eq!(errno(vfs.remove_dir_all("keep").await), libc::ENOTDIR);
    assert_eq!(errno(vfs.remove_dir_all("gone").await), libc::ENOENT);
}

#[tokio::test]
async fn a_whole_file_read_is_not_limited_to_one_read_call() {
    let store = MemStore::new();
    // More than the 64 MiB one read call of `read` asks for.
    let body: Vec<u8> = (0..65 * 1024 * 1024 + 7)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    store.insert("big", body.clone());
    let vfs = vfs(&store);
    let read = vfs.read("big").await.unwrap();
    assert_eq!(read.len(), body.len());
    assert!(read == body);
}

#[tokio::test]
async fn copy_is_server_side_for_whole_files_and_returns_the_bytes_copied() {
    use s3vfs::store::Capabilities;
    use s3vfs_testkit::fault::{CountingStore, Op};
    let store = MemStore::with_capabilities(Capabilities {
        min_part_size: 1024,
        max_single_put: 8 * 1024,
        ..Capabilities::default()
    });
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    store.insert("src/big.bin", big.clone());
    store.insert("src/small.txt", "small");
    let counts = CountingStore::new(Arc::new(store.clone()));
    let vfs = S3Vfs::new(Arc::new(counts.clone()), FsConfig::default());
    assert_eq!(vfs.copy("src/small.txt", "dst/small.txt").await.unwrap(), 5);
    assert_eq!(
        vfs.copy("src/big.bin", "dst/big.bin").await.unwrap(),
        big.len() as u64
    );
    assert_eq!(store.get_bytes("dst/small.txt").unwrap(), "small");
    assert_eq!(store.get_bytes("dst/big.bin").unwrap(), big);
    assert_eq!(counts.count(Op::Copy), 1);
    assert!(
        counts.count(Op::UploadPartCopy) >= 1,
        "above the single-request limit"
    );
    for op in [Op::Get, Op::Put, Op::UploadPart] {
        assert_eq!(counts.count(op), 0, "{op}: no byte through the client");
    }
    assert_eq!(errno(vfs.copy("src/missing", "dst/x").await), libc::ENOENT);
}

#[tokio::test]
async fn read_dir_is_a_stream_of_entries() {
    use futures::{StreamExt, TryStreamExt};
    let store = MemStore::new();
    for i in 0..2500 {
        store.insert(format!("many/f{i:04}"), "");
    }
    store.insert("d/a", "");
    store.insert("d/b", "");
    store.insert("d/sub/c", "");
    let vfs = vfs(&store);
    let mut names: Vec<String> = vfs
        .read_dir("d")
        .await
        .unwrap()
        .map_ok(|entry| entry.name)
        .try_collect()
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, ["a", "b", "sub"]);
    // Past one batch of entries, each once.
    let count = vfs.read_dir("many").await.unwrap().count().await;
    assert_eq!(count, 2500);
    // next_entry and the stream read the same listing.
    let mut dir = vfs.read_dir("d").await.unwrap();
    let first = dir.next_entry().await.unwrap().unwrap();
    let rest: Vec<_> = dir.map(|e| e.unwrap().name).collect().await;
    assert_eq!(rest.len(), 2);
    assert!(!rest.contains(&first.name));
}

/// A `next_entry` dropped while its batch is being fetched loses no entry.
#[tokio::test]
async fn a_dropped_next_entry_loses_no_entry() {
    use s3vfs_testkit::fault::{LatencyStore, Op};
    use std::time::Duration;
    let store = MemStore::new();
    for name in ["a", "b", "c"] {
        store.insert(format!("d/{name}"), "");
    }
    let slow = LatencyStore::new(Arc::new(store.clone()), Duration::ZERO)
        .with_op_delay(Op::List, Duration::from_millis(100));
    // A page a name (the first comes with the lookup of `d`): every `next_entry` is given
    // less time than a LIST takes, so some are dropped while their page is fetched.
    let vfs = S3Vfs::new(Arc::new(slow), FsConfig::default().with_list_page_size(1));
    let mut dir = vfs.read_dir("d").await.unwrap();
    let (mut names, mut dropped) = (Vec::new(), 0);
    loop {
        match tokio::time::timeout(Duration::from_millis(10), dir.next_entry()).await {
            Ok(next) => match next.unwrap() {
                Some(entry) => names.push(entry.name),
                None => break,
            },
            Err(_) => dropped += 1,
        }
    }
    assert!(dropped > 0, "the listing takes longer than that");
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}

/// Paths are anything that is a `str`: `&str`, `String`, `&String`, `Arc<str>`, `Cow`.
#[tokio::test]
async fn paths_are_any_string_type() {
    let store = MemStore::new();
    let vfs = vfs(&store);
    let owned = String::from("p/a.txt");
    vfs.write(owned.clone(), "x").await.unwrap();
    assert!(vfs.try_exists(&owned).await.unwrap());
    let shared: Arc<str> = Arc::from("p/a.txt");
    assert_eq!(vfs.read(shared).await.unwrap(), "x");
    let cow = std::borrow::Cow::Borrowed("p/b.txt");
    assert_eq!(vfs.copy(&owned, cow.clone()).await.unwrap(), 1);
    vfs.rename(cow, String::from("p/c.txt")).await.unwrap();
    vfs.create_dir_all(format!("p/{}", "q/r")).await.unwrap();
    assert!(vfs.metadata("p/q/r").await.unwrap().is_dir());
    let mut keys = store.keys();
    keys.sort();
    assert_eq!(keys, ["p/a.txt", "p/c.txt", "p/q/", "p/q/r/"]);
}

#[tokio::test]
async fn hard_links_are_not_supported() {
    let store = MemStore::new();
    store.insert("f", "x");
    let vfs = vfs(&store);
    assert_eq!(errno(vfs.hard_link("f", "g").await), libc::ENOTSUP);
    assert!(!vfs.try_exists("g").await.unwrap());
    assert_eq!(store.keys(), ["f"]);
}

/// Waits (up to ten seconds) until `key` holds `want`; on the way, `key` never holds
/// anything but `before` or `want`.
async fn ends_with(store: &MemStore, key: &str, before: Option<&[u8]>, want: &[u8]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = store.get_bytes(key);
        match now.as_deref() {
            Some(bytes) if bytes == want => return,
            seen => assert_eq!(
                seen.map(<[u8]>::len),
                before.map(<[u8]>::len),
                "{key} is neither as it was nor complete"
            ),
        }
        assert!(std::time::Instant::now() < deadline, "{key} never complete");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A `write` or `copy` whose future is dropped goes on to its end (as `tokio::fs`'s run on
/// a blocking thread): the file is never left empty or half written.
#[tokio::test]
async fn a_dropped_write_or_copy_still_ends_complete() {
    use s3vfs::store::Capabilities;
    use s3vfs_testkit::fault::{LatencyStore, Op};
    use std::time::Duration;
    let store = MemStore::with_capabilities(Capabilities {
        min_part_size: 1024,
        ..Capabilities::default()
    });
    let slow = LatencyStore::new(Arc::new(store.clone()), Duration::ZERO)
        .with_op_delay(Op::UploadPart, Duration::from_millis(50))
        .with_op_delay(Op::Put, Duration::from_millis(50))
        .with_op_delay(Op::Copy, Duration::from_millis(100));
    let mut config = FsConfig::default().with_write_part_size(4096);
    config.memory_budget = 8192;
    let vfs = S3Vfs::new(Arc::new(slow), config);
    let body: Vec<u8> = (0..64 * 1024).map(|i: usize| (i % 251) as u8).collect();
    for key in ["old0", "old60", "old-copy"] {
        store.insert(key, "the old content");
    }
    for (wait, key) in [(0, "new0"), (20, "new20"), (0, "old0"), (60, "old60")] {
        let before = store.get_bytes(key);
        let write = vfs.write(key, body.clone());
        let dropped = tokio::time::timeout(Duration::from_millis(wait), write).await;
        assert!(
            dropped.is_err(),
            "{key}: the write takes longer than {wait} ms"
        );
        ends_with(&store, key, before.as_deref(), &body).await;
    }

    store.insert("src", body.clone());
    for (wait, key) in [(0, "copy"), (50, "old-copy")] {
        let before = store.get_bytes(key);
        let copy = vfs.copy("src", key);
        let dropped = tokio::time::timeout(Duration::from_millis(wait), copy).await;
        assert!(
            dropped.is_err(),
            "{key}: the copy takes longer than {wait} ms"
        );
        ends_with(&store, key, before.as_deref(), &body).await;
    }
}

/// Every async method of the library's handles says what dropping its future leaves
/// behind, as tokio's documentation does.
#[test]
fn every_async_method_documents_cancellation() {
    let source = include_str!("../src/client.rs");
    let lines: Vec<&str> = source.lines().collect();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        if !line.trim_start().starts_with("pub async fn ") {
            continue;
        }
        let doc: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with("///") || l.trim_start().starts_with("#["))
            .copied()
            .collect();
        assert!(
            doc.iter().any(|l| l.trim() == "/// # Cancellation"),
            "no Cancellation section for {}",
            line.trim()
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} async methods found");
}
