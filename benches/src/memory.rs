//! Item 7: peak memory of the process serving a mount while it reads several large files
//! at once.
//!
//! The mount is the `s3vfs` binary in its own process (the in-process server holds every
//! object in memory, so this process's RSS says nothing). The files are seeded straight
//! into the store; one thread per file reads it sequentially with 1 MiB reads, comparing
//! every byte. The figure is the serving process's VmHWM (peak resident set) from
//! `/proc/PID/status` after the reads, against the memory budget it was started with.

use crate::measure::drop_page_cache;
use crate::report::mib;
use crate::report::size_name;
use crate::summary::{Cell, Row, Target, Unit};
use crate::tools::{self, Settings, Tool, ToolMount};
use crate::Ctx;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use s3vfs::FsConfig;
use std::path::PathBuf;
use std::time::Instant;

/// What the peak may exceed the budget by: the runtime, the S3 client, FUSE buffers and
/// the reads being answered at the moment (the "small constant" of the target).
pub const SLACK: u64 = 64 * 1024 * 1024;
/// Offset between the starts of two files' bytes in the payload, so that no two are equal.
pub const FILE_STRIDE: usize = 1024 * 1024;
/// Bytes per read.
const READ_CHUNK: usize = 1024 * 1024;

/// Runs item 7 with files cut from `payload` (at least `file_size + files * FILE_STRIDE`).
pub async fn run(ctx: &Ctx, payload: &Bytes) -> Row {
    let what = format!(
        "peak RSS, s3vfs process, {} x {} read at once",
        ctx.plan.rss_files,
        size_name(ctx.plan.rss_file_size)
    );
    let has_flag = match tools::s3vfs_has_memory_budget_flag() {
        Ok(has) => has,
        Err(err) => {
            return Row::new(
                7,
                what,
                ctx.tag,
                Unit::Mib,
                Cell::Failed(format!("{err:#}")),
            )
        }
    };
    let budget = if has_flag {
        ctx.plan.memory_budget
    } else {
        FsConfig::default().memory_budget
    };
    let prefix = format!("s3vfs-bench-rss-{:08x}", rand::random::<u32>());
    let result =
        crate::interruptible(measure(ctx, payload, &prefix, has_flag.then_some(budget))).await;
    if let Err(err) = ctx.bucket.delete_prefix(&format!("{prefix}/")).await {
        eprintln!("warning: could not delete {prefix}/: {err:#}");
    }
    let budget_note = if has_flag {
        format!(
            "memory budget {:.0} MiB, passed with --memory-budget",
            mib(budget)
        )
    } else {
        format!(
            "s3vfs mount has NO --memory-budget flag: measured with the default budget of \
             {:.0} MiB (FsConfig::default().memory_budget); --memory-budget {:.0} MiB not applied",
            mib(budget),
            mib(ctx.plan.memory_budget)
        )
    };
    let target = Target::AtMost(mib(budget + SLACK));
    match result {
        Ok(found) => Row::new(7, what, ctx.tag, Unit::Mib, Cell::Value(mib(found.peak)))
            .reference(Cell::Empty)
            .target(target)
            .note(format!(
                "{budget_note}; target: budget + {:.0} MiB",
                mib(SLACK)
            ))
            .note(format!(
                "VmHWM after mounting {:.0} MiB, VmRSS after the reads {:.0} MiB; read {:.0} MiB \
                 in {:.2} s ({:.0} MiB/s together)",
                mib(found.baseline),
                mib(found.rss_after),
                mib(found.bytes),
                found.seconds,
                mib(found.bytes) / found.seconds
            )),
        Err(err) => Row::new(
            7,
            what,
            ctx.tag,
            Unit::Mib,
            Cell::Failed(format!("{err:#}")),
        )
        .target(target)
        .note(budget_note),
    }
}

struct Found {
    baseline: u64,
    peak: u64,
    rss_after: u64,
    bytes: u64,
    seconds: f64,
}

async fn measure(ctx: &Ctx, payload: &Bytes, prefix: &str, budget: Option<u64>) -> Result<Found> {
    let (files, size) = (ctx.plan.rss_files, ctx.plan.rss_file_size as usize);
    if payload.len() < size + files * FILE_STRIDE {
        bail!("payload too small for {files} files of {size} bytes");
    }
    let objects: Vec<(String, Bytes)> = (0..files)
        .map(|i| {
            let start = i * FILE_STRIDE;
            (format!("{prefix}/f{i}"), payload.slice(start..start + size))
        })
        .collect();
    eprintln!("seeding {files} objects of {} ...", size_name(size as u64));
    ctx.bucket.seed(objects.clone()).await.context("seeding")?;
    let settings = Settings {
        read_only: true,
        memory_budget: budget,
        ..Settings::default()
    };
    let mount = ctx.mount(Tool::S3vfs, settings).await?;
    eprintln!("mounted {}", mount.command);
    let root = mount.path().join(prefix);
    let result = tokio::task::spawn_blocking(move || -> Result<(Found, ToolMount)> {
        let found = read_all(&mount, &root, objects);
        found.map(|f| (f, mount))
    })
    .await
    .context("reader thread failed")?;
    let (found, mount) = result?;
    tokio::task::spawn_blocking(move || mount.unmount())
        .await
        .context("unmount thread failed")??;
    Ok(found)
}

/// Reads every object's file on the mount at once, one thread each. Blocking.
fn read_all(
    mount: &ToolMount,
    root: &std::path::Path,
    objects: Vec<(String, Bytes)>,
) -> Result<Found> {
    let pid = mount.pid().context("the mount's process is gone")?;
    let (baseline, _) = tools::memory_of(pid)?;
    let started = Instant::now();
    let threads: Vec<_> = objects
        .into_iter()
        .map(|(key, expected)| {
            let name = key.rsplit('/').next().unwrap_or_default().to_owned();
            let path: PathBuf = root.join(name);
            std::thread::spawn(move || -> Result<u64> {
                use std::io::Read;
                let mut file = std::fs::File::open(&path)
                    .with_context(|| format!("open {}", path.display()))?;
                drop_page_cache(&file);
                let mut buf = vec![0u8; READ_CHUNK];
                let mut at = 0usize;
                loop {
                    let n = file
                        .read(&mut buf)
                        .with_context(|| format!("read {}", path.display()))?;
                    if n == 0 {
                        break;
                    }
                    if at + n > expected.len() || buf[..n] != expected[at..at + n] {
                        bail!("{}: wrong bytes at offset {at}", path.display());
                    }
                    at += n;
                }
                if at != expected.len() {
                    bail!("{}: read {at} bytes of {}", path.display(), expected.len());
                }
                Ok(at as u64)
            })
        })
        .collect();
    let mut bytes = 0;
    for thread in threads {
        bytes += thread
            .join()
            .map_err(|_| anyhow!("reader thread panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (peak, rss_after) = tools::memory_of(pid)?;
    Ok(Found {
        baseline,
        peak,
        rss_after,
        bytes,
        seconds,
    })
}
