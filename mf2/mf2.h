// MF2's public API. One header: allocation for ordinary code (thread-local heaps), statistics,
// and a C face. Explicit heaps for tests and embedders are in mf2/heap_registry.h.
//
//   void* p = mf2::Allocate(n);        // nullptr + errno = ENOMEM on failure
//   mf2::Free(p);                      // any thread; misuse is reported (abort by default)
//   size_t n = mf2::UsableSize(p);     // the class size (>= requested)
//   void* q = mf2::AllocateAligned(64, n);   // power-of-two alignment, else EINVAL
//   mf2::Stats s = mf2::GetStats();    // merged counters; s.reuse_rate()
#ifndef MF2_MF2_H_
#define MF2_MF2_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include "mf2/stats.h"

namespace mf2 {

void* Allocate(size_t size) noexcept;
void Free(void* p) noexcept;
size_t UsableSize(const void* p) noexcept;
void* AllocateAligned(size_t alignment, size_t size) noexcept;

// Merged counters of every heap and the page source.
Stats GetStats() noexcept;
// Writes every counter, one per line, to `fd` (no allocation).
void PrintStats(int fd) noexcept;

// The calling thread's heap is abandoned now rather than at thread exit (tests; a thread pool
// parking a worker). The next allocation takes a heap again.
void ReleaseThreadHeap() noexcept;

}  // namespace mf2

extern "C" {
#endif

typedef struct mf2_stats {
  uint64_t new_pages;
  uint64_t page_reuses;
  uint64_t mustreuse_hit;
  uint64_t active_drain_hit;
  uint64_t partial_hit;
  uint64_t abandoned_adopt_hit;
  uint64_t remote_frees;
  uint64_t pending_enqueued;
  uint64_t pending_drained;
  double reuse_rate;
  uint64_t adopt_allowed;    // route_p / cda adoptions from live owners
  uint64_t pages_adopted;    // pages that changed owner (exited owners, adoption, reclamation)
  uint64_t pages_reclaimed;  // idle owners' whole pages released by the freeing thread
} mf2_stats;

void* mf2_malloc(size_t size);
void mf2_free(void* p);
size_t mf2_usable_size(const void* p);
void* mf2_aligned_alloc(size_t alignment, size_t size);
void mf2_get_stats(mf2_stats* out);
void mf2_print_stats(int fd);
// The calling thread's heap is abandoned now, as at thread exit (see mf2::ReleaseThreadHeap).
void mf2_release_thread_heap(void);
// Switches the slow-path route at run time: "route_s", "route_p" or "cda" (see policy.h; the
// environment's MF2_ROUTE sets the initial one). Returns 0, or -1 with errno = EINVAL.
int mf2_set_route(const char* name);
// The route in force ("route_s", "route_p" or "cda").
const char* mf2_get_route(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // MF2_MF2_H_
