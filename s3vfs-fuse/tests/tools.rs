//! Everyday tools on a writable mount, run as a user would run them: an editor's save,
//! `sed -i`, `dd`, `cp -r` and `tar x` of a tree checked with `diff -r`, `cp` within the
//! mount (a server-side copy, or through the handles for a file still being written),
//! `rm -r` of a big tree, `mkdir -p`, `mv` of a directory, `ln -s`, `chmod`, `touch -d`,
//! and `setfattr`/`getfattr`. What reached the bucket is checked in the store or through a
//! second, fresh mount. A missing tool fails the test (install it, see `.ci/run`).

mod common;

use common::{
    assert_same_tree, close, errno, make_tree, run, run_status, run_stdout, snapshot, write_config,
    CacheSetting, Node, TestMount, MIB,
};
use s3vfs_fuse::local::pseudo_random;
use s3vfs_fuse::{AdapterConfig, MountOptions};
use s3vfs_testkit::fault::{CountingStore, Op};
use s3vfs_testkit::MemStore;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
fn an_editor_style_save_replaces_the_file() {
    let store = MemStore::new();
    store.insert("notes/doc.txt", "draft 1\n");
    let mount = TestMount::writable(store);
    let doc = mount.path("notes/doc.txt");

    // The swap file, written and synced while editing.
    let swap = mount.path("notes/.doc.txt.swp");
    let mut file = File::create(&swap).unwrap();
    file.write_all(b"swap: draft 2 in progress").unwrap();
    file.sync_all().unwrap();
    // The save: a temporary file next to the original, synced, renamed over it.
    let temp = mount.path("notes/.doc.txt.tmp-1234");
    let mut file = File::create(&temp).unwrap();
    file.write_all(b"draft 2\nwith a second line\n").unwrap();
    file.sync_all().unwrap();
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)).unwrap();
    close(file).unwrap();
    fs::rename(&temp, &doc).unwrap();
    fs::remove_file(&swap).unwrap();

    assert_eq!(
        fs::read_to_string(&doc).unwrap(),
        "draft 2\nwith a second line\n"
    );
    // Neither temporary file is left (the directory may have gained its `notes/` marker).
    assert_eq!(mount.files_under("notes/"), vec!["notes/doc.txt"]);
    assert_eq!(
        mount.object("notes/doc.txt"),
        b"draft 2\nwith a second line\n"
    );
}

#[test]
fn sed_edits_in_place() {
    let store = MemStore::new();
    store.insert("conf/app.ini", "name=alpha\nmode=a\n");
    let mount = TestMount::writable(store);
    run(Command::new("sed")
        .args(["-i", "s/a/b/"])
        .arg(mount.path("conf/app.ini")));
    assert_eq!(mount.object("conf/app.ini"), b"nbme=alpha\nmode=b\n");
    // sed's temporary file is gone.
    assert_eq!(mount.files_under("conf/"), vec!["conf/app.ini"]);
    assert_eq!(
        fs::read_to_string(mount.path("conf/app.ini")).unwrap(),
        "nbme=alpha\nmode=b\n"
    );
}

#[test]
fn dd_writes_a_large_file() {
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("random.bin");
    let data = pseudo_random(11 * MIB as usize + 99, 21);
    fs::write(&source, &data).unwrap();
    let mount = TestMount::writable(MemStore::new());
    run(Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", mount.path("copy.bin").display()))
        .args(["bs=1M", "conv=fsync", "status=none"]));
    assert!(mount.object("copy.bin") == data, "dd's copy differs");
}

#[test]
fn cp_r_copies_a_tree_that_diff_r_finds_identical() {
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    fs::create_dir(&tree).unwrap();
    make_tree(&tree, 1);
    let mount = TestMount::writable(MemStore::new());
    run(Command::new("cp").arg("-r").arg(&tree).arg(mount.root()));
    run(Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(mount.path("tree")));
    // What reached the store, empty directories included.
    let fresh = mount.fresh_mount();
    assert_same_tree(&snapshot(&fresh.path("tree")), &snapshot(&tree));
    run(Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(fresh.path("tree")));
}

/// Runs `cp source dest` and asserts that it was one server-side copy: one CopyObject,
/// no byte read or uploaded by the mount.
fn cp_server_side(counting: &CountingStore, source: &Path, dest: &Path) {
    counting.reset();
    // cp (coreutils 9) copies with copy_file_range.
    run(Command::new("cp").arg(source).arg(dest));
    let counts = counting.counts();
    assert_eq!(
        counts.get(&Op::Copy),
        Some(&1),
        "one CopyObject: {counts:?}"
    );
    for op in [Op::Get, Op::Put, Op::CreateMultipart, Op::UploadPart] {
        assert!(
            !counts.contains_key(&op),
            "no data moved by {op}: {counts:?}"
        );
    }
}

#[test]
fn cp_within_the_mount_copies_server_side() {
    let store = MemStore::new();
    let data = pseudo_random(6 * MIB as usize + 5, 31);
    store.insert("in/data.bin", data.clone());
    store.insert("in/other.bin", pseudo_random(100_000, 32));
    let (mount, counting) = TestMount::counted(store, write_config(), CacheSetting::Off);
    fs::create_dir(mount.path("out")).unwrap();
    let (source, copy) = (mount.path("in/data.bin"), mount.path("out/data.bin"));
    // The names looked up first, so that what is counted is the copy.
    fs::metadata(&source).unwrap();
    assert!(fs::metadata(&copy).is_err());
    cp_server_side(&counting, &source, &copy);
    assert!(
        mount.object("out/data.bin") == data,
        "the copy in the store differs"
    );
    assert_eq!(fs::metadata(&copy).unwrap().len(), data.len() as u64);
    assert!(
        fs::read(&copy).unwrap() == data,
        "the copy read back differs"
    );

    // cp over an existing file (O_TRUNC): the copy replaces the version opened.
    let other = mount.path("in/other.bin");
    cp_server_side(&counting, &other, &copy);
    assert!(mount.object("out/data.bin") == mount.object("in/other.bin"));
    let fresh = mount.fresh_mount();
    assert!(fs::read(fresh.path("out/data.bin")).unwrap() == fs::read(&other).unwrap());
}

#[test]
fn cp_of_a_file_still_being_written_copies_its_current_bytes() {
    let (mount, counting) = TestMount::counted(MemStore::new(), write_config(), CacheSetting::Off);
    // Text, as it goes through a shell's printf.
    let text: String = pseudo_random(100_000, 33)
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    let (path, copy) = (mount.path("growing.txt"), mount.path("snapshot.txt"));
    // A shell writes the file to its standard output, and starts cp, which inherits that
    // descriptor: nothing closes one before the copy (FUSE flushes, and so uploads, at
    // every close of a descriptor, as the test's own would be at cp's exec), so the file
    // has writes the store does not hold yet while cp copies it.
    run(Command::new("sh")
        .arg("-c")
        .arg(r#"exec >"$1" && printf %s "$2" && cp "$1" "$3" && printf more"#)
        .arg("sh")
        .arg(&path)
        .arg(&text)
        .arg(&copy));
    assert_eq!(
        counting.count(Op::Copy),
        0,
        "not the object: the store had none"
    );
    assert!(
        mount.object("snapshot.txt") == text.as_bytes(),
        "the copy differs from what was written"
    );
    assert!(fs::read(&copy).unwrap() == text.as_bytes());
    let mut written = text.into_bytes();
    written.extend_from_slice(b"more");
    assert!(mount.object("growing.txt") == written);
}

#[test]
fn tar_extracts_a_tree_into_the_mount() {
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    fs::create_dir(&tree).unwrap();
    make_tree(&tree, 2);
    std::os::unix::fs::symlink("a/one.bin", tree.join("link-to-one")).unwrap();
    let tarball = local.path().join("tree.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    let mount = TestMount::writable(MemStore::new());
    fs::create_dir(mount.path("unpacked")).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(mount.path("unpacked")));
    run(Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(mount.path("unpacked")));
    let fresh = mount.fresh_mount();
    assert_same_tree(&snapshot(&fresh.path("unpacked")), &snapshot(&tree));
    // tar restores modification times and modes. Listings show what LIST says (the
    // upload time) for objects too large to be links; a lookup reads the stored headers,
    // so ask a mount that has not listed them.
    let looked_up = mount.fresh_mount();
    let stat = |path: &Path| run_stdout(Command::new("stat").args(["-c", "%Y %a"]).arg(path));
    for name in ["small.txt", "a/b/big.bin", "x/y/z.txt"] {
        assert_eq!(
            stat(&looked_up.path(&format!("unpacked/{name}"))),
            stat(&tree.join(name)),
            "{name}"
        );
    }
}

#[test]
fn rm_r_removes_a_big_tree() {
    let store = MemStore::new();
    for d in 0..10 {
        for e in 0..6 {
            for f in 0..5 {
                store.insert(format!("big/d{d}/e{e}/f{f}.txt"), format!("{d}{e}{f}"));
            }
        }
    }
    store.insert("big/d3/", "");
    store.insert("other.txt", "stays");
    let mount = TestMount::writable(store);
    assert_eq!(mount.keys_under("big/").len(), 301);
    run(Command::new("rm").arg("-r").arg(mount.path("big")));
    assert_eq!(mount.keys_under("big/"), Vec::<String>::new());
    assert_eq!(
        errno(&fs::metadata(mount.path("big")).unwrap_err()),
        libc::ENOENT
    );
    assert_eq!(mount.store().keys(), vec!["other.txt"]);
}

#[test]
fn mkdir_p_mv_of_a_directory_and_symlinks() {
    let store = MemStore::new();
    store.insert("dir1/x.txt", "x");
    store.insert("dir1/sub/y.txt", "y");
    store.insert("dir1/sub/deeper/z.txt", "z");
    let mount = TestMount::writable(store);

    run(Command::new("mkdir").arg("-p").arg(mount.path("a/b/c")));
    assert!(fs::metadata(mount.path("a/b/c")).unwrap().is_dir());

    run(Command::new("mv")
        .arg(mount.path("dir1"))
        .arg(mount.path("dir2")));
    assert_eq!(mount.keys_under("dir1"), Vec::<String>::new());
    assert_eq!(
        errno(&fs::metadata(mount.path("dir1")).unwrap_err()),
        libc::ENOENT
    );
    assert_eq!(fs::read(mount.path("dir2/sub/deeper/z.txt")).unwrap(), b"z");

    run(Command::new("ln")
        .arg("-s")
        .arg("dir2/sub/y.txt")
        .arg(mount.path("link")));
    assert_eq!(
        run_stdout(Command::new("readlink").arg(mount.path("link"))),
        "dir2/sub/y.txt"
    );
    assert_eq!(fs::read(mount.path("link")).unwrap(), b"y");

    // What reached the store.
    let fresh = mount.fresh_mount();
    assert!(fs::metadata(fresh.path("a/b/c")).unwrap().is_dir());
    let file = |body: &str| Node::File(body.as_bytes().to_vec());
    let expected = [
        ("sub", Node::Dir),
        ("sub/deeper", Node::Dir),
        ("sub/deeper/z.txt", file("z")),
        ("sub/y.txt", file("y")),
        ("x.txt", file("x")),
    ]
    .map(|(name, node)| (name.to_owned(), node))
    .into_iter()
    .collect();
    assert_same_tree(&snapshot(&fresh.path("dir2")), &expected);
    assert_eq!(
        fs::read_link(fresh.path("link")).unwrap(),
        Path::new("dir2/sub/y.txt")
    );
}

#[test]
fn chmod_and_touch_are_kept_in_the_store() {
    let store = MemStore::new();
    store.insert("f.txt", "content");
    store.insert("old.txt", "old");
    store.set_last_modified("old.txt", UNIX_EPOCH + Duration::from_secs(1_000_000));
    let mount = TestMount::writable(store);
    let stat =
        |path: &Path, format: &str| run_stdout(Command::new("stat").args(["-c", format]).arg(path));
    run(Command::new("chmod").arg("600").arg(mount.path("f.txt")));
    assert_eq!(stat(&mount.path("f.txt"), "%a"), "600");
    run(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06 UTC"])
        .arg(mount.path("f.txt")));
    assert_eq!(stat(&mount.path("f.txt"), "%Y"), "981173106");
    // A new file made by touch, and an old one touched to now (UTIME_NOW).
    run(Command::new("touch").arg(mount.path("new.txt")));
    assert_eq!(mount.object("new.txt"), b"");
    run(Command::new("touch").arg(mount.path("old.txt")));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let touched: u64 = stat(&mount.path("old.txt"), "%Y").parse().unwrap();
    assert!(
        touched.abs_diff(now) < 30,
        "touched at {touched}, now is {now}"
    );

    let fresh = mount.fresh_mount();
    assert_eq!(stat(&fresh.path("f.txt"), "%a %Y %s"), "600 981173106 7");
    assert_eq!(stat(&fresh.path("old.txt"), "%Y"), touched.to_string());
    assert_eq!(fs::read(fresh.path("f.txt")).unwrap(), b"content");
}

/// setxattr(2) with `flags`, for the flags the tools do not expose.
fn setxattr(path: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()` bytes.
    let result = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn setfattr_and_getfattr_keep_extended_attributes() {
    let store = MemStore::new();
    store.insert("f.txt", "content");
    let mount = TestMount::writable(store);
    let file = mount.path("f.txt");
    run(Command::new("setfattr")
        .args(["-n", "user.color", "-v", "blue"])
        .arg(&file));
    run(Command::new("setfattr")
        .args(["-n", "user.size", "-v", "large"])
        .arg(&file));
    assert_eq!(
        run_stdout(
            Command::new("getfattr")
                .args(["--only-values", "-n", "user.color"])
                .arg(&file)
        ),
        "blue"
    );
    let dump = run_stdout(Command::new("getfattr").arg("-d").arg(&file));
    assert!(
        dump.contains("user.color=\"blue\"") && dump.contains("user.size=\"large\""),
        "{dump}"
    );
    run(Command::new("setfattr")
        .args(["-x", "user.size"])
        .arg(&file));
    let missing = run_status(
        Command::new("getfattr")
            .args(["-n", "user.size"])
            .arg(&file),
    );
    assert!(!missing.status.success(), "user.size is still there");

    // XATTR_CREATE and XATTR_REPLACE.
    let err = setxattr(&file, "user.color", b"red", libc::XATTR_CREATE).unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    let err = setxattr(&file, "user.none", b"x", libc::XATTR_REPLACE).unwrap_err();
    assert_eq!(errno(&err), libc::ENODATA);
    setxattr(&file, "user.color", b"green", libc::XATTR_REPLACE).unwrap();

    let fresh = mount.fresh_mount();
    let dump = run_stdout(Command::new("getfattr").arg("-d").arg(fresh.path("f.txt")));
    assert!(dump.contains("user.color=\"green\""), "{dump}");
    assert!(!dump.contains("user.size"), "{dump}");
    assert_eq!(fs::read(fresh.path("f.txt")).unwrap(), b"content");
}

#[test]
fn without_xattrs_the_kernel_is_told_once_and_ls_still_works() {
    let store = MemStore::new();
    store.insert("d/a.txt", "a");
    store.insert("d/b.txt", "bb");
    let options = MountOptions {
        adapter: AdapterConfig::default().with_xattrs(false),
        ..MountOptions::default()
    };
    let mount = TestMount::with(store.clone(), common::write_config(), options);
    let file = mount.path("d/a.txt");
    // Every xattr call fails with "not supported", the user namespace included, and
    // nothing reaches the bucket.
    let err = setxattr(&file, "user.color", b"blue", 0).unwrap_err();
    assert_eq!(errno(&err), libc::EOPNOTSUPP);
    let err = setxattr(&file, "user.color", b"blue", 0).unwrap_err();
    assert_eq!(errno(&err), libc::EOPNOTSUPP);
    let got = run_status(Command::new("getfattr").arg("-d").arg(&file));
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(
        !got.status.success() || got.stdout.is_empty(),
        "getfattr found attributes: {stderr}"
    );
    let meta = store.meta("d/a.txt").expect("d/a.txt is in the bucket");
    assert!(meta.user_metadata.is_empty(), "{:?}", meta.user_metadata);
    // The rest of the file system is unaffected.
    let listing = run_stdout(Command::new("ls").args(["-l"]).arg(mount.path("d")));
    assert!(
        listing.contains("a.txt") && listing.contains("b.txt"),
        "{listing}"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "a");
}
