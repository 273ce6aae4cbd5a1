// HeapRegistry: every heap ever created (heaps are never freed, so a pointer to one stays valid
// for remote freers forever), and the idle list of heaps whose thread exited.
//
// A new thread (or a test's logical thread) takes an idle heap over whole when one can be
// claimed, pages and all, so the pages of an exited thread are reused by its successor at once
// (Larson's thread churn). Otherwise a new heap is mapped. A live thread that would take a new
// page first claims an idle heap and adopts one of its pages (Heap::AdoptAbandoned).
//
// Invariants (CheckAll): every page in use is owned by a registered heap; per heap, the number
// of pages it owns equals its page_count(); at quiescence, a page's in_remote_pending flag is set
// exactly when it is on its owner's pending queue, and a page with remote blocks is queued.
// Caches (heap.h, Magazine): no block sits in two cache slots (of one heap or of two), and per
// page, (its blocks cached in any heap) + remote.count <= used(): every cached or remotely freed
// block is one handed out of its page, counted once. The rest of used() is what the program
// holds, which only a harness with a shadow of the live blocks can check exactly
// (ForEachCachedBlock: the fuzzers check used() == live + cached + remote.count per page).
#ifndef MF2_HEAP_REGISTRY_H_
#define MF2_HEAP_REGISTRY_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "mf2/heap.h"
#include "mf2/mutex.h"
#include "mf2/page_source.h"
#include "mf2/stats.h"

namespace mf2 {

class HeapRegistry {
 public:
  constexpr HeapRegistry() = default;

  // A claimed heap for a new owner drawing spans from `source`: an idle one taken over, or new.
  // `preferred` when it is idle; else it is marked wanted (Heap::wanted) and the idle heap
  // released last that nobody wants is taken. nullptr only when memory for a heap cannot be
  // mapped.
  Heap* AcquireHeap(PageSource* source, Heap* preferred = nullptr);
  // A new heap, never an idle one (whose pages would come with it): for the background
  // reclaimer's helper heap, which must own nothing it would not drain itself.
  Heap* AcquireNewHeap(PageSource* source);
  // The owner is done (thread exit, or a test's logical thread ending): abandons the heap.
  void ReleaseHeap(Heap* heap);
  // A thread's heap, whose owner is the thread with kernel id `tid`: listed until ReleaseHeap, so
  // that a heap whose thread exited without handing it back can be found (below).
  void RegisterThreadHeap(Heap* heap, int32_t tid);
  // Releases the heaps of threads that exited without handing them back: a thread whose first
  // allocation came in its last pthread key destructor round (glibc runs no further round for
  // the key that allocation set), or the other threads of a process that forked. Checks at most
  // `max_checks` listed heaps other than `self` (oldest first) with tgkill(pid, tid, 0): ESRCH
  // means no thread of this process has that id, so its heap's owner is gone (a reused id only
  // keeps a heap listed). Returns how many heaps it released. Slow: system calls, under the lock;
  // called only when a new heap would otherwise be mapped.
  int ReclaimExitedThreadHeaps(const Heap* self, int max_checks);
  // Heaps other than `self`, of self's page source and not abandoned, that have pages which came
  // back whole waiting (the background reclaimer's candidates): at most `max` into `out`.
  int CollectHeapsWithWholePages(const Heap* self, Heap** out, int max);
  // Up to `max` heaps other than `self`, of self's page source and not abandoned, that hold
  // remote frees back (Heap::holds_remote_mt, a hint): the background reclaimer's other scan.
  int CollectHeapsHoldingRemoteFrees(const Heap* self, Heap** out, int max);
  // Up to `max` heaps other than `self`, of self's page source and not abandoned, that were not
  // flushed since their last slow path (Heap::IdleFlushOwed_mt, a hint): the
  // background reclaimer's third scan, `max` at a time, skipping the first `skip` such heaps.
  int CollectHeapsOwedAnIdleFlush(const Heap* self, Heap** out, int max, int skip);
  // Takes `heap` off the thread-heap list (it stays claimed by its owner).
  void ReleaseThreadListing(Heap* heap);
  // Claims an idle heap other than `self` with the same page source, or nullptr.
  Heap* ClaimIdleHeap(Heap* self);

  // Merged counters of every heap plus the global page source.
  Stats CollectStats();
  // Heaps outside the registry whose counters CollectStats merges too (the sentinels of
  // thread_heap.h, whose remote frees count there). At most kMaxExtraStats; no allocation.
  void AddStatsSource(const Heap* heap);
  // Checks every page and heap. The caller guarantees that no other thread of its own is inside
  // MF2 (all threads joined or parked). `quiescent`: in addition, no remote free is half done
  // (the multi-actor fuzzer parks them between steps and passes false), so the cross-thread
  // equations must hold exactly; the check then also waits for the background reclaimer's pass
  // in flight, if any, and holds off the next one (reclaimer::PassMutex).
  void CheckAll(bool quiescent);
  // Calls fn(block, heap, arg) for every block in every registered heap's caches, under the
  // registry's lock (so `fn` must not call back into the registry). Same contract as CheckAll:
  // no other thread inside MF2. For harnesses that count cached blocks per page.
  void ForEachCachedBlock(void (*fn)(void* block, const Heap* heap, void* arg), void* arg);
  // Single-threaded harnesses only (no remote free half done, no other thread in MF2): every
  // heap's whole_unswept_mt() equals the number of its pages that came back whole (all blocks
  // on the remote stack). Not exact under real concurrency (see Heap::PushRemote_mt). Waits for
  // the background reclaimer's pass in flight, as CheckAll(true) does.
  void CheckWholeCounts();
  // Heaps that exist, and how many are idle.
  uint32_t heap_count();
  uint32_t idle_count() { return idle_count_.load(std::memory_order_relaxed); }
  // A heap released while at least this many others are idle returns its cache slots' pages to
  // the OS (Heap::ReleaseSlotPages): a program whose threads came and went keeps about 8 KiB per
  // idle heap, not the slot pages its thread used too. Fewer idle heaps keep theirs: a program
  // that replaces its threads one by one (thread churn) pays no system call for them.
  static constexpr uint32_t kWarmIdleHeaps = 8;

  // fork(): hold the lock across fork.
  void PrepareFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Lock(); }
  void ParentAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_.Unlock(); }
  void ChildAfterFork() { mu_.ResetAfterFork(); }

  static HeapRegistry& Global();

 private:
  // CheckAll's work, once the reclaimer's passes are held off when `quiescent`.
  void CheckAllHeaps(bool quiescent);
  Mutex mu_;
  Heap* all_ ABSL_GUARDED_BY(mu_) = nullptr;
  Heap* idle_ ABSL_GUARDED_BY(mu_) = nullptr;
  void LinkThreadHeap(Heap* heap, int32_t tid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnlinkThreadHeap(Heap* heap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Heap* threads_ ABSL_GUARDED_BY(mu_) = nullptr;  // RegisterThreadHeap's list, oldest first
  Heap* threads_tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  static constexpr int kMaxExtraStats = 4;
  const Heap* extra_stats_[kMaxExtraStats] ABSL_GUARDED_BY(mu_) = {};
  uint32_t heap_count_ ABSL_GUARDED_BY(mu_) = 0;
  // Relaxed reads skip the lock when no heap is idle (the common case on the slow path).
  std::atomic<uint32_t> idle_count_{0};
};

}  // namespace mf2

#endif  // MF2_HEAP_REGISTRY_H_
