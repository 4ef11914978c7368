//! The outcome of one step of a scenario: success, or a [`Failure`] that says what went
//! wrong in the words of whoever noticed (the file system, the kernel, the server).

use s3vfs::store::StoreError;
use s3vfs::VfsError;
use std::io;

/// Result of a scenario step.
pub type Outcome<T> = Result<T, Failure>;

/// Why a step did not pass: one line for the table. A limitation is a server's known lack
/// that the file system detected and works around in the documented way (the row says
/// so, and does not fail the run); anything else is a failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    message: String,
    limitation: bool,
}

impl Failure {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            limitation: false,
        }
    }

    /// A known, detected and documented limitation of the server, described by `message`.
    pub fn limitation(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            limitation: true,
        }
    }

    /// Whether this is a [`limitation`](Self::limitation) rather than a failure.
    pub fn is_limitation(&self) -> bool {
        self.limitation
    }

    /// `Ok` when `holds`, else a failure saying `what` did not hold.
    pub fn check(holds: bool, what: impl FnOnce() -> String) -> Outcome<()> {
        if holds {
            Ok(())
        } else {
            Err(Self::new(what()))
        }
    }
}

impl From<VfsError> for Failure {
    fn from(e: VfsError) -> Self {
        Self::new(format!("{} ({e})", errno_name(e.errno())))
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::new(format!("{} ({e})", errno_name(errno))),
            None => Self::new(e.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::new(format!("store: {e}"))
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
