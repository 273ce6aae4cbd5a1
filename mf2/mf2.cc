// The public API (mf2.h) over thread-local heaps (thread_heap.h).
#include "mf2/mf2.h"

#include <cerrno>

#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/policy.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

// Prints the counters at exit when MF2_STATS=1: a static destructor rather than atexit(),
// which may allocate and would re-enter malloc during the first allocation.
struct StatsAtExit {
  ~StatsAtExit() {
    if (GetPolicy().stats_at_exit) PrintStats(2);
  }
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

Stats GetStats() noexcept { return HeapRegistry::Global().CollectStats(); }

void PrintStats(int fd) noexcept {
  Stats s = GetStats();
  char buf[256];
#define MF2_PRINT_FIELD(name, desc)                                                      \
  internal::WriteAll(fd, buf,                                                            \
                     internal::FormatTo(buf, sizeof(buf), "mf2_stats: %-22s %12llu  %s\n", \
                                        #name, static_cast<unsigned long long>(s.name), desc));
  MF2_COUNTERS(MF2_PRINT_FIELD)
#undef MF2_PRINT_FIELD
  size_t n = internal::FormatTo(
      buf, sizeof(buf),
      "mf2_stats: route=%s reuse_rate=%.4f new_pages=%llu page_reuses=%llu adoptions=%llu "
      "pages_reclaimed=%llu segments_mapped=%llu spans_returned_to_os=%llu\n",
      RouteName(CurrentRoute()), s.reuse_rate(), static_cast<unsigned long long>(s.new_pages),
      static_cast<unsigned long long>(s.page_reuses),
      static_cast<unsigned long long>(s.adopt_allowed),
      static_cast<unsigned long long>(s.pages_reclaimed),
      static_cast<unsigned long long>(s.segments_mapped),
      static_cast<unsigned long long>(s.spans_returned_to_os));
  internal::WriteAll(fd, buf, n);
}

void ReleaseThreadHeap() noexcept { ReleaseThreadHeapNow(); }

}  // namespace mf2

extern "C" {

void* mf2_malloc(size_t size) { return mf2::Allocate(size); }
void mf2_free(void* p) { mf2::Free(p); }
size_t mf2_usable_size(const void* p) { return mf2::UsableSize(p); }
void* mf2_aligned_alloc(size_t alignment, size_t size) {
  return mf2::AllocateAligned(alignment, size);
}
void mf2_get_stats(mf2_stats* out) {
  mf2::Stats s = mf2::GetStats();
  out->new_pages = s.new_pages;
  out->page_reuses = s.page_reuses;
  out->mustreuse_hit = s.mustreuse_hit;
  out->active_drain_hit = s.active_drain_hit;
  out->partial_hit = s.partial_hit;
  out->abandoned_adopt_hit = s.abandoned_adopt_hit;
  out->remote_frees = s.remote_frees;
  out->pending_enqueued = s.pending_enqueued;
  out->pending_drained = s.pending_drained;
  out->reuse_rate = s.reuse_rate();
  out->adopt_allowed = s.adopt_allowed;
  out->pages_adopted = s.pages_adopted;
  out->pages_reclaimed = s.pages_reclaimed;
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
void mf2_print_stats(int fd) { mf2::PrintStats(fd); }
void mf2_release_thread_heap(void) { mf2::ReleaseThreadHeap(); }

}  // extern "C"
