//! The inode table: a stable number for every path seen while the file system lives.
//!
//! Invariant: a path keeps its inode number for the life of the table (numbers are never
//! reused), so the kernel and library handles can hold on to them. The kind of an inode
//! may change (another machine replaced a file by a directory); its number does not.

use crate::namespace::FsPath;
use crate::vfs::{FileKind, Ino};
use std::collections::HashMap;
use std::sync::Mutex;

/// What the table knows of one inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InodeInfo {
    /// Its path.
    pub path: FsPath,
    /// Its kind as last seen.
    pub kind: FileKind,
}

#[derive(Debug, Default)]
struct Table {
    by_path: HashMap<FsPath, Ino>,
    by_ino: HashMap<Ino, InodeInfo>,
    next: u64,
}

/// Thread-safe map between paths and inode numbers.
#[derive(Debug)]
pub struct InodeTable {
    inner: Mutex<Table>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// A table holding only the root.
    pub fn new() -> Self {
        let mut table = Table {
            next: Ino::ROOT.0 + 1,
            ..Table::default()
        };
        table.by_path.insert(FsPath::root(), Ino::ROOT);
        table.by_ino.insert(
            Ino::ROOT,
            InodeInfo {
                path: FsPath::root(),
                kind: FileKind::Directory,
            },
        );
        Self {
            inner: Mutex::new(table),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock cannot leave the maps inconsistent (each update
        // is a pair of inserts of owned values), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode of `path` as a `kind`, assigning a new number on first sight. If the
    /// path changed kind (a file became a directory or a symlink), it gets a new number:
    /// the old one keeps its old kind, so nobody sees an inode change type.
    pub fn assign(&self, path: &FsPath, kind: FileKind) -> Ino {
        let mut table = self.lock();
        if let Some(&ino) = table.by_path.get(path) {
            if table.by_ino.get(&ino).is_some_and(|info| info.kind == kind) {
                return ino;
            }
        }
        let ino = Ino(table.next);
        table.next += 1;
        table.by_path.insert(path.clone(), ino);
        table.by_ino.insert(
            ino,
            InodeInfo {
                path: path.clone(),
                kind,
            },
        );
        ino
    }

    /// `from` was renamed to `to`: its inode, and the inodes of everything below it, now
    /// name the new paths (the kernel keeps using them). An inode that `to` had before is
    /// detached from the path (it named the replaced file).
    pub fn rename(&self, from: &FsPath, to: &FsPath) {
        if from == to {
            return;
        }
        let mut table = self.lock();
        let old_prefix = format!("{}/", from.as_str());
        let moved: Vec<(FsPath, Ino)> = table
            .by_path
            .iter()
            .filter(|(path, _)| *path == from || path.as_str().starts_with(&old_prefix))
            .map(|(path, ino)| (path.clone(), *ino))
            .collect();
        // Detach what lived at the destination.
        let new_prefix = format!("{}/", to.as_str());
        table
            .by_path
            .retain(|path, _| path != to && !path.as_str().starts_with(&new_prefix));
        for (old, ino) in moved {
            table.by_path.remove(&old);
            let rest = &old.as_str()[from.as_str().len()..];
            let new = FsPath::from_trusted(format!("{}{rest}", to.as_str()));
            if let Some(info) = table.by_ino.get_mut(&ino) {
                info.path = new.clone();
            }
            table.by_path.insert(new, ino);
        }
    }

    /// `path` was removed: a file created there later gets a new inode (the old one
    /// still names the removed file for handles open on it).
    pub fn detach(&self, path: &FsPath) {
        self.lock().by_path.remove(path);
    }

    /// What is known of `ino`.
    pub fn get(&self, ino: Ino) -> Option<InodeInfo> {
        self.lock().by_ino.get(&ino).cloned()
    }

    /// The inode of `path`, if it has one.
    pub fn find(&self, path: &FsPath) -> Option<Ino> {
        self.lock().by_path.get(path).copied()
    }

    /// Number of inodes in the table.
    pub fn len(&self) -> usize {
        self.lock().by_ino.len()
    }

    /// Whether the table holds only the root.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::FileName;

    #[test]
    fn numbers_are_stable_and_unique() {
        let table = InodeTable::new();
        let a = FsPath::root().join(&FileName::check("a").unwrap());
        let b = a.join(&FileName::check("b").unwrap());
        let ia = table.assign(&a, FileKind::File);
        let ib = table.assign(&b, FileKind::File);
        assert_ne!(ia, ib);
        assert_ne!(ia, Ino::ROOT);
        assert_eq!(table.assign(&a, FileKind::File), ia);
        let da = table.assign(&a, FileKind::Directory);
        assert_ne!(da, ia, "a change of kind is a new inode");
        assert_eq!(table.get(ia).unwrap().kind, FileKind::File);
        assert_eq!(table.get(da).unwrap().kind, FileKind::Directory);
        assert_eq!(table.find(&a), Some(da));
        assert_eq!(table.find(&b), Some(ib));
        assert_eq!(table.get(Ino::ROOT).unwrap().path, FsPath::root());
    }

    #[test]
    fn renames_move_a_subtree() {
        let table = InodeTable::new();
        let p = |s: &str| FsPath::parse(s).unwrap();
        let d = table.assign(&p("d"), FileKind::Directory);
        let f = table.assign(&p("d/f"), FileKind::File);
        let other = table.assign(&p("e"), FileKind::Directory);
        let dx = table.assign(&p("dx"), FileKind::File);
        table.rename(&p("d"), &p("e"));
        assert_eq!(table.find(&p("e")), Some(d));
        assert_eq!(table.find(&p("e/f")), Some(f));
        assert_eq!(table.get(f).unwrap().path, p("e/f"));
        assert_eq!(table.find(&p("d")), None);
        assert_eq!(
            table.find(&p("dx")),
            Some(dx),
            "a sibling with the same prefix stays"
        );
        assert_ne!(table.find(&p("e")), Some(other));
    }
}
