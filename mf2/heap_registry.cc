#include "mf2/heap_registry.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include <algorithm>
#include <new>

#include "mf2/base.h"
#include "mf2/adoption.h"

namespace mf2 {

namespace {
// Never destroyed: threads exit (and release heaps) after static destructors run.
MF2_CONSTINIT StaticObject<HeapRegistry> g_registry;
}  // namespace

HeapRegistry& HeapRegistry::Global() { return g_registry.value; }

Heap* HeapRegistry::AcquireHeap(PageSource* source, Heap* preferred) {
  {
    MutexLock lock(&mu_);
    // Pass 0 looks for `preferred` alone (compared as an address: heaps are never unmapped),
    // pass 1 for any heap no other thread waits for, pass 2 for any. A preferred heap that is
    // not idle yet is marked wanted, so that it stays idle for its successor to move to.
    for (int pass = preferred != nullptr ? 0 : 1; pass < 3; ++pass) {
      for (Heap** link = &idle_; *link != nullptr; link = &(*link)->idle_next) {
        Heap* h = *link;
        if ((pass == 0 && h != preferred) || (pass == 1 && h->wanted) || h->source() != source ||
            !h->TryClaim()) {
          continue;
        }
        *link = h->idle_next;
        h->idle_next = nullptr;
        h->wanted = false;
        // Relaxed: a hint for ClaimIdleHeap; the list itself is under mu_.
        idle_count_.fetch_sub(1, std::memory_order_relaxed);
        h->TakeOver();
        return h;
      }
      if (pass == 0) preferred->wanted = true;
    }
  }
  return AcquireNewHeap(source);
}

Heap* HeapRegistry::AcquireNewHeap(PageSource* source) {
  // Heaps come straight from the OS (never from malloc, which may be us) and are never freed.
  // Its cache slots follow each heap in the same mapping. They are created by default-
  // initialisation, which writes nothing: their pages become resident only where the heap caches.
  void* mem = mmap(nullptr, kHeapMappingBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  auto* slots = new (static_cast<char*>(mem) + kHeapSlotsOffset) Heap::SlotStorage;
  MutexLock lock(&mu_);
  Heap* h = new (mem) Heap(source, this, heap_count_++, slots);
  MF2_CHECK(h->TryClaim(), "a new heap is unclaimed");
  AdoptionBoard::Global().RegisterHeap(h, h->id());
  h->all_next = all_;
  all_ = h;
  return h;
}

void HeapRegistry::ReleaseHeap(Heap* heap) {
  heap->Abandon();
  // Relaxed: a hint (see kWarmIdleHeaps); the heap is still claimed, so no one else touches it.
  if (idle_count_.load(std::memory_order_relaxed) >= kWarmIdleHeaps) heap->ReleaseSlotPages();
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

int HeapRegistry::CollectHeapsHoldingRemoteFrees(const Heap* self, Heap** out, int max) {
  MutexLock lock(&mu_);
  int n = 0;
  for (Heap* h = all_; h != nullptr && n < max; h = h->all_next) {
    if (h != self && h->source() == self->source() && !h->abandoned() && h->holds_remote_mt()) {
      out[n++] = h;
    }
  }
  return n;
}

int HeapRegistry::CollectHeapsOwedAnIdleFlush(const Heap* self, Heap** out, int max, int skip) {
  MutexLock lock(&mu_);
  int n = 0;
  for (Heap* h = all_; h != nullptr && n < max; h = h->all_next) {
    if (h != self && h->source() == self->source() && !h->abandoned() && h->IdleFlushOwed_mt() &&
        skip-- <= 0) {
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

}  // namespace mf2
