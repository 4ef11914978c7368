// scratch exploration
use bytes::Bytes;
use s3vfs::store::{Capabilities, PutOptions};
use s3vfs::vfs::{Entry, Ino, OpenFlags, SetAttr, Vfs};
use s3vfs::{FsConfig, S3Fs, VfsResult};
use s3vfs_testkit::fault::{CountingStore, Op};
use s3vfs_testkit::MemStore;
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

fn cfg() -> FsConfig {
    FsConfig {
        metadata_ttl: Duration::from_secs(60),
        negative_ttl: Duration::from_secs(60),
        ..FsConfig::default()
    }
}

fn mount(store: &MemStore, config: FsConfig) -> (Arc<S3Fs>, CountingStore) {
    let c = CountingStore::new(Arc::new(store.clone()));
    (S3Fs::new(Arc::new(c.clone()), config), c)
}

async fn lookup(fs: &S3Fs, path: &str) -> VfsResult<Entry> {
    let mut entry = fs.getattr(Ino::ROOT).await?;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        entry = fs.lookup(entry.attr.ino, OsStr::new(part)).await?;
    }
    Ok(entry)
}

#[tokio::test]
async fn probe_chmod_open_new_file() {
    let store = MemStore::new();
    let (fs, c) = mount(&store, cfg());
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("f"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fs.write(e.attr.ino, h, 0, Bytes::from_static(b"hello"))
        .await
        .unwrap();
    c.reset();
    let r = fs
        .setattr(
            e.attr.ino,
            Some(h),
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await;
    println!(
        "chmod open new file: {:?} {:?}",
        r.as_ref().map_err(|e| e.errno()),
        c.counts()
    );
    let r = fs.flush(e.attr.ino, h).await;
    println!(
        "flush after: {:?} {:?} {:?}",
        r,
        store.keys(),
        store.meta("f").map(|m| m.user_metadata)
    );
}

#[tokio::test]
async fn probe_append_no_overwrite() {
    let store = MemStore::new();
    store.insert("f", "abc");
    let (fs, c) = mount(
        &store,
        FsConfig {
            allow_overwrite: false,
            ..cfg()
        },
    );
    let e = lookup(&fs, "f").await.unwrap();
    c.reset();
    let h = fs
        .open(
            e.attr.ino,
            OpenFlags {
                write: true,
                append: true,
                ..Default::default()
            },
        )
        .await;
    println!("append open: {:?}", h.as_ref().map_err(|e| e.errno()));
    let h = h.unwrap();
    fs.write(e.attr.ino, h, 0, Bytes::from_static(b"def"))
        .await
        .unwrap();
    let r = fs.flush(e.attr.ino, h).await;
    println!(
        "append flush {:?} {:?} {:?}",
        r,
        store.get_bytes("f"),
        c.counts()
    );
}

#[tokio::test]
async fn probe_costs() {
    let store = MemStore::new();
    store.insert("f", "abc");
    store.insert("d/", "");
    store.insert("d/x", "abc");
    store.insert("n/y", "abc");
    let (fs, c) = mount(&store, cfg());
    lookup(&fs, "f").await.unwrap();
    println!("lookup file {:?}", c.counts());
    c.reset();
    lookup(&fs, "d").await.unwrap();
    println!("lookup dir with marker {:?}", c.counts());
    c.reset();
    lookup(&fs, "n").await.unwrap();
    println!("lookup dir w/o marker {:?}", c.counts());
    c.reset();
    let e = lookup(&fs, "f").await.unwrap();
    println!("cached {:?}", c.counts());
    c.reset();
    fs.setattr(
        e.attr.ino,
        None,
        SetAttr {
            size: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!("truncate to 1 {:?} {:?}", c.counts(), store.get_bytes("f"));
    c.reset();
    fs.setattr(
        e.attr.ino,
        None,
        SetAttr {
            size: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!("truncate to 0 {:?} {:?}", c.counts(), store.get_bytes("f"));
    c.reset();
    fs.setattr(
        e.attr.ino,
        None,
        SetAttr {
            size: Some(10),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!("truncate to 10 {:?} {:?}", c.counts(), store.get_bytes("f"));
    c.reset();
    let d = lookup(&fs, "d").await.unwrap();
    fs.setattr(
        d.attr.ino,
        None,
        SetAttr {
            mode: Some(0o700),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!("chmod dir {:?}", c.counts());
    c.reset();
    let n = lookup(&fs, "n").await.unwrap();
    fs.setattr(
        n.attr.ino,
        None,
        SetAttr {
            mode: Some(0o700),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!("chmod dir no marker {:?} {:?}", c.counts(), store.keys());
    c.reset();
    store.insert("g", "abc");
    store.set_storage_class("g", "GLACIER");
    let g = lookup(&fs, "g").await.unwrap();
    c.reset();
    let r = fs.open(g.attr.ino, OpenFlags::read_only()).await;
    println!(
        "open glacier {:?} {:?}",
        r.map_err(|e| e.errno()),
        c.counts()
    );
    c.reset();
    let r = fs
        .rename(
            Ino::ROOT,
            OsStr::new("g"),
            Ino::ROOT,
            OsStr::new("g2"),
            false,
        )
        .await;
    println!(
        "rename glacier {:?} {:?}",
        r.map_err(|e| e.errno()),
        c.counts()
    );
    c.reset();
    let r = fs
        .setattr(
            g.attr.ino,
            None,
            SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await;
    println!(
        "chmod glacier {:?} {:?}",
        r.map_err(|e| e.errno()),
        c.counts()
    );
    c.reset();
    let r = fs
        .open(
            g.attr.ino,
            OpenFlags {
                write: true,
                truncate: true,
                ..Default::default()
            },
        )
        .await;
    println!(
        "open trunc glacier {:?} {:?}",
        r.as_ref().map(|_| ()).map_err(|e| e.errno()),
        c.counts()
    );
    let h = r.unwrap();
    c.reset();
    fs.write(g.attr.ino, h, 0, Bytes::from_static(b"new"))
        .await
        .unwrap();
    let r = fs.flush(g.attr.ino, h).await;
    println!(
        "flush trunc glacier {:?} {:?} {:?}",
        r,
        c.counts(),
        store.meta("g").map(|m| m.storage_class)
    );
    let _ = Capabilities::default();
    let _ = PutOptions::default();
}

#[tokio::test]
async fn probe_ns() {
    let store = MemStore::new();
    store.insert("f", "abc");
    store.insert("d/", "");
    store.insert("d/x", "abc");
    store.insert("n/y", "abc");
    store.insert("n/z", "abc");
    let (fs, c) = mount(&store, cfg());
    let p = |s: &'static str| OsStr::new(s);
    c.reset();
    fs.rename(Ino::ROOT, p("f"), Ino::ROOT, p("f2"), false)
        .await
        .unwrap();
    println!("rename root->root {:?}", c.counts());
    let n = lookup(&fs, "n").await.unwrap().attr.ino;
    let d = lookup(&fs, "d").await.unwrap().attr.ino;
    c.reset();
    fs.rename(n, p("y"), Ino::ROOT, p("y"), false)
        .await
        .unwrap();
    println!("rename n/y -> y {:?} {:?}", c.counts(), store.keys());
    c.reset();
    fs.rename(d, p("x"), Ino::ROOT, p("x"), false)
        .await
        .unwrap();
    println!("rename d/x -> x (d marker seen) {:?}", c.counts());
    c.reset();
    fs.rename(Ino::ROOT, p("x"), Ino::ROOT, p("y"), false)
        .await
        .unwrap();
    println!("rename x -> y over {:?}", c.counts());
    c.reset();
    fs.unlink(n, p("z")).await.unwrap();
    println!(
        "unlink n/z (marker there now) {:?} {:?}",
        c.counts(),
        store.keys()
    );
    c.reset();
    fs.rmdir(Ino::ROOT, p("n")).await.unwrap();
    println!("rmdir n {:?} {:?}", c.counts(), store.keys());
    c.reset();
    fs.mkdir(Ino::ROOT, p("m"), 0o755).await.unwrap();
    println!("mkdir m {:?}", c.counts());
    c.reset();
    fs.symlink(Ino::ROOT, p("l"), p("y")).await.unwrap();
    println!("symlink {:?}", c.counts());
    let l = lookup(&fs, "l").await.unwrap().attr.ino;
    c.reset();
    println!("readlink {:?} {:?}", fs.readlink(l).await, c.counts());
    c.reset();
    let y = lookup(&fs, "y").await.unwrap().attr.ino;
    println!("xattrs {:?} {:?}", fs.listxattr(y).await, c.counts());
    c.reset();
    fs.setxattr(y, p("user.a"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    println!("setxattr {:?}", c.counts());
    c.reset();
    println!(
        "getxattr {:?} {:?}",
        fs.getxattr(y, p("user.a")).await,
        c.counts()
    );
    c.reset();
    println!(
        "removexattr missing {:?} {:?}",
        fs.removexattr(y, p("user.b")).await.map_err(|e| e.errno()),
        c.counts()
    );
    c.reset();
    println!(
        "setxattr dir {:?} {:?}",
        fs.setxattr(d, p("user.a"), Bytes::from_static(b"1")).await,
        c.counts()
    );
    c.reset();
    println!("listxattr dir {:?} {:?}", fs.listxattr(d).await, c.counts());
    c.reset();
    println!(
        "listxattr root {:?} {:?}",
        fs.listxattr(Ino::ROOT).await,
        c.counts()
    );
    // dir rename
    store.insert("t/", "");
    store.insert("t/a", "1");
    store.insert("t/s/b", "2");
    store.insert("u/a", "1");
    c.reset();
    fs.rename(Ino::ROOT, p("t"), Ino::ROOT, p("t2"), false)
        .await
        .unwrap();
    println!("rename dir with marker {:?} {:?}", c.counts(), store.keys());
    c.reset();
    fs.rename(Ino::ROOT, p("u"), Ino::ROOT, p("u2"), false)
        .await
        .unwrap();
    println!("rename dir no marker {:?} {:?}", c.counts(), store.keys());
    c.reset();
    let dh = fs.opendir(Ino::ROOT).await.unwrap();
    println!("opendir {:?}", c.counts());
    let es = fs.readdir(Ino::ROOT, dh, 0, 100).await.unwrap();
    println!(
        "readdir {:?} {:?}",
        es.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
        c.counts()
    );
}

#[tokio::test]
async fn probe_more() {
    let store = MemStore::with_capabilities(Capabilities {
        min_part_size: 1024,
        ..Capabilities::default()
    });
    let config = FsConfig {
        write_part_size: 1024,
        ..cfg()
    };
    store.insert("small", "abc");
    store.insert("big", vec![1u8; 5000]);
    store.insert("empty", "");
    let (fs, c) = mount(&store, config.clone());
    let dh = fs.opendir(Ino::ROOT).await.unwrap();
    let es = fs.readdir(Ino::ROOT, dh, 0, 100).await.unwrap();
    println!("readdir fresh {:?} {:?}", es.len(), c.counts());
    c.reset();
    let es = fs.readdir(Ino::ROOT, dh, 0, 100).await.unwrap();
    println!("readdir again from 0 {:?} {:?}", es.len(), c.counts());
    c.reset();
    let e = lookup(&fs, "big").await.unwrap();
    println!("lookup listed {:?}", c.counts());
    // streamed write
    let (ne, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("s"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.reset();
    fs.write(ne.attr.ino, h, 0, Bytes::from(vec![2u8; 1000]))
        .await
        .unwrap();
    println!("write 1000 {:?}", c.counts());
    fs.write(ne.attr.ino, h, 1000, Bytes::from(vec![2u8; 2100]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "write to 3100 {:?} uploads {}",
        c.counts(),
        store.open_uploads()
    );
    c.reset();
    fs.flush(ne.attr.ino, h).await.unwrap();
    println!(
        "flush streamed {:?} {:?}",
        c.counts(),
        store.meta("s").map(|m| m.etag)
    );
    c.reset();
    fs.flush(ne.attr.ino, h).await.unwrap();
    println!("flush again {:?}", c.counts());
    fs.release(ne.attr.ino, h).await.unwrap();
    // chmod of a multipart object while open for reading
    let s = lookup(&fs, "s").await.unwrap().attr.ino;
    let rh = fs.open(s, OpenFlags::read_only()).await.unwrap();
    fs.read(s, rh, 0, 10).await.unwrap();
    c.reset();
    fs.setattr(
        s,
        None,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!(
        "chmod multipart {:?} {:?}",
        c.counts(),
        store.meta("s").map(|m| m.etag)
    );
    let r = fs.read(s, rh, 2000, 10).await;
    println!("read after chmod {:?}", r.map_err(|e| e.errno()));
    // random write into big (staged)
    let wh = fs
        .open(
            e.attr.ino,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    c.reset();
    fs.write(e.attr.ino, wh, 4000, Bytes::from(vec![3u8; 10]))
        .await
        .unwrap();
    println!("staged write {:?}", c.counts());
    fs.flush(e.attr.ino, wh).await.unwrap();
    println!("flush staged big {:?}", c.counts());
    // read side
    store.insert("r", vec![7u8; 3 * 1024 * 1024]);
    let r = lookup(&fs, "r").await.unwrap().attr.ino;
    let rh = fs.open(r, OpenFlags::read_only()).await.unwrap();
    c.reset();
    fs.read(r, rh, 0, 131072).await.unwrap();
    println!("read first {:?}", c.counts());
    fs.read(r, rh, 131072, 131072).await.unwrap();
    println!("read second {:?}", c.counts());
    c.reset();
    fs.read(r, rh, 3 * 1024 * 1024 - 100, 50).await.unwrap();
    println!("read random {:?}", c.counts());
    store.insert("r", vec![8u8; 3 * 1024 * 1024]);
    println!(
        "read replaced {:?}",
        fs.read(r, rh, 10, 50).await.map_err(|e| e.errno())
    );
}

#[tokio::test]
async fn probe_noncond() {
    let store = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    store.insert("n/y", "abc");
    store.insert("n/z", "abc");
    let (fs, c) = mount(&store, cfg());
    let n = lookup(&fs, "n").await.unwrap().attr.ino;
    lookup(&fs, "n/y").await.unwrap();
    c.reset();
    fs.unlink(n, OsStr::new("y")).await.unwrap();
    println!("unlink noncond {:?}", c.counts());
    let (fs, c) = mount(&store, cfg());
    let n = lookup(&fs, "n").await.unwrap().attr.ino;
    lookup(&fs, "n/z").await.unwrap();
    c.reset();
    fs.unlink(n, OsStr::new("z")).await.unwrap();
    println!(
        "unlink noncond marker exists {:?} {:?}",
        c.counts(),
        store.keys()
    );
}

fn injected() -> s3vfs::store::StoreError {
    s3vfs::store::StoreError::new(s3vfs::store::StoreErrorKind::Transient, "injected")
        .with_code("InternalError")
}

#[tokio::test]
async fn probe_durable() {
    use s3vfs_testkit::fault::FaultStore;
    let store = MemStore::with_capabilities(Capabilities {
        min_part_size: 1024,
        ..Capabilities::default()
    });
    store.insert("old", "previous");
    let faults = FaultStore::new(Arc::new(store.clone()));
    let c = CountingStore::new(Arc::new(faults.clone()));
    let fs = S3Fs::new(
        Arc::new(c.clone()),
        FsConfig {
            write_part_size: 1024,
            ..cfg()
        },
    );
    let o = lookup(&fs, "old").await.unwrap().attr.ino;
    let h = fs
        .open(
            o,
            OpenFlags {
                write: true,
                truncate: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fs.write(o, h, 0, Bytes::from(vec![5u8; 3000]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "mid-stream old={:?} uploads={}",
        store.get_bytes("old"),
        store.open_uploads()
    );
    faults.fail_next(Op::CompleteMultipart, 1, injected());
    c.reset();
    let r = fs.fsync(o, h).await;
    println!(
        "fsync failed complete {:?} {:?}",
        r.map_err(|e| e.errno()),
        c.counts()
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "after failed: old={:?} uploads={}",
        store.get_bytes("old"),
        store.open_uploads()
    );
    c.reset();
    let r = fs.fsync(o, h).await;
    println!(
        "fsync retry {:?} {:?} len={:?}",
        r.map_err(|e| e.errno()),
        c.counts(),
        store.get_bytes("old").map(|b| b.len())
    );
    fs.release(o, h).await.unwrap();
    // abandoned stream
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("ab"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fs.write(e.attr.ino, h, 0, Bytes::from(vec![5u8; 3000]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!("abandon: uploads={}", store.open_uploads());
    fs.release(e.attr.ino, h).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "abandon after release: uploads={} keys={:?}",
        store.open_uploads(),
        store.keys()
    );
    // failing part
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("fp"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    faults.fail_next(Op::UploadPart, 1, injected());
    let r1 = fs
        .write(e.attr.ino, h, 0, Bytes::from(vec![5u8; 3000]))
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r2 = fs
        .write(e.attr.ino, h, 3000, Bytes::from(vec![5u8; 10]))
        .await;
    let r3 = fs.flush(e.attr.ino, h).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    println!(
        "failing part: {:?} {:?} {:?} uploads={} keys={:?}",
        r1.map_err(|e| e.errno()),
        r2.map_err(|e| e.errno()),
        r3.map_err(|e| e.errno()),
        store.open_uploads(),
        store.keys()
    );
    let r4 = fs.flush(e.attr.ino, h).await;
    println!(
        "failing part retry: {:?} len={:?}",
        r4.map_err(|e| e.errno()),
        store.get_bytes("fp").map(|b| b.len())
    );
    // single put failure
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("sp"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fs.write(e.attr.ino, h, 0, Bytes::from_static(b"x"))
        .await
        .unwrap();
    faults.fail_next(Op::Put, 1, injected());
    println!(
        "put fails: {:?} {:?}",
        fs.flush(e.attr.ino, h).await.map_err(|e| e.errno()),
        store.keys()
    );
    // mkdir race
    let r = lookup(&fs, "race").await;
    store.insert("race/", "");
    println!("mkdir race {:?}", r.map(|_| ()).map_err(|e| e.errno()));
    println!(
        "mkdir race {:?}",
        fs.mkdir(Ino::ROOT, OsStr::new("race"), 0o755)
            .await
            .map(|_| ())
            .map_err(|e| e.errno())
    );
    // rename conflict retry
    store.insert("a", "a");
    store.insert("b", "b");
    lookup(&fs, "a").await.unwrap();
    lookup(&fs, "b").await.unwrap();
    store.insert("b", "b2");
    c.reset();
    println!(
        "rename retry {:?} {:?} {:?}",
        fs.rename(
            Ino::ROOT,
            OsStr::new("a"),
            Ino::ROOT,
            OsStr::new("b"),
            false
        )
        .await,
        c.counts(),
        store.get_bytes("b")
    );
}

#[tokio::test]
async fn probe_chmod_multipart_open() {
    let store = MemStore::with_capabilities(Capabilities {
        min_part_size: 1024,
        ..Capabilities::default()
    });
    let (fs, _c) = mount(
        &store,
        FsConfig {
            write_part_size: 1024,
            ..cfg()
        },
    );
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("m"),
            0o644,
            OpenFlags {
                write: true,
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fs.write(e.attr.ino, h, 0, Bytes::from(vec![5u8; 3000]))
        .await
        .unwrap();
    fs.flush(e.attr.ino, h).await.unwrap();
    println!("etag {:?}", store.meta("m").unwrap().etag);
    fs.setattr(
        e.attr.ino,
        Some(h),
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    println!("etag after chmod {:?}", store.meta("m").unwrap().etag);
    fs.write(e.attr.ino, h, 3000, Bytes::from(vec![6u8; 10]))
        .await
        .unwrap();
    println!(
        "flush after chmod {:?}",
        fs.flush(e.attr.ino, h).await.map_err(|e| e.errno())
    );
}

#[tokio::test]
async fn probe_cap() {
    use s3vfs_testkit::fault::FaultStore;
    let store = MemStore::with_capabilities(Capabilities {
        min_part_size: 1024,
        ..Capabilities::default()
    });
    let faults = FaultStore::new(Arc::new(store.clone()));
    let fs = S3Fs::new(
        Arc::new(faults.clone()),
        FsConfig {
            write_part_size: 1024,
            staging_cap: 0,
            ..cfg()
        },
    );
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("c"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    faults.fail_next(Op::UploadPart, 1, injected());
    let r1 = fs
        .write(e.attr.ino, h, 0, Bytes::from(vec![5u8; 3000]))
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r2 = fs
        .write(e.attr.ino, h, 3000, Bytes::from(vec![5u8; 10]))
        .await;
    let r3 = fs.flush(e.attr.ino, h).await;
    let r4 = fs.flush(e.attr.ino, h).await;
    println!(
        "cap: {:?} {:?} {:?} {:?} keys={:?}",
        r1.map_err(|e| e.errno()),
        r2.map_err(|e| e.errno()),
        r3.map_err(|e| e.errno()),
        r4.map_err(|e| e.errno()),
        store.keys()
    );
    let (e, h) = fs
        .create(
            Ino::ROOT,
            OsStr::new("d"),
            0o644,
            OpenFlags {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    faults.fail_next(Op::UploadPart, 1, injected());
    let r1 = fs
        .write(e.attr.ino, h, 0, Bytes::from(vec![5u8; 3000]))
        .await;
    let r3 = fs.flush(e.attr.ino, h).await;
    let r4 = fs.flush(e.attr.ino, h).await;
    println!(
        "cap2: {:?} {:?} {:?} keys={:?}",
        r1.map_err(|e| e.errno()),
        r3.map_err(|e| e.errno()),
        r4.map_err(|e| e.errno()),
        store.keys()
    );
}
