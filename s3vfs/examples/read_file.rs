//! Read one file from a bucket through the s3vfs library — no FUSE needed.
//!
//! ```text
//! cargo run -p s3vfs --example read_file -- BUCKET PATH [ENDPOINT_URL]
//! ```
//! Credentials and region come from the usual AWS sources (environment, profile, SSO…).
//! With ENDPOINT_URL (MinIO, LocalStack, `s3vfs serve`) path-style addressing is used.

use s3vfs::store::s3::{S3Store, S3StoreConfig};
use s3vfs::{FsConfig, S3Vfs};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(bucket), Some(path)) = (args.next(), args.next()) else {
        return Err("usage: read_file BUCKET PATH [ENDPOINT_URL]".into());
    };
    let mut config = S3StoreConfig::new(bucket);
    if let Some(endpoint) = args.next() {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    let vfs = S3Vfs::new(Arc::new(S3Store::new(config).await?), FsConfig::default());
    let mut file = vfs.open(&path).await?;
    let mut text = String::new();
    file.read_to_string(&mut text).await?;
    print!("{text}");
    Ok(())
}
