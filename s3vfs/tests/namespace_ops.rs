//! The namespace operations that change the bucket (mkdir, unlink, rmdir, rename, symlink,
//! mknod, setattr, xattrs) against the in-memory store: the errnos of SEMANTICS.md, what ends up
//! in the bucket (s3fs headers, markers), what a failure leaves behind, and what each
//! operation costs in requests.

use bytes::Bytes;
use s3vfs::store::{Backend, Capabilities, PutOptions, StoreError, StoreErrorKind};
use s3vfs::vfs::{Entry, FileKind, Ino, SetAttr, Vfs};
use s3vfs::{FsConfig, S3Fs, VfsResult};
use s3vfs_testkit::fault::{CountingStore, FaultStore, Op};
use s3vfs_testkit::MemStore;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn rw() -> FsConfig {
    FsConfig::default().with_read_only(false)
}

fn mount_with(store: Arc<dyn Backend>, config: FsConfig) -> Arc<S3Fs> {
    S3Fs::new(store, config)
}

fn mount(store: &MemStore) -> Arc<S3Fs> {
    mount_with(Arc::new(store.clone()), rw())
}

/// A file system over `store` whose requests are counted.
fn counted(store: &MemStore, config: FsConfig) -> (Arc<S3Fs>, CountingStore) {
    let counting = CountingStore::new(Arc::new(store.clone()));
    (mount_with(Arc::new(counting.clone()), config), counting)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Looks `path` up component by component, as the kernel does.
async fn lookup(fs: &S3Fs, path: &str) -> VfsResult<Entry> {
    let mut entry = fs.getattr(Ino::ROOT).await?;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        entry = fs.lookup(entry.attr.ino, os(part)).await?;
    }
    Ok(entry)
}

async fn ino(fs: &S3Fs, path: &str) -> Ino {
    lookup(fs, path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .attr
        .ino
}

fn errno<T: std::fmt::Debug>(result: VfsResult<T>) -> i32 {
    result.expect_err("expected an error").errno()
}

fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 31 + i / 997) as u8)
        .collect::<Vec<_>>()
        .into()
}

fn meta(store: &MemStore, key: &str, name: &str) -> Option<String> {
    store.meta(key)?.user_metadata.get(name).cloned()
}

/// Every key and body of the bucket.
fn snapshot(store: &MemStore) -> BTreeMap<String, Bytes> {
    store
        .keys()
        .into_iter()
        .map(|k| {
            let body = store.get_bytes(&k).unwrap_or_default();
            (k, body)
        })
        .collect()
}

fn injected() -> StoreError {
    StoreError::new(StoreErrorKind::Transient, "injected failure").with_code("InternalError")
}

fn with_mtime(secs: u64) -> PutOptions {
    let mut options = PutOptions::default();
    options
        .user_metadata
        .insert("mtime".to_owned(), secs.to_string());
    options
}

// ---------------------------------------------------------------------------------------
// mkdir

#[tokio::test]
async fn mkdir_writes_a_marker_with_s3fs_headers() {
    let store = MemStore::new();
    store.insert("file", "x");
    let (fs, counting) = counted(&store, rw());
    let entry = fs.mkdir(Ino::ROOT, os("d"), 0o750).await.unwrap();
    assert_eq!(entry.attr.kind, FileKind::Directory);
    assert_eq!(entry.attr.perm, 0o750);
    // One PUT, after a lookup of the name (HEAD + LIST).
    assert_eq!(counting.count(Op::Put), 1);
    assert_eq!(counting.count(Op::Head), 1);
    assert_eq!(store.get_bytes("d/").unwrap().len(), 0);
    assert_eq!(
        meta(&store, "d/", "mode").unwrap(),
        (0o040000 | 0o750).to_string()
    );
    assert_eq!(
        meta(&store, "d/", "uid").unwrap(),
        fs.config().uid.to_string()
    );
    assert!(meta(&store, "d/", "mtime").is_some());

    // A fresh mount reads the mode back from the marker.
    let fresh = mount(&store);
    let seen = lookup(&fresh, "d").await.unwrap();
    assert_eq!(seen.attr.kind, FileKind::Directory);
    assert_eq!(seen.attr.perm, 0o750);

    // Nested, then the refusals.
    let d = ino(&fs, "d").await;
    fs.mkdir(d, os("e"), 0o700).await.unwrap();
    assert!(store.get_bytes("d/e/").is_some());
    assert_eq!(
        errno(fs.mkdir(Ino::ROOT, os("d"), 0o755).await),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.mkdir(Ino::ROOT, os("file"), 0o755).await),
        libc::EEXIST
    );
    let file = ino(&fs, "file").await;
    assert_eq!(errno(fs.mkdir(file, os("x"), 0o755).await), libc::ENOTDIR);
    assert_eq!(
        errno(fs.mkdir(Ino::ROOT, os(".."), 0o755).await),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.mkdir(Ino::ROOT, os("a/b"), 0o755).await),
        libc::EINVAL
    );
}

#[tokio::test]
async fn mkdir_in_a_vanished_directory_is_enoent() {
    let store = MemStore::new();
    store.insert("p/x", "x");
    let fs = mount_with(
        Arc::new(store.clone()),
        rw().with_metadata_ttl(Duration::ZERO),
    );
    let p = ino(&fs, "p").await;
    store.remove("p/x");
    assert_eq!(errno(fs.mkdir(p, os("y"), 0o755).await), libc::ENOENT);
    assert!(store.is_empty());
}

#[tokio::test]
async fn mkdir_with_a_mount_prefix_stays_inside_it() {
    let store = MemStore::new();
    let fs = mount_with(Arc::new(store.clone()), rw().with_prefix("team/a"));
    fs.mkdir(Ino::ROOT, os("d"), 0o755).await.unwrap();
    let d = ino(&fs, "d").await;
    fs.symlink(d, os("l"), os("../x")).await.unwrap();
    assert_eq!(store.keys(), vec!["team/a/d/", "team/a/d/l"]);
}

// ---------------------------------------------------------------------------------------
// unlink

#[tokio::test]
async fn unlink_deletes_the_object_and_keeps_the_parent() {
    let store = MemStore::new();
    store.insert("top", "t");
    store.insert("a/x", "x");
    store.insert("d/sub/y", "y");
    let (fs, counting) = counted(&store, rw());

    // A file at the root: one DELETE, no marker.
    fs.unlink(Ino::ROOT, os("top")).await.unwrap();
    assert_eq!(counting.count(Op::Delete), 1);
    assert_eq!(counting.count(Op::Put), 0);
    assert!(store.get_bytes("top").is_none());
    assert_eq!(errno(lookup(&fs, "top").await), libc::ENOENT);

    // The last file of `a`, which has no marker: `a/` is written first, so `a` stays.
    counting.reset();
    let a = ino(&fs, "a").await;
    fs.unlink(a, os("x")).await.unwrap();
    assert_eq!(store.keys(), vec!["a/", "d/sub/y"]);
    assert_eq!(counting.count(Op::Put), 1);
    assert_eq!(counting.count(Op::Delete), 1);
    let fresh = mount(&store);
    assert_eq!(
        lookup(&fresh, "a").await.unwrap().attr.kind,
        FileKind::Directory
    );

    // Refusals.
    assert_eq!(errno(fs.unlink(a, os("x")).await), libc::ENOENT);
    let d = ino(&fs, "d").await;
    assert_eq!(errno(fs.unlink(d, os("sub")).await), libc::EISDIR);
    assert_eq!(errno(fs.unlink(Ino::ROOT, os("..")).await), libc::EINVAL);
    assert!(store.get_bytes("d/sub/y").is_some());
}

#[tokio::test]
async fn unlink_without_conditional_writes_does_not_overwrite_a_marker() {
    let store = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    let mut options = PutOptions::default();
    options
        .user_metadata
        .insert("mode".to_owned(), (0o040000 | 0o700).to_string());
    store.insert_with("a/", "", options);
    store.insert("a/x", "x");
    store.insert("b/y", "y");
    let fs = mount(&store);
    let a = ino(&fs, "a").await;
    fs.unlink(a, os("x")).await.unwrap();
    // The existing marker (HEAD) keeps its mode.
    assert_eq!(meta(&store, "a/", "mode").unwrap(), "16832");
    let b = ino(&fs, "b").await;
    fs.unlink(b, os("y")).await.unwrap();
    assert_eq!(store.keys(), vec!["a/", "b/"]);
}

// ---------------------------------------------------------------------------------------
// rmdir

#[tokio::test]
async fn rmdir_removes_only_empty_directories() {
    let store = MemStore::new();
    store.insert("full/x", "x");
    store.insert("hidden/", "");
    store.insert("hidden//weird", "not a valid name");
    store.insert("p/empty/", "");
    store.insert("f", "file");
    let (fs, counting) = counted(&store, rw());

    assert_eq!(
        errno(fs.rmdir(Ino::ROOT, os("full")).await),
        libc::ENOTEMPTY
    );
    // Looks empty (the key cannot be shown) but is not removable.
    let hidden = ino(&fs, "hidden").await;
    let mut listing = fs.opendir(hidden).await.unwrap();
    let entries = fs.readdir(hidden, listing, 0, 100).await.unwrap();
    assert_eq!(entries.len(), 2, "only . and ..");
    fs.releasedir(hidden, listing).await.unwrap();
    assert_eq!(
        errno(fs.rmdir(Ino::ROOT, os("hidden")).await),
        libc::ENOTEMPTY
    );
    assert_eq!(errno(fs.rmdir(Ino::ROOT, os("f")).await), libc::ENOTDIR);
    assert_eq!(errno(fs.rmdir(Ino::ROOT, os("nope")).await), libc::ENOENT);

    // `p` has no marker: it gets one before its only entry goes.
    counting.reset();
    let p = ino(&fs, "p").await;
    fs.rmdir(p, os("empty")).await.unwrap();
    assert_eq!(counting.count(Op::Delete), 1);
    assert_eq!(counting.count(Op::Put), 1);
    assert!(store.get_bytes("p/empty/").is_none());
    assert!(store.get_bytes("p/").is_some());
    assert_eq!(errno(lookup(&fs, "p/empty").await), libc::ENOENT);
    fs.rmdir(Ino::ROOT, os("p")).await.unwrap();
    assert!(store.get_bytes("p/").is_none());
    assert_eq!(errno(lookup(&mount(&store), "p").await), libc::ENOENT);
    listing = fs.opendir(Ino::ROOT).await.unwrap();
    let names: BTreeSet<String> = fs
        .readdir(Ino::ROOT, listing, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        names,
        [".", "..", "f", "full", "hidden"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

// ---------------------------------------------------------------------------------------
// rename of files

#[tokio::test]
async fn rename_file_over_a_file_is_one_copy_and_one_delete() {
    let store = MemStore::new();
    store.insert_with("a", "new content", with_mtime(1_600_000_000));
    store.insert("b", "old content");
    let (fs, counting) = counted(&store, rw());
    lookup(&fs, "a").await.unwrap();
    lookup(&fs, "b").await.unwrap();
    counting.reset();
    fs.rename(Ino::ROOT, os("a"), Ino::ROOT, os("b"), false)
        .await
        .unwrap();
    assert_eq!(counting.count(Op::Copy), 1);
    assert_eq!(counting.count(Op::Delete), 1);
    assert_eq!(counting.total(), 2, "{:?}", counting.counts());
    assert_eq!(store.keys(), vec!["b"]);
    assert_eq!(store.get_bytes("b").unwrap(), "new content");
    // Metadata travels with the copy; the mtime is the file's, not the copy's.
    assert_eq!(meta(&store, "b", "mtime").unwrap(), "1600000000");
    let b = lookup(&fs, "b").await.unwrap();
    assert_eq!(
        b.attr.mtime,
        UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
    assert_eq!(b.attr.size, 11);
    assert_eq!(errno(lookup(&fs, "a").await), libc::ENOENT);
}

#[tokio::test]
async fn rename_into_another_directory_keeps_both_parents() {
    let store = MemStore::new();
    store.insert("src/f", "data");
    store.insert("dst/other", "o");
    let (fs, counting) = counted(&store, rw());
    let src = ino(&fs, "src").await;
    let dst = ino(&fs, "dst").await;
    lookup(&fs, "src/f").await.unwrap();
    counting.reset();
    fs.rename(src, os("f"), dst, os("g"), false).await.unwrap();
    // Lookup of the free destination name (HEAD + LIST), a marker for `src`, copy, delete.
    assert_eq!(counting.count(Op::Copy), 1);
    assert_eq!(counting.count(Op::Delete), 1);
    assert_eq!(counting.count(Op::Put), 1);
    assert_eq!(store.keys(), vec!["dst/g", "dst/other", "src/"]);
    assert_eq!(store.get_bytes("dst/g").unwrap(), "data");
}

#[tokio::test]
async fn rename_noreplace_and_kind_rules() {
    let store = MemStore::new();
    store.insert("f", "f");
    store.insert("g", "g");
    store.insert("d/x", "x");
    store.insert("e/", "");
    store.insert("full/y", "y");
    let fs = mount(&store);
    let before = snapshot(&store);
    let r = |from: &'static str, to: &'static str, no_replace: bool| {
        let fs = Arc::clone(&fs);
        async move {
            fs.rename(Ino::ROOT, os(from), Ino::ROOT, os(to), no_replace)
                .await
        }
    };
    assert_eq!(errno(r("f", "g", true).await), libc::EEXIST);
    assert_eq!(errno(r("d", "e", true).await), libc::EEXIST);
    assert_eq!(errno(r("f", "d", false).await), libc::EISDIR);
    assert_eq!(errno(r("d", "f", false).await), libc::ENOTDIR);
    assert_eq!(errno(r("d", "full", false).await), libc::ENOTEMPTY);
    assert_eq!(errno(r("nope", "x", false).await), libc::ENOENT);
    let d = ino(&fs, "d").await;
    assert_eq!(
        errno(fs.rename(Ino::ROOT, os("d"), d, os("inside"), false).await),
        libc::EINVAL
    );
    assert_eq!(snapshot(&store), before, "refusals change nothing");

    // Same name: nothing to do, nothing asked of the store beyond the lookup.
    r("f", "f", false).await.unwrap();
    // NOREPLACE to a free name works.
    r("f", "h", true).await.unwrap();
    assert_eq!(store.get_bytes("h").unwrap(), "f");
    // A directory over an empty directory replaces it.
    r("d", "e", false).await.unwrap();
    assert_eq!(store.get_bytes("e/x").unwrap(), "x");
    assert!(store.get_bytes("d/x").is_none());
    assert_eq!(errno(lookup(&fs, "d").await), libc::ENOENT);
}

#[tokio::test]
async fn rename_retries_once_when_the_cached_view_was_stale() {
    let store = MemStore::new();
    store.insert("a", "first");
    let (fs, counting) = counted(&store, rw());
    lookup(&fs, "a").await.unwrap();
    // Another machine replaces `a` after our lookup: the copy pinned to the old ETag
    // fails, the rename looks again and moves what is there now.
    store.insert("a", "second version");
    counting.reset();
    fs.rename(Ino::ROOT, os("a"), Ino::ROOT, os("b"), false)
        .await
        .unwrap();
    assert_eq!(counting.count(Op::Copy), 2);
    assert_eq!(store.keys(), vec!["b"]);
    assert_eq!(store.get_bytes("b").unwrap(), "second version");
}

#[tokio::test]
async fn rename_keeps_the_storage_class_and_metadata() {
    let store = MemStore::new();
    let mut options = with_mtime(1_500_000_000);
    options.storage_class = Some("STANDARD_IA".to_owned());
    options.content_type = Some("text/csv".to_owned());
    options
        .user_metadata
        .insert("owner-team".to_owned(), "data".to_owned());
    store.insert_with("report.csv", "a,b\n", options);
    let fs = mount(&store);
    fs.rename(Ino::ROOT, os("report.csv"), Ino::ROOT, os("r.csv"), false)
        .await
        .unwrap();
    let moved = store.meta("r.csv").unwrap();
    assert_eq!(moved.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(moved.content_type.as_deref(), Some("text/csv"));
    assert_eq!(moved.user_metadata["owner-team"], "data");
    assert_eq!(moved.user_metadata["mtime"], "1500000000");
}

#[tokio::test]
async fn rename_of_a_large_file_copies_parts() {
    let caps = Capabilities {
        max_single_put: MIB as u64,
        min_part_size: 64 * KIB as u64,
        ..Capabilities::default()
    };
    let store = MemStore::with_capabilities(caps);
    let data = pattern(6 * MIB + 12_345);
    let mut options = with_mtime(1_234_567_890);
    options.content_type = Some("application/x-big".to_owned());
    store.insert_with("big.bin", data.clone(), options);
    let config = rw().with_write_part_size(MIB as u64);
    let (fs, counting) = counted(&store, config);
    fs.rename(Ino::ROOT, os("big.bin"), Ino::ROOT, os("moved.bin"), false)
        .await
        .unwrap();
    assert_eq!(counting.count(Op::Copy), 0);
    assert_eq!(counting.count(Op::CreateMultipart), 1);
    assert_eq!(counting.count(Op::UploadPartCopy), 7);
    assert_eq!(counting.count(Op::CompleteMultipart), 1);
    assert_eq!(counting.count(Op::Delete), 1);
    assert_eq!(store.open_uploads(), 0);
    assert_eq!(store.keys(), vec!["moved.bin"]);
    assert_eq!(store.get_bytes("moved.bin").unwrap(), data);
    let moved = store.meta("moved.bin").unwrap();
    assert_eq!(moved.content_type.as_deref(), Some("application/x-big"));
    assert_eq!(moved.user_metadata["mtime"], "1234567890");
}

#[tokio::test]
async fn a_failed_part_copy_aborts_and_keeps_the_source() {
    let store = MemStore::with_capabilities(Capabilities {
        max_single_put: MIB as u64,
        min_part_size: 64 * KIB as u64,
        ..Capabilities::default()
    });
    store.insert("big", pattern(3 * MIB));
    let fault = FaultStore::new(Arc::new(store.clone()));
    fault.fail_nth(Op::UploadPartCopy, 2, injected());
    let fs = mount_with(Arc::new(fault), rw().with_write_part_size(512 * KIB as u64));
    assert_eq!(
        errno(
            fs.rename(Ino::ROOT, os("big"), Ino::ROOT, os("b2"), false)
                .await
        ),
        libc::EIO
    );
    assert_eq!(store.keys(), vec!["big"]);
    assert_eq!(store.open_uploads(), 0);
}

// ---------------------------------------------------------------------------------------
// rename of directories

/// A tree of 200 files under `src/` (nested two levels) with a marker, and a file outside.
fn tree(store: &MemStore) -> Vec<String> {
    let mut options = PutOptions::default();
    options
        .user_metadata
        .insert("mode".to_owned(), (0o040000 | 0o711).to_string());
    store.insert_with("src/", "", options);
    let mut keys = Vec::new();
    for i in 0..200 {
        let rel = format!("d{}/e{}/f{i}", i % 4, i % 3);
        store.insert(format!("src/{rel}"), format!("content {i}"));
        keys.push(rel);
    }
    store.insert("srcfile", "not under src/");
    keys
}

#[tokio::test]
async fn directory_rename_moves_every_key() {
    let store = MemStore::new();
    let rels = tree(&store);
    let (fs, counting) = counted(&store, rw());
    lookup(&fs, "src/d1/e1").await.unwrap();
    counting.reset();
    fs.rename(Ino::ROOT, os("src"), Ino::ROOT, os("dst"), false)
        .await
        .unwrap();
    // One copy per key (the marker too), one DeleteObjects, one LIST page.
    assert_eq!(counting.count(Op::Copy), 201);
    assert_eq!(counting.count(Op::DeleteMany), 1);
    assert_eq!(counting.count(Op::Delete), 0);
    assert!(store.keys().iter().all(|k| !k.starts_with("src/")));
    for (i, rel) in rels.iter().enumerate() {
        assert_eq!(
            store.get_bytes(&format!("dst/{rel}")).unwrap(),
            format!("content {i}")
        );
    }
    assert_eq!(store.get_bytes("srcfile").unwrap(), "not under src/");
    assert_eq!(meta(&store, "dst/", "mode").unwrap(), "16841");
    // The caches know: the old tree is gone, the new one is there.
    assert_eq!(errno(lookup(&fs, "src/d1/e1").await), libc::ENOENT);
    assert_eq!(errno(lookup(&fs, "src").await), libc::ENOENT);
    assert_eq!(lookup(&fs, "dst").await.unwrap().attr.perm, 0o711);
    assert_eq!(lookup(&fs, "dst/d1/e1/f1").await.unwrap().attr.size, 9);
}

/// `dir/f`, 8 KiB (too large for a listing to HEAD it) with mode 0640 in s3fs headers.
fn insert_private_file(store: &MemStore, key: &str) {
    let mut options = with_mtime(1_500_000_000);
    options
        .user_metadata
        .insert("mode".to_owned(), (libc::S_IFREG | 0o640).to_string());
    store.insert_with(key, pattern(8 * KIB), options);
}

/// The permission bits a listing of `dir` shows for `name`.
async fn listed_perm(fs: &S3Fs, dir: &str, name: &str) -> u16 {
    let dir_ino = ino(fs, dir).await;
    let handle = fs.opendir(dir_ino).await.unwrap();
    let entries = fs.readdirplus(dir_ino, handle, 0, 100).await.unwrap();
    fs.releasedir(dir_ino, handle).await.unwrap();
    let entry = entries
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{name} not listed in {dir}"));
    entry.attr.expect("listed entries carry attributes").perm
}

#[tokio::test]
async fn directory_rename_keeps_what_was_read_of_the_moved_files() {
    let store = MemStore::new();
    store.insert("d/", Bytes::new());
    insert_private_file(&store, "d/f");
    let (fs, counting) = counted(&store, rw());
    assert_eq!(lookup(&fs, "d/f").await.unwrap().attr.perm, 0o640);
    fs.rename(Ino::ROOT, os("d"), Ino::ROOT, os("e"), false)
        .await
        .unwrap();
    counting.reset();
    // The copy kept the headers; the listing of the new place shows them without a HEAD.
    assert_eq!(listed_perm(&fs, "e", "f").await, 0o640);
    assert_eq!(lookup(&fs, "e/f").await.unwrap().attr.perm, 0o640);
    assert_eq!(counting.count(Op::Head), 0);
}

#[tokio::test]
async fn a_writer_opening_a_listed_file_shows_its_stored_mode() {
    let store = MemStore::new();
    insert_private_file(&store, "d/f");
    let fs = mount(&store);
    // A listing cannot tell the mode: the mount's default until a lookup reads it.
    assert_eq!(listed_perm(&fs, "d", "f").await, 0o644);
    let f = ino(&fs, "d/f").await;
    let handle = fs
        .open(f, s3vfs::vfs::OpenFlags::from_posix(libc::O_RDWR))
        .await
        .unwrap();
    fs.write(f, handle, 0, Bytes::from_static(b"x"))
        .await
        .unwrap();
    // While the change is unsaved the open file answers: with the stored mode.
    assert_eq!(fs.getattr(f).await.unwrap().attr.perm, 0o640);
    fs.flush(f, handle).await.unwrap();
    fs.release(f, handle).await.unwrap();
    assert_eq!(
        meta(&store, "d/f", "mode").unwrap(),
        (libc::S_IFREG | 0o640).to_string()
    );
    assert_eq!(lookup(&fs, "d/f").await.unwrap().attr.perm, 0o640);
}

#[tokio::test]
async fn directory_rename_without_marker_creates_one_and_keeps_the_parent() {
    let store = MemStore::new();
    store.insert("p/src/a", "a");
    store.insert("p/src/b/c", "c");
    store.insert("q/", "");
    let fs = mount(&store);
    let p = ino(&fs, "p").await;
    let q = ino(&fs, "q").await;
    fs.rename(p, os("src"), q, os("moved"), false)
        .await
        .unwrap();
    assert_eq!(
        store.keys(),
        vec!["p/", "q/", "q/moved/", "q/moved/a", "q/moved/b/c"]
    );
    // An empty directory moves too, and stays a directory.
    fs.mkdir(Ino::ROOT, os("empty"), 0o755).await.unwrap();
    fs.rename(Ino::ROOT, os("empty"), Ino::ROOT, os("still_empty"), false)
        .await
        .unwrap();
    assert!(store.get_bytes("still_empty/").is_some());
    assert!(store.get_bytes("empty/").is_none());
    assert_eq!(
        lookup(&mount(&store), "still_empty")
            .await
            .unwrap()
            .attr
            .kind,
        FileKind::Directory
    );
}

#[tokio::test]
async fn directory_rename_with_a_failed_copy_changes_nothing() {
    let store = MemStore::new();
    tree(&store);
    let before = snapshot(&store);
    let fault = FaultStore::new(Arc::new(store.clone()));
    fault.fail_nth(Op::Copy, 50, injected());
    let fs = mount_with(Arc::new(fault.clone()), rw());
    let result = fs
        .rename(Ino::ROOT, os("src"), Ino::ROOT, os("dst"), false)
        .await;
    assert_eq!(errno(result), libc::EIO);
    assert_eq!(fault.injected(), 1);
    // The source tree is intact and no copy remains.
    assert_eq!(snapshot(&store), before);
    assert_eq!(lookup(&fs, "src/d0/e0/f0").await.unwrap().attr.size, 9);
    assert_eq!(errno(lookup(&fs, "dst").await), libc::ENOENT);
}

#[tokio::test]
async fn directory_rename_with_failed_deletes_leaves_both_trees() {
    for batch_deletes in [true, false] {
        let store = MemStore::with_capabilities(Capabilities {
            delete_many: batch_deletes,
            ..Capabilities::default()
        });
        let rels = tree(&store);
        let fault = FaultStore::new(Arc::new(store.clone()));
        if batch_deletes {
            fault.fail_next(Op::DeleteMany, 1, injected());
        } else {
            fault.fail_nth(Op::Delete, 3, injected());
        }
        let fs = mount_with(Arc::new(fault), rw());
        let result = fs
            .rename(Ino::ROOT, os("src"), Ino::ROOT, os("dst"), false)
            .await;
        assert_eq!(errno(result), libc::EIO);
        // The new place is complete; what could not be deleted is also at the old one.
        for (i, rel) in rels.iter().enumerate() {
            assert_eq!(
                store.get_bytes(&format!("dst/{rel}")).unwrap(),
                format!("content {i}")
            );
        }
        let left = store
            .keys()
            .iter()
            .filter(|k| k.starts_with("src/"))
            .count();
        assert_eq!(left, if batch_deletes { 201 } else { 1 });
    }
}

#[tokio::test]
async fn directory_rename_refuses_keys_that_would_be_too_long() {
    let store = MemStore::new();
    let long = "n".repeat(250);
    let key = format!("s/{long}/{long}/{long}/{long}/x");
    store.insert(key.as_str(), "x");
    let fs = mount(&store);
    let name = "m".repeat(200);
    assert_eq!(
        errno(
            fs.rename(Ino::ROOT, os("s"), Ino::ROOT, os(&name), false)
                .await
        ),
        libc::ENAMETOOLONG
    );
    assert_eq!(store.keys(), vec![key]);
}

// ---------------------------------------------------------------------------------------
// setattr

#[tokio::test]
async fn chmod_chown_utimens_are_stored_in_s3fs_headers() {
    let store = MemStore::new();
    let mut options = PutOptions {
        content_type: Some("text/plain".to_owned()),
        storage_class: Some("STANDARD_IA".to_owned()),
        ..PutOptions::default()
    };
    options
        .user_metadata
        .insert("custom".to_owned(), "kept".to_owned());
    store.insert_with("f", "body", options);
    store.insert("d/x", "x");
    let (fs, counting) = counted(&store, rw());
    let f = ino(&fs, "f").await;
    counting.reset();
    let mtime = UNIX_EPOCH + Duration::from_secs(1_650_000_000);
    let entry = fs
        .setattr(
            f,
            None,
            SetAttr {
                mode: Some(0o100600),
                uid: Some(1234),
                gid: Some(5678),
                mtime: Some(mtime),
                size: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(counting.count(Op::Head), 1);
    assert_eq!(counting.count(Op::Copy), 1);
    assert_eq!(entry.attr.perm, 0o600);
    assert_eq!(entry.attr.uid, 1234);
    assert_eq!(entry.attr.mtime, mtime);
    let m = store.meta("f").unwrap();
    assert_eq!(m.user_metadata["mode"], (0o100000 | 0o600).to_string());
    assert_eq!(m.user_metadata["uid"], "1234");
    assert_eq!(m.user_metadata["gid"], "5678");
    assert_eq!(m.user_metadata["mtime"], "1650000000");
    assert_eq!(m.user_metadata["custom"], "kept");
    assert_eq!(m.content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(store.get_bytes("f").unwrap(), "body");

    // chmod alone keeps the rest.
    fs.setattr(
        f,
        None,
        SetAttr {
            mode: Some(0o640),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(meta(&store, "f", "uid").unwrap(), "1234");
    assert_eq!(meta(&store, "f", "mtime").unwrap(), "1650000000");

    // A directory without marker gets one carrying the mode.
    let d = ino(&fs, "d").await;
    fs.setattr(
        d,
        None,
        SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        meta(&store, "d/", "mode").unwrap(),
        (0o040000 | 0o700).to_string()
    );

    // A fresh mount sees all of it.
    let fresh = mount(&store);
    let seen = lookup(&fresh, "f").await.unwrap();
    assert_eq!(
        (
            seen.attr.perm,
            seen.attr.uid,
            seen.attr.gid,
            seen.attr.mtime
        ),
        (0o640, 1234, 5678, mtime)
    );
    assert_eq!(lookup(&fresh, "d").await.unwrap().attr.perm, 0o700);

    // The mount root is not an object: accepted, not stored.
    let before = snapshot(&store);
    fs.setattr(
        Ino::ROOT,
        None,
        SetAttr {
            mtime: Some(mtime),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(snapshot(&store), before);
    // Size of a directory.
    assert_eq!(
        errno(
            fs.setattr(
                d,
                None,
                SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                }
            )
            .await
        ),
        libc::EISDIR
    );
}

#[tokio::test]
async fn chmod_keeps_an_unknown_mtime_and_works_on_large_objects() {
    let store = MemStore::with_capabilities(Capabilities {
        max_single_put: MIB as u64,
        min_part_size: 64 * KIB as u64,
        ..Capabilities::default()
    });
    let data = pattern(3 * MIB);
    store.insert("big", data.clone());
    let modified = UNIX_EPOCH + Duration::from_secs(1_400_000_000);
    store.set_last_modified("big", modified);
    let (fs, counting) = counted(&store, rw().with_write_part_size(MIB as u64));
    let big = ino(&fs, "big").await;
    counting.reset();
    let entry = fs
        .setattr(
            big,
            None,
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    // A chmod is not a modification: the Last-Modified seen becomes the stored mtime.
    assert_eq!(entry.attr.mtime, modified);
    assert_eq!(meta(&store, "big", "mtime").unwrap(), "1400000000");
    assert_eq!(counting.count(Op::UploadPartCopy), 3);
    assert_eq!(store.get_bytes("big").unwrap(), data);
    assert_eq!(store.open_uploads(), 0);
}

// ---------------------------------------------------------------------------------------
// symlink

#[tokio::test]
async fn symlinks_round_trip_in_the_s3fs_format() {
    let store = MemStore::new();
    let (fs, counting) = counted(&store, rw());
    let entry = fs
        .symlink(Ino::ROOT, os("link"), os("../some/target"))
        .await
        .unwrap();
    assert_eq!(entry.attr.kind, FileKind::Symlink);
    assert_eq!(entry.attr.size, 14);
    assert_eq!(counting.count(Op::Put), 1);
    assert_eq!(store.get_bytes("link").unwrap(), "../some/target");
    assert_eq!(meta(&store, "link", "mode").unwrap(), "41471"); // S_IFLNK | 0777
    assert!(meta(&store, "link", "mtime").is_some());
    assert_eq!(fs.readlink(entry.attr.ino).await.unwrap(), "../some/target");
    let fresh = mount(&store);
    let seen = lookup(&fresh, "link").await.unwrap();
    assert_eq!(seen.attr.kind, FileKind::Symlink);
    assert_eq!(
        fresh.readlink(seen.attr.ino).await.unwrap(),
        "../some/target"
    );

    assert_eq!(
        errno(fs.symlink(Ino::ROOT, os("link"), os("x")).await),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.symlink(Ino::ROOT, os("e"), os("")).await),
        libc::ENOENT
    );
    let long = "t".repeat(5000);
    assert_eq!(
        errno(fs.symlink(Ino::ROOT, os("l2"), os(&long)).await),
        libc::ENAMETOOLONG
    );
    // A symlink is unlinked and renamed like a file.
    fs.rename(Ino::ROOT, os("link"), Ino::ROOT, os("link2"), false)
        .await
        .unwrap();
    assert_eq!(meta(&store, "link2", "mode").unwrap(), "41471");
    fs.unlink(Ino::ROOT, os("link2")).await.unwrap();
    assert!(store.is_empty());
}

// ---------------------------------------------------------------------------------------
// mknod: fifos, devices and sockets

/// The kind, permission bits and device number `fs` shows for every entry of `dir`, as
/// listed and as looked up.
async fn special_kinds(fs: &S3Fs, dir: &str) -> Vec<(String, FileKind, u16, u32)> {
    let dir_ino = ino(fs, dir).await;
    let handle = fs.opendir(dir_ino).await.unwrap();
    let entries = fs.readdir(dir_ino, handle, 0, 100).await.unwrap();
    fs.releasedir(dir_ino, handle).await.unwrap();
    let mut kinds = Vec::new();
    for entry in entries.into_iter().skip(2) {
        let listed = entry.attr.expect("listed entries carry attributes");
        let looked_up = lookup(fs, &format!("{dir}/{}", entry.name)).await.unwrap();
        assert_eq!(listed, looked_up.attr, "{}", entry.name);
        kinds.push((entry.name, listed.kind, listed.perm, listed.rdev));
    }
    kinds
}

#[tokio::test]
async fn special_files_keep_type_device_and_attributes_through_every_change() {
    let store = MemStore::new();
    let (fs, counting) = counted(&store, rw());
    let dev = fs
        .mkdir(Ino::ROOT, os("dev"), 0o755)
        .await
        .unwrap()
        .attr
        .ino;
    let null = libc::makedev(1, 3) as u32;
    let sda = libc::makedev(8, 0) as u32;
    let made = [
        ("fifo", libc::S_IFIFO | 0o644, FileKind::Fifo, 0),
        ("null", libc::S_IFCHR | 0o666, FileKind::CharDevice, null),
        ("sda", libc::S_IFBLK | 0o660, FileKind::BlockDevice, sda),
        ("sock", libc::S_IFSOCK | 0o755, FileKind::Socket, 0),
    ];
    for (name, mode, kind, rdev) in made {
        counting.reset();
        let entry = fs.mknod(dev, os(name), mode, rdev).await.unwrap();
        assert_eq!(counting.count(Op::Put), 1);
        assert_eq!(
            (entry.attr.kind, entry.attr.rdev, entry.attr.size),
            (kind, rdev, 0)
        );
        assert_eq!(store.get_bytes(&format!("dev/{name}")).unwrap().len(), 0);
    }
    let expected: Vec<(String, FileKind, u16, u32)> = made
        .iter()
        .map(|(name, mode, kind, rdev)| ((*name).to_owned(), *kind, (mode & 0o7777) as u16, *rdev))
        .collect();
    assert_eq!(special_kinds(&fs, "dev").await, expected);
    // Another machine sees the same, from a listing alone.
    assert_eq!(special_kinds(&mount(&store), "dev").await, expected);

    // chown and utimens of a device: its number stays.
    let null_ino = ino(&fs, "dev/null").await;
    let mtime = UNIX_EPOCH + Duration::from_secs(1_650_000_000);
    let changes = SetAttr {
        uid: Some(42),
        gid: Some(43),
        mtime: Some(mtime),
        ..SetAttr::default()
    };
    let entry = fs.setattr(null_ino, None, changes).await.unwrap();
    assert_eq!(
        (
            entry.attr.kind,
            entry.attr.rdev,
            entry.attr.uid,
            entry.attr.mtime
        ),
        (FileKind::CharDevice, null, 42, mtime)
    );
    assert_eq!(meta(&store, "dev/null", "rdev").unwrap(), null.to_string());
    assert_eq!(
        meta(&store, "dev/null", "mode").unwrap(),
        (libc::S_IFCHR | 0o666).to_string()
    );
    // An extended attribute on a fifo.
    let fifo = ino(&fs, "dev/fifo").await;
    fs.setxattr(fifo, os("user.note"), Bytes::from_static(b"pipe"))
        .await
        .unwrap();
    assert_eq!(fs.getxattr(fifo, os("user.note")).await.unwrap(), "pipe");
    // Neither is opened or truncated by the file system.
    assert_eq!(
        errno(fs.open(fifo, s3vfs::vfs::OpenFlags::read_only()).await),
        libc::EINVAL
    );
    let truncate = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(errno(fs.setattr(fifo, None, truncate).await), libc::EINVAL);

    // A directory rename moves them with their headers; a fresh mount sees the same.
    fs.rename(Ino::ROOT, os("dev"), Ino::ROOT, os("dev2"), false)
        .await
        .unwrap();
    let fresh = mount(&store);
    assert_eq!(special_kinds(&fresh, "dev2").await, expected);
    let null_attr = lookup(&fresh, "dev2/null").await.unwrap().attr;
    assert_eq!(
        (null_attr.uid, null_attr.gid, null_attr.mtime),
        (42, 43, mtime)
    );
    assert_eq!(special_kinds(&fs, "dev2").await, expected);

    // A file rename over a fifo replaces it; unlink removes them; the directory stays.
    let dev2 = ino(&fs, "dev2").await;
    fs.rename(dev2, os("sock"), dev2, os("fifo"), false)
        .await
        .unwrap();
    assert_eq!(
        lookup(&fs, "dev2/fifo").await.unwrap().attr.kind,
        FileKind::Socket
    );
    for name in ["fifo", "null", "sda"] {
        fs.unlink(dev2, os(name)).await.unwrap();
    }
    assert_eq!(store.keys(), vec!["dev2/"]);
    assert_eq!(special_kinds(&fs, "dev2").await, vec![]);
}

// ---------------------------------------------------------------------------------------
// xattrs

#[tokio::test]
async fn xattrs_round_trip_in_the_s3fs_format() {
    let store = MemStore::new();
    store.insert("f", "data");
    store.insert("d/x", "x");
    let (fs, counting) = counted(&store, rw());
    let f = ino(&fs, "f").await;
    counting.reset();
    fs.setxattr(f, os("user.a"), Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(counting.count(Op::Copy), 1);
    assert_eq!(
        meta(&store, "f", "xattr").unwrap(),
        "%7B%22user.a%22%3A%22aGk%3D%22%7D"
    );
    fs.setxattr(f, os("user.bin"), Bytes::from_static(&[0, 255, 10]))
        .await
        .unwrap();
    assert_eq!(fs.getxattr(f, os("user.a")).await.unwrap(), "hi");
    assert_eq!(
        fs.getxattr(f, os("user.bin")).await.unwrap(),
        Bytes::from_static(&[0, 255, 10])
    );
    let names: BTreeSet<String> = fs.listxattr(f).await.unwrap().into_iter().collect();
    let expected: BTreeSet<String> = [
        "user.a",
        "user.bin",
        "user.s3.etag",
        "user.s3.key",
        "user.s3.storage_class",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
    assert_eq!(fs.getxattr(f, os("user.s3.key")).await.unwrap(), "f");
    assert_eq!(
        fs.getxattr(f, os("user.s3.storage_class")).await.unwrap(),
        "STANDARD"
    );
    let etag = store.meta("f").unwrap().etag.unwrap();
    assert_eq!(
        fs.getxattr(f, os("user.s3.etag")).await.unwrap(),
        etag.as_str().trim_matches('"')
    );

    // A fresh mount reads them.
    let fresh = mount(&store);
    let f2 = ino(&fresh, "f").await;
    assert_eq!(fresh.getxattr(f2, os("user.a")).await.unwrap(), "hi");

    // Removal; the last one removes the header.
    fs.removexattr(f, os("user.a")).await.unwrap();
    assert_eq!(errno(fs.getxattr(f, os("user.a")).await), libc::ENODATA);
    assert_eq!(errno(fs.removexattr(f, os("user.a")).await), libc::ENODATA);
    fs.removexattr(f, os("user.bin")).await.unwrap();
    assert!(meta(&store, "f", "xattr").is_none());
    assert_eq!(store.get_bytes("f").unwrap(), "data");

    // Refusals.
    let before = store.meta("f").unwrap();
    assert_eq!(
        errno(fs.setxattr(f, os("user.big"), pattern(2100)).await),
        libc::E2BIG
    );
    assert_eq!(
        errno(fs.setxattr(f, os("security.selinux"), Bytes::new()).await),
        libc::ENOTSUP
    );
    assert_eq!(
        errno(fs.setxattr(f, os("user.s3.etag"), Bytes::new()).await),
        libc::EPERM
    );
    assert_eq!(
        errno(fs.removexattr(f, os("user.s3.key")).await),
        libc::EPERM
    );
    // Names outside user.* are not supported (ENOTSUP, so `ls -l` stops asking).
    assert_eq!(
        errno(fs.getxattr(f, os("security.capability")).await),
        libc::ENOTSUP
    );
    assert_eq!(store.meta("f").unwrap(), before, "refusals write nothing");

    // A directory's attributes live on its marker.
    let d = ino(&fs, "d").await;
    let dir_names = fs.listxattr(d).await.unwrap();
    assert_eq!(dir_names, vec!["user.s3.key"]);
    fs.setxattr(d, os("user.tag"), Bytes::from_static(b"blue"))
        .await
        .unwrap();
    assert!(meta(&store, "d/", "xattr").is_some());
    assert_eq!(fs.getxattr(d, os("user.tag")).await.unwrap(), "blue");
    assert_eq!(fs.getxattr(d, os("user.s3.key")).await.unwrap(), "d/");
}

// ---------------------------------------------------------------------------------------
// guard rails and read-only mounts

#[tokio::test]
async fn guard_rails_refuse_deletes_and_overwrites() {
    let store = MemStore::new();
    store.insert("f", "f");
    store.insert("g", "g");
    store.insert("e/", "");
    let no_delete = mount_with(Arc::new(store.clone()), rw().with_allow_delete(false));
    let before = snapshot(&store);
    assert_eq!(
        errno(no_delete.unlink(Ino::ROOT, os("f")).await),
        libc::EPERM
    );
    assert_eq!(
        errno(no_delete.rmdir(Ino::ROOT, os("e")).await),
        libc::EPERM
    );
    assert_eq!(
        errno(
            no_delete
                .rename(Ino::ROOT, os("f"), Ino::ROOT, os("h"), false)
                .await
        ),
        libc::EPERM
    );
    // Creating is still allowed.
    no_delete.mkdir(Ino::ROOT, os("new"), 0o755).await.unwrap();
    store.remove("new/");
    assert_eq!(snapshot(&store), before);

    let no_overwrite = mount_with(Arc::new(store.clone()), rw().with_allow_overwrite(false));
    let f = ino(&no_overwrite, "f").await;
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    assert_eq!(
        errno(no_overwrite.setattr(f, None, chmod).await),
        libc::EPERM
    );
    assert_eq!(
        errno(no_overwrite.setxattr(f, os("user.x"), Bytes::new()).await),
        libc::EPERM
    );
    assert_eq!(
        errno(
            no_overwrite
                .rename(Ino::ROOT, os("f"), Ino::ROOT, os("g"), false)
                .await
        ),
        libc::EPERM
    );
    assert_eq!(snapshot(&store), before);
    // A rename to a free name replaces nothing.
    no_overwrite
        .rename(Ino::ROOT, os("f"), Ino::ROOT, os("h"), false)
        .await
        .unwrap();
    assert_eq!(store.get_bytes("h").unwrap(), "f");
}

#[tokio::test]
async fn read_only_mounts_refuse_every_change() {
    let store = MemStore::new();
    store.insert("f", "f");
    store.insert("d/x", "x");
    let (fs, counting) = counted(&store, FsConfig::default().with_read_only(true));
    let f = ino(&fs, "f").await;
    let d = ino(&fs, "d").await;
    counting.reset();
    let before = snapshot(&store);
    let chmod = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let results = [
        errno(fs.mkdir(Ino::ROOT, os("n"), 0o755).await),
        errno(fs.unlink(Ino::ROOT, os("f")).await),
        errno(fs.rmdir(Ino::ROOT, os("d")).await),
        errno(
            fs.rename(Ino::ROOT, os("f"), Ino::ROOT, os("g"), false)
                .await,
        ),
        errno(fs.symlink(Ino::ROOT, os("l"), os("f")).await),
        errno(fs.setattr(f, None, chmod).await),
        errno(fs.setattr(d, None, chmod).await),
        errno(fs.setxattr(f, os("user.x"), Bytes::new()).await),
        errno(fs.removexattr(f, os("user.x")).await),
    ];
    assert!(results.iter().all(|e| *e == libc::EROFS), "{results:?}");
    assert_eq!(counting.total(), 0, "refused before any request");
    assert_eq!(snapshot(&store), before);
    // Reading attributes still works.
    assert_eq!(fs.getxattr(f, os("user.s3.key")).await.unwrap(), "f");
}

#[tokio::test]
async fn stale_inodes_and_bad_names_are_refused() {
    let store = MemStore::new();
    let fs = mount(&store);
    let ghost = Ino(9999);
    assert_eq!(errno(fs.mkdir(ghost, os("x"), 0o755).await), libc::ENOENT);
    assert_eq!(
        errno(fs.setattr(ghost, None, SetAttr::default()).await),
        libc::ENOENT
    );
    let long = "x".repeat(256);
    assert_eq!(
        errno(fs.mkdir(Ino::ROOT, os(&long), 0o755).await),
        libc::ENAMETOOLONG
    );
    let _ = SystemTime::now();
    assert!(store.is_empty());
}

/// As the kernel creates a file: a lookup of the new name (absent), then create, one
/// write, flush and release.
async fn create_like_the_kernel(fs: &S3Fs, dir: Ino, name: &str) {
    assert_eq!(errno(fs.lookup(dir, os(name)).await), libc::ENOENT);
    let flags = s3vfs::vfs::OpenFlags::from_posix(libc::O_WRONLY | libc::O_CREAT);
    let (entry, handle) = fs.create(dir, os(name), 0o644, flags).await.unwrap();
    let f = entry.attr.ino;
    fs.write(f, handle, 0, pattern(4 * KIB)).await.unwrap();
    fs.flush(f, handle).await.unwrap();
    fs.release(f, handle).await.unwrap();
}

/// Creates in a directory this mount made cost their PUT alone while the directory is
/// known (the negative TTL), and one LIST to renew that knowledge after it: not a HEAD
/// and a LIST per new name.
#[tokio::test]
async fn creates_in_a_known_directory_cost_their_put_alone() {
    let store = MemStore::new();
    let config = rw().with_metadata_ttl(Duration::from_secs(60));
    let (fs, counting) = counted(&store, config);
    let root = Ino::ROOT;
    let dir = fs.mkdir(root, os("new"), 0o755).await.unwrap().attr.ino;
    counting.reset();
    for i in 0..50 {
        create_like_the_kernel(&fs, dir, &format!("f{i}")).await;
    }
    assert_eq!(counting.count(Op::Put), 50);
    assert_eq!(counting.total(), 50, "{:?}", counting.counts());
    assert_eq!(store.keys().len(), 51);

    // A name this mount created is never answered "absent".
    assert!(fs.lookup(dir, os("f7")).await.is_ok());
}

/// In a directory this mount did not make, a few lookups of absent names make it LIST the
/// directory once in the background; later new names cost their PUT alone.
#[tokio::test]
async fn creates_in_a_busy_directory_list_it_once() {
    let store = MemStore::new();
    store.insert("old/existing", "x");
    let config = rw().with_metadata_ttl(Duration::from_secs(60));
    let (fs, counting) = counted(&store, config);
    let dir = ino(&fs, "old").await;
    counting.reset();
    for i in 0..50 {
        create_like_the_kernel(&fs, dir, &format!("f{i}")).await;
        // Let the background LIST land, as the time between two creates would.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(counting.count(Op::Put), 50);
    let lookups = counting.count(Op::Head);
    assert!(lookups <= 6, "HEADs: {:?}", counting.counts());
    assert!(
        counting.count(Op::List) <= lookups + 1,
        "{:?}",
        counting.counts()
    );
    // The names the LIST showed are never "absent".
    assert!(fs.lookup(dir, os("existing")).await.is_ok());
}

/// A listing of several pages asks for the next page while the reader takes in the
/// current one, and still costs one LIST per page.
#[tokio::test]
async fn the_next_listing_page_is_asked_for_ahead_of_the_reader() {
    let store = MemStore::new();
    for i in 0..2500 {
        store.insert(format!("big/f{i:05}"), "");
    }
    let config = rw().with_list_page_size(1000);
    let (fs, counting) = counted(&store, config);
    let dir = ino(&fs, "big").await;
    counting.reset();
    let handle = fs.opendir(dir).await.unwrap();
    let first = fs.readdir(dir, handle, 0, 500).await.unwrap();
    assert_eq!(first.len(), 500);
    // The first page came with the lookup of `big`; the second was asked for when the
    // first was taken in, before the reader needs it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counting.count(Op::List) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            counting.counts()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut offset = first.last().unwrap().next_offset;
    let mut names = first.len() - 2; // `.` and `..`
    loop {
        let entries = fs.readdir(dir, handle, offset, 500).await.unwrap();
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
        names += entries.len();
    }
    fs.releasedir(dir, handle).await.unwrap();
    assert_eq!(names, 2500);
    assert_eq!(counting.count(Op::List), 2, "{:?}", counting.counts());
}

/// `ls -l dir` on a cold mount: the lookup of `dir` fetches its first page, and the
/// listing right after starts from it rather than asking again; a change this mount made
/// in between is not hidden by it, and the page is used once.
#[tokio::test]
async fn a_listing_right_after_the_lookup_starts_from_the_lookups_page() {
    let store = MemStore::new();
    for name in ["a", "b", "sub/c"] {
        store.insert(format!("d/{name}"), "");
    }
    let (fs, counting) = counted(&store, rw());
    let names = |entries: Vec<s3vfs::vfs::DirEntry>| {
        let mut names: Vec<String> = entries
            .into_iter()
            .map(|e| e.name)
            .filter(|n| n != "." && n != "..")
            .collect();
        names.sort();
        names
    };
    let dir = ino(&fs, "d").await;
    assert_eq!(counting.count(Op::List), 1, "{:?}", counting.counts());
    let handle = fs.opendir(dir).await.unwrap();
    let listed = fs.readdir(dir, handle, 0, 100).await.unwrap();
    fs.releasedir(dir, handle).await.unwrap();
    assert_eq!(names(listed), ["a", "b", "sub"]);
    assert_eq!(
        counting.count(Op::List),
        1,
        "one LIST for lookup and listing: {:?}",
        counting.counts()
    );

    // A file made through the mount between the lookup and the listing shows.
    let (fresh, fresh_counting) = counted(&store, rw());
    let dir = ino(&fresh, "d").await;
    create_like_the_kernel(&fresh, dir, "new").await;
    let handle = fresh.opendir(dir).await.unwrap();
    let listed = fresh.readdir(dir, handle, 0, 100).await.unwrap();
    fresh.releasedir(dir, handle).await.unwrap();
    assert_eq!(names(listed), ["a", "b", "new", "sub"]);
    assert!(
        fresh_counting.count(Op::List) >= 2,
        "{:?}",
        fresh_counting.counts()
    );
}
