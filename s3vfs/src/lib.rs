//! s3vfs: an async, POSIX-ish file system over an S3 bucket.
//!
//! Layers, bottom up:
//! - [`store`]: the [`ObjectStore`](store::ObjectStore) trait (one bucket) and its
//!   `aws-sdk-s3` implementation;
//! - [`namespace`]: the mapping between object keys and file paths, and name validation;
//! - [`inode`], [`meta`], [`dir`], [`read`]: inode numbers, metadata caches, directory
//!   listings and read-ahead;
//! - the file system over a store ([`S3Fs`](fs::S3Fs)), implementing the inode-based
//!   [`Vfs`](vfs::Vfs) trait that the FUSE binding calls. It owns its components: `core`
//!   (the parts every component shares and the rules they apply), `objects` (server-side
//!   copies and metadata rewrites of single objects), `open_files` (every open file: local
//!   changes, streamed and staged uploads, the last close), `handles` (the handle table),
//!   and `ops` (lookups, listings, opening, and every namespace change, on a context of
//!   those components); [`fs`] only dispatches;
//! - [`recovery`]: where files that could not be uploaded are kept, and how they are
//!   re-uploaded;
//! - [`buckets`]: the root of a mount without a bucket: every bucket is a directory;
//! - [`client`]: a path-based API for Rust programs, with file handles implementing
//!   tokio's `AsyncRead + AsyncSeek`.

pub mod attrs;
pub mod buckets;
pub mod budget;
pub mod cache;
pub mod client;
pub mod config;
mod core;
pub mod dir;
pub mod error;
pub mod fs;
mod handles;
pub mod inode;
pub mod malloc;
pub mod meta;
mod name_locks;
pub mod namespace;
mod objects;
mod open_files;
mod ops;
pub mod ranges;
pub mod read;
pub mod recovery;
pub mod store;
mod sync;
pub mod vfs;
mod zeros;

pub use buckets::BucketsFs;
pub use client::{File, Metadata, ReadDir, S3Vfs};
pub use config::FsConfig;
pub use error::{VfsError, VfsResult};
pub use fs::S3Fs;
