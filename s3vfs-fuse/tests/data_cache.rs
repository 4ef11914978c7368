//! The data cache through a real mount, with the bucket's requests counted at the endpoint:
//! a re-read of an unchanged file costs no GET, and a file replaced behind the mount's back
//! is read whole in its new version once the metadata TTL has passed.
//!
//! Without a cache the same test checks the opposite (the re-read does GET), which shows
//! that each read really reaches the file system, not the kernel's page cache.

mod common;

use common::{test_with_every_cache, CacheSetting, TestMount};
use s3vfs::FsConfig;
use s3vfs_fuse::local::pseudo_random;
use s3vfs_testkit::fault::{CountingStore, Op};
use s3vfs_testkit::MemStore;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// Metadata TTL of the mount: short, so that the test can wait past it.
const TTL: Duration = Duration::from_millis(300);

/// Size of the test file: several cache blocks, the last one short, and smaller than every
/// cache's cap, so that all of it stays cached.
const SIZE: usize = 5 * common::CACHE_BLOCK_SIZE as usize + 1234;

/// How long to let the file system handle the RELEASE of a closed descriptor. The kernel
/// sends it after close(2) has returned; until it is handled, a new open of the file shares
/// the open file, read-ahead buffer included, and could read without any GET.
const RELEASE_GRACE: Duration = Duration::from_millis(200);

/// The whole file, read through a fresh descriptor whose cached pages are dropped first,
/// so that the read goes to the file system. Returns the bytes and the GETs it cost.
fn read_cold(path: &Path, counting: &CountingStore) -> (Vec<u8>, u64) {
    let before = counting.count(Op::Get);
    let mut file = File::open(path).unwrap();
    // SAFETY: a valid open descriptor; the call only affects the page cache.
    let err = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(err, 0, "posix_fadvise");
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    common::close(file).unwrap();
    std::thread::sleep(RELEASE_GRACE);
    (bytes, counting.count(Op::Get) - before)
}

fn re_reads_cost_no_get_and_replaced_files_are_read_fresh(cache: CacheSetting) {
    const _: () = assert!((SIZE as u64) < common::CACHE_MEMORY_CAP);
    let old = pseudo_random(SIZE, 1);
    let new = pseudo_random(SIZE, 2);
    let store = MemStore::new();
    store.insert("data.bin", old.clone());
    let config = FsConfig::default().with_metadata_ttl(TTL);
    let (mount, counting) = TestMount::counted(store, config, cache);
    let path = mount.path("data.bin");

    let (first, gets) = read_cold(&path, &counting);
    assert!(first == old, "the first read differs from the object");
    assert!(gets > 0, "the first read cost no GET");
    let (second, gets) = read_cold(&path, &counting);
    assert!(second == old, "the second read differs from the object");
    if cache.is_on() {
        assert_eq!(gets, 0, "the re-read of an unchanged file cost GETs");
    } else {
        assert!(gets > 0, "without a cache the re-read must reach the store");
    }

    // Another client replaces the object: same size, same modification time, so only its
    // ETag tells the versions apart.
    let mtime = mount.store().meta("data.bin").unwrap().last_modified;
    mount.store().insert("data.bin", new.clone());
    mount.store().set_last_modified("data.bin", mtime);
    std::thread::sleep(TTL + Duration::from_millis(200));
    let (third, gets) = read_cold(&path, &counting);
    assert_eq!(third.len(), SIZE);
    if third != new {
        let wrong = third.iter().zip(&new[..]).filter(|(a, b)| a != b).count();
        panic!("after the TTL, {wrong} of {SIZE} bytes are not the new object's");
    }
    assert!(gets > 0, "the new version was read without a GET");
    // And the new version is cached in turn.
    let (fourth, gets) = read_cold(&path, &counting);
    assert!(fourth == new, "the re-read of the new version differs");
    if cache.is_on() {
        assert_eq!(gets, 0, "the re-read of the new version cost GETs");
    }
}

test_with_every_cache!(re_reads_cost_no_get_and_replaced_files_are_read_fresh);
