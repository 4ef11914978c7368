//! The bytes written to an open file and not yet stored: non-overlapping extents, the
//! later write winning where two overlap. Kept as the caller's buffers (sliced, never
//! copied) until a flush lays them over the stored content.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Range;

/// Written extents by offset; no two overlap.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    extents: BTreeMap<u64, Bytes>,
    bytes: u64,
}

impl Overlay {
    /// Lays `data` at `off` over what is there.
    pub(crate) fn insert(&mut self, off: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        let overlapping: Vec<u64> = self
            .extents
            .range(..end)
            .rev()
            .take_while(|(start, d)| *start + d.len() as u64 > off)
            .map(|(start, _)| *start)
            .collect();
        for start in overlapping {
            let Some(old) = self.extents.remove(&start) else {
                continue;
            };
            self.bytes -= old.len() as u64;
            let old_end = start + old.len() as u64;
            if start < off {
                let left = old.slice(..(off - start) as usize);
                self.bytes += left.len() as u64;
                self.extents.insert(start, left);
            }
            if old_end > end {
                let right = old.slice((end - start) as usize..);
                self.bytes += right.len() as u64;
                self.extents.insert(end, right);
            }
        }
        self.bytes += data.len() as u64;
        self.extents.insert(off, data);
    }

    /// Drops everything at or past `size`.
    pub(crate) fn truncate(&mut self, size: u64) {
        let dropped = self.extents.split_off(&size);
        self.bytes -= dropped.values().map(|d| d.len() as u64).sum::<u64>();
        if let Some((start, data)) = self.extents.iter_mut().next_back() {
            let end = *start + data.len() as u64;
            if end > size {
                let keep = (size - *start) as usize;
                self.bytes -= (data.len() - keep) as u64;
                *data = data.slice(..keep);
            }
        }
    }

    /// The extents, by offset.
    pub(crate) fn extents(&self) -> impl Iterator<Item = (u64, &Bytes)> {
        self.extents.iter().map(|(off, data)| (*off, data))
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The ranges written, adjacent extents joined, in order.
    pub(crate) fn ranges(&self) -> Vec<Range<u64>> {
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for (start, data) in &self.extents {
            let end = start + data.len() as u64;
            match ranges.last_mut() {
                Some(last) if last.end == *start => last.end = end,
                _ => ranges.push(*start..end),
            }
        }
        ranges
    }

    /// Whether an extent holds a byte of `[start, end)`.
    pub(crate) fn touches(&self, start: u64, end: u64) -> bool {
        let before = self
            .extents
            .range(..=start)
            .next_back()
            .is_some_and(|(off, data)| off + data.len() as u64 > start);
        before || self.extents.range(start..end).next().is_some()
    }

    /// Lays the extents over `buf`, which holds the file's bytes from `at`.
    pub(crate) fn copy_into(&self, at: u64, buf: &mut [u8]) {
        let end = at + buf.len() as u64;
        let first = self
            .extents
            .range(..=at)
            .next_back()
            .map_or(at, |(start, _)| *start);
        for (start, data) in self.extents.range(first..end) {
            let data_end = start + data.len() as u64;
            let (from, to) = ((*start).max(at), data_end.min(end));
            if from >= to {
                continue;
            }
            buf[(from - at) as usize..(to - at) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlay's view of `[0, len)` over zeros.
    fn view(overlay: &Overlay, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        overlay.copy_into(0, &mut buf);
        buf
    }

    #[test]
    fn later_writes_win_and_bytes_are_counted() {
        let mut o = Overlay::default();
        o.insert(2, Bytes::from_static(b"aaaaaa"));
        o.insert(4, Bytes::from_static(b"bb"));
        o.insert(0, Bytes::from_static(b"ccc"));
        o.insert(7, Bytes::from_static(b"dddd"));
        assert_eq!(view(&o, 12), b"cccabbadddd\0");
        assert_eq!(o.bytes(), 11);
        assert_eq!(o.ranges(), vec![0..11]);
        o.insert(20, Bytes::from_static(b"e"));
        assert_eq!(o.ranges(), vec![0..11, 20..21]);
        let mut part = vec![0u8; 4];
        o.copy_into(5, &mut part);
        assert_eq!(&part, b"badd");
    }

    #[test]
    fn touches_sees_any_byte_of_a_range() {
        let mut o = Overlay::default();
        o.insert(10, Bytes::from_static(b"abc"));
        assert!(!o.touches(0, 10));
        assert!(o.touches(0, 11));
        assert!(o.touches(12, 20));
        assert!(o.touches(11, 12));
        assert!(!o.touches(13, 20));
        assert!(!o.touches(5, 5));
    }

    #[test]
    fn truncate_cuts_and_drops() {
        let mut o = Overlay::default();
        o.insert(0, Bytes::from_static(b"0123456789"));
        o.insert(20, Bytes::from_static(b"xyz"));
        o.truncate(4);
        assert_eq!(o.bytes(), 4);
        assert_eq!(o.ranges(), vec![0..4]);
        assert_eq!(view(&o, 6), b"0123\0\0");
    }

    #[test]
    fn matches_a_plain_buffer_model() {
        let mut o = Overlay::default();
        let mut model = vec![0u8; 64];
        let mut written = [false; 64];
        let mut state = 17u64;
        for step in 0..500u64 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let off = (state >> 40) % 60;
            let len = 1 + (state >> 20) % (64 - off).min(9);
            let data: Vec<u8> = (0..len)
                .map(|i| (step as u8).wrapping_add(i as u8))
                .collect();
            model[off as usize..(off + len) as usize].copy_from_slice(&data);
            written[off as usize..(off + len) as usize].fill(true);
            o.insert(off, Bytes::from(data));
            assert_eq!(view(&o, 64), model, "step {step}");
            assert_eq!(o.bytes(), written.iter().filter(|w| **w).count() as u64);
        }
    }
}
