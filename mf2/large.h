// Large allocations: requests above kMaxClassSize, or with alignment above a slice, are mapped
// directly from the OS (page-granular) and recorded in a table so that Free recognises them and
// rejects pointers MF2 never handed out. A lock guards the table: large allocations are rare
// and pay for a system call when they miss the cache. Freed mappings are kept for reuse up to
// Policy::large_cache_bytes (MF2_LARGE_CACHE_MB), at most 16 of them, each at most a quarter of
// the bound; a request reuses a cached mapping of 1x..2x its size.
#ifndef MF2_LARGE_H_
#define MF2_LARGE_H_

#include <cstddef>

namespace mf2 {

// A mapping of at least `size` bytes aligned to `alignment` (a power of two), or nullptr with
// errno = ENOMEM.
void* LargeAllocate(size_t size, size_t alignment);
// Unmaps `p` if it is a live large allocation; false (and nothing done) otherwise.
bool LargeFree(void* p);
// The usable size of a live large allocation, or 0 if `p` is not one.
size_t LargeUsableSize(const void* p);
// Number of live large allocations, and bytes of freed mappings kept for reuse (tests).
size_t LargeLiveCount();
size_t LargeCachedBytes();
// Unmaps every cached mapping (tests; a future background reclaimer).
void LargeReleaseCache();

// fork(): hold the table lock across fork.
void LargePrepareFork();
void LargeParentAfterFork();
void LargeChildAfterFork();

}  // namespace mf2

#endif  // MF2_LARGE_H_
