// Route P, the cda control and idle reclamation, deterministically: one OS thread plays an owner
// `a` that filled pages and went idle, and another heap `b` that freed into them and allocates.
// Every gate is shown to block on its own (with its counter), and every adoption or reclamation
// is followed by the global invariant check (ownership, page counts, flags, queues, adoption
// bookkeeping).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/adoption.h"
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
const uint32_t kCap = ClassInfo(kClass).capacity;  // 32 blocks
constexpr uint64_t kHour = uint64_t{3600} * 1000 * 1000 * 1000;

uint64_t Stat(const Heap* h, HeapStats::Counter c) { return h->stats().Get(c); }

// Route P with every gate open; each test closes the one it is about.
// Pages are what moves here: the per-thread caches are off, so every allocation and free reaches
// a page (cache_test.cc covers the caches).
void OpenGates(Policy* p, Route route) {
  p->cache_class_bytes = 0;
  p->remote_batch = 1;
  p->route = route;
  p->idle_threshold_ns = 0;
  p->reclaim_after_ns = 0;
  p->adopt_pressure = 0;
  p->adopt_min_remote = 1;
  p->rfr_window_ns = 0;
  p->reclaim_idle = false;
  p->reclaim_batch = 1;
}

class RoutePTest : public ::testing::Test {
 protected:
  void TearDown() override { HeapRegistry::Global().CheckAll(true); }

  // `a` fills `n` pages of kClass; they leave the active slot full (detached), and `a` is left
  // with a fresh active page holding one block (`a_active_block`).
  void FillPages(int n) {
    a = heaps.Acquire();
    b = heaps.Acquire();
    pages.assign(n, {});
    for (int i = 0; i < n; ++i) {
      pages[i].push_back(a->Allocate(kSize));
      Page* page = PageOf(pages[i][0]);
      while (page->HasFree()) pages[i].push_back(a->Allocate(kSize));
    }
    a_active_block = a->Allocate(kSize);
    for (auto& blocks : pages) {
      ASSERT_EQ(PageOf(blocks[0])->where(), Page::Where::kDetached);
    }
    // `b` fills its own active page first (before anything is adoptable), so that its next
    // allocation takes the slow path.
    b_blocks.push_back(b->Allocate(kSize));
    while (b->active_page(kClass)->HasFree()) b_blocks.push_back(b->Allocate(kSize));
  }
  // `b` frees `count` blocks of each page (remote frees: each page is queued once on `a`).
  void RemoteFree(int count) {
    for (auto& blocks : pages) {
      for (int j = 0; j < count; ++j) {
        b->Free(blocks.back());
        blocks.pop_back();
      }
    }
  }
  void FreeEverything() {
    for (auto& blocks : pages) {
      for (void* p : blocks) a->Free(p);
    }
    for (void* p : b_blocks) b->Free(p);
    a->Free(a_active_block);
  }

  TestHeaps heaps;
  Heap* a = nullptr;
  Heap* b = nullptr;
  std::vector<std::vector<void*>> pages;
  std::vector<void*> b_blocks;
  void* a_active_block = nullptr;
};

TEST_F(RoutePTest, AdoptsOneFullPageOfAnIdleOwnerWhenEveryGateIsOpen) {
  ScopedPolicy policy([](Policy* p) { OpenGates(p, Route::kRouteP); });
  FillPages(3);
  const uint32_t counted_before = AdoptionBoard::Global().adoptable(kClass);
  RemoteFree(4);
  EXPECT_EQ(AdoptionBoard::Global().adoptable(kClass), counted_before + 3);
  EXPECT_TRUE(AdoptionBoard::Global().IsReady(kClass, a->id()));
  HeapRegistry::Global().CheckAll(true);
  const size_t a_pages = a->page_count();
  const uint64_t spans = heaps.source().allocated();

  void* p = b->Allocate(kSize);
  Page* adopted = PageOf(p);
  EXPECT_EQ(adopted->owner_relaxed(), b) << "ownership moved to the adopter";
  EXPECT_EQ(Stat(b, HeapStats::k_adopt_allowed), 1u);
  EXPECT_EQ(Stat(b, HeapStats::k_pages_adopted), 1u);
  EXPECT_EQ(a->page_count(), a_pages - 1);
  EXPECT_EQ(heaps.source().allocated(), spans) << "adoption instead of a new page";
  EXPECT_EQ(AdoptionBoard::Global().adoptable(kClass), counted_before + 2);
  EXPECT_TRUE(AdoptionBoard::Global().IsReady(kClass, a->id())) << "two pages are left";
  HeapRegistry::Global().CheckAll(true);
  b_blocks.push_back(p);

  // The old owner frees a block of the adopted page: a remote free now, into b's page.
  const uint64_t a_remote = Stat(a, HeapStats::k_remote_frees);
  for (auto& blocks : pages) {
    if (PageOf(blocks[0]) != adopted) continue;
    a->Free(blocks.back());
    blocks.pop_back();
  }
  EXPECT_EQ(Stat(a, HeapStats::k_remote_frees), a_remote + 1);
  HeapRegistry::Global().CheckAll(true);

  // At most one adoption per slow path: the adopted page serves 3 more blocks, then the next
  // slow path adopts the second page.
  for (int i = 0; i < 3; ++i) b_blocks.push_back(b->Allocate(kSize));
  EXPECT_EQ(Stat(b, HeapStats::k_adopt_allowed), 1u);
  b_blocks.push_back(b->Allocate(kSize));  // the block a freed, collected from the remote stack
  b_blocks.push_back(b->Allocate(kSize));
  EXPECT_EQ(Stat(b, HeapStats::k_adopt_allowed), 2u);
  HeapRegistry::Global().CheckAll(true);
  FreeEverything();
}

struct GateCase {
  const char* name;
  void (*close)(Policy*);
  HeapStats::Counter counter;
  int remote_frees_per_page;
};

class RoutePGateTest : public RoutePTest, public ::testing::WithParamInterface<GateCase> {};

TEST_P(RoutePGateTest, EachGateAloneBlocksAdoption) {
  const GateCase& gate = GetParam();
  ScopedPolicy policy([&gate](Policy* p) {
    OpenGates(p, Route::kRouteP);
    gate.close(p);
  });
  FillPages(3);
  RemoteFree(gate.remote_frees_per_page);
  if (gate.counter == HeapStats::k_adopt_blocked_owner_partial) {
    // Give the owner a partial page of the class: a fresh full page (detached, not queued) with
    // one block freed locally, under the page's flag, which puts it back on the partial list.
    std::vector<void*> extra;
    extra.push_back(a->Allocate(kSize));
    while (PageOf(extra[0])->HasFree()) extra.push_back(a->Allocate(kSize));
    a->Allocate(kSize);  // moves on: the extra page is detached
    const uint64_t detached = Stat(a, HeapStats::k_detached_frees);
    a->Free(extra.back());
    extra.pop_back();
    EXPECT_EQ(Stat(a, HeapStats::k_detached_frees), detached + 1);
    EXPECT_EQ(PageOf(extra[0])->where(), Page::Where::kPartial);
    EXPECT_FALSE(a->PartialEmpty_mt(kClass));
    pages.push_back(extra);
  }
  HeapRegistry::Global().CheckAll(true);
  const uint64_t spans = heaps.source().allocated();
  const uint64_t new_pages = Stat(b, HeapStats::k_new_pages);
  b_blocks.push_back(b->Allocate(kSize));
  EXPECT_EQ(Stat(b, gate.counter), 1u) << gate.name;
  EXPECT_EQ(Stat(b, HeapStats::k_adopt_allowed), 0u) << gate.name;
  EXPECT_EQ(Stat(b, HeapStats::k_new_pages), new_pages + 1) << gate.name;
  EXPECT_EQ(heaps.source().allocated(), spans + 1);
  for (auto& blocks : pages) EXPECT_EQ(PageOf(blocks[0])->owner_relaxed(), a) << gate.name;
  HeapRegistry::Global().CheckAll(true);
  FreeEverything();
}

INSTANTIATE_TEST_SUITE_P(
    Gates, RoutePGateTest,
    ::testing::Values(
        GateCase{"owner active", [](Policy* p) { p->idle_threshold_ns = kHour; },
                 HeapStats::k_adopt_blocked_owner_active, 4},
        GateCase{"owner partial", [](Policy*) {}, HeapStats::k_adopt_blocked_owner_partial, 4},
        GateCase{"pressure", [](Policy* p) { p->adopt_pressure = 1000; },
                 HeapStats::k_adopt_blocked_pressure, 4},
        GateCase{"deadline", [](Policy* p) { p->rfr_window_ns = kHour; },
                 HeapStats::k_adopt_blocked_deadline, 4},
        GateCase{"remote count", [](Policy* p) { p->adopt_min_remote = 8; },
                 HeapStats::k_adopt_blocked_remote_count, 2}),
    [](const ::testing::TestParamInfo<GateCase>& info) {
      std::string n = info.param.name;
      for (char& c : n) c = c == ' ' ? '_' : c;
      return n;
    });

TEST_F(RoutePTest, RouteSNeverTakesALiveOwnersPage) {
  ScopedPolicy policy([](Policy* p) { OpenGates(p, Route::kRouteS); });
  FillPages(3);
  RemoteFree(10);
  b_blocks.push_back(b->Allocate(kSize));
  EXPECT_EQ(Stat(b, HeapStats::k_adopt_allowed), 0u);
  EXPECT_EQ(Stat(b, HeapStats::k_pages_adopted), 0u);
  for (auto& blocks : pages) EXPECT_EQ(PageOf(blocks[0])->owner_relaxed(), a);
  FreeEverything();
}

TEST_F(RoutePTest, CdaAdoptsAtOnceWhateverTheGatesSay) {
  ScopedPolicy policy([](Policy* p) {
    OpenGates(p, Route::kCda);
    p->idle_threshold_ns = kHour;
    p->adopt_pressure = 1000;
    p->rfr_window_ns = kHour;
    p->adopt_min_remote = 1000;
  });
  FillPages(2);
  RemoteFree(1);
  b_blocks.push_back(b->Allocate(kSize));
  EXPECT_EQ(Stat(b, HeapStats::k_adopt_allowed), 1u);
  EXPECT_EQ(PageOf(b_blocks.back())->owner_relaxed(), b);
  HeapRegistry::Global().CheckAll(true);
  FreeEverything();
}

TEST_F(RoutePTest, OwnerFreeIntoItsQueuedFullPageGoesThroughTheRemoteStack) {
  // Route P armed (so the page is detached as adoptable), no adoption (pressure gate closed).
  ScopedPolicy policy([](Policy* p) {
    OpenGates(p, Route::kRouteP);
    p->adopt_pressure = 1000;
  });
  FillPages(1);
  RemoteFree(1);  // queued: the flag is set
  Page* page = PageOf(pages[0][0]);
  const uint64_t remote = Stat(a, HeapStats::k_remote_frees);
  a->Free(pages[0].back());
  pages[0].pop_back();
  EXPECT_EQ(Stat(a, HeapStats::k_remote_frees), remote + 1);
  EXPECT_EQ(page->remote().Peek().count(), 2u);
  EXPECT_EQ(page->where(), Page::Where::kDetached);
  HeapRegistry::Global().CheckAll(true);
  FreeEverything();
}

TEST_F(RoutePTest, IdleOwnersWholePagesAreReleasedByTheLastFreer) {
  ScopedPolicy policy([](Policy* p) {
    OpenGates(p, Route::kRouteS);
    p->reclaim_idle = true;
  });
  FillPages(2);
  const uint64_t freed = heaps.source().freed();
  const size_t a_pages = a->page_count();
  RemoteFree(kCap - 1);  // all but one block of each page
  EXPECT_EQ(Stat(b, HeapStats::k_pages_reclaimed), 0u);
  RemoteFree(1);  // the last block of each page: it comes back whole
  EXPECT_EQ(Stat(b, HeapStats::k_pages_reclaimed), 2u);
  EXPECT_EQ(heaps.source().freed(), freed + 2) << "released to the page source";
  EXPECT_EQ(a->page_count(), a_pages - 2);
  HeapRegistry::Global().CheckAll(true);
  FreeEverything();
}

TEST_F(RoutePTest, ABusyOwnersWholePagesStayQueuedForTheOwner) {
  ScopedPolicy policy([](Policy* p) {
    OpenGates(p, Route::kRouteS);
    p->reclaim_idle = true;
    p->reclaim_after_ns = kHour;
  });
  FillPages(1);
  Page* page = PageOf(pages[0][0]);
  const uint64_t freed = heaps.source().freed();
  RemoteFree(kCap);
  EXPECT_EQ(Stat(b, HeapStats::k_pages_reclaimed), 0u);
  EXPECT_EQ(Stat(b, HeapStats::k_reclaim_blocked_owner_active), 1u);
  EXPECT_EQ(heaps.source().freed(), freed);
  EXPECT_TRUE(a->PendingContains(page)) << "left for its owner";
  HeapRegistry::Global().CheckAll(true);
  // The owner's next slow path drains it (must-reuse gate).
  {
    std::vector<void*> more;
    while (a->active_page(kClass)->HasFree()) more.push_back(a->Allocate(kSize));
    more.push_back(a->Allocate(kSize));
    EXPECT_EQ(PageOf(more.back()), page);
    EXPECT_FALSE(a->PendingContains(page));
    for (void* p : more) a->Free(p);
  }
  HeapRegistry::Global().CheckAll(true);
  FreeEverything();
}

TEST(RoutePolicy, EnvironmentSelectsRouteAndGates) {
  setenv("MF2_ROUTE", "route_p", 1);
  setenv("MF2_IDLE_US", "250", 1);
  setenv("MF2_ADOPT_PRESSURE", "6", 1);
  setenv("MF2_ADOPT_MIN_REMOTE", "3", 1);
  setenv("MF2_RFR_US", "1000", 1);
  setenv("MF2_RECLAIM_IDLE", "0", 1);
  setenv("MF2_ADOPT_PARTIAL_GATE", "0", 1);
  setenv("MF2_RECLAIM_AFTER_US", "20000", 1);
  Policy p = PolicyFromEnvironment();
  EXPECT_EQ(p.reclaim_after_ns, 20'000'000u);
  EXPECT_FALSE(p.adopt_partial_gate);
  EXPECT_EQ(p.route, Route::kRouteP);
  EXPECT_EQ(p.idle_threshold_ns, 250'000u);
  EXPECT_EQ(p.adopt_pressure, 6u);
  EXPECT_EQ(p.adopt_min_remote, 3u);
  EXPECT_EQ(p.rfr_window_ns, 1'000'000u);
  EXPECT_FALSE(p.reclaim_idle);
  setenv("MF2_ROUTE", "bogus", 1);  // an unknown route keeps the default
  EXPECT_EQ(PolicyFromEnvironment().route, Route::kRouteS);
  for (const char* v :
       {"MF2_ROUTE", "MF2_IDLE_US", "MF2_ADOPT_PRESSURE", "MF2_ADOPT_MIN_REMOTE", "MF2_RFR_US",
        "MF2_RECLAIM_IDLE", "MF2_ADOPT_PARTIAL_GATE", "MF2_RECLAIM_AFTER_US"}) {
    unsetenv(v);
  }
  Policy d = PolicyFromEnvironment();
  EXPECT_EQ(d.route, Route::kRouteS);
  EXPECT_EQ(d.idle_threshold_ns, 150'000u);
  EXPECT_EQ(d.reclaim_after_ns, 10'000'000u);
  EXPECT_EQ(d.adopt_pressure, 4u);
  EXPECT_EQ(d.adopt_min_remote, 8u);
  EXPECT_EQ(d.rfr_window_ns, 200'000u);
  EXPECT_TRUE(d.reclaim_idle);
  EXPECT_TRUE(d.adopt_partial_gate);
}

}  // namespace
}  // namespace mf2
