//! The readers being compared. Each reads the whole test object once, consuming the bytes
//! without storing them, and returns how many bytes it got; the caller times it and checks
//! the count. [`verify`] checks, untimed, that every path returns the right bytes.

use crate::upload::TestObject;
use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use futures::{StreamExt, TryStreamExt};
use s3vfs::store::Backend;
use s3vfs::{FsConfig, S3Vfs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Size of one ranged GET of the reference reader, in bytes.
pub const REFERENCE_RANGE: u64 = 8 * 1024 * 1024;
/// Ranged GETs the reference reader keeps in flight.
pub const REFERENCE_INFLIGHT: usize = 8;
/// Buffer of the library reader and of the large FUSE reads, in bytes.
pub const LARGE_READ: usize = 1024 * 1024;
/// Buffer of the `dd`-like FUSE reads, in bytes.
pub const SMALL_READ: usize = 128 * 1024;
/// Bytes the first read of a time-to-first-byte probe asks for.
pub const TTFB_READ: usize = 64 * 1024;
/// Bytes checked at each place [`verify`] looks at.
const VERIFY_LEN: u64 = 256 * 1024;

/// One GetObject of `range` (`None`: the whole object), body consumed chunk by chunk.
async fn get_and_count(
    client: &Client,
    object: &TestObject,
    range: Option<(u64, u64)>,
) -> Result<u64> {
    let header = range.map(|(start, end)| format!("bytes={start}-{}", end - 1));
    let out = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .set_range(header)
        .send()
        .await
        .map_err(|e| anyhow!("GetObject {range:?}: {}", DisplayErrorContext(e)))?;
    let mut body = out.body;
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        total += chunk.context("GetObject body failed")?.len() as u64;
    }
    if let Some((start, end)) = range {
        if total != end - start {
            bail!("ranged GET {start}-{end} returned {total} bytes");
        }
    }
    Ok(total)
}

/// The reference: ranged GETs of [`REFERENCE_RANGE`] bytes, [`REFERENCE_INFLIGHT`] at a
/// time, each in its own task.
pub async fn raw_parallel(client: &Client, object: &TestObject) -> Result<u64> {
    let ranges = (0..object.size)
        .step_by(REFERENCE_RANGE as usize)
        .map(|start| (start, (start + REFERENCE_RANGE).min(object.size)));
    futures::stream::iter(ranges)
        .map(|range| {
            let (client, object) = (client.clone(), object.clone());
            tokio::spawn(async move { get_and_count(&client, &object, Some(range)).await })
        })
        .buffer_unordered(REFERENCE_INFLIGHT)
        .map(|joined| joined.context("GET task failed")?)
        .try_fold(0u64, |total, n| async move { Ok(total + n) })
        .await
}

/// One GET of the whole object on one connection.
pub async fn raw_single(client: &Client, object: &TestObject) -> Result<u64> {
    get_and_count(client, object, None).await
}

/// The s3vfs library: `open`, then `read` into a [`LARGE_READ`] buffer until the end.
pub async fn library(vfs: &S3Vfs, object: &TestObject) -> Result<u64> {
    let mut file = vfs
        .open(&object.key)
        .await
        .with_context(|| format!("S3Vfs::open({})", object.key))?;
    let mut buf = vec![0u8; LARGE_READ];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).await.context("s3vfs File::read")?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Bytes asked for per `read_bytes` call of [`library_bytes`].
pub const ZERO_COPY_READ: usize = 8 * 1024 * 1024;

/// The s3vfs library's zero-copy reader: `open`, then `read_bytes` until the end, each
/// piece counted and dropped (as the reference does with the GET bodies).
pub async fn library_bytes(vfs: &S3Vfs, object: &TestObject) -> Result<u64> {
    let mut file = vfs
        .open(&object.key)
        .await
        .with_context(|| format!("S3Vfs::open({})", object.key))?;
    let mut total = 0u64;
    loop {
        let piece = file
            .read_bytes(ZERO_COPY_READ)
            .await
            .context("s3vfs File::read_bytes")?;
        if piece.is_empty() {
            return Ok(total);
        }
        total += piece.len() as u64;
    }
}

/// Drops the kernel's cached pages of `file`, so that a read goes to the file system even
/// where a mount keeps the page cache across opens.
pub fn drop_page_cache(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only affects the page cache.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// A mount's file: `std::fs::File` reads of `block` bytes in a blocking thread, from a
/// dropped page cache.
pub async fn fuse(path: &Path, block: usize) -> Result<u64> {
    fuse_with(path, block, false).await
}

/// Like [`fuse`], but the file is opened with `O_DIRECT`: the kernel copies each FUSE reply
/// straight into the reader's buffer, without the page cache (one copy fewer, but every
/// read is a round trip to the file system and there is no kernel read-ahead).
pub async fn fuse_direct(path: &Path, block: usize) -> Result<u64> {
    fuse_with(path, block, true).await
}

async fn fuse_with(path: &Path, block: usize, direct: bool) -> Result<u64> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<u64> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let mut file = options
            .open(&path)
            .with_context(|| format!("open {} on the mount", path.display()))?;
        drop_page_cache(&file);
        // O_DIRECT wants an aligned buffer: take a page-aligned window of a larger one.
        let mut backing = vec![0u8; block + 4096];
        let skew = backing.as_ptr().align_offset(4096).min(4096);
        let buf = &mut backing[skew..skew + block];
        let mut total = 0u64;
        loop {
            let n = file
                .read(buf)
                .with_context(|| format!("read {} on the mount", path.display()))?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    })
    .await
    .context("FUSE reader thread failed")?
}

/// Time from the start of a GetObject of the first [`LARGE_READ`] bytes to its first body
/// chunk.
pub async fn raw_ttfb(client: &Client, object: &TestObject) -> Result<Duration> {
    let end = (LARGE_READ as u64).min(object.size);
    let started = Instant::now();
    let out = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .range(format!("bytes=0-{}", end - 1))
        .send()
        .await
        .map_err(|e| anyhow!("GetObject: {}", DisplayErrorContext(e)))?;
    let mut body = out.body;
    let first = body.next().await.context("empty GetObject body")?;
    let elapsed = started.elapsed();
    first.context("GetObject body failed")?;
    // Drain the rest so that the connection goes back to the pool.
    while let Some(chunk) = body.next().await {
        chunk.context("GetObject body failed")?;
    }
    Ok(elapsed)
}

/// Time from `open` on a fresh [`S3Vfs`] (no cached metadata; the store's connections are
/// warm) to the first `read` of [`TTFB_READ`] bytes returning data.
pub async fn library_ttfb(
    store: &Arc<dyn Backend>,
    config: &FsConfig,
    object: &TestObject,
) -> Result<Duration> {
    let vfs = S3Vfs::new(Arc::clone(store), config.clone());
    let mut buf = vec![0u8; TTFB_READ];
    let started = Instant::now();
    let mut file = vfs
        .open(&object.key)
        .await
        .with_context(|| format!("S3Vfs::open({})", object.key))?;
    let n = file.read(&mut buf).await.context("s3vfs File::read")?;
    let elapsed = started.elapsed();
    if n == 0 {
        bail!("first read returned no data");
    }
    Ok(elapsed)
}

/// `len` bytes at `offset` of a file on a mount (`pread` in a blocking thread).
async fn pread(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::open(&path)
            .with_context(|| format!("open {} on the mount", path.display()))?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .with_context(|| format!("pread {} on the mount", path.display()))?;
        Ok(buf)
    })
    .await
    .context("FUSE reader thread failed")?
}

/// Checks, untimed, that a file on a mount has the object's size and bytes at the start,
/// the middle and the end.
pub async fn verify_file(path: &Path, object: &TestObject) -> Result<()> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    if len != object.size {
        bail!("the mount shows {len} bytes, uploaded {}", object.size);
    }
    for offset in verify_offsets(object.size) {
        let len = VERIFY_LEN.min(object.size - offset);
        if pread(path, offset, len).await? != object.expected(offset, len) {
            bail!("wrong bytes at offset {offset}");
        }
    }
    Ok(())
}

/// Places to check: the start, a part boundary in the middle, and the end.
fn verify_offsets(size: u64) -> Vec<u64> {
    let middle = (size / 2) / crate::upload::PART_SIZE * crate::upload::PART_SIZE;
    let mut offsets = vec![
        0,
        middle.saturating_sub(VERIFY_LEN / 2),
        size.saturating_sub(VERIFY_LEN),
    ];
    offsets.dedup();
    offsets
}

/// Checks, untimed, that a raw ranged GET, the library and (if mounted) the FUSE file
/// return the uploaded bytes at the start, middle and end of the object.
pub async fn verify(
    client: &Client,
    vfs: &S3Vfs,
    mounted: Option<&PathBuf>,
    object: &TestObject,
) -> Result<()> {
    let file = vfs
        .open(&object.key)
        .await
        .with_context(|| format!("S3Vfs::open({})", object.key))?;
    if file.len() != object.size {
        bail!(
            "s3vfs reports {} bytes, uploaded {}",
            file.len(),
            object.size
        );
    }
    for offset in verify_offsets(object.size) {
        let len = VERIFY_LEN.min(object.size - offset);
        let expected = object.expected(offset, len);

        let out = client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .await
            .map_err(|e| anyhow!("GetObject: {}", DisplayErrorContext(e)))?;
        let raw = out.body.collect().await.context("GetObject body failed")?;
        if raw.into_bytes() != expected {
            bail!("raw GET returned wrong bytes at offset {offset}");
        }

        let len32 = u32::try_from(len).context("verify length")?;
        let lib = file.read_at(offset, len32).await.context("s3vfs read_at")?;
        if lib != expected {
            bail!("s3vfs library returned wrong bytes at offset {offset}");
        }
        let mut reader = vfs.open(&object.key).await.context("S3Vfs::open")?;
        reader
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .context("s3vfs seek")?;
        let mut zero_copy = Vec::with_capacity(expected.len());
        while zero_copy.len() < expected.len() {
            let piece = reader
                .read_bytes(expected.len() - zero_copy.len())
                .await
                .context("s3vfs read_bytes")?;
            if piece.is_empty() {
                bail!("s3vfs read_bytes ended early at offset {offset}");
            }
            zero_copy.extend_from_slice(&piece);
        }
        if zero_copy != expected {
            bail!("s3vfs read_bytes returned wrong bytes at offset {offset}");
        }

        if let Some(path) = mounted {
            let got = pread(path, offset, len).await?;
            if got != expected {
                bail!("FUSE mount returned wrong bytes at offset {offset}");
            }
        }
    }
    Ok(())
}
