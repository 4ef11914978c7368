//! Composable [`Backend`] wrappers that count, fail, throttle and slow down requests.
//!
//! Each wrapper holds an `Arc<dyn Backend>` and is itself an [`Backend`], so they
//! stack: `CountingStore::new(Arc::new(FaultStore::new(Arc::new(mem.clone()))))` counts every
//! request the code under test makes, including the ones the fault layer fails.
//!
//! - [`CountingStore`]: per-[`Op`] request counters, readable while the store is shared;
//! - [`FaultStore`]: injected failures — the n-th call of an op, the next k calls, every call
//!   about a matching key, throttling (`SlowDown`) at random or for the next k calls, GET
//!   bodies cut off mid-stream, and malformed LIST pages ([`ListFault`]);
//! - [`LatencyStore`]: a fixed, optionally jittered, delay before each request.
//! - [`LastErrorStore`]: keeps the last error the wrapped store returned, so that a failure
//!   seen only as an errno (through a mount) can be shown with the store's code and message.
//!
//! Clones of a wrapper share its state (counters, rules), so a test keeps one clone to steer
//! or inspect while the file system owns another. Locks are never held across an `.await`.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use s3vfs::store::{
    Backend, ByteRange, ByteStream, Capabilities, CompletedPart, CopyRequest, CopySource,
    DeleteFailure, GetRequest, GetResponse, ListPage, ListRequest, MetadataDirective, ObjectKey,
    ObjectMeta, PutOptions, PutResult, StoreError, StoreErrorKind, StoreResult, UploadId,
    WriteCondition,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One operation of the [`Backend`] trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Backend::head`].
    Head,
    /// [`Backend::get`].
    Get,
    /// [`Backend::list`].
    List,
    /// [`Backend::put`].
    Put,
    /// [`Backend::create_multipart`].
    CreateMultipart,
    /// [`Backend::upload_part`].
    UploadPart,
    /// [`Backend::upload_part_copy`].
    UploadPartCopy,
    /// [`Backend::complete_multipart`].
    CompleteMultipart,
    /// [`Backend::abort_multipart`].
    AbortMultipart,
    /// [`Backend::copy`].
    Copy,
    /// [`Backend::get_tags`].
    GetTags,
    /// [`Backend::delete`].
    Delete,
    /// [`Backend::delete_many`].
    DeleteMany,
}

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; 13] = [
        Op::Head,
        Op::Get,
        Op::List,
        Op::Put,
        Op::CreateMultipart,
        Op::UploadPart,
        Op::UploadPartCopy,
        Op::CompleteMultipart,
        Op::AbortMultipart,
        Op::Copy,
        Op::GetTags,
        Op::Delete,
        Op::DeleteMany,
    ];

    /// The S3 API name of the operation (e.g. `"HeadObject"`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Head => "HeadObject",
            Op::Get => "GetObject",
            Op::List => "ListObjectsV2",
            Op::Put => "PutObject",
            Op::CreateMultipart => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipart => "CompleteMultipartUpload",
            Op::AbortMultipart => "AbortMultipartUpload",
            Op::Copy => "CopyObject",
            Op::GetTags => "GetObjectTagging",
            Op::Delete => "DeleteObject",
            Op::DeleteMany => "DeleteObjects",
        }
    }

    /// Position in [`Op::ALL`].
    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Calls every [`Backend`] method of `store` once ([`Op::CreateMultipart`] twice: one
/// upload completed, one aborted), on keys under `every-op/` that it removes again: for
/// tests of what each kind of request does or carries. The completed upload's first part
/// is `first_part` bytes long (at least the store's smallest part).
pub async fn call_every_op(store: &dyn Backend, first_part: usize) -> StoreResult<()> {
    let (src, dst) = (
        ObjectKey::new("every-op/src"),
        ObjectKey::new("every-op/dst"),
    );
    let options = PutOptions::default;
    store
        .put(&src, Bytes::from_static(b"data"), options())
        .await?;
    store.head(&src).await?;
    store
        .get(GetRequest::whole(src.clone()))
        .await?
        .collect()
        .await?;
    store.list(ListRequest::default()).await?;
    store.get_tags(&src).await?;
    let copy = CopyRequest {
        source: CopySource::new(src.clone()),
        dest: dst.clone(),
        metadata: MetadataDirective::Copy,
        condition: WriteCondition::None,
    };
    store.copy(copy).await?;
    let id = store.create_multipart(&dst, options()).await?;
    let first = Bytes::from(vec![b'x'; first_part]);
    let p1 = store.upload_part(&dst, &id, 1, first).await?;
    let source = CopySource::new(src.clone());
    let p2 = store.upload_part_copy(&dst, &id, 2, &source, None).await?;
    (store.complete_multipart(&dst, &id, vec![p1, p2], WriteCondition::None)).await?;
    let id = store.create_multipart(&dst, options()).await?;
    store.abort_multipart(&dst, &id).await?;
    store.delete(&dst).await?;
    store.delete_many(vec![src]).await?;
    Ok(())
}

/// Forwards every [`Backend`] method to `self.inner` after `self.before(op, keys)`.
///
/// `before` returns `StoreResult<()>` (an `Err` is returned instead of calling the inner
/// store); `$get_body` post-processes a successful GET response, `$list_body` a successful
/// LIST page (knowing the continuation token the request carried; identity when not
/// given), and `$after` sees (and may replace) the inner store's result of every call.
macro_rules! forward_object_store {
    ($ty:ty, |$this:ident, $resp:ident| $get_body:expr, |$me:ident, $result:ident| $after:expr) => {
        forward_object_store!(
            $ty,
            |$this, $resp| $get_body,
            |$me, $result| $after,
            |_this, _asked, page| page
        );
    };
    (
        $ty:ty,
        |$this:ident, $resp:ident| $get_body:expr,
        |$me:ident, $result:ident| $after:expr,
        |$list_this:ident, $asked:ident, $page:ident| $list_body:expr
    ) => {
        #[async_trait]
        impl Backend for $ty {
            fn capabilities(&self) -> Capabilities {
                self.inner.capabilities()
            }

            async fn head(&self, key: &ObjectKey) -> StoreResult<ObjectMeta> {
                self.before(Op::Head, &[key.as_str()]).await?;
                {
                    let $result = self.inner.head(key).await;
                    let $me = self;
                    $after
                }
            }

            async fn get(&self, request: GetRequest) -> StoreResult<GetResponse> {
                self.before(Op::Get, &[request.key.as_str()]).await?;
                let $resp = {
                    let $result = self.inner.get(request).await;
                    let $me = self;
                    $after
                }?;
                let $this = self;
                Ok($get_body)
            }

            async fn list(&self, request: ListRequest) -> StoreResult<ListPage> {
                self.before(Op::List, &[request.prefix.as_str()]).await?;
                let $asked = request.continuation_token.clone();
                {
                    let $result = match self.inner.list(request).await {
                        Ok($page) => {
                            let $list_this = self;
                            Ok($list_body)
                        }
                        Err(e) => Err(e),
                    };
                    let $me = self;
                    $after
                }
            }

            async fn put(
                &self,
                key: &ObjectKey,
                body: Bytes,
                options: PutOptions,
            ) -> StoreResult<PutResult> {
                self.before(Op::Put, &[key.as_str()]).await?;
                {
                    let $result = self.inner.put(key, body, options).await;
                    let $me = self;
                    $after
                }
            }

            async fn create_multipart(
                &self,
                key: &ObjectKey,
                options: PutOptions,
            ) -> StoreResult<UploadId> {
                self.before(Op::CreateMultipart, &[key.as_str()]).await?;
                {
                    let $result = self.inner.create_multipart(key, options).await;
                    let $me = self;
                    $after
                }
            }

            async fn upload_part(
                &self,
                key: &ObjectKey,
                upload_id: &UploadId,
                part_number: u32,
                body: Bytes,
            ) -> StoreResult<CompletedPart> {
                self.before(Op::UploadPart, &[key.as_str()]).await?;
                {
                    let $result = self
                        .inner
                        .upload_part(key, upload_id, part_number, body)
                        .await;
                    let $me = self;
                    $after
                }
            }

            async fn upload_part_copy(
                &self,
                key: &ObjectKey,
                upload_id: &UploadId,
                part_number: u32,
                source: &CopySource,
                source_range: Option<ByteRange>,
            ) -> StoreResult<CompletedPart> {
                self.before(Op::UploadPartCopy, &[key.as_str(), source.key.as_str()])
                    .await?;
                {
                    let $result = self
                        .inner
                        .upload_part_copy(key, upload_id, part_number, source, source_range)
                        .await;
                    let $me = self;
                    $after
                }
            }

            async fn complete_multipart(
                &self,
                key: &ObjectKey,
                upload_id: &UploadId,
                parts: Vec<CompletedPart>,
                condition: WriteCondition,
            ) -> StoreResult<PutResult> {
                self.before(Op::CompleteMultipart, &[key.as_str()]).await?;
                {
                    let $result = self
                        .inner
                        .complete_multipart(key, upload_id, parts, condition)
                        .await;
                    let $me = self;
                    $after
                }
            }

            async fn abort_multipart(
                &self,
                key: &ObjectKey,
                upload_id: &UploadId,
            ) -> StoreResult<()> {
                self.before(Op::AbortMultipart, &[key.as_str()]).await?;
                {
                    let $result = self.inner.abort_multipart(key, upload_id).await;
                    let $me = self;
                    $after
                }
            }

            async fn copy(&self, request: CopyRequest) -> StoreResult<PutResult> {
                self.before(
                    Op::Copy,
                    &[request.source.key.as_str(), request.dest.as_str()],
                )
                .await?;
                {
                    let $result = self.inner.copy(request).await;
                    let $me = self;
                    $after
                }
            }

            async fn get_tags(
                &self,
                key: &ObjectKey,
            ) -> StoreResult<std::collections::BTreeMap<String, String>> {
                self.before(Op::GetTags, &[key.as_str()]).await?;
                {
                    let $result = self.inner.get_tags(key).await;
                    let $me = self;
                    $after
                }
            }

            async fn delete(&self, key: &ObjectKey) -> StoreResult<()> {
                self.before(Op::Delete, &[key.as_str()]).await?;
                {
                    let $result = self.inner.delete(key).await;
                    let $me = self;
                    $after
                }
            }

            async fn delete_many(&self, keys: Vec<ObjectKey>) -> StoreResult<Vec<DeleteFailure>> {
                let names: Vec<&str> = keys.iter().map(ObjectKey::as_str).collect();
                self.before(Op::DeleteMany, &names).await?;
                {
                    let $result = self.inner.delete_many(keys).await;
                    let $me = self;
                    $after
                }
            }
        }
    };
}

/// Keeps the last error the wrapped store returned, except plain missing keys (every lookup
/// of a new name gets one): a NotFound with the code `NoSuchUpload` or `NoSuchBucket` is
/// kept.
///
/// ```
/// use s3vfs::store::{ObjectKey, Backend};
/// use s3vfs_testkit::fault::LastErrorStore;
/// use s3vfs_testkit::MemStore;
/// use std::sync::Arc;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = LastErrorStore::new(Arc::new(MemStore::new()));
/// assert!(store.head(&ObjectKey::new("missing")).await.is_err());
/// assert_eq!(store.take(), None);
/// # }
/// ```
#[derive(Clone)]
pub struct LastErrorStore {
    inner: Arc<dyn Backend>,
    last: Arc<Mutex<Option<StoreError>>>,
}

impl LastErrorStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            last: Arc::default(),
        }
    }

    /// The last error kept since the previous call, forgetting it.
    pub fn take(&self) -> Option<StoreError> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    async fn before(&self, _op: Op, _keys: &[&str]) -> StoreResult<()> {
        Ok(())
    }

    fn note<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        if let Err(e) = &result {
            let plain_missing = e.kind == StoreErrorKind::NotFound
                && !matches!(e.code.as_deref(), Some("NoSuchUpload" | "NoSuchBucket"));
            if !plain_missing {
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.clone());
            }
        }
        result
    }
}

impl fmt::Debug for LastErrorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastErrorStore").finish_non_exhaustive()
    }
}

forward_object_store!(
    LastErrorStore,
    |_this, response| response,
    |this, result| this.note(result)
);

/// Counts the requests made of the wrapped store, per [`Op`] (failed ones included).
///
/// ```
/// use s3vfs_testkit::fault::{CountingStore, Op};
/// use s3vfs_testkit::MemStore;
/// use std::sync::Arc;
/// let counting = CountingStore::new(Arc::new(MemStore::new()));
/// assert_eq!(counting.count(Op::Get), 0);
/// ```
#[derive(Clone)]
pub struct CountingStore {
    inner: Arc<dyn Backend>,
    counts: Arc<[AtomicU64; Op::ALL.len()]>,
    /// Requests made and not yet answered, and the most there were at once.
    in_flight: Arc<(AtomicU64, AtomicU64)>,
}

impl CountingStore {
    /// Counts the requests made of `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            counts: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
            in_flight: Arc::default(),
        }
    }

    /// Counts requests to `inner` separately, but requests in flight together with
    /// `other`'s (so that a cap across several buckets can be checked).
    pub fn sharing_in_flight(inner: Arc<dyn Backend>, other: &CountingStore) -> Self {
        Self {
            in_flight: Arc::clone(&other.in_flight),
            ..Self::new(inner)
        }
    }

    /// The most requests that were in flight at once (made, not yet answered; a GET until
    /// its response, not its whole body).
    pub fn max_in_flight(&self) -> u64 {
        self.in_flight.1.load(Ordering::SeqCst)
    }

    /// Requests of `op` so far.
    pub fn count(&self, op: Op) -> u64 {
        self.counts[op.index()].load(Ordering::SeqCst)
    }

    /// Requests of every op so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    /// The non-zero counters.
    pub fn counts(&self) -> BTreeMap<Op, u64> {
        Op::ALL
            .iter()
            .map(|&op| (op, self.count(op)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        for counter in self.counts.iter() {
            counter.store(0, Ordering::SeqCst);
        }
        self.in_flight.1.store(0, Ordering::SeqCst);
    }

    async fn before(&self, op: Op, _keys: &[&str]) -> StoreResult<()> {
        self.counts[op.index()].fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.0.fetch_add(1, Ordering::SeqCst) + 1;
        self.in_flight.1.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    fn answered(&self) {
        self.in_flight.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore")
            .field("inner", &self.inner)
            .field("counts", &self.counts())
            .finish()
    }
}

forward_object_store!(CountingStore, |_this, response| response, |this, result| {
    this.answered();
    result
});

/// A key predicate of [`FaultStore::fail_matching`].
type KeyPredicate = Box<dyn Fn(Op, &str) -> bool + Send + Sync>;

/// When a failure rule fires.
enum Trigger {
    /// The `n`-th call of `op` after the rule was added (`seen` calls so far).
    Nth { op: Op, n: u64, seen: u64 },
    /// The next `remaining` calls of `op`, or of any op.
    Next { op: Option<Op>, remaining: u64 },
    /// Every call about a key the predicate accepts.
    Matching(KeyPredicate),
    /// Each call with probability `p`, drawn from a seeded generator.
    Random { p: f64, rng: u64 },
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nth { op, n, seen } => write!(f, "{op} call #{n} ({seen} seen)"),
            Self::Next {
                op: Some(op),
                remaining,
            } => write!(f, "next {remaining} {op} calls"),
            Self::Next {
                op: None,
                remaining,
            } => write!(f, "next {remaining} calls"),
            Self::Matching(_) => f.write_str("calls about matching keys"),
            Self::Random { p, .. } => write!(f, "calls with probability {p}"),
        }
    }
}

/// A failure rule: a trigger and the error it injects.
#[derive(Debug)]
struct Rule {
    trigger: Trigger,
    error: StoreError,
}

impl Rule {
    /// Sees one call; returns whether the rule fails it. `taken` says whether an earlier
    /// rule already failed the call, in which case counting rules count the call but
    /// consuming rules are not used up.
    fn observe(&mut self, op: Op, keys: &[&str], taken: bool) -> bool {
        match &mut self.trigger {
            Trigger::Nth { op: want, n, seen } => {
                if *want != op {
                    return false;
                }
                *seen += 1;
                *seen == *n
            }
            Trigger::Next {
                op: want,
                remaining,
            } => {
                if taken || *remaining == 0 || want.is_some_and(|w| w != op) {
                    return false;
                }
                *remaining -= 1;
                true
            }
            Trigger::Matching(predicate) => keys.iter().any(|key| predicate(op, key)),
            Trigger::Random { p, rng } => !taken && unit_random(rng) < *p,
        }
    }

    /// Whether the rule can never fire again.
    fn is_spent(&self) -> bool {
        match &self.trigger {
            Trigger::Nth { n, seen, .. } => seen >= n,
            Trigger::Next { remaining, .. } => *remaining == 0,
            Trigger::Matching(_) | Trigger::Random { .. } => false,
        }
    }
}

/// A malformed LIST page, as a buggy S3-compatible store might send: the two ways a page
/// can break the chain of continuation tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFault {
    /// The page says it is truncated but carries no continuation token (its entries are
    /// kept): read as the last page, it would end the listing early.
    TruncatedWithoutToken,
    /// The page answering a request with continuation token T is marked truncated and
    /// gives T again as its next token: followed, it asks for the same page forever. A
    /// first page (a request without a token) passes unchanged and does not count.
    RepeatedToken,
}

/// Rules and statistics of a [`FaultStore`].
#[derive(Debug, Default)]
struct FaultState {
    rules: Vec<Rule>,
    /// GETs still to cut off, and after how many body bytes.
    truncations: Vec<(u64, u64)>,
    /// LIST pages still to break, and how.
    list_faults: Vec<(u64, ListFault)>,
    /// Calls still to stall, and for how long.
    stalls: Vec<(u64, Duration)>,
    injected: u64,
}

/// Fails requests of the wrapped store on command.
///
/// Rules are checked in the order they were added; the first that fires decides the error
/// (its key is set to the request's key if the error has none). A failed request never
/// reaches the wrapped store.
///
/// ```
/// use s3vfs::store::{ObjectKey, Backend, StoreError, StoreErrorKind};
/// use s3vfs_testkit::fault::{FaultStore, Op};
/// use s3vfs_testkit::MemStore;
/// use std::sync::Arc;
/// # futures::executor::block_on(async {
/// let faults = FaultStore::new(Arc::new(MemStore::new()));
/// faults.fail_nth(Op::Head, 2, StoreError::new(StoreErrorKind::Transient, "boom"));
/// let key = ObjectKey::new("k");
/// assert_eq!(faults.head(&key).await.unwrap_err().kind, StoreErrorKind::NotFound);
/// assert_eq!(faults.head(&key).await.unwrap_err().kind, StoreErrorKind::Transient);
/// # });
/// ```
#[derive(Clone)]
pub struct FaultStore {
    inner: Arc<dyn Backend>,
    state: Arc<Mutex<FaultState>>,
}

impl FaultStore {
    /// Wraps `inner`, failing nothing until told to.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            state: Arc::new(Mutex::new(FaultState::default())),
        }
    }

    /// Fails the `n`-th call (1-based) of `op` made after this rule is added with `error`.
    pub fn fail_nth(&self, op: Op, n: u64, error: StoreError) {
        self.add(Trigger::Nth { op, n, seen: 0 }, error);
    }

    /// Fails the next `k` calls of `op` with `error`.
    pub fn fail_next(&self, op: Op, k: u64, error: StoreError) {
        self.add(
            Trigger::Next {
                op: Some(op),
                remaining: k,
            },
            error,
        );
    }

    /// Fails every call for which `predicate(op, key)` holds for one of the keys the call is
    /// about (a LIST is about its prefix, a copy about source and destination, a
    /// DeleteObjects about each key), until [`clear`](Self::clear).
    pub fn fail_matching(
        &self,
        predicate: impl Fn(Op, &str) -> bool + Send + Sync + 'static,
        error: StoreError,
    ) {
        self.add(Trigger::Matching(Box::new(predicate)), error);
    }

    /// Throttles each call (of any op) with probability `p` (0.0 to 1.0), using a generator
    /// seeded with `seed` so that runs repeat. The error is [`throttled`].
    pub fn throttle_randomly(&self, p: f64, seed: u64) {
        self.add(Trigger::Random { p, rng: seed }, throttled());
    }

    /// Throttles the next `k` calls, whatever their op. The error is [`throttled`].
    pub fn throttle_next(&self, k: u64) {
        self.add(
            Trigger::Next {
                op: None,
                remaining: k,
            },
            throttled(),
        );
    }

    /// Cuts off the bodies of the next `k` GETs after `after_bytes` bytes: the stream yields
    /// that many bytes, then a [`StoreErrorKind::Transient`] error, like a dropped
    /// connection. A body no longer than `after_bytes` is left whole (and uses up the rule).
    pub fn truncate_next_gets(&self, k: u64, after_bytes: u64) {
        if k > 0 {
            self.lock().truncations.push((k, after_bytes));
        }
    }

    /// Breaks the next `k` LIST pages the wrapped store returns as `fault` says (pages of
    /// failed requests do not count; for [`ListFault::RepeatedToken`], nor do first pages).
    pub fn break_next_list_pages(&self, k: u64, fault: ListFault) {
        if k > 0 {
            self.lock().list_faults.push((k, fault));
        }
    }

    /// Holds the next `k` calls (of any op) for `duration` before passing them on, like a
    /// server that accepts a request and then says nothing for a while: a client with a
    /// shorter timeout gives up on them.
    pub fn stall_next(&self, k: u64, duration: Duration) {
        if k > 0 {
            self.lock().stalls.push((k, duration));
        }
    }

    /// Removes every rule, pending truncation, pending LIST fault and stall.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.rules.clear();
        state.stalls.clear();
        state.truncations.clear();
        state.list_faults.clear();
    }

    /// How many failures (truncated bodies and broken LIST pages included) were injected so
    /// far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    fn add(&self, trigger: Trigger, error: StoreError) {
        self.lock().rules.push(Rule { trigger, error });
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn before(&self, op: Op, keys: &[&str]) -> StoreResult<()> {
        let stall = {
            let mut state = self.lock();
            let stall = state.stalls.first_mut().map(|(left, duration)| {
                *left -= 1;
                *duration
            });
            state.stalls.retain(|(left, _)| *left > 0);
            if stall.is_some() {
                state.injected += 1;
            }
            stall
        };
        if let Some(duration) = stall {
            tokio::time::sleep(duration).await;
        }
        let mut state = self.lock();
        let mut failure: Option<StoreError> = None;
        for rule in &mut state.rules {
            if rule.observe(op, keys, failure.is_some()) && failure.is_none() {
                failure = Some(rule.error.clone());
            }
        }
        state.rules.retain(|rule| !rule.is_spent());
        match failure {
            None => Ok(()),
            Some(mut error) => {
                state.injected += 1;
                if error.key.is_none() {
                    error.key = keys.first().map(|k| (*k).to_owned());
                }
                Err(error)
            }
        }
    }

    /// Applies a pending truncation to a GET response.
    fn after_get(&self, mut response: GetResponse) -> GetResponse {
        let after_bytes = {
            let mut state = self.lock();
            let Some((remaining, after_bytes)) = state.truncations.first_mut() else {
                return response;
            };
            let after_bytes = *after_bytes;
            *remaining -= 1;
            if *remaining == 0 {
                state.truncations.remove(0);
            }
            if response.range.len() <= after_bytes {
                return response;
            }
            state.injected += 1;
            after_bytes
        };
        let key = response.meta.key.as_str().to_owned();
        response.body = truncate_stream(response.body, after_bytes, key);
        response
    }

    /// Applies a pending [`ListFault`] to the page answering a request that carried the
    /// continuation token `asked`.
    fn after_list(&self, asked: Option<String>, mut page: ListPage) -> ListPage {
        let mut state = self.lock();
        let Some((remaining, fault)) = state.list_faults.first_mut() else {
            return page;
        };
        match (*fault, asked) {
            (ListFault::TruncatedWithoutToken, _) => page.next_continuation_token = None,
            (ListFault::RepeatedToken, Some(asked)) => page.next_continuation_token = Some(asked),
            (ListFault::RepeatedToken, None) => return page,
        }
        page.is_truncated = true;
        *remaining -= 1;
        if *remaining == 0 {
            state.list_faults.remove(0);
        }
        state.injected += 1;
        page
    }
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("FaultStore")
            .field("inner", &self.inner)
            .field("rules", &state.rules)
            .field("truncations", &state.truncations)
            .field("list_faults", &state.list_faults)
            .finish()
    }
}

forward_object_store!(
    FaultStore,
    |this, response| this.after_get(response),
    |_this, result| result,
    |this, asked, page| this.after_list(asked, page)
);

/// The error a throttling rule injects: [`StoreErrorKind::Throttled`], code `SlowDown`.
pub fn throttled() -> StoreError {
    StoreError::new(
        StoreErrorKind::Throttled,
        "injected: please reduce your request rate",
    )
    .with_code("SlowDown")
}

/// Where a truncated body stream is.
enum Truncation {
    Streaming { body: ByteStream, left: u64 },
    Failing,
    Done,
}

/// Passes `left` bytes of `body` through, then fails with a transient error.
fn truncate_stream(body: ByteStream, left: u64, key: String) -> ByteStream {
    let start = Truncation::Streaming { body, left };
    Box::pin(futures::stream::unfold(start, move |state| {
        let key = key.clone();
        async move {
            let dropped = || {
                StoreError::new(StoreErrorKind::Transient, "injected: connection reset")
                    .with_key(key)
            };
            match state {
                Truncation::Done => None,
                Truncation::Failing => Some((Err(dropped()), Truncation::Done)),
                Truncation::Streaming { mut body, left } => match body.next().await {
                    None => None,
                    Some(Err(e)) => Some((Err(e), Truncation::Done)),
                    Some(Ok(chunk)) if (chunk.len() as u64) <= left => {
                        let left = left - chunk.len() as u64;
                        Some((Ok(chunk), Truncation::Streaming { body, left }))
                    }
                    // `left` is below this chunk's length, so it fits a usize.
                    Some(Ok(_)) if left == 0 => Some((Err(dropped()), Truncation::Done)),
                    Some(Ok(chunk)) => {
                        Some((Ok(chunk.slice(..left as usize)), Truncation::Failing))
                    }
                },
            }
        }
    }))
}

/// Delays every request to the wrapped store, like a far-away endpoint.
///
/// The delay is paid before the request (for a GET: before the first byte).
#[derive(Clone)]
pub struct LatencyStore {
    inner: Arc<dyn Backend>,
    delay: Duration,
    jitter: Duration,
    per_op: [Option<Duration>; Op::ALL.len()],
    rng: Arc<AtomicU64>,
}

impl LatencyStore {
    /// Delays every request to `inner` by `delay`.
    pub fn new(inner: Arc<dyn Backend>, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            jitter: Duration::ZERO,
            per_op: [None; Op::ALL.len()],
            rng: Arc::new(AtomicU64::new(0x5EED)),
        }
    }

    /// Adds a uniformly random extra delay between zero and `jitter` to each request.
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Uses `delay` instead of the common delay for requests of `op`.
    pub fn with_op_delay(mut self, op: Op, delay: Duration) -> Self {
        self.per_op[op.index()] = Some(delay);
        self
    }

    /// Seeds the jitter generator, so that runs repeat.
    pub fn with_seed(self, seed: u64) -> Self {
        self.rng.store(seed, Ordering::SeqCst);
        self
    }

    /// The delay the next request of `op` would get, jitter aside.
    pub fn delay(&self, op: Op) -> Duration {
        self.per_op[op.index()].unwrap_or(self.delay)
    }

    async fn before(&self, op: Op, _keys: &[&str]) -> StoreResult<()> {
        let mut delay = self.delay(op);
        if !self.jitter.is_zero() {
            let mut seed = self.rng.fetch_add(1, Ordering::SeqCst);
            delay += self.jitter.mul_f64(unit_random(&mut seed));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

impl fmt::Debug for LatencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyStore")
            .field("inner", &self.inner)
            .field("delay", &self.delay)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

forward_object_store!(LatencyStore, |_this, response| response, |_this, result| {
    result
});

/// A uniform number in `[0, 1)` from a splitmix64 generator with state `state`.
fn unit_random(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits fill an f64 mantissa exactly.
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use std::time::Instant;

    fn key(k: &str) -> ObjectKey {
        ObjectKey::new(k)
    }

    fn boom() -> StoreError {
        StoreError::new(StoreErrorKind::Transient, "boom").with_code("InternalError")
    }

    fn is_injected(result: &StoreResult<impl fmt::Debug>) -> bool {
        matches!(result, Err(e) if e.message == "boom" || e.message.starts_with("injected"))
    }

    fn mem_with(keys: &[&str]) -> MemStore {
        let mem = MemStore::new();
        for k in keys {
            mem.insert(*k, format!("body of {k}"));
        }
        mem
    }

    #[tokio::test]
    async fn nth_call_fails_and_the_others_succeed() {
        let faults = FaultStore::new(Arc::new(mem_with(&["a"])));
        faults.fail_nth(Op::Head, 2, boom());
        let a = key("a");
        let mut results = Vec::new();
        for _ in 0..4 {
            results.push(faults.head(&a).await);
        }
        let injected: Vec<bool> = results.iter().map(is_injected).collect();
        assert_eq!(injected, vec![false, true, false, false]);
        let error = results[1].as_ref().unwrap_err();
        assert_eq!(error.kind, StoreErrorKind::Transient);
        assert_eq!(error.key.as_deref(), Some("a"));
        assert_eq!(error.code.as_deref(), Some("InternalError"));
        // Other ops are unaffected and counted separately.
        assert!(faults.get(GetRequest::whole(key("a"))).await.is_ok());
        assert_eq!(faults.injected(), 1);
    }

    #[tokio::test]
    async fn nth_counts_from_when_the_rule_is_added() {
        let faults = FaultStore::new(Arc::new(mem_with(&["a"])));
        faults.head(&key("a")).await.unwrap();
        faults.head(&key("a")).await.unwrap();
        faults.fail_nth(Op::Head, 1, boom());
        assert!(is_injected(&faults.head(&key("a")).await));
        assert!(faults.head(&key("a")).await.is_ok());
    }

    #[tokio::test]
    async fn next_k_calls_fail() {
        let faults = FaultStore::new(Arc::new(MemStore::new()));
        faults.fail_next(Op::Put, 2, boom());
        let k = key("k");
        let put = || faults.put(&k, Bytes::from_static(b"v"), PutOptions::default());
        assert!(is_injected(&put().await));
        assert!(faults
            .head(&key("k"))
            .await
            .is_err_and(|e| e.kind == StoreErrorKind::NotFound));
        assert!(is_injected(&put().await));
        assert!(put().await.is_ok());
        assert!(faults.head(&key("k")).await.is_ok());
    }

    #[tokio::test]
    async fn matching_keys_fail_every_time() {
        let mem = mem_with(&["bad/x", "good/x"]);
        let faults = FaultStore::new(Arc::new(mem.clone()));
        let denied =
            StoreError::new(StoreErrorKind::AccessDenied, "boom").with_code("AccessDenied");
        faults.fail_matching(|_, k| k.starts_with("bad/"), denied);
        for _ in 0..3 {
            let error = faults
                .get(GetRequest::whole(key("bad/x")))
                .await
                .unwrap_err();
            assert_eq!(error.kind, StoreErrorKind::AccessDenied);
        }
        assert!(faults.get(GetRequest::whole(key("good/x"))).await.is_ok());
        let copy = CopyRequest {
            source: CopySource::new(key("good/x")),
            dest: key("bad/y"),
            metadata: Default::default(),
            condition: WriteCondition::None,
        };
        assert!(is_injected(&faults.copy(copy).await));
        assert!(is_injected(
            &faults.delete_many(vec![key("good/x"), key("bad/x")]).await
        ));
        let list = ListRequest {
            prefix: "bad/".into(),
            ..ListRequest::default()
        };
        assert!(is_injected(&faults.list(list).await));
        assert_eq!(mem.len(), 2, "failed requests never reach the store");

        faults.fail_matching(|op, k| op == Op::Delete && k == "good/x", boom());
        assert!(is_injected(&faults.delete(&key("good/x")).await));
        assert!(faults.head(&key("good/x")).await.is_ok());
        faults.clear();
        assert!(faults.get(GetRequest::whole(key("bad/x"))).await.is_ok());
    }

    #[tokio::test]
    async fn last_error_keeps_what_is_worth_showing() {
        let faults = FaultStore::new(Arc::new(MemStore::new()));
        let store = LastErrorStore::new(Arc::new(faults.clone()));
        faults.fail_next(Op::Put, 1, throttled());
        let k = key("k");
        let put = store.put(&k, Bytes::new(), PutOptions::default());
        assert!(put.await.is_err());
        // A plain missing key afterwards does not hide it.
        assert!(store.head(&key("missing")).await.is_err());
        assert_eq!(
            store.take().map(|e| e.kind),
            Some(StoreErrorKind::Throttled)
        );
        assert_eq!(store.take(), None);
        faults.fail_next(Op::CompleteMultipart, 1, boom());
        let id = UploadId("u".to_owned());
        let complete = store.complete_multipart(&k, &id, vec![], WriteCondition::None);
        assert!(complete.await.is_err());
        assert_eq!(
            store.take().map(|e| e.kind),
            Some(StoreErrorKind::Transient)
        );
    }

    #[tokio::test]
    async fn throttling_returns_slow_down() {
        let faults = FaultStore::new(Arc::new(mem_with(&["a"])));
        faults.throttle_next(3);
        let list = faults.list(ListRequest::default()).await;
        let head = faults.head(&key("a")).await;
        let delete = faults.delete(&key("zzz")).await;
        for error in [list.unwrap_err(), head.unwrap_err(), delete.unwrap_err()] {
            assert_eq!(error.kind, StoreErrorKind::Throttled);
            assert_eq!(error.code.as_deref(), Some("SlowDown"));
            assert!(error.is_retryable());
        }
        assert!(faults.head(&key("a")).await.is_ok());
        assert_eq!(faults.injected(), 3);
    }

    #[tokio::test]
    async fn random_throttling_follows_the_probability() {
        for (p, low, high) in [(0.0, 0, 0), (1.0, 200, 200), (0.3, 30, 90)] {
            let faults = FaultStore::new(Arc::new(mem_with(&["a"])));
            faults.throttle_randomly(p, 42);
            let mut throttled = 0;
            for _ in 0..200 {
                if faults.head(&key("a")).await.is_err() {
                    throttled += 1;
                }
            }
            assert!(
                (low..=high).contains(&throttled),
                "p={p}: {throttled} of 200"
            );
        }
    }

    #[tokio::test]
    async fn truncated_get_fails_mid_stream() {
        let data: Vec<u8> = (0..200_000).map(|i| (i % 253) as u8).collect();
        let mem = MemStore::new();
        mem.insert("big", data.clone());
        let faults = FaultStore::new(Arc::new(mem));
        for after in [100u64, crate::mem::GET_CHUNK_SIZE as u64, 0] {
            faults.truncate_next_gets(1, after);
            let response = faults.get(GetRequest::whole(key("big"))).await.unwrap();
            let items: Vec<StoreResult<Bytes>> = response.body.collect().await;
            let (last, chunks) = items.split_last().unwrap();
            let received: Vec<u8> = chunks
                .iter()
                .flat_map(|c| c.as_ref().unwrap().to_vec())
                .collect();
            assert_eq!(received, data[..after as usize]);
            let error = last.as_ref().unwrap_err();
            assert_eq!(error.kind, StoreErrorKind::Transient);
            assert_eq!(error.key.as_deref(), Some("big"));
        }
        faults.truncate_next_gets(2, 10);
        let short = faults
            .get(GetRequest::whole(key("big")))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(short.unwrap_err().kind, StoreErrorKind::Transient);
        // A range no longer than the cut-off is left whole but uses up the rule.
        let request = GetRequest {
            key: key("big"),
            range: Some(ByteRange::new(0, 10)),
            if_match: None,
        };
        assert_eq!(
            faults.get(request).await.unwrap().collect().await.unwrap(),
            data[..10]
        );
        let whole = faults
            .get(GetRequest::whole(key("big")))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(whole.unwrap(), data);
        assert_eq!(faults.injected(), 4);
    }

    #[tokio::test]
    async fn list_pages_are_broken_as_told() {
        let faults = FaultStore::new(Arc::new(mem_with(&["d/a", "d/b", "d/c", "d/e"])));
        let first = ListRequest {
            prefix: "d/".into(),
            max_keys: Some(2),
            ..ListRequest::default()
        };
        let keys = |page: &ListPage| -> Vec<String> {
            page.objects
                .iter()
                .map(|o| o.key.as_str().to_owned())
                .collect()
        };

        faults.break_next_list_pages(1, ListFault::TruncatedWithoutToken);
        let page = faults.list(first.clone()).await.unwrap();
        assert_eq!(keys(&page), ["d/a", "d/b"], "entries kept");
        assert!(page.is_truncated && page.next_continuation_token.is_none());
        // Used up: the next page is whole, and a last page stays the last.
        let page = faults.list(first.clone()).await.unwrap();
        let token = page.next_continuation_token.clone().unwrap();
        assert!(page.is_truncated);
        let rest = ListRequest {
            continuation_token: Some(token.clone()),
            ..first.clone()
        };
        let last = faults.list(rest.clone()).await.unwrap();
        assert_eq!(keys(&last), ["d/c", "d/e"]);
        assert!(!last.is_truncated && last.next_continuation_token.is_none());

        faults.break_next_list_pages(2, ListFault::RepeatedToken);
        let page = faults.list(first.clone()).await.unwrap();
        assert_eq!(
            page.next_continuation_token.as_ref(),
            Some(&token),
            "a first page passes"
        );
        for _ in 0..2 {
            let again = faults.list(rest.clone()).await.unwrap();
            assert_eq!(keys(&again), ["d/c", "d/e"]);
            assert!(again.is_truncated);
            assert_eq!(again.next_continuation_token.as_ref(), Some(&token));
        }
        assert!(!faults.list(rest).await.unwrap().is_truncated);
        assert_eq!(faults.injected(), 3);

        faults.break_next_list_pages(5, ListFault::TruncatedWithoutToken);
        faults.clear();
        assert!(faults
            .list(first)
            .await
            .unwrap()
            .next_continuation_token
            .is_some());
    }

    #[tokio::test]
    async fn counting_counts_every_request_through_faults() {
        let mem = mem_with(&["a"]);
        let faults = FaultStore::new(Arc::new(mem));
        let counting = CountingStore::new(Arc::new(faults.clone()));
        let shared: Arc<dyn Backend> = Arc::new(counting.clone());
        faults.fail_nth(Op::Get, 1, boom());
        assert!(shared.get(GetRequest::whole(key("a"))).await.is_err());
        assert!(shared.get(GetRequest::whole(key("a"))).await.is_ok());
        shared.head(&key("a")).await.unwrap();
        shared.list(ListRequest::default()).await.unwrap();
        shared.delete(&key("nope")).await.unwrap();
        assert_eq!(counting.count(Op::Get), 2);
        assert_eq!(counting.count(Op::Head), 1);
        assert_eq!(counting.count(Op::Put), 0);
        assert_eq!(counting.total(), 5);
        assert_eq!(
            counting.counts(),
            BTreeMap::from([(Op::Head, 1), (Op::Get, 2), (Op::List, 1), (Op::Delete, 1)])
        );
        counting.reset();
        assert_eq!(counting.total(), 0);
        assert_eq!(shared.capabilities(), Capabilities::default());
    }

    #[tokio::test]
    async fn counting_covers_every_op() {
        let mem = MemStore::with_capabilities(Capabilities {
            min_part_size: 1,
            ..Capabilities::default()
        });
        let counting = CountingStore::new(Arc::new(mem.clone()));
        call_every_op(&counting, 1).await.unwrap();
        for op in Op::ALL {
            let expected = if op == Op::CreateMultipart { 2 } else { 1 };
            assert_eq!(counting.count(op), expected, "{op}");
        }
        assert!(mem.keys().is_empty());
    }

    #[tokio::test]
    async fn latency_delays_each_request() {
        let mem = mem_with(&["a"]);
        let slow = LatencyStore::new(Arc::new(mem), Duration::from_millis(30))
            .with_op_delay(Op::Head, Duration::ZERO);
        assert_eq!(slow.delay(Op::Get), Duration::from_millis(30));
        let started = Instant::now();
        slow.get(GetRequest::whole(key("a"))).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        let started = Instant::now();
        slow.head(&key("a")).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(30));

        let jittery = LatencyStore::new(Arc::new(MemStore::new()), Duration::from_millis(5))
            .with_jitter(Duration::from_millis(10))
            .with_seed(7);
        let started = Instant::now();
        for _ in 0..3 {
            jittery.list(ListRequest::default()).await.unwrap();
        }
        assert!(started.elapsed() >= Duration::from_millis(15));
    }

    #[test]
    fn unit_random_stays_in_range_and_spreads() {
        let mut state = 1;
        let samples: Vec<f64> = (0..1000).map(|_| unit_random(&mut state)).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn op_names_are_s3_api_names() {
        assert_eq!(Op::ALL.len(), 13);
        assert_eq!(Op::CompleteMultipart.to_string(), "CompleteMultipartUpload");
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
    }
}
