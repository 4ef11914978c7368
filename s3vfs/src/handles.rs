//! The handle table: what each open file or directory handle refers to.
//!
//! A handle holds its inode open in the inode table (so the inode keeps its number while
//! it is in use) and either the open file shared by every handle of that inode, with the
//! flags it was opened with, or the listing cursor of an open directory.

use crate::dir::DirStream;
use crate::error::{VfsError, VfsResult};
use crate::inode::InodeTable;
use crate::open_files::OpenFile;
use crate::sync::lock;
use crate::vfs::{Handle, Ino, OpenFlags};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open handle.
pub(crate) enum OpenHandle {
    /// A file handle.
    File {
        ino: Ino,
        file: Arc<OpenFile>,
        flags: OpenFlags,
    },
    /// A directory handle: its listing cursor, one reader at a time.
    Dir {
        ino: Ino,
        stream: Arc<tokio::sync::Mutex<DirStream>>,
    },
}

impl OpenHandle {
    /// The inode the handle is open on.
    pub(crate) fn ino(&self) -> Ino {
        match self {
            OpenHandle::File { ino, .. } | OpenHandle::Dir { ino, .. } => *ino,
        }
    }
}

/// The open handles of one file system, by number.
pub(crate) struct HandleTable {
    by_number: Mutex<HashMap<u64, OpenHandle>>,
    next: AtomicU64,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self {
            by_number: Mutex::new(HashMap::new()),
            // 0 is never handed out.
            next: AtomicU64::new(1),
        }
    }
}

impl HandleTable {
    /// Registers `handle`; its inode stays in `inodes` until the handle is closed.
    pub(crate) fn insert(&self, inodes: &InodeTable, handle: OpenHandle) -> Handle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if !inodes.open(handle.ino()) {
            // Every caller opens an inode it holds a lookup of; only one that broke the
            // protocol gets here, and its handle then works by the path it resolved.
            tracing::debug!(ino = handle.ino().0, "a handle opened on a forgotten inode");
        }
        lock(&self.by_number).insert(id, handle);
        Handle(id)
    }

    /// A new handle on the open file `file` of `ino`.
    pub(crate) fn open_file(
        &self,
        inodes: &InodeTable,
        ino: Ino,
        file: Arc<OpenFile>,
        flags: OpenFlags,
    ) -> Handle {
        self.insert(inodes, OpenHandle::File { ino, file, flags })
    }

    /// The open file behind a file handle, and the flags it was opened with.
    pub(crate) fn file(&self, handle: Handle) -> VfsResult<(Arc<OpenFile>, OpenFlags)> {
        match lock(&self.by_number).get(&handle.0) {
            Some(OpenHandle::File { file, flags, .. }) => Ok((Arc::clone(file), *flags)),
            _ => Err(VfsError::BadHandle),
        }
    }

    /// The listing cursor behind a directory handle.
    pub(crate) fn dir(&self, handle: Handle) -> VfsResult<Arc<tokio::sync::Mutex<DirStream>>> {
        match lock(&self.by_number).get(&handle.0) {
            Some(OpenHandle::Dir { stream, .. }) => Ok(Arc::clone(stream)),
            _ => Err(VfsError::BadHandle),
        }
    }

    /// Takes `handle` out of the table (`None` if it was not in it).
    pub(crate) fn remove(&self, handle: Handle) -> Option<OpenHandle> {
        lock(&self.by_number).remove(&handle.0)
    }
}
