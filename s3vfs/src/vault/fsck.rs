//! [`fsck`]: checks that every reference in a vault resolves: each inode reachable from
//! the root opens and passes its checks, each directory entry names an inode of the kind
//! it says, each link count is the number of entries naming the inode, each chunk
//! referenced exists (and, reading the data, opens and hashes to its id).
//!
//! Nothing found is fatal: every problem becomes a line of the report, and the walk goes
//! on. Only link counts are repaired (If-Match, so a concurrent change is never
//! overwritten). Run it while nothing writes to the vault, or expect reports of changes
//! made during the walk.

use super::chunks::{self, Chunks};
use super::crypto::ChunkId;
use super::error::VaultError;
use super::fs::ROOT;
use super::gc::{open_for_maintenance, write_problems, GC_GRACE_MIN};
use super::inode::{ChunkRef, Kind};
use super::io::Location;
use super::meta::{self, Inodes, Versioned};
use crate::store::Backend;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// How [`fsck`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FsckOptions {
    /// Fetch every referenced chunk, open it and check its id (reads all the data);
    /// otherwise only check that each exists.
    pub read_data: bool,
    /// Set each wrong link count to the number of entries naming the inode.
    pub repair: bool,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl Default for FsckOptions {
    fn default() -> Self {
        Self {
            read_data: false,
            repair: false,
            concurrency: 16,
        }
    }
}

impl FsckOptions {
    /// Sets [`read_data`](Self::read_data).
    pub fn with_read_data(mut self, read_data: bool) -> Self {
        self.read_data = read_data;
        self
    }

    /// Sets [`repair`](Self::repair).
    pub fn with_repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Sets [`concurrency`](Self::concurrency) (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }
}

/// What [`fsck`] found (and repaired).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckReport {
    /// Reachable inodes read and checked.
    pub inodes_checked: u64,
    /// Reachable inodes that failed to open or to pass their checks.
    pub inodes_bad: u64,
    /// Inodes in the bucket that no entry reaches (what a crash leaves; `gc` deletes
    /// them once older than its grace). Not a problem.
    pub inodes_unreachable: u64,
    /// Entries naming a missing inode, or one of another kind.
    pub entries_bad: u64,
    /// Inodes whose link count is not the number of entries naming them.
    pub nlink_wrong: u64,
    /// Link counts set right.
    pub nlink_repaired: u64,
    /// Distinct chunks referenced by reachable files.
    pub chunks_referenced: u64,
    /// Referenced chunks missing from the bucket.
    pub chunks_missing: u64,
    /// Referenced chunks read and found good (with `read_data`).
    pub chunks_read: u64,
    /// Referenced chunks that did not open or did not match their id (with `read_data`).
    pub chunks_bad: u64,
    /// Every problem found, one readable line each.
    pub problems: Vec<String>,
}

impl FsckReport {
    /// Whether no problem was found (repaired ones count as found).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "inodes: {} checked, {} bad, {} unreachable; entries: {} bad; link counts: {} wrong, {} repaired",
            self.inodes_checked,
            self.inodes_bad,
            self.inodes_unreachable,
            self.entries_bad,
            self.nlink_wrong,
            self.nlink_repaired
        )?;
        write!(
            f,
            "chunks: {} referenced, {} missing, {} read, {} bad",
            self.chunks_referenced, self.chunks_missing, self.chunks_read, self.chunks_bad
        )?;
        if self.is_clean() {
            write!(f, "\nno problem found")?;
        }
        write_problems(f, &self.problems)
    }
}

/// Checks the vault at `prefix` of `store` (see the module docs of what); problems are
/// reported, never fatal. Fails only when the vault does not open or a listing fails.
///
/// ```no_run
/// # async fn example(store: std::sync::Arc<dyn s3vfs::store::Backend>) -> Result<(), s3vfs::vault::VaultError> {
/// use s3vfs::vault::{fsck, FsckOptions};
///
/// let report = fsck(store, "home/", b"correct horse", FsckOptions::default().with_read_data(true)).await?;
/// assert!(report.is_clean(), "{report}");
/// # Ok(()) }
/// ```
pub async fn fsck(
    store: Arc<dyn Backend>,
    prefix: &str,
    passphrase: &[u8],
    options: FsckOptions,
) -> Result<FsckReport, VaultError> {
    let (location, keys, inodes) = open_for_maintenance(store, prefix, passphrase).await?;
    let mut check = Check {
        inodes,
        chunks: Chunks::new(location.clone(), keys, 1, GC_GRACE_MIN),
        location,
        options,
        report: FsckReport::default(),
    };
    let tree = check.walk().await;
    check.link_counts(&tree).await;
    check.unreachable(&tree).await?;
    check.chunks(&tree).await?;
    Ok(check.report)
}

/// One fsck's state.
struct Check {
    location: Location,
    inodes: Inodes,
    chunks: Chunks,
    options: FsckOptions,
    report: FsckReport,
}

/// The reachable tree as read.
#[derive(Default)]
struct Tree {
    /// Inodes read: kind, link count, and a path naming it.
    inodes: HashMap<u64, (Kind, u32, String)>,
    /// Entries naming each inode.
    names: HashMap<u64, u32>,
    /// Chunks referenced: length, and a path of a file using it.
    chunks: HashMap<ChunkId, (u32, String)>,
}

/// An inode to read: its number, the kind its entry says, a path naming it.
type Visit = (u64, Kind, String);

impl Check {
    fn problem(&mut self, line: String) {
        self.report.problems.push(line);
    }

    /// Reads every inode reachable from the root, a batch at a time.
    async fn walk(&mut self) -> Tree {
        let mut tree = Tree::default();
        let mut queued = HashSet::from([ROOT]);
        let mut queue: Vec<Visit> = vec![(ROOT, Kind::Dir, "/".to_owned())];
        // Entries naming an inode that was queued already: checked once it is read.
        let mut more_names: Vec<Visit> = Vec::new();
        while !queue.is_empty() {
            let batch: Vec<Visit> = queue
                .drain(queue.len().saturating_sub(self.options.concurrency.max(1))..)
                .collect();
            let inodes = &self.inodes;
            let read: Vec<(Visit, Result<Option<Versioned>, VaultError>)> =
                futures::stream::iter(batch)
                    .map(|visit| async move {
                        let found = inodes.read(visit.0).await;
                        (visit, found)
                    })
                    .buffer_unordered(self.options.concurrency.max(1))
                    .collect()
                    .await;
            for ((ino, kind, path), found) in read {
                let found = match found {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        self.report.entries_bad += 1;
                        self.problem(format!("{path}: names inode {ino}, which does not exist"));
                        continue;
                    }
                    Err(err) => {
                        self.report.inodes_bad += 1;
                        self.problem(format!("{path} (inode {ino}): {err}"));
                        continue;
                    }
                };
                self.report.inodes_checked += 1;
                let inode = &found.inode;
                if inode.kind != kind {
                    self.report.entries_bad += 1;
                    self.problem(format!(
                        "{path}: the entry says {kind:?}, inode {ino} is {:?}",
                        inode.kind
                    ));
                }
                for chunk in &inode.chunks {
                    tree.chunks
                        .entry(chunk.id)
                        .or_insert_with(|| (chunk.len, path.clone()));
                }
                for (name, entry) in &inode.entries {
                    *tree.names.entry(entry.ino).or_default() += 1;
                    let child = (entry.ino, entry.kind, child_path(&path, name));
                    if queued.insert(entry.ino) {
                        queue.push(child);
                    } else {
                        more_names.push(child);
                    }
                }
                tree.inodes.insert(ino, (inode.kind, inode.nlink, path));
            }
        }
        for (ino, kind, path) in more_names {
            if let Some((actual, _, _)) = tree.inodes.get(&ino) {
                if *actual != kind {
                    self.report.entries_bad += 1;
                    self.problem(format!(
                        "{path}: the entry says {kind:?}, inode {ino} is {actual:?}"
                    ));
                }
            }
        }
        tree
    }

    /// Compares each link count with the entries naming the inode; repairs if asked.
    async fn link_counts(&mut self, tree: &Tree) {
        let mut wrong: Vec<(u64, u32, u32, String)> = Vec::new();
        for (ino, (kind, nlink, path)) in &tree.inodes {
            let names = tree.names.get(ino).copied().unwrap_or(0);
            if *kind == Kind::Dir {
                // Directories cannot be linked: one name each (none for the root).
                let expected = u32::from(*ino != ROOT);
                if names != expected {
                    self.problem(format!("{path}: directory inode {ino} has {names} names"));
                }
            } else if names != *nlink {
                wrong.push((*ino, *nlink, names, path.clone()));
            }
        }
        for (ino, nlink, names, path) in wrong {
            self.report.nlink_wrong += 1;
            self.problem(format!(
                "{path}: inode {ino} has a link count of {nlink} and {names} names"
            ));
            if !self.options.repair {
                continue;
            }
            let repaired = self
                .inodes
                .update(ino, |inode| {
                    if inode.nlink == names {
                        return Ok(None);
                    }
                    inode.nlink = names;
                    Ok(Some(()))
                })
                .await;
            match repaired {
                Ok((_, Some(()))) => self.report.nlink_repaired += 1,
                Ok((_, None)) => {}
                Err(err) => self.problem(format!("{path}: link count not repaired: {err}")),
            }
        }
    }

    /// Counts the inodes in the bucket the walk did not reach.
    async fn unreachable(&mut self, tree: &Tree) -> Result<(), VaultError> {
        let mut listing = self.location.list("i/");
        while let Some(page) = listing.next_page().await? {
            self.report.inodes_unreachable += page
                .objects
                .iter()
                .filter_map(|o| meta::parse_name(self.location.name_of(&o.key)?))
                .filter(|ino| !tree.inodes.contains_key(ino))
                .count() as u64;
        }
        Ok(())
    }

    /// Checks that every referenced chunk is listed, and with `read_data` reads each.
    async fn chunks(&mut self, tree: &Tree) -> Result<(), VaultError> {
        self.report.chunks_referenced = tree.chunks.len() as u64;
        let mut unlisted: HashSet<ChunkId> = tree.chunks.keys().copied().collect();
        let mut listing = self.location.list("c/");
        while let Some(page) = listing.next_page().await? {
            for object in &page.objects {
                let name = self.location.name_of(&object.key);
                if let Some(id) = name.and_then(chunks::parse_name) {
                    unlisted.remove(&id);
                }
            }
        }
        let mut missing: Vec<(String, String)> = unlisted
            .iter()
            .filter_map(|id| {
                tree.chunks
                    .get(id)
                    .map(|(_, path)| (id.to_string(), path.clone()))
            })
            .collect();
        missing.sort();
        for (id, path) in missing {
            self.report.chunks_missing += 1;
            self.problem(format!("{path}: chunk c/{id} is missing"));
        }
        if !self.options.read_data {
            return Ok(());
        }
        let chunks = &self.chunks;
        let wanted: Vec<(ChunkRef, String)> = tree
            .chunks
            .iter()
            .filter(|(id, _)| !unlisted.contains(id))
            .map(|(id, (len, path))| {
                let reference = ChunkRef {
                    off: 0,
                    len: *len,
                    id: *id,
                };
                (reference, path.clone())
            })
            .collect();
        let read: Vec<(ChunkId, String, Result<(), String>)> = futures::stream::iter(wanted)
            .map(|(reference, path)| async move {
                let read = chunks.get(&reference).await;
                (
                    reference.id,
                    path,
                    read.map(|_| ()).map_err(|e| e.to_string()),
                )
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        for (id, path, outcome) in read {
            match outcome {
                Ok(()) => self.report.chunks_read += 1,
                Err(err) => {
                    self.report.chunks_bad += 1;
                    self.problem(format!("{path}: chunk c/{id}: {err}"));
                }
            }
        }
        Ok(())
    }
}

/// `name` in the directory at `dir`.
fn child_path(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}
