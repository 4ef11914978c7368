//! `s3vfs-compat`: the same scenario through the library and through a FUSE mount, against
//! any S3 endpoint, printed as a Markdown table with one row per operation: "ok", or the
//! error with the server's own code and message.
//!
//! Without `S3VFS_COMPAT_ENDPOINT` it runs against the testkit's in-memory S3, served over
//! HTTP on 127.0.0.1 (the real client and its parsing included). With it,
//! `S3VFS_COMPAT_BUCKET` (default `s3vfs-compat`), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and optionally `AWS_REGION` name the endpoint; only loopback
//! addresses are accepted unless `--allow-remote` is given. Credentials are always static,
//! so no provider chain (and no instance-metadata address) is ever consulted.
//!
//! Everything the run writes lives under a fresh prefix `s3vfs-compat-<time>/`, deleted at
//! the end unless `--keep`. The exit status is 0 when every cell is "ok".

mod outcome;
mod scenario;
mod surface;

#[path = "../loopback.rs"]
mod loopback;

use anyhow::{bail, Context, Result};
use clap::Parser;
use outcome::Failure;
use s3vfs::store::{Backend, PutOptions, S3Store, S3StoreConfig, StaticCredentials};
use s3vfs::{FsConfig, S3Fs, S3Vfs};
use s3vfs_fuse::{MountGuard, MountOptions};
use s3vfs_testkit::fault::LastErrorStore;
use s3vfs_testkit::server::S3Server;
use s3vfs_testkit::MemStore;
use scenario::{Ctx, OPERATIONS};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use surface::{Library, Mount, Surface};

/// Environment variable naming the endpoint (`http://127.0.0.1:9000`).
const ENV_ENDPOINT: &str = "S3VFS_COMPAT_ENDPOINT";
/// Environment variable naming the bucket.
const ENV_BUCKET: &str = "S3VFS_COMPAT_BUCKET";
/// Bucket used when [`ENV_BUCKET`] is not set, and the in-memory server's bucket.
const DEFAULT_BUCKET: &str = "s3vfs-compat";
/// Region signed for when `AWS_REGION` is not set.
const DEFAULT_REGION: &str = "us-east-1";
/// Part size of every upload: S3's smallest, so that a few MiB make a multipart upload.
const PART_SIZE: u64 = 5 * 1024 * 1024;
/// Longest an operation other than the streaming read may take.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// The object that makes each surface's directory exist.
const PLACEHOLDER: &str = ".s3vfs-compat";
/// Slowest streaming read allowed before it counts as failed, in bytes per second.
const SLOWEST_STREAM: u64 = 1024 * 1024;

/// Runs the compatibility scenario against an S3 endpoint (see the crate documentation).
#[derive(Debug, Parser)]
#[command(name = "s3vfs-compat", version)]
struct Args {
    /// Size of the object of the streaming read, in MiB.
    #[arg(long, env = "S3VFS_COMPAT_STREAM_MIB", default_value_t = 64)]
    stream_mib: u64,
    /// Entries of the large directory that is listed.
    #[arg(long, env = "S3VFS_COMPAT_LIST_ENTRIES", default_value_t = 1500)]
    list_entries: usize,
    /// Only these operations (comma-separated ids: put, multipart, overwrite, append,
    /// random-write, truncate, rename-file, rename-dir, markers, list, symlink, chmod,
    /// xattr, conflict, stream, external).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run through the library only (no FUSE mount).
    #[arg(long)]
    no_mount: bool,
    /// Create the bucket first (an existing one is fine).
    #[arg(long)]
    create_bucket: bool,
    /// The store ignores conditional writes (Garage): upload unconditionally.
    #[arg(long)]
    no_conditional_writes: bool,
    /// Name of the server for the table's heading (e.g. "moto 5.2.0").
    #[arg(long, env = "S3VFS_COMPAT_SERVER")]
    server: Option<String>,
    /// Keep the run's objects instead of deleting them at the end.
    #[arg(long)]
    keep: bool,
    /// Accept an endpoint that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
}

/// The endpoint and what keeps it running.
struct Endpoint {
    store: S3Store,
    name: String,
    /// The in-memory server, when no endpoint was given.
    _local: Option<S3Server>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("s3vfs-compat: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn endpoint(args: &Args) -> Result<Endpoint> {
    let url = std::env::var(ENV_ENDPOINT).ok().filter(|u| !u.is_empty());
    let Some(url) = url else {
        let server = S3Server::serve_store(DEFAULT_BUCKET, Arc::new(MemStore::new()))
            .await
            .context("cannot start the in-memory S3 server")?;
        let store = server.connect(DEFAULT_BUCKET).await?;
        return Ok(Endpoint {
            store,
            name: args
                .server
                .clone()
                .unwrap_or_else(|| "s3vfs-testkit (in-memory, over HTTP)".to_owned()),
            _local: Some(server),
        });
    };
    if !args.allow_remote && !loopback::is_loopback_url(&url) {
        bail!("{ENV_ENDPOINT}={url} is not a loopback address; pass --allow-remote to use it");
    }
    let bucket = std::env::var(ENV_BUCKET)
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| DEFAULT_BUCKET.to_owned());
    let (Ok(key_id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        bail!("{ENV_ENDPOINT} is set: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be too");
    };
    let region = std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let config = S3StoreConfig::new(&bucket)
        .endpoint_url(&url)
        .force_path_style(true)
        .region(region)
        .credentials(StaticCredentials::new(key_id, secret))
        .conditional_writes(!args.no_conditional_writes);
    let store = S3Store::new(config).await?;
    if args.create_bucket {
        create_bucket(&store).await?;
    }
    Ok(Endpoint {
        store,
        name: args.server.clone().unwrap_or_else(|| url.clone()),
        _local: None,
    })
}

/// CreateBucket; a bucket that exists already is fine.
async fn create_bucket(store: &S3Store) -> Result<()> {
    let result = store
        .client()
        .create_bucket()
        .bucket(store.bucket_name())
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or_default();
            if matches!(code, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") {
                Ok(())
            } else {
                let shown = aws_sdk_s3::error::DisplayErrorContext(&e);
                bail!("cannot create bucket {}: {shown}", store.bucket_name())
            }
        }
    }
}

async fn run(args: Args) -> Result<bool> {
    let endpoint = endpoint(&args).await?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let mut config = FsConfig::default()
        .with_prefix(&format!("s3vfs-compat-{run_id}/"))
        .with_write_part_size(PART_SIZE)
        .with_last_writer_wins(args.no_conditional_writes);
    let store: Arc<dyn Backend> = Arc::new(endpoint.store.clone());
    // As `s3vfs mount` does for an endpoint other than AWS.
    let notices = config.fit_to_store(&store).await;
    let ctx = Ctx {
        store: Arc::clone(&store),
        config: config.clone(),
        stream_size: args.stream_mib * 1024 * 1024,
        list_entries: args.list_entries,
    };

    println!(
        "s3vfs {} compatibility with {} on {} (bucket {}, stream {} MiB, {} entries)",
        env!("CARGO_PKG_VERSION"),
        endpoint.name,
        today(),
        endpoint.store.bucket_name(),
        args.stream_mib,
        args.list_entries
    );
    for notice in notices {
        println!("\nThe mount's notice: {notice}");
    }
    let library_store = LastErrorStore::new(Arc::clone(&store));
    let mut surfaces: Vec<(Box<dyn Surface>, LastErrorStore)> = vec![(
        Box::new(Library::new(S3Vfs::new(
            Arc::new(library_store.clone()),
            config.clone(),
        ))),
        library_store,
    )];
    let mountpoint = tempfile::tempdir().context("cannot create the mountpoint")?;
    let mut guard: Option<MountGuard> = None;
    if !args.no_mount {
        let mount_store = LastErrorStore::new(Arc::clone(&store));
        let fs = S3Fs::try_new(Arc::new(mount_store.clone()), config.clone())?;
        let mut options = MountOptions::default();
        options.adapter.listing_ttl = config.metadata_ttl;
        let runtime = tokio::runtime::Handle::current();
        let path = mountpoint.path().to_owned();
        let mounted =
            tokio::task::spawn_blocking(move || s3vfs_fuse::mount(fs, &path, &options, runtime))
                .await??;
        surfaces.push((
            Box::new(Mount::new(mounted.mountpoint().to_owned())),
            mount_store,
        ));
        guard = Some(mounted);
    }

    let all_ok = match prepare(&ctx, &surfaces).await {
        Ok(()) => run_rows(&ctx, &args, &surfaces).await,
        Err(e) => {
            println!("setup failed: {e}");
            false
        }
    };

    if let Some(guard) = guard {
        tokio::task::spawn_blocking(move || guard.unmount()).await??;
    }
    if !args.keep {
        if let Err(e) = ctx.clean_up().await {
            eprintln!("s3vfs-compat: cleaning up {}: {e}", config.prefix);
        }
    }
    Ok(all_ok)
}

/// Seeds the shared objects and makes each surface's directory: implied by an object in
/// it rather than by a marker, so that a server that mishandles markers (`rclone serve s3`
/// stores `dir/` as a file) fails the marker row, not every row.
async fn prepare(
    ctx: &Ctx,
    surfaces: &[(Box<dyn Surface>, LastErrorStore)],
) -> Result<(), Failure> {
    ctx.seed().await?;
    for (surface, _) in surfaces {
        let key = ctx.key(&format!("{}/{PLACEHOLDER}", surface.name()));
        ctx.store
            .put(&key, bytes::Bytes::new(), PutOptions::default())
            .await?;
    }
    Ok(())
}

/// Runs every selected operation on every surface, printing the table: whether all passed.
async fn run_rows(ctx: &Ctx, args: &Args, surfaces: &[(Box<dyn Surface>, LastErrorStore)]) -> bool {
    let names: Vec<&str> = surfaces.iter().map(|(s, _)| s.name()).collect();
    println!();
    println!("| operation | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    let stream_timeout = Duration::from_secs(ctx.stream_size / SLOWEST_STREAM + 60);
    let mut all_ok = true;
    for (id, row, operation) in OPERATIONS {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == id) {
            continue;
        }
        let timeout = if *id == "stream" {
            stream_timeout
        } else {
            OPERATION_TIMEOUT
        };
        let mut cells = Vec::new();
        for (surface, recorder) in surfaces {
            recorder.take();
            let outcome =
                tokio::time::timeout(timeout, operation(ctx, surface.as_ref(), surface.name()))
                    .await
                    .unwrap_or_else(|_| Err(Failure::new(format!("timed out after {timeout:?}"))));
            cells.push(match outcome {
                Ok(note) if note.is_empty() => "ok".to_owned(),
                Ok(note) => format!("ok ({note})"),
                Err(e) if e.is_limitation() => format!("limitation: {e}"),
                Err(e) => {
                    all_ok = false;
                    match recorder.take() {
                        Some(store) => format!("**failed**: {e}; last store error: {store}"),
                        None => format!("**failed**: {e}"),
                    }
                }
            });
        }
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        println!("| {row} | {} |", cells.join(" | "));
    }
    all_ok
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}
