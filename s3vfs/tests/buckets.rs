//! A file system over every bucket of a provider: the root lists buckets.

use s3vfs::vfs::{FileKind, Ino, Vfs};
use s3vfs::{BucketsFs, FsConfig, S3Vfs};
use s3vfs_testkit::MemBuckets;
use std::ffi::OsStr;
use std::sync::Arc;

#[tokio::test]
async fn root_lists_buckets_and_each_is_a_file_system() {
    let buckets = MemBuckets::new();
    buckets.create_bucket("alpha").insert("a.txt", "in alpha");
    buckets.create_bucket("beta").insert("dir/b.txt", "in beta");
    let fs = BucketsFs::new(Arc::new(buckets.clone()), FsConfig::default());

    let root = fs.opendir(Ino::ROOT).await.unwrap();
    let names: Vec<String> = fs
        .readdir(Ino::ROOT, root, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![".", "..", "alpha", "beta"]);

    let alpha = fs
        .lookup(Ino::ROOT, OsStr::new("alpha"))
        .await
        .unwrap()
        .attr;
    let beta = fs.lookup(Ino::ROOT, OsStr::new("beta")).await.unwrap().attr;
    assert_eq!(alpha.kind, FileKind::Directory);
    assert_ne!(alpha.ino, beta.ino);
    assert!(fs.lookup(Ino::ROOT, OsStr::new("gamma")).await.is_err());

    let file = fs
        .lookup(alpha.ino, OsStr::new("a.txt"))
        .await
        .unwrap()
        .attr;
    let h = fs
        .open(file.ino, s3vfs::vfs::OpenFlags::read_only())
        .await
        .unwrap();
    assert_eq!(fs.read(file.ino, h, 0, 100).await.unwrap(), "in alpha");
    fs.release(file.ino, h).await.unwrap();

    let dir = fs.lookup(beta.ino, OsStr::new("dir")).await.unwrap().attr;
    let dh = fs.opendir(beta.ino).await.unwrap();
    let listed = fs.readdir(beta.ino, dh, 0, 100).await.unwrap();
    assert_eq!(
        listed[1].ino,
        Ino::ROOT,
        "`..` of a bucket is the bucket list"
    );
    assert_eq!(listed[2].ino, dir.ino);
    let inner = fs.lookup(dir.ino, OsStr::new("b.txt")).await.unwrap().attr;
    assert_eq!(fs.getattr(inner.ino).await.unwrap().attr.size, 7);
    assert_eq!(
        fs.mkdir(Ino::ROOT, OsStr::new("new"), 0o755)
            .await
            .unwrap_err()
            .errno(),
        libc::EROFS
    );
    let fifo = libc::S_IFIFO | 0o644;
    assert_eq!(
        fs.mknod(Ino::ROOT, OsStr::new("new"), fifo, 0)
            .await
            .unwrap_err()
            .errno(),
        libc::EROFS
    );
    let made = fs
        .mknod(dir.ino, OsStr::new("fifo"), fifo, 0)
        .await
        .unwrap();
    assert_eq!(made.attr.kind, FileKind::Fifo);
    let again = fs.lookup(dir.ino, OsStr::new("fifo")).await.unwrap();
    assert_eq!(
        (again.attr.ino, again.attr.kind),
        (made.attr.ino, FileKind::Fifo)
    );
    let stored = buckets.get("beta").unwrap().meta("dir/fifo").unwrap();
    assert_eq!(stored.user_metadata["mode"], fifo.to_string());
}

#[tokio::test]
async fn library_api_works_per_bucket() {
    let buckets = MemBuckets::new();
    buckets.create_bucket("data").insert("x/y.csv", "1,2,3");
    let store = buckets.get("data").unwrap();
    let vfs = S3Vfs::new(Arc::new(store), FsConfig::default());
    assert_eq!(vfs.read("x/y.csv").await.unwrap(), "1,2,3");
}
