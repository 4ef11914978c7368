//! The vault layout through the real binary: `s3vfs vault init`, `s3vfs mount --layout
//! vault` (files written, read, renamed, read again after a remount), what reaches the
//! bucket (neither a file's bytes nor its name), wrong passphrases, `s3vfs vault passwd`,
//! and hard links.

mod common;

use common::binary::{
    is_mounted, mount_command, new_mountpoint, s3vfs_command, serve_bucket, unmount,
    wait_until_mounted, Binary, DetachOnDrop,
};
use common::{run, MIB};
use s3vfs_fuse::local::{pseudo_random, LocalS3};
use s3vfs_testkit::MemStore;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

/// The vault's place in the bucket `serve_bucket` serves.
const TARGET: &str = "bucket/vault";
/// The passphrase the tests' vaults are made with.
const PASSPHRASE: &str = "correct horse battery staple";

/// Argon2id at its cheapest and small chunks, so that a test derives keys fast and a file
/// of a few MiB is many chunks.
const INIT_FLAGS: &[&str] = &[
    "--kdf-memory",
    "64K",
    "--kdf-passes",
    "1",
    "--chunk-size",
    "64K",
];

/// Runs `s3vfs ARGS…` against `local` with `S3VFS_PASSPHRASE=passphrase` (and no other
/// passphrase source than those in `args`) to its end.
fn s3vfs(local: &LocalS3, args: &[&str], passphrase: &str) -> Output {
    s3vfs_command(local, args)
        .env("S3VFS_PASSPHRASE", passphrase)
        .env_remove("S3VFS_NEW_PASSPHRASE")
        .output()
        .expect("cannot run s3vfs")
}

/// `s3vfs vault init TARGET` with [`PASSPHRASE`], which must succeed.
fn init_vault(local: &LocalS3) {
    let mut args = vec!["vault", "init", TARGET];
    args.extend_from_slice(INIT_FLAGS);
    let out = s3vfs(local, &args, PASSPHRASE);
    assert!(out.status.success(), "vault init failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Made a vault"), "{stdout}");
}

/// `s3vfs mount --layout vault --foreground TARGET mountpoint` with `passphrase`, waited
/// for until mounted.
fn mount_vault(local: &LocalS3, mountpoint: &Path, passphrase: &str) -> Binary {
    mount_vault_with(local, mountpoint, passphrase, &[])
}

/// [`mount_vault`] with more mount flags.
fn mount_vault_with(
    local: &LocalS3,
    mountpoint: &Path,
    passphrase: &str,
    flags: &[&str],
) -> Binary {
    let mount = Binary::start(
        mount_command(local, TARGET, mountpoint)
            .args(["--layout", "vault", "--foreground"])
            .args(flags)
            .env("S3VFS_PASSPHRASE", passphrase),
    );
    wait_until_mounted(mountpoint);
    mount
}

/// Stops a foreground mount with SIGINT; it must exit with 0 and unmounted.
fn stop(mount: Binary, mountpoint: &Path) {
    mount.signal(libc::SIGINT);
    let out = mount.wait();
    assert!(out.status.success(), "exit after SIGINT: {out:?}");
    assert!(!is_mounted(mountpoint), "still mounted after SIGINT");
}

/// A bucket served on loopback (and the runtime serving it) holding a fresh vault at
/// [`TARGET`], and a mountpoint in a temporary directory.
fn serve_vault() -> (
    MemStore,
    tokio::runtime::Runtime,
    LocalS3,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let store = MemStore::new();
    let (runtime, local) = serve_bucket(&store);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = new_mountpoint(&dir);
    init_vault(&local);
    (store, runtime, local, dir, mountpoint)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_vault_is_made_mounted_written_renamed_and_read_after_a_remount() {
    let (store, runtime, local, _dir, mountpoint) = serve_vault();
    let _cleanup = DetachOnDrop(&mountpoint);

    // A second init over it is refused, and so is a prefix holding other objects.
    let again = s3vfs(&local, &["vault", "init", TARGET], PASSPHRASE);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    store.insert("plain/file.txt", "not a vault");
    let plain = s3vfs(&local, &["vault", "init", "bucket/plain"], PASSPHRASE);
    assert!(!plain.status.success(), "{plain:?}");

    let mount = mount_vault(&local, &mountpoint, PASSPHRASE);
    let secret = b"PLAINTEXT-MARKER the quick brown fox, stored encrypted".repeat(50);
    let big = pseudo_random(5 * MIB as usize + 4321, 13);
    fs::create_dir(mountpoint.join("private-dir-name")).unwrap();
    fs::write(
        mountpoint.join("private-dir-name/confidential-name.txt"),
        &secret,
    )
    .unwrap();
    fs::write(mountpoint.join("private-dir-name/big.bin"), &big).unwrap();
    assert_eq!(
        fs::read(mountpoint.join("private-dir-name/confidential-name.txt")).unwrap(),
        secret
    );
    assert!(fs::read(mountpoint.join("private-dir-name/big.bin")).unwrap() == big);

    fs::rename(
        mountpoint.join("private-dir-name"),
        mountpoint.join("renamed-dir"),
    )
    .unwrap();
    assert!(!mountpoint.join("private-dir-name").exists());
    assert!(fs::read(mountpoint.join("renamed-dir/big.bin")).unwrap() == big);
    stop(mount, &mountpoint);

    let mount = mount_vault(&local, &mountpoint, PASSPHRASE);
    let mut names: Vec<_> = fs::read_dir(mountpoint.join("renamed-dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big.bin", "confidential-name.txt"]);
    assert_eq!(
        fs::read(mountpoint.join("renamed-dir/confidential-name.txt")).unwrap(),
        secret
    );
    assert!(fs::read(mountpoint.join("renamed-dir/big.bin")).unwrap() == big);
    stop(mount, &mountpoint);

    // The bucket holds neither a file's bytes nor a name.
    let keys: Vec<String> = store
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("vault/"))
        .collect();
    assert!(keys.len() > 5 * MIB as usize / (256 * 1024), "{keys:?}");
    for key in &keys {
        for name in ["private-dir-name", "renamed-dir", "confidential", "big.bin"] {
            assert!(!key.contains(name), "{key} shows a file name");
        }
        let body = store.get_bytes(key).unwrap();
        assert!(
            !contains(&body, b"PLAINTEXT-MARKER"),
            "{key} holds plaintext"
        );
        assert!(!contains(&body, b"confidential-name"), "{key} holds a name");
        assert!(
            !contains(&body, &big[MIB as usize..MIB as usize + 64]),
            "{key}"
        );
    }
    runtime.block_on(local.stop());
}

#[test]
fn a_wrong_passphrase_mounts_nothing_and_passwd_replaces_the_passphrase() {
    let (store, runtime, local, dir, mountpoint) = serve_vault();
    let _cleanup = DetachOnDrop(&mountpoint);
    let mount_args = [
        "mount",
        "--layout",
        "vault",
        TARGET,
        mountpoint.to_str().unwrap(),
    ];

    // In the background: the waiting parent prints why and exits non-zero.
    let wrong = s3vfs(&local, &mount_args, "not the passphrase");
    assert!(!wrong.status.success(), "{wrong:?}");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!is_mounted(&mountpoint));

    // passwd with a wrong old passphrase changes nothing.
    let mut passwd = s3vfs_command(&local, &["vault", "passwd", TARGET, "--kdf-memory", "64K"]);
    let out = passwd
        .env("S3VFS_PASSPHRASE", "not the passphrase")
        .env("S3VFS_NEW_PASSPHRASE", "new passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));

    // The new passphrase from a file only its owner reads.
    let new_file = dir.path().join("new-passphrase");
    fs::write(&new_file, "the new passphrase\n").unwrap();
    fs::set_permissions(&new_file, fs::Permissions::from_mode(0o644)).unwrap();
    let new_arg = new_file.to_str().unwrap();
    // No cost flags: the vault keeps the (cheap) costs it was made with.
    let passwd_args = ["vault", "passwd", TARGET, "--new-passphrase-file", new_arg];
    let open_file = s3vfs(&local, &passwd_args, PASSPHRASE);
    assert!(!open_file.status.success(), "{open_file:?}");
    let stderr = String::from_utf8_lossy(&open_file.stderr);
    assert!(stderr.contains("readable by other users"), "{stderr}");
    fs::set_permissions(&new_file, fs::Permissions::from_mode(0o600)).unwrap();
    let costs = || {
        let store: std::sync::Arc<dyn s3vfs::store::Backend> = std::sync::Arc::new(store.clone());
        runtime
            .block_on(s3vfs::vault::kdf_params(store, "vault/"))
            .unwrap()
    };
    let before = costs();
    let changed = s3vfs(&local, &passwd_args, PASSPHRASE);
    assert!(changed.status.success(), "{changed:?}");
    assert_eq!(costs(), before, "passwd keeps the vault's costs");
    assert_eq!(
        (before.m_cost, before.t_cost),
        (64, 1),
        "init's --kdf-* flags"
    );

    let old = s3vfs(&local, &mount_args, PASSPHRASE);
    assert!(!old.status.success(), "the old passphrase still opens it");
    assert!(String::from_utf8_lossy(&old.stderr).contains("wrong passphrase"));
    assert!(!is_mounted(&mountpoint));

    // The new one mounts (in the background, through --passphrase-file).
    let mut background = mount_command(&local, TARGET, &mountpoint);
    let out = background
        .args(["--layout", "vault", "--passphrase-file", new_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(is_mounted(&mountpoint));
    fs::write(mountpoint.join("after-passwd.txt"), "still works").unwrap();
    unmount(&mountpoint);
    let mount = mount_vault(&local, &mountpoint, "the new passphrase");
    assert_eq!(
        fs::read_to_string(mountpoint.join("after-passwd.txt")).unwrap(),
        "still works"
    );
    stop(mount, &mountpoint);
    runtime.block_on(local.stop());
}

#[test]
fn plain_layout_flags_are_refused_with_a_vault() {
    let (_store, runtime, local, _dir, mountpoint) = serve_vault();
    let out = mount_command(&local, TARGET, &mountpoint)
        .args([
            "--layout",
            "vault",
            "--no-overwrite",
            "--cache-memory",
            "1M",
        ])
        .env("S3VFS_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--no-overwrite, --cache-memory") && stderr.contains("plain layout"),
        "{stderr}"
    );
    assert!(!is_mounted(&mountpoint));
    runtime.block_on(local.stop());
}

#[test]
fn hard_links_are_one_file_with_two_names_in_a_vault_mount() {
    let (_store, runtime, local, _dir, mountpoint) = serve_vault();
    let _cleanup = DetachOnDrop(&mountpoint);
    let mount = mount_vault(&local, &mountpoint, PASSPHRASE);
    let (a, b) = (mountpoint.join("a"), mountpoint.join("b"));
    fs::write(&a, "written as a").unwrap();

    run(Command::new("ln").arg(&a).arg(&b));
    let (meta_a, meta_b) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!(meta_a.ino(), meta_b.ino());
    assert_eq!((meta_a.nlink(), meta_b.nlink()), (2, 2));
    assert_eq!(fs::read_to_string(&b).unwrap(), "written as a");

    let mut through_b = OpenOptions::new().append(true).open(&b).unwrap();
    through_b.write_all(b", then through b").unwrap();
    through_b.sync_all().unwrap();
    drop(through_b);
    assert_eq!(
        fs::read_to_string(&a).unwrap(),
        "written as a, then through b"
    );

    fs::remove_file(&a).unwrap();
    assert!(!a.exists());
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 1);
    assert_eq!(
        fs::read_to_string(&b).unwrap(),
        "written as a, then through b"
    );
    stop(mount, &mountpoint);
    runtime.block_on(local.stop());
}

#[test]
fn a_close_the_vault_cannot_store_is_kept_and_recover_stores_it() {
    let (store, runtime, local, dir, mountpoint) = serve_vault();
    let recovery = dir.path().join("recovery");
    let _cleanup = DetachOnDrop(&mountpoint);
    let inodes = |store: &MemStore| -> Vec<String> {
        let mut keys: Vec<String> = store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("vault/i/"))
            .collect();
        keys.sort();
        keys
    };
    let before = inodes(&store);

    let recovery_arg = recovery.to_str().unwrap();
    let mount = mount_vault_with(
        &local,
        &mountpoint,
        PASSPHRASE,
        &["--recovery-dir", recovery_arg],
    );
    let original = pseudo_random(300_000, 21);
    fs::write(mountpoint.join("f"), &original).unwrap();
    let key = inodes(&store)
        .into_iter()
        .find(|k| !before.contains(k))
        .expect("the file's inode");
    let stored_inode = store.get_bytes(&key).unwrap();

    let mut file = OpenOptions::new()
        .write(true)
        .open(mountpoint.join("f"))
        .unwrap();
    file.write_all(b"CHANGED").unwrap();
    // The inode is damaged under the mount: the close's If-Match fails, and the version
    // read again does not authenticate, so the change cannot be stored.
    store.insert(&key, "not an inode");
    let closed = common::close(file);
    assert!(closed.is_err(), "the close reports the failure");
    // The release that keeps the change follows close(2) asynchronously.
    let manifests = || -> Vec<_> {
        fs::read_dir(&recovery)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while manifests().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(manifests().len(), 1, "kept once: {:?}", manifests());
    stop(mount, &mountpoint);

    // The inode back as it was (same bytes, same ETag): recover stores the change.
    store.insert(&key, stored_inode);
    let listed = s3vfs(&local, &["recover", recovery_arg], PASSPHRASE);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("a vault's file"),
        "{listed:?}"
    );
    let recovered = s3vfs(
        &local,
        &["recover", recovery_arg, "--upload-all"],
        PASSPHRASE,
    );
    assert!(recovered.status.success(), "{recovered:?}");
    assert!(fs::read_dir(&recovery).unwrap().all(|e| e
        .unwrap()
        .path()
        .extension()
        .is_none_or(|x| x != "json")));

    let mount = mount_vault(&local, &mountpoint, PASSPHRASE);
    let mut expected = original.to_vec();
    expected[..7].copy_from_slice(b"CHANGED");
    assert!(fs::read(mountpoint.join("f")).unwrap() == expected);
    stop(mount, &mountpoint);
    runtime.block_on(local.stop());
}

#[test]
fn vault_gc_deletes_what_nothing_references_and_fsck_finds_a_missing_chunk() {
    let (store, runtime, local, _dir, mountpoint) = serve_vault();
    let _cleanup = DetachOnDrop(&mountpoint);
    let chunks = |store: &MemStore| -> Vec<String> {
        store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("vault/c/"))
            .collect()
    };
    let mount = mount_vault(&local, &mountpoint, PASSPHRASE);
    fs::write(mountpoint.join("f"), pseudo_random(600_000, 31)).unwrap();
    let kept = pseudo_random(600_000, 32);
    fs::write(mountpoint.join("f"), &kept).unwrap();
    stop(mount, &mountpoint);

    // Everything two hours old: past gc's default grace of one hour.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    for key in store.keys() {
        store.set_last_modified(&key, old);
    }
    let before = chunks(&store);
    let checked = s3vfs(&local, &["vault", "fsck", TARGET], PASSPHRASE);
    assert!(checked.status.success(), "{checked:?}");
    let dry = s3vfs(&local, &["vault", "gc", TARGET, "--dry-run"], PASSPHRASE);
    assert!(dry.status.success(), "{dry:?}");
    assert_eq!(chunks(&store), before, "a dry run deletes nothing");
    let collected = s3vfs(&local, &["vault", "gc", TARGET], PASSPHRASE);
    assert!(collected.status.success(), "{collected:?}");
    let after = chunks(&store);
    assert!(
        after.len() < before.len(),
        "the overwritten content's chunks are gone: {} then {}\n{collected:?}",
        before.len(),
        after.len()
    );
    let read = s3vfs(
        &local,
        &["vault", "fsck", TARGET, "--read-data"],
        PASSPHRASE,
    );
    assert!(read.status.success(), "{read:?}");
    let mount = mount_vault(&local, &mountpoint, PASSPHRASE);
    assert!(fs::read(mountpoint.join("f")).unwrap() == kept);
    stop(mount, &mountpoint);

    store.remove(&after[0]);
    let broken = s3vfs(
        &local,
        &["vault", "fsck", TARGET, "--read-data"],
        PASSPHRASE,
    );
    assert_eq!(broken.status.code(), Some(1), "{broken:?}");
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("1 missing"),
        "{broken:?}"
    );
    runtime.block_on(local.stop());
}
