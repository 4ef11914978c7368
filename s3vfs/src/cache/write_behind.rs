//! [`WriteBehind`]: the queue between a disk cache's `put` and its one writer thread, so
//! that a reader filling the cache never waits for the disk.
//!
//! The queue is bounded in bytes of block data (the backlog): a block that would grow it
//! past the bound is refused, and so not cached. The writer thread takes blocks in the
//! order they were queued, writes each through a [`BlockSink`] and then publishes it in the
//! sink's index. Invariants:
//! - a block stays in the queue from its push until it is published (or failed, or
//!   removed), and the writer publishes it before taking it out, both under the queue's
//!   lock: a lookup that checks the queue, then the index, never misses a queued block;
//! - one waiting block per id: pushing an id again replaces its data (and its place in
//!   line), removing an id (forgotten, or evicted from the index) drops its waiting block;
//! - every push gets the next sequence number, and the writer reports the last one it is
//!   done with, so [`flush`](WriteBehind::flush) waits for exactly the blocks queued before.
//!
//! Dropping the queue *discards* the blocks still waiting (the cache is emptied at every
//! start, so writing them would buy nothing) and joins the thread once the block it is
//! writing, if any, is done; the file of that block is deleted again. Nothing is written
//! into the directory after the drop returns.

use super::BlockId;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use tokio::sync::watch;

/// The name of the writer thread.
const THREAD_NAME: &str = "s3vfs-cache-writer";

/// Where the writer thread puts blocks: the files and index of a disk cache.
pub(crate) trait BlockSink: Send + Sync + 'static {
    /// Writes the file of block `id` (blocking). Its size on disk, or `None` when it could
    /// not be written (the sink logs and counts why).
    fn write(&self, id: &BlockId, data: &Bytes) -> Option<u64>;

    /// Makes a written block findable; returns the blocks evicted to make room, whose
    /// files are then deleted. Called with the queue locked: must not use the queue.
    fn publish(&self, id: BlockId, size: u64) -> Vec<BlockId>;

    /// Deletes the files of `ids` (blocking).
    fn delete(&self, ids: &[BlockId]);
}

/// The queue and its writer thread.
pub(crate) struct WriteBehind {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the callers and the writer thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer: a block was queued, or the queue closed (or was released).
    work: Condvar,
    /// The sequence number of the last queued block the writer is done with (`u64::MAX`
    /// once the writer has stopped).
    done: watch::Sender<u64>,
    /// The most bytes of block data waiting at once.
    backlog: u64,
}

#[derive(Default)]
struct Queue {
    /// Blocks waiting (or being written), by id.
    pending: HashMap<BlockId, Pending>,
    /// The order to write them in. An entry whose sequence number is no longer that of
    /// its id's block in `pending` (replaced or removed since) is skipped.
    order: VecDeque<(u64, BlockId)>,
    /// Bytes of block data in `pending`.
    bytes: u64,
    /// The sequence number handed to the last push.
    last_seq: u64,
    /// Set when the queue is dropped (or the writer stopped): nothing more is queued.
    closed: bool,
    /// Test hook: the writer takes no block while set.
    held: bool,
}

/// A block waiting to be written.
struct Pending {
    seq: u64,
    data: Bytes,
}

impl Queue {
    /// Drops the waiting block of `id`, if any.
    fn take(&mut self, id: &BlockId) {
        if let Some(pending) = self.pending.remove(id) {
            self.bytes -= pending.data.len() as u64;
        }
    }

    /// Refuses further pushes and drops every waiting block; returns how many there were.
    fn close(&mut self) -> usize {
        let discarded = self.pending.len();
        self.closed = true;
        self.pending.clear();
        self.order.clear();
        self.bytes = 0;
        discarded
    }
}

impl WriteBehind {
    /// A queue of at most `backlog` bytes, and its writer thread writing into `sink`.
    pub(crate) fn start<S: BlockSink>(sink: Arc<S>, backlog: u64) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            done: watch::Sender::new(0),
            backlog,
        });
        let for_writer = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                let _stopped = Stopped(&for_writer);
                write_until_closed(&for_writer, &*sink);
            })?;
        Ok(Self {
            shared,
            writer: Some(writer),
        })
    }

    /// Queues block `id` to be written, replacing a waiting block of the same id. `false`
    /// when it does not fit in the backlog (or the writer has stopped): it is not queued.
    pub(crate) fn push(&self, id: BlockId, data: Bytes) -> bool {
        let len = data.len() as u64;
        {
            let mut queue = self.shared.lock();
            let replaced = queue.pending.get(&id).map_or(0, |p| p.data.len() as u64);
            let bytes = queue.bytes - replaced + len;
            if queue.closed || bytes > self.shared.backlog {
                return false;
            }
            queue.last_seq += 1;
            let seq = queue.last_seq;
            queue.bytes = bytes;
            queue.pending.insert(id.clone(), Pending { seq, data });
            queue.order.push_back((seq, id));
        }
        self.shared.work.notify_one();
        true
    }

    /// The data of block `id`, if it is waiting to be written (or being written).
    pub(crate) fn get(&self, id: &BlockId) -> Option<Bytes> {
        self.shared.lock().pending.get(id).map(|p| p.data.clone())
    }

    /// Drops the waiting block of `id`, if any: it will not be written (or, if being
    /// written now, not published, and its file deleted).
    pub(crate) fn remove(&self, id: &BlockId) {
        self.shared.lock().take(id);
    }

    /// Bytes of block data waiting.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.shared.lock().bytes
    }

    /// Waits until the writer is done with every block queued before this call.
    pub(crate) async fn flush(&self) {
        let target = self.shared.lock().last_seq;
        let mut done = self.shared.done.subscribe();
        // An error means the sender is gone, which it cannot be while `self` holds it.
        let _ = done.wait_for(|&seq| seq >= target).await;
    }

    /// Test hook: while `held`, the writer takes no block from the queue (the one it is
    /// writing, if any, is finished).
    #[cfg(test)]
    pub(crate) fn hold(&self, held: bool) {
        self.shared.lock().held = held;
        self.shared.work.notify_all();
    }
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("backlog", &self.shared.backlog)
            .field("queued_bytes", &self.queued_bytes())
            .finish()
    }
}

impl Drop for WriteBehind {
    /// Discards the waiting blocks and waits for the writer thread to end.
    fn drop(&mut self) {
        {
            let discarded = self.shared.lock().close();
            if discarded > 0 {
                tracing::debug!(
                    discarded,
                    "disk cache dropped; blocks not yet written discarded"
                );
            }
        }
        self.shared.work.notify_all();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::warn!("the data cache writer thread panicked");
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every update keeps `bytes` in step with `pending` within one critical section;
        // a poisoned lock still guards a usable queue.
        crate::sync::lock(&self.queue)
    }

    /// The next block to write, waiting for one; `None` once the queue is closed.
    fn next_block(&self) -> Option<(u64, BlockId, Bytes)> {
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return None;
            }
            if !queue.held {
                while let Some((seq, id)) = queue.order.pop_front() {
                    match queue.pending.get(&id) {
                        Some(pending) if pending.seq == seq => {
                            let data = pending.data.clone();
                            return Some((seq, id, data));
                        }
                        // Replaced or removed since it was queued: nothing to write.
                        _ => {
                            self.done.send_replace(seq);
                        }
                    }
                }
            }
            queue = self.work.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Ends the writing of block `id` (queued as `seq`): publishes it if it is still the
    /// waiting block of its id, and takes it out of the queue. Returns the blocks whose
    /// files must be deleted (before the block is reported done).
    fn finish(
        &self,
        seq: u64,
        id: BlockId,
        size: Option<u64>,
        sink: &dyn BlockSink,
    ) -> Vec<BlockId> {
        let mut queue = self.lock();
        let current = queue.pending.get(&id).is_some_and(|p| p.seq == seq);
        let mut delete = Vec::new();
        if current {
            if let Some(size) = size {
                for evicted in sink.publish(id.clone(), size) {
                    queue.take(&evicted);
                    delete.push(evicted);
                }
            }
            queue.take(&id);
        } else if size.is_some() && !queue.pending.contains_key(&id) {
            // Removed (or discarded) while being written: its file must not outlive it.
            // (A block replaced meanwhile is written again, over this file.)
            delete.push(id);
        }
        delete
    }
}

/// The writer thread: writes queued blocks one by one until the queue is closed.
fn write_until_closed(shared: &Shared, sink: &dyn BlockSink) {
    while let Some((seq, id, data)) = shared.next_block() {
        let size = sink.write(&id, &data);
        drop(data);
        let delete = shared.finish(seq, id, size, sink);
        if !delete.is_empty() {
            sink.delete(&delete);
        }
        // Done only now, so that after a flush the directory is within its cap.
        shared.done.send_replace(seq);
    }
}

/// Marks the queue closed when the writer thread ends, however it ends, so that pushes
/// stop queueing and flushes stop waiting.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.lock().close();
        self.0.done.send_replace(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{drop_without_hanging, test_id};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A sink that records what it is asked to do, and can be told to fail writes.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
        fail: AtomicBool,
        evict_on_publish: Mutex<Vec<BlockId>>,
    }

    impl Recorder {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl BlockSink for Recorder {
        fn write(&self, id: &BlockId, data: &Bytes) -> Option<u64> {
            self.log
                .lock()
                .unwrap()
                .push(format!("write {} {}", id.index, data.len()));
            (!self.fail.load(Ordering::SeqCst)).then_some(data.len() as u64)
        }

        fn publish(&self, id: BlockId, size: u64) -> Vec<BlockId> {
            self.log
                .lock()
                .unwrap()
                .push(format!("publish {} {size}", id.index));
            std::mem::take(&mut *self.evict_on_publish.lock().unwrap())
        }

        fn delete(&self, ids: &[BlockId]) {
            for id in ids {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("delete {}", id.index));
            }
        }
    }

    fn block(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[tokio::test]
    async fn blocks_are_written_in_order_and_flush_waits_for_them() {
        let sink = Arc::new(Recorder::default());
        let queue = WriteBehind::start(Arc::clone(&sink), 1 << 20).unwrap();
        for i in 0..5 {
            assert!(queue.push(test_id("k", i), block(10 + i as usize, 1)));
        }
        queue.flush().await;
        let expected: Vec<String> = (0..5)
            .flat_map(|i| {
                [
                    format!("write {i} {}", 10 + i),
                    format!("publish {i} {}", 10 + i),
                ]
            })
            .collect();
        assert_eq!(sink.log(), expected);
        assert_eq!(queue.queued_bytes(), 0);
        assert_eq!(
            queue.get(&test_id("k", 0)),
            None,
            "published blocks leave the queue"
        );
    }

    #[tokio::test]
    async fn a_held_queue_serves_its_blocks_and_bounds_its_bytes() {
        let sink = Arc::new(Recorder::default());
        let queue = WriteBehind::start(Arc::clone(&sink), 2500).unwrap();
        queue.hold(true);
        assert!(queue.push(test_id("k", 0), block(1000, 1)));
        assert!(queue.push(test_id("k", 1), block(1000, 2)));
        assert!(
            !queue.push(test_id("k", 2), block(1000, 3)),
            "past the backlog"
        );
        assert!(queue.push(test_id("k", 3), block(500, 4)), "exactly fits");
        assert_eq!(queue.queued_bytes(), 2500);
        assert_eq!(queue.get(&test_id("k", 1)), Some(block(1000, 2)));
        assert_eq!(queue.get(&test_id("k", 2)), None);
        // A replacement counts its bytes once, in place of the old ones.
        assert!(queue.push(test_id("k", 0), block(900, 5)));
        assert_eq!(queue.queued_bytes(), 2400);
        assert_eq!(queue.get(&test_id("k", 0)), Some(block(900, 5)));
        queue.remove(&test_id("k", 1));
        assert_eq!(queue.get(&test_id("k", 1)), None);
        assert_eq!(queue.queued_bytes(), 1400);
        assert!(sink.log().is_empty(), "nothing written while held");
        queue.hold(false);
        queue.flush().await;
        assert_eq!(
            sink.log(),
            [
                "write 3 500",
                "publish 3 500",
                "write 0 900",
                "publish 0 900"
            ],
            "the replaced block is written once, in its new place; the removed never"
        );
    }

    #[tokio::test]
    async fn failed_writes_are_not_published_and_evicted_blocks_leave_the_queue() {
        let sink = Arc::new(Recorder::default());
        let queue = WriteBehind::start(Arc::clone(&sink), 1 << 20).unwrap();
        sink.fail.store(true, Ordering::SeqCst);
        assert!(queue.push(test_id("k", 0), block(10, 1)));
        queue.flush().await;
        assert_eq!(sink.log(), ["write 0 10"]);
        assert_eq!(
            queue.get(&test_id("k", 0)),
            None,
            "a failed block is dropped"
        );
        sink.fail.store(false, Ordering::SeqCst);

        // Publishing block 1 evicts block 2, which is also waiting: it is not written.
        queue.hold(true);
        assert!(queue.push(test_id("k", 1), block(10, 1)));
        assert!(queue.push(test_id("k", 2), block(10, 2)));
        sink.evict_on_publish.lock().unwrap().push(test_id("k", 2));
        queue.hold(false);
        queue.flush().await;
        assert_eq!(sink.log()[1..], ["write 1 10", "publish 1 10", "delete 2"]);
        assert_eq!(queue.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn dropping_a_full_queue_discards_it_without_hanging() {
        let sink = Arc::new(Recorder::default());
        let queue = WriteBehind::start(Arc::clone(&sink), 1 << 20).unwrap();
        queue.hold(true);
        for i in 0..10 {
            assert!(queue.push(test_id("k", i), block(100, 1)));
        }
        drop_without_hanging(queue);
        assert!(
            sink.log().is_empty(),
            "queued blocks are discarded, not written"
        );
        assert_eq!(Arc::strong_count(&sink), 1, "the writer thread has ended");
    }
}
