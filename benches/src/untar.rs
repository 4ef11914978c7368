//! Item 9: `tar x` of a real source tree through each tool's mount, until every file of
//! the archive is an object in the store (for rclone's write cache: until its uploads are
//! done, not when `tar` returns).
//!
//! The archive is `--tarball`, or one made once from the crate sources in cargo's registry
//! on this machine (whole crates, in name order, until at least `--tar-files` files; no
//! symbolic links, which rclone mount cannot store).

use crate::summary::{Cell, Row, Unit};
use crate::tools::{Settings, Tool};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Longest wait for the store to show every file after `tar` returned.
const UPLOADED_TIMEOUT: Duration = Duration::from_secs(600);
/// Interval between two listings while waiting.
const POLL: Duration = Duration::from_millis(250);

/// An archive and the files it holds (paths relative to where it is extracted).
pub struct Archive {
    path: PathBuf,
    files: BTreeSet<String>,
    bytes: u64,
}

impl Archive {
    /// `tarball`, or one made from cargo's registry sources with at least `min_files`
    /// files (kept in the temporary directory for the next runs).
    pub fn open_or_make(tarball: Option<&Path>, min_files: usize) -> Result<Archive> {
        let path = match tarball {
            Some(path) => path.to_owned(),
            None => make_from_registry(min_files)?,
        };
        let out = Command::new("tar")
            .arg("tvf")
            .arg(&path)
            .output()
            .with_context(|| format!("tar tvf {}", path.display()))?;
        if !out.status.success() {
            bail!("tar tvf {} failed", path.display());
        }
        let mut files = BTreeSet::new();
        let mut bytes = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // -rw-r--r-- user/group SIZE DATE TIME NAME
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mode = fields.first().copied().unwrap_or("");
            let size: u64 = fields.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            let name = fields.get(5..).unwrap_or_default().join(" ");
            if mode.starts_with('-') {
                files.insert(name);
                bytes += size;
            } else if !mode.starts_with('d') {
                bail!(
                    "{} holds {name}, neither a file nor a directory",
                    path.display()
                );
            }
        }
        Ok(Archive { path, files, bytes })
    }
}

/// A tarball of whole crates of `~/.cargo/registry/src`, in name order, until at least
/// `min_files` regular files.
fn make_from_registry(min_files: usize) -> Result<PathBuf> {
    let out = std::env::temp_dir().join(format!("s3vfs-bench-sources-{min_files}.tar"));
    if out.exists() {
        return Ok(out);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry/src");
    let index = std::fs::read_dir(&src)
        .with_context(|| format!("read {}", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
        .with_context(|| format!("no registry index under {}", src.display()))?;
    let mut crates: Vec<PathBuf> = std::fs::read_dir(&index)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    crates.sort();
    let mut chosen = Vec::new();
    let mut count = 0;
    for dir in crates {
        let (files, links) = count_tree(&dir);
        if links > 0 {
            continue;
        }
        chosen.push(dir.file_name().context("crate dir")?.to_owned());
        count += files;
        if count >= min_files {
            break;
        }
    }
    let status = Command::new("tar")
        .arg("cf")
        .arg(&out)
        .arg("-C")
        .arg(&index)
        .args(&chosen)
        .status()
        .context("tar cf")?;
    if !status.success() {
        bail!("tar cf {} failed", out.display());
    }
    Ok(out)
}

/// Regular files and symbolic links under `dir`.
fn count_tree(dir: &Path) -> (usize, usize) {
    let mut files = 0;
    let mut links = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_symlink() => links += 1,
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => files += 1,
                _ => {}
            }
        }
    }
    (files, links)
}

/// One tool: seconds from the start of `tar x` until every file is in the store.
async fn untar_once(ctx: &Ctx, tool: Tool, archive: &Archive, dir: &str) -> Result<(f64, f64)> {
    let mount = ctx.mount(tool, Settings::default()).await?;
    let result = async {
        let root = mount.path().join(dir);
        std::fs::create_dir(&root).with_context(|| format!("mkdir {}", root.display()))?;
        let started = Instant::now();
        let tarball = archive.path.clone();
        let extracted = tokio::task::spawn_blocking(move || -> Result<Duration> {
            let out = Command::new("tar")
                .arg("xf")
                .arg(&tarball)
                .arg("-C")
                .arg(&root)
                .arg("--no-same-owner")
                .output()
                .context("cannot run tar")?;
            if !out.status.success() {
                bail!("tar x failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(started.elapsed())
        })
        .await
        .context("tar thread failed")??;
        let prefix = format!("{dir}/");
        loop {
            let keys = ctx.bucket.keys(&prefix).await?;
            let stored: BTreeSet<&str> = keys
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix))
                .collect();
            let missing = archive
                .files
                .iter()
                .filter(|f| !stored.contains(f.as_str()))
                .count();
            if missing == 0 {
                break;
            }
            if started.elapsed() > extracted + UPLOADED_TIMEOUT {
                bail!("{missing} files not in the store {UPLOADED_TIMEOUT:?} after tar returned");
            }
            tokio::time::sleep(POLL).await;
        }
        Ok((extracted.as_secs_f64(), started.elapsed().as_secs_f64()))
    }
    .await;
    if let Err(err) = tokio::task::spawn_blocking(move || mount.unmount()).await? {
        eprintln!("warning: {err:#}");
    }
    result
}

/// Item 9 (see the module docs).
pub async fn run(ctx: &Ctx, tarball: Option<&Path>, min_files: usize) -> Row {
    let archive = match Archive::open_or_make(tarball, min_files) {
        Ok(a) => a,
        Err(err) => {
            return Row::new(
                9,
                "tar x of a source tree via mount".to_owned(),
                ctx.tag,
                Unit::Seconds,
                Cell::Failed(format!("{err:#}")),
            );
        }
    };
    let what = format!(
        "tar x of {} files, {} MB, via mount, until in S3",
        archive.files.len(),
        archive.bytes / 1_000_000
    );
    let tag = rand::random::<u32>();
    let mut cells = Vec::new();
    let mut notes = Vec::new();
    let mut tools = vec![Tool::S3vfs];
    if ctx.plan.others {
        tools.extend(Tool::OTHERS);
    }
    for tool in tools {
        if let Some(cell) = ctx.tool_cell(tool) {
            cells.push((tool, cell));
            continue;
        }
        let dir = format!("s3vfs-bench-tar-{tag:08x}-{}", tool.name());
        let cell = match crate::interruptible(untar_once(ctx, tool, &archive, &dir)).await {
            Ok((extracted, stored)) => {
                notes.push(format!(
                    "{}: tar returned after {extracted:.1} s, all in S3 after {stored:.1} s",
                    tool.name()
                ));
                eprintln!(
                    "tar x, {}: tar {extracted:.1} s, in S3 {stored:.1} s",
                    tool.name()
                );
                Cell::Value(stored)
            }
            Err(err) => Cell::Failed(format!("{err:#}")),
        };
        if let Err(err) = ctx.bucket.delete_prefix(&format!("{dir}/")).await {
            eprintln!("warning: could not delete {dir}/: {err:#}");
        }
        cells.push((tool, cell));
    }
    let s3vfs = cells
        .iter()
        .find(|(t, _)| *t == Tool::S3vfs)
        .map_or(Cell::Failed("not run".into()), |(_, c)| c.clone());
    let others = Tool::OTHERS
        .iter()
        .map(|tool| {
            cells
                .iter()
                .find(|(t, _)| t == tool)
                .map_or(Cell::Skipped("not run".to_owned()), |(_, c)| c.clone())
        })
        .collect();
    let mut row = Row::new(9, what, ctx.tag, Unit::Seconds, s3vfs).others(others);
    for note in notes {
        row = row.note(note);
    }
    row
}
