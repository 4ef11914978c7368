//! `s3vfs-transfer-bench`: what `s3vfs::transfer` guarantees, shown over HTTP with the real
//! S3 client against the testkit's endpoint, whose buckets count requests (and those in
//! flight) and inject faults:
//!
//! 1. 1,000 small objects copied under request caps: the most requests the server saw in
//!    flight at once, against the cap;
//! 2. a multipart copy killed midway, then resumed: the part copies each run made;
//! 3. injected faults — a part that fails for good, a SlowDown storm, requests that never
//!    answer — over 20 multipart objects: which objects failed, and whether any destination
//!    object is partial (never) or any upload is left open.
//!
//! Prints a markdown table per scenario. `--objects N` changes the count of scenario 1.

use anyhow::{ensure, Context};
use clap::Parser;
use s3vfs::store::{Capabilities, StoreError, StoreErrorKind};
use s3vfs::transfer::{Event, Job, ObjectUrl, Outcome, Transfer, TransferConfig};
use s3vfs_testkit::fault::Op;
use s3vfs_testkit::server::{S3Server, ServerCredentials};
use s3vfs_testkit::InstrumentedBuckets;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

#[derive(Debug, Parser)]
struct Args {
    /// Small objects of scenario 1.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Latency the server adds to each request, in milliseconds.
    #[arg(long, default_value_t = 5)]
    latency_ms: u64,
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2654435761).wrapping_add(seed) as u8)
        .collect()
}

async fn serve(
    buckets: &InstrumentedBuckets,
) -> anyhow::Result<(S3Server, Arc<s3vfs::store::s3::S3Buckets>)> {
    let server = S3Server::start(Arc::new(buckets.clone()), ServerCredentials::test()).await?;
    let provider = Arc::new(server.connect_buckets().await?);
    Ok((server, provider))
}

fn transfer(provider: &Arc<s3vfs::store::s3::S3Buckets>, config: TransferConfig) -> Transfer {
    Transfer::new(provider.clone(), provider.clone(), config)
}

fn quick_retries() -> TransferConfig {
    TransferConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ..TransferConfig::default()
    }
}

async fn caps(args: &Args) -> anyhow::Result<()> {
    println!(
        "## 1. {} objects of 4 KiB, server latency {} ms per request",
        args.objects, args.latency_ms
    );
    println!();
    println!("| --max-concurrent-requests | seconds | objects/s | most requests in flight at the server |");
    println!("|---|---|---|---|");
    for cap in [1, 8, 32] {
        let buckets = InstrumentedBuckets::new()
            .with_bucket(
                "src",
                Capabilities::default(),
                Duration::from_millis(args.latency_ms),
            )
            .with_bucket(
                "dst",
                Capabilities::default(),
                Duration::from_millis(args.latency_ms),
            );
        for i in 0..args.objects {
            buckets
                .get("src")
                .mem
                .insert(format!("small/{i:05}"), data(4096, i as u64));
        }
        let (_server, provider) = serve(&buckets).await?;
        let engine = transfer(
            &provider,
            TransferConfig {
                max_concurrent_requests: cap,
                max_concurrent_objects: 64,
                ..quick_retries()
            },
        );
        let jobs = engine
            .list_jobs(
                &ObjectUrl::new("src", "small/"),
                &ObjectUrl::new("dst", "copy/"),
            )
            .await?;
        buckets.reset_counts();
        let started = Instant::now();
        let summary = engine
            .run(futures::stream::iter(jobs.into_iter().map(Ok)), |_| {})
            .await;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(summary.copied == args.objects as u64, "{summary:?}");
        let peak = buckets.max_in_flight();
        ensure!(
            peak <= cap as u64,
            "{peak} requests in flight with a cap of {cap}"
        );
        println!(
            "| {cap} | {seconds:.2} | {:.0} | {peak} |",
            args.objects as f64 / seconds
        );
    }
    println!();
    Ok(())
}

async fn resume() -> anyhow::Result<()> {
    println!("## 2. A 64 MiB copy in 5 MiB parts, killed after 5 parts, then run again");
    println!();
    let buckets = InstrumentedBuckets::new()
        .with_bucket("src", Capabilities::default(), Duration::from_millis(50))
        .with_bucket("dst", Capabilities::default(), Duration::from_millis(50));
    let body = data(64 * MIB, 7);
    buckets.get("src").mem.insert("video.bin", body.clone());
    let (_server, provider) = serve(&buckets).await?;
    let journals = tempfile::tempdir()?;
    let config = TransferConfig {
        max_concurrent_requests: 2,
        multipart_threshold: 5 * MIB as u64,
        copy_part_size: 5 * MIB as u64,
        journal_dir: Some(journals.path().to_owned()),
        ..quick_retries()
    };
    let job = Job {
        source: ObjectUrl::new("src", "video.bin"),
        dest: ObjectUrl::new("dst", "video.bin"),
    };
    let parts_done = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&parts_done);
    let first = transfer(&provider, config.clone()).on_event(move |e| {
        if let Event::Copied(_) = e {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    let running = tokio::spawn({
        let job = job.clone();
        async move { first.copy(&job).await }
    });
    while parts_done.load(Ordering::SeqCst) < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.abort();
    let _ = running.await;
    let counts = &buckets.get("dst").counts;
    let (first_parts, first_creates) = (
        counts.count(Op::UploadPartCopy),
        counts.count(Op::CreateMultipart),
    );
    buckets.reset_counts();
    let report = transfer(&provider, config).copy(&job).await;
    ensure!(report.result == Outcome::Copied, "{report:?}");
    ensure!(
        buckets.get("dst").mem.get_bytes("video.bin").as_deref() == Some(&body[..]),
        "content differs"
    );
    println!("| run | CreateMultipartUpload | UploadPartCopy | parts found done in the journal |");
    println!("|---|---|---|---|");
    println!("| killed | {first_creates} | {first_parts} | – |");
    println!(
        "| resumed | {} | {} | {} of {} |",
        counts.count(Op::CreateMultipart),
        counts.count(Op::UploadPartCopy),
        report.resumed_parts,
        report.parts
    );
    ensure!(
        counts.count(Op::UploadPartCopy) == u64::from(report.parts - report.resumed_parts),
        "the resume copied parts it had"
    );
    println!();
    Ok(())
}

async fn faults() -> anyhow::Result<()> {
    println!("## 3. 20 objects of 12 MiB (3 parts each) per fault, max 5 attempts per request");
    println!();
    println!("| fault injected | copied | failed (which) | partial objects at the destination | uploads left open | requests at the destination |");
    println!("|---|---|---|---|---|---|");
    for fault in [
        "a part fails for good",
        "SlowDown storm (40 answers)",
        "20 requests stall for an hour (timeout 1 s)",
    ] {
        let buckets = InstrumentedBuckets::new()
            .with_bucket("src", Capabilities::default(), Duration::ZERO)
            .with_bucket("dst", Capabilities::default(), Duration::ZERO);
        let mut bodies = Vec::new();
        for i in 0..20 {
            let body = data(12 * MIB, i);
            buckets
                .get("src")
                .mem
                .insert(format!("v/{i:02}.mp4"), body.clone());
            bodies.push(body);
        }
        let mut config = TransferConfig {
            multipart_threshold: 5 * MIB as u64,
            copy_part_size: 5 * MIB as u64,
            ..quick_retries()
        };
        let dest = "dst";
        match fault {
            "a part fails for good" => buckets.get("dst").faults.fail_matching(
                |op, key| op == Op::UploadPartCopy && key == "v/07.mp4",
                StoreError::new(StoreErrorKind::AccessDenied, "injected: access denied"),
            ),
            "SlowDown storm (40 answers)" => buckets.get("dst").faults.throttle_next(40),
            _ => {
                buckets
                    .get("dst")
                    .faults
                    .stall_next(20, Duration::from_secs(3600));
                config.request_timeout = Duration::from_secs(1);
            }
        }
        let (_server, provider) = serve(&buckets).await?;
        let engine = transfer(&provider, config);
        let jobs: Vec<_> = (0..20)
            .map(|i| {
                Ok(Job {
                    source: ObjectUrl::new("src", format!("v/{i:02}.mp4")),
                    dest: ObjectUrl::new(dest, format!("v/{i:02}.mp4")),
                })
            })
            .collect();
        let mut failed = Vec::new();
        let summary = engine
            .run(futures::stream::iter(jobs), |report| {
                if report.result == Outcome::Failed {
                    failed.push(report.destination.key.clone());
                }
            })
            .await;
        failed.sort();
        let target = &buckets.get(dest).mem;
        let partial = (0..20)
            .filter(|&i| {
                target
                    .get_bytes(&format!("v/{i:02}.mp4"))
                    .is_some_and(|got| got[..] != bodies[i][..])
            })
            .count();
        println!(
            "| {fault} | {} | {} {} | {partial} | {} | {} |",
            summary.copied,
            summary.failed,
            if failed.is_empty() {
                String::new()
            } else {
                format!("({})", failed.join(", "))
            },
            target.open_uploads(),
            buckets.get(dest).counts.total()
        );
        ensure!(partial == 0, "a partial object at the destination");
    }
    println!();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    caps(&args).await.context("scenario 1")?;
    resume().await.context("scenario 2")?;
    faults().await.context("scenario 3")?;
    Ok(())
}
