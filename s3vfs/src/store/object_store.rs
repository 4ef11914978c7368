//! [`ObjectStoreBackend`]: s3vfs over any backend of the `object_store` crate (feature
//! `object-store`).
//!
//! s3vfs's value is the file-system layer above [`Backend`] (the FUSE mount, `File`
//! handles, the consistency rules); `object_store` already has good clients for GCS,
//! Azure, local disk, HTTP and S3. This adapter lets the whole s3vfs stack run over any of
//! them. (The other direction, serving `object_store` callers from s3vfs, would only
//! re-expose S3, which `object_store::aws` already does.)
//!
//! What the adapter keeps, and where `object_store` cannot say what S3 says:
//! - Keys map one to one onto [`Path`]s. A key that no `Path` can hold (ending or starting
//!   in `/`, an empty, `.` or `..` segment) is refused on writes and is missing on reads,
//!   so `dir/` markers cannot be stored: the probe of
//!   [`FsConfig::fit_to_store`](crate::FsConfig::fit_to_store) finds that, or a library user
//!   sets [`FsConfig::with_directory_markers`](crate::FsConfig::with_directory_markers) off.
//! - Multipart uploads stream their parts, in part-number order, into one
//!   `put_multipart_opts` upload, which keeps the object's attributes (POSIX mode, owner,
//!   times). `MultipartStore` is not used: its uploads take no attributes, so every large
//!   file would lose them. Upload ids are this process's; the parts of a part number must
//!   start after those of the number before (the file system's uploads do).
//! - Neither `put_multipart_opts` nor `MultipartStore` completes under a condition, so
//!   [`Capabilities::conditional_writes`] is off and the file system is last-writer-wins.
//!   A single PUT still honours a condition given to it (`PutMode::Create`/`Update`).
//! - No UploadPartCopy, no batch delete, no object tags ([`Backend::get_tags`] answers
//!   `NotImplemented`): the capabilities say so and the file system uses its fallbacks.
//! - A copy that replaces metadata streams the object through this process into a new
//!   upload (object_store copies keep attributes as they are); a copy pinned to a source
//!   ETag checks it with a HEAD just before the copy.
//! - ETags come back as the backend sends them, quoted if they were not; the first one
//!   seen tells whether the backend quotes them, so that a condition sends its own form.

use super::{
    Backend, ByteRange, Capabilities, CompletedPart, CopyRequest, CopySource, DeleteFailure, ETag,
    GetRequest, GetResponse, ListPage, ListRequest, ListedObject, MetadataDirective, ObjectKey,
    ObjectMeta, PutOptions, PutResult, StoreError, StoreErrorKind, StoreResult, UploadId,
    WriteCondition,
};
use crate::attrs::PosixMeta;
use crate::vfs::FileKind;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, AttributeValue, Attributes, CopyMode, CopyOptions, GetOptions, GetRange,
    MultipartUpload, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutMultipartOptions,
    PutPayload, TagSet, UpdateVersion,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How long a part waits for the part before it to start: part numbers must come in
/// order, and one that never comes must not hang the upload for ever.
const PART_ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Keys in one LIST page when the request names no limit (S3's default).
const DEFAULT_MAX_KEYS: u32 = 1000;

/// The `store` name of errors made by the adapter itself.
const ADAPTER: &str = "ObjectStoreBackend";

/// Whether the backend's ETags are quoted, as first seen.
const QUOTING_UNKNOWN: u8 = 0;
const QUOTING_QUOTED: u8 = 1;
const QUOTING_BARE: u8 = 2;

/// A [`Backend`] over an `Arc<dyn object_store::ObjectStore>` (see the module docs for
/// what it can and cannot do).
///
/// ```
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use s3vfs::store::object_store::ObjectStoreBackend;
/// use s3vfs::{FsConfig, S3Vfs};
/// use std::sync::Arc;
///
/// let dir = tempfile::tempdir()?;
/// let store = ObjectStoreBackend::from_url(&format!("file://{}", dir.path().display()))?;
/// // object_store keeps no `dir/` markers: directories exist through their files.
/// let vfs = S3Vfs::new(Arc::new(store), FsConfig::default().with_directory_markers(false));
/// vfs.write("notes/today.txt", "hello").await?;
/// assert_eq!(vfs.read("notes/today.txt").await?, "hello");
/// assert!(dir.path().join("notes/today.txt").is_file());
/// # Ok(())
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    /// Whether the backend keeps attributes (user metadata, content type).
    attributes: bool,
    name: Option<String>,
    capabilities: Capabilities,
    /// `QUOTING_*`: how the backend writes ETags.
    quoting: AtomicU8,
    uploads: Mutex<HashMap<String, Arc<Upload>>>,
    next_upload: AtomicU64,
}

/// One multipart upload under way: the `object_store` upload its parts stream into.
#[derive(Debug)]
struct Upload {
    key: ObjectKey,
    /// Taken out to complete or abort it.
    inner: Mutex<Option<Box<dyn MultipartUpload>>>,
    /// The part number whose turn it is to start.
    next_part: watch::Sender<u32>,
}

impl ObjectStoreBackend {
    /// An adapter over `store`, which keeps attributes (user metadata and content type) as
    /// `InMemory`, S3, GCS and Azure do; S3's part limits.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            attributes: true,
            name: None,
            // S3's part limits: nothing smaller is sure to be taken by every cloud backend.
            capabilities: Capabilities::default(),
            quoting: AtomicU8::new(QUOTING_UNKNOWN),
            uploads: Mutex::new(HashMap::new()),
            next_upload: AtomicU64::new(1),
        }
        .with_part_limits(Capabilities::default())
    }

    /// For a backend that keeps no attributes (`object_store`'s `LocalFileSystem`): user
    /// metadata and content types of new objects are dropped (the file system then shows
    /// its default modes and owners), and a copy that replaces metadata is refused as not
    /// implemented (chmod, chown, utimes of a file fail).
    #[must_use]
    pub fn without_attributes(mut self) -> Self {
        self.attributes = false;
        self
    }

    /// The name [`Backend::bucket`] reports (for logs and recovery manifests).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Part sizes and counts (e.g. smaller parts for an in-memory backend in tests). The
    /// optional features stay off whatever `capabilities` says: the adapter has none.
    #[must_use]
    pub fn with_part_limits(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = Capabilities {
            conditional_writes: false,
            upload_part_copy: false,
            delete_many: false,
            ..capabilities
        };
        self
    }

    /// A backend from a URL: `file:///DIR` (a directory that exists; keeps no attributes,
    /// and empty directories are removed as their last file is deleted), `memory:///`, or
    /// any other URL `object_store::parse_url` handles with the `object_store` features
    /// this program enables (`s3://`, `gs://`, `az://`, … with that function's defaults;
    /// build a store with credentials in code and pass it to [`new`](Self::new)), rooted
    /// at the URL's path.
    pub fn from_url(url: &str) -> StoreResult<Self> {
        let parsed = url::Url::parse(url).map_err(|e| {
            StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!("bad URL {url:?}: {e}"),
            )
        })?;
        let (scheme, path) =
            ObjectStoreScheme::parse(&parsed).map_err(|e| map_error(e.into(), "parse_url", url))?;
        let backend = match scheme {
            ObjectStoreScheme::Local => {
                let dir = parsed.to_file_path().map_err(|()| {
                    StoreError::new(
                        StoreErrorKind::InvalidRequest,
                        format!("{url:?} is not a local path"),
                    )
                })?;
                let local = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| map_error(e, "LocalFileSystem", url))?
                    .with_automatic_cleanup(true);
                Self::new(Arc::new(local)).without_attributes()
            }
            ObjectStoreScheme::Memory => Self::new(Arc::new(InMemory::new())),
            _ => {
                let (store, _) =
                    object_store::parse_url(&parsed).map_err(|e| map_error(e, "parse_url", url))?;
                let root = Path::parse(path).map_err(|e| map_error(e.into(), "parse_url", url))?;
                if root.as_ref().is_empty() {
                    Self::new(Arc::from(store))
                } else {
                    Self::new(Arc::new(PrefixStore::new(store, root)))
                }
            }
        };
        Ok(backend.with_name(url))
    }

    /// Multipart uploads begun and neither completed nor aborted yet.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The `object_store` path of `key`, if one can hold it.
    fn path(key: &str) -> StoreResult<Path> {
        let refuse = |why: String| {
            Err(StoreError::new(StoreErrorKind::InvalidRequest, why)
                .with_key(key)
                .with_code("InvalidObjectName"))
        };
        if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
            // `Path::parse` would strip the slash and name another object.
            return refuse("object_store paths cannot start or end with `/`".to_owned());
        }
        match Path::parse(key) {
            Ok(path) => Ok(path),
            Err(e) => refuse(format!("not an object_store path: {e}")),
        }
    }

    /// The path of `key` for a read: a key no path can hold names no object.
    fn path_to_read(key: &str) -> StoreResult<Path> {
        Self::path(key).map_err(|_| StoreError::not_found(key))
    }

    /// An ETag in s3vfs's form, noting whether the backend quotes its own.
    fn etag(&self, raw: Option<String>) -> Option<ETag> {
        let raw = raw?;
        let quoted = raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"');
        let _ = self.quoting.compare_exchange(
            QUOTING_UNKNOWN,
            if quoted { QUOTING_QUOTED } else { QUOTING_BARE },
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        Some(ETag::new(raw))
    }

    /// `etag` as the backend wrote it. Before the backend has shown one, a HEAD of `key`
    /// shows how it writes them.
    async fn raw_etag(&self, key: &Path, etag: &ETag) -> String {
        if self.quoting.load(Ordering::Relaxed) == QUOTING_UNKNOWN {
            if let Ok(meta) = self.store.head(key).await {
                self.etag(meta.e_tag);
            }
        }
        match self.quoting.load(Ordering::Relaxed) {
            QUOTING_BARE => etag.as_str().trim_matches('"').to_owned(),
            _ => etag.as_str().to_owned(),
        }
    }

    /// What `options` ask of a new object, as `object_store` attributes and tags. Refused:
    /// what the backend cannot be asked per object (server-side encryption is set on its
    /// builder).
    fn attributes_of(&self, key: &str, options: &PutOptions) -> StoreResult<(Attributes, TagSet)> {
        if options.sse.is_some() {
            return Err(not_implemented(
                key,
                "server-side encryption per object (set it on the object_store builder)",
            ));
        }
        let mut attributes = Attributes::new();
        let mut tags = TagSet::default();
        if !self.attributes {
            // Modes, owners and times are dropped (defaults are shown instead), but what
            // only the metadata says is not a plain file would come back as one.
            let posix = PosixMeta::from_user_metadata(&options.user_metadata);
            if posix.kind().is_some_and(|kind| kind != FileKind::File) {
                return Err(not_implemented(
                    key,
                    "a symbolic link or special file on a backend without attributes",
                ));
            }
            return Ok((attributes, tags));
        }
        for (name, value) in &options.user_metadata {
            attributes.insert(
                Attribute::Metadata(name.clone().into()),
                AttributeValue::from(value.clone()),
            );
        }
        if let Some(content_type) = &options.content_type {
            attributes.insert(Attribute::ContentType, content_type.clone().into());
        }
        if let Some(class) = &options.storage_class {
            attributes.insert(Attribute::StorageClass, class.clone().into());
        }
        for (name, value) in &options.tags {
            tags.push(name, value);
        }
        Ok((attributes, tags))
    }

    /// s3vfs's metadata of an object from what `object_store` says of it.
    fn meta(
        &self,
        key: &ObjectKey,
        meta: object_store::ObjectMeta,
        attributes: &Attributes,
    ) -> ObjectMeta {
        let mut user_metadata = BTreeMap::new();
        let mut content_type = None;
        let mut storage_class = None;
        for (attribute, value) in attributes {
            match attribute {
                Attribute::Metadata(name) => {
                    user_metadata.insert(name.to_string(), value.to_string());
                }
                Attribute::ContentType => content_type = Some(value.to_string()),
                Attribute::StorageClass => storage_class = Some(value.to_string()),
                _ => {}
            }
        }
        ObjectMeta {
            key: key.clone(),
            size: meta.size,
            last_modified: SystemTime::from(meta.last_modified),
            etag: self.etag(meta.e_tag),
            storage_class: storage_class.filter(|class| class != "STANDARD"),
            content_type,
            user_metadata,
            restored: false,
        }
    }

    fn listed(&self, meta: object_store::ObjectMeta) -> ListedObject {
        ListedObject {
            key: ObjectKey::new(meta.location.as_ref()),
            size: meta.size,
            last_modified: SystemTime::from(meta.last_modified),
            etag: self.etag(meta.e_tag),
            storage_class: None,
        }
    }

    fn upload(&self, key: &ObjectKey, id: &UploadId) -> StoreResult<Arc<Upload>> {
        let uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match uploads.get(&id.0) {
            Some(upload) if upload.key == *key => Ok(Arc::clone(upload)),
            _ => Err(
                StoreError::new(StoreErrorKind::NotFound, "no such upload in this process")
                    .with_key(key.as_str())
                    .with_code("NoSuchUpload"),
            ),
        }
    }

    fn take_upload(&self, key: &ObjectKey, id: &UploadId) -> StoreResult<Box<dyn MultipartUpload>> {
        let upload = self.upload(key, id)?;
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.0);
        let inner = upload
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        inner.ok_or_else(|| {
            StoreError::new(StoreErrorKind::NotFound, "the upload is finished")
                .with_key(key.as_str())
                .with_code("NoSuchUpload")
        })
    }

    /// Writes the object `source` (read now) to `dest` with new attributes, part by part
    /// through this process: what a copy that replaces metadata is here.
    async fn rewrite(
        &self,
        source: &Path,
        dest: &Path,
        options: &PutOptions,
        if_match: Option<String>,
    ) -> StoreResult<()> {
        let (attributes, tags) = self.attributes_of(dest.as_ref(), options)?;
        let got = self
            .store
            .get_opts(
                source,
                GetOptions {
                    if_match,
                    ..GetOptions::default()
                },
            )
            .await
            .map_err(|e| map_error(e, "GetObject", source.as_ref()))?;
        let mut body = got.into_stream();
        let mut upload = self
            .store
            .put_multipart_opts(
                dest,
                PutMultipartOptions {
                    attributes,
                    tags,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| map_error(e, "CreateMultipartUpload", dest.as_ref()))?;
        let part_size =
            usize::try_from(self.capabilities.min_part_size.max(1)).unwrap_or(usize::MAX);
        let mut buffer = BytesMut::new();
        let copied: object_store::Result<()> = async {
            while let Some(chunk) = body.next().await {
                buffer.extend_from_slice(&chunk?);
                while buffer.len() >= part_size {
                    let part = buffer.split_to(part_size).freeze();
                    upload.put_part(PutPayload::from(part)).await?;
                }
            }
            if !buffer.is_empty() {
                upload
                    .put_part(PutPayload::from(buffer.split().freeze()))
                    .await?;
            }
            upload.complete().await.map(|_| ())
        }
        .await;
        if let Err(err) = copied {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(key = %dest, error = %abort, "could not abort a rewrite's upload");
            }
            return Err(map_error(err, "CopyObject", dest.as_ref()));
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for ObjectStoreBackend {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn bucket(&self) -> Option<String> {
        self.name.clone()
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<ObjectMeta> {
        let path = Self::path_to_read(key.as_str())?;
        // A HEAD that brings the attributes (`ObjectStoreExt::head` drops them).
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| map_error(e, "HeadObject", key.as_str()))?;
        Ok(self.meta(key, got.meta.clone(), &got.attributes))
    }

    async fn get(&self, request: GetRequest) -> StoreResult<GetResponse> {
        let key = request.key.as_str();
        let path = Self::path_to_read(key)?;
        let if_match = match &request.if_match {
            Some(etag) => Some(self.raw_etag(&path, etag).await),
            None => None,
        };
        let options = GetOptions {
            if_match: if_match.clone(),
            range: request
                .range
                .filter(|r| !r.is_empty())
                .map(|r| GetRange::Bounded(r.start..r.end)),
            ..GetOptions::default()
        };
        let got = match self.store.get_opts(&path, options).await {
            Ok(got) => got,
            Err(
                err @ (object_store::Error::NotFound { .. }
                | object_store::Error::Precondition { .. }),
            ) => return Err(map_error(err, "GetObject", key)),
            Err(err) => {
                // `object_store` refuses a range past the end in its own words; S3 answers
                // InvalidRange, or the whole body of an empty object.
                let Some(range) = request.range else {
                    return Err(map_error(err, "GetObject", key));
                };
                let head = self.head(&request.key).await?;
                if range.start < head.size {
                    return Err(map_error(err, "GetObject", key));
                }
                if head.size > 0 {
                    return Err(StoreError::range_past_end(key, range.start, head.size));
                }
                let whole = GetOptions {
                    if_match,
                    ..GetOptions::default()
                };
                self.store
                    .get_opts(&path, whole)
                    .await
                    .map_err(|e| map_error(e, "GetObject", key))?
            }
        };
        let meta = self.meta(&request.key, got.meta.clone(), &got.attributes);
        let range = ByteRange::new(got.range.start, got.range.end);
        let owned_key = key.to_owned();
        let body = got
            .into_stream()
            .map_err(move |e| map_error(e, "GetObject", &owned_key))
            .boxed();
        Ok(GetResponse { meta, range, body })
    }

    async fn list(&self, request: ListRequest) -> StoreResult<ListPage> {
        // object_store lists whole path segments: list the directory the prefix is in
        // and keep what starts with the prefix.
        let dir = match request.prefix.rfind('/') {
            Some(end) => &request.prefix[..end],
            None => "",
        };
        let dir = if dir.is_empty() {
            None
        } else {
            match Self::path(dir) {
                Ok(path) => Some(path),
                // No object lives under a prefix no path can hold.
                Err(_) => return Ok(ListPage::default()),
            }
        };
        let after = match (&request.start_after, &request.continuation_token) {
            (Some(a), Some(b)) => Some(a.max(b).clone()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        let after_ok = |key: &str| after.as_deref().is_none_or(|after| key > after);
        let mut entries: Vec<(String, Option<ListedObject>)> = match request.delimiter.as_deref() {
            None => {
                let offset = after.as_deref().and_then(|a| Self::path(a).ok());
                let stream = match &offset {
                    Some(offset) => self.store.list_with_offset(dir.as_ref(), offset),
                    None => self.store.list(dir.as_ref()),
                };
                let objects: Vec<object_store::ObjectMeta> = stream
                    .try_collect()
                    .await
                    .map_err(|e| map_error(e, "ListObjectsV2", &request.prefix))?;
                objects
                    .into_iter()
                    .map(|meta| self.listed(meta))
                    .filter(|o| {
                        o.key.as_str().starts_with(&request.prefix) && after_ok(o.key.as_str())
                    })
                    .map(|o| (o.key.as_str().to_owned(), Some(o)))
                    .collect()
            }
            Some("/") => {
                let listed = self
                    .store
                    .list_with_delimiter(dir.as_ref())
                    .await
                    .map_err(|e| map_error(e, "ListObjectsV2", &request.prefix))?;
                let prefixes = listed
                    .common_prefixes
                    .into_iter()
                    .map(|p| (format!("{}/", p.as_ref()), None));
                let objects = listed.objects.into_iter().map(|meta| {
                    let object = self.listed(meta);
                    (object.key.as_str().to_owned(), Some(object))
                });
                prefixes
                    .chain(objects)
                    .filter(|(key, _)| key.starts_with(&request.prefix) && after_ok(key))
                    .collect()
            }
            Some(other) => {
                return Err(not_implemented(
                    &request.prefix,
                    &format!("a LIST with delimiter {other:?} (object_store rolls up at `/` only)"),
                ))
            }
        };
        // object_store promises no order; S3 lists in key order, and pages follow it.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        let max_keys = usize::try_from(request.max_keys.unwrap_or(DEFAULT_MAX_KEYS).max(1))
            .unwrap_or(usize::MAX);
        let is_truncated = entries.len() > max_keys;
        entries.truncate(max_keys);
        let next_continuation_token = if is_truncated {
            entries.last().map(|(key, _)| key.clone())
        } else {
            None
        };
        let mut page = ListPage {
            is_truncated,
            next_continuation_token,
            ..ListPage::default()
        };
        for (key, object) in entries {
            match object {
                Some(object) => page.objects.push(object),
                None => page.common_prefixes.push(key),
            }
        }
        Ok(page)
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: PutOptions,
    ) -> StoreResult<PutResult> {
        let path = Self::path(key.as_str())?;
        let (attributes, tags) = self.attributes_of(key.as_str(), &options)?;
        let mode = match &options.condition {
            WriteCondition::None => PutMode::Overwrite,
            WriteCondition::IfNoneMatch => PutMode::Create,
            WriteCondition::IfMatch(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(self.raw_etag(&path, etag).await),
                version: None,
            }),
        };
        let options = object_store::PutOptions {
            mode,
            tags,
            attributes,
            ..Default::default()
        };
        let done = self
            .store
            .put_opts(&path, PutPayload::from(body), options)
            .await
            .map_err(|e| map_error(e, "PutObject", key.as_str()))?;
        Ok(PutResult {
            etag: self.etag(done.e_tag),
        })
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        options: PutOptions,
    ) -> StoreResult<UploadId> {
        let path = Self::path(key.as_str())?;
        let (attributes, tags) = self.attributes_of(key.as_str(), &options)?;
        let inner = self
            .store
            .put_multipart_opts(
                &path,
                PutMultipartOptions {
                    attributes,
                    tags,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| map_error(e, "CreateMultipartUpload", key.as_str()))?;
        let id = format!(
            "object-store-{}",
            self.next_upload.fetch_add(1, Ordering::Relaxed)
        );
        let (next_part, _) = watch::channel(1);
        let upload = Arc::new(Upload {
            key: key.clone(),
            inner: Mutex::new(Some(inner)),
            next_part,
        });
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), upload);
        Ok(UploadId(id))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Bytes,
    ) -> StoreResult<CompletedPart> {
        let upload = self.upload(key, upload_id)?;
        let mut turn = upload.next_part.subscribe();
        let waited = tokio::time::timeout(PART_ORDER_TIMEOUT, async {
            turn.wait_for(|next| *next >= part_number)
                .await
                .map(|next| *next)
        })
        .await;
        let out_of_order = |why: &str| {
            StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!("part {part_number} {why}"),
            )
            .with_key(key.as_str())
            .with_code("InvalidPartOrder")
        };
        match waited {
            Ok(Ok(next)) if next == part_number => {}
            Ok(Ok(_)) => return Err(out_of_order("was sent already: parts go up once, in order")),
            Ok(Err(_)) => return Err(out_of_order("belongs to an upload that is finished")),
            Err(_) => return Err(out_of_order("waited too long for the part before it")),
        }
        let sending = {
            // Checked again under the lock: two requests for one part number both waited.
            let mut inner = upload.inner.lock().unwrap_or_else(|e| e.into_inner());
            if *upload.next_part.borrow() != part_number {
                return Err(out_of_order("was sent already: parts go up once, in order"));
            }
            let Some(inner) = inner.as_mut() else {
                return Err(out_of_order("belongs to an upload that is finished"));
            };
            let sending = inner.put_part(PutPayload::from(body));
            upload.next_part.send_replace(part_number + 1);
            sending
        };
        sending
            .await
            .map_err(|e| map_error(e, "UploadPart", key.as_str()))?;
        Ok(CompletedPart {
            part_number,
            etag: ETag::new(format!("{}-{part_number}", upload_id.0)),
        })
    }

    async fn upload_part_copy(
        &self,
        key: &ObjectKey,
        _upload_id: &UploadId,
        _part_number: u32,
        _source: &CopySource,
        _source_range: Option<ByteRange>,
    ) -> StoreResult<CompletedPart> {
        Err(not_implemented(key.as_str(), "UploadPartCopy"))
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        if condition != WriteCondition::None {
            return Err(not_implemented(
                key.as_str(),
                "a conditional CompleteMultipartUpload",
            ));
        }
        let sent = *self.upload(key, upload_id)?.next_part.borrow() - 1;
        let in_order = parts.iter().zip(1..).all(|(part, n)| part.part_number == n);
        if !in_order || u32::try_from(parts.len()).ok() != Some(sent) {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!(
                    "the upload has parts 1..={sent}; completion lists {} others",
                    parts.len()
                ),
            )
            .with_key(key.as_str())
            .with_code("InvalidPart"));
        }
        let mut inner = self.take_upload(key, upload_id)?;
        match inner.complete().await {
            Ok(done) => Ok(PutResult {
                etag: self.etag(done.e_tag),
            }),
            Err(err) => {
                if let Err(abort) = inner.abort().await {
                    tracing::warn!(key = %key, error = %abort, "could not abort a failed upload");
                }
                Err(map_error(err, "CompleteMultipartUpload", key.as_str()))
            }
        }
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &UploadId) -> StoreResult<()> {
        let mut inner = self.take_upload(key, upload_id)?;
        inner
            .abort()
            .await
            .map_err(|e| map_error(e, "AbortMultipartUpload", key.as_str()))
    }

    async fn copy(&self, request: CopyRequest) -> StoreResult<PutResult> {
        let dest_key = request.dest.as_str();
        if let Some(bucket) = &request.source.bucket {
            return Err(not_implemented(
                dest_key,
                &format!("a copy from bucket {bucket}"),
            ));
        }
        let source = Self::path_to_read(request.source.key.as_str())?;
        let dest = Self::path(dest_key)?;
        let if_match = match &request.source.if_match {
            Some(etag) => Some(self.raw_etag(&source, etag).await),
            None => None,
        };
        match (&request.metadata, &request.condition) {
            (MetadataDirective::Replace(options), WriteCondition::None) if self.attributes => {
                self.rewrite(&source, &dest, options, if_match).await?;
            }
            (MetadataDirective::Replace(_), WriteCondition::None) => {
                return Err(not_implemented(
                    dest_key,
                    "a copy that replaces metadata on a backend without attributes",
                ));
            }
            (MetadataDirective::Copy, WriteCondition::None | WriteCondition::IfNoneMatch) => {
                if let Some(if_match) = if_match {
                    // object_store copies take no source condition: check just before.
                    let now = self
                        .store
                        .head(&source)
                        .await
                        .map_err(|e| map_error(e, "CopyObject", request.source.key.as_str()))?;
                    if now.e_tag.as_deref() != Some(if_match.as_str()) {
                        return Err(StoreError::new(
                            StoreErrorKind::PreconditionFailed,
                            "the copy source changed",
                        )
                        .with_key(request.source.key.as_str())
                        .with_code("PreconditionFailed"));
                    }
                }
                let mode = if request.condition == WriteCondition::IfNoneMatch {
                    CopyMode::Create
                } else {
                    CopyMode::Overwrite
                };
                self.store
                    .copy_opts(
                        &source,
                        &dest,
                        CopyOptions {
                            mode,
                            ..CopyOptions::default()
                        },
                    )
                    .await
                    .map_err(|e| map_error(e, "CopyObject", dest_key))?;
            }
            (_, condition) => {
                return Err(not_implemented(
                    dest_key,
                    &format!("a copy under condition {condition:?}"),
                ));
            }
        }
        let copied = self
            .store
            .head(&dest)
            .await
            .map_err(|e| map_error(e, "HeadObject", dest_key))?;
        Ok(PutResult {
            etag: self.etag(copied.e_tag),
        })
    }

    async fn get_tags(&self, key: &ObjectKey) -> StoreResult<BTreeMap<String, String>> {
        Err(not_implemented(key.as_str(), "GetObjectTagging"))
    }

    async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
        let Ok(path) = Self::path(key.as_str()) else {
            // No object can have it.
            return Ok(());
        };
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(map_error(err, "DeleteObject", key.as_str())),
        }
    }

    async fn delete_many(&self, keys: Vec<ObjectKey>) -> StoreResult<Vec<DeleteFailure>> {
        let mut failures = Vec::new();
        for key in keys {
            if let Err(error) = self.delete(&key).await {
                failures.push(DeleteFailure { key, error });
            }
        }
        Ok(failures)
    }
}

/// [`StoreErrorKind::InvalidRequest`] with code `NotImplemented`: what [`Backend`]
/// answers for a feature the backend lacks.
fn not_implemented(key: &str, what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::InvalidRequest,
        format!("{what} is not implemented over object_store"),
    )
    .with_key(key)
    .with_code("NotImplemented")
    .with_operation(ADAPTER)
}

/// The [`StoreError`] of an `object_store` error from `operation` on `key`: the kind the
/// variant stands for, its name as the code.
pub(crate) fn map_error(
    err: object_store::Error,
    operation: &'static str,
    key: &str,
) -> StoreError {
    use object_store::Error as E;
    let (kind, code) = match &err {
        E::NotFound { .. } => (StoreErrorKind::NotFound, "NoSuchKey"),
        // What S3 answers a PUT or copy with If-None-Match over an existing key.
        E::AlreadyExists { .. } => (StoreErrorKind::PreconditionFailed, "AlreadyExists"),
        E::Precondition { .. } => (StoreErrorKind::PreconditionFailed, "PreconditionFailed"),
        E::NotModified { .. } => (StoreErrorKind::PreconditionFailed, "NotModified"),
        E::NotImplemented { .. } => (StoreErrorKind::InvalidRequest, "NotImplemented"),
        E::NotSupported { .. } => (StoreErrorKind::InvalidRequest, "NotSupported"),
        E::PermissionDenied { .. } => (StoreErrorKind::AccessDenied, "AccessDenied"),
        E::Unauthenticated { .. } => (StoreErrorKind::AccessDenied, "Unauthenticated"),
        E::InvalidPath { .. } => (StoreErrorKind::InvalidRequest, "InvalidObjectName"),
        E::UnknownConfigurationKey { .. } => {
            (StoreErrorKind::InvalidRequest, "UnknownConfigurationKey")
        }
        // object_store retries transient failures itself; an I/O error of a local
        // backend says what it is.
        _ => (io_kind(&err).unwrap_or(StoreErrorKind::Other), "Generic"),
    };
    StoreError::new(kind, err.to_string())
        .with_key(key)
        .with_code(code)
        .with_operation(operation)
}

/// The kind of the first I/O error among `err`'s causes.
fn io_kind(err: &(dyn std::error::Error + 'static)) -> Option<StoreErrorKind> {
    use std::io::ErrorKind as K;
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                K::NotFound => StoreErrorKind::NotFound,
                K::PermissionDenied => StoreErrorKind::AccessDenied,
                K::TimedOut
                | K::Interrupted
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::WouldBlock => StoreErrorKind::Transient,
                _ => StoreErrorKind::Other,
            });
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::Error as E;
    use std::io;

    fn mem() -> ObjectStoreBackend {
        ObjectStoreBackend::new(Arc::new(InMemory::new()))
    }

    fn local(dir: &tempfile::TempDir) -> ObjectStoreBackend {
        let url = format!("file://{}", dir.path().display());
        match ObjectStoreBackend::from_url(&url) {
            Ok(backend) => backend,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k)
    }

    fn boxed(message: &str) -> Box<dyn std::error::Error + Send + Sync> {
        message.into()
    }

    fn kind_and_code(err: E) -> (StoreErrorKind, Option<String>) {
        let mapped = map_error(err, "HeadObject", "k");
        assert_eq!(mapped.key.as_deref(), Some("k"));
        assert_eq!(mapped.operation, Some("HeadObject"));
        (mapped.kind, mapped.code)
    }

    fn code(c: &str) -> Option<String> {
        Some(c.to_owned())
    }

    #[test]
    fn not_found_is_not_found() {
        let err = E::NotFound {
            path: "k".into(),
            source: boxed("gone"),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::NotFound, code("NoSuchKey"))
        );
    }

    #[test]
    fn already_exists_is_a_failed_if_none_match() {
        let err = E::AlreadyExists {
            path: "k".into(),
            source: boxed("there"),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::PreconditionFailed, code("AlreadyExists"))
        );
    }

    #[test]
    fn precondition_is_a_failed_condition() {
        let err = E::Precondition {
            path: "k".into(),
            source: boxed("etag"),
        };
        assert_eq!(
            kind_and_code(err),
            (
                StoreErrorKind::PreconditionFailed,
                code("PreconditionFailed")
            )
        );
    }

    #[test]
    fn not_modified_is_a_failed_condition() {
        let err = E::NotModified {
            path: "k".into(),
            source: boxed("same"),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::PreconditionFailed, code("NotModified"))
        );
    }

    #[test]
    fn not_implemented_keeps_the_backend_convention() {
        let err = E::NotImplemented {
            operation: "put_opts".into(),
            implementer: "Test".into(),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::InvalidRequest, code("NotImplemented"))
        );
    }

    #[test]
    fn not_supported_is_an_invalid_request() {
        let err = E::NotSupported {
            source: boxed("copy_if_not_exists"),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::InvalidRequest, code("NotSupported"))
        );
    }

    #[test]
    fn permission_denied_and_unauthenticated_are_access_denied() {
        let err = E::PermissionDenied {
            path: "k".into(),
            source: boxed("no"),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::AccessDenied, code("AccessDenied"))
        );
        let err = E::Unauthenticated {
            path: "k".into(),
            source: boxed("who"),
        };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::AccessDenied, code("Unauthenticated"))
        );
    }

    #[test]
    fn invalid_path_is_an_invalid_object_name() {
        let Err(source) = Path::parse("a//b") else {
            panic!("a//b parsed");
        };
        let err = E::InvalidPath { source };
        assert_eq!(
            kind_and_code(err),
            (StoreErrorKind::InvalidRequest, code("InvalidObjectName"))
        );
    }

    #[test]
    fn unknown_configuration_key_is_an_invalid_request() {
        let err = E::UnknownConfigurationKey {
            store: "S3",
            key: "x".into(),
        };
        assert_eq!(
            kind_and_code(err),
            (
                StoreErrorKind::InvalidRequest,
                code("UnknownConfigurationKey")
            )
        );
    }

    #[test]
    fn generic_errors_take_the_kind_of_an_io_cause() {
        let io_err = |kind| E::Generic {
            store: "LocalFileSystem",
            source: Box::new(io::Error::new(kind, "io")),
        };
        assert_eq!(
            kind_and_code(io_err(io::ErrorKind::TimedOut)).0,
            StoreErrorKind::Transient
        );
        assert_eq!(
            kind_and_code(io_err(io::ErrorKind::PermissionDenied)).0,
            StoreErrorKind::AccessDenied
        );
        assert_eq!(
            kind_and_code(io_err(io::ErrorKind::NotFound)).0,
            StoreErrorKind::NotFound
        );
        assert_eq!(
            kind_and_code(io_err(io::ErrorKind::StorageFull)).0,
            StoreErrorKind::Other
        );
        let plain = E::Generic {
            store: "S3",
            source: boxed("500 after 10 retries"),
        };
        assert_eq!(
            kind_and_code(plain),
            (StoreErrorKind::Other, code("Generic"))
        );
    }

    #[tokio::test]
    async fn keys_no_path_can_hold_are_refused_on_writes_and_missing_on_reads() {
        let store = mem();
        for bad in ["d/", "/d", "a//b", "a/../b", "./a", ""] {
            let err = store
                .put(&key(bad), Bytes::from_static(b"x"), PutOptions::default())
                .await
                .unwrap_err();
            assert_eq!(
                (err.kind, err.code.as_deref()),
                (StoreErrorKind::InvalidRequest, Some("InvalidObjectName")),
                "{bad:?}"
            );
            assert_eq!(
                store.head(&key(bad)).await.unwrap_err().kind,
                StoreErrorKind::NotFound,
                "{bad:?}"
            );
            assert_eq!(
                store
                    .get(GetRequest::whole(key(bad)))
                    .await
                    .unwrap_err()
                    .kind,
                StoreErrorKind::NotFound
            );
            store.delete(&key(bad)).await.unwrap();
        }
        // `d/` is not `d`: the marker must not overwrite a file of the same name.
        store
            .put(
                &key("d"),
                Bytes::from_static(b"file"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert!(store
            .put(&key("d/"), Bytes::new(), PutOptions::default())
            .await
            .is_err());
        assert_eq!(
            store
                .get(GetRequest::whole(key("d")))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
            "file"
        );
    }

    async fn put(store: &ObjectStoreBackend, k: &str, body: &'static str) -> Option<ETag> {
        store
            .put(
                &key(k),
                Bytes::from_static(body.as_bytes()),
                PutOptions::default(),
            )
            .await
            .unwrap()
            .etag
    }

    async fn list(store: &ObjectStoreBackend, request: ListRequest) -> (Vec<String>, Vec<String>) {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut request = request;
        let mut pages = 0;
        loop {
            let page = store.list(request.clone()).await.unwrap();
            assert!(
                page.objects.len() + page.common_prefixes.len()
                    <= request.max_keys.unwrap_or(1000) as usize
            );
            objects.extend(page.objects.into_iter().map(|o| o.key.into_string()));
            prefixes.extend(page.common_prefixes);
            pages += 1;
            assert!(pages < 100, "paging does not end");
            match page.next_continuation_token {
                Some(token) if page.is_truncated => request.continuation_token = Some(token),
                _ => return (objects, prefixes),
            }
        }
    }

    #[tokio::test]
    async fn listings_page_in_key_order_on_every_backend() {
        let dir = tempfile::tempdir().unwrap();
        for store in [mem(), local(&dir)] {
            for k in ["a/x", "a/b/1", "a/b/2", "a/bc", "a/c/d/e", "ab", "b"] {
                put(&store, k, "v").await;
            }
            let all = ListRequest {
                max_keys: Some(2),
                ..ListRequest::default()
            };
            let (objects, prefixes) = list(&store, all).await;
            assert_eq!(
                objects,
                ["a/b/1", "a/b/2", "a/bc", "a/c/d/e", "a/x", "ab", "b"],
                "{store:?}"
            );
            assert!(prefixes.is_empty());

            let children = ListRequest {
                prefix: "a/".into(),
                delimiter: Some("/".into()),
                max_keys: Some(2),
                ..ListRequest::default()
            };
            let (objects, prefixes) = list(&store, children).await;
            assert_eq!(objects, ["a/bc", "a/x"]);
            assert_eq!(prefixes, ["a/b/", "a/c/"]);

            // A prefix that ends inside a name.
            let partial = ListRequest {
                prefix: "a/b".into(),
                delimiter: Some("/".into()),
                ..ListRequest::default()
            };
            assert_eq!(
                list(&store, partial).await,
                (vec!["a/bc".to_owned()], vec!["a/b/".to_owned()])
            );
            let partial = ListRequest {
                prefix: "a".into(),
                ..ListRequest::default()
            };
            assert_eq!(list(&store, partial).await.0.len(), 6);

            let after = ListRequest {
                prefix: "a/".into(),
                start_after: Some("a/b/2".into()),
                ..ListRequest::default()
            };
            assert_eq!(list(&store, after).await.0, ["a/bc", "a/c/d/e", "a/x"]);
            let missing = ListRequest {
                prefix: "zz/".into(),
                delimiter: Some("/".into()),
                ..ListRequest::default()
            };
            assert_eq!(list(&store, missing).await, (vec![], vec![]));

            let other = ListRequest {
                delimiter: Some("-".into()),
                ..ListRequest::default()
            };
            let err = store.list(other).await.unwrap_err();
            assert_eq!(err.code.as_deref(), Some("NotImplemented"));
        }
    }

    #[tokio::test]
    async fn ranged_gets_clamp_refuse_past_the_end_and_check_the_etag() {
        let dir = tempfile::tempdir().unwrap();
        for store in [mem(), local(&dir)] {
            let etag = put(&store, "f", "0123456789").await;
            put(&store, "empty", "").await;
            let get = |range: Option<(u64, u64)>, if_match: Option<ETag>| GetRequest {
                key: key("f"),
                range: range.map(|(s, e)| ByteRange::new(s, e)),
                if_match,
            };
            let got = store.get(get(Some((2, 5)), etag.clone())).await.unwrap();
            assert_eq!((got.range, got.meta.size), (ByteRange::new(2, 5), 10));
            assert_eq!(got.collect().await.unwrap(), "234");
            let clamped = store.get(get(Some((8, 20)), None)).await.unwrap();
            assert_eq!(clamped.range, ByteRange::new(8, 10));
            assert_eq!(clamped.collect().await.unwrap(), "89");
            let past = store.get(get(Some((10, 20)), None)).await.unwrap_err();
            assert_eq!(past.kind, StoreErrorKind::InvalidRange, "{past}");
            let empty = GetRequest {
                range: Some(ByteRange::new(0, 100)),
                ..GetRequest::whole(key("empty"))
            };
            assert_eq!(store.get(empty).await.unwrap().collect().await.unwrap(), "");
            let stale = store
                .get(get(None, Some(ETag::new("other"))))
                .await
                .unwrap_err();
            assert_eq!(stale.kind, StoreErrorKind::PreconditionFailed, "{stale}");
        }
    }

    #[tokio::test]
    async fn single_puts_honour_conditions() {
        let store = mem();
        let first = put(&store, "k", "one").await.unwrap();
        let create = |condition| PutOptions {
            condition,
            ..PutOptions::default()
        };
        let err = store
            .put(
                &key("k"),
                Bytes::from_static(b"x"),
                create(WriteCondition::IfNoneMatch),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
        let second = store
            .put(
                &key("k"),
                Bytes::from_static(b"two"),
                create(WriteCondition::IfMatch(first.clone())),
            )
            .await
            .unwrap();
        assert_ne!(second.etag.as_ref(), Some(&first));
        let err = store
            .put(
                &key("k"),
                Bytes::from_static(b"x"),
                create(WriteCondition::IfMatch(first)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::PreconditionFailed);
        assert_eq!(
            store
                .get(GetRequest::whole(key("k")))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
            "two"
        );
        // What the adapter cannot do for every write, it does not claim.
        let caps = store.capabilities();
        assert!(!caps.conditional_writes && !caps.upload_part_copy && !caps.delete_many);
        assert_eq!(
            store.get_tags(&key("k")).await.unwrap_err().code.as_deref(),
            Some("NotImplemented")
        );

        let dir = tempfile::tempdir().unwrap();
        let local = local(&dir);
        let etag = put(&local, "k", "one").await.unwrap();
        let err = local
            .put(
                &key("k"),
                Bytes::new(),
                create(WriteCondition::IfMatch(etag)),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code.as_deref(), Some("NotImplemented"), "{err}");
    }

    fn with_mode(mode: u32) -> PutOptions {
        let mut options = PutOptions::default();
        options
            .user_metadata
            .insert("mode".into(), mode.to_string());
        options.content_type = Some("text/plain".into());
        options
    }

    #[tokio::test]
    async fn multipart_parts_go_up_in_order_and_keep_the_attributes() {
        let store = Arc::new(mem());
        let k = key("big");
        let id = store
            .create_multipart(&k, with_mode(0o100600))
            .await
            .unwrap();
        // Part 2 asks first: it waits for part 1 to start.
        let second = tokio::spawn({
            let (store, k, id) = (Arc::clone(&store), k.clone(), id.clone());
            async move {
                store
                    .upload_part(&k, &id, 2, Bytes::from_static(b"world"))
                    .await
            }
        });
        tokio::task::yield_now().await;
        let first = store
            .upload_part(&k, &id, 1, Bytes::from_static(b"hello "))
            .await
            .unwrap();
        let second = second.await.unwrap().unwrap();
        let again = store
            .upload_part(&k, &id, 1, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(again.code.as_deref(), Some("InvalidPartOrder"));
        let conditional = store
            .complete_multipart(
                &k,
                &id,
                vec![first.clone(), second.clone()],
                WriteCondition::IfNoneMatch,
            )
            .await;
        assert_eq!(
            conditional.unwrap_err().code.as_deref(),
            Some("NotImplemented")
        );
        let missing = store
            .complete_multipart(&k, &id, vec![first.clone()], WriteCondition::None)
            .await;
        assert_eq!(missing.unwrap_err().code.as_deref(), Some("InvalidPart"));
        store
            .complete_multipart(&k, &id, vec![first, second], WriteCondition::None)
            .await
            .unwrap();
        assert_eq!(store.open_uploads(), 0);
        let got = store.get(GetRequest::whole(k.clone())).await.unwrap();
        assert_eq!(
            got.meta.user_metadata.get("mode").map(String::as_str),
            Some("33152")
        );
        assert_eq!(got.meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(got.collect().await.unwrap(), "hello world");

        let aborted = store
            .create_multipart(&key("gone"), PutOptions::default())
            .await
            .unwrap();
        store
            .upload_part(&key("gone"), &aborted, 1, Bytes::from_static(b"x"))
            .await
            .unwrap();
        store.abort_multipart(&key("gone"), &aborted).await.unwrap();
        assert_eq!(
            store.head(&key("gone")).await.unwrap_err().kind,
            StoreErrorKind::NotFound
        );
        let err = store
            .abort_multipart(&key("gone"), &aborted)
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind, err.code.as_deref()),
            (StoreErrorKind::NotFound, Some("NoSuchUpload"))
        );
    }

    #[tokio::test]
    async fn copies_keep_or_replace_metadata_and_check_the_pinned_source() {
        let store = mem();
        let etag = store
            .put(
                &key("src"),
                Bytes::from_static(b"data"),
                with_mode(0o100644),
            )
            .await
            .unwrap()
            .etag;
        let copy = |dest: &str, metadata, pin: Option<ETag>| CopyRequest {
            source: CopySource::new(key("src")).pinned(pin),
            dest: key(dest),
            metadata,
            condition: WriteCondition::None,
        };
        let kept = store
            .copy(copy("same", MetadataDirective::Copy, etag.clone()))
            .await
            .unwrap();
        assert!(kept.etag.is_some());
        assert_eq!(
            store
                .head(&key("same"))
                .await
                .unwrap()
                .user_metadata
                .get("mode")
                .map(String::as_str),
            Some("33188")
        );
        store
            .copy(copy(
                "new",
                MetadataDirective::Replace(with_mode(0o100600)),
                etag.clone(),
            ))
            .await
            .unwrap();
        let replaced = store.get(GetRequest::whole(key("new"))).await.unwrap();
        assert_eq!(
            replaced.meta.user_metadata.get("mode").map(String::as_str),
            Some("33152")
        );
        assert_eq!(replaced.collect().await.unwrap(), "data");
        let stale = Some(ETag::new("stale"));
        for metadata in [
            MetadataDirective::Copy,
            MetadataDirective::Replace(PutOptions::default()),
        ] {
            let err = store
                .copy(copy("x", metadata, stale.clone()))
                .await
                .unwrap_err();
            assert_eq!(err.kind, StoreErrorKind::PreconditionFailed, "{err}");
        }
        assert_eq!(
            store.head(&key("x")).await.unwrap_err().kind,
            StoreErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn a_backend_without_attributes_refuses_what_only_metadata_would_say() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(&dir);
        // A plain file's mode is dropped: it shows the defaults.
        store
            .put(&key("f"), Bytes::from_static(b"x"), with_mode(0o100600))
            .await
            .unwrap();
        assert!(store
            .head(&key("f"))
            .await
            .unwrap()
            .user_metadata
            .is_empty());
        let link = store
            .put(
                &key("l"),
                Bytes::from_static(b"target"),
                with_mode(0o120777),
            )
            .await
            .unwrap_err();
        assert_eq!(link.code.as_deref(), Some("NotImplemented"), "{link}");
        let request = CopyRequest {
            source: CopySource::new(key("f")),
            dest: key("f"),
            metadata: MetadataDirective::Replace(with_mode(0o100644)),
            condition: WriteCondition::None,
        };
        assert_eq!(
            store.copy(request).await.unwrap_err().code.as_deref(),
            Some("NotImplemented")
        );
        assert!(dir.path().join("f").is_file() && !dir.path().join("l").exists());
    }
}
