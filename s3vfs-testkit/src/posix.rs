//! A reference model of a strictly POSIX file system: what [`FsOp`]s do to a tree in
//! which every directory is made by `mkdir` (none is implied by a file below it) and each
//! operation answers the errno Linux would. Layouts that keep their own directories (the
//! vault) are compared with it; the plain layout, whose directories are key prefixes,
//! follows [`ModelFs`](crate::model::ModelFs) instead.
//!
//! Operations by another client of the bucket ([`FsOp::RemotePut`],
//! [`FsOp::RemoteDelete`]) and [`FsOp::Failing`] are outside it: they answer `EINVAL`.

use crate::model::{parent_of, write_into, FsOp, Node};
use bytes::Bytes;
use std::collections::BTreeMap;

/// What a path is, with what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

impl Entry {
    fn kind(&self) -> Kind {
        match self {
            Entry::Dir => Kind::Dir,
            Entry::File(_) => Kind::File,
            Entry::Symlink(_) => Kind::Symlink,
        }
    }
}

/// The model: every path (no leading `/`, the root not included) and what it is.
#[derive(Clone, Debug, Default)]
pub struct PosixModel {
    entries: BTreeMap<String, Entry>,
}

/// Whether `path` is `dir` or below it.
fn is_within(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

impl PosixModel {
    /// The tree, as [`walk`](crate::model::walk) reads it back through the library.
    pub fn tree(&self) -> BTreeMap<String, Node> {
        self.entries
            .iter()
            .map(|(path, entry)| {
                let node = match entry {
                    Entry::Dir => Node::Dir,
                    Entry::File(content) => Node::File(Bytes::from(content.clone())),
                    Entry::Symlink(target) => Node::Symlink(Bytes::from(target.clone())),
                };
                (path.clone(), node)
            })
            .collect()
    }

    /// What `path` is: `ENOENT` if it or a parent is missing, `ENOTDIR` if a parent is
    /// not a directory.
    fn lookup(&self, path: &str) -> Result<Kind, i32> {
        if path.is_empty() {
            return Ok(Kind::Dir);
        }
        self.check_parent(path)?;
        self.entries.get(path).map(Entry::kind).ok_or(libc::ENOENT)
    }

    /// The parent of `path` must be a directory.
    fn check_parent(&self, path: &str) -> Result<(), i32> {
        match self.lookup(parent_of(path))? {
            Kind::Dir => Ok(()),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// The content of regular file `path` opened for writing (created when missing if
    /// `create`): a directory is `EISDIR`, a symlink `EINVAL` (the library opens a link
    /// itself, never its target).
    fn file(&mut self, path: &str, create: bool) -> Result<&mut Vec<u8>, i32> {
        match self.lookup(path) {
            Ok(Kind::Dir) => return Err(libc::EISDIR),
            Ok(Kind::Symlink) => return Err(libc::EINVAL),
            Ok(Kind::File) => {}
            Err(libc::ENOENT) if create => {
                self.check_parent(path)?;
                self.entries
                    .insert(path.to_owned(), Entry::File(Vec::new()));
            }
            Err(errno) => return Err(errno),
        }
        match self.entries.get_mut(path) {
            Some(Entry::File(content)) => Ok(content),
            _ => Err(libc::EIO),
        }
    }

    fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(path, _)| path.starts_with(&prefix))
    }

    /// A new entry at `path`, whose parent must be a directory: `EEXIST` if taken.
    fn make(&mut self, path: &str, entry: Entry) -> Result<(), i32> {
        self.check_parent(path)?;
        if self.entries.contains_key(path) {
            return Err(libc::EEXIST);
        }
        self.entries.insert(path.to_owned(), entry);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), i32> {
        self.check_parent(from)?;
        self.check_parent(to)?;
        let source = self
            .entries
            .get(from)
            .map(Entry::kind)
            .ok_or(libc::ENOENT)?;
        if from == to {
            return Ok(());
        }
        if source == Kind::Dir && is_within(parent_of(to), from) {
            return Err(libc::EINVAL);
        }
        match (source, self.entries.get(to).map(Entry::kind)) {
            (Kind::Dir, Some(Kind::File | Kind::Symlink)) => return Err(libc::ENOTDIR),
            (Kind::File | Kind::Symlink, Some(Kind::Dir)) => return Err(libc::EISDIR),
            (Kind::Dir, Some(Kind::Dir)) if self.has_children(to) => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.entries.remove(to);
        let moved: Vec<String> = self
            .entries
            .keys()
            .filter(|path| is_within(path, from))
            .cloned()
            .collect();
        for path in moved {
            if let Some(entry) = self.entries.remove(&path) {
                self.entries
                    .insert(format!("{to}{}", &path[from.len()..]), entry);
            }
        }
        Ok(())
    }

    /// Applies `op`; the errno it fails with.
    pub fn apply(&mut self, op: &FsOp) -> Result<(), i32> {
        match op {
            FsOp::Write { path, data } => {
                *self.file(path, true)? = data.to_vec();
            }
            FsOp::Append { path, data } => self.file(path, false)?.extend_from_slice(data),
            FsOp::WriteAt { path, offset, data } => {
                write_into(self.file(path, false)?, *offset, data);
            }
            FsOp::Truncate { path, size } => match self.lookup(path)? {
                Kind::Dir => return Err(libc::EISDIR),
                Kind::Symlink => return Err(libc::EINVAL),
                Kind::File => self.file(path, false)?.resize(*size as usize, 0),
            },
            FsOp::Rewrite {
                path,
                first,
                cut,
                at,
                second,
            } => {
                let content = self.file(path, true)?;
                *content = first.to_vec();
                content.resize(*cut as usize, 0);
                write_into(content, *at, second);
            }
            FsOp::RenameOpen {
                path,
                to,
                before,
                after,
            } => {
                self.file(path, false)?.extend_from_slice(before);
                let renamed = self.rename(path, to);
                // The handle follows the file wherever the rename left it.
                let at = if renamed.is_ok() { to } else { path };
                self.file(at, false)?.extend_from_slice(after);
                return renamed;
            }
            FsOp::Unlink(path) => {
                self.check_parent(path)?;
                match self.entries.get(path).map(Entry::kind) {
                    None => return Err(libc::ENOENT),
                    Some(Kind::Dir) => return Err(libc::EISDIR),
                    Some(_) => {
                        self.entries.remove(path);
                    }
                }
            }
            FsOp::Mkdir(path) => self.make(path, Entry::Dir)?,
            FsOp::Rmdir(path) => {
                self.check_parent(path)?;
                match self.entries.get(path).map(Entry::kind) {
                    None => return Err(libc::ENOENT),
                    Some(Kind::File | Kind::Symlink) => return Err(libc::ENOTDIR),
                    Some(Kind::Dir) if self.has_children(path) => return Err(libc::ENOTEMPTY),
                    Some(Kind::Dir) => {
                        self.entries.remove(path);
                    }
                }
            }
            FsOp::Rename { from, to } => self.rename(from, to)?,
            FsOp::Symlink { path, target } => self.make(path, Entry::Symlink(target.clone()))?,
            FsOp::Chmod { path, .. } => {
                self.lookup(path)?;
            }
            FsOp::RemotePut { .. } | FsOp::RemoteDelete(_) | FsOp::Failing(_) => {
                return Err(libc::EINVAL)
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn directories_are_made_not_implied() {
        let mut m = PosixModel::default();
        let write = |path: &str| FsOp::Write {
            path: path.into(),
            data: b("x"),
        };
        assert_eq!(m.apply(&write("a/b")), Err(libc::ENOENT));
        assert_eq!(m.apply(&FsOp::Mkdir("a".into())), Ok(()));
        assert_eq!(m.apply(&write("a/b")), Ok(()));
        assert_eq!(m.apply(&write("a/b/c")), Err(libc::ENOTDIR));
        assert_eq!(m.apply(&FsOp::Rmdir("a".into())), Err(libc::ENOTEMPTY));
        let into_itself = FsOp::Rename {
            from: "a".into(),
            to: "a/c".into(),
        };
        assert_eq!(m.apply(&into_itself), Err(libc::EINVAL));
        let moved = FsOp::Rename {
            from: "a".into(),
            to: "c".into(),
        };
        assert_eq!(m.apply(&moved), Ok(()));
        let paths: Vec<String> = m.tree().into_keys().collect();
        assert_eq!(paths, ["c", "c/b"]);
    }
}
