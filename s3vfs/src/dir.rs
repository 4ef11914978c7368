//! Directory listings: merging LIST pages into directory entries.
//!
//! A LIST with delimiter `/` answers objects and common prefixes as two sorted lists. The
//! [`ListingMerger`] walks them in key order and applies the namespace rules:
//! - a directory shadows a file of the same name (`a` and `a/x`: `a` is a directory);
//!   because keys between `a` and `a/` (such as `a!b`) sort in between, a file is held back
//!   until the listing has passed the point where `a/` would appear;
//! - the directory's own `dir/` marker object is not an entry;
//! - keys whose name cannot be a file name are reported as hidden.
//!
//! The merger carries state across pages, so a directory of any size is listed one page
//! at a time without loading it whole.

use crate::meta::{Listing, Stat};
use crate::namespace::{FsPath, NameProblem, Namespace};
use crate::store::PageCursor;
use crate::store::{ListPage, ListedObject, StoreResult};
use crate::vfs::FileKind;
use crate::vfs::{DirEntry, Ino};
use std::collections::VecDeque;

/// One item of a merged listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Listed {
    /// A file `name` backed by the object.
    File(String, ListedObject),
    /// A subdirectory `name`.
    Dir(String),
    /// A key (or common prefix) that cannot be shown, and why.
    Hidden(String, NameProblem),
}

/// Turns successive LIST pages of one directory into entries.
#[derive(Debug)]
pub(crate) struct ListingMerger {
    dir_prefix: String,
    /// Files waiting to learn whether a directory of the same name follows.
    held: VecDeque<(String, ListedObject)>,
    /// Last directory name emitted, to drop repeats.
    last_dir: Option<String>,
}

impl ListingMerger {
    /// A merger for the directory whose LIST prefix is `dir_prefix`.
    pub(crate) fn new(dir_prefix: &str) -> Self {
        Self {
            dir_prefix: dir_prefix.to_owned(),
            held: VecDeque::new(),
            last_dir: None,
        }
    }

    /// Adds one page; completed items are appended to `out`.
    pub(crate) fn push_page(&mut self, page: ListPage, out: &mut Vec<Listed>) {
        let mut objects = page.objects.into_iter().peekable();
        let mut prefixes = page.common_prefixes.into_iter().peekable();
        loop {
            let take_object = match (objects.peek(), prefixes.peek()) {
                (Some(o), Some(p)) => o.key.as_str() < p.as_str(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_object {
                if let Some(object) = objects.next() {
                    self.push_object(object, out);
                }
            } else if let Some(prefix) = prefixes.next() {
                self.push_prefix(prefix, out);
            }
        }
    }

    /// Ends the listing: releases every held file.
    pub(crate) fn finish(&mut self, out: &mut Vec<Listed>) {
        out.extend(self.held.drain(..).map(|(n, o)| Listed::File(n, o)));
    }

    /// Releases held files that sort before `boundary + "/"` can no longer appear.
    fn release_before(&mut self, listed: &str, out: &mut Vec<Listed>) {
        while let Some((name, _)) = self.held.front() {
            let shadow = format!("{}{}/", self.dir_prefix, name);
            if shadow.as_str() < listed {
                if let Some((name, object)) = self.held.pop_front() {
                    out.push(Listed::File(name, object));
                }
            } else {
                break;
            }
        }
    }

    fn push_object(&mut self, object: ListedObject, out: &mut Vec<Listed>) {
        self.release_before(object.key.as_str(), out);
        match Namespace::child_name(&self.dir_prefix, object.key.as_str()) {
            Ok(None) => {}
            Ok(Some(name)) => {
                let name = name.to_owned();
                self.held.push_back((name, object));
            }
            Err(problem) => out.push(Listed::Hidden(object.key.into_string(), problem)),
        }
    }

    fn push_prefix(&mut self, prefix: String, out: &mut Vec<Listed>) {
        self.release_before(&prefix, out);
        match Namespace::child_name(&self.dir_prefix, &prefix) {
            Ok(None) => {}
            Ok(Some(name)) => {
                let name = name.to_owned();
                // A file of the same name is shadowed by this directory.
                self.held.retain(|(held, _)| *held != name);
                if self.last_dir.as_deref() != Some(name.as_str()) {
                    self.last_dir = Some(name.clone());
                    out.push(Listed::Dir(name));
                }
            }
            Err(problem) => out.push(Listed::Hidden(prefix, problem)),
        }
    }
}

/// The number of a listed entry before it is handed out (numbers are taken then, so that
/// one handed to the kernel is counted and one forgotten meanwhile is not handed out).
pub(crate) const UNNUMBERED: Ino = Ino(0);

/// A produced entry of an open directory.
pub(crate) struct WindowEntry {
    /// The entry; its number is [`UNNUMBERED`] unless it is `.` or `..`.
    pub(crate) entry: DirEntry,
    /// Its path; `None` for `.` and `..`, whose numbers are fixed at open.
    pub(crate) path: Option<FsPath>,
}

/// The state of one open directory: a window of produced entries over the LIST stream.
///
/// Entries are numbered by offset (`.` is 1, `..` is 2, then the listing); inode numbers
/// are taken when an entry is handed out. The window keeps
/// entries the caller has not confirmed yet (those after the offset it last passed), so a
/// reply buffer that filled up can be re-read; an offset before the window restarts the
/// listing from the start and skips forward.
pub(crate) struct DirStream {
    pub(crate) path: FsPath,
    pub(crate) ino: Ino,
    pub(crate) parent: Ino,
    pub(crate) window: VecDeque<WindowEntry>,
    pub(crate) produced: u64,
    /// The continuation token of the next LIST page.
    pub(crate) token: Option<String>,
    /// Checks the pages of the pass over the store, so that a malformed one fails the
    /// listing instead of ending it early or looping.
    pub(crate) cursor: PageCursor,
    pub(crate) listing_done: bool,
    pub(crate) merger: ListingMerger,
    /// Files created here by this mount and not uploaded yet, not seen in the listing so
    /// far; listed at the end.
    pub(crate) pending: Vec<(String, Stat)>,
    /// A fresh cached listing being served, and the next index in it.
    pub(crate) cached: Option<(Listing, usize)>,
    /// What a full pass over the store listed so far, to cache at its end (`None` when the
    /// pass did not start at the beginning or grew past the cache's bound).
    pub(crate) collected: Option<Vec<(String, Stat)>>,
    /// The next LIST page, asked for while the kernel takes in the current one.
    pub(crate) prefetch: Option<PrefetchedPage>,
}

/// A LIST page asked for ahead of the reader: the continuation token it continues from,
/// and the request under way (aborted when dropped).
#[derive(Debug)]
pub(crate) struct PrefetchedPage {
    pub(crate) token: String,
    pub(crate) page: tokio::task::JoinHandle<StoreResult<ListPage>>,
}

impl Drop for PrefetchedPage {
    fn drop(&mut self) {
        self.page.abort();
    }
}

impl DirStream {
    /// Back to the first entry.
    pub(crate) fn restart(&mut self, ns: &Namespace) {
        self.window.clear();
        for (ino, name) in [(self.ino, "."), (self.parent, "..")] {
            self.window.push_back(WindowEntry {
                entry: DirEntry {
                    ino,
                    name: name.to_owned(),
                    kind: FileKind::Directory,
                    next_offset: self.window.len() as u64 + 1,
                    attr: None,
                },
                path: None,
            });
        }
        self.produced = 2;
        self.token = None;
        self.prefetch = None;
        self.listing_done = false;
        let prefix = ns.dir_prefix(&self.path);
        self.merger = ListingMerger::new(&prefix);
        self.cursor = PageCursor::objects(prefix);
    }

    /// Offset before the first entry in the window.
    pub(crate) fn window_base(&self) -> u64 {
        self.window
            .front()
            .map_or(self.produced, |e| e.entry.next_offset - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ObjectKey;
    use std::time::SystemTime;

    fn obj(key: &str) -> ListedObject {
        ListedObject {
            key: ObjectKey::new(key),
            size: 1,
            last_modified: SystemTime::UNIX_EPOCH,
            etag: None,
            storage_class: None,
        }
    }

    fn names(items: &[Listed]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Listed::File(n, _) => format!("f:{n}"),
                Listed::Dir(n) => format!("d:{n}"),
                Listed::Hidden(k, _) => format!("h:{k}"),
            })
            .collect()
    }

    #[test]
    fn directory_shadows_file_across_pages() {
        let mut merger = ListingMerger::new("p/");
        let mut out = Vec::new();
        merger.push_page(
            ListPage {
                objects: vec![obj("p/"), obj("p/a"), obj("p/a!b")],
                common_prefixes: vec![],
                is_truncated: true,
                next_continuation_token: Some("t".into()),
            },
            &mut out,
        );
        merger.push_page(
            ListPage {
                objects: vec![obj("p/b")],
                common_prefixes: vec!["p/a/".into(), "p/c/".into()],
                ..ListPage::default()
            },
            &mut out,
        );
        merger.finish(&mut out);
        assert_eq!(names(&out), vec!["d:a", "f:a!b", "f:b", "d:c"]);
    }

    #[test]
    fn invalid_names_are_hidden() {
        let mut merger = ListingMerger::new("");
        let mut out = Vec::new();
        merger.push_page(
            ListPage {
                objects: vec![obj("ok")],
                common_prefixes: vec!["../".into(), "./".into(), "/".into()],
                ..ListPage::default()
            },
            &mut out,
        );
        merger.finish(&mut out);
        assert_eq!(names(&out), vec!["h:../", "h:./", "h:/", "f:ok"]);
    }
}
