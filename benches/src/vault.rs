//! `s3vfs-vault-bench`: the vault layout against the plain layout, in one run, on the same
//! server (issue 13's figures), both through the library API with default settings:
//!
//! 1. **dedup**: a corpus of two versions of each of several source trees (the crates that
//!    cargo's registry holds in two or more versions on this machine, the two newest of
//!    each), written file by file into each layout: the bytes each layout stores (the
//!    objects under its prefix, as the bucket lists them) and the time it took;
//! 2. **sequential write and read** of one large file of incompressible, never-repeated
//!    bytes (no dedup or compression to help the vault), MiB/s, median of `--runs`;
//! 3. **rename** of a directory of `--files` small files (the plain layout copies each
//!    object; the vault rewrites one directory);
//! 4. **`ls -l`** of that directory from a fresh file system (cold caches): the listing and
//!    every entry's attributes, as `ls -l` asks for them.
//!
//! Without S3VFS_BENCH_ENDPOINT an in-memory S3 server is started on 127.0.0.1 (see
//! `s3vfs-bench`); with it (and S3VFS_BENCH_BUCKET, AWS_ACCESS_KEY_ID,
//! AWS_SECRET_ACCESS_KEY) the figures are an independent server's. Each layout works under
//! a prefix of its own, deleted at the end.

// The endpoint module serves `s3vfs-bench` too; this binary uses part of it.
#[path = "cpus.rs"]
mod cpus;
#[allow(dead_code)]
#[path = "endpoint.rs"]
mod endpoint;
#[path = "inproc.rs"]
mod inproc;
#[path = "loopback.rs"]
mod loopback;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use clap::Parser;
use endpoint::{Endpoint, S3LikeArgs};
use futures::{StreamExt, TryStreamExt};
use s3vfs::store::s3::S3Store;
use s3vfs::store::{list_all, Backend};
use s3vfs::vault::{VaultConfig, VaultFs};
use s3vfs::vfs::Vfs;
use s3vfs::{FsConfig, S3Fs, S3Vfs};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const MIB: u64 = 1024 * 1024;
/// Files written (or created) at once while a layout is filled.
const FILL_CONCURRENCY: usize = 16;
const PASSPHRASE: &[u8] = b"s3vfs-vault-bench";

/// The vault layout against the plain layout on one endpoint.
#[derive(Debug, Parser)]
#[command(name = "s3vfs-vault-bench", version)]
struct Args {
    /// Size of the file written and read (item 2), in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Times item 2 is repeated; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Files of the directory renamed and listed (items 3 and 4).
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Most bytes of source trees in the corpus of item 1, in MiB.
    #[arg(long, default_value_t = 64)]
    corpus_mib: u64,
    /// The directory holding unpacked crates (default: cargo's registry sources).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Items to skip, comma-separated: dedup, seq, rename, ls, mount (ls and mount need
    /// rename's files; mount is `ls -l` on an in-process FUSE mount of each layout).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Allow a non-loopback S3VFS_BENCH_ENDPOINT.
    #[arg(long)]
    allow_remote: bool,
    #[command(flatten)]
    s3_like: S3LikeArgs,
    #[command(flatten)]
    cpus: cpus::CpuArgs,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Before any thread starts, so that every thread inherits it.
    args.cpus.pin_bench()?;
    let profile = args.s3_like.profile();
    let endpoint = Endpoint::from_env_or_local(args.allow_remote, profile, &args.cpus)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&args, &endpoint));
    drop(runtime);
    endpoint.shutdown();
    result
}

/// One layout under test.
struct Layout<F: Vfs> {
    name: &'static str,
    vfs: S3Vfs<F>,
    prefix: String,
}

async fn plain(store: Arc<dyn Backend>, prefix: &str) -> Result<Layout<S3Fs>> {
    let config = FsConfig::default().with_prefix(prefix);
    Ok(Layout {
        name: "plain",
        vfs: S3Vfs::new(store, config),
        prefix: prefix.to_owned(),
    })
}

async fn vault(store: Arc<dyn Backend>, prefix: &str, init: bool) -> Result<Layout<VaultFs>> {
    let fs = if init {
        VaultFs::init(store, prefix, PASSPHRASE, VaultConfig::default()).await?
    } else {
        VaultFs::open(store, prefix, PASSPHRASE, VaultConfig::default()).await?
    };
    Ok(Layout {
        name: "vault",
        vfs: S3Vfs::over(Arc::new(fs)),
        prefix: prefix.to_owned(),
    })
}

async fn run(args: &Args, endpoint: &Endpoint) -> Result<()> {
    let store: Arc<dyn Backend> = Arc::new(S3Store::new(endpoint.config.clone()).await?);
    let tag = format!("vbench-{:08x}/", rand::random::<u32>());
    let (plain_prefix, vault_prefix) = (format!("{tag}plain/"), format!("{tag}vault/"));
    println!("# s3vfs-vault-bench\n");
    println!("server: {}", endpoint.description);
    println!("{}", args.cpus.describe(endpoint::is_external()));
    println!("prefixes: {plain_prefix} and {vault_prefix}; default FsConfig and VaultConfig\n");
    let p = plain(Arc::clone(&store), &plain_prefix).await?;
    let v = vault(Arc::clone(&store), &vault_prefix, true).await?;
    let skip = |item: &str| args.skip.iter().any(|s| s == item);
    let mut rows = Vec::new();
    let outcome = async {
        if !skip("dedup") {
            dedup(args, &store, &p, &v, &mut rows).await?;
        }
        if !skip("seq") {
            sequential(args, &p, &v, &mut rows).await?;
        }
        if !skip("rename") {
            rename(args, &p, &v, &mut rows).await?;
            if !skip("ls") {
                let fresh_plain = plain(Arc::clone(&store), &plain_prefix).await?;
                let fresh_vault = vault(Arc::clone(&store), &vault_prefix, false).await?;
                let plain_ls = ls_l(&fresh_plain, "renamed", args.files).await?;
                let vault_ls = ls_l(&fresh_vault, "renamed", args.files).await?;
                rows.push(Row::seconds(
                    format!(
                        "library listing + attributes of {} entries, cold",
                        args.files
                    ),
                    plain_ls,
                    vault_ls,
                ));
                if !skip("mount") {
                    let fresh_plain = plain(Arc::clone(&store), &plain_prefix).await?;
                    let fresh_vault = vault(Arc::clone(&store), &vault_prefix, false).await?;
                    let plain_ls = mounted_ls_l(&fresh_plain, "renamed", args.files).await?;
                    let vault_ls = mounted_ls_l(&fresh_vault, "renamed", args.files).await?;
                    rows.push(Row::seconds(
                        format!("`ls -l` of {} entries on a mount, cold", args.files),
                        plain_ls,
                        vault_ls,
                    ));
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    print_rows(&rows);
    let deleted = delete_prefix(&*store, &tag).await;
    match deleted {
        Ok(n) => println!("\n(deleted the run's {n} objects under {tag})"),
        Err(err) => println!("\n(could not delete everything under {tag}: {err:#})"),
    }
    outcome
}

/// One line of the results table.
struct Row {
    figure: String,
    plain: String,
    vault: String,
    ratio: String,
}

impl Row {
    fn seconds(figure: String, plain: Duration, vault: Duration) -> Self {
        Row {
            figure,
            plain: format!("{:.2} s", plain.as_secs_f64()),
            vault: format!("{:.2} s", vault.as_secs_f64()),
            ratio: format!("{:.2}", vault.as_secs_f64() / plain.as_secs_f64()),
        }
    }
}

fn print_rows(rows: &[Row]) {
    println!("| figure | plain | vault | vault / plain |");
    println!("|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} |",
            row.figure, row.plain, row.vault, row.ratio
        );
    }
}

/// Item 1: the corpus into both layouts; stored bytes and times.
async fn dedup(
    args: &Args,
    store: &Arc<dyn Backend>,
    p: &Layout<S3Fs>,
    v: &Layout<VaultFs>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let registry = match &args.registry {
        Some(dir) => dir.clone(),
        None => cargo_registry()?,
    };
    let corpus = corpus(&registry, args.corpus_mib * MIB)?;
    let logical: u64 = corpus.files.iter().map(|(_, len)| *len).sum();
    println!(
        "corpus: {} files, {:.1} MiB, two versions of each of {} crates from {}\n",
        corpus.files.len(),
        logical as f64 / MIB as f64,
        corpus.trees,
        registry.display()
    );
    let plain_time = fill(&p.vfs, &registry, &corpus).await?;
    let vault_time = fill(&v.vfs, &registry, &corpus).await?;
    let plain_stored = stored_bytes(&**store, &p.prefix).await?;
    let vault_stored = stored_bytes(&**store, &v.prefix).await?;
    rows.push(Row {
        figure: format!(
            "corpus stored ({:.1} MiB in {} files)",
            logical as f64 / MIB as f64,
            corpus.files.len()
        ),
        plain: format!("{:.1} MiB", plain_stored as f64 / MIB as f64),
        vault: format!("{:.1} MiB", vault_stored as f64 / MIB as f64),
        ratio: format!(
            "{:.2} (dedup + compression: {:.2}x smaller)",
            vault_stored as f64 / plain_stored as f64,
            plain_stored as f64 / vault_stored as f64
        ),
    });
    rows.push(Row::seconds(
        "corpus written, file by file".to_owned(),
        plain_time,
        vault_time,
    ));
    Ok(())
}

fn cargo_registry() -> Result<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry").join("src");
    let index = std::fs::read_dir(&src)
        .with_context(|| format!("{}: no registry sources (pass --registry)", src.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .with_context(|| format!("{}: empty", src.display()))?;
    Ok(index)
}

/// Files (relative to the registry directory) and their sizes.
struct Corpus {
    files: Vec<(PathBuf, u64)>,
    trees: usize,
}

/// The two newest versions of each crate held in two or more, up to `limit` bytes (whole
/// pairs only).
fn corpus(registry: &Path, limit: u64) -> Result<Corpus> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(registry)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some((krate, _)) = split_version(&name) {
            versions.entry(krate.to_owned()).or_default().push(name);
        }
    }
    let mut files = Vec::new();
    let mut trees = 0;
    let mut total = 0;
    for (_, mut dirs) in versions.into_iter().filter(|(_, d)| d.len() >= 2) {
        dirs.sort_by_key(|d| version_key(d));
        let pair = &dirs[dirs.len() - 2..];
        let mut pair_files = Vec::new();
        for dir in pair {
            walk_files(registry, Path::new(dir), &mut pair_files)?;
        }
        let bytes: u64 = pair_files.iter().map(|(_, len)| *len).sum();
        if total + bytes > limit {
            continue;
        }
        total += bytes;
        trees += 1;
        files.extend(pair_files);
    }
    ensure!(
        !files.is_empty(),
        "{}: no crate in two versions",
        registry.display()
    );
    Ok(Corpus { files, trees })
}

/// `name-1.2.3` → (`name`, `1.2.3`).
fn split_version(dir: &str) -> Option<(&str, &str)> {
    let at = dir
        .match_indices('-')
        .map(|(i, _)| i)
        .find(|&i| dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?;
    Some((&dir[..at], &dir[at + 1..]))
}

/// A directory's version as numbers, for sorting.
fn version_key(dir: &str) -> Vec<u64> {
    split_version(dir)
        .map(|(_, v)| {
            v.split(['.', '-', '+'])
                .map(|p| p.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

fn walk_files(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let rel = rel.join(entry.file_name());
        if kind.is_dir() {
            walk_files(root, &rel, out)?;
        } else if kind.is_file() && rel.to_str().is_some() {
            out.push((rel, entry.metadata()?.len()));
        }
    }
    Ok(())
}

/// Writes the corpus under `corpus/`, directories first; the time it took.
async fn fill<F: Vfs>(vfs: &S3Vfs<F>, registry: &Path, corpus: &Corpus) -> Result<Duration> {
    let start = Instant::now();
    let mut dirs: Vec<String> = corpus
        .files
        .iter()
        .filter_map(|(rel, _)| rel.parent())
        .map(|d| format!("corpus/{}", d.display()))
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        vfs.create_dir_all(dir).await?;
    }
    futures::stream::iter(&corpus.files)
        .map(|(rel, _)| async move {
            let data = tokio::fs::read(registry.join(rel)).await?;
            vfs.write(format!("corpus/{}", rel.display()), data)
                .await
                .with_context(|| format!("writing {}", rel.display()))
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}

/// Bytes of every object under `prefix`.
async fn stored_bytes(store: &dyn Backend, prefix: &str) -> Result<u64> {
    Ok(list_all(store, prefix).await?.iter().map(|o| o.size).sum())
}

async fn delete_prefix(store: &dyn Backend, prefix: &str) -> Result<usize> {
    let objects = list_all(store, prefix).await?;
    let n = objects.len();
    futures::stream::iter(objects)
        .map(|object| async move { store.delete(&object.key).await })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(n)
}

/// `len` bytes that neither compress nor repeat (seeded by `seed`).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Item 2: write then read one large file, `runs` times in each layout (alternating).
async fn sequential(
    args: &Args,
    p: &Layout<S3Fs>,
    v: &Layout<VaultFs>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let size = args.size_mib * MIB;
    let mut times: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for run in 0..args.runs {
        // New bytes every run: the vault must not find the last run's chunks.
        let data = Bytes::from(noise(size as usize, u64::from(run) + 1));
        for (name, write, read) in [
            (
                p.name,
                seq_write(&p.vfs, &data).await?,
                seq_read(&p.vfs, &data).await?,
            ),
            (
                v.name,
                seq_write(&v.vfs, &data).await?,
                seq_read(&v.vfs, &data).await?,
            ),
        ] {
            let mibps = |d: Duration| size as f64 / MIB as f64 / d.as_secs_f64();
            times.entry((name, "write")).or_default().push(mibps(write));
            times.entry((name, "read")).or_default().push(mibps(read));
        }
    }
    for what in ["write", "read"] {
        let plain = median(&times[&("plain", what)]);
        let vault = median(&times[&("vault", what)]);
        rows.push(Row {
            figure: format!(
                "sequential {what} of {} MiB, MiB/s (median of {})",
                args.size_mib, args.runs
            ),
            plain: format!("{plain:.0}"),
            vault: format!("{vault:.0}"),
            ratio: format!("{:.2}", vault / plain),
        });
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Writes `data` as `big` in 1 MiB writes and closes it (durable when this returns).
async fn seq_write<F: Vfs>(vfs: &S3Vfs<F>, data: &Bytes) -> Result<Duration> {
    let start = Instant::now();
    let mut file = vfs.create("big").await?;
    for block in data.chunks(MIB as usize) {
        file.write_all(block).await?;
    }
    file.close().await?;
    Ok(start.elapsed())
}

/// Reads `big` to its end in 1 MiB reads, and checks it is `data`.
async fn seq_read<F: Vfs>(vfs: &S3Vfs<F>, data: &Bytes) -> Result<Duration> {
    let start = Instant::now();
    let mut file = vfs.open("big").await?;
    let mut at = 0usize;
    loop {
        let got = file.read_bytes(MIB as usize).await?;
        if got.is_empty() {
            break;
        }
        ensure!(
            data.get(at..at + got.len()) == Some(&got[..]),
            "read back other bytes at {at}"
        );
        at += got.len();
    }
    let elapsed = start.elapsed();
    ensure!(at == data.len(), "read {at} bytes of {}", data.len());
    Ok(elapsed)
}

/// Item 3: `files` small files in `dir`, then the rename of `dir` to `renamed`.
async fn rename(
    args: &Args,
    p: &Layout<S3Fs>,
    v: &Layout<VaultFs>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let plain_fill = fill_dir(&p.vfs, args.files).await?;
    let vault_fill = fill_dir(&v.vfs, args.files).await?;
    rows.push(Row::seconds(
        format!("create {} files of 100 B in one directory", args.files),
        plain_fill,
        vault_fill,
    ));
    let start = Instant::now();
    p.vfs.rename("dir", "renamed").await?;
    let plain_mv = start.elapsed();
    let start = Instant::now();
    v.vfs.rename("dir", "renamed").await?;
    let vault_mv = start.elapsed();
    rows.push(Row::seconds(
        format!("rename of a directory of {} files", args.files),
        plain_mv,
        vault_mv,
    ));
    Ok(())
}

async fn fill_dir<F: Vfs>(vfs: &S3Vfs<F>, files: usize) -> Result<Duration> {
    let start = Instant::now();
    vfs.create_dir("dir").await?;
    futures::stream::iter(0..files)
        .map(|i| async move {
            vfs.write(format!("dir/file-{i:06}"), noise(100, i as u64))
                .await
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}

/// Item 4: the listing of `dir` and the attributes of each entry; checks the count.
async fn ls_l<F: Vfs>(layout: &Layout<F>, dir: &str, expected: usize) -> Result<Duration> {
    let start = Instant::now();
    let entries = layout.vfs.read_dir(dir).await?.collect().await?;
    let mut sized = 0u64;
    for entry in &entries {
        sized += match &entry.attr {
            Some(attr) => attr.size,
            None => layout
                .vfs
                .metadata(format!("{dir}/{}", entry.name))
                .await?
                .len(),
        };
    }
    let elapsed = start.elapsed();
    ensure!(
        entries.len() == expected && sized == 100 * expected as u64,
        "{}: listed {} entries ({sized} bytes), expected {expected}",
        layout.name,
        entries.len()
    );
    Ok(elapsed)
}

/// Item 4 on a mount: `ls -l` (the command) of `dir` on an in-process FUSE mount of the
/// layout's file system, cold; checks it printed every entry.
async fn mounted_ls_l<F: Vfs + 'static>(
    layout: &Layout<F>,
    dir: &str,
    expected: usize,
) -> Result<Duration> {
    let mountdir = tempfile::Builder::new()
        .prefix("s3vfs-vault-bench-mnt")
        .tempdir()
        .context("cannot create the mountpoint")?;
    let fs = Arc::clone(layout.vfs.fs());
    let guard = inproc::mount_read_only(fs, mountdir.path(), "s3vfs-vault-bench").await?;
    let listed = guard.mountpoint().join(dir);
    let ls = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = std::process::Command::new("ls")
            .arg("-l")
            .arg(&listed)
            .output();
        (start.elapsed(), out)
    })
    .await;
    let unmounted = tokio::task::spawn_blocking(move || guard.unmount()).await;
    let (elapsed, out) = ls.context("ls thread failed")?;
    let out = out.context("cannot run ls")?;
    unmounted
        .context("unmount thread failed")?
        .context("cannot unmount")?;
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    ensure!(
        out.status.success() && lines == expected + 1,
        "{}: ls -l printed {lines} lines, expected {} ({})",
        layout.name,
        expected + 1,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(elapsed)
}
