//! Item 8: memory of the process serving a mount after `find` walked a large tree.
//!
//! The tree has `--walk-keys` empty objects (default 1,000,000), 100 to a directory, 100
//! directories to a parent (`PREFIX/d12/d34/f56`), seeded straight into the store. Empty,
//! so that seeding a million costs no data; each still costs a HEAD in the listing (an
//! empty object may be a fifo or a device, told only by its metadata), as in s3fs. The mount is the `s3vfs` binary in its own process
//! (the in-process server holds every object in this one). `find PATH -type f` walks the
//! tree (its output lines counted); the figure is the serving process's VmRSS right after.
//!
//! While the kernel caches every name it walked, the file system must keep their inodes.
//! When the kernel lets them go, it sends FORGET and the inodes leave the table: as root,
//! the harness then makes it drop its dentry and inode caches (`vm.drop_caches = 2`, which
//! only drops unused slab objects, no page cache), waits for the mount's periodic sweep
//! and memory trim, and notes VmRSS; the figure says how much the process keeps of a walk
//! the kernel forgot.

use crate::report::mib;
use crate::summary::{Cell, Row, Target, Unit};
use crate::tools::{self, Settings, Tool, ToolMount};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Objects per directory, and directories per parent.
const FAN_OUT: usize = 100;
/// Keys per seeding batch (each batch is one blocking task).
const SEED_BATCH: usize = 100_000;
/// How long the harness waits after the kernel's forgets before it reads VmRSS: the
/// mount sweeps its metadata caches and gives freed memory back to the system every 30 s
/// each (on separate clocks), so two periods and a margin.
const AFTER_FORGETS: Duration = Duration::from_secs(65);
/// Where the kernel is told to drop its caches.
const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// The key of object `i` of the tree under `prefix`.
fn key(prefix: &str, i: usize) -> String {
    let leaf = i / FAN_OUT;
    format!(
        "{prefix}/d{}/d{}/f{}",
        leaf / FAN_OUT,
        leaf % FAN_OUT,
        i % FAN_OUT
    )
}

/// Runs item 8.
pub async fn run(ctx: &Ctx) -> Row {
    let keys = ctx.plan.walk_keys;
    let what = format!("peak RSS, s3vfs process, find over {keys} keys");
    // The mount's default memory budget: the issue asks for the peak within it.
    let budget = s3vfs::FsConfig::default().memory_budget;
    let prefix = format!("s3vfs-bench-walk-{:08x}", rand::random::<u32>());
    let result = crate::interruptible(measure(ctx, &prefix, keys)).await;
    eprintln!("deleting the {keys} keys of the walk ...");
    if let Err(err) = ctx.bucket.delete_prefix(&format!("{prefix}/")).await {
        eprintln!("warning: could not delete {prefix}/: {err:#}");
    }
    match result {
        Ok(found) => {
            let mut row = Row::new(8, what, ctx.tag, Unit::Mib, Cell::Value(mib(found.peak)))
                .target(Target::AtMost(mib(budget)))
                .note(format!(
                    "{} objects of 0 bytes, {FAN_OUT} per directory; find listed {} files in \
                     {:.1} s",
                    keys, found.files, found.seconds
                ))
                .note(format!(
                    "VmRSS after mounting {:.0} MiB, right after the walk {:.0} MiB (the kernel \
                     holding every name); target: the peak within the default memory budget",
                    mib(found.baseline),
                    mib(found.rss)
                ));
            row = row.note(match found.forgotten {
                Ok(rss) => format!(
                    "VmRSS {} s after the kernel forgot the walk (vm.drop_caches=2) {:.0} MiB",
                    AFTER_FORGETS.as_secs(),
                    mib(rss)
                ),
                Err(why) => format!("not measured after the kernel's forgets: {why}"),
            });
            row.note(ctx.requests_note(&found.requests_before, "walk"))
        }
        Err(err) => Row::new(
            8,
            what,
            ctx.tag,
            Unit::Mib,
            Cell::Failed(format!("{err:#}")),
        ),
    }
}

struct Found {
    baseline: u64,
    rss: u64,
    peak: u64,
    forgotten: std::result::Result<u64, String>,
    files: usize,
    seconds: f64,
    requests_before: std::collections::BTreeMap<s3vfs_testkit::fault::Op, u64>,
}

async fn measure(ctx: &Ctx, prefix: &str, keys: usize) -> Result<Found> {
    eprintln!("seeding {keys} empty objects under {prefix}/ ...");
    let started = Instant::now();
    let mut at = 0;
    while at < keys {
        let end = (at + SEED_BATCH).min(keys);
        let batch = (at..end).map(|i| (key(prefix, i), Bytes::new())).collect();
        ctx.bucket.seed(batch).await.context("seeding")?;
        at = end;
    }
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    let settings = Settings {
        read_only: true,
        ..Settings::default()
    };
    let mount = ctx.mount(Tool::S3vfs, settings).await?;
    eprintln!("mounted {}", mount.command);
    let root = mount.path().join(prefix);
    let requests_before = ctx.requests();
    let (found, mount) = tokio::task::spawn_blocking(move || {
        let found = walk(&mount, &root, keys);
        (found, mount)
    })
    .await
    .context("walk thread failed")?;
    tokio::task::spawn_blocking(move || mount.unmount())
        .await
        .context("unmount thread failed")??;
    let mut found = found?;
    found.requests_before = requests_before;
    Ok(found)
}

/// Walks `root` on `mount` with `find`, then has the kernel forget it. Blocking.
fn walk(mount: &ToolMount, root: &Path, keys: usize) -> Result<Found> {
    let pid = mount.pid().context("the mount's process is gone")?;
    let (_, baseline) = tools::memory_of(pid)?;
    eprintln!("find over {keys} keys ...");
    let started = Instant::now();
    let files = count_find(root)?;
    let seconds = started.elapsed().as_secs_f64();
    if files != keys {
        bail!("find listed {files} files of {keys}");
    }
    let (peak, rss) = tools::memory_of(pid)?;
    eprintln!(
        "walked in {seconds:.1} s; VmRSS {:.0} MiB, VmHWM {:.0} MiB",
        mib(rss),
        mib(peak)
    );
    let forgotten = forget_walk(pid).map_err(|e| format!("{e:#}"));
    Ok(Found {
        baseline,
        rss,
        peak,
        forgotten,
        files,
        seconds,
        requests_before: Default::default(),
    })
}

/// `find ROOT -type f`, its output lines counted as they come.
fn count_find(root: &Path) -> Result<usize> {
    let mut child = Command::new("find")
        .arg(root)
        .args(["-type", "f"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run find")?;
    let stdout = child.stdout.take().context("find's output")?;
    let mut lines = 0;
    for line in BufReader::new(stdout).split(b'\n') {
        line.context("reading find's output")?;
        lines += 1;
    }
    let out = child.wait_with_output().context("waiting for find")?;
    if !out.status.success() {
        bail!(
            "find failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(lines)
}

/// Makes the kernel drop its unused dentries and inodes (FORGET for every inode of the
/// walk), waits [`AFTER_FORGETS`] and returns `pid`'s VmRSS. Needs root.
fn forget_walk(pid: u32) -> Result<u64> {
    std::fs::write(DROP_CACHES, "2\n")
        .with_context(|| format!("cannot write {DROP_CACHES} (needs root)"))?;
    std::thread::sleep(AFTER_FORGETS);
    let (_, rss) = tools::memory_of(pid)?;
    eprintln!(
        "{} s after the kernel's forgets: VmRSS {:.0} MiB",
        AFTER_FORGETS.as_secs(),
        mib(rss)
    );
    Ok(rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fill_directories_of_a_hundred() {
        assert_eq!(key("p", 0), "p/d0/d0/f0");
        assert_eq!(key("p", 99), "p/d0/d0/f99");
        assert_eq!(key("p", 100), "p/d0/d1/f0");
        assert_eq!(key("p", 999_999), "p/d99/d99/f99");
        let distinct: std::collections::BTreeSet<String> =
            (0..20_000).map(|i| key("p", i)).collect();
        assert_eq!(distinct.len(), 20_000);
    }
}
