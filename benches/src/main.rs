//! `s3vfs-bench`: s3vfs (library and FUSE mount) against raw aws-sdk-s3 on the same
//! endpoint, in one run, for every figure of the performance issue:
//!
//! 1. sequential read of one large object ([`seqread`]; re-reads through a data cache:
//!    [`cacheread`]);
//! 2. sequential write of one large object until durable ([`seqwrite`]);
//! 3. random 4 KiB reads at queue depth 1 and 8 ([`randread`], run by [`seqread`]);
//! 4. creating many small files, 5. `ls -l` of a large directory, 6. `mv` of a directory
//!    ([`tree`]);
//! 7. peak memory of the mount's process while reading several large files ([`memory`]);
//! 8. memory of the mount's process after `find` walked a million keys ([`walk`]).
//!
//! Each figure is printed next to the reference measured in the same run, its target, and
//! the same figure for s3fs and rclone when they are installed ([`summary`]). A figure that
//! cannot be measured shows "failed" with the reason, and the run then exits non-zero; no
//! number is ever printed that was not measured. Mounts are unmounted on every path.

mod bucket;
mod busy;
mod cacheread;
mod cpus;
mod endpoint;
mod fuse_ceiling;
mod inproc;
mod loopback;
mod measure;
mod memory;
mod payload;
mod randread;
mod report;
mod seqread;
mod seqwrite;
mod summary;
mod tools;
mod tree;
mod untar;
mod upload;
mod walk;

use anyhow::{bail, Context, Result};
use bucket::Bucket;
use clap::{Parser, ValueEnum};
use cpus::CpuArgs;
use endpoint::{ChildEndpoint, Endpoint, S3LikeArgs};
use report::Report;
use s3vfs::store::s3::S3Store;
use s3vfs_fuse::MountGuard;
use s3vfs_testkit::fault::{CountingStore, Op};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use summary::{Cell, Row, Unit};
use tools::Tool;

/// Worker threads of the client runtime (the readers, the library and the FUSE adapter).
const CLIENT_THREADS: usize = 2;

/// s3vfs vs. raw aws-sdk-s3 (and s3fs, rclone when installed) on a local S3 endpoint.
///
/// Without S3VFS_BENCH_ENDPOINT an in-memory S3 server is started on 127.0.0.1. With it,
/// S3VFS_BENCH_BUCKET, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally
/// AWS_REGION) name the endpoint to use; it must be a loopback address unless
/// --allow-remote is given.
#[derive(Debug, Parser)]
#[command(name = "s3vfs-bench", version)]
struct Args {
    /// Size of the large object read and written (items 1 to 3): bytes, or with a K, M or G
    /// suffix (powers of 1024; `KiB`, `MB` etc. are accepted too). Default 1G (64M with
    /// --quick).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Items to run, comma-separated: read, write, rand, create, ls, rename, rss, walk.
    /// Default: all.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "ROWS")]
    only: Vec<Item>,
    /// A smoke run: 64 MiB object, 100 files, 1000-entry directory, 8 x 64 MiB for the
    /// memory item, 2 s of random reads, a walk of 20,000 keys, 1 run. Explicit options win.
    #[arg(long)]
    quick: bool,
    /// Times each throughput measurement (and each s3vfs sample of items 4 to 6) is
    /// repeated; the median is reported. Default 3 (1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// Opens timed for the time to first byte; the median is reported.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    ttfb_samples: u32,
    /// Files created in item 4. Default 1000 (100 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    files: Option<u32>,
    /// Entries of the directory listed in item 5. Default 10000 (1000 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    ls_entries: Option<u32>,
    /// Files of the directory renamed in item 6. Default 1000 (100 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rename_files: Option<u32>,
    /// Seconds of random reads per queue depth, reader and round (item 3; --runs rounds).
    /// Default 3 (2 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rand_seconds: Option<u32>,
    /// Memory budget of the s3vfs process in item 7 (its --memory-budget, if it has one).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    memory_budget: u64,
    /// Files read at once in item 7.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    rss_files: u32,
    /// Size of each file of item 7. Default 256M (64M with --quick).
    #[arg(long, value_parser = parse_size)]
    rss_file_size: Option<u64>,
    /// Archive extracted in item 9 (default: one made from cargo's registry sources).
    #[arg(long, value_name = "FILE")]
    tarball: Option<PathBuf>,
    /// Files of the archive made for item 9 when --tarball is not given.
    #[arg(long, default_value_t = 5000)]
    tar_files: usize,
    /// Keys of the tree walked with find in item 8. Default 1000000 (20000 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    walk_keys: Option<u32>,
    /// Do not measure s3fs and rclone, even where installed.
    #[arg(long)]
    no_others: bool,
    /// Skip every FUSE measurement (e.g. where /dev/fuse is missing).
    #[arg(long)]
    no_fuse: bool,
    /// Skip the 128 KiB reads of the in-process mount.
    #[arg(long)]
    no_small_reads: bool,
    /// Skip item 1's data cache rows (the library reading the object twice through a
    /// memory cache, then a disk cache in a temporary directory, each of the object's size
    /// + 64 MiB).
    #[arg(long)]
    no_cache_rows: bool,
    /// The disk cache row's write backlog (DataCacheConfig::disk_write_backlog, the
    /// mount's --cache-write-backlog), e.g. 64M. Default: the library's.
    #[arg(long, value_parser = parse_size)]
    cache_write_backlog: Option<u64>,
    /// Override the library's read-ahead part size (FsConfig::read_part_size), e.g. 8M.
    #[arg(long, value_parser = parse_size)]
    read_part_size: Option<u64>,
    /// Override the library's first read-ahead window (FsConfig::initial_read_window).
    #[arg(long, value_parser = parse_size)]
    initial_read_window: Option<u64>,
    /// Override the library's largest read-ahead window (FsConfig::max_read_window).
    #[arg(long, value_parser = parse_size)]
    max_read_window: Option<u64>,
    /// Set the kernel's read-ahead for the in-process mount (its
    /// /sys/class/bdi/MAJ:MIN/read_ahead_kb; needs root) before measuring. Without it the
    /// kernel default is used and reported.
    #[arg(long, value_name = "KIB")]
    fuse_read_ahead_kb: Option<u32>,
    /// FUSE worker threads of every s3vfs mount process (its `--max-threads`; default:
    /// the binary's own, 2).
    #[arg(long, value_name = "N")]
    mount_threads: Option<u16>,
    /// One more argument for every `s3vfs mount` (repeat for more), e.g.
    /// `--mount-arg=--staging-cap --mount-arg=0` to see what a flag changes.
    #[arg(long = "mount-arg", value_name = "ARG", allow_hyphen_values = true)]
    mount_args: Vec<String>,
    /// Allow an S3VFS_BENCH_ENDPOINT that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
    #[command(flatten)]
    s3_like: S3LikeArgs,
    #[command(flatten)]
    cpus: CpuArgs,
}

/// One item of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Item {
    /// 1: sequential read of the large object.
    Read,
    /// 2: sequential write of the large object until durable.
    Write,
    /// 3: random 4 KiB reads at queue depth 1 and 8.
    Rand,
    /// 4: create many 4 KiB files.
    Create,
    /// 5: `ls -l` of a large directory, cold and warm.
    Ls,
    /// 6: `mv` of a directory of many files.
    Rename,
    /// 7: peak RSS of the mount's process while reading large files at once.
    Rss,
    /// 8: RSS of the mount's process after `find` over a large tree.
    Walk,
    /// 9: `tar x` of a real source tree, until every file is in S3.
    Tar,
}

/// The options, with every default resolved.
#[derive(Clone, Debug)]
pub struct Plan {
    pub items: Vec<Item>,
    pub size: u64,
    pub runs: u32,
    pub ttfb_samples: u32,
    pub files: usize,
    pub ls_entries: usize,
    pub rename_files: usize,
    pub rand_duration: Duration,
    pub memory_budget: u64,
    pub rss_files: usize,
    pub rss_file_size: u64,
    pub walk_keys: usize,
    pub tarball: Option<PathBuf>,
    pub tar_files: usize,
    /// Measure s3fs and rclone where installed.
    pub others: bool,
    /// Measure through FUSE at all.
    pub fuse: bool,
    pub no_small_reads: bool,
    /// Measure item 1's re-reads through a data cache.
    pub cache_rows: bool,
    /// The disk cache row's write backlog (`None`: the library's default).
    pub cache_write_backlog: Option<u64>,
    pub read_part_size: Option<u64>,
    pub initial_read_window: Option<u64>,
    pub max_read_window: Option<u64>,
    pub fuse_read_ahead_kb: Option<u32>,
    /// `--max-threads` of every s3vfs mount process.
    pub mount_threads: Option<u16>,
    /// `--mount-arg`s: more arguments of every s3vfs mount process.
    pub mount_args: Vec<String>,
    /// The header line saying which CPUs the bench and the server ran on.
    pub cpus: String,
}

impl Plan {
    fn from_args(args: &Args) -> Plan {
        let quick = args.quick;
        let pick = |explicit: Option<u32>, full: u32, small: u32| {
            explicit.unwrap_or(if quick { small } else { full })
        };
        let mut items = if args.only.is_empty() {
            Item::value_variants().to_vec()
        } else {
            args.only.clone()
        };
        items.sort();
        items.dedup();
        Plan {
            items,
            size: args.size.unwrap_or(if quick { 64 << 20 } else { 1 << 30 }),
            runs: pick(args.runs, 3, 1),
            ttfb_samples: args.ttfb_samples,
            files: pick(args.files, 1000, 100) as usize,
            ls_entries: pick(args.ls_entries, 10_000, 1000) as usize,
            rename_files: pick(args.rename_files, 1000, 100) as usize,
            rand_duration: Duration::from_secs(pick(args.rand_seconds, 3, 2).into()),
            memory_budget: args.memory_budget,
            rss_files: args.rss_files as usize,
            rss_file_size: args
                .rss_file_size
                .unwrap_or(if quick { 64 << 20 } else { 256 << 20 }),
            walk_keys: pick(args.walk_keys, 1_000_000, 20_000) as usize,
            tarball: args.tarball.clone(),
            tar_files: args.tar_files,
            others: !args.no_others,
            fuse: !args.no_fuse,
            no_small_reads: args.no_small_reads,
            cache_rows: !args.no_cache_rows,
            cache_write_backlog: args.cache_write_backlog,
            read_part_size: args.read_part_size,
            initial_read_window: args.initial_read_window,
            max_read_window: args.max_read_window,
            fuse_read_ahead_kb: args.fuse_read_ahead_kb,
            mount_threads: args.mount_threads,
            mount_args: args.mount_args.clone(),
            cpus: args.cpus.describe(endpoint::is_external()),
        }
    }

    fn wants(&self, item: Item) -> bool {
        self.items.contains(&item)
    }
}

/// What every item needs: the plan, the bucket, the library's store and how other processes
/// reach the endpoint.
pub struct Ctx {
    pub plan: Plan,
    /// Short server name for the rows.
    pub tag: &'static str,
    /// The bucket, through a raw client of its own.
    pub bucket: Bucket,
    /// The library's store: its own S3 client, counted on the client side.
    pub library: CountingStore,
    /// The endpoint for mounts in other processes, or why there is none.
    child: std::result::Result<ChildEndpoint, String>,
    /// Requests the local server answered.
    server_requests: Option<CountingStore>,
    /// Why each tool cannot be measured (not installed, not built), if so.
    unavailable: Vec<(Tool, Cell)>,
}

impl Ctx {
    /// The endpoint for a mount in another process.
    pub fn child(&self) -> Result<ChildEndpoint> {
        self.child.clone().map_err(anyhow::Error::msg)
    }

    /// Mounts the bucket with `tool` in a process of its own, set up as `settings` say.
    pub async fn mount(&self, tool: Tool, settings: tools::Settings) -> Result<tools::ToolMount> {
        let child = self.child()?;
        let settings = tools::Settings {
            max_threads: settings.max_threads.or(self.plan.mount_threads),
            extra_args: self.plan.mount_args.clone(),
            ..settings
        };
        tokio::task::spawn_blocking(move || tools::ToolMount::start(tool, &child, &settings))
            .await
            .context("mount thread failed")?
    }

    /// The cell to show for `tool` when it cannot be measured at all; `None` if it can.
    pub fn tool_cell(&self, tool: Tool) -> Option<Cell> {
        if !self.plan.fuse {
            return Some(Cell::Skipped("--no-fuse".to_owned()));
        }
        if tool != Tool::S3vfs && !self.plan.others {
            return Some(Cell::Skipped("--no-others".to_owned()));
        }
        self.unavailable
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, cell)| cell.clone())
    }

    /// The server's request counters now (empty for an external endpoint).
    pub fn requests(&self) -> BTreeMap<Op, u64> {
        self.server_requests
            .as_ref()
            .map(CountingStore::counts)
            .unwrap_or_default()
    }

    /// "server requests (when): Head 3, List 10" since `before`.
    pub fn requests_note(&self, before: &BTreeMap<Op, u64>, when: &str) -> String {
        if self.server_requests.is_none() {
            return format!("server requests ({when}): not counted (external endpoint)");
        }
        let counts: Vec<String> = self
            .requests()
            .into_iter()
            .filter_map(|(op, n)| {
                let d = n - before.get(&op).copied().unwrap_or(0);
                (d > 0).then(|| format!("{op:?} {d}"))
            })
            .collect();
        let counts = if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        };
        format!("server requests ({when}): {counts}")
    }
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
    // The allocator setting the s3vfs binary uses; the raw reference runs in this
    // process too, so every reader here shares it.
    s3vfs_fuse::malloc::tune_for_streaming();
    let args = Args::parse();
    // Before any thread starts, so that every thread and child inherits it.
    if let Err(err) = args.cpus.pin_bench() {
        eprintln!("s3vfs-bench: error: {err:#}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("s3vfs-bench: some measurements failed (see the table)");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("s3vfs-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every selected item and prints the report; whether every measurement succeeded.
fn run(args: &Args) -> Result<bool> {
    let plan = Plan::from_args(args);
    let profile = args.s3_like.profile();
    let endpoint = Endpoint::from_env_or_local(args.allow_remote, profile, &args.cpus)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLIENT_THREADS)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("cannot start the client runtime")?;
    let result = runtime.block_on(bench(plan, &endpoint));
    // Runtimes may only be dropped outside of any runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
    endpoint.shutdown();
    let report = result?;
    print!("{report}");
    Ok(!report.summary.any_failed())
}

async fn bench(plan: Plan, endpoint: &Endpoint) -> Result<Report> {
    let mut report = Report::new(
        &endpoint.description,
        plan.size,
        plan.runs,
        plan.ttfb_samples,
    );
    // The reference and the library get separate clients (separate connection pools) with
    // the same configuration, so neither warms the other's connections.
    let raw = S3Store::new(endpoint.config.clone())
        .await
        .context("cannot build the reference S3 client")?
        .client()
        .clone();
    // Counted on the client side, so that each row can say how many GETs it cost.
    let library = CountingStore::new(Arc::new(
        S3Store::new(endpoint.config.clone())
            .await
            .context("cannot build the library's S3 client")?,
    ));
    let mut unavailable = Vec::new();
    for tool in [Tool::S3vfs, Tool::S3fs, Tool::Rclone] {
        let line = match tool.version() {
            Ok(version) => {
                let path = tool.program().map(|p| p.display().to_string());
                format!("{}: {version} ({})", tool.name(), path.unwrap_or_default())
            }
            Err(why) => {
                // s3vfs itself must be measured: its absence fails the rows that need it.
                let cell = match tool {
                    Tool::S3vfs => Cell::Failed(why.clone()),
                    Tool::S3fs | Tool::Rclone => Cell::Skipped(why.clone()),
                };
                unavailable.push((tool, cell));
                format!("{}: {why}", tool.name())
            }
        };
        report.notes.push(line);
    }
    let ctx = Ctx {
        tag: endpoint.tag,
        bucket: Bucket {
            client: raw,
            name: endpoint.config.bucket.clone(),
            mem: endpoint.mem.clone(),
            sign_payloads: endpoint
                .config
                .payload_signing
                .signs_uploads_to(endpoint.config.endpoint_url.as_deref()),
        },
        library,
        child: endpoint.child().map_err(|e| format!("{e:#}")),
        server_requests: endpoint.server_requests.clone(),
        unavailable,
        plan,
    };
    let plan = &ctx.plan;
    let items: Vec<String> = plan
        .items
        .iter()
        .filter_map(|i| i.to_possible_value().map(|v| v.get_name().to_owned()))
        .collect();
    report.notes.push(format!(
        "items: {}; server column \"{}\" = the server above; s3fs/rclone: {}",
        items.join(","),
        ctx.tag,
        if plan.others {
            "measured where installed"
        } else {
            "off (--no-others)"
        }
    ));
    report.notes.push(plan.cpus.clone());
    report.notes.push(format!(
        "allocator: glibc malloc with mmap threshold {} MiB, trim threshold {} MiB in this \
         process and the s3vfs binary (s3vfs_fuse::malloc::tune_for_streaming)",
        s3vfs_fuse::malloc::MMAP_THRESHOLD >> 20,
        s3vfs_fuse::malloc::TRIM_THRESHOLD >> 20
    ));
    report.notes.push(format!(
        "sizes: object {}, create {} files, ls {} entries, rename {} files, random reads {} s \
         per reader, depth and round, memory item {} x {}, walk {} keys",
        report::size_name(plan.size),
        plan.files,
        plan.ls_entries,
        plan.rename_files,
        plan.rand_duration.as_secs(),
        plan.rss_files,
        report::size_name(plan.rss_file_size),
        plan.walk_keys
    ));
    eprintln!("{}", report.header());

    // Random bytes for every write and seed, made once.
    let mut payload_len = tree::SMALL_FILE;
    if plan.wants(Item::Write) {
        payload_len = payload_len.max(plan.size as usize);
    }
    if plan.wants(Item::Rss) {
        payload_len =
            payload_len.max(plan.rss_file_size as usize + plan.rss_files * memory::FILE_STRIDE);
    }
    eprintln!("generating {payload_len} random bytes ...");
    let payload = payload::generate(payload_len).await?;
    let small = payload.slice(..tree::SMALL_FILE);

    if plan.wants(Item::Read) || plan.wants(Item::Rand) {
        seqread::run(
            &ctx,
            &mut report,
            plan.wants(Item::Read),
            plan.wants(Item::Rand),
        )
        .await;
    }
    if plan.wants(Item::Write) {
        let rows = seqwrite::run(&ctx, payload.slice(..plan.size as usize)).await;
        report.summary.rows.extend(rows);
    }
    let needs_fuse = |item: Item, what: &str, unit: Unit| -> Option<Row> {
        (!plan.fuse).then(|| {
            Row::new(
                item as u8 + 1,
                what,
                ctx.tag,
                unit,
                Cell::Skipped("--no-fuse".to_owned()),
            )
        })
    };
    if plan.wants(Item::Create) {
        let row = match needs_fuse(Item::Create, "create small files", Unit::Seconds) {
            Some(row) => row,
            None => tree::create(&ctx, small.clone()).await,
        };
        report.summary.rows.push(row);
    }
    if plan.wants(Item::Ls) {
        match needs_fuse(Item::Ls, "ls -l of a large directory", Unit::Seconds) {
            Some(row) => report.summary.rows.push(row),
            None => report
                .summary
                .rows
                .extend(tree::ls(&ctx, small.clone()).await),
        }
    }
    if plan.wants(Item::Rename) {
        let row = match needs_fuse(Item::Rename, "mv of a directory", Unit::Seconds) {
            Some(row) => row,
            None => tree::rename(&ctx, small.clone()).await,
        };
        report.summary.rows.push(row);
    }
    if plan.wants(Item::Rss) {
        let row = match needs_fuse(Item::Rss, "peak RSS of the mount's process", Unit::Mib) {
            Some(row) => row,
            None => memory::run(&ctx, &payload).await,
        };
        report.summary.rows.push(row);
    }
    if plan.wants(Item::Walk) {
        let row = match needs_fuse(
            Item::Walk,
            "RSS of the mount's process after find",
            Unit::Mib,
        ) {
            Some(row) => row,
            None => walk::run(&ctx).await,
        };
        report.summary.rows.push(row);
    }
    if plan.wants(Item::Tar) {
        let row = match needs_fuse(Item::Tar, "tar x of a source tree", Unit::Seconds) {
            Some(row) => row,
            None => untar::run(&ctx, plan.tarball.as_deref(), plan.tar_files).await,
        };
        report.summary.rows.push(row);
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted (the items measured so far are above, on stderr)");
    }
    Ok(report)
}

/// Sets (if `set_kib`) and reports the kernel's read-ahead of the mount at `mountpoint`.
/// FUSE mounts start with the kernel's default for new devices (usually 128 KiB), however
/// large a read-ahead the file system asks for in `init`.
pub fn fuse_read_ahead(mountpoint: &Path, set_kib: Option<u32>) -> Result<String> {
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

pub async fn unmount(guard: MountGuard) -> Result<()> {
    tokio::task::spawn_blocking(move || guard.unmount())
        .await
        .context("unmount thread failed")?
        .context("cannot unmount")
}

/// Set once the user pressed Ctrl-C: no further item starts.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Runs `work`, or fails when the user presses Ctrl-C, so that cleanup still happens.
pub async fn interruptible<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => {
            INTERRUPTED.store(true, Ordering::SeqCst);
            bail!("interrupted")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn quick_and_only_resolve() {
        let args = Args::parse_from([
            "s3vfs-bench",
            "--quick",
            "--only",
            "ls,read",
            "--files",
            "7",
        ]);
        let plan = Plan::from_args(&args);
        assert_eq!(plan.items, vec![Item::Read, Item::Ls]);
        assert_eq!(plan.size, 64 << 20);
        assert_eq!((plan.files, plan.ls_entries, plan.runs), (7, 1000, 1));
        let plan = Plan::from_args(&Args::parse_from(["s3vfs-bench", "--size", "2G"]));
        assert_eq!(plan.items.len(), 9);
        assert_eq!(plan.walk_keys, 1_000_000);
        assert_eq!(
            (plan.size, plan.files, plan.ls_entries),
            (2 << 30, 1000, 10_000)
        );
        assert!(Args::try_parse_from(["s3vfs-bench", "--only", "bogus"]).is_err());
    }
}
