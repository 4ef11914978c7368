//! s3vfs: an async, POSIX-ish file system over an S3 bucket.
//!
//! What a program uses:
//! - [`S3Vfs`]: files by path, with handles ([`File`]) implementing tokio's
//!   `AsyncRead + AsyncSeek + AsyncWrite`, [`OpenOptions`], [`ReadDir`] and [`Metadata`];
//! - [`S3Fs`] (one bucket) and [`BucketsFs`] (every bucket as a directory): the
//!   inode-based [`Vfs`](vfs::Vfs) trait the FUSE binding calls, with its types in [`vfs`];
//! - [`FsConfig`] (and [`config`]), [`VfsError`];
//! - [`store`]: the [`Backend`](store::Backend) trait (one bucket) and its
//!   `aws-sdk-s3` implementation [`S3Store`](store::s3::S3Store); [`cache`], the optional
//!   data cache; [`namespace`], validated paths; [`recovery`], where files that could not
//!   be uploaded are kept, and how they are re-uploaded; `vault` (feature `vault`), the
//!   vault layout: deduplicated, compressed, encrypted, with O(1) renames (FORMAT.md).
//!
//! Inside, bottom up: the store; the namespace, inode table, metadata caches, listings
//! and read-ahead; `core` (the parts every component of a file system shares and the rules
//! they apply); `objects` (server-side copies and metadata rewrites of single objects);
//! `open_files` (every open file: local changes, streamed and staged uploads, the last
//! close); `handles` (the handle table); `ops` (lookups, listings, opening, and every
//! namespace change, on a context of those components); `fs`, which owns them and only
//! dispatches; `buckets`; `client`.

#![warn(missing_docs, unreachable_pub)]

mod attrs;
mod buckets;
mod budget;
pub mod cache;
mod client;
pub mod config;
mod core;
mod dir;
pub mod error;
mod fs;
mod handles;
mod inode;
mod local_dirs;
mod meta;
mod name_locks;
pub mod namespace;
mod objects;
mod open_files;
mod ops;
mod presence;
mod ranges;
mod read;
pub mod recovery;
pub mod store;
mod sync;
pub mod transfer;
#[cfg(feature = "vault")]
pub mod vault;
pub mod vfs;
mod zeros;

pub use buckets::BucketsFs;
pub use client::{File, Metadata, OpenOptions, ReadDir, S3Vfs};
pub use config::FsConfig;
pub use error::{VfsError, VfsResult};
pub use fs::S3Fs;
