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

/// Gives the free memory of every heap back to the kernel (`malloc_trim(0)`). Returns
/// whether any was; `false` with another C library.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory of the allocator's own heaps to
        // the kernel; it has no preconditions.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Calls [`trim`] every `every` on a thread of its own, for the life of the process. With
/// [`tune_for_streaming`]'s thresholds, what a burst freed (the names of a walk over
/// millions of keys the kernel then forgot, the buffers of many files read at once) would
/// otherwise stay mapped; every `every` it is given back, at the cost of a few page faults
/// for the next burst. Call it after forking.
pub fn trim_periodically(every: std::time::Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("s3vfs-trim".to_owned())
        .spawn(move || loop {
            std::thread::sleep(every);
            trim();
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_the_thresholds() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(super::tune_for_streaming());
    }

    #[test]
    fn freed_memory_is_given_back() {
        // 64 MiB in small blocks, freed: below the trim threshold it stays mapped until a
        // trim. (Only checks that trimming runs and finds something to give back.)
        let blocks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![i as u8; 4096]).collect();
        drop(blocks);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(super::trim());
    }
}
