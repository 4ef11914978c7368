//! The mapping between file paths and object keys.
//!
//! A file at path `a/b/c` under mount prefix `p/` is the object `p/a/b/c`; a directory
//! `a/b` is the common prefix `p/a/b/` (with or without a zero-byte `p/a/b/` marker
//! object). Names are validated once, here, into [`FileName`]; a key whose components
//! cannot all be file names (empty, `.`, `..`, over 255 bytes, NUL) has no path and is
//! hidden. Because every key is built as `prefix + validated components`, no path can
//! address a key outside the prefix.

use crate::error::{VfsError, VfsResult};
use crate::store::ObjectKey;
use std::ffi::OsStr;
use std::fmt;
use std::sync::Arc;

/// Longest file name in bytes, as on Linux.
pub const MAX_NAME_LEN: usize = 255;
/// Longest S3 key in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// One valid path component: non-empty, not `.` or `..`, no `/` or NUL, at most
/// [`MAX_NAME_LEN`] bytes of UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

/// Why a string is not a [`FileName`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty (from `//` in a key).
    Empty,
    /// `.` or `..`.
    Dots,
    /// Contains `/` or NUL.
    BadCharacter,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
    /// Not UTF-8 (S3 keys must be).
    NotUtf8,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty path component",
            Self::Dots => "`.` or `..` component",
            Self::BadCharacter => "contains `/` or NUL",
            Self::TooLong => "component longer than 255 bytes",
            Self::NotUtf8 => "not UTF-8",
        })
    }
}

impl FileName {
    /// Checks `name`.
    pub fn check(name: &str) -> Result<Self, NameProblem> {
        if name.is_empty() {
            Err(NameProblem::Empty)
        } else if name == "." || name == ".." {
            Err(NameProblem::Dots)
        } else if name.contains(['/', '\0']) {
            Err(NameProblem::BadCharacter)
        } else if name.len() > MAX_NAME_LEN {
            Err(NameProblem::TooLong)
        } else {
            Ok(Self(name.to_owned()))
        }
    }

    /// Validates a name coming from a caller (the kernel or a library user).
    pub fn from_os(name: &OsStr) -> VfsResult<Self> {
        let text = name
            .to_str()
            .ok_or_else(|| VfsError::InvalidName(name.to_string_lossy().into_owned()))?;
        Self::check(text).map_err(|problem| match problem {
            NameProblem::TooLong => VfsError::NameTooLong(text.to_owned()),
            _ => VfsError::InvalidName(text.to_owned()),
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path inside the mount: valid components joined by `/`; the root is empty.
///
/// Shared, not copied, when cloned: the inode table, the metadata caches and the open
/// files each hold the paths they know, often the same one, so a walk of millions of
/// names keeps each name once.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FsPath(Arc<str>);

impl FsPath {
    /// The root.
    pub fn root() -> Self {
        Self(Arc::from(""))
    }

    /// Parses a `/`-separated path such as `/a/b` or `a/b/`; `.` components are skipped,
    /// `..` and invalid components are refused.
    pub fn parse(path: &str) -> VfsResult<Self> {
        let mut out = Self::root();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let name = FileName::from_os(OsStr::new(part))?;
            out = out.join(&name);
        }
        Ok(out)
    }

    /// A path built from a valid path by replacing a valid prefix (renames).
    pub(crate) fn from_trusted(path: String) -> Self {
        Self(Arc::from(path))
    }

    /// The child `name` of this path.
    pub fn join(&self, name: &FileName) -> Self {
        if self.0.is_empty() {
            Self(Arc::from(name.0.as_str()))
        } else {
            Self(Arc::from(format!("{}/{}", self.0, name.0)))
        }
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as a string (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this path is `dir` itself or lies below it.
    pub fn is_within(&self, dir: &FsPath) -> bool {
        dir.is_root()
            || self == dir
            || self
                .0
                .strip_prefix(dir.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The directory holding this path (the root for a top-level name, and for the root).
    pub fn parent(&self) -> FsPath {
        match self.0.rsplit_once('/') {
            // Every prefix of a path at a `/` is itself a path of valid names.
            Some((parent, _)) => FsPath(Arc::from(parent)),
            None => FsPath::root(),
        }
    }

    /// The last component, if not the root.
    pub fn file_name(&self) -> Option<&str> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.rsplit('/').next().unwrap_or(&self.0))
        }
    }
}

impl fmt::Debug for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"/{}\"", self.0)
    }
}

impl fmt::Display for FsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

/// Key layout of one mount: the prefix and the rules that turn paths into keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
}

impl Namespace {
    /// A namespace rooted at `prefix` (`""` or ending with `/`).
    pub fn new(prefix: &str) -> Self {
        debug_assert!(prefix.is_empty() || prefix.ends_with('/'));
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The mount prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the object holding the file at `path`; refuses keys over 1024 bytes.
    pub fn file_key(&self, path: &FsPath) -> VfsResult<ObjectKey> {
        let key = format!("{}{}", self.prefix, path.as_str());
        if key.len() > MAX_KEY_LEN {
            return Err(VfsError::NameTooLong(path.to_string()));
        }
        Ok(ObjectKey::new(key))
    }

    /// The LIST prefix of the directory at `path` (ends with `/`, or is the mount prefix).
    pub fn dir_prefix(&self, path: &FsPath) -> String {
        if path.is_root() {
            self.prefix.clone()
        } else {
            format!("{}{}/", self.prefix, path.as_str())
        }
    }

    /// The name of a listed key or common prefix relative to directory prefix
    /// `dir_prefix`: `Ok(None)` for the directory's own marker object, `Err` when the name
    /// cannot be a file name.
    pub fn child_name<'k>(
        dir_prefix: &str,
        listed: &'k str,
    ) -> Result<Option<&'k str>, NameProblem> {
        let rest = listed
            .strip_prefix(dir_prefix)
            .ok_or(NameProblem::BadCharacter)?;
        let name = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(None);
        }
        FileName::check(name)?;
        Ok(Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(FileName::check("a.txt").is_ok());
        assert!(FileName::check("...").is_ok());
        assert_eq!(FileName::check(""), Err(NameProblem::Empty));
        assert_eq!(FileName::check("."), Err(NameProblem::Dots));
        assert_eq!(FileName::check(".."), Err(NameProblem::Dots));
        assert_eq!(FileName::check("a/b"), Err(NameProblem::BadCharacter));
        assert_eq!(FileName::check("a\0b"), Err(NameProblem::BadCharacter));
        assert_eq!(FileName::check(&"x".repeat(256)), Err(NameProblem::TooLong));
        assert!(FileName::check(&"x".repeat(255)).is_ok());
        let long = std::ffi::OsString::from("y".repeat(300));
        assert!(matches!(
            FileName::from_os(&long),
            Err(VfsError::NameTooLong(_))
        ));
    }

    #[test]
    fn paths_cannot_escape_the_prefix() {
        assert!(FsPath::parse("/a/../b").is_err());
        assert_eq!(FsPath::parse("/a/./b/").unwrap().as_str(), "a/b");
        let ns = Namespace::new("data/");
        let path = FsPath::parse("x/y").unwrap();
        assert_eq!(ns.file_key(&path).unwrap().as_str(), "data/x/y");
        assert_eq!(ns.dir_prefix(&path), "data/x/y/");
        assert_eq!(ns.dir_prefix(&FsPath::root()), "data/");
    }

    #[test]
    fn listed_names_are_mapped() {
        assert_eq!(Namespace::child_name("d/", "d/a"), Ok(Some("a")));
        assert_eq!(Namespace::child_name("d/", "d/sub/"), Ok(Some("sub")));
        assert_eq!(Namespace::child_name("d/", "d/"), Ok(None));
        assert_eq!(Namespace::child_name("d/", "d//"), Err(NameProblem::Empty));
        assert_eq!(Namespace::child_name("d/", "d/../"), Err(NameProblem::Dots));
        assert_eq!(Namespace::child_name("", "top"), Ok(Some("top")));
    }

    #[test]
    fn keys_over_1024_bytes_are_refused() {
        let ns = Namespace::new("");
        let name = FileName::check(&"n".repeat(255)).unwrap();
        let mut path = FsPath::root();
        for _ in 0..5 {
            path = path.join(&name);
        }
        assert!(matches!(ns.file_key(&path), Err(VfsError::NameTooLong(_))));
    }
}
