#pragma once
// The process's malloc, as measurements need it. retort's programs run on jemalloc
// (core/malloc_conf.cpp), which keeps freed pages for reuse.

namespace retort {

/// Hands the pages that freed blocks still hold back to the OS: jemalloc's arenas when
/// jemalloc is the process's malloc, glibc's heap otherwise. For a measurement of resident
/// memory that must not be served by an earlier run's pages.
void release_free_memory();

}  // namespace retort
