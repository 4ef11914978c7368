//! The envelope of every chunk and inode object (FORMAT.md, "Envelope"): compress when it
//! helps, seal with the object's key as AAD; and the reverse, with every size bounded
//! before anything is allocated.

use super::crypto::{self, SecretKey, NONCE_LEN, TAG_LEN};
use super::error::VaultError;

/// The magic at the start of every envelope.
const MAGIC: &[u8; 4] = b"S3VV";
/// The envelope version this code writes and reads.
const ENVELOPE_VERSION: u8 = 1;
/// Bytes of the header (magic, version, kind, codec, reserved, nonce).
pub(crate) const HEADER_LEN: usize = 8 + NONCE_LEN;
/// Bytes an envelope adds to its (possibly compressed) plaintext.
pub(crate) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The zstd level objects are compressed with.
const ZSTD_LEVEL: i32 = 3;

/// Plaintext stored as is.
const CODEC_STORED: u8 = 0;
/// Plaintext compressed as one zstd frame.
const CODEC_ZSTD: u8 = 1;

/// What an envelope holds; part of the authenticated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    /// A data chunk.
    Chunk = 1,
    /// An inode.
    Inode = 2,
}

/// Compresses `plaintext` if that makes it smaller and seals it as an object of `kind` at
/// key `name` (relative to the vault's prefix).
pub(crate) fn seal(key: &SecretKey, kind: ObjectKind, name: &str, plaintext: &[u8]) -> Vec<u8> {
    let compressed = zstd::bulk::compress(plaintext, ZSTD_LEVEL)
        .ok()
        .filter(|c| c.len() < plaintext.len());
    let (codec, body) = match &compressed {
        Some(c) => (CODEC_ZSTD, c.as_slice()),
        None => (CODEC_STORED, plaintext),
    };
    let nonce = crypto::random_nonce();
    let mut header = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&[ENVELOPE_VERSION, kind as u8, codec, 0]);
    header.extend_from_slice(&nonce);
    let sealed = crypto::seal(key, &nonce, &aad(&header, name), body);
    header.extend_from_slice(&sealed);
    header
}

/// Opens an object of `kind` read from key `name`: its plaintext, at most `max_plain`
/// bytes. Anything that does not authenticate, or says more than `max_plain`, is an error.
pub(crate) fn open(
    key: &SecretKey,
    kind: ObjectKind,
    name: &str,
    object: &[u8],
    max_plain: usize,
) -> Result<Vec<u8>, VaultError> {
    let bad = |reason: &str| VaultError::corrupt(name, reason);
    if object.len() < OVERHEAD {
        return Err(bad("too short to be a vault object"));
    }
    let (header, sealed) = object.split_at(HEADER_LEN);
    if &header[..4] != MAGIC {
        return Err(bad("not a vault object (bad magic)"));
    }
    if header[4] != ENVELOPE_VERSION {
        return Err(bad("unknown envelope version"));
    }
    if header[5] != kind as u8 {
        return Err(bad("object of the wrong kind"));
    }
    let codec = header[6];
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[8..]);
    let body = crypto::open(key, &nonce, &aad(header, name), sealed)
        .ok_or_else(|| bad("does not authenticate: tampered with, or moved from another key"))?;
    match codec {
        CODEC_STORED if body.len() <= max_plain => Ok(body),
        CODEC_STORED => Err(bad("plaintext over its limit")),
        // `decompress` allocates `max_plain` and fails rather than grow past it.
        CODEC_ZSTD => zstd::bulk::decompress(&body, max_plain).map_err(|e| {
            bad(&format!(
                "does not decompress within {max_plain} bytes: {e}"
            ))
        }),
        _ => Err(bad("unknown codec")),
    }
}

/// The AAD of an object: its header, then its key relative to the prefix.
fn aad(header: &[u8], name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + name.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_compressing_only_when_smaller() {
        let key = SecretKey::random();
        let text = b"hello hello hello hello hello hello hello hello".repeat(20);
        let sealed = seal(&key, ObjectKind::Chunk, "c/x", &text);
        assert!(sealed.len() < text.len(), "compressible text is compressed");
        assert_eq!(sealed[6], CODEC_ZSTD);
        assert_eq!(
            open(&key, ObjectKind::Chunk, "c/x", &sealed, text.len()).unwrap(),
            text
        );

        // Random bytes do not compress: stored as they are.
        let noise: Vec<u8> = crypto::random_nonce()
            .into_iter()
            .chain(crypto::random_salt())
            .collect();
        let sealed = seal(&key, ObjectKind::Chunk, "c/y", &noise);
        assert_eq!(sealed[6], CODEC_STORED);
        assert_eq!(sealed.len(), noise.len() + OVERHEAD);
        assert_eq!(
            open(&key, ObjectKind::Chunk, "c/y", &sealed, noise.len()).unwrap(),
            noise
        );
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let key = SecretKey::random();
        let sealed = seal(&key, ObjectKind::Inode, "i/1", b"{\"some\":\"metadata\"}");
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 0x20;
            assert!(
                open(&key, ObjectKind::Inode, "i/1", &bad, 1 << 20).is_err(),
                "byte {at}"
            );
        }
        assert!(
            open(&key, ObjectKind::Inode, "i/2", &sealed, 1 << 20).is_err(),
            "moved"
        );
        assert!(
            open(&key, ObjectKind::Chunk, "i/1", &sealed, 1 << 20).is_err(),
            "kind"
        );
        assert!(open(&key, ObjectKind::Inode, "i/1", &sealed[..20], 1 << 20).is_err());
    }

    #[test]
    fn decompression_is_bounded() {
        let key = SecretKey::random();
        let zeros = vec![0u8; 1 << 20];
        let sealed = seal(&key, ObjectKind::Chunk, "c/z", &zeros);
        assert!(
            sealed.len() < 1024,
            "a MiB of zeros compresses to {}",
            sealed.len()
        );
        let err = open(&key, ObjectKind::Chunk, "c/z", &sealed, 4096).unwrap_err();
        assert!(matches!(err, VaultError::Corrupt { .. }), "{err}");
        let stored = seal(&key, ObjectKind::Chunk, "c/n", &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(open(&key, ObjectKind::Chunk, "c/n", &stored, 4).is_err());
    }
}
