//! A file's content: what is stored (an inode's chunk list) with what was written and not
//! yet stored laid over it; reading the two together, and storing the changes by
//! re-chunking only the regions they touch.
//!
//! Invariant of [`Pending`]: the stored bytes below [`Pending::base_end`] are the file's
//! unless the overlay covers them; everything from there to the size is zeros where the
//! overlay does not cover it. Laying a `Pending` over a newer version of the inode (after
//! another writer won an If-Match) keeps that writer's bytes except where this one wrote.

use super::chunker::ChunkParams;
use super::chunks::Chunks;
use super::inode::{ChunkRef, Inode};
use super::overlay::Overlay;
use crate::error::VfsResult;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::ops::Range;
use std::time::Instant;

/// What [`Pending::store`] stored: the new version's chunk list and size.
#[derive(Debug)]
pub(crate) struct StoredContent {
    /// The chunk list, by offset.
    pub(crate) chunks: Vec<ChunkRef>,
    /// The size.
    pub(crate) size: u64,
    /// The earliest instant from which a chunk written or reused for it is vouched for.
    pub(crate) fresh_since: Option<Instant>,
}

/// Chunks one read fetches at once.
const FETCH_CONCURRENCY: usize = 4;

/// The changes to one file not yet stored.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pending {
    overlay: Overlay,
    /// The smallest size the file was truncated to since the last store, if it was.
    cut: Option<u64>,
    /// The size as written (without a truncation: at least the stored size).
    size: u64,
    dirty: bool,
}

impl Pending {
    /// No change to a file of `size` bytes.
    pub(crate) fn clean(size: u64) -> Self {
        Self {
            size,
            ..Self::default()
        }
    }

    /// Whether anything changed.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Bytes written and held.
    pub(crate) fn held(&self) -> u64 {
        self.overlay.bytes()
    }

    /// Writes `data` at `off`.
    pub(crate) fn write(&mut self, off: u64, data: Bytes) {
        self.size = self.size.max(off + data.len() as u64);
        self.overlay.insert(off, data);
        self.dirty = true;
    }

    /// Sets the size to `size`, dropping or adding (zero) bytes at the end.
    pub(crate) fn truncate(&mut self, size: u64) {
        self.overlay.truncate(size);
        self.cut = Some(self.cut.map_or(size, |cut| cut.min(size)));
        self.size = size;
        self.dirty = true;
    }

    /// The size of the file over `base`.
    pub(crate) fn size(&self, base: &Inode) -> u64 {
        match self.cut {
            Some(_) => self.size,
            None => self.size.max(base.size),
        }
    }

    /// What was written and not stored: each extent at its offset.
    pub(crate) fn extents(&self) -> impl Iterator<Item = (u64, &Bytes)> {
        self.overlay.extents()
    }

    /// Below this, `base`'s stored bytes still count.
    pub(crate) fn base_end(&self, base: &Inode) -> u64 {
        self.cut.map_or(base.size, |cut| cut.min(base.size))
    }

    /// `len` bytes at `off` of the file over `base` (fewer at its end).
    pub(crate) async fn read(
        &self,
        chunks: &Chunks,
        base: &Inode,
        off: u64,
        len: u64,
    ) -> VfsResult<Bytes> {
        let size = self.size(base);
        if off >= size {
            return Ok(Bytes::new());
        }
        let end = size.min(off.saturating_add(len));
        let mut buf = vec![0u8; (end - off) as usize];
        fill_from_stored(chunks, base, self.base_end(base), off, &mut buf).await?;
        self.overlay.copy_into(off, &mut buf);
        Ok(Bytes::from(buf))
    }

    /// The same bytes as [`read`](Self::read), as slices of the chunks they come from
    /// (no copy) where nothing written lies over them; holes as zeros.
    pub(crate) async fn read_slices(
        &self,
        chunks: &Chunks,
        base: &Inode,
        off: u64,
        len: u64,
    ) -> VfsResult<Vec<Bytes>> {
        let size = self.size(base);
        if off >= size {
            return Ok(Vec::new());
        }
        let end = size.min(off.saturating_add(len));
        if self.overlay.touches(off, end) {
            return Ok(vec![self.read(chunks, base, off, len).await?]);
        }
        let stored_end = end.min(self.base_end(base));
        let wanted = base.chunks_in(off, stored_end).to_vec();
        let mut slices = Vec::with_capacity(wanted.len() * 2 + 1);
        let mut at = off;
        let mut fetched = futures::stream::iter(wanted)
            .map(|chunk| fetch(chunks, chunk))
            .buffered(FETCH_CONCURRENCY);
        while let Some((chunk, data)) = fetched.try_next().await? {
            if chunk.off > at {
                slices.push(zeros(chunk.off - at));
            }
            let (from, to) = (chunk.off.max(at), chunk.end().min(stored_end));
            slices.push(data.slice((from - chunk.off) as usize..(to - chunk.off) as usize));
            at = to;
        }
        if at < end {
            slices.push(zeros(end - at));
        }
        Ok(slices)
    }

    /// Stores the changes over `base`: the chunks of every changed region are cut anew
    /// and written (chunks of zeros are left as holes), the others kept. Answers the
    /// chunk list and size of the new version, and the earliest
    /// [`fresh_since`](super::chunks::Stored::fresh_since) of the chunks it wrote or
    /// reused (none if it kept only `base`'s): its inode is the caller's to write, after
    /// this returns (data before metadata) and within the refresh age of that instant.
    pub(crate) async fn store(
        &self,
        chunks: &Chunks,
        params: &ChunkParams,
        base: &Inode,
        concurrency: usize,
    ) -> VfsResult<StoredContent> {
        let size = self.size(base);
        let base_end = self.base_end(base);
        let mut dirty = self.overlay.ranges();
        let mut kept = Vec::with_capacity(base.chunks.len());
        for chunk in &base.chunks {
            if chunk.end() <= base_end {
                kept.push(*chunk);
            } else if chunk.off < base_end {
                // Cut by a truncation: what is left of it is cut anew.
                dirty.push(chunk.off..base_end);
            }
        }
        let regions = regions(dirty, &kept);
        let mut fresh_since: Option<Instant> = None;
        let mut refs: Vec<ChunkRef> = kept
            .into_iter()
            .filter(|c| !regions.iter().any(|r| c.off < r.end && c.end() > r.start))
            .collect();
        for region in regions {
            let region = region.start..region.end.min(size);
            if region.is_empty() {
                continue;
            }
            let mut buf = vec![0u8; (region.end - region.start) as usize];
            fill_from_stored(chunks, base, base_end, region.start, &mut buf).await?;
            self.overlay.copy_into(region.start, &mut buf);
            let buf = Bytes::from(buf);
            let pieces: Vec<(u64, Bytes)> = params
                .cut(&buf)
                .into_iter()
                .map(|cut| (region.start + cut.start as u64, buf.slice(cut)))
                .filter(|(_, piece)| piece.iter().any(|b| *b != 0))
                .collect();
            let stored: Vec<(ChunkRef, Instant)> = futures::stream::iter(pieces)
                .map(|(off, piece)| async move {
                    let len = piece.len() as u32;
                    let stored = chunks.put(piece).await?;
                    let reference = ChunkRef {
                        off,
                        len,
                        id: stored.id,
                    };
                    VfsResult::Ok((reference, stored.fresh_since))
                })
                .buffer_unordered(concurrency.max(1))
                .try_collect()
                .await?;
            for (reference, since) in stored {
                refs.push(reference);
                fresh_since = Some(fresh_since.map_or(since, |earliest| earliest.min(since)));
            }
        }
        refs.sort_by_key(|c| c.off);
        Ok(StoredContent {
            chunks: refs,
            size,
            fresh_since,
        })
    }
}

/// The regions to cut anew: every dirty range widened to the whole of each kept chunk it
/// touches (and to the last chunk when it starts right after it: an append joins the
/// short chunk the end of the file left), overlapping or touching regions joined.
fn regions(mut dirty: Vec<Range<u64>>, kept: &[ChunkRef]) -> Vec<Range<u64>> {
    dirty.sort_by_key(|r| r.start);
    let mut regions: Vec<Range<u64>> = Vec::new();
    for mut range in dirty {
        let first = kept.partition_point(|c| c.end() < range.start);
        for (at, chunk) in kept.iter().enumerate().skip(first) {
            if chunk.off >= range.end {
                break;
            }
            let is_last = at + 1 == kept.len();
            if chunk.end() > range.start || (chunk.end() == range.start && is_last) {
                range.start = range.start.min(chunk.off);
                range.end = range.end.max(chunk.end());
            }
        }
        match regions.last_mut() {
            Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
            _ => regions.push(range),
        }
    }
    regions
}

/// Copies the stored bytes of `base` below `base_end` that fall in `[at, at + buf.len())`
/// into `buf` (holes stay as `buf` has them).
async fn fill_from_stored(
    chunks: &Chunks,
    base: &Inode,
    base_end: u64,
    at: u64,
    buf: &mut [u8],
) -> VfsResult<()> {
    let end = (at + buf.len() as u64).min(base_end);
    if end <= at {
        // All of it past what is stored (or cut off by a truncation): holes.
        return Ok(());
    }
    let wanted = base.chunks_in(at, end).to_vec();
    // A few chunks fetched at once, copied in order as they come.
    let mut fetched = futures::stream::iter(wanted)
        .map(|chunk| fetch(chunks, chunk))
        .buffered(FETCH_CONCURRENCY);
    while let Some((chunk, data)) = fetched.try_next().await? {
        let (from, to) = (chunk.off.max(at), chunk.end().min(end));
        buf[(from - at) as usize..(to - at) as usize]
            .copy_from_slice(&data[(from - chunk.off) as usize..(to - chunk.off) as usize]);
    }
    Ok(())
}

/// `len` zero bytes (a hole).
fn zeros(len: u64) -> Bytes {
    Bytes::from(vec![0u8; len as usize])
}

/// The plaintext of `chunk`, with it.
async fn fetch(chunks: &Chunks, chunk: ChunkRef) -> VfsResult<(ChunkRef, Bytes)> {
    Ok((chunk, chunks.get(&chunk).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::crypto::{Keys, SecretKey};

    fn chunk(off: u64, len: u32) -> ChunkRef {
        let keys = Keys::derive(&SecretKey::from_bytes([1; 32]));
        ChunkRef {
            off,
            len,
            id: keys.chunk_id(&off.to_le_bytes()),
        }
    }

    #[test]
    // The lists of one range are lists of ranges, as `regions` takes and answers them.
    #[allow(clippy::single_range_in_vec_init)]
    fn regions_widen_to_the_chunks_they_touch() {
        let kept = [chunk(0, 100), chunk(100, 100), chunk(200, 100)];
        assert_eq!(regions(vec![150..160], &kept), vec![100..200]);
        assert_eq!(regions(vec![150..250], &kept), vec![100..300]);
        assert_eq!(
            regions(vec![10..20, 250..260], &kept),
            vec![0..100, 200..300]
        );
        // Touching the first chunk's end only: not widened.
        assert_eq!(regions(vec![100..100], &kept[..2]), vec![100..100]);
        // An append right after the last chunk joins it.
        assert_eq!(regions(vec![300..350], &kept), vec![200..350]);
        assert_eq!(regions(vec![500..600], &kept), vec![500..600]);
        assert_eq!(regions(vec![50..60, 60..70], &[]), vec![50..70]);
    }

    #[test]
    fn pending_size_follows_truncations() {
        let mut base = Inode::new(5, crate::vault::inode::Kind::File, 0o644, 0, 0);
        base.size = 100;
        let mut p = Pending::clean(100);
        assert_eq!(p.size(&base), 100);
        p.write(150, Bytes::from_static(b"x"));
        assert_eq!(p.size(&base), 151);
        p.truncate(50);
        assert_eq!((p.size(&base), p.base_end(&base)), (50, 50));
        p.truncate(80);
        assert_eq!((p.size(&base), p.base_end(&base)), (80, 50));
        // Over a newer version another writer made longer: the truncation still holds.
        base.size = 1000;
        assert_eq!(p.size(&base), 80);
        let mut untouched = Pending::clean(100);
        untouched.write(0, Bytes::from_static(b"y"));
        assert_eq!(untouched.size(&base), 1000);
    }
}
