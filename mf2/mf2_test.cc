// The public API with thread-local heaps: allocation across the size range, frees from other
// threads, thread exit with live blocks, statistics and the C face: every function of mf2/mf2.h
// (explicit heaps, options, the report) is exercised here, and from C in public_header_test.c.
#include "mf2/mf2.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/check.h"
#include "mf2/heap_registry.h"
#include "mf2/segment.h"
#include "mf2/stats.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/scoped_reports.h"
#include "mf2/thread_heap.h"

namespace mf2 {

// The policy's options by name (mf2/policy.h); weak as in mf2.cc, so these tests run once the
// policy provides them and are skipped before.
bool OptionGet(const char* name, long long* out) __attribute__((weak));
int OptionSet(const char* name, long long value) __attribute__((weak));

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

// Idle reclamation without the background reclaimer: the pages of an owner that stopped
// allocating come back whole through another thread's frees, and that thread releases them
// instead of leaving them queued. (With the reclaimer, it sweeps instead: reclaimer_test.cc.)
TEST(Api, WholePagesOfAnIdleOwnerAreReleasedByTheFreeingThread) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_idle = true;
    p->reclaim_after_ns = 0;  // every observation finds the owner idle: deterministic
    p->reclaim_batch = 1;      // sweep at every page that comes back whole
    p->background_reclaim = false;
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

// mf2_thread_idle: a thread about to wait gives back its caches, held remote frees, the frees
// others made into its pages and its empty pages, so none of it pins memory; the reclaimer
// cannot take those from it.
TEST(Api, ThreadIdleGivesBackWhatTheThreadHolds) {
  testing::ScopedPolicy policy([](Policy* p) { p->background_reclaim = false; });
  std::vector<void*> theirs;
  for (int i = 0; i < 2000; ++i) theirs.push_back(Allocate(32 + i % 2000));
  std::thread t([&] {
    // Mine: fill the caches and the empty pages kept for reuse.
    std::vector<void*> mine;
    for (int i = 0; i < 20000; ++i) mine.push_back(Allocate(16 + i % 4000));
    for (void* p : mine) Free(p);
    // Theirs: remote frees held back in chains.
    for (void* p : theirs) Free(p);
    Heap* h = ThreadHeap();
    size_t cached = 0;
    for (uint32_t k = 1; k < kNumClasses; ++k) cached += h->cache(k).n();
    uint32_t held = 0;
    for (uint32_t i = 0; i < Heap::kRemoteSlots; ++i) held += h->remote_chain(i).count;
    ASSERT_GT(cached, 0u);
    ASSERT_GT(h->page_count(), 0u);
    mf2_thread_idle();
    cached = 0;
    for (uint32_t k = 1; k < kNumClasses; ++k) cached += h->cache(k).n();
    EXPECT_EQ(cached, 0u) << "blocks left in the caches";
    held = 0;
    for (uint32_t i = 0; i < Heap::kRemoteSlots; ++i) held += h->remote_chain(i).count;
    EXPECT_EQ(held, 0u) << "remote frees still held back";
    EXPECT_EQ(h->page_count(), 0u) << "pages kept with nothing live in them";
    EXPECT_EQ(ThreadHeap(), h) << "the heap stays the thread's";
    Free(Allocate(100));  // and works on
  });
  t.join();
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
  mf2_free(nullptr);
  EXPECT_EQ(mf2_usable_size(nullptr), 0u);
  mf2_stats s;
  mf2_stats_get(&s);
  EXPECT_GT(s.new_pages + s.page_reuses, 0u);
  EXPECT_GT(s.slow_allocs, 0u);
}

TEST(Api, VersionOfTheHeaderIsTheLibrarys) {
  EXPECT_EQ(MF2_VERSION, MF2_VERSION_MAJOR * 10000 + MF2_VERSION_MINOR * 100 + MF2_VERSION_PATCH);
  EXPECT_EQ(MF2_VERSION, 400);  // 0.4.0
  EXPECT_EQ(mf2_version(), MF2_VERSION);
}

TEST(Api, CallocZeroesAndRejectsOverflow) {
  // Dirty blocks of the class first, so the zeroes are calloc's work, not fresh memory's.
  std::vector<void*> dirty;
  for (int i = 0; i < 64; ++i) {
    dirty.push_back(mf2_malloc(24 * 10));
    memset(dirty.back(), 0xab, 24 * 10);
  }
  for (void* p : dirty) mf2_free(p);
  for (int i = 0; i < 64; ++i) {
    auto* p = static_cast<unsigned char*>(mf2_calloc(24, 10));
    ASSERT_NE(p, nullptr);
    for (int b = 0; b < 240; ++b) ASSERT_EQ(p[b], 0) << "block " << i << " byte " << b;
    dirty[i] = p;
  }
  for (void* p : dirty) mf2_free(p);
  errno = 0;
  EXPECT_EQ(mf2_calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  void* z = mf2_calloc(0, 10);  // a unique minimum block, like malloc(0)
  EXPECT_NE(z, nullptr);
  mf2_free(z);
}

// A large calloc is a large allocation like any other: counted, zeroed even when its mapping
// is reused from the large cache (dirty), through the thread's heap and an explicit one.
TEST(Api, LargeCallocIsCountedAndZeroed) {
  constexpr size_t kLarge = size_t{1} << 20;
  mf2_heap_t* h = mf2_heap_new();
  ASSERT_NE(h, nullptr);
  for (int round = 0; round < 3; ++round) {
    void* dirty = mf2_malloc(kLarge);  // from round 1 on, the mapping calloc freed last
    ASSERT_NE(dirty, nullptr);
    memset(dirty, 0xab, kLarge);
    mf2_free(dirty);
    const uint64_t before = mf2::GetStats().large_allocs;
    auto* p = static_cast<unsigned char*>(round == 2 ? mf2_heap_calloc(h, kLarge / 8, 8)
                                                     : mf2_calloc(kLarge / 8, 8));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(mf2::GetStats().large_allocs, before + 1) << "round " << round;
    for (size_t b = 0; b < kLarge; b += 4093) ASSERT_EQ(p[b], 0) << "byte " << b;
    ASSERT_EQ(p[kLarge - 1], 0);
    mf2_free(p);
  }
  mf2_heap_delete(h);
}

TEST(Api, ReallocKeepsContentsAndFollowsC) {
  auto* p = static_cast<unsigned char*>(mf2_realloc(nullptr, 100));  // NULL: allocates
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 100; ++i) p[i] = static_cast<unsigned char>(i);
  for (size_t size : {size_t{5000}, size_t{200000}, size_t{300}, size_t{50}}) {
    p = static_cast<unsigned char*>(mf2_realloc(p, size));
    ASSERT_NE(p, nullptr) << size;
    ASSERT_GE(mf2_usable_size(p), size);
    for (size_t i = 0; i < 50; ++i) ASSERT_EQ(p[i], i) << "size " << size;
  }
  errno = 0;
  EXPECT_EQ(mf2_realloc(p, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  for (size_t i = 0; i < 50; ++i) ASSERT_EQ(p[i], i) << "a failed realloc leaves p intact";
  EXPECT_EQ(mf2_realloc(p, 0), nullptr);  // frees p
}

TEST(Api, AlignedAllocAlignsOrFailsWithEinval) {
  for (size_t align = 1; align <= (size_t{1} << 20); align *= 2) {
    for (size_t size : {size_t{1}, size_t{100}, size_t{70000}}) {
      void* p = mf2_aligned_alloc(align, size);
      ASSERT_NE(p, nullptr) << align << " " << size;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align << " " << size;
      EXPECT_GE(mf2_usable_size(p), size);
      memset(p, 1, size);
      mf2_free(p);
    }
  }
  for (size_t bad : {size_t{0}, size_t{3}, size_t{48}}) {
    errno = 0;
    EXPECT_EQ(mf2_aligned_alloc(bad, 64), nullptr) << bad;
    EXPECT_EQ(errno, EINVAL) << bad;
  }
}

class ExplicitHeapTest : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(reports_.empty()) << "unexpected misuse report";
    HeapRegistry::Global().CheckAll(true);
  }
  // The heap that owns the page of block `p`.
  static Heap* OwnerOf(const void* p) { return PageOf(p)->owner_relaxed(); }

  testing::ScopedReports capture_;  // misuse reports are collected, not fatal
  std::vector<ErrorReport>& reports_ = capture_.reports();
};

TEST_F(ExplicitHeapTest, BlocksComeFromTheHeapsOwnPages) {
  mf2_heap_t* h = mf2_heap_new();
  ASSERT_NE(h, nullptr);
  void* mine = mf2_heap_malloc(h, 200);
  void* thread_block = mf2_malloc(200);
  ASSERT_NE(mine, nullptr);
  EXPECT_NE(OwnerOf(mine), OwnerOf(thread_block));
  EXPECT_NE(OwnerOf(mine), ThreadHeap());
  for (int i = 0; i < 1000; ++i) {  // many pages' worth, every one the heap's
    void* p = mf2_heap_malloc(h, 16 + i % 2000);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(OwnerOf(p), OwnerOf(mine));
    mf2_heap_free(h, p);
  }
  EXPECT_GE(mf2_usable_size(mine), 200u);
  mf2_free(thread_block);
  mf2_free(mine);  // mf2_free works on a heap's blocks too
  mf2_heap_delete(h);
}

TEST_F(ExplicitHeapTest, CallocReallocAndAlignedAllocFromAHeap) {
  mf2_heap_t* h = mf2_heap_new();
  ASSERT_NE(h, nullptr);
  auto* z = static_cast<unsigned char*>(mf2_heap_calloc(h, 100, 7));
  ASSERT_NE(z, nullptr);
  for (int i = 0; i < 700; ++i) ASSERT_EQ(z[i], 0);
  errno = 0;
  EXPECT_EQ(mf2_heap_calloc(h, SIZE_MAX / 4, 8), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // A thread-heap block moved into the heap by realloc, contents kept.
  auto* p = static_cast<unsigned char*>(mf2_malloc(64));
  for (int i = 0; i < 64; ++i) p[i] = static_cast<unsigned char>(i);
  p = static_cast<unsigned char*>(mf2_heap_realloc(h, p, 5000));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(OwnerOf(p), OwnerOf(z));
  for (int i = 0; i < 64; ++i) ASSERT_EQ(p[i], i);
  void* large = mf2_heap_realloc(h, p, 1 << 20);  // above the classes: a large block
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(static_cast<unsigned char*>(large)[63], 63);
  EXPECT_EQ(mf2_heap_realloc(h, large, 0), nullptr);
  void* fresh = mf2_heap_realloc(h, nullptr, 10);
  EXPECT_EQ(OwnerOf(fresh), OwnerOf(z));
  errno = 0;
  EXPECT_EQ(mf2_heap_realloc(h, fresh, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  mf2_heap_free(h, fresh);
  void* a = mf2_heap_aligned_alloc(h, 4096, 10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 4096, 0u);
  errno = 0;
  EXPECT_EQ(mf2_heap_aligned_alloc(h, 24, 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(mf2_heap_malloc(h, SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  mf2_heap_free(h, a);
  mf2_heap_free(h, z);
  mf2_heap_free(h, nullptr);
  mf2_heap_delete(h);
  mf2_heap_delete(nullptr);
}

// mf2_heap_delete abandons: the blocks stay valid and another thread frees them later; the heap
// itself is recycled by the next mf2_heap_new or thread.
TEST_F(ExplicitHeapTest, DeletedHeapsBlocksStayValidAndAreFreedFromAnyThread) {
  mf2_heap_t* h = mf2_heap_new();
  ASSERT_NE(h, nullptr);
  std::vector<uint64_t*> blocks;
  for (uint64_t i = 0; i < 3000; ++i) {
    auto* b = static_cast<uint64_t*>(mf2_heap_malloc(h, 8 * (1 + i % 100)));
    ASSERT_NE(b, nullptr);
    b[0] = i;
    blocks.push_back(b);
  }
  const uint32_t heaps = HeapRegistry::Global().heap_count();
  const Stats before = GetStats();
  mf2_heap_delete(h);
  EXPECT_EQ(GetStats().heaps_abandoned, before.heaps_abandoned + 1);
  std::thread([&] {
    for (uint64_t i = 0; i < blocks.size(); ++i) {
      ASSERT_EQ(blocks[i][0], i) << "a deleted heap's block changed";
      mf2_free(blocks[i]);
    }
  }).join();
  const Stats after = GetStats();
  EXPECT_GT(after.pages_released, before.pages_released) << "the pages went back to MF2";
  mf2_heap_t* again = mf2_heap_new();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(HeapRegistry::Global().heap_count(), heaps) << "an idle heap is taken over";
  mf2_heap_delete(again);
}

// A heap handed from its creator to another thread (join is the synchronisation).
TEST_F(ExplicitHeapTest, AHeapCanBeHandedToAnotherThread) {
  mf2_heap_t* h = nullptr;
  void* first = nullptr;
  std::thread([&] {
    h = mf2_heap_new();
    first = mf2_heap_malloc(h, 100);
  }).join();
  ASSERT_NE(h, nullptr);
  std::thread([&] {
    void* second = mf2_heap_malloc(h, 100);
    EXPECT_EQ(OwnerOf(second), OwnerOf(first));
    mf2_heap_free(h, first);
    mf2_heap_free(h, second);
    mf2_heap_delete(h);
  }).join();
}

TEST_F(ExplicitHeapTest, BadHeapsAreReportedNamingTheCall) {
  mf2_heap_t* h = mf2_heap_new();
  ASSERT_NE(h, nullptr);
  mf2_heap_delete(h);
  ASSERT_TRUE(reports_.empty());
  errno = 0;
  EXPECT_EQ(mf2_heap_malloc(h, 10), nullptr);
  EXPECT_EQ(errno, EINVAL);
  mf2_heap_delete(h);  // twice
  int on_stack = 0;
  errno = 0;
  EXPECT_EQ(mf2_heap_calloc(reinterpret_cast<mf2_heap_t*>(&on_stack), 1, 1), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mf2_heap_aligned_alloc(nullptr, 16, 1), nullptr);
  void* block = mf2_malloc(32);  // a live block, but not a heap
  EXPECT_EQ(mf2_heap_realloc(static_cast<mf2_heap_t*>(block), nullptr, 8), nullptr);
  void* victim = mf2_malloc(40);
  mf2_heap_free(nullptr, victim);  // reported, and the block is still freed: nothing lost
  ASSERT_EQ(reports_.size(), 6u);
  const char* calls[] = {"mf2_heap_malloc", "mf2_heap_delete", "mf2_heap_calloc",
                         "mf2_heap_aligned_alloc", "mf2_heap_realloc", "mf2_heap_free"};
  const void* pointers[] = {h, h, &on_stack, nullptr, block, nullptr};
  for (size_t i = 0; i < reports_.size(); ++i) {
    EXPECT_STREQ(reports_[i].call, calls[i]);
    EXPECT_EQ(reports_[i].pointer, pointers[i]) << calls[i];
    EXPECT_NE(strstr(reports_[i].detail, "not a live heap"), nullptr) << reports_[i].detail;
  }
  EXPECT_EQ(reports_[2].kind, ErrorKind::kForeignPointer);
  EXPECT_EQ(reports_[4].kind, ErrorKind::kNotABlock);
  reports_.clear();
  mf2_free(block);
  // mf2_heap_realloc names itself when the block is bad.
  mf2_heap_t* good = mf2_heap_new();
  errno = 0;
  EXPECT_EQ(mf2_heap_realloc(good, &on_stack, 100), nullptr);
  EXPECT_EQ(errno, EINVAL);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_STREQ(reports_[0].call, "mf2_heap_realloc");
  EXPECT_EQ(reports_[0].pointer, &on_stack);
  reports_.clear();
  mf2_heap_delete(good);
}

TEST(Api, OptionsByName) {
  long long v = 0;
  errno = 0;
  EXPECT_EQ(mf2_option_get(nullptr, &v), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(mf2_option_get("pending_budget", nullptr), -1);
  EXPECT_EQ(mf2_option_set(nullptr, 1), -1);
  ASSERT_EQ(mf2_option_get("pending_budget", &v), 0);
  EXPECT_EQ(v, static_cast<long long>(GetPolicy().pending_budget));
  const long long saved = v;
  ASSERT_EQ(mf2_option_set("pending_budget", saved + 5), 0);
  ASSERT_EQ(mf2_option_get("pending_budget", &v), 0);
  EXPECT_EQ(v, saved + 5);
  EXPECT_EQ(GetPolicy().pending_budget, static_cast<uint32_t>(saved + 5));
  errno = 0;
  EXPECT_EQ(mf2_option_get("no_such_option", &v), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(mf2_option_set("no_such_option", 1), -1);
  EXPECT_EQ(errno, EINVAL);
  ASSERT_EQ(mf2_option_set("pending_budget", saved), 0);
}

TEST(Stats, ByteFiguresAreConsistent) {
  std::vector<void*> blocks;
  const Stats before = GetStats();
  for (int i = 0; i < 512; ++i) blocks.push_back(Allocate(8192));
  void* large = Allocate(3 << 20);
  const Stats s = GetStats();
  EXPECT_GE(s.bytes_in_use_spans, 512u * 8192) << "the spans hold at least the live blocks";
  EXPECT_EQ(s.large_count, before.large_count + 1);
  EXPECT_EQ(s.bytes_in_use, s.bytes_in_use_spans + s.bytes_large_live);
  EXPECT_EQ(s.bytes_committed, s.bytes_in_use + s.bytes_cached_spans + s.bytes_large_cached);
  EXPECT_EQ(s.bytes_reserved, (s.segments_mapped - s.segments_unmapped) * kSegmentSize +
                                  s.bytes_large_live + s.bytes_large_cached);
  EXPECT_LE(s.bytes_committed, s.bytes_reserved);
  mf2_stats c;
  mf2_stats_get(&c);
  EXPECT_EQ(c.large_count, s.large_count);
  EXPECT_EQ(c.segments_mapped, s.segments_mapped);
  for (void* p : blocks) Free(p);
  Free(large);
  if (!kFootprintFed) {
    GTEST_SKIP() << "the page source and large allocator do not feed the footprint gauge yet";
  }
  EXPECT_GE(s.bytes_large_live, size_t{3} << 20);
  EXPECT_GE(s.bytes_in_use_peak, s.bytes_in_use);
  const Stats after = GetStats();
  EXPECT_EQ(after.bytes_large_live, before.bytes_large_live);
  EXPECT_GE(after.bytes_in_use_peak, s.bytes_in_use) << "the peak outlives the blocks";
}

// Every line of the report, parsed back: the header names this process, every counter appears
// once with its value in one column, and the key=value line carries the byte figures.
TEST(Stats, ReportNamesTheProcessAndEveryCounterInColumns) {
  void* keep = Allocate(100);
  const int fd = memfd_create("mf2_report", 0);
  ASSERT_GE(fd, 0);
  mf2_stats_print(fd);
  const Stats s = GetStats();
  char buf[16384];
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  close(fd);
  ASSERT_GT(n, 0);
  buf[n] = '\0';
  std::istringstream in(buf);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_GT(lines.size(), 10u);
  for (const std::string& l : lines) EXPECT_EQ(l.rfind("mf2_stats: ", 0), 0u) << l;
  char comm[64] = {};
  FILE* f = fopen("/proc/self/comm", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_NE(fgets(comm, sizeof(comm), f), nullptr);
  fclose(f);
  comm[strcspn(comm, "\n")] = '\0';
  const std::string head = "mf2_stats: MF2 0.4.0, pid " + std::to_string(getpid()) + " (" +
                           comm + "), route ";
  EXPECT_EQ(lines[0].rfind(head, 0), 0u) << lines[0];
  for (const char* label : {"in use", "committed", "reserved", "resident"}) {
    const std::string start = std::string("mf2_stats:   ") + label;
    bool found = false;
    for (const std::string& l : lines) found |= l.rfind(start, 0) == 0;
    EXPECT_TRUE(found) << label;
  }
  // Counter lines: "mf2_stats:   name   value  description", values ending in one column.
  std::map<std::string, std::pair<uint64_t, size_t>> counters;  // name -> value, column
  for (const std::string& l : lines) {
    std::istringstream words(l.substr(strlen("mf2_stats:")));
    std::string name, value;
    words >> name >> value;
    if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) continue;
    const size_t end = l.find(value, l.find(name) + name.size()) + value.size();
    EXPECT_TRUE(counters.emplace(name, std::make_pair(std::stoull(value), end)).second) << name;
  }
  const size_t column = counters.begin()->second.second;
  auto expect = [&](const char* name, uint64_t value) {
    auto it = counters.find(name);
    ASSERT_NE(it, counters.end()) << name;
    EXPECT_EQ(it->second.first, value) << name;
    EXPECT_EQ(it->second.second, column) << name << " is out of its column";
  };
#define MF2_EXPECT_FIELD(name, desc) expect(#name, s.name);
  MF2_COUNTERS(MF2_EXPECT_FIELD)
  MF2_PAGE_SOURCE_FIGURES(MF2_EXPECT_FIELD)
#undef MF2_EXPECT_FIELD
  const std::string& kv = lines.back();
  EXPECT_EQ(kv.rfind("mf2_stats: route=", 0), 0u) << kv;
  EXPECT_NE(kv.find(" reuse_rate="), std::string::npos);
  // The counters a benchmark divides by its operations (bench/run_h2h.py's MF2 stats table).
  for (const auto& [name, value] : {std::make_pair("slow_allocs", s.slow_allocs),
                                    std::make_pair("cache_refills", s.cache_refills),
                                    std::make_pair("cache_flushes", s.cache_flushes)}) {
    EXPECT_NE(kv.find(std::string(" ") + name + "=" + std::to_string(value) + " "),
              std::string::npos)
        << name << " in " << kv;
  }
  EXPECT_NE(kv.find(" bytes_committed=" + std::to_string(s.bytes_committed) + " "),
            std::string::npos)
      << kv;
  EXPECT_NE(kv.find(" pid=" + std::to_string(getpid())), std::string::npos) << kv;
  Free(keep);
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
