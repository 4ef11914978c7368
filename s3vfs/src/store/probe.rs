//! What an S3-compatible server really does, found by trying it: each check makes objects
//! under a scratch prefix (`<prefix>.s3vfs-probe-<pid>-<nanos>/`), looks at what the
//! server did with them, and the scratch prefix is emptied at the end.
//!
//! `s3vfs mount` runs [`conditional_writes`] against endpoints other than AWS, so that a
//! server that ignores `If-None-Match`/`If-Match` makes the mount last-writer-wins out
//! loud instead of silently; `s3vfs doctor` runs [`run`], every check.

use super::multipart::{MultipartUpload, PartSource};
use super::{
    Backend, ByteRange, CopyRequest, CopySource, ETag, GetRequest, ListRequest, MetadataDirective,
    ObjectKey, PutOptions, StoreError, StoreErrorKind, StoreResult, WriteCondition,
};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The server does what S3 does.
    Works,
    /// The server lacks the feature or does it differently; the detail says what s3vfs
    /// does about it.
    Lacks,
    /// The check could not run to an answer (access denied, network, an unexpected error).
    Failed,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Works => "works",
            Verdict::Lacks => "lacks",
            Verdict::Failed => "FAILED",
        })
    }
}

/// One capability and what the server did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was tried, e.g. "conditional writes (If-None-Match, If-Match)".
    pub name: &'static str,
    /// The outcome.
    pub verdict: Verdict,
    /// What was seen, and for [`Verdict::Lacks`] what it means for a mount.
    pub detail: String,
}

impl Check {
    fn works(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Works,
            detail: detail.into(),
        }
    }

    fn lacks(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Lacks,
            detail: detail.into(),
        }
    }

    fn failed(name: &'static str, error: &StoreError) -> Self {
        Self {
            name,
            verdict: Verdict::Failed,
            detail: error.to_string(),
        }
    }
}

/// Name of the conditional-write check.
pub const CONDITIONAL_WRITES: &str = "conditional writes (If-None-Match: *, If-Match)";

/// Name of the directory-marker check.
pub const DIRECTORY_MARKERS: &str = "directory markers (`dir/` objects)";

/// Whether `store` honours write conditions, tried under `prefix` (a key prefix, empty
/// or ending in `/`). [`Verdict::Lacks`] means it ignores or refuses them: a mount over it
/// must be last-writer-wins.
pub async fn conditional_writes(store: &Arc<dyn Backend>, prefix: &str) -> Check {
    let scratch = Scratch::new(store, prefix);
    let check = check_conditional(&scratch).await;
    scratch.clean().await;
    check
}

/// Whether `store` keeps a `dir/` marker as S3 does (listed as a directory, HEAD works),
/// tried under `prefix`. [`Verdict::Lacks`] means a file system over it must not write
/// markers.
pub async fn directory_markers(store: &Arc<dyn Backend>, prefix: &str) -> Check {
    let scratch = Scratch::new(store, prefix);
    let check = check_markers(&scratch).await;
    scratch.clean().await;
    check
}

/// Every check, in order: listing, single PUT/GET with metadata, HEAD of a missing key,
/// conditional writes, `dir/` markers, ETags in listings, multipart upload, CopyObject,
/// UploadPartCopy, DeleteObjects. The scratch prefix is emptied afterwards.
pub async fn run(store: &Arc<dyn Backend>, prefix: &str) -> Vec<Check> {
    let scratch = Scratch::new(store, prefix);
    let mut checks = vec![check_list(&scratch).await];
    if checks[0].verdict == Verdict::Failed {
        // Without listing, nothing else can be judged (or cleaned up).
        return checks;
    }
    checks.push(check_put_get(&scratch).await);
    checks.push(check_missing(&scratch).await);
    checks.push(check_conditional(&scratch).await);
    checks.push(check_markers(&scratch).await);
    checks.push(check_list_etags(&scratch).await);
    checks.push(check_multipart(&scratch).await);
    checks.push(check_copy(&scratch).await);
    checks.push(check_part_copy(&scratch).await);
    checks.push(scratch.clean_checked().await);
    checks
}

/// The probe's own corner of the bucket.
struct Scratch {
    store: Arc<dyn Backend>,
    base: String,
}

impl Scratch {
    fn new(store: &Arc<dyn Backend>, prefix: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Self {
            store: Arc::clone(store),
            base: format!("{prefix}.s3vfs-probe-{}-{nanos}/", std::process::id()),
        }
    }

    fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(format!("{}{name}", self.base))
    }

    async fn put(
        &self,
        name: &str,
        body: &'static [u8],
        condition: WriteCondition,
    ) -> StoreResult<Option<ETag>> {
        let options = PutOptions {
            condition,
            ..PutOptions::default()
        };
        let done = self
            .store
            .put(&self.key(name), Bytes::from_static(body), options)
            .await?;
        Ok(done.etag)
    }

    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>) -> StoreResult<Vec<u8>> {
        let request = GetRequest {
            range,
            ..GetRequest::whole(key.clone())
        };
        let mut body = self.store.get(request).await?.body;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }

    /// Every key under the scratch prefix (one page: the probe makes a handful).
    async fn keys(&self) -> StoreResult<Vec<ObjectKey>> {
        let page = self
            .store
            .list(ListRequest {
                prefix: self.base.clone(),
                ..ListRequest::default()
            })
            .await?;
        Ok(page.objects.into_iter().map(|o| o.key).collect())
    }

    /// Deletes what the probe made, one request per key; failures are logged.
    async fn clean(&self) {
        let mut keys = self.keys().await.unwrap_or_default();
        // A marker some servers do not list, and the scratch prefix itself: servers over
        // a file system (`rclone serve s3`, s3s-fs) keep a folder for it and may list it.
        keys.push(self.key("dir/"));
        keys.push(ObjectKey::new(self.base.clone()));
        for key in keys {
            if let Err(err) = self.store.delete(&key).await {
                tracing::warn!(key = %key, error = %err, "could not delete a probe object");
            }
        }
    }

    /// Deletes what the probe made with DeleteObjects (one request per key where that is
    /// refused), and says whether DeleteObjects works and everything is gone.
    async fn clean_checked(&self) -> Check {
        const NAME: &str = "batch delete (DeleteObjects) and clean-up";
        let keys = match self.keys().await {
            Ok(keys) => keys,
            Err(err) => return Check::failed(NAME, &err),
        };
        let batch = self.store.delete_many(keys).await;
        self.clean().await;
        let left = match self.keys().await {
            Ok(left) => left,
            Err(err) => return Check::failed(NAME, &err),
        };
        match (batch, left.is_empty()) {
            (_, false) => Check {
                name: NAME,
                verdict: Verdict::Failed,
                detail: format!("{} probe objects are left under {}", left.len(), self.base),
            },
            (Ok(failures), true) if failures.is_empty() => {
                Check::works(NAME, format!("{} emptied", self.base))
            }
            (Ok(failures), true) => Check::lacks(
                NAME,
                format!(
                    "DeleteObjects refused {} keys (first: {}); single deletes removed them",
                    failures.len(),
                    failures[0].error
                ),
            ),
            (Err(err), true) => Check::lacks(
                NAME,
                format!("DeleteObjects failed ({err}); single deletes removed them: removing a tree costs one request per object"),
            ),
        }
    }
}

async fn check_list(s: &Scratch) -> Check {
    const NAME: &str = "list the prefix (ListObjectsV2)";
    match s.keys().await {
        Ok(_) => Check::works(NAME, ""),
        Err(err) => Check::failed(NAME, &err),
    }
}

async fn check_put_get(s: &Scratch) -> Check {
    const NAME: &str = "single PUT, GET, ranged GET and user metadata";
    let key = s.key("object");
    let metadata = BTreeMap::from([("s3vfs-probe".to_owned(), "kept".to_owned())]);
    let options = PutOptions {
        user_metadata: metadata.clone(),
        ..PutOptions::default()
    };
    let body = Bytes::from_static(PROBE_BODY);
    if let Err(err) = s.store.put(&key, body, options).await {
        return Check::failed(NAME, &err);
    }
    let whole = match s.get(&key, None).await {
        Ok(bytes) => bytes,
        Err(err) => return Check::failed(NAME, &err),
    };
    if whole != PROBE_BODY {
        return Check::lacks(
            NAME,
            format!(
                "GET returned {} bytes that differ from the {} stored",
                whole.len(),
                PROBE_BODY.len()
            ),
        );
    }
    match s.get(&key, Some(ByteRange::new(5, 12))).await {
        Ok(part) if part == PROBE_BODY[5..12] => {}
        Ok(part) => {
            return Check::lacks(NAME, format!("a GET of bytes 5..12 returned {part:?}"));
        }
        Err(err) => return Check::failed(NAME, &err),
    }
    match s.store.head(&key).await {
        Ok(meta) if meta.user_metadata.get("s3vfs-probe") == Some(&"kept".to_owned()) => {
            Check::works(NAME, "")
        }
        Ok(meta) => Check::lacks(
            NAME,
            format!(
                "user metadata is not kept (HEAD shows {:?}): modes, owners, times and xattrs of files are lost",
                meta.user_metadata
            ),
        ),
        Err(err) => Check::failed(NAME, &err),
    }
}

const PROBE_BODY: &[u8] = b"s3vfs capability probe: a small object with known bytes\n";

async fn check_missing(s: &Scratch) -> Check {
    const NAME: &str = "HEAD of a missing key is 404";
    match s.store.head(&s.key("missing")).await {
        Err(err) if err.kind == StoreErrorKind::NotFound => Check::works(NAME, ""),
        Ok(_) => Check::lacks(NAME, "a HEAD of a key never written succeeded"),
        Err(err) => Check::failed(NAME, &err),
    }
}

async fn check_conditional(s: &Scratch) -> Check {
    const NAME: &str = CONDITIONAL_WRITES;
    let name = "conditional";
    let first = match s.put(name, b"first", WriteCondition::IfNoneMatch).await {
        Ok(etag) => etag,
        Err(err) if refuses_header(&err) => {
            return Check::lacks(
                NAME,
                format!("a PUT with If-None-Match: * is refused ({err}): last-writer-wins only"),
            )
        }
        Err(err) => return Check::failed(NAME, &err),
    };
    let mut ignored = Vec::new();
    match s.put(name, b"second", WriteCondition::IfNoneMatch).await {
        Err(err) if err.kind == StoreErrorKind::PreconditionFailed => {}
        Ok(_) => ignored.push("If-None-Match: * on an existing key was ignored".to_owned()),
        Err(err) if refuses_header(&err) => {
            ignored.push(format!("If-None-Match: * refused ({err})"))
        }
        Err(err) => return Check::failed(NAME, &err),
    }
    let stale = ETag::new("0123456789abcdef0123456789abcdef");
    match s.put(name, b"third", WriteCondition::IfMatch(stale)).await {
        Err(err) if err.kind == StoreErrorKind::PreconditionFailed => {}
        Ok(_) => ignored.push("If-Match with a stale ETag was ignored".to_owned()),
        Err(err) if refuses_header(&err) => ignored.push(format!("If-Match refused ({err})")),
        Err(err) => return Check::failed(NAME, &err),
    }
    if !ignored.is_empty() {
        return Check::lacks(
            NAME,
            format!("{}: last-writer-wins only", ignored.join("; ")),
        );
    }
    // The current ETag must be accepted, or every overwrite through a mount would fail.
    let current = match (first, s.store.head(&s.key(name)).await) {
        (_, Ok(meta)) if meta.etag.is_some() => meta.etag,
        (first, _) => first,
    };
    let Some(current) = current else {
        return Check::lacks(NAME, "the server gives no ETag to make If-Match with");
    };
    match s
        .put(name, b"fourth", WriteCondition::IfMatch(current))
        .await
    {
        Ok(_) => Check::works(
            NAME,
            "a stale create and a stale overwrite are refused with 412",
        ),
        Err(err) => Check::lacks(
            NAME,
            format!("If-Match with the current ETag is refused ({err}): last-writer-wins only"),
        ),
    }
}

/// Whether a server refused a request for carrying a header it does not implement.
fn refuses_header(err: &StoreError) -> bool {
    err.kind == StoreErrorKind::InvalidRequest
        || matches!(
            err.code.as_deref(),
            Some("NotImplemented" | "InvalidArgument")
        )
        || err.status == Some(501)
}

async fn check_markers(s: &Scratch) -> Check {
    const NAME: &str = DIRECTORY_MARKERS;
    let marker = s.key("dir/");
    if let Err(err) = s.put("dir/", b"", WriteCondition::None).await {
        return Check::lacks(NAME, format!("a PUT of a `dir/` marker fails ({err})"));
    }
    let listed = s
        .store
        .list(ListRequest {
            prefix: s.base.clone(),
            delimiter: Some("/".to_owned()),
            ..ListRequest::default()
        })
        .await;
    let page = match listed {
        Ok(page) => page,
        Err(err) => return Check::failed(NAME, &err),
    };
    let as_file = s.key("dir");
    if page.objects.iter().any(|o| o.key == as_file) {
        return Check::lacks(
            NAME,
            "the server stores the marker `dir/` as a file `dir`, after which no key below `dir/` can be written",
        );
    }
    if !page.common_prefixes.contains(&marker.as_str().to_owned())
        && !page.objects.iter().any(|o| o.key == marker)
    {
        return Check::lacks(NAME, "a listing does not show the marker just written");
    }
    match s.store.head(&marker).await {
        Ok(_) => Check::works(NAME, ""),
        Err(err) if err.kind == StoreErrorKind::NotFound => Check::lacks(
            NAME,
            format!("the marker is listed but its HEAD fails ({err})"),
        ),
        Err(err) => Check::failed(NAME, &err),
    }
}

async fn check_list_etags(s: &Scratch) -> Check {
    const NAME: &str = "ETags in listings";
    let page = s
        .store
        .list(ListRequest {
            prefix: s.base.clone(),
            ..ListRequest::default()
        })
        .await;
    match page {
        Err(err) => Check::failed(NAME, &err),
        Ok(page) if page.objects.is_empty() => {
            Check::lacks(NAME, "the listing shows none of the objects just written")
        }
        Ok(page) if page.objects.iter().all(|o| o.etag.is_some()) => Check::works(NAME, ""),
        Ok(_) => Check::lacks(
            NAME,
            "ListObjectsV2 leaves out ETags: a listed file's version is only known after its HEAD",
        ),
    }
}

/// Size of the multipart probe's first part: the smallest the store takes.
fn first_part_len(store: &Arc<dyn Backend>) -> usize {
    usize::try_from(store.capabilities().min_part_size.max(1)).unwrap_or(5 << 20)
}

async fn check_multipart(s: &Scratch) -> Check {
    const NAME: &str = "multipart upload (2 parts)";
    let key = s.key("multipart");
    let first = first_part_len(&s.store);
    let parts = [
        Bytes::from(vec![b'm'; first]),
        Bytes::from_static(PROBE_BODY),
    ];
    let done = async {
        let upload =
            MultipartUpload::begin(Arc::clone(&s.store), key.clone(), PutOptions::default())
                .await?;
        let mut completed = Vec::new();
        for (number, body) in (1..).zip(parts.iter()) {
            completed.push(upload.part(number, PartSource::Bytes(body.clone())).await?);
        }
        upload.complete(completed, WriteCondition::None).await?;
        s.store.head(&key).await
    }
    .await;
    let total = (first + PROBE_BODY.len()) as u64;
    match done {
        Err(err) => Check::failed(NAME, &err),
        Ok(meta) if meta.size != total => Check::lacks(
            NAME,
            format!(
                "the object has {} bytes, not the {total} uploaded",
                meta.size
            ),
        ),
        Ok(meta) => {
            let tail = s.get(&key, Some(ByteRange::new(total - 8, total))).await;
            match tail {
                Ok(tail) if tail == PROBE_BODY[PROBE_BODY.len() - 8..] => {}
                Ok(_) => return Check::lacks(NAME, "the last part's bytes read back wrong"),
                Err(err) => return Check::failed(NAME, &err),
            }
            let etag = meta.etag.map(|e| e.as_str().to_owned()).unwrap_or_default();
            if etag.trim_matches('"').ends_with("-2") {
                Check::works(NAME, "")
            } else {
                Check::works(
                    NAME,
                    format!("its ETag {etag} is not S3's `<md5 of part MD5s>-2`: an upload whose completion answer is lost cannot be recognised"),
                )
            }
        }
    }
}

async fn check_copy(s: &Scratch) -> Check {
    const NAME: &str = "server-side copy (CopyObject) keeps metadata";
    let request = CopyRequest {
        source: CopySource::new(s.key("object")),
        dest: s.key("copy"),
        metadata: MetadataDirective::Copy,
        condition: WriteCondition::None,
    };
    if let Err(err) = s.store.copy(request).await {
        return Check::failed(NAME, &err);
    }
    match s.store.head(&s.key("copy")).await {
        Ok(meta) if meta.size == PROBE_BODY.len() as u64 => {
            if meta.user_metadata.get("s3vfs-probe") == Some(&"kept".to_owned()) {
                Check::works(NAME, "")
            } else {
                Check::lacks(NAME, "the copy lost the user metadata: a renamed file loses its mode, owner and times")
            }
        }
        Ok(meta) => Check::lacks(NAME, format!("the copy has {} bytes", meta.size)),
        Err(err) => Check::failed(NAME, &err),
    }
}

async fn check_part_copy(s: &Scratch) -> Check {
    const NAME: &str = "UploadPartCopy (renames of large files)";
    if !s.store.capabilities().upload_part_copy {
        return Check::lacks(NAME, "not used: the store is configured without it");
    }
    let key = s.key("part-copy");
    let first = first_part_len(&s.store) as u64;
    let done = async {
        let upload =
            MultipartUpload::begin(Arc::clone(&s.store), key.clone(), PutOptions::default())
                .await?;
        let source = PartSource::Copy {
            source: CopySource::new(s.key("multipart")),
            range: ByteRange::new(0, first),
        };
        let one = upload.part(1, source).await?;
        let two = upload
            .part(2, PartSource::Bytes(Bytes::from_static(PROBE_BODY)))
            .await?;
        upload
            .complete(vec![one, two], WriteCondition::None)
            .await?;
        s.store.head(&key).await
    }
    .await;
    match done {
        Ok(meta) if meta.size == first + PROBE_BODY.len() as u64 => Check::works(NAME, ""),
        Ok(meta) => Check::lacks(NAME, format!("the object has {} bytes", meta.size)),
        Err(err) => Check::lacks(
            NAME,
            format!("{err}: renames of files above the copy limit would fail"),
        ),
    }
}
