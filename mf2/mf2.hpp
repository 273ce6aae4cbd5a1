// MF2's public C++ API: the C API (mf2/mf2.h, included here) plus C++ names for allocation with
// the thread's heap and for statistics. Self-contained: needs only mf2/mf2.h and the standard
// library, and C++11 or later.
//
//   void* p = mf2::Allocate(n);        // nullptr + errno = ENOMEM on failure
//   mf2::Free(p);                      // any thread; misuse is reported (abort by default)
//   size_t n = mf2::UsableSize(p);     // the class size (>= requested)
//   void* q = mf2::AllocateAligned(64, n);   // power-of-two alignment, else EINVAL
//   mf2::Stats s = mf2::GetStats();    // s.new_pages, s.bytes_in_use, s.reuse_rate(), ...
//
// The rules of mf2/mf2.h apply (thread safety, errors, misuse reports). calloc, realloc,
// explicit heaps and options are the C functions (mf2_calloc, mf2_heap_new, ...).
#ifndef MF2_MF2_HPP_
#define MF2_MF2_HPP_

#include <cstddef>

#include "mf2/mf2.h"

namespace mf2 {

// As mf2_malloc, mf2_free, mf2_usable_size and mf2_aligned_alloc (argument order as C11's
// aligned_alloc: alignment first).
void* Allocate(size_t size) noexcept;
void Free(void* p) noexcept;
size_t UsableSize(const void* p) noexcept;
void* AllocateAligned(size_t alignment, size_t size) noexcept;

// A snapshot of MF2's statistics: the fields of mf2_stats (see mf2/mf2.h), zero-initialised,
// plus derived figures.
struct Stats : mf2_stats {
  Stats() : mf2_stats() {}
  // page_reuses / (page_reuses + new_pages), in [0, 1]: how often the slow path found a page
  // to reuse instead of taking a new one. 0 when no page was ever needed.
  double reuse_rate() const {
    const uint64_t total = page_reuses + new_pages;
    return total == 0 ? 0.0 : static_cast<double>(page_reuses) / static_cast<double>(total);
  }
};

// As mf2_stats_get and mf2_stats_print.
Stats GetStats() noexcept;
void PrintStats(int fd) noexcept;

// As mf2_release_thread_heap: the calling thread's heap is abandoned now rather than at thread
// exit (tests; a thread pool parking a worker). The next allocation takes a heap again.
void ReleaseThreadHeap() noexcept;

// As mf2_thread_idle: the calling thread gives back its caches, held remote frees and empty
// pages before it waits for a while; its heap stays its own.
void ThreadIdle() noexcept;

}  // namespace mf2

#endif  // MF2_MF2_HPP_
