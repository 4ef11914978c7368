//! Reading an open object: ranged GETs with sequential read-ahead.
//!
//! A [`Prefetcher`] keeps a window of parts (contiguous byte ranges) being fetched in
//! parallel by tokio tasks. Sequential reads grow the window (doubling from
//! `initial_read_window` to `max_read_window`, and at least twice a reader's request, so
//! that large reads get whole parts from the start, while the first part stays as small
//! as the first read allows); a jump outside the window drops it, and
//! the next fetch is just the bytes asked for, so random reads cost one small GET. Every
//! GET is pinned to the ETag seen at open (`If-Match`), so a replaced object gives
//! [`VfsError::ObjectChanged`] instead of mixing old and new bytes.
//!
//! No lock is held across an `.await`: the window is updated under a short lock, and the
//! part futures (shared) are awaited after it is released.

use crate::budget::{MemoryBudget, Reservation};
use crate::config::FsConfig;
use crate::error::{VfsError, VfsResult};
use crate::store::{Backend, ByteRange, ETag, GetRequest, ObjectKey, StoreError, StoreErrorKind};
use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How far behind the current position fetched data is kept, for small backward seeks
/// and reads that arrive late.
const BACKWARD_KEEP: u64 = 4 * 1024 * 1024;
/// A read ending at most this far behind a sequential stream's position is a late
/// arrival of that stream, not a seek.
const LATE_READ_TOLERANCE: u64 = 16 * 1024 * 1024;
/// A forward jump of at most this much past the fetched window still counts as sequential.
const FORWARD_TOLERANCE: u64 = 2 * 1024 * 1024;

type PartFuture = Shared<BoxFuture<'static, Result<PartData, StoreError>>>;

/// A fetched part: the body chunks as the store sent them (not copied into one buffer),
/// with the offset of each chunk's first byte within the part.
#[derive(Clone, Debug)]
struct PartData {
    chunks: Arc<Vec<Bytes>>,
    starts: Arc<Vec<u64>>,
    len: u64,
}

impl PartData {
    /// Appends the bytes `[from, to)` of the part to `out`, as slices of its chunks.
    fn slices(&self, from: u64, to: u64, out: &mut Vec<Bytes>) {
        let first = match self.starts.binary_search(&from) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        for (chunk, &start) in self.chunks.iter().zip(self.starts.iter()).skip(first) {
            if start >= to {
                break;
            }
            let chunk_end = start + chunk.len() as u64;
            if chunk_end <= from {
                continue;
            }
            let a = (from.max(start) - start) as usize;
            let b = (to.min(chunk_end) - start) as usize;
            out.push(chunk.slice(a..b));
        }
    }
}

/// The pieces as one buffer: the piece itself when there is one, else a copy.
pub(crate) fn join(mut pieces: Vec<Bytes>) -> Bytes {
    match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => {
            let total = pieces.iter().map(Bytes::len).sum();
            let mut buf = BytesMut::with_capacity(total);
            for piece in pieces {
                buf.extend_from_slice(&piece);
            }
            buf.freeze()
        }
    }
}

/// Reads a GET body into its chunks; fails if it is shorter than `expected`.
async fn fetch_chunks(
    store: Arc<dyn Backend>,
    request: GetRequest,
    expected: u64,
) -> Result<PartData, StoreError> {
    use futures::StreamExt;
    let key = request.key.clone();
    let mut body = store.get(request).await?.body;
    let mut chunks = Vec::new();
    let mut starts = Vec::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if chunk.is_empty() {
            continue;
        }
        starts.push(len);
        len += chunk.len() as u64;
        chunks.push(chunk);
    }
    if len < expected {
        return Err(StoreError::new(
            StoreErrorKind::Transient,
            format!("body ended after {len} of {expected} bytes"),
        )
        .with_key(key.as_str()));
    }
    Ok(PartData {
        chunks: Arc::new(chunks),
        starts: Arc::new(starts),
        len,
    })
}

/// One range being fetched (or fetched).
struct Part {
    range: ByteRange,
    data: PartFuture,
    task: tokio::task::AbortHandle,
    /// The part's share of the memory budget (`None` for the bytes of a read being
    /// answered when the budget was full).
    _reservation: Option<Reservation>,
}

impl Drop for Part {
    fn drop(&mut self) {
        // A part nobody will read is cancelled, so a seek does not keep downloading. One
        // that a concurrent read is still awaiting (it holds a clone of `data`) is left to
        // finish: aborting it would fail that read with a spurious error.
        if self.data.strong_count().is_none_or(|count| count <= 1) {
            self.task.abort();
        }
    }
}

/// The read-ahead state of one handle.
struct Window {
    parts: VecDeque<Part>,
    /// Where the last read ended; a read starting here is sequential.
    next_expected: u64,
    /// Bytes to keep fetched ahead of the reader.
    ahead: u64,
    /// Whether any read happened yet.
    started: bool,
}

/// Reads one object version with read-ahead. Cheap to share between tasks.
pub(crate) struct Prefetcher {
    store: Arc<dyn Backend>,
    key: ObjectKey,
    path: String,
    etag: Option<ETag>,
    size: u64,
    part_size: u64,
    initial_window: u64,
    max_window: u64,
    budget: MemoryBudget,
    window: Mutex<Window>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher")
            .field("key", &self.key)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Prefetcher {
    /// A reader of `key` (shown as `path` in errors), `size` bytes, pinned to `etag`.
    pub(crate) fn new(
        store: Arc<dyn Backend>,
        key: ObjectKey,
        path: String,
        etag: Option<ETag>,
        size: u64,
        config: &FsConfig,
        budget: MemoryBudget,
    ) -> Self {
        Self {
            store,
            key,
            path,
            etag,
            size,
            part_size: config.read_part_size.max(1),
            initial_window: config.initial_read_window.max(1),
            max_window: config.max_read_window.max(config.initial_read_window),
            budget,
            window: Mutex::new(Window {
                parts: VecDeque::new(),
                next_expected: 0,
                ahead: 0,
                started: false,
            }),
        }
    }

    /// Size of the object version being read.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The ETag the reads are pinned to.
    pub(crate) fn etag(&self) -> Option<&ETag> {
        self.etag.as_ref()
    }

    /// The key being read.
    pub(crate) fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// Reads up to `len` bytes at `offset` (fewer only at the end of the object), as the
    /// slices of the fetched chunks, in order, with no copy.
    pub(crate) async fn read_chunks(&self, offset: u64, len: u64) -> VfsResult<Vec<Bytes>> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let (needed, _late) = self.plan(offset, end);
        // The parts must cover the request without a gap: a short answer would be taken
        // for the end of the file by the kernel.
        let mut covered = offset;
        for (range, _) in &needed {
            if range.start > covered {
                break;
            }
            covered = covered.max(range.end);
        }
        if covered < end {
            self.lock().parts.clear();
            return Err(VfsError::Io(
                StoreError::new(
                    StoreErrorKind::Other,
                    format!("read-ahead window does not cover {offset}..{end}"),
                )
                .with_key(self.key.as_str()),
            ));
        }
        let mut pieces = Vec::with_capacity(needed.len());
        for (range, data) in needed {
            match data.await {
                Ok(part) => {
                    let from = offset.max(range.start) - range.start;
                    let to = end.min(range.end) - range.start;
                    if to > part.len {
                        self.forget(range);
                        return Err(VfsError::Io(
                            StoreError::new(StoreErrorKind::Transient, "short body from the store")
                                .with_key(self.key.as_str()),
                        ));
                    }
                    part.slices(from, to, &mut pieces);
                }
                Err(err) => {
                    self.forget(range);
                    if err.kind == StoreErrorKind::PreconditionFailed {
                        tracing::warn!(key = %self.key, "object replaced while open for reading");
                    } else {
                        tracing::warn!(key = %self.key, error = %err, "read failed");
                    }
                    return Err(VfsError::from_store(&self.path, err));
                }
            }
        }
        Ok(pieces)
    }

    /// Drops a failed part, and the parts after it, so the next read fetches them again.
    /// Dropping only the failed one would leave a hole in the window, which must stay
    /// contiguous: `plan` would then find no part for the hole and answer an empty read,
    /// which the kernel takes for the end of the file.
    fn forget(&self, range: ByteRange) {
        let mut window = self.lock();
        if let Some(failed) = window.parts.iter().position(|p| p.range == range) {
            window.parts.truncate(failed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // The window holds only handles to tasks; a poisoned lock still guards valid state.
        crate::sync::lock(&self.window)
    }

    /// Updates the window for a read of `[offset, end)` and returns the parts covering it
    /// (and, for a late read, the one-off part fetched for it, kept alive by the caller).
    fn plan(&self, offset: u64, end: u64) -> (Vec<(ByteRange, PartFuture)>, Option<Part>) {
        let mut window = self.lock();
        // The kernel sends several read-ahead requests at once and they may arrive out of
        // order: a read a little behind a sequential stream is answered by a one-off GET
        // and leaves the window alone.
        let behind = window.started
            && window.ahead > 0
            && end <= window.next_expected
            && window.next_expected - offset <= LATE_READ_TOLERANCE
            && window.parts.front().is_none_or(|p| offset < p.range.start);
        if behind {
            let range = ByteRange::new(offset, end);
            let part = self.spawn_part(range, None);
            return (vec![(range, part.data.clone())], Some(part));
        }
        let fetched_end = window.parts.back().map(|p| p.range.end);
        let fetched_start = window.parts.front().map(|p| p.range.start);
        let sequential = if !window.started {
            offset == 0
        } else {
            offset == window.next_expected
                || matches!((fetched_start, fetched_end), (Some(s), Some(e))
                    if offset >= s && offset <= e.saturating_add(FORWARD_TOLERANCE))
        };
        if sequential {
            let grown = if window.ahead == 0 {
                self.initial_window
            } else if offset >= window.next_expected {
                window.ahead.saturating_mul(2).min(self.max_window)
            } else {
                window.ahead
            };
            // A reader asking for more than the window at once (`read_bytes` of 8 MiB, a
            // large buffer) fetches twice its read ahead: parts no smaller than its reads
            // and the next one already in flight, rather than a run of small GETs while
            // the window doubles its way up to them.
            let wanted = (end - offset).saturating_mul(2).min(self.max_window);
            window.ahead = grown.max(wanted);
        } else {
            window.parts.clear();
            window.ahead = 0;
        }
        window.started = true;
        window.next_expected = if sequential {
            window.next_expected.max(end)
        } else {
            end
        };
        while window
            .parts
            .front()
            .is_some_and(|p| p.range.end.saturating_add(BACKWARD_KEEP) <= offset)
        {
            window.parts.pop_front();
        }
        // Parts must be contiguous from `offset`: if the window does not reach back to
        // it (a forward jump inside the tolerance), start afresh at `offset`.
        if window.parts.front().is_some_and(|p| p.range.start > offset)
            || window.parts.back().is_some_and(|p| p.range.end < offset)
        {
            window.parts.clear();
        }
        let target = end.max(offset.saturating_add(window.ahead)).min(self.size);
        let fresh = window.parts.is_empty();
        let mut next = window.parts.back().map_or(offset, |p| p.range.end);
        while next < target {
            let part_end = if window.ahead == 0 {
                // Random access: exactly what was asked.
                end
            } else if fresh && next == offset {
                // The part the reader waits for first: what it asks for, at least the
                // first window, so that its time to first byte does not grow with the
                // read-ahead behind it.
                end.max(offset.saturating_add(self.initial_window))
                    .min(next.saturating_add(self.part_size))
                    .min(self.size)
            } else {
                (next + self.part_size.min(window.ahead)).min(self.size)
            };
            let range = ByteRange::new(next, part_end.max(next + 1).min(self.size));
            match self.budget.try_read_ahead(range.len()) {
                Some(reservation) => window
                    .parts
                    .push_back(self.spawn_part(range, Some(reservation))),
                None if range.start < end => {
                    // The budget is full: fetch only the bytes being read, unreserved
                    // (bounded by the size of one read).
                    let range = ByteRange::new(next, end);
                    window.parts.push_back(self.spawn_part(range, None));
                    break;
                }
                None => break,
            }
            next = window.parts.back().map_or(target, |p| p.range.end);
        }
        let needed = window
            .parts
            .iter()
            .filter(|p| p.range.start < end && p.range.end > offset)
            .map(|p| (p.range, p.data.clone()))
            .collect();
        (needed, None)
    }

    fn spawn_part(&self, range: ByteRange, reservation: Option<Reservation>) -> Part {
        let store = Arc::clone(&self.store);
        let request = GetRequest {
            key: self.key.clone(),
            range: Some(range),
            if_match: self.etag.clone(),
        };
        let task = tokio::spawn(fetch_chunks(store, request, range.len()));
        let abort = task.abort_handle();
        let key = self.key.clone();
        let data = async move {
            match task.await {
                Ok(result) => result,
                Err(join) => Err(StoreError::new(
                    StoreErrorKind::Other,
                    format!("read task ended: {join}"),
                )
                .with_key(key.as_str())),
            }
        }
        .boxed()
        .shared();
        Part {
            range,
            data,
            task: abort,
            _reservation: reservation,
        }
    }
}
