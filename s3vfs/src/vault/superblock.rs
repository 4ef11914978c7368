//! The superblock (FORMAT.md, "Superblock"): format version, Argon2id parameters and salt,
//! chunking parameters, and the master key wrapped under the passphrase's key.
//!
//! Every field is bound into the AAD of the wrapped key, so a superblock that opens is one
//! the passphrase's holder wrote. A passphrase change rewrites this object only, with
//! If-Match, so two changes at once cannot both win.

use super::chunker::ChunkParams;
use super::crypto::{self, KdfParams, Keys, SecretKey, KEY_LEN, NONCE_LEN, SALT_LEN};
use super::error::VaultError;
use super::io::{Location, Put};
use super::FORMAT_VERSION;
use crate::store::{ETag, WriteCondition};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The superblock's key, relative to the prefix.
pub(crate) const NAME: &str = "s3vfs-vault";
/// The largest superblock read, in bytes.
const MAX_SIZE: u64 = 64 * 1024;
/// The `format` field.
const FORMAT: &str = "s3vfs-vault";
/// The `cipher` field.
const CIPHER: &str = "xchacha20poly1305";
/// The `kdf.algorithm` field.
const KDF_ALGORITHM: &str = "argon2id";
/// Argon2 version 0x13.
const KDF_VERSION: u32 = 0x13;

/// The superblock as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Doc {
    format: String,
    version: u32,
    cipher: String,
    kdf: KdfDoc,
    chunking: ChunkParams,
    wrapped_key: WrappedKey,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct KdfDoc {
    algorithm: String,
    version: u32,
    #[serde(flatten)]
    params: KdfParams,
    salt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WrappedKey {
    nonce: String,
    ciphertext: String,
}

/// An opened vault: its keys and chunking parameters.
#[derive(Debug)]
pub(crate) struct Unlocked {
    /// The keys derived from the master key.
    pub(crate) keys: Keys,
    /// How writers cut data.
    pub(crate) chunking: ChunkParams,
}

impl Doc {
    /// A superblock wrapping `master` under `passphrase`, with a fresh salt.
    fn wrap(
        master: &SecretKey,
        passphrase: &[u8],
        kdf: KdfParams,
        chunking: ChunkParams,
    ) -> Result<Self, VaultError> {
        let salt = crypto::random_salt();
        let kek = kdf.derive(passphrase, &salt)?;
        let mut doc = Doc {
            format: FORMAT.to_owned(),
            version: FORMAT_VERSION,
            cipher: CIPHER.to_owned(),
            kdf: KdfDoc {
                algorithm: KDF_ALGORITHM.to_owned(),
                version: KDF_VERSION,
                params: kdf,
                salt: hex::encode(salt),
            },
            chunking,
            wrapped_key: WrappedKey {
                nonce: String::new(),
                ciphertext: String::new(),
            },
        };
        let nonce = crypto::random_nonce();
        let sealed = crypto::seal(&kek, &nonce, &doc.aad(&salt), master.as_bytes());
        doc.wrapped_key = WrappedKey {
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(sealed),
        };
        Ok(doc)
    }

    /// Checks what this release can read, then unwraps the master key.
    fn unwrap_key(&self, passphrase: &[u8]) -> Result<SecretKey, VaultError> {
        let bad = |reason: &str| VaultError::corrupt(NAME, reason);
        if self.format != FORMAT {
            return Err(bad("not a vault superblock"));
        }
        if self.version != FORMAT_VERSION {
            return Err(VaultError::UnsupportedVersion(self.version));
        }
        if self.cipher != CIPHER
            || self.kdf.algorithm != KDF_ALGORITHM
            || self.kdf.version != KDF_VERSION
        {
            return Err(bad("unknown cipher or key derivation"));
        }
        self.chunking.validate()?;
        let mut salt = [0u8; SALT_LEN];
        hex::decode_to_slice(&self.kdf.salt, &mut salt).map_err(|_| bad("bad salt"))?;
        let mut nonce = [0u8; NONCE_LEN];
        hex::decode_to_slice(&self.wrapped_key.nonce, &mut nonce).map_err(|_| bad("bad nonce"))?;
        let sealed = hex::decode(&self.wrapped_key.ciphertext).map_err(|_| bad("bad key"))?;
        let kek = self.kdf.params.derive(passphrase, &salt)?;
        let mut plain =
            crypto::open(&kek, &nonce, &self.aad(&salt), &sealed).ok_or(VaultError::Unlock)?;
        let master = <[u8; KEY_LEN]>::try_from(plain.as_slice())
            .map(SecretKey::from_bytes)
            .map_err(|_| bad("wrapped key of the wrong length"));
        zeroize::Zeroize::zeroize(&mut plain);
        master
    }

    /// The AAD of the wrapped key: every other field (FORMAT.md, "Superblock AAD").
    fn aad(&self, salt: &[u8; SALT_LEN]) -> Vec<u8> {
        let mut aad = b"s3vfs-vault superblock\0".to_vec();
        for n in [
            self.version,
            self.kdf.version,
            self.kdf.params.m_cost,
            self.kdf.params.t_cost,
            self.kdf.params.p_cost,
        ] {
            aad.extend_from_slice(&n.to_le_bytes());
        }
        aad.extend_from_slice(salt);
        for n in [self.chunking.min, self.chunking.avg, self.chunking.max] {
            aad.extend_from_slice(&n.to_le_bytes());
        }
        aad
    }

    fn to_bytes(&self) -> Bytes {
        // A struct of strings and numbers always serializes.
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}

/// Reads the superblock and its ETag.
async fn read(location: &Location) -> Result<(Doc, ETag), VaultError> {
    let (body, etag) = location
        .get(NAME, MAX_SIZE)
        .await?
        .ok_or_else(|| VaultError::NotAVault(location.prefix().to_owned()))?;
    let doc: Doc = serde_json::from_slice(&body)
        .map_err(|e| VaultError::corrupt(NAME, format!("unreadable superblock: {e}")))?;
    let etag = etag.ok_or_else(|| VaultError::corrupt(NAME, "the store gave no ETag"))?;
    Ok((doc, etag))
}

/// Writes a new superblock with a fresh master key (If-None-Match: an existing vault is
/// [`VaultError::AlreadyExists`]).
pub(crate) async fn create(
    location: &Location,
    passphrase: &[u8],
    kdf: KdfParams,
    chunking: ChunkParams,
) -> Result<Unlocked, VaultError> {
    chunking.validate()?;
    let master = SecretKey::random();
    let doc = Doc::wrap(&master, passphrase, kdf, chunking)?;
    match location
        .put(NAME, doc.to_bytes(), WriteCondition::IfNoneMatch)
        .await?
    {
        Put::Done(_) => Ok(Unlocked {
            keys: Keys::derive(&master),
            chunking,
        }),
        Put::ConditionFailed => Err(VaultError::AlreadyExists(location.prefix().to_owned())),
    }
}

/// Opens the vault's superblock with `passphrase`.
pub(crate) async fn unlock(location: &Location, passphrase: &[u8]) -> Result<Unlocked, VaultError> {
    let (doc, _) = read(location).await?;
    let master = doc.unwrap_key(passphrase)?;
    Ok(Unlocked {
        keys: Keys::derive(&master),
        chunking: doc.chunking,
    })
}

/// The key derivation costs the superblock's passphrase key was made with (they are
/// stored in the clear, with the salt: no passphrase needed).
pub(crate) async fn kdf_params(location: &Location) -> Result<KdfParams, VaultError> {
    Ok(read(location).await?.0.kdf.params)
}

/// Wraps the master key under `new` (with `kdf` and a fresh salt) instead of `old`:
/// rewrites the superblock only, If-Match the version read. Every other object stays as
/// it is, readable with the new passphrase only.
pub(crate) async fn change_passphrase(
    location: &Location,
    old: &[u8],
    new: &[u8],
    kdf: KdfParams,
) -> Result<(), VaultError> {
    let (doc, etag) = read(location).await?;
    let master = doc.unwrap_key(old)?;
    let rewrapped = Doc::wrap(&master, new, kdf, doc.chunking)?;
    match location
        .put(NAME, rewrapped.to_bytes(), WriteCondition::IfMatch(etag))
        .await?
    {
        Put::Done(_) => Ok(()),
        Put::ConditionFailed => Err(VaultError::Conflict(location.key(NAME).into_string())),
    }
}
