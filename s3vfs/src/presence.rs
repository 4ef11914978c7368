//! What a directory holds, known well enough to answer "no such file" without a request.
//!
//! The kernel looks every new name up before it creates it, and a lookup of a name nobody
//! has seen costs a HEAD and a LIST (one round trip): a create of a small file would cost
//! two round trips where its one PUT is all the durability contract needs. So a directory
//! gets a *presence*: the names one LIST page of it showed, and when that LIST was asked
//! for. While it is fresh (the negative TTL, the contract for "not there"), a name it does
//! not show is absent, without a request. The file system's own changes never make it
//! wrong: every name this file system creates, removes or looks at afresh is *touched*,
//! and a touched name is never answered from the presence (the other caches, the open
//! files or the store answer it).
//!
//! A presence starts empty for a directory this file system makes (mkdir succeeded, so
//! nothing was in it), or from a LIST in the background once lookups of absent names in a
//! directory become frequent; when it expires in a directory still looked up in, one
//! LIST in the background renews it. A directory whose names do not fit one LIST page has
//! none. Another machine's new file shows within the TTL, as with every cache.

use crate::namespace::FsPath;
use crate::sync::lock;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most names of a directory with a presence: one LIST page.
pub(crate) const MAX_PRESENCE_NAMES: usize = 1000;

/// Lookups of absent names in one directory within a TTL that make it worth a LIST.
const HOT_MISSES: u32 = 4;

/// Most directories tracked at once.
const MAX_DIRS: usize = 4096;

/// What a directory's presence says of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Absence {
    /// The name is not there.
    Absent,
    /// Unknown: ask. With a time, also LIST the directory (asked at that time) in the
    /// background to renew its presence.
    Unknown(Option<Instant>),
}

#[derive(Debug)]
struct Presence {
    /// The names a LIST showed (`None`: not listed yet, only lookups counted).
    names: Option<HashSet<String>>,
    /// When that LIST was asked for (or the directory made, or counting began).
    at: Instant,
    /// Names this file system changed since, and when.
    touched: HashMap<String, Instant>,
    /// Lookups of absent names the store answered since `at`.
    misses: u32,
    /// A LIST to renew it is under way.
    refreshing: bool,
}

impl Presence {
    fn new(names: Option<HashSet<String>>, at: Instant) -> Self {
        Self {
            names,
            at,
            touched: HashMap::new(),
            misses: 0,
            refreshing: false,
        }
    }
}

/// The presences of one file system's directories.
#[derive(Debug)]
pub(crate) struct Presences {
    ttl: Duration,
    dirs: Mutex<HashMap<FsPath, Presence>>,
}

impl Presences {
    /// Presences valid for `ttl` (zero: none is ever used).
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            dirs: Mutex::new(HashMap::new()),
        }
    }

    /// Directory `dir` was just made by this file system: it holds nothing.
    pub(crate) fn made_empty(&self, dir: &FsPath) {
        let mut dirs = lock(&self.dirs);
        self.insert(
            &mut dirs,
            dir,
            Presence::new(Some(HashSet::new()), Instant::now()),
        );
    }

    /// What the presence of `path`'s directory says of it.
    pub(crate) fn lookup(&self, path: &FsPath) -> Absence {
        let Some(name) = path.file_name() else {
            return Absence::Unknown(None);
        };
        let mut dirs = lock(&self.dirs);
        let Some(presence) = dirs.get_mut(&path.parent()) else {
            return Absence::Unknown(None);
        };
        let Some(names) = &presence.names else {
            return Absence::Unknown(None);
        };
        if presence.at.elapsed() < self.ttl {
            let absent = !names.contains(name) && !presence.touched.contains_key(name);
            return if absent {
                Absence::Absent
            } else {
                Absence::Unknown(None)
            };
        }
        if presence.refreshing {
            return Absence::Unknown(None);
        }
        // Expired in a directory still looked up in: renew it.
        presence.refreshing = true;
        Absence::Unknown(Some(Instant::now()))
    }

    /// The store said `path` is absent. Returns a time when its directory has become worth
    /// a LIST (the LIST's asking time).
    pub(crate) fn missed(&self, path: &FsPath) -> Option<Instant> {
        if self.ttl.is_zero() {
            return None;
        }
        let dir = path.parent();
        let mut dirs = lock(&self.dirs);
        if !dirs.contains_key(&dir) {
            self.insert(&mut dirs, &dir, Presence::new(None, Instant::now()));
        }
        let presence = dirs.get_mut(&dir)?;
        if presence.names.is_some() || presence.refreshing {
            return None;
        }
        if presence.at.elapsed() >= self.ttl {
            presence.at = Instant::now();
            presence.misses = 0;
        }
        presence.misses += 1;
        if presence.misses < HOT_MISSES {
            return None;
        }
        presence.refreshing = true;
        Some(Instant::now())
    }

    /// A LIST of `dir` asked for at `asked` showed `names`, all of them: the new presence.
    /// Changes made since it was asked for stay touched.
    pub(crate) fn listed(&self, dir: &FsPath, names: HashSet<String>, asked: Instant) {
        let mut dirs = lock(&self.dirs);
        let touched = dirs
            .remove(dir)
            .map(|old| old.touched)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, at)| *at >= asked)
            .collect();
        let mut presence = Presence::new(Some(names), asked);
        presence.touched = touched;
        self.insert(&mut dirs, dir, presence);
    }

    /// The LIST to renew `dir`'s presence failed or did not fit one page: it has none.
    pub(crate) fn unlisted(&self, dir: &FsPath) {
        lock(&self.dirs).remove(dir);
    }

    /// This file system changed (or looked afresh at) `path`: its directory's presence
    /// no longer answers for it.
    pub(crate) fn touch(&self, path: &FsPath) {
        let Some(name) = path.file_name() else {
            return;
        };
        let mut dirs = lock(&self.dirs);
        // Every lookup and upload comes here: nothing to find costs no path built.
        if dirs.is_empty() {
            return;
        }
        if let Some(presence) = dirs.get_mut(&path.parent()) {
            presence.touched.insert(name.to_owned(), Instant::now());
        }
    }

    /// Directories with a presence.
    pub(crate) fn len(&self) -> usize {
        lock(&self.dirs).len()
    }

    /// Drops the expired presences (but those being renewed) and the room they took.
    pub(crate) fn sweep_expired(&self) {
        let ttl = self.ttl;
        let mut dirs = lock(&self.dirs);
        dirs.retain(|_, p| p.refreshing || p.at.elapsed() < ttl);
        dirs.shrink_to_fit();
    }

    /// Drops the presences of `dir` and every directory below it (a tree moved or changed
    /// wholesale).
    pub(crate) fn forget_tree(&self, dir: &FsPath) {
        lock(&self.dirs).retain(|path, _| !path.is_within(dir));
    }

    /// Keeps `presence` for `dir` in `dirs` (held locked by the caller), unless presences
    /// are off or too many directories have one even after the expired ones are dropped.
    fn insert(&self, dirs: &mut HashMap<FsPath, Presence>, dir: &FsPath, presence: Presence) {
        if self.ttl.is_zero() {
            return;
        }
        if dirs.len() >= MAX_DIRS {
            let ttl = self.ttl;
            dirs.retain(|_, p| p.refreshing || p.at.elapsed() < ttl);
            if dirs.len() >= MAX_DIRS {
                return;
            }
        }
        dirs.insert(dir.clone(), presence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> FsPath {
        FsPath::parse(p).unwrap()
    }

    fn names(list: &[&str]) -> HashSet<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_made_directory_answers_absent_until_a_name_is_touched() {
        let presences = Presences::new(Duration::from_secs(60));
        presences.made_empty(&path("d"));
        assert_eq!(presences.lookup(&path("d/x")), Absence::Absent);
        assert_eq!(presences.lookup(&path("e/x")), Absence::Unknown(None));
        assert_eq!(presences.lookup(&path("d/x/y")), Absence::Unknown(None));
        presences.touch(&path("d/x"));
        assert_eq!(presences.lookup(&path("d/x")), Absence::Unknown(None));
        assert_eq!(presences.lookup(&path("d/y")), Absence::Absent);
        presences.forget_tree(&path("d"));
        assert_eq!(presences.lookup(&path("d/y")), Absence::Unknown(None));
    }

    #[test]
    fn frequent_misses_ask_for_one_list_whose_names_then_answer() {
        let presences = Presences::new(Duration::from_secs(60));
        let asked = (0..HOT_MISSES)
            .filter_map(|i| presences.missed(&path(&format!("d/{i}"))))
            .collect::<Vec<_>>();
        assert_eq!(asked.len(), 1, "one LIST, at the fourth miss");
        assert_eq!(
            presences.missed(&path("d/more")),
            None,
            "one LIST at a time"
        );
        // A change made after the LIST was asked for is not undone by its answer.
        presences.touch(&path("d/new"));
        presences.listed(&path("d"), names(&["a", "b"]), asked[0]);
        assert_eq!(presences.lookup(&path("d/a")), Absence::Unknown(None));
        assert_eq!(presences.lookup(&path("d/new")), Absence::Unknown(None));
        assert_eq!(presences.lookup(&path("d/c")), Absence::Absent);
        presences.unlisted(&path("d"));
        assert_eq!(presences.lookup(&path("d/c")), Absence::Unknown(None));
    }

    #[test]
    fn an_expired_presence_asks_to_be_renewed_once() {
        let presences = Presences::new(Duration::from_millis(200));
        presences.made_empty(&path("d"));
        std::thread::sleep(Duration::from_millis(250));
        assert!(matches!(
            presences.lookup(&path("d/x")),
            Absence::Unknown(Some(_))
        ));
        assert_eq!(presences.lookup(&path("d/x")), Absence::Unknown(None));
        presences.listed(&path("d"), HashSet::new(), Instant::now());
        assert_eq!(presences.lookup(&path("d/x")), Absence::Absent);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let presences = Presences::new(Duration::ZERO);
        presences.made_empty(&path("d"));
        assert_eq!(presences.lookup(&path("d/x")), Absence::Unknown(None));
        assert_eq!(presences.missed(&path("d/x")), None);
    }
}
