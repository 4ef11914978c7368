//! `S3Store` (aws-sdk-s3) against `MemStore` served over real HTTP by `S3Server`.
//!
//! Every trait method goes through the SDK, SigV4, the loopback socket, `s3s` and back, so
//! these tests check the client and the server's translation at once; fault injection sits
//! behind the server (`FaultStore`), where a real store's failures would come from.

use bytes::Bytes;
use futures::StreamExt;
use s3vfs::store::{
    Backend, BucketProvider, ByteRange, Capabilities, CompletedPart, CopyRequest, CopySource, ETag,
    GetRequest, ListRequest, MetadataDirective, ObjectKey, PayloadSigning, PutOptions, S3Store,
    S3StoreConfig, ServerSideEncryption, StaticCredentials, StoreError, StoreErrorKind, UploadId,
    WriteCondition,
};
use s3vfs::vfs::{Ino, Vfs};
use s3vfs::{FsConfig, S3Fs};
use s3vfs_testkit::fault::{call_every_op, CountingStore, FaultStore, ListFault, Op};
use s3vfs_testkit::server::{S3Server, ServerCredentials, UploadPayloads};
use s3vfs_testkit::{MemBuckets, MemStore};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKET: &str = "test-bucket";
const MIB: usize = 1024 * 1024;

/// A `MemStore` behind fault injection and counters, served over HTTP, and an `S3Store`
/// talking to it.
struct Fixture {
    mem: MemStore,
    faults: FaultStore,
    counts: CountingStore,
    store: S3Store,
    server: S3Server,
}

async fn fixture() -> Fixture {
    fixture_with(|config| config).await
}

async fn fixture_with(configure: impl FnOnce(S3StoreConfig) -> S3StoreConfig) -> Fixture {
    let mem = MemStore::new();
    let faults = FaultStore::new(Arc::new(mem.clone()));
    let counts = CountingStore::new(Arc::new(faults.clone()));
    let server = S3Server::serve_store(BUCKET, Arc::new(counts.clone()))
        .await
        .expect("server starts");
    let store = S3Store::new(configure(server.store_config(BUCKET)))
        .await
        .expect("client builds");
    Fixture {
        mem,
        faults,
        counts,
        store,
        server,
    }
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::new(s)
}

/// Deterministic, non-repeating test data.
fn data(len: usize) -> Bytes {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn get_range(
    store: &S3Store,
    k: &str,
    range: Option<ByteRange>,
) -> Result<Bytes, StoreError> {
    store
        .get(GetRequest {
            key: key(k),
            range,
            if_match: None,
        })
        .await?
        .collect()
        .await
}

fn transient(msg: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Transient, msg).with_code("InternalError")
}

#[tokio::test]
async fn head_returns_metadata() {
    let f = fixture().await;
    let options = PutOptions {
        user_metadata: BTreeMap::from([
            ("mode".to_owned(), "0644".to_owned()),
            ("uid".to_owned(), "1000".to_owned()),
        ]),
        content_type: Some("text/plain".to_owned()),
        storage_class: Some("STANDARD_IA".to_owned()),
        ..PutOptions::default()
    };
    let etag = f.mem.insert_with("dir/a.txt", "hello", options);

    let meta = f.store.head(&key("dir/a.txt")).await.unwrap();
    assert_eq!(meta.key, key("dir/a.txt"));
    assert_eq!(meta.size, 5);
    assert_eq!(meta.etag, Some(etag));
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(meta.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(
        meta.user_metadata.get("mode").map(String::as_str),
        Some("0644")
    );
    assert_eq!(
        meta.user_metadata.get("uid").map(String::as_str),
        Some("1000")
    );
    assert!(!meta.restored);
    let expected = f.mem.meta("dir/a.txt").unwrap().last_modified;
    let diff = expected
        .duration_since(meta.last_modified)
        .unwrap_or_else(|e| e.duration());
    assert!(
        diff < Duration::from_secs(1),
        "Last-Modified off by {diff:?}"
    );

    let err = f.store.head(&key("missing")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(err.key.as_deref(), Some("missing"));
}

#[tokio::test]
async fn get_whole_and_ranged() {
    let f = fixture().await;
    let body = data(300_000);
    f.mem.insert("obj", body.clone());
    f.mem.insert("empty", Bytes::new());

    let whole = f.store.get(GetRequest::whole(key("obj"))).await.unwrap();
    assert_eq!(whole.range, ByteRange::new(0, 300_000));
    assert_eq!(whole.meta.size, 300_000);
    assert_eq!(whole.collect().await.unwrap(), body);

    let part = f
        .store
        .get(GetRequest {
            key: key("obj"),
            range: Some(ByteRange::new(1000, 2000)),
            if_match: None,
        })
        .await
        .unwrap();
    assert_eq!(part.range, ByteRange::new(1000, 2000));
    assert_eq!(part.meta.size, 300_000);
    assert_eq!(part.collect().await.unwrap(), body.slice(1000..2000));

    // A range reaching past the end is clamped.
    let tail = f
        .store
        .get(GetRequest {
            key: key("obj"),
            range: Some(ByteRange::new(299_990, 400_000)),
            if_match: None,
        })
        .await
        .unwrap();
    assert_eq!(tail.range, ByteRange::new(299_990, 300_000));
    assert_eq!(tail.collect().await.unwrap(), body.slice(299_990..));

    // An empty range inside the object reads nothing.
    let nothing = get_range(&f.store, "obj", Some(ByteRange::new(10, 10)))
        .await
        .unwrap();
    assert!(nothing.is_empty());

    // A range starting at or past the end is InvalidRange.
    for start in [300_000, 500_000] {
        let err = get_range(&f.store, "obj", Some(ByteRange::new(start, start + 10)))
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::InvalidRange, "start {start}");
        assert_eq!(err.code.as_deref(), Some("InvalidRange"));
    }

    // Empty objects read as empty, ranged or not.
    assert!(get_range(&f.store, "empty", None).await.unwrap().is_empty());
    let empty = f
        .store
        .get(GetRequest {
            key: key("empty"),
            range: Some(ByteRange::new(0, 100)),
            if_match: None,
        })
        .await
        .unwrap();
    assert_eq!(empty.range, ByteRange::new(0, 0));
    assert!(empty.collect().await.unwrap().is_empty());

    let err = get_range(&f.store, "missing", None).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(err.code.as_deref(), Some("NoSuchKey"));
}

#[tokio::test]
async fn get_if_match() {
    let f = fixture().await;
    let etag = f.mem.insert("obj", "version 1");
    let ok = f
        .store
        .get(GetRequest {
            key: key("obj"),
            range: None,
            if_match: Some(etag.clone()),
        })
        .await
        .unwrap();
    assert_eq!(ok.meta.etag, Some(etag));
    assert_eq!(ok.collect().await.unwrap(), "version 1");

    let err = f
        .store
        .get(GetRequest {
            key: key("obj"),
            range: Some(ByteRange::new(0, 3)),
            if_match: Some(ETag::new("0123456789abcdef0123456789abcdef")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    assert_eq!(err.key.as_deref(), Some("obj"));
}

#[tokio::test]
async fn list_pages_with_delimiter_and_markers() {
    let f = fixture().await;
    let keys = [
        "a", "b/", "b/1", "b/2", "c", "d/", "d/x/", "d/x/y", "e/f", "g", "h/", "z",
    ];
    for k in keys {
        f.mem.insert(k, format!("body of {k}"));
    }

    // Every page over HTTP is the page the store itself returns.
    for (prefix, delimiter, max_keys) in [
        ("", Some("/"), 2),
        ("", None, 3),
        ("d/", Some("/"), 1),
        ("b/", Some("/"), 1000),
        ("nothing", Some("/"), 5),
    ] {
        let mut token = None;
        let mut pages = 0;
        loop {
            let request = ListRequest {
                prefix: prefix.to_owned(),
                delimiter: delimiter.map(str::to_owned),
                continuation_token: token.clone(),
                max_keys: Some(max_keys),
                start_after: None,
            };
            let over_http = f.store.list(request.clone()).await.unwrap();
            let direct = f.mem.list(request).await.unwrap();
            let names = |p: &s3vfs::store::ListPage| {
                p.objects
                    .iter()
                    .map(|o| {
                        (
                            o.key.clone(),
                            o.size,
                            o.etag.clone(),
                            o.storage_class.clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(&over_http), names(&direct), "{prefix:?} page {pages}");
            assert_eq!(over_http.common_prefixes, direct.common_prefixes);
            assert_eq!(
                over_http.next_continuation_token,
                direct.next_continuation_token
            );
            pages += 1;
            token = over_http.next_continuation_token;
            if token.is_none() {
                break;
            }
            assert!(pages < 50, "listing does not end");
        }
    }

    // The whole root listing, collected page by page.
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    let mut token = None;
    loop {
        let page = f
            .store
            .list(ListRequest {
                delimiter: Some("/".to_owned()),
                continuation_token: token,
                max_keys: Some(2),
                ..ListRequest::default()
            })
            .await
            .unwrap();
        assert!(page.objects.len() + page.common_prefixes.len() <= 2);
        objects.extend(page.objects.into_iter().map(|o| o.key.into_string()));
        prefixes.extend(page.common_prefixes);
        token = page.next_continuation_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(objects, ["a", "c", "g", "z"]);
    assert_eq!(prefixes, ["b/", "d/", "e/", "h/"]);

    // The `dir/` marker itself is listed under its own prefix.
    let page = f
        .store
        .list(ListRequest {
            prefix: "d/".to_owned(),
            delimiter: Some("/".to_owned()),
            ..ListRequest::default()
        })
        .await
        .unwrap();
    let listed: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(listed, ["d/"]);
    assert_eq!(page.objects[0].size, "body of d/".len() as u64);
    assert_eq!(page.common_prefixes, ["d/x/"]);

    // start_after
    let page = f
        .store
        .list(ListRequest {
            start_after: Some("d/x/y".to_owned()),
            ..ListRequest::default()
        })
        .await
        .unwrap();
    let listed: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(listed, ["e/f", "g", "h/", "z"]);
}

#[tokio::test]
async fn malformed_list_pages_come_through_as_sent_and_fail_a_directory_rename() {
    let f = fixture().await;
    let keys = ["d/a", "d/b", "d/c"];
    for k in keys {
        f.mem.insert(k, "1");
    }
    let first = ListRequest {
        prefix: "d/".to_owned(),
        max_keys: Some(2),
        ..ListRequest::default()
    };
    // IsTruncated=true without NextContinuationToken is not read as the last page.
    f.faults
        .break_next_list_pages(1, ListFault::TruncatedWithoutToken);
    let page = f.store.list(first.clone()).await.unwrap();
    assert_eq!(page.objects.len(), 2);
    assert!(page.is_truncated, "IsTruncated kept");
    assert_eq!(page.next_continuation_token, None);
    // A repeated token comes back as it was sent.
    let page = f.store.list(first.clone()).await.unwrap();
    let token = page.next_continuation_token.clone().unwrap();
    f.faults.break_next_list_pages(1, ListFault::RepeatedToken);
    let again = f
        .store
        .list(ListRequest {
            continuation_token: Some(token.clone()),
            ..first
        })
        .await
        .unwrap();
    assert!(again.is_truncated);
    assert_eq!(again.next_continuation_token, Some(token));

    // The file system over the SDK refuses to act on part of the directory.
    let config = FsConfig::default().with_list_page_size(2);
    let fs = S3Fs::new(Arc::new(f.store.clone()), config);
    fs.lookup(Ino::ROOT, OsStr::new("d")).await.unwrap();
    f.faults
        .break_next_list_pages(100, ListFault::TruncatedWithoutToken);
    let err = fs
        .rename(
            Ino::ROOT,
            OsStr::new("d"),
            Ino::ROOT,
            OsStr::new("e"),
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(
        err.to_string().contains("\"d/\""),
        "names the prefix: {err}"
    );
    assert_eq!(f.mem.keys(), keys, "nothing copied or deleted");
}

/// Answers every request on `listener` with `body` (HTTP/1.1, keep-alive) and counts them.
async fn answer_every_request(
    listener: tokio::net::TcpListener,
    body: &'static str,
    count: Arc<AtomicU64>,
) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let count = Arc::clone(&count);
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                // Requests of this test have no body: the head ends each one.
                while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    request.drain(..end + 4);
                    count.fetch_add(1, Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
        });
    }
}

#[tokio::test]
async fn list_buckets_refuses_a_repeated_token() {
    // A store that answers every ListBuckets with the same continuation token.
    const PAGE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Owner><ID>owner</ID></Owner><Buckets><Bucket><Name>alpha</Name>\
        <CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>\
        <ContinuationToken>again</ContinuationToken></ListAllMyBucketsResult>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    tokio::spawn(answer_every_request(listener, PAGE, Arc::clone(&requests)));
    let config = S3StoreConfig::new("")
        .endpoint_url(format!("http://{addr}"))
        .region("us-east-1")
        .force_path_style(true)
        .credentials(ServerCredentials::test().to_static());
    let buckets = s3vfs::store::S3Buckets::new(config).await.unwrap();
    let listed = tokio::time::timeout(Duration::from_secs(10), buckets.list_buckets())
        .await
        .expect("the listing ends");
    let err = listed.unwrap_err();
    assert!(
        err.to_string().contains("repeats the continuation token"),
        "{err}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn keys_with_special_characters() {
    let f = fixture().await;
    let keys = [
        "with space.txt",
        "dir with space/file name",
        "unicodé/日本語/ファイル.txt",
        "plus+sign",
        "percent%20literal",
        "percent%",
        "question?mark",
        "hash#tag",
        "amp&equals=semi;colon",
        "tilde~quote'paren(1)",
        "double//slash",
        "trailing/",
        "emoji 🦀",
        "star*comma,at@dollar$",
    ];
    for (i, k) in keys.iter().enumerate() {
        let body = Bytes::from(format!("object {i}"));
        let put = f
            .store
            .put(&key(k), body.clone(), PutOptions::default())
            .await
            .unwrap_or_else(|e| panic!("put {k:?}: {e}"));
        assert_eq!(
            f.mem.get_bytes(k),
            Some(body.clone()),
            "{k:?} stored under its key"
        );
        let meta = f
            .store
            .head(&key(k))
            .await
            .unwrap_or_else(|e| panic!("head {k:?}: {e}"));
        assert_eq!(meta.etag, put.etag);
        assert_eq!(get_range(&f.store, k, None).await.unwrap(), body, "{k:?}");

        let copy = format!("copies/{k}");
        f.store
            .copy(CopyRequest {
                source: CopySource::new(key(k)),
                dest: key(&copy),
                metadata: MetadataDirective::Copy,
                condition: WriteCondition::None,
            })
            .await
            .unwrap_or_else(|e| panic!("copy {k:?}: {e}"));
        assert_eq!(f.mem.get_bytes(&copy), Some(body));
    }

    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = f
            .store
            .list(ListRequest {
                continuation_token: token,
                max_keys: Some(5),
                ..ListRequest::default()
            })
            .await
            .unwrap();
        listed.extend(page.objects.into_iter().map(|o| o.key.into_string()));
        token = page.next_continuation_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(listed, f.mem.keys());

    let page = f
        .store
        .list(ListRequest {
            prefix: "unicodé/".to_owned(),
            delimiter: Some("/".to_owned()),
            ..ListRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(page.common_prefixes, ["unicodé/日本語/"]);

    for k in keys {
        f.store.delete(&key(k)).await.unwrap();
    }
    let copies: Vec<ObjectKey> = keys.iter().map(|k| key(&format!("copies/{k}"))).collect();
    assert!(f.store.delete_many(copies).await.unwrap().is_empty());
    assert!(f.mem.is_empty(), "left: {:?}", f.mem.keys());
}

#[tokio::test]
async fn put_with_options_and_conditions() {
    let f = fixture().await;
    let options = PutOptions {
        user_metadata: BTreeMap::from([("mtime".to_owned(), "1700000000".to_owned())]),
        content_type: Some("application/x-test".to_owned()),
        storage_class: Some("STANDARD_IA".to_owned()),
        sse: Some(ServerSideEncryption::Kms {
            key_id: Some("test-key".to_owned()),
        }),
        tags: BTreeMap::from([
            ("project".to_owned(), "a b&c=d".to_owned()),
            ("kind".to_owned(), "vidéo".to_owned()),
        ]),
        condition: WriteCondition::IfNoneMatch,
    };
    let first = f
        .store
        .put(&key("k"), Bytes::from_static(b"one"), options.clone())
        .await
        .unwrap();
    let first_tag = first.etag.clone().expect("PUT returns an ETag");
    assert_eq!(Some(&first_tag), f.mem.meta("k").unwrap().etag.as_ref());
    let meta = f.store.head(&key("k")).await.unwrap();
    assert_eq!(meta.user_metadata, options.user_metadata);
    assert_eq!(meta.content_type, options.content_type);
    assert_eq!(meta.storage_class, options.storage_class);
    assert_eq!(f.store.get_tags(&key("k")).await.unwrap(), options.tags);

    // If-None-Match: * on an existing key.
    let err = f
        .store
        .put(&key("k"), Bytes::from_static(b"two"), options.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    assert_eq!(err.code.as_deref(), Some("PreconditionFailed"));
    assert_eq!(f.mem.get_bytes("k").unwrap(), "one");

    // If-Match with a stale and with the current ETag.
    let stale = PutOptions {
        condition: WriteCondition::IfMatch(ETag::new("00000000000000000000000000000000")),
        ..PutOptions::default()
    };
    let err = f
        .store
        .put(&key("k"), Bytes::from_static(b"two"), stale)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    let current = PutOptions {
        condition: WriteCondition::IfMatch(first_tag),
        ..PutOptions::default()
    };
    f.store
        .put(&key("k"), Bytes::from_static(b"two"), current)
        .await
        .unwrap();
    assert_eq!(f.mem.get_bytes("k").unwrap(), "two");

    // If-Match on a missing key fails too.
    let on_missing = PutOptions {
        condition: WriteCondition::IfMatch(ETag::new("00000000000000000000000000000000")),
        ..PutOptions::default()
    };
    let err = f
        .store
        .put(&key("nope"), Bytes::new(), on_missing)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind,
            StoreErrorKind::PreconditionFailed | StoreErrorKind::NotFound
        ),
        "{err}"
    );

    // Empty bodies are fine.
    f.store
        .put(&key("empty"), Bytes::new(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(f.store.head(&key("empty")).await.unwrap().size, 0);
}

#[tokio::test]
async fn multipart_upload() {
    let f = fixture().await;
    let k = key("big/object.bin");
    let part1 = data(5 * MIB);
    let part3 = data(1000);
    let source = data(6 * MIB);
    f.mem.insert("source", source.clone());

    let options = PutOptions {
        user_metadata: BTreeMap::from([("origin".to_owned(), "multipart".to_owned())]),
        content_type: Some("application/octet-stream".to_owned()),
        ..PutOptions::default()
    };
    let id = f.store.create_multipart(&k, options).await.unwrap();
    assert_eq!(f.mem.open_uploads(), 1);
    let p1 = f
        .store
        .upload_part(&k, &id, 1, part1.clone())
        .await
        .unwrap();
    assert_eq!(p1.part_number, 1);
    let p3 = f
        .store
        .upload_part(&k, &id, 3, part3.clone())
        .await
        .unwrap();
    // Part 2: a 5 MiB range of another object, copied server-side.
    let copied = ByteRange::new(100, 100 + 5 * MIB as u64);
    let p2 = f
        .store
        .upload_part_copy(&k, &id, 2, &key("source").into(), Some(copied))
        .await
        .unwrap();
    assert_eq!(p2.part_number, 2);
    // Not visible before completion.
    assert!(f.mem.get_bytes(k.as_str()).is_none());

    // Parts given out of order are sent in order.
    let result = f
        .store
        .complete_multipart(&k, &id, vec![p3, p1, p2], WriteCondition::IfNoneMatch)
        .await
        .unwrap();
    let etag = result.etag.expect("complete returns an ETag");
    assert!(etag.as_str().ends_with("-3\""), "multipart ETag {etag}");
    assert_eq!(f.mem.open_uploads(), 0);
    let mut expected = part1.to_vec();
    expected.extend_from_slice(&source[100..100 + 5 * MIB]);
    expected.extend_from_slice(&part3);
    assert_eq!(
        get_range(&f.store, k.as_str(), None).await.unwrap(),
        expected
    );
    let meta = f.store.head(&k).await.unwrap();
    assert_eq!(meta.etag, Some(etag.clone()));
    assert_eq!(
        meta.user_metadata.get("origin").map(String::as_str),
        Some("multipart")
    );

    // Completing over an existing key with If-None-Match fails; If-Match succeeds.
    let id = f
        .store
        .create_multipart(&k, PutOptions::default())
        .await
        .unwrap();
    let p1 = f.store.upload_part(&k, &id, 1, data(10)).await.unwrap();
    let err = f
        .store
        .complete_multipart(&k, &id, vec![p1.clone()], WriteCondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    f.store
        .complete_multipart(&k, &id, vec![p1], WriteCondition::IfMatch(etag))
        .await
        .unwrap();
    assert_eq!(f.mem.get_bytes(k.as_str()).unwrap(), data(10));

    // A small part that is not the last: EntityTooSmall at completion.
    let id = f
        .store
        .create_multipart(&key("small"), PutOptions::default())
        .await
        .unwrap();
    let a = f
        .store
        .upload_part(&key("small"), &id, 1, data(100))
        .await
        .unwrap();
    let b = f
        .store
        .upload_part(&key("small"), &id, 2, data(100))
        .await
        .unwrap();
    let err = f
        .store
        .complete_multipart(&key("small"), &id, vec![a, b], WriteCondition::None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::InvalidRequest, "{err}");
    assert_eq!(err.code.as_deref(), Some("EntityTooSmall"));

    // Abort.
    f.store.abort_multipart(&key("small"), &id).await.unwrap();
    assert_eq!(f.mem.open_uploads(), 0);
    let err = f
        .store
        .upload_part(&key("small"), &id, 3, data(10))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(err.code.as_deref(), Some("NoSuchUpload"));
}

/// Creates an upload of `k` with two parts (5 MiB and 1000 bytes): the id, the parts and
/// the object they make.
async fn two_parts(f: &Fixture, k: &ObjectKey) -> (UploadId, Vec<CompletedPart>, Bytes) {
    let (first, last) = (data(5 * MIB), data(1000));
    let id = f
        .store
        .create_multipart(k, PutOptions::default())
        .await
        .unwrap();
    let p1 = f.store.upload_part(k, &id, 1, first.clone()).await.unwrap();
    let p2 = f.store.upload_part(k, &id, 2, last.clone()).await.unwrap();
    (id, vec![p1, p2], [first, last].concat().into())
}

#[tokio::test]
async fn an_unparsable_complete_answer_is_checked_with_a_head() {
    let f = fixture().await;
    // moto 5.2.0's root element: the SDK rejects the answer, although the object is stored.
    f.server
        .quirks()
        .rename_root(Op::CompleteMultipart, "CompleteMultipartUploadResponse");
    let k = key("moto.bin");
    let (id, parts, body) = two_parts(&f, &k).await;
    let result = f
        .store
        .complete_multipart(&k, &id, parts, WriteCondition::IfNoneMatch)
        .await
        .expect("the key holds exactly this upload: success");
    assert_eq!(result.etag, f.mem.meta("moto.bin").unwrap().etag);
    assert_eq!(f.mem.get_bytes("moto.bin").unwrap(), body);
    assert_eq!(f.counts.count(Op::Head), 1, "one HEAD checked the outcome");

    // When the HEAD does not show this upload, the failure stands and says what it was.
    let (id, parts, _) = two_parts(&f, &key("other.bin")).await;
    f.faults
        .fail_next(Op::Head, 1, StoreError::not_found("other.bin"));
    let err = f
        .store
        .complete_multipart(&key("other.bin"), &id, parts, WriteCondition::None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Other, "{err}");
    assert!(
        err.message.starts_with(
            "unparsable response (HTTP 200, XML root <CompleteMultipartUploadResponse>)"
        ),
        "{err}"
    );
    assert!(
        err.message
            .contains("expected CompleteMultipartUploadResult"),
        "{err}"
    );
}

#[tokio::test]
async fn a_lost_complete_reply_is_checked_with_a_head() {
    let f = fixture().await;
    let k = key("lost.bin");
    let (id, parts, body) = two_parts(&f, &k).await;
    // The first attempt completes the upload and its reply is lost; the retry gets
    // NoSuchUpload.
    f.server.quirks().drop_replies(Op::CompleteMultipart, 1);
    let result = f
        .store
        .complete_multipart(&k, &id, parts, WriteCondition::IfNoneMatch)
        .await
        .expect("the key holds exactly this upload: success");
    assert_eq!(f.server.quirks().dropped(), 1);
    assert_eq!(f.counts.count(Op::CompleteMultipart), 2);
    assert_eq!(f.counts.count(Op::Head), 1);
    assert_eq!(result.etag, f.mem.meta("lost.bin").unwrap().etag);
    assert_eq!(f.mem.get_bytes("lost.bin").unwrap(), body);

    // A NoSuchUpload of a single attempt is no lost reply: no HEAD.
    let err = f
        .store
        .complete_multipart(&k, &id, vec![], WriteCondition::None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("NoSuchUpload"), "{err}");
    assert_eq!(f.counts.count(Op::Head), 1);
}

#[tokio::test]
async fn a_lost_conditional_put_reply_is_checked_with_a_head() {
    let f = fixture().await;
    let options = PutOptions {
        user_metadata: BTreeMap::from([("mode".to_owned(), "33188".to_owned())]),
        condition: WriteCondition::IfNoneMatch,
        ..PutOptions::default()
    };
    // The first attempt stores the object and its reply is lost; the retry gets 412.
    f.server.quirks().drop_replies(Op::Put, 1);
    let result = f
        .store
        .put(&key("k"), Bytes::from_static(b"mine"), options.clone())
        .await
        .expect("the key holds exactly this upload: success");
    assert_eq!(f.server.quirks().dropped(), 1);
    assert_eq!(f.counts.count(Op::Put), 2);
    assert_eq!(f.counts.count(Op::Head), 1);
    assert_eq!(result.etag, f.mem.meta("k").unwrap().etag);

    // A plain conflict (one attempt) fails at once, without a HEAD.
    let err = f
        .store
        .put(&key("k"), Bytes::from_static(b"mine"), options.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    assert_eq!(f.counts.count(Op::Head), 1);

    // A retried conflict over another writer's object stays a conflict.
    f.faults
        .fail_next(Op::Put, 1, transient("the first attempt is refused"));
    let err = f
        .store
        .put(&key("k"), Bytes::from_static(b"theirs"), options)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed, "{err}");
    assert_eq!(f.counts.count(Op::Head), 2, "the retried 412 was checked");
    assert_eq!(f.mem.get_bytes("k").unwrap(), "mine");
}

#[tokio::test]
async fn create_multipart_tolerates_a_misnamed_root() {
    let f = fixture().await;
    // `rclone serve s3`'s root element.
    f.server
        .quirks()
        .rename_root(Op::CreateMultipart, "InitiateMultipartUpload");
    let k = key("rclone.bin");
    let (id, parts, body) = two_parts(&f, &k).await;
    f.store
        .complete_multipart(&k, &id, parts, WriteCondition::None)
        .await
        .unwrap();
    assert_eq!(f.mem.get_bytes("rclone.bin").unwrap(), body);
}

/// One PutObject and one two-part multipart upload through `f`; checks the bytes arrived.
async fn upload_one_of_each(f: &Fixture) {
    let small = data(1000);
    f.store
        .put(&key("small"), small.clone(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(f.mem.get_bytes("small").unwrap(), small);
    let k = key("large");
    let (part1, part2) = (data(5 * MIB), data(77));
    let id = f
        .store
        .create_multipart(&k, PutOptions::default())
        .await
        .unwrap();
    let p1 = f
        .store
        .upload_part(&k, &id, 1, part1.clone())
        .await
        .unwrap();
    let p2 = f
        .store
        .upload_part(&k, &id, 2, part2.clone())
        .await
        .unwrap();
    f.store
        .complete_multipart(&k, &id, vec![p1, p2], WriteCondition::None)
        .await
        .unwrap();
    let whole = f.mem.get_bytes("large").unwrap();
    assert_eq!(whole.len(), part1.len() + part2.len());
    assert!(whole[..part1.len()] == part1[..] && whole[part1.len()..] == part2[..]);
}

#[tokio::test]
async fn upload_payloads_are_unsigned_over_loopback_and_signed_when_asked() {
    // Auto (the default): the endpoint is http://127.0.0.1, so bodies are not hashed.
    let f = fixture().await;
    upload_one_of_each(&f).await;
    assert_eq!(
        f.server.upload_payloads(),
        UploadPayloads {
            signed: 0,
            unsigned: 3
        }
    );
    let f = fixture_with(|c| c.payload_signing(PayloadSigning::Always)).await;
    upload_one_of_each(&f).await;
    assert_eq!(
        f.server.upload_payloads(),
        UploadPayloads {
            signed: 3,
            unsigned: 0
        }
    );
}

#[tokio::test]
async fn copy_with_metadata() {
    let f = fixture().await;
    let source_options = PutOptions {
        user_metadata: BTreeMap::from([("a".to_owned(), "1".to_owned())]),
        content_type: Some("text/plain".to_owned()),
        ..PutOptions::default()
    };
    let etag = f.mem.insert_with("src", "payload", source_options.clone());

    // COPY keeps the source's metadata.
    let copied = f
        .store
        .copy(CopyRequest {
            source: CopySource::new(key("src")).pinned(Some(etag.clone())),
            dest: key("dst1"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::IfNoneMatch,
        })
        .await
        .unwrap();
    assert_eq!(copied.etag, Some(etag.clone()));
    let meta = f.store.head(&key("dst1")).await.unwrap();
    assert_eq!(meta.user_metadata, source_options.user_metadata);
    assert_eq!(meta.content_type, source_options.content_type);

    // REPLACE sets new metadata.
    let replaced = PutOptions {
        user_metadata: BTreeMap::from([("b".to_owned(), "2".to_owned())]),
        content_type: Some("application/json".to_owned()),
        ..PutOptions::default()
    };
    f.store
        .copy(CopyRequest {
            source: CopySource::new(key("src")),
            dest: key("dst2"),
            metadata: MetadataDirective::Replace(replaced.clone()),
            condition: WriteCondition::None,
        })
        .await
        .unwrap();
    let meta = f.store.head(&key("dst2")).await.unwrap();
    assert_eq!(meta.user_metadata, replaced.user_metadata);
    assert_eq!(meta.content_type, replaced.content_type);
    assert_eq!(f.mem.get_bytes("dst2").unwrap(), "payload");

    // Copy onto itself with REPLACE updates the metadata in place.
    f.store
        .copy(CopyRequest {
            source: CopySource::new(key("src")),
            dest: key("src"),
            metadata: MetadataDirective::Replace(replaced.clone()),
            condition: WriteCondition::None,
        })
        .await
        .unwrap();
    assert_eq!(
        f.store.head(&key("src")).await.unwrap().user_metadata,
        replaced.user_metadata
    );

    // A stale source ETag, an existing destination, a missing source.
    let err = f
        .store
        .copy(CopyRequest {
            source: CopySource::new(key("src"))
                .pinned(Some(ETag::new("00000000000000000000000000000000"))),
            dest: key("dst3"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    let err = f
        .store
        .copy(CopyRequest {
            source: CopySource::new(key("src")),
            dest: key("dst1"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::IfNoneMatch,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
    let err = f
        .store
        .copy(CopyRequest {
            source: CopySource::new(key("missing")),
            dest: key("dst4"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert!(f.mem.get_bytes("dst3").is_none() && f.mem.get_bytes("dst4").is_none());
}

#[tokio::test]
async fn delete_and_delete_many() {
    let f = fixture().await;
    for i in 0..1200 {
        f.mem.insert(format!("many/{i:04}"), "x");
    }
    f.mem.insert("single", "x");

    f.store.delete(&key("single")).await.unwrap();
    assert!(f.mem.get_bytes("single").is_none());
    // Deleting a missing key succeeds.
    f.store.delete(&key("single")).await.unwrap();

    // More than one batch, with missing keys mixed in.
    let mut keys: Vec<ObjectKey> = (0..1200).map(|i| key(&format!("many/{i:04}"))).collect();
    keys.push(key("never-existed"));
    let failures = f.store.delete_many(keys).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(f.mem.is_empty());
    assert_eq!(f.counts.count(Op::DeleteMany), 2);

    assert!(f.store.delete_many(Vec::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn archived_objects() {
    let f = fixture().await;
    f.mem.insert("cold", "frozen");
    assert!(f.mem.set_storage_class("cold", "GLACIER"));

    let meta = f.store.head(&key("cold")).await.unwrap();
    assert_eq!(meta.storage_class.as_deref(), Some("GLACIER"));
    assert!(!meta.restored);
    let err = get_range(&f.store, "cold", None).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Archived);
    assert_eq!(err.code.as_deref(), Some("InvalidObjectState"));

    let page = f.store.list(ListRequest::default()).await.unwrap();
    assert_eq!(page.objects[0].storage_class.as_deref(), Some("GLACIER"));

    assert!(f.mem.set_restored("cold", true));
    let meta = f.store.head(&key("cold")).await.unwrap();
    assert!(meta.restored);
    assert_eq!(get_range(&f.store, "cold", None).await.unwrap(), "frozen");
}

#[tokio::test]
async fn bucket_provider_over_http() {
    let buckets = MemBuckets::new();
    buckets.create_bucket("alpha").insert("a", "1");
    buckets.create_bucket("beta").insert("b", "2");
    let server = S3Server::start(Arc::new(buckets.clone()), ServerCredentials::test())
        .await
        .unwrap();
    let provider = server.connect_buckets().await.unwrap();
    assert_eq!(provider.list_buckets().await.unwrap(), ["alpha", "beta"]);

    let beta = provider.bucket("beta").unwrap();
    assert_eq!(beta.head(&key("b")).await.unwrap().size, 1);
    beta.put(&key("c"), Bytes::from_static(b"33"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(buckets.get("beta").unwrap().get_bytes("c").unwrap(), "33");

    let err = provider
        .bucket("gamma")
        .unwrap()
        .head(&key("a"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    let err = provider
        .bucket("gamma")
        .unwrap()
        .list(ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(err.code.as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn copies_read_from_another_bucket_of_the_endpoint_and_honour_the_source_pin() {
    let buckets = MemBuckets::new();
    let small = Capabilities {
        min_part_size: 4,
        ..Capabilities::default()
    };
    let source_options = PutOptions {
        user_metadata: BTreeMap::from([("mode".to_owned(), "0644".to_owned())]),
        content_type: Some("video/mp4".to_owned()),
        ..PutOptions::default()
    };
    let etag = buckets.create_bucket_with("videos", small).insert_with(
        "in/a.mp4",
        "0123456789",
        source_options.clone(),
    );
    buckets.create_bucket_with("archive", small);
    let server = S3Server::start(Arc::new(buckets.clone()), ServerCredentials::test())
        .await
        .unwrap();
    let archive = server.connect("archive").await.unwrap();
    let source = CopySource::in_bucket("videos", key("in/a.mp4"));

    // CopyObject across buckets keeps the metadata; a stale pin is refused.
    archive
        .copy(CopyRequest {
            source: source.clone().pinned(Some(etag.clone())),
            dest: key("out/a.mp4"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        })
        .await
        .unwrap();
    let meta = archive.head(&key("out/a.mp4")).await.unwrap();
    assert_eq!(meta.user_metadata, source_options.user_metadata);
    assert_eq!(meta.content_type, source_options.content_type);
    assert_eq!(meta.etag, Some(etag.clone()));
    let stale = archive
        .copy(CopyRequest {
            source: source.clone().pinned(Some(ETag::new("0000"))),
            dest: key("out/b.mp4"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.kind, StoreErrorKind::PreconditionFailed);

    // UploadPartCopy across buckets, pinned: the current version copies, a stale one fails.
    let k = key("out/parts.mp4");
    let id = archive
        .create_multipart(&k, PutOptions::default())
        .await
        .unwrap();
    let pinned = source.clone().pinned(Some(etag));
    let one = archive
        .upload_part_copy(&k, &id, 1, &pinned, Some(ByteRange::new(0, 5)))
        .await
        .unwrap();
    let two = archive
        .upload_part_copy(&k, &id, 2, &pinned, Some(ByteRange::new(5, 10)))
        .await
        .unwrap();
    let stale = archive
        .upload_part_copy(
            &k,
            &id,
            3,
            &source.clone().pinned(Some(ETag::new("0000"))),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(stale.kind, StoreErrorKind::PreconditionFailed);
    archive
        .complete_multipart(&k, &id, vec![one, two], WriteCondition::None)
        .await
        .unwrap();
    let copied = buckets
        .get("archive")
        .unwrap()
        .get_bytes("out/parts.mp4")
        .unwrap();
    assert_eq!(copied, "0123456789");

    // A source bucket the endpoint does not have.
    let missing = archive
        .copy(CopyRequest {
            source: CopySource::in_bucket("nowhere", key("x")),
            dest: key("y"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.kind, StoreErrorKind::NotFound);
    assert_eq!(missing.code.as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn wrong_credentials_are_access_denied() {
    let f = fixture().await;
    f.mem.insert("k", "v");
    let server = S3Server::serve_store(BUCKET, Arc::new(f.mem.clone()))
        .await
        .unwrap();
    for creds in [
        StaticCredentials::new("S3VFSTESTKEY0001", "wrong-secret-key-0000000000"),
        StaticCredentials::new("UNKNOWNKEY000000", "s3vfs-test-secret-key-0123456789"),
    ] {
        let store = S3Store::new(server.store_config(BUCKET).credentials(creds))
            .await
            .unwrap();
        let err = store.head(&key("k")).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::AccessDenied, "{err}");
        let err = get_range(&store, "k", None).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::AccessDenied, "{err}");
        assert!(err.code.is_some());
    }
}

#[tokio::test]
async fn throttling_is_retried() {
    let f = fixture().await;
    f.mem.insert("k", "v");
    f.faults.throttle_next(3);
    let meta = f.store.head(&key("k")).await.unwrap();
    assert_eq!(meta.size, 1);
    assert_eq!(f.counts.count(Op::Head), 4);
    assert_eq!(f.faults.injected(), 3);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let f = fixture().await;
    f.faults
        .fail_nth(Op::Put, 1, transient("injected internal error"));
    f.faults.fail_nth(Op::List, 1, transient("injected"));
    f.faults.fail_nth(Op::Get, 1, transient("injected"));
    f.store
        .put(
            &key("k"),
            Bytes::from_static(b"value"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(f.counts.count(Op::Put), 2);
    assert_eq!(f.mem.get_bytes("k").unwrap(), "value");
    assert_eq!(
        f.store
            .list(ListRequest::default())
            .await
            .unwrap()
            .objects
            .len(),
        1
    );
    assert_eq!(get_range(&f.store, "k", None).await.unwrap(), "value");
    assert_eq!(f.counts.count(Op::Get), 2);
}

#[tokio::test]
async fn truncated_bodies_are_resumed() {
    // Two attempts only: three cuts in a row can only be survived because each resumption
    // that brings bytes resets the count (the SDK's own retries would give up).
    let f = fixture_with(|config| config.max_attempts(2)).await;
    let body = data(3 * MIB);
    f.mem.insert("big", body.clone());

    // Whole object: three cuts, each after 100 KiB of its (re)sent body.
    f.faults.truncate_next_gets(3, 100 * 1024);
    assert_eq!(get_range(&f.store, "big", None).await.unwrap(), body);
    assert_eq!(f.faults.injected(), 3);
    assert_eq!(f.counts.count(Op::Get), 4);

    // A range, cut twice.
    f.counts.reset();
    f.faults.truncate_next_gets(2, 50_000);
    let range = ByteRange::new(1_000_000, 1_300_000);
    assert_eq!(
        get_range(&f.store, "big", Some(range)).await.unwrap(),
        body.slice(1_000_000..1_300_000)
    );
    assert_eq!(f.counts.count(Op::Get), 3);

    // Reading the stream chunk by chunk sees every byte once, in order.
    f.faults.truncate_next_gets(1, 1);
    let response = f.store.get(GetRequest::whole(key("big"))).await.unwrap();
    let mut stream = response.body;
    let mut seen = Vec::new();
    while let Some(chunk) = stream.next().await {
        seen.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(seen, body);
}

#[tokio::test]
async fn resumed_body_of_a_changed_object_fails() {
    let f = fixture().await;
    let body = data(2 * MIB);
    f.mem.insert("obj", body.clone());
    f.faults.truncate_next_gets(1, 256 * 1024);
    let response = f.store.get(GetRequest::whole(key("obj"))).await.unwrap();
    let mut stream = response.body;
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, body.slice(..first.len()));
    // The object changes while the first connection is being read.
    f.mem.insert("obj", data(100));
    let mut outcome = Ok(());
    while let Some(chunk) = stream.next().await {
        if let Err(e) = chunk {
            outcome = Err(e);
            break;
        }
    }
    let err = outcome.expect_err("no mixed data from two versions");
    assert_eq!(err.kind, StoreErrorKind::PreconditionFailed, "{err}");
}

/// s3s-fs answers a HEAD of a key that is a folder on its disk (every directory) with 500.
#[tokio::test]
async fn a_head_answered_500_for_a_key_that_is_not_listed_is_not_found() {
    let f = fixture_with(|config| config.max_attempts(2)).await;
    f.mem.insert("dir/child", "v");
    f.faults.fail_matching(
        |op, key| op == Op::Head && (key == "dir" || key == "dir/child"),
        transient("is a directory"),
    );
    let err = f.store.head(&key("dir")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound, "{err}");
    assert_eq!(err.operation, Some("HeadObject"));
    // A key the listing shows keeps the server's answer, with all there is to say.
    let err = f.store.head(&key("dir/child")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient, "{err}");
    assert_eq!(err.status, Some(500));
    assert_eq!(
        err.to_string(),
        "transient failure in HeadObject for \"dir/child\" (HTTP 500)"
    );
    // Other errors are not second-guessed: a 403 stays a 403, without a LIST.
    f.faults.clear();
    f.counts.reset();
    f.faults.fail_matching(
        |op, _| op == Op::Head,
        StoreError::new(StoreErrorKind::AccessDenied, "no").with_code("AccessDenied"),
    );
    let err = f.store.head(&key("dir")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::AccessDenied, "{err}");
    assert_eq!(f.counts.count(Op::List), 0);
}

#[tokio::test]
async fn permanent_failures_surface_after_max_attempts() {
    let f = fixture_with(|config| config.max_attempts(3)).await;
    f.mem.insert("k", "v");

    // 500 on every call.
    f.faults
        .fail_matching(|_, _| true, transient("permanently broken"));
    let started = Instant::now();
    let err = f.store.head(&key("k")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient);
    assert_eq!(f.counts.count(Op::Head), 3);
    let err = get_range(&f.store, "k", None).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient);
    assert_eq!(err.key.as_deref(), Some("k"));
    assert_eq!(f.counts.count(Op::Get), 3);
    f.faults.clear();

    // SlowDown on every call.
    f.counts.reset();
    f.faults
        .fail_matching(|_, _| true, s3vfs_testkit::fault::throttled());
    let err = f.store.head(&key("k")).await.unwrap_err();
    // A HEAD answer has no body, hence no error code: the status (503) decides.
    assert_eq!(err.kind, StoreErrorKind::Throttled);
    assert_eq!(f.counts.count(Op::Head), 3);
    let err = get_range(&f.store, "k", None).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Throttled);
    assert_eq!(err.code.as_deref(), Some("SlowDown"));
    assert_eq!(f.counts.count(Op::Get), 3);
    f.faults.clear();

    // Bodies that always drop before their first byte.
    f.mem.insert("big", data(MIB));
    f.counts.reset();
    f.faults.truncate_next_gets(100, 0);
    let err = get_range(&f.store, "big", None).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient);
    assert_eq!(f.counts.count(Op::Get), 3);
    f.faults.clear();

    // Non-retryable errors are not retried.
    f.counts.reset();
    let err = f.store.head(&key("missing")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(f.counts.count(Op::Head), 1);

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unreachable_endpoint_fails_in_bounded_time() {
    // A port that was free a moment ago: connection refused, retried, then Transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = S3StoreConfig::new(BUCKET)
        .endpoint_url(format!("http://{addr}"))
        .region("us-east-1")
        .force_path_style(true)
        .credentials(ServerCredentials::test().to_static())
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(5))
        .max_backoff(Duration::from_millis(20))
        .connect_timeout(Duration::from_secs(1));
    let store = S3Store::new(config).await.unwrap();
    let started = Instant::now();
    let err = store.head(&key("k")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Transient, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn capabilities_come_from_the_config() {
    let f = fixture_with(|config| config.conditional_writes(false)).await;
    let caps = f.store.capabilities();
    assert!(!caps.conditional_writes);
    assert!(caps.upload_part_copy);
    assert_eq!(caps.min_part_size, 5 * 1024 * 1024);
}

/// A store over an SDK client its user built (its endpoint, region and credentials).
#[tokio::test]
async fn a_store_over_a_client_built_elsewhere() {
    let mem = MemStore::new();
    let server = S3Server::serve_store(BUCKET, Arc::new(mem.clone()))
        .await
        .expect("server starts");
    let credentials = server.credentials();
    let sdk = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(server.endpoint_url())
        .region(aws_sdk_s3::config::Region::new(
            s3vfs_testkit::server::TEST_REGION,
        ))
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            None,
            None,
            "test",
        ))
        .build();
    let client = aws_sdk_s3::Client::from_conf(sdk);
    assert!(S3Store::from_client(client.clone(), &S3StoreConfig::new("")).is_err());
    let store = S3Store::from_client(client, &S3StoreConfig::new(BUCKET)).unwrap();
    store
        .put(&key("k"), Bytes::from_static(b"v"), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(mem.get_bytes("k").unwrap(), "v");
    assert_eq!(store.head(&key("k")).await.unwrap().size, 1);
}

/// `--requester-pays` and `--expected-bucket-owner`: `x-amz-request-payer` and
/// `x-amz-expected-bucket-owner` on every request (copies: the source's owner too, the
/// source being in the same bucket); neither without them.
#[tokio::test]
async fn requester_pays_and_the_expected_owner_reach_every_request() {
    const OWNER: &str = "111122223333";
    let f = fixture_with(|c| c.requester_pays(true).expected_bucket_owner(OWNER)).await;
    f.server.record_requests(true);
    call_every_op(&f.store, 5 * MIB).await.unwrap();
    let recorded = f.server.recorded_requests();
    for kind in Op::ALL.map(Op::name) {
        assert!(
            recorded.iter().any(|r| r.operation == kind),
            "no {kind} among {:?}",
            recorded.iter().map(|r| &r.operation).collect::<Vec<_>>()
        );
    }
    for request in &recorded {
        let op = &request.operation;
        assert_eq!(
            request.header("x-amz-request-payer"),
            Some("requester"),
            "{op}"
        );
        assert_eq!(
            request.header("x-amz-expected-bucket-owner"),
            Some(OWNER),
            "{op}"
        );
        if op == "CopyObject" || op == "UploadPartCopy" {
            assert_eq!(
                request.header("x-amz-source-expected-bucket-owner"),
                Some(OWNER),
                "{op}"
            );
        }
    }

    let f = fixture().await;
    f.server.record_requests(true);
    call_every_op(&f.store, 5 * MIB).await.unwrap();
    for request in f.server.recorded_requests() {
        for header in [
            "x-amz-request-payer",
            "x-amz-expected-bucket-owner",
            "x-amz-source-expected-bucket-owner",
        ] {
            assert_eq!(request.header(header), None, "{}", request.operation);
        }
    }
}

/// `--no-sign-request`: no credentials, no `Authorization` header, also when static
/// credentials are configured; a server that wants signatures refuses such requests.
#[tokio::test]
async fn an_anonymous_store_signs_nothing() {
    let f = fixture().await;
    f.mem.insert("public.txt", "anyone may read this");
    let anonymous = S3Store::new(f.server.store_config(BUCKET).anonymous(true))
        .await
        .unwrap();
    f.server.record_requests(true);
    let err = anonymous.head(&key("public.txt")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::AccessDenied, "{err}");

    f.server.allow_anonymous(true);
    assert_eq!(anonymous.head(&key("public.txt")).await.unwrap().size, 20);
    assert_eq!(
        get_range(&anonymous, "public.txt", None).await.unwrap(),
        "anyone may read this"
    );
    let page = anonymous.list(ListRequest::default()).await.unwrap();
    assert_eq!(page.objects.len(), 1);
    anonymous
        .put(&key("upload"), data(100), PutOptions::default())
        .await
        .unwrap();
    let recorded = f.server.recorded_requests();
    assert!(recorded.len() >= 5, "{recorded:?}");
    for request in &recorded {
        assert!(!request.signed, "{request:?}");
        assert_eq!(request.header("authorization"), None, "{request:?}");
    }

    // The signed store next to it still signs.
    f.server.record_requests(true);
    f.store.head(&key("public.txt")).await.unwrap();
    let recorded = f.server.recorded_requests();
    assert!(recorded
        .iter()
        .all(|r| r.signed && r.header("authorization").is_some()));
}

/// Without a region, the store asks the bucket (HeadBucket's `x-amz-bucket-region`, else
/// GetBucketLocation) and signs for the one it names; with a region, it asks nothing.
#[tokio::test]
async fn the_region_is_asked_of_the_bucket_when_none_is_set() {
    let f = fixture().await;
    f.mem.insert("k", "v");
    f.server.set_region("eu-test-1");
    let mut config = f
        .server
        .store_config(BUCKET)
        .expected_bucket_owner("111122223333");
    config.region = None;

    f.server.record_requests(true);
    let store = S3Store::new(config.clone()).await.unwrap();
    assert_eq!(store.region(), Some("eu-test-1"));
    store.head(&key("k")).await.unwrap();
    let recorded = f.server.recorded_requests();
    let ops: Vec<&str> = recorded.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(ops, ["HeadBucket", "HeadObject"]);
    // The question takes the owner's header (HeadBucket has no requester-pays one).
    assert_eq!(
        recorded[0].header("x-amz-expected-bucket-owner"),
        Some("111122223333")
    );
    assert_eq!(recorded[1].signing_region(), Some("eu-test-1"));

    // A server whose HeadBucket names no region: GetBucketLocation.
    f.server.quirks().hide_bucket_region();
    f.server.record_requests(true);
    let store = S3Store::new(config.clone()).await.unwrap();
    assert_eq!(store.region(), Some("eu-test-1"));
    let ops: Vec<String> = f
        .server
        .recorded_requests()
        .into_iter()
        .map(|r| r.operation)
        .collect();
    assert_eq!(ops, ["HeadBucket", "GetBucketLocation"]);
    // Its empty answer means us-east-1.
    f.server.set_region("us-east-1");
    let store = S3Store::new(config.clone()).await.unwrap();
    assert_eq!(store.region(), Some("us-east-1"));

    // A configured region is used as it is: no question.
    f.server.record_requests(true);
    let store = S3Store::new(config.region("ap-test-2")).await.unwrap();
    assert_eq!(store.region(), Some("ap-test-2"));
    store.head(&key("k")).await.unwrap();
    let recorded = f.server.recorded_requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].signing_region(), Some("ap-test-2"));
}
