// Where pages come from and go back to.
//
// PageSource is the seam between heaps and the operating system: heaps ask for spans of 1..8
// slices and give back spans whose blocks are all free. Tests wrap the real source to count or
// fail span allocations deterministically (mf2/testing/counting_page_source.h).
//
// OsPageSource, the real one, maps 4 MiB segments and carves spans from them (first fit in a
// 64-bit slice mask). A freed span first goes to a cache, kept resident for the next request of
// the same length, bounded by Policy::page_cache_bytes; beyond the bound its memory is returned
// with madvise(MADV_DONTNEED) and its slices become free in the segment; a segment whose slices
// are all free is unmapped once more than Policy::retained_segments such segments exist. So
// steady-state RSS follows live data plus the cache bound. The cache also decays (Decay, run by
// the background reclaimer), in two tiers:
//   - its reserve, up to an eighth of the spans in use (the share a heap may also keep in empty
//     pages and grow its block caches to), goes back once it stayed unused for
//     Policy::page_cache_decay_ns (1 s), so an idle process does not keep the cache resident;
//   - what it holds beyond the reserve goes back once it stayed unused for
//     Policy::page_cache_excess_decay_ns (20 ms): a burst of freed spans (a program's start-up
//     data freed at once) does not stay resident for a second next to the spans in use, while a
//     program that keeps taking and returning spans finds its reserve resident. Decaying the whole
//     cache after 20 ms instead made a third more page faults on larson-mid T=4 (1-32 KiB
//     blocks, 170 MiB) and cost it throughput; with the reserve it costs none (bench/RESULTS.md).
//     The short tier runs only while the cache holds more than its reserve: Decay stops it once
//     the cache is within the reserve, and the FreeSpan that takes the cache past the reserve
//     again wakes the reclaimer, whose next Decay starts a short period. So the reclaimer wakes
//     every 20 ms only while there is an excess to watch, not whenever a span is cached.
// One mutex guards it all: spans are taken and returned only on slow paths, never per
// allocation. The madvise that returns a span's memory runs after the lock is dropped: the span
// is retired under the lock (out of the cache, its slices still marked used, so nothing carves
// them), its memory returned without it, and its slices freed under it again (ReturnToOs). A
// madvise of a few hundred KiB takes tens of microseconds, and a decay may return hundreds of
// spans at once: under the lock, every other thread's span allocation and free waited for all
// of them. Only the last resort before an allocation fails (AllocateSpan under memory
// pressure) returns memory under the lock; spans another thread is returning at that moment
// are not free yet, and such an allocation may fail where it would have waited for them before
// (the heap flushes and retries once more before it reports ENOMEM).
#ifndef MF2_PAGE_SOURCE_H_
#define MF2_PAGE_SOURCE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "mf2/decay.h"
#include "mf2/mutex.h"
#include "mf2/segment.h"
#include "mf2/stats.h"

namespace mf2 {

class PageSource {
 public:
  virtual ~PageSource() = default;
  // A span of `slices` slices: its head descriptor (span_slices set, class fields clear), or
  // nullptr when memory is exhausted. Thread-safe.
  virtual Page* AllocateSpan(uint32_t slices) = 0;
  // Returns a span whose page was retired (no live block, no remote state). Thread-safe.
  virtual void FreeSpan(Page* head) = 0;
  // Adds the source's figures to `s`.
  virtual void AddTo(Stats* s) = 0;
};

class OsPageSource final : public PageSource {
 public:
  static constexpr int kMaxSegmentScan = 16;

  constexpr OsPageSource() = default;

  Page* AllocateSpan(uint32_t slices) override;
  void FreeSpan(Page* head) override;
  void AddTo(Stats* s) override;

  // Calls fn(page, arg) for every span currently handed to a heap. Holds the lock: fn must not
  // allocate spans. For invariant checks and tests.
  void ForEachSpanInUse(void (*fn)(Page*, void*), void* arg);
  // Returns every cached span to the OS; empty segments beyond the retained ones are unmapped.
  void ReleaseCache();
  // The cache's decay, called by the background reclaimer: once per Policy::page_cache_decay_ns
  // it returns to the OS as many cached bytes as stayed in the cache the whole period before
  // (its low-water mark: spans nobody needed), and once per Policy::page_cache_excess_decay_ns
  // as many as stayed the whole shorter period, down to the reserve (CacheReserve); the shorter
  // period is scheduled only while the cache holds more than the reserve. Returns how long until
  // the next decay is due, or 0 when none is (the cache is empty, or decay is off).
  uint64_t Decay(uint64_t now_ns);
  // Memory pressure: returns every cached span and unmaps every empty segment, and empties the
  // large-mapping cache (large.h). AllocateSpan does the same by itself before it fails.
  void ReleaseUnderPressure();
  // Span bookkeeping checks: masks, back-offsets and cache lists agree.
  void CheckInvariants();

  // fork(): hold the lock across fork so the child's copy is consistent. A span another thread
  // was returning (ReturnToOs, without the lock) has no thread to finish it in the child: the
  // child returns it, before it re-initialises the lock (the data are still its own then).
  void PrepareFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Lock(); }
  void ParentAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Unlock(); }
  void ChildAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    FinishReturnsLocked();
    mu_.ResetAfterFork();
  }

  // Tests: called before each span's memory goes back to the OS outside the lock; and whether
  // the lock is free right now (from such a hook: it must be).
  using ReturnHook = void (*)(OsPageSource* source, Page* span);
  static std::atomic<ReturnHook> return_hook_for_testing;
  bool LockFreeForTesting() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (!mu_.TryLock()) return false;
    mu_.Unlock();
    return true;
  }

  // The process-wide source used by thread heaps.
  static OsPageSource& Global();

 private:
  Segment* MapSegment() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Page* CarveSpan(Segment* s, uint32_t first, uint32_t slices) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Page* CarveFromSegments(uint32_t slices, bool exhaustive) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns every cached span to the OS under the lock, and unmaps every empty segment unless
  // `keep_retained` (then MaybeUnmap's bound holds).
  void ReleaseLocked(bool keep_retained) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnmapEmptySegments() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FreeSpan under the lock; true when the reclaimer must look: the span made the cache
  // non-empty, or the cache is past its reserve with the short decay stopped.
  bool FreeSpanLocked(Page* head, uint32_t slices, Page** batch);
  // Whether the cache holds more than its reserve while the short decay is on but stopped (no
  // short period runs: Decay stops it once the cache is within its reserve).
  bool ExcessUnscheduled() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retires cached spans onto `batch` (Retire), longest first, until at most `keep` bytes stay
  // cached. Returns how many it retired.
  uint32_t TrimCacheTo(size_t keep, Page** batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A free span leaves the page source's use for the OS: onto `batch` (linked through
  // Page::next), held by no one (Page::Hold::kReturning: ForEachSpanInUse does not count it as
  // a heap's), its slices still marked used.
  void Retire(Page* head, Page** batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns the memory of the spans of `batch` to the OS without the lock, then frees their
  // slices under it.
  void ReturnToOs(Page* batch) ABSL_LOCKS_EXCLUDED(mu_);
  // The same under the lock (memory pressure: the caller retries a carve at once).
  void ReturnToOsLocked(Page* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every span still kReturning (the child of a fork: its returner was another thread).
  void FinishReturnsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The span's memory back to the OS; the span's fields are only read.
  static void ReturnMemory(Page* head);
  // Calls fn(head) for the head of every span in the segments, in use, cached or returning.
  template <typename Fn>
  void ForEachSpanHead(Fn fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A returned span's slices are free again in its segment (which may be unmapped).
  void FreeReturned(Page* head) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The cache shrank (a span taken or returned to the OS): both decay clocks note its level.
  void CacheLowered() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    decay_.Lowered(cached_bytes_);
    excess_decay_.Lowered(cached_bytes_);
  }
  void UnmapSegment(Segment* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeUnmap(Segment* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unlink(Segment* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushFront(Segment* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushBack(Segment* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;
  // Segments with at least one free slice come first, so a search for a free run stops at the
  // first full segment (and after kMaxSegmentScan candidates: then a new segment is mapped).
  Segment* segments_ ABSL_GUARDED_BY(mu_) = nullptr;
  Segment* segments_tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Cached free spans by length, linked through Page::next.
  Page* cache_[kMaxSlicesPerSpan + 1] ABSL_GUARDED_BY(mu_) = {};
  size_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t returning_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // retired spans not yet freed (ReturnToOs)
  // Cached bytes the short decay leaves: an eighth of the spans in use.
  size_t CacheReserve() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_use_bytes_ / 8; }
  DecayClock decay_ ABSL_GUARDED_BY(mu_);         // the whole cache's decay schedule (Decay)
  DecayClock excess_decay_ ABSL_GUARDED_BY(mu_);  // the excess over CacheReserve()'s (Decay)
  uint64_t spans_decayed_ ABSL_GUARDED_BY(mu_) = 0;
  size_t cache_bound_ ABSL_GUARDED_BY(mu_) = 0;  // Policy::page_cache_bytes at the last FreeSpan
  size_t in_use_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t empty_segments_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t segments_mapped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t segments_unmapped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t spans_returned_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t pressure_events_ ABSL_GUARDED_BY(mu_) = 0;  // times the OS refused a segment
};

}  // namespace mf2

#endif  // MF2_PAGE_SOURCE_H_
