//! Keeping a long run's resident memory flat.
//!
//! With glibc's defaults the peak RSS of the chip pass grows with the number of scenes although
//! nothing is kept (benches/flat_memory.rs: ×2.49 from 1 to 64 scenes). glibc raises its mmap
//! threshold to the size of each large block freed (up to 32 MiB), so decoded tiles, strips and
//! batches (0.5 to 12 MiB, freed on many threads) end up in per-thread arenas whose free space
//! is not returned to the OS. A fixed threshold maps and unmaps such blocks each time.
//!
//! It is a trade: on the sample scene (benches/flat_memory.rs, 2 threads) 32 scenes peak at
//! 83 MiB instead of 206 MiB (×1.09 of one scene instead of ×2.26), but the chip pass alone
//! takes 14.1 s instead of 11.2 s. The binary applies it only when asked
//! (`TERRASTREAM_BOUNDED_HEAP=1`), for long runs on machines short of memory.

/// Blocks of this size and larger are mapped and unmapped by glibc malloc each time, bytes.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes glibc malloc's mmap threshold at [`MMAP_THRESHOLD`] (which also turns off its dynamic
/// adjustment), unless the user set `MALLOC_MMAP_THRESHOLD_` themselves. Call it first thing in
/// `main`, before threads allocate. Returns whether the setting was applied; false on other C
/// libraries (musl, macOS), whose allocators do not keep freed large blocks this way.
pub fn bound_heap_growth() -> bool {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before other threads
        // exist and takes plain integers.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
