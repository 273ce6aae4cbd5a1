// Route P, the cda control and idle reclamation: the Heap methods that act on ANOTHER live
// heap's pending queue. Every page they move is detached and held by its in_remote_pending flag
// (page.h, "Detached pages"); the queue is popped whole and what is not taken goes back with one
// CAS (pending_queue.h). Gates and switches: policy.h; ready bitmap and counts: adoption.h.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "mf2/adoption.h"
#include "mf2/fence.h"
#include "mf2/futex.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/reclaimer.h"

namespace mf2 {

bool Heap::OwnerIdle_mt(uint64_t now_ns, uint64_t threshold_ns, uint64_t* idle_in_ns) {
  constexpr uint64_t kTimeMask = (uint64_t{1} << 40) - 1;
  // Relaxed loads and stores: a heuristic; racing observers at worst restart the clock.
  const uint64_t epoch = xslow_epoch_.load(std::memory_order_relaxed) & 0xffffff;
  const uint64_t now_us = (now_ns / 1000) & kTimeMask;
  const uint64_t probe = xidle_probe_.load(std::memory_order_relaxed);
  uint64_t idle_for_ns = 0;
  if (probe == 0 || (probe >> 40) != epoch) {
    // First sight of this epoch: the owner has been idle at most since now.
    xidle_probe_.store((epoch << 40) | now_us | (probe == 0 && now_us == 0 ? 1 : 0),
                       std::memory_order_relaxed);
  } else {
    // An observer whose clock reading came after ours may have stored the probe: its time is
    // later than now_us, and the masked difference wraps to almost 2^40 us. That is "just now":
    // idle for no time yet, not for 12 days.
    const uint64_t since_us = (now_us - (probe & kTimeMask)) & kTimeMask;
    idle_for_ns = since_us < (kTimeMask >> 1) ? since_us * 1000 : 0;
  }
  if (idle_for_ns >= threshold_ns) return true;
  // Without another slow path, the owner is idle in (threshold - idle so far).
  if (idle_in_ns != nullptr) *idle_in_ns = threshold_ns - idle_for_ns;
  return false;
}

// Pops `owner`'s queue (the caller then holds the flag of every page on it) and, per page, asks
// `take(page)` whether to keep it; the others go back with one CAS, and the ready bits of their
// classes are set again (another sweeper may have cleared one while we held its pages: adoption.h).
// Afterwards the chain is not touched (the owner may drain and release those pages at once).
// Pages given back to an owner that has exited meanwhile are drained by `self` (as in
// QueueWonPage_mt: a dead owner never drains its queue).
template <typename Take>
static void SweepQueue(Heap* self, Heap* owner, PendingQueue* queue, Take take) {
  Page* first = nullptr;
  Page* last = nullptr;
  uint64_t classes[2] = {0, 0};  // classes of the counted pages given back
  // PopAll_mt, not PopAll: its seq_cst empty check closes the store-buffering shapes described
  // there (weak memory; issue 10, item 11).
  Page* p = queue->PopAll_mt();
  // Relaxed: a test's hook, set before the sweeps it is about.
  Heap::SweepHook hook = Heap::sweep_hook_for_testing.load(std::memory_order_relaxed);
  if (p != nullptr && hook != nullptr) hook(self, owner);
  while (p != nullptr) {
    Page* next = p->pending_next();  // hazard 5: the link before anything else
    if (!take(p)) {
      if (last == nullptr) {
        first = p;
      } else {
        last->set_pending_next(p);
      }
      last = p;
      if (p->adopt_counted) classes[p->size_class() / 64] |= uint64_t{1} << (p->size_class() % 64);
    }
    p = next;
  }
  if (first == nullptr) return;
  queue->PushChain_mt(first, last);
  for (uint32_t w = 0; w < 2; ++w) {
    for (uint64_t bits = classes[w]; bits != 0; bits &= bits - 1) {
      AdoptionBoard::Global().MarkReady(w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits)),
                                        owner->id());
    }
  }
  // seq_cst (inside abandoned_seq_cst): ordered after the seq_cst push above, against the
  // exiting owner's "store abandoned; pop all" (PendingQueue::Push_mt).
  if (owner->abandoned_seq_cst()) owner->ReclaimAbandoned_mt();
}

Page* Heap::AdoptFromPending_mt(uint32_t k, Route route) {
  AdoptionBoard& board = AdoptionBoard::Global();
  Heap* owner = board.PickReady(
      k, &rotor_, [this](Heap* h) { return h != this && h->source_ == source_; });
  if (owner == nullptr) return nullptr;
  const uint32_t id = owner->id_;
  if (owner->abandoned()) {
    // Exited owners' pages are reclaimed by Route S (AdoptAbandoned, the dead-owner drain).
    board.ClearReady(k, id);
    return nullptr;
  }
  const Policy& policy = GetPolicy();
  const uint64_t now = NowNs();
  if (route == Route::kRouteP) {
    if (!owner->OwnerIdle_mt(now, policy.idle_threshold_ns)) {
      MF2_STAT_INC(stats_, adopt_blocked_owner_active);
      return nullptr;
    }
    if (policy.adopt_partial_gate && !owner->PartialEmpty_mt(k)) {
      MF2_STAT_INC(stats_, adopt_blocked_owner_partial);
      return nullptr;
    }
    if (board.adoptable(k) <= policy.adopt_pressure) {
      MF2_STAT_INC(stats_, adopt_blocked_pressure);
      return nullptr;
    }
  }
  board.ClearReady(k, id);  // before the pop: see adoption.h
  Page* chosen = nullptr;
  bool blocked_deadline = false;
  bool blocked_remote = false;
  SweepQueue(
      this, owner, &owner->xpending_,
      [&](Page* p) {
        // We hold p's flag. Only a detached page (full, on none of the owner's lists) may move.
        // adoptable_detach before where (acquire both; page.h): read after, a Detach in progress
        // could pair its new `true` with the kDetached of an earlier unarmed detach.
        if (chosen != nullptr || p->size_class() != k || !p->adoptable_detach.load_acquire() ||
            p->where_acquire() != Page::Where::kDetached) {
          return false;
        }
        if (route == Route::kRouteP) {
          const uint32_t min_remote = std::min(policy.adopt_min_remote, p->capacity());
          if (now < p->rfr_deadline_ns) {
            blocked_deadline = true;
            return false;
          }
          if (p->remote().Peek().count() < min_remote) {
            blocked_remote = true;
            return false;
          }
        }
        chosen = p;
        return true;
      });
  // A page may have come back whole while we held the chain: its completer's sweep missed it.
  RequestSweep_mt(owner);
  if (chosen == nullptr) {
    if (blocked_deadline) {
      MF2_STAT_INC(stats_, adopt_blocked_deadline);
    } else if (blocked_remote) {
      MF2_STAT_INC(stats_, adopt_blocked_remote_count);
    } else {
      MF2_STAT_INC(stats_, adopt_no_candidate);
    }
    return nullptr;
  }
  AdoptPopped_mt(chosen, owner);
  if (!chosen->HasFree()) {  // only if the remote list was corrupt (reported in Collect)
    Detach(chosen);
    return nullptr;
  }
  return chosen;
}

// A detached page we popped off `owner`'s queue (so we hold its flag) becomes ours: off the
// adoption count, owner changed under the flag, then TakeAll clears the flag, which publishes
// the new owner to the next edge winner (and to the old owner's FreeDetached), and its blocks
// join our free list.
void Heap::AdoptPopped_mt(Page* page, Heap* owner) {
  AdoptionBoard::Global().UncountDequeued(page, owner->id_);
  page->DebugNoteDequeued();
  AdoptHeld_mt(page, owner);
  Collect(page, page->remote().TakeAll(), owner);
}


// Who sweeps. xwhole_unswept_ counts the owner's pages that came back whole and were not taken
// yet (Collect discounts them at every take of a remote stack). Every request (RequestSweep_mt)
// wakes the background reclaimer, which sweeps every idle owner with whole pages, so the freeing
// threads pay neither the sweep nor the madvise of the pages it releases. Without the reclaimer
// (MF2_BACKGROUND_RECLAIM=0, or its thread could not start) the requester sweeps itself, batched
// since a sweep walks the owner's whole queue: once the count reaches Policy::reclaim_batch. An
// idle owner then keeps fewer than reclaim_batch whole pages (plus the miscounts noted at
// xwhole_unswept_), and the sweep cost per reclaimed page is the queue length / reclaim_batch.
// Requests come from:
//  - the thread whose free completed a page (count + 1, then the request);
//  - a sweep already running (xsweeping_) owes another pass when asked (xsweep_wanted_): the
//    page may have been in its popped chain, checked before it was complete;
//  - a page being queued: its edge winner re-reads the count after queueing (seq_cst): if the
//    completer's pop came before the queueing push, the increment before that pop is visible;
//  - a page held by an adopter's pop: the adopter re-reads the count after giving pages back.
// While the owner is not yet idle nothing is swept: its own slow path drains its queue. The
// reclaimer checks such an owner again later (reclaimer.cc); without it, a page that comes back
// whole just before the owner goes idle stays queued until the owner's next slow path or a later
// completion triggers a sweep.
void Heap::RequestSweep_mt(Heap* owner) {
  const Policy& policy = GetPolicy();
  if (!policy.reclaim_idle) return;
  // seq_cst load: the re-check of the store-buffering shapes above (a completer's count against
  // our push of the page, or our give-back).
  const int64_t whole = owner->whole_unswept_mt();
  if (whole <= 0) return;
  const int64_t batch = policy.reclaim_batch;
  // The reclaimer sweeps heaps of the process's page source only (tests run others).
  if (owner->source_ == &OsPageSource::Global() && reclaimer::Available()) {
    // The reclaimer's pass after this notification pops the owner's queue after our push (its
    // clear of the notification and the pop are seq_cst, after our exchange): it sees the page.
    reclaimer::Notify();
    // A freer sweeps itself only when the reclaimer has not run for a long time although
    // notified (starved of CPU): memory stays bounded.
    if (whole >= batch && reclaimer::Starved()) ReclaimIdleOwner_mt(owner);
    return;
  }
  if (whole >= batch) ReclaimIdleOwner_mt(owner);
}

bool Heap::ReclaimIdleOwner_mt(Heap* owner, uint64_t* idle_in_ns) {
  if (is_sentinel()) {
    // A thread without a heap (thread_heap.h) cannot take pages over: it sweeps through a heap
    // taken for the sweep only (sweeps are rare: one per reclaim_batch whole pages).
    if (owner->abandoned()) return true;
    Heap* helper = owner->registry_->AcquireHeap(owner->source_);
    if (helper == nullptr) return true;
    const bool done = helper->ReclaimIdleOwner_mt(owner, idle_in_ns);
    owner->registry_->ReleaseHeap(helper);
    return done;
  }
  if (owner == this || owner->source_ != source_ || owner->abandoned()) return true;
  if (!owner->OwnerIdle_mt(NowNs(), GetPolicy().reclaim_after_ns, idle_in_ns)) {
    MF2_STAT_INC(stats_, reclaim_blocked_owner_active);
    return false;
  }
  // The background reclaimer first does the owner's GoIdle (its caches and held remote frees
  // back, its queue collected, its empty pages released): what the caches pinned comes back
  // too. Not a freeing thread: a membarrier and another heap's GoIdle stay off its path.
  if (helper_) FlushIdleOwner_mt(owner);
  // seq_cst exchange, CAS, exchange and load: the try-lock-and-recheck handshake described
  // above (spin model model/sweep_sb.pml). Weak-memory details (issue 10, item 11):
  //  - the CAS's failure order is seq_cst too: a failed CAS is the load of a store-buffering
  //    shape ("wanted = true; read sweeping" vs the sweeper's "sweeping = false; read wanted");
  //    a relaxed failure could read a stale `true` while the sweeper reads a stale `false`;
  //  - xsweep_wanted_ is only ever written by exchanges (read-modify-writes), so its writes form
  //    one release sequence: the sweeper's exchange(false) and re-check synchronise with every
  //    requester they take over, and its sweep sees the remote-stack count that made each
  //    requester's page whole (Peek is relaxed). A store(false) would overwrite a request
  //    without acquiring it, and the sweep could find that page not yet whole and give it back.
  // On x86 a seq_cst store is already an exchange, and the CAS is the same instruction.
  owner->xsweep_wanted_.exchange(true, std::memory_order_seq_cst);
  for (;;) {
    bool expected = false;
    if (!owner->xsweeping_.compare_exchange_strong(expected, true, std::memory_order_seq_cst,
                                                   std::memory_order_seq_cst)) {
      return true;  // the sweeper re-checks xsweep_wanted_ after it finishes
    }
    owner->xsweep_wanted_.exchange(false, std::memory_order_seq_cst);
    SweepIdleOwner_mt(owner);
    owner->xsweeping_.store(false, std::memory_order_seq_cst);
    if (!owner->xsweep_wanted_.load(std::memory_order_seq_cst)) return true;
  }
}

// ------------------------------------------------------------------------------------------
// The idle flush (heap.h): a parker acts as an idle owner for the length of its GoIdle.

Mutex& Heap::IdleFlushMutex() {
  static Mutex mu;
  return mu;
}

void Heap::WaitUnparked() {
  for (;;) {
    // Acquire: a 0 stored by the parker's unpark (release) carries everything it did as owner.
    uint32_t state = xpark_.load(std::memory_order_acquire);
    if (state == kUnparked) return;
    if (state == kParkRequested) {
      // Cancel the request; the parker's CAS requested -> parked then fails and it touches
      // nothing. Acquire on both outcomes: a failure may read the parker's 0 (see above).
      if (xpark_.compare_exchange_strong(state, kUnparked, std::memory_order_acquire,
                                         std::memory_order_acquire)) {
        return;
      }
      continue;
    }
    FutexWait(&xpark_, kParked);  // the parker wakes every waiter when it unparks
  }
}

void* Heap::AllocateParked(size_t size) noexcept {
  WaitUnparked();
  return Allocate(size);  // from the start: the caches may have changed
}

void Heap::FreeParked(void* p, const char* call) noexcept {
  WaitUnparked();
  Free(p, call);
}

bool Heap::FlushIdleHolder_mt(Heap* holder, uint64_t* idle_in_ns) {
  MF2_CHECK(helper_, "only the background reclaimer flushes other heaps' held frees");
  if (!holder->OwnerIdle_mt(NowNs(), GetPolicy().reclaim_after_ns, idle_in_ns)) return false;
  FlushIdleOwner_mt(holder, FlushScope::kHeldFrees);
  return true;
}

bool Heap::FlushLongIdleOwner_mt(Heap* owner, uint64_t* idle_in_ns) {
  if (owner == this || owner->is_sentinel() || owner->source_ != source_ || owner->abandoned() ||
      !AsymmetricFenceHeavyAvailable()) {
    return true;
  }
  if (!owner->IdleFlushOwed_mt()) return true;
  const uint64_t threshold = GetPolicy().idle_flush_after_ns;
  if (!owner->OwnerIdle_mt(NowNs(), threshold, idle_in_ns)) {
    // A first sight of its slow-path epoch (the clock starts now, a whole threshold to go): the
    // owner took a slow path since the last look, so it may be working still. Look again in a
    // quarter threshold, not a whole one: an owner that stopped just after this look would
    // otherwise be flushed up to two thresholds after its last slow path; now within 1.25.
    if (idle_in_ns != nullptr && *idle_in_ns >= threshold) *idle_in_ns = threshold / 4;
    return false;
  }
  if (FlushIdleOwner_mt(owner, FlushScope::kCachesAndSlots) || !owner->IdleFlushOwed_mt()) {
    return true;
  }
  // Inside an operation: a thread running on its caches alone, idle by the slow-path clock but
  // busy. Try again a whole threshold later, not at once: retrying every pass (1 ms) parked it
  // with a membarrier 550 times a second in a malloc/free loop (bench/RESULTS.md).
  if (idle_in_ns != nullptr) *idle_in_ns = threshold;
  return false;
}

bool Heap::FlushIdleOwner_mt(Heap* owner, FlushScope scope) {
  if (owner == this || owner->is_sentinel() || owner->source_ != source_) return false;
  MutexLock lock(&IdleFlushMutex());
  uint32_t expected = kUnparked;
  // Relaxed: the heavy fence below orders this store before the load of xbusy_, against the
  // owner's "xbusy_ = 1; light fence; load xpark_" (heap.h, fence.h).
  if (!owner->xpark_.compare_exchange_strong(expected, kParkRequested,
                                             std::memory_order_relaxed)) {
    return false;  // only one parker at a time holds the mutex: the owner is cancelling
  }
  bool ran = false;
  // Acquire: a 0 read here was stored by the owner's last EndOp (release): its writes are ours.
  if (AsymmetricFenceHeavy() && owner->xbusy_.load(std::memory_order_acquire) == 0) {
    expected = kParkRequested;
    // Relaxed: what we need of the owner came with xbusy_ above; a failure means the owner
    // cancelled (it started an operation after the fence and read the request).
    if (owner->xpark_.compare_exchange_strong(expected, kParked, std::memory_order_relaxed)) {
      // seq_cst: an owner that abandoned the heap before the fence did so in an operation whose
      // EndOp we acquired; the heap then belongs to its claim holders, not to us.
      if (!owner->abandoned_seq_cst()) {
        const size_t pages = owner->page_count();
        if (scope == FlushScope::kHeldFrees) {
          owner->FlushRemoteChainsInOp();
        } else {
          owner->IdleFlushInOp();
          if (scope == FlushScope::kCachesAndSlots) owner->ReleaseSlotPages();
          owner->MarkIdleFlushed();  // the owner's BeginOp acquires our unpark (below)
        }
        // What GoIdle released are the idle owner's pages a sweep would have counted.
        const size_t left = owner->page_count();
        MF2_STAT_ADD(stats_, pages_reclaimed, pages > left ? pages - left : 0);
        ran = true;
      }
      // Release: the owner's WaitUnparked (acquire) sees everything GoIdle did.
      owner->xpark_.store(kUnparked, std::memory_order_release);
      FutexWake(&owner->xpark_, INT_MAX);
      return ran;
    }
    return false;
  }
  // The owner is inside an operation (or no heavy fence exists): withdraw the request, unless
  // the owner cancelled it already. Relaxed: nothing was done.
  expected = kParkRequested;
  owner->xpark_.compare_exchange_strong(expected, kUnparked, std::memory_order_relaxed);
  return false;
}

void Heap::SweepIdleOwner_mt(Heap* owner) {
  MF2_STAT_INC(stats_, idle_reclaims);
  SweepQueue(
      this, owner, &owner->xpending_,
      [&](Page* p) {
        // A detached page whose every block is on its remote stack: nobody can allocate from it
        // and no legitimate free can still arrive. Take it over (as an adopter would) and
        // release it through the ordinary owner path, which re-validates every block.
        if (p->where_acquire() != Page::Where::kDetached ||
            p->remote().Peek().count() != p->capacity()) {
          return false;
        }
        AdoptPopped_mt(p, owner);
        if (p->used() == 0 && TryRelease(p)) {
          MF2_STAT_INC(stats_, pages_reclaimed);
        } else if (p->HasFree()) {
          PageGainedFree(p);
        } else {
          Detach(p);
        }
        return true;
      });
}

}  // namespace mf2
