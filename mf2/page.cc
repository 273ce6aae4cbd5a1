#include "mf2/page.h"

#include <sys/auxv.h>
#include <time.h>

#include <algorithm>
#include <cstring>

namespace mf2 {

namespace block_internal {

uint64_t InitCanaryKeySlow() {
  // The kernel's 16 random bytes for this process (no system call, no allocation), mixed with a
  // clock and an address so that a process that re-executes itself still differs.
  uint64_t key = 0x9e3779b97f4a7c15ull;
  if (const void* random = reinterpret_cast<const void*>(getauxval(AT_RANDOM))) {
    uint64_t bytes[2];  // AT_RANDOM points at 16 bytes with no alignment promise
    std::memcpy(bytes, random, sizeof(bytes));
    key ^= bytes[0] ^ (bytes[1] << 1);
  }
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  key ^= static_cast<uint64_t>(ts.tv_nsec) * 0xbf58476d1ce4e5b9ull;
  key ^= reinterpret_cast<uintptr_t>(&ts) * 0x94d049bb133111ebull;
  // Low bits are where the states of block.h go: keep the key's own low bits set so a zero word
  // (fresh memory) is never a canary of a block at an aligned address (and the key is never 0).
  key |= 0xf;
  uint64_t expected = 0;
  // Relaxed: see CanaryKey(); the first thread to set it wins and every thread returns its value.
  if (!g_canary_key.compare_exchange_strong(expected, key, std::memory_order_relaxed)) {
    return expected;
  }
  return key;
}

}  // namespace block_internal

void Page::MakeSpan(uint32_t slices, char* start, Slice* slice, uint8_t index) {
  span_slices = static_cast<uint8_t>(slices);
  start_ = start;
  slice_ = slice;
  size_class_ = 0;
  block_size_ = 0;
  for (uint32_t i = 0; i < slices; ++i) {
    slice[i].head_slice = index;
    slice[i].in_span = i << kSliceShift;
    slice[i].set_class(0);
    slice[i].xowner.store(nullptr, std::memory_order_relaxed);  // Relaxed: no reader yet
  }
}

void Page::UnmakeSpan() {
  for (uint32_t i = 0; i < span_slices; ++i) {
    slice_[i].head_slice = 0;
    slice_[i].in_span = 0;
    slice_[i].set_class(0);
  }
  span_slices = 0;
}

void Page::InitForClass(uint32_t size_class, Heap* owner) {
  const SizeClassInfo& info = ClassInfo(size_class);
  MF2_CHECK(span_slices == info.slices, "a span of the class's length");
  MF2_CHECK(xremote_.Peek().raw() == 0, "a page must have no flag and no remote blocks on reuse");
  MF2_CHECK(xqueued_.load(std::memory_order_relaxed) == 0, "a reused page must not be queued");
  size_class_ = size_class;
  block_size_ = info.size;
  local_free_ = nullptr;
  local_count_ = 0;
  used_ = 0;
  carved_ = 0;
  capacity_ = info.capacity;
  set_where(Where::kNowhere);
  adopt_counted = false;
  adoptable_detach = false;
  rfr_deadline_ns = 0;
  retained_empty = false;
  prev = next = nullptr;
  SetOwner(owner);
  for (uint32_t i = 0; i < span_slices; ++i) {
    slice_[i].set_class(size_class);
  }
  PoisonMemory(start_, size_t{capacity_} * info.size);
}

void Page::Retire() {
  MF2_CHECK(used_ == 0, "a page is released only when no block is handed out");
  MF2_CHECK(xremote_.Peek().raw() == 0,
            "a page is never released while flagged, queued or holding remote blocks");
  MF2_CHECK(where() == Where::kNowhere, "unlink before release");
  PoisonMemory(start_, size_t{capacity_} * block_size_);
  for (uint32_t i = 0; i < span_slices; ++i) slice_[i].set_class(0);
  size_class_ = 0;
  block_size_ = 0;
  capacity_ = 0;
  local_free_ = nullptr;
  local_count_ = 0;
  carved_ = 0;
  SetOwner(nullptr);
}

void Page::SetOwner(Heap* h) {
  for (uint32_t i = 0; i < span_slices; ++i) slice_[i].xowner.store(h, std::memory_order_release);
}

uint32_t Page::PopBatch(void** out, uint32_t max, uint32_t max_fresh) {
  // The list's head and the bounds live in registers for the loop; the page's fields are
  // written back at the end and before LoseLocalList reads them. Until then every block handed
  // out came off the list, so `n` is also what local_count_ lacks (one counter fewer in the loop:
  // with two, the compiler spilled `out` and reloaded it for every block).
  const uint64_t key = CanaryKey();
  const CarvedBounds carved = Carved();
  Block* head = local_free_;
  uint32_t n = 0;
  // LoseLocalList counts from the list as written back; the final write-back subtracts n again.
  auto lose = [&](const void* bad, const Block* holder, uint32_t keep, const char* what) {
    local_free_ = head;
    local_count_ -= n;
    LoseLocalList(bad, holder, keep, what);
    local_count_ += n;
  };
  while (n < max && head != nullptr) {
    Block* b = head;  // a carved block start: checked before it became the head
    const uintptr_t self = reinterpret_cast<uintptr_t>(b);
    if (LoadCanary(b) != (self ^ key ^ kOnPage)) {
      lose(b, b, 0, "a block on its page's free list lost its free-block canary (a "
                    "use-after-free write, an overflow into a free block, or a block freed "
                    "twice): it and the rest of the page's free list are not reused");
      head = nullptr;
      break;
    }
    Block* link = LoadLink(b, key);
    if (link != nullptr && !carved.Contains(link)) {
      // Named by the word as stored (what a stray write put there; hardened builds decode it
      // into another address), with the free block that holds it, which is handed out.
      lose(LoadNext(b), b, 1,
           "a free block's link leaves its page or is not a block start (a use-after-free write "
           "or an overflow into a free block): the rest of the page's free list is not reused");
      link = nullptr;
    }
    head = link;
    StoreCanary(b, self ^ key ^ kInCache);
    out[n++] = b;
  }
  local_free_ = head;
  local_count_ -= n;
  // Then the never-carved tail, in address order. The count is fixed first, so that the loop
  // keeps it and the block size in registers (the stores through `out` and the canary stores
  // would make the compiler reload page fields on every block).
  const uint32_t fresh = std::min(std::min(max - n, max_fresh), capacity_ - carved_);  // n <= max
  const uintptr_t first = carved.start + carved.end;
  const size_t size = block_size_;
  for (uint32_t i = 0; i < fresh; ++i) {
    Block* b = reinterpret_cast<Block*>(first + size_t{i} * size);
    StoreCanary(b, reinterpret_cast<uintptr_t>(b) ^ key ^ kInCache);
    out[n++] = b;
  }
  carved_ += fresh;
  used_ += n;
  return n;
}

void Page::LoseLocalList(const void* bad, const Block* holder, uint32_t keep, const char* what) {
  internal::ReportError(ErrorKind::kCorruptFreeList, "malloc", bad, what, holder, block_size_);
  // Every block counted on the list beyond the first `keep` stays handed out for good, so the
  // page is never released under a block the program may still use.
  used_ += local_count_ - keep;
  local_count_ = keep;
  if (keep == 0) local_free_ = nullptr;
}

uint32_t Page::CollectRemote(RemoteWord taken, void** out, uint32_t max) {
  // The first `max` blocks as PopBatch would hand them out (canary kInCache, into `out`), the
  // rest as PushLocal would take them, with the list's head and the bounds in registers; the
  // page's fields are written back before a report (its handler may look at the page).
  const uint32_t count = taken.count();
  const uint64_t key = CanaryKey();
  const CarvedBounds carved = Carved();
  uint32_t moved = 0;
  const char* bad = nullptr;
  ErrorKind kind = ErrorKind::kCorruptFreeList;
  // Whether b, the list's moved-th node, is a free block of this page on a remote list.
  const auto well_formed = [&](const Block* b) {
    if (moved == count || !carved.Contains(b)) {
      bad = "a remote free list is longer than its count or leaves the page; the rest of the "
            "list is dropped, not reused";
      return false;
    }
    if (LoadCanary(b) != (reinterpret_cast<uintptr_t>(b) ^ key ^ kOnRemote)) {
      kind = ErrorKind::kDoubleFree;
      bad = "a block on a remote free list was also freed by its owner or freed twice "
            "concurrently; it and the rest of the list are dropped, not reused";
      return false;
    }
    return true;
  };
  // The blocks' hints (block.h), prefetched as each block is reached: the loads of the links
  // then find their lines on the way, several in flight at once.
  const bool hinted = CarriesHint(block_size_);
  Block* b = taken.head();
  for (; b != nullptr && moved < max && well_formed(b); ++moved) {
    if (hinted) PrefetchForWrite(LoadHint(b));
    Block* next_block = LoadNext(b);
    StoreCanary(b, reinterpret_cast<uintptr_t>(b) ^ key ^ kInCache);
    out[moved] = b;
    b = next_block;
  }
  const uint32_t handed = moved;  // still counted in used_: handed out, now to a cache
  Block* local = local_free_;
  for (; b != nullptr && bad == nullptr && well_formed(b); ++moved) {
    if (hinted) PrefetchForWrite(LoadHint(b));
    Block* next_block = LoadNext(b);
    StoreLink(b, local, key);
    StoreCanary(b, reinterpret_cast<uintptr_t>(b) ^ key ^ kOnPage);
    PoisonMemory(b, block_size_);
    local = b;
    b = next_block;
  }
  local_free_ = local;
  local_count_ += moved - handed;
  used_ -= moved - handed;
  if (bad != nullptr) internal::ReportError(kind, "malloc", b, bad);
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
  MF2_CHECK(span_slices > 0 && slice_ != nullptr, "checked on a span's head");
  const uint32_t index = slice_[0].head();
  for (uint32_t i = 0; i < span_slices; ++i) {
    const Slice& s = slice_[i];
    MF2_CHECK(s.head() == index && s.in_span == i << kSliceShift &&
                  s.size_class() == size_class_ &&
                  s.xowner.load(std::memory_order_relaxed) == owner_relaxed(),
              "every slice of the span names the span's head, its place in it, class and owner");
  }
  if (!in_use()) {
    MF2_CHECK(xremote_.Peek().raw() == 0, "free span with remote state");
    return;
  }
  const SizeClassInfo& info = ClassInfo(size_class_);
  MF2_CHECK(block_size_ == info.size && capacity_ == info.capacity, "class fields corrupt");
  MF2_CHECK(carved_ <= capacity_, "carved_ <= capacity_");
  uint32_t local = 0;
  for (const Block* b = local_free_; b != nullptr; b = LoadLink(b)) {
    MF2_CHECK(local < carved_, "local free list longer than the carved blocks (cycle?)");
    MF2_CHECK(IsCarvedBlock(b), "local free block outside the carved blocks or misaligned");
    MF2_CHECK(LoadCanary(b) == Canary(b, kOnPage), "local free block has canary kOnPage");
    ++local;
  }
  MF2_CHECK(local == local_count_, "local_count_ == |local_free_ chain|");
  MF2_CHECK(carved_ == used_ + local_count_, "carved_ == used_ + local_count_");
  MF2_CHECK(where() != Where::kPartial || HasFree(), "where_ == kPartial => HasFree()");
  MF2_CHECK(where() != Where::kDetached || !HasFree(), "where_ == kDetached => !HasFree()");
  uint32_t queued = xqueued_.load(std::memory_order_relaxed);
  MF2_CHECK(queued <= 1, "xqueued_ in {0, 1}");
  if (!quiescent) return;
  RemoteWord w = xremote_.Peek();
  uint32_t remote = 0;
  for (const Block* b = w.head(); b != nullptr; b = LoadNext(b)) {
    MF2_CHECK(remote < capacity_, "remote list longer than capacity (cycle?)");
    MF2_CHECK(IsCarvedBlock(b), "remote block is not a carved block start");
    MF2_CHECK(LoadCanary(b) == Canary(b, kOnRemote), "remote block has canary kOnRemote");
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
