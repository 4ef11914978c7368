//! `s3vfs mount --all-buckets`: a real mount whose root lists every bucket of a loopback
//! S3 endpoint, each bucket a directory.

use s3vfs::{BucketsFs, FsConfig};
use s3vfs_fuse::{mount, MountOptions};
use s3vfs_testkit::server::{S3Server, ServerCredentials};
use s3vfs_testkit::MemBuckets;
use std::sync::Arc;

#[test]
fn every_bucket_is_a_directory_at_the_root() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let buckets = MemBuckets::new();
    buckets
        .create_bucket("alpha")
        .insert("hello.txt", "from alpha");
    buckets
        .create_bucket("beta")
        .insert("nested/deep.txt", "from beta");
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, guard) = runtime.block_on(async {
        let server = S3Server::start(Arc::new(buckets.clone()), ServerCredentials::test())
            .await
            .expect("cannot start the loopback S3 endpoint");
        let provider = server.connect_buckets().await.expect("S3 client");
        let vfs = BucketsFs::new(Arc::new(provider), FsConfig::default());
        let guard = mount(
            vfs,
            dir.path(),
            &MountOptions::default(),
            runtime.handle().clone(),
        )
        .unwrap_or_else(|e| panic!("cannot mount at {}: {e}", dir.path().display()));
        (server, guard)
    });
    let root = dir.path();
    let mut names: Vec<String> = std::fs::read_dir(root)
        .expect("ls root")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["alpha", "beta"]);
    assert!(std::fs::metadata(root.join("beta/nested"))
        .expect("stat")
        .is_dir());
    assert_eq!(
        std::fs::read_to_string(root.join("alpha/hello.txt")).expect("cat"),
        "from alpha"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("beta/nested/deep.txt")).expect("cat"),
        "from beta"
    );
    let err = std::fs::create_dir(root.join("gamma")).expect_err("mkdir at the root");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    guard.unmount().expect("unmount");
    runtime.block_on(async move { drop(server) });
}
