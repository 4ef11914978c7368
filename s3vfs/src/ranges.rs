//! A set of disjoint byte ranges: which parts of a file were written locally.
//!
//! The interval arithmetic is the `rangemap` crate's; this type keeps the few questions
//! the write path asks, in byte offsets.

/// Disjoint, non-adjacent half-open ranges `[start, end)`, kept merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    ranges: rangemap::RangeSet<u64>,
}

impl RangeSet {
    /// The empty set.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, end)`, merging with overlapping or adjacent ranges.
    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        if start < end {
            self.ranges.insert(start..end);
        }
    }

    /// Removes everything at or after `len`.
    pub(crate) fn truncate(&mut self, len: u64) {
        if len < u64::MAX {
            self.ranges.remove(len..u64::MAX);
        }
    }

    /// Whether any byte of `[start, end)` is in the set.
    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        start < end && self.ranges.overlaps(&(start..end))
    }

    /// Whether the set is exactly `[0, len)` (or empty when `len` is 0).
    #[cfg(test)]
    pub(crate) fn is_prefix(&self, len: u64) -> bool {
        let mut ranges = self.ranges.iter();
        match (len, ranges.next()) {
            (0, None) => true,
            (_, Some(first)) => *first == (0..len) && ranges.next().is_none(),
            _ => false,
        }
    }

    /// `[start, end)` cut into pieces, each wholly inside the set (`true`) or outside it.
    pub(crate) fn split(&self, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let mut at = start;
        for range in self.ranges.overlapping(&(start..end)) {
            let (s, e) = (range.start.max(start), range.end.min(end));
            if s > at {
                out.push((at, s, false));
            }
            out.push((s, e, true));
            at = e;
        }
        if at < end {
            out.push((at, end, false));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_and_splits() {
        let mut set = RangeSet::new();
        set.insert(10, 20);
        set.insert(30, 40);
        set.insert(20, 25);
        assert_eq!(
            set.split(0, 50),
            vec![
                (0, 10, false),
                (10, 25, true),
                (25, 30, false),
                (30, 40, true),
                (40, 50, false)
            ]
        );
        assert!(set.overlaps(24, 26));
        assert!(!set.overlaps(25, 30));
        set.truncate(35);
        assert_eq!(
            set.split(28, 40),
            vec![(28, 30, false), (30, 35, true), (35, 40, false)]
        );
        set.insert(0, 40);
        assert!(set.is_prefix(40));
        assert!(set.split(0, 0).is_empty());
        assert!(set.split(7, 7).is_empty());
    }

    proptest! {
        #[test]
        fn behaves_like_a_bitmap(ops in proptest::collection::vec((0u64..64, 0u64..64, any::<bool>()), 0..20)) {
            let mut set = RangeSet::new();
            let mut bits = [false; 64];
            for (a, b, truncate) in ops {
                if truncate {
                    set.truncate(a);
                    for bit in bits.iter_mut().skip(a as usize) { *bit = false; }
                } else {
                    let (s, e) = (a.min(b), a.max(b));
                    set.insert(s, e);
                    for bit in bits.iter_mut().take(e as usize).skip(s as usize) { *bit = true; }
                }
            }
            for (s, e, inside) in set.split(0, 64) {
                for i in s..e {
                    prop_assert_eq!(bits[i as usize], inside);
                }
            }
            let len = bits.iter().take_while(|b| **b).count() as u64;
            prop_assert_eq!(set.is_prefix(len), bits.iter().skip(len as usize).all(|b| !b));
        }
    }
}
