// The checks the tests call (CheckInvariants, HeapRegistry::CheckAll): every equation in heap.h's
// and heap_registry.h's comments, and the cross-heap ones no single heap can check (no block
// cached twice, page counts, whole-page counts). None of this runs on an allocation path.
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>

#include "mf2/adoption.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page_source.h"
#include "mf2/reclaimer.h"

namespace mf2 {

bool Heap::PendingContains(const Page* page) const {
  for (Page* p = xpending_.PeekRelaxed(); p != nullptr; p = p->pending_next()) {
    if (p == page) return true;
  }
  return false;
}

void Heap::CheckAdoptionBookkeeping(uint32_t* counted) const {
  for (const Page* p = xpending_.PeekRelaxed(); p != nullptr; p = p->pending_next()) {
    if (!p->adopt_counted) continue;
    ++counted[p->size_class()];
    MF2_CHECK(id_ >= AdoptionBoard::kMaxHeaps ||
                  AdoptionBoard::Global().IsReady(p->size_class(), id_),
              "a counted page on a pending queue has its owner's ready bit set");
  }
}

void Heap::CheckInvariants(bool quiescent) const {
  MF2_CHECK((move_to_ != nullptr) == (move_checks_ != 0) &&
                (move_to_ == nullptr || move_ != nullptr),
            "a successor's move: move_to_ exactly while move_checks_ != 0, with its hook");
  MF2_CHECK(move_to_ == nullptr || (!abandoned() && !is_sentinel() && !helper_),
            "only a live thread's own heap moves");
  {
    // The flushed epoch was the slow-path epoch + 1 when it was stored, and the epoch only grows:
    // read in this order, it never exceeds the epoch + 1 (relaxed: both are monotonic).
    const uint64_t flushed = xidle_flushed_epoch_.load(std::memory_order_relaxed);
    MF2_CHECK(flushed >= 1 && flushed <= xslow_epoch_.load(std::memory_order_relaxed) + 1,
              "the last idle flush's epoch is an epoch this heap has had, plus one");
  }
  for (uint32_t i = 0; i < kDirectEntries; ++i) {
    MF2_CHECK(direct_[i] == DirectOffset(i) &&
                  DirectOffset(i) == reinterpret_cast<const char*>(&cache_[DirectClass(i)]) -
                                         reinterpret_cast<const char*>(this),
              "direct_[i]: the offset of cache_[DirectClass(i)]");
  }
  MF2_CHECK(cache_[0].n() == 0 && cache_[0].cap() == 0 && cache_[0].div.limit == 0,
            "class 0's cache holds nothing and its block-start test passes no offset");
  void* const* const storage = static_cast<void* const*>(slot_storage());
  for (uint32_t k = 0; k < kNumClasses; ++k) {
    const Magazine& m = cache_[k];
    MF2_CHECK(is_sentinel() ? m.slots() == no_slots_ + 1 && m.cap() == 0
                            : m.slots() == storage + size_t{k} * kSlotStride + 1 &&
                                  storage != no_slots_,
              "slots(): the class's array of the heap's SlotStorage, past its first word "
              "(no_slots_ in a sentinel)");
    // Read only where the cache holds blocks: its array's page is resident then (the word
    // shares it with slots()[0]), and checking an empty cache's would make its page resident.
    MF2_CHECK(m.n() == 0 || m.slots()[-1] == nullptr,
              "the word below a cache's slots is null (never written)");
  }
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    const Magazine& m = cache_[k];
    MF2_CHECK(m.top <= m.limit && m.cap() <= kCacheSlots, "0 <= n() <= cap() <= kCacheSlots");
    MF2_CHECK(m.div.mul == kClassDiv.div[k].mul && m.div.limit == kClassDiv.div[k].limit,
              "a cache's block-start test is its class's");
    MF2_CHECK(!abandoned() || m.n() == 0, "an abandoned heap caches nothing");
    for (uint32_t i = 0; i < m.n(); ++i) {
      const void* b = m.slots()[i];
      const Page* d = PageOf(b);
      MF2_CHECK(d != nullptr && d->IsBlockStart(reinterpret_cast<uintptr_t>(b)) &&
                    d->size_class() == k,
                "a cached block is a block start of a page in use of its class");
      MF2_CHECK(LoadCanary(b) == Canary(b, kInCache), "a cached block has canary kInCache");
      MF2_CHECK(d->used() > 0, "a cached block is counted in its page's used()");
    }
  }
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    if (Page* a = active_[k]) {
      MF2_CHECK(!abandoned(), "an abandoned heap has no active pages");
      MF2_CHECK(a->size_class() == k && a->where() == Page::Where::kActive &&
                    a->owner_relaxed() == this,
                "active_[k]: class k, where == kActive, owner == this");
    }
    size_t n = 0;
    for (Page* p = partial_[k].front(); p != nullptr; p = p->next) {
      MF2_CHECK(p->size_class() == k && p->where() == Page::Where::kPartial &&
                    p->owner_relaxed() == this && p->HasFree(),
                "partial_[k]: class k, where == kPartial, owner == this, HasFree()");
      MF2_CHECK(p->next == nullptr || p->next->prev == p, "partial list links");
      MF2_CHECK(++n <= partial_[k].size(), "partial list longer than its size (cycle?)");
    }
    MF2_CHECK(n == partial_[k].size(), "partial list size");
    MF2_CHECK(PartialEmpty_mt(k) == partial_[k].empty(),
              "xpartial_mask_ bit k == !partial_[k].empty()");
  }
  size_t retained = 0;
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    for (Page* p = partial_[k].front(); p != nullptr; p = p->next) {
      if (!p->retained_empty) continue;
      MF2_CHECK(p->used() == 0, "a retained empty page is empty");
      retained += p->span_slices * kSliceSize;
    }
  }
  MF2_CHECK(retained == empty_bytes_, "empty_bytes_ == bytes of retained empty pages");
  MF2_CHECK(!abandoned() || empty_bytes_ == 0, "an abandoned heap retains no empty page");
  MF2_CHECK(key_ == CanaryKey(), "key_ == CanaryKey()");
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    MF2_CHECK(is_sentinel() || (carve_limit_[k] >= 1 && carve_limit_[k] <= kCacheSlots),
              "1 <= carve_limit_[k] <= kCacheSlots");
  }
  // Relaxed: the owner's (or a quiescent checker's) read of the owner's last store.
  MF2_CHECK(xholds_remote_.load(std::memory_order_relaxed) == (held_slots_ != 0),
            "xholds_remote_ == (held_slots_ != 0)");
  MF2_CHECK(slow_paths_holding_ < kSlowPathsPerRemoteFlush,
            "slow_paths_holding_ < kSlowPathsPerRemoteFlush");
  for (const RemoteChain& chain : remote_) {
    MF2_CHECK(chain.count <= kRemoteBatch && (chain.count == 0) == (chain.head == nullptr) &&
                  (chain.count == 0) == (chain.page == nullptr) &&
                  (chain.count == 0) == (((held_slots_ >> (&chain - remote_)) & 1) == 0) &&
                  (chain.page == nullptr || RemoteSlot(chain.page) == &chain - remote_),
              "a remote chain's count matches its list, at most kRemoteBatch");
    MF2_CHECK(chain.count == 0 || (!abandoned() && !is_sentinel() && !helper_),
              "an abandoned, sentinel or helper heap holds no remote free");
    MF2_CHECK(chain.page == nullptr || chain.hinted == CarriesHint(chain.page->block_size()),
              "a chain's blocks carry hints exactly when its page's blocks are long enough");
    uint32_t n = 0;
    bool any_raced = false;
    const Block* last = nullptr;
    const Block* seen[kRemoteBatch + 1];
    for (const Block* b = chain.head; b != nullptr && n <= kRemoteBatch; b = LoadNext(b)) {
      MF2_CHECK(chain.page->IsBlockStart(reinterpret_cast<uintptr_t>(b)),
                "a held remote free is a block start of its chain's page");
      // kInCache: its owner freed it again concurrently (PushChain reports and drops it); such a
      // block may even be handed out again, its link gone, or freed again by this heap's thread
      // while still held, so that it is in the chain twice (RebuildChain): stop the walk there.
      bool raced = LoadCanary(b) != Canary(b, kOnRemote);
      for (uint32_t i = 0; i < n && !raced; ++i) raced = seen[i] == b;
      seen[n] = b;
      last = b;
      ++n;
      if (raced) {
        any_raced = true;
        last = chain.tail;
        n = chain.count;
        break;
      }
    }
    // The hints and behind[] (RemoteChain): block i from the head joined as the (count-1-i)-th.
    for (uint32_t i = 0; chain.hinted && !any_raced && i < n; ++i) {
      const Block* ahead = i + kHintDistance < n ? seen[i + kHintDistance] : nullptr;
      MF2_CHECK(LoadHint(seen[i]) == ahead,
                "a held block's hint is the block kHintDistance links further down, or null");
      if (i < kHintDistance) {
        MF2_CHECK(chain.behind[(chain.count - 1 - i) % kHintDistance] == seen[i],
                  "a chain's behind[] holds its newest blocks by the order they joined");
      }
    }
    MF2_CHECK(n == chain.count && last == chain.tail, "a remote chain's count and tail");
  }
  size_t cap_bytes = 0;
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    cap_bytes += size_t{cache_[k].cap()} * ClassInfo(k).size;
  }
  MF2_CHECK(cap_bytes == cache_cap_bytes_, "cache_cap_bytes_ == sum of cap * size");
  MF2_CHECK(cache_cap_bytes_ >= cache_initial_bytes_, "caches only grow after ConfigureCaches");
  MF2_CHECK(cache_cap_bytes_ <= cache_grow_budget_, "caches grew within CacheBudget()");
  MF2_CHECK(empty_bytes_ <= xpage_bytes_.load(std::memory_order_relaxed),
            "retained empties are part of the heap's pages");
  if (!quiescent) return;
  size_t queued = 0;
  for (const Page* p = xpending_.PeekRelaxed(); p != nullptr; p = p->pending_next()) {
    MF2_CHECK(p->owner_relaxed() == this, "a page is queued only on its owner (invariant 6)");
    MF2_CHECK(p->remote().Peek().pending(), "a queued page has in_remote_pending set");
#if MF2_DEBUG_BUILD
    MF2_CHECK(p->debug_queued() == 1, "queued exactly once (invariant 5)");
#endif
    MF2_CHECK(++queued <= page_count(), "pending queue longer than the heap's pages (cycle?)");
  }
}

namespace {

struct PageCheck {
  HeapRegistry* registry;
  bool quiescent;
  Heap* heaps[4096];
  size_t counts[4096];
  uint32_t n;
  // Every cached block of every heap, sorted (CachedSnapshot).
  const uintptr_t* cached;
  size_t num_cached;
};

// The addresses of every block in every registered heap's caches, sorted, in a buffer mapped
// from the OS (the check must not allocate from malloc, which may be MF2 itself) and kept for
// the next check. Checks that no block is cached twice, in one heap or in two.
class CachedSnapshot {
 public:
  // `heaps[0..n)`: every registered heap (their owners are parked: CheckAll's contract).
  void Take(Heap* const* heaps, uint32_t n) {
    size_t total = 0;
    for (uint32_t i = 0; i < n; ++i) {
      for (uint32_t k = 1; k < kNumClasses; ++k) total += heaps[i]->cache(k).n();
    }
    Reserve(total);
    size_ = 0;
    for (uint32_t i = 0; i < n; ++i) {
      for (uint32_t k = 1; k < kNumClasses; ++k) {
        const Heap::Magazine& m = heaps[i]->cache(k);
        for (uint32_t j = 0; j < m.n(); ++j) {
          buf_[size_++] = reinterpret_cast<uintptr_t>(m.slots()[j]);
        }
      }
    }
    std::sort(buf_, buf_ + size_);  // in place: no allocation
    for (size_t i = 1; i < size_; ++i) {
      MF2_CHECK(buf_[i - 1] != buf_[i],
                "no block is cached twice, in one heap's caches or in two heaps' (a block on two "
                "lists would be handed out twice)");
    }
  }
  const uintptr_t* data() const { return buf_; }
  size_t size() const { return size_; }

 private:
  void Reserve(size_t n) {
    if (n <= capacity_) return;
    size_t bytes = std::max<size_t>(n * sizeof(uintptr_t), size_t{1} << 16);
    bytes = (bytes + 4095) & ~size_t{4095};
    void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MF2_CHECK(mem != MAP_FAILED, "CheckAll: mapping the cached-block snapshot");
    if (buf_ != nullptr) munmap(buf_, capacity_ * sizeof(uintptr_t));
    buf_ = static_cast<uintptr_t*>(mem);
    capacity_ = bytes / sizeof(uintptr_t);
  }

  uintptr_t* buf_ = nullptr;
  size_t capacity_ = 0;
  size_t size_ = 0;
};

// Blocks of `page` among the sorted cached addresses.
size_t CachedOn(const Page* page, const uintptr_t* cached, size_t n) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(page->start());
  const uintptr_t end = begin + size_t{page->capacity()} * page->block_size();
  return static_cast<size_t>(std::lower_bound(cached, cached + n, end) -
                             std::lower_bound(cached, cached + n, begin));
}

void CheckOnePage(Page* page, void* arg) {
  auto* pc = static_cast<PageCheck*>(arg);
  page->CheckInvariants(pc->quiescent);
  if (!page->in_use()) return;
  Heap* owner = page->owner_relaxed();
  MF2_CHECK(owner != nullptr, "a page in use has an owner");
  MF2_CHECK(page->where() != Page::Where::kNowhere,
            "between operations every page in use is active, partial or detached");
  uint32_t i = 0;
  while (i < pc->n && pc->heaps[i] != owner) ++i;
  MF2_CHECK(i < pc->n, "a page's owner is a registered heap");
  ++pc->counts[i];
  // Block conservation with the caches (heap.h): cached and remotely freed blocks are blocks
  // handed out of the page, each counted once in used(). (Heap::CheckInvariants has checked that
  // every cached block is a block start of a page in use of its class.)
  RemoteWord w = page->remote().Peek();
  const size_t cached = CachedOn(page, pc->cached, pc->num_cached);
  MF2_CHECK(cached + w.count() <= page->used(),
            "per page: blocks cached in any heap + remote.count <= used()");
  if (!pc->quiescent) return;
  const bool queued = owner->PendingContains(page);
  MF2_CHECK(w.pending() == queued,
            "quiescent: in_remote_pending set exactly when the page is on its owner's queue "
            "(invariant 7)");
  MF2_CHECK(w.count() == 0 || queued,
            "quiescent: a page with remote blocks is queued (invariant 8, lost wake-up)");
}

}  // namespace

void HeapRegistry::CheckAll(bool quiescent) {
  if (quiescent) {
    // No pass of the background reclaimer in flight either (reclaimer::PassMutex).
    MutexLock pass(&reclaimer::PassMutex());
    CheckAllHeaps(true);
  } else {
    CheckAllHeaps(false);
  }
}

void HeapRegistry::CheckAllHeaps(bool quiescent) {
  // Large enough for every heap a test creates; static so the check does not allocate.
  static PageCheck pc;
  // No parker acts as a heap's owner while we read the heaps (heap.h, "The idle flush").
  MutexLock park(&Heap::IdleFlushMutex());
  MutexLock lock(&mu_);
  pc.registry = this;
  pc.quiescent = quiescent;
  pc.n = 0;
  for (Heap* h = all_; h != nullptr; h = h->all_next) {
    MF2_CHECK(pc.n < 4096, "CheckAll supports 4096 heaps");
    pc.heaps[pc.n] = h;
    pc.counts[pc.n] = 0;
    ++pc.n;
    h->CheckInvariants(quiescent);
  }
  static CachedSnapshot cached;
  cached.Take(pc.heaps, pc.n);
  pc.cached = cached.data();
  pc.num_cached = cached.size();
  OsPageSource::Global().ForEachSpanInUse(&CheckOnePage, &pc);
  OsPageSource::Global().CheckInvariants();
  if (quiescent) {
    // Adoption bookkeeping (adoption.h): exact counts, and no lost ready hint.
    static uint32_t counted[kNumClasses];
    for (uint32_t& c : counted) c = 0;
    for (uint32_t i = 0; i < pc.n; ++i) pc.heaps[i]->CheckAdoptionBookkeeping(counted);
    AdoptionBoard::Global().CheckInvariants(counted);
  }
  for (uint32_t i = 0; i < pc.n; ++i) {
    MF2_CHECK(pc.counts[i] == pc.heaps[i]->page_count(),
              "a heap's page_count() equals the pages it owns");
  }
}

void HeapRegistry::ForEachCachedBlock(void (*fn)(void* block, const Heap* heap, void* arg),
                                      void* arg) {
  MutexLock park(&Heap::IdleFlushMutex());
  MutexLock lock(&mu_);
  for (Heap* h = all_; h != nullptr; h = h->all_next) {
    for (uint32_t k = 1; k < kNumClasses; ++k) {
      const Heap::Magazine& m = h->cache(k);
      for (uint32_t j = 0; j < m.n(); ++j) fn(m.slots()[j], h, arg);
    }
    // Remote frees a heap holds back are in its hands too (counted in their pages' used()).
    // (At most count of them, each a block start of the chain's page: a block freed twice
    // concurrently may have been handed out again, its link gone; Heap::PushChain drops it.)
    for (uint32_t i = 0; i < Heap::kRemoteSlots; ++i) {
      const Heap::RemoteChain& chain = h->remote_chain(i);
      uint32_t n = 0;
      for (Block* b = chain.head; b != nullptr && n < chain.count && chain.page->IsBlockStart(
                                                     reinterpret_cast<uintptr_t>(b));
           b = LoadNext(b), ++n) {
        fn(b, h, arg);
      }
    }
  }
}

namespace {

struct WholeCount {
  Heap* heaps[4096];
  int64_t whole[4096];
  uint32_t n;
};

void CountWhole(Page* page, void* arg) {
  auto* wc = static_cast<WholeCount*>(arg);
  if (!page->in_use() || page->remote().Peek().count() != page->capacity()) return;
  for (uint32_t i = 0; i < wc->n; ++i) {
    if (wc->heaps[i] == page->owner_relaxed()) ++wc->whole[i];
  }
}

}  // namespace

void HeapRegistry::CheckWholeCounts() {
  static WholeCount wc;  // static: the check does not allocate
  // As CheckAll(true): no pass of the background reclaimer in flight (its sweeps take whole
  // pages off the counts).
  MutexLock pass(&reclaimer::PassMutex());
  MutexLock park(&Heap::IdleFlushMutex());
  MutexLock lock(&mu_);
  wc.n = 0;
  for (Heap* h = all_; h != nullptr && wc.n < 4096; h = h->all_next) {
    wc.heaps[wc.n] = h;
    wc.whole[wc.n++] = 0;
  }
  OsPageSource::Global().ForEachSpanInUse(&CountWhole, &wc);
  for (uint32_t i = 0; i < wc.n; ++i) {
    MF2_CHECK(wc.heaps[i]->whole_unswept_mt() == wc.whole[i],
              "a heap's count of pages that came back whole matches its pages");
  }
}

}  // namespace mf2
