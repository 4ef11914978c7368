//! Listing directories: LIST pages merged into entries (`dir::ListingMerger`), objects of
//! up to 4095 bytes looked at (one may be a symbolic link or a special file), files this
//! mount created and has not uploaded yet added at the end, and whole listings cached
//! for the metadata TTL.

use super::Ops;
use crate::attrs::MAX_SYMLINK_TARGET;
use crate::dir::{DirStream, Listed, ListingMerger, PrefetchedPage, WindowEntry, UNNUMBERED};
use crate::error::{VfsError, VfsResult};
use crate::handles::OpenHandle;
use crate::meta::Stat;
use crate::namespace::{FileName, FsPath};
use crate::store::{ListRequest, ObjectKey, ObjectMeta, PageCursor, StoreError, StoreErrorKind};
use crate::vfs::{DirEntry, FileKind, Handle, Ino};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::Arc;

/// HEAD requests in flight while a listing looks for symbolic links and special files among
/// small objects.
const LISTING_HEADS_IN_FLIGHT: usize = 32;

/// Largest directory whose listing is cached, in entries.
const MAX_CACHED_LISTING: usize = 200_000;

impl Ops<'_> {
    /// Opens directory `ino` for listing; nothing is asked before the first read.
    pub(crate) async fn opendir(&self, ino: Ino) -> VfsResult<Handle> {
        let path = self.core.dir_path(ino)?;
        let stream = self.new_dir_stream(path, ino);
        Ok(self.handles.insert(
            &self.core.inodes,
            OpenHandle::Dir {
                ino,
                stream: Arc::new(tokio::sync::Mutex::new(stream)),
            },
        ))
    }

    pub(super) fn new_dir_stream(&self, path: FsPath, ino: Ino) -> DirStream {
        let parent = self.core.inodes.find(&path.parent()).unwrap_or(Ino::ROOT);
        let prefix = self.core.ns.dir_prefix(&path);
        let mut stream = DirStream {
            path,
            ino,
            parent,
            window: VecDeque::new(),
            produced: 0,
            token: None,
            listing_done: false,
            merger: ListingMerger::new(&prefix),
            cursor: PageCursor::objects(prefix),
            pending: Vec::new(),
            cached: None,
            collected: None,
            prefetch: None,
        };
        self.restart_dir(&mut stream);
        stream
    }

    pub(super) fn restart_dir(&self, stream: &mut DirStream) {
        stream.restart(&self.core.ns);
        stream.pending = self.open_files.pending_names(&stream.path);
        stream
            .pending
            .extend(self.core.local_dirs.children(&stream.path));
        stream.cached = self.core.meta.listing(&stream.path).map(|l| (l, 0));
        stream.collected = stream.cached.is_none().then(Vec::new);
    }

    /// The next entries of a listing served from the listing cache.
    pub(super) fn fill_from_cache(&self, stream: &mut DirStream) -> Vec<(String, FsPath, Stat)> {
        let Some((listing, at)) = stream.cached.as_mut() else {
            return Vec::new();
        };
        let end = (*at + self.core.config.list_page_size.max(1) as usize).min(listing.len());
        let page: Vec<(String, FsPath, Stat)> = listing[*at..end]
            .iter()
            .filter_map(|(name, stat)| {
                let file_name = FileName::check(name).ok()?;
                Some((name.clone(), stream.path.join(&file_name), stat.clone()))
            })
            .collect();
        *at = end;
        if end == listing.len() {
            stream.listing_done = true;
        }
        page
    }

    /// Fetches one LIST page into the stream's window.
    pub(super) async fn fill_dir(&self, stream: &mut DirStream) -> VfsResult<()> {
        let mut listed = if stream.cached.is_some() {
            self.fill_from_cache(stream)
        } else {
            self.fill_from_store(stream).await?
        };
        if !stream.pending.is_empty() {
            stream
                .pending
                .retain(|(name, _)| !listed.iter().any(|(listed, _, _)| listed == name));
            if stream.listing_done {
                for (name, stat) in std::mem::take(&mut stream.pending) {
                    if let Ok(file_name) = FileName::check(&name) {
                        listed.push((name, stream.path.join(&file_name), stat));
                    }
                }
            }
        }
        for (name, path, stat) in listed {
            // A file with local changes shows them, not the store's version.
            let stat = self.open_files.open_file_stat(&path).unwrap_or(stat);
            self.core.meta.put_listed(&path, stat.clone());
            stream.produced += 1;
            stream.window.push_back(WindowEntry {
                entry: DirEntry {
                    ino: UNNUMBERED,
                    name,
                    kind: stat.kind,
                    next_offset: stream.produced,
                    attr: Some(self.core.attr(UNNUMBERED, &stat)),
                },
                path: Some(path),
            });
        }
        Ok(())
    }

    /// Up to `max_entries` entries of the open directory `handle` from `offset` (see
    /// [`Vfs::readdir`]), numbered now; with `counted`, each but `.` and `..` counts one
    /// lookup (`readdirplus`), else the numbers are only shown.
    pub(crate) async fn list_dir(
        &self,
        handle: Handle,
        offset: u64,
        max_entries: usize,
        counted: bool,
    ) -> VfsResult<Vec<DirEntry>> {
        let stream = self.handles.dir(handle)?;
        // One reader of a directory handle at a time: the stream is a cursor.
        let mut stream = stream.lock().await;
        if offset < stream.window_base() {
            self.restart_dir(&mut stream);
        }
        let wanted = offset.saturating_add(max_entries as u64);
        while stream.produced < wanted && !stream.listing_done {
            self.fill_dir(&mut stream).await?;
        }
        while stream
            .window
            .front()
            .is_some_and(|e| e.entry.next_offset <= offset)
        {
            stream.window.pop_front();
        }
        Ok(stream
            .window
            .iter()
            .filter(|e| e.entry.next_offset > offset)
            .take(max_entries)
            .map(|produced| {
                let mut entry = produced.entry.clone();
                if let Some(path) = &produced.path {
                    entry.ino = if counted {
                        self.core.inodes.lookup(path, entry.kind)
                    } else {
                        self.core.inodes.assign(path, entry.kind)
                    };
                    if let Some(attr) = entry.attr.as_mut() {
                        attr.ino = entry.ino;
                    }
                }
                entry
            })
            .collect())
    }

    /// The LIST request of the directory's page after `token` (`None`: the first).
    fn page_request(&self, stream: &DirStream, token: Option<String>) -> ListRequest {
        self.core
            .dir_listing(&stream.path, self.core.config.list_page_size, token)
    }

    /// One LIST page of the directory, as entries; the last page stores the whole listing
    /// in the listing cache. The page after it is asked for at once, in the background.
    pub(super) async fn fill_from_store(
        &self,
        stream: &mut DirStream,
    ) -> VfsResult<Vec<(String, FsPath, Stat)>> {
        let token = stream.token.take();
        let prefetched = stream
            .prefetch
            .take()
            .filter(|p| token.as_deref() == Some(p.token.as_str()));
        let page = match prefetched {
            Some(mut prefetched) => match (&mut prefetched.page).await {
                Ok(page) => page,
                Err(e) => Err(StoreError::new(
                    StoreErrorKind::Other,
                    format!("the LIST task ended: {e}"),
                )),
            },
            // The lookup that found the directory may just have fetched the first page.
            None => match token
                .is_none()
                .then(|| self.core.meta.take_first_page(&stream.path))
                .flatten()
            {
                Some(page) => Ok(page),
                None => self.core.store.list(self.page_request(stream, token)).await,
            },
        }
        .map_err(|e| VfsError::from_store(stream.path.as_str(), e))?;
        stream.token = stream
            .cursor
            .next_page(&page)
            .map_err(|e| VfsError::from_store(stream.path.as_str(), e))?;
        let last_page = stream.token.is_none();
        if let Some(next) = &stream.token {
            // The next page travels while the kernel takes in this one.
            let store = Arc::clone(&self.core.store);
            let request = self.page_request(stream, Some(next.clone()));
            stream.prefetch = Some(PrefetchedPage {
                token: next.clone(),
                page: tokio::spawn(async move { store.list(request).await }),
            });
        }
        let mut items = Vec::new();
        stream.merger.push_page(page, &mut items);
        if last_page {
            stream.merger.finish(&mut items);
            stream.listing_done = true;
        }
        // What LIST cannot tell: whether a small object is a symbolic link, or an empty one
        // a fifo, device or socket (the type is in the mode, in the metadata). Such objects
        // are looked at with HEAD, in parallel, unless this version was looked at before;
        // larger objects cannot be links, and special files are empty.
        let mut listed = Vec::with_capacity(items.len());
        for item in items {
            let (name, stat) = match item {
                Listed::Hidden(key, problem) => {
                    self.core.warn_hidden(&key, problem);
                    continue;
                }
                Listed::Dir(name) => {
                    // Keep what the directory's marker said (its mode), if it was read.
                    let previous = FileName::check(&name)
                        .ok()
                        .and_then(|n| self.core.meta.get_any(&stream.path.join(&n)))
                        .filter(|p| p.kind == FileKind::Directory && p.from_head);
                    let stat = previous.unwrap_or_else(|| Stat::directory(self.core.started));
                    (name, stat)
                }
                Listed::File(name, object) => {
                    let Ok(file_name) = FileName::check(&name) else {
                        continue;
                    };
                    let previous = self.core.meta.get_any(&stream.path.join(&file_name));
                    (name, Stat::from_listing(&object, previous.as_ref()))
                }
            };
            let Ok(file_name) = FileName::check(&name) else {
                continue;
            };
            listed.push((name, stream.path.join(&file_name), stat));
        }
        let candidates: Vec<(usize, ObjectKey)> = listed
            .iter()
            .enumerate()
            .filter(|(_, (_, _, stat))| {
                stat.kind != FileKind::Directory
                    && !stat.from_head
                    && stat.size <= MAX_SYMLINK_TARGET
            })
            .filter_map(|(i, (_, path, _))| Some((i, self.core.ns.file_key(path).ok()?)))
            .collect();
        let store = Arc::clone(&self.core.store);
        let found: Vec<(usize, Option<ObjectMeta>)> = futures::stream::iter(candidates)
            .map(move |(i, key)| {
                let store = Arc::clone(&store);
                async move { (i, store.head(&key).await.ok()) }
            })
            .buffer_unordered(LISTING_HEADS_IN_FLIGHT)
            .collect()
            .await;
        for (i, meta) in found {
            // An object deleted since the LIST keeps what LIST said; the next lookup tells.
            if let (Some(meta), Some(entry)) = (meta, listed.get_mut(i)) {
                entry.2 = Stat::from_head(&meta);
            }
        }
        if let Some(collected) = stream.collected.as_mut() {
            collected.extend(
                listed
                    .iter()
                    .map(|(name, _, stat)| (name.clone(), stat.clone())),
            );
            if collected.len() > MAX_CACHED_LISTING {
                stream.collected = None;
            }
        }
        if stream.listing_done {
            if let Some(collected) = stream.collected.take() {
                self.core.meta.put_listing(&stream.path, collected);
            }
        }
        Ok(listed)
    }
}
