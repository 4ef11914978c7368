//! The on-disk format of one cached block, and its checks.
//!
//! Layout (integers little-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `S3VB` |
//! | 4 | format version (1) |
//! | 8 | block index |
//! | 8 | data length |
//! | 4 | CRC-32C of the data |
//! | 4 + n | scope (length, UTF-8) |
//! | 4 + n | key (length, UTF-8) |
//! | 4 + n | ETag (length, UTF-8) |
//! | data length | the data |
//!
//! The whole id is stored and compared on read, so a file name collision or a file of
//! another block can never be served; the checksum catches damaged data.

use super::BlockId;
use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"S3VB";
const VERSION: u32 = 1;
/// Magic, version, index, data length and checksum.
const FIXED_HEADER: usize = 4 + 4 + 8 + 8 + 4;

/// Why a block file was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BlockFileError {
    /// Not a block file, or of another format version.
    #[error("bad magic or format version")]
    BadMagic,
    /// The file ends before its header or data do, or has bytes after the data.
    #[error("file is {actual} bytes, expected {expected}")]
    Length {
        /// What the header implies.
        expected: u64,
        /// What the file has.
        actual: u64,
    },
    /// The file holds another block.
    #[error("file holds another block")]
    OtherBlock,
    /// The data does not match its checksum.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// From the header.
        stored: u32,
        /// Of the data read.
        computed: u32,
    },
}

/// The id's strings, in the order the header holds them.
fn strings(id: &BlockId) -> [&[u8]; 3] {
    [
        id.scope.as_bytes(),
        id.key.as_str().as_bytes(),
        id.etag.as_str().as_bytes(),
    ]
}

/// The size of the file of block `id` holding `data_len` bytes.
pub(crate) fn encoded_len(id: &BlockId, data_len: usize) -> u64 {
    let header = FIXED_HEADER + strings(id).iter().map(|s| 4 + s.len()).sum::<usize>();
    (header + data_len) as u64
}

/// The file contents for block `id` holding `data`.
pub(crate) fn encode(id: &BlockId, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(id, data.len()) as usize);
    out.put_slice(MAGIC);
    out.put_u32_le(VERSION);
    out.put_u64_le(id.index);
    out.put_u64_le(data.len() as u64);
    out.put_u32_le(crc32c::crc32c(data));
    for s in strings(id) {
        // Keys are at most 1024 bytes on S3; anything longer than u32 cannot be in memory.
        out.put_u32_le(u32::try_from(s.len()).unwrap_or(u32::MAX));
        out.put_slice(s);
    }
    out.put_slice(data);
    out.freeze()
}

/// The data of a file read back, if it is block `id`, whole and undamaged.
pub(crate) fn decode(id: &BlockId, file: Bytes) -> Result<Bytes, BlockFileError> {
    let mut reader = Reader { buf: &file, at: 0 };
    let short = |file: &Bytes| BlockFileError::Length {
        expected: FIXED_HEADER as u64,
        actual: file.len() as u64,
    };
    if reader.take(4).ok_or_else(|| short(&file))? != MAGIC {
        return Err(BlockFileError::BadMagic);
    }
    if reader.u32().ok_or_else(|| short(&file))? != VERSION {
        return Err(BlockFileError::BadMagic);
    }
    let index = reader.u64().ok_or_else(|| short(&file))?;
    let len = reader.u64().ok_or_else(|| short(&file))?;
    let stored = reader.u32().ok_or_else(|| short(&file))?;
    let mut same = index == id.index;
    for expected in strings(id) {
        let n = reader.u32().ok_or_else(|| short(&file))? as usize;
        let s = reader.take(n).ok_or_else(|| short(&file))?;
        same &= s == expected;
    }
    if !same {
        return Err(BlockFileError::OtherBlock);
    }
    let expected_len = (reader.at as u64).saturating_add(len);
    if expected_len != file.len() as u64 {
        return Err(BlockFileError::Length {
            expected: expected_len,
            actual: file.len() as u64,
        });
    }
    let data = file.slice(reader.at..);
    let computed = crc32c::crc32c(&data);
    if computed != stored {
        return Err(BlockFileError::Checksum { stored, computed });
    }
    Ok(data)
}

/// Reads fields off the front of a buffer; `None` when it is too short.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::test_id;

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let id = test_id("dir/k", 7);
        let data = b"some block data".as_slice();
        let file = encode(&id, data);
        assert_eq!(file.len() as u64, encoded_len(&id, data.len()));
        assert_eq!(decode(&id, file.clone()).as_deref(), Ok(data));
        assert_eq!(
            decode(&test_id("dir/k", 8), file.clone()),
            Err(BlockFileError::OtherBlock)
        );
        assert_eq!(
            decode(&test_id("dir/x", 7), file.clone()),
            Err(BlockFileError::OtherBlock)
        );
        for at in 0..file.len() {
            let mut damaged = file.to_vec();
            damaged[at] ^= 0x40;
            assert!(
                decode(&id, Bytes::from(damaged)).is_err(),
                "flip at {at} accepted"
            );
        }
        for len in 0..file.len() {
            assert!(
                decode(&id, file.slice(..len)).is_err(),
                "truncation to {len} accepted"
            );
        }
        let mut longer = file.to_vec();
        longer.push(0);
        assert!(decode(&id, Bytes::from(longer)).is_err());
        let empty = encode(&id, b"");
        assert_eq!(decode(&id, empty).as_deref(), Ok(&b""[..]));
    }
}
