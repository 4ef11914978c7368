//! [`RequestLimit`]: the one gate every request of a transfer passes — a global cap on
//! requests in flight, a timeout per request, and retries with backoff.
//!
//! A permit is held for one attempt only (not while waiting to retry), so a storm of
//! SlowDown answers on one object does not starve the others of permits, and the number of
//! requests the buckets see at once never exceeds the cap.

use super::TransferConfig;
use crate::store::backoff::Backoff;
use crate::store::{StoreError, StoreErrorKind, StoreResult};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The cap, the timeout and the retry policy of one transfer.
#[derive(Debug)]
pub struct RequestLimit {
    permits: Semaphore,
    /// Part buffers of streamed copies held at once (between their GET and their upload).
    buffers: Semaphore,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    retries: AtomicUsize,
}

impl RequestLimit {
    /// The gate `config` describes.
    pub fn new(config: &TransferConfig) -> Self {
        Self {
            permits: Semaphore::new(config.max_concurrent_requests.max(1)),
            buffers: Semaphore::new(config.max_concurrent_requests.max(1)),
            max_attempts: config.max_attempts.max(1),
            initial_backoff: config.initial_backoff,
            max_backoff: config.max_backoff.max(config.initial_backoff),
            timeout: config.request_timeout,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
        }
    }

    /// A permit to hold one part's bytes in memory (streamed copies), so that at most
    /// `max_concurrent_requests` parts are buffered across every object.
    pub async fn buffer(&self) -> StoreResult<SemaphorePermit<'_>> {
        self.buffers.acquire().await.map_err(|_| {
            StoreError::new(
                StoreErrorKind::Other,
                "the transfer's buffer gate is closed",
            )
        })
    }

    /// The most requests that were in flight at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Attempts that were retries.
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::SeqCst)
    }

    /// Runs the request `attempt` makes (`operation` on `key`, for errors and logs): under a
    /// permit, within the timeout, again after a retryable failure until the attempts run
    /// out. The last failure is returned.
    pub async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let backoff = Backoff {
            initial: self.initial_backoff,
            max: self.max_backoff,
        };
        for number in 1.. {
            let result = self.once(operation, key, attempt()).await;
            match result {
                Err(err) if err.is_retryable() && number < self.max_attempts => {
                    self.retries.fetch_add(1, Ordering::SeqCst);
                    let wait = backoff.delay(number);
                    tracing::debug!(operation, key, attempt = number, error = %err,
                        wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                done => return done,
            }
        }
        unreachable!("the attempts loop returns")
    }

    async fn once<T>(
        &self,
        operation: &'static str,
        key: &str,
        request: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let _permit = self.permits.acquire().await.map_err(|_| {
            StoreError::new(
                StoreErrorKind::Other,
                "the transfer's request gate is closed",
            )
        })?;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let result = tokio::time::timeout(self.timeout, request).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result.unwrap_or_else(|_| {
            Err(StoreError::new(
                StoreErrorKind::Transient,
                format!("no answer within {:?}", self.timeout),
            )
            .with_operation(operation)
            .with_key(key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limit(requests: usize, attempts: u32, timeout: Duration) -> RequestLimit {
        RequestLimit::new(&TransferConfig {
            max_concurrent_requests: requests,
            max_attempts: attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            request_timeout: timeout,
            ..TransferConfig::default()
        })
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_the_attempts_run_out() {
        let gate = limit(4, 3, Duration::from_secs(5));
        let mut calls = 0;
        let result: StoreResult<()> = gate
            .run("UploadPart", "k", || {
                calls += 1;
                async { Err(StoreError::new(StoreErrorKind::Throttled, "SlowDown")) }
            })
            .await;
        assert_eq!(result.unwrap_err().kind, StoreErrorKind::Throttled);
        assert_eq!(calls, 3);
        assert_eq!(gate.retries(), 2);

        let mut calls = 0;
        let result: StoreResult<()> = gate
            .run("HeadObject", "k", || {
                calls += 1;
                async { Err(StoreError::new(StoreErrorKind::AccessDenied, "no")) }
            })
            .await;
        assert_eq!(result.unwrap_err().kind, StoreErrorKind::AccessDenied);
        assert_eq!(calls, 1, "a final answer is not retried");
    }

    #[tokio::test]
    async fn a_request_without_an_answer_times_out_and_is_retried() {
        let gate = limit(4, 2, Duration::from_millis(20));
        let mut calls = 0;
        let result = gate
            .run("GetObject", "k", || {
                calls += 1;
                let first = calls == 1;
                async move {
                    if first {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn no_more_than_the_cap_are_in_flight() {
        let gate = Arc::new(limit(3, 1, Duration::from_secs(5)));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move {
                    gate.run("CopyObject", "k", || async {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(gate.peak(), 3);
    }
}
