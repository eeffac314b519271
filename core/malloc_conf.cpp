// jemalloc's settings for retort's programs (each links jemalloc and this file; the libraries
// and tests keep the system's malloc). LibTorch takes every CPU tensor from malloc and a
// training step frees and re-allocates the same activations every step: freed pages are
// kept for reuse (no decay) instead of being returned and faulted back, large blocks share
// one arena, and a background thread does jemalloc's housekeeping. Compared with glibc,
// tcmalloc, mimalloc and retort's former allocator in bench/RESULTS.md, "Allocator".
// MALLOC_CONF in the environment overrides any of these; LD_PRELOAD of another allocator
// replaces jemalloc altogether.
// jemalloc reads this symbol (weak in libjemalloc) before its first allocation.
extern "C" {
const char* malloc_conf =
    "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1";
}
