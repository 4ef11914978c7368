//! The inode table: a number for every path the kernel (or a library caller) holds.
//!
//! It keeps the kernel's lookup-count protocol. Every answer that hands out an entry the
//! caller will later `forget` (lookup, create, mkdir, symlink, a `readdirplus` entry)
//! counts one lookup with [`InodeTable::lookup`], *before* the answer is sent; `forget`
//! takes counts off. An inode whose count is 0 and that no open handle holds
//! ([`InodeTable::open`]) is removed, from both maps. So a `find` over millions of keys
//! costs memory only for what the kernel still caches.
//!
//! Invariants:
//! - a path keeps its number while its inode is in the table, so while the kernel knows
//!   the number; numbers are never reused, so a late `forget` of a removed inode, or one
//!   that crossed a new lookup of the same path, can never hit another file;
//! - the root is never removed;
//! - numbers handed out without a count (plain `readdir` entries, a kind change found by
//!   `getattr`) are *unreferenced*: they wait in a FIFO of at most
//!   [`MAX_UNREFERENCED`] entries and are removed when pushed out of it, unless a lookup
//!   or an open took them meanwhile. Every unreferenced inode is in that FIFO, so they
//!   are bounded too;
//! - the kind of an inode never changes: a path that became another kind gets a new
//!   number, and the old inode keeps its kind (and its path, for `ESTALE`) until forgotten.

use crate::namespace::FsPath;
use crate::vfs::{FileKind, Ino};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most inodes kept without a lookup count or an open handle (numbers shown in plain
/// `readdir` entries). Past it the oldest are removed; the kernel never holds them, and a
/// later lookup of the path simply gets a new number.
pub(crate) const MAX_UNREFERENCED: usize = 65_536;

/// A map emptied to less than 1/`SHRINK_RATIO` of its capacity gives memory back.
const SHRINK_RATIO: usize = 4;

/// Maps smaller than this never shrink (not worth the rehash).
const SHRINK_FLOOR: usize = 1024;

/// What the table knows of one inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InodeInfo {
    /// Its path.
    pub path: FsPath,
    /// Its kind as last seen.
    pub kind: FileKind,
}

#[derive(Debug)]
struct Node {
    info: InodeInfo,
    /// Lookups handed out and not forgotten.
    lookups: u64,
    /// Open handles on it.
    opens: u64,
    /// Whether it waits in the unreferenced FIFO.
    queued: bool,
}

impl Node {
    fn referenced(&self) -> bool {
        self.lookups > 0 || self.opens > 0
    }
}

#[derive(Debug)]
struct Table {
    by_path: HashMap<FsPath, Ino>,
    by_ino: HashMap<Ino, Node>,
    next: u64,
    /// Inodes that were unreferenced when queued, oldest first (see the module docs).
    unreferenced: VecDeque<Ino>,
    max_unreferenced: usize,
}

/// Thread-safe map between paths and inode numbers, with the kernel's lookup counts.
#[derive(Debug)]
pub(crate) struct InodeTable {
    inner: Mutex<Table>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > SHRINK_FLOOR && map.len() < map.capacity() / SHRINK_RATIO {
        map.shrink_to(map.len() * 2);
    }
}

impl Table {
    /// The inode of `path` as a `kind`, a new one if needed (see [`InodeTable::assign`]).
    fn assign(&mut self, path: &FsPath, kind: FileKind) -> Ino {
        if let Some(&ino) = self.by_path.get(path) {
            if self.by_ino.get(&ino).is_some_and(|n| n.info.kind == kind) {
                return ino;
            }
        }
        let ino = Ino(self.next);
        self.next += 1;
        self.by_path.insert(path.clone(), ino);
        self.by_ino.insert(
            ino,
            Node {
                info: InodeInfo {
                    path: path.clone(),
                    kind,
                },
                lookups: 0,
                opens: 0,
                queued: false,
            },
        );
        ino
    }

    /// Queues `ino` as unreferenced, removing the oldest past the bound.
    fn queue(&mut self, ino: Ino) {
        if let Some(node) = self.by_ino.get_mut(&ino) {
            if node.queued || node.referenced() {
                return;
            }
            node.queued = true;
        }
        self.unreferenced.push_back(ino);
        while self.unreferenced.len() > self.max_unreferenced {
            let Some(oldest) = self.unreferenced.pop_front() else {
                break;
            };
            match self.by_ino.get_mut(&oldest) {
                Some(node) if node.referenced() => node.queued = false,
                Some(_) => self.remove(oldest),
                None => {}
            }
        }
    }

    /// Removes `ino` from both maps (the path only if it still names `ino`).
    fn remove(&mut self, ino: Ino) {
        if ino == Ino::ROOT {
            return;
        }
        let Some(node) = self.by_ino.remove(&ino) else {
            return;
        };
        if self.by_path.get(&node.info.path) == Some(&ino) {
            self.by_path.remove(&node.info.path);
        }
        shrink(&mut self.by_ino);
        shrink(&mut self.by_path);
    }

    /// Removes `ino` if nothing references it any more.
    fn remove_if_unreferenced(&mut self, ino: Ino) {
        if self.by_ino.get(&ino).is_some_and(|n| !n.referenced()) {
            self.remove(ino);
        }
    }
}

impl InodeTable {
    /// A table holding only the root, keeping at most [`MAX_UNREFERENCED`] unreferenced
    /// inodes.
    pub(crate) fn new() -> Self {
        Self::with_max_unreferenced(MAX_UNREFERENCED)
    }

    /// A table holding only the root, keeping at most `max` unreferenced inodes.
    pub(crate) fn with_max_unreferenced(max: usize) -> Self {
        let mut table = Table {
            by_path: HashMap::new(),
            by_ino: HashMap::new(),
            next: Ino::ROOT.0 + 1,
            unreferenced: VecDeque::new(),
            max_unreferenced: max,
        };
        table.by_path.insert(FsPath::root(), Ino::ROOT);
        table.by_ino.insert(
            Ino::ROOT,
            Node {
                info: InodeInfo {
                    path: FsPath::root(),
                    kind: FileKind::Directory,
                },
                // Never forgotten: the kernel holds the root for the life of the mount.
                lookups: 1,
                opens: 0,
                queued: false,
            },
        );
        Self {
            inner: Mutex::new(table),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every update below completes its map changes before it could panic (none of
        // them can, short of allocation failure), so a poisoned lock is still consistent.
        crate::sync::lock(&self.inner)
    }

    /// The inode of `path` as a `kind`, assigning a new number on first sight, *without*
    /// counting a lookup: for numbers shown but not handed over (plain `readdir`). Such an
    /// inode is kept only while few enough others are (see [`MAX_UNREFERENCED`]).
    ///
    /// If the path changed kind (a file became a directory or a symlink), it gets a new
    /// number: the old one keeps its old kind, so nobody sees an inode change type.
    pub(crate) fn assign(&self, path: &FsPath, kind: FileKind) -> Ino {
        let mut table = self.lock();
        let ino = table.assign(path, kind);
        table.queue(ino);
        ino
    }

    /// Like [`assign`](Self::assign), and counts one lookup of the inode, which the caller
    /// hands on (to the kernel) and must [`forget`](Self::forget) later. Atomic, so a
    /// `forget` of the same inode crossing it cannot remove the inode in between.
    pub(crate) fn lookup(&self, path: &FsPath, kind: FileKind) -> Ino {
        let mut table = self.lock();
        let ino = table.assign(path, kind);
        if let Some(node) = table.by_ino.get_mut(&ino) {
            node.lookups += 1;
        }
        ino
    }

    /// Takes `nlookup` lookups of `ino` back; at 0, with no open handle, the inode is
    /// removed. Unknown numbers and the root are ignored.
    pub(crate) fn forget(&self, ino: Ino, nlookup: u64) {
        if ino == Ino::ROOT {
            return;
        }
        let mut table = self.lock();
        let Some(node) = table.by_ino.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(nlookup);
        table.remove_if_unreferenced(ino);
    }

    /// A handle on `ino` was opened: the inode stays while it is open, whatever the
    /// lookup count. Returns whether `ino` is known (an unknown one is not held).
    pub(crate) fn open(&self, ino: Ino) -> bool {
        match self.lock().by_ino.get_mut(&ino) {
            Some(node) => {
                node.opens += 1;
                true
            }
            None => false,
        }
    }

    /// A handle on `ino` was closed (one [`open`](Self::open) that returned `true`); the
    /// inode goes if that was the last thing holding it.
    pub(crate) fn close(&self, ino: Ino) {
        let mut table = self.lock();
        let Some(node) = table.by_ino.get_mut(&ino) else {
            return;
        };
        node.opens = node.opens.saturating_sub(1);
        table.remove_if_unreferenced(ino);
    }

    /// `from` was renamed to `to`: its inode, and the inodes of everything below it, now
    /// name the new paths, with their lookup counts (the kernel keeps using them). An inode
    /// that `to` had before is detached from the path (it named the replaced file).
    pub(crate) fn rename(&self, from: &FsPath, to: &FsPath) {
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
            if let Some(node) = table.by_ino.get_mut(&ino) {
                node.info.path = new.clone();
            }
            table.by_path.insert(new, ino);
        }
    }

    /// `path` was removed: a file created there later gets a new inode (the old one
    /// still names the removed file for handles open on it, until forgotten).
    pub(crate) fn detach(&self, path: &FsPath) {
        self.lock().by_path.remove(path);
    }

    /// What is known of `ino`.
    pub(crate) fn get(&self, ino: Ino) -> Option<InodeInfo> {
        self.lock().by_ino.get(&ino).map(|node| node.info.clone())
    }

    /// What is known of `ino`, or `ENOENT` for an inode this table does not hold (a caller
    /// using a number it was never given, or one it forgot).
    pub(crate) fn info(&self, ino: Ino) -> crate::error::VfsResult<InodeInfo> {
        self.get(ino)
            .ok_or_else(|| crate::error::VfsError::NotFound(format!("inode {}", ino.0)))
    }

    /// The inode of `path`, if it has one.
    pub(crate) fn find(&self, path: &FsPath) -> Option<Ino> {
        self.lock().by_path.get(path).copied()
    }

    /// The lookups of `ino` not forgotten yet (`None`: not in the table).
    #[cfg(test)]
    pub(crate) fn lookups(&self, ino: Ino) -> Option<u64> {
        self.lock().by_ino.get(&ino).map(|node| node.lookups)
    }

    /// Number of inodes in the table, the root included.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_ino.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::FileName;

    fn p(s: &str) -> FsPath {
        FsPath::parse(s).unwrap()
    }

    #[test]
    fn numbers_are_stable_and_unique() {
        let table = InodeTable::new();
        let a = FsPath::root().join(&FileName::check("a").unwrap());
        let b = a.join(&FileName::check("b").unwrap());
        let ia = table.lookup(&a, FileKind::File);
        let ib = table.lookup(&b, FileKind::File);
        assert_ne!(ia, ib);
        assert_ne!(ia, Ino::ROOT);
        assert_eq!(table.lookup(&a, FileKind::File), ia);
        let da = table.lookup(&a, FileKind::Directory);
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
        let d = table.lookup(&p("d"), FileKind::Directory);
        let f = table.lookup(&p("d/f"), FileKind::File);
        let other = table.lookup(&p("e"), FileKind::Directory);
        let dx = table.lookup(&p("dx"), FileKind::File);
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

    #[test]
    fn an_inode_goes_when_its_last_lookup_is_forgotten() {
        let table = InodeTable::new();
        let f = table.lookup(&p("f"), FileKind::File);
        assert_eq!(table.lookup(&p("f"), FileKind::File), f);
        assert_eq!(table.lookup(&p("f"), FileKind::File), f);
        assert_eq!(table.lookups(f), Some(3));
        table.forget(f, 2);
        assert_eq!(table.find(&p("f")), Some(f), "one lookup left: kept");
        assert_eq!(table.lookups(f), Some(1));
        table.forget(f, 1);
        assert_eq!(table.get(f), None, "gone from the numbers");
        assert_eq!(table.find(&p("f")), None, "and from the paths");
        assert_eq!(table.len(), 1);
        assert_ne!(
            table.lookup(&p("f"), FileKind::File),
            f,
            "a number is never reused"
        );
        // A late or repeated forget of a removed number, and of the root, do nothing.
        table.forget(f, 5);
        table.forget(Ino::ROOT, 100);
        assert_eq!(table.get(Ino::ROOT).unwrap().path, FsPath::root());
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn an_open_handle_keeps_a_forgotten_inode() {
        let table = InodeTable::new();
        let f = table.lookup(&p("f"), FileKind::File);
        assert!(table.open(f));
        assert!(table.open(f));
        table.forget(f, 1);
        assert_eq!(table.find(&p("f")), Some(f), "open: kept");
        table.close(f);
        assert_eq!(table.find(&p("f")), Some(f), "still one handle");
        table.close(f);
        assert_eq!(table.get(f), None, "last handle closed, no lookup: gone");
        // And the other way round: closed first, then forgotten.
        let g = table.lookup(&p("g"), FileKind::File);
        assert!(table.open(g));
        table.close(g);
        assert_eq!(table.find(&p("g")), Some(g), "the kernel still knows it");
        table.forget(g, 1);
        assert_eq!(table.get(g), None);
        assert!(!table.open(g), "an unknown number is not held");
    }

    #[test]
    fn a_rename_keeps_the_count_and_a_removal_keeps_the_new_name() {
        let table = InodeTable::new();
        let f = table.lookup(&p("d/f"), FileKind::File);
        table.lookup(&p("d/f"), FileKind::File);
        let replaced = table.lookup(&p("e/f"), FileKind::File);
        table.rename(&p("d/f"), &p("e/f"));
        assert_eq!(table.lookups(f), Some(2));
        assert_eq!(table.find(&p("e/f")), Some(f));
        // The replaced inode is forgotten after the rename: its path is f's now, and stays.
        table.forget(replaced, 1);
        assert_eq!(table.get(replaced), None);
        assert_eq!(table.find(&p("e/f")), Some(f));
        table.forget(f, 1);
        assert_eq!(table.find(&p("e/f")), Some(f));
        table.forget(f, 1);
        assert_eq!(table.find(&p("e/f")), None);
    }

    #[test]
    fn a_detached_or_replaced_inode_leaves_the_new_one_alone() {
        let table = InodeTable::new();
        let old = table.lookup(&p("a"), FileKind::File);
        table.detach(&p("a"));
        let new = table.lookup(&p("a"), FileKind::File);
        assert_ne!(old, new);
        table.forget(old, 1);
        assert_eq!(table.find(&p("a")), Some(new));
        let dir = table.lookup(&p("a"), FileKind::Directory);
        table.forget(new, 1);
        assert_eq!(
            table.find(&p("a")),
            Some(dir),
            "another kind: the old one went alone"
        );
    }

    #[test]
    fn unreferenced_numbers_are_bounded() {
        let table = InodeTable::with_max_unreferenced(3);
        let held = table.lookup(&p("held"), FileKind::File);
        let listed: Vec<Ino> = (0..5)
            .map(|i| table.assign(&p(&format!("n{i}")), FileKind::File))
            .collect();
        assert_eq!(
            table.len(),
            1 + 1 + 3,
            "the root, the held one, the newest 3"
        );
        assert_eq!(table.get(listed[0]), None);
        assert_eq!(table.get(listed[1]), None);
        assert_eq!(table.find(&p("n4")), Some(listed[4]));
        // A lookup takes a listed number over: it is no longer pushed out.
        assert_eq!(table.lookup(&p("n2"), FileKind::File), listed[2]);
        for i in 5..10 {
            table.assign(&p(&format!("n{i}")), FileKind::File);
        }
        assert_eq!(table.find(&p("n2")), Some(listed[2]));
        assert_eq!(table.find(&p("held")), Some(held));
        assert_eq!(table.len(), 1 + 2 + 3);
        // Listing a looked-up name again neither counts nor queues it.
        assert_eq!(table.assign(&p("held"), FileKind::File), held);
        assert_eq!(table.lookups(held), Some(1));
        table.forget(held, 1);
        assert_eq!(table.get(held), None);
    }

    #[test]
    fn forgotten_maps_give_memory_back() {
        let table = InodeTable::new();
        let inos: Vec<Ino> = (0..20_000)
            .map(|i| table.lookup(&p(&format!("d/f{i}")), FileKind::File))
            .collect();
        let full = table.lock().by_ino.capacity();
        for ino in inos {
            table.forget(ino, 1);
        }
        let inner = table.lock();
        assert_eq!(inner.by_ino.len(), 1);
        assert!(
            inner.by_ino.capacity() < full / 4,
            "{} of {full}",
            inner.by_ino.capacity()
        );
        assert!(inner.by_path.capacity() < full / 4);
    }
}
