#include "mf2/heap_registry.h"

#include <sys/mman.h>

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
    heap->idle_next = idle_;
    idle_ = heap;
    // Relaxed: see idle_count_.
    idle_count_.fetch_add(1, std::memory_order_relaxed);
  }
  heap->ReleaseClaimAndRecheck();
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
};

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
  if (!pc->quiescent) return;
  const bool queued = owner->PendingContains(page);
  RemoteWord w = page->remote().Peek();
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
