//! One memory budget for all read-ahead and upload buffers of a file system.
//!
//! Buffers reserve their size before they are filled and give it back when dropped, so
//! the bytes held across all open files stay within the budget (plus the reads being
//! answered right now). Read-ahead only ever *tries* to reserve, and may hold at most
//! three quarters of the budget: past that it fetches just what is being read, so reading
//! slows down but memory does not grow, and a writer (which waits for its reservation)
//! always finds room once uploads in flight complete — nobody waits on an idle reader.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in units of this many bytes.
const UNIT: u64 = 64 * 1024;

/// The shared budget. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct MemoryBudget {
    all: Arc<Semaphore>,
    read_ahead: Arc<Semaphore>,
    total_units: u32,
}

/// Bytes reserved from the budget, given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    _all: OwnedSemaphorePermit,
    _read_ahead: Option<OwnedSemaphorePermit>,
}

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

impl MemoryBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: u64) -> Self {
        let total = units(bytes).min(Semaphore::MAX_PERMITS as u32);
        Self {
            all: Arc::new(Semaphore::new(total as usize)),
            read_ahead: Arc::new(Semaphore::new((total as usize * 3 / 4).max(1))),
            total_units: total,
        }
    }

    /// Reserves `bytes` of read-ahead if the budget has room now.
    pub(crate) fn try_read_ahead(&self, bytes: u64) -> Option<Reservation> {
        let n = units(bytes);
        let read_ahead = Arc::clone(&self.read_ahead)
            .try_acquire_many_owned(n)
            .ok()?;
        let all = Arc::clone(&self.all).try_acquire_many_owned(n).ok()?;
        Some(Reservation {
            _all: all,
            _read_ahead: Some(read_ahead),
        })
    }

    /// Reserves `bytes` for an upload buffer, waiting until the budget has room.
    pub(crate) async fn reserve(&self, bytes: u64) -> Reservation {
        let n = units(bytes).min(self.total_units);
        loop {
            if let Ok(all) = Arc::clone(&self.all).acquire_many_owned(n).await {
                return Reservation {
                    _all: all,
                    _read_ahead: None,
                };
            }
            // The semaphore is never closed; if it were, yield and try again.
            tokio::task::yield_now().await;
        }
    }

    /// Bytes not reserved now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> u64 {
        self.all.available_permits() as u64 * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_ahead_is_capped_and_given_back() {
        let budget = MemoryBudget::new(4 * 1024 * 1024);
        let a = budget.try_read_ahead(3 * 1024 * 1024).expect("fits in 3/4");
        assert!(
            budget.try_read_ahead(64 * 1024).is_none(),
            "read-ahead share used up"
        );
        let w = budget.reserve(1024 * 1024).await;
        assert_eq!(budget.available(), 0);
        drop(a);
        drop(w);
        assert_eq!(budget.available(), 4 * 1024 * 1024);
    }
}
