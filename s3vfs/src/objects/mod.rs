//! Operations on single objects that every component needs: server-side copies of any
//! size (`copy`) and in-place rewrites of an object's or a marker's user metadata
//! (`metadata`). They work on the [`Core`](crate::core::Core) alone and tell nobody:
//! the caller updates open files and caches.

pub(crate) mod copy;
pub(crate) mod metadata;
