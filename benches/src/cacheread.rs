//! Item 1's data cache rows: the library reading the test object twice through a data
//! cache, once in memory and once in a disk directory, each cache large enough to hold the
//! whole object. The first read fills the cache (its GETs are those of an uncached read);
//! the second must be served from it with no GET at all, which its row checks.
//!
//! A disk cache writes its blocks behind the reads, within a write backlog: between the
//! two reads the cache is flushed (untimed), so that the re-read reads the disk rather
//! than blocks still waiting in memory. Blocks dropped because the backlog was full are
//! not cached; the first read's row lists how many, and the re-read then GETs them.
//!
//! Each run starts from an empty cache (a new `S3Fs` with a new cache, a new directory), so
//! every first read is cold. The cache is dropped (and the directory removed) at the end of
//! the run, so its memory (up to the object's size) is given back before anything else runs.
//! The reader is the one of the "library open+read" row, over the same counted store, so
//! the rows compare with it and with the reference of the same run.

use crate::measure;
use crate::report::{self, Report, Throughput};
use crate::summary::{Cell, Row, Unit};
use crate::upload::TestObject;
use crate::Ctx;
use anyhow::{Context, Result};
use s3vfs::config::DataCacheConfig;
use s3vfs::store::Backend;
use s3vfs::{FsConfig, S3Fs, S3Vfs};
use s3vfs_testkit::fault::Op;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Room in each cache beyond the object's size, in bytes (the disk cache counts its block
/// files' headers against its cap).
pub const CACHE_SLACK: u64 = 64 * 1024 * 1024;

/// Where the blocks are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `--cache-memory`.
    Memory,
    /// `--cache-dir` with `--cache-disk-size`, in a temporary directory.
    Disk,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Memory => "memory",
            Kind::Disk => "disk",
        })
    }
}

/// A file system with an empty cache of `kind`, and the directory it caches in (removed
/// when dropped).
fn cached_vfs(
    ctx: &Ctx,
    store: &Arc<dyn Backend>,
    config: &FsConfig,
    kind: Kind,
    cap: u64,
) -> Result<(S3Vfs, Option<TempDir>)> {
    let (cache, dir) = match kind {
        Kind::Memory => (DataCacheConfig::default().with_memory(cap), None),
        Kind::Disk => {
            let dir = tempfile::Builder::new()
                .prefix("s3vfs-bench-cache")
                .tempdir()
                .context("cannot create the disk cache directory")?;
            let mut cache = DataCacheConfig::default().with_disk(dir.path(), cap);
            if let Some(backlog) = ctx.plan.cache_write_backlog {
                cache = cache.with_disk_write_backlog(backlog);
            }
            (cache, Some(dir))
        }
    };
    let config = config.clone().with_data_cache(cache);
    // `try_new`: a cache that cannot be set up fails the row instead of being left out.
    let fs = S3Fs::try_new(Arc::clone(store), config).context("cannot set up the data cache")?;
    Ok((S3Vfs::from_fs(fs), dir))
}

/// One timed whole-object read: MiB/s and the GETs it cost.
async fn timed_read(ctx: &Ctx, vfs: &S3Vfs, object: &TestObject) -> Result<(f64, u64)> {
    let gets_before = ctx.library.count(Op::Get);
    let started = Instant::now();
    let bytes = measure::library(vfs, object).await?;
    let elapsed = started.elapsed();
    if bytes != object.size {
        anyhow::bail!("read {bytes} bytes of {}", object.size);
    }
    let gets = ctx.library.count(Op::Get) - gets_before;
    Ok((report::mib(bytes) / elapsed.as_secs_f64(), gets))
}

/// The rows: for a memory and a disk cache, `runs` times a cold and a warm read; adds them
/// to the detailed table and the summary, next to `reference`.
pub async fn run(
    ctx: &Ctx,
    report: &mut Report,
    store: &Arc<dyn Backend>,
    config: &FsConfig,
    object: &TestObject,
    reference: Cell,
) {
    let cap = object.size + CACHE_SLACK;
    let block = DataCacheConfig::default().block_size;
    for kind in [Kind::Memory, Kind::Disk] {
        let mut cold = Throughput::new(
            format!("s3vfs library + {kind} cache: first read (fills it)"),
            false,
        );
        let mut warm = Throughput::new(
            format!("s3vfs library + {kind} cache: re-read (warm)"),
            false,
        );
        let mut rss_note = String::new();
        // Per run: blocks the first read could not cache (write backlog full), and how
        // long the flush after it waited for the disk.
        let mut dropped = Vec::new();
        let mut flushes = Vec::new();
        for round in 1..=ctx.plan.runs {
            let (vfs, dir) = match cached_vfs(ctx, store, config, kind, cap) {
                Ok(made) => made,
                Err(err) => {
                    cold.failed = Some(format!("{err:#}"));
                    warm.failed = Some(format!("{err:#}"));
                    break;
                }
            };
            for (first, row) in [(true, &mut cold), (false, &mut warm)] {
                match timed_read(ctx, &vfs, object).await {
                    Ok((rate, gets)) => {
                        eprintln!(
                            "run {round}/{}: {:<50} {rate:8.1} MiB/s ({gets} GETs)",
                            ctx.plan.runs, row.name
                        );
                        row.samples.push(rate);
                        row.gets.push(gets);
                    }
                    Err(err) => {
                        // A re-read after a failed first read would measure nothing.
                        row.failed = Some(format!("{err:#}"));
                        break;
                    }
                }
                if first {
                    let (flush, blocks_dropped) = flush_cache(&vfs).await;
                    eprintln!(
                        "run {round}/{}: {kind} cache flushed in {:.2} s, {blocks_dropped} \
                         blocks dropped (write backlog full)",
                        ctx.plan.runs,
                        flush.as_secs_f64()
                    );
                    flushes.push(flush);
                    dropped.push(blocks_dropped);
                }
            }
            // The cache (all of the object, in memory or on disk) goes before the next run,
            // and glibc gives its memory back (the streaming tuning would keep a lot of it).
            let full = rss();
            drop(vfs);
            drop(dir);
            trim_heap();
            rss_note = match (full, rss()) {
                (Some(full), Some(after)) => format!(
                    "harness VmRSS {:.0} MiB before dropping the cache, {:.0} MiB after",
                    report::mib(full),
                    report::mib(after)
                ),
                _ => "harness VmRSS not readable".to_owned(),
            };
            if cold.failed.is_some() || warm.failed.is_some() {
                break;
            }
        }
        let what = format!(
            "seq read {}, library + {kind} cache, ",
            crate::report::size_name(object.size)
        );
        let setting = match kind {
            Kind::Memory => format!("--cache-memory {} MiB", cap >> 20),
            Kind::Disk => format!(
                "--cache-dir (a temporary directory) --cache-disk-size {} MiB \
                 --cache-write-backlog {} MiB",
                cap >> 20,
                ctx.plan
                    .cache_write_backlog
                    .unwrap_or(DataCacheConfig::default().disk_write_backlog)
                    >> 20
            ),
        };
        // A dropped block is not cached, so the re-read GETs it: at most one GET per
        // dropped block (one per run of them), none when nothing was dropped.
        let excess_gets = warm
            .gets
            .iter()
            .zip(&dropped)
            .any(|(gets, dropped)| gets > dropped);
        let dropped: Vec<String> = dropped.iter().map(u64::to_string).collect();
        let flushes: Vec<String> = flushes
            .iter()
            .map(|t| format!("{:.2} s", t.as_secs_f64()))
            .collect();
        let gets_note = |row: &Throughput| {
            let gets: Vec<String> = row.gets.iter().map(u64::to_string).collect();
            format!("GETs per run: {}", gets.join(", "))
        };
        let warm_cell = match cell(&warm) {
            Cell::Value(_) if excess_gets => Cell::Failed(format!(
                "the re-reads made more GETs than blocks the first reads dropped ({}; \
                 dropped per run: {}); an object held whole in the cache must cost none",
                gets_note(&warm),
                dropped.join(", ")
            )),
            other => other,
        };
        report.summary.rows.push(
            Row::new(
                1,
                format!("{what}first read"),
                ctx.tag,
                Unit::MibPerSec,
                cell(&cold),
            )
            .reference(reference.clone())
            .note(format!(
                "{}; blocks dropped per run (write backlog full, not cached): {}; \
                 {setting}, {} KiB blocks; an empty cache each run",
                gets_note(&cold),
                dropped.join(", "),
                block >> 10
            )),
        );
        report.summary.rows.push(
            Row::new(
                1,
                format!("{what}re-read"),
                ctx.tag,
                Unit::MibPerSec,
                warm_cell,
            )
            .reference(reference.clone())
            .note(format!(
                "{} (must be 0, or at most the blocks the first read dropped); the same \
                 S3Fs after the first read and a flush of the \
                 cache (untimed; per run: {}); {rss_note} (last run)",
                gets_note(&warm),
                flushes.join(", ")
            )),
        );
        report.throughput.push(cold);
        report.throughput.push(warm);
    }
}

/// Waits for `vfs`'s cache to store what the first read gave it (a disk cache writes
/// behind the reads); how long that took, and the blocks it dropped so far.
async fn flush_cache(vfs: &S3Vfs) -> (Duration, u64) {
    let Some(cache) = vfs.fs().data_cache() else {
        return (Duration::ZERO, 0);
    };
    let started = Instant::now();
    cache.flush().await;
    (started.elapsed(), cache.stats().dropped)
}

/// This process's resident set size (VmRSS), in bytes.
fn rss() -> Option<u64> {
    crate::tools::memory_of(std::process::id())
        .ok()
        .map(|(_, rss)| rss)
}

/// Gives the C heap's free memory back to the kernel.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The median of a reader's runs, or why there is none.
pub fn cell(row: &Throughput) -> Cell {
    match (&row.failed, report::median(&row.samples)) {
        (Some(why), _) => Cell::Failed(why.clone()),
        (None, Some(v)) => Cell::Value(v),
        (None, None) => Cell::Failed("no samples".to_owned()),
    }
}
