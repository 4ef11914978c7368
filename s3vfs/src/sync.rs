//! Locking shared by every component.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also after a panic in another holder: the crate's mutexes guard plain values
/// changed in single statements (maps, counters, windows), which stay consistent when a
/// holder panics, and one panicked task must not take the file system down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
