//! Inode lifetime through the kernel: after a walk of a tree, the kernel's `FORGET`s (here
//! provoked by dropping its dentry and inode caches) shrink the core's inode table back to
//! what the kernel still holds, and a file open across the forgets keeps working.

mod common;

use common::{run_stdout, TestMount};
use s3vfs_testkit::MemStore;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// Directories of the walked tree, each with [`FILES_PER_DIR`] files and one subdirectory
/// holding as many again.
const DIRS: usize = 10;
const FILES_PER_DIR: usize = 30;

/// Longest wait for the kernel's forgets to arrive after dropping its caches.
const FORGET_TIMEOUT: Duration = Duration::from_secs(20);

/// Drops the kernel's unused dentries and inodes (`vm.drop_caches = 2`, needs root): it
/// sends `FORGET` for every FUSE inode it evicts.
fn drop_kernel_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", "2\n")
        .expect("cannot write /proc/sys/vm/drop_caches (the FUSE tests run as root)");
}

/// Polls until the mount holds at most `most` inodes; returns the last count.
fn wait_for_inodes_at_most(mount: &TestMount, most: usize) -> usize {
    let started = Instant::now();
    loop {
        let count = mount.fs().inode_count();
        if count <= most || started.elapsed() > FORGET_TIMEOUT {
            return count;
        }
        drop_kernel_caches();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn forgotten_inodes_leave_the_table_and_open_files_stay() {
    let store = MemStore::new();
    let mut files = 0;
    for d in 0..DIRS {
        for f in 0..FILES_PER_DIR {
            store.insert(format!("tree/d{d}/f{f}"), format!("{d}/{f}"));
            store.insert(format!("tree/d{d}/sub/g{f}"), format!("{d}/sub/{f}"));
            files += 2;
        }
    }
    store.insert("kept/open.txt", "open across the forgets");
    let mount = TestMount::writable(store);

    // A file opened before the walk, held across the forgets, for reading and writing.
    let mut held = std::fs::File::open(mount.path("kept/open.txt")).unwrap();
    let held_ino = held.metadata().unwrap().ino();
    let mut written = std::fs::File::create(mount.path("kept/new.txt")).unwrap();
    std::io::Write::write_all(&mut written, b"first half, ").unwrap();

    // The walk: find lists every directory (readdirplus), and every file is stat'ed.
    let found = run_stdout(
        Command::new("find")
            .arg(mount.path("tree"))
            .arg("-type")
            .arg("f"),
    );
    let paths: Vec<&str> = found.lines().collect();
    assert_eq!(paths.len(), files);
    for path in &paths {
        let meta = std::fs::metadata(path).unwrap();
        assert!(meta.is_file() && meta.len() >= 3, "{path}: {meta:?}");
    }
    let walked = mount.fs().inode_count();
    assert!(
        walked > files,
        "the kernel holds what it walked: {walked} inodes for {files} files"
    );

    // The kernel forgets everything it does not use: only the root, the two open files
    // and their directory stay.
    drop_kernel_caches();
    let left = wait_for_inodes_at_most(&mount, 4);
    assert!(
        left <= 4,
        "after the kernel's forgets {left} inodes are left of {walked} (expected the root, \
         kept/, and the two open files)"
    );

    // The open files still work through their handles, with their numbers.
    let mut text = String::new();
    held.seek(SeekFrom::Start(0)).unwrap();
    held.read_to_string(&mut text).unwrap();
    assert_eq!(text, "open across the forgets");
    assert_eq!(held.metadata().unwrap().ino(), held_ino);
    assert_eq!(
        std::fs::metadata(mount.path("kept/open.txt"))
            .unwrap()
            .ino(),
        held_ino,
        "a name the kernel looks up again while the file is open keeps its number"
    );
    std::io::Write::write_all(&mut written, b"second half").unwrap();
    common::close(written).unwrap();
    assert_eq!(mount.object("kept/new.txt"), b"first half, second half");

    // A walk after the forgets finds everything again, under new numbers where dropped.
    let again = run_stdout(
        Command::new("find")
            .arg(mount.path("tree"))
            .arg("-type")
            .arg("f"),
    );
    assert_eq!(again.lines().count(), files);
    drop(held);
}
