#include "mf2/page.h"

#include <cstring>

namespace mf2 {

void Page::InitForClass(uint32_t size_class, char* start, Heap* owner) {
  const SizeClassInfo& info = ClassInfo(size_class);
  MF2_CHECK(remote_.Peek().raw() == 0, "a page must have no flag and no remote blocks on reuse");
  MF2_CHECK(xqueued_.load(std::memory_order_relaxed) == 0, "a reused page must not be queued");
  size_class_ = size_class;
  block_size_ = info.size;
  capacity_ = info.capacity;
  magic_ = info.magic;
  start_ = start;
  local_free_ = nullptr;
  used_ = 0;
  carved_ = 0;
  set_where(Where::kNowhere);
  adopt_counted = false;
  adoptable_detach = false;
  rfr_deadline_ns = 0;
  retained_empty = false;
  prev = next = nullptr;
  for (auto& w : live_) w.store(0, std::memory_order_relaxed);  // Relaxed: no reader yet.
  SetOwner(owner);
  PoisonMemory(start_, size_t{capacity_} * block_size_);
}

void Page::Retire() {
  MF2_CHECK(used_ == 0, "a page is released only when no block is live");
  MF2_CHECK(remote_.Peek().raw() == 0,
            "a page is never released while flagged, queued or holding remote blocks");
  MF2_CHECK(where() == Where::kNowhere, "unlink before release");
  PoisonMemory(start_, size_t{capacity_} * block_size_);
  size_class_ = 0;
  block_size_ = 0;
  capacity_ = 0;
  magic_ = 0;
  local_free_ = nullptr;
  carved_ = 0;
  SetOwner(nullptr);
}

uint32_t Page::AbsorbRemote(RemoteWord taken) {
  const uint32_t count = taken.count();
  uint32_t moved = 0;
  for (Block* b = taken.head(); b != nullptr;) {
    const char* p = reinterpret_cast<const char*>(b);
    bool exact = false;
    uint32_t idx = 0;
    const bool inside = p >= start_ && p < start_ + size_t{carved_} * block_size_;
    if (inside) idx = BlockIndex(b, &exact);
    if (moved == count || !inside || !exact) {
      internal::ReportError(ErrorKind::kCorruptFreeList, "malloc", b,
                            "remote free list is longer than its count or leaves the page; "
                            "the rest of the list is dropped, not reused");
      break;
    }
    if (!IsLive(idx)) {
      internal::ReportError(ErrorKind::kDoubleFree, "malloc", b,
                            "block freed twice (found on a remote free list); the duplicate is "
                            "dropped, not reused");
      break;
    }
    Block* next_block = LoadNext(b);
    ClearLive(idx);
    StoreNext(b, local_free_);
    local_free_ = b;
    ++moved;
    b = next_block;
  }
  used_ -= moved;
  return moved;
}

void Page::DebugNoteEnqueued_mt() {
#if MF2_DEBUG_BUILD
  // Relaxed RMWs: the edge winner is the only writer until the owner dequeues (the flag orders
  // them); the RMW makes a second concurrent enqueue visible as a count of 2.
  uint32_t was = xqueued_.fetch_add(1, std::memory_order_relaxed);
  MF2_CHECK(was == 0, "page enqueued twice (invariant 5)");
  xenqueue_seq_.fetch_add(1, std::memory_order_relaxed);
#endif
}

void Page::DebugNoteDequeued() {
#if MF2_DEBUG_BUILD
  // Relaxed: see DebugNoteEnqueued_mt; the queue's acquire pop orders these after the enqueue.
  uint32_t was = xqueued_.fetch_sub(1, std::memory_order_relaxed);
  MF2_CHECK(was == 1, "page dequeued without being queued exactly once (invariant 5)");
  uint64_t seq = xenqueue_seq_.load(std::memory_order_relaxed);
  MF2_CHECK(seq == drained_seq_ + 1, "enqueue sequence not drained in order (invariant 14)");
  drained_seq_ = seq;
#endif
}

void Page::CheckInvariants(bool quiescent) const {
  if (!in_use()) {
    MF2_CHECK(remote_.Peek().raw() == 0, "free span with remote state");
    return;
  }
  const SizeClassInfo& info = ClassInfo(size_class_);
  MF2_CHECK(block_size_ == info.size && capacity_ == info.capacity, "class fields corrupt");
  MF2_CHECK(carved_ <= capacity_, "carved_ <= capacity_");
  uint32_t live = 0;
  for (const auto& w : live_) live += __builtin_popcountll(w.load(std::memory_order_relaxed));
  MF2_CHECK(live == used_, "used_ == popcount(live_)");
  uint32_t local = 0;
  for (Block* b = local_free_; b != nullptr; b = LoadNext(b)) {
    MF2_CHECK(local < carved_, "local free list longer than the carved blocks (cycle?)");
    bool exact;
    const char* p = reinterpret_cast<const char*>(b);
    MF2_CHECK(p >= start_ && p < start_ + size_t{carved_} * block_size_,
              "local free block outside the carved region");
    uint32_t idx = BlockIndex(b, &exact);
    MF2_CHECK(exact, "local free block misaligned");
    MF2_CHECK(!IsLive(idx), "local free block marked live");
    ++local;
  }
  MF2_CHECK(carved_ == used_ + local, "carved_ == used_ + |local_free_|");
  MF2_CHECK(where() != Where::kPartial || HasFree(), "where_ == kPartial => HasFree()");
  MF2_CHECK(where() != Where::kDetached || !HasFree(), "where_ == kDetached => !HasFree()");
  uint32_t queued = xqueued_.load(std::memory_order_relaxed);
  MF2_CHECK(queued <= 1, "xqueued_ in {0, 1}");
  if (!quiescent) return;
  RemoteWord w = remote_.Peek();
  uint32_t remote = 0;
  for (Block* b = w.head(); b != nullptr; b = LoadNext(b)) {
    MF2_CHECK(remote < capacity_, "remote list longer than capacity (cycle?)");
    bool exact;
    uint32_t idx = BlockIndex(b, &exact);
    MF2_CHECK(exact && idx < carved_, "remote block is not a carved block start");
    MF2_CHECK(IsLive(idx), "remote block not live");
    ++remote;
  }
  MF2_CHECK(remote == w.count(), "remote.count == |remote chain|");
  MF2_CHECK(remote <= used_, "remote blocks are counted in used_");
#if MF2_DEBUG_BUILD
  MF2_CHECK(w.pending() == (queued == 1), "quiescent: in_remote_pending == queued");
#endif
  MF2_CHECK(w.count() == 0 || w.pending(), "quiescent: remote blocks => flag set (lost wake-up)");
}

}  // namespace mf2
