#include "mf2/heap_registry.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include <algorithm>
#include <new>

#include "mf2/adoption.h"

namespace mf2 {

HeapRegistry& HeapRegistry::Global() {
  // Never destroyed: threads exit (and release heaps) after static destructors run.
  alignas(HeapRegistry) static unsigned char storage[sizeof(HeapRegistry)];
  static HeapRegistry* registry = new (storage) HeapRegistry();
  return *registry;
}

Heap* HeapRegistry::AcquireHeap(PageSource* source) {
  {
    MutexLock lock(&mu_);
    for (Heap** link = &idle_; *link != nullptr; link = &(*link)->idle_next) {
      Heap* h = *link;
      if (h->source() != source || !h->TryClaim()) continue;
      *link = h->idle_next;
      h->idle_next = nullptr;
      // Relaxed: a hint for ClaimIdleHeap; the list itself is under mu_.
      idle_count_.fetch_sub(1, std::memory_order_relaxed);
      h->TakeOver();
      return h;
    }
  }
  return AcquireNewHeap(source);
}

Heap* HeapRegistry::AcquireNewHeap(PageSource* source) {
  // Heaps come straight from the OS (never from malloc, which may be us) and are never freed.
  void* mem = mmap(nullptr, sizeof(Heap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  MutexLock lock(&mu_);
  Heap* h = new (mem) Heap(source, this, heap_count_++);
  MF2_CHECK(h->TryClaim(), "a new heap is unclaimed");
  AdoptionBoard::Global().RegisterHeap(h, h->id());
  h->all_next = all_;
  all_ = h;
  return h;
}

void HeapRegistry::ReleaseHeap(Heap* heap) {
  heap->Abandon();
  {
    MutexLock lock(&mu_);
    UnlinkThreadHeap(heap);
    heap->idle_next = idle_;
    idle_ = heap;
    // Relaxed: see idle_count_.
    idle_count_.fetch_add(1, std::memory_order_relaxed);
  }
  heap->ReleaseClaimAndRecheck();
}

void HeapRegistry::RegisterThreadHeap(Heap* heap, int32_t tid) {
  MutexLock lock(&mu_);
  LinkThreadHeap(heap, tid);
}

int HeapRegistry::CollectHeapsWithWholePages(const Heap* self, Heap** out, int max) {
  MutexLock lock(&mu_);
  int n = 0;
  for (Heap* h = all_; h != nullptr && n < max; h = h->all_next) {
    if (h != self && h->source() == self->source() && !h->abandoned() &&
        h->whole_unswept_mt() > 0) {
      out[n++] = h;
    }
  }
  return n;
}

void HeapRegistry::ReleaseThreadListing(Heap* heap) {
  MutexLock lock(&mu_);
  UnlinkThreadHeap(heap);
}

void HeapRegistry::LinkThreadHeap(Heap* heap, int32_t tid) {
  heap->thread_tid = tid;
  heap->thread_next = nullptr;
  heap->thread_prev = threads_tail_;
  if (threads_tail_ != nullptr) {
    threads_tail_->thread_next = heap;
  } else {
    threads_ = heap;
  }
  threads_tail_ = heap;
}

void HeapRegistry::UnlinkThreadHeap(Heap* heap) {
  if (heap->thread_tid == 0) return;
  if (heap->thread_prev != nullptr) {
    heap->thread_prev->thread_next = heap->thread_next;
  } else {
    threads_ = heap->thread_next;
  }
  if (heap->thread_next != nullptr) {
    heap->thread_next->thread_prev = heap->thread_prev;
  } else {
    threads_tail_ = heap->thread_prev;
  }
  heap->thread_prev = heap->thread_next = nullptr;
  heap->thread_tid = 0;
}

int HeapRegistry::ReclaimExitedThreadHeaps(const Heap* self, int max_checks) {
  constexpr int kMaxBatch = 16;
  Heap* gone[kMaxBatch];
  int n = 0;
  {
    MutexLock lock(&mu_);
    const pid_t pid = getpid();
    Heap* h = threads_;
    Heap* const last = threads_tail_;  // moved heaps go behind it: visit each at most once
    for (int checked = 0; h != nullptr && checked < max_checks && n < kMaxBatch; ++checked) {
      const bool at_last = h == last;
      Heap* next = h->thread_next;
      if (h != self) {
        errno = 0;
        const long rc = syscall(SYS_tgkill, pid, h->thread_tid, 0);
        if (rc != 0 && errno == ESRCH) {
          UnlinkThreadHeap(h);
          gone[n++] = h;
        } else {
          // Alive (or unknowable): to the back, so later calls check the others first.
          const int32_t tid = h->thread_tid;
          UnlinkThreadHeap(h);
          LinkThreadHeap(h, tid);
        }
      }
      h = at_last ? nullptr : next;
    }
  }
  for (int i = 0; i < n; ++i) {
    // The thread is gone: nobody else holds or will take this heap's claim (it was never
    // released), so we act as its owner. Its last stores to the heap happened before the kernel
    // reported it gone; the fence orders our reads after that report.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    MF2_STAT_INC(gone[i]->mutable_stats(), exited_thread_heaps);
    ReleaseHeap(gone[i]);
  }
  return n;
}

Heap* HeapRegistry::ClaimIdleHeap(Heap* self) {
  // Relaxed: a hint; a heap that became idle a moment ago is found on the next slow path.
  if (idle_count_.load(std::memory_order_relaxed) == 0) return nullptr;
  MutexLock lock(&mu_);
  // Rotate: the heap tried goes to the back, so repeated calls visit every idle heap.
  for (Heap** link = &idle_; *link != nullptr; link = &(*link)->idle_next) {
    Heap* h = *link;
    if (h == self || h->source() != self->source() || !h->TryClaim()) continue;
    *link = h->idle_next;
    h->idle_next = nullptr;
    Heap** tail = link;
    while (*tail != nullptr) tail = &(*tail)->idle_next;
    *tail = h;
    return h;
  }
  return nullptr;
}

uint32_t HeapRegistry::heap_count() {
  MutexLock lock(&mu_);
  return heap_count_;
}

void HeapRegistry::AddStatsSource(const Heap* heap) {
  MutexLock lock(&mu_);
  for (const Heap*& slot : extra_stats_) {
    if (slot == nullptr || slot == heap) {
      slot = heap;
      return;
    }
  }
  MF2_CHECK(false, "HeapRegistry::kMaxExtraStats");
}

Stats HeapRegistry::CollectStats() {
  Stats s;
  {
    MutexLock lock(&mu_);
    for (Heap* h = all_; h != nullptr; h = h->all_next) h->stats().AddTo(&s);
    for (const Heap* h : extra_stats_) {
      if (h != nullptr) h->stats().AddTo(&s);
    }
  }
  OsPageSource::Global().AddTo(&s);
  return s;
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
      for (uint32_t k = 1; k < kNumClasses; ++k) total += heaps[i]->cache(k).n;
    }
    Reserve(total);
    size_ = 0;
    for (uint32_t i = 0; i < n; ++i) {
      for (uint32_t k = 1; k < kNumClasses; ++k) {
        const Heap::Magazine& m = heaps[i]->cache(k);
        for (uint32_t j = 0; j < m.n; ++j) buf_[size_++] = reinterpret_cast<uintptr_t>(m.slot[j]);
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
  // Large enough for every heap a test creates; static so the check does not allocate.
  static PageCheck pc;
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
  MutexLock lock(&mu_);
  for (Heap* h = all_; h != nullptr; h = h->all_next) {
    for (uint32_t k = 1; k < kNumClasses; ++k) {
      const Heap::Magazine& m = h->cache(k);
      for (uint32_t j = 0; j < m.n; ++j) fn(m.slot[j], h, arg);
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
