#pragma once
// glibc malloc settings for training processes.
//
// LibTorch's CPU allocator takes every tensor from malloc. With glibc's defaults, blocks
// above the (dynamic) mmap threshold are mmap'ed and munmap'ed on free, and the heap top
// is trimmed back to the OS: a training step that frees and re-allocates the same
// activations then page-faults on fresh zeroed pages every time, with most of the CPU
// time in the kernel. Keeping blocks up to 32 MiB on the heap and never trimming it lets
// steps reuse their memory (bench/RESULTS.md, "Allocator"). The process keeps its
// high-water mark.

namespace retort {

/// Whether the user asked for the system's allocators as they are (RETORT_MALLOC=system):
/// then neither these settings nor retort's CPU allocator (trainer/cpu_allocator.h) apply.
bool system_malloc_requested();

/// Applies the settings unless the user chose their own: any of GLIBC_TUNABLES,
/// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ set, or RETORT_MALLOC=system.
/// Returns whether it applied them. Call once, early in main (before threads start).
bool tune_malloc_for_training();

}  // namespace retort
