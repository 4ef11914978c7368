//! Keys and the cryptographic primitives of the vault (see FORMAT.md, "Cryptography").
//!
//! The master key is random, wrapped by a key derived from the passphrase (Argon2id); the
//! keys that seal objects and name chunks are derived from it with BLAKE3 `derive_key`, one
//! per purpose. Sealing is XChaCha20-Poly1305 with a random nonce and the caller's AAD.
//! Key material is zeroed when dropped and never printed.

use super::error::VaultError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroize;

/// Bytes of every key.
pub(crate) const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Bytes of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes of the Argon2id salt.
pub(crate) const SALT_LEN: usize = 16;

/// BLAKE3 `derive_key` contexts of the subkeys (FORMAT.md).
const DATA_CONTEXT: &str = "s3vfs vault v1 data";
const META_CONTEXT: &str = "s3vfs vault v1 metadata";
const CHUNK_ID_CONTEXT: &str = "s3vfs vault v1 chunk id";

/// A 256-bit secret key, zeroed on drop.
#[derive(Clone)]
pub(crate) struct SecretKey([u8; KEY_LEN]);

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl SecretKey {
    /// A fresh random key.
    pub(crate) fn random() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// A key of these bytes.
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// A fresh random nonce.
pub(crate) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// A fresh random salt.
pub(crate) fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    salt
}

/// Encrypts and authenticates `plaintext` with `aad`: the ciphertext with its tag.
pub(crate) fn seal(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    key.cipher()
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // XChaCha20-Poly1305 refuses only messages over 256 GiB; callers bound theirs far
        // below that (a chunk, an inode object).
        .unwrap_or_else(|_| unreachable!("a sealed message is bounded far below 256 GiB"))
}

/// Decrypts `ciphertext` sealed with `aad`; `None` when it does not authenticate.
pub(crate) fn open(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    key.cipher()
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// Argon2id cost parameters, stored in the superblock with the salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KdfParams {
    /// Memory in KiB (at least 8 per lane).
    pub m_cost: u32,
    /// Passes over the memory (at least 1).
    pub t_cost: u32,
    /// Lanes (at least 1).
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommendation.
    fn default() -> Self {
        Self {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Parameters with `m_cost` KiB, `t_cost` passes and `p_cost` lanes.
    pub fn new(m_cost: u32, t_cost: u32, p_cost: u32) -> Self {
        Self {
            m_cost,
            t_cost,
            p_cost,
        }
    }

    /// The cheapest parameters Argon2id takes (8 KiB, 1 pass): for tests only, never for
    /// a real passphrase.
    pub fn insecure_for_tests() -> Self {
        Self::new(8, 1, 1)
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, VaultError> {
        let params = argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KEY_LEN))
            .map_err(|e| VaultError::Config(format!("Argon2id parameters {self:?}: {e}")))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// Checks the parameters without deriving anything.
    pub(crate) fn validate(&self) -> Result<(), VaultError> {
        self.argon2().map(|_| ())
    }

    /// The key-encryption key of `passphrase` with `salt`.
    pub(crate) fn derive(
        &self,
        passphrase: &[u8],
        salt: &[u8; SALT_LEN],
    ) -> Result<SecretKey, VaultError> {
        let mut key = [0u8; KEY_LEN];
        self.argon2()?
            .hash_password_into(passphrase, salt, &mut key)
            .map_err(|e| VaultError::Config(format!("Argon2id: {e}")))?;
        let secret = SecretKey(key);
        key.zeroize();
        Ok(secret)
    }
}

/// A chunk's id: the keyed BLAKE3 hash of its plaintext, 64 hex digits in keys and inodes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChunkId([u8; 32]);

impl ChunkId {
    /// Parses 64 lowercase hex digits.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(Self(id))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({self})")
    }
}

impl Serialize for ChunkId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ChunkId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("a chunk id is 64 hex digits"))
    }
}

/// The keys derived from the master key.
#[derive(Debug)]
pub(crate) struct Keys {
    /// Seals chunks.
    pub(crate) data: SecretKey,
    /// Seals inodes.
    pub(crate) meta: SecretKey,
    /// Names chunks.
    chunk_id: SecretKey,
}

impl Keys {
    /// The subkeys of `master`.
    pub(crate) fn derive(master: &SecretKey) -> Self {
        Self {
            data: SecretKey(blake3::derive_key(DATA_CONTEXT, master.as_bytes())),
            meta: SecretKey(blake3::derive_key(META_CONTEXT, master.as_bytes())),
            chunk_id: SecretKey(blake3::derive_key(CHUNK_ID_CONTEXT, master.as_bytes())),
        }
    }

    /// The id of a chunk with this plaintext.
    pub(crate) fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.chunk_id.as_bytes(), plaintext).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_needs_the_same_key_and_aad() {
        let key = SecretKey::random();
        let nonce = random_nonce();
        let sealed = seal(&key, &nonce, b"aad", b"secret words");
        assert_eq!(sealed.len(), b"secret words".len() + TAG_LEN);
        assert_eq!(
            open(&key, &nonce, b"aad", &sealed).as_deref(),
            Some(&b"secret words"[..])
        );
        assert_eq!(open(&key, &nonce, b"other", &sealed), None);
        assert_eq!(open(&SecretKey::random(), &nonce, b"aad", &sealed), None);
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert_eq!(open(&key, &nonce, b"aad", &flipped), None);
    }

    #[test]
    fn kdf_is_deterministic_per_salt() {
        let params = KdfParams::insecure_for_tests();
        let salt = [7u8; SALT_LEN];
        let a = params.derive(b"pass", &salt).unwrap();
        let b = params.derive(b"pass", &salt).unwrap();
        let c = params.derive(b"pass", &[8u8; SALT_LEN]).unwrap();
        let d = params.derive(b"pasS", &salt).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), c.as_bytes());
        assert_ne!(a.as_bytes(), d.as_bytes());
        assert!(KdfParams::new(1, 0, 1).validate().is_err());
    }

    #[test]
    fn chunk_ids_are_keyed_and_round_trip_as_hex() {
        let master = SecretKey::random();
        let keys = Keys::derive(&master);
        let id = keys.chunk_id(b"content");
        assert_eq!(id, keys.chunk_id(b"content"));
        assert_ne!(id, keys.chunk_id(b"content2"));
        assert_ne!(id, Keys::derive(&SecretKey::random()).chunk_id(b"content"));
        // Not the unkeyed hash: the name says nothing to whoever lacks the key.
        assert_ne!(id.0, *blake3::hash(b"content").as_bytes());
        assert_eq!(ChunkId::parse(&id.to_string()), Some(id));
        assert_eq!(ChunkId::parse("abc"), None);
        assert_eq!(ChunkId::parse(&id.to_string().to_uppercase()), None);
        assert_ne!(keys.data.as_bytes(), keys.meta.as_bytes());
    }
}
