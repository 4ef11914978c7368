//! Exclusion between renames and uploads of the same names.
//!
//! S3 renames by copying and deleting. An upload that lands on the source key after the
//! copy and before the delete would be deleted with it: acknowledged by `close`, then gone.
//! So an upload holds its file's name while it commits, and a rename holds the names it
//! moves (a directory rename: everything below its source and destination) from its first
//! copy until its sources are deleted and open files follow the new names. Uploads do not
//! exclude each other (one open file's uploads are already serialised by its state), nor do
//! renames.
//!
//! Waiters are woken whenever a hold ends and look again; holds are short (one commit, one
//! rename), so this stays simple rather than fair.

use crate::namespace::FsPath;
use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Who holds a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Upload,
    Rename,
}

#[derive(Debug)]
struct Hold {
    id: u64,
    path: FsPath,
    /// The hold covers everything below `path` too.
    below: bool,
    holder: Holder,
}

impl Hold {
    fn conflicts(&self, holder: Holder, path: &FsPath, below: bool) -> bool {
        self.holder != holder
            && (self.path == *path
                || (self.below && path.is_within(&self.path))
                || (below && self.path.is_within(path)))
    }
}

/// The names held by uploads and renames under way.
#[derive(Debug, Default)]
pub(crate) struct NameLocks {
    holds: Mutex<Vec<Hold>>,
    next_id: AtomicU64,
    released: Notify,
}

/// Names held until dropped.
#[derive(Debug)]
pub(crate) struct NameGuard<'a> {
    locks: &'a NameLocks,
    ids: Vec<u64>,
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        lock(&self.locks.holds).retain(|h| !self.ids.contains(&h.id));
        self.locks.released.notify_waiters();
    }
}

impl NameLocks {
    /// Holds `path` for an upload, once no rename holds it.
    pub(crate) async fn for_upload(&self, path: &FsPath) -> NameGuard<'_> {
        self.acquire(Holder::Upload, &[(path.clone(), false)]).await
    }

    /// Holds `names` (each `(path, with everything below it)`) for a rename or an unlink,
    /// once no upload holds any of them.
    pub(crate) async fn for_rename(&self, names: &[(FsPath, bool)]) -> NameGuard<'_> {
        self.acquire(Holder::Rename, names).await
    }

    async fn acquire(&self, holder: Holder, names: &[(FsPath, bool)]) -> NameGuard<'_> {
        loop {
            // Registered before looking, so a release between the look and the wait is
            // not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(guard) = self.try_acquire(holder, names) {
                return guard;
            }
            released.await;
        }
    }

    fn try_acquire(&self, holder: Holder, names: &[(FsPath, bool)]) -> Option<NameGuard<'_>> {
        let mut holds = lock(&self.holds);
        let busy = names.iter().any(|(path, below)| {
            holds
                .iter()
                .any(|hold| hold.conflicts(holder, path, *below))
        });
        if busy {
            return None;
        }
        let mut ids = Vec::with_capacity(names.len());
        for (path, below) in names {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            holds.push(Hold {
                id,
                path: path.clone(),
                below: *below,
                holder,
            });
            ids.push(id);
        }
        Some(NameGuard { locks: self, ids })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn p(s: &str) -> FsPath {
        FsPath::parse(s).unwrap()
    }

    async fn blocked<F: std::future::Future>(f: F) -> bool {
        tokio::time::timeout(Duration::from_millis(30), f)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn an_upload_waits_for_a_rename_of_its_name_or_a_directory_above_it() {
        let locks = NameLocks::default();
        let rename = locks.for_rename(&[(p("d"), true), (p("e"), true)]).await;
        assert!(blocked(locks.for_upload(&p("d/x/f"))).await);
        assert!(blocked(locks.for_upload(&p("e"))).await);
        assert!(!blocked(locks.for_upload(&p("de"))).await, "a sibling");
        drop(rename);
        assert!(!blocked(locks.for_upload(&p("d/x/f"))).await);
    }

    #[tokio::test]
    async fn a_rename_waits_for_uploads_below_it_and_uploads_do_not_exclude_each_other() {
        let locks = Arc::new(NameLocks::default());
        let upload = locks.for_upload(&p("d/f")).await;
        let second = locks.for_upload(&p("d/f")).await;
        assert!(blocked(locks.for_rename(&[(p("d"), true)])).await);
        assert!(
            !blocked(locks.for_rename(&[(p("d"), false)])).await,
            "a file d"
        );
        drop(upload);
        drop(second);
        let waiter = {
            let locks = Arc::clone(&locks);
            tokio::spawn(async move {
                let _held = locks.for_rename(&[(p("d"), true)]).await;
            })
        };
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken when the uploads ended")
            .expect("task");
    }
}
