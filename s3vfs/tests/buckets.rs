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

/// The path API over every bucket: the first component of a path is the bucket.
#[tokio::test]
async fn the_path_api_works_over_every_bucket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let buckets = MemBuckets::new();
    let alpha = buckets.create_bucket("alpha");
    buckets.create_bucket("beta").insert("old.txt", "old");
    let vfs = S3Vfs::over(BucketsFs::new(
        Arc::new(buckets.clone()),
        FsConfig::default(),
    ));
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
    assert_eq!(names, ["alpha", "beta"]);

    // A file under directories that have no object yet: they appear with it.
    vfs.write("alpha/new/dir/x.txt", "hello").await.unwrap();
    assert_eq!(alpha.get_bytes("new/dir/x.txt").unwrap(), "hello");
    assert_eq!(vfs.read("alpha/new/dir/x.txt").await.unwrap(), "hello");
    assert!(vfs.metadata("alpha/new").await.unwrap().is_dir());

    let mut file = vfs.create("alpha/streamed.bin").await.unwrap();
    file.write_all(b"0123456789").await.unwrap();
    file.close().await.unwrap();
    let mut text = String::new();
    vfs.open("alpha/streamed.bin")
        .await
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    assert_eq!(text, "0123456789");

    vfs.rename("alpha/new/dir/x.txt", "alpha/y.txt")
        .await
        .unwrap();
    assert_eq!(alpha.get_bytes("y.txt").unwrap(), "hello");
    assert!(alpha.get_bytes("new/dir/x.txt").is_none());
    assert_eq!(
        vfs.rename("alpha/y.txt", "beta/y.txt")
            .await
            .unwrap_err()
            .errno(),
        libc::EXDEV,
        "between buckets, so that mv copies"
    );
    assert!(
        vfs.write("gamma/x", "no such bucket").await.is_err(),
        "buckets are not made by writing into them"
    );

    // A dropped handle is released (in the background): its inode is given back.
    let before = vfs.fs().inode_count();
    let open = vfs.open("beta/old.txt").await.unwrap();
    assert!(vfs.fs().inode_count() > before);
    drop(open);
    for _ in 0..100 {
        if vfs.fs().inode_count() == before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(vfs.fs().inode_count(), before);
}
