//! FUSE binding of s3vfs: the kernel's requests, translated one to one into calls of the
//! core's inode-based [`Vfs`](s3vfs::vfs::Vfs) trait.
//!
//! - [`adapter`]: [`FuseAdapter`], the `fuser::Filesystem` implementation. It owns no file
//!   system logic and no S3 knowledge: each callback spawns the core call on a tokio runtime
//!   and replies from the task, so a FUSE thread never waits on the network;
//! - [`mount`](mod@mount): [`mount()`] with [`MountOptions`], the checks of the mountpoint that turn
//!   the usual mistakes (a dead previous mount, a file, a non-empty directory) into clear
//!   errors, and the [`MountGuard`] that unmounts on drop;
//! - [`local`]: a loopback S3 endpoint over in-memory buckets and a real `S3Store` client for
//!   it, as `s3vfs demo`, `s3vfs serve` and the mount tests use it.
//!
//! ```no_run
//! # async fn example(vfs: std::sync::Arc<dyn s3vfs::vfs::Vfs>) -> Result<(), s3vfs_fuse::MountError> {
//! use s3vfs_fuse::{mount, MountOptions};
//! let guard = mount(vfs, "/mnt/bucket".as_ref(), &MountOptions::default().with_read_only(true),
//!                   tokio::runtime::Handle::current())?;
//! guard.unmounted().await; // until `fusermount3 -u /mnt/bucket`
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod adapter;
#[cfg(feature = "demo")]
pub mod local;
pub mod malloc;
pub mod mount;

pub use adapter::{AdapterConfig, FuseAdapter};
pub use mount::{mount, MountError, MountGuard, MountOptions};
