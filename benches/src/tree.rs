//! Items 4 to 6: many small files through a mount.
//!
//! - create: N files of 4 KiB, one after another (create, write, close with its result
//!   checked) in a directory made beforehand, until a LIST of the store shows all N;
//! - ls: `ls -l` (`LC_ALL=C`, output counted) of a directory of M objects seeded straight
//!   into the store, on a fresh mount (cold) and at once again (warm, within the TTL);
//! - rename: `mv` of a directory of N seeded objects on a fresh mount, until a LIST shows
//!   all N under the new name and none under the old.
//!
//! Each is measured on the s3vfs binary (in its own process, `--runs` samples, median
//! shown) and on s3fs and rclone when installed (one sample each). With the built-in
//! server, the requests the server answered during the timed part are noted.

use crate::seqwrite::close;
use crate::summary::{Cell, Row, Target, Unit};
use crate::tools::{Settings, Tool, ToolMount};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Size of every small file, in bytes.
pub const SMALL_FILE: usize = 4096;
/// Longest wait for the store to show what a mount wrote.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Targets of the issue, in seconds.
/// Create: at most this multiple of the same number of raw sequential PUTs.
const CREATE_TARGET_RATIO: f64 = 1.5;
/// `ls -l` cold: at most this multiple of the raw paginated LIST.
const LS_COLD_TARGET_RATIO: f64 = 1.1;
const LS_WARM_TARGET: f64 = 0.2;
const RENAME_TARGET: f64 = 1.5;
/// The metadata TTL of the s3vfs mount for `ls`: long enough that the warm run is within it.
const LS_METADATA_TTL: Duration = Duration::from_secs(60);

/// Seconds of each sample of one tool, or why there are none; plus notes.
struct Samples {
    seconds: Result<Vec<f64>, Cell>,
    notes: Vec<String>,
}

impl Samples {
    fn new() -> Self {
        Self {
            seconds: Ok(Vec::new()),
            notes: Vec::new(),
        }
    }

    fn failed(cell: Cell) -> Self {
        Self {
            seconds: Err(cell),
            notes: Vec::new(),
        }
    }

    fn push(&mut self, sample: Result<f64>) {
        if let Ok(list) = &mut self.seconds {
            match sample {
                Ok(v) => list.push(v),
                Err(err) => self.seconds = Err(Cell::Failed(format!("{err:#}"))),
            }
        }
    }

    fn cell(&self) -> Cell {
        match &self.seconds {
            Err(cell) => cell.clone(),
            Ok(list) => crate::report::median(list)
                .map_or(Cell::Failed("no samples".to_owned()), Cell::Value),
        }
    }

    fn list(&self) -> String {
        match &self.seconds {
            Ok(list) if !list.is_empty() => list
                .iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
            _ => "-".to_owned(),
        }
    }
}

/// The tools measured, with how many samples each gets.
fn tools(ctx: &Ctx) -> Vec<(Tool, u32)> {
    let mut tools = vec![(Tool::S3vfs, ctx.plan.runs)];
    if ctx.plan.others {
        tools.extend(Tool::OTHERS.iter().map(|t| (*t, 1)));
    }
    tools
}

async fn stop(mount: ToolMount) {
    match tokio::task::spawn_blocking(move || mount.unmount()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!("warning: {err:#}"),
        Err(err) => eprintln!("warning: unmount thread failed: {err}"),
    }
}

/// The other tools' cells of a row, in column order.
fn others(ctx: &Ctx, results: &[(Tool, Samples)]) -> Vec<Cell> {
    Tool::OTHERS
        .iter()
        .map(|tool| {
            ctx.tool_cell(*tool).unwrap_or_else(|| {
                results
                    .iter()
                    .find(|(t, _)| t == tool)
                    .map_or(Cell::Skipped("not run".to_owned()), |(_, s)| s.cell())
            })
        })
        .collect()
}

fn s3vfs_samples(results: &[(Tool, Samples)]) -> &Samples {
    &results
        .iter()
        .find(|(t, _)| *t == Tool::S3vfs)
        .expect("s3vfs is always measured")
        .1
}

fn per_tool_list(results: &[(Tool, Samples)]) -> String {
    results
        .iter()
        .map(|(tool, s)| format!("{} {}", tool.name(), s.list()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Item 4: create `ctx.plan.files` files of 4 KiB each; the reference is as many raw
/// PUTs one after another.
pub async fn create(ctx: &Ctx, body: Bytes) -> Row {
    let n = ctx.plan.files;
    let tag = rand::random::<u32>();
    let raw_dir = format!("s3vfs-bench-create-{tag:08x}-raw");
    let reference = Cell::from_result(raw_puts(ctx, &raw_dir, n, &body).await);
    if let Err(err) = ctx.bucket.delete_prefix(&format!("{raw_dir}/")).await {
        eprintln!("warning: could not delete {raw_dir}/: {err:#}");
    }
    let mut results = Vec::new();
    for (tool, samples) in tools(ctx) {
        if let Some(cell) = ctx.tool_cell(tool) {
            results.push((tool, Samples::failed(cell)));
            continue;
        }
        let mut s = Samples::new();
        for sample in 0..samples {
            let dir = format!("s3vfs-bench-create-{tag:08x}-{}-{sample}", tool.name());
            let result = crate::interruptible(create_once(ctx, tool, &dir, n, &body, &mut s)).await;
            s.push(result);
            if let Err(err) = ctx.bucket.delete_prefix(&format!("{dir}/")).await {
                eprintln!("warning: could not delete {dir}/: {err:#}");
            }
            if s.seconds.is_err() {
                break;
            }
        }
        eprintln!("create {n} x 4 KiB, {}: {} s", tool.name(), s.list());
        results.push((tool, s));
    }
    let s3vfs = s3vfs_samples(&results);
    let mut row = Row::new(
        4,
        format!("create {n} x 4 KiB files via mount, until in S3"),
        ctx.tag,
        Unit::Seconds,
        s3vfs.cell(),
    )
    .reference(reference)
    .target(Target::RatioAtMost(CREATE_TARGET_RATIO))
    .others(others(ctx, &results))
    .note(format!("seconds per sample: {}", per_tool_list(&results)));
    for note in &s3vfs.notes {
        row = row.note(format!("s3vfs: {note}"));
    }
    row
}

/// ListObjectsV2 of `prefix`, every page one after another: seconds; `expected` keys.
async fn raw_list(ctx: &Ctx, prefix: &str, expected: usize) -> Result<f64> {
    let started = Instant::now();
    let mut listed = 0;
    let mut token = None;
    loop {
        let page = ctx
            .bucket
            .client
            .list_objects_v2()
            .bucket(&ctx.bucket.name)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "LIST {prefix}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        listed += page.contents().len();
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let took = started.elapsed().as_secs_f64();
    if listed != expected {
        bail!("listed {listed} keys, not {expected}");
    }
    Ok(took)
}

/// `n` raw PUTs of `body`, one after another, under `dir/`: seconds.
async fn raw_puts(ctx: &Ctx, dir: &str, n: usize, body: &Bytes) -> Result<f64> {
    let started = Instant::now();
    for i in 0..n {
        let key = format!("{dir}/f{i:05}");
        ctx.bucket
            .client
            .put_object()
            .bucket(&ctx.bucket.name)
            .key(&key)
            .body(body.clone().into())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("PUT {key}: {}", aws_sdk_s3::error::DisplayErrorContext(e))
            })?;
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn create_once(
    ctx: &Ctx,
    tool: Tool,
    dir: &str,
    n: usize,
    body: &Bytes,
    samples: &mut Samples,
) -> Result<f64> {
    let mount = ctx.mount(tool, Settings::default()).await?;
    let result = async {
        let root = mount.path().join(dir);
        std::fs::create_dir(&root).with_context(|| format!("mkdir {}", root.display()))?;
        let before = ctx.requests();
        let started = Instant::now();
        let body_for_thread = body.clone();
        let closed = tokio::task::spawn_blocking(move || -> Result<Duration> {
            for i in 0..n {
                let path = root.join(format!("f{i:05}"));
                write_small(&path, &body_for_thread)?;
            }
            Ok(started.elapsed())
        })
        .await
        .context("writer thread failed")??;
        ctx.bucket
            .wait_for_keys(&format!("{dir}/f"), n, VISIBLE_TIMEOUT)
            .await?;
        let elapsed = started.elapsed().as_secs_f64();
        if tool == Tool::S3vfs && samples.notes.is_empty() {
            samples.notes.push(format!(
                "first sample: all closed after {:.3} s; {}",
                closed.as_secs_f64(),
                ctx.requests_note(&before, "during the timed part")
            ));
        }
        for i in [0, n - 1] {
            let key = format!("{dir}/f{i:05}");
            let got = ctx.bucket.get_range(&key, 0, body.len() as u64).await?;
            if got != *body {
                bail!("{key}: wrong bytes in the store");
            }
        }
        Ok(elapsed)
    }
    .await;
    stop(mount).await;
    result
}

fn write_small(path: &Path, body: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    file.write_all(body)
        .with_context(|| format!("write {}", path.display()))?;
    close(file).with_context(|| format!("close {}", path.display()))
}

/// The small objects `prefix/f00000` … of `body` each.
fn small_objects(prefix: &str, n: usize, body: &Bytes) -> Vec<(String, Bytes)> {
    (0..n)
        .map(|i| (format!("{prefix}/f{i:05}"), body.clone()))
        .collect()
}

/// Item 5: `ls -l` of a directory of `ctx.plan.ls_entries` objects, cold and warm.
pub async fn ls(ctx: &Ctx, body: Bytes) -> Vec<Row> {
    let m = ctx.plan.ls_entries;
    let dir = format!("s3vfs-bench-ls-{:08x}", rand::random::<u32>());
    let what_cold = format!("ls -l of {m} entries via mount, cold");
    let what_warm = format!("ls -l of {m} entries via mount, warm");
    let seeded = ctx.bucket.seed(small_objects(&dir, m, &body)).await;
    if let Err(err) = seeded {
        let why = format!("seeding {m} objects: {err:#}");
        return vec![
            Row::new(
                5,
                what_cold,
                ctx.tag,
                Unit::Seconds,
                Cell::Failed(why.clone()),
            ),
            Row::new(5, what_warm, ctx.tag, Unit::Seconds, Cell::Failed(why)),
        ];
    }
    // The reference: the listing alone, every page, through the same SDK.
    let reference = Cell::from_result(raw_list(ctx, &format!("{dir}/"), m).await);
    // What `ls -l` itself costs here, with no file system to wait for.
    let floor = local_ls(m).await;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for (tool, samples) in tools(ctx) {
        let (c, w) = ls_samples(ctx, tool, samples, &dir, m).await;
        cold.push((tool, c));
        warm.push((tool, w));
    }
    if let Err(err) = ctx.bucket.delete_prefix(&format!("{dir}/")).await {
        eprintln!("warning: could not delete {dir}/: {err:#}");
    }
    let scale = m as f64 / 10_000.0;
    let mut rows = Vec::new();
    for (what, results, target, first_note) in [
        (
            what_cold,
            &cold,
            Target::RatioAtMost(LS_COLD_TARGET_RATIO),
            "fresh mount; s3vfs with --metadata-ttl 60; reference: ListObjectsV2 of the \
             directory, every page (1000 keys each) one after another",
        ),
        (
            what_warm,
            &warm,
            Target::AtMost(LS_WARM_TARGET * scale),
            "the same ls at once again on that mount",
        ),
    ] {
        let s3vfs = s3vfs_samples(results);
        let mut row = Row::new(5, what, ctx.tag, Unit::Seconds, s3vfs.cell())
            .reference(reference.clone())
            .target(target)
            .others(others(ctx, results))
            .note(format!(
                "{first_note}; seconds per sample: {}",
                per_tool_list(results)
            ))
            .note(match &floor {
                Ok(seconds) => format!(
                    "ls -l of {m} empty files in a local tmpfs directory (ls's own work, which \
                     any mount adds to the listing): {seconds:.3} s (median of 3)"
                ),
                Err(err) => format!("local ls -l floor not measured: {err:#}"),
            });
        for note in &s3vfs.notes {
            row = row.note(format!("s3vfs: {note}"));
        }
        rows.push(row);
    }
    rows
}

/// Seconds `ls -l` takes over a local tmpfs (or temporary) directory of `m` empty files,
/// median of 3: the part of a mount's `ls -l` that is `ls` itself.
async fn local_ls(m: usize) -> Result<f64> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::tempdir_in(base).context("local directory for the ls floor")?;
    for i in 0..m {
        std::fs::File::create(dir.path().join(format!("f{i:05}")))?;
    }
    let mut samples = Vec::new();
    for _ in 0..3 {
        samples.push(timed_ls(dir.path(), m).await?);
    }
    crate::report::median(&samples).context("no samples")
}

/// `samples` fresh mounts of `tool`, each timing a cold and a warm `ls -l` of `dir`.
async fn ls_samples(
    ctx: &Ctx,
    tool: Tool,
    samples: u32,
    dir: &str,
    m: usize,
) -> (Samples, Samples) {
    if let Some(cell) = ctx.tool_cell(tool) {
        return (Samples::failed(cell.clone()), Samples::failed(cell));
    }
    let (mut c, mut w) = (Samples::new(), Samples::new());
    for _ in 0..samples {
        match crate::interruptible(ls_once(ctx, tool, dir, m)).await {
            Ok((cold_s, warm_s, notes)) => {
                c.push(Ok(cold_s));
                w.push(Ok(warm_s));
                if tool == Tool::S3vfs && c.notes.is_empty() {
                    c.notes.push(format!("first sample: {}", notes.0));
                    w.notes.push(format!("first sample: {}", notes.1));
                }
            }
            Err(err) => {
                let why = format!("{err:#}");
                c.push(Err(anyhow::anyhow!("{why}")));
                w.push(Err(anyhow::anyhow!("{why}")));
                break;
            }
        }
    }
    eprintln!(
        "ls -l {m} entries, {}: cold {} s, warm {} s",
        tool.name(),
        c.list(),
        w.list()
    );
    (c, w)
}

/// One fresh mount: the cold and the warm `ls -l`, and the s3vfs request notes of each.
async fn ls_once(
    ctx: &Ctx,
    tool: Tool,
    dir: &str,
    m: usize,
) -> Result<(f64, f64, (String, String))> {
    let settings = Settings {
        metadata_ttl: Some(LS_METADATA_TTL),
        ..Settings::default()
    };
    let mount = ctx.mount(tool, settings).await?;
    let path = mount.path().join(dir);
    let result = async {
        let before = ctx.requests();
        let cold = timed_ls(&path, m).await?;
        let cold_note = ctx.requests_note(&before, "cold");
        let before = ctx.requests();
        let warm = timed_ls(&path, m).await?;
        let warm_note = ctx.requests_note(&before, "warm");
        Ok((cold, warm, (cold_note, warm_note)))
    }
    .await;
    stop(mount).await;
    result
}

/// Seconds `ls -l path` takes; checks that it lists `entries` entries.
async fn timed_ls(path: &Path, entries: usize) -> Result<f64> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> Result<f64> {
        let started = Instant::now();
        let out = Command::new("ls")
            .arg("-l")
            .arg(&path)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .context("cannot run ls")?;
        let elapsed = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "ls -l {} failed ({}): {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // `total N`, then one line per entry.
        let lines = out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        if lines != entries + 1 {
            bail!(
                "ls -l listed {} entries, expected {entries}",
                lines.saturating_sub(1)
            );
        }
        Ok(elapsed)
    })
    .await
    .context("ls thread failed")?
}

/// Item 6: `mv` of a directory of `ctx.plan.rename_files` objects.
pub async fn rename(ctx: &Ctx, body: Bytes) -> Row {
    let n = ctx.plan.rename_files;
    let tag = rand::random::<u32>();
    let mut results = Vec::new();
    for (tool, samples) in tools(ctx) {
        if let Some(cell) = ctx.tool_cell(tool) {
            results.push((tool, Samples::failed(cell)));
            continue;
        }
        let mut s = Samples::new();
        for sample in 0..samples {
            let base = format!("s3vfs-bench-mv-{tag:08x}-{}-{sample}", tool.name());
            let result =
                crate::interruptible(rename_once(ctx, tool, &base, n, &body, &mut s)).await;
            s.push(result);
            if let Err(err) = ctx.bucket.delete_prefix(&format!("{base}/")).await {
                eprintln!("warning: could not delete {base}/: {err:#}");
            }
            if s.seconds.is_err() {
                break;
            }
        }
        eprintln!(
            "mv of a directory of {n} files, {}: {} s",
            tool.name(),
            s.list()
        );
        results.push((tool, s));
    }
    let s3vfs = s3vfs_samples(&results);
    let mut row = Row::new(
        6,
        format!("mv of a directory of {n} files via mount"),
        ctx.tag,
        Unit::Seconds,
        s3vfs.cell(),
    )
    .target(Target::AtMost(RENAME_TARGET * n as f64 / 1000.0))
    .others(others(ctx, &results))
    .note(format!(
        "fresh mount each; until LIST shows all under the new name; seconds per sample: {}",
        per_tool_list(&results)
    ));
    for note in &s3vfs.notes {
        row = row.note(format!("s3vfs: {note}"));
    }
    row
}

async fn rename_once(
    ctx: &Ctx,
    tool: Tool,
    base: &str,
    n: usize,
    body: &Bytes,
    samples: &mut Samples,
) -> Result<f64> {
    ctx.bucket
        .seed(small_objects(&format!("{base}/src"), n, body))
        .await
        .context("seeding")?;
    let mount = ctx.mount(tool, Settings::default()).await?;
    let result = async {
        let from = mount.path().join(base).join("src");
        let to = mount.path().join(base).join("dst");
        let before = ctx.requests();
        let started = Instant::now();
        let mv = tokio::task::spawn_blocking(move || {
            Command::new("mv")
                .arg(&from)
                .arg(&to)
                .stdin(Stdio::null())
                .output()
        })
        .await
        .context("mv thread failed")?
        .context("cannot run mv")?;
        let mv_secs = started.elapsed().as_secs_f64();
        if !mv.status.success() {
            bail!(
                "mv failed ({}) after {mv_secs:.2} s: {}",
                mv.status,
                String::from_utf8_lossy(&mv.stderr).trim()
            );
        }
        ctx.bucket
            .wait_for_keys(&format!("{base}/dst/f"), n, VISIBLE_TIMEOUT)
            .await?;
        ctx.bucket
            .wait_for_keys(&format!("{base}/src/"), 0, VISIBLE_TIMEOUT)
            .await?;
        let elapsed = started.elapsed().as_secs_f64();
        if tool == Tool::S3vfs && samples.notes.is_empty() {
            samples.notes.push(format!(
                "first sample: mv returned after {mv_secs:.3} s; {}",
                ctx.requests_note(&before, "during the timed part")
            ));
        }
        let key = format!("{base}/dst/f{:05}", n - 1);
        if ctx.bucket.get_range(&key, 0, body.len() as u64).await? != *body {
            bail!("{key}: wrong bytes after the rename");
        }
        Ok(elapsed)
    }
    .await;
    stop(mount).await;
    result
}
