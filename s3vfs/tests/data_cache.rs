//! The data cache end to end: the [`CachingStore`] decorator over the in-memory store
//! (byte-exact ranges, GETs saved, errors passed through) and file systems with every
//! cache setting (reads served without GETs, replaced objects read fresh).

use bytes::Bytes;
use s3vfs::cache::{CachingStore, DataCache, DiskCache, MemoryCache};
use s3vfs::config::DataCacheConfig;
use s3vfs::store::{Backend, ByteRange, ETag, GetRequest, ObjectKey, StoreError, StoreErrorKind};
use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::fault::{CountingStore, FaultStore, Op};
use s3vfs_testkit::MemStore;
use std::sync::Arc;
use std::time::Duration;

const BLOCK: u64 = 1024;

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i * 7 + i / 251) as u8 ^ seed)
        .collect::<Vec<_>>()
        .into()
}

/// A caching store over a counted in-memory store.
fn cached(cache: Arc<dyn DataCache>) -> (MemStore, CountingStore, CachingStore) {
    let store = MemStore::new();
    let counting = CountingStore::new(Arc::new(store.clone()));
    let caching = CachingStore::new(Arc::new(counting.clone()), cache, BLOCK, "");
    (store, counting, caching)
}

fn pinned(key: &str, etag: &ETag, range: Option<(u64, u64)>) -> GetRequest {
    GetRequest {
        key: ObjectKey::new(key),
        range: range.map(|(s, e)| ByteRange::new(s, e)),
        if_match: Some(etag.clone()),
    }
}

async fn get(store: &dyn Backend, request: GetRequest) -> Result<(ByteRange, Bytes), StoreError> {
    let response = store.get(request).await?;
    let range = response.range;
    let size = response.meta.size;
    let body = response.collect().await?;
    assert!(range.end <= size);
    Ok((range, body))
}

#[tokio::test]
async fn ranges_are_byte_exact_at_block_boundaries_and_the_short_last_block() {
    let size = 3 * BLOCK + 123;
    let (store, counting, caching) = cached(Arc::new(MemoryCache::new(1 << 20)));
    let data = pattern(size as usize, 0);
    let etag = store.insert("obj", data.clone());
    let b = BLOCK;
    let ranges = [
        (b + 10, b + 20),
        (0, 1),
        (b - 1, b + 1),
        (b, 2 * b),
        (2 * b - 5, 3 * b + 5),
        (3 * b, size),
        (3 * b + 100, size + 1000),
        (size - 1, size),
        (0, size),
        (5, 3 * b + 7),
        (0, u64::MAX),
    ];
    // Twice: the first pass fills the cache piecemeal, the second is served from it.
    for pass in 0..2 {
        for &(start, end) in &ranges {
            let (range, body) = get(&caching, pinned("obj", &etag, Some((start, end))))
                .await
                .unwrap();
            let end = end.min(size);
            assert_eq!(range, ByteRange::new(start, end), "pass {pass}");
            assert_eq!(
                body,
                data.slice(start as usize..end as usize),
                "pass {pass} {start}..{end}"
            );
        }
        let (range, body) = get(&caching, pinned("obj", &etag, None)).await.unwrap();
        assert_eq!((range, body), (ByteRange::new(0, size), data.clone()));
    }
    let gets = counting.count(Op::Get);
    assert!(gets <= 6, "{gets} GETs for 4 blocks");
    // Every block is cached now: no more GETs, whatever the range.
    counting.reset();
    for start in (0..size).step_by(97) {
        let end = (start + 333).min(size);
        let (_, body) = get(&caching, pinned("obj", &etag, Some((start, end))))
            .await
            .unwrap();
        assert_eq!(body, data.slice(start as usize..end as usize));
    }
    assert_eq!(counting.count(Op::Get), 0);
}

#[tokio::test]
async fn a_small_random_read_costs_one_block_once() {
    let cache = Arc::new(MemoryCache::new(1 << 20));
    let (store, counting, caching) = cached(cache.clone());
    let data = pattern(64 * BLOCK as usize, 3);
    let etag = store.insert("big", data.clone());
    let at = 17 * BLOCK + 100;
    let (_, body) = get(&caching, pinned("big", &etag, Some((at, at + 400))))
        .await
        .unwrap();
    assert_eq!(body, data.slice(at as usize..at as usize + 400));
    assert_eq!(counting.count(Op::Get), 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.inserts, stats.bytes),
        (1, BLOCK),
        "exactly one block fetched"
    );
    // The same bytes, and others of the same block: no GET.
    for (s, e) in [
        (at, at + 400),
        (17 * BLOCK, 18 * BLOCK),
        (at + 500, at + 600),
    ] {
        let (_, body) = get(&caching, pinned("big", &etag, Some((s, e))))
            .await
            .unwrap();
        assert_eq!(body, data.slice(s as usize..e as usize));
    }
    assert_eq!(counting.count(Op::Get), 1);
    // Another block: one GET of that block (the size is known now).
    let at = 40 * BLOCK + 5;
    let (_, body) = get(&caching, pinned("big", &etag, Some((at, at + 10))))
        .await
        .unwrap();
    assert_eq!(body, data.slice(at as usize..at as usize + 10));
    assert_eq!(counting.count(Op::Get), 2);
    assert_eq!(cache.stats().bytes, 2 * BLOCK);
    // A range over cached and missing blocks fetches only the missing runs.
    counting.reset();
    let (_, body) = get(
        &caching,
        pinned("big", &etag, Some((16 * BLOCK, 42 * BLOCK))),
    )
    .await
    .unwrap();
    assert_eq!(body, data.slice(16 * BLOCK as usize..42 * BLOCK as usize));
    assert_eq!(counting.count(Op::Get), 3, "before 17, 18..40, 41");
}

#[tokio::test]
async fn empty_objects_and_unpinned_gets() {
    let (store, counting, caching) = cached(Arc::new(MemoryCache::new(1 << 20)));
    let etag = store.insert("empty", Bytes::new());
    for _ in 0..2 {
        let (range, body) = get(&caching, pinned("empty", &etag, None)).await.unwrap();
        assert_eq!((range, body.len()), (ByteRange::new(0, 0), 0));
        let direct = get(&store, pinned("empty", &etag, Some((0, 10)))).await;
        assert_eq!(
            get(&caching, pinned("empty", &etag, Some((0, 10)))).await,
            direct
        );
    }
    // GETs without If-Match are never cached.
    store.insert("k", "abc");
    counting.reset();
    for _ in 0..3 {
        let response = caching
            .get(GetRequest::whole(ObjectKey::new("k")))
            .await
            .unwrap();
        assert_eq!(response.collect().await.unwrap(), "abc");
    }
    assert_eq!(counting.count(Op::Get), 3);
}

#[tokio::test]
async fn store_errors_pass_through_unchanged() {
    let (store, _counting, caching) = cached(Arc::new(MemoryCache::new(1 << 20)));
    let etag = store.insert("obj", pattern(2 * BLOCK as usize + 1, 0));
    let direct = |request: GetRequest| {
        let store = store.clone();
        async move { store.get(request).await.map(|_| ()) }
    };
    let through = |request: GetRequest| {
        let caching = &caching;
        async move { caching.get(request).await.map(|_| ()) }
    };
    let wrong = ETag::new("0123");
    let requests = [
        pinned("obj", &wrong, Some((0, 10))),
        pinned("obj", &wrong, None),
        pinned("missing", &etag, Some((0, 10))),
        pinned("obj", &etag, Some((5 * BLOCK, 6 * BLOCK))),
        pinned("obj", &etag, Some((2 * BLOCK + 1, 2 * BLOCK + 2))),
    ];
    // Before and after the object's size is known to the cache.
    for pass in 0..2 {
        for request in &requests {
            let expected = direct(request.clone()).await;
            assert!(expected.is_err());
            assert_eq!(
                through(request.clone()).await,
                expected,
                "pass {pass}: {request:?}"
            );
        }
        get(&caching, pinned("obj", &etag, Some((0, 1))))
            .await
            .unwrap();
    }
    // Replaced: a GET pinned to the old ETag fails, even for a block cached before.
    let new_etag = store.insert("obj", pattern(2 * BLOCK as usize + 1, 9));
    let err = caching
        .get(pinned("obj", &etag, Some((BLOCK, BLOCK + 1))))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    let (_, body) = get(&caching, pinned("obj", &new_etag, Some((0, 1))))
        .await
        .unwrap();
    assert_eq!(body, pattern(2 * BLOCK as usize + 1, 9).slice(0..1));
}

#[tokio::test]
async fn a_failed_or_cut_get_does_not_poison_the_cache() {
    let store = MemStore::new();
    let faults = FaultStore::new(Arc::new(store.clone()));
    let cache = Arc::new(MemoryCache::new(1 << 20));
    let caching = CachingStore::new(Arc::new(faults.clone()), cache.clone(), BLOCK, "");
    let data = pattern(4 * BLOCK as usize, 1);
    let etag = store.insert("obj", data.clone());

    faults.fail_next(Op::Get, 1, s3vfs_testkit::fault::throttled());
    let err = caching.get(pinned("obj", &etag, None)).await.unwrap_err();
    assert_eq!(err, s3vfs_testkit::fault::throttled().with_key("obj"));

    faults.truncate_next_gets(1, BLOCK + 100);
    let response = caching.get(pinned("obj", &etag, None)).await.unwrap();
    let err = response.collect().await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient);
    assert_eq!(cache.stats().blocks, 1, "only the complete first block");

    for start in [0, BLOCK - 3, BLOCK + 50, 3 * BLOCK] {
        let (_, body) = get(&caching, pinned("obj", &etag, Some((start, 4 * BLOCK))))
            .await
            .unwrap();
        assert_eq!(body, data.slice(start as usize..));
    }
    assert_eq!(cache.stats().blocks, 4);
}

/// The cache settings every file-system test runs with.
fn settings(dir: &std::path::Path) -> Vec<(&'static str, DataCacheConfig)> {
    let base = DataCacheConfig::default().with_block_size(64 * 1024);
    vec![
        ("memory", base.clone().with_memory(64 << 20)),
        ("disk", base.clone().with_disk(dir.join("disk"), 64 << 20)),
        (
            "both",
            base.clone()
                .with_memory(256 * 1024)
                .with_disk(dir.join("both"), 64 << 20),
        ),
    ]
}

#[tokio::test]
async fn a_second_read_of_a_file_costs_no_get() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cache) in settings(dir.path()) {
        let store = MemStore::new();
        let data = pattern(3 * 1024 * 1024 + 77, 5);
        store.insert("d/file.bin", data.clone());
        let counting = CountingStore::new(Arc::new(store.clone()));
        let config = FsConfig::default()
            .with_metadata_ttl(Duration::from_secs(60))
            .with_data_cache(cache);
        let vfs = S3Vfs::new(Arc::new(counting.clone()), config);
        assert_eq!(vfs.read("d/file.bin").await.unwrap(), data, "{name}");
        assert!(counting.count(Op::Get) > 0);
        counting.reset();
        assert_eq!(vfs.read("d/file.bin").await.unwrap(), data, "{name}");
        assert_eq!(counting.count(Op::Get), 0, "{name}: second read");

        // Random 4 KiB reads of another file: one GET each the first time, none after.
        let data = pattern(8 * 1024 * 1024, 6);
        store.insert("d/random.bin", data.clone());
        let file = vfs.open("d/random.bin").await.unwrap();
        let offsets = [5_000_000u64, 123_456, 7_000_001, 2_500_000];
        for pass in 0..2 {
            counting.reset();
            for &at in &offsets {
                let got = file.read_at(at, 4096).await.unwrap();
                assert_eq!(got, data.slice(at as usize..at as usize + 4096), "{name}");
            }
            let expected = if pass == 0 { offsets.len() as u64 } else { 0 };
            assert_eq!(counting.count(Op::Get), expected, "{name}: pass {pass}");
        }
    }
}

#[tokio::test]
async fn a_replaced_object_is_read_fresh_and_never_mixed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cache) in settings(dir.path()) {
        let store = MemStore::new();
        let size = 5 * 64 * 1024 + 9;
        store.insert("f", pattern(size, 1));
        let vfs = S3Vfs::new(
            Arc::new(store.clone()),
            FsConfig::default()
                .with_metadata_ttl(Duration::ZERO)
                .with_data_cache(cache),
        );
        for version in 2..6u8 {
            let before = vfs.read("f").await.unwrap();
            assert_eq!(before, pattern(size, version - 1), "{name}");
            // Another client replaces the object (same size, new bytes).
            store.insert("f", pattern(size, version));
            // A small read first, so that the new version's size is known and the whole
            // read below looks for its blocks in the cache.
            let file = vfs.open("f").await.unwrap();
            let tail = file.read_at(size as u64 - 5, 5).await.unwrap();
            assert_eq!(tail, pattern(size, version).slice(size - 5..), "{name}");
            drop(file);
            let after = vfs.read("f").await.unwrap();
            assert_eq!(after, pattern(size, version), "{name}: version {version}");
        }
    }
}

#[tokio::test]
async fn a_custom_cache_can_be_plugged_in_and_a_bad_directory_is_refused() {
    let store = MemStore::new();
    store.insert("a", pattern(100_000, 2));
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(DiskCache::new(dir.path(), 1 << 20).unwrap());
    let vfs = S3Vfs::with_data_cache(Arc::new(store.clone()), FsConfig::default(), disk.clone());
    assert_eq!(vfs.read("a").await.unwrap(), pattern(100_000, 2));
    assert_eq!(vfs.read("a").await.unwrap(), pattern(100_000, 2));
    // The blocks are written behind the reads; the file system hands out the same cache.
    let plugged = vfs.fs().data_cache().expect("the plugged-in cache");
    plugged.flush().await;
    assert!(disk.stats().hits > 0 && disk.stats().blocks > 0);

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let config =
        FsConfig::default().with_data_cache(DataCacheConfig::default().with_disk(&file, 1 << 20));
    let err = s3vfs::S3Fs::try_new(Arc::new(store.clone()), config.clone()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    // `new` logs it and runs without the cache.
    let vfs = S3Vfs::new(Arc::new(store), config);
    assert_eq!(vfs.read("a").await.unwrap(), pattern(100_000, 2));
}

#[tokio::test]
async fn a_full_write_backlog_drops_blocks_but_never_fails_a_read() {
    let store = MemStore::new();
    let data = pattern(300_000, 4);
    store.insert("f", data.clone());
    let dir = tempfile::tempdir().unwrap();
    // A backlog of 0 bytes: no block may wait to be written, so none is cached.
    let cache = DataCacheConfig::default()
        .with_block_size(64 * 1024)
        .with_disk(dir.path(), 64 << 20)
        .with_disk_write_backlog(0);
    let counting = CountingStore::new(Arc::new(store.clone()));
    let config = FsConfig::default()
        .with_metadata_ttl(Duration::from_secs(60))
        .with_data_cache(cache);
    let fs = s3vfs::S3Fs::try_new(Arc::new(counting.clone()), config).unwrap();
    let vfs = S3Vfs::from_fs(fs);
    for _ in 0..2 {
        counting.reset();
        assert_eq!(vfs.read("f").await.unwrap(), data);
        assert!(
            counting.count(Op::Get) > 0,
            "nothing cached, so every read GETs"
        );
    }
    let cache = vfs.fs().data_cache().expect("a disk cache");
    cache.flush().await;
    let stats = cache.stats();
    assert_eq!(
        stats.dropped,
        2 * 5,
        "5 blocks per read, all dropped: {stats:?}"
    );
    assert_eq!((stats.inserts, stats.blocks), (0, 0));
}
