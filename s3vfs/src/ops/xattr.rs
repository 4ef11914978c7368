//! Extended attributes, stored the way s3fs stores them so that both see the same ones.
//!
//! All of an object's attributes live in ONE user-metadata entry, `x-amz-meta-xattr`,
//! whose value is the URL-encoded JSON object `{"user.name":"<base64 value>",...}`
//! (s3fs's `urlEncode`: letters, digits and `/._-~` as they are, every other byte `%XX`;
//! values in standard base64 with padding). A file's attributes are on its object, a
//! directory's on its `dir/` marker (created when the first one is set). Writing one is a
//! metadata rewrite (see `metadata`); S3's 2 KB of user metadata bounds them all together:
//! beyond it `E2BIG`, never a truncated value.
//!
//! Only the `user.` namespace is stored (others: `ENOTSUP`, to set and to get: `ls -l` and
//! `cp -a` take that to mean the file system has none and stop asking for every file). Names
//! the s3fs format cannot hold (with `"`, `,` or `:`) are `ENOTSUP`. Three read-only
//! attributes describe the object: `user.s3.key`, `user.s3.etag` and
//! `user.s3.storage_class`; setting or removing them is `EPERM`. The mount root has none.

use super::Ops;
use crate::error::{VfsError, VfsResult};
use crate::namespace::FsPath;
use crate::store::{ObjectKey, ObjectMeta};
use crate::vfs::{FileKind, Ino};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ffi::OsStr;

/// User-metadata name of the extended attributes (`x-amz-meta-xattr`), as s3fs names it.
pub(super) const META_XATTR: &str = "xattr";
/// The only namespace stored.
const USER_PREFIX: &str = "user.";
/// Read-only: the object's key.
const XATTR_KEY: &str = "user.s3.key";
/// Read-only: the object's ETag (without quotes).
const XATTR_ETAG: &str = "user.s3.etag";
/// Read-only: the object's storage class.
const XATTR_STORAGE_CLASS: &str = "user.s3.storage_class";
const READ_ONLY: [&str; 3] = [XATTR_KEY, XATTR_ETAG, XATTR_STORAGE_CLASS];

/// Values as s3fs writes them: standard base64 with padding; read leniently (padding or
/// not, stray low bits), as s3fs's own decoder does.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn base64_encode(data: &[u8]) -> String {
    BASE64.encode(data)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// s3fs's `urlEncode`.
fn url_encode(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 3);
    for &b in raw {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn url_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The text between the first and last `"` (s3fs's `takeout_str_dquart`); `None` if a
/// quote remains inside. Text without quotes is taken as it is.
fn unquote(text: &str) -> Option<&str> {
    let Some(start) = text.find('"') else {
        return Some(text);
    };
    let rest = &text[start + 1..];
    let inner = &rest[..rest.rfind('"')?];
    (!inner.contains('"')).then_some(inner)
}

/// The attributes in an `x-amz-meta-xattr` value; malformed pairs are skipped, as s3fs
/// does.
pub(super) fn decode_xattrs(header: &str) -> BTreeMap<String, Vec<u8>> {
    let json = String::from_utf8_lossy(&url_decode(header)).into_owned();
    let mut attrs = BTreeMap::new();
    let (Some(start), Some(end)) = (json.find('{'), json.rfind('}')) else {
        tracing::warn!(value = %header, "x-amz-meta-xattr is not a JSON object; ignored");
        return attrs;
    };
    if end <= start {
        return attrs;
    }
    for pair in json[start + 1..end].split(',') {
        if pair.trim().is_empty() {
            continue;
        }
        let parsed = pair.split_once(':').and_then(|(name, value)| {
            let value = base64_decode(unquote(value)?.trim())?;
            Some((unquote(name)?.to_owned(), value))
        });
        match parsed {
            Some((name, value)) if !name.is_empty() => {
                attrs.insert(name, value);
            }
            _ => tracing::warn!(pair, "malformed pair in x-amz-meta-xattr; skipped"),
        }
    }
    attrs
}

/// The `x-amz-meta-xattr` value holding `attrs`.
pub(super) fn encode_xattrs(attrs: &BTreeMap<String, Vec<u8>>) -> String {
    let pairs: Vec<String> = attrs
        .iter()
        .map(|(name, value)| format!("\"{name}\":\"{}\"", base64_encode(value)))
        .collect();
    url_encode(format!("{{{}}}", pairs.join(",")).as_bytes())
}

/// A name that may be set or removed: `user.*`, storable, not read-only.
fn writable_name(name: &OsStr) -> VfsResult<String> {
    let Some(text) = name.to_str() else {
        return Err(VfsError::Unsupported(format!(
            "extended attribute name {name:?} is not UTF-8"
        )));
    };
    if !text.starts_with(USER_PREFIX) || text.len() == USER_PREFIX.len() {
        tracing::debug!(name = text, "only user.* extended attributes are stored");
        return Err(VfsError::Unsupported(format!(
            "extended attribute {text}: only the user. namespace is stored"
        )));
    }
    if READ_ONLY.contains(&text) {
        tracing::info!(name = text, "refused: a read-only extended attribute");
        return Err(VfsError::NotPermitted(format!(
            "extended attribute {text} describes the object and is read-only"
        )));
    }
    if text.contains(['"', ',', ':']) {
        tracing::info!(
            name = text,
            "refused: s3fs's xattr format cannot hold this name"
        );
        return Err(VfsError::Unsupported(format!(
            "extended attribute name {text} contains '\"', ',' or ':'"
        )));
    }
    Ok(text.to_owned())
}

/// The object an inode's attributes are read from.
struct XattrSource {
    key: ObjectKey,
    /// HEAD of the object (file) or marker (directory); `None` for a directory without
    /// marker.
    head: Option<ObjectMeta>,
}

impl XattrSource {
    fn stored(&self) -> BTreeMap<String, Vec<u8>> {
        self.head
            .as_ref()
            .and_then(|h| h.user_metadata.get(META_XATTR))
            .map(|v| decode_xattrs(v))
            .unwrap_or_default()
    }

    /// The value of read-only attribute `name`, if it is one and applies.
    fn informational(&self, name: &str) -> Option<String> {
        match name {
            XATTR_KEY => Some(self.key.as_str().to_owned()),
            XATTR_ETAG => self
                .head
                .as_ref()?
                .etag
                .as_ref()
                .map(|e| e.as_str().trim_matches('"').to_owned()),
            XATTR_STORAGE_CLASS => Some(
                self.head
                    .as_ref()?
                    .storage_class
                    .clone()
                    .unwrap_or_else(|| "STANDARD".to_owned()),
            ),
            _ => None,
        }
    }
}

impl Ops<'_> {
    /// The path and current kind of `ino` for an xattr call; `None` for the mount root.
    async fn xattr_target(&self, ino: Ino) -> VfsResult<Option<(FsPath, FileKind)>> {
        let (path, kind) = self.core.inode_path(ino)?;
        if path.is_root() {
            return Ok(None);
        }
        let stat = self.stat_path(&path).await?;
        if stat.kind != kind {
            return Err(VfsError::ObjectChanged(path.to_string()));
        }
        Ok(Some((path, kind)))
    }

    /// Reads the metadata of `path`: one HEAD of the object or the directory's marker.
    async fn xattr_source(&self, path: &FsPath, kind: FileKind) -> VfsResult<XattrSource> {
        if kind == FileKind::Directory {
            let key = self.core.marker_key(path)?;
            let head = self.core.head_optional(path, &key).await?;
            return Ok(XattrSource { key, head });
        }
        let key = self.core.ns.file_key(path)?;
        match self.core.head_optional(path, &key).await? {
            Some(head) => Ok(XattrSource {
                key,
                head: Some(head),
            }),
            None => {
                self.core.meta.put_missing(path);
                Err(VfsError::NotFound(path.to_string()))
            }
        }
    }

    /// The value of extended attribute `name` of `ino`.
    pub(crate) async fn getxattr(&self, ino: Ino, name: &OsStr) -> VfsResult<Bytes> {
        let missing = || VfsError::NoAttribute(name.to_string_lossy().into_owned());
        let Some(name) = name.to_str().filter(|n| n.starts_with(USER_PREFIX)) else {
            return Err(VfsError::Unsupported(format!(
                "extended attribute {} (only user.* ones are kept)",
                name.to_string_lossy()
            )));
        };
        let Some((path, kind)) = self.xattr_target(ino).await? else {
            return Err(missing());
        };
        let source = self.xattr_source(&path, kind).await?;
        if READ_ONLY.contains(&name) {
            return source
                .informational(name)
                .map(Bytes::from)
                .ok_or_else(missing);
        }
        source
            .stored()
            .remove(name)
            .map(Bytes::from)
            .ok_or_else(missing)
    }

    /// The names of the extended attributes of `ino`.
    pub(crate) async fn listxattr(&self, ino: Ino) -> VfsResult<Vec<String>> {
        let Some((path, kind)) = self.xattr_target(ino).await? else {
            return Ok(Vec::new());
        };
        let source = self.xattr_source(&path, kind).await?;
        let mut names: Vec<String> = source
            .stored()
            .into_keys()
            .filter(|n| n.starts_with(USER_PREFIX) && !READ_ONLY.contains(&n.as_str()))
            .collect();
        names.extend(
            READ_ONLY
                .iter()
                .filter(|n| source.informational(n).is_some())
                .map(|n| (*n).to_owned()),
        );
        Ok(names)
    }

    /// Sets extended attribute `name` of `ino` to `value`.
    pub(crate) async fn setxattr(&self, ino: Ino, name: &OsStr, value: Bytes) -> VfsResult<()> {
        self.core.check_writable("setxattr")?;
        let name = writable_name(name)?;
        let (path, _) = self.core.inode_path(ino)?;
        self.core.check_overwrite_allowed(&path)?;
        let Some((path, kind)) = self.xattr_target(ino).await? else {
            return Err(VfsError::NotPermitted(
                "the mount root has no object to hold extended attributes".into(),
            ));
        };
        self.rewrite_metadata(&path, kind, |metadata, _| {
            let mut attrs = metadata
                .get(META_XATTR)
                .map(|v| decode_xattrs(v))
                .unwrap_or_default();
            attrs.insert(name, value.to_vec());
            metadata.insert(META_XATTR.to_owned(), encode_xattrs(&attrs));
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Removes extended attribute `name` of `ino`.
    pub(crate) async fn removexattr(&self, ino: Ino, name: &OsStr) -> VfsResult<()> {
        self.core.check_writable("removexattr")?;
        let name = writable_name(name)?;
        let (path, _) = self.core.inode_path(ino)?;
        self.core.check_overwrite_allowed(&path)?;
        let Some((path, kind)) = self.xattr_target(ino).await? else {
            return Err(VfsError::NoAttribute(name));
        };
        self.rewrite_metadata(&path, kind, |metadata, _| {
            let mut attrs = metadata
                .get(META_XATTR)
                .map(|v| decode_xattrs(v))
                .unwrap_or_default();
            if attrs.remove(&name).is_none() {
                return Err(VfsError::NoAttribute(name));
            }
            if attrs.is_empty() {
                metadata.remove(META_XATTR);
            } else {
                metadata.insert(META_XATTR.to_owned(), encode_xattrs(&attrs));
            }
            Ok(())
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            b"fooba",
            b"foobar",
            &[0, 255, 128],
        ] {
            let text = base64_encode(data);
            assert_eq!(base64_decode(&text).unwrap(), data, "{text}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert!(base64_decode("a$b").is_none());
    }

    #[test]
    fn s3fs_format() {
        let mut attrs = BTreeMap::new();
        attrs.insert("user.a".to_owned(), b"hi".to_vec());
        attrs.insert("user.empty".to_owned(), Vec::new());
        let header = encode_xattrs(&attrs);
        // {"user.a":"aGk=","user.empty":""} URL-encoded as s3fs does.
        assert_eq!(
            header,
            "%7B%22user.a%22%3A%22aGk%3D%22%2C%22user.empty%22%3A%22%22%7D"
        );
        assert_eq!(decode_xattrs(&header), attrs);
        // What s3fs wrote, including a value whose base64 holds '/' (not encoded).
        let s3fs =
            "%7B%22user.mime%22%3A%22dGV4dC9wbGFpbg%3D%3D%22%2C%22user.x%22%3A%22//8%3D%22%7D";
        let parsed = decode_xattrs(s3fs);
        assert_eq!(parsed["user.mime"], b"text/plain");
        assert_eq!(parsed["user.x"], [0xff, 0xff]);
        // Garbage is skipped, not fatal.
        assert!(decode_xattrs("not json").is_empty());
        let partial = decode_xattrs(&url_encode(br#"{"user.ok":"b2s=",broken,"user.bad":"$$"}"#));
        assert_eq!(partial.len(), 1);
        assert_eq!(partial["user.ok"], b"ok");
    }

    #[test]
    fn names_are_checked() {
        assert!(writable_name(OsStr::new("user.x")).is_ok());
        assert!(matches!(
            writable_name(OsStr::new("security.selinux")),
            Err(VfsError::Unsupported(_))
        ));
        assert!(matches!(
            writable_name(OsStr::new("user.s3.etag")),
            Err(VfsError::NotPermitted(_))
        ));
        assert!(matches!(
            writable_name(OsStr::new("user.a:b")),
            Err(VfsError::Unsupported(_))
        ));
    }
}
