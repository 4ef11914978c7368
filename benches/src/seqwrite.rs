//! Item 2: sequential write of one large object until it is durable in the store.
//!
//! Writers, interleaved round by round, all writing the same random bytes to a new key:
//! - the reference: raw aws-sdk-s3 multipart ([`bucket::multipart_put`]), its part bodies
//!   signed exactly when s3vfs signs its own on this endpoint (`PayloadSigning::Auto`: not
//!   over loopback or HTTPS), so that both do the same work per byte;
//! - when that is unsigned, raw multipart with the SDK's default signed bodies too, to show
//!   what the signature costs;
//! - the library: `S3Vfs::create`, `write_all` of 1 MiB chunks, `complete()`;
//! - each mount (s3vfs in its own process, s3fs, rclone): `File::create`, `write_all` of
//!   1 MiB chunks, `fsync`, `close` (its result checked), then HEAD until the store shows
//!   the whole object. For s3vfs and s3fs the object is there when `close` returns; rclone
//!   uploads after `close` (`--vfs-write-back 0s`), so its time runs until the HEAD sees it.
//!
//! After each write (untimed) the object's size and bytes at three places are checked, and
//! the object is deleted.

use crate::bucket::{self, WRITE_INFLIGHT, WRITE_PART_SIZE};
use crate::report;
use crate::report::size_name;
use crate::seqread::{start_tools, stop_tools};
use crate::summary::{Cell, Row, Target, Unit};
use crate::tools::{Tool, ToolMount};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use s3vfs::{FsConfig, S3Vfs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Bytes per `write` call of the library and the mounts.
const WRITE_CHUNK: usize = 1024 * 1024;
/// Longest wait for a written object to show up in the store.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Target of a mount's durable write, as a fraction of the reference.
const MOUNT_TARGET: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// Signing its bodies as s3vfs does.
    Raw,
    /// Signing its bodies (the SDK's default), when s3vfs does not.
    RawSigned,
    Library,
    Mount(Tool),
}

/// One timed write: its rate, and the cores the machine kept busy meanwhile.
struct Run {
    rate: f64,
    busy: Option<f64>,
}

impl Writer {
    fn name(self) -> String {
        match self {
            Writer::Raw => "raw multipart".to_owned(),
            Writer::RawSigned => "raw multipart, signed bodies".to_owned(),
            Writer::Library => "s3vfs library".to_owned(),
            Writer::Mount(tool) => format!("{} mount", tool.name()),
        }
    }
}

/// Runs item 2 with `data` as the object's bytes.
pub async fn run(ctx: &Ctx, data: Bytes) -> Vec<Row> {
    let mounts = if ctx.plan.fuse {
        start_tools(ctx, false, ctx.plan.others).await
    } else {
        Vec::new()
    };
    let rows = measure(ctx, &data, &mounts).await;
    stop_tools(mounts).await;
    rows
}

async fn measure(ctx: &Ctx, data: &Bytes, mounts: &[(Tool, Result<ToolMount, Cell>)]) -> Vec<Row> {
    let vfs = S3Vfs::new(Arc::new(ctx.library.clone()), FsConfig::default());
    let mut writers = vec![
        (Writer::Raw, Ok(Vec::new())),
        (Writer::Library, Ok(Vec::new())),
    ];
    if !ctx.bucket.sign_payloads {
        writers.push((Writer::RawSigned, Ok(Vec::new())));
    }
    for (tool, mount) in mounts {
        let state = match mount {
            Ok(_) => Ok(Vec::new()),
            Err(cell) => Err(cell.clone()),
        };
        writers.push((Writer::Mount(*tool), state));
    }
    let tag = rand::random::<u32>();
    for round in 1..=ctx.plan.runs {
        for (writer, samples) in writers.iter_mut() {
            let Ok(list) = samples else { continue };
            let key = format!(
                "s3vfs-bench-write-{tag:08x}-{}-{round}.bin",
                writer.name().replace(' ', "-")
            );
            let mount = match writer {
                Writer::Mount(tool) => mounts
                    .iter()
                    .find(|(t, _)| t == tool)
                    .and_then(|(_, m)| m.as_ref().ok()),
                _ => None,
            };
            let (result, busy) = crate::busy::during(crate::interruptible(write_once(
                ctx, &vfs, *writer, mount, &key, data,
            )))
            .await;
            let checked = match result {
                Ok(elapsed) => ctx
                    .bucket
                    .verify(&key, data)
                    .await
                    .map(|()| elapsed)
                    .context("content check after writing"),
                Err(err) => Err(err),
            };
            if let Err(err) = ctx.bucket.delete_prefix(&key).await {
                eprintln!("warning: could not delete {key}: {err:#}");
            }
            match checked {
                Ok(elapsed) => {
                    let rate = report::mib(data.len() as u64) / elapsed.as_secs_f64();
                    eprintln!(
                        "write run {round}/{}: {:<16} {rate:8.1} MiB/s ({:.2} s)",
                        ctx.plan.runs,
                        writer.name(),
                        elapsed.as_secs_f64()
                    );
                    list.push(Run { rate, busy });
                }
                Err(err) => *samples = Err(Cell::Failed(format!("{err:#}"))),
            }
        }
    }

    let cell = |wanted: Writer| -> Cell {
        match writers.iter().find(|(w, _)| *w == wanted) {
            None => Cell::Skipped("not run".to_owned()),
            Some((_, Err(cell))) => cell.clone(),
            Some((_, Ok(runs))) => {
                let rates: Vec<f64> = runs.iter().map(|run| run.rate).collect();
                report::median(&rates).map_or(Cell::Failed("no samples".to_owned()), Cell::Value)
            }
        }
    };
    let samples = |wanted: Writer| -> String {
        match writers.iter().find(|(w, _)| *w == wanted) {
            Some((_, Ok(runs))) if !runs.is_empty() => runs
                .iter()
                .map(|run| format!("{:.0}", run.rate))
                .collect::<Vec<_>>()
                .join(" "),
            _ => "-".to_owned(),
        }
    };
    // Cores busy, median of the runs, for each writer that ran.
    let busy: Vec<String> = writers
        .iter()
        .filter_map(|(writer, runs)| {
            let busy: Vec<f64> = runs.as_ref().ok()?.iter().filter_map(|r| r.busy).collect();
            Some(format!(
                "{} {}",
                writer.name(),
                crate::busy::show(report::median(&busy))
            ))
        })
        .collect();
    let busy = format!("cores busy (of the machine's): {}", busy.join(", "));
    let reference = cell(Writer::Raw);
    let what = format!("seq write {}, ", size_name(data.len() as u64));
    let mut rows = vec![Row::new(
        2,
        format!("{what}library create+write_all+complete"),
        ctx.tag,
        Unit::MibPerSec,
        cell(Writer::Library),
    )
    .reference(reference.clone())
    .note(format!(
        "durable: until complete() returns; reference: CreateMultipartUpload + UploadPart {} MiB x {WRITE_INFLIGHT} in flight + \
         Complete, part bodies {}; MiB/s per run: raw {}, library {}; {busy}",
        WRITE_PART_SIZE >> 20,
        if ctx.bucket.sign_payloads {
            "signed (s3vfs signs them on this endpoint too)"
        } else {
            "unsigned like s3vfs's (loopback endpoint; CRC32 checksums sent)"
        },
        samples(Writer::Raw),
        samples(Writer::Library)
    ))];
    if !ctx.bucket.sign_payloads {
        rows.push(
            Row::new(
                2,
                format!("{what}raw multipart, signed bodies (SDK default)"),
                ctx.tag,
                Unit::MibPerSec,
                cell(Writer::RawSigned),
            )
            .reference(reference.clone())
            .note(format!(
                "what the SigV4 SHA-256 of every body costs (client and server); MiB/s per run: {}",
                samples(Writer::RawSigned)
            )),
        );
    }
    if ctx.plan.fuse {
        let others = Tool::OTHERS
            .iter()
            .map(|tool| {
                ctx.tool_cell(*tool)
                    .unwrap_or_else(|| cell(Writer::Mount(*tool)))
            })
            .collect();
        let per_run: Vec<String> = std::iter::once(Tool::S3vfs)
            .chain(Tool::OTHERS)
            .map(|tool| format!("{} {}", tool.name(), samples(Writer::Mount(tool))))
            .collect();
        rows.push(
            Row::new(
                2,
                format!("{what}mount write+fsync+close"),
                ctx.tag,
                Unit::MibPerSec,
                cell(Writer::Mount(Tool::S3vfs)),
            )
            .reference(reference)
            .target(Target::RatioAtLeast(MOUNT_TARGET))
            .others(others)
            .note(format!(
                "durable: until close returned and HEAD shows the whole object; 1 MiB writes; \
                 MiB/s per run: {}",
                per_run.join(", ")
            )),
        );
    }
    rows
}

/// One timed write of `data` to `key`; the time until the store holds it.
async fn write_once(
    ctx: &Ctx,
    vfs: &S3Vfs,
    writer: Writer,
    mount: Option<&ToolMount>,
    key: &str,
    data: &Bytes,
) -> Result<Duration> {
    let started = Instant::now();
    match writer {
        Writer::Raw | Writer::RawSigned => {
            let signed = writer == Writer::RawSigned || ctx.bucket.sign_payloads;
            let (client, name) = (&ctx.bucket.client, &ctx.bucket.name);
            bucket::multipart_put(client, name, key, data.clone(), signed).await?
        }
        Writer::Library => {
            let mut file = vfs
                .create(key)
                .await
                .with_context(|| format!("S3Vfs::create({key})"))?;
            for chunk in data.chunks(WRITE_CHUNK) {
                file.write_all(chunk)
                    .await
                    .context("s3vfs File::write_all")?;
            }
            file.complete().await.context("s3vfs File::complete")?;
        }
        Writer::Mount(_) => {
            let mount = mount.context("not mounted")?;
            let path = mount.path().join(key);
            let bytes = data.clone();
            tokio::task::spawn_blocking(move || write_file(&path, &bytes))
                .await
                .context("writer thread failed")??;
            ctx.bucket
                .wait_for_object(key, data.len() as u64, DURABLE_TIMEOUT)
                .await?;
        }
    }
    Ok(started.elapsed())
}

/// Creates `path`, writes `data` in 1 MiB chunks, fsyncs and closes it, checking every
/// result (a file system may report a failed upload only at `close`).
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    for chunk in data.chunks(WRITE_CHUNK) {
        file.write_all(chunk)
            .with_context(|| format!("write {}", path.display()))?;
    }
    file.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    close(file).with_context(|| format!("close {}", path.display()))
}

/// `close(2)` with its result, which `drop` would ignore.
pub fn close(file: std::fs::File) -> Result<()> {
    use std::os::fd::IntoRawFd;
    let fd = file.into_raw_fd();
    // SAFETY: `fd` was just released by the File, so it is open and closed only here.
    if unsafe { libc::close(fd) } != 0 {
        let err = std::io::Error::last_os_error();
        bail!("{err}");
    }
    Ok(())
}
