//! `ObjectStoreBackend` over `object_store`'s own S3 client (`AmazonS3Builder`: endpoint,
//! static keys, plain HTTP, path-style requests) against an S3 server on 127.0.0.1: the
//! independent one `S3VFS_COMPAT_ENDPOINT` names (`scripts/local-s3.sh start moto DIR`,
//! then `source DIR/env`; CI runs this test so against moto), else the testkit's loopback
//! server. The file system runs over it as a library user would set it up.

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use s3vfs::store::object_store::ObjectStoreBackend;
use s3vfs::store::{
    Backend, GetRequest, ListRequest, ObjectKey, PutOptions, StoreErrorKind, WriteCondition,
};
use s3vfs::{FsConfig, S3Vfs};
use s3vfs_testkit::model::names;
use s3vfs_testkit::server::{S3Server, ServerCredentials};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const MIB: usize = 1024 * 1024;

/// The server: endpoint, bucket, key pair; the loopback server is kept running by the
/// returned handle.
async fn server() -> (String, String, ServerCredentials, Option<S3Server>) {
    let endpoint = S3Server::compat_or_loopback("ostore")
        .await
        .expect("an S3 endpoint");
    (
        endpoint.url,
        endpoint.bucket,
        endpoint.credentials,
        endpoint.server,
    )
}

#[tokio::test]
async fn the_file_system_runs_over_object_store_s_s3_client() {
    let (endpoint, bucket, credentials, _server) = server().await;
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id(&credentials.access_key_id)
        .with_secret_access_key(&credentials.secret_access_key)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("the S3 client builds");
    let store: Arc<dyn Backend> =
        Arc::new(ObjectStoreBackend::new(Arc::new(s3)).with_name(bucket.as_str()));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let prefix = format!("object-store-{}-{nanos}/", std::process::id());
    let mut config = FsConfig::default()
        .with_prefix(&prefix)
        .with_write_part_size(5 * MIB as u64);
    let notices = config.fit_to_store(&store).await;
    assert!(!config.directory_markers, "{notices:?}");
    let vfs = S3Vfs::new(Arc::clone(&store), config.clone());

    // Small and multipart (two parts of S3's 5 MiB minimum) files, read back whole and
    // in part.
    vfs.create_dir_all("docs/old").await.unwrap();
    vfs.write("docs/a.txt", "hello").await.unwrap();
    let big: Bytes = (0..6 * MIB).map(|i| (i % 251) as u8).collect();
    vfs.write("docs/big.bin", big.clone()).await.unwrap();
    assert_eq!(vfs.read("docs/a.txt").await.unwrap(), "hello");
    assert_eq!(vfs.read("docs/big.bin").await.unwrap(), big);
    let file = vfs.open("docs/big.bin").await.unwrap();
    let middle = file.read_at(5 * MIB as u64 - 3, 6).await.unwrap();
    assert_eq!(middle, big.slice(5 * MIB - 3..5 * MIB + 3));
    file.close().await.unwrap();

    // Rename, chmod (a metadata rewrite through the client), listing; a new file system
    // with empty caches sees all of it in the bucket.
    vfs.rename("docs/a.txt", "docs/old/a.txt").await.unwrap();
    vfs.set_permissions("docs/big.bin", 0o600).await.unwrap();
    let fresh = S3Vfs::new(Arc::clone(&store), config.clone());
    // Before a listing, whose entries carry no modes, fills the metadata cache.
    let meta = fresh.metadata("docs/big.bin").await.unwrap();
    assert_eq!((meta.len(), meta.attr().perm), (big.len() as u64, 0o600));
    assert_eq!(names(&fresh, "docs").await.unwrap(), ["big.bin", "old"]);
    assert_eq!(fresh.read("docs/old/a.txt").await.unwrap(), "hello");
    assert_eq!(fresh.read("docs/big.bin").await.unwrap(), big);

    // The backend itself: conditions with the server's quoted ETags, a missing key.
    let key = ObjectKey::new(format!("{prefix}cond"));
    let put = |condition| PutOptions {
        condition,
        ..PutOptions::default()
    };
    let first = store
        .put(
            &key,
            Bytes::from_static(b"1"),
            put(WriteCondition::IfNoneMatch),
        )
        .await
        .unwrap()
        .etag
        .expect("S3 sends an ETag");
    let taken = store
        .put(
            &key,
            Bytes::from_static(b"x"),
            put(WriteCondition::IfNoneMatch),
        )
        .await
        .unwrap_err();
    assert_eq!(taken.kind, StoreErrorKind::PreconditionFailed, "{taken}");
    store
        .put(
            &key,
            Bytes::from_static(b"2"),
            put(WriteCondition::IfMatch(first.clone())),
        )
        .await
        .unwrap();
    let stale = store
        .put(
            &key,
            Bytes::from_static(b"x"),
            put(WriteCondition::IfMatch(first)),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.kind, StoreErrorKind::PreconditionFailed, "{stale}");
    let body = store.get(GetRequest::whole(key.clone())).await.unwrap();
    assert_eq!(body.collect().await.unwrap(), "2");
    let missing = ObjectKey::new(format!("{prefix}missing"));
    assert_eq!(
        store.head(&missing).await.unwrap_err().kind,
        StoreErrorKind::NotFound
    );

    // Cleaned up: nothing of this run stays in the bucket.
    vfs.remove_dir_all("docs").await.unwrap();
    store.delete(&key).await.unwrap();
    let left = store
        .list(ListRequest {
            prefix: prefix.clone(),
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert!(left.objects.is_empty(), "{:?}", left.objects);
}
