//! Item 3: random 4 KiB reads of the test object at a fixed queue depth, for a fixed time.
//!
//! Queue depth N means N workers, each issuing one 4 KiB read at a uniformly random,
//! 4 KiB-aligned offset at a time: N tasks of raw ranged GETs (the reference), N tasks of
//! `read_at` on the library (each with its own handle), and on the mount either fio
//! (`psync`, N jobs, `O_DIRECT` so that every read reaches the file system) or, without
//! fio, N threads of `pread` on descriptors opened with `O_DIRECT`.

use crate::upload::TestObject;
use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use rand::Rng;
use s3vfs::vfs::{Ino, OpenFlags, Vfs};
use s3vfs::S3Vfs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per read.
pub const BLOCK: u64 = 4096;
/// Queue depths measured.
pub const QUEUE_DEPTHS: [usize; 2] = [1, 8];

/// What one measurement found.
#[derive(Clone, Debug)]
pub struct RandomReads {
    /// Reads completed per second, all workers together.
    pub iops: f64,
    /// Median latency of one read.
    pub p50: Duration,
    /// 99th percentile latency of one read.
    pub p99: Duration,
    /// How the reads were made (for the mount: fio or the pread loop).
    pub how: String,
    /// IOPS of each round, when this is a median of several.
    pub rounds: String,
}

impl RandomReads {
    /// `p50/p99 ms`, e.g. `0.41/1.20 ms`.
    pub fn latency(&self) -> String {
        format!(
            "{:.2}/{:.2} ms",
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }

    fn from_latencies(
        mut latencies: Vec<Duration>,
        elapsed: Duration,
        how: String,
    ) -> Result<Self> {
        if latencies.is_empty() {
            bail!("no read completed");
        }
        latencies.sort();
        Ok(Self {
            iops: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            how,
            rounds: String::new(),
        })
    }
}

/// The median of each figure over several rounds (each figure on its own), with the IOPS
/// of every round in `rounds`.
pub fn median(results: Vec<RandomReads>) -> Result<RandomReads, String> {
    let first = results.first().ok_or("no rounds")?;
    let how = first.how.clone();
    let pick = |f: &dyn Fn(&RandomReads) -> f64| -> f64 {
        let values: Vec<f64> = results.iter().map(f).collect();
        crate::report::median(&values).unwrap_or_default()
    };
    Ok(RandomReads {
        iops: pick(&|r| r.iops),
        p50: Duration::from_secs_f64(pick(&|r| r.p50.as_secs_f64())),
        p99: Duration::from_secs_f64(pick(&|r| r.p99.as_secs_f64())),
        how,
        rounds: results
            .iter()
            .map(|r| format!("{:.0}", r.iops))
            .collect::<Vec<_>>()
            .join(" "),
    })
}

/// The `q` quantile of sorted `values` (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A random 4 KiB-aligned offset with a whole block before the end of `size` bytes.
fn random_offset(size: u64) -> u64 {
    let blocks = (size / BLOCK).max(1);
    rand::thread_rng().gen_range(0..blocks) * BLOCK
}

/// Runs the futures of `depth` calls of `worker` as tasks; collects every latency.
async fn run_tasks<F, Fut>(depth: usize, mut worker: F) -> Result<(Vec<Duration>, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Duration>>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..depth).map(|_| tokio::spawn(worker())).collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.context("reader task failed")??);
    }
    Ok((all, started.elapsed()))
}

/// The reference: raw ranged GETs of 4 KiB, `depth` at a time.
pub async fn raw(
    client: &Client,
    object: &TestObject,
    depth: usize,
    duration: Duration,
) -> Result<RandomReads> {
    let (latencies, elapsed) = run_tasks(depth, || {
        let (client, object) = (client.clone(), object.clone());
        async move {
            let deadline = Instant::now() + duration;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let offset = random_offset(object.size);
                let started = Instant::now();
                let out = client
                    .get_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .range(format!("bytes={offset}-{}", offset + BLOCK - 1))
                    .send()
                    .await
                    .map_err(|e| anyhow!("GetObject: {}", DisplayErrorContext(e)))?;
                let body = out.body.collect().await.context("GetObject body failed")?;
                latencies.push(started.elapsed());
                if body.into_bytes().len() as u64 != BLOCK.min(object.size - offset) {
                    bail!("short ranged GET at {offset}");
                }
            }
            Ok(latencies)
        }
    })
    .await?;
    RandomReads::from_latencies(latencies, elapsed, format!("{depth} tasks of ranged GETs"))
}

/// The library: 4 KiB reads on `depth` handles, one per task.
///
/// `File::read_at` is one call of `S3Fs::read` on the file's inode and handle; that call is
/// made here directly, because `s3vfs::File` is not `Sync` (its pending futures are only
/// `Send`), so a task holding `&File` across `read_at(..).await` cannot be spawned.
pub async fn library(
    vfs: &S3Vfs,
    object: &TestObject,
    depth: usize,
    duration: Duration,
) -> Result<RandomReads> {
    let fs = Arc::clone(vfs.fs());
    // Looked up as the kernel does, so the inode stays known while the handles are made
    // (`S3Vfs::metadata` forgets the inodes it looked up when it returns).
    let mut ino = Ino::ROOT;
    let mut looked_up = Vec::new();
    for name in object.key.split('/').filter(|n| !n.is_empty()) {
        ino = fs
            .lookup(ino, std::ffi::OsStr::new(name))
            .await
            .with_context(|| format!("lookup of {name} in {}", object.key))?
            .attr
            .ino;
        looked_up.push(ino);
    }
    let mut handles = Vec::new();
    for _ in 0..depth {
        handles.push(
            fs.open(ino, OpenFlags::read_only())
                .await
                .with_context(|| format!("open {}", object.key))?,
        );
    }
    let size = object.size;
    let measured = run_tasks(depth, || {
        let (fs, handle) = (Arc::clone(&fs), handles.pop());
        async move {
            let handle = handle.context("no handle left")?;
            let deadline = Instant::now() + duration;
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let offset = random_offset(size);
                let started = Instant::now();
                let data = fs
                    .read(ino, handle, offset, BLOCK as u32)
                    .await
                    .context("s3vfs read")?;
                latencies.push(started.elapsed());
                if data.len() as u64 != BLOCK.min(size - offset) {
                    bail!("short read at {offset}: {} bytes", data.len());
                }
            }
            fs.release(ino, handle).await.context("s3vfs release")?;
            Ok(latencies)
        }
    })
    .await;
    for looked in looked_up {
        fs.forget(looked, 1);
    }
    let (latencies, elapsed) = measured?;
    RandomReads::from_latencies(
        latencies,
        elapsed,
        format!("{depth} tasks, each its own handle"),
    )
}

/// The mount: fio if installed, else the `pread` loop.
pub async fn mount(
    path: &Path,
    size: u64,
    depth: usize,
    duration: Duration,
) -> Result<RandomReads> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        if crate::tools::which("fio").is_some() {
            fio(&path, size, depth, duration)
        } else {
            pread_loop(&path, size, depth, duration)
        }
    })
    .await
    .context("reader thread failed")?
}

/// `fio --rw=randread --bs=4k --ioengine=psync --numjobs=DEPTH --direct=1`, parsed from its
/// JSON output (completion latency percentiles).
fn fio(path: &Path, size: u64, depth: usize, duration: Duration) -> Result<RandomReads> {
    let secs = duration.as_secs().max(1);
    let args = [
        "--name=randread".to_owned(),
        format!("--filename={}", path.display()),
        "--rw=randread".to_owned(),
        format!("--bs={BLOCK}"),
        "--ioengine=psync".to_owned(),
        format!("--numjobs={depth}"),
        "--thread".to_owned(),
        "--group_reporting".to_owned(),
        "--time_based".to_owned(),
        format!("--runtime={secs}"),
        "--direct=1".to_owned(),
        "--readonly".to_owned(),
        "--norandommap".to_owned(),
        "--randrepeat=0".to_owned(),
        format!("--size={size}"),
        "--output-format=json".to_owned(),
    ];
    let out = Command::new("fio")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run fio")?;
    if !out.status.success() {
        bail!(
            "fio failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "fio printed no JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let read = &json["jobs"][0]["read"];
    let iops = read["iops"]
        .as_f64()
        .context("no read.iops in fio's output")?;
    let errors = json["jobs"][0]["error"].as_i64().unwrap_or(0);
    if errors != 0 || read["total_ios"].as_u64().unwrap_or(0) == 0 {
        bail!("fio: error {errors}, {} reads", read["total_ios"]);
    }
    let nanos = |q: &str| -> Result<Duration> {
        read["clat_ns"]["percentile"][q]
            .as_u64()
            .map(Duration::from_nanos)
            .with_context(|| format!("no clat percentile {q} in fio's output"))
    };
    Ok(RandomReads {
        iops,
        p50: nanos("50.000000")?,
        p99: nanos("99.000000")?,
        how: format!("fio psync, {depth} job(s), O_DIRECT"),
        rounds: String::new(),
    })
}

/// `depth` threads, each with its own `O_DIRECT` descriptor, `pread` of 4 KiB at random
/// offsets until `duration` has passed.
fn pread_loop(path: &Path, size: u64, depth: usize, duration: Duration) -> Result<RandomReads> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let started = Instant::now();
    let threads: Vec<_> = (0..depth)
        .map(|_| {
            let path = path.to_owned();
            std::thread::spawn(move || -> Result<Vec<Duration>> {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&path)
                    .with_context(|| format!("open {} with O_DIRECT", path.display()))?;
                // O_DIRECT wants an aligned buffer: a 4 KiB-aligned slice of a larger one.
                let mut backing = vec![0u8; 2 * BLOCK as usize];
                let skip = backing.as_ptr().align_offset(BLOCK as usize);
                let buf = &mut backing[skip..skip + BLOCK as usize];
                let deadline = Instant::now() + duration;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let offset = random_offset(size);
                    let t = Instant::now();
                    let n = file.read_at(buf, offset).context("pread")?;
                    latencies.push(t.elapsed());
                    if n as u64 != BLOCK.min(size - offset) {
                        bail!("short pread at {offset}: {n} bytes");
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        all.extend(
            thread
                .join()
                .map_err(|_| anyhow!("reader thread panicked"))??,
        );
    }
    RandomReads::from_latencies(
        all,
        started.elapsed(),
        format!("own pread loop (fio not installed), {depth} thread(s), O_DIRECT"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&values, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&values[..1], 0.99), Duration::from_millis(1));
    }

    #[test]
    fn offsets_are_aligned_and_inside() {
        for _ in 0..1000 {
            let offset = random_offset(10 * BLOCK + 100);
            assert_eq!(offset % BLOCK, 0);
            assert!(offset + BLOCK <= 10 * BLOCK + 100);
        }
    }
}
