//! Test support for s3vfs: everything needed to run the file system without a real S3.
//!
//! - [`mem`]: [`MemStore`], an in-memory bucket with S3's rules (LIST paging, ETags,
//!   conditional writes, multipart limits, archived objects), optionally persisted to a
//!   directory; [`MemBuckets`] and [`SingleBucket`] serve stores by bucket name;
//! - [`data`]: test content ([`data::noise`]: incompressible bytes from a seed);
//! - [`fault`]: wrappers that count requests, inject failures and throttling, cut GET
//!   bodies short and add latency, composable around any store;
//! - [`model`]: the reference model the property tests compare the file system with;
//! - [`posix`]: a strictly POSIX reference model, for layouts with directories of their
//!   own (the vault);
//! - `server` (feature `server`, on by default): `S3Server`, any store served as an S3
//!   endpoint over HTTP on loopback, for the real `S3Store` client and other S3 tools.
//!
//! Features: `server` (the HTTP endpoint: `s3s`, `hyper`) and `proptest` (the
//! `model::strategies`), both on by default; without them the fakes and wrappers build
//! with neither.
//!
//! Shared helpers for tests live here so that no test copies them.

#![warn(missing_docs)]

pub mod data;
pub mod fault;
pub mod instrumented;
pub mod mem;
pub mod model;
pub mod pace;
pub mod posix;
#[cfg(feature = "server")]
pub mod server;

pub use instrumented::InstrumentedBuckets;
pub use mem::{MemBuckets, MemStore, SingleBucket};
