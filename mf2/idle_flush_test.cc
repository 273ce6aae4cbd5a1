// The idle flush (heap.h, "The idle flush"), deterministically on one OS thread: a parker does
// GoIdle for an idle owner, so that blocks in the owner's caches no longer pin pages that every
// other block came back to; and it never acts while one of the owner's operations is running.
// The concurrent side (an owner at full speed, a freer and a parker on three threads) is
// stress/idle_flush_stress_test.cc; the weak-memory handshake is model/park_sb.pml.
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/fence.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/testing/resident_pages.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"

namespace mf2 {
namespace {

using testing::ResidentPages;
using testing::ScopedPolicy;
using testing::TestHeaps;

constexpr size_t kSize = 2048;
const uint32_t kClass = SizeToClass(kSize);
constexpr int kPages = 4;

class IdleFlushTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!AsymmetricFenceHeavy()) GTEST_SKIP() << "no membarrier on this kernel: no idle flush";
  }
  // Caches on (their default), every remote free on its page at once, owners idle at once, no
  // background reclaimer (the test's own heap parks and sweeps).
  ScopedPolicy policy_{[](Policy* p) {
    p->remote_batch = 1;
    p->reclaim_after_ns = 0;
    p->background_reclaim = false;
  }};
};

// The owner fills kPages pages, frees one block of each into its cache and hands the rest to a
// freer: every page is whole but for one cached block. A sweep cannot release them; the flush
// does.
TEST_F(IdleFlushTest, AParkerReturnsAnIdleOwnersCachedBlocksAndTheirPages) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  Heap* parker = heaps.Acquire();
  std::vector<void*> blocks;
  std::vector<Page*> pages;
  while (pages.size() < kPages || owner->active_page(kClass)->HasFree()) {
    void* p = owner->Allocate(kSize);
    ASSERT_NE(p, nullptr);
    if (pages.empty() || pages.back() != PageOf(p)) pages.push_back(PageOf(p));
    blocks.push_back(p);
  }
  // The refills put some of the pages' blocks in the cache too (unhanded, pinning their pages).
  const uint32_t refilled = owner->cache(kClass).n();
  std::vector<void*> cached;
  for (void* p : blocks) {
    if (cached.empty() || PageOf(cached.back()) != PageOf(p)) {
      cached.push_back(p);
      owner->Free(p);  // local: into the owner's cache
    } else {
      freer->Free(p);  // remote: onto the page's stack
    }
  }
  ASSERT_EQ(owner->cache(kClass).n(), refilled + cached.size());
  const size_t outstanding = heaps.source().outstanding();
  ASSERT_GE(owner->page_count(), pages.size());

  // What existed before: a sweep of the idle owner finds no page that came back whole.
  parker->ReclaimIdleOwner_mt(owner);
  EXPECT_EQ(heaps.source().outstanding(), outstanding) << "cached blocks pin their pages";
  EXPECT_EQ(owner->cache(kClass).n(), refilled + cached.size());

  EXPECT_TRUE(parker->FlushIdleOwner_mt(owner));
  EXPECT_EQ(owner->cache(kClass).n(), 0u) << "the parker returned the cached blocks";
  // The full pages had their last blocks pushed onto their remote stacks (they stayed detached)
  // and came back whole: collected with the queue and released, as was the active page.
  EXPECT_EQ(owner->page_count(), 0u) << "every page the owner had is back";
  EXPECT_LT(heaps.source().outstanding(), outstanding);
  EXPECT_FALSE(owner->in_op_for_testing());
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);

  // The owner carries on as if it had called GoIdle itself.
  void* p = owner->Allocate(kSize);
  ASSERT_NE(p, nullptr);
  owner->Free(p);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// An error handler runs inside the operation that found the misuse: a parker called from there
// must refuse (the owner is busy), and leave the heap as it was.
Heap* g_owner = nullptr;
Heap* g_parker = nullptr;
int g_reports = 0;
bool g_parked_inside = false;
bool g_busy_inside = false;
void ParkFromInsideTheOperation(const ErrorReport&) {
  ++g_reports;
  g_busy_inside = g_owner->in_op_for_testing();
  g_parked_inside = g_parker->FlushIdleOwner_mt(g_owner);
}

TEST_F(IdleFlushTest, AnOwnerInsideAnOperationIsNeverParked) {
  TestHeaps heaps;
  g_owner = heaps.Acquire();
  g_parker = heaps.Acquire();
  void* kept = g_owner->Allocate(kSize);
  void* p = g_owner->Allocate(kSize);
  g_owner->Free(p);  // cached
  const uint32_t cached = g_owner->cache(kClass).n();
  ASSERT_GT(cached, 0u);
  const ErrorHandler previous = SetErrorHandler(&ParkFromInsideTheOperation);
  g_owner->Free(static_cast<char*>(kept) + 16);  // interior pointer: reported inside Free
  g_owner->Free(p);                               // double free: reported inside Free
  SetErrorHandler(previous);
  EXPECT_EQ(g_reports, 2);
  EXPECT_TRUE(g_busy_inside);
  EXPECT_FALSE(g_parked_inside) << "a parker acted inside the owner's operation";
  EXPECT_EQ(g_owner->cache(kClass).n(), cached) << "the cache was left alone";
  EXPECT_TRUE(g_parker->FlushIdleOwner_mt(g_owner)) << "between operations it may";
  EXPECT_EQ(g_owner->cache(kClass).n(), 0u);
  g_owner->Free(kept);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// The parker sees the owner's slow-path epoch for the first time, so the owner is idle only
// from now on (OwnerIdle_mt) and no long-idle flush happens yet; then `us` microseconds pass.
void FirstSightThenWait(Heap* parker, Heap* owner, useconds_t us) {
  uint64_t idle_in_ns = 0;
  EXPECT_FALSE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns)) << "idle since now only";
  usleep(us);
}

// An owner seen for the first time since a slow path may still be working: the reclaimer looks
// again in a quarter threshold, not a whole one. A whole one let an owner that stopped just after
// a look keep everything for up to two thresholds after its last slow path (bench/RESULTS.md).
// Without a new slow path the clock runs on from that first sight.
TEST_F(IdleFlushTest, AnOwnerSeenWorkingIsLookedAtAgainInAQuarterThreshold) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* parker = heaps.Acquire();
  constexpr uint64_t kThreshold = uint64_t{4} * 1000 * 1000 * 1000;  // 4 s: never reached here
  ScopedPolicy slow([](Policy* p) { p->idle_flush_after_ns = kThreshold; });
  owner->Free(owner->Allocate(kSize));  // a slow path: owed, first sight next
  uint64_t idle_in_ns = 0;
  EXPECT_FALSE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns));
  EXPECT_EQ(idle_in_ns, kThreshold / 4) << "first sight of the epoch";
  owner->Free(owner->Allocate(kSize * 2));  // another class, another slow path: working
  idle_in_ns = 0;
  EXPECT_FALSE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns));
  EXPECT_EQ(idle_in_ns, kThreshold / 4) << "first sight of the new epoch";
  usleep(2000);  // no slow path: the clock started at that sight
  idle_in_ns = 0;
  EXPECT_FALSE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns));
  EXPECT_GT(idle_in_ns, kThreshold / 4) << "the rest of the threshold, not another quarter";
  EXPECT_LT(idle_in_ns, kThreshold);
  EXPECT_TRUE(owner->IdleFlushOwed_mt());
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// The first slow path after a flush notifies the reclaimer before it takes a page: a pass that
// ran in between found the heap holding no page and, when "owed" also meant "holds pages", not
// owed, and waited for good however many pages the thread took next (a CI run of
// reclaimer_test under ASan and TSan). A heap that allocated since its flush is owed whatever
// it holds at the moment.
TEST_F(IdleFlushTest, AHeapThatAllocatedSinceItsFlushIsOwedWhateverItHolds) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* parker = heaps.Acquire();
  owner->Free(owner->Allocate(kSize));
  ScopedPolicy at_once([](Policy* p) { p->idle_flush_after_ns = 1; });
  FirstSightThenWait(parker, owner, 2000);
  uint64_t idle_in_ns = 0;
  EXPECT_TRUE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns));
  ASSERT_EQ(owner->page_count(), 0u);
  EXPECT_FALSE(owner->IdleFlushOwed_mt());
  owner->Free(owner->Allocate(kSize));  // a slow path since the flush
  owner->GoIdle();                      // and nothing held any more
  ASSERT_EQ(owner->page_count(), 0u);
  EXPECT_TRUE(owner->IdleFlushOwed_mt()) << "owed although it holds no page";
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// A thread that runs on its caches alone is idle by the slow-path clock but nearly always inside
// an operation: the long-idle flush that finds it busy tries again a whole threshold later. It
// tried again at the reclaimer's next pass (1 ms), parking a busy malloc/free loop with a
// membarrier 730 times a second (bench/RESULTS.md, busy_on_caches).
bool g_long_flushed = true;
uint64_t g_idle_in_ns = 0;
void LongFlushFromInsideTheOperation(const ErrorReport&) {
  g_long_flushed = g_parker->FlushLongIdleOwner_mt(g_owner, &g_idle_in_ns);
}

TEST_F(IdleFlushTest, ABusyOwnerIsTriedAgainAWholeThresholdLater) {
  TestHeaps heaps;
  g_owner = heaps.Acquire();
  g_parker = heaps.Acquire();
  void* kept = g_owner->Allocate(kSize);
  ScopedPolicy threshold([](Policy* p) { p->idle_flush_after_ns = 1'000'000; });  // 1 ms
  FirstSightThenWait(g_parker, g_owner, 3000);  // idle for the threshold by the slow-path clock
  uint64_t idle_in_ns = 0;
  const ErrorHandler previous = SetErrorHandler(&LongFlushFromInsideTheOperation);
  g_owner->Free(static_cast<char*>(kept) + 16);  // interior pointer: reported inside Free
  SetErrorHandler(previous);
  EXPECT_FALSE(g_long_flushed) << "flushed inside the owner's operation";
  EXPECT_EQ(g_idle_in_ns, uint64_t{1'000'000}) << "a busy owner is tried again a whole threshold later";
  EXPECT_TRUE(g_parker->FlushLongIdleOwner_mt(g_owner, &idle_in_ns)) << "between operations";
  EXPECT_EQ(g_owner->cache(kClass).n(), 0u);
  g_owner->Free(kept);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// A parker does not act for a heap whose owner has abandoned it (its pages belong to whoever
// claims it), nor for itself.
TEST_F(IdleFlushTest, NoFlushOfAnAbandonedHeapOrOfItself) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* parker = heaps.Acquire();
  void* p = owner->Allocate(kSize);
  owner->Free(p);
  EXPECT_FALSE(parker->FlushIdleOwner_mt(parker));
  heaps.Release(owner);  // abandoned
  EXPECT_FALSE(parker->FlushIdleOwner_mt(owner));
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// The idle flush of a long-idle owner (Heap::FlushLongIdleOwner_mt, the background reclaimer's
// third scan): nothing until the owner has taken no slow path for the threshold; then its caches
// and empty pages come back and its slot pages go to the OS; then nothing more is owed until its
// next slow path, after which it works as before.
TEST_F(IdleFlushTest, ALongIdleOwnerGivesBackItsPagesAndSlotPagesOnce) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* parker = heaps.Acquire();
  std::vector<void*> blocks;
  for (size_t size = 16; size <= 16384; size *= 2) {
    for (int i = 0; i < 4; ++i) blocks.push_back(owner->Allocate(size));
  }
  for (void* p : blocks) owner->Free(p);  // all local: no page comes back whole remotely
  void* kept = owner->Allocate(kSize);    // live throughout: its page stays the owner's
  ASSERT_NE(kept, nullptr);
  const size_t pages = owner->page_count();
  const size_t outstanding = heaps.source().outstanding();
  ASSERT_GE(pages, 8u);
  EXPECT_TRUE(owner->IdleFlushOwed_mt());
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t slots = reinterpret_cast<uintptr_t>(owner->slot_storage());
  const uintptr_t first = (slots + page - 1) & ~(page - 1);
  const size_t bytes = slots + sizeof(Heap::SlotStorage) - first;
  ASSERT_GE(ResidentPages(reinterpret_cast<void*>(first), bytes), 2);

  {
    ScopedPolicy long_threshold([](Policy* p) { p->idle_flush_after_ns = uint64_t{3600} << 30; });
    uint64_t idle_in_ns = 0;
    EXPECT_FALSE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns)) << "not idle for an hour";
    EXPECT_GT(idle_in_ns, 0u);
    EXPECT_EQ(owner->page_count(), pages);
  }
  ScopedPolicy at_once([](Policy* p) { p->idle_flush_after_ns = 1; });
  usleep(2000);  // the owner was first seen idle above, in an earlier microsecond
  uint64_t idle_in_ns = 0;
  EXPECT_TRUE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns));
  EXPECT_EQ(owner->page_count(), 1u) << "every page but kept's held only free blocks";
  EXPECT_LT(heaps.source().outstanding(), outstanding);
  for (uint32_t k = 0; k < kNumClasses; ++k) EXPECT_EQ(owner->cache(k).n(), 0u);
  EXPECT_EQ(ResidentPages(reinterpret_cast<void*>(first), bytes), 0) << "slot pages kept";
  EXPECT_FALSE(owner->IdleFlushOwed_mt()) << "flushed: owed nothing until its next slow path";
  EXPECT_TRUE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns)) << "nothing to do";
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);

  // The owner carries on: its caches fill again (on zero pages), and it is owed a flush again.
  void* p = owner->Allocate(kSize);
  ASSERT_NE(p, nullptr);
  owner->Free(p);
  EXPECT_TRUE(owner->IdleFlushOwed_mt());
  EXPECT_GT(owner->cache(kClass).n(), 0u);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  // Idle since it was first seen with its new slow-path epoch, not before.
  FirstSightThenWait(parker, owner, 2000);
  EXPECT_GT(owner->cache(kClass).n(), 0u) << "not flushed";
  EXPECT_TRUE(parker->FlushLongIdleOwner_mt(owner, &idle_in_ns));
  EXPECT_EQ(owner->page_count(), 1u);
  EXPECT_EQ(owner->cache(kClass).n(), 0u);
  owner->Free(kept);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

}  // namespace
}  // namespace mf2
