//! The bucket as the harness sees it, beside the paths being measured: seeding objects,
//! counting keys, waiting until writes made through a mount are visible in the store, and
//! clearing up. With the built-in server, seeding goes straight into its [`MemStore`]
//! (no HTTP, no measurement disturbed); with an external endpoint it uses raw aws-sdk-s3.
//!
//! [`multipart_put`] is also the reference of the write row: raw aws-sdk-s3 multipart.

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use s3vfs_testkit::MemStore;
use std::time::{Duration, Instant};

/// Objects put at once when seeding through HTTP.
const SEED_CONCURRENCY: usize = 16;
/// Objects of at least this size are seeded with multipart (external endpoints only).
const SEED_MULTIPART_FROM: usize = 16 * 1024 * 1024;
/// Keys per DeleteObjects request (S3's limit).
const DELETE_BATCH: usize = 1000;
/// Pause between two polls of the store while waiting for writes to show up.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Size of one part of the reference multipart upload, in bytes.
pub const WRITE_PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of the reference multipart upload in flight.
pub const WRITE_INFLIGHT: usize = 8;

/// The benchmark bucket.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// Raw client (its own connection pool).
    pub client: Client,
    /// Bucket name.
    pub name: String,
    /// The local server's store, for seeding without HTTP.
    pub mem: Option<MemStore>,
    /// Whether s3vfs signs upload bodies on this endpoint (`PayloadSigning::Auto`); the raw
    /// reference uploads sign theirs the same way, so both do the same work per byte.
    pub sign_payloads: bool,
}

impl Bucket {
    /// Stores `objects` (key, body), directly in the local store or with PUTs.
    pub async fn seed(&self, objects: Vec<(String, Bytes)>) -> Result<()> {
        if let Some(mem) = &self.mem {
            let mem = mem.clone();
            // MemStore computes each body's MD5: off the async workers.
            return tokio::task::spawn_blocking(move || {
                for (key, body) in objects {
                    mem.insert(key, body);
                }
            })
            .await
            .context("seeding task failed");
        }
        futures::stream::iter(objects)
            .map(|(key, body)| {
                let bucket = self.clone();
                tokio::spawn(async move {
                    if body.len() >= SEED_MULTIPART_FROM {
                        let signed = bucket.sign_payloads;
                        multipart_put(&bucket.client, &bucket.name, &key, body, signed).await
                    } else {
                        bucket.put(&key, body).await
                    }
                })
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .map(|joined| joined.context("seeding task failed")?)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| anyhow!("PutObject {key}: {}", DisplayErrorContext(e)))?;
        Ok(())
    }

    /// Every key starting with `prefix`, in order (ListObjectsV2, all pages).
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| anyhow!("ListObjectsV2 {prefix}: {}", DisplayErrorContext(e)))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    /// Waits until exactly `count` keys start with `prefix`, for at most `timeout`.
    pub async fn wait_for_keys(&self, prefix: &str, count: usize, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let seen = self.keys(prefix).await?.len();
            if seen == count {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{seen} keys under {prefix} in the store after {:.0} s, expected {count}",
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Size of `key` (HeadObject), `None` if missing.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head.content_length().and_then(|n| u64::try_from(n).ok())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(anyhow!("HeadObject {key}: {}", DisplayErrorContext(e))),
        }
    }

    /// Waits until `key` exists with `size` bytes, for at most `timeout`.
    pub async fn wait_for_object(&self, key: &str, size: u64, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let seen = self.size(key).await?;
            if seen == Some(size) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{key} is {seen:?} bytes in the store after {:.0} s, expected {size}",
                    timeout.as_secs_f64()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The bytes `[offset, offset + len)` of `key`.
    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .range(format!("bytes={offset}-{}", offset + len - 1))
            .send()
            .await
            .map_err(|e| anyhow!("GetObject {key}: {}", DisplayErrorContext(e)))?;
        Ok(out
            .body
            .collect()
            .await
            .context("GetObject body failed")?
            .into_bytes())
    }

    /// Checks that `key` holds `expected`: its size, and its bytes at the start, the
    /// middle and the end.
    pub async fn verify(&self, key: &str, expected: &Bytes) -> Result<()> {
        const LEN: u64 = 64 * 1024;
        let size = expected.len() as u64;
        match self.size(key).await? {
            Some(n) if n == size => {}
            other => bail!("{key}: the store holds {other:?} bytes, wrote {size}"),
        }
        for offset in [0, size / 2, size.saturating_sub(LEN)] {
            let len = LEN.min(size - offset);
            if len == 0 {
                continue;
            }
            let got = self.get_range(key, offset, len).await?;
            if got != expected.slice(offset as usize..(offset + len) as usize) {
                bail!("{key}: wrong bytes in the store at offset {offset}");
            }
        }
        Ok(())
    }

    /// Deletes every key starting with `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let keys = self.keys(prefix).await?;
        if let Some(mem) = &self.mem {
            for key in &keys {
                mem.remove(key);
            }
            return Ok(keys.len());
        }
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .context("DeleteObjects request")?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .context("DeleteObjects request")?;
            self.client
                .delete_objects()
                .bucket(&self.name)
                .delete(delete)
                .send()
                .await
                .map_err(|e| anyhow!("DeleteObjects {prefix}: {}", DisplayErrorContext(e)))?;
        }
        Ok(keys.len())
    }
}

/// Uploads `data` as `key` with raw aws-sdk-s3: CreateMultipartUpload, UploadParts of
/// [`WRITE_PART_SIZE`] with [`WRITE_INFLIGHT`] in flight (the parts are slices of `data`,
/// not copies), CompleteMultipartUpload, the part bodies covered by the signature if
/// `signed`. Aborts on failure.
pub async fn multipart_put(
    client: &Client,
    bucket: &str,
    key: &str,
    data: Bytes,
    signed: bool,
) -> Result<()> {
    let size = data.len();
    let parts = size.max(1).div_ceil(WRITE_PART_SIZE) as u64;
    raw_multipart(
        client,
        bucket,
        key,
        parts,
        WRITE_INFLIGHT,
        signed,
        move |index| {
            let start = index as usize * WRITE_PART_SIZE;
            let body = data.slice(start..(start + WRITE_PART_SIZE).min(size));
            async move { Ok(body) }
        },
    )
    .await
}

/// The one raw aws-sdk-s3 multipart upload of the harness: CreateMultipartUpload, part
/// `i` (0-based, `parts` of them) made by `part(i)` and uploaded with `inflight` in flight,
/// each in its own task (its body signed if `signed`), then CompleteMultipartUpload; the
/// upload is aborted on failure.
pub async fn raw_multipart<F, Fut>(
    client: &Client,
    bucket: &str,
    key: &str,
    parts: u64,
    inflight: usize,
    signed: bool,
    part: F,
) -> Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Bytes>> + Send + 'static,
{
    // Some servers (moto 5.2, `rclone serve s3`) answer with an XML root the SDK rejects;
    // the upload exists either way, and s3vfs's store takes its id the same way.
    let upload_id = match client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(created) => created
            .upload_id()
            .context("CreateMultipartUpload answered no upload id")?
            .to_owned(),
        Err(err) => s3vfs::store::s3::upload_id_despite(&err)
            .ok_or_else(|| anyhow!("CreateMultipartUpload {key}: {}", DisplayErrorContext(err)))?,
    };
    let plan = PartPlan {
        count: parts,
        inflight,
        signed,
    };
    let uploaded = upload_parts(client, bucket, key, &upload_id, plan, part).await;
    let parts = match uploaded {
        Ok(parts) => parts,
        Err(err) => {
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            return Err(err);
        }
    };
    let completed = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await;
    match completed {
        Ok(_) => Ok(()),
        // moto 5.2 answers with the root `CompleteMultipartUploadResponse`: a 2xx is a
        // completed upload, and every caller checks the object's bytes afterwards.
        Err(err) if s3vfs::store::s3::is_unparsable_success(&err) => Ok(()),
        Err(err) => Err(anyhow!(
            "CompleteMultipartUpload {key}: {}",
            DisplayErrorContext(err)
        )),
    }
}

/// How the parts of a raw multipart upload are sent.
#[derive(Clone, Copy, Debug)]
struct PartPlan {
    /// Number of parts.
    count: u64,
    /// Parts in flight at once.
    inflight: usize,
    /// Whether each body is covered by the signature.
    signed: bool,
}

async fn upload_parts<F, Fut>(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    plan: PartPlan,
    part: F,
) -> Result<Vec<CompletedPart>>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Bytes>> + Send + 'static,
{
    let mut done: Vec<CompletedPart> = futures::stream::iter(0..plan.count)
        .map(|index| {
            let (client, bucket, key, upload_id, part) = (
                client.clone(),
                bucket.to_owned(),
                key.to_owned(),
                upload_id.to_owned(),
                part.clone(),
            );
            tokio::spawn(async move {
                let body = part(index).await?;
                let number = i32::try_from(index + 1).context("too many parts")?;
                let request = client
                    .upload_part()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .content_length(body.len() as i64)
                    .body(ByteStream::from(body));
                let sent = if plan.signed {
                    request.send().await
                } else {
                    request.customize().disable_payload_signing().send().await
                };
                let out =
                    sent.map_err(|e| anyhow!("UploadPart {number}: {}", DisplayErrorContext(e)))?;
                let etag = out
                    .e_tag()
                    .with_context(|| format!("UploadPart {number} answered no ETag"))?;
                Ok::<_, anyhow::Error>(
                    CompletedPart::builder()
                        .part_number(number)
                        .e_tag(etag)
                        .build(),
                )
            })
        })
        .buffer_unordered(plan.inflight.max(1))
        .map(|joined| joined.context("UploadPart task failed")?)
        .try_collect()
        .await?;
    done.sort_by_key(|p| p.part_number());
    Ok(done)
}
