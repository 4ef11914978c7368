//! `s3vfs`: mount an S3 bucket (or a prefix of one) as a file system, or try it locally.
//!
//! - `s3vfs mount BUCKET[/PREFIX] MOUNTPOINT`: Mountpoint-style flags; goes to the
//!   background once the mount is up unless `--foreground`;
//! - `s3vfs demo MOUNTPOINT`: a loopback S3 endpoint with a seeded in-memory bucket,
//!   mounted through the real S3 client; no AWS account needed;
//! - `s3vfs serve`: only the loopback S3 endpoint, for other S3 tools;
//! - `s3vfs vault init|passwd`: make a vault (the encrypted layout, mounted with
//!   `s3vfs mount --layout vault`) or change its passphrase.
//!
//! SIGINT and SIGTERM unmount cleanly and exit with 0.

mod cp;
mod daemon;
mod logging;
mod mount_helper;
#[cfg(feature = "vault")]
mod passphrase;
#[cfg(feature = "vault")]
mod vault;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use s3vfs::config::DataCacheConfig;
use s3vfs::recovery::RecoveryDir;
use s3vfs::store::s3::{S3Buckets, S3Store, S3StoreConfig};
use s3vfs::store::PayloadSigning;
use s3vfs::store::{Backend, BucketProvider, ListRequest, ServerSideEncryption};
use s3vfs::vfs::Vfs;
use s3vfs::{FsConfig, S3Fs};
#[cfg(feature = "demo")]
use s3vfs_fuse::local::{self, LocalS3};
use s3vfs_fuse::{mount, AdapterConfig, MountGuard, MountOptions};
#[cfg(feature = "demo")]
use s3vfs_testkit::MemStore;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use vault::VaultMount;

/// How often a mount's process gives freed memory back to the kernel.
const MEMORY_TRIM_INTERVAL: Duration = Duration::from_secs(30);

/// Smallest part S3 accepts in a multipart upload (every part but the last), in bytes.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Largest part S3 accepts in a multipart upload, in bytes.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "s3vfs", version, about = "Use an S3 bucket as a file system")]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,s3vfs=debug`. Overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log at debug level (Mountpoint's spelling of `--log-level debug`).
    #[arg(long, global = true, conflicts_with = "log_level")]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount a bucket (or a prefix of one) at MOUNTPOINT.
    Mount(Box<MountArgs>),
    /// Mount a local demo bucket served over loopback HTTP; no AWS account needed.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Run only the local S3 endpoint (127.0.0.1), for other S3 tools.
    #[cfg(feature = "demo")]
    Serve(ServeArgs),
    /// List, re-upload or drop the files a mount could not upload (its recovery directory).
    Recover(RecoverArgs),
    /// Try what an S3 server really does (conditional writes, directory markers,
    /// multipart, copies, listings) in a scratch prefix of a bucket, emptied afterwards:
    /// the first thing to run when your S3 is not AWS.
    Doctor(DoctorArgs),
    /// Copy objects between buckets: server-side on one endpoint (multipart above 5 GiB),
    /// streamed between endpoints; resumable, verified, with a JSON-lines report.
    Cp(Box<cp::CpArgs>),
    /// Copy what differs from one prefix to another (size and ETag), optionally deleting
    /// what the source lacks.
    Sync(Box<cp::SyncArgs>),
    #[cfg(feature = "vault")]
    /// Make a vault (a deduplicated, compressed, encrypted file system in a bucket, for
    /// `mount --layout vault`) or change its passphrase.
    Vault(vault::VaultArgs),
}

/// How to reach S3: the flags `mount`, `doctor`, `recover` and `vault` share. Each also comes
/// from the variable the AWS SDKs read.
#[derive(Debug, Args)]
struct ConnectionArgs {
    /// S3 endpoint URL, for S3-compatible stores (e.g. http://127.0.0.1:9000).
    #[arg(
        help_heading = "S3 connection",
        long,
        value_name = "URL",
        env = "AWS_ENDPOINT_URL"
    )]
    endpoint_url: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT.
    #[arg(help_heading = "S3 connection", long)]
    force_path_style: bool,
    /// AWS region of the bucket (default: from the profile, else the region the bucket
    /// names when asked, as Mountpoint does).
    #[arg(help_heading = "S3 connection", long, env = "AWS_REGION")]
    region: Option<String>,
    /// Named profile of ~/.aws/config and ~/.aws/credentials.
    #[arg(help_heading = "S3 connection", long, env = "AWS_PROFILE")]
    profile: Option<String>,
}

impl ConnectionArgs {
    /// The client configuration for `bucket` these flags describe.
    fn store_config(&self, bucket: &str) -> S3StoreConfig {
        let mut config =
            S3StoreConfig::new(bucket.to_owned()).force_path_style(self.force_path_style);
        config.region = self.region.clone();
        config.endpoint_url = self.endpoint_url.clone();
        config.profile = self.profile.clone();
        config
    }

    /// A client of `bucket` with these flags and `access`.
    async fn connect(&self, access: &AccessArgs, bucket: &str) -> anyhow::Result<Arc<dyn Backend>> {
        let store = S3Store::new(access.apply(self.store_config(bucket)))
            .await
            .with_context(|| format!("cannot set up the S3 client for bucket {bucket}"))?;
        Ok(Arc::new(store))
    }
}

/// `BUCKET[/PREFIX]` (`s3://` allowed in front) as the bucket and the prefix as given.
fn split_target(target: &str) -> anyhow::Result<(String, String)> {
    let target = target.strip_prefix("s3://").unwrap_or(target);
    let (bucket, prefix) = target.split_once('/').unwrap_or((target, ""));
    if bucket.is_empty() {
        bail!("the bucket name in {target:?} is empty");
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// Who signs and who pays: the flags `mount`, `doctor` and `recover` share besides
/// [`ConnectionArgs`] (Mountpoint's and the AWS CLI's spellings).
#[derive(Debug, Args)]
struct AccessArgs {
    /// Send requests unsigned, without looking up any credentials: for buckets anyone may
    /// read.
    #[arg(help_heading = "S3 connection", long)]
    no_sign_request: bool,
    /// Pay for the requests and data transfer of a requester-pays bucket (sends
    /// x-amz-request-payer: requester with every request).
    #[arg(help_heading = "S3 connection", long)]
    requester_pays: bool,
    /// The account that must own the bucket (12 digits): S3 refuses every request to a
    /// bucket of that name owned by another (x-amz-expected-bucket-owner).
    #[arg(help_heading = "S3 connection", long, value_name = "ACCOUNT", value_parser = parse_account_id)]
    expected_bucket_owner: Option<String>,
}

impl AccessArgs {
    /// `config` with these flags.
    fn apply(&self, config: S3StoreConfig) -> S3StoreConfig {
        let mut config = config
            .anonymous(self.no_sign_request)
            .requester_pays(self.requester_pays);
        config.expected_bucket_owner = self.expected_bucket_owner.clone();
        config
    }
}

/// An AWS account id: 12 digits.
fn parse_account_id(text: &str) -> Result<String, String> {
    if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not an AWS account id (12 digits)"))
    }
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// BUCKET[/PREFIX]: the scratch prefix is made under PREFIX.
    #[arg(value_name = "BUCKET[/PREFIX]")]
    target: String,
    #[command(flatten)]
    s3: ConnectionArgs,
    #[command(flatten)]
    access: AccessArgs,
}

#[derive(Debug, Args)]
struct RecoverArgs {
    /// The recovery directory (default: s3vfs-recovery in $TMPDIR or /tmp, where a mount
    /// without --recovery-dir or --staging-dir keeps files).
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Re-upload this entry (an ID as listed); repeatable. Each is uploaded only over the
    /// object version it builds on, never over a newer one.
    #[arg(long, value_name = "ID")]
    upload: Vec<String>,
    /// Re-upload every entry.
    #[arg(long, conflicts_with = "upload")]
    upload_all: bool,
    /// Drop this entry without uploading it; repeatable.
    #[arg(long, value_name = "ID")]
    discard: Vec<String>,
    /// Abort the multipart uploads that mounts killed before finishing them left open
    /// (listed by a plain `s3vfs recover`; their parts cost storage until aborted).
    #[arg(long)]
    abort_stale: bool,
    /// Bucket to upload to (default: the bucket each manifest names).
    #[arg(long)]
    bucket: Option<String>,
    #[command(flatten)]
    s3: ConnectionArgs,
    #[command(flatten)]
    access: AccessArgs,
    /// Size of one uploaded part, in bytes (suffixes K, M, G).
    #[arg(long, value_name = "BYTES", default_value_t = ByteSize(FsConfig::default().write_part_size),
        value_parser = parse_part_size)]
    part_size: ByteSize,
    /// Entries a vault mount kept are stored through their vault, opened with this
    /// passphrase.
    #[cfg(feature = "vault")]
    #[command(flatten)]
    passphrase: passphrase::PassphraseArgs,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  s3vfs mount my-bucket /mnt/data --region eu-west-1
  s3vfs mount local-bucket/datasets /mnt/ds --endpoint-url http://127.0.0.1:9000 --force-path-style --read-only")]
struct MountArgs {
    /// BUCKET[/PREFIX] and MOUNTPOINT; with --all-buckets only MOUNTPOINT.
    #[arg(value_name = "[BUCKET[/PREFIX]] MOUNTPOINT", num_args = 1..=2, required = true)]
    targets: Vec<String>,
    /// Show every bucket the credentials can list as a directory at the root.
    #[arg(help_heading = "What to mount", long)]
    all_buckets: bool,
    /// How files are kept in the bucket: `plain`, one object per file under its path
    /// (what other S3 tools see), or `vault`, a deduplicated, compressed and encrypted
    /// file system made by `s3vfs vault init` (FORMAT.md), opened with its passphrase
    /// (S3VFS_PASSPHRASE, --passphrase-file, else asked on the terminal before the mount
    /// goes to the background). A vault refuses the flags of the plain layout's objects,
    /// uploads, staging and data cache (--no-delete, --no-overwrite, --last-writer-wins,
    /// --storage-class, --sse, --part-size, --max-file-size,
    /// --staging-dir, --staging-cap, --memory-budget, --cache-*, --file-mode, --dir-mode,
    /// --negative-metadata-ttl, --all-buckets, --object-store-url); --uid/--gid are the
    /// owner of new files there, which keep their own modes and owners.
    #[arg(help_heading = "What to mount", long, value_enum, value_name = "plain|vault",
        default_value_t = Layout::Plain)]
    layout: Layout,
    #[cfg(feature = "vault")]
    #[command(flatten)]
    passphrase: passphrase::PassphraseArgs,
    /// Mount this `object_store` URL instead of an S3 bucket (then give only MOUNTPOINT):
    /// `file:///DIR`, an existing local directory. Files keep no modes, owners or times
    /// there (defaults are shown; chmod and symbolic links fail with ENOTSUP),
    /// directories exist through their files (as over S3 without markers), and the last
    /// writer wins (object_store completes no upload under a condition).
    #[cfg(feature = "object-store")]
    #[arg(
        help_heading = "What to mount",
        long,
        value_name = "URL",
        conflicts_with = "all_buckets"
    )]
    object_store_url: Option<String>,
    #[command(flatten)]
    s3: ConnectionArgs,
    #[command(flatten)]
    access: AccessArgs,
    /// When upload bodies are covered by the request signature (one SHA-256 pass over every
    /// byte written): auto signs them only over plain HTTP to another host, since HTTPS and
    /// loopback connections already keep them intact. A CRC32 checksum is sent either way.
    #[arg(help_heading = "S3 connection", long, value_name = "auto|always|never", default_value_t = PayloadSigning::Auto)]
    payload_signing: PayloadSigning,
    /// Mount read-only: every change fails with EROFS.
    #[arg(help_heading = "Permissions", long)]
    read_only: bool,
    /// Never delete: unlink, rmdir and rename (which deletes the old name) fail with EPERM.
    #[arg(help_heading = "Permissions", long)]
    no_delete: bool,
    /// Allow deletes: the default, accepted for Mountpoint command lines.
    #[arg(help_heading = "Permissions", long, conflicts_with = "no_delete")]
    allow_delete: bool,
    /// Allow changes to existing objects: the default, accepted for Mountpoint command
    /// lines.
    #[arg(help_heading = "Permissions", long, conflicts_with = "no_overwrite")]
    allow_overwrite: bool,
    /// Mount only keys under this prefix, after the one in BUCKET/PREFIX (Mountpoint's
    /// spelling: `s3vfs mount BUCKET MNT --prefix data/`).
    #[arg(
        help_heading = "What to mount",
        long,
        value_name = "PREFIX",
        conflicts_with = "all_buckets"
    )]
    prefix: Option<String>,
    /// Never change an existing object: opening one for writing (overwrite, append,
    /// truncate), chmod/chown/touch of it and renaming over it fail with EPERM. New files
    /// can still be created.
    #[arg(help_heading = "Permissions", long)]
    no_overwrite: bool,
    /// Upload unconditionally: a file saved here replaces whatever another client wrote to
    /// the same key meanwhile. By default such an upload is refused (close/fsync fail with
    /// EIO) and the other client's version stays.
    #[arg(help_heading = "Writes", long)]
    last_writer_wins: bool,
    /// Storage class of new objects, e.g. STANDARD_IA or INTELLIGENT_TIERING (default: the
    /// bucket's default class).
    #[arg(help_heading = "Writes", long, value_name = "CLASS")]
    storage_class: Option<String>,
    /// Server-side encryption of new objects: aws:kms (SSE-KMS) or AES256 (SSE-S3).
    /// Default: the bucket's default encryption.
    #[arg(help_heading = "Writes", long, value_name = "aws:kms|AES256")]
    sse: Option<SseType>,
    /// KMS key id or ARN for --sse aws:kms (default: the bucket's or the account's key).
    #[arg(help_heading = "Writes", long, value_name = "ID", requires = "sse")]
    sse_kms_key_id: Option<String>,
    /// Size of one uploaded part, in bytes (suffixes K, M, G: powers of 1024), from 5M to
    /// 5G. Grown automatically for very large files, so that they fit in 10,000 parts.
    #[arg(help_heading = "Writes", long, value_name = "BYTES", default_value_t = ByteSize(FsConfig::default().write_part_size),
        value_parser = parse_part_size)]
    part_size: ByteSize,
    /// Largest file, in bytes (suffixes K, M, G, T): writes and truncates past it fail with
    /// EFBIG. Default and upper bound: 5T, the largest object S3 holds.
    #[arg(help_heading = "Writes", long, value_name = "BYTES", default_value_t = ByteSize(FsConfig::default().max_file_size),
        value_parser = parse_max_file_size)]
    max_file_size: ByteSize,
    /// On SIGTERM or SIGINT, how long to upload files with unsaved changes before
    /// unmounting (new opens and writes are refused meanwhile); what is not uploaded by
    /// then is kept in the recovery directory.
    #[arg(help_heading = "Writes", long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    shutdown_timeout: Duration,
    /// Where files that could not be uploaded are kept, with a manifest each, for
    /// `s3vfs recover` (default: s3vfs-recovery in the staging directory). Mode 0700.
    #[arg(help_heading = "Writes", long, value_name = "DIR")]
    recovery_dir: Option<PathBuf>,
    /// Parts uploaded at once per file (with --layout vault: chunks uploaded at once by
    /// one flush).
    #[arg(help_heading = "Writes", long, value_name = "N", default_value_t = FsConfig::default().upload_concurrency,
        value_parser = parse_count)]
    upload_concurrency: usize,
    /// With --layout vault: bytes written to one open file and held in memory before
    /// they are stored without waiting for a flush (K/M/G suffixes; default 64M).
    #[cfg(feature = "vault")]
    #[arg(help_heading = "Writes", long, value_name = "BYTES")]
    max_dirty: Option<ByteSize>,
    /// Directory for the staging files of files written out of order (random writes,
    /// appends, truncation) until they are uploaded (default: $TMPDIR or /tmp).
    #[arg(help_heading = "Writes", long, value_name = "DIR")]
    staging_dir: Option<PathBuf>,
    /// Most bytes of staging files on disk at once, across all open files (suffixes K, M,
    /// G). Past it, new files written in order keep streaming to S3 without a local copy,
    /// and other writes fail with ENOSPC.
    #[arg(help_heading = "Writes", long, value_name = "BYTES", default_value_t = ByteSize(FsConfig::default().staging_cap))]
    staging_cap: ByteSize,
    /// Most bytes of read-ahead and upload buffers held at once across all open files
    /// (K/M/G suffixes); past it reads fetch only what is asked and writers wait.
    #[arg(help_heading = "Caching and memory", long, value_name = "BYTES", default_value_t = ByteSize(FsConfig::default().memory_budget))]
    memory_budget: ByteSize,
    /// Keep up to this many bytes of file data in memory (K/M/G suffixes), so re-reads
    /// of unchanged files cost no S3 request. Default: no memory cache.
    #[arg(help_heading = "Caching and memory", long, value_name = "BYTES")]
    cache_memory: Option<ByteSize>,
    /// Keep file data in this (existing) directory, in its subdirectory s3vfs-cache-v1,
    /// which is emptied at mount. Default: no disk cache.
    #[arg(
        help_heading = "Caching and memory",
        long,
        value_name = "DIR",
        alias = "cache"
    )]
    cache_dir: Option<PathBuf>,
    /// Most bytes of the disk cache (K/M/G suffixes); needs --cache-dir.
    #[arg(help_heading = "Caching and memory", long, value_name = "BYTES", requires = "cache_dir",
        default_value_t = ByteSize(DataCacheConfig::default().disk_bytes))]
    cache_disk_size: ByteSize,
    /// Most MiB of the disk cache (Mountpoint's spelling of --cache-disk-size).
    #[arg(
        help_heading = "Caching and memory",
        long,
        value_name = "MIB",
        requires = "cache_dir",
        conflicts_with = "cache_disk_size"
    )]
    max_cache_size: Option<u64>,
    /// Most bytes of file data waiting to be written to the disk cache (K/M/G suffixes),
    /// held in memory on top of --memory-budget; needs --cache-dir. Blocks are written
    /// behind the reads, so a first read is not slowed to the disk's speed; blocks read
    /// while the backlog is full are not cached.
    #[arg(help_heading = "Caching and memory", long, value_name = "BYTES", requires = "cache_dir",
        default_value_t = ByteSize(DataCacheConfig::default().disk_write_backlog))]
    cache_write_backlog: ByteSize,
    /// Size of one cached block (K/M/G suffixes): a read of an uncached block fetches
    /// the whole block.
    #[arg(help_heading = "Caching and memory", long, value_name = "BYTES", value_parser = parse_block_size,
        default_value_t = ByteSize(DataCacheConfig::default().block_size))]
    cache_block_size: ByteSize,
    /// Do not serve extended attributes: every xattr call fails with EOPNOTSUPP and the
    /// kernel stops sending them (no HEAD per file from tools copying `user.*` ones).
    #[arg(help_heading = "Permissions", long)]
    no_xattr: bool,
    /// Bypass the kernel's page cache for every open file (FUSE direct I/O): faster large
    /// sequential reads and no cached pages left behind, but every small read is a round
    /// trip and nothing is re-read from the page cache. Write-only opens always bypass it.
    #[arg(help_heading = "Caching and memory", long)]
    direct_io: bool,
    /// Threads reading requests from the kernel (Mountpoint's spelling). Each request is
    /// handed to the async runtime at once, so a few threads keep many requests in flight.
    #[arg(help_heading = "FUSE and process", long, value_name = "N", default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=256))]
    max_threads: u16,
    /// Do not try, at mount, whether an --endpoint-url server honours conditional writes
    /// and keeps `dir/` markers (a few requests in a scratch prefix it removes again):
    /// trust it to, as for AWS. `s3vfs doctor` tells what it does.
    #[arg(help_heading = "S3 connection", long)]
    skip_server_checks: bool,
    /// Owner of every file and directory (default: the current user).
    #[arg(help_heading = "Permissions", long)]
    uid: Option<u32>,
    /// Group of every file and directory (default: the current group).
    #[arg(help_heading = "Permissions", long)]
    gid: Option<u32>,
    /// Permission bits of files, in octal.
    #[arg(help_heading = "Permissions", long, value_name = "OCTAL", default_value = "0644", value_parser = parse_mode)]
    file_mode: u16,
    /// Permission bits of directories, in octal.
    #[arg(help_heading = "Permissions", long, value_name = "OCTAL", default_value = "0755", value_parser = parse_mode)]
    dir_mode: u16,
    /// Let every user access the mount (needs user_allow_other in /etc/fuse.conf).
    #[arg(help_heading = "Permissions", long)]
    allow_other: bool,
    /// Let root access the mount besides its owner.
    #[arg(help_heading = "Permissions", long)]
    allow_root: bool,
    /// Unmount automatically when s3vfs exits, even if it is killed (implies
    /// --allow-root).
    #[arg(help_heading = "FUSE and process", long)]
    auto_unmount: bool,
    /// Stay in the foreground instead of going to the background once mounted.
    #[arg(help_heading = "FUSE and process", long, short = 'f')]
    foreground: bool,
    /// How long metadata and listings are trusted before S3 is asked again, in seconds
    /// (fractions allowed). Changes made elsewhere show up within this time.
    /// `indefinite` trusts them until the mount ends, `minimal` asks S3 every time.
    #[arg(help_heading = "Caching and memory", long, value_name = "SECONDS", default_value = "1", value_parser = parse_ttl)]
    metadata_ttl: Duration,
    /// How long "no such file" is trusted, in seconds (default: --metadata-ttl).
    #[arg(help_heading = "Caching and memory", long, value_name = "SECONDS", value_parser = parse_ttl)]
    negative_metadata_ttl: Option<Duration>,
    /// Write logs to this file. Default: stderr with --foreground; in the background the
    /// system journal, else syslog (/dev/log, or the socket S3VFS_SYSLOG_SOCKET names),
    /// else $XDG_STATE_HOME/s3vfs/s3vfs.log (/var/log/s3vfs.log for root,
    /// ~/.local/state/s3vfs/s3vfs.log otherwise).
    #[arg(help_heading = "Logging", long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Write logs to this directory (Mountpoint's spelling), one file a day
    /// (s3vfs.YYYY-MM-DD.log), the last 14 kept; created mode 0700 if missing.
    #[arg(
        help_heading = "Logging",
        long,
        value_name = "DIR",
        conflicts_with = "log_file"
    )]
    log_directory: Option<PathBuf>,
}

impl MountArgs {
    /// The S3 client configuration for `bucket` these flags describe.
    fn store_config(&self, bucket: &str) -> S3StoreConfig {
        let mut config = self.access.apply(self.s3.store_config(bucket));
        config.payload_signing = self.payload_signing;
        config
    }
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
struct DemoArgs {
    /// Where to mount the demo bucket (an empty directory).
    mountpoint: PathBuf,
    /// Keep the bucket in this directory (seeded on first use) instead of in memory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
struct ServeArgs {
    /// TCP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Keep the bucket in this directory instead of in memory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Name of the bucket to serve.
    #[arg(long, default_value = local::DEMO_BUCKET)]
    bucket: String,
    /// Leave the bucket empty instead of seeding the demo files into a new one.
    #[arg(long)]
    empty: bool,
}

/// The layout `s3vfs mount` serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Layout {
    /// One object per file, under its path: what other S3 tools see and write.
    #[default]
    Plain,
    /// The vault layout: deduplicated, compressed, encrypted (FORMAT.md); made by
    /// `s3vfs vault init`.
    Vault,
}

/// Without the vault feature: `--layout vault` is refused, and there is no vault to open.
#[cfg(not(feature = "vault"))]
mod vault {
    use super::{Arc, Backend, Layout, MountArgs, Vfs};

    /// No value: without the vault feature a mount has no vault.
    #[derive(Debug)]
    pub(crate) enum VaultMount {}

    impl VaultMount {
        /// `None`, or the refusal of `--layout vault`.
        pub(crate) fn prepare(args: &MountArgs) -> anyhow::Result<Option<Self>> {
            if args.layout == Layout::Vault {
                anyhow::bail!("--layout vault: this s3vfs is built without the vault feature");
            }
            Ok(None)
        }

        /// Never called: there is no value to call it on.
        pub(crate) async fn open(
            self,
            _: Arc<dyn Backend>,
            _: &str,
            _: &str,
            _: bool,
        ) -> anyhow::Result<Arc<dyn Vfs>> {
            match self {}
        }
    }
}

/// `--sse`: server-side encryption, as S3 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SseType {
    /// SSE-KMS.
    #[value(name = "aws:kms")]
    Kms,
    /// SSE-S3.
    #[value(name = "AES256")]
    S3,
}

/// A number of bytes on the command line, read by the `parse-size` crate: a number with
/// an optional K, M, G or T suffix, powers of 1024 (`KiB`, `MB`, lower case and decimals
/// such as `1.5G` are accepted alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ByteSize(u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_size::Config::new()
            .with_binary()
            .parse_size(text.trim())
            .map(ByteSize)
            .map_err(|err| format!("{text:?} is not a size such as 8M, 512K or 1G ({err})"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest suffix that keeps the number exact, so that defaults read as `8M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = [
            (1u64 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ]
        .into_iter()
        .find(|(unit, _)| self.0 != 0 && self.0.is_multiple_of(*unit));
        match suffix {
            Some((unit, suffix)) => write!(f, "{}{suffix}", self.0 / unit),
            None => write!(f, "{}", self.0),
        }
    }
}

fn parse_part_size(text: &str) -> Result<ByteSize, String> {
    let size: ByteSize = text.parse()?;
    if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size.0) {
        Ok(size)
    } else {
        Err(format!(
            "{text:?} is outside the part sizes S3 accepts ({} to {})",
            ByteSize(MIN_PART_SIZE),
            ByteSize(MAX_PART_SIZE)
        ))
    }
}

/// `--max-file-size`: from one byte to the largest object S3 holds.
fn parse_max_file_size(text: &str) -> Result<ByteSize, String> {
    let size: ByteSize = text.parse()?;
    if (1..=s3vfs::config::MAX_S3_OBJECT_SIZE).contains(&size.0) {
        Ok(size)
    } else {
        Err(format!(
            "{text:?} is outside 1 byte to {}, the largest object S3 holds",
            ByteSize(s3vfs::config::MAX_S3_OBJECT_SIZE)
        ))
    }
}

/// `--cache-block-size`: from 4K to 64M.
fn parse_block_size(text: &str) -> Result<ByteSize, String> {
    let size = ByteSize::from_str(text)?;
    if !(4 * 1024..=64 * 1024 * 1024).contains(&size.0) {
        return Err(format!("a cache block is from 4K to 64M, not {size}"));
    }
    Ok(size)
}

fn parse_count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a positive whole number"))
}

fn parse_mode(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u16::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 0644"))
}

/// A TTL: seconds, `indefinite` (until the mount ends) or `minimal` (zero).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    match text {
        "indefinite" => Ok(INDEFINITE_TTL),
        "minimal" => Ok(Duration::ZERO),
        _ => parse_seconds(text),
    }
}

/// What `indefinite` means: longer than any mount lasts.
const INDEFINITE_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

#[cfg(feature = "demo")]
/// How long `s3vfs demo` uploads unsaved files on a stop signal.
const DEMO_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    // Before any thread allocates: reuse freed receive buffers (see s3vfs_fuse::malloc).
    s3vfs_fuse::malloc::tune_for_streaming();
    // `mount -t fuse.s3vfs` (fstab) runs `s3vfs SOURCE MNT -o OPTIONS`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match mount_helper::translate(&args) {
        Some(translated) => Cli::parse_from(translated),
        None => Cli::parse_from(args),
    };
    let level = cli
        .log_level
        .clone()
        .or(cli.debug.then(|| "debug".to_owned()));
    let result = match cli.command {
        Command::Mount(args) => run_mount(*args, level.as_deref()),
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            local::disable_instance_metadata();
            runtime().and_then(|rt| rt.block_on(demo(args)))
        }
        #[cfg(feature = "demo")]
        Command::Serve(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            local::disable_instance_metadata();
            runtime().and_then(|rt| rt.block_on(serve(args)))
        }
        Command::Recover(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            runtime().and_then(|rt| rt.block_on(recover(args)))
        }
        Command::Doctor(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            runtime().and_then(|rt| rt.block_on(doctor(args)))
        }
        Command::Cp(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            runtime().map(|rt| rt.block_on(cp::cp(*args)))
        }
        Command::Sync(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            runtime().map(|rt| rt.block_on(cp::sync(*args)))
        }
        #[cfg(feature = "vault")]
        Command::Vault(args) => {
            logging::init(level.as_deref(), logging::LogTarget::Stderr);
            runtime().and_then(|rt| rt.block_on(vault::run(args)))
        }
    };
    match result {
        Ok(code) => code,
        // The background process told the waiting parent, which printed it.
        Err(err) if err.is::<daemon::Reported>() => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("s3vfs: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `s3vfs doctor`: every check of [`s3vfs::store::probe::run`], as a table; fails when a
/// check could not be made.
async fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    use s3vfs::store::probe::{self, Verdict};
    let (bucket, prefix) = split_target(&args.target)?;
    let prefix = FsConfig::default().with_prefix(&prefix).prefix;
    let store = args.s3.connect(&args.access, &bucket).await?;
    let endpoint = args.s3.endpoint_url.as_deref().unwrap_or("AWS");
    println!("s3vfs doctor: bucket {bucket}, prefix {prefix:?}, endpoint {endpoint}");
    println!();
    println!("| check | result | detail |");
    println!("|---|---|---|");
    let checks = probe::run(&store, &prefix).await;
    for check in &checks {
        let detail = check.detail.replace('|', "\\|");
        println!("| {} | {} | {detail} |", check.name, check.verdict);
    }
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let (failed, lacks) = (count(Verdict::Failed), count(Verdict::Lacks));
    println!();
    println!(
        "{} of {} checks work, {lacks} lacking (a mount works around each as its detail says), {failed} failed",
        count(Verdict::Works),
        checks.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `s3vfs recover`: lists the recovery directory, or re-uploads / drops entries.
async fn recover(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| FsConfig::default().recovery_dir());
    if !dir.exists() {
        println!("{}: no recovery directory, nothing kept", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let recovery = RecoveryDir::open(&dir)?;
    let entries = recovery.list()?;
    let find = |id: &str| {
        entries
            .iter()
            .find(|e| e.id == id)
            .with_context(|| format!("no entry {id} in {}", dir.display()))
    };
    let mut failed = 0;
    for id in &args.discard {
        recovery.discard(find(id)?)?;
        println!("discarded {id}");
    }
    let chosen: Vec<_> = if args.upload_all {
        entries.iter().collect()
    } else {
        args.upload
            .iter()
            .map(|id| find(id))
            .collect::<anyhow::Result<_>>()?
    };
    let stale = recovery.stale_uploads()?;
    if args.discard.is_empty() && chosen.is_empty() && !args.abort_stale {
        println!("{}: {} kept file(s)", dir.display(), entries.len());
        for e in &entries {
            let m = &e.manifest;
            println!(
                "{}\n  s3://{}/{}{}  {} bytes  kept {}\n  error: {}",
                e.id,
                m.bucket.as_deref().unwrap_or("?"),
                m.key,
                match m.layout {
                    s3vfs::recovery::Layout::Vault => " (a vault's file)",
                    _ => "",
                },
                m.size,
                m.kept_at_text,
                m.error
            );
        }
        println!(
            "{} unfinished multipart upload(s) of mounts that are gone",
            stale.len()
        );
        for u in &stale {
            println!(
                "  s3://{}/{}  upload {}  (process {})",
                u.bucket.as_deref().unwrap_or("?"),
                u.key,
                u.upload_id,
                u.pid
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut stores = Stores::new(&args);
    #[cfg(feature = "vault")]
    let mut vaults = vault::Recovering::new(&args.passphrase);
    if args.abort_stale {
        for upload in &stale {
            let Some(store) = stores.get(upload.bucket.as_deref()).await? else {
                eprintln!("{}: no bucket recorded; give --bucket", upload.key);
                failed += 1;
                continue;
            };
            match recovery.abort_stale(&*store, upload).await {
                Ok(()) => println!("aborted the upload of {}", upload.key),
                Err(err) => {
                    eprintln!("{}: not aborted: {err}", upload.key);
                    failed += 1;
                }
            }
        }
    }
    for entry in chosen {
        let Some(store) = stores.get(entry.manifest.bucket.as_deref()).await? else {
            eprintln!("{}: the manifest names no bucket; give --bucket", entry.id);
            failed += 1;
            continue;
        };
        let bucket = store.bucket().unwrap_or_default();
        if entry.manifest.layout == s3vfs::recovery::Layout::Vault {
            #[cfg(feature = "vault")]
            let stored = vaults.reupload(store, &recovery, entry).await;
            #[cfg(not(feature = "vault"))]
            let stored: anyhow::Result<()> = Err(anyhow::anyhow!(
                "this s3vfs is built without the vault feature"
            ));
            match stored {
                Ok(()) => println!(
                    "stored {} in its vault (s3://{bucket}/{})",
                    entry.id, entry.manifest.key
                ),
                Err(err) => {
                    eprintln!("{}: not stored: {err:#}", entry.id);
                    failed += 1;
                }
            }
            continue;
        }
        match recovery.reupload(store, entry, args.part_size.0).await {
            Ok(_) => println!(
                "uploaded {} to s3://{bucket}/{}",
                entry.id, entry.manifest.key
            ),
            Err(err) => {
                eprintln!("{}: not uploaded: {err}", entry.id);
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One S3 client per bucket, for `s3vfs recover`.
struct Stores<'a> {
    args: &'a RecoverArgs,
    by_bucket: BTreeMap<String, Arc<dyn Backend>>,
}

impl<'a> Stores<'a> {
    fn new(args: &'a RecoverArgs) -> Self {
        Self {
            args,
            by_bucket: BTreeMap::new(),
        }
    }

    /// The client of `--bucket`, else of `recorded`; `None` without either.
    async fn get(&mut self, recorded: Option<&str>) -> anyhow::Result<Option<Arc<dyn Backend>>> {
        let Some(bucket) = self.args.bucket.as_deref().or(recorded) else {
            return Ok(None);
        };
        if let Some(store) = self.by_bucket.get(bucket) {
            return Ok(Some(Arc::clone(store)));
        }
        let store = self.args.s3.connect(&self.args.access, bucket).await?;
        self.by_bucket.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(Some(store))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("s3vfs")
        .build()
        .context("cannot start the async runtime")
}

/// What `s3vfs mount` will mount, resolved from the command line before anything starts.
#[derive(Debug)]
struct MountPlan {
    /// `None` with `--all-buckets` or `--object-store-url`.
    bucket: Option<String>,
    /// `--object-store-url`.
    object_store_url: Option<String>,
    prefix: String,
    mountpoint: PathBuf,
    read_only: bool,
}

impl MountPlan {
    fn from_args(args: &MountArgs) -> anyhow::Result<Self> {
        #[cfg(feature = "object-store")]
        let object_store_url = args.object_store_url.clone();
        #[cfg(not(feature = "object-store"))]
        let object_store_url: Option<String> = None;
        let whole_store = args.all_buckets || object_store_url.is_some();
        let (target, mountpoint) = match (args.targets.as_slice(), whole_store) {
            ([target, mountpoint], false) => (Some(target.as_str()), mountpoint),
            ([mountpoint], true) => (None, mountpoint),
            ([_], false) => {
                bail!("give BUCKET[/PREFIX] and MOUNTPOINT, or --all-buckets MOUNTPOINT")
            }
            (_, true) if args.all_buckets => {
                bail!("--all-buckets takes only MOUNTPOINT, no bucket")
            }
            (_, true) => bail!("--object-store-url takes only MOUNTPOINT, no bucket"),
            _ => bail!("expected [BUCKET[/PREFIX]] MOUNTPOINT"),
        };
        let (bucket, prefix) = match target {
            Some(target) => {
                let (bucket, prefix) = split_target(target)?;
                (Some(bucket), prefix)
            }
            None => (None, String::new()),
        };
        let prefix = match &args.prefix {
            None => prefix,
            Some(extra) if prefix.is_empty() || prefix.ends_with('/') => format!("{prefix}{extra}"),
            Some(extra) => format!("{prefix}/{extra}"),
        };
        // Absolute before a fork changes the working directory.
        let mountpoint = std::path::absolute(mountpoint)
            .with_context(|| format!("invalid mountpoint {mountpoint:?}"))?;
        Ok(Self {
            bucket,
            object_store_url,
            prefix,
            mountpoint,
            read_only: args.read_only,
        })
    }

    /// The file system's configuration: the plan and every flag that shapes the core.
    fn fs_config(&self, args: &MountArgs) -> anyhow::Result<FsConfig> {
        let mut config = FsConfig::default()
            .with_prefix(&self.prefix)
            .with_modes(args.file_mode, args.dir_mode)
            .with_metadata_ttl(args.metadata_ttl)
            .with_read_only(self.read_only);
        if let Some(ttl) = args.negative_metadata_ttl {
            config = config.with_negative_ttl(ttl);
        }
        let (uid, gid) = (
            args.uid.unwrap_or(config.uid),
            args.gid.unwrap_or(config.gid),
        );
        config = config.with_owner(uid, gid);
        config.allow_delete = !args.no_delete;
        config.allow_overwrite = !args.no_overwrite;
        config.last_writer_wins = args.last_writer_wins;
        config.storage_class = args.storage_class.clone();
        config.sse = match (args.sse, &args.sse_kms_key_id) {
            (None, _) => None,
            (Some(SseType::Kms), key_id) => Some(ServerSideEncryption::Kms {
                key_id: key_id.clone(),
            }),
            (Some(SseType::S3), None) => Some(ServerSideEncryption::S3),
            (Some(SseType::S3), Some(_)) => {
                bail!("--sse-kms-key-id needs --sse aws:kms, not AES256")
            }
        };
        config.write_part_size = args.part_size.0;
        config.upload_concurrency = args.upload_concurrency;
        config.max_file_size = args.max_file_size.0;
        config.staging_cap = args.staging_cap.0;
        config.memory_budget = args.memory_budget.0;
        if let Some(dir) = &args.staging_dir {
            // Checked now: a missing directory would otherwise fail only the first
            // out-of-order write, with ENOSPC, long after the mount.
            let dir = std::path::absolute(dir)
                .with_context(|| format!("invalid staging directory {dir:?}"))?;
            let metadata = std::fs::metadata(&dir)
                .with_context(|| format!("staging directory {}", dir.display()))?;
            if !metadata.is_dir() {
                bail!("staging directory {} is not a directory", dir.display());
            }
            config.staging_dir = Some(dir);
        }
        if let Some(dir) = &args.recovery_dir {
            let dir = std::path::absolute(dir)
                .with_context(|| format!("invalid recovery directory {dir:?}"))?;
            // Checked (and created, 0700) now, not when a file first needs it.
            RecoveryDir::open(&dir)
                .with_context(|| format!("recovery directory {}", dir.display()))?;
            config.recovery_dir = Some(dir);
        }
        let mut cache = DataCacheConfig::default().with_block_size(args.cache_block_size.0);
        if let Some(bytes) = args.cache_memory {
            cache = cache.with_memory(bytes.0);
        }
        if let Some(dir) = &args.cache_dir {
            // Checked now, like the staging directory; the cache creates (and empties) only
            // its own subdirectory in it.
            let dir = std::path::absolute(dir)
                .with_context(|| format!("invalid cache directory {dir:?}"))?;
            let metadata = std::fs::metadata(&dir)
                .with_context(|| format!("cache directory {}", dir.display()))?;
            if !metadata.is_dir() {
                bail!("cache directory {} is not a directory", dir.display());
            }
            cache = cache
                .with_disk(
                    dir,
                    args.max_cache_size.map_or(args.cache_disk_size.0, |mib| {
                        mib.saturating_mul(1024 * 1024)
                    }),
                )
                .with_disk_write_backlog(args.cache_write_backlog.0);
        }
        config.data_cache = cache;
        Ok(config)
    }

    fn fs_name(&self) -> String {
        if let Some(url) = &self.object_store_url {
            return format!("s3vfs:{url}");
        }
        match &self.bucket {
            Some(bucket) if self.prefix.is_empty() => format!("s3vfs:{bucket}"),
            Some(bucket) => format!("s3vfs:{bucket}/{}", self.prefix),
            None => "s3vfs:all-buckets".to_owned(),
        }
    }
}

fn run_mount(args: MountArgs, log_level: Option<&str>) -> anyhow::Result<ExitCode> {
    let plan = MountPlan::from_args(&args)?;
    if args.layout == Layout::Vault {
        // Not after the passphrase was typed: a bad mountpoint fails first.
        s3vfs_fuse::mount::check_mountpoint(&plan.mountpoint, false)?;
    }
    // The passphrase is asked here, on the terminal, before the mount forks.
    let vault = VaultMount::prepare(&args)?;
    let log_target = if let Some(dir) = &args.log_directory {
        Some(logging::LogTarget::Rolling(
            logging::rolling_directory(dir)
                .with_context(|| format!("cannot log to directory {}", dir.display()))?,
        ))
    } else if let Some(path) = &args.log_file {
        Some(logging::LogTarget::File(
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?,
        ))
    } else {
        None
    };
    let readiness = if args.foreground {
        None
    } else {
        // Before the runtime or logging start any thread.
        match daemon::fork().context("cannot go to the background")? {
            Ok(readiness) => Some(readiness),
            Err(parent_exit) => return Ok(parent_exit),
        }
    };
    let places = logging::LogPlaces::from_env();
    let (target, notice) = logging::choose_target(log_target, readiness.is_some(), &places);
    if let Some(notice) = notice {
        // Still on the terminal: the background process detaches once the mount is up.
        eprintln!("s3vfs: {notice}");
    }
    logging::init(log_level, target);
    if let Err(err) = s3vfs_fuse::malloc::trim_periodically(MEMORY_TRIM_INTERVAL) {
        tracing::warn!(error = %err, "cannot start the thread that returns freed memory");
    }
    let outcome =
        runtime().and_then(|rt| rt.block_on(mount_and_serve(&args, &plan, vault, readiness)));
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Builds the file system, mounts it, reports readiness and serves until told to stop.
async fn mount_and_serve(
    args: &MountArgs,
    plan: &MountPlan,
    vault: Option<VaultMount>,
    readiness: Option<daemon::Readiness>,
) -> anyhow::Result<()> {
    let (guard, notices) = match mount_bucket(args, plan, vault).await {
        Ok(mounted) => mounted,
        Err(err) => {
            return match readiness {
                Some(readiness) => {
                    // For the log file; the parent prints it on the terminal.
                    tracing::error!("{err:#}");
                    readiness.failed(&format!("s3vfs: {err:#}"));
                    Err(daemon::Reported.into())
                }
                None => Err(err),
            };
        }
    };
    for notice in &notices {
        // In the log, and on the terminal: in the foreground the log is the terminal; in
        // the background the parent process prints what it is told before it exits.
        tracing::warn!("{notice}");
    }
    if let Some(mut readiness) = readiness {
        for notice in &notices {
            readiness.notice(notice);
        }
        readiness.ready();
    }
    serve_until_stopped(guard, args.shutdown_timeout).await
}

/// Mounts what `plan` says (the vault of `vault`, if any): the guard, and the notices the
/// user must see (a contract the server made the mount change).
async fn mount_bucket(
    args: &MountArgs,
    plan: &MountPlan,
    vault: Option<VaultMount>,
) -> anyhow::Result<(MountGuard, Vec<String>)> {
    // A bad mountpoint fails before anything reaches the network.
    s3vfs_fuse::mount::check_mountpoint(&plan.mountpoint, false)?;
    let mut fs_config = plan.fs_config(args)?;
    let mut notices = Vec::new();
    let store_config = args.store_config(plan.bucket.as_deref().unwrap_or_default());
    let vfs: Arc<dyn Vfs> = match (&plan.bucket, &plan.object_store_url) {
        (_, Some(url)) => {
            let store = object_store_backend(url)?;
            check_bucket(&store, url, &fs_config.prefix).await?;
            // No object_store path holds a `dir/` marker (the adapter refuses them); its
            // capabilities already make the mount last-writer-wins.
            fs_config.directory_markers = false;
            S3Fs::try_new(store, fs_config.clone()).context("cannot set up the data cache")?
        }
        (Some(bucket), None) => {
            let store = S3Store::new(store_config)
                .await
                .with_context(|| format!("cannot set up the S3 client for bucket {bucket}"))?;
            let store: Arc<dyn Backend> = Arc::new(store);
            check_bucket(&store, bucket, &fs_config.prefix).await?;
            // AWS honours If-None-Match and If-Match and keeps `dir/` markers; other
            // servers are asked (Garage and `rclone serve s3` ignore conditions, rclone
            // turns a marker into a file).
            let check_server = args.s3.endpoint_url.is_some() && !args.skip_server_checks;
            if let Some(vault) = vault {
                vault
                    .open(
                        store,
                        &fs_config.prefix,
                        &format!("s3://{bucket}/{}", fs_config.prefix),
                        check_server,
                    )
                    .await?
            } else {
                if check_server {
                    notices = fs_config.fit_to_store(&store).await;
                }
                S3Fs::try_new(store, fs_config.clone()).context("cannot set up the data cache")?
            }
        }
        (None, None) => {
            let buckets = S3Buckets::new(store_config)
                .await
                .context("cannot set up the S3 client")?;
            all_buckets_vfs(Arc::new(buckets), fs_config.clone())?
        }
    };
    let options = MountOptions {
        read_only: plan.read_only,
        allow_other: args.allow_other,
        allow_root: args.allow_root,
        auto_unmount: args.auto_unmount,
        fs_name: plan.fs_name(),
        adapter: AdapterConfig::default()
            .with_listing_ttl(fs_config.metadata_ttl)
            .with_xattrs(!args.no_xattr)
            .with_direct_io(args.direct_io),
        threads: usize::from(args.max_threads),
        ..MountOptions::default()
    };
    let runtime = tokio::runtime::Handle::current();
    let mountpoint = plan.mountpoint.clone();
    let guard = tokio::task::spawn_blocking(move || mount(vfs, &mountpoint, &options, runtime))
        .await
        .context("the mount task failed")??;
    tracing::info!(mountpoint = %plan.mountpoint.display(),
        bucket = plan.bucket.as_deref().or(plan.object_store_url.as_deref()).unwrap_or("*"),
        prefix = %plan.prefix, "s3vfs is serving; unmount with `fusermount3 -u {}`", plan.mountpoint.display());
    Ok((guard, notices))
}

/// The backend of `--object-store-url`.
#[cfg(feature = "object-store")]
fn object_store_backend(url: &str) -> anyhow::Result<Arc<dyn Backend>> {
    let store = s3vfs::store::object_store::ObjectStoreBackend::from_url(url)
        .with_context(|| format!("cannot open {url}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "object-store"))]
fn object_store_backend(url: &str) -> anyhow::Result<Arc<dyn Backend>> {
    bail!("cannot open {url}: this s3vfs is built without the object-store feature")
}

/// One LIST of the prefix, so that a wrong bucket, region or credentials fail the mount
/// with the store's reason instead of every later file access failing.
async fn check_bucket(store: &Arc<dyn Backend>, bucket: &str, prefix: &str) -> anyhow::Result<()> {
    let request = ListRequest {
        prefix: prefix.to_owned(),
        delimiter: Some("/".to_owned()),
        max_keys: Some(1),
        ..ListRequest::default()
    };
    store
        .list(request)
        .await
        .map(|_| ())
        .with_context(|| format!("cannot list bucket {bucket}"))
}

/// The file system of `s3vfs mount --all-buckets`: every bucket of `provider` as a
/// directory at the root, each an [`S3Fs`] configured like `config`.
fn all_buckets_vfs(
    provider: Arc<dyn BucketProvider>,
    config: FsConfig,
) -> anyhow::Result<Arc<dyn Vfs>> {
    Ok(s3vfs::BucketsFs::try_new(provider, config).context("cannot set up the data cache")?)
}

/// Waits for SIGINT, SIGTERM or an unmount from outside, then unmounts.
/// Serves until unmounted from outside or stopped by SIGTERM/SIGINT. On a signal, the
/// unsaved files are uploaded (within `shutdown_timeout`) or kept before the unmount.
async fn serve_until_stopped(guard: MountGuard, shutdown_timeout: Duration) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = guard.unmounted() => {
            tracing::info!("unmounted from outside; exiting");
            return Ok(());
        }
        result = tokio::signal::ctrl_c() => {
            result.context("cannot listen for SIGINT")?;
            tracing::info!("SIGINT: unmounting");
        }
        _ = terminate.recv() => tracing::info!("SIGTERM: unmounting"),
    }
    guard.save_unsaved(shutdown_timeout).await;
    tokio::task::spawn_blocking(move || guard.unmount())
        .await
        .context("the unmount task failed")??;
    Ok(())
}

#[cfg(feature = "demo")]
/// `s3vfs demo`: a seeded bucket on a loopback endpoint, mounted through the real client.
async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.data_dir.as_deref())?;
    if store.is_empty() {
        local::seed_demo(&store);
    }
    let server = LocalS3::start(local::DEMO_BUCKET, store, 0)
        .await
        .context("cannot start the local S3 endpoint")?;
    let mountpoint = std::path::absolute(&args.mountpoint)
        .with_context(|| format!("invalid mountpoint {:?}", args.mountpoint))?;
    // The demo is a first run: make its mountpoint if it is missing (a real mount does
    // not, so a typo cannot create directories). Only a path that is really missing:
    // `exists()` is also false for a dead FUSE mount (ENOTCONN), which the mount explains.
    let missing = std::fs::symlink_metadata(&mountpoint)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    if missing {
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("cannot create the mountpoint {}", mountpoint.display()))?;
    }
    let options = MountOptions::default().with_fs_name(format!("s3vfs:{}", local::DEMO_BUCKET));
    let guard = server
        .mount(FsConfig::default(), &mountpoint, &options)
        .await
        .context("cannot mount the demo bucket")?;
    println!(
        "Local S3 endpoint: {} (bucket {:?}, path-style, region us-east-1)",
        server.endpoint_url(),
        server.bucket()
    );
    println!(
        "  access key id {}, secret {}",
        server.access_key_id(),
        server.secret_access_key()
    );
    println!("Mounted at {}", mountpoint.display());
    println!(
        "  try: ls -lR {0}; cat {0}/README.txt; echo hello > {0}/hello.txt",
        mountpoint.display()
    );
    println!(
        "Press Ctrl-C to unmount and stop (or run `fusermount3 -u {}`).",
        mountpoint.display()
    );
    serve_until_stopped(guard, DEMO_SHUTDOWN_TIMEOUT).await?;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
/// `s3vfs serve`: only the loopback endpoint, until Ctrl-C.
async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(args.data_dir.as_deref())?;
    if store.is_empty() && !args.empty {
        local::seed_demo(&store);
    }
    let server = LocalS3::start(&args.bucket, store, args.port)
        .await
        .with_context(|| format!("cannot start the local S3 endpoint on port {}", args.port))?;
    println!(
        "Serving bucket {:?} at {} (loopback only)",
        server.bucket(),
        server.endpoint_url()
    );
    println!(
        "  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION=us-east-1",
        server.access_key_id(),
        server.secret_access_key()
    );
    println!(
        "  e.g. s3vfs mount --endpoint-url {} --force-path-style {} /mnt/point",
        server.endpoint_url(),
        server.bucket()
    );
    println!("Press Ctrl-C to stop.");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping the local S3 endpoint");
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
/// The bucket of `demo`/`serve`: in memory, or kept in `data_dir`.
fn open_store(data_dir: Option<&std::path::Path>) -> anyhow::Result<MemStore> {
    match data_dir {
        Some(dir) => MemStore::persisted(dir)
            .with_context(|| format!("cannot open the bucket directory {}", dir.display())),
        None => Ok(MemStore::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments of `s3vfs mount TARGET /mnt EXTRA…`.
    fn parse_mount(target: &str, extra: &[&str]) -> anyhow::Result<MountArgs> {
        let mut args = vec!["s3vfs", "mount", target, "/mnt"];
        args.extend_from_slice(extra);
        let Command::Mount(args) = Cli::try_parse_from(args)?.command else {
            bail!("not a mount command");
        };
        Ok(*args)
    }

    fn plan(args: &[&str]) -> anyhow::Result<MountPlan> {
        let cli = Cli::try_parse_from(args)?;
        let Command::Mount(args) = cli.command else {
            bail!("not a mount command");
        };
        MountPlan::from_args(&args)
    }

    #[test]
    fn mountpoint_s3_spellings_mean_what_they_mean_there() {
        let mount_args = |extra: &[&str]| parse_mount("b/base", extra);
        let args =
            mount_args(&["--prefix", "more/", "--allow-delete", "--allow-overwrite"]).unwrap();
        let plan = MountPlan::from_args(&args).unwrap();
        assert_eq!(plan.prefix, "base/more/");
        let config = plan.fs_config(&args).unwrap();
        assert!(config.allow_delete && config.allow_overwrite);
        assert!(mount_args(&["--allow-delete", "--no-delete"]).is_err());

        let args = mount_args(&[
            "--metadata-ttl",
            "indefinite",
            "--negative-metadata-ttl",
            "5",
        ])
        .unwrap();
        let config = MountPlan::from_args(&args)
            .unwrap()
            .fs_config(&args)
            .unwrap();
        assert_eq!(config.metadata_ttl, INDEFINITE_TTL);
        assert_eq!(config.negative_ttl, Duration::from_secs(5));
        let args = mount_args(&["--metadata-ttl", "minimal"]).unwrap();
        assert_eq!(args.metadata_ttl, Duration::ZERO);
        assert!(mount_args(&["--metadata-ttl", "forever"]).is_err());

        let args = mount_args(&["--cache", "/tmp", "--max-cache-size", "10"]).unwrap();
        assert_eq!(
            args.cache_dir.as_deref(),
            Some(std::path::Path::new("/tmp"))
        );
        assert_eq!(args.max_cache_size, Some(10));
        assert!(
            mount_args(&["--max-cache-size", "10"]).is_err(),
            "needs a cache directory"
        );
        assert!(mount_args(&["--log-directory", "/tmp", "--log-file", "/tmp/x"]).is_err());

        let cli = Cli::try_parse_from(["s3vfs", "mount", "b", "/mnt", "--debug"]).unwrap();
        assert!(cli.debug);
        assert!(
            Cli::try_parse_from(["s3vfs", "--debug", "--log-level", "info", "doctor", "b"])
                .is_err()
        );
    }

    #[test]
    fn access_flags_reach_the_store_config() {
        let mount_args = |extra: &[&str]| parse_mount("b", extra);
        let config = mount_args(&[]).unwrap().store_config("b");
        assert!(!config.anonymous && !config.requester_pays);
        assert_eq!(config.expected_bucket_owner, None);
        let config = mount_args(&[
            "--no-sign-request",
            "--requester-pays",
            "--expected-bucket-owner",
            "111122223333",
            "--payload-signing",
            "always",
        ])
        .unwrap()
        .store_config("b");
        assert!(config.anonymous && config.requester_pays);
        assert_eq!(
            config.expected_bucket_owner.as_deref(),
            Some("111122223333")
        );
        assert_eq!(config.payload_signing, PayloadSigning::Always);
        assert!(mount_args(&["--expected-bucket-owner", "me"]).is_err());

        // doctor and recover take them too.
        let cli = Cli::try_parse_from(["s3vfs", "doctor", "b", "--requester-pays"]).unwrap();
        let Command::Doctor(args) = cli.command else {
            panic!("not a doctor command");
        };
        assert!(args.access.apply(args.s3.store_config("b")).requester_pays);
        let cli = Cli::try_parse_from(["s3vfs", "recover", "--no-sign-request"]).unwrap();
        let Command::Recover(args) = cli.command else {
            panic!("not a recover command");
        };
        assert!(args.access.apply(args.s3.store_config("b")).anonymous);
    }

    #[test]
    fn mount_help_is_grouped_by_topic_with_examples() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("mount")
            .expect("a mount subcommand")
            .render_long_help()
            .to_string();
        for heading in [
            "What to mount:",
            "S3 connection:",
            "Permissions:",
            "Writes:",
            "Caching and memory:",
            "FUSE and process:",
            "Logging:",
            "Examples:",
        ] {
            assert!(help.contains(heading), "{heading} missing from:\n{help}");
        }
    }

    #[test]
    fn max_threads_is_checked() {
        let threads = |extra: &[&str]| parse_mount("b", extra).map(|args| args.max_threads);
        assert_eq!(threads(&[]).unwrap(), 2);
        assert_eq!(threads(&["--max-threads", "8"]).unwrap(), 8);
        assert!(threads(&["--max-threads", "0"]).is_err());
        assert!(threads(&["--max-threads", "100000"]).is_err());
    }

    #[test]
    fn bucket_and_prefix_are_split() {
        let p = plan(&["s3vfs", "mount", "bucket/some/prefix", "/mnt/x"]).unwrap();
        assert_eq!(p.bucket.as_deref(), Some("bucket"));
        assert_eq!(p.prefix, "some/prefix");
        assert_eq!(p.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(p.fs_name(), "s3vfs:bucket/some/prefix");
        let p = plan(&["s3vfs", "mount", "s3://bucket", "/mnt/x"]).unwrap();
        assert_eq!(
            (p.bucket.as_deref(), p.prefix.as_str()),
            (Some("bucket"), "")
        );
    }

    #[test]
    fn all_buckets_takes_only_a_mountpoint() {
        let p = plan(&["s3vfs", "mount", "--all-buckets", "/mnt/x"]).unwrap();
        assert_eq!(p.bucket, None);
        assert!(plan(&["s3vfs", "mount", "--all-buckets", "b", "/mnt/x"]).is_err());
        assert!(plan(&["s3vfs", "mount", "/mnt/x"]).is_err());
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "s3vfs",
            "--log-level",
            "debug",
            "mount",
            "b",
            "/m",
            "--file-mode",
            "0600",
            "--dir-mode",
            "700",
            "--metadata-ttl",
            "2.5",
            "--uid",
            "7",
            "--foreground",
            "--no-xattr",
            "--direct-io",
        ])
        .unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not a mount command");
        };
        assert_eq!((args.file_mode, args.dir_mode), (0o600, 0o700));
        assert_eq!(args.metadata_ttl, Duration::from_millis(2500));
        assert_eq!(args.uid, Some(7));
        assert!(args.foreground);
        assert!(args.no_xattr);
        assert!(args.direct_io);
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("17777").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        let size = |text: &str| text.parse::<ByteSize>().map(|s| s.0);
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("512K"), Ok(512 * 1024));
        assert_eq!(size("8M"), Ok(8 << 20));
        assert_eq!(size("8MiB"), Ok(8 << 20));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert!(size("").is_err());
        assert!(size("M").is_err());
        assert_eq!(size("1.5G"), Ok(3 << 29));
        assert_eq!(size("1 GiB"), Ok(1 << 30));
        assert!(size("8X").is_err());
        assert!(size("99999999999T").is_err());
        assert_eq!(ByteSize(8 << 20).to_string(), "8M");
        assert_eq!(ByteSize(64 << 30).to_string(), "64G");
        assert_eq!(ByteSize(1000).to_string(), "1000");
        assert!(parse_part_size("5M").is_ok());
        assert!(parse_part_size("4M").is_err());
        assert!(parse_part_size("6G").is_err());
        assert!(parse_count("0").is_err());
    }

    #[test]
    fn write_flags_reach_the_file_system_config() {
        let staging = tempfile::tempdir().unwrap();
        let staging_dir = staging.path().to_str().unwrap();
        let p = |args: &[&str]| {
            let cli = Cli::try_parse_from(args)?;
            let Command::Mount(args) = cli.command else {
                bail!("not a mount command");
            };
            MountPlan::from_args(&args)?.fs_config(&args)
        };
        let defaults = p(&["s3vfs", "mount", "b/pre", "/m"]).unwrap();
        let expected = FsConfig::default().with_prefix("pre");
        assert_eq!(defaults, expected);
        assert!(!defaults.read_only);

        let config = p(&[
            "s3vfs",
            "mount",
            "b",
            "/m",
            "--no-delete",
            "--no-overwrite",
            "--last-writer-wins",
            "--storage-class",
            "STANDARD_IA",
            "--sse",
            "aws:kms",
            "--sse-kms-key-id",
            "alias/k",
            "--part-size",
            "16M",
            "--upload-concurrency",
            "3",
            "--staging-dir",
            staging_dir,
            "--staging-cap",
            "1G",
        ])
        .unwrap();
        assert!(!config.allow_delete && !config.allow_overwrite && config.last_writer_wins);
        assert_eq!(config.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(
            config.sse,
            Some(ServerSideEncryption::Kms {
                key_id: Some("alias/k".to_owned())
            })
        );
        assert_eq!(config.write_part_size, 16 << 20);
        assert_eq!(config.upload_concurrency, 3);
        assert_eq!(config.staging_dir.as_deref(), Some(staging.path()));
        assert_eq!(config.staging_cap, 1 << 30);

        let config = p(&[
            "s3vfs",
            "mount",
            "b",
            "/m",
            "--sse",
            "AES256",
            "--read-only",
        ]);
        let config = config.unwrap();
        assert_eq!(config.sse, Some(ServerSideEncryption::S3));
        assert!(config.read_only);
        let mixed = ["s3vfs", "mount", "b", "/m", "--sse", "AES256"];
        assert!(p(&[&mixed[..], &["--sse-kms-key-id", "k"]].concat()).is_err());
        assert!(p(&["s3vfs", "mount", "b", "/m", "--sse-kms-key-id", "k"]).is_err());
        assert!(p(&["s3vfs", "mount", "b", "/m", "--sse", "DES"]).is_err());
        assert!(p(&["s3vfs", "mount", "b", "/m", "--part-size", "1M"]).is_err());
        let missing = staging.path().join("missing");
        let missing = missing.to_str().unwrap();
        assert!(p(&["s3vfs", "mount", "b", "/m", "--staging-dir", missing]).is_err());
    }

    #[test]
    fn cache_flags_reach_the_file_system_config() {
        let dir = tempfile::tempdir().unwrap();
        let dir_arg = dir.path().to_str().unwrap();
        let p = |args: &[&str]| {
            let cli = Cli::try_parse_from(args)?;
            let Command::Mount(args) = cli.command else {
                bail!("not a mount command");
            };
            MountPlan::from_args(&args)?.fs_config(&args)
        };
        let off = p(&["s3vfs", "mount", "b", "/m"]).unwrap().data_cache;
        assert!(!off.is_enabled());
        assert_eq!(off, DataCacheConfig::default());

        let memory = p(&["s3vfs", "mount", "b", "/m", "--cache-memory", "512M"]).unwrap();
        assert_eq!(memory.data_cache.memory_bytes, 512 << 20);
        assert_eq!(memory.data_cache.disk_dir, None);
        assert!(memory.data_cache.is_enabled());

        let disk = p(&["s3vfs", "mount", "b", "/m", "--cache-dir", dir_arg]).unwrap();
        assert_eq!(disk.data_cache.disk_dir.as_deref(), Some(dir.path()));
        assert_eq!(disk.data_cache.disk_bytes, 5 << 30, "5G by default");
        assert_eq!(
            disk.data_cache.disk_write_backlog,
            256 << 20,
            "256M by default"
        );
        assert_eq!(disk.data_cache.memory_bytes, 0);

        let both = p(&[
            "s3vfs",
            "mount",
            "b",
            "/m",
            "--cache-memory",
            "64M",
            "--cache-dir",
            dir_arg,
            "--cache-disk-size",
            "20G",
            "--cache-block-size",
            "256K",
            "--cache-write-backlog",
            "1G",
        ])
        .unwrap()
        .data_cache;
        assert_eq!(
            both,
            DataCacheConfig::default()
                .with_memory(64 << 20)
                .with_disk(dir.path(), 20 << 30)
                .with_block_size(256 << 10)
                .with_disk_write_backlog(1 << 30)
        );

        let missing = dir.path().join("missing");
        let missing = missing.to_str().unwrap();
        let err = p(&["s3vfs", "mount", "b", "/m", "--cache-dir", missing]).unwrap_err();
        assert!(format!("{err:#}").contains("cache directory"), "{err:#}");
        assert!(p(&["s3vfs", "mount", "b", "/m", "--cache-disk-size", "1G"]).is_err());
        assert!(p(&["s3vfs", "mount", "b", "/m", "--cache-write-backlog", "1G"]).is_err());
        assert!(p(&["s3vfs", "mount", "b", "/m", "--cache-block-size", "1K"]).is_err());
        assert!(p(&["s3vfs", "mount", "b", "/m", "--cache-memory", "lots"]).is_err());
    }
}
