//! A file system over a store that cannot keep `dir/` markers (`rclone serve s3` turns one
//! into a file that blocks the directory; s3s-fs neither lists nor HEADs one): with
//! `FsConfig::directory_markers` off no marker is ever written, directories made by mkdir
//! or emptied live in this file system only, and `fit_to_store` finds such a store.

use s3vfs::store::{Backend, Capabilities, StoreError, StoreErrorKind};
use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::fault::{CountingStore, FaultStore, Op};
use s3vfs_testkit::model;
use s3vfs_testkit::MemStore;
use std::sync::Arc;

/// A store whose every marker PUT fails, as `rclone serve s3`'s does when the directory
/// holds files: a test fails if the file system writes one.
fn marker_refusing(mem: &MemStore) -> Arc<dyn Backend> {
    let faults = FaultStore::new(Arc::new(mem.clone()));
    faults.fail_matching(
        |op, key| matches!(op, Op::Put | Op::Copy | Op::CreateMultipart) && key.ends_with('/'),
        StoreError::new(StoreErrorKind::Other, "cannot store a dir").with_code("InternalError"),
    );
    Arc::new(faults)
}

fn no_markers() -> FsConfig {
    FsConfig::default().with_directory_markers(false)
}

async fn names(vfs: &S3Vfs, dir: &str) -> Vec<String> {
    model::names(vfs, dir)
        .await
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
}

#[tokio::test]
async fn mkdir_makes_a_directory_this_file_system_alone_sees_until_a_file_is_in_it() {
    let mem = MemStore::new();
    let store = marker_refusing(&mem);
    let vfs = S3Vfs::new(Arc::clone(&store), no_markers());
    vfs.create_dir_all("a/b").await.unwrap();
    assert!(mem.is_empty(), "{:?}", mem.keys());
    assert!(vfs.metadata("a/b").await.unwrap().is_dir());
    assert_eq!(names(&vfs, "").await, ["a"]);
    assert_eq!(names(&vfs, "a").await, ["b"]);
    // Another instance sees nothing yet.
    let other = S3Vfs::new(Arc::clone(&store), no_markers());
    assert!(other.metadata("a").await.is_err());

    vfs.write("a/b/f.txt", "data").await.unwrap();
    assert_eq!(mem.keys(), ["a/b/f.txt"]);
    let third = S3Vfs::new(Arc::clone(&store), no_markers());
    assert!(third.metadata("a/b").await.unwrap().is_dir());
    assert_eq!(errno(vfs.remove_dir("a/b").await), libc::ENOTEMPTY);
    assert_eq!(errno(vfs.remove_dir("a").await), libc::ENOTEMPTY);

    // Removing the last file keeps the directory here, without a marker.
    vfs.remove_file("a/b/f.txt").await.unwrap();
    assert!(mem.is_empty(), "{:?}", mem.keys());
    assert_eq!(names(&vfs, "a").await, ["b"]);
    assert_eq!(names(&vfs, "a/b").await, Vec::<String>::new());
    vfs.remove_dir("a/b").await.unwrap();
    assert!(vfs.metadata("a/b").await.is_err());
    assert_eq!(names(&vfs, "a").await, Vec::<String>::new());
    vfs.remove_dir("a").await.unwrap();
    assert_eq!(names(&vfs, "").await, Vec::<String>::new());
}

#[tokio::test]
async fn renames_move_directories_only_this_file_system_knows() {
    let mem = MemStore::new();
    let vfs = S3Vfs::new(marker_refusing(&mem), no_markers());
    // Empty and local only.
    vfs.create_dir_all("x/y").await.unwrap();
    vfs.rename("x", "z").await.unwrap();
    assert!(vfs.metadata("x").await.is_err());
    assert!(vfs.metadata("z/y").await.unwrap().is_dir());
    // In the bucket, with an empty local directory inside.
    vfs.write("z/file", "f").await.unwrap();
    vfs.rename("z", "w").await.unwrap();
    assert_eq!(mem.keys(), ["w/file"]);
    assert_eq!(names(&vfs, "w").await, ["file", "y"]);
    assert!(vfs.metadata("z").await.is_err());
    assert!(vfs.metadata("z/y").await.is_err());
    // The source's parent stays, here only.
    vfs.create_dir("p").await.unwrap();
    vfs.write("p/q/f", "f").await.unwrap();
    vfs.rename("p/q", "q").await.unwrap();
    assert_eq!(names(&vfs, "p").await, Vec::<String>::new());
    assert_eq!(mem.keys(), ["q/f", "w/file"]);
}

#[tokio::test]
async fn moving_the_only_file_out_of_a_nested_directory_keeps_every_directory_above_it() {
    let mem = MemStore::new();
    let vfs = S3Vfs::new(marker_refusing(&mem), no_markers());
    vfs.write("c/c/b", "").await.unwrap();
    vfs.rename("c/c/b", "a").await.unwrap();
    assert_eq!(mem.keys(), ["a"]);
    assert_eq!(names(&vfs, "").await, ["a", "c"]);
    assert_eq!(names(&vfs, "c").await, ["c"]);
    assert_eq!(names(&vfs, "c/c").await, Vec::<String>::new());
    vfs.remove_dir("c/c").await.unwrap();
    vfs.remove_dir("c").await.unwrap();
    assert_eq!(names(&vfs, "").await, ["a"]);
}

#[tokio::test]
async fn a_directory_s_attributes_cannot_be_changed_without_a_marker() {
    let mem = MemStore::new();
    let vfs = S3Vfs::new(marker_refusing(&mem), no_markers());
    vfs.create_dir("d").await.unwrap();
    assert_eq!(errno(vfs.set_permissions("d", 0o700).await), libc::ENOTSUP);
    assert_eq!(
        errno(vfs.set_xattr("d", "user.k", b"v").await),
        libc::ENOTSUP
    );
    // Files keep theirs.
    vfs.write("d/f", "x").await.unwrap();
    vfs.set_permissions("d/f", 0o600).await.unwrap();
    assert!(mem.keys().iter().all(|k| !k.ends_with('/')));
}

#[tokio::test]
async fn fit_to_store_turns_off_what_the_store_cannot_do_and_says_so() {
    let mem = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    let store = marker_refusing(&mem);
    let mut config = FsConfig::default();
    let notices = config.fit_to_store(&store).await;
    assert!(config.last_writer_wins && !config.directory_markers);
    assert_eq!(notices.len(), 2, "{notices:#?}");
    assert!(notices[0].contains("last-writer-wins"), "{}", notices[0]);
    assert!(notices[1].contains("directory markers"), "{}", notices[1]);
    assert!(mem.is_empty(), "{:?}", mem.keys());

    // A store that does both is left alone, and a read-only file system asks nothing.
    let mem = MemStore::new();
    let mut config = FsConfig::default();
    assert!(config
        .fit_to_store(&(Arc::new(mem.clone()) as Arc<dyn Backend>))
        .await
        .is_empty());
    assert!(!config.last_writer_wins && config.directory_markers);
    let counting = CountingStore::new(Arc::new(mem));
    let mut config = FsConfig::default().with_read_only(true);
    let counted: Arc<dyn Backend> = Arc::new(counting.clone());
    assert!(config.fit_to_store(&counted).await.is_empty());
    assert_eq!(counting.total(), 0);
}

fn errno<T: std::fmt::Debug>(result: s3vfs::VfsResult<T>) -> i32 {
    result.expect_err("expected an error").errno()
}
