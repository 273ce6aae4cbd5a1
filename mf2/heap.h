// Heap: the set of pages one thread owns, and MF2's allocation algorithm.
//
// ---- Map of the algorithm ----------------------------------------------------------------
// Allocate (owner):    class k = SizeToClass(size); pop the active page's local free list, or
//                      carve the next never-used block. No atomics, no locks.
// AllocateSlow (owner), Route S, in this order (the must-reuse gate):
//   1. own pending queue: pop pages that received remote frees (pop-all into a private backlog,
//      at most Policy::pending_budget per call), drain each; the first with a free block of
//      class k wins; others are filed on their class's partial list (empty ones are kept within
//      EmptyBudget() for reuse, beyond it released).
//   2. the active page's remote frees: collect them directly (the flag stays as it is).
//   3. the partial list of class k: pages with free blocks, O(1).
//   -  the rest of the pending queue, unbounded: no new page while a reusable page is queued.
//   4. a heap whose thread exited: its queued pages join us, then a page of class k from its
//      partial list (the only adoption in Route S: a live owner's page is never taken).
//   P. route_p only: one gated adoption of a detached page of class k from an idle owner's
//      pending queue (AdoptFromPending; gates in policy.h, ready bitmap in adoption.h).
//   5. only now a new span from the page source.
//   cda (the control) instead adopts ungated before step 1 and skips the own-queue steps.
// Free (any thread):   locate page and block in O(1), validate (MF2 pointer, block start, live).
//   owner == this heap: push on the local free list (no atomics). A page that has become empty
//                       is kept within EmptyBudget() or, if not queued, goes back to the source.
//                       A full (detached) page is touched only under its flag (FreeDetached).
//   otherwise (_mt):    push on the page's remote stack (one CAS: block, count, flag). The
//                       thread that turns in_remote_pending 0->1 pushes the page once on the
//                       owner's pending queue; if the owner has exited, it drains that heap and
//                       takes over the pages it dequeues (owner changed while the flag is held),
//                       so its later frees into them are local. The push that brings a page
//                       back whole counts it; once an idle owner has reclaim_batch such pages,
//                       the freer sweeps that owner's queue and releases them (ReclaimIdleOwner_mt).
// Thread exit:         Abandon(): collect everything, release every empty page (to the page
//                      cache), and leave the heap with its pages to the registry. A new thread
//                      takes such a heap over whole; live threads adopt its pages (step 4 and
//                      the dead-owner drain above).
// Pages a thread does not own move only while their in_remote_pending flag is held, and only
// when detached (full, on none of the owner's lists): see page.h, "Detached pages". The code
// acting on another live heap's queue (Route P, cda, idle sweeps) is in heap_adopt.cc.
// ---------------------------------------------------------------------------------------------
//
// Concurrency. A heap is owned by whoever holds its claim (`xclaim_`): its thread while alive,
// briefly a reclaiming or adopting thread once abandoned. Every owner-only field below is touched
// only by the claim holder. Other threads use pending_ (push; pop-all by Route P / cda adopters
// and idle reclaimers, who then hold the flags of what they popped), xabandoned_ (read), the
// claim (try), and the atomic gauges: page counts, slow-path epoch, partial mask, whole-page
// count and the sweep handshake.
//
// Invariants (CheckInvariants):
//   active_[k] == nullptr or (active_[k]->size_class() == k, where == kActive, owner == this)
//   every page on partial_[k]: class k, where == kPartial, owner == this, HasFree()
//   every page on the pending queue or backlog_: owner == this, in_remote_pending set,
//     at most once (quiescent: debug_queued() == 1)
//   page_count_ == pages whose owner is this heap (checked globally, registry.h)
//   empty_bytes_ == sum of spans of partial pages with retained_empty (each has used() == 0);
//     a page is retained only while empty_bytes_ stays within EmptyBudget() =
//     max(Policy::heap_empty_bytes, page_bytes_ / 8); an abandoned heap retains none
//   abandoned heap: active_[k] == nullptr for all k
//   partial_mask_ bit k == !partial_[k].empty()
//   single-threaded harnesses: whole_unswept_mt() == pages of this heap with every block on the
//     remote stack (HeapRegistry::CheckWholeCounts)
#ifndef MF2_HEAP_H_
#define MF2_HEAP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/check.h"
#include "mf2/page.h"
#include "mf2/page_list.h"
#include "mf2/page_source.h"
#include "mf2/pending_queue.h"
#include "mf2/policy.h"
#include "mf2/segment.h"
#include "mf2/size_class.h"
#include "mf2/stats.h"

namespace mf2 {

class HeapRegistry;

class Heap {
 public:
  Heap(PageSource* source, HeapRegistry* registry, uint32_t id);
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;

  // ---- Owner (claim holder) ----
  // nullptr with errno = ENOMEM when memory is exhausted or `size` is absurd.
  MF2_ALWAYS_INLINE void* Allocate(size_t size) {
    if (MF2_PREDICT_TRUE(size <= kMaxClassSize)) {
      uint32_t k = SizeToClass(size);
      Page* page = active_[k];
      if (MF2_PREDICT_TRUE(page != nullptr)) {
        if (Block* b = page->Pop()) return b;
      }
      return AllocateSlow(k);
    }
    return AllocateLarge(size, kMinAlign);
  }
  // `alignment` must be a power of two (else nullptr, errno = EINVAL).
  void* AllocateAligned(size_t alignment, size_t size);
  // Frees `p` (from any heap; nullptr is ignored). Misuse is reported, never absorbed.
  MF2_ALWAYS_INLINE void Free(void* p) {
    Page* page = PageOf(p);
    if (MF2_PREDICT_FALSE(page == nullptr || !page->in_use())) return FreeUnusual(p);
    bool exact;
    uint32_t idx = page->BlockIndex(p, &exact);
    if (MF2_PREDICT_FALSE(!exact || idx >= page->capacity() || !page->IsLive(idx))) {
      return ReportBadFree(page, p, exact && idx < page->capacity());
    }
    Block* b = static_cast<Block*>(p);
    // where before owner (page.h, "Detached pages"): if we see our own address as owner, the
    // where we saw is ours too, or kDetached.
    const Page::Where where = page->where_acquire();
    if (MF2_PREDICT_TRUE(page->owner_relaxed() == this)) {
      if (MF2_PREDICT_FALSE(where == Page::Where::kDetached) && page->adoptable_detach) {
        return FreeDetached(page, b, idx);  // adoption armed: only under the page's flag
      }
      page->PushLocal(b, idx);
      // A partial page that still has live blocks needs nothing more; a full (detached) one
      // joins the partial list and an empty one is kept or released (out of line).
      if (MF2_PREDICT_FALSE(where != Page::Where::kActive) &&
          (where == Page::Where::kDetached || page->used() == 0)) {
        PageGainedFree(page);
      }
      return;
    }
    FreeRemote(page, b);
  }

  // ---- Any thread ----
  // The usable size of a live block (its class size), or 0 after reporting misuse.
  static size_t UsableSize(const void* p);

  // A remote free is two steps, exposed so the multi-actor fuzzer can interleave them with other
  // heaps' operations; Free() runs exactly these. Step 1: push `b` (a validated live block of
  // `page`, owned by another heap) on the page's remote stack; returns whether this push won the
  // in_remote_pending 0->1 edge. Step 2, only if it did: queue the page on its owner's pending
  // queue and, if the owner has exited, drain that queue and hand its pages to `adopter` (the
  // freer's own heap, owned by the calling thread; nullptr to adopt nothing).
  // `completed` (optional) is set when this push brought the page back whole (every block on
  // its remote stack; counted in the owner's whole_unswept_mt()).
  bool PushRemote_mt(Page* page, Block* b, bool* completed = nullptr);
  static void QueueWonPage_mt(Page* page, Heap* adopter);

  // ---- Route P, cda and idle reclamation (any thread, about another heap) ----
  // Whether the owner has not entered its allocation slow path for `threshold_ns`, as observed
  // by callers (the first observation of a new slow-path epoch starts the clock: never early).
  bool OwnerIdle_mt(uint64_t now_ns, uint64_t threshold_ns);
  // Whether the owner's partial list for class k is empty (an atomic mirror of partial_[k]).
  bool PartialEmpty_mt(uint32_t k) const {
    // Relaxed: a gate, re-decided on every attempt; the page itself is taken under its flag.
    return ((partial_mask_[k / 64].load(std::memory_order_relaxed) >> (k % 64)) & 1) == 0;
  }
  // The calling thread (owner of this heap) freed the last remote block of a page of `owner`:
  // if `owner` is idle, release every completely free detached page on its pending queue.
  void ReclaimIdleOwner_mt(Heap* owner);
  // Pages of this heap that came back whole and were not taken yet (see FreeRemote).
  int64_t whole_unswept_mt() const { return xwhole_unswept_.load(std::memory_order_seq_cst); }

  // ---- Lifecycle (see HeapRegistry) ----
  bool TryClaim();
  // Owner at thread exit: collect, release empty pages, mark abandoned. Keeps the claim.
  void Abandon();
  // A new owner that claimed an abandoned heap takes it over.
  void TakeOver();
  // Releases the claim of an abandoned heap; if pages were queued meanwhile, processes them
  // (handing them to `adopter` if not null).
  void ReleaseClaimAndRecheck(Heap* adopter = nullptr);
  // A remote freer whose own heap is `adopter` queued a page on this (abandoned) heap: unless
  // someone else holds the claim, process the queue, handing every queued page to `adopter`.
  void ReclaimAbandoned_mt(Heap* adopter);
  // Claim holder: process the whole pending queue. On an abandoned heap with an `adopter` (a
  // live heap of the same page source, owned by the caller), each dequeued page changes owner
  // while its in_remote_pending flag is still held, then joins the adopter; otherwise pages are
  // drained and filed here.
  void ProcessAllPending(Heap* adopter = nullptr);
  // Claim holder of an abandoned heap: unlink a page of class k with free blocks whose
  // in_remote_pending flag could be taken (so no producer queues it while it changes owner),
  // and hand it to `adopter`.
  Page* GiveUpPage(uint32_t k, Heap* adopter);

  bool abandoned() const { return xabandoned_.load(std::memory_order_relaxed); }
  // seq_cst: for the push-then-check hand-off with an exiting owner (PendingQueue::Push_mt).
  bool abandoned_seq_cst() const { return xabandoned_.load(std::memory_order_seq_cst); }
  uint32_t id() const { return id_; }
  size_t page_count() const { return page_count_.load(std::memory_order_relaxed); }
  PageSource* source() const { return source_; }
  const HeapStats& stats() const { return stats_; }
  HeapStats& mutable_stats() { return stats_; }
  Page* active_page(uint32_t k) const { return active_[k]; }
  const PageList& partial(uint32_t k) const { return partial_[k]; }

  // Checks the heap's equations; `quiescent` also walks the pending queue and backlog.
  void CheckInvariants(bool quiescent) const;
  // Quiescent: adds this heap's queued pages that are counted as adoptable to `counted[k]`, and
  // checks that each one on the pending queue has its ready bit set (adoption.h).
  void CheckAdoptionBookkeeping(uint32_t* counted) const;
  // Whether `page` is on this heap's pending queue or backlog. Quiescent only.
  bool PendingContains(const Page* page) const;

  // Registry links (under the registry's lock).
  Heap* all_next = nullptr;
  Heap* idle_next = nullptr;

 private:
  MF2_NOINLINE void* AllocateSlow(uint32_t k);
  void* AllocateLarge(size_t size, size_t alignment);
  MF2_NOINLINE void FreeRemote(Page* page, Block* b);
  MF2_NOINLINE void FreeDetached(Page* page, Block* b, uint32_t idx);
  MF2_NOINLINE void FreeUnusual(void* p);
  MF2_NOINLINE void ReportBadFree(Page* page, void* p, bool block_start);
  MF2_NOINLINE void PageGainedFree(Page* page);

  Page* TakeFromPending(uint32_t k, uint32_t budget);
  void DrainDequeued(Page* page);
  uint32_t Absorb(Page* page, RemoteWord taken, Heap* taken_from);
  Page* FilePage(Page* page, uint32_t k);
  Page* CollectActive(uint32_t k);
  Page* AdoptAbandoned(uint32_t k);
  Page* AdoptFromPending(uint32_t k, Route route);
  void SweepIdleOwner(Heap* owner);
  void TakeOverHeld(Page* page, Heap* from);
  void TakePopped(Page* page, Heap* owner);
  void Detach(Page* page);
  void PartialPush(Page* page);
  void PartialRemove(Page* page);
  Page* NewPage(uint32_t k);
  void HandOverDequeued(Page* page, Heap* adopter);
  void AcceptPage(Page* page, Heap* from);
  MF2_ALWAYS_INLINE void SetActive(uint32_t k, Page* page);
  bool TryRelease(Page* page);
  void Unretain(Page* page);
  void CountPage(const Page* page, int delta);
  size_t EmptyBudget() const;
  void ReleaseRetainedEmpties();

  // ---- Owner-only (claim holder) ----
  Page* active_[kNumClasses] = {};
  PageList partial_[kNumClasses];
  Page* backlog_ = nullptr;  // popped from pending_, not yet drained; linked by pending_next
  uint32_t rotor_ = 0;       // where AdoptFromPending starts looking in the ready bitmap
  size_t empty_bytes_ = 0;  // spans of empty pages kept on partial lists for reuse
  HeapStats stats_;
  PageSource* const source_;
  HeapRegistry* const registry_;
  const uint32_t id_;

  // ---- Shared ----
  // Pages and span bytes this heap owns. Atomic: an adopter or reclaimer that takes a page
  // subtracts it from the previous owner (relaxed RMWs: counts, ordered by nothing).
  std::atomic<size_t> page_count_{0};
  std::atomic<size_t> page_bytes_{0};
  // Owner writes (relaxed load+store, single writer); others read for the gates. Their own line,
  // which no other thread writes often (only an adopter's page-count decrement).
  alignas(64) std::atomic<uint64_t> xslow_epoch_{0};   // bumped on every allocation slow path
  std::atomic<uint64_t> partial_mask_[2] = {};  // bit k: partial_[k] non-empty
  // Idle reclamation (ReclaimIdleOwner_mt). On a line of their own: read by edge winners,
  // written only when a page comes back whole or such a page is taken off a remote stack.
  // Pages of this heap that came back whole and are still queued (approximate: a page adopted
  // between its completion and its take is counted on one heap and discounted on another).
  alignas(64) std::atomic<int64_t> xwhole_unswept_{0};
  std::atomic<bool> xsweep_wanted_{false};  // a sweep is owed (by whoever holds xsweeping_)
  std::atomic<bool> xsweeping_{false};      // one sweeper at a time
  // Observers' probe (OwnerIdle_mt), written by other threads, so away from the owner's lines:
  // (low 24 bits of the epoch seen) << 40 | (time seen, microseconds, 40 bits).
  std::atomic<uint64_t> xidle_probe_{0};
  alignas(64) PendingQueue pending_;
  std::atomic<uint32_t> xclaim_{0};
  std::atomic<bool> xabandoned_{false};
};

}  // namespace mf2

#endif  // MF2_HEAP_H_
