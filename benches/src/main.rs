//! `s3vfs-bench`: sequential read throughput of s3vfs (library and FUSE mount) against raw
//! aws-sdk-s3 on the same endpoint, in one run.
//!
//! Steps: pick the endpoint ([`endpoint`]), upload a random object ([`upload`]), check that
//! every reader returns the right bytes, then time each reader ([`measure`]) `--runs` times,
//! interleaved round by round so that drift hits all alike, and print medians with their
//! ratio to the reference measured in the same run ([`report`]). Any failure ends the run
//! with a non-zero exit and no table; the mount is always unmounted.

mod endpoint;
mod measure;
mod report;
mod upload;

use anyhow::{bail, Context, Result};
use clap::Parser;
use endpoint::Endpoint;
use report::{Latency, Report, Throughput};
use s3vfs::store::s3::S3Store;
use s3vfs::store::ObjectStore;
use s3vfs::{FsConfig, S3Fs, S3Vfs};
use s3vfs_fuse::{MountGuard, MountOptions};
use s3vfs_testkit::fault::{CountingStore, Op};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use upload::TestObject;

/// Worker threads of the client runtime (the readers, the library and the FUSE adapter).
const CLIENT_THREADS: usize = 2;

/// Sequential read throughput of s3vfs vs. raw aws-sdk-s3 on a local S3 endpoint.
///
/// Without S3VFS_BENCH_ENDPOINT an in-memory S3 server is started on 127.0.0.1. With it,
/// S3VFS_BENCH_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally
/// AWS_REGION) name the endpoint to use; it must be a loopback address unless
/// --allow-remote is given.
#[derive(Debug, Parser)]
#[command(name = "s3vfs-bench", version)]
struct Args {
    /// Size of the test object: bytes, or with a K, M or G suffix (powers of 1024; `KiB`,
    /// `MB` etc. are accepted too), e.g. 64M, 1G.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// Times each throughput measurement is repeated; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Opens timed for the time to first byte; the median is reported.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    ttfb_samples: u32,
    /// Skip the FUSE measurements (e.g. where /dev/fuse is missing).
    #[arg(long)]
    no_fuse: bool,
    /// Skip the 128 KiB FUSE reads.
    #[arg(long)]
    no_small_reads: bool,
    /// Override the library's read-ahead part size (FsConfig::read_part_size), e.g. 8M.
    #[arg(long, value_parser = parse_size)]
    read_part_size: Option<u64>,
    /// Override the library's first read-ahead window (FsConfig::initial_read_window).
    #[arg(long, value_parser = parse_size)]
    initial_read_window: Option<u64>,
    /// Override the library's largest read-ahead window (FsConfig::max_read_window).
    #[arg(long, value_parser = parse_size)]
    max_read_window: Option<u64>,
    /// Set the kernel's read-ahead for the mount (its /sys/class/bdi/MAJ:MIN/read_ahead_kb;
    /// needs root) before measuring. Without it the kernel default is used and reported.
    #[arg(long, value_name = "KIB")]
    fuse_read_ahead_kb: Option<u32>,
    /// Allow an S3VFS_BENCH_ENDPOINT that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
}

/// Parses `1048576`, `512K`, `64M`, `64MiB`, `1G`, `1gb` (all suffixes are powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| {
        format!("{text:?}: expected whole bytes with an optional K, M, G or T suffix, e.g. 64M")
    })?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "{text:?}: expected whole bytes with an optional K, M, G or T suffix, e.g. 64M"
            ))
        }
    };
    let size = number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?}: too large"))?;
    if size == 0 {
        return Err("size must be at least one byte".to_owned());
    }
    Ok(size)
}

fn main() -> ExitCode {
    // Before any thread exists: the SDK must never probe the instance-metadata address.
    s3vfs_fuse::local::disable_instance_metadata();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("s3vfs-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let endpoint = Endpoint::from_env_or_local(args.allow_remote)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLIENT_THREADS)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("cannot start the client runtime")?;
    let result = runtime.block_on(bench(&args, &endpoint));
    // Runtimes may only be dropped outside of any runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
    endpoint.shutdown();
    let report = result?;
    print!("{report}");
    Ok(())
}

/// Everything the measurements need, set up once.
struct Setup {
    raw: aws_sdk_s3::Client,
    /// The library's store (`counter` underneath).
    store: Arc<dyn ObjectStore>,
    /// Requests the library and the mount made.
    counter: CountingStore,
    vfs: S3Vfs,
    fs_config: FsConfig,
    object: TestObject,
    mounted_file: Option<PathBuf>,
}

async fn bench(args: &Args, endpoint: &Endpoint) -> Result<Report> {
    let mut fs_config = FsConfig::default().with_read_only(true);
    if let Some(part) = args.read_part_size {
        fs_config.read_part_size = part;
    }
    if let Some(initial) = args.initial_read_window {
        fs_config.initial_read_window = initial;
    }
    if let Some(max) = args.max_read_window {
        fs_config.max_read_window = max;
    }
    let mut report = Report::new(
        &endpoint.description,
        args.size,
        args.runs,
        args.ttfb_samples,
        &fs_config,
    );
    eprintln!("{}", report.header());

    // The reference and the library get separate clients (separate connection pools) with
    // the same configuration, so neither warms the other's connections.
    let raw = S3Store::new(endpoint.config.clone())
        .await
        .context("cannot build the reference S3 client")?
        .client()
        .clone();
    // Counted on the client side, so that each row can say how many GETs it cost.
    let counter = CountingStore::new(Arc::new(
        S3Store::new(endpoint.config.clone())
            .await
            .context("cannot build the library's S3 client")?,
    ));
    let object = TestObject::new(&endpoint.config.bucket, args.size);

    eprintln!(
        "uploading {} ({} bytes) with multipart ...",
        object.key, object.size
    );
    let started = Instant::now();
    interruptible(object.upload(&raw)).await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "uploaded in {secs:.1} s ({:.0} MiB/s)",
        report::mib(object.size) / secs
    );

    // From here on the object exists: delete it whatever happens.
    let result = bench_uploaded(args, &mut report, &raw, counter, fs_config, &object).await;
    if let Err(err) = object.delete(&raw).await {
        eprintln!("warning: could not delete the test object: {err:#}");
    }
    result.map(|()| report)
}

async fn bench_uploaded(
    args: &Args,
    report: &mut Report,
    raw: &aws_sdk_s3::Client,
    counter: CountingStore,
    fs_config: FsConfig,
    object: &TestObject,
) -> Result<()> {
    let store: Arc<dyn ObjectStore> = Arc::new(counter.clone());
    let vfs = S3Vfs::new(Arc::clone(&store), fs_config.clone());
    let mountdir = tempfile::Builder::new()
        .prefix("s3vfs-bench-mnt")
        .tempdir()
        .context("cannot create the mountpoint")?;
    let guard = if args.no_fuse {
        None
    } else {
        // A file system of its own (own handles and caches) over the library's store.
        let fs = S3Fs::new(Arc::clone(&store), fs_config.clone());
        let options = MountOptions::default()
            .with_read_only(true)
            .with_fs_name("s3vfs-bench");
        let runtime = tokio::runtime::Handle::current();
        let path = mountdir.path().to_owned();
        let guard =
            tokio::task::spawn_blocking(move || s3vfs_fuse::mount(fs, &path, &options, runtime))
                .await
                .context("mount thread failed")?
                .context("cannot mount (run with --no-fuse to skip the FUSE measurements)")?;
        eprintln!("mounted at {}", guard.mountpoint().display());
        // From here on the guard is unmounted on every path, even if this fails.
        let read_ahead = fuse_read_ahead(guard.mountpoint(), args.fuse_read_ahead_kb);
        match read_ahead {
            Ok(line) => report.fuse_read_ahead = Some(line),
            Err(err) => {
                unmount(guard).await?;
                return Err(err);
            }
        }
        Some(guard)
    };
    let setup = Setup {
        raw: raw.clone(),
        mounted_file: guard.as_ref().map(|g| g.mountpoint().join(&object.key)),
        store,
        counter,
        vfs,
        fs_config,
        object: object.clone(),
    };

    let result = interruptible(measure_all(args, report, &setup)).await;

    // Unmount on every path; the guard would also do it on drop, but not from async code.
    let unmounted = match guard {
        Some(guard) => unmount(guard).await,
        None => Ok(()),
    };
    result.and(unmounted)
}

/// Sets (if `set_kib`) and reports the kernel's read-ahead of the mount at `mountpoint`.
/// FUSE mounts start with the kernel's default for new devices (usually 128 KiB), however
/// large a read-ahead the file system asks for in `init`.
fn fuse_read_ahead(mountpoint: &Path, set_kib: Option<u32>) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)
        .with_context(|| format!("stat {}", mountpoint.display()))?
        .dev();
    // The glibc encoding of dev_t (gnu_dev_major / gnu_dev_minor).
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    let knob = PathBuf::from(format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"));
    if let Some(kib) = set_kib {
        std::fs::write(&knob, format!("{kib}\n"))
            .with_context(|| format!("cannot write {} (needs root)", knob.display()))?;
    }
    let current = std::fs::read_to_string(&knob)
        .with_context(|| format!("cannot read {}", knob.display()))?;
    let how = if set_kib.is_some() {
        "set by --fuse-read-ahead-kb"
    } else {
        "kernel default"
    };
    Ok(format!(
        "kernel read-ahead {} KiB ({how}), {}",
        current.trim(),
        knob.display()
    ))
}

async fn unmount(guard: MountGuard) -> Result<()> {
    tokio::task::spawn_blocking(move || guard.unmount())
        .await
        .context("unmount thread failed")?
        .context("cannot unmount")
}

/// Runs `work`, or fails when the user presses Ctrl-C, so that cleanup still happens.
async fn interruptible<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

/// One of the timed readers.
enum Reader<'a> {
    RawParallel,
    RawSingle,
    Library,
    /// The file on the mount, read with buffers of this many bytes.
    Fuse(&'a PathBuf, usize),
}

async fn measure_all(args: &Args, report: &mut Report, setup: &Setup) -> Result<()> {
    let object = &setup.object;
    if let Some(path) = &setup.mounted_file {
        let len = std::fs::metadata(path)
            .with_context(|| format!("stat {} on the mount", path.display()))?
            .len();
        if len != object.size {
            bail!("the mount shows {len} bytes, uploaded {}", object.size);
        }
    }
    measure::verify(&setup.raw, &setup.vfs, setup.mounted_file.as_ref(), object)
        .await
        .context("content check failed")?;
    eprintln!("content check passed (raw GET, library, mount)");

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
    ];
    if let Some(path) = &setup.mounted_file {
        rows.push((
            Reader::Fuse(path, measure::LARGE_READ),
            Throughput::new("FUSE mount: std::fs::File, 1 MiB reads".to_owned(), false),
        ));
        if !args.no_small_reads {
            rows.push((
                Reader::Fuse(path, measure::SMALL_READ),
                Throughput::new("FUSE mount: std::fs::File, 128 KiB reads".to_owned(), false),
            ));
        }
    }

    for round in 1..=args.runs {
        for (reader, row) in rows.iter_mut() {
            let gets_before = setup.counter.count(Op::Get);
            let started = Instant::now();
            let bytes = match reader {
                Reader::RawParallel => measure::raw_parallel(&setup.raw, object).await,
                Reader::RawSingle => measure::raw_single(&setup.raw, object).await,
                Reader::Library => measure::library(&setup.vfs, object).await,
                Reader::Fuse(path, block) => measure::fuse(path, *block).await,
            }
            .with_context(|| format!("{} failed", row.name))?;
            let elapsed = started.elapsed();
            let gets = match reader {
                Reader::RawParallel => object.size.div_ceil(measure::REFERENCE_RANGE),
                Reader::RawSingle => 1,
                Reader::Library | Reader::Fuse(..) => setup.counter.count(Op::Get) - gets_before,
            };
            if bytes != object.size {
                bail!("{}: read {bytes} bytes of {}", row.name, object.size);
            }
            let rate = report::mib(bytes) / elapsed.as_secs_f64();
            eprintln!(
                "run {round}/{}: {:<50} {rate:8.1} MiB/s ({:.2} s, {gets} GETs)",
                args.runs,
                row.name,
                elapsed.as_secs_f64()
            );
            row.samples.push(rate);
            row.gets.push(gets);
        }
    }
    report.throughput = rows.into_iter().map(|(_, row)| row).collect();

    let mut raw_ttfb = Latency::new("raw GET of the first 1 MiB: first body chunk".to_owned());
    let mut lib_ttfb =
        Latency::new("s3vfs library: open (cold metadata) + first 64 KiB read".to_owned());
    for _ in 0..args.ttfb_samples {
        raw_ttfb
            .samples
            .push(measure::raw_ttfb(&setup.raw, object).await?);
        lib_ttfb
            .samples
            .push(measure::library_ttfb(&setup.store, &setup.fs_config, object).await?);
    }
    report.latency = vec![raw_ttfb, lib_ttfb];
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
