#include "core/malloc.h"

#include <dlfcn.h>

#include <cstddef>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace retort {

void release_free_memory() {
  // Looked up rather than linked: the libraries and tests run on whatever malloc the
  // program has. 4096 is MALLCTL_ARENAS_ALL: every arena.
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  if (auto mallctl = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl")))
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace retort
