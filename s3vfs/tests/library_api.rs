//! The `tokio::fs`-shaped surface of `S3Vfs`: `try_exists`, `read_to_string`,
//! `remove_dir_all`, `Metadata::is_symlink`, and a whole-file `read` larger than one read
//! call takes.

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
