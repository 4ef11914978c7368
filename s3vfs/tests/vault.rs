//! The vault layout (issue 13) through the library API, on the in-memory bucket: contents
//! across many chunks, random writes and truncations, O(1) renames, deduplication, no
//! plaintext or name in the bucket, tampering refused, two hosts' changes both kept,
//! a crash between data and metadata leaving the old version, passphrase changes.
//!
//! The namespace is also compared, over random sequences of operations, with a strictly
//! POSIX reference model (`s3vfs_testkit::posix`).
//!
//! Chunks are tiny (256 B on average) so that small files span many of them, and the
//! passphrase KDF is the cheapest Argon2id.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use s3vfs::store::{Backend, Capabilities, StoreError, StoreErrorKind};
use s3vfs::vault::{self, ChunkParams, KdfParams, VaultConfig, VaultError, VaultFs};
use s3vfs::{OpenOptions, S3Vfs};
use s3vfs_testkit::data::noise;
use s3vfs_testkit::fault::{CountingStore, FaultStore, Op};
use s3vfs_testkit::model::{self, apply_to_vfs, strategies, FsOp};
use s3vfs_testkit::posix::PosixModel;
use s3vfs_testkit::MemStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const PASS: &[u8] = b"correct horse battery staple";
const PREFIX: &str = "vault/";

fn config() -> VaultConfig {
    VaultConfig::default()
        .with_kdf(KdfParams::insecure_for_tests())
        .with_chunking(ChunkParams::with_avg(256))
}

async fn init(store: Arc<dyn Backend>) -> S3Vfs<VaultFs> {
    let fs = VaultFs::init(store, PREFIX, PASS, config()).await.unwrap();
    S3Vfs::over(Arc::new(fs))
}

async fn open_with(store: Arc<dyn Backend>, config: VaultConfig) -> S3Vfs<VaultFs> {
    let fs = VaultFs::open(store, PREFIX, PASS, config).await.unwrap();
    S3Vfs::over(Arc::new(fs))
}

async fn reopen(mem: &MemStore) -> S3Vfs<VaultFs> {
    open_with(Arc::new(mem.clone()), config()).await
}

/// The keys of the vault's objects whose names start with `kind` (`c/`, `i/`).
fn keys_of(mem: &MemStore, kind: &str) -> Vec<String> {
    mem.keys_under(&format!("{PREFIX}{kind}"))
}

fn chunk_keys(mem: &MemStore) -> Vec<String> {
    keys_of(mem, "c/")
}

fn inode_keys(mem: &MemStore) -> Vec<String> {
    keys_of(mem, "i/")
}

/// The names in directory `dir`, sorted.
async fn names(vfs: &S3Vfs<VaultFs>, dir: &str) -> Vec<String> {
    let entries = vfs.read_dir(dir).await.unwrap().collect().await.unwrap();
    let mut names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
    names.sort();
    names
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn files_round_trip_across_many_chunks_and_a_reopen() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    vfs.create_dir("docs").await.unwrap();
    let sizes = [0usize, 1, 1000, 100_000];
    for (i, size) in sizes.iter().enumerate() {
        vfs.write(format!("docs/f{i}"), noise(*size, i as u64))
            .await
            .unwrap();
    }
    let chunks = chunk_keys(&mem).len();
    assert!(chunks > 100, "100 kB in chunks of ~256 B: {chunks} chunks");
    for vfs in [vfs, reopen(&mem).await] {
        for (i, size) in sizes.iter().enumerate() {
            let path = format!("docs/f{i}");
            assert_eq!(vfs.metadata(&path).await.unwrap().len(), *size as u64);
            assert_eq!(vfs.read(&path).await.unwrap(), noise(*size, i as u64));
        }
        assert_eq!(names(&vfs, "docs").await, ["f0", "f1", "f2", "f3"]);
    }
}

#[tokio::test]
async fn random_writes_and_truncations_match_a_buffer() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    let mut model = noise(20_000, 7);
    vfs.write("f", model.clone()).await.unwrap();
    let mut file = vfs
        .open_with("f", OpenOptions::new().read(true).write(true))
        .await
        .unwrap();
    let mut state = 12345u64;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % bound.max(1)
    };
    for step in 0..60u64 {
        if next(4) == 0 {
            let size = next(model.len() as u64 + 3000) as usize;
            file.set_len(size as u64).await.unwrap();
            model.resize(size, 0);
        } else {
            let off = next(model.len() as u64 + 2000) as usize;
            let data = noise(1 + next(800) as usize, step);
            assert_eq!(
                file.write_at(off as u64, data.clone()).await.unwrap() as usize,
                data.len()
            );
            if model.len() < off + data.len() {
                model.resize(off + data.len(), 0);
            }
            model[off..off + data.len()].copy_from_slice(&data);
        }
        if step % 10 == 9 {
            file.complete().await.unwrap();
        }
        let read = file.read_at(0, model.len() as u32 + 10).await.unwrap();
        assert!(
            read == model,
            "step {step}: {} bytes read, {} expected",
            read.len(),
            model.len()
        );
    }
    file.close().await.unwrap();
    assert_eq!(reopen(&mem).await.read("f").await.unwrap(), model);
}

#[tokio::test]
async fn a_small_write_in_the_middle_rewrites_only_nearby_chunks() {
    let mem = MemStore::new();
    let counting = Arc::new(CountingStore::new(Arc::new(mem.clone())));
    let vfs = init(counting.clone()).await;
    let mut model = noise(50_000, 1);
    vfs.write("f", model.clone()).await.unwrap();
    let before = chunk_keys(&mem).len();
    let file = vfs
        .open_with("f", OpenOptions::new().read(true).write(true))
        .await
        .unwrap();
    counting.reset();
    file.write_at(25_000, &b"0123456789"[..]).await.unwrap();
    file.close().await.unwrap();
    model[25_000..25_010].copy_from_slice(b"0123456789");
    let puts = counting.count(Op::Put);
    let added = chunk_keys(&mem).len() - before;
    assert!(before > 100, "{before} chunks");
    assert!(
        added <= 4 && puts <= 5,
        "{added} new chunks, {puts} PUTs of {before} chunks"
    );
    assert_eq!(reopen(&mem).await.read("f").await.unwrap(), model);
}

#[tokio::test]
async fn renaming_a_directory_costs_the_same_whatever_it_holds() {
    let mem = MemStore::new();
    let counting = Arc::new(CountingStore::new(Arc::new(mem.clone())));
    let vfs = init(counting.clone()).await;
    let mut costs = Vec::new();
    for (n, dir) in [(3usize, "small"), (300, "big")] {
        vfs.create_dir_all(format!("from/{dir}")).await.unwrap();
        vfs.create_dir_all(format!("to/{dir}-parent"))
            .await
            .unwrap();
        for i in 0..n {
            vfs.write(format!("from/{dir}/file{i}"), format!("content {i}"))
                .await
                .unwrap();
        }
        counting.reset();
        vfs.rename(format!("from/{dir}"), format!("to/{dir}-parent/{dir}"))
            .await
            .unwrap();
        costs.push((counting.total(), counting.count(Op::Put)));
        assert!(!vfs.try_exists(format!("from/{dir}")).await.unwrap());
        let moved = format!("to/{dir}-parent/{dir}/file{}", n - 1);
        assert_eq!(
            vfs.read_to_string(&moved).await.unwrap(),
            format!("content {}", n - 1)
        );
    }
    let (small, big) = (costs[0], costs[1]);
    // Two metadata writes, and at most a few reads of directories whose cached copy
    // expired: never a request per file.
    assert_eq!((small.1, big.1), (2, 2), "{costs:?}");
    assert!(small.0 <= 10 && big.0 <= 10, "{costs:?}");
    // Within a directory: one write.
    counting.reset();
    vfs.rename("to/big-parent/big/file7", "to/big-parent/big/renamed")
        .await
        .unwrap();
    assert_eq!(counting.count(Op::Put), 1);
}

#[tokio::test]
async fn identical_content_is_stored_once() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    let content = noise(30_000, 3);
    vfs.write("one", content.clone()).await.unwrap();
    let once = chunk_keys(&mem).len();
    vfs.write("two", content.clone()).await.unwrap();
    assert_eq!(chunk_keys(&mem).len(), once, "a copy adds no chunk");
    let mut shifted = b"a short header".to_vec();
    shifted.extend_from_slice(&content);
    vfs.write("three", shifted.clone()).await.unwrap();
    let added = chunk_keys(&mem).len() - once;
    assert!(
        added <= 3,
        "an insert at the start adds {added} chunks of ~{once}"
    );
    assert_eq!(reopen(&mem).await.read("three").await.unwrap(), shifted);
}

#[tokio::test]
async fn the_bucket_holds_no_plaintext_and_no_name() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    let sentence = b"the plaintext sentence that must never appear in the bucket. ";
    vfs.create_dir("classified-directory").await.unwrap();
    vfs.write("classified-directory/secret-file-name", sentence.repeat(50))
        .await
        .unwrap();
    vfs.write("random-content-file", noise(5000, 9))
        .await
        .unwrap();
    vfs.symlink("link-target-path-xyz", "link-name-xyz")
        .await
        .unwrap();
    vfs.set_xattr(
        "random-content-file",
        "user.attribute-name",
        b"attribute-value-xyz",
    )
    .await
    .unwrap();
    let needles: Vec<Vec<u8>> = vec![
        b"classified".to_vec(),
        b"secret-file".to_vec(),
        b"random-content".to_vec(),
        b"link-target".to_vec(),
        b"link-name".to_vec(),
        b"attribute-name".to_vec(),
        b"attribute-value".to_vec(),
        b"plaintext sentence".to_vec(),
        noise(5000, 9)[2000..2016].to_vec(),
    ];
    assert!(mem.len() > 10);
    for key in mem.keys() {
        let body = mem.get_bytes(&key).unwrap();
        for needle in &needles {
            assert!(!contains(key.as_bytes(), needle), "{key} names {needle:?}");
            assert!(
                !contains(&body, needle),
                "{key} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// Every path below the root with its content (files) or `None` (directories, links).
async fn walk(vfs: &S3Vfs<VaultFs>) -> s3vfs::VfsResult<BTreeMap<String, Option<Bytes>>> {
    let mut tree = BTreeMap::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        for entry in vfs.read_dir(&dir).await?.collect().await? {
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            match entry.kind {
                s3vfs::vfs::FileKind::Directory => {
                    pending.push(path.clone());
                    tree.insert(path, None);
                }
                s3vfs::vfs::FileKind::File => {
                    let content = vfs.read(&path).await?;
                    tree.insert(path, Some(content));
                }
                _ => {
                    vfs.read_link(&path).await?;
                    vfs.metadata(&path).await?;
                    tree.insert(path, None);
                }
            }
        }
    }
    Ok(tree)
}

#[tokio::test]
async fn a_flipped_byte_in_any_object_is_an_error_never_data() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    vfs.create_dir("d").await.unwrap();
    vfs.write("d/x", noise(2000, 4)).await.unwrap();
    vfs.write("y", &b"small file"[..]).await.unwrap();
    vfs.symlink("d/x", "l").await.unwrap();
    let expected = walk(&vfs).await.unwrap();
    let objects: Vec<(String, Bytes)> = mem
        .keys()
        .into_iter()
        .map(|k| {
            let body = mem.get_bytes(&k).unwrap();
            (k, body)
        })
        .collect();
    assert!(objects.len() > 5);
    for (target, body) in &objects {
        for at in [0, body.len() / 2, body.len() - 1] {
            let copy = MemStore::new();
            for (key, body) in &objects {
                copy.insert(key.clone(), body.clone());
            }
            let mut bad = body.to_vec();
            bad[at] ^= 1;
            copy.insert(target.clone(), bad);
            let opened = VaultFs::open(Arc::new(copy), PREFIX, PASS, config()).await;
            let fs = match opened {
                // The superblock and the root are read when opening.
                Err(_) => continue,
                Ok(fs) => S3Vfs::over(Arc::new(fs)),
            };
            match walk(&fs).await {
                Ok(tree) => panic!("{target} flipped at {at}: walked {} paths", tree.len()),
                Err(err) => assert_eq!(err.errno(), libc::EIO, "{target} at {at}: {err}"),
            }
            // Whatever else can be read is what was written.
            for (path, content) in &expected {
                if let (Some(content), Ok(read)) = (content, fs.read(path).await) {
                    assert_eq!(&read, content, "{target} flipped at {at}: {path}");
                }
            }
        }
    }
}

#[tokio::test]
async fn two_hosts_never_lose_each_others_changes() {
    let mem = MemStore::new();
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    // Long TTLs: each host works from a cached, stale root and must lose If-Match.
    let slow = config().with_metadata_ttl(Duration::from_secs(600));
    let a = S3Vfs::over(Arc::new(
        VaultFs::init(store.clone(), PREFIX, PASS, slow.clone())
            .await
            .unwrap(),
    ));
    a.write("shared", vec![b'.'; 1000]).await.unwrap();
    let b = open_with(store.clone(), slow).await;
    assert_eq!(b.metadata("shared").await.unwrap().len(), 1000);
    a.write("from-a", &b"A"[..]).await.unwrap();
    b.write("from-b", &b"B"[..]).await.unwrap();
    // Both write one file: each keeps the other's bytes where it did not write.
    let fa = a
        .open_with("shared", OpenOptions::new().read(true).write(true))
        .await
        .unwrap();
    let fb = b
        .open_with("shared", OpenOptions::new().read(true).write(true))
        .await
        .unwrap();
    fa.write_at(0, &b"AAAAAAAAAA"[..]).await.unwrap();
    fb.write_at(500, &b"BBBBBBBBBB"[..]).await.unwrap();
    fa.close().await.unwrap();
    fb.close().await.unwrap();
    let c = reopen(&mem).await;
    assert_eq!(names(&c, "").await, ["from-a", "from-b", "shared"]);
    let shared = c.read("shared").await.unwrap();
    assert_eq!(&shared[..10], b"AAAAAAAAAA");
    assert_eq!(&shared[500..510], b"BBBBBBBBBB");
    assert_eq!(shared.len(), 1000);
    assert!(shared[10..500].iter().all(|b| *b == b'.'));
}

#[tokio::test]
async fn a_crash_between_chunks_and_inode_leaves_the_old_version() {
    let mem = MemStore::new();
    let faults = Arc::new(FaultStore::new(Arc::new(mem.clone())));
    let vfs = init(faults.clone()).await;
    let old = noise(5000, 1);
    vfs.write("f", old.clone()).await.unwrap();
    let chunks_before = chunk_keys(&mem).len();
    let inodes = format!("{PREFIX}i/");
    faults.fail_matching(
        move |op, key| op == Op::Put && key.starts_with(&inodes),
        StoreError::new(StoreErrorKind::Transient, "the host died here"),
    );
    let failed = vfs.write("f", noise(5000, 2)).await;
    assert!(failed.is_err(), "the inode write failed: {failed:?}");
    assert!(
        chunk_keys(&mem).len() > chunks_before,
        "new chunks were written first"
    );
    faults.clear();
    assert_eq!(reopen(&mem).await.read("f").await.unwrap(), old);
}

#[tokio::test]
async fn passphrases_unlock_and_change_by_rewriting_the_superblock_only() {
    let mem = MemStore::new();
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    init(store.clone())
        .await
        .write("f", &b"kept"[..])
        .await
        .unwrap();
    let wrong = VaultFs::open(store.clone(), PREFIX, b"wrong", config()).await;
    assert!(matches!(wrong, Err(VaultError::Unlock)), "{wrong:?}");
    let again = VaultFs::init(store.clone(), PREFIX, PASS, config()).await;
    assert!(
        matches!(again, Err(VaultError::AlreadyExists(_))),
        "{again:?}"
    );
    let missing = VaultFs::open(store.clone(), "elsewhere/", PASS, config()).await;
    assert!(
        matches!(missing, Err(VaultError::NotAVault(_))),
        "{missing:?}"
    );

    let superblock = format!("{PREFIX}s3vfs-vault");
    let others = |mem: &MemStore| -> Vec<(String, Bytes)> {
        mem.keys()
            .into_iter()
            .filter(|k| *k != superblock)
            .map(|k| {
                let body = mem.get_bytes(&k).unwrap();
                (k, body)
            })
            .collect()
    };
    let before = others(&mem);
    let new = b"a new passphrase";
    let bad_old = vault::change_passphrase(
        store.clone(),
        PREFIX,
        b"nope",
        new,
        KdfParams::insecure_for_tests(),
    )
    .await;
    assert!(matches!(bad_old, Err(VaultError::Unlock)));
    vault::change_passphrase(
        store.clone(),
        PREFIX,
        PASS,
        new,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    assert_eq!(others(&mem), before, "only the superblock changed");
    let old = VaultFs::open(store.clone(), PREFIX, PASS, config()).await;
    assert!(matches!(old, Err(VaultError::Unlock)));
    let fs = VaultFs::open(store, PREFIX, new, config()).await.unwrap();
    assert_eq!(
        S3Vfs::over(Arc::new(fs)).read("f").await.unwrap(),
        &b"kept"[..]
    );
}

#[tokio::test]
async fn a_store_without_conditional_writes_is_refused() {
    let store = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    let made = VaultFs::init(Arc::new(store), PREFIX, PASS, config()).await;
    assert!(matches!(made, Err(VaultError::Config(_))), "{made:?}");
}

#[tokio::test]
async fn namespace_operations_behave_as_posix() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    vfs.create_dir_all("a/b/c").await.unwrap();
    vfs.write("a/b/c/f", &b"x"[..]).await.unwrap();
    let errno = |r: s3vfs::VfsResult<()>| r.unwrap_err().errno();
    assert_eq!(errno(vfs.remove_dir("a/b/c").await), libc::ENOTEMPTY);
    assert_eq!(errno(vfs.remove_dir("a/b/c/f").await), libc::ENOTDIR);
    assert_eq!(errno(vfs.remove_file("a/b").await), libc::EISDIR);
    assert_eq!(errno(vfs.create_dir("a/b").await), libc::EEXIST);
    assert_eq!(errno(vfs.rename("a", "a/b/c/inside").await), libc::EINVAL);
    assert_eq!(errno(vfs.write("missing/f", &b"x"[..]).await), libc::ENOENT);

    // Replacing a file by rename drops the replaced inode.
    vfs.write("a/old", &b"old"[..]).await.unwrap();
    vfs.write("a/new", &b"new"[..]).await.unwrap();
    let inodes = inode_keys(&mem).len();
    vfs.rename("a/new", "a/old").await.unwrap();
    assert_eq!(vfs.read("a/old").await.unwrap(), &b"new"[..]);
    assert!(!vfs.try_exists("a/new").await.unwrap());
    assert_eq!(inode_keys(&mem).len(), inodes - 1);

    vfs.remove_file("a/b/c/f").await.unwrap();
    vfs.remove_dir("a/b/c").await.unwrap();
    assert!(!vfs.try_exists("a/b/c").await.unwrap());

    vfs.symlink("../target", "a/link").await.unwrap();
    assert_eq!(vfs.read_link("a/link").await.unwrap(), "../target");
    assert!(vfs.metadata("a/link").await.unwrap().is_symlink());

    vfs.set_permissions("a/old", 0o600).await.unwrap();
    assert_eq!(vfs.metadata("a/old").await.unwrap().attr().perm, 0o600);
    vfs.set_xattr("a/old", "user.k", b"v").await.unwrap();
    assert_eq!(vfs.get_xattr("a/old", "user.k").await.unwrap(), &b"v"[..]);
    assert_eq!(
        vfs.get_xattr("a/old", "user.none")
            .await
            .unwrap_err()
            .errno(),
        libc::ENODATA
    );
    assert_eq!(
        vfs.set_xattr("a/old", "trusted.k", b"v")
            .await
            .unwrap_err()
            .errno(),
        libc::ENOTSUP
    );

    // Everything above survives a reopen.
    let again = reopen(&mem).await;
    assert_eq!(again.metadata("a/old").await.unwrap().attr().perm, 0o600);
    assert_eq!(again.get_xattr("a/old", "user.k").await.unwrap(), &b"v"[..]);
    assert_eq!(again.read_link("a/link").await.unwrap(), "../target");
}

#[tokio::test]
async fn sparse_files_store_no_hole() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    let file = vfs.create("sparse").await.unwrap();
    file.write_at(1_000_000, &b"end"[..]).await.unwrap();
    file.close().await.unwrap();
    assert!(
        chunk_keys(&mem).len() <= 2,
        "{} chunks",
        chunk_keys(&mem).len()
    );
    let again = reopen(&mem).await;
    let read = again.read("sparse").await.unwrap();
    assert_eq!(read.len(), 1_000_003);
    assert!(read[..1_000_000].iter().all(|b| *b == 0));
    assert_eq!(&read[1_000_000..], b"end");
    // Truncating into the data and growing again leaves zeros.
    again.set_len("sparse", 1_000_001).await.unwrap();
    again.set_len("sparse", 1_000_010).await.unwrap();
    let read = reopen(&mem).await.read("sparse").await.unwrap();
    assert_eq!(&read[1_000_000..], b"e\0\0\0\0\0\0\0\0\0");
}

/// Cases of the model test (`S3VFS_MODEL_CASES`, default 200).
fn model_cases() -> u32 {
    std::env::var("S3VFS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(200, |cases: u32| cases / 5)
        .max(1)
}

/// Applies `ops` to a new vault and to the POSIX model: after every step the result
/// (success or errno) and the whole tree must be the model's, and so must the tree seen
/// by a second host opening the vault at the end.
fn run_model(ops: &[FsOp]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(async {
        let mem = MemStore::new();
        let faults = FaultStore::new(Arc::new(mem.clone()));
        let vfs = init(Arc::new(mem.clone())).await;
        let mut model = PosixModel::default();
        let failed = |e: s3vfs::VfsError| TestCaseError::fail(e.to_string());
        for (step, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let got = apply_to_vfs(&vfs, &mem, &faults, op).await;
            prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            let tree = model::walk(&vfs).await.map_err(failed)?;
            prop_assert_eq!(&tree, &model.tree(), "after step {}: {:?}", step, op);
        }
        let other = reopen(&mem).await;
        prop_assert_eq!(model::walk(&other).await.map_err(failed)?, model.tree());
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(model_cases()))]

    #[test]
    fn the_vault_matches_the_posix_model(
        ops in proptest::collection::vec(strategies::local_op(), 1..25)
    ) {
        run_model(&ops)?;
    }
}

#[tokio::test]
async fn hard_links_are_names_of_one_file() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    vfs.write("f", &b"one"[..]).await.unwrap();
    vfs.create_dir("d").await.unwrap();
    let inodes = inode_keys(&mem).len();
    vfs.hard_link("f", "d/g").await.unwrap();
    assert_eq!(inode_keys(&mem).len(), inodes, "no new inode");
    let (f, g) = (
        vfs.metadata("f").await.unwrap(),
        vfs.metadata("d/g").await.unwrap(),
    );
    assert_eq!(
        (f.attr().ino, f.attr().nlink, g.attr().nlink),
        (g.attr().ino, 2, 2)
    );
    vfs.write("d/g", &b"two"[..]).await.unwrap();
    assert_eq!(vfs.read("f").await.unwrap(), &b"two"[..]);
    let errno = |r: s3vfs::VfsResult<()>| r.unwrap_err().errno();
    assert_eq!(errno(vfs.hard_link("d", "e").await), libc::EPERM);
    assert_eq!(errno(vfs.hard_link("f", "d/g").await), libc::EEXIST);
    assert_eq!(vfs.metadata("f").await.unwrap().attr().nlink, 2);

    vfs.remove_file("f").await.unwrap();
    assert_eq!(vfs.read("d/g").await.unwrap(), &b"two"[..]);
    assert_eq!(vfs.metadata("d/g").await.unwrap().attr().nlink, 1);
    assert_eq!(inode_keys(&mem).len(), inodes);
    vfs.remove_file("d/g").await.unwrap();
    assert_eq!(
        inode_keys(&mem).len(),
        inodes - 1,
        "the last name took the inode"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_from_two_hosts_all_land() {
    let mem = MemStore::new();
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    let a = init(store.clone()).await;
    a.create_dir("shared").await.unwrap();
    let b = open_with(store, config()).await;
    let mut tasks = Vec::new();
    for (host, vfs) in [("a", a), ("b", b)] {
        for i in 0..12 {
            let vfs = vfs.clone();
            tasks.push(tokio::spawn(async move {
                vfs.write(format!("shared/{host}{i}"), format!("{host}{i}"))
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let listed = names(&reopen(&mem).await, "shared").await;
    assert_eq!(listed.len(), 24, "{listed:?}");
}

#[tokio::test]
async fn another_hosts_changes_show_within_the_metadata_ttl() {
    let mem = MemStore::new();
    let store: Arc<dyn Backend> = Arc::new(mem.clone());
    let ttl = Duration::from_millis(200);
    let a = init(store.clone()).await;
    let b = open_with(store, config().with_metadata_ttl(ttl)).await;
    assert!(!b.try_exists("new").await.unwrap());
    a.write("new", &b"x"[..]).await.unwrap();
    // Within the TTL, b may answer from its cached root; after it, never.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(b.read("new").await.unwrap(), &b"x"[..]);
}

#[tokio::test]
async fn an_open_file_stays_readable_after_its_last_name_goes() {
    let mem = MemStore::new();
    let vfs = init(Arc::new(mem.clone())).await;
    let content = noise(3000, 5);
    vfs.write("f", content.clone()).await.unwrap();
    let file = vfs
        .open_with("f", OpenOptions::new().read(true).write(true))
        .await
        .unwrap();
    vfs.remove_file("f").await.unwrap();
    assert!(!vfs.try_exists("f").await.unwrap());
    assert_eq!(file.read_at(0, 4000).await.unwrap(), content);
    // Writes to it go nowhere: closing does not bring the name or the inode back.
    let inodes = inode_keys(&mem).len();
    file.write_at(0, &b"gone"[..]).await.unwrap();
    file.close().await.unwrap();
    assert_eq!(inode_keys(&mem).len(), inodes);
    assert!(!vfs.try_exists("f").await.unwrap());
}

/// A vault that keeps what it cannot store in a directory of its own, over a bucket that
/// can be made to fail, holding file `f` with `content`.
struct Keeping {
    mem: MemStore,
    faults: Arc<FaultStore>,
    fs: Arc<VaultFs>,
    vfs: S3Vfs<VaultFs>,
    dir: tempfile::TempDir,
}

impl Keeping {
    async fn new(content: &[u8]) -> Self {
        let mem = MemStore::new();
        let faults = Arc::new(FaultStore::new(Arc::new(mem.clone())));
        let dir = tempfile::tempdir().unwrap();
        let config = config().with_recovery_dir(Some(dir.path().to_owned()));
        let store: Arc<dyn Backend> = faults.clone();
        let fs = Arc::new(VaultFs::init(store, PREFIX, PASS, config).await.unwrap());
        let vfs = S3Vfs::over(Arc::clone(&fs));
        vfs.write("f", content.to_vec()).await.unwrap();
        Self {
            mem,
            faults,
            fs,
            vfs,
            dir,
        }
    }

    /// Every PUT fails from now on, as when the bucket goes away.
    fn bucket_down(&self) {
        self.faults.fail_matching(
            |op, _| op == Op::Put,
            StoreError::new(StoreErrorKind::Transient, "the bucket is down"),
        );
    }

    /// Opens `f` for writing while the bucket is down, lets `change` change it, and checks
    /// that the close fails; the bucket is back after.
    async fn failed_close<F, Fut>(&self, change: F)
    where
        F: FnOnce(s3vfs::File) -> Fut,
        Fut: std::future::Future<Output = s3vfs::File>,
    {
        self.bucket_down();
        let file = self
            .vfs
            .open_with("f", OpenOptions::new().write(true))
            .await
            .unwrap();
        let file = change(file).await;
        assert!(file.close().await.is_err(), "the close says it failed");
        self.faults.clear();
    }

    fn recovery(&self) -> s3vfs::recovery::RecoveryDir {
        s3vfs::recovery::RecoveryDir::open(self.dir.path()).unwrap()
    }

    async fn stored(&self) -> Bytes {
        reopen(&self.mem).await.read("f").await.unwrap()
    }
}

#[tokio::test]
async fn changes_that_cannot_be_stored_are_kept_and_stored_again() {
    use s3vfs::recovery::{Layout, RecoveryError};
    use std::os::unix::fs::PermissionsExt;
    let old = noise(6000, 1);
    let k = Keeping::new(&old).await;
    let new = noise(3000, 2);
    k.failed_close(|file| async {
        assert_eq!(file.write_at(1000, new.clone()).await.unwrap(), 3000);
        assert_eq!(file.write_at(8000, &b"tail"[..]).await.unwrap(), 4);
        file
    })
    .await;

    let recovery = k.recovery();
    let kept = recovery.list().unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let entry = &kept[0];
    assert_eq!(entry.manifest.layout, Layout::Vault);
    assert_eq!(entry.manifest.written, vec![(1000, 4000), (8000, 8004)]);
    assert_eq!(entry.manifest.size, 8004);
    let mode = std::fs::metadata(entry.data_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the kept data is the owner's only");
    assert_eq!(k.stored().await, old, "nothing half-stored");

    // Stored as a plain object, the entry would replace an encrypted inode with plaintext.
    let plain = recovery
        .reupload(Arc::new(k.mem.clone()), entry, 5 << 20)
        .await
        .unwrap_err();
    assert!(matches!(plain, RecoveryError::Layout { .. }), "{plain}");

    k.fs.reupload_recovered(&recovery, entry).await.unwrap();
    let mut expected = old.clone();
    expected[1000..4000].copy_from_slice(&new);
    expected.resize(8000, 0);
    expected.extend_from_slice(b"tail");
    assert_eq!(k.stored().await, expected);
    assert!(recovery.list().unwrap().is_empty(), "the entry is dropped");
}

#[tokio::test]
async fn a_kept_truncation_is_stored_again_with_the_writes_after_it() {
    let old = noise(6000, 3);
    let k = Keeping::new(&old).await;
    k.failed_close(|file| async {
        assert!(
            file.set_len(500).await.is_err(),
            "a truncation stores at once"
        );
        file.write_at(600, &b"x"[..]).await.unwrap();
        file
    })
    .await;

    let recovery = k.recovery();
    let kept = recovery.list().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].manifest.base_len, kept[0].manifest.size),
        (500, 601)
    );
    k.fs.reupload_recovered(&recovery, &kept[0]).await.unwrap();
    let mut expected = old[..500].to_vec();
    expected.resize(600, 0);
    expected.push(b'x');
    assert_eq!(k.stored().await, expected);
}

#[tokio::test]
async fn kept_changes_never_replace_a_newer_version() {
    use s3vfs::recovery::RecoveryError;
    let k = Keeping::new(&noise(3000, 4)).await;
    k.failed_close(|file| async {
        file.write_at(0, &b"lost?"[..]).await.unwrap();
        file
    })
    .await;
    // Another host writes the file meanwhile.
    let newer = noise(2000, 5);
    reopen(&k.mem)
        .await
        .write("f", newer.clone())
        .await
        .unwrap();

    let recovery = k.recovery();
    let kept = recovery.list().unwrap();
    let refused =
        k.fs.reupload_recovered(&recovery, &kept[0])
            .await
            .unwrap_err();
    assert!(
        matches!(refused, RecoveryError::Changed { .. }),
        "{refused}"
    );
    assert_eq!(recovery.list().unwrap().len(), 1, "the entry stays");
    assert_eq!(k.stored().await, newer);
}

#[tokio::test]
async fn a_shutdown_that_cannot_store_keeps_the_changes() {
    use s3vfs::vfs::Vfs;
    let k = Keeping::new(b"").await;
    let file = k.vfs.create("new").await.unwrap();
    file.write_at(0, &b"unsaved"[..]).await.unwrap();
    k.bucket_down();
    let report = k.fs.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert!(report.lost.is_empty(), "{report:?}");
    let kept = k.recovery().list().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(std::fs::read(kept[0].data_path()).unwrap(), b"unsaved");
    drop(file);
}

/// Small read-ahead windows (4 KiB growing to 16 KiB: tens of the tests' ~256 B chunks),
/// and inodes cached long enough for no test to outlive them.
fn read_ahead_config() -> VaultConfig {
    config()
        .with_read_ahead(4 * 1024, 16 * 1024)
        .with_metadata_ttl(Duration::from_secs(600))
}

/// A fresh vault in `mem` holding `f`, `len` bytes of noise: its content and its number of
/// chunks (every chunk of the vault is one of `f`'s).
async fn one_big_file(mem: &MemStore, len: usize) -> (Vec<u8>, usize) {
    let vfs = init(Arc::new(mem.clone())).await;
    let content = noise(len, 99);
    vfs.write("f", content.clone()).await.unwrap();
    let chunks = chunk_keys(mem).len();
    assert!(chunks > 200, "{len} B in ~256 B chunks: {chunks}");
    (content, chunks)
}

/// Reads `len` bytes at `off` of `file` and checks them against `content`.
async fn read_checked(file: &s3vfs::File, content: &[u8], off: usize, len: usize) {
    let got = file.read_at(off as u64, len as u32).await.unwrap();
    let end = (off + len).min(content.len());
    assert!(got == content[off..end], "other bytes at {off}..{end}");
}

/// Waits until `counting` has seen no new request for a while: read-ahead has settled.
async fn settle(counting: &CountingStore) {
    let mut seen = counting.total();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counting.total();
        if now == seen {
            return;
        }
        seen = now;
    }
    panic!("requests still going after 10 s");
}

#[tokio::test]
async fn a_sequential_read_fetches_each_chunk_once() {
    let mem = MemStore::new();
    let (content, chunks) = one_big_file(&mem, 150_000).await;
    let counting = CountingStore::new(Arc::new(mem.clone()));
    let vfs = open_with(Arc::new(counting.clone()), read_ahead_config()).await;
    let file = vfs.open("f").await.unwrap();
    counting.reset();
    for off in (0..content.len()).step_by(1000) {
        read_checked(&file, &content, off, 1000).await;
    }
    // Read-ahead and the reads asked for the same chunks, at the same time: each once.
    assert_eq!(counting.count(Op::Get), chunks as u64);
    file.close().await.unwrap();
}

#[tokio::test]
async fn read_ahead_fetches_the_next_chunks_and_its_failures_do_not_reach_the_reader() {
    let mem = MemStore::new();
    let (content, _) = one_big_file(&mem, 100_000).await;
    let faults = FaultStore::new(Arc::new(mem.clone()));
    let counting = CountingStore::new(Arc::new(faults.clone()));
    let vfs = open_with(Arc::new(counting.clone()), read_ahead_config()).await;
    let file = vfs.open("f").await.unwrap();
    // Two reads, the second continuing the first: 4 KiB past it are fetched ahead.
    read_checked(&file, &content, 0, 1000).await;
    read_checked(&file, &content, 1000, 1000).await;
    settle(&counting).await;
    // With the store failing every GET, the next 4 KiB are still read: they were fetched
    // ahead. This read continues too: its read-ahead (the window doubled, 8 KiB past it)
    // meets the failures.
    faults.fail_next(
        Op::Get,
        u64::MAX,
        StoreError::new(StoreErrorKind::Transient, "the bucket is down"),
    );
    read_checked(&file, &content, 2000, 4000).await;
    settle(&counting).await;
    assert!(
        faults.injected() > 0,
        "read-ahead asked for the chunks past 6000"
    );
    faults.clear();
    // The chunks whose fetch ahead failed are fetched by the reads that need them.
    for off in (6000..content.len()).step_by(1500) {
        read_checked(&file, &content, off, 1500).await;
    }
    file.close().await.unwrap();
}

#[tokio::test]
async fn random_reads_fetch_nothing_ahead() {
    let mem = MemStore::new();
    let (content, _) = one_big_file(&mem, 100_000).await;
    let mut gets = Vec::new();
    for read_ahead in [false, true] {
        let config = if read_ahead {
            read_ahead_config()
        } else {
            read_ahead_config().with_read_ahead(0, 0)
        };
        let counting = CountingStore::new(Arc::new(mem.clone()));
        let vfs = open_with(Arc::new(counting.clone()), config).await;
        let file = vfs.open("f").await.unwrap();
        counting.reset();
        let mut state = 4242u64;
        for _ in 0..40 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let off = (state >> 33) as usize % content.len();
            read_checked(&file, &content, off, 300).await;
        }
        settle(&counting).await;
        gets.push(counting.count(Op::Get));
        file.close().await.unwrap();
    }
    assert_eq!(gets[0], gets[1], "GETs without and with read-ahead");
}

#[tokio::test]
async fn read_ahead_stops_when_the_file_is_closed() {
    let mem = MemStore::new();
    let (content, chunks) = one_big_file(&mem, 100_000).await;
    // GETs are counted once they pass a 30 ms delay: a fetch dropped while it waits is
    // never made.
    let counting = CountingStore::new(Arc::new(mem.clone()));
    let slow = s3vfs_testkit::fault::LatencyStore::new(
        Arc::new(counting.clone()),
        Duration::from_millis(30),
    );
    let vfs = open_with(Arc::new(slow), read_ahead_config()).await;
    let file = vfs.open("f").await.unwrap();
    read_checked(&file, &content, 0, 1000).await;
    read_checked(&file, &content, 1000, 1000).await;
    read_checked(&file, &content, 2000, 1000).await;
    file.close().await.unwrap();
    let at_close = counting.count(Op::Get);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counting.count(Op::Get), at_close, "GETs after the close");
    assert!(
        at_close < chunks as u64 / 2,
        "{at_close} GETs of {chunks} chunks"
    );
}

#[tokio::test]
async fn listings_carry_attributes_and_leave_them_cached() {
    let mem = MemStore::new();
    let writer = init(Arc::new(mem.clone())).await;
    writer.create_dir("d").await.unwrap();
    for i in 0..40u32 {
        let path = format!("d/f{i:02}");
        writer
            .write(&path, noise(i as usize * 37, u64::from(i)))
            .await
            .unwrap();
        writer.set_permissions(&path, 0o600 + i % 8).await.unwrap();
    }
    writer.create_dir("d/sub").await.unwrap();
    let mut expected = BTreeMap::new();
    for entry in writer.read_dir("d").await.unwrap().collect().await.unwrap() {
        let meta = writer.metadata(format!("d/{}", entry.name)).await.unwrap();
        expected.insert(entry.name, *meta.attr());
    }
    assert_eq!(expected.len(), 41);

    // Cold, on another host; inode GETs take 10 ms, so that concurrent ones overlap.
    let slow =
        s3vfs_testkit::fault::LatencyStore::new(Arc::new(mem.clone()), Duration::from_millis(10));
    let counting = CountingStore::new(Arc::new(slow));
    let fs = Arc::new(
        VaultFs::open(
            Arc::new(counting.clone()),
            PREFIX,
            PASS,
            read_ahead_config(),
        )
        .await
        .unwrap(),
    );
    let vfs = S3Vfs::over(Arc::clone(&fs));
    let entries = vfs.read_dir("d").await.unwrap().collect().await.unwrap();
    assert_eq!(entries.len(), 41);
    for entry in &entries {
        let attr = entry.attr.expect("a listed entry's attributes");
        let want = &expected[&entry.name];
        assert_eq!(
            (attr.ino, attr.kind, attr.size, attr.perm, attr.mtime, attr.nlink),
            (want.ino, want.kind, want.size, want.perm, want.mtime, want.nlink),
            "{}",
            entry.name
        );
    }
    assert!(
        counting.max_in_flight() > 1,
        "the entries' inodes are read at once"
    );
    // The inodes are cached: metadata and lookups ask nothing of the store.
    counting.reset();
    for entry in &entries {
        let meta = vfs.metadata(format!("d/{}", entry.name)).await.unwrap();
        assert_eq!(*meta.attr(), expected[&entry.name]);
    }
    assert_eq!(counting.counts(), BTreeMap::new());

    // readdirplus: every entry but `.` and `..` with its attributes.
    use s3vfs::vfs::{Ino, Vfs};
    let dir = fs.lookup(Ino(1), "d".as_ref()).await.unwrap().attr.ino;
    let handle = fs.opendir(dir).await.unwrap();
    let plus = fs.readdirplus(dir, handle, 0, 1000).await.unwrap();
    fs.releasedir(dir, handle).await.unwrap();
    assert_eq!(plus.len(), 43);
    for entry in plus.iter().filter(|e| e.name != "." && e.name != "..") {
        assert_eq!(
            entry.attr.as_ref(),
            Some(&expected[&entry.name]),
            "{}",
            entry.name
        );
    }
    assert_eq!(counting.counts(), BTreeMap::new());
}

#[tokio::test]
async fn read_chunks_gives_what_read_gives_over_holes_and_unsaved_writes() {
    use s3vfs::vfs::{OpenFlags, Vfs};
    let mem = MemStore::new();
    let fs = Arc::new(
        VaultFs::init(Arc::new(mem.clone()), PREFIX, PASS, config())
            .await
            .unwrap(),
    );
    let vfs = S3Vfs::over(Arc::clone(&fs));
    // Data, a hole, data, a hole at the end (chunks of zeros are not stored).
    let mut model = noise(20_000, 5);
    model.extend(vec![0; 10_000]);
    model.extend(noise(5_000, 6));
    model.extend(vec![0; 3_000]);
    vfs.write("f", model.clone()).await.unwrap();
    let ino = vfs.metadata("f").await.unwrap().attr().ino;
    let flags = OpenFlags {
        read: true,
        write: true,
        ..OpenFlags::default()
    };
    let handle = fs.open(ino, flags).await.unwrap();
    let mut state = 77u64;
    let mut next = |bound: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        (state >> 33) % bound
    };
    for round in 0..3u64 {
        if round > 0 {
            // Unsaved writes: some ranges are read from them.
            let off = next(model.len() as u64 + 500) as usize;
            let data = noise(1 + next(3000) as usize, round);
            fs.write(ino, handle, off as u64, Bytes::from(data.clone()))
                .await
                .unwrap();
            if model.len() < off + data.len() {
                model.resize(off + data.len(), 0);
            }
            model[off..off + data.len()].copy_from_slice(&data);
        }
        for _ in 0..60 {
            let off = next(model.len() as u64 + 200);
            let len = next(9000) as u32;
            let whole = fs.read(ino, handle, off, len).await.unwrap();
            let pieces = fs.read_chunks(ino, handle, off, len).await.unwrap();
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            let start = (off as usize).min(model.len());
            let end = (start + len as usize).min(model.len());
            assert!(whole == model[start..end], "read at {off}+{len}");
            assert!(joined == model[start..end], "read_chunks at {off}+{len}");
        }
    }
    fs.release(ino, handle).await.unwrap();
}

/// fchmod(2) and fstat(2) on a directory or file still open after its last name went
/// succeed, as on a local file system: its handles keep its attributes (found by the
/// differential test on the vault, seed 21: `rmdir` of an open directory, then `fchmod`).
#[tokio::test]
async fn an_open_directory_or_file_keeps_its_attributes_after_its_last_name_goes() {
    use s3vfs::vfs::{Ino, OpenFlags, SetAttr, Vfs};
    let mem = MemStore::new();
    let fs = VaultFs::init(Arc::new(mem.clone()), PREFIX, PASS, config())
        .await
        .unwrap();
    let name = |name: &str| std::ffi::OsString::from(name);
    let chmod = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };

    let dir = fs
        .mkdir(Ino::ROOT, &name("d"), 0o755)
        .await
        .unwrap()
        .attr
        .ino;
    let handle = fs.opendir(dir).await.unwrap();
    fs.rmdir(Ino::ROOT, &name("d")).await.unwrap();
    let changed = fs.setattr(dir, None, chmod).await.unwrap();
    assert_eq!(changed.attr.perm, 0o700);
    assert_eq!(fs.getattr(dir).await.unwrap().attr.perm, 0o700);
    fs.releasedir(dir, handle).await.unwrap();
    assert_eq!(
        errno(fs.getattr(dir).await),
        libc::ENOENT,
        "gone at its last close"
    );

    let rw = OpenFlags::from_posix(libc::O_RDWR);
    let (created, handle) = fs.create(Ino::ROOT, &name("f"), 0o644, rw).await.unwrap();
    let file = created.attr.ino;
    fs.write(file, handle, 0, Bytes::from_static(b"data"))
        .await
        .unwrap();
    fs.unlink(Ino::ROOT, &name("f")).await.unwrap();
    let changed = fs.setattr(file, None, chmod).await.unwrap();
    assert_eq!((changed.attr.perm, changed.attr.size), (0o700, 4));
    fs.release(file, handle).await.unwrap();
    assert_eq!(errno(fs.getattr(file).await), libc::ENOENT);
    assert!(inode_keys(&mem).len() == 1, "only the root is stored");
}

fn errno<T: std::fmt::Debug>(result: s3vfs::VfsResult<T>) -> i32 {
    result.unwrap_err().errno()
}

/// A scratch file (opened, then unlinked) keeps reading what was written to it, also
/// after an fsync, as on a local file system; its writes live in memory only, so past
/// `max_dirty` they are refused with ENOSPC rather than held without bound.
#[tokio::test]
async fn an_unlinked_open_file_reads_back_its_writes_within_max_dirty() {
    use s3vfs::vfs::{Ino, OpenFlags, Vfs};
    let mem = MemStore::new();
    let config = config().with_max_dirty(10_000);
    let fs = VaultFs::init(Arc::new(mem.clone()), PREFIX, PASS, config)
        .await
        .unwrap();
    let name = std::ffi::OsString::from("scratch");
    let rw = OpenFlags::from_posix(libc::O_RDWR);
    let (created, handle) = fs.create(Ino::ROOT, &name, 0o600, rw).await.unwrap();
    let ino = created.attr.ino;
    fs.write(ino, handle, 0, Bytes::from_static(b"before"))
        .await
        .unwrap();
    fs.fsync(ino, handle).await.unwrap();
    fs.unlink(Ino::ROOT, &name).await.unwrap();
    fs.write(ino, handle, 0, Bytes::from_static(b"AFTER!"))
        .await
        .unwrap();
    fs.fsync(ino, handle).await.unwrap();
    assert_eq!(&fs.read(ino, handle, 0, 100).await.unwrap()[..], b"AFTER!");
    let too_much = fs
        .write(ino, handle, 6, Bytes::from(vec![1u8; 10_000]))
        .await;
    assert_eq!(errno(too_much), libc::ENOSPC);
    assert_eq!(&fs.read(ino, handle, 0, 100).await.unwrap()[..], b"AFTER!");
    fs.release(ino, handle).await.unwrap();
    assert!(inode_keys(&mem).len() == 1, "only the root is stored");
}
