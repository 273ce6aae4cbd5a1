// The idle sweep's "another pass wanted" handshake (Heap::ReclaimIdleOwner_mt), deterministically
// (VERIFICATION.md, mutant R6). A page of an idle owner `a` comes back whole while another
// heap's sweep of a's queue holds it privately (popped, examined before it was whole, not given
// back yet): the completing heap finds the sweep running, asks for another pass and returns; the
// sweeper must make that pass, or the whole page stays queued on an owner that never drains.
//
// One OS thread plays three heaps: the owner `a`, the sweeper `b` and the third heap `c`. The
// completion by `c` runs inside b's sweep, from the counting page source's FreeSpan hook, when
// b's sweep releases another whole page. Remote frees are made with the public steps of
// Heap::Free's remote path (PushRemote_mt, QueueWonPage_mt, then ReclaimIdleOwner_mt when the
// owner has a batch of whole pages).
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"

namespace mf2 {
namespace {

using testing::ScopedPolicy;
using testing::TestHeaps;

constexpr size_t kSize = 2048;
const uint32_t kClass = SizeToClass(kSize);

uint64_t Stat(const Heap* h, HeapStats::Counter c) { return h->stats().Get(c); }

// `freer` frees `p`, a live block of another heap's page, as Heap::Free does.
void RemoteFree(Heap* freer, void* p) {
  Page* page = PageOf(p);
  Heap* owner = page->owner_relaxed();
  bool completed = false;
  if (freer->PushRemote_mt(page, static_cast<Block*>(p), &completed)) {
    Heap::QueueWonPage_mt(page);
  }
  if (completed && owner->whole_unswept_mt() >= static_cast<int64_t>(GetPolicy().reclaim_batch)) {
    freer->ReclaimIdleOwner_mt(owner);
  }
}

struct Completion {
  Heap* c;
  void* last_block;  // the last live block of page Y
  Heap* a;
  bool ran = false;
  bool y_was_queued = false;  // whether Y was on a's queue when c completed it
};

void CompleteInsideSweep(Page* /*released*/, void* arg) {
  auto* done = static_cast<Completion*>(arg);
  done->y_was_queued = done->a->PendingContains(PageOf(done->last_block));
  done->ran = true;
  RemoteFree(done->c, done->last_block);
}

TEST(SweepRecheckTest, APageCompletedDuringAnotherHeapsSweepIsReleasedByThatSweep) {
  ScopedPolicy policy([](Policy* p) {
    p->route = Route::kRouteS;
    p->reclaim_idle = true;
    p->reclaim_batch = 1;     // every completion sweeps
    p->reclaim_after_ns = 0;  // the owner counts as idle at once
    p->cache_class_bytes = 0;  // pages, not caches: every allocation and free reaches a page
  });
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* b = heaps.Acquire();
  Heap* c = heaps.Acquire();

  // a fills pages X then Y; both leave its active slot full (detached), and a goes idle.
  std::vector<void*> x, y;
  x.push_back(a->Allocate(kSize));
  while (PageOf(x[0])->HasFree()) x.push_back(a->Allocate(kSize));
  y.push_back(a->Allocate(kSize));
  while (PageOf(y[0])->HasFree()) y.push_back(a->Allocate(kSize));
  void* a_active = a->Allocate(kSize);
  Page* page_x = PageOf(x[0]);
  Page* page_y = PageOf(y[0]);
  ASSERT_NE(page_x, page_y);
  ASSERT_EQ(page_x->where(), Page::Where::kDetached);
  ASSERT_EQ(page_y->where(), Page::Where::kDetached);

  // b frees all of X but one block (X queued on a), then all of Y but one (Y queued after X, so
  // a sweep's pop meets Y first, while it is not whole yet).
  void* x_last = x.back();
  x.pop_back();
  void* y_last = y.back();
  y.pop_back();
  for (void* p : x) RemoteFree(b, p);
  for (void* p : y) RemoteFree(b, p);
  ASSERT_TRUE(a->PendingContains(page_x));
  ASSERT_TRUE(a->PendingContains(page_y));
  ASSERT_EQ(a->whole_unswept_mt(), 0);
  const uint64_t freed = heaps.source().freed();

  // b completes X: its sweep pops [Y, X], keeps Y (not whole), releases X; inside that release
  // c completes Y, finds b's sweep running, asks for another pass and returns.
  Completion done{c, y_last, a};
  heaps.source().set_free_hook(&CompleteInsideSweep, &done);
  RemoteFree(b, x_last);

  ASSERT_TRUE(done.ran) << "b's sweep released X through the page source";
  EXPECT_FALSE(done.y_was_queued) << "Y was held by b's sweep when c completed it";
  EXPECT_EQ(Stat(c, HeapStats::k_idle_reclaims), 0u) << "c did not sweep: b's sweep was running";
  EXPECT_EQ(Stat(b, HeapStats::k_idle_reclaims), 2u) << "b made the pass c asked for";
  EXPECT_FALSE(a->PendingContains(page_y)) << "Y came back whole and stays queued on idle a";
  EXPECT_EQ(heaps.source().freed(), freed + 2) << "X and Y both released";
  EXPECT_EQ(Stat(b, HeapStats::k_pages_reclaimed), 2u);
  EXPECT_EQ(a->whole_unswept_mt(), 0);
  HeapRegistry::Global().CheckAll(true);
  HeapRegistry::Global().CheckWholeCounts();

  a->Free(a_active);
  HeapRegistry::Global().CheckAll(true);
}

}  // namespace
}  // namespace mf2
