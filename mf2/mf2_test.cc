// The public API with thread-local heaps: allocation across the size range, frees from other
// threads, thread exit with live blocks, statistics and the C face.
#include "mf2/mf2.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap_registry.h"
#include "mf2/testing/scoped_policy.h"

namespace mf2 {
namespace {

TEST(Api, SizesAlignmentAndUsableSize) {
  for (size_t s = 0; s <= 200000; s = s < 300 ? s + 1 : s * 5 / 4) {
    void* p = Allocate(s);
    ASSERT_NE(p, nullptr) << s;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
    EXPECT_GE(UsableSize(p), s);
    memset(p, 0x5a, s);
    Free(p);
  }
  EXPECT_EQ(UsableSize(nullptr), 0u);
  Free(nullptr);
}

TEST(Api, OverflowingSizesFailWithEnomem) {
  errno = 0;
  EXPECT_EQ(Allocate(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(AllocateAligned(64, SIZE_MAX - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(AllocateAligned(3, 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

// Route S's must-reuse gate. Idle reclamation is off: it would release the pages that come back
// whole while this thread waits in join() (the next test shows that).
TEST(Api, BlocksFreedByOtherThreadsAreReusedAndCounted) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->route = Route::kRouteS;
    p->reclaim_idle = false;
  });
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) blocks.push_back(Allocate(2048 + (i % 7) * 1000));
  Stats before = GetStats();
  std::thread t([&] {
    for (void* p : blocks) Free(p);  // every free is remote
  });
  t.join();
  // The owner's next allocations come from its own pages, not new ones.
  std::vector<void*> again;
  for (int i = 0; i < 200; ++i) again.push_back(Allocate(2048 + (i % 7) * 1000));
  Stats after = GetStats();
  EXPECT_GE(after.remote_frees - before.remote_frees, 200u);
  EXPECT_GT(after.pending_enqueued, before.pending_enqueued);
  EXPECT_GT(after.mustreuse_hit, before.mustreuse_hit);
  EXPECT_EQ(after.new_pages, before.new_pages) << "no new page while our pages were queued";
  for (void* p : again) Free(p);
}

// Idle reclamation: the pages of an owner that stopped allocating come back whole through
// another thread's frees, and that thread releases them instead of leaving them queued.
TEST(Api, WholePagesOfAnIdleOwnerAreReleasedByTheFreeingThread) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_idle = true;
    p->reclaim_after_ns = 0;  // every observation finds the owner idle: deterministic
    p->reclaim_batch = 1;      // sweep at every page that comes back whole
  });
  std::vector<void*> blocks;
  for (int i = 0; i < 400; ++i) blocks.push_back(Allocate(4096));  // 16 per page: 25 pages
  Stats before = GetStats();
  std::thread t([&] {
    for (void* p : blocks) Free(p);
  });
  t.join();
  Stats after = GetStats();
  // The active page stays ours (never taken from its owner); every full page is released.
  EXPECT_GE(after.pages_reclaimed - before.pages_reclaimed, 23u);
  EXPECT_GT(after.idle_reclaims, before.idle_reclaims);
  EXPECT_LE(after.bytes_in_use_spans, before.bytes_in_use_spans - 23 * 65536);
  HeapRegistry::Global().CheckAll(true);
  // This thread allocates again as if nothing happened.
  for (int i = 0; i < 400; ++i) blocks[i] = Allocate(4096);
  for (void* p : blocks) Free(p);
  HeapRegistry::Global().CheckAll(true);
}

TEST(Api, ThreadExitWithLiveBlocksLeaksNothing) {
  std::vector<void*> blocks;
  std::thread t([&] {
    for (int i = 0; i < 5000; ++i) blocks.push_back(Allocate(16 + i % 3000));
  });
  t.join();  // exited: its heap is idle, its pages abandoned but not leaked
  Stats mid = GetStats();
  EXPECT_GT(mid.heaps_abandoned, 0u);
  for (void* p : blocks) Free(p);  // remote frees into a dead owner's pages
  Stats after = GetStats();
  EXPECT_GT(after.dead_owner_reclaims, mid.dead_owner_reclaims);
  EXPECT_GT(after.pages_released, mid.pages_released);
  HeapRegistry::Global().CheckAll(true);
}

TEST(Api, NewThreadsReuseIdleHeaps) {
  Stats before = GetStats();
  for (int i = 0; i < 20; ++i) {
    std::thread([] { Free(Allocate(100)); }).join();
  }
  Stats after = GetStats();
  EXPECT_GE(after.heaps_reused - before.heaps_reused, 19u);
  EXPECT_LT(HeapRegistry::Global().heap_count(), 20u) << "heaps are recycled, not piled up";
}

TEST(Api, CFace) {
  void* p = mf2_malloc(3000);
  ASSERT_NE(p, nullptr);
  EXPECT_GE(mf2_usable_size(p), 3000u);
  void* q = mf2_aligned_alloc(4096, 100);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % 4096, 0u);
  mf2_free(p);
  mf2_free(q);
  mf2_stats s;
  mf2_get_stats(&s);
  EXPECT_GE(s.reuse_rate, 0.0);
  EXPECT_LE(s.reuse_rate, 1.0);
  EXPECT_GT(s.new_pages + s.page_reuses, 0u);
}

TEST(Api, RouteIsSelectableAtRunTime) {
  const std::string before = mf2_get_route();
  EXPECT_EQ(mf2_set_route("route_p"), 0);
  EXPECT_STREQ(mf2_get_route(), "route_p");
  EXPECT_EQ(mf2_set_route("cda"), 0);
  EXPECT_STREQ(mf2_get_route(), "cda");
  errno = 0;
  EXPECT_EQ(mf2_set_route("route_x"), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mf2_set_route(nullptr), -1);
  EXPECT_STREQ(mf2_get_route(), "cda") << "a bad name changes nothing";
  EXPECT_EQ(mf2_set_route(before.c_str()), 0);
}

}  // namespace
}  // namespace mf2
