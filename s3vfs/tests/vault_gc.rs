//! `gc` and `fsck` of the vault layout, on the in-memory bucket.
//!
//! Age is the store's: `MemStore` stamps objects with the wall clock, and a test makes
//! objects old by moving their LastModified back (`set_last_modified`), so that the
//! default grace of an hour applies without waiting. The test of gc running alongside
//! writers cannot age objects under them: it lowers the grace (and the writers'
//! `gc_grace_min`, which must match) to a fraction of a second and runs for real.

use bytes::Bytes;
use s3vfs::store::{Backend, StoreError, StoreErrorKind};
use s3vfs::vault::{
    fsck, gc, ChunkParams, FsckOptions, GcOptions, KdfParams, VaultConfig, VaultError, VaultFs,
};
use s3vfs::S3Vfs;
use s3vfs_testkit::data::noise;
use s3vfs_testkit::fault::{FaultStore, LatencyStore, Op};
use s3vfs_testkit::MemStore;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const PASS: &[u8] = b"correct horse battery staple";
const PREFIX: &str = "vault/";
const HOUR: Duration = Duration::from_secs(3600);

fn config() -> VaultConfig {
    VaultConfig::default()
        .with_kdf(KdfParams::insecure_for_tests())
        .with_chunking(ChunkParams::with_avg(256))
}

async fn init_with(store: Arc<dyn Backend>, config: VaultConfig) -> S3Vfs<VaultFs> {
    let fs = VaultFs::init(store, PREFIX, PASS, config).await.unwrap();
    S3Vfs::over(Arc::new(fs))
}

async fn open_with(store: Arc<dyn Backend>, config: VaultConfig) -> S3Vfs<VaultFs> {
    let fs = VaultFs::open(store, PREFIX, PASS, config).await.unwrap();
    S3Vfs::over(Arc::new(fs))
}

/// The keys of the vault's objects whose names start with `kind` (`c/`, `i/`, `gc/`).
fn keys_of(mem: &MemStore, kind: &str) -> Vec<String> {
    mem.keys_under(&format!("{PREFIX}{kind}"))
}

/// Moves the LastModified of every chunk and inode `by` into the past.
fn age(mem: &MemStore, by: Duration) {
    let then = SystemTime::now() - by;
    for key in keys_of(mem, "c/").into_iter().chain(keys_of(mem, "i/")) {
        mem.set_last_modified(&key, then);
    }
}

async fn run_gc(store: &MemStore, options: GcOptions) -> s3vfs::vault::GcReport {
    gc(Arc::new(store.clone()), PREFIX, PASS, options)
        .await
        .unwrap()
}

async fn run_fsck(store: &MemStore, options: FsckOptions) -> s3vfs::vault::FsckReport {
    fsck(Arc::new(store.clone()), PREFIX, PASS, options)
        .await
        .unwrap()
}

/// Every file of `model` reads back equal through a host that caches nothing yet.
async fn assert_files(mem: &MemStore, model: &BTreeMap<String, Vec<u8>>) {
    let vfs = open_with(Arc::new(mem.clone()), config()).await;
    for (path, content) in model {
        let read = vfs.read(path).await;
        assert_eq!(
            read.as_deref().map_err(|e| e.to_string()),
            Ok(content.as_slice()),
            "{path}"
        );
    }
}

/// Files, one overwritten in part and one deleted: the garbage of both.
async fn files_and_garbage(mem: &MemStore) -> BTreeMap<String, Vec<u8>> {
    let vfs = init_with(Arc::new(mem.clone()), config()).await;
    vfs.create_dir("d").await.unwrap();
    let mut model = BTreeMap::new();
    for (i, path) in ["a", "d/b", "d/c"].iter().enumerate() {
        let content = noise(20_000, i as u64);
        vfs.write(*path, content.clone()).await.unwrap();
        model.insert(path.to_string(), content);
    }
    // Overwritten in the middle: the chunks there become garbage.
    let mut a = model["a"].clone();
    a[8000..12_000].copy_from_slice(&noise(4000, 99));
    vfs.write("a", a.clone()).await.unwrap();
    model.insert("a".into(), a);
    vfs.remove_file("d/b").await.unwrap();
    model.remove("d/b");
    // The same content under two names: shared chunks stay while either is there.
    vfs.write("d/copy", model["d/c"].clone()).await.unwrap();
    model.insert("d/copy".into(), model["d/c"].clone());
    model
}

#[tokio::test]
async fn gc_deletes_unreferenced_chunks_once_older_than_the_grace() {
    let mem = MemStore::new();
    let model = files_and_garbage(&mem).await;
    let before = keys_of(&mem, "c/").len() as u64;

    let young = run_gc(&mem, GcOptions::default()).await;
    assert_eq!(young.chunks_deleted, 0, "{young}");
    assert_eq!(young.chunks_listed, before);
    assert!(
        young.chunks_kept > 0,
        "garbage younger than the grace is kept: {young}"
    );
    assert_eq!(keys_of(&mem, "c/").len() as u64, before);

    age(&mem, 2 * HOUR);
    let report = run_gc(&mem, GcOptions::default()).await;
    assert!(report.problems.is_empty(), "{report}");
    assert_eq!(report.chunks_kept, 0, "{report}");
    assert!(report.chunks_deleted > 10, "{report}");
    assert_eq!(report.chunks_deleted + report.chunks_referenced, before);
    assert_eq!(
        keys_of(&mem, "c/").len() as u64,
        report.chunks_referenced,
        "exactly the referenced chunks are left"
    );
    assert!(report.bytes_freed > 0);
    assert_eq!(report.inodes_reachable, 5, "root, d, a, d/c, d/copy");
    assert_eq!(report.orphans_deleted, 0);

    assert_files(&mem, &model).await;
    let checked = run_fsck(&mem, FsckOptions::default().with_read_data(true)).await;
    assert!(checked.is_clean(), "{checked}");
    assert_eq!(checked.chunks_read, report.chunks_referenced);
    let again = run_gc(&mem, GcOptions::default()).await;
    assert_eq!(again.chunks_deleted, 0, "{again}");
    assert!(mem.get_bytes(&format!("{PREFIX}s3vfs-vault")).is_some());
    assert!(keys_of(&mem, "gc/").is_empty(), "the marker is gone");
}

#[tokio::test]
async fn a_dry_run_deletes_nothing() {
    let mem = MemStore::new();
    let model = files_and_garbage(&mem).await;
    age(&mem, 2 * HOUR);
    let keys = mem.keys();
    let dry = run_gc(&mem, GcOptions::default().with_dry_run(true)).await;
    assert!(dry.dry_run && dry.chunks_deleted > 10, "{dry}");
    assert!(dry.to_string().contains("would delete"), "{dry}");
    assert_eq!(mem.keys(), keys, "nothing deleted");
    let real = run_gc(&mem, GcOptions::default()).await;
    assert_eq!(
        (real.chunks_deleted, real.bytes_freed),
        (dry.chunks_deleted, dry.bytes_freed),
        "the dry run said what goes"
    );
    assert_files(&mem, &model).await;
}

#[tokio::test]
async fn a_grace_below_the_minimum_is_refused() {
    let mem = MemStore::new();
    files_and_garbage(&mem).await;
    let short = GcOptions::default().with_grace(Duration::from_secs(60));
    let refused = gc(Arc::new(mem.clone()), PREFIX, PASS, short).await;
    assert!(matches!(refused, Err(VaultError::Config(_))), "{refused:?}");
}

#[tokio::test]
async fn one_gc_runs_at_a_time_and_a_crashed_runs_marker_is_cleared() {
    let mem = MemStore::new();
    files_and_garbage(&mem).await;
    let other = format!("{PREFIX}gc/00000000000000ab");
    mem.insert(other.clone(), "s3vfs vault gc in progress\n");
    let refused = gc(Arc::new(mem.clone()), PREFIX, PASS, GcOptions::default()).await;
    assert!(
        matches!(refused, Err(VaultError::GcRunning(_))),
        "{refused:?}"
    );
    assert_eq!(
        keys_of(&mem, "gc/"),
        std::slice::from_ref(&other),
        "its own marker is gone"
    );

    // A marker older than any run lasts is a crashed run's.
    mem.set_last_modified(&other, SystemTime::now() - 48 * HOUR);
    let report = run_gc(&mem, GcOptions::default()).await;
    assert!(report.problems.is_empty(), "{report}");
    assert!(keys_of(&mem, "gc/").is_empty());
}

#[tokio::test]
async fn an_inode_a_crash_left_unnamed_is_deleted_after_the_grace() {
    let mem = MemStore::new();
    let faults = Arc::new(FaultStore::new(Arc::new(mem.clone())));
    let vfs = init_with(faults.clone(), config()).await;
    vfs.write("kept", &b"named"[..]).await.unwrap();
    let root = format!("{PREFIX}i/{:016x}", 1);
    let inodes = format!("{PREFIX}i/");
    // The host dies after writing the new inode: neither the entry nor the clean-up
    // of the inode happens.
    faults.fail_matching(
        move |op, key| {
            (op == Op::Put && key == root) || (op == Op::Delete && key.starts_with(&inodes))
        },
        StoreError::new(StoreErrorKind::Transient, "the host died here"),
    );
    assert!(vfs.write("lost", &b"never named"[..]).await.is_err());
    faults.clear();
    assert_eq!(keys_of(&mem, "i/").len(), 3, "root, kept, and the orphan");

    let young = run_gc(&mem, GcOptions::default()).await;
    assert_eq!(
        (young.orphans_kept, young.orphans_deleted),
        (1, 0),
        "{young}"
    );
    assert_eq!(keys_of(&mem, "i/").len(), 3);
    let checked = run_fsck(&mem, FsckOptions::default()).await;
    assert!(checked.is_clean(), "an orphan is no problem: {checked}");
    assert_eq!(checked.inodes_unreachable, 1);

    age(&mem, 2 * HOUR);
    let old = run_gc(&mem, GcOptions::default()).await;
    assert_eq!((old.orphans_kept, old.orphans_deleted), (0, 1), "{old}");
    assert_eq!(keys_of(&mem, "i/").len(), 2);
    assert_eq!(
        open_with(Arc::new(mem.clone()), config())
            .await
            .read("kept")
            .await
            .unwrap(),
        &b"named"[..]
    );
}

#[tokio::test]
async fn fsck_reports_tampered_and_missing_chunks() {
    let mem = MemStore::new();
    let vfs = init_with(Arc::new(mem.clone()), config()).await;
    vfs.write("f", noise(10_000, 1)).await.unwrap();
    assert!(run_fsck(&mem, FsckOptions::default().with_read_data(true))
        .await
        .is_clean());
    let chunks = keys_of(&mem, "c/");
    let tampered = &chunks[0];
    let mut body = mem.get_bytes(tampered).unwrap().to_vec();
    let last = body.len() - 1;
    body[last] ^= 1;
    mem.insert(tampered.clone(), Bytes::from(body));
    mem.remove(&chunks[1]);

    let quick = run_fsck(&mem, FsckOptions::default()).await;
    assert_eq!((quick.chunks_missing, quick.chunks_bad), (1, 0), "{quick}");
    let full = run_fsck(&mem, FsckOptions::default().with_read_data(true)).await;
    assert_eq!((full.chunks_missing, full.chunks_bad), (1, 1), "{full}");
    let text = full.to_string();
    assert!(
        text.contains("is missing") && text.contains("/f: chunk"),
        "{text}"
    );
}

#[tokio::test]
async fn fsck_finds_a_wrong_link_count_and_repairs_it() {
    let mem = MemStore::new();
    let faults = Arc::new(FaultStore::new(Arc::new(mem.clone())));
    let vfs = init_with(faults.clone(), config()).await;
    vfs.write("f", &b"linked"[..]).await.unwrap();
    let ino = vfs.metadata("f").await.unwrap().attr().ino.0;
    let root = format!("{PREFIX}i/{:016x}", 1);
    let file = format!("{PREFIX}i/{ino:016x}");
    // The host dies between the link count and the entry (FORMAT.md, crash ordering 5):
    // the entry is not written, nor is the count put back.
    let file_puts = AtomicUsize::new(0);
    faults.fail_matching(
        move |op, key| {
            op == Op::Put
                && (key == root || (key == file && file_puts.fetch_add(1, Ordering::SeqCst) > 0))
        },
        StoreError::new(StoreErrorKind::Transient, "the host died here"),
    );
    assert!(vfs.hard_link("f", "g").await.is_err());
    faults.clear();

    let found = run_fsck(&mem, FsckOptions::default()).await;
    assert_eq!((found.nlink_wrong, found.nlink_repaired), (1, 0), "{found}");
    assert!(
        found.to_string().contains("link count of 2 and 1 names"),
        "{found}"
    );
    let repaired = run_fsck(&mem, FsckOptions::default().with_repair(true)).await;
    assert_eq!((repaired.nlink_wrong, repaired.nlink_repaired), (1, 1));
    let after = run_fsck(&mem, FsckOptions::default()).await;
    assert!(after.is_clean(), "{after}");
    let fresh = open_with(Arc::new(mem.clone()), config()).await;
    assert_eq!(fresh.metadata("f").await.unwrap().attr().nlink, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_rewritten_while_gc_deletes_it_is_written_again() {
    let mem = MemStore::new();
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    let content = noise(3000, 7);
    let vfs = init_with(Arc::clone(&store), config()).await;
    vfs.write("old", content.clone()).await.unwrap();
    vfs.remove_file("old").await.unwrap();
    age(&mem, 2 * HOUR);
    // gc decides on its listing, then its DELETEs take a while to land (within its
    // delete window): meanwhile a host without the chunks in its cache writes the same
    // content again, finds the chunks there (412) and refreshes them.
    let slow_deletes: Arc<dyn Backend> = Arc::new(
        LatencyStore::new(Arc::clone(&store), Duration::ZERO)
            .with_op_delay(Op::Delete, Duration::from_millis(1500)),
    );
    let collector = tokio::spawn(gc(slow_deletes, PREFIX, PASS, GcOptions::default()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other_host = open_with(Arc::clone(&store), config()).await;
    other_host.write("again", content.clone()).await.unwrap();
    let report = collector.await.unwrap().unwrap();
    assert!(
        report.chunks_deleted > 0,
        "gc deleted the old copies: {report}"
    );

    let checked = run_fsck(&mem, FsckOptions::default().with_read_data(true)).await;
    assert!(checked.is_clean(), "{checked}");
    assert_files(&mem, &BTreeMap::from([("again".to_owned(), content)])).await;
}

/// The content of a file made of 1 KiB blocks drawn from a small pool: files keep
/// re-creating chunks that earlier files had and that became garbage since.
fn pooled(picks: &[u64]) -> Vec<u8> {
    picks.iter().flat_map(|pick| noise(1024, *pick)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_alongside_writers_never_deletes_a_chunk_in_use() {
    const GRACE: Duration = Duration::from_millis(800);
    const RUN_FOR: Duration = Duration::from_secs(8);
    const WRITERS: u64 = 4;
    let mem = MemStore::new();
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    let config = config().with_gc_grace_min(GRACE);
    let hosts = [
        Arc::new(init_with(Arc::clone(&store), config.clone()).await),
        Arc::new(open_with(Arc::clone(&store), config).await),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    // gc's listings are slow: writers commit between its reading of the inodes and its
    // listing of the chunks, the window where a reused chunk must have been refreshed.
    let slow: Arc<dyn Backend> = Arc::new(
        LatencyStore::new(Arc::clone(&store), Duration::ZERO).with_op_delay(Op::List, GRACE / 4),
    );
    let collector = tokio::spawn({
        let (store, stop) = (slow, Arc::clone(&stop));
        async move {
            let options = GcOptions::default().with_grace_min(GRACE).with_grace(GRACE);
            let (mut runs, mut deleted) = (0u64, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let report = gc(Arc::clone(&store), PREFIX, PASS, options.clone())
                    .await
                    .unwrap();
                assert_eq!(report.delete_failures, 0, "{report}");
                runs += 1;
                deleted += report.chunks_deleted;
                tokio::time::sleep(GRACE / 8).await;
            }
            (runs, deleted)
        }
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let vfs = Arc::clone(&hosts[(w % 2) as usize]);
            tokio::spawn(async move {
                let dir = format!("w{w}");
                vfs.create_dir(&dir).await.unwrap();
                let mut model = BTreeMap::new();
                let mut rng = 0x2545_F491_4F6C_DD1D_u64 ^ (w + 1);
                let mut next = move |n: u64| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % n
                };
                let started = Instant::now();
                while started.elapsed() < RUN_FOR {
                    let path = format!("{dir}/f{}", next(3));
                    if next(4) == 0 {
                        if model.remove(&path).is_some() {
                            vfs.remove_file(&path).await.unwrap();
                        }
                    } else {
                        let picks: Vec<u64> = (0..3).map(|_| next(5)).collect();
                        let content = pooled(&picks);
                        vfs.write(&path, content.clone()).await.unwrap();
                        model.insert(path, content);
                    }
                    // Long enough, now and then, for garbage to age past the grace.
                    let pause = GRACE.mul_f64(next(100) as f64 / 150.0);
                    tokio::time::sleep(pause).await;
                }
                model
            })
        })
        .collect();
    let mut model = BTreeMap::new();
    for writer in writers {
        model.extend(writer.await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let (runs, deleted) = collector.await.unwrap();
    assert!(
        runs > 10 && deleted > 0,
        "{runs} runs deleted {deleted} chunks"
    );

    let checked = run_fsck(&mem, FsckOptions::default().with_read_data(true)).await;
    assert!(checked.is_clean(), "{checked}");
    assert_eq!(checked.chunks_missing, 0);
    assert_files(&mem, &model).await;
}
