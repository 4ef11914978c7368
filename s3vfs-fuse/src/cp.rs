//! `s3vfs cp` and `s3vfs sync`: the transfer engine ([`s3vfs::transfer`]) as commands an
//! operator or another system can run unattended.
//!
//! Exit codes: 0 when every object was copied (or skipped as the same), 1 when some failed
//! or were stopped by the deadline (the report says which; a re-run resumes), 2 when the
//! copy could not start (bad arguments, no listing, no client).

use crate::{AccessArgs, ConnectionArgs};
use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use s3vfs::store::s3::S3Store;
use s3vfs::store::{BucketProvider, ServerSideEncryption};
use s3vfs::transfer::plan::{self, SyncAction};
use s3vfs::transfer::{
    Event, Job, ObjectReport, ObjectUrl, Outcome, Summary, Transfer, TransferConfig, TransferError,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit code when some objects failed or were interrupted.
const SOME_FAILED: u8 = 1;
/// Exit code when the copy could not start.
const COULD_NOT_START: u8 = 2;

/// Flags of `cp` and `sync` alike.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    #[command(flatten)]
    s3: ConnectionArgs,
    /// Unsigned requests, requester pays, expected owner (of the destination's bucket).
    #[command(flatten)]
    access: AccessArgs,
    /// The source's S3 endpoint, when it is not the destination's (the copy is then
    /// streamed through this machine).
    #[arg(help_heading = "Source connection", long, value_name = "URL")]
    source_endpoint_url: Option<String>,
    /// The source's region, when it differs.
    #[arg(help_heading = "Source connection", long)]
    source_region: Option<String>,
    /// The source's named profile (credentials), when it differs.
    #[arg(help_heading = "Source connection", long)]
    source_profile: Option<String>,
    /// Path-style addressing for the source's endpoint.
    #[arg(help_heading = "Source connection", long)]
    source_force_path_style: bool,
    /// Stream the bytes through this machine even when a server-side copy is possible.
    #[arg(help_heading = "Copying", long)]
    no_server_side: bool,
    /// Requests in flight at once, across every object and part.
    #[arg(help_heading = "Copying", long, default_value_t = 16, value_name = "N")]
    max_concurrent_requests: usize,
    /// Objects copied at once.
    #[arg(help_heading = "Copying", long, default_value_t = 4, value_name = "N")]
    max_concurrent_objects: usize,
    /// Part size of streamed copies, in MiB (grown to fit 10,000 parts).
    #[arg(
        help_heading = "Copying",
        long,
        default_value_t = 16,
        value_name = "MIB"
    )]
    part_size_mib: u64,
    /// Part size of server-side copies, in MiB (grown to fit 10,000 parts).
    #[arg(
        help_heading = "Copying",
        long,
        default_value_t = 256,
        value_name = "MIB"
    )]
    copy_part_size_mib: u64,
    /// Objects above this size are copied in parts, in MiB (at most 5120, the largest
    /// CopyObject).
    #[arg(
        help_heading = "Copying",
        long,
        default_value_t = 5120,
        value_name = "MIB"
    )]
    multipart_threshold_mib: u64,
    /// Storage class of the copies (default: the source's).
    #[arg(help_heading = "Copying", long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Server-side encryption of the copies: AES256 or aws:kms.
    #[arg(help_heading = "Copying", long, value_name = "ALGORITHM")]
    sse: Option<String>,
    /// KMS key of `--sse aws:kms`.
    #[arg(
        help_heading = "Copying",
        long,
        value_name = "KEY_ID",
        requires = "sse"
    )]
    sse_kms_key_id: Option<String>,
    /// Attempts of one request before its failure is final (5xx, SlowDown and timeouts
    /// are retried with backoff).
    #[arg(help_heading = "Failures", long, default_value_t = 5, value_name = "N")]
    max_attempts: u32,
    /// Longest one request may take, in seconds.
    #[arg(
        help_heading = "Failures",
        long,
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    request_timeout: u64,
    /// Stop after this many seconds: nothing new starts, copies under way stop and are
    /// resumed by the next run.
    #[arg(help_heading = "Failures", long, value_name = "SECONDS")]
    deadline: Option<u64>,
    /// Where multipart copies keep their journals, so that a re-run resumes them
    /// (default: $XDG_STATE_HOME/s3vfs/transfers or ~/.local/state/s3vfs/transfers).
    #[arg(help_heading = "Failures", long, value_name = "DIR")]
    journal_dir: Option<PathBuf>,
    /// Keep no journal: an interrupted copy starts over.
    #[arg(help_heading = "Failures", long, conflicts_with = "journal_dir")]
    no_resume: bool,
    /// Write one JSON line per object (source, destination, bytes, parts, seconds, result,
    /// error) to FILE, `-` for standard output.
    #[arg(help_heading = "Output", long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// No progress bar or progress lines.
    #[arg(help_heading = "Output", long)]
    no_progress: bool,
}

/// `s3vfs cp`.
#[derive(Debug, Args)]
pub(crate) struct CpArgs {
    /// `s3://bucket/key` (or a prefix with --recursive), then the destination. With
    /// --manifest or --stdin, only the destination prefix.
    #[arg(value_name = "SRC DST", num_args = 1..=2, required = true)]
    paths: Vec<String>,
    /// Copy every object under the source prefix.
    #[arg(long, short = 'r')]
    recursive: bool,
    /// Copy the jobs listed in FILE: CSV `bucket,key` (S3 Batch Operations manifests, keys
    /// URL-encoded) or JSON lines `{"source": "s3://…", "destination": "s3://…"}`.
    #[arg(long, value_name = "FILE", conflicts_with = "stdin")]
    manifest: Option<PathBuf>,
    /// Read jobs (as --manifest) from standard input, copying each as it arrives.
    #[arg(long)]
    stdin: bool,
    #[command(flatten)]
    transfer: TransferArgs,
}

/// `s3vfs sync`.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// Source prefix `s3://bucket/prefix`.
    #[arg(value_name = "SRC")]
    source: String,
    /// Destination prefix `s3://bucket/prefix`.
    #[arg(value_name = "DST")]
    dest: String,
    /// Delete what is under the destination prefix and not under the source's.
    #[arg(long)]
    delete: bool,
    /// Print what would be copied and deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    transfer: TransferArgs,
}

/// Where a run's report lines go.
struct ReportOut {
    out: Option<Mutex<Box<dyn Write + Send>>>,
}

impl ReportOut {
    fn open(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let out: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
            Some(p) => Some(Box::new(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            ))),
        };
        Ok(Self {
            out: out.map(Mutex::new),
        })
    }

    fn line(&self, report: &ObjectReport) {
        if let Some(out) = &self.out {
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Ok(line) = serde_json::to_string(report) {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }
}

/// Progress on standard error: a bar on a terminal, a line every 10 s otherwise.
#[derive(Clone)]
struct Progress {
    bar: Option<ProgressBar>,
    total: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    objects: Arc<AtomicU64>,
    started: Instant,
    last_line: Arc<Mutex<Instant>>,
    enabled: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total: Arc::default(),
            done: Arc::default(),
            objects: Arc::default(),
            started: Instant::now(),
            last_line: Arc::new(Mutex::new(Instant::now())),
            enabled,
        }
    }

    fn event(&self, event: &Event) {
        match event {
            Event::Started { size, .. } => {
                let total = self.total.fetch_add(*size, Ordering::SeqCst) + size;
                if let Some(bar) = &self.bar {
                    bar.set_length(total);
                }
            }
            Event::Copied(n) => {
                self.done.fetch_add(*n, Ordering::SeqCst);
                if let Some(bar) = &self.bar {
                    bar.inc(*n);
                }
            }
            Event::Finished(report) => {
                let n = self.objects.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(bar) = &self.bar {
                    bar.set_message(format!("{n} objects"));
                    if report.result == Outcome::Failed {
                        bar.println(format!(
                            "failed: {} -> {}: {}",
                            report.source,
                            report.destination,
                            report.error.as_deref().unwrap_or("")
                        ));
                    }
                }
            }
        }
        if self.enabled && self.bar.is_none() {
            self.plain_line(false);
        }
    }

    /// A progress line, at most every 10 s unless `now`.
    fn plain_line(&self, now: bool) {
        let mut last = self
            .last_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !now && last.elapsed() < Duration::from_secs(10) {
            return;
        }
        *last = Instant::now();
        let (done, total) = (
            self.done.load(Ordering::SeqCst),
            self.total.load(Ordering::SeqCst),
        );
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "s3vfs: {} objects done, {} of {} MiB, {:.1} MiB/s",
            self.objects.load(Ordering::SeqCst),
            done >> 20,
            total >> 20,
            done as f64 / seconds / 1048576.0
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl TransferArgs {
    fn config(&self) -> anyhow::Result<TransferConfig> {
        let sse = match self.sse.as_deref() {
            None => None,
            Some("AES256") => Some(ServerSideEncryption::S3),
            Some("aws:kms") => Some(ServerSideEncryption::Kms {
                key_id: self.sse_kms_key_id.clone(),
            }),
            Some(other) => anyhow::bail!("--sse takes AES256 or aws:kms, not {other:?}"),
        };
        let journal_dir = if self.no_resume {
            None
        } else {
            self.journal_dir.clone().or_else(default_journal_dir)
        };
        const MIB: u64 = 1024 * 1024;
        Ok(TransferConfig {
            server_side: !self.no_server_side && !self.separate_source(),
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            max_concurrent_objects: self.max_concurrent_objects.max(1),
            part_size: self.part_size_mib.clamp(5, 5 * 1024) * MIB,
            copy_part_size: self.copy_part_size_mib.clamp(5, 5 * 1024) * MIB,
            multipart_threshold: self.multipart_threshold_mib.clamp(5, 5 * 1024) * MIB,
            max_attempts: self.max_attempts.max(1),
            request_timeout: Duration::from_secs(self.request_timeout.max(1)),
            deadline: self
                .deadline
                .map(|s| Instant::now() + Duration::from_secs(s)),
            journal_dir,
            storage_class: self.storage_class.clone(),
            sse,
            ..TransferConfig::default()
        })
    }

    /// Whether the source is reached through another endpoint or other credentials.
    fn separate_source(&self) -> bool {
        self.source_endpoint_url.is_some()
            || self.source_region.is_some()
            || self.source_profile.is_some()
            || self.source_force_path_style
    }

    /// The engine: one client for both ends, or one each.
    async fn transfer(&self, source_bucket: &str, dest_bucket: &str) -> anyhow::Result<Transfer> {
        let config = self.config()?;
        let dest = S3Store::new(self.access.apply(self.s3.store_config(dest_bucket)))
            .await
            .context("cannot set up the S3 client")?
            .buckets();
        let dest: Arc<dyn BucketProvider> = Arc::new(dest);
        let source: Arc<dyn BucketProvider> = if self.separate_source() {
            let connection = ConnectionArgs {
                endpoint_url: self
                    .source_endpoint_url
                    .clone()
                    .or(self.s3.endpoint_url.clone()),
                force_path_style: self.source_force_path_style || self.s3.force_path_style,
                region: self.source_region.clone().or(self.s3.region.clone()),
                profile: self.source_profile.clone().or(self.s3.profile.clone()),
            };
            let config = connection
                .store_config(source_bucket)
                .requester_pays(self.access.requester_pays);
            Arc::new(
                S3Store::new(config)
                    .await
                    .context("cannot set up the S3 client of the source")?
                    .buckets(),
            )
        } else {
            Arc::clone(&dest)
        };
        Ok(Transfer::new(source, dest, config))
    }
}

/// `$XDG_STATE_HOME/s3vfs/transfers`, or `~/.local/state/s3vfs/transfers`.
fn default_journal_dir() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("s3vfs").join("transfers"))
}

fn exit_code(summary: &Summary) -> ExitCode {
    if summary.all_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(SOME_FAILED)
    }
}

/// Prints `err` and exits with "could not start".
fn could_not_start(err: &anyhow::Error) -> ExitCode {
    eprintln!("s3vfs: {err:#}");
    ExitCode::from(COULD_NOT_START)
}

fn summary_line(summary: &Summary, seconds: f64) {
    eprintln!(
        "s3vfs: {} copied ({} MiB), {} skipped, {} deleted, {} planned, {} failed, {} interrupted in {seconds:.1} s",
        summary.copied,
        summary.bytes >> 20,
        summary.skipped,
        summary.deleted,
        summary.planned,
        summary.failed,
        summary.interrupted
    );
}

/// Runs `s3vfs cp`.
pub(crate) async fn cp(args: CpArgs) -> ExitCode {
    let started = Instant::now();
    let listed = args.manifest.is_some() || args.stdin;
    let (source, dest) = match (listed, args.paths.as_slice()) {
        (true, [dest]) => (None, dest),
        (false, [source, dest]) => (Some(source), dest),
        (true, _) => {
            return could_not_start(&anyhow::anyhow!(
                "with --manifest or --stdin, give only the destination"
            ))
        }
        (false, _) => return could_not_start(&anyhow::anyhow!("give a source and a destination")),
    };
    let parsed = (|| -> Result<(Option<ObjectUrl>, ObjectUrl), TransferError> {
        Ok((
            source.map(|s| ObjectUrl::parse(s)).transpose()?,
            ObjectUrl::parse(dest)?,
        ))
    })();
    let (source, dest) = match parsed {
        Ok(urls) => urls,
        Err(err) => return could_not_start(&err.into()),
    };
    let source_bucket = source
        .as_ref()
        .map_or(dest.bucket.clone(), |s| s.bucket.clone());
    let transfer = match args.transfer.transfer(&source_bucket, &dest.bucket).await {
        Ok(t) => t,
        Err(err) => return could_not_start(&err),
    };
    let report = match ReportOut::open(args.transfer.report.as_ref()) {
        Ok(r) => r,
        Err(err) => return could_not_start(&err),
    };
    let progress = Progress::new(!args.transfer.no_progress);
    let sink = progress.clone();
    let transfer = transfer.on_event(move |e| sink.event(e));
    let summary = match (source, &args.manifest) {
        (Some(source), _) if args.recursive => {
            let jobs = match transfer.list_jobs(&source, &dest).await {
                Ok(jobs) => jobs,
                Err(err) => {
                    return could_not_start(
                        &anyhow::Error::from(err).context("cannot list the source"),
                    )
                }
            };
            transfer
                .run(futures::stream::iter(jobs.into_iter().map(Ok)), |r| {
                    report.line(&r)
                })
                .await
        }
        (Some(source), _) => {
            let job = Job {
                dest: plan::single_dest(&source, &dest),
                source,
            };
            transfer
                .run(futures::stream::iter([Ok(job)]), |r| report.line(&r))
                .await
        }
        (None, Some(path)) => {
            let file = match tokio::fs::File::open(path).await {
                Ok(f) => f,
                Err(err) => {
                    return could_not_start(
                        &anyhow::Error::from(err)
                            .context(format!("cannot open {}", path.display())),
                    )
                }
            };
            let jobs = plan::read_jobs(tokio::io::BufReader::new(file), dest);
            transfer.run(jobs, |r| report.line(&r)).await
        }
        (None, None) => {
            let jobs = plan::read_jobs(tokio::io::BufReader::new(tokio::io::stdin()), dest);
            transfer.run(jobs, |r| report.line(&r)).await
        }
    };
    progress.finish();
    summary_line(&summary, started.elapsed().as_secs_f64());
    exit_code(&summary)
}

/// Runs `s3vfs sync`.
pub(crate) async fn sync(args: SyncArgs) -> ExitCode {
    let started = Instant::now();
    let urls = ObjectUrl::parse(&args.source).and_then(|s| Ok((s, ObjectUrl::parse(&args.dest)?)));
    let (source, dest) = match urls {
        Ok(urls) => urls,
        Err(err) => return could_not_start(&err.into()),
    };
    let transfer = match args.transfer.transfer(&source.bucket, &dest.bucket).await {
        Ok(t) => t,
        Err(err) => return could_not_start(&err),
    };
    let report = match ReportOut::open(args.transfer.report.as_ref()) {
        Ok(r) => r,
        Err(err) => return could_not_start(&err),
    };
    let actions = match transfer.plan_sync(&source, &dest, args.delete).await {
        Ok(actions) => actions,
        Err(err) => {
            return could_not_start(
                &anyhow::Error::from(err).context("cannot compare the prefixes"),
            )
        }
    };
    let progress = Progress::new(!args.transfer.no_progress && !args.dry_run);
    let sink = progress.clone();
    let transfer = transfer.on_event(move |e| sink.event(e));
    let mut summary = Summary::default();
    let mut copies = Vec::new();
    let mut deletes = Vec::new();
    for action in actions {
        match action {
            SyncAction::Copy(job) if args.dry_run => {
                println!("(dry run) copy {} -> {}", job.source, job.dest);
                let line = ObjectReport::unrun(&job, Outcome::WouldCopy);
                summary.add(&line);
                report.line(&line);
            }
            SyncAction::Copy(job) => copies.push(job),
            SyncAction::Skip(job, why) => {
                tracing::debug!(source = %job.source, why, "the same at the destination");
                let line = ObjectReport::unrun(&job, Outcome::Skipped);
                summary.add(&line);
                report.line(&line);
            }
            SyncAction::Delete(url) if args.dry_run => {
                println!("(dry run) delete {url}");
                let line = ObjectReport::unrun(
                    &Job {
                        source: url.clone(),
                        dest: url,
                    },
                    Outcome::WouldDelete,
                );
                summary.add(&line);
                report.line(&line);
            }
            SyncAction::Delete(url) => deletes.push(url),
        }
    }
    let copied = transfer
        .run(futures::stream::iter(copies.into_iter().map(Ok)), |r| {
            report.line(&r)
        })
        .await;
    summary.merge(&copied);
    // Deletions only after every copy went well: a failed run deletes nothing.
    if copied.all_ok() {
        let deleted: Vec<ObjectReport> = futures::stream::iter(deletes)
            .map(|url| {
                let transfer = &transfer;
                async move {
                    let job = Job {
                        source: url.clone(),
                        dest: url.clone(),
                    };
                    let mut line = ObjectReport::unrun(&job, Outcome::Deleted);
                    if let Err(err) = transfer.delete(&url).await {
                        line.result = Outcome::Failed;
                        line.error = Some(err.to_string());
                    }
                    line
                }
            })
            .buffer_unordered(transfer.config().max_concurrent_objects)
            .collect()
            .await;
        for line in deleted {
            summary.add(&line);
            report.line(&line);
        }
    } else if !deletes.is_empty() {
        eprintln!(
            "s3vfs: {} deletions skipped because some copies failed",
            deletes.len()
        );
    }
    progress.finish();
    summary_line(&summary, started.elapsed().as_secs_f64());
    exit_code(&summary)
}
