//! The test object: random, incompressible bytes uploaded with raw aws-sdk-s3 multipart.
//!
//! Part `i` is generated from a seed and the part number, so any byte range can be
//! generated again to check what a reader returned, without keeping the object in memory.

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use bytes::Bytes;
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
    /// CompleteMultipartUpload (part bodies signed if `signed`), aborting the upload if any
    /// step fails, then checks its size with HeadObject.
    pub async fn upload(&self, client: &Client, signed: bool) -> Result<()> {
        let object = self.clone();
        crate::bucket::raw_multipart(
            client,
            &self.bucket,
            &self.key,
            self.parts(),
            UPLOAD_PARALLELISM,
            signed,
            move |index| {
                let object = object.clone();
                async move {
                    tokio::task::spawn_blocking(move || object.part(index))
                        .await
                        .context("part generator failed")
                }
            },
        )
        .await?;
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
