//! The read side of the file system against the in-memory store: lookups, listings
//! (paging, shadowing, hidden keys), reads, caches and the library API.

use bytes::Bytes;
use proptest::prelude::*;
use s3vfs::vfs::{FileKind, Ino, OpenFlags, Vfs};
use s3vfs::{FsConfig, S3Vfs, VfsError};
use s3vfs_testkit::fault::{CountingStore, Op};
use s3vfs_testkit::model::{expected_tree, walk};
use s3vfs_testkit::MemStore;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

fn vfs_over(store: &MemStore, config: FsConfig) -> S3Vfs {
    S3Vfs::new(Arc::new(store.clone()), config)
}

fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

#[tokio::test]
async fn lookup_stat_and_read() {
    let store = MemStore::new();
    store.insert("docs/readme.txt", "hello");
    store.insert("docs/sub/deep.bin", pattern(10));
    let vfs = vfs_over(&store, FsConfig::default());
    let meta = vfs.metadata("/docs/readme.txt").await.unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 5);
    assert_eq!(meta.attr().perm, 0o644);
    assert!(vfs.metadata("docs").await.unwrap().is_dir());
    assert!(vfs.metadata("docs/sub").await.unwrap().is_dir());
    assert_eq!(vfs.read("docs/readme.txt").await.unwrap(), "hello");
    assert!(matches!(
        vfs.metadata("docs/nope").await,
        Err(VfsError::NotFound(_))
    ));
    assert!(matches!(
        vfs.metadata("docs/readme.txt/x").await,
        Err(VfsError::NotADirectory(_))
    ));
    assert!(matches!(
        vfs.metadata("../etc/passwd").await,
        Err(VfsError::InvalidName(_))
    ));
    let names: Vec<String> = vfs
        .read_dir("docs")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["readme.txt", "sub"]);
}

#[tokio::test]
async fn directory_shadows_file_and_invalid_keys_are_hidden() {
    let store = MemStore::new();
    store.insert("a", "file a");
    store.insert("a/b", "inside");
    store.insert("x//y", "empty component");
    store.insert("../z", "dots");
    store.insert("./q", "dot");
    store.insert("n".repeat(300), "long");
    store.insert("ok", "fine");
    let vfs = vfs_over(&store, FsConfig::default());
    let tree = walk(&vfs).await.unwrap();
    let paths: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(paths, vec!["a", "a/b", "ok", "x"]);
    assert!(vfs.metadata("a").await.unwrap().is_dir());
    let err = vfs.metadata(&"n".repeat(300)).await.unwrap_err();
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
}

#[tokio::test]
async fn mount_prefix_confines_every_path() {
    let store = MemStore::new();
    store.insert("tenant/a.txt", "mine");
    store.insert("other/secret", "not mine");
    store.insert("tenantx/b", "not mine either");
    let vfs = vfs_over(&store, FsConfig::default().with_prefix("tenant"));
    let tree = walk(&vfs).await.unwrap();
    assert_eq!(tree.keys().collect::<Vec<_>>(), vec!["a.txt"]);
    assert!(vfs.metadata("../other/secret").await.is_err());
    assert!(vfs.metadata("other/secret").await.is_err());
}

#[tokio::test]
async fn big_directory_lists_page_by_page_without_head() {
    let inner = MemStore::new();
    // 4 KiB objects: too large to be symbolic links, so LIST tells all there is to know.
    let body = Bytes::from(vec![b'x'; 4096]);
    for i in 0..2500 {
        inner.insert(format!("big/f{i:05}"), body.clone());
    }
    let counting = Arc::new(CountingStore::new(Arc::new(inner)));
    let fs = s3vfs::S3Fs::new(counting.clone(), FsConfig::default());
    let vfs = S3Vfs::from_fs(fs);
    let entries = vfs.read_dir("big").await.unwrap().collect().await.unwrap();
    assert_eq!(entries.len(), 2500);
    assert!(entries
        .iter()
        .all(|e| e.attr.is_some_and(|a| a.size == 4096)));
    // One HEAD: the lookup of `big` itself; none per entry.
    assert_eq!(counting.count(Op::Head), 1);
    // Stat of every listed entry is served from what LIST said.
    for e in entries.iter().take(100) {
        vfs.metadata(&format!("big/{}", e.name)).await.unwrap();
    }
    assert_eq!(counting.count(Op::Head), 1);
    // 2500 keys at 1000 a page: three LIST pages, the first fetched by the lookup of
    // `big` and taken over by the listing.
    assert_eq!(counting.count(Op::List), 3);
}

#[tokio::test]
async fn readdir_offsets_resume_and_rewind() {
    let store = MemStore::new();
    for i in 0..50 {
        store.insert(format!("d/{i:02}"), "x");
    }
    let fs = s3vfs::S3Fs::new(
        Arc::new(store.clone()),
        FsConfig::default().with_list_page_size(7),
    );
    let dir = fs
        .lookup(Ino::ROOT, OsStr::new("d"))
        .await
        .unwrap()
        .attr
        .ino;
    let h = fs.opendir(dir).await.unwrap();
    let first = fs.readdir(dir, h, 0, 10).await.unwrap();
    assert_eq!(first[0].name, ".");
    assert_eq!(first[1].name, "..");
    // The caller took only 5 of them (its buffer filled): resume after the 5th.
    let again = fs.readdir(dir, h, first[4].next_offset, 10).await.unwrap();
    assert_eq!(again[0].name, first[5].name);
    let mut all = first[..5].to_vec();
    let mut offset = first[4].next_offset;
    loop {
        let batch = fs.readdir(dir, h, offset, 9).await.unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.next_offset;
        all.extend(batch);
    }
    assert_eq!(all.len(), 52);
    // Rewind to the start.
    let rewound = fs.readdir(dir, h, 0, 3).await.unwrap();
    assert_eq!(rewound[2].name, "00");
    fs.releasedir(dir, h).await.unwrap();
}

#[tokio::test]
async fn ranged_reads_and_seeks_return_exact_bytes() {
    let store = MemStore::new();
    let data = pattern(3 * 1024 * 1024 + 17);
    store.insert("blob", data.clone());
    let vfs = vfs_over(
        &store,
        FsConfig::default().with_read_ahead(256 * 1024, 300 * 1024, 2 * 1024 * 1024),
    );
    let mut file = vfs.open("blob").await.unwrap();
    let mut all = Vec::new();
    file.read_to_end(&mut all).await.unwrap();
    assert_eq!(Bytes::from(all), data);
    for (off, len) in [
        (0u64, 1u32),
        (1, 4095),
        (262_143, 3),
        (1_000_001, 700_000),
        (3 * 1024 * 1024, 100),
    ] {
        let got = file.read_at(off, len).await.unwrap();
        let end = (off as usize + len as usize).min(data.len());
        assert_eq!(got, data.slice(off as usize..end), "read at {off}+{len}");
    }
    assert!(file
        .read_at(data.len() as u64 + 10, 5)
        .await
        .unwrap()
        .is_empty());
    file.seek(std::io::SeekFrom::End(-10)).await.unwrap();
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).await.unwrap();
    assert_eq!(&tail[..], &data[data.len() - 10..]);
}

#[tokio::test]
async fn random_small_reads_cost_one_small_get_each() {
    let inner = MemStore::new();
    inner.insert("big", pattern(8 * 1024 * 1024));
    let counting = Arc::new(CountingStore::new(Arc::new(inner)));
    let vfs = S3Vfs::from_fs(s3vfs::S3Fs::new(counting.clone(), FsConfig::default()));
    let file = vfs.open("big").await.unwrap();
    let before = counting.count(Op::Get);
    for off in [5_000_000u64, 100_000, 7_000_000, 2_000_000] {
        assert_eq!(file.read_at(off, 4096).await.unwrap().len(), 4096);
    }
    assert_eq!(counting.count(Op::Get) - before, 4);
}

#[tokio::test]
async fn object_replaced_mid_read_is_an_error_not_mixed_bytes() {
    let store = MemStore::new();
    store.insert("f", pattern(4 * 1024 * 1024));
    let vfs = vfs_over(
        &store,
        FsConfig::default().with_read_ahead(256 * 1024, 256 * 1024, 256 * 1024),
    );
    let file = vfs.open("f").await.unwrap();
    assert_eq!(file.read_at(0, 1000).await.unwrap().len(), 1000);
    store.insert("f", Bytes::from(vec![0xAAu8; 4 * 1024 * 1024]));
    let err = file.read_at(3 * 1024 * 1024, 1000).await.unwrap_err();
    assert_eq!(err.errno(), libc::ESTALE, "{err}");
}

#[tokio::test]
async fn writes_are_refused_read_only() {
    let store = MemStore::new();
    store.insert("f", "x");
    let vfs = vfs_over(&store, FsConfig::default().with_read_only(true));
    let fs = vfs.fs();
    let ino = fs
        .lookup(Ino::ROOT, OsStr::new("f"))
        .await
        .unwrap()
        .attr
        .ino;
    let flags = OpenFlags {
        write: true,
        ..OpenFlags::default()
    };
    assert_eq!(fs.open(ino, flags).await.unwrap_err().errno(), libc::EROFS);
    assert_eq!(
        fs.mkdir(Ino::ROOT, OsStr::new("d"), 0o755)
            .await
            .unwrap_err()
            .errno(),
        libc::EROFS
    );
    assert_eq!(
        fs.unlink(Ino::ROOT, OsStr::new("f"))
            .await
            .unwrap_err()
            .errno(),
        libc::EROFS
    );
}

#[tokio::test]
async fn archived_objects_are_listed_but_not_opened() {
    let store = MemStore::new();
    store.insert("cold", "zzz");
    store.set_storage_class("cold", "DEEP_ARCHIVE");
    let vfs = vfs_over(&store, FsConfig::default());
    let names: Vec<String> = vfs
        .read_dir("")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["cold"]);
    let err = vfs.open("cold").await.unwrap_err();
    assert!(matches!(err, VfsError::Archived { .. }), "{err}");
    assert_eq!(err.errno(), libc::EACCES);
    store.set_restored("cold", true);
    assert_eq!(vfs.read("cold").await.unwrap(), "zzz");
}

#[tokio::test]
async fn changes_by_others_show_after_the_ttl_and_inodes_stay_stable() {
    let store = MemStore::new();
    store.insert("f", "one");
    let ttl = Duration::from_millis(150);
    let vfs = vfs_over(&store, FsConfig::default().with_metadata_ttl(ttl));
    // Numbers are stable while something holds the inode (here an open handle; through
    // FUSE, the kernel's lookups).
    let held = vfs.open("f").await.unwrap();
    let first = vfs.metadata("f").await.unwrap();
    assert!(vfs.metadata("g").await.is_err());
    store.insert("f", "three");
    store.insert("g", "new");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let second = vfs.metadata("f").await.unwrap();
    assert_eq!(second.len(), 5);
    assert_eq!(first.attr().ino, second.attr().ino);
    drop(held);
    assert!(vfs.metadata("g").await.unwrap().is_file());
    store.remove("g");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert!(vfs.metadata("g").await.is_err());
}

#[tokio::test]
async fn lookups_are_cached_within_the_ttl() {
    let inner = MemStore::new();
    inner.insert("f", "x");
    let counting = Arc::new(CountingStore::new(Arc::new(inner)));
    let vfs = S3Vfs::from_fs(s3vfs::S3Fs::new(
        counting.clone(),
        FsConfig::default().with_metadata_ttl(Duration::from_secs(60)),
    ));
    for _ in 0..10 {
        vfs.metadata("f").await.unwrap();
        assert!(vfs.metadata("missing").await.is_err());
    }
    assert_eq!(counting.count(Op::Head), 2);
    assert_eq!(counting.count(Op::List), 2);
}

#[tokio::test]
async fn kinds_are_reported() {
    let store = MemStore::new();
    store.insert("dir/", "");
    let vfs = vfs_over(&store, FsConfig::default());
    let fs = vfs.fs();
    let entry = fs.lookup(Ino::ROOT, OsStr::new("dir")).await.unwrap();
    assert_eq!(entry.attr.kind, FileKind::Directory);
    assert_eq!(entry.attr.perm, 0o755);
    assert!(vfs
        .read_dir("dir")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .is_empty());
    let root = fs.getattr(Ino::ROOT).await.unwrap();
    assert_eq!(root.attr.kind, FileKind::Directory);
    assert!(fs.statfs().await.unwrap().namelen == 255);
}

fn key_strategy() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        4 => "[ab]{1,2}",
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("a!".to_owned()),
    ];
    (proptest::collection::vec(component, 1..4), any::<bool>()).prop_map(|(parts, marker)| {
        let mut key = parts.join("/");
        if marker {
            key.push('/');
        }
        key
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("S3VFS_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
    ))]

    /// Whatever the keys (valid or not, shadowing or not), the tree seen through the file
    /// system is the model's, for any LIST page size and mount prefix.
    #[test]
    fn tree_matches_model(
        keys in proptest::collection::btree_set(key_strategy(), 0..14),
        page in 1u32..4,
        prefixed in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = MemStore::new();
        let objects: Vec<(String, Bytes)> = keys
            .iter()
            .map(|k| {
                let key = if prefixed { format!("a/{k}") } else { k.clone() };
                (key.clone(), Bytes::from(key))
            })
            .collect();
        for (k, v) in &objects {
            store.insert(k.clone(), v.clone());
        }
        let prefix = if prefixed { "a/" } else { "" };
        let expected = expected_tree(objects.iter().map(|(k, v)| (k.as_str(), v)), prefix);
        let config = FsConfig::default().with_prefix(prefix)
            .with_list_page_size(page);
        let vfs = vfs_over(&store, config);
        let seen = runtime.block_on(walk(&vfs)).unwrap();
        prop_assert_eq!(seen, expected);
    }

    /// Any sequence of reads at any offsets returns exactly the object's bytes.
    #[test]
    fn reads_match_content(
        len in 0usize..300_000,
        reads in proptest::collection::vec((0u64..320_000, 0u32..100_000), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = MemStore::new();
        let data = pattern(len);
        store.insert("f", data.clone());
        let vfs = vfs_over(&store, FsConfig::default().with_read_ahead(64 * 1024, 64 * 1024, 256 * 1024));
        runtime.block_on(async {
            let file = vfs.open("f").await.unwrap();
            for (off, n) in reads {
                let got = file.read_at(off, n).await.unwrap();
                let start = (off as usize).min(len);
                let end = (off as usize + n as usize).min(len);
                assert_eq!(got, data.slice(start..end));
            }
        });
    }
}

#[tokio::test]
async fn s3fs_modes_owners_and_symlinks_are_shown() {
    use s3vfs::store::PutOptions;
    // The headers as s3fs writes them: decimal mode with the type bits, owner, seconds.
    let headers = |pairs: &[(&str, u64)]| {
        let mut options = PutOptions::default();
        for (name, value) in pairs {
            options
                .user_metadata
                .insert((*name).to_owned(), value.to_string());
        }
        options
    };
    let store = MemStore::new();
    let file_meta = headers(&[
        ("mode", u64::from(libc::S_IFREG | 0o600)),
        ("uid", 1234),
        ("gid", 99),
        ("mtime", 1_600_000_000),
    ]);
    store.insert_with("private.txt", "secret", file_meta);
    let link_meta = headers(&[("mode", u64::from(libc::S_IFLNK | 0o777))]);
    store.insert_with("link", "private.txt", link_meta);
    store.insert("plain", "no headers");
    let vfs = vfs_over(&store, FsConfig::default());
    let entries = vfs.read_dir("").await.unwrap().collect().await.unwrap();
    let kinds: Vec<(String, FileKind, u16)> = entries
        .iter()
        .map(|e| (e.name.clone(), e.kind, e.attr.unwrap().perm))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("link".to_owned(), FileKind::Symlink, 0o777),
            ("plain".to_owned(), FileKind::File, 0o644),
            ("private.txt".to_owned(), FileKind::File, 0o600),
        ]
    );
    let meta = vfs.metadata("private.txt").await.unwrap();
    assert_eq!((meta.attr().uid, meta.attr().gid), (1234, 99));
    assert_eq!(
        meta.modified(),
        std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
    let fs = vfs.fs();
    let link = fs.lookup(Ino::ROOT, OsStr::new("link")).await.unwrap().attr;
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(fs.readlink(link.ino).await.unwrap(), "private.txt");
    let plain = fs
        .lookup(Ino::ROOT, OsStr::new("plain"))
        .await
        .unwrap()
        .attr;
    assert_eq!(
        fs.readlink(plain.ino).await.unwrap_err().errno(),
        libc::EINVAL
    );
}

#[tokio::test]
async fn a_file_replaced_by_a_directory_is_a_new_inode() {
    let store = MemStore::new();
    store.insert("x", "file");
    let vfs = vfs_over(
        &store,
        FsConfig::default().with_metadata_ttl(Duration::from_millis(50)),
    );
    let fs = vfs.fs();
    let old = fs.lookup(Ino::ROOT, OsStr::new("x")).await.unwrap().attr;
    store.remove("x");
    store.insert("x/inner", "now a directory");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(fs.getattr(old.ino).await.unwrap_err().errno(), libc::ESTALE);
    let new = fs.lookup(Ino::ROOT, OsStr::new("x")).await.unwrap().attr;
    assert_eq!(new.kind, FileKind::Directory);
    assert_ne!(new.ino, old.ino);
}

#[tokio::test]
async fn listings_are_cached_within_the_ttl_and_follow_own_changes() {
    let inner = MemStore::new();
    for i in 0..30 {
        inner.insert(format!("d/f{i:02}"), vec![b'x'; 5000]);
    }
    let counting = Arc::new(CountingStore::new(Arc::new(inner.clone())));
    let vfs = S3Vfs::from_fs(s3vfs::S3Fs::new(
        counting.clone(),
        FsConfig::default().with_metadata_ttl(Duration::from_secs(60)),
    ));
    assert_eq!(
        vfs.read_dir("d")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .len(),
        30
    );
    let lists = counting.count(Op::List);
    // Warm: served from the listing cache.
    assert_eq!(
        vfs.read_dir("d")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .len(),
        30
    );
    assert_eq!(counting.count(Op::List), lists);
    // The mount's own changes show at once.
    vfs.write("d/new", "n").await.unwrap();
    vfs.remove_file("d/f00").await.unwrap();
    let names: Vec<String> = vfs
        .read_dir("d")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), 30);
    assert!(names.contains(&"new".to_owned()) && !names.contains(&"f00".to_owned()));
}

#[tokio::test]
async fn a_tiny_memory_budget_slows_reads_but_keeps_them_correct() {
    let store = MemStore::new();
    let files: Vec<Bytes> = (0..4)
        .map(|i| pattern(3 * 1024 * 1024 + i * 1000))
        .collect();
    for (i, data) in files.iter().enumerate() {
        store.insert(format!("f{i}"), data.clone());
    }
    let config = FsConfig::default()
        .with_read_ahead(256 * 1024, 256 * 1024, 1024 * 1024)
        .with_memory_budget(512 * 1024);
    let vfs = vfs_over(&store, config);
    let mut handles = Vec::new();
    for i in 0..files.len() {
        handles.push(vfs.open(&format!("f{i}")).await.unwrap());
    }
    let mut seen = vec![Vec::new(); files.len()];
    let mut offset = 0u64;
    while seen.iter().zip(&files).any(|(s, f)| s.len() < f.len()) {
        for (i, file) in handles.iter().enumerate() {
            let chunk = file.read_at(offset, 128 * 1024).await.unwrap();
            seen[i].extend_from_slice(&chunk);
        }
        offset += 128 * 1024;
    }
    for (s, f) in seen.iter().zip(&files) {
        assert!(s[..] == f[..]);
    }
}

#[tokio::test]
async fn reads_arriving_out_of_order_keep_the_read_ahead_window() {
    let inner = MemStore::new();
    let data = pattern(24 * 1024 * 1024);
    inner.insert("big", data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner)));
    let vfs = S3Vfs::from_fs(s3vfs::S3Fs::new(counting.clone(), FsConfig::default()));
    let file = vfs.open("big").await.unwrap();
    let chunk = 128 * 1024u64;
    let blocks = data.len() as u64 / chunk;
    // Pairs swapped, as the kernel's parallel read-ahead requests may arrive.
    let mut order: Vec<u64> = Vec::new();
    for pair in (0..blocks).collect::<Vec<u64>>().chunks(2) {
        order.extend(pair.iter().rev());
    }
    let before = counting.count(Op::Get);
    for block in order {
        let got = file.read_at(block * chunk, chunk as u32).await.unwrap();
        let start = (block * chunk) as usize;
        assert!(got == data.slice(start..start + chunk as usize));
    }
    let gets = counting.count(Op::Get) - before;
    // Sequential read-ahead in 8 MiB parts (plus the small first window and the late
    // reads' one-off GETs), not one GET per request.
    assert!(gets < 24, "{gets} GETs for 192 reads");
}

#[tokio::test]
async fn large_sequential_reads_fetch_whole_parts_from_the_first_read_on() {
    // A reader taking 8 MiB at a time (read_bytes into a pipeline) gets one GET per 8 MiB
    // part: not a run of first-window-sized GETs while the window doubles its way up to
    // its reads.
    let inner = MemStore::new();
    let data = pattern(64 * 1024 * 1024);
    inner.insert("big", data.clone());
    let counting = Arc::new(CountingStore::new(Arc::new(inner)));
    let config = FsConfig::default();
    assert_eq!(config.read_part_size, 8 * 1024 * 1024);
    let vfs = S3Vfs::new(counting.clone(), config);
    let mut file = vfs.open("big").await.unwrap();
    let mut seen = 0usize;
    loop {
        let piece = file.read_bytes(8 << 20).await.unwrap();
        if piece.is_empty() {
            break;
        }
        assert!(piece == data.slice(seen..seen + piece.len()));
        seen += piece.len();
    }
    assert_eq!(seen, data.len());
    assert_eq!(counting.count(Op::Get), 8, "GETs for 64 MiB in 8 MiB reads");
}

#[tokio::test]
async fn async_read_with_odd_buffer_sizes_returns_every_byte_once() {
    let store = MemStore::new();
    let data = pattern(2 * 1024 * 1024 + 333);
    store.insert("f", data.clone());
    let vfs = vfs_over(&store, FsConfig::default());
    for size in [1usize, 999, 4096, 70_001, 1 << 20] {
        let mut file = vfs.open("f").await.unwrap();
        let mut seen = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; size];
        loop {
            let n = file.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if size == 1 && seen.len() >= 100_000 {
                // One byte at a time is slow; the first 100k bytes prove the point.
                break;
            }
        }
        assert!(seen[..] == data[..seen.len()], "buffer of {size}");
        if size != 1 {
            assert_eq!(seen.len(), data.len(), "buffer of {size}");
        }
    }
}

#[tokio::test]
async fn zero_copy_reads_return_every_byte_once_and_mix_with_seeks() {
    use tokio::io::AsyncBufReadExt;
    let store = MemStore::new();
    let data = pattern(3 * 1024 * 1024 + 4321);
    store.insert("f", data.clone());
    let counting = CountingStore::new(Arc::new(store.clone()));
    let vfs = S3Vfs::new(Arc::new(counting.clone()), FsConfig::default());

    // read_bytes with several limits: pieces never exceed the limit and add up to the file.
    for max in [1usize, 777, 65_536, 8 << 20] {
        let mut file = vfs.open("f").await.unwrap();
        assert!(file.read_bytes(0).await.unwrap().is_empty());
        let mut seen = Vec::with_capacity(data.len());
        loop {
            let piece = file.read_bytes(max).await.unwrap();
            if piece.is_empty() {
                break;
            }
            assert!(piece.len() <= max);
            seen.extend_from_slice(&piece);
            if max == 1 && seen.len() >= 50_000 {
                break;
            }
        }
        assert!(seen[..] == data[..seen.len()], "limit {max}");
        if max != 1 {
            assert_eq!(seen.len(), data.len(), "limit {max}");
            // At the end it stays at the end.
            assert!(file.read_bytes(max).await.unwrap().is_empty());
        }
    }

    // AsyncBufRead: fill_buf/consume in odd steps, a seek in the middle, then AsyncRead.
    let mut file = vfs.open("f").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 1_000_000 {
        let buf = file.fill_buf().await.unwrap();
        assert!(!buf.is_empty());
        let take = buf.len().min(12_345);
        seen.extend_from_slice(&buf[..take]);
        file.consume(take);
    }
    assert!(seen[..] == data[..seen.len()]);
    file.seek(std::io::SeekFrom::Start(2_500_000))
        .await
        .unwrap();
    let piece = file.read_bytes(10).await.unwrap();
    assert_eq!(piece, data.slice(2_500_000..2_500_010));
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).await.unwrap();
    assert!(rest[..] == data[2_500_010..]);
    // Sequential reads went through read-ahead: a handful of GETs, not one per piece.
    assert!(
        counting.count(Op::Get) < 60,
        "{} GETs",
        counting.count(Op::Get)
    );
}

#[tokio::test]
async fn an_open_after_a_replacement_reads_the_new_version_while_old_handles_stay_open() {
    // FUSE releases handles asynchronously after close(2): a reopen may find the previous
    // handle still open. It must read the version the open found, not the old one.
    let store = MemStore::new();
    store.insert("f", pattern(300_000));
    let vfs = vfs_over(
        &store,
        FsConfig::default().with_metadata_ttl(Duration::ZERO),
    );
    let old = vfs.open("f").await.unwrap();
    assert_eq!(old.read_at(0, 300_000).await.unwrap(), pattern(300_000));
    let new_bytes = Bytes::from(vec![0x5Au8; 300_000]);
    store.insert("f", new_bytes.clone());
    let fresh = vfs.open("f").await.unwrap();
    let got = fresh.read_at(0, 300_000).await.unwrap();
    assert!(got == new_bytes, "the new open read the old version");
    // The old handle never mixes versions: its own (pinned) bytes, or ESTALE.
    match old.read_at(100_000, 1000).await {
        Ok(bytes) => assert!(bytes == pattern(300_000).slice(100_000..101_000)),
        Err(err) => assert_eq!(err.errno(), libc::ESTALE, "{err}"),
    }
}
