// A heap's pending queue: the pages of this heap that received a remote free since the owner
// last drained them. A lock-free multi-producer stack (Treiber) whose consumer takes everything
// at once.
//
// Producers: the thread that won a page's 0->1 in_remote_pending edge pushes it, once.
// Consumers: the holder of the heap's claim pops ALL pages with one exchange; so do Route P / cda
// adopters and idle reclaimers (Heap::AdoptFromPending_mt, ReclaimIdleOwner_mt), which give back
// what they do not take with one PushChain_mt. Pop-all has no ABA problem whatever the number of
// consumers (docs/protocol.md, hazard 4: a single-pop CAS does, as soon as anyone but the
// owner pops; spin model pending_queue.pml checks two pop-all consumers).
// Walking a popped chain: read a page's pending_next BEFORE draining it (hazard 5: once the flag
// is cleared a producer may re-push the page and overwrite the link).
#ifndef MF2_PENDING_QUEUE_H_
#define MF2_PENDING_QUEUE_H_

#include <atomic>

#include "mf2/page.h"

namespace mf2 {

class PendingQueue {
 public:
  // Any thread (the edge winner of `page`).
  void Push_mt(Page* page) { PushChain_mt(page, page); }

  // Any thread holding the flags of a chain first..last (linked by pending_next): an adopter
  // giving back what it popped and did not take. One CAS whatever the length.
  void PushChain_mt(Page* first, Page* last) {
    // Relaxed load: a guess for the CAS; the link is rewritten on each retry.
    Page* head = head_.load(std::memory_order_relaxed);
    do {
      last->set_pending_next(head);
      // seq_cst on success. Release would publish the link and page; seq_cst also orders this
      // push before the caller's following load of the owner's `abandoned` flag, against the
      // exiting owner's "store abandoned; pop all" (the store-buffering shape: at least one of
      // the two sees the other, so a page pushed onto a dying heap is never stranded).
    } while (!head_.compare_exchange_weak(head, first, std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
  }

  // The claim holder of a live heap: takes the whole chain (linked by pending_next, most recent
  // first). A page pushed concurrently is seen on a later call.
  Page* PopAll() {
    // Relaxed check first: skip the locked exchange when empty (the common case).
    if (head_.load(std::memory_order_relaxed) == nullptr) return nullptr;
    // Acquire: see the links and pages pushed (pairs with the producers' CAS).
    return head_.exchange(nullptr, std::memory_order_acquire);
  }

  // Another live heap's thread: idle sweeps and Route P / cda adopters (SweepQueue in
  // heap_adopt.cc). As PopAll, but the empty check is seq_cst. Two store-buffering shapes need
  // it (spin models model/sweep_sb.pml and model/ready_sb.pml):
  //  - a completer's "count the whole page (seq_cst RMW); pop" against an edge winner's (or an
  //    adopter's give-back) "push (seq_cst CAS); re-read the count (seq_cst)" (heap_adopt.cc, "Who
  //    sweeps"): one of the two must see the other, or a whole page stays queued on an idle owner;
  //  - an adopter's "clear the ready bit (seq_cst RMW); pop" against an edge winner's "push;
  //    check the bit (seq_cst)" (AdoptionBoard::MarkReady): or the hint is lost.
  // C++ orders the four operations of each shape in one total order only if all four are
  // seq_cst; a relaxed load may return a value older than what its own thread's preceding RMW
  // made visible (weakly ordered hardware, POWER or ARM, can do it), so with the relaxed check
  // both sides could miss. On x86 a seq_cst load is the same plain load as a relaxed one.
  Page* PopAll_mt() {
    // seq_cst: see above.
    if (head_.load(std::memory_order_seq_cst) == nullptr) return nullptr;
    // Acquire: as PopAll.
    return head_.exchange(nullptr, std::memory_order_acquire);
  }

  // The claim holder of an abandoned (or abandoning) heap: as PopAll, but seq_cst and without the
  // relaxed shortcut, for the ordering described in Push_mt.
  Page* PopAllSeqCst() { return head_.exchange(nullptr, std::memory_order_seq_cst); }

  // seq_cst: used in the abandoned-heap hand-off after releasing the claim (see Heap).
  bool EmptySeqCst() const { return head_.load(std::memory_order_seq_cst) == nullptr; }
  // Relaxed: a snapshot for statistics and quiescent invariant checks.
  Page* PeekRelaxed() const { return head_.load(std::memory_order_relaxed); }

 private:
  std::atomic<Page*> head_{nullptr};
};

}  // namespace mf2

#endif  // MF2_PENDING_QUEUE_H_
