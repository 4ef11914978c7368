//! An in-memory S3 bucket with S3's rules, for tests and demos.
//!
//! [`MemStore`] owns a map of objects (key → body, ETag, Last-Modified, metadata, storage
//! class) and the open multipart uploads of one bucket. It keeps the invariants of Amazon
//! S3 that the file system depends on:
//! - strong read-after-write consistency: every request sees every earlier write;
//! - LIST is ListObjectsV2 exactly: byte order, prefix, delimiter roll-up into common
//!   prefixes (each returned once across all pages), `max_keys` counting keys and prefixes
//!   together (default and cap 1000), opaque continuation tokens, `start_after`;
//! - a multipart object appears atomically at CompleteMultipartUpload, never before; open
//!   uploads stay open (and are counted by [`MemStore::open_uploads`]) until completed or
//!   aborted; the completion keeps the parts as the object's pieces, copying no byte, so
//!   that it costs its client's machine nothing, as S3's does;
//! - ETags are what S3 computes: the quoted hex MD5 of the body for a single PUT or a copy,
//!   `"<md5 of the part MD5s>-<part count>"` for a multipart upload;
//! - limits and optional features come from [`Capabilities`]: with
//!   `conditional_writes == false` write conditions are ignored (as Garage does), so callers
//!   can test both strategies.
//!
//! The state sits behind one `std::sync::Mutex` in an `Arc`: clones share the bucket, and no
//! lock is ever held across an `.await` (no method awaits anything).
//!
//! [`MemBuckets`] serves several named stores and [`SingleBucket`] serves any one store
//! through [`BucketProvider`].
//!
//! # Persistence
//!
//! [`MemStore::persisted`] keeps the bucket in a directory across restarts: every object is
//! one file `<hex md5 of the key>.obj`, written to a `.tmp` file and renamed into place on
//! every change (so a file is always either the old or the new object). A file is a text
//! header followed by an empty line and the raw body:
//!
//! ```text
//! s3vfs-memstore-object 1
//! key <hex of the key>
//! etag <hex of the ETag, quotes included>
//! mtime <nanoseconds since the Unix epoch>
//! type <hex of the Content-Type>          (optional)
//! class <hex of the storage class>        (optional)
//! restored 1                              (optional)
//! meta <hex of the name> <hex of the value>   (one line per user metadata entry)
//! tag <hex of the name> <hex of the value>    (one line per tag)
//!
//! <body bytes>
//! ```
//!
//! Multipart uploads are not persisted: after a restart they are gone, as if abandoned and
//! cleaned up by a lifecycle rule. Files are not fsynced; this is for demos, not durability.

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use s3vfs::store::{
    storage_class, Backend, BucketProvider, ByteRange, Capabilities, CompletedPart, CopyRequest,
    CopySource, DeleteFailure, ETag, GetRequest, GetResponse, ListPage, ListRequest, ListedObject,
    MetadataDirective, ObjectKey, ObjectMeta, PutOptions, PutResult, StoreError, StoreErrorKind,
    StoreResult, UploadId, WriteCondition,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod body;

use body::Body;

/// Size of the chunks a GET body stream yields, so that streaming readers see several.
pub const GET_CHUNK_SIZE: usize = 64 * 1024;

/// Most keys plus common prefixes in one LIST page (also the default).
const MAX_LIST_KEYS: u32 = 1000;

/// Most keys in one DeleteObjects request.
const MAX_DELETE_KEYS: usize = 1000;

/// Highest part number S3 accepts, whatever the store's `max_parts`.
const MAX_PART_NUMBER: u32 = 10_000;

/// First line of a persisted object file.
const PERSIST_MAGIC: &str = "s3vfs-memstore-object 1";

/// One stored object.
#[derive(Clone, Debug)]
struct Object {
    body: Body,
    etag: ETag,
    last_modified: SystemTime,
    user_metadata: BTreeMap<String, String>,
    content_type: Option<String>,
    /// `None` means STANDARD.
    storage_class: Option<String>,
    restored: bool,
    tags: BTreeMap<String, String>,
}

impl Object {
    /// A new object written now with `options`' metadata.
    fn new(body: Body, etag: ETag, options: &PutOptions) -> Self {
        Self {
            body,
            etag,
            last_modified: SystemTime::now(),
            user_metadata: options.user_metadata.clone(),
            content_type: options.content_type.clone(),
            storage_class: normalize_class(options.storage_class.as_deref()),
            restored: false,
            tags: options.tags.clone(),
        }
    }

    fn size(&self) -> u64 {
        self.body.len() as u64
    }

    fn meta(&self, key: &str) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::new(key),
            size: self.size(),
            last_modified: self.last_modified,
            etag: Some(self.etag.clone()),
            storage_class: self.storage_class.clone(),
            content_type: self.content_type.clone(),
            user_metadata: self.user_metadata.clone(),
            restored: self.restored,
        }
    }

    fn listed(&self, key: &str) -> ListedObject {
        ListedObject {
            key: ObjectKey::new(key),
            size: self.size(),
            last_modified: self.last_modified,
            etag: Some(self.etag.clone()),
            storage_class: self.storage_class.clone(),
        }
    }

    /// Whether a GET (or a copy) must fail until the object is restored.
    fn is_unreadable(&self) -> bool {
        storage_class::is_archived(self.storage_class.as_deref()) && !self.restored
    }
}

/// One uploaded part of an open multipart upload.
#[derive(Clone, Debug)]
struct Part {
    body: Bytes,
    md5: [u8; 16],
    etag: ETag,
}

impl Part {
    fn new(body: Bytes) -> Self {
        let md5: [u8; 16] = Md5::digest(&body).into();
        Self {
            etag: ETag::new(hex::encode(md5)),
            md5,
            body,
        }
    }
}

/// One open multipart upload.
#[derive(Debug)]
struct Upload {
    key: String,
    options: PutOptions,
    parts: BTreeMap<u32, Part>,
}

/// Everything behind the lock.
#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, Object>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
    capabilities: Capabilities,
    persist: Option<Persist>,
    /// The bucket's name and its siblings, when it belongs to a [`MemBuckets`] (copies
    /// may read from another bucket of the same "endpoint").
    home: Option<Home>,
}

/// Where a bucket of a [`MemBuckets`] lives.
#[derive(Clone, Debug)]
struct Home {
    name: String,
    buckets: Weak<Mutex<BTreeMap<String, MemStore>>>,
}

impl State {
    /// Stores `object` under `key`, writing it through to disk first if persisted.
    fn commit(&mut self, key: &str, object: Object) -> StoreResult<()> {
        if let Some(persist) = &self.persist {
            persist
                .save(key, &object)
                .map_err(|e| persist_error(key, &e))?;
        }
        self.objects.insert(key.to_owned(), object);
        Ok(())
    }

    /// Removes `key`, from disk too if persisted.
    fn remove(&mut self, key: &str) -> StoreResult<Option<Object>> {
        if let Some(persist) = &self.persist {
            persist.remove(key).map_err(|e| persist_error(key, &e))?;
        }
        Ok(self.objects.remove(key))
    }

    /// Changes an object's metadata in place (test setters), writing it through.
    fn update(&mut self, key: &str, change: impl FnOnce(&mut Object)) -> bool {
        let Some(mut object) = self.objects.get(key).cloned() else {
            return false;
        };
        change(&mut object);
        if let Err(e) = self.commit(key, object.clone()) {
            tracing::error!(key, error = %e, "MemStore: could not persist a metadata change");
            self.objects.insert(key.to_owned(), object);
        }
        true
    }

    /// The upload `upload_id`, if it is open for `key`.
    fn upload_mut(&mut self, key: &str, upload_id: &UploadId) -> StoreResult<&mut Upload> {
        match self.uploads.get_mut(&upload_id.0) {
            Some(upload) if upload.key == key => Ok(upload),
            _ => Err(no_such_upload(key, upload_id)),
        }
    }
}

/// An in-memory S3 bucket implementing [`Backend`] with S3's rules.
///
/// Clones share the same bucket. The synchronous helpers ([`insert`](Self::insert),
/// [`get_bytes`](Self::get_bytes), [`keys`](Self::keys), …) let tests set up and inspect the
/// bucket without going through the async trait.
///
/// ```
/// use s3vfs_testkit::MemStore;
/// let store = MemStore::new();
/// store.insert("dir/a.txt", "hello");
/// assert_eq!(store.keys(), vec!["dir/a.txt".to_string()]);
/// assert_eq!(store.get_bytes("dir/a.txt").as_deref(), Some(&b"hello"[..]));
/// ```
#[derive(Clone, Default)]
pub struct MemStore {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemStore")
            .field("objects", &state.objects.len())
            .field("open_uploads", &state.uploads.len())
            .field("capabilities", &state.capabilities)
            .field("persist", &state.persist.as_ref().map(|p| &p.dir))
            .finish()
    }
}

impl MemStore {
    /// An empty bucket with Amazon S3's capabilities and limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bucket with the given capabilities (e.g. a small `min_part_size` so that
    /// multipart tests stay small, or `conditional_writes: false` to behave like Garage).
    pub fn with_capabilities(capabilities: Capabilities) -> Self {
        let store = Self::new();
        store.lock().capabilities = capabilities;
        store
    }

    /// A bucket kept in directory `dir` (created if missing): objects saved there are loaded
    /// now and every change is written through. See the [module docs](self) for the format.
    ///
    /// # Errors
    ///
    /// Fails if the directory cannot be created or read, or holds an unreadable object file.
    pub fn persisted(dir: &Path) -> io::Result<Self> {
        let persist = Persist::open(dir)?;
        let objects = persist.load()?;
        let store = Self::new();
        {
            let mut state = store.lock();
            state.objects = objects;
            state.persist = Some(persist);
        }
        Ok(store)
    }

    /// Replaces the store's capabilities.
    pub fn set_capabilities(&self, capabilities: Capabilities) {
        self.lock().capabilities = capabilities;
    }

    /// Stores `body` under `key` with no metadata, as an unconditional PUT would (no size
    /// limit). Returns the new ETag.
    pub fn insert(&self, key: impl Into<String>, body: impl Into<Bytes>) -> ETag {
        self.insert_with(key, body, PutOptions::default())
    }

    /// Stores `body` under `key` with the metadata, content type and storage class of
    /// `options` (its condition and encryption are ignored). Returns the new ETag.
    ///
    /// A failure to write a persisted bucket through to disk is logged; the object is kept
    /// in memory anyway.
    pub fn insert_with(
        &self,
        key: impl Into<String>,
        body: impl Into<Bytes>,
        options: PutOptions,
    ) -> ETag {
        let key = key.into();
        let body = body.into();
        let etag = md5_etag(&body);
        let object = Object::new(body.into(), etag.clone(), &options);
        let mut state = self.lock();
        if let Err(e) = state.commit(&key, object.clone()) {
            tracing::error!(key, error = %e, "MemStore: could not persist an inserted object");
            state.objects.insert(key, object);
        }
        etag
    }

    /// The body of `key`, if it exists (whatever its storage class).
    pub fn get_bytes(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).map(|o| o.body.to_bytes())
    }

    /// What HEAD would return for `key`.
    pub fn meta(&self, key: &str) -> Option<ObjectMeta> {
        self.lock().objects.get(key).map(|o| o.meta(key))
    }

    /// Every key, in byte order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Every key starting with `prefix`, in byte order.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.lock()
            .objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether the bucket holds no object.
    pub fn is_empty(&self) -> bool {
        self.lock().objects.is_empty()
    }

    /// Removes `key`, returning its body if it existed.
    pub fn remove(&self, key: &str) -> Option<Bytes> {
        let mut state = self.lock();
        match state.remove(key) {
            Ok(object) => object.map(|o| o.body.to_bytes()),
            Err(e) => {
                tracing::error!(key, error = %e, "MemStore: could not persist a removal");
                state.objects.remove(key).map(|o| o.body.to_bytes())
            }
        }
    }

    /// Forces the storage class of `key` (e.g. `"GLACIER"` to simulate an archived object;
    /// `"STANDARD"` is stored as `None`). Clears the restored flag. Returns whether the key
    /// exists.
    pub fn set_storage_class(&self, key: &str, class: &str) -> bool {
        self.lock().update(key, |o| {
            o.storage_class = normalize_class(Some(class));
            o.restored = false;
        })
    }

    /// Marks an archived object as restored (readable) or not. Returns whether the key
    /// exists.
    pub fn set_restored(&self, key: &str, restored: bool) -> bool {
        self.lock().update(key, |o| o.restored = restored)
    }

    /// Forces the Last-Modified time of `key`. Returns whether the key exists.
    pub fn set_last_modified(&self, key: &str, time: SystemTime) -> bool {
        self.lock().update(key, |o| o.last_modified = time)
    }

    /// Number of multipart uploads created and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Keys of the open multipart uploads, sorted (one entry per upload).
    pub fn open_upload_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .lock()
            .uploads
            .values()
            .map(|u| u.key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Whether `source` names this bucket.
    fn is_same_bucket(&self, source: &CopySource) -> bool {
        match &source.bucket {
            None => true,
            Some(name) => self.lock().home.as_ref().is_some_and(|h| h.name == *name),
        }
    }

    /// The object a copy reads, as it is now: in this bucket or in a sibling bucket of the
    /// same [`MemBuckets`]; checked against the source's ETag pin and readability.
    fn copy_source_object(&self, source: &CopySource) -> StoreResult<Object> {
        let sibling = match &source.bucket {
            Some(name) if !self.is_same_bucket(source) => {
                let home = self.lock().home.clone();
                let found = home.and_then(|h| h.buckets.upgrade()).and_then(|map| {
                    map.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(name)
                        .cloned()
                });
                Some(found.ok_or_else(|| no_such_bucket(name))?)
            }
            _ => None,
        };
        let state = sibling.as_ref().unwrap_or(self).lock();
        let key = source.key.as_str();
        let object = state
            .objects
            .get(key)
            .ok_or_else(|| StoreError::not_found(key))?;
        if let Some(tag) = &source.if_match {
            check_etag(key, &object.etag, tag)?;
        }
        if object.is_unreadable() {
            return Err(archived(key));
        }
        Ok(object.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this bucket's state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Backend for MemStore {
    fn capabilities(&self) -> Capabilities {
        self.lock().capabilities
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<ObjectMeta> {
        let state = self.lock();
        let object = state
            .objects
            .get(key.as_str())
            .ok_or_else(|| StoreError::not_found(key.as_str()))?;
        Ok(object.meta(key.as_str()))
    }

    async fn get(&self, request: GetRequest) -> StoreResult<GetResponse> {
        let key = request.key.as_str();
        let (meta, body, range) = {
            let state = self.lock();
            let object = state
                .objects
                .get(key)
                .ok_or_else(|| StoreError::not_found(key))?;
            if let Some(tag) = &request.if_match {
                check_etag(key, &object.etag, tag)?;
            }
            if object.is_unreadable() {
                return Err(archived(key));
            }
            let size = object.size();
            let range = match request.range {
                None => ByteRange::new(0, size),
                Some(r) if r.start > r.end => {
                    return Err(store_error(
                        StoreErrorKind::InvalidRequest,
                        "InvalidArgument",
                        key,
                        format!("range start {} is after its end {}", r.start, r.end),
                    ))
                }
                Some(_) if size == 0 => ByteRange::new(0, 0),
                Some(r) if r.start >= size => {
                    return Err(StoreError::range_past_end(key, r.start, size))
                }
                Some(r) => ByteRange::new(r.start, r.end.min(size)),
            };
            (object.meta(key), object.body.clone(), range)
        };
        // Both bounds are at most the body's length, which is a usize.
        let chunks: Vec<StoreResult<Bytes>> = body
            .slices(range.start as usize..range.end as usize)
            .into_iter()
            .flat_map(|data| {
                (0..data.len())
                    .step_by(GET_CHUNK_SIZE)
                    .map(move |at| Ok(data.slice(at..data.len().min(at + GET_CHUNK_SIZE))))
            })
            .collect();
        Ok(GetResponse {
            meta,
            range,
            body: Box::pin(futures::stream::iter(chunks)),
        })
    }

    async fn list(&self, request: ListRequest) -> StoreResult<ListPage> {
        list_page(&self.lock().objects, &request)
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: PutOptions,
    ) -> StoreResult<PutResult> {
        let key = key.as_str();
        let mut state = self.lock();
        let capabilities = state.capabilities;
        if body.len() as u64 > capabilities.max_single_put {
            return Err(too_large(
                key,
                body.len() as u64,
                capabilities.max_single_put,
            ));
        }
        check_condition(
            &capabilities,
            key,
            state.objects.get(key),
            &options.condition,
        )?;
        let etag = md5_etag(&body);
        state.commit(key, Object::new(body.into(), etag.clone(), &options))?;
        Ok(PutResult { etag: Some(etag) })
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        options: PutOptions,
    ) -> StoreResult<UploadId> {
        let mut state = self.lock();
        state.next_upload += 1;
        let id = format!("mem-upload-{}", state.next_upload);
        state.uploads.insert(
            id.clone(),
            Upload {
                key: key.as_str().to_owned(),
                options,
                parts: BTreeMap::new(),
            },
        );
        Ok(UploadId(id))
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Bytes,
    ) -> StoreResult<CompletedPart> {
        let key = key.as_str();
        let mut state = self.lock();
        let capabilities = state.capabilities;
        let upload = state.upload_mut(key, upload_id)?;
        check_part_number(&capabilities, key, part_number)?;
        check_part_size(&capabilities, key, body.len() as u64)?;
        let part = Part::new(body);
        let etag = part.etag.clone();
        upload.parts.insert(part_number, part);
        Ok(CompletedPart { part_number, etag })
    }

    async fn upload_part_copy(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        source: &CopySource,
        source_range: Option<ByteRange>,
    ) -> StoreResult<CompletedPart> {
        let key = key.as_str();
        {
            let mut state = self.lock();
            if !state.capabilities.upload_part_copy {
                return Err(not_implemented(key, "UploadPartCopy"));
            }
            state.upload_mut(key, upload_id)?;
            check_part_number(&state.capabilities, key, part_number)?;
        }
        let object = self.copy_source_object(source)?;
        let source = &source.key;
        let mut state = self.lock();
        let capabilities = state.capabilities;
        let size = object.size();
        let range = source_range.unwrap_or(ByteRange::new(0, size));
        // x-amz-copy-source-range is inclusive on both ends: it cannot be empty or reach past
        // the end of the source.
        if range.start >= range.end || range.end > size {
            return Err(store_error(
                StoreErrorKind::InvalidRange,
                "InvalidRange",
                source.as_str(),
                format!(
                    "copy range {}..{} is invalid for a source of {size} bytes",
                    range.start, range.end
                ),
            ));
        }
        check_part_size(&capabilities, key, range.len())?;
        let part = Part::new(
            object
                .body
                .contiguous(range.start as usize..range.end as usize),
        );
        let etag = part.etag.clone();
        state
            .upload_mut(key, upload_id)?
            .parts
            .insert(part_number, part);
        Ok(CompletedPart { part_number, etag })
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        let key = key.as_str();
        let mut state = self.lock();
        let capabilities = state.capabilities;
        let upload = state.upload_mut(key, upload_id)?;
        if parts.is_empty() {
            return Err(store_error(
                StoreErrorKind::InvalidRequest,
                "MalformedXML",
                key,
                "CompleteMultipartUpload needs at least one part",
            ));
        }
        let mut chosen = Vec::with_capacity(parts.len());
        let mut previous = 0;
        for (index, part) in parts.iter().enumerate() {
            if part.part_number <= previous {
                return Err(store_error(
                    StoreErrorKind::InvalidRequest,
                    "InvalidPartOrder",
                    key,
                    "parts must be listed in ascending order of part number",
                ));
            }
            previous = part.part_number;
            let stored = match upload.parts.get(&part.part_number) {
                Some(stored) if stored.etag == part.etag => stored,
                _ => {
                    return Err(store_error(
                        StoreErrorKind::InvalidRequest,
                        "InvalidPart",
                        key,
                        format!(
                            "part {} with ETag {} was not uploaded",
                            part.part_number, part.etag
                        ),
                    ))
                }
            };
            let is_last = index + 1 == parts.len();
            if !is_last && (stored.body.len() as u64) < capabilities.min_part_size {
                return Err(store_error(
                    StoreErrorKind::InvalidRequest,
                    "EntityTooSmall",
                    key,
                    format!(
                        "part {} has {} bytes, below the minimum of {}",
                        part.part_number,
                        stored.body.len(),
                        capabilities.min_part_size
                    ),
                ));
            }
            chosen.push(stored);
        }
        // The parts become the object as they are: no byte is copied (see `body`).
        let mut md5s = Md5::new();
        for part in &chosen {
            md5s.update(part.md5);
        }
        let etag = ETag::new(format!("{}-{}", hex::encode(md5s.finalize()), chosen.len()));
        let body = Body::from_pieces(chosen.iter().map(|part| part.body.clone()));
        let object = Object::new(body, etag.clone(), &upload.options);
        // The condition is checked against the bucket as it is at completion; a failed
        // completion leaves the upload open, as on S3 (the caller must abort it).
        check_condition(&capabilities, key, state.objects.get(key), &condition)?;
        state.commit(key, object)?;
        state.uploads.remove(&upload_id.0);
        Ok(PutResult { etag: Some(etag) })
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &UploadId) -> StoreResult<()> {
        let key = key.as_str();
        let mut state = self.lock();
        state.upload_mut(key, upload_id)?;
        state.uploads.remove(&upload_id.0);
        Ok(())
    }

    async fn copy(&self, request: CopyRequest) -> StoreResult<PutResult> {
        let object = self.copy_source_object(&request.source)?;
        let same_bucket = self.is_same_bucket(&request.source);
        let source = request.source.key.as_str();
        let dest = request.dest.as_str();
        let mut state = self.lock();
        let capabilities = state.capabilities;
        if object.size() > capabilities.max_single_put {
            return Err(store_error(
                StoreErrorKind::InvalidRequest,
                "InvalidRequest",
                source,
                format!(
                    "the copy source has {} bytes, more than the {} a CopyObject accepts",
                    object.size(),
                    capabilities.max_single_put
                ),
            ));
        }
        let etag = ETag::new(hex::encode(object.body.md5()));
        let copied = match &request.metadata {
            MetadataDirective::Copy => {
                if same_bucket && source == dest {
                    return Err(store_error(
                        StoreErrorKind::InvalidRequest,
                        "InvalidRequest",
                        dest,
                        "copying an object to itself needs a metadata change",
                    ));
                }
                // Like S3: metadata and content type are kept, but without an explicit
                // storage class the copy is STANDARD.
                Object {
                    body: object.body.clone(),
                    etag: etag.clone(),
                    last_modified: SystemTime::now(),
                    user_metadata: object.user_metadata.clone(),
                    content_type: object.content_type.clone(),
                    storage_class: None,
                    restored: false,
                    tags: object.tags.clone(),
                }
            }
            // Tags are copied unless new ones are given (x-amz-tagging-directive).
            MetadataDirective::Replace(options) => {
                let mut copied = Object::new(object.body.clone(), etag.clone(), options);
                if options.tags.is_empty() {
                    copied.tags = object.tags.clone();
                }
                copied
            }
        };
        check_condition(
            &capabilities,
            dest,
            state.objects.get(dest),
            &request.condition,
        )?;
        state.commit(dest, copied)?;
        Ok(PutResult { etag: Some(etag) })
    }

    async fn get_tags(&self, key: &ObjectKey) -> StoreResult<BTreeMap<String, String>> {
        let state = self.lock();
        let object = state
            .objects
            .get(key.as_str())
            .ok_or_else(|| StoreError::not_found(key.as_str()))?;
        Ok(object.tags.clone())
    }

    async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
        self.lock().remove(key.as_str())?;
        Ok(())
    }

    async fn delete_many(&self, keys: Vec<ObjectKey>) -> StoreResult<Vec<DeleteFailure>> {
        let mut state = self.lock();
        if !state.capabilities.delete_many {
            return Err(not_implemented("", "DeleteObjects"));
        }
        if keys.is_empty() || keys.len() > MAX_DELETE_KEYS {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!(
                    "DeleteObjects takes 1 to {MAX_DELETE_KEYS} keys, not {}",
                    keys.len()
                ),
            )
            .with_code("MalformedXML"));
        }
        let mut failures = Vec::new();
        for key in keys {
            if let Err(error) = state.remove(key.as_str()) {
                failures.push(DeleteFailure { key, error });
            }
        }
        Ok(failures)
    }
}

/// One page of ListObjectsV2 over `objects`.
///
/// Walks the keys in order from the first one the request allows, turning each into either
/// an object or (with a delimiter) its common prefix; after a common prefix the walk jumps
/// past every key under it, so a prefix is returned once.
fn list_page(objects: &BTreeMap<String, Object>, request: &ListRequest) -> StoreResult<ListPage> {
    let max_keys = request.max_keys.unwrap_or(MAX_LIST_KEYS).min(MAX_LIST_KEYS) as usize;
    let delimiter = request.delimiter.as_deref().filter(|d| !d.is_empty());
    let prefix = request.prefix.as_str();

    let mut cursor = Bound::Included(prefix.to_owned());
    if let Some(after) = &request.start_after {
        cursor = later_bound(cursor, Bound::Excluded(after.clone()));
    }
    if let Some(token) = &request.continuation_token {
        let resume = match ListToken::decode(token)? {
            ListToken::Key(key) => Some(Bound::Excluded(key)),
            ListToken::Prefix(common) => skip_past(&common).map(Bound::Included),
        };
        match resume {
            Some(bound) => cursor = later_bound(cursor, bound),
            None => return Ok(ListPage::default()),
        }
    }

    let mut page = ListPage::default();
    let mut last: Option<ListToken> = None;
    while let Some((key, object)) = objects
        .range::<String, _>((cursor.clone(), Bound::Unbounded))
        .next()
    {
        // Keys under the prefix are contiguous: the first one outside ends the listing.
        let Some(rest) = key.strip_prefix(prefix) else {
            break;
        };
        if page.objects.len() + page.common_prefixes.len() == max_keys {
            if max_keys > 0 {
                page.next_continuation_token = last.as_ref().map(ListToken::encode);
                page.is_truncated = page.next_continuation_token.is_some();
            }
            break;
        }
        let split = delimiter.and_then(|d| rest.find(d).map(|at| at + d.len()));
        match split {
            Some(end) => {
                let common = key[..prefix.len() + end].to_owned();
                page.common_prefixes.push(common.clone());
                match skip_past(&common) {
                    Some(next) => cursor = Bound::Included(next),
                    None => break,
                }
                last = Some(ListToken::Prefix(common));
            }
            None => {
                page.objects.push(object.listed(key));
                cursor = Bound::Excluded(key.clone());
                last = Some(ListToken::Key(key.clone()));
            }
        }
    }
    Ok(page)
}

/// The later (stricter) of two lower bounds.
fn later_bound(a: Bound<String>, b: Bound<String>) -> Bound<String> {
    use Bound::{Excluded, Included, Unbounded};
    match (a, b) {
        (Unbounded, other) | (other, Unbounded) => other,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(x), Excluded(y)) | (Excluded(y), Included(x)) => {
            if x > y {
                Included(x)
            } else {
                Excluded(y)
            }
        }
    }
}

/// The smallest string greater than every string starting with `prefix`, or `None` if
/// there is none (`prefix` is empty or made only of `char::MAX`).
fn skip_past(prefix: &str) -> Option<String> {
    let last = prefix.chars().next_back()?;
    let base = &prefix[..prefix.len() - last.len_utf8()];
    // UTF-8 byte order is code point order, so bumping the last char bounds the prefix.
    match ((last as u32 + 1)..=(char::MAX as u32)).find_map(char::from_u32) {
        Some(next) => Some(format!("{base}{next}")),
        None => skip_past(base),
    }
}

/// What a continuation token remembers: the last item of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ListToken {
    Key(String),
    Prefix(String),
}

impl ListToken {
    fn encode(&self) -> String {
        let (tag, text) = match self {
            Self::Key(key) => ('k', key),
            Self::Prefix(prefix) => ('p', prefix),
        };
        hex::encode(format!("{tag}{text}"))
    }

    fn decode(token: &str) -> StoreResult<Self> {
        let invalid = || {
            StoreError::new(
                StoreErrorKind::InvalidRequest,
                "the continuation token is not one this store issued",
            )
            .with_code("InvalidArgument")
        };
        let bytes = hex::decode(token).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        if let Some(key) = text.strip_prefix('k') {
            Ok(Self::Key(key.to_owned()))
        } else if let Some(prefix) = text.strip_prefix('p') {
            Ok(Self::Prefix(prefix.to_owned()))
        } else {
            Err(invalid())
        }
    }
}

/// The quoted hex MD5 of `data`: the ETag of a single PUT.
fn md5_etag(data: &[u8]) -> ETag {
    ETag::new(hex::encode(Md5::digest(data)))
}

/// `None` for STANDARD, the class otherwise.
fn normalize_class(class: Option<&str>) -> Option<String> {
    class.filter(|c| *c != "STANDARD").map(str::to_owned)
}

fn store_error(
    kind: StoreErrorKind,
    code: &str,
    key: &str,
    message: impl Into<String>,
) -> StoreError {
    StoreError::new(kind, message).with_key(key).with_code(code)
}

fn precondition_failed(key: &str, message: impl Into<String>) -> StoreError {
    store_error(
        StoreErrorKind::PreconditionFailed,
        "PreconditionFailed",
        key,
        message,
    )
}

fn archived(key: &str) -> StoreError {
    store_error(
        StoreErrorKind::Archived,
        "InvalidObjectState",
        key,
        "the object is archived and must be restored first",
    )
}

fn no_such_upload(key: &str, upload_id: &UploadId) -> StoreError {
    store_error(
        StoreErrorKind::NotFound,
        "NoSuchUpload",
        key,
        format!("no open upload {}", upload_id.0),
    )
}

fn not_implemented(key: &str, operation: &str) -> StoreError {
    store_error(
        StoreErrorKind::InvalidRequest,
        "NotImplemented",
        key,
        format!("this store does not support {operation}"),
    )
}

fn too_large(key: &str, size: u64, limit: u64) -> StoreError {
    store_error(
        StoreErrorKind::InvalidRequest,
        "EntityTooLarge",
        key,
        format!("{size} bytes is more than the limit of {limit}"),
    )
}

fn persist_error(key: &str, error: &io::Error) -> StoreError {
    store_error(
        StoreErrorKind::Other,
        "InternalError",
        key,
        format!("could not persist the change: {error}"),
    )
}

/// `If-Match` on a read or a copy source (`*` matches any existing object).
fn check_etag(key: &str, current: &ETag, expected: &ETag) -> StoreResult<()> {
    if expected.as_str() == "\"*\"" || current == expected {
        Ok(())
    } else {
        Err(precondition_failed(
            key,
            format!("ETag is {current}, not {expected}"),
        ))
    }
}

/// A write condition against the object currently at `key`.
fn check_condition(
    capabilities: &Capabilities,
    key: &str,
    existing: Option<&Object>,
    condition: &WriteCondition,
) -> StoreResult<()> {
    if !capabilities.conditional_writes {
        return Ok(());
    }
    match (condition, existing) {
        (WriteCondition::None, _) | (WriteCondition::IfNoneMatch, None) => Ok(()),
        (WriteCondition::IfNoneMatch, Some(_)) => {
            Err(precondition_failed(key, "an object already has this key"))
        }
        (WriteCondition::IfMatch(_), None) => {
            Err(precondition_failed(key, "no object has this key"))
        }
        (WriteCondition::IfMatch(expected), Some(object)) => {
            check_etag(key, &object.etag, expected)
        }
    }
}

fn check_part_number(capabilities: &Capabilities, key: &str, part_number: u32) -> StoreResult<()> {
    let highest = capabilities.max_parts.min(MAX_PART_NUMBER);
    if (1..=highest).contains(&part_number) {
        Ok(())
    } else {
        Err(store_error(
            StoreErrorKind::InvalidRequest,
            "InvalidArgument",
            key,
            format!("part number {part_number} is outside 1..={highest}"),
        ))
    }
}

fn check_part_size(capabilities: &Capabilities, key: &str, size: u64) -> StoreResult<()> {
    if size > capabilities.max_part_size {
        Err(too_large(key, size, capabilities.max_part_size))
    } else {
        Ok(())
    }
}

/// The on-disk side of a persisted [`MemStore`].
#[derive(Debug)]
struct Persist {
    dir: PathBuf,
}

impl Persist {
    fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir
            .join(format!("{}.obj", hex::encode(Md5::digest(key.as_bytes()))))
    }

    fn save(&self, key: &str, object: &Object) -> io::Result<()> {
        let path = self.path(key);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, encode_object(key, object))?;
        std::fs::rename(&tmp, &path)
    }

    fn remove(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn load(&self) -> io::Result<BTreeMap<String, Object>> {
        let mut objects = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("obj") {
                continue;
            }
            let data = std::fs::read(&path)?;
            let (key, object) = decode_object(&data).map_err(|message| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {message}", path.display()),
                )
            })?;
            objects.insert(key, object);
        }
        Ok(objects)
    }
}

fn encode_object(key: &str, object: &Object) -> Vec<u8> {
    let nanos = object
        .last_modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut header = format!(
        "{PERSIST_MAGIC}\nkey {}\netag {}\nmtime {nanos}\n",
        hex::encode(key),
        hex::encode(object.etag.as_str()),
    );
    if let Some(content_type) = &object.content_type {
        header += &format!("type {}\n", hex::encode(content_type));
    }
    if let Some(class) = &object.storage_class {
        header += &format!("class {}\n", hex::encode(class));
    }
    if object.restored {
        header += "restored 1\n";
    }
    for (name, value) in &object.user_metadata {
        header += &format!("meta {} {}\n", hex::encode(name), hex::encode(value));
    }
    for (name, value) in &object.tags {
        header += &format!("tag {} {}\n", hex::encode(name), hex::encode(value));
    }
    header.push('\n');
    let mut data = header.into_bytes();
    object.body.append_to(&mut data);
    data
}

fn decode_object(data: &[u8]) -> Result<(String, Object), String> {
    let end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no end of header")?;
    let header = std::str::from_utf8(&data[..end]).map_err(|_| "header is not UTF-8")?;
    let body = Bytes::copy_from_slice(&data[end + 2..]);
    let unhex = |text: &str| -> Result<String, String> {
        let bytes = hex::decode(text).map_err(|e| format!("bad hex: {e}"))?;
        String::from_utf8(bytes).map_err(|_| "a value is not UTF-8".to_owned())
    };
    let mut lines = header.lines();
    if lines.next() != Some(PERSIST_MAGIC) {
        return Err("not a MemStore object file".into());
    }
    let mut key = None;
    let mut object = Object {
        etag: md5_etag(&body),
        body: body.into(),
        last_modified: UNIX_EPOCH,
        user_metadata: BTreeMap::new(),
        content_type: None,
        storage_class: None,
        restored: false,
        tags: BTreeMap::new(),
    };
    for line in lines {
        let mut fields = line.split(' ');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("key"), Some(v), None) => key = Some(unhex(v)?),
            (Some("etag"), Some(v), None) => object.etag = ETag::new(unhex(v)?),
            (Some("mtime"), Some(v), None) => {
                let nanos: u64 = v.parse().map_err(|_| "bad mtime")?;
                object.last_modified = UNIX_EPOCH + Duration::from_nanos(nanos);
            }
            (Some("type"), Some(v), None) => object.content_type = Some(unhex(v)?),
            (Some("class"), Some(v), None) => object.storage_class = Some(unhex(v)?),
            (Some("restored"), Some("1"), None) => object.restored = true,
            (Some("meta"), Some(name), Some(value)) => {
                object.user_metadata.insert(unhex(name)?, unhex(value)?);
            }
            (Some("tag"), Some(name), Some(value)) => {
                object.tags.insert(unhex(name)?, unhex(value)?);
            }
            _ => return Err(format!("unexpected header line {line:?}")),
        }
    }
    Ok((key.ok_or("no key")?, object))
}

/// Several named in-memory buckets, served through [`BucketProvider`].
///
/// ```
/// use s3vfs_testkit::MemBuckets;
/// let buckets = MemBuckets::new();
/// let photos = buckets.create_bucket("photos");
/// photos.insert("a.jpg", "…");
/// assert_eq!(buckets.names(), vec!["photos".to_string()]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemBuckets {
    buckets: Arc<Mutex<BTreeMap<String, MemStore>>>,
}

impl MemBuckets {
    /// No buckets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates bucket `name` with S3's capabilities, or returns it if it exists.
    pub fn create_bucket(&self, name: &str) -> MemStore {
        self.lock()
            .entry(name.to_owned())
            .or_insert_with(|| {
                let store = MemStore::new();
                store.lock().home = Some(Home {
                    name: name.to_owned(),
                    buckets: Arc::downgrade(&self.buckets),
                });
                store
            })
            .clone()
    }

    /// Creates bucket `name` with `capabilities` (replacing those of an existing bucket of
    /// that name) and returns it.
    pub fn create_bucket_with(&self, name: &str, capabilities: Capabilities) -> MemStore {
        let store = self.create_bucket(name);
        store.set_capabilities(capabilities);
        store
    }

    /// Bucket `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<MemStore> {
        self.lock().get(name).cloned()
    }

    /// Removes bucket `name` (whatever it holds), returning it if it existed.
    pub fn remove_bucket(&self, name: &str) -> Option<MemStore> {
        self.lock().remove(name)
    }

    /// The bucket names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, MemStore>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl BucketProvider for MemBuckets {
    async fn list_buckets(&self) -> StoreResult<Vec<String>> {
        Ok(self.names())
    }

    fn bucket(&self, name: &str) -> StoreResult<Arc<dyn Backend>> {
        match self.get(name) {
            Some(store) => Ok(Arc::new(store)),
            None => Err(no_such_bucket(name)),
        }
    }
}

/// One named bucket backed by any store (for example a fault-injecting wrapper around a
/// [`MemStore`]), served through [`BucketProvider`].
#[derive(Clone, Debug)]
pub struct SingleBucket {
    /// The bucket's name, the only one listed.
    pub name: String,
    /// The store behind it.
    pub store: Arc<dyn Backend>,
}

impl SingleBucket {
    /// Serves `store` as bucket `name`.
    pub fn new(name: impl Into<String>, store: Arc<dyn Backend>) -> Self {
        Self {
            name: name.into(),
            store,
        }
    }
}

#[async_trait]
impl BucketProvider for SingleBucket {
    async fn list_buckets(&self) -> StoreResult<Vec<String>> {
        Ok(vec![self.name.clone()])
    }

    fn bucket(&self, name: &str) -> StoreResult<Arc<dyn Backend>> {
        if name == self.name {
            Ok(Arc::clone(&self.store))
        } else {
            Err(no_such_bucket(name))
        }
    }
}

fn no_such_bucket(name: &str) -> StoreError {
    store_error(
        StoreErrorKind::NotFound,
        "NoSuchBucket",
        name,
        "the bucket does not exist",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k)
    }

    fn small_parts() -> Capabilities {
        Capabilities {
            min_part_size: 5,
            ..Capabilities::default()
        }
    }

    async fn get_all(store: &MemStore, k: &str) -> StoreResult<Bytes> {
        store.get(GetRequest::whole(key(k))).await?.collect().await
    }

    async fn get_range(store: &MemStore, k: &str, start: u64, end: u64) -> StoreResult<Bytes> {
        let request = GetRequest {
            key: key(k),
            range: Some(ByteRange::new(start, end)),
            if_match: None,
        };
        store.get(request).await?.collect().await
    }

    fn list_req(prefix: &str, delimiter: Option<&str>, max_keys: Option<u32>) -> ListRequest {
        ListRequest {
            prefix: prefix.to_owned(),
            delimiter: delimiter.map(str::to_owned),
            max_keys,
            ..ListRequest::default()
        }
    }

    fn page_keys(page: &ListPage) -> Vec<&str> {
        page.objects.iter().map(|o| o.key.as_str()).collect()
    }

    async fn put_if(
        store: &MemStore,
        k: &str,
        body: &str,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        let options = PutOptions {
            condition,
            ..PutOptions::default()
        };
        store
            .put(&key(k), Bytes::from(body.to_owned()), options)
            .await
    }

    fn assert_error(result: StoreResult<impl fmt::Debug>, kind: StoreErrorKind, code: &str) {
        match result {
            Ok(value) => panic!("expected {kind} ({code}), got {value:?}"),
            Err(e) => {
                assert_eq!(e.kind, kind, "{e}");
                assert_eq!(e.code.as_deref(), Some(code), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn put_then_get_and_head_see_the_object_with_md5_etag() {
        let store = MemStore::new();
        let options = PutOptions {
            content_type: Some("text/plain".into()),
            user_metadata: BTreeMap::from([("mode".to_owned(), "644".to_owned())]),
            ..PutOptions::default()
        };
        let result = store
            .put(&key("a"), Bytes::from_static(b"hello"), options)
            .await
            .unwrap();
        let md5_hello = ETag::new("5d41402abc4b2a76b9719d911017c592");
        assert_eq!(result.etag, Some(md5_hello.clone()));
        assert_eq!(md5_hello.as_str(), "\"5d41402abc4b2a76b9719d911017c592\"");
        assert_eq!(
            get_all(&store, "a").await.unwrap(),
            Bytes::from_static(b"hello")
        );
        let meta = store.head(&key("a")).await.unwrap();
        assert_eq!(meta.size, 5);
        assert_eq!(meta.etag, Some(md5_hello));
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            meta.user_metadata.get("mode").map(String::as_str),
            Some("644")
        );
        assert_eq!(meta.storage_class, None);
    }

    #[tokio::test]
    async fn missing_key_is_no_such_key() {
        let store = MemStore::new();
        assert_error(
            store.head(&key("nope")).await,
            StoreErrorKind::NotFound,
            "NoSuchKey",
        );
        assert_error(
            get_all(&store, "nope").await,
            StoreErrorKind::NotFound,
            "NoSuchKey",
        );
    }

    #[tokio::test]
    async fn get_streams_in_chunks() {
        let store = MemStore::new();
        let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        store.insert("big", data.clone());
        let response = store.get(GetRequest::whole(key("big"))).await.unwrap();
        assert_eq!(response.range, ByteRange::new(0, data.len() as u64));
        let chunks: Vec<Bytes> = response.body.map(|c| c.unwrap()).collect().await;
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(
            sizes,
            vec![GET_CHUNK_SIZE, GET_CHUNK_SIZE, GET_CHUNK_SIZE, 8 * 1024]
        );
        assert_eq!(chunks.concat(), data);
    }

    #[tokio::test]
    async fn ranges_are_clamped_and_checked() {
        let store = MemStore::new();
        store.insert("f", "0123456789");
        store.insert("empty", "");
        assert_eq!(get_range(&store, "f", 2, 5).await.unwrap(), "234");
        assert_eq!(get_range(&store, "f", 8, 100).await.unwrap(), "89");
        let response = store
            .get(GetRequest {
                key: key("f"),
                range: Some(ByteRange::new(8, 100)),
                if_match: None,
            })
            .await
            .unwrap();
        assert_eq!(response.range, ByteRange::new(8, 10));
        assert_eq!(response.meta.size, 10);
        assert_error(
            get_range(&store, "f", 10, 20).await,
            StoreErrorKind::InvalidRange,
            "InvalidRange",
        );
        assert_error(
            get_range(&store, "f", 50, 60).await,
            StoreErrorKind::InvalidRange,
            "InvalidRange",
        );
        assert_eq!(get_range(&store, "empty", 0, 10).await.unwrap(), "");
    }

    #[tokio::test]
    async fn get_if_match_checks_the_etag() {
        let store = MemStore::new();
        let etag = store.insert("f", "one");
        let request = |tag: &str| GetRequest {
            key: key("f"),
            range: None,
            if_match: Some(ETag::new(tag)),
        };
        assert_eq!(
            store
                .get(request(etag.as_str()))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
            "one"
        );
        assert_eq!(
            store
                .get(request("*"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
            "one"
        );
        store.insert("f", "two");
        assert_error(
            store.get(request(etag.as_str())).await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
    }

    #[tokio::test]
    async fn archived_objects_need_a_restore() {
        let store = MemStore::new();
        store.insert("cold", "brr");
        store.insert("colder", "brrr");
        assert!(store.set_storage_class("cold", "GLACIER"));
        assert!(store.set_storage_class("colder", "DEEP_ARCHIVE"));
        assert!(!store.set_storage_class("missing", "GLACIER"));
        for k in ["cold", "colder"] {
            assert_error(
                get_all(&store, k).await,
                StoreErrorKind::Archived,
                "InvalidObjectState",
            );
            let meta = store.head(&key(k)).await.unwrap();
            assert!(storage_class::is_archived(meta.storage_class.as_deref()));
            assert!(!meta.restored);
        }
        let listed = store.list(ListRequest::default()).await.unwrap();
        assert_eq!(listed.objects[0].storage_class.as_deref(), Some("GLACIER"));
        let copy = CopyRequest {
            source: CopySource::new(key("cold")),
            dest: key("warm"),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        };
        assert_error(
            store.copy(copy.clone()).await,
            StoreErrorKind::Archived,
            "InvalidObjectState",
        );

        assert!(store.set_restored("cold", true));
        assert!(store.head(&key("cold")).await.unwrap().restored);
        assert_eq!(get_all(&store, "cold").await.unwrap(), "brr");
        store.copy(copy).await.unwrap();

        store.set_storage_class("colder", "STANDARD");
        assert_eq!(store.meta("colder").unwrap().storage_class, None);
        assert_eq!(get_all(&store, "colder").await.unwrap(), "brrr");
    }

    #[tokio::test]
    async fn list_rolls_up_common_prefixes_and_keeps_dir_markers() {
        let store = MemStore::new();
        for k in [
            "a.txt",
            "dir/",
            "dir/x",
            "dir/sub/y",
            "dir/sub/z",
            "dir2/q",
            "e",
        ] {
            store.insert(k, "");
        }
        let root = store.list(list_req("", Some("/"), None)).await.unwrap();
        assert_eq!(page_keys(&root), vec!["a.txt", "e"]);
        assert_eq!(root.common_prefixes, vec!["dir/", "dir2/"]);
        assert_eq!(root.next_continuation_token, None);

        let dir = store.list(list_req("dir/", Some("/"), None)).await.unwrap();
        assert_eq!(page_keys(&dir), vec!["dir/", "dir/x"]);
        assert_eq!(dir.common_prefixes, vec!["dir/sub/"]);

        let flat = store.list(list_req("dir", None, None)).await.unwrap();
        assert_eq!(
            page_keys(&flat),
            vec!["dir/", "dir/sub/y", "dir/sub/z", "dir/x", "dir2/q"]
        );
        assert!(flat.common_prefixes.is_empty());
    }

    #[tokio::test]
    async fn list_pages_count_prefixes_and_never_repeat_them() {
        let store = MemStore::new();
        for k in ["a", "b/1", "b/2", "b/3", "c", "d/1", "e"] {
            store.insert(k, "x");
        }
        let mut request = list_req("", Some("/"), Some(2));
        let mut pages = Vec::new();
        loop {
            let page = store.list(request.clone()).await.unwrap();
            let token = page.next_continuation_token.clone();
            pages.push((
                page_keys(&page)
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
                page.common_prefixes,
            ));
            match token {
                Some(t) => request.continuation_token = Some(t),
                None => break,
            }
        }
        let expect = |keys: &[&str], prefixes: &[&str]| {
            (
                keys.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                prefixes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            pages,
            vec![
                expect(&["a"], &["b/"]),
                expect(&["c"], &["d/"]),
                expect(&["e"], &[]),
            ]
        );
    }

    #[tokio::test]
    async fn list_max_keys_defaults_to_and_caps_at_1000() {
        let store = MemStore::new();
        for i in 0..1500 {
            store.insert(format!("k{i:04}"), "");
        }
        for max_keys in [None, Some(5000)] {
            let page = store.list(list_req("", None, max_keys)).await.unwrap();
            assert_eq!(page.objects.len(), 1000);
            let mut next = list_req("", None, max_keys);
            next.continuation_token = page.next_continuation_token;
            let rest = store.list(next).await.unwrap();
            assert_eq!(rest.objects.len(), 500);
            assert_eq!(rest.objects[0].key.as_str(), "k1000");
            assert_eq!(rest.next_continuation_token, None);
        }
        let none = store.list(list_req("", None, Some(0))).await.unwrap();
        assert!(none.objects.is_empty() && none.next_continuation_token.is_none());
    }

    #[tokio::test]
    async fn list_start_after_and_bad_token() {
        let store = MemStore::new();
        for k in ["a", "b", "c", "d"] {
            store.insert(k, "");
        }
        let mut request = ListRequest {
            start_after: Some("b".into()),
            ..ListRequest::default()
        };
        let page = store.list(request.clone()).await.unwrap();
        assert_eq!(page_keys(&page), vec!["c", "d"]);
        request.continuation_token = Some("not a token".into());
        assert_error(
            store.list(request).await,
            StoreErrorKind::InvalidRequest,
            "InvalidArgument",
        );
    }

    #[test]
    fn skip_past_bounds_every_string_with_the_prefix() {
        assert_eq!(skip_past("a/").as_deref(), Some("a0"));
        assert_eq!(skip_past("").as_deref(), None);
        assert_eq!(skip_past("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(skip_past("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(skip_past("\u{10FFFF}"), None);
    }

    #[tokio::test]
    async fn put_conditions() {
        let store = MemStore::new();
        let first = put_if(&store, "k", "1", WriteCondition::IfNoneMatch)
            .await
            .unwrap();
        assert_error(
            put_if(&store, "k", "2", WriteCondition::IfNoneMatch).await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
        assert_error(
            put_if(
                &store,
                "other",
                "2",
                WriteCondition::IfMatch(ETag::new("abc")),
            )
            .await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
        assert_error(
            put_if(&store, "k", "2", WriteCondition::IfMatch(ETag::new("abc"))).await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
        let tag = first.etag.unwrap();
        put_if(&store, "k", "3", WriteCondition::IfMatch(tag.clone()))
            .await
            .unwrap();
        assert_eq!(store.get_bytes("k").unwrap(), "3");
        assert_error(
            put_if(&store, "k", "4", WriteCondition::IfMatch(tag)).await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
        assert!(store.get_bytes("other").is_none());
    }

    #[tokio::test]
    async fn conditions_are_ignored_without_conditional_writes() {
        let store = MemStore::with_capabilities(Capabilities {
            conditional_writes: false,
            ..small_parts()
        });
        store.insert("k", "1");
        put_if(&store, "k", "2", WriteCondition::IfNoneMatch)
            .await
            .unwrap();
        put_if(
            &store,
            "k",
            "3",
            WriteCondition::IfMatch(ETag::new("wrong")),
        )
        .await
        .unwrap();
        assert_eq!(store.get_bytes("k").unwrap(), "3");
        let id = store
            .create_multipart(&key("k"), PutOptions::default())
            .await
            .unwrap();
        let part = store
            .upload_part(&key("k"), &id, 1, Bytes::from_static(b"4"))
            .await
            .unwrap();
        store
            .complete_multipart(&key("k"), &id, vec![part], WriteCondition::IfNoneMatch)
            .await
            .unwrap();
        assert_eq!(store.get_bytes("k").unwrap(), "4");
    }

    #[tokio::test]
    async fn put_larger_than_max_single_put_is_refused() {
        let store = MemStore::with_capabilities(Capabilities {
            max_single_put: 4,
            ..Capabilities::default()
        });
        put_if(&store, "k", "1234", WriteCondition::None)
            .await
            .unwrap();
        assert_error(
            put_if(&store, "k", "12345", WriteCondition::None).await,
            StoreErrorKind::InvalidRequest,
            "EntityTooLarge",
        );
    }

    #[tokio::test]
    async fn multipart_appears_at_completion_with_s3_etag() {
        let store = MemStore::with_capabilities(small_parts());
        let k = key("big");
        let options = PutOptions {
            content_type: Some("application/x-test".into()),
            ..PutOptions::default()
        };
        let id = store.create_multipart(&k, options).await.unwrap();
        assert_eq!(store.open_uploads(), 1);
        assert_eq!(store.open_upload_keys(), vec!["big".to_string()]);
        let p1 = store
            .upload_part(&k, &id, 1, Bytes::from_static(b"hello"))
            .await
            .unwrap();
        let p2 = store
            .upload_part(&k, &id, 2, Bytes::from_static(b"world"))
            .await
            .unwrap();
        let p3 = store
            .upload_part(&k, &id, 3, Bytes::from_static(b"!"))
            .await
            .unwrap();
        assert_eq!(p1.etag, md5_etag(b"hello"));
        assert!(store.get_bytes("big").is_none());
        assert!(store
            .list(ListRequest::default())
            .await
            .unwrap()
            .objects
            .is_empty());

        let done = store
            .complete_multipart(&k, &id, vec![p1, p2, p3], WriteCondition::None)
            .await
            .unwrap();
        let mut md5s = Vec::new();
        for part in [&b"hello"[..], b"world", b"!"] {
            md5s.extend_from_slice(&Md5::digest(part));
        }
        let expected = ETag::new(format!("{}-3", hex::encode(Md5::digest(&md5s))));
        assert_eq!(done.etag, Some(expected.clone()));
        assert_eq!(store.get_bytes("big").unwrap(), "helloworld!");
        let meta = store.meta("big").unwrap();
        assert_eq!(meta.etag, Some(expected));
        assert_eq!(meta.content_type.as_deref(), Some("application/x-test"));
        assert_eq!(store.open_uploads(), 0);
        assert_error(
            store.abort_multipart(&k, &id).await,
            StoreErrorKind::NotFound,
            "NoSuchUpload",
        );
    }

    #[tokio::test]
    async fn multipart_rules() {
        let store = MemStore::with_capabilities(small_parts());
        let k = key("m");
        let id = store
            .create_multipart(&k, PutOptions::default())
            .await
            .unwrap();
        for bad in [0, 10_001] {
            assert_error(
                store
                    .upload_part(&k, &id, bad, Bytes::from_static(b"xxxxx"))
                    .await,
                StoreErrorKind::InvalidRequest,
                "InvalidArgument",
            );
        }
        store
            .upload_part(&k, &id, 10_000, Bytes::from_static(b"xxxxx"))
            .await
            .unwrap();
        assert_error(
            store.upload_part(&key("other"), &id, 1, Bytes::new()).await,
            StoreErrorKind::NotFound,
            "NoSuchUpload",
        );
        let small = store
            .upload_part(&k, &id, 1, Bytes::from_static(b"tiny"))
            .await
            .unwrap();
        let big = store
            .upload_part(&k, &id, 2, Bytes::from_static(b"large"))
            .await
            .unwrap();
        assert_error(
            store
                .complete_multipart(
                    &k,
                    &id,
                    vec![small.clone(), big.clone()],
                    WriteCondition::None,
                )
                .await,
            StoreErrorKind::InvalidRequest,
            "EntityTooSmall",
        );
        assert_error(
            store
                .complete_multipart(
                    &k,
                    &id,
                    vec![big.clone(), small.clone()],
                    WriteCondition::None,
                )
                .await,
            StoreErrorKind::InvalidRequest,
            "InvalidPartOrder",
        );
        let unknown = CompletedPart {
            part_number: 3,
            etag: big.etag.clone(),
        };
        assert_error(
            store
                .complete_multipart(&k, &id, vec![big.clone(), unknown], WriteCondition::None)
                .await,
            StoreErrorKind::InvalidRequest,
            "InvalidPart",
        );
        assert_error(
            store
                .complete_multipart(&k, &id, vec![], WriteCondition::None)
                .await,
            StoreErrorKind::InvalidRequest,
            "MalformedXML",
        );
        // A re-uploaded part replaces the earlier one.
        let small = store
            .upload_part(&k, &id, 1, Bytes::from_static(b"big!!"))
            .await
            .unwrap();
        assert_eq!(store.open_uploads(), 1);
        assert!(store.get_bytes("m").is_none());
        // The last part may be small.
        store
            .upload_part(&k, &id, 2, Bytes::from_static(b"z"))
            .await
            .unwrap();
        let last = CompletedPart {
            part_number: 2,
            etag: md5_etag(b"z"),
        };
        store
            .complete_multipart(&k, &id, vec![small, last], WriteCondition::None)
            .await
            .unwrap();
        assert_eq!(store.get_bytes("m").unwrap(), "big!!z");
    }

    #[tokio::test]
    async fn multipart_condition_is_checked_at_completion_and_abort_cleans_up() {
        let store = MemStore::with_capabilities(small_parts());
        let k = key("c");
        let id = store
            .create_multipart(&k, PutOptions::default())
            .await
            .unwrap();
        let part = store
            .upload_part(&k, &id, 1, Bytes::from_static(b"new"))
            .await
            .unwrap();
        // Someone else creates the object while the upload is open.
        store.insert("c", "theirs");
        assert_error(
            store
                .complete_multipart(&k, &id, vec![part], WriteCondition::IfNoneMatch)
                .await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
        assert_eq!(store.get_bytes("c").unwrap(), "theirs");
        assert_eq!(store.open_uploads(), 1);
        store.abort_multipart(&k, &id).await.unwrap();
        assert_eq!(store.open_uploads(), 0);
        assert_error(
            store.abort_multipart(&k, &id).await,
            StoreErrorKind::NotFound,
            "NoSuchUpload",
        );
    }

    #[tokio::test]
    async fn upload_part_copy_takes_a_range_of_the_source() {
        let store = MemStore::with_capabilities(small_parts());
        store.insert("src", "0123456789");
        let k = key("dst");
        let id = store
            .create_multipart(&k, PutOptions::default())
            .await
            .unwrap();
        let p1 = store
            .upload_part_copy(&k, &id, 1, &key("src").into(), Some(ByteRange::new(0, 5)))
            .await
            .unwrap();
        let p2 = store
            .upload_part_copy(&k, &id, 2, &key("src").into(), None)
            .await
            .unwrap();
        assert_eq!(p1.etag, md5_etag(b"01234"));
        for bad in [ByteRange::new(5, 11), ByteRange::new(3, 3)] {
            assert_error(
                store
                    .upload_part_copy(&k, &id, 3, &key("src").into(), Some(bad))
                    .await,
                StoreErrorKind::InvalidRange,
                "InvalidRange",
            );
        }
        assert_error(
            store
                .upload_part_copy(&k, &id, 3, &key("missing").into(), None)
                .await,
            StoreErrorKind::NotFound,
            "NoSuchKey",
        );
        store
            .complete_multipart(&k, &id, vec![p1, p2], WriteCondition::None)
            .await
            .unwrap();
        assert_eq!(store.get_bytes("dst").unwrap(), "012340123456789");

        store.set_capabilities(Capabilities {
            upload_part_copy: false,
            ..small_parts()
        });
        let id = store
            .create_multipart(&k, PutOptions::default())
            .await
            .unwrap();
        assert_error(
            store
                .upload_part_copy(&k, &id, 1, &key("src").into(), None)
                .await,
            StoreErrorKind::InvalidRequest,
            "NotImplemented",
        );
    }

    fn copy_req(source: &str, dest: &str) -> CopyRequest {
        CopyRequest {
            source: CopySource::new(key(source)),
            dest: key(dest),
            metadata: MetadataDirective::Copy,
            condition: WriteCondition::None,
        }
    }

    #[tokio::test]
    async fn copy_rules() {
        let store = MemStore::new();
        let options = PutOptions {
            user_metadata: BTreeMap::from([("a".to_owned(), "1".to_owned())]),
            content_type: Some("text/x".into()),
            storage_class: Some("STANDARD_IA".into()),
            ..PutOptions::default()
        };
        let etag = store.insert_with("src", "data", options);

        let result = store.copy(copy_req("src", "kept")).await.unwrap();
        assert_eq!(result.etag, Some(etag.clone()));
        let kept = store.meta("kept").unwrap();
        assert_eq!(kept.user_metadata.get("a").map(String::as_str), Some("1"));
        assert_eq!(kept.content_type.as_deref(), Some("text/x"));
        assert_eq!(kept.storage_class, None);

        let mut replace = copy_req("src", "src");
        replace.metadata = MetadataDirective::Replace(PutOptions {
            content_type: Some("text/y".into()),
            ..PutOptions::default()
        });
        store.copy(replace).await.unwrap();
        let replaced = store.meta("src").unwrap();
        assert!(replaced.user_metadata.is_empty());
        assert_eq!(replaced.content_type.as_deref(), Some("text/y"));
        assert_eq!(store.get_bytes("src").unwrap(), "data");

        assert_error(
            store.copy(copy_req("src", "src")).await,
            StoreErrorKind::InvalidRequest,
            "InvalidRequest",
        );
        assert_error(
            store.copy(copy_req("missing", "x")).await,
            StoreErrorKind::NotFound,
            "NoSuchKey",
        );
        let missing = store.copy(copy_req("missing", "x")).await.unwrap_err();
        assert_eq!(missing.key.as_deref(), Some("missing"));

        let mut pinned = copy_req("src", "x");
        pinned.source.if_match = Some(ETag::new("other"));
        assert_error(
            store.copy(pinned).await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );
        let mut pinned = copy_req("src", "x");
        pinned.source.if_match = Some(etag);
        store.copy(pinned).await.unwrap();

        let mut exclusive = copy_req("src", "x");
        exclusive.condition = WriteCondition::IfNoneMatch;
        assert_error(
            store.copy(exclusive).await,
            StoreErrorKind::PreconditionFailed,
            "PreconditionFailed",
        );

        store.set_capabilities(Capabilities {
            max_single_put: 3,
            ..Capabilities::default()
        });
        assert_error(
            store.copy(copy_req("src", "y")).await,
            StoreErrorKind::InvalidRequest,
            "InvalidRequest",
        );
        assert!(store.get_bytes("y").is_none());
    }

    #[tokio::test]
    async fn delete_and_delete_many() {
        let store = MemStore::new();
        store.insert("a", "");
        store.insert("b", "");
        store.insert("c", "");
        store.delete(&key("a")).await.unwrap();
        store.delete(&key("a")).await.unwrap();
        let failures = store
            .delete_many(vec![key("b"), key("nope")])
            .await
            .unwrap();
        assert!(failures.is_empty());
        assert_eq!(store.keys(), vec!["c".to_string()]);
        let too_many: Vec<ObjectKey> = (0..1001).map(|i| key(&i.to_string())).collect();
        assert_error(
            store.delete_many(too_many).await,
            StoreErrorKind::InvalidRequest,
            "MalformedXML",
        );
        assert_error(
            store.delete_many(vec![]).await,
            StoreErrorKind::InvalidRequest,
            "MalformedXML",
        );
        store.set_capabilities(Capabilities {
            delete_many: false,
            ..Capabilities::default()
        });
        assert_error(
            store.delete_many(vec![key("c")]).await,
            StoreErrorKind::InvalidRequest,
            "NotImplemented",
        );
        assert_eq!(store.remove("c").unwrap(), "");
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn clones_share_the_bucket() {
        let store = MemStore::new();
        let other = store.clone();
        other.insert("k", "v");
        assert_eq!(store.len(), 1);
        assert_eq!(get_all(&store, "k").await.unwrap(), "v");
    }

    #[tokio::test]
    async fn buckets_are_listed_sorted_and_unknown_ones_are_not_found() {
        let buckets = MemBuckets::new();
        buckets.create_bucket("zeta").insert("z", "1");
        buckets.create_bucket("alpha");
        buckets.create_bucket_with("mid", small_parts());
        assert_eq!(
            buckets.list_buckets().await.unwrap(),
            vec!["alpha", "mid", "zeta"]
        );
        let zeta = buckets.bucket("zeta").unwrap();
        assert_eq!(zeta.head(&key("z")).await.unwrap().size, 1);
        assert_eq!(
            buckets.bucket("mid").unwrap().capabilities().min_part_size,
            5
        );
        assert_error(
            buckets.bucket("nope"),
            StoreErrorKind::NotFound,
            "NoSuchBucket",
        );
        // create_bucket on an existing name returns the same bucket.
        assert_eq!(buckets.create_bucket("zeta").keys(), vec!["z".to_string()]);
        assert!(buckets.remove_bucket("alpha").is_some());
        assert_eq!(buckets.names(), vec!["mid", "zeta"]);

        let single = SingleBucket::new("only", Arc::new(MemStore::new()));
        assert_eq!(single.list_buckets().await.unwrap(), vec!["only"]);
        assert!(single.bucket("only").is_ok());
        assert_error(
            single.bucket("zeta"),
            StoreErrorKind::NotFound,
            "NoSuchBucket",
        );
    }

    #[tokio::test]
    async fn persisted_store_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mtime = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        {
            let store = MemStore::persisted(dir.path()).unwrap();
            let options = PutOptions {
                user_metadata: BTreeMap::from([(
                    "weird name".to_owned(),
                    "line\nbreak".to_owned(),
                )]),
                content_type: Some("text/plain".into()),
                ..PutOptions::default()
            };
            store
                .put(
                    &key("docs/a b.txt"),
                    Bytes::from_static(b"hello\n\nworld"),
                    options,
                )
                .await
                .unwrap();
            store.insert("dir/", "");
            store.insert("gone", "x");
            store.insert("cold", "ice");
            store.set_storage_class("cold", "GLACIER");
            store.set_restored("cold", true);
            store.set_last_modified("dir/", mtime);
            store.delete(&key("gone")).await.unwrap();
            let long = "k".repeat(1024);
            store.insert(long.as_str(), "long key");
        }
        let store = MemStore::persisted(dir.path()).unwrap();
        assert_eq!(store.len(), 4);
        assert_eq!(store.get_bytes("docs/a b.txt").unwrap(), "hello\n\nworld");
        let meta = store.meta("docs/a b.txt").unwrap();
        assert_eq!(meta.etag, Some(md5_etag(b"hello\n\nworld")));
        assert_eq!(
            meta.user_metadata.get("weird name").map(String::as_str),
            Some("line\nbreak")
        );
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(store.meta("dir/").unwrap().last_modified, mtime);
        let cold = store.meta("cold").unwrap();
        assert_eq!(cold.storage_class.as_deref(), Some("GLACIER"));
        assert!(cold.restored);
        assert!(store.get_bytes("gone").is_none());
        assert_eq!(store.get_bytes(&"k".repeat(1024)).unwrap(), "long key");

        std::fs::write(dir.path().join("junk.obj"), "not an object").unwrap();
        assert!(MemStore::persisted(dir.path()).is_err());
    }

    /// Everything a full listing returns, page by page, checked against S3's paging rules.
    fn list_all(store: &MemStore, request: &ListRequest) -> Vec<String> {
        let mut request = request.clone();
        let max_keys = request.max_keys.unwrap_or(1000) as usize;
        let mut items = Vec::new();
        loop {
            let page = futures::executor::block_on(store.list(request.clone())).unwrap();
            let count = page.objects.len() + page.common_prefixes.len();
            assert!(count <= max_keys);
            let mut page_items: Vec<String> = page
                .objects
                .iter()
                .map(|o| o.key.as_str().to_owned())
                .chain(page.common_prefixes.iter().cloned())
                .collect();
            assert!(page.objects.windows(2).all(|w| w[0].key < w[1].key));
            assert!(page.common_prefixes.windows(2).all(|w| w[0] < w[1]));
            page_items.sort();
            items.extend(page_items);
            match page.next_continuation_token {
                Some(token) => {
                    assert_eq!(count, max_keys, "a truncated page is full");
                    request.continuation_token = Some(token);
                }
                None => return items,
            }
        }
    }

    /// The straightforward model: filter, roll up, sort.
    fn model_list(keys: &BTreeSet<String>, request: &ListRequest) -> Vec<String> {
        let mut items = BTreeSet::new();
        for k in keys {
            let Some(rest) = k.strip_prefix(request.prefix.as_str()) else {
                continue;
            };
            if request.start_after.as_ref().is_some_and(|after| k <= after) {
                continue;
            }
            match request
                .delimiter
                .as_deref()
                .and_then(|d| rest.find(d).map(|at| at + d.len()))
            {
                Some(end) => items.insert(k[..request.prefix.len() + end].to_owned()),
                None => items.insert(k.clone()),
            };
        }
        items.into_iter().collect()
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::string::string_regex("[ab/.-]{1,6}").unwrap(),
            1 => proptest::string::string_regex("[ab]{1,2}/([ab]{1,2}/)?").unwrap(),
        ]
    }

    proptest! {
        #[test]
        fn paging_through_a_listing_matches_the_model(
            keys in proptest::collection::btree_set(key_strategy(), 0..40),
            prefix in proptest::string::string_regex("[ab/]{0,2}").unwrap(),
            delimiter in prop_oneof![Just(None), Just(Some("/".to_owned())), Just(Some("b".to_owned()))],
            max_keys in 1u32..5,
            start_after in proptest::option::of(proptest::string::string_regex("[ab/.-]{0,4}").unwrap()),
        ) {
            let store = MemStore::new();
            for k in &keys {
                store.insert(k.as_str(), Bytes::new());
            }
            let request = ListRequest {
                prefix,
                delimiter,
                continuation_token: None,
                max_keys: Some(max_keys),
                start_after,
            };
            let listed = list_all(&store, &request);
            let mut deduped = listed.clone();
            deduped.dedup();
            prop_assert_eq!(&deduped, &listed, "no item repeats");
            prop_assert_eq!(listed, model_list(&keys, &request));
        }

        #[test]
        fn ranged_gets_return_the_matching_slice(
            len in prop_oneof![0usize..10, 0usize..(3 * GET_CHUNK_SIZE)],
            start in any::<proptest::sample::Index>(),
            span in 0u64..(2 * GET_CHUNK_SIZE as u64),
            past_end in 0u64..3,
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let store = MemStore::new();
            store.insert("f", data.clone());
            let size = len as u64;
            let start = if past_end == 0 { size + start.index(3) as u64 } else { start.index(len.max(1)) as u64 };
            let end = start + span;
            let result = futures::executor::block_on(get_range(&store, "f", start, end));
            if size > 0 && start >= size {
                prop_assert_eq!(result.unwrap_err().kind, StoreErrorKind::InvalidRange);
            } else {
                let expected = if size == 0 { &data[..] } else { &data[start as usize..end.min(size) as usize] };
                prop_assert_eq!(&result.unwrap()[..], expected);
            }
        }
    }
}
