//! The namespace calls the adapter translates itself or passes flags for: renameat2(2)
//! flags, link(2), mknod(2), and the errno of each refusal, on a writable mount.

mod common;

use common::{errno, TestMount};
use s3vfs_testkit::MemStore;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let (from, to) = (c_path(from), c_path(to));
    // SAFETY: valid NUL-terminated paths relative to the working directory (absolute here).
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    })
}

fn mknod(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::mknod(path.as_ptr(), mode, 0) })
}

#[test]
fn rename_flags_links_and_special_files() {
    let store = MemStore::new();
    store.insert("a.txt", "a");
    store.insert("b.txt", "b");
    store.insert("dir/inner.txt", "inner");
    let mount = TestMount::writable(store);
    let (a, b) = (mount.path("a.txt"), mount.path("b.txt"));

    // RENAME_NOREPLACE refuses an existing destination and moves to a free one.
    let err = renameat2(&a, &b, libc::RENAME_NOREPLACE).unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    renameat2(&a, &mount.path("c.txt"), libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(mount.object("c.txt"), b"a");
    assert_eq!(mount.store().get_bytes("a.txt"), None);
    // Exchanging and whiteouts are not supported: EINVAL, nothing changes.
    let err = renameat2(&b, &mount.path("c.txt"), libc::RENAME_EXCHANGE).unwrap_err();
    assert_eq!(errno(&err), libc::EINVAL);
    assert_eq!(mount.object("b.txt"), b"b");
    assert_eq!(mount.object("c.txt"), b"a");

    // Hard links: EPERM.
    let err = fs::hard_link(&b, mount.path("hard.txt")).unwrap_err();
    assert_eq!(errno(&err), libc::EPERM);

    // mknod of a regular file creates an empty object; of anything else, EPERM.
    mknod(&mount.path("node"), libc::S_IFREG | 0o640).unwrap();
    assert_eq!(mount.object("node"), b"");
    let err = mknod(&mount.path("node"), libc::S_IFREG | 0o640).unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    let err = mknod(&mount.path("fifo"), libc::S_IFIFO | 0o644).unwrap_err();
    assert_eq!(errno(&err), libc::EPERM);

    // The usual refusals.
    let err = fs::remove_dir(mount.path("dir")).unwrap_err();
    assert_eq!(errno(&err), libc::ENOTEMPTY);
    let err = fs::remove_file(mount.path("dir")).unwrap_err();
    assert_eq!(errno(&err), libc::EISDIR);
    let err = fs::rename(mount.path("dir"), mount.path("dir/inside")).unwrap_err();
    assert_eq!(errno(&err), libc::EINVAL);
    let err = fs::rename(&b, mount.path("dir")).unwrap_err();
    assert_eq!(errno(&err), libc::EISDIR);
    let err = fs::create_dir(mount.path("b.txt")).unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    let err = fs::write(mount.path("b.txt/x"), "x").unwrap_err();
    assert_eq!(errno(&err), libc::ENOTDIR);
}
