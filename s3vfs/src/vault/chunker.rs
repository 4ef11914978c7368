//! Content-defined chunking (FastCDC 2020): where a run of file bytes is cut into chunks.
//!
//! Cut points depend on the bytes around them only, so an insert in the middle of a file
//! changes the chunks near the insert and not every later one; equal content is cut
//! equally, which is what deduplication needs.

use super::error::VaultError;
use fastcdc::v2020 as cdc;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Chunk sizes in bytes: FastCDC's smallest, average and largest chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChunkParams {
    /// Smallest chunk but the last of a run (64 B to 1 MiB).
    pub min: u32,
    /// Average chunk (256 B to 4 MiB).
    pub avg: u32,
    /// Largest chunk (1 KiB to 16 MiB).
    pub max: u32,
}

impl Default for ChunkParams {
    /// 256 KiB, 1 MiB, 4 MiB.
    fn default() -> Self {
        Self::with_avg(1024 * 1024)
    }
}

impl ChunkParams {
    /// Chunks of `avg` bytes on average, a quarter of that at least and four times at most
    /// (clamped to what FastCDC takes).
    pub fn with_avg(avg: u32) -> Self {
        let avg = avg.clamp(cdc::AVERAGE_MIN, cdc::AVERAGE_MAX);
        Self {
            min: (avg / 4).clamp(cdc::MINIMUM_MIN, cdc::MINIMUM_MAX),
            avg,
            max: avg
                .saturating_mul(4)
                .clamp(cdc::MAXIMUM_MIN, cdc::MAXIMUM_MAX),
        }
    }

    /// Checks the sizes against FastCDC's ranges (it panics outside them).
    pub(crate) fn validate(&self) -> Result<(), VaultError> {
        let ok = (cdc::MINIMUM_MIN..=cdc::MINIMUM_MAX).contains(&self.min)
            && (cdc::AVERAGE_MIN..=cdc::AVERAGE_MAX).contains(&self.avg)
            && (cdc::MAXIMUM_MIN..=cdc::MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(VaultError::Config(format!(
                "chunk sizes {self:?}: min 64 B–1 MiB, avg 256 B–4 MiB, max 1 KiB–16 MiB, \
                 min ≤ avg ≤ max"
            )))
        }
    }

    /// The chunks of `data`, in order, covering all of it (none for empty data). The
    /// parameters must be valid ([`validate`](Self::validate)).
    pub(crate) fn cut(&self, data: &[u8]) -> Vec<Range<usize>> {
        cdc::FastCDC::new(data, self.min, self.avg, self.max)
            .map(|chunk| chunk.offset..chunk.offset + chunk.length)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_data_within_bounds() {
        let params = ChunkParams::with_avg(256);
        params.validate().unwrap();
        let data = pseudo_random(20_000, 1);
        let cuts = params.cut(&data);
        assert!(cuts.len() > 10, "{} chunks", cuts.len());
        let mut at = 0;
        for (i, cut) in cuts.iter().enumerate() {
            assert_eq!(cut.start, at);
            assert!(cut.len() <= params.max as usize);
            if i + 1 < cuts.len() {
                assert!(cut.len() >= params.min as usize);
            }
            at = cut.end;
        }
        assert_eq!(at, data.len());
        assert!(params.cut(&[]).is_empty());
    }

    #[test]
    fn an_insert_changes_only_nearby_chunks() {
        let params = ChunkParams::with_avg(256);
        let data = pseudo_random(50_000, 2);
        let mut edited = data[..25_000].to_vec();
        edited.extend_from_slice(b"inserted in the middle");
        edited.extend_from_slice(&data[25_000..]);
        let chunks = |d: &[u8]| -> std::collections::HashSet<Vec<u8>> {
            params.cut(d).into_iter().map(|r| d[r].to_vec()).collect()
        };
        let (before, after) = (chunks(&data), chunks(&edited));
        let shared = before.intersection(&after).count();
        assert!(
            shared + 4 >= before.len(),
            "{shared} of {} chunks kept",
            before.len()
        );
    }

    #[test]
    fn out_of_range_sizes_are_refused() {
        assert!(ChunkParams::default().validate().is_ok());
        let bad = ChunkParams {
            min: 10,
            avg: 256,
            max: 1024,
        };
        assert!(bad.validate().is_err());
        let inverted = ChunkParams {
            min: 4096,
            avg: 1024,
            max: 8192,
        };
        assert!(inverted.validate().is_err());
    }
}
