//! An object's bytes as the store keeps them: one buffer for a single PUT or a copy, the
//! parts themselves for a completed multipart upload.
//!
//! Completing an upload joins no bytes, so it costs the same whatever the object's size,
//! and the object never needs its size twice in memory (the parts and a joined copy), just
//! as S3's CompleteMultipartUpload costs its client nothing. Everything that reads a body
//! takes its bytes piece by piece, without a copy, unless it needs one buffer.

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use std::ops::Range;
use std::sync::Arc;

/// The bytes of one object, in one or more pieces (never an empty piece).
#[derive(Clone, Debug, Default)]
pub(super) struct Body {
    pieces: Arc<[Bytes]>,
    /// Where each piece starts in the object; as long as `pieces`.
    starts: Arc<[usize]>,
    len: usize,
}

impl Body {
    /// A body of the pieces in order (empty ones dropped).
    pub(super) fn from_pieces(pieces: impl IntoIterator<Item = Bytes>) -> Self {
        let pieces: Vec<Bytes> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        let mut starts = Vec::with_capacity(pieces.len());
        let mut len = 0;
        for piece in &pieces {
            starts.push(len);
            len += piece.len();
        }
        Self {
            pieces: pieces.into(),
            starts: starts.into(),
            len,
        }
    }

    /// Its length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The bytes of `range` (within the body), as slices of the pieces that hold them:
    /// no byte is copied.
    pub(super) fn slices(&self, range: Range<usize>) -> Vec<Bytes> {
        let (start, end) = (range.start.min(self.len), range.end.min(self.len));
        if start >= end {
            return Vec::new();
        }
        // The piece holding `start`: the last one starting at or before it.
        let first = self.starts.partition_point(|&s| s <= start) - 1;
        let mut out = Vec::new();
        for (piece, &piece_start) in self.pieces[first..].iter().zip(&self.starts[first..]) {
            if piece_start >= end {
                break;
            }
            let from = start.saturating_sub(piece_start);
            let to = (end - piece_start).min(piece.len());
            out.push(piece.slice(from..to));
        }
        out
    }

    /// The bytes of `range` in one buffer: a slice when one piece holds them, a copy
    /// otherwise.
    pub(super) fn contiguous(&self, range: Range<usize>) -> Bytes {
        let mut slices = self.slices(range);
        if slices.len() <= 1 {
            return slices.pop().unwrap_or_default();
        }
        let mut joined = BytesMut::with_capacity(slices.iter().map(Bytes::len).sum());
        for slice in &slices {
            joined.extend_from_slice(slice);
        }
        joined.freeze()
    }

    /// The whole body in one buffer (see [`contiguous`](Self::contiguous)).
    pub(super) fn to_bytes(&self) -> Bytes {
        self.contiguous(0..self.len)
    }

    /// The MD5 of every byte, piece by piece.
    pub(super) fn md5(&self) -> [u8; 16] {
        let mut md5 = Md5::new();
        for piece in self.pieces.iter() {
            md5.update(piece);
        }
        md5.finalize().into()
    }

    /// Appends every byte to `out`.
    pub(super) fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        for piece in self.pieces.iter() {
            out.extend_from_slice(piece);
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::from_pieces([bytes])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Body {
        Body::from_pieces([
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ])
    }

    #[test]
    fn slices_cross_pieces_without_copying_and_stop_at_the_end() {
        let body = body();
        assert_eq!(body.len(), 8);
        let joined = |r: Range<usize>| -> Vec<u8> { body.slices(r).concat() };
        for start in 0..=8 {
            for end in start..=10 {
                assert_eq!(
                    joined(start..end),
                    b"abcdefgh"[start.min(8)..end.min(8)].to_vec(),
                    "{start}..{end}"
                );
            }
        }
        assert_eq!(body.slices(2..5).len(), 2);
        #[allow(clippy::reversed_empty_ranges)] // what a reversed range gives is the point
        let reversed = body.slices(5..3);
        assert!(reversed.is_empty());
    }

    #[test]
    fn contiguous_copies_only_across_pieces() {
        let body = body();
        let inside = body.contiguous(3..6);
        assert_eq!(&inside[..], b"def");
        assert_eq!(&body.contiguous(1..8)[..], b"bcdefgh");
        assert_eq!(&body.to_bytes()[..], b"abcdefgh");
        assert!(body.contiguous(8..8).is_empty());
        assert!(Body::default().to_bytes().is_empty());
    }

    #[test]
    fn md5_and_append_see_every_byte_in_order() {
        let body = body();
        let expected: [u8; 16] = Md5::digest(b"abcdefgh").into();
        assert_eq!(body.md5(), expected);
        let mut out = b"x".to_vec();
        body.append_to(&mut out);
        assert_eq!(out, b"xabcdefgh");
    }
}
