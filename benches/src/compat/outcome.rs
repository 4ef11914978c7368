//! The outcome of one step of a scenario: success, or a [`Failure`] that says what went
//! wrong in the words of whoever noticed (the file system, the kernel, the server).

use s3vfs::store::StoreError;
use s3vfs::VfsError;
use std::io;

/// Result of a scenario step.
pub type Outcome<T> = Result<T, Failure>;

/// Why a step failed: one line for the table.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(String);

impl Failure {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// `Ok` when `holds`, else a failure saying `what` did not hold.
    pub fn check(holds: bool, what: impl FnOnce() -> String) -> Outcome<()> {
        if holds {
            Ok(())
        } else {
            Err(Self(what()))
        }
    }
}

impl From<VfsError> for Failure {
    fn from(e: VfsError) -> Self {
        Self(format!("{} ({e})", errno_name(e.errno())))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self(format!("{} ({e})", errno_name(errno))),
            None => Self(e.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self(format!("store: {e}"))
    }
}

/// The symbolic name of the errnos a file system returns.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EAGAIN => "EAGAIN",
        libc::ESTALE => "ESTALE",
        libc::EINVAL => "EINVAL",
        libc::ENOTSUP => "ENOTSUP",
        libc::ENODATA => "ENODATA",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::E2BIG => "E2BIG",
        libc::EXDEV => "EXDEV",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        other => return format!("errno {other}"),
    };
    name.to_owned()
}
