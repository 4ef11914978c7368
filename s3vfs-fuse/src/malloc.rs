//! Tuning of the C allocator for streaming large objects.
//!
//! Read-ahead keeps the HTTP client's receive buffers alive until the reader takes them,
//! so the client keeps allocating fresh buffers of a few hundred KiB, and every upload
//! part is a fresh buffer of 8 MiB. glibc serves allocations above its `mmap` threshold
//! with fresh mappings and trims freed memory at the top of its heaps back to the
//! kernel, so every such buffer costs page faults and zeroing: measured on the
//! benchmark's 1 GiB read, about a quarter more CPU and 0.75 instead of 0.9 of the raw
//! GET throughput; on the 1 GiB write, 0.83 instead of 0.89 through the mount.
//! [`tune_for_streaming`] raises both thresholds (the mmap one to glibc's largest, 32 MiB)
//! so freed buffers are reused.
//!
//! Programs choose their allocator, so the library never does this on its own: the
//! `s3vfs` binary calls it at start, and a program embedding the library may.

/// Largest allocation served from the heap rather than a fresh mapping, in bytes.
pub const MMAP_THRESHOLD: usize = 32 * 1024 * 1024;
/// Free bytes at the top of a heap kept before any are given back to the kernel.
pub const TRIM_THRESHOLD: usize = 256 * 1024 * 1024;

/// Sets glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` to [`MMAP_THRESHOLD`] and
/// [`TRIM_THRESHOLD`]. Returns whether both were accepted; does nothing (and returns
/// `false`) with another C library. Call it early, before threads allocate.
///
/// The cost: up to [`TRIM_THRESHOLD`] of freed memory per heap stays mapped after a
/// burst of reads instead of being returned at once.
pub fn tune_for_streaming() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let as_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes allocator parameters; it has no memory-safety
        // preconditions and reports a refused value by returning 0.
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(MMAP_THRESHOLD)) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(TRIM_THRESHOLD)) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_thresholds() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(super::tune_for_streaming());
    }
}
