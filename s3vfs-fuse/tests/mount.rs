//! Real FUSE mounts of a bucket served over loopback HTTP: what `ls`, `stat` and `cat` see,
//! reads at odd offsets, large directories, shadowing, hidden keys, objects replaced while
//! open, changes refused by a read-only mount, and the `s3vfs` binary itself. The read
//! tests run with every data cache setting.

mod common;

use common::binary::{
    is_mounted, mount_command, new_mountpoint, serve_bucket, unmount, wait_for, Binary,
    DetachOnDrop,
};
use common::{
    close, errno, read_at, test_with_every_cache, write_config, CacheSetting, TestMount, MIB,
};
use s3vfs::store::Capabilities;
use s3vfs::FsConfig;
use s3vfs_fuse::local::{pseudo_random, LocalS3};
use s3vfs_fuse::{AdapterConfig, MountOptions};
use s3vfs_testkit::MemStore;
use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn sorted(names: Vec<String>) -> BTreeSet<String> {
    names.into_iter().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn ls_stat_and_cat_show_the_bucket() {
    let store = MemStore::new();
    store.insert("README.txt", "hello, s3vfs\n");
    store.insert("dir/a.txt", "aaa");
    store.insert("dir/sub/b.bin", vec![7u8; 5000]);
    store.insert("empty-marker/", "");
    let mount = TestMount::new(store);

    assert_eq!(
        sorted(names(mount.root())),
        set(&["README.txt", "dir", "empty-marker"])
    );
    assert_eq!(sorted(names(&mount.path("dir"))), set(&["a.txt", "sub"]));
    assert_eq!(sorted(names(&mount.path("dir/sub"))), set(&["b.bin"]));
    assert!(names(&mount.path("empty-marker")).is_empty());

    let meta = fs::metadata(mount.path("README.txt")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 13);
    assert_eq!(meta.mode(), libc::S_IFREG | 0o644);
    // SAFETY: getuid has no preconditions.
    assert_eq!(meta.uid(), unsafe { libc::getuid() });
    let meta = fs::metadata(mount.path("dir/sub")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.mode(), libc::S_IFDIR | 0o755);
    assert_eq!(
        fs::metadata(mount.path("dir/sub/b.bin")).unwrap().len(),
        5000
    );
    let err = fs::metadata(mount.path("missing")).unwrap_err();
    assert_eq!(errno(&err), libc::ENOENT);

    assert_eq!(
        fs::read(mount.path("README.txt")).unwrap(),
        b"hello, s3vfs\n"
    );
    assert_eq!(
        fs::read(mount.path("dir/sub/b.bin")).unwrap(),
        vec![7u8; 5000]
    );

    // The real tools, as a user would run them.
    let ls = Command::new("ls")
        .arg("-la")
        .arg(mount.path("dir"))
        .output()
        .unwrap();
    assert!(ls.status.success(), "ls failed: {ls:?}");
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listing.contains("a.txt") && listing.contains("sub"),
        "{listing}"
    );
    let cat = Command::new("cat")
        .arg(mount.path("dir/a.txt"))
        .output()
        .unwrap();
    assert!(cat.status.success(), "cat failed: {cat:?}");
    assert_eq!(cat.stdout, b"aaa");
    let stat = Command::new("stat")
        .args(["-c", "%s %a %F"])
        .arg(mount.path("README.txt"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stat.stdout).trim(),
        "13 644 regular file"
    );
}

fn reads_at_odd_offsets_match_the_object(cache: CacheSetting) {
    // Three read parts of 8 MiB and a bit, so reads cross part boundaries.
    let len = 2 * 8 * MIB as usize + 4321;
    let data = pseudo_random(len, 42);
    let store = MemStore::new();
    store.insert("big.bin", data.clone());
    let mount = TestMount::cached(store, FsConfig::default(), cache);
    let file = File::open(mount.path("big.bin")).unwrap();
    assert_eq!(file.metadata().unwrap().len(), len as u64);

    let part = 8 * MIB;
    let cases: &[(u64, usize)] = &[
        (0, 1),
        (1, 4095),
        (4095, 2),
        (4097, 8191),
        (part - 3, 7),
        (part - 1, 2),
        (part - 100_000, 300_000),
        (2 * part - 1, MIB as usize),
        (12_345, 3 * MIB as usize + 17),
        (len as u64 - 1, 1),
    ];
    for &(offset, size) in cases {
        let got = read_at(&file, offset, size).unwrap();
        let (start, end) = (offset as usize, (offset as usize + size).min(len));
        assert!(
            got == data[start..end],
            "bytes differ at offset {offset}, size {size}"
        );
    }
    // Backwards and scattered, on the same handle.
    let mut state = 0x1234_5678_u64;
    for _ in 0..200 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let offset = (state >> 20) % len as u64;
        let size = ((state >> 8) % 70_000) as usize + 1;
        let got = read_at(&file, offset, size).unwrap();
        let end = (offset as usize + size).min(len);
        assert!(
            got == data[offset as usize..end],
            "bytes differ at offset {offset}, size {size}"
        );
    }
    // At and past the end of file.
    assert_eq!(
        read_at(&file, len as u64 - 10, 100).unwrap(),
        &data[len - 10..]
    );
    assert!(read_at(&file, len as u64, 10).unwrap().is_empty());
    assert!(read_at(&file, len as u64 + 5000, 10).unwrap().is_empty());
    // And the whole file, as `cat` reads it.
    assert!(fs::read(mount.path("big.bin")).unwrap() == data);
}

test_with_every_cache!(reads_at_odd_offsets_match_the_object);

/// `--direct-io`: every handle bypasses the page cache. Reads of any size and offset,
/// shared mmap, writes read back through another handle, and what close stores.
#[test]
fn a_direct_io_mount_reads_maps_and_writes_files() {
    let len = 8 * MIB as usize + 4321;
    let data = pseudo_random(len, 43);
    let store = MemStore::new();
    store.insert("big.bin", data.clone());
    let options = MountOptions {
        adapter: AdapterConfig::default().with_direct_io(true),
        ..MountOptions::default()
    };
    let mount = TestMount::with(store, write_config(), options);
    let path = mount.path("big.bin");
    let file = File::open(&path).unwrap();
    for &(offset, size) in &[(0u64, 1usize), (4095, 2), (12_345, 3 * MIB as usize + 17)] {
        let end = (offset as usize + size).min(len);
        assert!(read_at(&file, offset, size).unwrap() == data[offset as usize..end]);
    }
    assert!(fs::read(&path).unwrap() == data);

    // Shared mmap of a direct-I/O file (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6+).
    // SAFETY: a read-only shared mapping of an open file, unmapped before `file` closes;
    // the slice is read only while mapped.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            map,
            libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        let mapped = std::slice::from_raw_parts(map as *const u8, len);
        assert!(mapped == &data[..], "the mapping differs from the object");
        assert_eq!(libc::munmap(map, len), 0);
    }

    // A read-write handle: writes are seen at once by the other handle, stored on close.
    let writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    writer.write_all_at(b"direct", 4093).unwrap();
    let mut expected = data.to_vec();
    expected[4093..4099].copy_from_slice(b"direct");
    assert_eq!(read_at(&file, 4090, 12).unwrap(), &expected[4090..4102]);
    close(writer).unwrap();
    assert!(mount.object("big.bin") == expected, "the object differs");
    let mut created = File::create(mount.path("new.txt")).unwrap();
    created.write_all(b"small\n").unwrap();
    close(created).unwrap();
    assert_eq!(mount.object("new.txt"), b"small\n");
    assert_eq!(fs::read(mount.path("new.txt")).unwrap(), b"small\n");
}

#[test]
fn a_directory_of_ten_thousand_entries_lists_each_once() {
    const COUNT: usize = 10_000;
    let store = MemStore::new();
    for i in 0..COUNT {
        store.insert(format!("many/file-{i:05}"), "x");
    }
    let mount = TestMount::new(store);
    let listed = names(&mount.path("many"));
    assert_eq!(listed.len(), COUNT, "every entry once");
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), COUNT, "no entry twice");
    for i in 0..COUNT {
        assert!(
            unique.contains(&format!("file-{i:05}")),
            "file-{i:05} missing"
        );
    }
    // `ls -l` (readdirplus, with attributes) agrees, and sizes came with the listing.
    let ls = Command::new("ls")
        .arg("-l")
        .arg(mount.path("many"))
        .output()
        .unwrap();
    assert!(ls.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).lines().count(),
        COUNT + 1
    );
    assert_eq!(
        fs::metadata(mount.path("many/file-09999")).unwrap().len(),
        1
    );
}

#[test]
fn a_directory_shadows_a_file_of_the_same_name() {
    let store = MemStore::new();
    store.insert("a", "the file");
    store.insert("a/b", "inside");
    store.insert("c", "plain");
    let mount = TestMount::new(store);
    assert_eq!(names(mount.root()).iter().filter(|n| *n == "a").count(), 1);
    assert_eq!(sorted(names(mount.root())), set(&["a", "c"]));
    assert!(fs::metadata(mount.path("a")).unwrap().is_dir());
    assert_eq!(fs::read(mount.path("a/b")).unwrap(), b"inside");
    assert_eq!(errno(&fs::read(mount.path("a")).unwrap_err()), libc::EISDIR);
}

#[test]
fn keys_that_cannot_be_file_names_are_hidden() {
    let long = "n".repeat(300);
    let store = MemStore::new();
    store.insert("ok.txt", "ok");
    store.insert("x//y", "empty component");
    store.insert("../z", "dots");
    store.insert("./q", "dot");
    store.insert(long.clone(), "too long");
    store.insert(format!("dir/{long}"), "too long");
    store.insert("dir/fine.txt", "fine");
    let mount = TestMount::new(store);
    // `x` is a directory (the prefix `x/` exists) whose only key cannot be shown.
    assert_eq!(sorted(names(mount.root())), set(&["dir", "ok.txt", "x"]));
    assert!(names(&mount.path("x")).is_empty());
    assert_eq!(sorted(names(&mount.path("dir"))), set(&["fine.txt"]));
    assert_eq!(fs::read(mount.path("ok.txt")).unwrap(), b"ok");
    // Looked up by name, the long one is too long, and the others are not there.
    assert_eq!(
        errno(&fs::metadata(mount.path(&long)).unwrap_err()),
        libc::ENAMETOOLONG
    );
    assert!(fs::metadata(mount.path("x/y")).is_err());
}

#[test]
fn an_object_replaced_while_open_fails_the_read_with_estale() {
    let len = 4 * MIB as usize;
    let old = pseudo_random(len, 1);
    let new = pseudo_random(len, 2);
    let store = MemStore::new();
    store.insert("data.bin", old.clone());
    // Small read-ahead so that most of the file is fetched after the replacement, and no
    // metadata caching so that a new open sees the new object at once.
    let config = FsConfig::default()
        .with_read_ahead(64 * 1024, 64 * 1024, 128 * 1024)
        .with_metadata_ttl(Duration::ZERO);
    let mount = TestMount::with(store, config, MountOptions::default());
    let path = mount.path("data.bin");

    let mut file = File::open(&path).unwrap();
    let mut first = vec![0; 100_000];
    file.read_exact(&mut first).unwrap();
    assert!(first == old[..100_000]);
    mount.store().insert("data.bin", new.clone());

    let mut offset = first.len();
    let mut chunk = vec![0; 64 * 1024];
    let err = loop {
        match file.read(&mut chunk) {
            Ok(0) => panic!("end of file at {offset} although the object was replaced"),
            Ok(n) => {
                assert!(
                    chunk[..n] == old[offset..offset + n],
                    "bytes at {offset} are not the old object's"
                );
                offset += n;
            }
            Err(err) => break err,
        }
    };
    assert_eq!(errno(&err), libc::ESTALE, "{err}");
    drop(file);

    // Opened again, the file is the new object.
    assert!(fs::read(&path).unwrap() == new);
}

#[test]
fn changes_are_refused_with_erofs() {
    let store = MemStore::new();
    store.insert("file.txt", "content");
    store.insert("dir/inner.txt", "inner");
    // The kernel mount is read-write: each refusal comes from the core through FUSE.
    let mount = TestMount::with(
        store,
        FsConfig::default().with_read_only(true),
        MountOptions::default(),
    );
    let expect_erofs = |what: &str, result: io::Result<()>| {
        let err = result.expect_err(what);
        assert_eq!(errno(&err), libc::EROFS, "{what}: {err}");
    };
    expect_erofs("create", File::create(mount.path("new.txt")).map(drop));
    expect_erofs(
        "open for writing",
        OpenOptions::new()
            .write(true)
            .open(mount.path("file.txt"))
            .map(drop),
    );
    expect_erofs(
        "truncate on open",
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(mount.path("file.txt"))
            .map(drop),
    );
    expect_erofs("mkdir", fs::create_dir(mount.path("newdir")));
    expect_erofs("unlink", fs::remove_file(mount.path("file.txt")));
    expect_erofs("rmdir", fs::remove_dir(mount.path("dir")));
    expect_erofs(
        "rename",
        fs::rename(mount.path("file.txt"), mount.path("moved.txt")),
    );
    expect_erofs(
        "symlink",
        std::os::unix::fs::symlink("file.txt", mount.path("link")),
    );
    expect_erofs(
        "chmod",
        fs::set_permissions(mount.path("file.txt"), fs::Permissions::from_mode(0o600)),
    );
    assert_eq!(fs::read(mount.path("file.txt")).unwrap(), b"content");

    // Mounted read-only, the kernel refuses before asking the file system.
    let store = MemStore::new();
    store.insert("file.txt", "content");
    let mount = TestMount::with(
        store,
        FsConfig::default().with_read_only(true),
        MountOptions::default().with_read_only(true),
    );
    expect_erofs(
        "create on ro",
        File::create(mount.path("new.txt")).map(drop),
    );
    assert_eq!(fs::read(mount.path("file.txt")).unwrap(), b"content");
}

#[test]
fn mounting_on_a_non_empty_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("existing"), "x").unwrap();
    let err = s3vfs_fuse::mount::check_mountpoint(dir.path(), false).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn the_demo_binary_mounts_stops_on_sigint_and_explains_a_stale_mount() {
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let _cleanup = DetachOnDrop(&mountpoint);

    let demo = Binary::demo(&mountpoint);
    wait_for(&mountpoint.join("README.txt"));
    let readme = fs::read_to_string(mountpoint.join("README.txt")).unwrap();
    assert!(readme.contains("s3vfs"), "{readme}");
    let random = fs::read(mountpoint.join("data/random.bin")).unwrap();
    assert!(random == pseudo_random(s3vfs_fuse::local::DEMO_BINARY_SIZE, 0x5eed));
    // The demo bucket is writable.
    fs::write(mountpoint.join("notes.txt"), "written through the demo").unwrap();
    assert_eq!(
        fs::read_to_string(mountpoint.join("notes.txt")).unwrap(),
        "written through the demo"
    );
    demo.signal(libc::SIGINT);
    let out = demo.wait();
    assert!(out.status.success(), "exit after SIGINT: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1"));
    assert!(!is_mounted(&mountpoint), "still mounted after SIGINT");

    // Killed without unmounting, it leaves a dead mount behind; the next mount says how to
    // clean it up instead of failing obscurely.
    let demo = Binary::demo(&mountpoint);
    wait_for(&mountpoint.join("README.txt"));
    demo.signal(libc::SIGKILL);
    let _ = demo.wait();
    // (Cached attributes may still answer a stat; a listing must ask the dead session.)
    let err = fs::read_dir(&mountpoint).unwrap_err();
    assert_eq!(errno(&err), libc::ENOTCONN);
    // Past the attribute TTL (1 s) a stat of the dead mount fails too (ENOTCONN): the
    // demo must still explain it rather than try to create the mountpoint.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let again = Binary::demo(&mountpoint).wait();
    let cleanup = Command::new("fusermount3")
        .arg("-u")
        .arg(&mountpoint)
        .status();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("fusermount3 -u"), "{stderr}");
    assert!(cleanup.unwrap().success(), "fusermount3 -u failed");
    assert!(!is_mounted(&mountpoint));
}

/// `s3vfs mount --object-store-url file:///DIR MNT`: a local directory through the
/// `object_store` adapter. What is written, renamed and removed through the mount is
/// what the directory holds, and the other way round.
#[cfg(feature = "object-store")]
#[test]
fn the_mount_binary_mounts_a_local_directory_through_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let data = dir.path().canonicalize().unwrap().join("data");
    fs::create_dir_all(data.join("existing")).unwrap();
    fs::write(data.join("existing/old.txt"), "already here").unwrap();
    let _cleanup = DetachOnDrop(&mountpoint);

    let mount = Binary::start(
        Command::new(env!("CARGO_BIN_EXE_s3vfs"))
            .args(["mount", "--foreground", "--object-store-url"])
            .arg(format!("file://{}", data.display()))
            .arg(&mountpoint)
            .args(["--part-size", "5M"])
            .env("AWS_EC2_METADATA_DISABLED", "true"),
    );
    wait_for(&mountpoint.join("existing/old.txt"));
    assert_eq!(
        fs::read_to_string(mountpoint.join("existing/old.txt")).unwrap(),
        "already here"
    );

    // Small and multipart (three parts of 5 MiB) files, written and read back.
    fs::create_dir(mountpoint.join("new")).unwrap();
    fs::write(mountpoint.join("new/small.txt"), "written through s3vfs").unwrap();
    let big = pseudo_random(12 * MIB as usize, 16);
    fs::write(mountpoint.join("new/big.bin"), &big).unwrap();
    assert!(fs::read(mountpoint.join("new/big.bin")).unwrap() == big);
    assert!(fs::read(data.join("new/big.bin")).unwrap() == big);
    assert_eq!(
        fs::read_to_string(data.join("new/small.txt")).unwrap(),
        "written through s3vfs"
    );

    // Rename (of a file and of a directory), ls, rm.
    fs::rename(
        mountpoint.join("new/small.txt"),
        mountpoint.join("small.txt"),
    )
    .unwrap();
    fs::rename(mountpoint.join("existing"), mountpoint.join("kept")).unwrap();
    assert_eq!(
        sorted(names(&mountpoint)),
        set(&["kept", "new", "small.txt"])
    );
    assert_eq!(sorted(names(&mountpoint.join("new"))), set(&["big.bin"]));
    assert_eq!(sorted(names(&data.join("kept"))), set(&["old.txt"]));
    assert!(!data.join("existing").exists() && !data.join("new/small.txt").exists());
    assert_eq!(
        fs::read_to_string(data.join("small.txt")).unwrap(),
        "written through s3vfs"
    );
    fs::remove_file(mountpoint.join("new/big.bin")).unwrap();
    assert!(!data.join("new/big.bin").exists());
    // What the backend cannot keep is refused, not lost.
    let err = std::os::unix::fs::symlink("small.txt", mountpoint.join("link")).unwrap_err();
    assert_eq!(errno(&err), libc::ENOTSUP);

    mount.signal(libc::SIGINT);
    let out = mount.wait();
    assert!(out.status.success(), "exit after SIGINT: {out:?}");
    assert!(!is_mounted(&mountpoint), "still mounted after SIGINT");
}

#[test]
fn the_mount_binary_passes_its_write_flags_on() {
    let store = MemStore::new();
    store.insert("pre/existing.txt", "existing");
    let (runtime, local) = serve_bucket(&store);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().canonicalize().unwrap().join("mnt");
    let staging = dir.path().join("staging");
    fs::create_dir(&mountpoint).unwrap();
    fs::create_dir(&staging).unwrap();
    let _cleanup = DetachOnDrop(&mountpoint);

    let mount = Binary::start(
        mount_command(&local, "bucket/pre", &mountpoint)
            .arg("--foreground")
            .args([
                "--no-delete",
                "--storage-class",
                "STANDARD_IA",
                "--sse",
                "AES256",
            ])
            .args(["--part-size", "5M", "--upload-concurrency", "2"])
            .args(["--max-threads", "4"])
            .arg("--log-directory")
            .arg(dir.path())
            .arg("--staging-dir")
            .arg(&staging),
    );
    wait_for(&mountpoint.join("existing.txt"));
    let data = pseudo_random(11 * MIB as usize, 9);
    fs::write(mountpoint.join("new.bin"), &data).unwrap();
    assert!(store.get_bytes("pre/new.bin").unwrap() == data);
    let meta = store.meta("pre/new.bin").unwrap();
    assert_eq!(meta.storage_class.as_deref(), Some("STANDARD_IA"));
    let err = fs::remove_file(mountpoint.join("new.bin")).unwrap_err();
    assert_eq!(errno(&err), libc::EPERM);

    mount.signal(libc::SIGINT);
    let out = mount.wait();
    assert!(out.status.success(), "exit after SIGINT: {out:?}");
    assert!(!is_mounted(&mountpoint), "still mounted after SIGINT");
    // --log-directory: today's log file there.
    let logs: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("s3vfs.") && name.ends_with(".log")
        })
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let logged = fs::read_to_string(logs[0].path()).unwrap();
    assert!(logged.contains("delete refused"), "{logged}");
    runtime.block_on(local.stop());
}

/// `s3vfs mount bucket MOUNTPOINT` in the background (no `--foreground`, no `--log-file`)
/// against `local`, logging at info level; `S3VFS_SYSLOG_SOCKET` is `syslog`, so that the
/// system's journal and syslog are left alone.
fn background_mount(local: &LocalS3, mountpoint: &Path, syslog: &Path) -> Command {
    let mut command = mount_command(local, "bucket", mountpoint);
    command
        .args(["--log-level", "info"])
        .env("S3VFS_SYSLOG_SOCKET", syslog);
    command
}

/// The next datagram on `socket` that contains `text`, within a minute.
fn received(socket: &UnixDatagram, text: &str) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no log line with {text:?}: {e}"));
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains(text) {
            return line;
        }
    }
}

#[test]
fn a_background_mount_logs_to_syslog_when_no_journal_is_used() {
    let store = MemStore::new();
    store.insert("file.txt", "data");
    let (runtime, local) = serve_bucket(&store);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let _cleanup = DetachOnDrop(&mountpoint);
    let socket = dir.path().join("log");
    let syslog = UnixDatagram::bind(&socket).unwrap();

    // The command returns once the mount is up and the daemon detached.
    let out = background_mount(&local, &mountpoint, &socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("logging to syslog ({}", socket.display())),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(mountpoint.join("file.txt")).unwrap(),
        "data"
    );
    let serving = received(&syslog, "s3vfs is serving");
    assert!(serving.starts_with("<14>s3vfs["), "{serving}");
    // Lines logged after the daemon closed its stdio arrive too.
    unmount(&mountpoint);
    received(&syslog, "unmounted from outside");
    runtime.block_on(local.stop());
}

/// Garage and `rclone serve s3` ignore If-None-Match and If-Match: the mount finds out,
/// says so on the terminal (also when it goes to the background) and uploads without
/// conditions, instead of trusting conditions that protect nothing.
#[test]
fn a_server_without_conditional_writes_makes_the_mount_say_it_is_last_writer_wins() {
    let store = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    store.insert("file.txt", "data");
    let (runtime, local) = serve_bucket(&store);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let _cleanup = DetachOnDrop(&mountpoint);
    let socket = dir.path().join("log");
    let syslog = UnixDatagram::bind(&socket).unwrap();

    let out = background_mount(&local, &mountpoint, &socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not honour conditional writes")
            && stderr.contains("this mount is last-writer-wins"),
        "{stderr}"
    );
    received(&syslog, "this mount is last-writer-wins");
    // The probe left nothing behind, and the mount writes.
    assert_eq!(store.keys(), vec!["file.txt".to_owned()]);
    fs::write(mountpoint.join("file.txt"), "changed").unwrap();
    assert_eq!(store.get_bytes("file.txt").unwrap(), "changed");
    unmount(&mountpoint);

    // --skip-server-checks trusts the server: no probe, no notice.
    let keys_before = store.keys();
    let out = background_mount(&local, &mountpoint, &socket)
        .arg("--skip-server-checks")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("last-writer-wins"), "{stderr}");
    assert_eq!(store.keys(), keys_before);
    unmount(&mountpoint);
    runtime.block_on(local.stop());
}

/// No file answers an ioctl: `isatty` (Python asks at every `open`) gets ENOTTY, and the
/// log stays quiet; fuser's default logged a warning per call, hundreds a minute for a
/// healthy mount.
#[test]
fn ioctls_are_answered_without_a_warning() {
    use std::os::fd::AsRawFd;
    let store = MemStore::new();
    store.insert("f.txt", "x");
    let (runtime, local) = serve_bucket(&store);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let _cleanup = DetachOnDrop(&mountpoint);
    let mount = Binary::start(mount_command(&local, "bucket", &mountpoint).arg("--foreground"));
    wait_for(&mountpoint.join("f.txt"));
    for _ in 0..3 {
        let file = File::open(mountpoint.join("f.txt")).unwrap();
        let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: TCGETS writes at most one `termios` into the buffer given.
        let result = unsafe { libc::ioctl(file.as_raw_fd(), libc::TCGETS, termios.as_mut_ptr()) };
        assert_eq!(result, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTTY)
        );
    }
    mount.signal(libc::SIGINT);
    let out = mount.wait();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Not Implemented"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    runtime.block_on(local.stop());
}

/// `mount -t fuse.s3vfs BUCKET MNT -o OPTIONS` (and its fstab line) runs fuse3's
/// `mount.fuse3`, which runs `s3vfs BUCKET MNT -o OPTIONS`: the binary takes that form, with
/// each option a long flag's name and mount(8)'s own options ignored. (mount(8) itself runs
/// helpers with a fixed PATH, so this calls `mount.fuse3` as mount(8) would.)
#[test]
fn mount_fuse3_mounts_with_options() {
    let helper = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("mount.fuse3 (Debian package fuse3) is needed");
    let store = MemStore::new();
    store.insert("pre/file.txt", "data");
    let (runtime, local) = serve_bucket(&store);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let _cleanup = DetachOnDrop(&mountpoint);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_s3vfs")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let options = format!(
        "rw,nodev,nosuid,_netdev,nofail,x-systemd.automount,endpoint-url={},force-path-style,region=us-east-1,read_only,metadata-ttl=5",
        local.endpoint_url()
    );
    let out = Command::new(helper)
        .arg("bucket/pre")
        .arg(&mountpoint)
        .args(["-t", "s3vfs", "-o", &options])
        .env("PATH", path)
        .env("AWS_ACCESS_KEY_ID", local.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", local.secret_access_key())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("S3VFS_SYSLOG_SOCKET", dir.path().join("no-syslog"))
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(mountpoint.join("file.txt")).unwrap(),
        "data"
    );
    // `read_only` (underscore for dash) reached the mount.
    let err = fs::write(mountpoint.join("new.txt"), "x").unwrap_err();
    assert_eq!(errno(&err), libc::EROFS);
    unmount(&mountpoint);
    runtime.block_on(local.stop());
}

/// `--no-sign-request`, `--requester-pays` and `--expected-bucket-owner` reach every
/// request of a mount; without a region anywhere (flag, environment, profile) the bucket is
/// asked for its own, which the log names.
#[test]
fn access_flags_reach_every_request_and_the_region_is_the_buckets() {
    const OWNER: &str = "111122223333";
    let store = MemStore::new();
    store.insert("public.txt", "anyone may read this");
    let (runtime, local) = serve_bucket(&store);
    local.server().allow_anonymous(true);
    local.server().set_region("eu-test-1");
    local.server().record_requests(true);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    let _cleanup = DetachOnDrop(&mountpoint);
    let log = dir.path().join("mount.log");
    let nowhere = dir.path().join("no-such-file");

    let mount = Binary::start(
        Command::new(env!("CARGO_BIN_EXE_s3vfs"))
            .args(["mount", "bucket"])
            .arg(&mountpoint)
            .args(["--foreground", "--force-path-style", "--log-level", "info"])
            .args(["--endpoint-url", &local.endpoint_url()])
            .args(["--no-sign-request", "--requester-pays"])
            .args(["--expected-bucket-owner", OWNER])
            .arg("--log-file")
            .arg(&log)
            // No credentials, region or profile from this machine.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY"),
    );
    wait_for(&mountpoint.join("public.txt"));
    assert_eq!(
        fs::read_to_string(mountpoint.join("public.txt")).unwrap(),
        "anyone may read this"
    );
    fs::write(mountpoint.join("new.txt"), "written anonymously").unwrap();
    assert_eq!(store.get_bytes("new.txt").unwrap(), "written anonymously");
    mount.signal(libc::SIGINT);
    let out = mount.wait();
    assert!(out.status.success(), "exit after SIGINT: {out:?}");

    let recorded = local.server().recorded_requests();
    for op in ["HeadBucket", "ListObjectsV2", "GetObject", "PutObject"] {
        assert!(recorded.iter().any(|r| r.operation == op), "no {op}");
    }
    for request in &recorded {
        let op = &request.operation;
        assert!(!request.signed, "{op}");
        assert_eq!(request.header("authorization"), None, "{op}");
        assert_eq!(
            request.header("x-amz-expected-bucket-owner"),
            Some(OWNER),
            "{op}"
        );
        if op != "HeadBucket" {
            assert_eq!(
                request.header("x-amz-request-payer"),
                Some("requester"),
                "{op}"
            );
        }
    }
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("region=eu-test-1") && logged.contains("no region configured"),
        "{logged}"
    );
    runtime.block_on(local.stop());
}

/// `s3vfs doctor` prints one row per capability, names what the server lacks, leaves
/// nothing in the bucket, and fails only when a check cannot be made.
#[test]
fn doctor_tells_what_the_server_lacks_and_cleans_up() {
    let store = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    store.insert("pre/kept.txt", "a user's file");
    let (runtime, local) = serve_bucket(&store);
    let doctor = |target: &str| {
        Command::new(env!("CARGO_BIN_EXE_s3vfs"))
            .args([
                "doctor",
                target,
                "--force-path-style",
                "--region",
                "us-east-1",
            ])
            .args(["--endpoint-url", &local.endpoint_url()])
            .env("AWS_ACCESS_KEY_ID", local.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", local.secret_access_key())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    };
    let out = doctor("bucket/pre");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 11, "a heading and ten checks: {stdout}");
    let conditional = rows
        .iter()
        .find(|r| r.starts_with("| conditional writes"))
        .expect("a conditional-write row");
    assert!(conditional.contains("| lacks |"), "{conditional}");
    assert_eq!(
        rows.iter().filter(|r| r.contains("| works |")).count(),
        9,
        "{stdout}"
    );
    assert!(
        stdout.contains("9 of 10 checks work, 1 lacking"),
        "{stdout}"
    );
    assert_eq!(store.keys(), vec!["pre/kept.txt".to_owned()]);

    // The connection flags also come from the variables the AWS SDKs read.
    let out = Command::new(env!("CARGO_BIN_EXE_s3vfs"))
        .args(["doctor", "bucket/pre", "--force-path-style"])
        .env("AWS_ENDPOINT_URL", local.endpoint_url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", local.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", local.secret_access_key())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("endpoint {}", local.endpoint_url())),
        "{stdout}"
    );

    // A bucket that does not exist: the listing fails, and so does the command.
    let out = doctor("no-such-bucket");
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("| FAILED |") && stdout.contains("NoSuchBucket"),
        "{stdout}"
    );
    runtime.block_on(local.stop());
}

#[test]
fn a_background_mount_without_journal_or_syslog_logs_to_a_file() {
    let (runtime, local) = serve_bucket(&MemStore::new());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Nothing listens there, and the mountpoint is missing: the mount fails after logging
    // why, and that line is in the file.
    let missing = dir.path().join("no-such-mountpoint");
    let out = background_mount(&local, &missing, &dir.path().join("no-syslog"))
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let log = state.join("s3vfs/s3vfs.log");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("s3vfs: logging to {}", log.display())),
        "{stderr}"
    );
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("ERROR") && logged.contains("no-such-mountpoint"),
        "{logged}"
    );
    assert_eq!(
        fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    runtime.block_on(local.stop());
}

fn a_file_changed_elsewhere_is_read_afresh_on_the_next_open(cache: CacheSetting) {
    // No metadata caching, so the next open sees the new object at once; the new version
    // has the same size and modification time, so only the open can tell the kernel that
    // its cached pages are stale.
    let config = common::write_config().with_metadata_ttl(Duration::ZERO);
    let mount = TestMount::cached(MemStore::new(), config, cache);
    let path = mount.path("same-size.txt");
    fs::write(&path, "version one").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"version one");
    let mtime = mount.store().meta("same-size.txt").unwrap().last_modified;
    mount.store().insert("same-size.txt", "version two");
    mount.store().set_last_modified("same-size.txt", mtime);
    assert_eq!(fs::read(&path).unwrap(), b"version two");
}

test_with_every_cache!(a_file_changed_elsewhere_is_read_afresh_on_the_next_open);

/// Environment variables of [`open_writer_client`]: the file to write, and what to write.
const OPEN_WRITER_TARGET: &str = "S3VFS_TEST_OPEN_WRITER_TARGET";
const OPEN_WRITER_SOURCE: &str = "S3VFS_TEST_OPEN_WRITER_SOURCE";

/// A writer in a child process (this test binary again): writes a file and keeps it open
/// until killed. Does nothing without its environment.
#[test]
fn open_writer_client() {
    let (Some(target), Some(source)) = (
        std::env::var_os(OPEN_WRITER_TARGET),
        std::env::var_os(OPEN_WRITER_SOURCE),
    ) else {
        return;
    };
    let mut file = File::create(target).unwrap();
    file.write_all(&fs::read(source).unwrap()).unwrap();
    println!("written");
    std::thread::sleep(Duration::from_secs(600));
    drop(file);
}

#[test]
fn sigterm_uploads_files_still_open_for_writing_before_the_mount_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().canonicalize().unwrap().join("mnt");
    let data_dir = dir.path().join("bucket");
    fs::create_dir(&mountpoint).unwrap();
    let _cleanup = DetachOnDrop(&mountpoint);
    // Larger than one part (8 MiB): part of it streams before the signal.
    let source = dir.path().join("source.bin");
    let content = pseudo_random(12 * 1024 * 1024 + 5, 0x7e57);
    fs::write(&source, &content).unwrap();

    let demo = Binary::start(
        Command::new(env!("CARGO_BIN_EXE_s3vfs"))
            .arg("demo")
            .arg(&mountpoint)
            .arg("--data-dir")
            .arg(&data_dir),
    );
    wait_for(&mountpoint.join("README.txt"));
    // A writer that keeps its descriptor open: nothing is flushed by a close (a child
    // such as `cat` writing through a shell's descriptor would flush when it exits).
    let written = mountpoint.join("open.bin");
    let mut writer = Command::new(std::env::current_exe().unwrap())
        .args(["open_writer_client", "--exact", "--quiet", "--nocapture"])
        .env(OPEN_WRITER_TARGET, &written)
        .env(OPEN_WRITER_SOURCE, &source)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(writer.stdout.take().unwrap()));
    while !out.contains("written") {
        out = lines.next().expect("the writer reports").unwrap();
    }
    demo.signal(libc::SIGTERM);
    let out = demo.wait();
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(out.status.success(), "exit after SIGTERM: {out:?}");
    assert!(!is_mounted(&mountpoint), "still mounted after SIGTERM");
    let store = MemStore::persisted(&data_dir).unwrap();
    let stored = store
        .get_bytes("open.bin")
        .expect("uploaded before the exit");
    assert_eq!(stored.len(), content.len());
    assert!(stored == content[..], "the stored bytes differ");
}

#[test]
fn a_killed_mount_leaves_no_half_object_and_recover_aborts_its_uploads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = MemStore::new();
    let local = runtime
        .block_on(LocalS3::start("bucket", store.clone(), 0))
        .expect("cannot start the local S3 endpoint");
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().canonicalize().unwrap().join("mnt");
    let recovery = dir.path().join("recovery");
    fs::create_dir(&mountpoint).unwrap();
    let _cleanup = DetachOnDrop(&mountpoint);
    let source = dir.path().join("source.bin");
    fs::write(&source, pseudo_random(12 * MIB as usize, 3)).unwrap();
    let connection = |command: &mut Command| {
        command
            .args(["--force-path-style", "--region", "us-east-1"])
            .args(["--endpoint-url", &local.endpoint_url()])
            .env("AWS_ACCESS_KEY_ID", local.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", local.secret_access_key())
            .env("AWS_EC2_METADATA_DISABLED", "true");
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_s3vfs"));
    command
        .args(["mount", "bucket"])
        .arg(&mountpoint)
        .args(["--foreground", "--part-size", "5M"])
        .arg("--recovery-dir")
        .arg(&recovery);
    connection(&mut command);
    let mount = Binary::start(&mut command);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_mounted(&mountpoint) {
        assert!(Instant::now() < deadline, "never mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A writer streams 12 MiB (two 5 MiB parts go up at once) and keeps the file open.
    let mut writer = Command::new(std::env::current_exe().unwrap())
        .args(["open_writer_client", "--exact", "--quiet", "--nocapture"])
        .env(OPEN_WRITER_TARGET, mountpoint.join("big.bin"))
        .env(OPEN_WRITER_SOURCE, &source)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(writer.stdout.take().unwrap()));
    while !lines
        .next()
        .expect("the writer reports")
        .unwrap()
        .contains("written")
    {}
    while store.open_uploads() == 0 {
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    mount.signal(libc::SIGKILL);
    let _ = mount.wait();
    let _ = writer.kill();
    let _ = writer.wait();
    let _ = Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(&mountpoint)
        .status();

    assert!(store.get_bytes("big.bin").is_none(), "no half object");
    assert_eq!(
        store.open_uploads(),
        1,
        "the killed mount's upload is still open"
    );
    let listed = Command::new(env!("CARGO_BIN_EXE_s3vfs"))
        .arg("recover")
        .arg(&recovery)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        text.contains("1 unfinished multipart upload") && text.contains("s3://bucket/big.bin"),
        "{text}"
    );
    let mut abort = Command::new(env!("CARGO_BIN_EXE_s3vfs"));
    abort.arg("recover").arg(&recovery).arg("--abort-stale");
    connection(&mut abort);
    let aborted = abort.output().unwrap();
    assert!(aborted.status.success(), "{aborted:?}");
    assert_eq!(store.open_uploads(), 0, "recover aborted it");
    let again = Command::new(env!("CARGO_BIN_EXE_s3vfs"))
        .arg("recover")
        .arg(&recovery)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 unfinished"));
    runtime.block_on(local.stop());
}
