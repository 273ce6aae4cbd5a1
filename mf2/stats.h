// MF2's counters, defined once (the MF2_COUNTERS X-macro). Each heap owns a HeapStats written
// only by the holder of the heap's claim; readers merge all heaps with relaxed loads. Counting
// compiles to nothing when MF2_STATS is 0 (`--copt=-DMF2_STATS=0`).
//
// The snapshot type, mf2::Stats, is public (mf2/mf2.hpp, fields of the C struct mf2_stats in
// mf2/mf2.h), so users need no internal header. Its fields are written out by hand there (a
// public header cannot carry this list); stats.cc pins every counter below to the field of the
// same name at the same position, so a counter added here without its public field, or in
// another order, does not compile.
#ifndef MF2_STATS_H_
#define MF2_STATS_H_

#include <atomic>
#include <cstdint>

#include "mf2/mf2.hpp"

#ifndef MF2_STATS
#define MF2_STATS 1
#endif

// X(name, description). Slow-path and remote-path events only: the fast paths stay uncounted.
#define MF2_COUNTERS(X)                                                                        \
  X(slow_allocs, "allocations that entered the slow path")                                    \
  X(mustreuse_hit, "slow path served from a page popped off the own pending queue")           \
  X(active_drain_hit, "slow path served by collecting the active page's remote frees")        \
  X(partial_hit, "slow path served from the partial list")                                    \
  X(abandoned_adopt_hit, "slow path served by adopting a page of an exited thread's heap")    \
  X(new_pages, "slow path forced to take a new page (no reusable page existed)")              \
  X(page_reuses, "slow path served by an existing page (sum of the hit counters)")       \
  X(pending_enqueued, "pages pushed on an owner's pending queue (0->1 edges won)")             \
  X(pending_drained, "pages popped from a pending queue and drained")                         \
  X(drain_attempts, "remote stacks taken (pending drains and direct collections)")            \
  X(drain_successes, "remote stacks taken that held at least one block")                      \
  X(remote_blocks_drained, "blocks moved from remote stacks to local free lists")             \
  X(remote_frees, "frees of blocks owned by another heap")                                    \
  X(remote_chains, "chains of held-back remote frees pushed with one CAS each")               \
  X(pages_released, "empty pages returned to the page source")                                \
  X(heaps_abandoned, "heaps abandoned by exiting threads")                                    \
  X(heaps_reused, "abandoned heaps taken over whole by a new thread")                         \
  X(dead_owner_reclaims, "remote freers that drained an abandoned heap's queue")              \
  X(pages_adopted, "pages taken over from another heap (exited owners, route_p, cda, reclaim)") \
  X(adopt_allowed, "route_p/cda: slow path served by adopting a page from a live owner's queue") \
  X(adopt_blocked_owner_active, "route_p: no adoption, the owner allocated too recently")    \
  X(adopt_blocked_owner_partial, "route_p: no adoption, the owner has partial pages of the class") \
  X(adopt_blocked_pressure, "route_p: no adoption, too few pages of the class are queued")    \
  X(adopt_blocked_deadline, "route_p: no adoption, the page's first-refusal window is open") \
  X(adopt_blocked_remote_count, "route_p: no adoption, the page holds too few remote frees")  \
  X(adopt_no_candidate, "route_p/cda: queue popped, no full page of the class in it")         \
  X(reclaim_blocked_owner_active, "a page came back whole but its owner was not idle yet")    \
  X(idle_reclaims, "sweeps of an idle owner's queue for pages that came back whole")          \
  X(pages_reclaimed, "completely free pages of idle owners released by a sweep")               \
  X(detached_frees, "owner frees into one of its full (detached) pages, under the page flag") \
  X(large_allocs, "allocations above the largest class, served by the OS")                   \
  X(cache_refills, "empty per-thread caches refilled from a page (one slow path each)")       \
  X(blocks_refilled, "blocks moved from pages into per-thread caches")                        \
  X(cache_flushes, "full per-thread caches half-returned to their pages")                     \
  X(blocks_flushed, "blocks moved from per-thread caches back to their pages")                \
  X(cache_drops, "cached blocks found corrupt or freed twice, reported and never reused")     \
  X(cache_grows, "per-thread caches doubled in depth (they overflowed or ran dry)")           \
  X(dead_thread_allocs, "allocations by exited threads, served by a heap released at once")   \
  X(exited_thread_heaps, "heaps of threads that exited without handing them back, released")  \
  X(heap_moves, "threads that moved to the heap of the exited thread whose blocks they freed")

// X(name, description): figures of the page source (not per heap), after the counters in
// mf2_stats, filled by PageSource::AddTo.
#define MF2_PAGE_SOURCE_FIGURES(X)                                                             \
  X(segments_mapped, "4 MiB segments mapped since start")                                     \
  X(segments_unmapped, "segments unmapped since start")                                       \
  X(spans_returned_to_os, "free spans given back to the OS (madvise) since start")            \
  X(bytes_in_use_spans, "bytes of spans held by heaps now")                                   \
  X(bytes_cached_spans, "bytes of free spans kept resident for reuse now")                    \
  X(memory_pressure_events, "times the OS refused memory and MF2 released its caches first") \
  X(spans_decayed, "cached free spans given back to the OS after a decay period unused")

namespace mf2 {

// Per-heap counters. Single writer (the claim holder): increments are a relaxed load and store,
// not a locked RMW; concurrent readers see a value at most one increment old.
class HeapStats {
 public:
  constexpr HeapStats() = default;
  // Counters written by many threads at once (a sentinel heap's: thread_heap.h).
  constexpr explicit HeapStats(bool shared) : shared_(shared) {}

  enum Counter {
#define MF2_STATS_ENUM(name, desc) k_##name,
    MF2_COUNTERS(MF2_STATS_ENUM)
#undef MF2_STATS_ENUM
        kNumCounters
  };

  void Inc(Counter c, uint64_t n = 1) {
    // Relaxed: the value is a statistic, ordered with nothing else. A single writer needs no
    // locked RMW; shared counters do (their increments are on slow paths only).
    if (shared_) {
      v_[c].fetch_add(n, std::memory_order_relaxed);
    } else {
      v_[c].store(v_[c].load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
  }
  uint64_t Get(Counter c) const { return v_[c].load(std::memory_order_relaxed); }
  void AddTo(Stats* s) const;

 private:
  std::atomic<uint64_t> v_[kNumCounters] = {};
  bool shared_ = false;
};

// The process's footprint: bytes of spans handed to heaps plus bytes of live large mappings, and
// the highest value it reached (mf2_stats' bytes_in_use and bytes_in_use_peak). The page source
// notes every span it hands out or takes back, the large allocator every mapping that becomes
// live or is freed; both are slow paths that already take a lock, so the gauge's atomic updates
// cost nothing on the fast paths.
void NoteSpanBytes(int64_t delta);
void NoteLargeBytes(int64_t delta);
struct Footprint {
  uint64_t large_live = 0;  // bytes of live large mappings
  uint64_t in_use = 0;      // spans held by heaps + large_live
  uint64_t peak = 0;        // the highest in_use so far
};
Footprint ReadFootprint();
// Whether the page source and the large allocator call the two functions above. Until they do,
// bytes of live large blocks and the peak are unknown: reports print them as n/a and the tests
// of those figures are skipped.
inline constexpr bool kFootprintFed = true;

}  // namespace mf2

#if MF2_STATS
#define MF2_STAT_INC(stats, name) (stats).Inc(::mf2::HeapStats::k_##name)
#define MF2_STAT_ADD(stats, name, n) (stats).Inc(::mf2::HeapStats::k_##name, (n))
#else
#define MF2_STAT_INC(stats, name) static_cast<void>(0)
#define MF2_STAT_ADD(stats, name, n) static_cast<void>(true || (n))
#endif

#endif  // MF2_STATS_H_
