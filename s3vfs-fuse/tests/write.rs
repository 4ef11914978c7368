//! Writing through a real FUSE mount: what `write`, `close` and `fsync` leave in the
//! bucket, byte for byte; streamed multipart uploads; O_TRUNC, O_APPEND, pwrite and
//! ftruncate; reading back before close; failed uploads reported by close(2) and fsync(2)
//! with the old object left intact; conflicting writers; the guard-rail flags. Overwrites
//! read back are checked with every data cache setting.

mod common;

use common::{
    close, errno, read_at, test_with_every_cache, write_config, CacheSetting, TestMount, MIB,
    WRITE_PART_SIZE,
};
use s3vfs::store::{StoreError, StoreErrorKind};
use s3vfs_fuse::local::pseudo_random;
use s3vfs_fuse::MountOptions;
use s3vfs_testkit::fault::Op;
use s3vfs_testkit::MemStore;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant, SystemTime};

/// An error the loopback endpoint answers with 400, which the client does not retry.
fn injected() -> StoreError {
    StoreError::new(StoreErrorKind::InvalidRequest, "injected by the test")
}

/// What a file holds after `bytes` are written at `offset` over `file` (a gap past its end
/// reads as zeros); returns the end of the write.
fn overlay(file: &mut Vec<u8>, offset: u64, bytes: &[u8]) -> usize {
    let end = offset as usize + bytes.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[offset as usize..end].copy_from_slice(bytes);
    end
}

/// The permission bits of `path`.
fn perm(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn create_write_close_stores_the_exact_bytes() {
    let mount = TestMount::writable(MemStore::new());
    let mut file = File::create(mount.path("hello.txt")).unwrap();
    file.write_all(b"hello, ").unwrap();
    file.write_all(b"world\n").unwrap();
    close(file).unwrap();
    assert_eq!(mount.object("hello.txt"), b"hello, world\n");
    assert_eq!(fs::metadata(mount.path("hello.txt")).unwrap().len(), 13);
    assert_eq!(
        fs::read(mount.path("hello.txt")).unwrap(),
        b"hello, world\n"
    );

    // An empty file is an empty object; O_EXCL refuses an existing name.
    close(File::create(mount.path("empty")).unwrap()).unwrap();
    assert_eq!(mount.object("empty"), b"");
    let err = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mount.path("hello.txt"))
        .unwrap_err();
    assert_eq!(errno(&err), libc::EEXIST);
    // In a new directory too.
    fs::create_dir(mount.path("dir")).unwrap();
    fs::write(mount.path("dir/inner.txt"), "inner").unwrap();
    assert_eq!(mount.object("dir/inner.txt"), b"inner");
}

/// `open(O_CREAT | O_RDONLY)` (how some programs make lock files) creates an empty file
/// that stays: it is in the bucket once closed.
#[test]
fn a_file_created_read_only_is_stored_on_close() {
    let mount = TestMount::writable(MemStore::new());
    let path = mount.path("lock");
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CREAT)
        .open(&path)
        .unwrap();
    close(file).unwrap();
    assert_eq!(mount.object("lock"), b"");
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    assert!(mount.fresh_mount().path("lock").exists());
}

#[test]
fn a_large_sequential_write_is_uploaded_exactly() {
    let mount = TestMount::writable(MemStore::new());
    let len = 24 * MIB as usize + 4321;
    let data = pseudo_random(len, 7);
    // `dd bs=1M`: one write call per MiB.
    let mut file = File::create(mount.path("big.bin")).unwrap();
    for block in data.chunks(MIB as usize) {
        file.write_all(block).unwrap();
    }
    close(file).unwrap();
    assert!(mount.object("big.bin") == data, "the object differs");
    // Streamed in parts: a multipart ETag (`"…-N"`), and no upload left open.
    let etag = mount.store().meta("big.bin").unwrap().etag.unwrap();
    let parts = len.div_ceil(WRITE_PART_SIZE as usize);
    assert!(
        etag.as_str().contains(&format!("-{parts}")),
        "not a {parts}-part upload: {etag:?}"
    );
    assert_eq!(mount.store().open_uploads(), 0);
    assert!(fs::read(mount.path("big.bin")).unwrap() == data);
    assert_eq!(
        fs::metadata(mount.path("big.bin")).unwrap().len(),
        len as u64
    );
}

fn o_trunc_overwrites_and_o_append_appends(cache: CacheSetting) {
    let store = MemStore::new();
    store.insert("trunc.txt", "the old content, longer than the new one");
    store.insert("log.txt", "one\n");
    let mount = TestMount::cached(store, write_config(), cache);

    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mount.path("trunc.txt"))
        .unwrap();
    assert_eq!(file.metadata().unwrap().len(), 0);
    file.write_all(b"new").unwrap();
    close(file).unwrap();
    assert_eq!(mount.object("trunc.txt"), b"new");
    assert_eq!(fs::read(mount.path("trunc.txt")).unwrap(), b"new");

    for line in ["two\n", "three\n"] {
        let mut file = OpenOptions::new()
            .append(true)
            .open(mount.path("log.txt"))
            .unwrap();
        file.write_all(line.as_bytes()).unwrap();
        close(file).unwrap();
    }
    assert_eq!(mount.object("log.txt"), b"one\ntwo\nthree\n");
    // O_APPEND writes go to the end whatever the offset asked for.
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(mount.path("log.txt"))
        .unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"four\n").unwrap();
    file.write_at(b"five\n", 1).unwrap();
    let mut all = String::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut all).unwrap();
    assert_eq!(all, "one\ntwo\nthree\nfour\nfive\n");
    close(file).unwrap();
    assert_eq!(mount.object("log.txt"), b"one\ntwo\nthree\nfour\nfive\n");
}

test_with_every_cache!(o_trunc_overwrites_and_o_append_appends);

fn pwrites_are_read_back_before_and_after_close(cache: CacheSetting) {
    let base = pseudo_random(3 * MIB as usize, 11);
    let store = MemStore::new();
    store.insert("data.bin", base.clone());
    let mount = TestMount::cached(store, write_config(), cache);
    let path = mount.path("data.bin");
    let mut expected = base.to_vec();
    let writes: &[(u64, usize)] = &[
        (0, 10),
        (4095, 2),
        (MIB - 1, 70_000),
        (2 * MIB + 12_345, 100),
        // Past the end: a gap of zeros, then the bytes.
        (4 * MIB + 17, 5000),
    ];

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let other = File::open(&path).unwrap();
    for (i, &(offset, len)) in writes.iter().enumerate() {
        let bytes = pseudo_random(len, 100 + i as u64);
        file.write_all_at(&bytes, offset).unwrap();
        let end = overlay(&mut expected, offset, &bytes);
        // Each write is visible at once, through this handle and through another one.
        let around = offset.saturating_sub(3);
        let want = &expected[around as usize..(end + 3).min(expected.len())];
        assert!(read_at(&file, around, want.len()).unwrap() == want);
        assert!(read_at(&other, around, want.len()).unwrap() == want);
    }
    assert_eq!(file.metadata().unwrap().len(), expected.len() as u64);
    assert!(read_at(&other, 0, expected.len() + 10).unwrap() == expected);
    // The store has the old object until a close.
    assert!(mount.object("data.bin") == base);
    // A handle opened now sees the unsaved file too.
    assert!(fs::read(&path).unwrap() == expected);
    close(other).unwrap();
    close(file).unwrap();
    assert!(mount.object("data.bin") == expected, "the object differs");
    assert!(fs::read(&path).unwrap() == expected);
    assert!(fs::read(mount.fresh_mount().path("data.bin")).unwrap() == expected);
}

test_with_every_cache!(pwrites_are_read_back_before_and_after_close);

/// Write-only handles bypass the page cache (direct I/O); a reader that already has the
/// file's pages cached must still see every write at once, not its stale pages.
#[test]
fn writes_of_a_write_only_handle_reach_readers_with_cached_pages() {
    let base = pseudo_random(2 * MIB as usize, 21);
    let store = MemStore::new();
    store.insert("data.bin", base.clone());
    let mount = TestMount::writable(store);
    let path = mount.path("data.bin");
    let reader = File::open(&path).unwrap();
    // Fill the page cache with the whole file through the reader.
    assert!(read_at(&reader, 0, base.len()).unwrap() == base);

    let writer = OpenOptions::new().write(true).open(&path).unwrap();
    let mut expected = base.to_vec();
    for (i, &(offset, len)) in [
        (0u64, 10usize),
        (4095, 2),
        (MIB - 7, 9000),
        (2 * MIB + 5, 300),
    ]
    .iter()
    .enumerate()
    {
        let bytes = pseudo_random(len, 200 + i as u64);
        writer.write_all_at(&bytes, offset).unwrap();
        overlay(&mut expected, offset, &bytes);
        assert!(
            read_at(&reader, 0, expected.len() + 1).unwrap() == expected,
            "the reader missed write {i}"
        );
    }
    close(writer).unwrap();
    assert!(mount.object("data.bin") == expected, "the object differs");
    assert!(read_at(&reader, 0, expected.len() + 1).unwrap() == expected);
    close(reader).unwrap();
}

#[test]
fn ftruncate_shrinks_and_grows() {
    let base = pseudo_random(10_000, 3);
    let store = MemStore::new();
    store.insert("t.bin", base.clone());
    let mount = TestMount::writable(store);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mount.path("t.bin"))
        .unwrap();
    file.set_len(4000).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 4000);
    assert!(read_at(&file, 0, 10_000).unwrap() == base[..4000]);
    file.set_len(9000).unwrap();
    let mut expected = base[..4000].to_vec();
    expected.resize(9000, 0);
    assert!(read_at(&file, 0, 10_000).unwrap() == expected);
    file.write_all_at(b"tail", 8000).unwrap();
    expected[8000..8004].copy_from_slice(b"tail");
    close(file).unwrap();
    assert!(mount.object("t.bin") == expected);

    // truncate(2) by path, without an open file, is saved at once.
    let path =
        std::ffi::CString::new(mount.path("t.bin").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: `path` is a valid NUL-terminated string.
    assert_eq!(unsafe { libc::truncate(path.as_ptr(), 100) }, 0);
    assert!(mount.object("t.bin") == expected[..100]);
    assert_eq!(fs::metadata(mount.path("t.bin")).unwrap().len(), 100);
}

#[test]
fn a_failed_upload_fails_fsync_and_close_and_keeps_the_old_object() {
    let store = MemStore::new();
    store.insert("small.txt", "old small");
    let old_big = pseudo_random(2 * MIB as usize, 5);
    store.insert("big.bin", old_big.clone());
    let (mount, faults) = TestMount::with_faults(store, write_config());

    // A single PUT fails: fsync says EIO and the store keeps the old object. The data stays
    // dirty, so the close tries again and succeeds.
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mount.path("small.txt"))
        .unwrap();
    file.write_all(b"new small content").unwrap();
    faults.fail_nth(Op::Put, 1, injected());
    let err = file.sync_all().unwrap_err();
    assert_eq!(errno(&err), libc::EIO, "{err}");
    assert_eq!(mount.object("small.txt"), b"old small");
    close(file).unwrap();
    assert_eq!(mount.object("small.txt"), b"new small content");

    // Completing a streamed multipart upload fails: close(2) itself says EIO, the old
    // object stays, and the upload is aborted.
    let new_big = pseudo_random(12 * MIB as usize, 6);
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mount.path("big.bin"))
        .unwrap();
    file.write_all(&new_big).unwrap();
    faults.fail_next(Op::CompleteMultipart, 1, injected());
    faults.fail_next(Op::Put, 1, injected());
    let err = close(file).unwrap_err();
    assert_eq!(errno(&err), libc::EIO, "{err}");
    assert!(
        mount.object("big.bin") == old_big,
        "the old object was changed"
    );
    faults.clear();
    // The abort runs in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mount.store().open_uploads() != 0 {
        assert!(Instant::now() < deadline, "the upload was not aborted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fs::read(mount.fresh_mount().path("big.bin")).unwrap() == old_big);

    // A new file whose upload fails does not appear in the store.
    let mut file = File::create(mount.path("never.txt")).unwrap();
    file.write_all(b"lost").unwrap();
    faults.fail_next(Op::Put, 1, injected());
    let err = close(file).unwrap_err();
    assert_eq!(errno(&err), libc::EIO, "{err}");
    assert_eq!(mount.store().get_bytes("never.txt"), None);
}

#[test]
fn a_conflicting_upload_is_refused_unless_last_writer_wins() {
    let store = MemStore::new();
    store.insert("shared.txt", "version 1");
    let mount = TestMount::writable(store.clone());
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mount.path("shared.txt"))
        .unwrap();
    file.write_all(b"ours").unwrap();
    // Another machine saves the file meanwhile.
    store.insert("shared.txt", "theirs");
    let err = close(file).unwrap_err();
    assert_eq!(errno(&err), libc::EIO, "{err}");
    assert_eq!(mount.object("shared.txt"), b"theirs");
    drop(mount);

    let mut config = write_config();
    config.last_writer_wins = true;
    let mount = TestMount::with(store.clone(), config, MountOptions::default());
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mount.path("shared.txt"))
        .unwrap();
    file.write_all(b"ours").unwrap();
    store.insert("shared.txt", "theirs again");
    close(file).unwrap();
    assert_eq!(mount.object("shared.txt"), b"ours");
}

#[test]
fn guard_rails_refuse_deletes_and_overwrites_with_eperm() {
    let store = MemStore::new();
    store.insert("keep.txt", "keep");
    store.insert("dir/inner.txt", "inner");
    let mut config = write_config();
    config.allow_delete = false;
    let mount = TestMount::with(store.clone(), config, MountOptions::default());
    let eperm = |what: &str, result: std::io::Result<()>| {
        let err = result.expect_err(what);
        assert_eq!(errno(&err), libc::EPERM, "{what}: {err}");
    };
    eperm("unlink", fs::remove_file(mount.path("keep.txt")));
    eperm("rmdir", fs::remove_dir(mount.path("dir")));
    eperm(
        "rename",
        fs::rename(mount.path("keep.txt"), mount.path("moved.txt")),
    );
    fs::write(mount.path("new.txt"), "new").unwrap();
    fs::write(mount.path("keep.txt"), "changed").unwrap();
    assert_eq!(mount.object("keep.txt"), b"changed");
    drop(mount);

    let mut config = write_config();
    config.allow_overwrite = false;
    let mount = TestMount::with(store, config, MountOptions::default());
    eperm(
        "overwrite",
        fs::write(mount.path("keep.txt"), "again").map(drop),
    );
    eperm(
        "open for writing",
        OpenOptions::new()
            .write(true)
            .open(mount.path("keep.txt"))
            .map(drop),
    );
    fs::write(mount.path("brand-new.txt"), "fresh").unwrap();
    assert_eq!(mount.object("brand-new.txt"), b"fresh");
    assert_eq!(mount.object("keep.txt"), b"changed");
    // O_CREAT|O_EXCL of a new name is a creation, not an overwrite.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(mount.path("exclusive.txt"))
        .unwrap();
    close(file).unwrap();
    assert_eq!(mount.object("exclusive.txt"), b"");
}

#[test]
fn attributes_set_on_an_open_written_file_are_kept() {
    // What `tar x` and `cp -p` do: write, then fchmod/futimens on the open descriptor, and
    // only then close.
    let store = MemStore::new();
    store.insert("old.txt", "old content");
    let mount = TestMount::writable(store);
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for (name, truncate) in [("new.txt", false), ("old.txt", true)] {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(mount.path(name))
            .unwrap();
        file.write_all(b"written").unwrap();
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("fchmod of {name}: {e}"));
        file.set_modified(past)
            .unwrap_or_else(|e| panic!("futimens of {name}: {e}"));
        close(file).unwrap_or_else(|e| panic!("close of {name}: {e}"));
        let fresh = mount.fresh_mount();
        let meta = fs::metadata(fresh.path(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{name}");
        assert_eq!(meta.modified().unwrap(), past, "{name}");
        assert_eq!(fs::read(fresh.path(name)).unwrap(), b"written", "{name}");
    }
}

/// A chmod of a file open for writing but not yet written (stored at once, by a metadata
/// rewrite) survives the writes that follow: neither the mount nor the object goes back
/// to the mode the file was opened with.
#[test]
fn a_chmod_before_the_first_write_of_an_open_file_is_kept() {
    let store = MemStore::new();
    store.insert("data.bin", pseudo_random(10_000, 5));
    let mount = TestMount::writable(store);
    let path = mount.path("data.bin");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_permissions(fs::Permissions::from_mode(0o755))
        .unwrap();
    assert_eq!(perm(&path), 0o755);
    file.write_all_at(b"more", 10_000).unwrap();
    assert_eq!(perm(&path), 0o755, "after the first write");
    file.set_len(12_345).unwrap();
    close(file).unwrap();
    assert_eq!(perm(&path), 0o755, "after close");
    assert_eq!(
        perm(&mount.fresh_mount().path("data.bin")),
        0o755,
        "in the bucket"
    );
}

/// A chmod keeps the object's size and (copied in place) its ETag; the listing cached
/// before it must still not bring the old mode back: with readdirplus, a listing sets
/// the kernel's attributes of every entry.
#[test]
fn a_chmod_shows_in_the_listings_that_follow() {
    let store = MemStore::new();
    store.insert("dir/file", "content");
    let mount = TestMount::writable(store);
    let dir = mount.path("dir");
    let path = mount.path("dir/file");
    let listed_mode = || {
        let entry = fs::read_dir(&dir).unwrap().next().unwrap().unwrap();
        let _ = entry.metadata();
        perm(&path)
    };
    assert_eq!(listed_mode(), 0o644);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(perm(&path), 0o700);
    assert_eq!(listed_mode(), 0o700, "after a listing");
    // And through an open descriptor that has not written yet.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_permissions(fs::Permissions::from_mode(0o750))
        .unwrap();
    assert_eq!(listed_mode(), 0o750, "fchmod, then a listing");
    close(file).unwrap();
    assert_eq!(listed_mode(), 0o750, "after close");
}

/// A directory renamed while a file created in it is still open and unsaved: the file
/// moves with it, and nothing answers at the old place, not even after a new directory
/// of the old name is made.
#[test]
fn a_file_created_in_a_renamed_directory_leaves_nothing_behind() {
    let mount = TestMount::writable(MemStore::new());
    fs::create_dir_all(mount.path("d/e")).unwrap();
    fs::create_dir(mount.path("other")).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(mount.path("d/e/b"))
        .unwrap();
    file.set_len(7110).unwrap();
    fs::rename(mount.path("d/e"), mount.path("d/a")).unwrap();
    fs::create_dir(mount.path("d/e")).unwrap();
    assert_eq!(fs::read_dir(mount.path("d/e")).unwrap().count(), 0);
    let err = fs::metadata(mount.path("d/e/b")).unwrap_err();
    assert_eq!(errno(&err), libc::ENOENT, "stat of the old name");
    let err = fs::rename(mount.path("d/e/b"), mount.path("other")).unwrap_err();
    assert_eq!(errno(&err), libc::ENOENT, "rename of the old name");
    assert_eq!(fs::metadata(mount.path("d/a/b")).unwrap().len(), 7110);
    close(file).unwrap();
    assert_eq!(mount.object("d/a/b"), vec![0; 7110]);
    assert!(mount.store().meta("d/e/b").is_none());
}

/// A directory's mode lives on its marker, which LIST does not show: after a rename, the
/// listing of the new parent must not replace the mode this mount knows with the default.
#[test]
fn a_renamed_directory_keeps_its_mode_in_listings() {
    let mount = TestMount::writable(MemStore::new());
    fs::create_dir_all(mount.path("e/inner")).unwrap();
    fs::create_dir(mount.path("d")).unwrap();
    fs::set_permissions(mount.path("e"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(perm(&mount.path("e")), 0o700);
    fs::rename(mount.path("e"), mount.path("d/a")).unwrap();
    let listed: Vec<_> = fs::read_dir(mount.path("d"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(listed, ["a"]);
    assert_eq!(
        perm(&mount.path("d/a")),
        0o700,
        "after a listing of its new parent"
    );
    assert_eq!(perm(&mount.path("d/a/inner")), 0o755);
    assert_eq!(
        perm(&mount.fresh_mount().path("d/a")),
        0o700,
        "in the bucket"
    );
}

/// fchmod through a descriptor of a directory removed since it was opened, or of an
/// unlinked file, succeeds as on a local file system (nothing is left to store).
#[test]
fn attributes_of_removed_files_and_directories_can_still_be_set() {
    let mount = TestMount::writable(MemStore::new());
    fs::create_dir(mount.path("dir")).unwrap();
    let dir = File::open(mount.path("dir")).unwrap();
    fs::remove_dir(mount.path("dir")).unwrap();
    dir.set_permissions(fs::Permissions::from_mode(0o700))
        .expect("fchmod of a removed directory");

    let mut file = File::create(mount.path("file")).unwrap();
    file.write_all(b"abc").unwrap();
    file.sync_all().unwrap();
    fs::remove_file(mount.path("file")).unwrap();
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .expect("fchmod of an unlinked file");
    close(file).unwrap();
    drop(dir);
    assert!(mount.store().meta("file").is_none());
    assert!(mount.store().meta("dir/").is_none());
    assert!(!mount.path("dir").exists());

    // The names now hold new objects (a file where the directory was, a new file of the
    // unlinked one's name): fchmod through the old descriptors leaves them alone.
    fs::create_dir(mount.path("dir2")).unwrap();
    let dir = File::open(mount.path("dir2")).unwrap();
    fs::remove_dir(mount.path("dir2")).unwrap();
    fs::write(mount.path("dir2"), "a file now").unwrap();
    let mut file = File::create(mount.path("file2")).unwrap();
    file.write_all(b"old").unwrap();
    file.sync_all().unwrap();
    fs::remove_file(mount.path("file2")).unwrap();
    fs::write(mount.path("file2"), "new").unwrap();
    dir.set_permissions(fs::Permissions::from_mode(0o700))
        .expect("fchmod of a directory whose name is a file now");
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .expect("fchmod of an unlinked file whose name was reused");
    assert_eq!(perm(&mount.path("dir2")), 0o644);
    assert_eq!(
        perm(&mount.path("file2")),
        0o644,
        "the new file kept its mode"
    );
    assert_eq!(fs::read(mount.path("file2")).unwrap(), b"new");
    close(file).unwrap();
}

/// A directory removed while a descriptor is open on it, then made again under the same
/// name, is a new directory: files can be created in it (the kernel marks the removed
/// one dead, so the new one must not reuse its inode).
#[test]
fn a_directory_made_again_after_rmdir_is_usable() {
    let mount = TestMount::writable(MemStore::new());
    fs::create_dir(mount.path("d")).unwrap();
    let old = File::open(mount.path("d")).unwrap();
    fs::remove_dir(mount.path("d")).unwrap();
    fs::create_dir(mount.path("d")).unwrap();
    drop(old);
    fs::write(mount.path("d/a"), "inside").unwrap();
    assert_eq!(mount.object("d/a"), b"inside");
    assert_eq!(fs::read_dir(mount.path("d")).unwrap().count(), 1);
}
