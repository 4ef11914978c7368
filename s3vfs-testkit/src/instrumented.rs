//! [`InstrumentedBuckets`]: the buckets of one in-memory "endpoint", each seen through
//! optional latency, fault injection and a request counter — for tests and benchmarks of
//! whatever spans several buckets (copies between buckets, all-bucket mounts).
//!
//! The buckets are siblings of one [`MemBuckets`], so server-side copies between them work;
//! the counters of all buckets share one in-flight gauge, so a cap on requests across
//! buckets can be checked ([`CountingStore::max_in_flight`]).

use crate::fault::{CountingStore, FaultStore, LatencyStore};
use crate::mem::{MemBuckets, MemStore};
use async_trait::async_trait;
use s3vfs::store::{Backend, BucketProvider, Capabilities, StoreError, StoreResult};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One bucket's instruments.
#[derive(Clone, Debug)]
pub struct Instruments {
    /// The bucket's contents.
    pub mem: MemStore,
    /// Faults to inject into its requests.
    pub faults: FaultStore,
    /// Its requests, counted.
    pub counts: CountingStore,
}

/// Buckets of one endpoint behind latency, faults and counters (see the
/// [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct InstrumentedBuckets {
    buckets: MemBuckets,
    instruments: BTreeMap<String, Instruments>,
    stores: BTreeMap<String, Arc<dyn Backend>>,
}

impl InstrumentedBuckets {
    /// No buckets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bucket `name` with `capabilities`, each request delayed by `latency` (zero:
    /// none) before faults and counting.
    #[must_use]
    pub fn with_bucket(
        mut self,
        name: &str,
        capabilities: Capabilities,
        latency: Duration,
    ) -> Self {
        let mem = self.buckets.create_bucket_with(name, capabilities);
        let inner: Arc<dyn Backend> = if latency.is_zero() {
            Arc::new(mem.clone())
        } else {
            Arc::new(LatencyStore::new(Arc::new(mem.clone()), latency))
        };
        let faults = FaultStore::new(inner);
        let counts = match self.instruments.values().next() {
            Some(first) => {
                CountingStore::sharing_in_flight(Arc::new(faults.clone()), &first.counts)
            }
            None => CountingStore::new(Arc::new(faults.clone())),
        };
        self.stores
            .insert(name.to_owned(), Arc::new(counts.clone()));
        self.instruments.insert(
            name.to_owned(),
            Instruments {
                mem,
                faults,
                counts,
            },
        );
        self
    }

    /// Bucket `name`'s instruments.
    ///
    /// # Panics
    ///
    /// If there is no such bucket (a test's mistake).
    pub fn get(&self, name: &str) -> &Instruments {
        self.instruments
            .get(name)
            .unwrap_or_else(|| panic!("no bucket {name}"))
    }

    /// The most requests in flight at once, across every bucket.
    pub fn max_in_flight(&self) -> u64 {
        self.instruments
            .values()
            .next()
            .map_or(0, |i| i.counts.max_in_flight())
    }

    /// Sets every counter (and the in-flight peak) back to zero.
    pub fn reset_counts(&self) {
        for instruments in self.instruments.values() {
            instruments.counts.reset();
        }
    }
}

#[async_trait]
impl BucketProvider for InstrumentedBuckets {
    async fn list_buckets(&self) -> StoreResult<Vec<String>> {
        Ok(self.stores.keys().cloned().collect())
    }

    fn bucket(&self, name: &str) -> StoreResult<Arc<dyn Backend>> {
        self.stores.get(name).cloned().ok_or_else(|| {
            StoreError::new(
                s3vfs::store::StoreErrorKind::NotFound,
                "the bucket does not exist",
            )
            .with_key(name)
            .with_code("NoSuchBucket")
        })
    }
}
