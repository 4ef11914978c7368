//! A set of disjoint byte ranges: which parts of a file were written locally.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent half-open ranges `[start, end)`, kept merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// start → end.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// The empty set.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, end)`, merging with overlapping or adjacent ranges.
    pub(crate) fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // A range starting before `start` that reaches it.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
            }
        }
        // Ranges starting inside `[start, end]`.
        let inside: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in inside {
            end = end.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(start, end);
    }

    /// Removes everything at or after `len`.
    pub(crate) fn truncate(&mut self, len: u64) {
        let starts: Vec<u64> = self.ranges.range(len..).map(|(&s, _)| s).collect();
        for s in starts {
            self.ranges.remove(&s);
        }
        if let Some((&s, e)) = self.ranges.range_mut(..len).next_back() {
            if *e > len {
                *e = len;
            }
            if s >= *e {
                self.ranges.remove(&s);
            }
        }
    }

    /// Whether any byte of `[start, end)` is in the set.
    pub(crate) fn overlaps(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return false;
        }
        if let Some((_, &e)) = self.ranges.range(..=start).next_back() {
            if e > start {
                return true;
            }
        }
        self.ranges.range(start..end).next().is_some()
    }

    /// Whether the set is exactly `[0, len)` (or empty when `len` is 0).
    #[cfg(test)]
    pub(crate) fn is_prefix(&self, len: u64) -> bool {
        match (len, self.ranges.len()) {
            (0, 0) => true,
            (_, 1) => self.ranges.get(&0) == Some(&len),
            _ => false,
        }
    }

    /// `[start, end)` cut into pieces, each wholly inside the set (`true`) or outside it.
    pub(crate) fn split(&self, start: u64, end: u64) -> Vec<(u64, u64, bool)> {
        let mut out = Vec::new();
        if start >= end {
            // Nothing to cut (an empty file); `range(start + 1..end)` below would panic.
            return out;
        }
        let mut at = start;
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .map(|(&s, &e)| (s, e));
        let rest = self
            .ranges
            .range(start.saturating_add(1)..end)
            .map(|(&s, &e)| (s, e));
        for (s, e) in first.into_iter().chain(rest) {
            if e <= at || s >= end {
                continue;
            }
            if s > at {
                out.push((at, s, false));
            }
            let stop = e.min(end);
            out.push((at.max(s), stop, true));
            at = stop;
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
