//! Item 1 (sequential read of one large object) and item 3 (random 4 KiB reads of it):
//! upload a random object, check that every reader returns its bytes, then time each reader
//! `runs` times, interleaved round by round so that drift hits all alike.
//!
//! Readers: raw aws-sdk-s3 (the reference: parallel ranged GETs; and one single GET), the
//! library, the same library mounted in this process (with GET counts), and mounts served by
//! other processes: the `s3vfs` binary, s3fs and rclone. A reader that fails is reported
//! failed and left out of later rounds; the others go on. After them, the library's re-reads
//! through a data cache ([`cacheread`]).

use crate::cacheread;
use crate::fuse_ceiling::Ceiling;
use crate::measure;
use crate::randread;
use crate::report::{self, Latency, Report, Throughput};
use crate::summary::{Cell, Row, Target, Unit};
use crate::tools::{Settings, Tool, ToolMount};
use crate::upload::TestObject;
use crate::{interruptible, unmount, Ctx};
use anyhow::{bail, Context, Result};
use s3vfs::store::Backend;
use s3vfs::{FsConfig, S3Fs, S3Vfs};
use s3vfs_testkit::fault::Op;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Target of the library's sequential read, as a fraction of the reference.
const LIBRARY_TARGET: f64 = 0.90;
/// Target of a mount's sequential read, as a fraction of the reference, on a server of
/// its own (the built-in one or an independent one).
const MOUNT_TARGET: f64 = 0.80;
/// The same target on the S3-like profile, where the network rather than the server's CPU
/// sets the pace.
const MOUNT_TARGET_S3_LIKE: f64 = 0.90;

/// The mount read target for the server `tag` names.
fn mount_target(tag: &str) -> Target {
    Target::RatioAtLeast(if tag == "s3like" {
        MOUNT_TARGET_S3_LIKE
    } else {
        MOUNT_TARGET
    })
}

/// One of the timed readers.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reader {
    RawParallel,
    RawSingle,
    Library,
    /// The library's zero-copy reader (`File::read_bytes`).
    LibraryBytes,
    /// The in-process mount's file, read with buffers of this many bytes.
    InProcess(PathBuf, usize),
    /// A file on a mount served by another process, read with 1 MiB buffers.
    Tool(Tool, PathBuf),
    /// The same, opened with `O_DIRECT` (s3vfs only).
    ToolDirect(Tool, PathBuf),
    /// The in-memory fuser file system's file ([`crate::fuse_ceiling`]), 1 MiB reads.
    Ceiling(PathBuf),
}

/// Everything the readers need, set up once.
struct Setup<'a> {
    ctx: &'a Ctx,
    store: Arc<dyn Backend>,
    vfs: S3Vfs,
    fs_config: FsConfig,
    object: TestObject,
    /// The object on the in-process mount.
    mounted_file: Option<PathBuf>,
    /// The file of the in-memory FUSE file system, as large as the object.
    ceiling_file: Option<PathBuf>,
}

/// Runs the sequential reads (if `read`) and the random reads (if `rand`) of one object of
/// `ctx.plan.size` bytes; rows go to `report.summary`.
pub async fn run(ctx: &Ctx, report: &mut Report, read: bool, rand: bool) {
    let object = TestObject::new(&ctx.bucket.name, ctx.plan.size);
    eprintln!(
        "uploading {} ({} bytes) with multipart ...",
        object.key, object.size
    );
    let started = Instant::now();
    if let Err(err) =
        interruptible(object.upload(&ctx.bucket.client, ctx.bucket.sign_payloads)).await
    {
        let why = format!("uploading the test object: {err:#}");
        if read {
            report.summary.rows.push(Row::new(
                1,
                "sequential read",
                ctx.tag,
                Unit::MibPerSec,
                Cell::Failed(why.clone()),
            ));
        }
        if rand {
            report.summary.rows.push(Row::new(
                3,
                "random 4 KiB reads",
                ctx.tag,
                Unit::Iops,
                Cell::Failed(why),
            ));
        }
        return;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "uploaded in {secs:.1} s ({:.0} MiB/s)",
        report::mib(object.size) / secs
    );
    let result = with_object(ctx, report, &object, read, rand).await;
    if let Err(err) = result {
        report.summary.rows.push(Row::new(
            1,
            "sequential/random read setup",
            ctx.tag,
            Unit::MibPerSec,
            Cell::Failed(format!("{err:#}")),
        ));
    }
    if let Err(err) = object.delete(&ctx.bucket.client).await {
        eprintln!("warning: could not delete the test object: {err:#}");
    }
}

async fn with_object(
    ctx: &Ctx,
    report: &mut Report,
    object: &TestObject,
    read: bool,
    rand: bool,
) -> Result<()> {
    let mut fs_config = FsConfig::default().with_read_only(true);
    if let Some(part) = ctx.plan.read_part_size {
        fs_config.read_part_size = part;
    }
    if let Some(initial) = ctx.plan.initial_read_window {
        fs_config.initial_read_window = initial;
    }
    if let Some(max) = ctx.plan.max_read_window {
        fs_config.max_read_window = max;
    }
    report.set_read_ahead(&fs_config);
    let store: Arc<dyn Backend> = Arc::new(ctx.library.clone());
    let vfs = S3Vfs::new(Arc::clone(&store), fs_config.clone());
    let mountdir = tempfile::Builder::new()
        .prefix("s3vfs-bench-mnt")
        .tempdir()
        .context("cannot create the mountpoint")?;
    let guard = if ctx.plan.fuse && read {
        // A file system of its own (own handles and caches) over the library's store.
        let fs = S3Fs::new(Arc::clone(&store), fs_config.clone());
        let guard = crate::inproc::mount_read_only(fs, mountdir.path(), "s3vfs-bench").await?;
        eprintln!("mounted in-process at {}", guard.mountpoint().display());
        // From here on the guard is unmounted on every path, even if this fails.
        match crate::fuse_read_ahead(guard.mountpoint(), ctx.plan.fuse_read_ahead_kb) {
            Ok(line) => report.fuse_read_ahead = Some(line),
            Err(err) => {
                unmount(guard).await?;
                return Err(err);
            }
        }
        Some(guard)
    } else {
        None
    };
    let ceiling = if ctx.plan.fuse && read {
        let size = object.size;
        match tokio::task::spawn_blocking(move || Ceiling::mount(size)).await {
            Ok(Ok(ceiling)) => Some(ceiling),
            Ok(Err(err)) => {
                eprintln!("warning: no FUSE ceiling row: {err:#}");
                None
            }
            Err(err) => {
                eprintln!("warning: no FUSE ceiling row: {err}");
                None
            }
        }
    } else {
        None
    };
    let setup = Setup {
        ctx,
        mounted_file: guard.as_ref().map(|g| g.mountpoint().join(&object.key)),
        ceiling_file: ceiling.as_ref().map(|c| c.file().to_owned()),
        store,
        vfs,
        fs_config,
        object: object.clone(),
    };
    let result = interruptible(measure_all(report, &setup, read, rand)).await;
    // Unmounting joins the session's thread and frees the buffer: off the async workers.
    if let Some(ceiling) = ceiling {
        let _ = tokio::task::spawn_blocking(move || drop(ceiling)).await;
    }
    // Unmount on every path; the guard would also do it on drop, but not from async code.
    let unmounted = match guard {
        Some(guard) => unmount(guard).await,
        None => Ok(()),
    };
    result.and(unmounted)
}

/// Mounts `tool` read-only in another process; `Err` is the reason for its cell.
async fn start_tool(ctx: &Ctx, tool: Tool, read_only: bool) -> Result<ToolMount> {
    let settings = Settings {
        read_only,
        ..Settings::default()
    };
    let mount = ctx.mount(tool, settings).await?;
    eprintln!("mounted {} at {}", mount.command, mount.path().display());
    Ok(mount)
}

/// Mounts in other processes for the read rows: s3vfs always, s3fs and rclone when
/// installed (and not turned off); each with the cell to show when it could not start.
pub async fn start_tools(
    ctx: &Ctx,
    read_only: bool,
    with_others: bool,
) -> Vec<(Tool, Result<ToolMount, Cell>)> {
    let mut tools = vec![Tool::S3vfs];
    if with_others {
        tools.extend(Tool::OTHERS);
    }
    let mut mounts = Vec::new();
    for tool in tools {
        let mount = match ctx.tool_cell(tool) {
            Some(cell) => Err(cell),
            None => start_tool(ctx, tool, read_only)
                .await
                .map_err(|e| Cell::Failed(format!("{e:#}"))),
        };
        mounts.push((tool, mount));
    }
    mounts
}

/// Unmounts every mount in `mounts` (in a blocking thread), warning about failures.
pub async fn stop_tools(mounts: Vec<(Tool, Result<ToolMount, Cell>)>) {
    for (tool, mount) in mounts {
        if let Ok(mount) = mount {
            let stopped = tokio::task::spawn_blocking(move || mount.unmount()).await;
            match stopped {
                Ok(Ok(())) => {}
                Ok(Err(err)) => eprintln!("warning: {}: {err:#}", tool.name()),
                Err(err) => eprintln!("warning: {}: unmount thread failed: {err}", tool.name()),
            }
        }
    }
}

async fn measure_all(report: &mut Report, setup: &Setup<'_>, read: bool, rand: bool) -> Result<()> {
    let ctx = setup.ctx;
    let object = &setup.object;
    if let Some(path) = &setup.mounted_file {
        let len = std::fs::metadata(path)
            .with_context(|| format!("stat {} on the mount", path.display()))?
            .len();
        if len != object.size {
            bail!("the mount shows {len} bytes, uploaded {}", object.size);
        }
    }
    measure::verify(
        &ctx.bucket.client,
        &setup.vfs,
        setup.mounted_file.as_ref(),
        object,
    )
    .await
    .context("content check failed")?;
    eprintln!("content check passed (raw GET, library, in-process mount)");

    // Mounts in other processes; their files are checked like the in-process one.
    let tools = if ctx.plan.fuse {
        start_tools(ctx, true, read && ctx.plan.others).await
    } else {
        Vec::new()
    };
    let mut tool_files: Vec<(Tool, Result<PathBuf, Cell>)> = Vec::new();
    for (tool, mount) in &tools {
        let file = match mount {
            Ok(mount) => {
                let path = mount.path().join(&object.key);
                match measure::verify_file(&path, object).await {
                    Ok(()) => Ok(path),
                    Err(err) => Err(Cell::Failed(format!("content check: {err:#}"))),
                }
            }
            Err(cell) => Err(cell.clone()),
        };
        tool_files.push((*tool, file));
    }

    let result = async {
        if read {
            sequential(report, setup, &tool_files).await?;
            if ctx.plan.cache_rows {
                let reference = report
                    .throughput
                    .iter()
                    .find(|row| row.reference)
                    .map_or(Cell::Failed("no reference".to_owned()), cacheread::cell);
                cacheread::run(
                    ctx,
                    report,
                    &setup.store,
                    &setup.fs_config,
                    object,
                    reference,
                )
                .await;
            }
        }
        if rand {
            let s3vfs_file = tool_files
                .iter()
                .find(|(tool, _)| *tool == Tool::S3vfs)
                .map(|(_, file)| file.clone());
            random(report, setup, s3vfs_file).await;
        }
        Ok(())
    }
    .await;
    stop_tools(tools).await;
    result
}

async fn sequential(
    report: &mut Report,
    setup: &Setup<'_>,
    tool_files: &[(Tool, Result<PathBuf, Cell>)],
) -> Result<()> {
    let ctx = setup.ctx;
    let object = &setup.object;
    let mut rows = vec![
        (
            Reader::RawParallel,
            Throughput::new(
                format!(
                    "reference: raw GETs, {} MiB ranges, {} in flight",
                    measure::REFERENCE_RANGE >> 20,
                    measure::REFERENCE_INFLIGHT
                ),
                true,
            ),
        ),
        (
            Reader::RawSingle,
            Throughput::new("raw single-stream GET".to_owned(), false),
        ),
        (
            Reader::Library,
            Throughput::new("s3vfs library: open + read, 1 MiB buffer".to_owned(), false),
        ),
        (
            Reader::LibraryBytes,
            Throughput::new(
                "s3vfs library: open + read_bytes (zero-copy), 8 MiB max".to_owned(),
                false,
            ),
        ),
    ];
    if let Some(path) = &setup.mounted_file {
        rows.push((
            Reader::InProcess(path.clone(), measure::LARGE_READ),
            Throughput::new(
                "FUSE in-process: std::fs::File, 1 MiB reads".to_owned(),
                false,
            ),
        ));
        if !ctx.plan.no_small_reads {
            rows.push((
                Reader::InProcess(path.clone(), measure::SMALL_READ),
                Throughput::new(
                    "FUSE in-process: std::fs::File, 128 KiB reads".to_owned(),
                    false,
                ),
            ));
        }
    }
    if let Some(path) = &setup.ceiling_file {
        rows.push((
            Reader::Ceiling(path.clone()),
            Throughput::new(
                "FUSE ceiling: fuser fs answering from memory (no S3), 1 MiB reads".to_owned(),
                false,
            ),
        ));
    }
    for (tool, file) in tool_files {
        let mut row = Throughput::new(
            format!("{} mount (own process): 1 MiB reads", tool.name()),
            false,
        );
        // The O_DIRECT reader goes first: its open drops the file's cached pages (the
        // mount keeps no cache across opens), and the page-cache reader right after it
        // then reuses those pages, as the in-process and ceiling readers reuse theirs at
        // their own open. In the other order the pages sat free for a whole round, and
        // on a VM that hands free pages back to its host (free page reporting), every
        // page of the next read cost a host fault: 0.66-0.70 of the reference instead
        // of 0.84 on the S3-like profile, for the same mount.
        if let (Tool::S3vfs, Ok(path)) = (tool, file) {
            rows.push((
                Reader::ToolDirect(*tool, path.clone()),
                Throughput::new(
                    "s3vfs mount (own process): O_DIRECT, 1 MiB reads".to_owned(),
                    false,
                ),
            ));
        }
        match file {
            Ok(path) => rows.push((Reader::Tool(*tool, path.clone()), row)),
            Err(cell) => {
                row.failed = Some(cell_reason(cell));
                rows.push((Reader::Tool(*tool, PathBuf::new()), row));
            }
        }
    }

    for round in 1..=ctx.plan.runs {
        for (reader, row) in rows.iter_mut() {
            if row.failed.is_some() {
                continue;
            }
            let gets_before = ctx.library.count(Op::Get);
            let started = Instant::now();
            let (bytes, busy) = crate::busy::during(async {
                match reader {
                    Reader::RawParallel => measure::raw_parallel(&ctx.bucket.client, object).await,
                    Reader::RawSingle => measure::raw_single(&ctx.bucket.client, object).await,
                    Reader::Library => measure::library(&setup.vfs, object).await,
                    Reader::LibraryBytes => measure::library_bytes(&setup.vfs, object).await,
                    Reader::InProcess(path, block) => measure::fuse(path, *block).await,
                    Reader::Ceiling(path) => measure::fuse(path, measure::LARGE_READ).await,
                    Reader::Tool(_, path) => measure::fuse(path, measure::LARGE_READ).await,
                    Reader::ToolDirect(_, path) => {
                        measure::fuse_direct(path, measure::LARGE_READ).await
                    }
                }
            })
            .await;
            let elapsed = started.elapsed();
            let bytes = match bytes {
                Ok(n) if n == object.size => n,
                Ok(n) => {
                    row.failed = Some(format!("read {n} bytes of {}", object.size));
                    continue;
                }
                Err(err) => {
                    row.failed = Some(format!("{err:#}"));
                    continue;
                }
            };
            let gets = match reader {
                Reader::RawParallel => Some(object.size.div_ceil(measure::REFERENCE_RANGE)),
                Reader::RawSingle => Some(1),
                Reader::Library | Reader::LibraryBytes | Reader::InProcess(..) => {
                    Some(ctx.library.count(Op::Get) - gets_before)
                }
                Reader::Tool(..) | Reader::ToolDirect(..) | Reader::Ceiling(_) => None,
            };
            let rate = report::mib(bytes) / elapsed.as_secs_f64();
            eprintln!(
                "run {round}/{}: {:<50} {rate:8.1} MiB/s ({:.2} s{})",
                ctx.plan.runs,
                row.name,
                elapsed.as_secs_f64(),
                gets.map_or(String::new(), |g| format!(", {g} GETs"))
            );
            row.samples.push(rate);
            row.busy.extend(busy);
            if let Some(gets) = gets {
                row.gets.push(gets);
            }
        }
    }

    // The summary rows, from the medians.
    let median_of = |wanted: &dyn Fn(&Reader) -> bool| -> Cell {
        rows.iter().find(|(reader, _)| wanted(reader)).map_or(
            Cell::Skipped("not run".to_owned()),
            |(_, row)| match (&row.failed, report::median(&row.samples)) {
                (Some(why), _) => Cell::Failed(why.clone()),
                (None, Some(v)) => Cell::Value(v),
                (None, None) => Cell::Failed("no samples".to_owned()),
            },
        )
    };
    let reference = median_of(&|r| *r == Reader::RawParallel);
    let what = format!("seq read {}, ", report::size_name(object.size));
    let summary = &mut report.summary.rows;
    summary.push(
        Row::new(
            1,
            format!("{what}library open+read, 1 MiB reads"),
            ctx.tag,
            Unit::MibPerSec,
            median_of(&|r| *r == Reader::Library),
        )
        .reference(reference.clone())
        .target(Target::RatioAtLeast(LIBRARY_TARGET)),
    );
    summary.push(
        Row::new(
            1,
            format!("{what}library open+read_bytes, zero-copy"),
            ctx.tag,
            Unit::MibPerSec,
            median_of(&|r| *r == Reader::LibraryBytes),
        )
        .reference(reference.clone())
        .target(Target::RatioAtLeast(LIBRARY_TARGET))
        .note(
            "read_bytes hands out the fetched bytes, like the reference consumes them; \
             read() copies each byte once more, into the caller's buffer"
                .to_owned(),
        ),
    );
    if ctx.plan.fuse {
        summary.push(
            Row::new(
                1,
                format!("{what}mount in-process, 1 MiB reads"),
                ctx.tag,
                Unit::MibPerSec,
                median_of(&|r| matches!(r, Reader::InProcess(_, b) if *b == measure::LARGE_READ)),
            )
            .reference(reference.clone())
            .target(mount_target(ctx.tag)),
        );
        let others = Tool::OTHERS
            .iter()
            .map(|tool| match ctx.tool_cell(*tool) {
                Some(cell) => cell,
                None => median_of(&|r| matches!(r, Reader::Tool(t, _) if t == tool)),
            })
            .collect();
        summary.push(
            Row::new(
                1,
                format!("{what}mount s3vfs process, 1 MiB reads"),
                ctx.tag,
                Unit::MibPerSec,
                median_of(&|r| matches!(r, Reader::Tool(Tool::S3vfs, _))),
            )
            .reference(reference.clone())
            .target(mount_target(ctx.tag))
            .others(others)
            .note(format!(
                "median of {} runs each; every run in the detailed table above",
                ctx.plan.runs
            )),
        );
        summary.push(
            Row::new(
                1,
                format!("{what}mount s3vfs process, O_DIRECT 1 MiB reads"),
                ctx.tag,
                Unit::MibPerSec,
                median_of(&|r| matches!(r, Reader::ToolDirect(Tool::S3vfs, _))),
            )
            .reference(reference.clone())
            .target(mount_target(ctx.tag))
            .note(
                "the reader opens the file with O_DIRECT: no page cache, one copy fewer".to_owned(),
            ),
        );
        summary.push(
            Row::new(
                1,
                format!("{what}FUSE ceiling: fuser fs answering from memory, no S3"),
                ctx.tag,
                Unit::MibPerSec,
                median_of(&|r| matches!(r, Reader::Ceiling(_))),
            )
            .reference(reference)
            .note(
                "the kernel's share of a mount read alone (a request per 1 MiB, reply into the page cache, \
                 page cache into the reader); a mount must also receive every byte from S3, so none can \
                 read faster than this on this machine"
                    .to_owned(),
            ),
        );
    }
    report.throughput = rows.into_iter().map(|(_, row)| row).collect();

    let mut raw_ttfb = Latency::new("raw GET of the first 1 MiB: first body chunk".to_owned());
    let mut lib_ttfb =
        Latency::new("s3vfs library: open (cold metadata) + first 64 KiB read".to_owned());
    for _ in 0..ctx.plan.ttfb_samples {
        raw_ttfb
            .samples
            .push(measure::raw_ttfb(&ctx.bucket.client, object).await?);
        lib_ttfb
            .samples
            .push(measure::library_ttfb(&setup.store, &setup.fs_config, object).await?);
    }
    report.latency = vec![raw_ttfb, lib_ttfb];
    Ok(())
}

/// Item 3: random 4 KiB reads at each queue depth, raw vs. library vs. the s3vfs mount,
/// `runs` rounds interleaved; medians shown.
async fn random(report: &mut Report, setup: &Setup<'_>, mounted: Option<Result<PathBuf, Cell>>) {
    let ctx = setup.ctx;
    let object = &setup.object;
    let duration = ctx.plan.rand_duration;
    let mount_path = match &mounted {
        Some(Ok(path)) => Some(path.clone()),
        _ => None,
    };
    for depth in randread::QUEUE_DEPTHS {
        let mut raw = Ok(Vec::new());
        let mut library = Ok(Vec::new());
        let mut mount = Ok(Vec::new());
        for round in 1..=ctx.plan.runs {
            eprintln!(
                "random 4 KiB reads, queue depth {depth}, round {round}/{}, {duration:?} each ...",
                ctx.plan.runs
            );
            if raw.is_ok() {
                let r = randread::raw(&ctx.bucket.client, object, depth, duration).await;
                collect(&mut raw, r);
            }
            if library.is_ok() {
                let r = randread::library(&setup.vfs, object, depth, duration).await;
                collect(&mut library, r);
            }
            if let (Some(path), true) = (&mount_path, mount.is_ok()) {
                let r = randread::mount(path, object.size, depth, duration).await;
                collect(&mut mount, r);
            }
        }
        let raw = raw.and_then(randread::median);
        let library = library.and_then(randread::median);
        let reference = match &raw {
            Ok(r) => Cell::Value(r.iops),
            Err(why) => Cell::Failed(why.clone()),
        };
        let raw_latency = raw.as_ref().map(|r| r.latency()).unwrap_or_default();
        let summary = &mut report.summary.rows;
        let (cell, note) = match &library {
            Ok(l) => (
                Cell::Value(l.iops),
                format!(
                    "p50/p99: raw {raw_latency}, library {}; {}; IOPS per round: raw {}, \
                     library {}",
                    l.latency(),
                    l.how,
                    raw.as_ref().map(|r| r.rounds.as_str()).unwrap_or("-"),
                    l.rounds
                ),
            ),
            Err(why) => (Cell::Failed(why.clone()), String::new()),
        };
        let mut row = Row::new(
            3,
            format!("rand 4K read QD{depth}, library read_at (S3Fs::read)"),
            ctx.tag,
            Unit::Iops,
            cell,
        )
        .reference(reference.clone());
        if !note.is_empty() {
            row = row.note(note);
        }
        summary.push(row);
        let (cell, note) = match (&mounted, mount.and_then(randread::median)) {
            (None, _) => (Cell::Skipped("--no-fuse".to_owned()), String::new()),
            (Some(Err(cell)), _) => (cell.clone(), String::new()),
            (Some(Ok(_)), Ok(m)) => (
                Cell::Value(m.iops),
                format!(
                    "p50/p99: raw {raw_latency}, mount {}; {}; IOPS per round: mount {}",
                    m.latency(),
                    m.how,
                    m.rounds
                ),
            ),
            (Some(Ok(_)), Err(why)) => (Cell::Failed(why), String::new()),
        };
        let mut row = Row::new(
            3,
            format!("rand 4K read QD{depth}, mount s3vfs process"),
            ctx.tag,
            Unit::Iops,
            cell,
        )
        .reference(reference);
        if !note.is_empty() {
            row = row.note(note);
        }
        summary.push(row);
    }
}

/// Adds one round's result; the first failure ends the reader's rounds.
fn collect(
    acc: &mut Result<Vec<randread::RandomReads>, String>,
    result: Result<randread::RandomReads>,
) {
    if let Ok(list) = acc {
        match result {
            Ok(r) => list.push(r),
            Err(err) => *acc = Err(format!("{err:#}")),
        }
    }
}

fn cell_reason(cell: &Cell) -> String {
    match cell {
        Cell::Failed(why) | Cell::Skipped(why) => why.clone(),
        Cell::Value(_) | Cell::Empty => "not measured".to_owned(),
    }
}
