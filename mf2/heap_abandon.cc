// The lifecycle of a heap and the pages that change owner with it: a thread's claim, its exit
// (Abandon), a new thread taking the heap over whole, remote freers collecting the queue of a heap
// whose thread exited, and live heaps that need a page adopting that heap's pages (its queued
// pages, and one page of the class from its partial list).
// The owner's algorithm is in heap.cc; adoption from live owners and idle sweeps in
// heap_adopt.cc; the checks in heap_check.cc.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "mf2/adoption.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"

namespace mf2 {

// ------------------------------------------------------------------------------------------
// Claims.

bool Heap::TryClaim() {
  uint32_t expected = 0;
  // seq_cst on success: acquire (the previous holder's writes to owner-only state) and the total
  // order the abandoned-heap hand-off relies on (see ReleaseClaimAndRecheck). seq_cst on failure
  // too: a freer that queued a page and then fails to claim leaves the page to the holder, and
  // that failed CAS is the load of a store-buffering shape with the holder's "claim = 0; read the
  // queue": relaxed, it could read the holder's stale claim while the holder missed the page, and
  // the page would stay queued on a heap nobody drains (spin claim_sb.pml, mutant
  // W_claim_cas_fail). The same instruction on x86.
  return xclaim_.compare_exchange_strong(expected, 1, std::memory_order_seq_cst,
                                         std::memory_order_seq_cst);
}

void Heap::ReleaseClaimAndRecheck(Heap* adopter) {
  for (;;) {
    // seq_cst store, then seq_cst load of the queue: a producer that pushed a page and then
    // failed to claim (because we held the claim) is seen here, and we drain for it.
    xclaim_.store(0, std::memory_order_seq_cst);
    if (!xabandoned_.load(std::memory_order_seq_cst) || xpending_.EmptySeqCst()) return;
    if (!TryClaim()) return;  // whoever holds it now inherits this duty
    if (abandoned()) ProcessAllPending(adopter);
  }
}

// The freer collects the dead heap's queue into the dead heap itself: empty pages go back to the
// page source, the others stay on its lists, where the next thread takes them over with the heap
// (HeapRegistry::AcquireHeap) and a live thread that needs a page adopts one (AdoptAbandoned).
// The freer's own heap takes none of them. It did once, so that its later
// frees into them were local; but a freer that does not allocate those classes never reused
// them, and their blocks, freed later by other threads, waited on its pending queue, which only
// its own allocation slow path drains: a main thread that frees what exited workers left behind
// collected every such page: in bench/thread_churn.cc its heap held 44-45 MiB of spans with about
// 1 MiB of blocks in them at the peak (bench/RESULTS.md, issue 11; mf2/churn_test.cc).
void Heap::ReclaimAbandoned_mt() {
  if (!TryClaim()) return;  // the holder will see our page when it releases (see above)
  if (abandoned()) {
    ProcessAllPending();
    MF2_STAT_INC(stats_, dead_owner_reclaims);
  }
  ReleaseClaimAndRecheck();
}

// ------------------------------------------------------------------------------------------
// A thread exits, a new thread takes its heap over.

void Heap::Abandon() {
  BeginOpOrWait();
  SetMoveTo(nullptr, nullptr);
  // The caches first: their blocks go back to the pages while we still own them all.
  FlushCachesInOp();
  // seq_cst: orders this store before the pop-alls below, against producers' "push; load
  // abandoned" (PendingQueue::Push_mt): either we see their page or they see the flag.
  xabandoned_.store(true, std::memory_order_seq_cst);
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    Page* page = active_[k];
    if (page == nullptr) continue;
    active_[k] = nullptr;
    page->set_where(Page::Where::kNowhere);
    Collect(page, page->remote().TakeBlocksKeepFlag(), this);
    if (page->HasFree()) {
      PageGainedFree(page);
    } else {
      Detach(page);
    }
  }
  ProcessAllPending();
  ReleaseRetainedEmpties();
  MF2_STAT_INC(stats_, heaps_abandoned);
  EndOp();
}

void Heap::ReleaseSlotPages() {
  MF2_CHECK(!is_sentinel(), "ReleaseSlotPages: a sentinel has no slots");
  for (uint32_t k = 0; k < kNumClasses; ++k) {
    MF2_CHECK(cache_[k].n() == 0, "ReleaseSlotPages: every cache is empty");
  }
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  // The null words included: zero again after this, as they must be.
  const uintptr_t start = reinterpret_cast<uintptr_t>(slot_storage());
  const uintptr_t first = (start + page - 1) & ~(page - 1);
  // The mapping ends at the page boundary after the storage (mmap maps whole pages).
  const uintptr_t end = (start + sizeof(SlotStorage) + page - 1) & ~(page - 1);
  if (first < end) madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
}

void Heap::TakeOver() {
  BeginOpOrWait();
  SetMoveTo(nullptr, nullptr);
  ConfigureCaches();
  MarkIdleFlushed();  // its first slow path tells the reclaimer it is in use again
  // Relaxed: we hold the claim; producers that still see `true` only fail to claim. (A parker
  // reads it after acquiring this operation's EndOp.)
  xabandoned_.store(false, std::memory_order_relaxed);
  MF2_STAT_INC(stats_, heaps_reused);
  EndOp();
}

void Heap::ProcessAllPending(Heap* adopter) {
  const bool hand_over =
      adopter != nullptr && adopter != this && abandoned() && adopter->source_ == source_;
  for (Page* chain = xpending_.PopAllSeqCst(); chain != nullptr;
       chain = xpending_.PopAllSeqCst()) {
    while (chain != nullptr) {
      Page* page = chain;
      chain = page->pending_next();  // hazard 5: link first
      if (hand_over) {
        adopter->AdoptDequeued(page, this);
        continue;
      }
      CollectDequeued(page);
      FilePage(page, 0);  // class 0 matches nothing: file or release it (then it is gone)
    }
  }
}

// ------------------------------------------------------------------------------------------
// Pages change owner: adoption of an exited thread's pages.

// We hold `page`'s flag and it is on none of `from`'s lists: it becomes ours. The owner changes
// before `where` (Free reads them in the opposite order; page.h) and while the flag is held
// (spin model, mutant M6); the TakeAll that follows publishes both to the next edge winner.
void Heap::AdoptHeld_mt(Page* page, Heap* from) {
  from->CountPage_mt(page, -1);
  page->SetOwner(this);
  page->set_where(Page::Where::kNowhere);
  CountPage_mt(page, +1);
  MF2_STAT_INC(stats_, pages_adopted);
}

// We hold the claim of `dead` (abandoned): `page` was just popped off its queue, so its
// in_remote_pending flag is set and nobody can queue it again until it is cleared. The owner
// changes while the flag is held (spin model, mutant M6: never after the collection), then our
// TakeAll clears the flag and publishes the new owner to the next edge winner.
void Heap::AdoptDequeued(Page* page, Heap* dead) {
  MF2_CHECK(page->owner_relaxed() == dead, "a page is only ever queued on its owner's queue");
  AdoptionBoard::Global().UncountDequeued(page, dead->id_);
  page->DebugNoteDequeued();
  if (page->where() == Page::Where::kPartial) dead->PartialRemove(page);
  dead->Unretain(page);
  AdoptHeld_mt(page, dead);
  RemoteWord taken = page->remote().TakeAll();
  MF2_CHECK(taken.pending(), "a dequeued page arrives with its flag held");
  Collect(page, taken, dead);
  if (page->HasFree()) {
    PageGainedFree(page);
  } else {
    Detach(page);
  }
}

// We hold the claim of `dead` (abandoned): adopts a page of class k from its partial list whose
// in_remote_pending flag could be taken (a flagged page is queued or being queued: left to the
// queue). nullptr if none among the first few.
Page* Heap::AdoptPartial(Heap* dead, uint32_t k) {
  MF2_CHECK(dead->abandoned(), "only an abandoned heap's partial pages are adopted");
  int scanned = 0;
  for (Page* page = dead->partial_[k].front(); page != nullptr && scanned < 8;
       page = page->next, ++scanned) {
    if (!page->remote().TryAcquireFlag()) continue;
    dead->PartialRemove(page);
    dead->Unretain(page);
    AdoptHeld_mt(page, dead);
    // We hold the page's flag and own it now: take what arrived and clear the flag, which
    // publishes the new owner to the next 0->1 edge winner.
    Collect(page, page->remote().TakeAll(), dead);
    return page;
  }
  return nullptr;
}

// Route S step 4: claims a heap whose thread exited; its queued pages join us, then one page of
// class k from its partial list. Returns a page of ours with a free block of class k, or nullptr.
Page* Heap::AdoptAbandoned(uint32_t k) {
  if (registry_ == nullptr) return nullptr;
  Heap* dead = registry_->ClaimIdleHeap(this);
  if (dead == nullptr) return nullptr;
  dead->ProcessAllPending(this);  // queued pages join us; one of them may serve class k
  Page* page = AdoptPartial(dead, k);
  dead->ReleaseClaimAndRecheck(this);
  if (page != nullptr) return page;
  return active_[k] != nullptr && active_[k]->HasFree() ? active_[k] : partial_[k].front();
}

}  // namespace mf2
