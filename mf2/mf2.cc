// The public API (mf2.h, mf2.hpp) over thread-local heaps (thread_heap.h) and explicit heaps
// (heap_registry.h). Statistics reports are in stats_report.cc.
#include "mf2/mf2.h"

#include <cerrno>
#include <cstring>
#include <new>

#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/mf2.hpp"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/resize.h"
#include "mf2/segment.h"
#include "mf2/stats_report.h"
#include "mf2/thread_heap.h"

namespace mf2 {


namespace {

// Prints the statistics summary at exit when MF2_STATS=1 or MF2_STATS_FILE is set (see
// stats_report.cc): a static destructor rather than atexit(), which may allocate and would
// re-enter malloc during the first allocation. It lives here, in the object every user of MF2
// links, so that the report's object is linked too.
struct StatsAtExit {
  ~StatsAtExit() { PrintStatsAtExit(); }
} g_stats_at_exit;

}  // namespace

void* Allocate(size_t size) noexcept { return ThreadHeap()->Allocate(size); }

void Free(void* p) noexcept { ThreadHeap()->Free(p, "mf2::Free"); }

size_t UsableSize(const void* p) noexcept {
  if (p == nullptr) return 0;
  return Heap::UsableSize(p, "mf2::UsableSize");
}

void* AllocateAligned(size_t alignment, size_t size) noexcept {
  return ThreadHeap()->AllocateAligned(alignment, size);
}

void ReleaseThreadHeap() noexcept { ReleaseThreadHeapNow(); }
void ThreadIdle() noexcept { ThreadGoIdle(); }

}  // namespace mf2

// An explicit heap's handle: a small block allocated from the heap itself, so a handle is valid
// exactly while that block is live, which MF2 can check without trusting the pointer.
struct mf2_heap_s {
  uint64_t magic;
  mf2::Heap* heap;
};

namespace mf2 {
namespace {

constexpr uint64_t kHeapMagic = 0x4d46325f48454150ull;  // "MF2_HEAP"

// The usable size of `p` if it is a live MF2 block, else 0 after reporting misuse as `call`.
size_t LiveBlockSize(const void* p, const char* call) { return Heap::UsableSize(p, call); }

// The heap behind handle `h`, or nullptr with errno = EINVAL after reporting misuse as `call`.
// The handle is read only once it is known to be a live block of MF2's (so a deleted handle is
// caught, not read after free).
Heap* LiveHeap(mf2_heap_t* h, const char* call) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(h);
  if (h != nullptr && IsBlockStart(a) && !HasAnyCanary(h) &&
      PageOf(h)->block_size() >= sizeof(mf2_heap_s) && h->magic == kHeapMagic) {
    return h->heap;
  }
  internal::ReportError(InSegment(h) ? ErrorKind::kNotABlock : ErrorKind::kForeignPointer, call, h,
                        "not a live heap (not made by mf2_heap_new, or deleted)");
  errno = EINVAL;
  return nullptr;
}

void* HeapAllocate(Heap* heap, size_t size) { return heap->Allocate(size); }

}  // namespace
}  // namespace mf2

extern "C" {

int mf2_version(void) { return MF2_VERSION; }

void* mf2_malloc(size_t size) { return mf2::Allocate(size); }
void* mf2_calloc(size_t n, size_t size) { return mf2::AllocateZeroed(n, size); }
void* mf2_realloc(void* p, size_t size) { return mf2::Reallocate(p, size, "mf2_realloc"); }
void mf2_free(void* p) { mf2::ThreadHeap()->Free(p, "mf2_free"); }
size_t mf2_usable_size(const void* p) { return mf2::UsableSize(p); }
void* mf2_aligned_alloc(size_t alignment, size_t size) {
  return mf2::AllocateAligned(alignment, size);
}

mf2_heap_t* mf2_heap_new(void) {
  mf2::Heap* heap = mf2::HeapRegistry::Global().AcquireHeap(&mf2::OsPageSource::Global());
  if (heap == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  void* mem = heap->Allocate(sizeof(mf2_heap_s));
  if (mem == nullptr) {
    mf2::HeapRegistry::Global().ReleaseHeap(heap);
    errno = ENOMEM;
    return nullptr;
  }
  return new (mem) mf2_heap_s{mf2::kHeapMagic, heap};
}

void mf2_heap_delete(mf2_heap_t* h) {
  if (h == nullptr) return;
  mf2::Heap* heap = mf2::LiveHeap(h, "mf2_heap_delete");
  if (heap == nullptr) return;
  h->magic = 0;
  heap->Free(h);
  mf2::HeapRegistry::Global().ReleaseHeap(heap);
}

void* mf2_heap_malloc(mf2_heap_t* h, size_t size) {
  mf2::Heap* heap = mf2::LiveHeap(h, "mf2_heap_malloc");
  return heap == nullptr ? nullptr : mf2::HeapAllocate(heap, size);
}

void* mf2_heap_calloc(mf2_heap_t* h, size_t n, size_t size) {
  mf2::Heap* heap = mf2::LiveHeap(h, "mf2_heap_calloc");
  if (heap == nullptr) return nullptr;
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  // Large: a fresh mapping reads as zeros and is not written (Heap::AllocateZeroedLarge).
  if (total > mf2::kMaxClassSize) return heap->AllocateZeroedLarge(total);
  void* p = mf2::HeapAllocate(heap, total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

void* mf2_heap_realloc(mf2_heap_t* h, void* p, size_t size) {
  mf2::Heap* heap = mf2::LiveHeap(h, "mf2_heap_realloc");
  if (heap == nullptr) return nullptr;
  if (p == nullptr) return mf2::HeapAllocate(heap, size);
  if (size == 0) {
    heap->Free(p);
    return nullptr;
  }
  const size_t old_size = mf2::LiveBlockSize(p, "mf2_heap_realloc");
  if (old_size == 0) {
    errno = EINVAL;
    return nullptr;
  }
  // In place when the block already fits and is not more than twice too large (as mf2_realloc).
  if (size <= old_size && size >= old_size / 2) return p;
  void* q = mf2::HeapAllocate(heap, size);
  if (q == nullptr) return nullptr;  // p stays valid, as C requires
  memcpy(q, p, old_size < size ? old_size : size);
  heap->Free(p);
  return q;
}

void* mf2_heap_aligned_alloc(mf2_heap_t* h, size_t alignment, size_t size) {
  mf2::Heap* heap = mf2::LiveHeap(h, "mf2_heap_aligned_alloc");
  if (heap == nullptr) return nullptr;
  return heap->AllocateAligned(alignment, size);
}

void mf2_heap_free(mf2_heap_t* h, void* p) {
  if (p == nullptr) return;
  mf2::Heap* heap = mf2::LiveHeap(h, "mf2_heap_free");
  if (heap == nullptr) {
    mf2::Free(p);  // the heap was bad, not the block (under MF2_ON_ERROR=report): lose nothing
    return;
  }
  heap->Free(p);
}

int mf2_option_get(const char* name, long long* value) {
  if (name == nullptr || value == nullptr) {
    errno = EINVAL;
    return -1;
  }
  if (!mf2::OptionGet(name, value)) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

int mf2_option_set(const char* name, long long value) {
  if (name == nullptr) {
    errno = EINVAL;
    return -1;
  }
  if (const int err = mf2::OptionSet(name, value)) {
    errno = err;
    return -1;
  }
  return 0;
}

int mf2_set_route(const char* name) {
  mf2::Route r;
  if (!mf2::ParseRoute(name, &r)) {
    errno = EINVAL;
    return -1;
  }
  mf2::SetRoute(r);
  return 0;
}

const char* mf2_get_route(void) { return mf2::RouteName(mf2::CurrentRoute()); }

void mf2_release_thread_heap(void) { mf2::ReleaseThreadHeap(); }
void mf2_thread_idle(void) { mf2::ThreadIdle(); }

}  // extern "C"
