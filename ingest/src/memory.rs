//! Keeping a long run's resident memory flat.
//!
//! With glibc's defaults the peak RSS of the chip pass grows with the number of scenes although
//! nothing is kept (benches/flat_memory.rs: ×2.5 from 1 to 64 scenes). Decoded tiles, strips and
//! batches (0.5 to 12 MiB) are allocated and freed on many threads (tokio's blocking pool grows
//! and shrinks), glibc gives each thread an arena of its own (up to 8 per core), and the free
//! space of every arena stays resident.
//!
//! Two settings keep it flat, measured on the sample scene (benches/flat_memory.rs, 2 threads,
//! release, 64 scenes): one arena for the whole process peaks 8-22 % above one scene (glibc's
//! defaults: about 2.5 times) at no measurable cost in time, while a fixed mmap threshold
//! (128 KiB) stays within 4 % but reads about 40 % slower (every large block is mapped, faulted
//! in and unmapped each time). The binary uses one arena.
//! libtorch allocates through the same malloc; the model-only throughput of the efficiency
//! benchmark (pipelines/benches/efficiency.rs) did not change measurably with one arena.

/// Malloc settings that keep the heap from growing with the scene count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapBound {
    /// One malloc arena shared by all threads (`M_ARENA_MAX = 1`): the default of the binary.
    SingleArena,
    /// Blocks of [`MMAP_THRESHOLD`] bytes and larger mapped and unmapped each time (which also
    /// turns off glibc's dynamic threshold): flatter, and slower.
    MmapThreshold,
}

/// The fixed mmap threshold of [`HeapBound::MmapThreshold`], bytes.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Applies `bound` to glibc malloc, unless the user set the same parameter through the
/// environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`), which then wins. Call it first
/// thing in `main`, before other threads exist: arenas already made are kept. Returns whether the
/// setting was applied; false on other C libraries (musl, macOS), whose allocators do not keep
/// freed blocks per thread this way.
pub fn bound_heap_growth(bound: HeapBound) -> bool {
    let env = match bound {
        HeapBound::SingleArena => "MALLOC_ARENA_MAX",
        HeapBound::MmapThreshold => "MALLOC_MMAP_THRESHOLD_",
    };
    if std::env::var_os(env).is_some() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let (param, value) = match bound {
            HeapBound::SingleArena => (libc::M_ARENA_MAX, 1),
            HeapBound::MmapThreshold => (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int),
        };
        // SAFETY: mallopt only changes allocator parameters and takes plain integers; the caller
        // runs it before other threads allocate.
        unsafe { libc::mallopt(param, value) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
