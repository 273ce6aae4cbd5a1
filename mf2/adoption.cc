#include "mf2/adoption.h"

#include "mf2/base.h"
#include "mf2/check.h"

namespace mf2 {

namespace {
// Never destroyed: threads free memory after static destructors run.
MF2_CONSTINIT StaticObject<AdoptionBoard> g_board;
}  // namespace

AdoptionBoard& AdoptionBoard::Global() { return g_board.value; }

void AdoptionBoard::RegisterHeap(Heap* heap, uint32_t id) {
  if (id >= kMaxHeaps) return;
  // Release: an adopter that finds the heap by id (acquire) sees it constructed.
  heaps_[id].store(heap, std::memory_order_release);
}

Heap* AdoptionBoard::HeapById(uint32_t id) const {
  // Acquire: pairs with RegisterHeap.
  return id < kMaxHeaps ? heaps_[id].load(std::memory_order_acquire) : nullptr;
}

void AdoptionBoard::CountQueued(Page* page, uint32_t owner_id) {
  MF2_DCHECK(!page->adopt_counted, "a page is counted once per queueing");
  page->adopt_counted = true;
  // Relaxed: a gauge read by the pressure gate; it orders nothing.
  shards_[owner_id % kShards].adoptable[page->size_class()].fetch_add(1, std::memory_order_relaxed);
}

void AdoptionBoard::UncountDequeued(Page* page, uint32_t owner_id) {
  if (!page->adopt_counted) return;
  page->adopt_counted = false;
  // Relaxed: as CountQueued.
  shards_[owner_id % kShards].adoptable[page->size_class()].fetch_sub(1, std::memory_order_relaxed);
}

uint32_t AdoptionBoard::adoptable(uint32_t k) const {
  int64_t n = 0;
  // Relaxed: a gauge. A page moving between counts mid-sum may be missed or seen twice.
  for (const Shard& s : shards_) n += s.adoptable[k].load(std::memory_order_relaxed);
  return n > 0 ? static_cast<uint32_t>(n) : 0;
}

void AdoptionBoard::MarkReady(uint32_t k, uint32_t id) {
  if (id >= kMaxHeaps) return;
  std::atomic<uint64_t>& w = classes_[k].ready[id / 64];
  const uint64_t bit = uint64_t{1} << (id % 64);
  // A load to skip the locked RMW when the bit is already set (the common case). seq_cst, with
  // the seq_cst push before it, ClearReady and the adopter's pop (PendingQueue::PopAll_mt): the
  // store-buffering shape "push; load bit" vs "clear bit; load head". If this load reads a set
  // from before the adopter's clear, it precedes the clear in the total order, so the push does
  // too and the adopter's pop sees the page. A relaxed load could read that stale set while the
  // pop misses the page: the hint would be lost (spin model model/ready_sb.pml). On x86 it is
  // the same plain load.
  if (w.load(std::memory_order_seq_cst) & bit) return;
  // Release: an adopter whose ClearReady reads this value sees the page we queued before.
  w.fetch_or(bit, std::memory_order_release);
}

void AdoptionBoard::ClearReady(uint32_t k, uint32_t id) {
  if (id >= kMaxHeaps) return;
  // seq_cst: acquire pairs with MarkReady's release (see the header), and the clear must be in
  // the total order with MarkReady's seq_cst check and our seq_cst pop that follows (see
  // MarkReady): an acq_rel clear could be invisible to that check although it precedes our pop.
  // On x86 the locked RMW is the same instruction.
  classes_[k].ready[id / 64].fetch_and(~(uint64_t{1} << (id % 64)), std::memory_order_seq_cst);
}

bool AdoptionBoard::IsReady(uint32_t k, uint32_t id) const {
  // Relaxed: a snapshot for checks.
  return id < kMaxHeaps &&
         ((classes_[k].ready[id / 64].load(std::memory_order_relaxed) >> (id % 64)) & 1);
}

void AdoptionBoard::CheckInvariants(const uint32_t* queued_counted) const {
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    MF2_CHECK(adoptable(k) == queued_counted[k],
              "adoptable[k] == queued pages of class k that were counted");
  }
}

}  // namespace mf2
