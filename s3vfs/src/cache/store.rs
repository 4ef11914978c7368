//! [`CachingStore`]: an [`Backend`] that answers pinned GETs from a [`DataCache`].
//!
//! Only a GET with `If-Match` is cached: its key and ETag name one immutable version, so
//! its blocks can be reused for as long as they are kept. For such a GET of a range, the
//! blocks covering it are looked up one after another while the body is read; each run of
//! missing blocks is fetched with one ranged GET widened to block boundaries (and pinned to
//! the same ETag), its complete blocks are stored, and only the asked bytes are passed on.
//! At most one block is buffered per run. A random 4 KiB read costs one GET of one block
//! the first time, and none afterwards.
//!
//! The object's metadata (size above all) is remembered per key + ETag from the first GET,
//! so a GET served wholly from the cache can answer with it. Every error of the inner
//! store passes through unchanged, and nothing from a failed or short body is stored.
//! All other requests pass straight through.

use super::{BlockId, DataCache};
use crate::store::{
    Backend, ByteRange, ByteStream, Capabilities, CompletedPart, CopyRequest, CopySource,
    DeleteFailure, ETag, GetRequest, GetResponse, ListPage, ListRequest, ObjectKey, ObjectMeta,
    PutOptions, PutResult, StoreError, StoreErrorKind, StoreResult, UploadId, WriteCondition,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use lru::LruCache;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Object versions whose metadata is remembered. An entry is a few hundred bytes; an
/// object whose entry was dropped is fetched once more to learn its size.
const REMEMBERED_VERSIONS: NonZeroUsize = match NonZeroUsize::new(16 * 1024) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// The decorator. Cheap to share, like every store.
pub struct CachingStore {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<dyn Backend>,
    cache: Arc<dyn DataCache>,
    block_size: u64,
    scope: Arc<str>,
    metas: Mutex<LruCache<(ObjectKey, ETag), ObjectMeta>>,
}

impl std::fmt::Debug for CachingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingStore")
            .field("inner", &self.shared.inner)
            .field("cache", &self.shared.cache)
            .field("block_size", &self.shared.block_size)
            .field("scope", &self.shared.scope)
            .finish()
    }
}

impl CachingStore {
    /// Caches pinned GETs of `inner` in `cache`, in blocks of `block_size` bytes (at least
    /// 1). `scope` tells the keys of this store apart from those of other stores sharing
    /// the cache (e.g. the bucket name; `""` when the cache serves one store).
    pub fn new(
        inner: Arc<dyn Backend>,
        cache: Arc<dyn DataCache>,
        block_size: u64,
        scope: &str,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                inner,
                cache,
                block_size: block_size.max(1),
                scope: Arc::from(scope),
                metas: Mutex::new(LruCache::new(REMEMBERED_VERSIONS)),
            }),
        }
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<dyn DataCache> {
        &self.shared.cache
    }

    /// Waits until the cache has stored every block given to it so far (see
    /// [`DataCache::flush`]): e.g. before measuring a re-read from a disk cache.
    pub async fn flush(&self) {
        self.shared.cache.flush().await;
    }

    /// The store underneath.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.shared.inner
    }
}

impl Shared {
    fn metas(&self) -> std::sync::MutexGuard<'_, LruCache<(ObjectKey, ETag), ObjectMeta>> {
        // Single-statement updates of a map of plain values: a poisoned lock is still fine.
        crate::sync::lock(&self.metas)
    }

    fn block_id(&self, key: &ObjectKey, etag: &ETag, index: u64) -> BlockId {
        BlockId {
            scope: Arc::clone(&self.scope),
            key: key.clone(),
            etag: etag.clone(),
            index,
        }
    }

    /// The bytes `[start, end)` of block `index` of an object of `size` bytes.
    fn block_range(&self, index: u64, size: u64) -> ByteRange {
        let start = index.saturating_mul(self.block_size).min(size);
        ByteRange::new(start, start.saturating_add(self.block_size).min(size))
    }

    /// Block `index`, if cached with the length it must have.
    async fn cached_block(
        &self,
        key: &ObjectKey,
        etag: &ETag,
        index: u64,
        size: u64,
    ) -> Option<Bytes> {
        let data = self.cache.get(&self.block_id(key, etag, index)).await?;
        let expected = self.block_range(index, size).len();
        if data.len() as u64 == expected {
            Some(data)
        } else {
            // Another block size shared the cache, or a custom cache misbehaved.
            tracing::debug!(%key, index, len = data.len(), expected, "cached block of the wrong length ignored");
            None
        }
    }

    /// A GET of `range` pinned to `etag`, checked to be the range and version asked for.
    async fn fetch(
        &self,
        key: &ObjectKey,
        etag: &ETag,
        range: Option<ByteRange>,
    ) -> StoreResult<GetResponse> {
        let response = self
            .inner
            .get(GetRequest {
                key: key.clone(),
                range,
                if_match: Some(etag.clone()),
            })
            .await?;
        if response.meta.etag.as_ref().is_some_and(|got| got != etag) {
            return Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                format!("asked for ETag {etag}, got {:?}", response.meta.etag),
            )
            .with_key(key.as_str()));
        }
        tracing::trace!(%key, range = ?response.range, "data cache fetch");
        Ok(response)
    }
}

#[async_trait]
impl Backend for CachingStore {
    fn capabilities(&self) -> Capabilities {
        self.shared.inner.capabilities()
    }

    fn bucket(&self) -> Option<String> {
        self.shared.inner.bucket()
    }

    async fn head(&self, key: &ObjectKey) -> StoreResult<ObjectMeta> {
        self.shared.inner.head(key).await
    }

    async fn get(&self, request: GetRequest) -> StoreResult<GetResponse> {
        let shared = &self.shared;
        let Some(etag) = request.if_match.clone() else {
            return shared.inner.get(request).await;
        };
        if request.range.is_some_and(|r| r.start >= r.end) {
            // Empty or inverted ranges: the store's own answer, whatever it is.
            return shared.inner.get(request).await;
        }
        let key = request.key.clone();
        let known = shared.metas().get(&(key.clone(), etag.clone())).cloned();
        let (meta, wanted, open) = match known {
            Some(meta) => {
                let wanted = match request.range {
                    None => ByteRange::new(0, meta.size),
                    Some(r) if meta.size == 0 || r.start >= meta.size => {
                        // Empty object or a range past its end: let the store answer.
                        return shared.inner.get(request).await;
                    }
                    Some(r) => ByteRange::new(r.start, r.end.min(meta.size)),
                };
                (meta, wanted, None)
            }
            None => {
                // The size is unknown: one GET of the range widened to blocks tells it.
                let widened = request.range.map(|r| {
                    let bs = shared.block_size;
                    let start = r.start / bs * bs;
                    ByteRange::new(start, r.end.div_ceil(bs).saturating_mul(bs))
                });
                let response = shared.fetch(&key, &etag, widened).await?;
                let size = response.meta.size;
                let wanted = match request.range {
                    None => ByteRange::new(0, size),
                    Some(_) if size == 0 => ByteRange::new(0, 0),
                    Some(r) if r.start >= size => {
                        return Err(StoreError::range_past_end(key.as_str(), r.start, size));
                    }
                    Some(r) => ByteRange::new(r.start, r.end.min(size)),
                };
                let meta = response.meta.clone();
                shared
                    .metas()
                    .put((key.clone(), etag.clone()), meta.clone());
                (meta, wanted, Some(response))
            }
        };
        let size = meta.size;
        let mut body = Body {
            shared: Arc::clone(shared),
            key,
            etag,
            size,
            wanted,
            next_block: wanted.start / shared.block_size,
            last_block: wanted.end.saturating_sub(1) / shared.block_size,
            pending_hit: None,
            run: None,
            done: wanted.is_empty(),
        };
        if let Some(response) = open {
            body.open_run(response)?;
        }
        // The first piece now, so that the first GET's failure (the object changed, is
        // gone, …) is this call's error, as without a cache.
        let first = body.next_piece().await;
        let first = match first {
            Some(Err(e)) => return Err(e),
            other => other,
        };
        let rest = futures::stream::unfold(body, |mut body| async move {
            body.next_piece().await.map(|piece| (piece, body))
        });
        let stream: ByteStream = Box::pin(futures::stream::iter(first).chain(rest));
        Ok(GetResponse {
            meta,
            range: wanted,
            body: stream,
        })
    }

    async fn list(&self, request: ListRequest) -> StoreResult<ListPage> {
        self.shared.inner.list(request).await
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: Bytes,
        options: PutOptions,
    ) -> StoreResult<PutResult> {
        self.shared.inner.put(key, body, options).await
    }

    async fn create_multipart(
        &self,
        key: &ObjectKey,
        options: PutOptions,
    ) -> StoreResult<UploadId> {
        self.shared.inner.create_multipart(key, options).await
    }

    async fn upload_part(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Bytes,
    ) -> StoreResult<CompletedPart> {
        self.shared
            .inner
            .upload_part(key, upload_id, part_number, body)
            .await
    }

    async fn upload_part_copy(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        source: &CopySource,
        source_range: Option<ByteRange>,
    ) -> StoreResult<CompletedPart> {
        self.shared
            .inner
            .upload_part_copy(key, upload_id, part_number, source, source_range)
            .await
    }

    async fn complete_multipart(
        &self,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
        condition: WriteCondition,
    ) -> StoreResult<PutResult> {
        self.shared
            .inner
            .complete_multipart(key, upload_id, parts, condition)
            .await
    }

    async fn abort_multipart(&self, key: &ObjectKey, upload_id: &UploadId) -> StoreResult<()> {
        self.shared.inner.abort_multipart(key, upload_id).await
    }

    async fn copy(&self, request: CopyRequest) -> StoreResult<PutResult> {
        self.shared.inner.copy(request).await
    }

    async fn get_tags(&self, key: &ObjectKey) -> StoreResult<BTreeMap<String, String>> {
        self.shared.inner.get_tags(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
        self.shared.inner.delete(key).await
    }

    async fn delete_many(&self, keys: Vec<ObjectKey>) -> StoreResult<Vec<DeleteFailure>> {
        self.shared.inner.delete_many(keys).await
    }
}

/// The body of a cached GET: walks the blocks of `wanted`, from the cache or from runs
/// fetched from the store.
struct Body {
    shared: Arc<Shared>,
    key: ObjectKey,
    etag: ETag,
    size: u64,
    /// The bytes asked for.
    wanted: ByteRange,
    /// The next block to answer from (when no run is open).
    next_block: u64,
    /// The last block of `wanted`.
    last_block: u64,
    /// A block found while looking for the end of a run of missing blocks.
    pending_hit: Option<(u64, Bytes)>,
    /// The run of blocks being fetched.
    run: Option<Run>,
    /// Whether the body is over (all sent, or failed).
    done: bool,
}

/// One GET of a run of blocks.
struct Run {
    body: ByteStream,
    /// Object offset of the next byte the body yields.
    pos: u64,
    /// Object offset the body ends at.
    end: u64,
    /// The block being filled, when the run started on (or reached) its first byte.
    block: Option<BytesMut>,
}

impl Body {
    fn fail(&mut self, error: StoreError) -> Option<StoreResult<Bytes>> {
        self.done = true;
        self.run = None;
        Some(Err(error))
    }

    /// Starts reading a fetched run.
    fn open_run(&mut self, response: GetResponse) -> StoreResult<()> {
        let range = response.range;
        if response.meta.size != self.size {
            return Err(StoreError::new(
                StoreErrorKind::PreconditionFailed,
                format!(
                    "object size changed from {} to {} under the same ETag",
                    self.size, response.meta.size
                ),
            )
            .with_key(self.key.as_str()));
        }
        self.run = Some(Run {
            body: response.body,
            pos: range.start,
            end: range.end,
            block: None,
        });
        Ok(())
    }

    /// The slice of `data` (the object's bytes from `start`) that was asked for.
    fn wanted_part(&self, start: u64, data: &Bytes) -> Option<Bytes> {
        let end = start + data.len() as u64;
        let from = self.wanted.start.max(start);
        let to = self.wanted.end.min(end);
        (from < to).then(|| data.slice((from - start) as usize..(to - start) as usize))
    }

    /// The next piece of the body, `None` at its end.
    async fn next_piece(&mut self) -> Option<StoreResult<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.run.is_some() {
                match self.read_run().await {
                    Ok(Some(piece)) => return Some(Ok(piece)),
                    Ok(None) => continue,
                    Err(e) => return self.fail(e),
                }
            }
            if self.next_block > self.last_block {
                self.done = true;
                return None;
            }
            let index = self.next_block;
            let hit = match self.pending_hit.take() {
                Some((i, data)) if i == index => Some(data),
                _ => {
                    self.shared
                        .cached_block(&self.key, &self.etag, index, self.size)
                        .await
                }
            };
            if let Some(data) = hit {
                self.next_block += 1;
                let start = self.shared.block_range(index, self.size).start;
                match self.wanted_part(start, &data) {
                    Some(piece) => return Some(Ok(piece)),
                    None => continue,
                }
            }
            // A miss: the run goes on until the next cached block.
            let mut last = index;
            while last < self.last_block {
                let next = last + 1;
                if let Some(data) = self
                    .shared
                    .cached_block(&self.key, &self.etag, next, self.size)
                    .await
                {
                    self.pending_hit = Some((next, data));
                    break;
                }
                last = next;
            }
            let range = ByteRange::new(
                self.shared.block_range(index, self.size).start,
                self.shared.block_range(last, self.size).end,
            );
            let opened = match self.shared.fetch(&self.key, &self.etag, Some(range)).await {
                Ok(response) if response.range == range => self.open_run(response),
                Ok(response) => Err(StoreError::new(
                    StoreErrorKind::Transient,
                    format!("asked for bytes {range:?}, got {:?}", response.range),
                )
                .with_key(self.key.as_str())),
                Err(e) => Err(e),
            };
            if let Err(e) = opened {
                return self.fail(e);
            }
        }
    }

    /// Reads the open run: the next asked-for piece, or `None` when the run ended (or the
    /// chunk read held nothing asked for).
    async fn read_run(&mut self) -> StoreResult<Option<Bytes>> {
        let Some(run) = self.run.as_mut() else {
            return Ok(None);
        };
        let chunk = match run.body.next().await {
            Some(chunk) => chunk?,
            None => {
                if run.pos < run.end {
                    return Err(StoreError::new(
                        StoreErrorKind::Transient,
                        format!("body ended at byte {} of {}", run.pos, run.end),
                    )
                    .with_key(self.key.as_str()));
                }
                self.next_block = run.end.div_ceil(self.shared.block_size);
                self.run = None;
                return Ok(None);
            }
        };
        let start = run.pos;
        let end = start + chunk.len() as u64;
        if end > run.end {
            return Err(StoreError::new(
                StoreErrorKind::Transient,
                format!("body longer than the {} bytes asked for", run.end),
            )
            .with_key(self.key.as_str()));
        }
        run.pos = end;
        // Fill blocks; store each one completed.
        let mut at = start;
        let mut complete = Vec::new();
        while at < end {
            let index = at / self.shared.block_size;
            let block = self.shared.block_range(index, self.size);
            let upto = block.end.min(end);
            if at == block.start {
                run.block = Some(BytesMut::with_capacity(block.len() as usize));
            }
            if let Some(buf) = run.block.as_mut() {
                buf.extend_from_slice(&chunk[(at - start) as usize..(upto - start) as usize]);
                if buf.len() as u64 == block.len() {
                    if let Some(buf) = run.block.take() {
                        complete.push((index, buf.freeze()));
                    }
                }
            }
            at = upto;
        }
        for (index, data) in complete {
            let id = self.shared.block_id(&self.key, &self.etag, index);
            self.shared.cache.put(id, data).await;
        }
        Ok(self.wanted_part(start, &chunk))
    }
}
