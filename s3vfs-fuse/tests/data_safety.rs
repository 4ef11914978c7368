//! Data-safety repros through a real mount, as users met them: an open appender renamed
//! under its descriptor, a truncate to 2^62, an ftruncate while a write streams, and a
//! shared mapping written back after close. Each failed (lost data, killed the mount or
//! stored stale bytes) before its fix.

mod common;

use common::{close, errno, write_config, TestMount, MIB};
use s3vfs_testkit::MemStore;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::time::{Duration, Instant};

#[test]
fn an_appender_renamed_under_its_descriptor_keeps_writing_to_the_new_name() {
    let mount = TestMount::writable(MemStore::new());
    let data: Vec<u8> = (0..20 * MIB as usize).map(|i| (i % 251) as u8).collect();
    fs::write(mount.path("app.log"), &data).unwrap();
    let mut log = OpenOptions::new()
        .append(true)
        .open(mount.path("app.log"))
        .unwrap();
    fs::rename(mount.path("app.log"), mount.path("app.log.1")).unwrap();
    log.write_all(b"seventeen bytes!\n").unwrap();
    close(log).expect("close after the rename");
    let stored = mount.object("app.log.1");
    assert_eq!(stored.len(), data.len() + 17);
    assert_eq!(&stored[data.len()..], b"seventeen bytes!\n");
    assert!(stored[..data.len()] == data[..], "the old bytes are intact");
}

#[test]
fn a_huge_truncate_is_efbig_and_the_mount_lives_on() {
    let mount = TestMount::writable(MemStore::new());
    fs::write(mount.path("f"), b"kept").unwrap();
    for size in [1u64 << 62, 999_999_999_999_999] {
        let err = File::options()
            .write(true)
            .open(mount.path("f"))
            .unwrap()
            .set_len(size)
            .expect_err("truncate past the largest object");
        assert_eq!(errno(&err), libc::EFBIG, "truncate to {size}: {err}");
    }
    let path =
        std::ffi::CString::new(mount.path("f").into_os_string().into_encoded_bytes()).unwrap();
    // truncate(2) by path, as the POSIX suite does.
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::truncate(path.as_ptr(), 999_999_999_999_999) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EFBIG)
    );
    assert_eq!(
        fs::read(mount.path("f")).unwrap(),
        b"kept",
        "the mount still answers"
    );
    assert_eq!(mount.object("f"), b"kept");
}

#[test]
fn an_ftruncate_while_streaming_stores_what_the_mount_shows() {
    let mount = TestMount::writable(MemStore::new());
    let file = OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .open(mount.path("t"))
        .unwrap();
    file.write_all_at(&[b'A'; 100], 0).unwrap();
    file.set_len(0).unwrap();
    file.write_all_at(&[b'B'; 100], 100).unwrap();
    let mut expected = vec![0u8; 100];
    expected.extend_from_slice(&[b'B'; 100]);
    close(file).unwrap();
    assert_eq!(fs::read(mount.path("t")).unwrap(), expected);
    assert_eq!(mount.object("t"), expected);
}

/// Environment variable that makes [`mmap_client`] act: the path to map.
const MMAP_CLIENT_PATH: &str = "S3VFS_TEST_MMAP_CLIENT_PATH";

/// The client side of the mmap test, run in a child process (this test binary again):
/// a process cannot write back pages of its own mapping to a FUSE server it runs itself
/// (munmap holds its memory map, which the server's threads need).
#[test]
fn mmap_client() {
    let Some(path) = std::env::var_os(MMAP_CLIENT_PATH) else {
        return;
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .unwrap();
    file.set_len(4096).unwrap();
    // SAFETY: a fresh shared mapping of a 4096-byte file, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    close(file).unwrap();
    // Written after close(2): the pages go back at munmap, after the flush.
    // SAFETY: the mapping is 4096 bytes long and still mapped.
    unsafe {
        std::ptr::copy_nonoverlapping(b"from the mapping".as_ptr(), (map as *mut u8).add(10), 16);
        assert_eq!(libc::munmap(map, 4096), 0);
    }
}

#[test]
fn a_shared_mapping_written_after_close_reaches_the_store() {
    let mount = TestMount::with(
        MemStore::new(),
        write_config(),
        s3vfs_fuse::MountOptions::default(),
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["mmap_client", "--exact", "--quiet"])
        .env(MMAP_CLIENT_PATH, mount.path("mapped"))
        .status()
        .unwrap();
    assert!(status.success(), "the mmap client failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = mount.object("mapped");
        if stored.get(10..26) == Some(&b"from the mapping"[..]) {
            assert_eq!(stored.len(), 4096);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the mapped write never reached the store"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
