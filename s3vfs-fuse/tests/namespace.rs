//! The namespace calls the adapter translates itself or passes flags for: renameat2(2)
//! flags, link(2), mknod(2), and the errno of each refusal, on a writable mount; and the
//! special files mknod makes (fifos, devices, unix sockets) as tools see them: `mkfifo`,
//! `mknod`, `bind(2)`, `ls -l`, `mv`, `chmod`, `rm` and a `tar` round trip.

mod common;

use common::{assert_same_tree, errno, run, run_stdout, snapshot, special_type, Node, TestMount};
use s3vfs_testkit::MemStore;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;

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

    // mknod of a regular file creates an empty object, of a fifo one with the fifo's mode;
    // a taken name is EEXIST, a directory EPERM (from the kernel: mkdir makes those).
    mknod(&mount.path("node"), libc::S_IFREG | 0o640).unwrap();
    assert_eq!(mount.object("node"), b"");
    let err = mknod(&mount.path("node"), libc::S_IFREG | 0o640).unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    mknod(&mount.path("fifo"), libc::S_IFIFO | 0o640).unwrap();
    assert_eq!(mount.object("fifo"), b"");
    assert_eq!(
        mount.store().meta("fifo").unwrap().user_metadata["mode"],
        (libc::S_IFIFO | 0o640).to_string()
    );
    let err = mknod(&mount.path("fifo"), libc::S_IFIFO | 0o640).unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    let err = mknod(&mount.path("dir2"), libc::S_IFDIR | 0o755).unwrap_err();
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

/// The type letter and name of every entry `ls -l` lists in `dir`, and its full output.
fn ls_types(dir: &Path) -> (Vec<(char, String)>, String) {
    let listing = run_stdout(Command::new("ls").arg("-l").arg(dir));
    let types = listing
        .lines()
        .skip(1) // "total N"
        .filter_map(|line| {
            let kind = line.chars().next()?;
            let name = line.split_whitespace().last()?;
            Some((kind, name.to_owned()))
        })
        .collect();
    (types, listing)
}

/// The user metadata header `name` of object `key`.
fn header(mount: &TestMount, key: &str, name: &str) -> Option<String> {
    mount.store().meta(key)?.user_metadata.get(name).cloned()
}

#[test]
fn fifos_devices_and_sockets_are_made_listed_moved_and_removed() {
    let mount = TestMount::writable(MemStore::new());
    let dir = mount.path("special");
    fs::create_dir(&dir).unwrap();
    run(Command::new("mkfifo")
        .args(["-m", "640"])
        .arg(dir.join("pipe")));
    run(Command::new("mknod")
        .args(["-m", "666"])
        .arg(dir.join("null"))
        .args(["c", "1", "3"]));
    // bind(2) of a unix socket is a mknod of S_IFSOCK.
    let listener = UnixListener::bind(dir.join("sock")).unwrap();

    let expected_types = vec![
        ('c', "null".to_owned()),
        ('p', "pipe".to_owned()),
        ('s', "sock".to_owned()),
    ];
    let (types, listing) = ls_types(&dir);
    assert_eq!(types, expected_types, "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("crw-rw-rw-") && l.contains(" 1, 3 ")),
        "{listing}"
    );
    assert!(listing.contains("prw-r----- "), "{listing}");
    // In the bucket: empty objects, the type in the mode, the device's number beside it.
    for (key, type_bits) in [
        ("special/pipe", libc::S_IFIFO),
        ("special/null", libc::S_IFCHR),
        ("special/sock", libc::S_IFSOCK),
    ] {
        assert_eq!(mount.object(key), b"", "{key}");
        let mode: u32 = header(&mount, key, "mode").unwrap().parse().unwrap();
        assert_eq!(mode & libc::S_IFMT, type_bits, "{key}");
    }
    assert_eq!(
        header(&mount, "special/null", "rdev").unwrap(),
        libc::makedev(1, 3).to_string()
    );
    // Another machine lists the same.
    let fresh = mount.fresh_mount();
    let (types, listing) = ls_types(&fresh.path("special"));
    assert_eq!(types, expected_types, "{listing}");
    assert!(listing.contains(" 1, 3 "), "{listing}");
    drop(fresh);

    // The kernel opens them, not the file system: a fifo carries bytes between two
    // descriptors, a socket connects to its listener, and a device is refused (nodev).
    let pipe = dir.join("pipe");
    // Non-blocking, so that a failure cannot hang the test: a reader opens at once, and a
    // writer once a reader is there.
    let open_end = |write: bool| {
        let mut options = OpenOptions::new();
        options.read(!write).write(write);
        options.custom_flags(libc::O_NONBLOCK).open(&pipe).unwrap()
    };
    let reader = open_end(false);
    let mut writer = open_end(true);
    writer.write_all(b"through the kernel").unwrap();
    drop(writer);
    let mut got = Vec::new();
    (&reader).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"through the kernel");
    drop(reader);
    let mut client = UnixStream::connect(dir.join("sock")).unwrap();
    client.write_all(b"hello").unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let mut hello = [0; 5];
    server.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    let err = fs::File::open(dir.join("null")).unwrap_err();
    assert_eq!(errno(&err), libc::EACCES);

    // chmod, chown, mv and rm work on them as on files.
    run(Command::new("chmod").arg("600").arg(&pipe));
    run(Command::new("chown").arg("12:34").arg(dir.join("null")));
    assert_eq!(
        fs::symlink_metadata(&pipe).unwrap().permissions().mode(),
        libc::S_IFIFO | 0o600
    );
    assert_eq!(
        header(&mount, "special/pipe", "mode").unwrap(),
        (libc::S_IFIFO | 0o600).to_string()
    );
    fs::create_dir(mount.path("moved")).unwrap();
    run(Command::new("mv")
        .arg(&pipe)
        .arg(dir.join("null"))
        .arg(mount.path("moved")));
    let null = fs::symlink_metadata(mount.path("moved/null")).unwrap();
    assert_eq!(special_type(&null), Some('c'));
    assert_eq!(
        (null.rdev(), null.uid(), null.gid()),
        (libc::makedev(1, 3), 12, 34)
    );
    assert_eq!(
        header(&mount, "moved/pipe", "mode").unwrap(),
        (libc::S_IFIFO | 0o600).to_string()
    );
    assert_eq!(mount.files_under("special/"), vec!["special/sock"]);
    drop(listener);
    run(Command::new("rm")
        .arg(dir.join("sock"))
        .arg(mount.path("moved/pipe"))
        .arg(mount.path("moved/null")));
    assert_eq!(mount.files_under(""), Vec::<String>::new());
    let (types, listing) = ls_types(&mount.path("moved"));
    assert_eq!(types, vec![], "{listing}");
}

/// `tar` working in `dir`.
fn tar_in(dir: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(dir);
    tar
}

#[test]
fn tar_round_trips_a_tree_with_fifos() {
    let mount = TestMount::writable(MemStore::new());
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "a file\n").unwrap();
    fs::write(src.join("sub/b.txt"), "").unwrap();
    run(Command::new("mkfifo").arg(src.join("fifo")));
    run(Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(src.join("sub/fifo2")));
    let archive = local.path().join("tree.tar");
    run(tar_in(&src).arg("-cf").arg(&archive).arg("."));

    let copy = mount.path("copy");
    fs::create_dir(&copy).unwrap();
    run(tar_in(&copy).arg("-xpf").arg(&archive));
    let expected = snapshot(&src);
    assert_eq!(expected["fifo"], Node::Special('p', 0));
    assert_same_tree(&snapshot(&copy), &expected);
    let fresh = mount.fresh_mount();
    assert_same_tree(&snapshot(&fresh.path("copy")), &expected);
    let mode = |root: &Path| {
        fs::symlink_metadata(root.join("sub/fifo2"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode(&fresh.path("copy")), mode(&src));

    // And back out: tar reads them from the mount as fifos.
    let back = local.path().join("back.tar");
    run(tar_in(&fresh.path("copy")).arg("-cf").arg(&back).arg("."));
    let listed = run_stdout(Command::new("tar").arg("-tvf").arg(&back));
    let mut fifos: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with('p'))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    fifos.sort_unstable();
    assert_eq!(fifos, vec!["./fifo", "./sub/fifo2"], "{listed}");
    let out = local.path().join("out");
    fs::create_dir(&out).unwrap();
    run(tar_in(&out).arg("-xpf").arg(&back));
    assert_same_tree(&snapshot(&out), &expected);
}
