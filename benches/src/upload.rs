//! The test object: random, incompressible bytes uploaded with raw aws-sdk-s3 multipart.
//!
//! Part `i` is generated from a seed and the part number, so any byte range can be
//! generated again to check what a reader returned, without keeping the object in memory.

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use rand::{RngCore, SeedableRng};

/// Size of one uploaded part, in bytes (S3 needs at least 5 MiB for all but the last).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploaded at once.
const UPLOAD_PARALLELISM: usize = 4;

/// Where the object lives and how its bytes were made.
#[derive(Clone, Debug)]
pub struct TestObject {
    /// Bucket holding it.
    pub bucket: String,
    /// Its key (at the top of the bucket, so that it is also a file at the mount's root).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Seed of the generator of its contents.
    seed: u64,
}

impl TestObject {
    /// A new object name of `size` bytes with a fresh seed. Nothing is uploaded yet.
    pub fn new(bucket: &str, size: u64) -> Self {
        let seed = rand::random::<u64>();
        Self {
            bucket: bucket.to_owned(),
            key: format!("s3vfs-bench-{seed:016x}.bin"),
            size,
            seed,
        }
    }

    fn parts(&self) -> u64 {
        self.size.div_ceil(PART_SIZE)
    }

    /// The bytes of part `index` (0-based).
    fn part(&self, index: u64) -> Bytes {
        let start = index * PART_SIZE;
        let len = (self.size - start).min(PART_SIZE) as usize;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37));
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        Bytes::from(data)
    }

    /// The bytes `[offset, offset + len)` of the object, generated again.
    pub fn expected(&self, offset: u64, len: u64) -> Bytes {
        let end = (offset + len).min(self.size);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / PART_SIZE;
            let part = self.part(index);
            let from = (at - index * PART_SIZE) as usize;
            let to = ((end - index * PART_SIZE) as usize).min(part.len());
            out.extend_from_slice(&part[from..to]);
            at = index * PART_SIZE + to as u64;
        }
        Bytes::from(out)
    }

    /// Uploads the object with CreateMultipartUpload, parallel UploadParts and
    /// CompleteMultipartUpload, aborting the upload if any step fails, then checks its size
    /// with HeadObject.
    pub async fn upload(&self, client: &Client) -> Result<()> {
        let created = client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| anyhow!("CreateMultipartUpload: {}", DisplayErrorContext(e)))?;
        let upload_id = created
            .upload_id()
            .context("CreateMultipartUpload answered no upload id")?
            .to_owned();
        match self.upload_parts(client, &upload_id).await {
            Ok(()) => {}
            Err(err) => {
                let _ = client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(err);
            }
        }
        let head = client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| anyhow!("HeadObject after upload: {}", DisplayErrorContext(e)))?;
        let stored = head.content_length().unwrap_or(-1);
        if u64::try_from(stored).ok() != Some(self.size) {
            bail!(
                "uploaded {} bytes but the store reports {stored}",
                self.size
            );
        }
        Ok(())
    }

    async fn upload_parts(&self, client: &Client, upload_id: &str) -> Result<()> {
        let mut parts: Vec<CompletedPart> = futures::stream::iter(0..self.parts())
            .map(|index| {
                let (object, client, upload_id) =
                    (self.clone(), client.clone(), upload_id.to_owned());
                tokio::spawn(async move { object.upload_part(&client, &upload_id, index).await })
            })
            .buffer_unordered(UPLOAD_PARALLELISM)
            .map(|joined| joined.context("upload task failed")?)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| anyhow!("CompleteMultipartUpload: {}", DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn upload_part(
        &self,
        client: &Client,
        upload_id: &str,
        index: u64,
    ) -> Result<CompletedPart> {
        let object = self.clone();
        let data = tokio::task::spawn_blocking(move || object.part(index))
            .await
            .context("part generator failed")?;
        let number = i32::try_from(index + 1).context("too many parts")?;
        let out = client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| anyhow!("UploadPart {number}: {}", DisplayErrorContext(e)))?;
        let etag = out
            .e_tag()
            .with_context(|| format!("UploadPart {number} answered no ETag"))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .e_tag(etag)
            .build())
    }

    /// Deletes the object (best effort: used on the way out, also after errors).
    pub async fn delete(&self, client: &Client) -> Result<()> {
        client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| anyhow!("DeleteObject: {}", DisplayErrorContext(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_bytes_match_the_parts_across_a_boundary() {
        let object = TestObject::new("b", PART_SIZE + 100);
        let first = object.part(0);
        let second = object.part(1);
        assert_eq!(second.len(), 100);
        let across = object.expected(PART_SIZE - 10, 30);
        assert_eq!(&across[..10], &first[first.len() - 10..]);
        assert_eq!(&across[10..], &second[..20]);
        assert_eq!(object.expected(PART_SIZE + 90, 50).len(), 10);
        assert_ne!(first[..64], second[..64]);
    }
}
