//! [`gc`]: deletes the chunks no inode references and the inodes no directory names, while
//! the vault stays in use; and the timing rules writers keep so that it never deletes a
//! chunk a live file or a write in flight uses.
//!
//! A run: (1) it writes a marker `gc/<random>` and takes the marker's LastModified as the
//! mark time `M` (the server's clock; local clocks are only used to measure durations);
//! (2) it lists `i/` and reads every inode, collecting the ids of every chunk any of them
//! references (reachable or not: a rename in flight can hide a live inode from a walk);
//! (3) it walks the namespace from the root until one pass finds every directory unchanged
//! since it was read (then what it holds is the tree of one instant); (4) it deletes the
//! inodes outside that tree last modified before `M - grace` (each checked unchanged by a
//! HEAD just before); (5) it lists `c/` and deletes the chunks not referenced and last
//! modified before `M - grace`, each DELETE sent within the delete window of the request
//! that showed it so (else it looks again).
//! Only one gc runs at a time: a run that finds another's recent marker stops.
//!
//! Memory: the set of referenced chunk ids is necessarily whole (32 bytes each), and so
//! are the inode numbers listed and the directories' entries (the namespace's graph);
//! listings are processed one page at a time.
//!
//! # Why a chunk in use is never deleted
//!
//! Writers (chunks.rs, fs.rs) keep, with `R` = [`refresh_age`] = `grace_min / 2`: every
//! chunk a flush writes or reuses has a local instant `t` before the request that last
//! set its LastModified (a PUT by this host, or a re-PUT of a chunk found in the bucket),
//! and the inode naming it is written less than `R` after `t`; a chunk found in the
//! bucket is re-PUT, then checked to still exist once any running gc's in-flight deletes
//! are over (twice the delete window). Chunks a new inode version keeps from the version
//! it replaces need nothing: If-Match makes that version the current one until then.
//!
//! Take a chunk `c` deleted by a run, and an inode version `V` naming it, current at some
//! moment after the delete. If `V` was written before the run read that inode, it was the
//! version read, so `c` was marked: contradiction. Otherwise `V` was written after `M`,
//! and `c` is either kept from an earlier version (recurse to that version, down to the
//! one the run read, whose chunks are marked) or was written or reused for `V` from `t`:
//! - the run saw `c` last written at or after `t`: it deletes only what is older than
//!   `M - grace`, so `t < M - grace` and `V` was written before `t + R < M`: the first
//!   case, a contradiction;
//! - the run decided on a listing or HEAD from before `t`: its DELETE went out within
//!   the delete window of that request. If the writer's PUT found `c` absent, the delete
//!   had landed already (a run deletes a chunk once, and runs alone); if it found `c`
//!   there, the writer's check twice the window later found it deleted and wrote it
//!   again before writing `V`.
//!
//! Inodes: an inode outside the tree of one instant after `M` stays outside it (names
//! are only added to inodes reachable by a name, or to new ones, which are younger than
//! the grace), so deleting it loses nothing but what a crash left behind.
//!
//! Assumed, as by every lease: a request takes effect within the delete window of being
//! sent, and the hosts' clocks measure durations at the same rate. Not covered: an open
//! file whose inode another host deleted or replaced reads chunks of an old version,
//! which gc may delete once older than the grace.

use super::chunks;
use super::crypto::{ChunkId, Keys};
use super::error::VaultError;
use super::fs::ROOT;
use super::inode::{Inode, Kind};
use super::io::{Location, Put};
use super::meta::{self, Inodes, Versioned};
use super::superblock;
use crate::store::{Backend, ETag, WriteCondition};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The smallest grace [`gc`] accepts by default, and the default of
/// [`VaultConfig::gc_grace_min`](super::VaultConfig::gc_grace_min): one hour.
pub const GC_GRACE_MIN: Duration = Duration::from_secs(60 * 60);
/// The longest delete window, whatever the grace.
const MAX_DELETE_WINDOW: Duration = Duration::from_secs(2);
/// The longest a run deletes anything after its mark; a marker older than this (by the
/// server's clock) is a crashed run's.
const MAX_RUN: Duration = Duration::from_secs(24 * 60 * 60);
/// Where runs leave their markers, relative to the prefix.
const MARKERS: &str = "gc/";
/// A marker's content: nothing secret.
const MARKER_BODY: &[u8] = b"s3vfs vault gc in progress\n";
/// How many walks of the namespace a run makes before it gives up finding a stable one
/// (and deletes no inode this time).
const NAMESPACE_PASSES: usize = 8;

/// How long after a chunk's write a writer may newly reference it without writing it
/// again: half the smallest grace.
pub(crate) fn refresh_age(grace_min: Duration) -> Duration {
    grace_min / 2
}

/// How long after the request that showed a chunk old and unchanged a run may still send
/// its DELETE; a writer that re-PUT a chunk waits twice this before checking it is there.
pub(crate) fn delete_window(grace_min: Duration) -> Duration {
    (grace_min / 32).min(MAX_DELETE_WINDOW)
}

/// Whether a gc's marker is in the bucket (a run in progress, or a crashed one's).
pub(crate) async fn running(location: &Location) -> Result<bool, VaultError> {
    let page = location.list(MARKERS).next_page().await?;
    Ok(page.is_some_and(|page| !page.objects.is_empty()))
}

/// How [`gc`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GcOptions {
    /// Objects last modified less than this before the run's mark are kept, referenced or
    /// not. Default one hour; at least [`grace_min`](Self::grace_min).
    pub grace: Duration,
    /// The smallest grace accepted. It must not be below the
    /// [`VaultConfig::gc_grace_min`](super::VaultConfig::gc_grace_min) of any host
    /// writing to the vault, and under a minute it must equal it (the delete window
    /// both sides assume is derived from it). Default [`GC_GRACE_MIN`]; lowered only by
    /// tests, together with the writers'.
    pub grace_min: Duration,
    /// Delete nothing; report what would be deleted. (The run still writes and removes
    /// its marker: that is how it reads the store's clock.)
    pub dry_run: bool,
    /// Requests (reads, HEADs, deletes) in flight at once.
    pub concurrency: usize,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: GC_GRACE_MIN,
            grace_min: GC_GRACE_MIN,
            dry_run: false,
            concurrency: 16,
        }
    }
}

impl GcOptions {
    /// Sets [`grace`](Self::grace).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`grace_min`](Self::grace_min).
    pub fn with_grace_min(mut self, grace_min: Duration) -> Self {
        self.grace_min = grace_min;
        self
    }

    /// Sets [`dry_run`](Self::dry_run).
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets [`concurrency`](Self::concurrency) (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    fn validate(&self) -> Result<(), VaultError> {
        if self.grace_min.is_zero() {
            return Err(VaultError::Config(
                "the smallest gc grace must not be 0".into(),
            ));
        }
        if self.grace < self.grace_min {
            return Err(VaultError::Config(format!(
                "a gc grace of {:?} is below the smallest allowed, {:?}: a write in flight \
                 could lose a chunk",
                self.grace, self.grace_min
            )));
        }
        Ok(())
    }
}

/// What a [`gc`] run found and did (with [`dry_run`](GcOptions::dry_run): would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Nothing was deleted: the counts say what would have been.
    pub dry_run: bool,
    /// Inodes listed and read.
    pub inodes_listed: u64,
    /// Inodes reachable from the root (0 when the namespace kept changing).
    pub inodes_reachable: u64,
    /// Unreachable inodes deleted.
    pub orphans_deleted: u64,
    /// Unreachable inodes kept because they are younger than the grace.
    pub orphans_kept: u64,
    /// Chunk objects listed.
    pub chunks_listed: u64,
    /// Distinct chunks referenced by the inodes read.
    pub chunks_referenced: u64,
    /// Unreferenced chunks deleted.
    pub chunks_deleted: u64,
    /// Unreferenced chunks kept: younger than the grace, or written again meanwhile.
    pub chunks_kept: u64,
    /// Bytes of the objects (chunks and inodes) deleted.
    pub bytes_freed: u64,
    /// Deletes that failed (each also in [`problems`](Self::problems)); the objects
    /// stay for a later run.
    pub delete_failures: u64,
    /// What went wrong or was skipped, one line each.
    pub problems: Vec<String>,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (deleted, freed) = if self.dry_run {
            ("would delete", "would free")
        } else {
            ("deleted", "freed")
        };
        writeln!(
            f,
            "inodes: {} listed, {} reachable; orphans: {deleted} {}, kept {} (younger than the grace)",
            self.inodes_listed, self.inodes_reachable, self.orphans_deleted, self.orphans_kept
        )?;
        writeln!(
            f,
            "chunks: {} listed, {} referenced; {deleted} {}, kept {} unreferenced (younger than the grace)",
            self.chunks_listed, self.chunks_referenced, self.chunks_deleted, self.chunks_kept
        )?;
        write!(f, "{freed} {} bytes", self.bytes_freed)?;
        if self.delete_failures > 0 {
            write!(f, "; {} deletes failed", self.delete_failures)?;
        }
        write_problems(f, &self.problems)
    }
}

/// The lines of a report's problems, indented under its summary.
pub(crate) fn write_problems(f: &mut fmt::Formatter<'_>, problems: &[String]) -> fmt::Result {
    for problem in problems {
        write!(f, "\n  {problem}")?;
    }
    Ok(())
}

/// Opens the vault at `prefix` of `store` for maintenance: its place, and its inodes
/// read without a cache (a walk reads each once, and must see the store's version).
pub(crate) async fn open_for_maintenance(
    store: Arc<dyn Backend>,
    prefix: &str,
    passphrase: &[u8],
) -> Result<(Location, Arc<Keys>, Inodes), VaultError> {
    let location = Location::checked(store, prefix)?;
    let keys = Arc::new(superblock::unlock(&location, passphrase).await?.keys);
    let inodes = Inodes::new(location.clone(), Arc::clone(&keys), 1, Duration::ZERO);
    Ok((location, keys, inodes))
}

/// Deletes, in the vault at `prefix` of `store`, the chunks no inode references and the
/// inodes no directory names, when last modified more than `options.grace` before the
/// run started (by the store's clock). Safe while hosts use the vault (see FORMAT.md,
/// crash ordering), as long as their
/// [`VaultConfig::gc_grace_min`](super::VaultConfig::gc_grace_min) is at most
/// `options.grace_min`.
///
/// Refuses ([`VaultError::GcRunning`]) while another run is in progress, and stops
/// ([`VaultError::Corrupt`]) at an inode it cannot read, deleting nothing: the chunks it
/// references are unknown (run [`fsck`](super::fsck)). A failed delete is counted and
/// reported, not fatal.
///
/// ```no_run
/// # async fn example(store: std::sync::Arc<dyn s3vfs::store::Backend>) -> Result<(), s3vfs::vault::VaultError> {
/// use s3vfs::vault::{gc, GcOptions};
///
/// let report = gc(store, "home/", b"correct horse", GcOptions::default().with_dry_run(true)).await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub async fn gc(
    store: Arc<dyn Backend>,
    prefix: &str,
    passphrase: &[u8],
    options: GcOptions,
) -> Result<GcReport, VaultError> {
    options.validate()?;
    let (location, _, inodes) = open_for_maintenance(store, prefix, passphrase).await?;
    let marker = Marker::start(&location).await?;
    let mut run = Run {
        inodes,
        cutoff: marker.time.checked_sub(options.grace),
        report: GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        },
        location,
        options,
        started: marker.started,
    };
    let result = run.go().await;
    if let Err(err) = marker.finish(&run.location).await {
        tracing::warn!(error = %err, "could not remove the gc marker");
        run.report
            .problems
            .push(format!("the marker {} stays: {err}", marker.name));
    }
    result.map(|()| run.report)
}

/// A run's marker: written first, its LastModified is the mark time.
struct Marker {
    name: String,
    /// Its LastModified: the mark time `M`.
    time: SystemTime,
    /// Before it was sent.
    started: Instant,
}

impl Marker {
    /// Writes a marker and takes its time; refuses while another run's marker is recent
    /// (and deletes crashed runs' markers).
    async fn start(location: &Location) -> Result<Self, VaultError> {
        let started = Instant::now();
        let name = format!("{MARKERS}{:016x}", rand::random::<u64>());
        match location
            .put(
                &name,
                Bytes::from_static(MARKER_BODY),
                WriteCondition::IfNoneMatch,
            )
            .await?
        {
            Put::Done(_) => {}
            Put::ConditionFailed => {
                return Err(VaultError::GcRunning(location.key(&name).into_string()))
            }
        }
        let mut marker = Self {
            name,
            time: UNIX_EPOCH,
            started,
        };
        match marker.check(location).await {
            Ok(time) => {
                marker.time = time;
                Ok(marker)
            }
            Err(err) => {
                if let Err(cleanup) = marker.finish(location).await {
                    tracing::warn!(error = %cleanup, "could not remove the gc marker");
                }
                Err(err)
            }
        }
    }

    /// The marker's LastModified, once no other run is found in progress.
    async fn check(&self, location: &Location) -> Result<SystemTime, VaultError> {
        let time = location
            .head(&self.name)
            .await?
            .ok_or_else(|| VaultError::corrupt(&self.name, "the gc marker vanished"))?
            .last_modified;
        if time <= UNIX_EPOCH {
            return Err(VaultError::Config(
                "the store gives no LastModified times: gc needs them to spare what is in use"
                    .into(),
            ));
        }
        let mut listing = location.list(MARKERS);
        while let Some(page) = listing.next_page().await? {
            for other in page.objects {
                let Some(other_name) = location.name_of(&other.key).map(str::to_owned) else {
                    continue;
                };
                if other_name == self.name {
                    continue;
                }
                // (A time too far in the future to add to counts as recent.)
                let ends = other.last_modified.checked_add(MAX_RUN);
                if ends.is_none_or(|ends| ends > time) {
                    return Err(VaultError::GcRunning(other.key.into_string()));
                }
                // Older than any run deletes for: a crashed run's.
                location.delete(&other_name).await?;
            }
        }
        Ok(time)
    }

    /// Removes the marker: the run is over.
    async fn finish(&self, location: &Location) -> Result<(), VaultError> {
        location.delete(&self.name).await
    }
}

/// One run's state.
struct Run {
    location: Location,
    inodes: Inodes,
    options: GcOptions,
    /// `M - grace`: only objects last modified before this may go (`None`: nothing).
    cutoff: Option<SystemTime>,
    /// Before the marker was sent.
    started: Instant,
    report: GcReport,
}

/// What the mark found: every inode listed, every directory's entries, every chunk
/// referenced.
#[derive(Default)]
struct Graph {
    /// Inodes listed.
    listed: HashMap<u64, Listed>,
    /// Directories read: the version's ETag (`None`: missing) and the entries.
    dirs: HashMap<u64, DirView>,
    /// Chunks referenced by any inode read.
    referenced: HashSet<ChunkId>,
}

/// An inode as listed.
struct Listed {
    modified: SystemTime,
    size: u64,
    etag: Option<ETag>,
}

/// A directory as read.
struct DirView {
    /// The version read; `None` when there was none (or not a directory).
    etag: Option<ETag>,
    /// Its entries' inodes and kinds.
    children: Vec<(u64, Kind)>,
}

impl Graph {
    /// Records inode `ino` as read (`None`: it is not there): its chunks, and its entries
    /// if it is a directory or `always` (a directory an entry names).
    fn absorb(&mut self, ino: u64, found: Option<&Versioned>, always: bool) {
        let view = match found {
            None => DirView {
                etag: None,
                children: Vec::new(),
            },
            Some(found) => {
                let inode: &Inode = &found.inode;
                self.referenced.extend(inode.chunks.iter().map(|c| c.id));
                if inode.kind != Kind::Dir && !always {
                    return;
                }
                DirView {
                    etag: Some(found.etag.clone()),
                    children: inode.entries.values().map(|e| (e.ino, e.kind)).collect(),
                }
            }
        };
        self.dirs.insert(ino, view);
    }
}

impl Run {
    async fn go(&mut self) -> Result<(), VaultError> {
        let mut graph = self.mark().await?;
        self.report.chunks_referenced = graph.referenced.len() as u64;
        match self.reachable(&mut graph).await? {
            Some(reachable) => {
                self.report.inodes_reachable = reachable.len() as u64;
                self.sweep_inodes(&graph, &reachable).await;
            }
            None => self.report.problems.push(format!(
                "the namespace changed during each of {NAMESPACE_PASSES} walks: no orphan \
                 inode was deleted this time"
            )),
        }
        self.sweep_chunks(&graph.referenced).await
    }

    /// Lists and reads every inode, one page at a time.
    async fn mark(&mut self) -> Result<Graph, VaultError> {
        let mut graph = Graph::default();
        let mut listing = self.location.list("i/");
        while let Some(page) = listing.next_page().await? {
            let listed: Vec<(u64, Listed)> = page
                .objects
                .into_iter()
                .filter_map(|o| {
                    let ino = meta::parse_name(self.location.name_of(&o.key)?)?;
                    let listed = Listed {
                        modified: o.last_modified,
                        size: o.size,
                        etag: o.etag,
                    };
                    Some((ino, listed))
                })
                .collect();
            let inodes = &self.inodes;
            let numbers: Vec<u64> = listed.iter().map(|(ino, _)| *ino).collect();
            let read: Vec<(u64, Result<Option<Versioned>, VaultError>)> =
                futures::stream::iter(numbers)
                    .map(|ino| async move { (ino, inodes.read(ino).await) })
                    .buffer_unordered(self.options.concurrency.max(1))
                    .collect()
                    .await;
            graph.listed.extend(listed);
            for (ino, found) in read {
                match found? {
                    Some(found) => graph.absorb(ino, Some(&found), false),
                    // Deleted since it was listed.
                    None => {
                        graph.listed.remove(&ino);
                    }
                }
            }
            self.report.inodes_listed = graph.listed.len() as u64;
        }
        Ok(graph)
    }

    /// The inodes reachable from the root at one instant: walks the directories read,
    /// reading those not read yet, then checks each is still the version read; until a
    /// walk reads nothing and finds nothing changed (`None` if none does).
    async fn reachable(&self, graph: &mut Graph) -> Result<Option<HashSet<u64>>, VaultError> {
        for _ in 0..NAMESPACE_PASSES {
            let mut changed = false;
            let mut reachable = HashSet::from([ROOT]);
            let mut dirs = Vec::new();
            let mut queue = vec![ROOT];
            while let Some(dir) = queue.pop() {
                if !graph.dirs.contains_key(&dir) {
                    // New since the listing, or changed: read in this walk, so this walk
                    // is not the one of a single instant.
                    changed = true;
                    let found = self.inodes.read(dir).await?;
                    graph.absorb(dir, found.as_ref(), true);
                }
                dirs.push(dir);
                let Some(view) = graph.dirs.get(&dir) else {
                    continue;
                };
                for (child, kind) in &view.children {
                    // A directory by its entry or by its inode: a mislabelled entry is
                    // fsck's to report, not a reason to take what is below it.
                    let is_dir = *kind == Kind::Dir || graph.dirs.contains_key(child);
                    if reachable.insert(*child) && is_dir {
                        queue.push(*child);
                    }
                }
            }
            let location = &self.location;
            let now: Vec<(u64, Result<Option<ETag>, VaultError>)> = futures::stream::iter(dirs)
                .map(|dir| async move {
                    let head = location.head(&meta::name(dir)).await;
                    (dir, head.map(|meta| meta.and_then(|m| m.etag)))
                })
                .buffer_unordered(self.options.concurrency.max(1))
                .collect()
                .await;
            for (dir, etag) in now {
                let etag = etag?;
                if graph.dirs.get(&dir).map(|view| &view.etag) != Some(&etag) {
                    changed = true;
                    graph.dirs.remove(&dir);
                }
            }
            if !changed {
                return Ok(Some(reachable));
            }
        }
        Ok(None)
    }

    /// Whether an object last modified at `modified` is older than the grace.
    fn is_old(&self, modified: SystemTime) -> bool {
        self.cutoff.is_some_and(|cutoff| modified < cutoff)
    }

    /// Deletes the listed inodes outside `reachable` that are older than the grace, each
    /// looked at again just before (a host whose cache still names an orphan may link it
    /// again, which rewrites it first).
    async fn sweep_inodes(&mut self, graph: &Graph, reachable: &HashSet<u64>) {
        let mut orphans = Vec::new();
        for (ino, listed) in &graph.listed {
            if *ino == ROOT || reachable.contains(ino) {
                continue;
            }
            if self.is_old(listed.modified) {
                orphans.push(Candidate {
                    name: meta::name(*ino),
                    size: listed.size,
                    etag: listed.etag.clone(),
                    seen: None,
                });
            } else {
                self.report.orphans_kept += 1;
            }
        }
        let (deleted, kept) = self.delete_unchanged(orphans).await;
        self.report.orphans_deleted += deleted;
        self.report.orphans_kept += kept;
    }

    /// Deletes `candidates` with bounded concurrency (a dry run only counts them), each
    /// only if still the old object it was seen as: how many were deleted, and how many
    /// kept because they changed (or there was no time left to act on what was seen).
    async fn delete_unchanged(&mut self, candidates: Vec<Candidate>) -> (u64, u64) {
        if self.options.dry_run {
            self.report.bytes_freed += candidates.iter().map(|c| c.size).sum::<u64>();
            return (candidates.len() as u64, 0);
        }
        let this = &*self;
        let outcomes: Vec<(Candidate, Outcome)> = futures::stream::iter(candidates)
            .map(|candidate| async move {
                let outcome = this.delete_if_unchanged(&candidate).await;
                (candidate, outcome)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let (mut deleted, mut kept) = (0, 0);
        for (candidate, outcome) in outcomes {
            match outcome {
                Outcome::Deleted => {
                    deleted += 1;
                    self.report.bytes_freed += candidate.size;
                }
                Outcome::Kept => kept += 1,
                Outcome::Gone => {}
                Outcome::Failed(why) => self.failed(&candidate.name, &why),
            }
        }
        (deleted, kept)
    }

    fn failed(&mut self, name: &str, why: &str) {
        self.report.delete_failures += 1;
        self.report
            .problems
            .push(format!("could not delete {name}: {why}"));
    }

    /// Lists the chunks a page at a time and deletes the unreferenced ones older than the
    /// grace.
    async fn sweep_chunks(&mut self, referenced: &HashSet<ChunkId>) -> Result<(), VaultError> {
        let mut listing = self.location.list("c/");
        loop {
            let asked = Instant::now();
            let Some(page) = listing.next_page().await? else {
                return Ok(());
            };
            let mut candidates = Vec::new();
            for object in page.objects {
                let name = self.location.name_of(&object.key);
                let Some(id) = name.and_then(chunks::parse_name) else {
                    continue;
                };
                self.report.chunks_listed += 1;
                if referenced.contains(&id) {
                    continue;
                }
                if !self.is_old(object.last_modified) {
                    self.report.chunks_kept += 1;
                    continue;
                }
                candidates.push(Candidate {
                    name: chunks::name(&id),
                    size: object.size,
                    etag: object.etag,
                    seen: Some(asked),
                });
            }
            let (deleted, kept) = self.delete_unchanged(candidates).await;
            self.report.chunks_deleted += deleted;
            self.report.chunks_kept += kept;
        }
    }

    /// Deletes one candidate if it is still the old object seen: the DELETE is sent
    /// within the delete window of the request that showed it so.
    async fn delete_if_unchanged(&self, candidate: &Candidate) -> Outcome {
        if self.started.elapsed() >= MAX_RUN {
            return Outcome::Failed("the run is older than a run may delete for".into());
        }
        let window = delete_window(self.options.grace_min);
        if candidate.seen.is_none_or(|seen| seen.elapsed() >= window) {
            // What was seen is too old to act on: look again.
            let seen = Instant::now();
            match self.location.head(&candidate.name).await {
                Ok(None) => return Outcome::Gone,
                Ok(Some(meta))
                    if meta.etag == candidate.etag && self.is_old(meta.last_modified) => {}
                Ok(Some(_)) => return Outcome::Kept,
                Err(err) => return Outcome::Failed(err.to_string()),
            }
            if seen.elapsed() >= window {
                // Too slow again: a later run deletes it.
                return Outcome::Kept;
            }
        }
        match self.location.delete(&candidate.name).await {
            Ok(()) => Outcome::Deleted,
            Err(err) => Outcome::Failed(err.to_string()),
        }
    }
}

/// An unreferenced object older than the grace, as listed.
struct Candidate {
    name: String,
    size: u64,
    etag: Option<ETag>,
    /// Before the request that showed it (`None`: look again before deleting).
    seen: Option<Instant>,
}

/// What became of a candidate.
enum Outcome {
    Deleted,
    /// Written again since it was listed, or no time left to act on the listing.
    Kept,
    /// Deleted by someone else.
    Gone,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grace_below_the_minimum_is_refused() {
        let options = GcOptions::default().with_grace(Duration::from_secs(60));
        assert!(options.validate().is_err());
        let ok = GcOptions::default()
            .with_grace_min(Duration::from_secs(1))
            .with_grace(Duration::from_secs(1));
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn the_delete_window_is_short_next_to_the_refresh_age() {
        for grace_min in [Duration::from_millis(100), GC_GRACE_MIN] {
            assert!(4 * delete_window(grace_min) <= refresh_age(grace_min));
            assert!(delete_window(grace_min) <= MAX_DELETE_WINDOW);
        }
    }
}
