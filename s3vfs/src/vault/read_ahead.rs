//! Read-ahead of vault files read sequentially: the chunks past a read are fetched into
//! the chunk cache before they are asked for, so that a sequential reader does not wait a
//! GET's latency per chunk.
//!
//! A read that starts where the previous read of the open file ended (or near it, inside
//! the window: reads issued at once arrive slightly out of order) makes the file a
//! sequential one: its window starts at [`VaultConfig::read_ahead_initial`] and doubles
//! with each sequential read up to [`VaultConfig::read_ahead_max`] (and half the chunk
//! cache). Any other read is a seek: the window closes and the fetches under way are
//! dropped; random reads fetch nothing but their own chunks.
//!
//! Bounds: one open file fetches at most [`VaultConfig::read_ahead_concurrency`] chunks
//! at once; all files together have at most half the chunk cache's bytes in flight
//! ahead (a chunk that does not fit is left to its reader). A file's fetches are tasks
//! it owns: they are aborted at a seek and when its last handle closes. Errors of a
//! fetch ahead are dropped: the read that needs the chunk fetches it again.

use super::chunks::Chunks;
use super::inode::{ChunkRef, Inode};
use super::VaultConfig;
use futures::StreamExt;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The unit of the read-ahead budget, in bytes.
const BUDGET_UNIT: u64 = 1024;

/// The mount's read-ahead: where fetched chunks land, and the budget all files share.
#[derive(Debug)]
pub(crate) struct Prefetcher {
    chunks: Arc<Chunks>,
    /// Units of [`BUDGET_UNIT`] bytes of chunks being fetched ahead, all files together.
    budget: Arc<Semaphore>,
    initial: u64,
    max: u64,
    concurrency: usize,
}

/// One open file's read-ahead state.
#[derive(Debug, Default)]
pub(crate) struct ReadAhead {
    /// Where a read continuing the previous one starts; `None` before the first read.
    next: Option<u64>,
    /// The window past a read that is fetched ahead; 0 while not read sequentially.
    window: u64,
    /// Chunks that start before this were asked for already.
    ahead_to: u64,
    /// The fetches under way (dropping the set aborts them).
    tasks: JoinSet<()>,
    /// This file's chunk fetches at once.
    slots: Option<Arc<Semaphore>>,
}

impl Prefetcher {
    /// Read-ahead into `chunks` as `config` sizes it.
    pub(crate) fn new(chunks: Arc<Chunks>, config: &VaultConfig) -> Self {
        let ahead_bytes = config.chunk_cache_bytes / 2;
        let units = usize::try_from(ahead_bytes / BUDGET_UNIT)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let max = config.read_ahead_max.min(ahead_bytes);
        Self {
            chunks,
            budget: Arc::new(Semaphore::new(units)),
            initial: config.read_ahead_initial.clamp(1, max.max(1)),
            max,
            concurrency: config.read_ahead_concurrency.max(1),
        }
    }

    /// Notes a read of `len` bytes at `off` of a file whose stored content is `base`'s
    /// chunks below `base_end`; when it continues a sequential reading, starts fetching
    /// the chunks of the window past it that were not asked for yet. Returns at once.
    pub(crate) fn on_read(
        &self,
        ahead: &mut ReadAhead,
        base: &Inode,
        base_end: u64,
        off: u64,
        len: u64,
    ) {
        if self.max == 0 || len == 0 {
            return;
        }
        while ahead.tasks.try_join_next().is_some() {}
        let end = off.saturating_add(len);
        let continues = ahead.next == Some(off);
        let near = ahead.window > 0
            && ahead
                .next
                .is_some_and(|next| off.abs_diff(next) <= ahead.window);
        if continues {
            ahead.window = match ahead.window {
                0 => self.initial,
                window => window.saturating_mul(2).min(self.max),
            };
            ahead.next = Some(end);
        } else if near {
            ahead.next = ahead.next.map(|next| next.max(end));
        } else {
            // A seek (or the first read): what was fetched ahead of the old place is no
            // longer wanted.
            ahead.window = 0;
            ahead.ahead_to = 0;
            ahead.tasks = JoinSet::new();
            ahead.next = Some(end);
            return;
        }
        let target = end.saturating_add(ahead.window).min(base_end);
        let from = ahead.ahead_to.max(end);
        if from >= target {
            return;
        }
        let mut jobs: Vec<(ChunkRef, OwnedSemaphorePermit)> = Vec::new();
        for chunk in base.chunks_in(from, target) {
            let units = u64::from(chunk.len).div_ceil(BUDGET_UNIT);
            let permit = u32::try_from(units)
                .ok()
                .and_then(|units| Arc::clone(&self.budget).try_acquire_many_owned(units).ok());
            let Some(permit) = permit else {
                // The budget is spent: this chunk and the next are left to the reader (or
                // to a later read's read-ahead).
                break;
            };
            ahead.ahead_to = chunk.end();
            jobs.push((*chunk, permit));
        }
        if jobs.is_empty() {
            return;
        }
        let chunks = Arc::clone(&self.chunks);
        let slots = Arc::clone(
            ahead
                .slots
                .get_or_insert_with(|| Arc::new(Semaphore::new(self.concurrency))),
        );
        ahead.tasks.spawn(async move {
            futures::stream::iter(jobs)
                .for_each_concurrent(None, |(chunk, budget)| {
                    let (chunks, slots) = (&chunks, &slots);
                    async move {
                        let Ok(_slot) = slots.acquire().await else {
                            return;
                        };
                        if let Err(err) = chunks.get(&chunk).await {
                            tracing::debug!(off = chunk.off, error = %err, "a chunk read ahead failed; its reader fetches it again");
                        }
                        drop(budget);
                    }
                })
                .await;
        });
    }
}
