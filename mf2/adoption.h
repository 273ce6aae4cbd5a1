// AdoptionBoard: what Route P (and the cda control) consult to find adoptable pages in O(1), and
// the idle-owner test shared with reclamation.
//
// Per size class k:
//   ready_[k]      a bitmap over heap ids: bit h set when heap h's pending queue may hold a
//                  counted page of class k. Set by the 0->1 edge winner after it queues the page;
//                  cleared by an adopter just BEFORE it pops heap h's queue and set again if a
//                  class-k page is left there afterwards, so a hint is never lost: an edge
//                  winner's set either comes after our clear (the bit stays set) or before it (its
//                  release and our acq_rel RMW make its queued page visible to our pop).
//   adoptable(k)   the number of counted class-k pages waiting on pending queues (Route P's
//                  pressure gate). The edge winner counts a page (Page::adopt_counted, protected
//                  by the page's flag) and whoever pops it uncounts it, so the total stays exact
//                  whatever the route was when the page was queued. Sharded by the owner's id
//                  (kShards lines), so threads queueing pages of different owners do not contend
//                  on one counter; the gate sums the shards.
// Heaps with ids >= kMaxHeaps are never marked ready: their pages are not adopted by Route P
// (Route S applies to them unchanged).
//
// Invariants (CheckInvariants, quiescent, given every heap's queue contents):
//   adoptable_[k] == number of queued pages of class k with adopt_counted
//   a queued page with adopt_counted has its owner's bit set in ready_[k]
#ifndef MF2_ADOPTION_H_
#define MF2_ADOPTION_H_

#include <atomic>
#include <cstdint>
#include <time.h>

#include "mf2/page.h"
#include "mf2/size_class.h"

namespace mf2 {

class Heap;

// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call). Read only by threads deciding about
// other heaps (adopters, reclaimers, Route P edge winners), never on an owner's fast path.
inline uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

class AdoptionBoard {
 public:
  static constexpr uint32_t kMaxHeaps = 256;
  static constexpr uint32_t kWords = kMaxHeaps / 64;

  constexpr AdoptionBoard() = default;
  static AdoptionBoard& Global();

  // A new heap (ids are dense and never reused). Thread-safe.
  void RegisterHeap(Heap* heap, uint32_t id);
  Heap* HeapById(uint32_t id) const;

  // The edge winner, holding the page's flag, before queueing it on its owner `owner_id`.
  void CountQueued(Page* page, uint32_t owner_id);
  // Whoever popped the page off owner `owner_id`'s queue (still holding its flag).
  void UncountDequeued(Page* page, uint32_t owner_id);
  uint32_t adoptable(uint32_t k) const;

  // The edge winner, after queueing a class-k page on heap `id`.
  void MarkReady(uint32_t k, uint32_t id);
  // An adopter about to pop heap `id`'s queue for class k.
  void ClearReady(uint32_t k, uint32_t id);
  // The first heap, in rotating order from `*rotor` (so adopters spread over owners), whose bit
  // is set for class k and for which accept(heap) holds; nullptr when none. Advances *rotor.
  // Bounded by kMaxHeaps bits (kWords loads).
  template <typename Accept>
  Heap* PickReady(uint32_t k, uint32_t* rotor, Accept accept) const {
    const uint32_t start = (*rotor)++ % kMaxHeaps;
    for (uint32_t i = 0; i <= kWords; ++i) {
      const uint32_t wi = (start / 64 + i) % kWords;
      // Relaxed: a hint; the pop that follows is what synchronises.
      uint64_t bits = classes_[k].ready[wi].load(std::memory_order_relaxed);
      if (i == 0) bits &= ~uint64_t{0} << (start % 64);                 // from `start` on...
      if (i == kWords) bits &= ~(~uint64_t{0} << (start % 64));         // ...round to it
      for (; bits != 0; bits &= bits - 1) {
        Heap* h = HeapById(wi * 64 + static_cast<uint32_t>(__builtin_ctzll(bits)));
        if (h != nullptr && accept(h)) return h;
      }
    }
    return nullptr;
  }
  bool IsReady(uint32_t k, uint32_t id) const;

  // Quiescent check of the equations above; `queued_counted[k]` is computed by the caller
  // (HeapRegistry::CheckAll) from every heap's queue.
  void CheckInvariants(const uint32_t* queued_counted) const;

 private:
  static constexpr uint32_t kShards = 4;
  struct alignas(64) PerClass {
    std::atomic<uint64_t> ready[kWords] = {};
  };
  struct alignas(64) Shard {
    std::atomic<int32_t> adoptable[kNumClasses] = {};
  };
  PerClass classes_[kNumClasses];
  Shard shards_[kShards];
  std::atomic<Heap*> heaps_[kMaxHeaps] = {};
};

}  // namespace mf2

#endif  // MF2_ADOPTION_H_
