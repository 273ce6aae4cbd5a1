// Deterministic tests of the per-thread caches in front of the pages (heap.h, "caches"): how deep
// they start, how they grow, and the budget that bounds them. One OS thread, explicit
// heaps. (stress/cache_stress_test.cc drives the caches from many threads.)
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/policy.h"
#include "mf2/size_class.h"
#include "mf2/stats.h"
#include "mf2/testing/resident_pages.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"

namespace mf2 {
namespace {

using testing::ResidentPages;
using testing::ScopedPolicy;
using testing::TestHeaps;

constexpr size_t kMid = 32 * 1024;  // 64 KiB per class at first: a cache of 2 blocks

size_t CapBytes(const Heap& h) {
  size_t bytes = 0;
  for (uint32_t k = 1; k < kNumClasses; ++k) bytes += size_t{h.cache(k).cap()} * ClassInfo(k).size;
  return bytes;
}

// Allocates `burst` blocks of `size`, then frees them, `rounds` times: the class's cache runs dry
// on the way up and overflows on the way down whenever `burst` is deeper than the cache.
void Churn(Heap* h, size_t size, int burst, int rounds) {
  std::vector<void*> blocks;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < burst; ++i) {
      blocks.push_back(h->Allocate(size));
      ASSERT_NE(blocks.back(), nullptr);
    }
    for (void* p : blocks) h->Free(p);
    blocks.clear();
  }
}

// With the default options, the initial capacity of all classes together (64 KiB each, at least
// 2 and at most kCacheSlots, 61, blocks) is larger than the default MF2_CACHE_HEAP_KB (1 MiB).
// When that alone bounded the total, no cache of a small heap could ever grow; a small heap's
// caches may now grow by it beyond their initial capacity, so a class that keeps overflowing
// deepens.
TEST(CacheTest, ACacheThatKeepsOverflowingGrowsWithTheDefaultOptions) {
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  const uint32_t k = SizeToClass(kMid);
  const uint32_t initial = h->cache(k).cap();
  ASSERT_EQ(initial, 2u) << "64 KiB of 32 KiB blocks";
  ASSERT_GT(CapBytes(*h), GetPolicy().cache_heap_bytes)
      << "the premise: the initial capacity alone is above the default budget";
  Churn(h, kMid, 16, 8);
  EXPECT_GE(h->cache(k).cap(), 16u) << "the cache doubled while it overflowed";
  if (MF2_STATS) EXPECT_GT(h->stats().Get(HeapStats::k_cache_grows), 0u);
  h->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  heaps.Release(h);
}

// Growth stops at the budget: several classes competing for 256 KiB of growth get no more than
// that in all, and the classes that never overflowed keep their initial depth. (The budget is
// an eighth of the heap's pages when that is more: empty pages go back at once here, so the
// heap never holds more than one class's 1.25 MiB of pages, and 256 KiB binds.)
TEST(CacheTest, GrowthStaysWithinTheHeapBudget) {
  constexpr size_t kBudget = 256 << 10;
  ScopedPolicy policy([](Policy* p) {
    p->cache_heap_bytes = kBudget;
    p->heap_empty_bytes = 0;
  });
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  const size_t initial_bytes = CapBytes(*h);
  const uint32_t small = SizeToClass(64);
  const uint32_t small_cap = h->cache(small).cap();
  for (size_t size : {kMid, size_t{24 * 1024}, size_t{16 * 1024}, size_t{8 * 1024}}) {
    Churn(h, size, 40, 6);
  }
  const size_t grown = CapBytes(*h) - initial_bytes;
  EXPECT_GT(grown, kBudget / 2) << "the classes want far more than the budget: it binds";
  EXPECT_LE(grown, kBudget) << "growth is bounded by MF2_CACHE_HEAP_KB";
  EXPECT_EQ(h->cache(small).cap(), small_cap) << "a class that never overflowed keeps its depth";
  h->CheckInvariants(true);
  heaps.Release(h);
}

// A large heap's caches hold at most an eighth of its pages in all, not that on top of their
// initial capacity: 40 MiB of live 32 KiB blocks (51 MiB of pages with the churn's and the empty
// pages kept, under 56 MiB: a bound of 7 MiB) and seven classes each wanting 61 blocks (about 12
// MiB). A bound of initial + pages / 8 lets them reach 11 MiB here.
TEST(CacheTest, ALargeHeapsCachesStayWithinAnEighthOfItsPages) {
  ScopedPolicy policy([](Policy* p) { p->heap_empty_bytes = 0; });
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  const size_t initial_bytes = CapBytes(*h);
  std::vector<void*> live;
  for (size_t i = 0; i < (size_t{40} << 20) / kMid; ++i) {
    live.push_back(h->Allocate(kMid));
    ASSERT_NE(live.back(), nullptr);
  }
  for (size_t kib : {64, 48, 32, 24, 16, 12, 8}) Churn(h, kib << 10, 70, 8);
  EXPECT_GT(CapBytes(*h), initial_bytes + (size_t{1} << 20)) << "an eighth of 40 MiB is more";
  EXPECT_LE(CapBytes(*h), size_t{7} << 20) << "at most an eighth of the heap's pages";
  h->CheckInvariants(true);
  for (void* p : live) h->Free(p);
  h->CheckInvariants(true);
  heaps.Release(h);
}

// Every request size up to the largest class reaches its own class's cache (the fast path's
// direct_ table, heap.h): the block handed out is of that class, and freed it is the one handed
// out next.
TEST(CacheTest, EveryRequestSizeIsServedFromItsClassCache) {
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  for (size_t size = 0; size <= kMaxClassSize; ++size) {
    void* p = h->Allocate(size);
    ASSERT_NE(p, nullptr) << size;
    const uint32_t k = SizeToClass(size == 0 ? 1 : size);
    ASSERT_EQ(Heap::UsableSize(p), ClassInfo(k).size) << size;
    const uint32_t cached = h->cache(k).n();
    h->Free(p);
    ASSERT_EQ(h->cache(k).n(), cached + 1) << size << ": freed into its class's cache";
    ASSERT_EQ(h->Allocate(size), p) << size << ": and handed out again from it";
    h->Free(p);
  }
  h->CheckInvariants(true);
  heaps.Release(h);
}

// Five pages of `size`'s class with one free block each, the cache empty and refills of 8: one
// allocation (a slow path) later, returns how many blocks the cache holds. Checks that no new
// page was taken and the invariants on the way, and frees everything.
uint32_t CachedAfterARefillFromFivePartialPages(size_t size, size_t* partial_left) {
  ScopedPolicy policy([size](Policy* p) {
    p->cache_class_bytes = 16 * size;  // a cache of 16 blocks: a refill wants 8
    p->cache_heap_bytes = 0;           // and it does not grow
  });
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  const uint32_t k = SizeToClass(size);
  const uint32_t per_page = ClassInfo(k).capacity;
  EXPECT_EQ(h->cache(k).cap(), 16u);
  EXPECT_EQ(per_page % 8, 0u) << "refills of 8 use pages up exactly";
  std::vector<void*> blocks;
  for (uint32_t i = 0; i < 6 * per_page; ++i) {
    blocks.push_back(h->Allocate(size));
    EXPECT_NE(blocks.back(), nullptr);
  }
  EXPECT_EQ(h->cache(k).n(), 0u) << "six pages handed out whole, nothing cached";
  for (uint32_t i = 0; i < 5; ++i) h->Free(blocks[i * per_page]);  // one block of pages 1-5
  h->FlushCaches();
  EXPECT_EQ(h->partial(k).size(), 5u) << "five pages with one free block each";
  const uint64_t spans = heaps.source().allocated();
  const uint64_t refills = MF2_STATS ? h->stats().Get(HeapStats::k_cache_refills) : 0;
  void* p = h->Allocate(size);
  EXPECT_NE(p, nullptr);
  const uint32_t cached = h->cache(k).n();
  *partial_left = h->partial(k).size();
  // The pages a top-up moved past are detached, and another heap may adopt a detached page at
  // once; the block handed out comes from the page left active, which stays this heap's.
  EXPECT_EQ(PageOf(p), h->active_page(k)) << "the block handed out is of the active page";
  EXPECT_EQ(heaps.source().allocated(), spans) << "no new page for a refill";
  if (MF2_STATS) EXPECT_EQ(h->stats().Get(HeapStats::k_cache_refills), refills + 1);
  h->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  h->Free(p);
  h->FlushCaches();
  for (uint32_t i = 0; i < 6 * per_page; ++i) {
    if (i % per_page != 0 || i >= 5 * per_page) h->Free(blocks[i]);
  }
  h->CheckInvariants(true);
  heaps.Release(h);
  return cached;
}

// A refill takes half a cache even when the page it finds has fewer free blocks: for a class of
// few blocks per page (mid sizes, Heap::kTopUpMaxBlocks) it tops up from the next partial pages,
// never from a new one. Five pages with one free block each: one slow path takes all five, where
// one page per refill took a slow path for each.
TEST(CacheTest, ARefillOfAMidSizeClassTopsUpFromFurtherPartialPages) {
  ASSERT_LE(ClassInfo(SizeToClass(2048)).capacity, Heap::kTopUpMaxBlocks);
  size_t partial_left = 0;
  EXPECT_EQ(CachedAfterARefillFromFivePartialPages(2048, &partial_left), 4u)
      << "one refill took the free block of every partial page";
  EXPECT_EQ(partial_left, 0u);
}

// A class of many blocks per page refills from one page: its pages usually fill half a cache
// by themselves, and topping those up measured slower (xmalloc-test, bench/RESULTS.md).
TEST(CacheTest, ARefillOfASmallClassTakesOnePage) {
  ASSERT_GT(ClassInfo(SizeToClass(64)).capacity, Heap::kTopUpMaxBlocks);
  size_t partial_left = 0;
  EXPECT_EQ(CachedAfterARefillFromFivePartialPages(64, &partial_left), 0u);
  EXPECT_EQ(partial_left, 4u) << "the other four pages wait on the partial list";
}

// A refill reuses what other threads freed into the active page before it carves the page's
// never-carved tail. Carving first, an owner whose blocks a consumer frees (producer-consumer,
// bench/RESULTS.md) touched every byte of each page before it reused one of them. For a class of
// many blocks per page it takes up to a whole cache of them, not half: a pipeline's stage
// collects several caches' worth at a time, and all but half a cache went on the page's list,
// to be popped off it again at the next slow path. The rest goes on the page's list.
TEST(CacheTest, ARefillCollectsTheActivePagesRemoteFreesBeforeCarvingItsTail) {
  ScopedPolicy policy([](Policy* p) { p->remote_batch = 1; });  // remote frees land at once
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* consumer = heaps.Acquire();
  constexpr size_t kSmall = 64;
  const uint32_t k = SizeToClass(kSmall);
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) {
    blocks.push_back(owner->Allocate(kSmall));
    ASSERT_NE(blocks.back(), nullptr);
  }
  Page* page = owner->active_page(k);
  for (void* p : blocks) ASSERT_EQ(PageOf(p), page) << "one page of 1024 blocks";
  for (void* p : blocks) consumer->Free(p);  // 200 remote frees onto the page's remote stack
  ASSERT_EQ(page->remote().Peek().count(), 200u);
  const uint32_t carved = page->carved();
  ASSERT_LT(carved, page->capacity());
  const uint32_t cap = owner->cache(k).cap();
  ASSERT_GT(page->capacity(), Heap::kTopUpMaxBlocks);
  ASSERT_EQ(cap, Heap::kCacheSlots) << "64 KiB of 64-byte blocks: a full-depth cache";
  const uint32_t local_before = page->local_count();
  const uint64_t drain_hits =
      MF2_STATS ? owner->stats().Get(HeapStats::k_active_drain_hit) : 0;
  // Empty the cache, then one slow path.
  const uint32_t cached = owner->cache(k).n();
  blocks.clear();
  for (uint32_t i = 0; i < cached + 1; ++i) blocks.push_back(owner->Allocate(kSmall));
  EXPECT_EQ(page->carved(), carved) << "the refill carved new blocks before reusing freed ones";
  if (MF2_STATS) {
    EXPECT_EQ(owner->stats().Get(HeapStats::k_active_drain_hit), drain_hits + 1)
        << "a slow path served by collected blocks counts as an active-page drain";
  }
  EXPECT_EQ(page->remote().Peek().count(), 0u) << "the remote frees were collected";
  EXPECT_EQ(PageOf(blocks.back()), page);
  EXPECT_EQ(owner->cache(k).n(), cap - 1) << "a whole cache of them, one handed out";
  EXPECT_EQ(page->local_count(), local_before + 200 - cap) << "the rest on the page's list";
  owner->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  for (void* p : blocks) owner->Free(p);
  heaps.Release(consumer);
  heaps.Release(owner);
}

// A class's first refills carve little and double while the class keeps carving: a program
// that allocates one 1 KiB block must not make half a cache (30 KiB) of its page resident, and
// one that keeps allocating reaches half-cache refills after a few slow paths.
TEST(CacheTest, AClasssFirstRefillsCarveLittleThenDouble) {
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  constexpr size_t kSize = 1024;
  const uint32_t k = SizeToClass(kSize);
  ASSERT_EQ(ClassInfo(k).size, kSize);
  ASSERT_EQ(h->cache(k).cap(), Heap::kCacheSlots) << "64 KiB of 1 KiB blocks, at most kCacheSlots";
  std::vector<void*> blocks{h->Allocate(kSize)};
  ASSERT_NE(blocks.back(), nullptr);
  Page* page = h->active_page(k);
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(page->carved(), 4u) << "the first refill carves 4 KiB of the page, not half a cache";
  // Each further slow path carves what the previous one did, doubled, up to half the cache.
  std::vector<uint32_t> carves;
  uint32_t carved = page->carved();
  while (blocks.size() < 4 + 8 + 16 + Heap::kCacheSlots / 2) {
    blocks.push_back(h->Allocate(kSize));
    ASSERT_NE(blocks.back(), nullptr);
    ASSERT_EQ(h->active_page(k), page) << "one page of 64 blocks";
    if (page->carved() != carved) carves.push_back(page->carved() - carved);
    carved = page->carved();
  }
  EXPECT_EQ(carves, (std::vector<uint32_t>{8, 16, Heap::kCacheSlots / 2}));
  h->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  for (void* p : blocks) h->Free(p);
  heaps.Release(h);
}

// A cache that ran dry only because its refill's carving was cut short (the slow start) does not
// grow: counting those dry runs let the classes that ramp first take the heap's growth budget
// (bench/pair_loop's mid pattern took 30% more slow paths).
TEST(CacheTest, DryRunsOfTheCarvingSlowStartDoNotGrowTheCache) {
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  constexpr size_t kSize = 16 * 1024;
  const uint32_t k = SizeToClass(kSize);
  ASSERT_EQ(h->cache(k).cap(), 4u) << "64 KiB of 16 KiB blocks";
  std::vector<void*> blocks;
  // Slow paths 1 (grows to 8, carves 1 of 4 wanted), 2 (carves 2), then the cache, then 3
  // (carves 4: no longer cut short).
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(h->Allocate(kSize));
    ASSERT_NE(blocks.back(), nullptr);
  }
  EXPECT_EQ(h->cache(k).cap(), 8u) << "slow paths 2 and 3 found the cache dry because of the "
                                    "carving limit, not because it is too shallow";
  // The next dry run is a real one: the cache grows again.
  for (int i = 0; i < 4; ++i) blocks.push_back(h->Allocate(kSize));
  EXPECT_EQ(h->cache(k).cap(), 16u);
  h->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  for (void* p : blocks) h->Free(p);
  heaps.Release(h);
}

// Churns the 32 KiB class under `set`'s policy: its cache must stay at `cap` blocks and nothing
// may grow. Returns the initial capacity of all classes, for the caller's expectation.
size_t ExpectNoGrowth(void (*set)(Policy*), uint32_t cap) {
  ScopedPolicy policy(set);
  TestHeaps heaps;
  Heap* h = heaps.Acquire();
  const uint32_t k = SizeToClass(kMid);
  const size_t initial_bytes = CapBytes(*h);
  Churn(h, kMid, 16, 4);
  EXPECT_EQ(h->cache(k).cap(), cap);
  EXPECT_EQ(CapBytes(*h), initial_bytes);
  if (MF2_STATS) EXPECT_EQ(h->stats().Get(HeapStats::k_cache_grows), 0u);
  h->CheckInvariants(true);
  heaps.Release(h);
  return initial_bytes;
}

// MF2_CACHE_HEAP_KB=0 turns growth off (an eighth of a small heap's pages is less than one
// doubling of a 32 KiB class here), and MF2_CACHE_CLASS_KB=0 turns the caches off altogether:
// nothing grows from a capacity of 0.
TEST(CacheTest, NoGrowthWithoutBudgetAndNoCacheWhenOff) {
  EXPECT_GT(ExpectNoGrowth([](Policy* p) { p->cache_heap_bytes = 0; }, 2), 0u);
  EXPECT_EQ(ExpectNoGrowth([](Policy* p) { p->cache_class_bytes = 0; }, 0), 0u);
}

// A new heap writes its own fields, not its caches' slots: a slot page becomes resident when a
// class on it first caches blocks. When the slots were inline and the heap's constructor wrote
// them all, every heap made 48 KiB resident however few classes its thread used (bench/
// RESULTS.md, "What a thread costs in memory").
TEST(CacheTest, ANewHeapWritesNoCacheSlotsUntilItCaches) {
  TestHeaps heaps;
  Heap* h = HeapRegistry::Global().AcquireNewHeap(&heaps.source());
  ASSERT_NE(h, nullptr);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t mapped = kHeapMappingBytes;
  const size_t fields = (sizeof(Heap) + page - 1) / page;  // the last one holds slots too
  const long made = ResidentPages(h, mapped);
  ASSERT_GE(made, 0) << "the heap and its slots are mapped";
  EXPECT_LE(static_cast<size_t>(made), fields)
      << "the constructor wrote slots beyond the heap's own pages";
  EXPECT_LE(static_cast<size_t>(made) * page, size_t{16} << 10)
      << "a new heap makes at most 16 KiB resident";
  void* p = h->Allocate(64);  // the refill caches blocks of one class
  ASSERT_NE(p, nullptr);
  ASSERT_GT(h->cache(SizeToClass(64)).n(), 0u);
  EXPECT_LE(ResidentPages(h, mapped), made + 1) << "one class's slots lie on one page";
  h->Free(p);
  h->CheckInvariants(true);
  HeapRegistry::Global().ReleaseHeap(h);
}

// A heap released while HeapRegistry::kWarmIdleHeaps others are idle (a program whose threads
// came and went) returns the pages of its cache slots to the OS; before, every idle heap kept
// the slot pages its thread had used.
TEST(CacheTest, AHeapReleasedAmongManyIdleOnesReturnsItsSlotPages) {
  TestHeaps heaps;
  HeapRegistry& registry = HeapRegistry::Global();
  std::vector<Heap*> others;
  for (uint32_t i = 0; i < HeapRegistry::kWarmIdleHeaps; ++i) {
    others.push_back(registry.AcquireNewHeap(&heaps.source()));
    ASSERT_NE(others.back(), nullptr);
  }
  for (Heap* o : others) registry.ReleaseHeap(o);
  ASSERT_GE(registry.idle_count(), HeapRegistry::kWarmIdleHeaps);

  Heap* h = registry.AcquireNewHeap(&heaps.source());
  ASSERT_NE(h, nullptr);
  for (size_t size = 16; size <= 16384; size *= 2) {  // caches of 11 classes, all over the slots
    void* p = h->Allocate(size);
    ASSERT_NE(p, nullptr);
    h->Free(p);
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const char* slots = static_cast<const char*>(h->slot_storage());
  const char* first = reinterpret_cast<const char*>(
      (reinterpret_cast<uintptr_t>(slots) + page - 1) & ~(page - 1));
  const size_t bytes = static_cast<size_t>(slots + sizeof(Heap::SlotStorage) - first);
  ASSERT_GE(ResidentPages(first, bytes), 2) << "the caches' slots were written";
  registry.ReleaseHeap(h);
  EXPECT_EQ(ResidentPages(first, bytes), 0) << "an idle heap among many keeps no slot page";
  registry.CheckAll(true);
}

}  // namespace
}  // namespace mf2
