//! POSIX attributes stored as object metadata, in the s3fs convention so that objects
//! written by s3fs show their modes here and ours show in s3fs:
//! `x-amz-meta-mode` (decimal `st_mode`, file-type bits included), `x-amz-meta-uid`,
//! `x-amz-meta-gid`, `x-amz-meta-mtime` (decimal seconds since the epoch, fraction
//! allowed). A symbolic link is an object whose mode has the `S_IFLNK` type and whose body
//! is the target. A fifo, device or socket is an empty object whose mode has its type
//! (`S_IFIFO`, `S_IFCHR`, `S_IFBLK`, `S_IFSOCK`), as s3fs's `mknod` makes them; a device's
//! number is in `x-amz-meta-rdev` (decimal `st_rdev`), a header of ours: s3fs does not
//! store device numbers, so devices it made show 0.
//! Objects without these headers get the mount's defaults.

use crate::vfs::FileKind;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// User-metadata name of the mode (`x-amz-meta-mode`).
pub(crate) const META_MODE: &str = "mode";
/// User-metadata name of the owner.
pub(crate) const META_UID: &str = "uid";
/// User-metadata name of the group.
pub(crate) const META_GID: &str = "gid";
/// User-metadata name of the modification time.
pub(crate) const META_MTIME: &str = "mtime";
/// User-metadata name of a device's number (`x-amz-meta-rdev`).
pub(crate) const META_RDEV: &str = "rdev";

/// File-type bits of a mode.
pub(crate) const S_IFMT: u32 = 0o170000;
/// Type bits of a symbolic link.
pub(crate) const S_IFLNK: u32 = 0o120000;
/// Type bits of a regular file.
pub(crate) const S_IFREG: u32 = 0o100000;
/// Type bits of a directory.
pub(crate) const S_IFDIR: u32 = 0o040000;
/// Type bits of a named pipe.
pub(crate) const S_IFIFO: u32 = 0o010000;
/// Type bits of a character device.
pub(crate) const S_IFCHR: u32 = 0o020000;
/// Type bits of a block device.
pub(crate) const S_IFBLK: u32 = 0o060000;
/// Type bits of a unix domain socket.
pub(crate) const S_IFSOCK: u32 = 0o140000;

/// Longest symbolic-link target in bytes (PATH_MAX less the NUL): objects at least this
/// large cannot be symbolic links.
pub(crate) const MAX_SYMLINK_TARGET: u64 = 4095;

/// Attributes found in (or to be written to) an object's metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PosixMeta {
    /// Full `st_mode` (type and permission bits).
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Modification time.
    pub mtime: Option<SystemTime>,
    /// Device number (`st_rdev`) of a character or block device.
    pub rdev: Option<u32>,
}

impl PosixMeta {
    /// Reads the s3fs headers from user metadata; malformed values are ignored.
    pub(crate) fn from_user_metadata(metadata: &BTreeMap<String, String>) -> Self {
        let number = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let mtime = metadata
            .get(META_MTIME)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| UNIX_EPOCH + Duration::from_secs_f64(s));
        Self {
            mode: number(META_MODE),
            uid: number(META_UID),
            gid: number(META_GID),
            mtime,
            rdev: number(META_RDEV),
        }
    }

    /// Writes the set attributes into user metadata (the others are left as they are).
    pub(crate) fn write_to(&self, metadata: &mut BTreeMap<String, String>) {
        if let Some(mode) = self.mode {
            metadata.insert(META_MODE.to_owned(), mode.to_string());
        }
        if let Some(uid) = self.uid {
            metadata.insert(META_UID.to_owned(), uid.to_string());
        }
        if let Some(gid) = self.gid {
            metadata.insert(META_GID.to_owned(), gid.to_string());
        }
        if let Some(mtime) = self.mtime {
            let secs = mtime
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            metadata.insert(META_MTIME.to_owned(), secs.to_string());
        }
        if let Some(rdev) = self.rdev {
            metadata.insert(META_RDEV.to_owned(), rdev.to_string());
        }
    }

    /// What the mode says the object is, if it says.
    pub(crate) fn kind(&self) -> Option<FileKind> {
        kind_of_mode(self.mode?)
    }

    /// Permission bits, if a mode is set.
    pub(crate) fn perm(&self) -> Option<u16> {
        self.mode.map(|m| (m & 0o7777) as u16)
    }
}

/// Whether extended attribute `name` can exist here: only the `user.` namespace is
/// stored (or shown read-only); any other name (`security.selinux`,
/// `system.posix_acl_access`, which `ls -l` asks for every entry) has no value.
pub fn is_user_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.")
}

/// The kind the type bits of `mode` name, if they name one.
pub(crate) fn kind_of_mode(mode: u32) -> Option<FileKind> {
    match mode & S_IFMT {
        S_IFLNK => Some(FileKind::Symlink),
        S_IFDIR => Some(FileKind::Directory),
        S_IFREG => Some(FileKind::File),
        S_IFIFO => Some(FileKind::Fifo),
        S_IFCHR => Some(FileKind::CharDevice),
        S_IFBLK => Some(FileKind::BlockDevice),
        S_IFSOCK => Some(FileKind::Socket),
        _ => None,
    }
}

/// The `st_mode` type bits of `kind`.
pub(crate) fn type_bits(kind: FileKind) -> u32 {
    match kind {
        FileKind::File => S_IFREG,
        FileKind::Directory => S_IFDIR,
        FileKind::Symlink => S_IFLNK,
        FileKind::Fifo => S_IFIFO,
        FileKind::CharDevice => S_IFCHR,
        FileKind::BlockDevice => S_IFBLK,
        FileKind::Socket => S_IFSOCK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fs_headers_round_trip() {
        let meta = PosixMeta {
            mode: Some(S_IFREG | 0o640),
            uid: Some(1000),
            gid: Some(100),
            mtime: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            rdev: None,
        };
        let mut headers = BTreeMap::new();
        meta.write_to(&mut headers);
        assert_eq!(headers["mode"], "33184");
        assert!(!headers.contains_key("rdev"));
        assert_eq!(PosixMeta::from_user_metadata(&headers), meta);
        assert_eq!(meta.kind(), Some(FileKind::File));
        assert_eq!(meta.perm(), Some(0o640));
    }

    #[test]
    fn special_files_and_their_device_numbers() {
        // What s3fs writes for `mknod p` (S_IFIFO | 0644) and `mknod c 1 3`.
        let fifo = PosixMeta::from_user_metadata(&BTreeMap::from([(
            "mode".to_owned(),
            "4516".to_owned(),
        )]));
        assert_eq!(
            (fifo.kind(), fifo.perm()),
            (Some(FileKind::Fifo), Some(0o644))
        );
        let null = PosixMeta {
            mode: Some(S_IFCHR | 0o666),
            rdev: Some((1 << 8) | 3),
            ..PosixMeta::default()
        };
        let mut headers = BTreeMap::new();
        null.write_to(&mut headers);
        assert_eq!(
            (headers["mode"].as_str(), headers["rdev"].as_str()),
            ("8630", "259")
        );
        assert_eq!(PosixMeta::from_user_metadata(&headers), null);
        for kind in [
            FileKind::File,
            FileKind::Directory,
            FileKind::Symlink,
            FileKind::Fifo,
            FileKind::CharDevice,
            FileKind::BlockDevice,
            FileKind::Socket,
        ] {
            assert_eq!(kind_of_mode(type_bits(kind) | 0o600), Some(kind));
        }
        assert_eq!(kind_of_mode(0o644), None);
    }

    #[test]
    fn symlinks_and_garbage() {
        let mut headers = BTreeMap::new();
        headers.insert("mode".to_owned(), "41471".to_owned());
        headers.insert("uid".to_owned(), "x".to_owned());
        headers.insert("mtime".to_owned(), "1700000000.5".to_owned());
        let meta = PosixMeta::from_user_metadata(&headers);
        assert_eq!(meta.kind(), Some(FileKind::Symlink));
        assert_eq!(meta.uid, None);
        assert!(meta.mtime.is_some());
    }
}
