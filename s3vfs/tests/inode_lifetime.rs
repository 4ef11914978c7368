//! Inode lifetime: the kernel's lookup counts through the `Vfs` trait. Every entry handed
//! out counts one lookup, `forget` takes them back, and an inode nobody holds (no lookup,
//! no open handle) leaves the table, so walking a large bucket does not grow it for good.

use bytes::Bytes;
use s3vfs::vfs::{FileKind, Ino, OpenFlags, Vfs};
use s3vfs::{BucketsFs, FsConfig, S3Fs, S3Vfs, VfsResult};
use s3vfs_testkit::{MemBuckets, MemStore};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

fn rw() -> FsConfig {
    FsConfig::default().with_read_only(false)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn mount(store: &MemStore) -> Arc<S3Fs> {
    S3Fs::new(Arc::new(store.clone()), rw())
}

fn errno<T: std::fmt::Debug>(result: VfsResult<T>) -> i32 {
    result.expect_err("expected an error").errno()
}

async fn lookup(fs: &S3Fs, parent: Ino, name: &str) -> Ino {
    fs.lookup(parent, os(name))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .attr
        .ino
}

#[tokio::test]
async fn an_inode_stays_until_its_last_lookup_is_forgotten() {
    let store = MemStore::new();
    store.insert("f", "data");
    let fs = mount(&store);
    let f = lookup(&fs, Ino::ROOT, "f").await;
    assert_eq!(lookup(&fs, Ino::ROOT, "f").await, f);
    assert_eq!(lookup(&fs, Ino::ROOT, "f").await, f);
    assert_eq!(fs.inode_count(), 2);

    fs.forget(f, 2);
    assert_eq!(fs.getattr(f).await.unwrap().attr.size, 4, "one lookup left");
    // A lookup whose reply crosses the kernel's FORGET of the older count: it was counted
    // before the reply, so the forget leaves the inode (and its number) alone.
    assert_eq!(lookup(&fs, Ino::ROOT, "f").await, f);
    fs.forget(f, 1);
    assert_eq!(fs.getattr(f).await.unwrap().attr.ino, f);
    fs.forget(f, 1);
    assert_eq!(errno(fs.getattr(f).await), libc::ENOENT, "forgotten: gone");
    assert_eq!(fs.inode_count(), 1, "only the root");

    let again = lookup(&fs, Ino::ROOT, "f").await;
    assert_ne!(again, f, "a number is never reused");
    // A late forget of the old number, and the root, change nothing.
    fs.forget(f, 1);
    fs.forget(Ino::ROOT, 1);
    assert_eq!(fs.getattr(again).await.unwrap().attr.ino, again);
    assert_eq!(fs.getattr(Ino::ROOT).await.unwrap().attr.ino, Ino::ROOT);
}

#[tokio::test]
async fn an_open_file_keeps_its_inode_after_the_forget() {
    let store = MemStore::new();
    store.insert("r", "read me");
    let fs = mount(&store);

    // Read side: open, forgotten, still readable through the handle; gone at release.
    let r = lookup(&fs, Ino::ROOT, "r").await;
    let h = fs.open(r, OpenFlags::read_only()).await.unwrap();
    fs.forget(r, 1);
    assert_eq!(fs.read(r, h, 0, 100).await.unwrap(), "read me");
    assert_eq!(fs.getattr(r).await.unwrap().attr.size, 7);
    assert_eq!(
        lookup(&fs, Ino::ROOT, "r").await,
        r,
        "same number while open"
    );
    fs.forget(r, 1);
    fs.release(r, h).await.unwrap();
    assert_eq!(errno(fs.getattr(r).await), libc::ENOENT);

    // Write side: created (one lookup), forgotten while open, written and closed.
    let (entry, h) = fs
        .create(Ino::ROOT, os("w"), 0o644, OpenFlags::default())
        .await
        .unwrap();
    let w = entry.attr.ino;
    fs.forget(w, 1);
    fs.write(w, h, 0, Bytes::from_static(b"written"))
        .await
        .unwrap();
    assert_eq!(fs.getattr(w).await.unwrap().attr.size, 7);
    fs.flush(w, h).await.unwrap();
    fs.release(w, h).await.unwrap();
    assert_eq!(store.get_bytes("w").unwrap(), "written");
    assert_eq!(errno(fs.getattr(w).await), libc::ENOENT);
    assert_eq!(fs.inode_count(), 1);
}

#[tokio::test]
async fn a_rename_carries_the_count_along() {
    let store = MemStore::new();
    store.insert("d/f", "1");
    let fs = mount(&store);
    let d = lookup(&fs, Ino::ROOT, "d").await;
    let f = lookup(&fs, d, "f").await;
    assert_eq!(lookup(&fs, d, "f").await, f);
    fs.rename(d, os("f"), Ino::ROOT, os("g"), false)
        .await
        .unwrap();
    fs.forget(f, 1);
    assert_eq!(fs.getattr(f).await.unwrap().attr.size, 1, "one lookup left");
    assert_eq!(
        lookup(&fs, Ino::ROOT, "g").await,
        f,
        "the number moved along"
    );
    fs.forget(f, 2);
    assert_eq!(errno(fs.getattr(f).await), libc::ENOENT);
    // The new path is free for a new number, and the old one stays gone.
    assert_ne!(lookup(&fs, Ino::ROOT, "g").await, f);
}

#[tokio::test]
async fn removed_entries_go_when_forgotten() {
    let store = MemStore::new();
    store.insert("d/f", "1");
    let fs = mount(&store);
    let d = lookup(&fs, Ino::ROOT, "d").await;
    let f = lookup(&fs, d, "f").await;
    fs.unlink(d, os("f")).await.unwrap();
    fs.forget(f, 1);
    fs.rmdir(Ino::ROOT, os("d")).await.unwrap();
    fs.forget(d, 1);
    assert_eq!(fs.inode_count(), 1);
}

#[tokio::test]
async fn readdirplus_counts_each_entry_and_readdir_none() {
    let store = MemStore::new();
    for name in ["d/a", "d/b", "d/sub/c"] {
        store.insert(name, "x");
    }
    let fs = mount(&store);
    let d = lookup(&fs, Ino::ROOT, "d").await;
    let h = fs.opendir(d).await.unwrap();
    let entries = fs.readdirplus(d, h, 0, 100).await.unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, [".", "..", "a", "b", "sub"]);
    for entry in &entries[2..] {
        let attr = entry.attr.expect("readdirplus gives attributes");
        assert_eq!(attr.ino, entry.ino);
    }
    assert_eq!(fs.inode_count(), 1 + 1 + 3);
    // The kernel asks again from an offset (its buffer was full): counted again.
    let again = fs.readdirplus(d, h, 3, 100).await.unwrap();
    assert_eq!(again[0].name, "b");
    let b = again[0].ino;
    assert_eq!(b, entries[3].ino, "the same number while known");
    // Two lookups of `b` now: the first forget leaves it.
    fs.forget(b, 1);
    assert_eq!(fs.getattr(b).await.unwrap().attr.ino, b);
    fs.forget(again[1].ino, 1);
    for entry in &entries[2..] {
        fs.forget(entry.ino, 1);
    }
    assert_eq!(errno(fs.getattr(b).await), libc::ENOENT);
    assert_eq!(
        fs.inode_count(),
        2,
        "the root and the directory, open and looked up"
    );
    fs.releasedir(d, h).await.unwrap();
    fs.forget(d, 1);
    assert_eq!(fs.inode_count(), 1);

    // Plain readdir counts nothing: an inode it showed is dropped on the first forget of
    // a lookup, not kept for the listing.
    let d = lookup(&fs, Ino::ROOT, "d").await;
    let h = fs.opendir(d).await.unwrap();
    let listed = fs.readdir(d, h, 0, 100).await.unwrap();
    let a = lookup(&fs, d, "a").await;
    assert_eq!(listed[2].ino, a, "the number shown is the one looked up");
    fs.forget(a, 1);
    assert_eq!(errno(fs.getattr(a).await), libc::ENOENT);
    fs.releasedir(d, h).await.unwrap();
}

#[tokio::test]
async fn the_bucket_list_forwards_lookups_and_forgets() {
    let buckets = MemBuckets::new();
    buckets.create_bucket("one").insert("d/x", "1");
    let fs = BucketsFs::new(Arc::new(buckets.clone()), FsConfig::default());
    let one = fs.lookup(Ino::ROOT, os("one")).await.unwrap().attr.ino;
    let root_handle = fs.opendir(Ino::ROOT).await.unwrap();
    let listed = fs
        .readdirplus(Ino::ROOT, root_handle, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        listed[2].attr.map(|a| (a.ino, a.kind)),
        Some((one, FileKind::Directory))
    );
    fs.releasedir(Ino::ROOT, root_handle).await.unwrap();
    let before = fs.inode_count();

    let d = fs.lookup(one, os("d")).await.unwrap().attr.ino;
    let h = fs.opendir(d).await.unwrap();
    let entries = fs.readdirplus(d, h, 0, 100).await.unwrap();
    let x = entries[2].ino;
    assert_eq!(fs.lookup(d, os("x")).await.unwrap().attr.ino, x);
    assert_eq!(fs.inode_count(), before + 2);
    fs.releasedir(d, h).await.unwrap();
    fs.forget(x, 2);
    fs.forget(d, 1);
    assert_eq!(fs.inode_count(), before);
    assert_eq!(errno(fs.getattr(x).await), libc::ENOENT);
    // Bucket roots and the list's root are never dropped.
    fs.forget(one, 10);
    fs.forget(Ino::ROOT, 10);
    assert_eq!(
        fs.getattr(one).await.unwrap().attr.kind,
        FileKind::Directory
    );
}

#[tokio::test]
async fn the_library_gives_back_what_it_looks_up() {
    let store = MemStore::new();
    for i in 0..20 {
        store.insert(format!("a/b/f{i}"), "x");
    }
    let vfs = S3Vfs::new(Arc::new(store.clone()), rw());
    for i in 0..20 {
        assert_eq!(vfs.metadata(&format!("a/b/f{i}")).await.unwrap().len(), 1);
    }
    assert_eq!(vfs.fs().inode_count(), 1, "walking paths keeps nothing");

    let mut file = vfs.open("a/b/f0").await.unwrap();
    assert_eq!(vfs.fs().inode_count(), 2, "an open file holds its inode");
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut file, &mut text)
        .await
        .unwrap();
    assert_eq!(text, "x");
    drop(file);
    vfs.create_dir_all("n/m").await.unwrap();
    vfs.write("n/m/new", "y").await.unwrap();
    vfs.write("implied/dir/new", "z").await.unwrap();
    vfs.symlink("n/m/new", "link").await.unwrap();
    vfs.rename("link", "n/link").await.unwrap();
    vfs.set_permissions("n/m/new", 0o600).await.unwrap();
    assert_eq!(vfs.read("n/link").await.unwrap_err().errno(), libc::EINVAL);
    vfs.remove_file("n/link").await.unwrap();
    assert_eq!(vfs.fs().inode_count(), 1, "nothing held after the calls");
}

/// A walk the kernel forgot leaves nothing behind in the metadata caches either: what HEAD
/// told of each small object is kept past its TTL only while the path is in use, and goes
/// at the next periodic sweep once the kernel forgets the inode.
#[tokio::test(start_paused = true)]
async fn a_forgotten_walk_leaves_no_metadata_behind() {
    let store = MemStore::new();
    for i in 0..300 {
        // Empty objects: a listing looks at each with HEAD (it could be a fifo).
        store.insert(format!("d/f{i}"), Bytes::new());
    }
    let config = rw().with_metadata_ttl(Duration::from_millis(5));
    let fs = S3Fs::new(Arc::new(store.clone()), config);
    let d = lookup(&fs, Ino::ROOT, "d").await;
    let h = fs.opendir(d).await.unwrap();
    let mut files = Vec::new();
    let mut offset = 0;
    loop {
        let entries = fs.readdirplus(d, h, offset, 64).await.unwrap();
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
        files.extend(
            entries
                .iter()
                .filter(|e| e.kind == FileKind::File)
                .map(|e| e.ino),
        );
    }
    fs.releasedir(d, h).await.unwrap();
    assert_eq!(files.len(), 300);
    let (held, forgotten) = files.split_at(100);
    for &ino in forgotten {
        fs.forget(ino, 1);
    }
    // Past the TTL (the caches' clock is the real one), then one periodic sweep (tokio's,
    // paused here).
    std::thread::sleep(Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        fs.cached_metadata_entries(),
        held.len(),
        "what HEAD told of the files still looked up, and nothing else"
    );
    for &ino in held {
        fs.forget(ino, 1);
    }
    fs.forget(d, 1);
    assert_eq!(fs.inode_count(), 1);
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(
        fs.cached_metadata_entries(),
        0,
        "the walk left nothing behind"
    );
}
