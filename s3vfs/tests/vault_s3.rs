//! The vault layout over the real S3 client (`S3Store`, aws-sdk-s3) against an S3 server
//! on 127.0.0.1: the independent one `S3VFS_COMPAT_ENDPOINT` names (`scripts/local-s3.sh
//! start moto DIR`, then `source DIR/env`; CI runs this test so against moto, which honours
//! If-Match and If-None-Match as a vault needs), else the testkit's loopback server.
//!
//! What the in-memory tests show, shown again where requests cross HTTP and a server of
//! its own decides conditions and times: files over many chunks, directories, renames,
//! hard and symbolic links, xattrs; two hosts writing one directory at once; nothing in
//! the bucket in the clear; a damaged chunk read as an error; gc deleting what an overwrite
//! left (with a one-second grace, as the writers are told) and fsck clean after it.

use bytes::Bytes;
use s3vfs::store::s3::{S3Store, S3StoreConfig};
use s3vfs::store::{list_all, Backend, GetRequest, ObjectKey, PutOptions};
use s3vfs::vault::{self, ChunkParams, FsckOptions, GcOptions, KdfParams, VaultConfig, VaultFs};
use s3vfs::S3Vfs;
use s3vfs_testkit::data::noise;
use s3vfs_testkit::model;
use s3vfs_testkit::server::S3Server;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PASS: &[u8] = b"an independent server's vault";
/// The grace gc and the writers agree on (a second: LastModified has second resolution).
const GRACE: Duration = Duration::from_secs(1);

/// The store, and the loopback server behind it when no independent one is named.
async fn store() -> (Arc<dyn Backend>, Option<S3Server>) {
    let endpoint = S3Server::compat_or_loopback("vault")
        .await
        .expect("an S3 endpoint");
    assert!(
        endpoint.url.starts_with("http://127.0.0.1:"),
        "{}",
        endpoint.url
    );
    let config = S3StoreConfig::new(endpoint.bucket)
        .endpoint_url(endpoint.url)
        .region("us-east-1")
        .force_path_style(true)
        .credentials(endpoint.credentials.to_static());
    let store = S3Store::new(config).await.expect("the S3 client");
    (Arc::new(store), endpoint.server)
}

fn config() -> VaultConfig {
    VaultConfig::default()
        .with_kdf(KdfParams::insecure_for_tests())
        .with_chunking(ChunkParams::with_avg(16 * 1024))
        .with_gc_grace_min(GRACE)
}

/// Every key under `prefix`, with its body.
async fn objects(store: &dyn Backend, prefix: &str) -> Vec<(String, Bytes)> {
    let mut found = Vec::new();
    for object in list_all(store, prefix).await.unwrap() {
        let request = GetRequest::whole(object.key.clone());
        let body = store.get(request).await.unwrap().collect().await.unwrap();
        found.push((object.key.as_str().to_owned(), body));
    }
    found
}

/// The vault at `prefix`, opened as another host would.
async fn open(store: &Arc<dyn Backend>, prefix: &str) -> S3Vfs<VaultFs> {
    let fs = VaultFs::open(Arc::clone(store), prefix, PASS, config())
        .await
        .unwrap();
    S3Vfs::over(Arc::new(fs))
}

/// `fsck` of the vault at `prefix`, every chunk read.
async fn fsck_reading_data(store: &Arc<dyn Backend>, prefix: &str) -> vault::FsckReport {
    let options = FsckOptions::default().with_read_data(true);
    vault::fsck(Arc::clone(store), prefix, PASS, options)
        .await
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_works_over_the_s3_client_against_a_server() {
    let (store, _server) = store().await;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("vault-s3-{nanos}/");
    let fs = VaultFs::init(Arc::clone(&store), &prefix, PASS, config())
        .await
        .unwrap();
    let vfs = S3Vfs::over(Arc::new(fs));

    // Files over many chunks, directories, links, xattrs, a directory rename.
    let big = noise(700_000, 1);
    let secret = b"SECRET-MARKER of a file kept in a vault".repeat(20);
    vfs.create_dir_all("docs/private-name").await.unwrap();
    vfs.write("docs/private-name/big.bin", big.clone())
        .await
        .unwrap();
    vfs.write("docs/private-name/letter.txt", secret.clone())
        .await
        .unwrap();
    vfs.hard_link("docs/private-name/letter.txt", "docs/letter-link")
        .await
        .unwrap();
    vfs.symlink("private-name/letter.txt", "docs/sym")
        .await
        .unwrap();
    vfs.set_xattr("docs/letter-link", "user.tag", &b"xattr-value"[..])
        .await
        .unwrap();
    vfs.rename("docs/private-name", "docs/renamed")
        .await
        .unwrap();
    assert_eq!(vfs.read("docs/renamed/big.bin").await.unwrap(), big);
    assert_eq!(vfs.read("docs/letter-link").await.unwrap(), secret);
    assert_eq!(
        vfs.read_link("docs/sym").await.unwrap(),
        "private-name/letter.txt"
    );
    assert_eq!(
        vfs.get_xattr("docs/renamed/letter.txt", "user.tag")
            .await
            .unwrap(),
        &b"xattr-value"[..]
    );

    // Two hosts create files in one directory at once: every one lands (If-Match).
    let other = open(&store, &prefix).await;
    let writes = (0..8).map(|i| {
        let host = if i % 2 == 0 { &vfs } else { &other };
        async move {
            host.write(format!("docs/from-{i}"), vec![i as u8; 100])
                .await
        }
    });
    for done in futures::future::join_all(writes).await {
        done.unwrap();
    }
    let reopened = open(&store, &prefix).await;
    let names = model::names(&reopened, "docs").await.unwrap();
    let mut expected: Vec<String> = (0..8).map(|i| format!("from-{i}")).collect();
    expected.extend(["letter-link", "renamed", "sym"].map(String::from));
    expected.sort();
    assert_eq!(names, expected);

    // Nothing in the bucket in the clear.
    for (key, body) in objects(&*store, &prefix).await {
        for name in ["docs", "private-name", "renamed", "letter", "big.bin"] {
            assert!(!key.contains(name), "{key} shows a name");
            assert!(!contains(&body, name.as_bytes()), "{key} holds a name");
        }
        assert!(!contains(&body, b"SECRET-MARKER"), "{key} holds plaintext");
        assert!(!contains(&body, &big[1000..1064]), "{key} holds file data");
        assert!(!contains(&body, b"xattr-value"), "{key} holds an xattr");
    }

    // Overwritten content is garbage: gc deletes it once older than the grace.
    vfs.write("docs/renamed/big.bin", noise(700_000, 2))
        .await
        .unwrap();
    let chunks_before = objects(&*store, &format!("{prefix}c/")).await.len();
    tokio::time::sleep(GRACE * 3).await;
    let options = GcOptions::default().with_grace_min(GRACE).with_grace(GRACE);
    let report = vault::gc(Arc::clone(&store), &prefix, PASS, options)
        .await
        .unwrap();
    assert!(report.chunks_deleted > 0, "{report}");
    let chunks_after = objects(&*store, &format!("{prefix}c/")).await.len();
    assert_eq!(
        chunks_after as u64,
        chunks_before as u64 - report.chunks_deleted,
        "{report}"
    );
    let checked = fsck_reading_data(&store, &prefix).await;
    assert!(checked.is_clean(), "{checked}");
    let fresh = open(&store, &prefix).await;
    assert_eq!(
        fresh.read("docs/renamed/big.bin").await.unwrap(),
        noise(700_000, 2)
    );
    assert_eq!(fresh.read("docs/letter-link").await.unwrap(), secret);

    // A damaged chunk is an error, never data.
    let (key, mut body) = objects(&*store, &format!("{prefix}c/"))
        .await
        .into_iter()
        .next()
        .unwrap();
    let last = body.len() - 1;
    let mut damaged = body.to_vec();
    damaged[last] ^= 1;
    body = Bytes::from(damaged);
    store
        .put(&ObjectKey::new(key.clone()), body, PutOptions::default())
        .await
        .unwrap();
    let report = fsck_reading_data(&store, &prefix).await;
    assert!(!report.is_clean() && report.chunks_bad == 1, "{report}");

    for (key, _) in objects(&*store, &prefix).await {
        store.delete(&ObjectKey::new(key)).await.unwrap();
    }
}
