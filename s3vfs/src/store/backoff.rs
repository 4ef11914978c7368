//! The wait before a retry: exponential backoff with full jitter, as AWS recommends, so
//! that many tasks retrying after the same failure spread out instead of returning
//! together. The one rule for every retry loop of the crate (GET body resumption in the
//! S3 store, the transfer's request gate).

use std::time::Duration;

/// Doubling from an initial wait up to a ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// The ceiling of the first retry's wait.
    pub(crate) initial: Duration,
    /// The most any wait can be.
    pub(crate) max: Duration,
}

impl Backoff {
    /// How long to wait before retry number `retry` (1-based): a uniformly random time up
    /// to `initial × 2^(retry-1)`, capped at `max`.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::Rng::gen_range(
            &mut rand::thread_rng(),
            0..=ceiling_us,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_spread() {
        let backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
        };
        for retry in 1..40 {
            assert!(backoff.delay(retry) <= Duration::from_millis(40));
        }
        assert!(backoff.delay(1) <= Duration::from_millis(10));
        assert!(backoff.delay(u32::MAX) <= Duration::from_millis(40));
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff.delay(3)).collect();
        assert!(waits.len() > 10, "jittered: {waits:?}");
    }
}
