//! The operations of the compatibility suite, each written once over a [`Surface`] and
//! checked against what reached the bucket: a fresh library instance (no cache shared with
//! the surface) reads back, and the raw store shows keys, ETags and markers.
//!
//! Every surface works in a directory of its own (`library/`, `mount/`) under the run's
//! prefix; the large object of the streaming read and the directory of many entries are
//! seeded once, at the prefix's root, and read by both.

use crate::outcome::{Failure, Outcome};
use crate::surface::{Library, Surface};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use s3vfs::store::{Backend, ObjectKey, PutOptions, StoreErrorKind};
use s3vfs::{FsConfig, S3Vfs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Name of the object the streaming read reads, at the run's root.
pub const STREAM_FILE: &str = "stream.bin";

/// Name of the directory of many entries, at the run's root.
pub const MANY_DIR: &str = "many";

/// Objects created at once when seeding [`MANY_DIR`].
const SEED_CONCURRENCY: usize = 16;

/// Size of a multipart file: three parts of the suite's 5 MiB part size.
const MULTIPART_SIZE: usize = 12 * 1024 * 1024 + 1;

/// Size of the pieces the streaming object is written in.
const SEED_CHUNK: u64 = 8 * 1024 * 1024;

/// Extra wait beyond the metadata TTL before a change by another client must show.
const TTL_MARGIN: Duration = Duration::from_millis(500);

/// What every operation needs besides its surface.
pub struct Ctx {
    /// The bucket, for checks and for changes behind the file system's back.
    pub store: Arc<dyn Backend>,
    /// Configuration of every file system of the run (its prefix is the run's).
    pub config: FsConfig,
    /// Size of the streaming object, in bytes.
    pub stream_size: u64,
    /// Entries of [`MANY_DIR`].
    pub list_entries: usize,
}

impl Ctx {
    /// A new library instance over the same bucket and prefix, sharing no cache with any
    /// surface: it shows what reached the bucket.
    pub fn fresh(&self) -> Library {
        Library::new(self.fresh_vfs())
    }

    fn fresh_vfs(&self) -> S3Vfs {
        S3Vfs::new(Arc::clone(&self.store), self.config.clone())
    }

    /// The object key of `path`.
    pub fn key(&self, path: &str) -> ObjectKey {
        ObjectKey::new(format!("{}{path}", self.config.prefix))
    }

    /// Creates the shared objects: [`STREAM_FILE`] and the entries of [`MANY_DIR`].
    pub async fn seed(&self) -> Outcome<()> {
        let vfs = self.fresh_vfs();
        let mut file = vfs.create(STREAM_FILE).await?;
        let mut offset = 0;
        while offset < self.stream_size {
            let len = SEED_CHUNK.min(self.stream_size - offset);
            let chunk = bytes::Bytes::from(pattern(offset, len as usize));
            let mut at = 0usize;
            while at < chunk.len() {
                let n = file.write_at(offset + at as u64, chunk.slice(at..)).await?;
                Failure::check(n > 0, || "seeding write made no progress".to_owned())?;
                at += n as usize;
            }
            offset += len;
        }
        file.complete().await?;
        futures::stream::iter(0..self.list_entries)
            .map(|i| {
                let key = self.key(&format!("{MANY_DIR}/entry-{i:05}"));
                let store = Arc::clone(&self.store);
                async move {
                    store
                        .put(&key, bytes::Bytes::new(), PutOptions::default())
                        .await
                }
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Deletes every key of the run.
    pub async fn clean_up(&self) -> Outcome<()> {
        let mut token = None;
        loop {
            let page = self
                .store
                .list(s3vfs::store::ListRequest {
                    prefix: self.config.prefix.clone(),
                    continuation_token: token.take(),
                    ..Default::default()
                })
                .await?;
            let keys: Vec<ObjectKey> = page.objects.into_iter().map(|o| o.key).collect();
            if !keys.is_empty() {
                let failures = self.store.delete_many(keys).await?;
                Failure::check(failures.is_empty(), || {
                    format!("{} keys could not be deleted", failures.len())
                })?;
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }

    async fn etag(&self, path: &str) -> Outcome<String> {
        let meta = self.store.head(&self.key(path)).await?;
        Ok(meta.etag.map(|t| t.as_str().to_owned()).unwrap_or_default())
    }

    /// Checks that a fresh instance reads `expected` from `path`.
    async fn expect_content(&self, path: &str, expected: &[u8]) -> Outcome<()> {
        let got = self.fresh().read(path).await?;
        Failure::check(got == expected, || {
            format!(
                "{path} reads back {} bytes, not the {} written{}",
                got.len(),
                expected.len(),
                if got.len() == expected.len() {
                    " (other bytes)"
                } else {
                    ""
                }
            )
        })
    }
}

/// One operation: its outcome, with a note for the table on success.
pub type Operation =
    for<'a> fn(&'a Ctx, &'a dyn Surface, &'a str) -> BoxFuture<'a, Outcome<String>>;

/// Every operation of the suite: a short id (for `--only`), the row's text, the operation.
pub const OPERATIONS: &[(&str, &str, Operation)] = &[
    ("put", "create, single PUT", create_single),
    ("multipart", "create, multipart (3 parts)", create_multipart),
    ("overwrite", "overwrite (O_TRUNC)", overwrite),
    ("append", "append (O_APPEND)", append),
    ("random-write", "random write", random_write),
    ("truncate", "truncate down and up", truncate),
    ("rename-file", "rename a file", rename_file),
    ("rename-dir", "rename a directory", rename_dir),
    ("copy", "copy a multipart file (server-side)", copy_file),
    ("markers", "mkdir / rmdir (marker)", markers),
    ("list", "list a large directory", list_many),
    ("symlink", "symlink / readlink", symlink),
    ("chmod", "chmod", chmod),
    ("xattr", "setxattr / getxattr", xattr),
    (
        "conflict",
        "conditional-write conflict, 2 instances",
        conflict,
    ),
    ("stream", "streaming read with read-ahead", stream),
    (
        "external",
        "external PUT/DELETE seen within the TTL",
        external,
    ),
];

/// Deterministic bytes of the streaming object, from their offset.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8) ^ (i as u8))
        .collect()
}

fn check_stream(offset: u64, piece: &[u8]) -> Outcome<()> {
    Failure::check(piece == pattern(offset, piece.len()), || {
        format!("wrong bytes at offset {offset}")
    })
}

fn create_single<'a>(
    ctx: &'a Ctx,
    s: &'a dyn Surface,
    dir: &'a str,
) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/single.bin");
        let data = pattern(7, 1000);
        s.write(&path, data.clone()).await?;
        ctx.expect_content(&path, &data).await?;
        let etag = ctx.etag(&path).await?;
        Failure::check(!etag.contains('-'), || {
            format!("ETag {etag} is a multipart one")
        })?;
        Ok(String::new())
    })
}

fn create_multipart<'a>(
    ctx: &'a Ctx,
    s: &'a dyn Surface,
    dir: &'a str,
) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/multipart.bin");
        let data = pattern(11, MULTIPART_SIZE);
        s.write(&path, data.clone()).await?;
        ctx.expect_content(&path, &data).await?;
        // The content decides; an ETag that is not S3's `<md5 of part md5s>-3` is worth a
        // note (it defeats checks that recompute it), not a failure.
        let etag = ctx.etag(&path).await?;
        if etag.trim_matches('"').ends_with("-3") {
            Ok(String::new())
        } else {
            Ok(format!("ETag {etag} is not S3's multipart form"))
        }
    })
}

fn overwrite<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/overwrite.txt");
        s.write(&path, b"the first, longer version".to_vec())
            .await?;
        s.write(&path, b"second".to_vec()).await?;
        ctx.expect_content(&path, b"second").await?;
        Ok(String::new())
    })
}

fn append<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/append.txt");
        s.write(&path, b"abc".to_vec()).await?;
        s.append(&path, b"def".to_vec()).await?;
        ctx.expect_content(&path, b"abcdef").await?;
        Ok(String::new())
    })
}

fn random_write<'a>(
    ctx: &'a Ctx,
    s: &'a dyn Surface,
    dir: &'a str,
) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/random.bin");
        let mut data = pattern(3, 300_000);
        s.write(&path, data.clone()).await?;
        s.write_at(&path, 100_000, b"XYZ".to_vec()).await?;
        data[100_000..100_003].copy_from_slice(b"XYZ");
        ctx.expect_content(&path, &data).await?;
        Ok(String::new())
    })
}

fn truncate<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/truncate.bin");
        let data = pattern(5, 10_000);
        s.write(&path, data.clone()).await?;
        s.truncate(&path, 1234).await?;
        ctx.expect_content(&path, &data[..1234]).await?;
        s.truncate(&path, 2000).await?;
        let mut grown = data[..1234].to_vec();
        grown.resize(2000, 0);
        ctx.expect_content(&path, &grown).await?;
        Ok(String::new())
    })
}

fn rename_file<'a>(
    ctx: &'a Ctx,
    s: &'a dyn Surface,
    dir: &'a str,
) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let (from, to) = (format!("{dir}/before.txt"), format!("{dir}/after.txt"));
        s.write(&from, b"moved".to_vec()).await?;
        s.rename(&from, &to).await?;
        ctx.expect_content(&to, b"moved").await?;
        let fresh = ctx.fresh();
        Failure::check(!fresh.exists(&from).await?, || {
            format!("{from} still exists")
        })?;
        Ok(String::new())
    })
}

fn copy_file<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let (from, to) = (format!("{dir}/original.bin"), format!("{dir}/copy.bin"));
        let body = pattern(0, MULTIPART_SIZE);
        s.write(&from, body.clone()).await?;
        s.copy(&from, &to).await?;
        ctx.expect_content(&to, &body).await?;
        ctx.expect_content(&from, &body).await?;
        Ok(String::new())
    })
}

fn rename_dir<'a>(
    ctx: &'a Ctx,
    s: &'a dyn Surface,
    dir: &'a str,
) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let (from, to) = (format!("{dir}/tree"), format!("{dir}/moved-tree"));
        s.mkdir(&from).await?;
        s.write(&format!("{from}/a"), b"a".to_vec()).await?;
        s.mkdir(&format!("{from}/sub")).await?;
        s.write(&format!("{from}/sub/b"), b"b".to_vec()).await?;
        s.rename(&from, &to).await?;
        let fresh = ctx.fresh();
        let mut names = fresh.list(&to).await?;
        names.sort();
        Failure::check(names == ["a", "sub"], || format!("{to} lists {names:?}"))?;
        ctx.expect_content(&format!("{to}/sub/b"), b"b").await?;
        Failure::check(!fresh.exists(&from).await?, || {
            format!("{from} still exists")
        })?;
        Ok(String::new())
    })
}

fn markers<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/empty-dir");
        s.mkdir(&path).await?;
        if !ctx.config.directory_markers {
            // The probe found the server cannot keep markers: the directory lives in this
            // instance only, as the mount's notice says.
            Failure::check(s.exists(&path).await?, || {
                format!("{path} is not seen by the instance that made it")
            })?;
            Failure::check(!ctx.fresh().exists(&path).await?, || {
                format!("{path} is seen by another instance without a marker")
            })?;
            s.rmdir(&path).await?;
            Failure::check(!s.exists(&path).await?, || {
                format!("{path} still exists after rmdir")
            })?;
            return Err(Failure::limitation(
                "the server cannot keep `dir/` markers: found at mount, which says so; an empty \
                 directory is seen only by the mount that made it, until a file is written in it",
            ));
        }
        let marker = ctx.key(&format!("{path}/"));
        ctx.store.head(&marker).await?;
        Failure::check(ctx.fresh().exists(&path).await?, || {
            format!("{path} is not seen by another instance")
        })?;
        s.rmdir(&path).await?;
        match ctx.store.head(&marker).await {
            Err(e) if e.kind == StoreErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
            Ok(_) => return Err(Failure::new(format!("marker {marker} left after rmdir"))),
        }
        Failure::check(!ctx.fresh().exists(&path).await?, || {
            format!("{path} still exists after rmdir")
        })?;
        Ok(String::new())
    })
}

fn list_many<'a>(
    ctx: &'a Ctx,
    s: &'a dyn Surface,
    _dir: &'a str,
) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let started = Instant::now();
        let mut names = s.list(MANY_DIR).await?;
        let took = started.elapsed();
        names.sort();
        let expected: Vec<String> = (0..ctx.list_entries)
            .map(|i| format!("entry-{i:05}"))
            .collect();
        Failure::check(names == expected, || {
            format!(
                "listed {} entries, not the {} made",
                names.len(),
                expected.len()
            )
        })?;
        Ok(format!(
            "{} entries, {:.1} s",
            names.len(),
            took.as_secs_f64()
        ))
    })
}

fn symlink<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let link = format!("{dir}/link");
        s.symlink("some/target.txt", &link).await?;
        let target = ctx.fresh().readlink(&link).await?;
        Failure::check(target == "some/target.txt", || {
            format!("the link reads back as {target:?}")
        })?;
        Ok(String::new())
    })
}

fn chmod<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/chmod.txt");
        s.write(&path, b"mode".to_vec()).await?;
        s.chmod(&path, 0o640).await?;
        let mode = ctx.fresh().mode(&path).await?;
        Failure::check(mode == 0o640, || format!("mode reads back as {mode:o}"))?;
        Ok(String::new())
    })
}

fn xattr<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/xattr.txt");
        s.write(&path, b"attributes".to_vec()).await?;
        s.set_xattr(&path, "user.compat", b"value").await?;
        let value = ctx.fresh().get_xattr(&path, "user.compat").await?;
        Failure::check(value == b"value", || {
            format!(
                "user.compat reads back as {:?}",
                String::from_utf8_lossy(&value)
            )
        })?;
        Ok(String::new())
    })
}

fn conflict<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/conflict.txt");
        s.write(&path, b"base".to_vec()).await?;
        let pending = s.write_pending(&path, b"mine".to_vec()).await?;
        // Another instance replaces the object while this one has it open.
        ctx.fresh().write(&path, b"theirs".to_vec()).await?;
        let refused = pending.close().await;
        if ctx.config.last_writer_wins {
            // The probe found the server ignores conditions (or the run was told so): the
            // stale upload must succeed and win, as the mount's notice says.
            refused?;
            ctx.expect_content(&path, b"mine").await?;
            return Err(Failure::limitation(
                "no conditional writes on this server: found at mount, which says it is \
                 last-writer-wins; the stale upload replaced the other instance's version",
            ));
        }
        ctx.expect_content(&path, b"theirs").await.map_err(|e| {
            Failure::new(format!("the other instance's version was overwritten: {e}"))
        })?;
        match refused {
            // The errno is enough: the refusal is what the row expects.
            Err(e) => Ok(format!(
                "refused with {}",
                e.to_string().split_whitespace().next().unwrap_or_default()
            )),
            Ok(()) => Err(Failure::new(
                "the stale upload succeeded (no conditional writes?)",
            )),
        }
    })
}

fn stream<'a>(ctx: &'a Ctx, s: &'a dyn Surface, _dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let started = Instant::now();
        let read = s.stream(STREAM_FILE, check_stream).await?;
        let took = started.elapsed().as_secs_f64();
        Failure::check(read == ctx.stream_size, || {
            format!("read {read} bytes of {}", ctx.stream_size)
        })?;
        let mib = read as f64 / (1024.0 * 1024.0);
        Ok(format!("{mib:.0} MiB, {:.0} MiB/s", mib / took.max(1e-9)))
    })
}

fn external<'a>(ctx: &'a Ctx, s: &'a dyn Surface, dir: &'a str) -> BoxFuture<'a, Outcome<String>> {
    Box::pin(async move {
        let path = format!("{dir}/external.txt");
        let key = ctx.key(&path);
        let wait = ctx.config.metadata_ttl + TTL_MARGIN;
        Failure::check(!s.exists(&path).await?, || {
            format!("{path} exists before the PUT")
        })?;
        let body = bytes::Bytes::from_static(b"from elsewhere");
        ctx.store.put(&key, body, PutOptions::default()).await?;
        tokio::time::sleep(wait).await;
        Failure::check(s.exists(&path).await?, || {
            format!("{path} not seen {} ms after the PUT", wait.as_millis())
        })?;
        let got = s.read(&path).await?;
        Failure::check(got == b"from elsewhere", || "other bytes read".to_owned())?;
        ctx.store.delete(&key).await?;
        tokio::time::sleep(wait).await;
        Failure::check(!s.exists(&path).await?, || {
            format!("{path} still seen {} ms after the DELETE", wait.as_millis())
        })?;
        Ok(format!("within {} ms", wait.as_millis()))
    })
}
