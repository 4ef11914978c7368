//! A self-contained tour of the library against a local S3 endpoint on 127.0.0.1 that the
//! example starts itself (the testkit's in-memory S3, served over real HTTP): list a
//! directory, stat a file, stream it with `AsyncRead`, seek, and read a range.
//!
//! ```text
//! cargo run -p s3vfs --example local_endpoint
//! ```

use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::server::S3Server;
use s3vfs_testkit::MemStore;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bucket = MemStore::new();
    bucket.insert("logs/2026-11-21.txt", "first line\nsecond line\n");
    bucket.insert("logs/2026-11-22.txt", "today\n");
    let server = S3Server::serve_store("demo", Arc::new(bucket)).await?;
    println!("local S3 endpoint: {}", server.endpoint_url());

    let store = server.connect("demo").await?;
    let vfs = S3Vfs::new(Arc::new(store), FsConfig::default());

    let mut dir = vfs.read_dir("logs").await?;
    while let Some(entry) = dir.next_entry().await? {
        println!("logs/{}", entry.name);
    }
    let meta = vfs.metadata("logs/2026-11-21.txt").await?;
    println!("size {} bytes, modified {:?}", meta.len(), meta.modified());

    let mut file = vfs.open("logs/2026-11-21.txt").await?;
    file.seek(std::io::SeekFrom::Start(11)).await?;
    let mut rest = String::new();
    file.read_to_string(&mut rest).await?;
    print!("from byte 11: {rest}");
    println!("bytes 0..5: {:?}", file.read_at(0, 5).await?);
    Ok(())
}
