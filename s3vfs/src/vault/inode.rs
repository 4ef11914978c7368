//! Inodes as stored (FORMAT.md, "Inode"): attributes, and a file's chunk list, a
//! directory's entries or a symlink's target; their JSON form and the checks every inode
//! read passes before the file system believes it.

use super::crypto::ChunkId;
use crate::namespace::FileName;
use crate::vfs::{FileAttr, FileKind, Ino};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The inode schema version this code writes and reads.
pub(crate) const INODE_VERSION: u32 = 1;
/// The largest chunk a reference may name, in bytes (FastCDC's largest maximum).
pub(crate) const MAX_CHUNK_LEN: u32 = 16 * 1024 * 1024;
/// The largest file, in bytes.
pub(crate) const MAX_FILE_SIZE: u64 = 1 << 44;
/// The largest extended attribute value, in bytes (Linux's `XATTR_SIZE_MAX`).
pub(crate) const MAX_XATTR_VALUE: usize = 64 * 1024;
/// The most bytes of names and values of extended attributes an inode holds.
pub(crate) const MAX_XATTRS_TOTAL: usize = 256 * 1024;
/// The longest symlink target, in bytes (`PATH_MAX`).
pub(crate) const MAX_TARGET_LEN: usize = 4096;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
}

impl Kind {
    pub(crate) fn file_kind(self) -> FileKind {
        match self {
            Kind::File => FileKind::File,
            Kind::Dir => FileKind::Directory,
            Kind::Symlink => FileKind::Symlink,
            Kind::Fifo => FileKind::Fifo,
            Kind::Char => FileKind::CharDevice,
            Kind::Block => FileKind::BlockDevice,
            Kind::Socket => FileKind::Socket,
        }
    }

    pub(crate) fn of(kind: FileKind) -> Self {
        match kind {
            FileKind::File => Kind::File,
            FileKind::Directory => Kind::Dir,
            FileKind::Symlink => Kind::Symlink,
            FileKind::Fifo => Kind::Fifo,
            FileKind::CharDevice => Kind::Char,
            FileKind::BlockDevice => Kind::Block,
            FileKind::Socket => Kind::Socket,
        }
    }
}

/// Where a chunk's bytes sit in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkRef {
    /// Offset in the file.
    pub(crate) off: u64,
    /// Length in bytes (1 to [`MAX_CHUNK_LEN`]).
    pub(crate) len: u32,
    /// The chunk.
    pub(crate) id: ChunkId,
}

impl ChunkRef {
    /// One past the last byte it covers.
    pub(crate) fn end(&self) -> u64 {
        self.off + u64::from(self.len)
    }
}

/// A directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The child's inode number.
    pub(crate) ino: u64,
    /// The child's kind.
    pub(crate) kind: Kind,
}

/// Bytes stored as hex in JSON.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// An xattr value, hex in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Value(#[serde(with = "hex_bytes")] pub(crate) Vec<u8>);

/// A time as stored: seconds and nanoseconds since the epoch.
pub(crate) type Stamp = (u64, u32);

/// The stamp of `time` (times before the epoch are the epoch).
pub(crate) fn stamp(time: SystemTime) -> Stamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    (since.as_secs(), since.subsec_nanos())
}

fn time_of(stamp: Stamp) -> SystemTime {
    UNIX_EPOCH + Duration::new(stamp.0, stamp.1.min(999_999_999))
}

/// One inode, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Inode {
    pub(crate) v: u32,
    pub(crate) ino: u64,
    pub(crate) kind: Kind,
    pub(crate) perm: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
    #[serde(default)]
    pub(crate) rdev: u32,
    pub(crate) size: u64,
    pub(crate) mtime: Stamp,
    pub(crate) ctime: Stamp,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) xattrs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) chunks: Vec<ChunkRef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) entries: BTreeMap<String, Entry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<Value>,
}

impl Inode {
    /// The chunks of a file holding bytes of `[start, end)`, in order.
    pub(crate) fn chunks_in(&self, start: u64, end: u64) -> &[ChunkRef] {
        let first = self.chunks.partition_point(|c| c.end() <= start);
        let count = self.chunks[first..].partition_point(|c| c.off < end);
        &self.chunks[first..first + count]
    }

    /// A new inode of `kind`, empty, with one link, modified now.
    pub(crate) fn new(ino: u64, kind: Kind, perm: u32, uid: u32, gid: u32) -> Self {
        let now = stamp(SystemTime::now());
        Self {
            v: INODE_VERSION,
            ino,
            kind,
            perm: perm & 0o7777,
            uid,
            gid,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            size: 0,
            mtime: now,
            ctime: now,
            xattrs: BTreeMap::new(),
            chunks: Vec::new(),
            entries: BTreeMap::new(),
            target: None,
        }
    }

    /// Marks a change now (`mtime` and `ctime`).
    pub(crate) fn touch(&mut self) {
        let now = stamp(SystemTime::now());
        self.mtime = now;
        self.ctime = now;
    }

    /// The attributes `stat` shows.
    pub(crate) fn attr(&self, blksize: u32) -> FileAttr {
        FileAttr {
            ino: Ino(self.ino),
            kind: self.kind.file_kind(),
            size: if self.kind == Kind::Dir {
                self.entries.len() as u64
            } else {
                self.size
            },
            mtime: time_of(self.mtime),
            perm: (self.perm & 0o7777) as u16,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            blksize,
            rdev: self.rdev,
        }
    }

    /// Every rule of FORMAT.md an inode read from `ino`'s key must keep; the first one
    /// broken.
    pub(crate) fn check(&self, ino: u64) -> Result<(), String> {
        if self.v != INODE_VERSION {
            return Err(format!("inode version {} is not supported", self.v));
        }
        if self.ino != ino {
            return Err(format!("holds inode {} instead", self.ino));
        }
        if self.perm > 0o7777 {
            return Err("mode has more than permission bits".to_owned());
        }
        if self.size > MAX_FILE_SIZE {
            return Err(format!("size {} over the limit", self.size));
        }
        let mut end = 0u64;
        for chunk in &self.chunks {
            if chunk.len == 0 || chunk.len > MAX_CHUNK_LEN || chunk.off < end {
                return Err(format!(
                    "chunk at {} is empty, too long or overlaps",
                    chunk.off
                ));
            }
            end = chunk.end();
        }
        if end > self.size {
            return Err("chunks reach past the size".to_owned());
        }
        if self.kind != Kind::File && !self.chunks.is_empty() {
            return Err("chunks in an inode that is not a file".to_owned());
        }
        if self.kind != Kind::Dir && !self.entries.is_empty() {
            return Err("entries in an inode that is not a directory".to_owned());
        }
        if let Some(bad) = self.entries.keys().find(|n| FileName::check(n).is_err()) {
            return Err(format!("invalid entry name {bad:?}"));
        }
        if self
            .entries
            .values()
            .any(|e| e.ino <= 1 || e.ino == self.ino)
        {
            return Err("entry naming the root or itself".to_owned());
        }
        match (&self.target, self.kind) {
            (Some(t), Kind::Symlink) if t.0.len() <= MAX_TARGET_LEN => {}
            (None, kind) if kind != Kind::Symlink => {}
            _ => return Err("symlink without a target, or a target elsewhere".to_owned()),
        }
        let xattr_bytes: usize = self.xattrs.iter().map(|(n, v)| n.len() + v.0.len()).sum();
        if xattr_bytes > MAX_XATTRS_TOTAL {
            return Err("extended attributes over their limit".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::crypto::{Keys, SecretKey};

    fn file_with_chunks() -> Inode {
        let keys = Keys::derive(&SecretKey::random());
        let mut inode = Inode::new(42, Kind::File, 0o640, 1000, 100);
        inode.size = 300;
        inode.chunks = vec![
            ChunkRef {
                off: 0,
                len: 100,
                id: keys.chunk_id(b"a"),
            },
            ChunkRef {
                off: 200,
                len: 100,
                id: keys.chunk_id(b"b"),
            },
        ];
        inode
            .xattrs
            .insert("user.x".to_owned(), Value(vec![0, 255, 7]));
        inode
    }

    #[test]
    fn json_round_trip() {
        let inode = file_with_chunks();
        let json = serde_json::to_vec(&inode).unwrap();
        let back: Inode = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, inode);
        back.check(42).unwrap();
        let attr = back.attr(4096);
        assert_eq!(
            (attr.size, attr.perm, attr.uid, attr.gid),
            (300, 0o640, 1000, 100)
        );
    }

    #[test]
    fn impossible_inodes_are_refused() {
        let good = file_with_chunks();
        assert!(good.check(43).is_err(), "another inode's key");
        let mut overlap = good.clone();
        overlap.chunks[1].off = 50;
        assert!(overlap.check(42).is_err());
        let mut past_end = good.clone();
        past_end.size = 250;
        assert!(past_end.check(42).is_err());
        let mut dir = Inode::new(42, Kind::Dir, 0o755, 0, 0);
        dir.entries.insert(
            "a/b".to_owned(),
            Entry {
                ino: 7,
                kind: Kind::File,
            },
        );
        assert!(dir.check(42).is_err());
        let mut newer = good;
        newer.v = 2;
        assert!(newer.check(42).is_err());
    }
}
