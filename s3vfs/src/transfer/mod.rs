//! Copies of whole objects between buckets: server-side when the destination can read the
//! source, streamed through this machine when it cannot — bounded, retried, resumable and
//! verified, for an operator who runs it unattended.
//!
//! [`Transfer`] copies [`Job`]s (a source [`ObjectUrl`] to a destination one) between two
//! [`BucketProvider`]s:
//! - **server-side** (the two providers are one endpoint and one set of credentials,
//!   [`TransferConfig::server_side`]): one CopyObject up to
//!   [`TransferConfig::multipart_threshold`] (256 MiB; at most 5 GiB, S3's limit for one
//!   CopyObject), above it a multipart upload whose parts are UploadPartCopy ranges copied
//!   in parallel, the part size grown so that 5 TiB fits in 10,000 parts. No byte passes
//!   through the machine. (One CopyObject of 2 GiB took 9.4 s on Garage, 64 MiB parts in
//!   parallel 4.6 s: above a few hundred MiB, parts win.)
//! - **streamed** (anything else): ranged GETs pinned to the source's ETag, each part
//!   uploaded as it arrives; memory is bounded by `max_concurrent_requests × part_size`.
//!
//! What holds for every copy:
//! - **bounded**: at most [`TransferConfig::max_concurrent_requests`] requests are in flight
//!   across all objects and parts ([`limit`]), and at most
//!   [`TransferConfig::max_concurrent_objects`] objects are copied at once;
//! - **retried**: a request that fails with a 5xx, SlowDown/throttling or a timeout
//!   ([`TransferConfig::request_timeout`]) is tried again with exponential backoff and
//!   jitter, up to [`TransferConfig::max_attempts`] times;
//! - **faithful**: content type, user metadata (s3fs's mode/uid/gid/mtime included),
//!   storage class and tags (where the server has them) are carried over; storage class
//!   and encryption can be asked for;
//! - **one version**: every read of the source (GET range, CopyObject, UploadPartCopy) is
//!   pinned to the ETag seen when the copy began, so a source changed meanwhile fails the
//!   copy instead of mixing two versions;
//! - **verified**: the destination is looked at when the copy is done: its size, and its
//!   ETag against the one the parts make (S3's `md5(part md5s)-N`) or the source's MD5; a
//!   mismatch is a failed copy, never a silent success ([`Verified`]);
//! - **resumable**: with a [`TransferConfig::journal_dir`], a multipart copy records its
//!   upload id and finished parts ([`journal`]); after a crash, a kill or a deadline, the
//!   same copy run again uploads only the missing parts. An upload it gives up on (the
//!   source changed, a failure that retries cannot fix) is aborted;
//! - **reported**: each object ends in an [`ObjectReport`] (source, destination, bytes,
//!   parts, seconds, result, error), and [`Event`]s tell progress as it happens.
//!
//! [`plan`] turns a prefix into jobs, compares two prefixes for a sync, and reads job lists
//! (S3 Batch Operations CSV manifests, JSON lines).

mod copy;
pub mod journal;
pub mod limit;
pub mod plan;
mod verify;

use crate::store::{Backend, BucketProvider, ServerSideEncryption, StoreError};
use futures::{Stream, StreamExt};
use limit::RequestLimit;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use verify::{multipart_etag, Verified};

const MIB: u64 = 1024 * 1024;

/// What can stop a transfer before it copies anything, or one object's copy.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A location is not an `s3://bucket/key` URL.
    #[error("{0:?} is not an s3://bucket/key URL")]
    BadUrl(String),
    /// A line of a job list could not be read.
    #[error("job list line {line}: {message}")]
    BadJob {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The store refused or failed a request (after retries).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The copy was made but the destination is not what was copied.
    #[error("verification failed for {dest}: {message}")]
    Verification {
        /// The destination.
        dest: String,
        /// What differs.
        message: String,
    },
    /// Source and destination are the same object.
    #[error("{0} is both the source and the destination")]
    SameObject(String),
    /// The journal of a resumable copy could not be read or written.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The deadline passed before the copy finished (its journal is kept: run again to
    /// resume).
    #[error("the deadline passed before the copy finished")]
    Deadline,
    /// Reading a job list failed.
    #[error("reading jobs: {0}")]
    Io(#[from] std::io::Error),
}

/// An object (or a prefix) named as the AWS CLI names it: `s3://bucket/key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectUrl {
    /// The bucket.
    pub bucket: String,
    /// The key (or prefix); may be empty.
    pub key: String,
}

impl ObjectUrl {
    /// `key` in `bucket`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// Parses `s3://bucket[/key]`.
    ///
    /// # Errors
    ///
    /// [`TransferError::BadUrl`] for anything else (another scheme, no bucket).
    pub fn parse(url: &str) -> Result<Self, TransferError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| TransferError::BadUrl(url.to_owned()))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(char::is_whitespace) {
            return Err(TransferError::BadUrl(url.to_owned()));
        }
        Ok(Self::new(bucket, key))
    }

    /// The same bucket, key `key`.
    pub fn with_key(&self, key: impl Into<String>) -> Self {
        Self::new(self.bucket.clone(), key)
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

impl Serialize for ObjectUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One object to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// What is copied.
    pub source: ObjectUrl,
    /// Where to.
    pub dest: ObjectUrl,
}

/// How a [`Transfer`] copies.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    /// Copy server-side (the destination's endpoint can read the source's bucket with the
    /// destination's credentials); otherwise stream the bytes through this machine.
    pub server_side: bool,
    /// Requests in flight at once, across every object and part.
    pub max_concurrent_requests: usize,
    /// Objects copied at once.
    pub max_concurrent_objects: usize,
    /// Part size of streamed multipart copies (grown to fit 10,000 parts).
    pub part_size: u64,
    /// Part size of server-side multipart copies (grown to fit 10,000 parts).
    pub copy_part_size: u64,
    /// Objects above this size are copied in parts (server-side: at most 5 GiB, the largest
    /// CopyObject; streamed: the single PUT limit applies too).
    pub multipart_threshold: u64,
    /// Attempts of one request (the first included) before its failure is final.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time, with jitter.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Longest one request (a part's GET and its upload each) may take.
    pub request_timeout: Duration,
    /// No object is started after this instant, and copies still running then stop (their
    /// journal kept for a resume).
    pub deadline: Option<Instant>,
    /// Where resumable copies keep their journals; `None`: not resumable.
    pub journal_dir: Option<PathBuf>,
    /// Storage class of the copies; `None`: the source's.
    pub storage_class: Option<String>,
    /// Server-side encryption of the copies.
    pub sse: Option<ServerSideEncryption>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            server_side: true,
            max_concurrent_requests: 16,
            max_concurrent_objects: 4,
            part_size: 16 * MIB,
            copy_part_size: 64 * MIB,
            multipart_threshold: 256 * MIB,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            request_timeout: Duration::from_secs(300),
            deadline: None,
            journal_dir: None,
            storage_class: None,
            sse: None,
        }
    }
}

/// How one object's copy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Copied and verified.
    Copied,
    /// Already the same at the destination (sync).
    Skipped,
    /// Deleted from the destination (sync `--delete`).
    Deleted,
    /// What a dry run would have done.
    WouldCopy,
    /// What a dry run would have deleted.
    WouldDelete,
    /// Failed; `error` says why.
    Failed,
    /// Stopped by the deadline; run again to resume.
    Interrupted,
}

/// How a copy was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// One CopyObject.
    CopyObject,
    /// UploadPartCopy parts.
    PartCopy,
    /// GET and one PUT through this machine.
    StreamedPut,
    /// Ranged GETs and UploadPart parts through this machine.
    StreamedParts,
    /// No copy was made.
    None,
}

/// The end of one object's copy, as a line of the machine-readable report.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectReport {
    /// What was copied.
    pub source: ObjectUrl,
    /// Where to.
    pub destination: ObjectUrl,
    /// The object's size.
    pub bytes: u64,
    /// Bytes that passed through this machine (0 for a server-side copy).
    pub bytes_through_client: u64,
    /// Parts of a multipart copy (0: one request).
    pub parts: u32,
    /// Parts a resumed copy found done and did not copy again.
    pub resumed_parts: u32,
    /// Wall time of the copy.
    pub seconds: f64,
    /// How it ended.
    pub result: Outcome,
    /// How it was copied.
    pub method: Method,
    /// How the destination was checked.
    pub verified: Verified,
    /// Why it failed.
    pub error: Option<String>,
}

impl ObjectReport {
    /// The report of `job` ending as `result` without a copy being made (skipped, planned,
    /// deleted, or failed before it began).
    pub fn unrun(job: &Job, result: Outcome) -> Self {
        Self {
            source: job.source.clone(),
            destination: job.dest.clone(),
            bytes: 0,
            bytes_through_client: 0,
            parts: 0,
            resumed_parts: 0,
            seconds: 0.0,
            result,
            method: Method::None,
            verified: Verified::No,
            error: None,
        }
    }
}

/// Progress, as it happens.
#[derive(Clone, Debug)]
pub enum Event {
    /// An object's copy began.
    Started {
        /// The job.
        job: Job,
        /// Its size.
        size: u64,
    },
    /// Bytes of some object are now at the destination (a part, or a whole object).
    Copied(u64),
    /// An object's copy ended.
    Finished(ObjectReport),
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects copied.
    pub copied: u64,
    /// Objects skipped (already the same).
    pub skipped: u64,
    /// Objects deleted.
    pub deleted: u64,
    /// Objects a dry run would copy or delete.
    pub planned: u64,
    /// Objects that failed (bad job lines included).
    pub failed: u64,
    /// Objects stopped by the deadline.
    pub interrupted: u64,
    /// Bytes copied.
    pub bytes: u64,
}

impl Summary {
    /// Counts `report`.
    pub fn add(&mut self, report: &ObjectReport) {
        match report.result {
            Outcome::Copied => {
                self.copied += 1;
                self.bytes += report.bytes;
            }
            Outcome::Skipped => self.skipped += 1,
            Outcome::Deleted => self.deleted += 1,
            Outcome::WouldCopy | Outcome::WouldDelete => self.planned += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Interrupted => self.interrupted += 1,
        }
    }

    /// Adds the totals of `other`.
    pub fn merge(&mut self, other: &Summary) {
        self.copied += other.copied;
        self.skipped += other.skipped;
        self.deleted += other.deleted;
        self.planned += other.planned;
        self.failed += other.failed;
        self.interrupted += other.interrupted;
        self.bytes += other.bytes;
    }

    /// Whether every object ended well.
    pub fn all_ok(&self) -> bool {
        self.failed == 0 && self.interrupted == 0
    }
}

type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Copies objects from one set of buckets to another (see the [module docs](self)).
#[derive(Clone)]
pub struct Transfer {
    source: Arc<dyn BucketProvider>,
    dest: Arc<dyn BucketProvider>,
    config: TransferConfig,
    limit: Arc<RequestLimit>,
    events: Option<EventSink>,
    /// Whether reading a source's tags failed once (logged once).
    tags_unavailable: Arc<AtomicBool>,
}

impl fmt::Debug for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transfer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Transfer {
    /// Copies from buckets of `source` to buckets of `dest` as `config` says.
    pub fn new(
        source: Arc<dyn BucketProvider>,
        dest: Arc<dyn BucketProvider>,
        config: TransferConfig,
    ) -> Self {
        let limit = Arc::new(RequestLimit::new(&config));
        Self {
            source,
            dest,
            config,
            limit,
            events: None,
            tags_unavailable: Arc::default(),
        }
    }

    /// Calls `callback` with every [`Event`] (from the copying tasks: keep it quick).
    #[must_use]
    pub fn on_event(mut self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events = Some(Arc::new(callback));
        self
    }

    /// The configuration.
    pub fn config(&self) -> &TransferConfig {
        &self.config
    }

    /// Copies one object; the report says how it went (a failure is in it, not an `Err`).
    pub async fn copy(&self, job: &Job) -> ObjectReport {
        let started = Instant::now();
        let mut report = ObjectReport::unrun(job, Outcome::Failed);
        let result = match self.config.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(TransferError::Deadline),
            Some(deadline) => {
                let deadline = tokio::time::Instant::from_std(deadline);
                match tokio::time::timeout_at(deadline, self.copy_inner(job, &mut report)).await {
                    Ok(done) => done,
                    Err(_) => Err(TransferError::Deadline),
                }
            }
            None => self.copy_inner(job, &mut report).await,
        };
        report.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => report.result = Outcome::Copied,
            Err(TransferError::Deadline) => {
                report.result = Outcome::Interrupted;
                report.error = Some(TransferError::Deadline.to_string());
            }
            Err(err) => {
                tracing::warn!(source = %job.source, dest = %job.dest, error = %err, "copy failed");
                report.result = Outcome::Failed;
                report.error = Some(err.to_string());
            }
        }
        self.emit(&Event::Finished(report.clone()));
        report
    }

    /// Copies every job of `jobs` (a bad job is reported as failed), at most
    /// `max_concurrent_objects` at once, calling `report` with each object's end; returns
    /// the totals.
    pub async fn run<S>(&self, jobs: S, mut report: impl FnMut(ObjectReport)) -> Summary
    where
        S: Stream<Item = Result<Job, TransferError>> + Send,
    {
        let mut summary = Summary::default();
        let mut done = Box::pin(
            jobs.map(|job| async move {
                match job {
                    Ok(job) => self.copy(&job).await,
                    Err(err) => self.bad_job(&err),
                }
            })
            .buffer_unordered(self.config.max_concurrent_objects.max(1)),
        );
        while let Some(one) = done.next().await {
            summary.add(&one);
            report(one);
        }
        summary
    }

    fn bad_job(&self, err: &TransferError) -> ObjectReport {
        tracing::warn!(error = %err, "a job could not be read");
        let nowhere = Job {
            source: ObjectUrl::new("", ""),
            dest: ObjectUrl::new("", ""),
        };
        let mut report = ObjectReport::unrun(&nowhere, Outcome::Failed);
        report.error = Some(err.to_string());
        self.emit(&Event::Finished(report.clone()));
        report
    }

    fn emit(&self, event: &Event) {
        if let Some(sink) = &self.events {
            sink(event);
        }
    }

    fn source_store(&self, bucket: &str) -> Result<Arc<dyn Backend>, TransferError> {
        Ok(self.source.bucket(bucket)?)
    }

    fn dest_store(&self, bucket: &str) -> Result<Arc<dyn Backend>, TransferError> {
        Ok(self.dest.bucket(bucket)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_the_aws_cli_takes_them() {
        assert_eq!(
            ObjectUrl::parse("s3://b/dir/a b.mp4").unwrap(),
            ObjectUrl::new("b", "dir/a b.mp4")
        );
        assert_eq!(ObjectUrl::parse("s3://b").unwrap(), ObjectUrl::new("b", ""));
        assert_eq!(
            ObjectUrl::parse("s3://b/").unwrap(),
            ObjectUrl::new("b", "")
        );
        for bad in ["b/k", "s3://", "s3:///k", "http://b/k", "/tmp/x"] {
            assert!(ObjectUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ObjectUrl::new("b", "k/x").to_string(), "s3://b/k/x");
    }
}
