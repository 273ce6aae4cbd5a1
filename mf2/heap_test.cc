// Deterministic tests of the heap: the Route S slow-path order (the must-reuse gate), thread
// exit, adoption of an exited thread's page, and misuse reports. One OS thread plays several
// logical threads through explicit heaps.
#include "mf2/heap.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/scoped_reports.h"
#include "mf2/testing/test_heaps.h"

namespace mf2 {
namespace {

using testing::ScopedPolicy;
using testing::TestHeaps;

// These tests are about pages: the per-thread caches are off, so every allocation and free reaches
// a page (cache_test.cc covers the caches in front of them).
void UsePagePolicy(Policy* p) {
  p->cache_class_bytes = 0;
  p->remote_batch = 1;  // and every remote free reaches its page's remote stack at once
}

constexpr size_t kSize = 2048;
const uint32_t kClass = SizeToClass(kSize);
const uint32_t kCap = ClassInfo(kClass).capacity;

class HeapTest : public ::testing::Test {
 protected:
  // For every test; a test that needs more nests a ScopedPolicy of its own on top.
  ScopedPolicy page_policy_{UsePagePolicy};

  // Allocates until `heap`'s active page of kClass is full; returns its blocks.
  static std::vector<void*> FillActivePage(Heap* heap) {
    std::vector<void*> blocks;
    blocks.push_back(heap->Allocate(kSize));
    Page* page = heap->active_page(kClass);
    while (page->HasFree()) blocks.push_back(heap->Allocate(kSize));
    EXPECT_EQ(blocks.size(), page->carved());
    return blocks;
  }
  static uint64_t Stat(Heap* h, HeapStats::Counter c) { return h->stats().Get(c); }
};

TEST_F(HeapTest, LocalRoundTripAndEmptyAfterRelease) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  std::vector<void*> blocks;
  for (size_t s : {1, 16, 17, 100, 128, 129, 1000, 2048, 4000, 33000, 52 * 1024, 65536}) {
    for (int i = 0; i < 20; ++i) {
      void* p = a->Allocate(s);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % kMinAlign, 0u);
      ASSERT_GE(Heap::UsableSize(p), s);
      std::memset(p, 0xab, s);
      blocks.push_back(p);
    }
  }
  a->CheckInvariants(true);
  for (void* p : blocks) a->Free(p);
  a->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  heaps.Release(a);
  EXPECT_EQ(heaps.source().outstanding(), 0u) << "every page goes back once nothing is live";
}

TEST_F(HeapTest, GateReusesPendingPageInsteadOfNewPage) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* other = heaps.Acquire();
  std::vector<void*> blocks = FillActivePage(owner);
  const uint64_t spans = heaps.source().allocated();
  other->Free(blocks[3]);  // remote free: 0->1 edge, page queued on owner
  Page* page = PageOf(blocks[3]);
  EXPECT_TRUE(page->remote().Peek().pending());
  EXPECT_TRUE(owner->PendingContains(page));
  HeapRegistry::Global().CheckAll(true);

  void* p = owner->Allocate(kSize);
  EXPECT_EQ(p, blocks[3]) << "the remotely freed block is reused";
  EXPECT_EQ(heaps.source().allocated(), spans) << "no new page while a reusable one is queued";
  EXPECT_EQ(Stat(owner, HeapStats::k_mustreuse_hit), 1u);
  EXPECT_EQ(Stat(owner, HeapStats::k_new_pages), 1u);  // only the first page
  EXPECT_FALSE(page->remote().Peek().pending());
  HeapRegistry::Global().CheckAll(true);
  blocks[3] = p;
  for (void* b : blocks) owner->Free(b);
}

TEST_F(HeapTest, GateDrainsWholeQueueBeforeNewPageEvenPastBudget) {
  ScopedPolicy policy([](Policy* p) { p->pending_budget = 1; });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* other = heaps.Acquire();
  std::vector<void*> mine = FillActivePage(owner);
  std::vector<void*> active = FillActivePage(owner);  // `mine` is no longer the active page
  // Three pages of other classes, each with a remote free queued after ours (LIFO: popped first).
  std::vector<void*> others;
  for (size_t s : {64, 512, 8192}) {
    void* p = owner->Allocate(s);
    others.push_back(p);
  }
  other->Free(mine[0]);
  for (void* p : others) other->Free(p);
  const uint64_t spans = heaps.source().allocated();
  void* p = owner->Allocate(kSize);
  EXPECT_EQ(p, mine[0]);
  EXPECT_EQ(heaps.source().allocated(), spans);
  EXPECT_EQ(Stat(owner, HeapStats::k_mustreuse_hit), 1u);
  EXPECT_EQ(Stat(owner, HeapStats::k_pending_drained), 4u);
  HeapRegistry::Global().CheckAll(true);
  mine[0] = p;
  for (void* b : mine) owner->Free(b);
  for (void* b : active) owner->Free(b);
  for (void* b : others) owner->Free(owner->Allocate(b == others[0] ? 64 : 512));
  HeapRegistry::Global().CheckAll(true);
}

TEST_F(HeapTest, ActivePageRemoteFreesAreCollectedWhenBudgetIsSpent) {
  ScopedPolicy policy([](Policy* p) { p->pending_budget = 1; });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* other = heaps.Acquire();
  std::vector<void*> mine = FillActivePage(owner);
  void* small = owner->Allocate(64);
  other->Free(mine[5]);  // our active page: queued first
  other->Free(small);    // another page: queued last, popped first, uses the budget
  void* p = owner->Allocate(kSize);
  EXPECT_EQ(p, mine[5]);
  EXPECT_EQ(Stat(owner, HeapStats::k_active_drain_hit), 1u);
  // The active page is still queued with its flag set; draining it later finds nothing lost.
  Page* page = PageOf(p);
  EXPECT_TRUE(page->remote().Peek().pending());
  EXPECT_TRUE(owner->PendingContains(page));
  HeapRegistry::Global().CheckAll(true);
  mine[5] = p;
  for (void* b : mine) owner->Free(b);
  HeapRegistry::Global().CheckAll(true);
}

TEST_F(HeapTest, PartialListServesBeforeNewPage) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  std::vector<void*> first = FillActivePage(owner);
  std::vector<void*> second = FillActivePage(owner);  // first page is now full, not active
  owner->Free(first[2]);                             // local free: first page -> partial
  EXPECT_EQ(owner->partial(kClass).size(), 1u);
  const uint64_t spans = heaps.source().allocated();
  void* p = owner->Allocate(kSize);  // second page full: slow path
  EXPECT_EQ(p, first[2]);
  EXPECT_EQ(heaps.source().allocated(), spans);
  EXPECT_EQ(Stat(owner, HeapStats::k_partial_hit), 1u);
  owner->CheckInvariants(true);
  first[2] = p;
  for (void* b : first) owner->Free(b);
  for (void* b : second) owner->Free(b);
}

TEST_F(HeapTest, EmptyNonActivePageGoesBackToTheSource) {
  ScopedPolicy policy([](Policy* p) {
    p->heap_empty_bytes = 0;  // keep no empty page for reuse
  });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  std::vector<void*> first = FillActivePage(owner);
  std::vector<void*> second = FillActivePage(owner);
  const uint64_t freed = heaps.source().freed();
  for (void* b : first) owner->Free(b);
  EXPECT_EQ(heaps.source().freed(), freed + 1);
  EXPECT_EQ(Stat(owner, HeapStats::k_pages_released), 1u);
  for (void* b : second) owner->Free(b);  // active: kept
  EXPECT_EQ(heaps.source().freed(), freed + 1);
  owner->CheckInvariants(true);
}

TEST_F(HeapTest, EmptyPagesAreKeptForReuseWithinTheBoundAndReleasedAtExit) {
  ScopedPolicy policy([](Policy* p) {
    p->heap_empty_bytes = 2 * ClassInfo(kClass).slices * kSliceSize;  // two empty pages
  });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  std::vector<std::vector<void*>> pages;
  for (int i = 0; i < 4; ++i) pages.push_back(FillActivePage(owner));
  const uint64_t freed = heaps.source().freed();
  for (int i = 0; i < 3; ++i) {
    for (void* b : pages[i]) owner->Free(b);
  }
  EXPECT_EQ(heaps.source().freed(), freed + 1) << "two empties kept, the third released";
  EXPECT_EQ(owner->partial(kClass).size(), 2u);
  owner->CheckInvariants(true);
  const uint64_t spans = heaps.source().allocated();
  std::vector<void*> again;
  for (uint32_t i = 0; i < 2 * kCap; ++i) again.push_back(owner->Allocate(kSize));
  EXPECT_EQ(heaps.source().allocated(), spans) << "the kept empty pages are reused";
  for (void* b : again) owner->Free(b);
  for (void* b : pages[3]) owner->Free(b);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u) << "an idle heap keeps no empty pages";
}

// Regression (Larson, 4 threads, -c opt): while an exiting heap drained its queue, a page it
// released took its segment with it (unmapped), and the drain loop then read the page.
TEST_F(HeapTest, ExitWhileDrainingReleasesPagesWithoutTouchingThemAfterwards) {
  ScopedPolicy policy([](Policy* p) {
    p->heap_empty_bytes = 8 * kSliceSize;  // one 512 KiB span
    p->page_cache_bytes = 0;               // released spans go straight back to the OS
    p->retained_segments = 0;              // and empty segments are unmapped at once
  });
  // A private source: its segments hold only this test's spans, so unmapping is certain.
  alignas(OsPageSource) static unsigned char storage[sizeof(OsPageSource)];
  static OsPageSource* source = new (storage) OsPageSource();
  Heap* owner = HeapRegistry::Global().AcquireHeap(source);
  Heap* freer = HeapRegistry::Global().AcquireHeap(source);
  const size_t big = 64 * 1024;  // 8-slice spans: 7 per segment
  ASSERT_EQ(ClassInfo(SizeToClass(big)).slices, 8u);
  const uint32_t cap = ClassInfo(SizeToClass(big)).capacity;
  std::vector<void*> blocks;
  for (uint32_t i = 0; i < 9 * cap; ++i) blocks.push_back(owner->Allocate(big));
  // The first page becomes an empty retained spare; the others drain empty from the queue.
  for (uint32_t i = 0; i < cap; ++i) owner->Free(blocks[i]);
  for (size_t i = cap; i < blocks.size(); ++i) freer->Free(blocks[i]);
  HeapRegistry::Global().ReleaseHeap(owner);  // drains its queue, releasing and unmapping
  Stats st;
  source->AddTo(&st);
  EXPECT_EQ(st.bytes_in_use_spans, 0u);
  EXPECT_GE(st.segments_unmapped, 1u);
  HeapRegistry::Global().CheckAll(true);
  HeapRegistry::Global().ReleaseHeap(freer);
}

TEST_F(HeapTest, ExitedOwnersPagesAreDrainedByTheirFreersAndReleased) {
  TestHeaps heaps;
  Heap* dying = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks;
  for (int i = 0; i < 3 * static_cast<int>(kCap); ++i) blocks.push_back(dying->Allocate(kSize));
  heaps.Release(dying);  // thread exit with live blocks
  EXPECT_TRUE(dying->abandoned());
  HeapRegistry::Global().CheckAll(true);
  for (void* b : blocks) freer->Free(b);  // every free lands in a dead owner's page
  HeapRegistry::Global().CheckAll(true);
  EXPECT_GT(Stat(dying, HeapStats::k_dead_owner_reclaims), 0u);
  EXPECT_EQ(dying->page_count(), 0u) << "pages with nothing live went back to the source";
}

TEST_F(HeapTest, LiveThreadAdoptsAnExitedThreadsPartialPage) {
  TestHeaps heaps;
  Heap* dying = heaps.Acquire();
  Heap* worker = heaps.Acquire();
  void* keep = dying->Allocate(kSize);  // one live block keeps the page from being released
  heaps.Release(dying);
  const uint64_t spans = heaps.source().allocated();
  void* p = worker->Allocate(kSize);
  EXPECT_EQ(PageOf(p), PageOf(keep)) << "the exited thread's page is reused";
  EXPECT_EQ(heaps.source().allocated(), spans);
  EXPECT_EQ(Stat(worker, HeapStats::k_abandoned_adopt_hit), 1u);
  EXPECT_EQ(PageOf(p)->owner_relaxed(), worker);
  HeapRegistry::Global().CheckAll(true);
  worker->Free(keep);  // now a local free: the page is ours
  worker->Free(p);
  HeapRegistry::Global().CheckAll(true);
}

TEST_F(HeapTest, NewOwnerTakesOverAnIdleHeapWhole) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  void* p = a->Allocate(100);
  heaps.Release(a);
  Heap* b = heaps.Acquire();
  EXPECT_EQ(a, b) << "the idle heap is taken over, pages and all";
  EXPECT_FALSE(b->abandoned());
  b->Free(p);  // local again
  b->CheckInvariants(true);
}

// This binary never selects route_p or cda, so adoption is never armed: an owner frees into its
// full (detached) pages without taking their flag, as Route S always did.
TEST_F(HeapTest, UnarmedOwnerFreesIntoItsFullPagesWithoutTheFlag) {
  ASSERT_FALSE(AdoptionArmed()) << "a test in this binary selected route_p or cda";
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  std::vector<void*> blocks = FillActivePage(owner);
  Page* page = PageOf(blocks[0]);
  void* next = owner->Allocate(kSize);  // the full page leaves the active slot: detached
  ASSERT_EQ(page->where(), Page::Where::kDetached);
  EXPECT_FALSE(page->adoptable_detach);
  owner->Free(blocks[5]);
  EXPECT_EQ(page->where(), Page::Where::kPartial);
  EXPECT_EQ(page->remote().Peek().raw(), 0u) << "the flag was never taken";
  EXPECT_EQ(Stat(owner, HeapStats::k_detached_frees), 0u);
  EXPECT_EQ(Stat(owner, HeapStats::k_remote_frees), 0u);
  HeapRegistry::Global().CheckAll(true);
  blocks[5] = next;
  for (void* b : blocks) owner->Free(b);
}

TEST_F(HeapTest, OutOfMemoryReturnsNullWithErrno) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  heaps.source().set_fail(true);
  errno = 0;
  EXPECT_EQ(a->Allocate(kSize), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  heaps.source().set_fail(false);
  void* p = a->Allocate(kSize);
  ASSERT_NE(p, nullptr);
  a->Free(p);
}

TEST_F(HeapTest, AlignedAllocationsAreAlignedAndBadAlignmentIsRejected) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  std::vector<void*> blocks;
  for (size_t align = 1; align <= (size_t{1} << 20); align <<= 1) {
    for (size_t size : {size_t{1}, align - 1 + 1, align + 1, size_t{3000}}) {
      void* p = a->AllocateAligned(align, size);
      ASSERT_NE(p, nullptr) << align << " " << size;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align << " " << size;
      EXPECT_GE(Heap::UsableSize(p), size);
      blocks.push_back(p);
    }
  }
  errno = 0;
  EXPECT_EQ(a->AllocateAligned(24, 100), nullptr);
  EXPECT_EQ(errno, EINVAL);
  for (void* p : blocks) a->Free(p);
}

// Misuse in report mode: every bad free is reported with its pointer and kind, and nothing is
// absorbed into a free list (the invariants still hold afterwards).
class MisuseTest : public HeapTest {
 protected:
  testing::ScopedReports capture_;
  std::vector<ErrorReport>& reports_ = capture_.reports();
};

TEST_F(MisuseTest, LocalDoubleFree) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  void* p = a->Allocate(kSize);
  void* q = a->Allocate(kSize);
  a->Free(p);
  a->Free(p);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kDoubleFree);
  EXPECT_EQ(reports_[0].pointer, p);
  a->CheckInvariants(true);
  EXPECT_EQ(a->Allocate(kSize), p);
  EXPECT_NE(a->Allocate(kSize), p) << "the block was on the free list once, not twice";
  a->Free(q);
}

TEST_F(MisuseTest, RemoteDoubleFreeIsCaughtAtTheFreeOrAtTheDrain) {
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* other = heaps.Acquire();
  std::vector<void*> blocks = FillActivePage(owner);
  other->Free(blocks[1]);
  other->Free(blocks[1]);  // still live-marked until drained: caught when the owner drains
  void* p = owner->Allocate(kSize);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kDoubleFree);
  EXPECT_EQ(reports_[0].pointer, blocks[1]);
  EXPECT_EQ(p, blocks[1]);
  other->Free(p);  // a correct remote free now
  owner->Free(owner->Allocate(kSize));
  other->Free(blocks[2]);
  void* q = owner->Allocate(kSize);
  EXPECT_NE(q, nullptr);
  owner->Free(q);
  other->Free(q);  // drained already: caught at once by the live bit
  ASSERT_EQ(reports_.size(), 2u);
  EXPECT_EQ(reports_[1].kind, ErrorKind::kDoubleFree);
  HeapRegistry::Global().CheckAll(true);
}

// A use-after-free write into the only free block of a full page: the refill reports it and
// drops the page's free list, finds the page with nothing to give, and must look further (it
// used to hand out an uninitialised pointer; fuzz reproducer
// fuzz/corpus/heap_ops_fuzz/uaf_write_only_free_block_of_full_page).
TEST_F(MisuseTest, WrittenOnlyFreeBlockOfAFullPageIsReportedAndAnotherPageServes) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  std::vector<void*> blocks = FillActivePage(a);  // every block carved: the page is full
  void* victim = blocks[3];
  a->Free(victim);  // caching off: onto the page's free list, its only free block
  unsigned char* word1 = static_cast<unsigned char*>(victim) + 8;
  UnpoisonMemory(word1, 8);
  *word1 ^= 1;  // one bit of the canary: the program wrote into the freed block
  void* p = a->Allocate(kSize);
  ASSERT_NE(p, nullptr);
  EXPECT_NE(PageOf(p), PageOf(victim)) << "the page had no other free block";
  EXPECT_EQ(Heap::UsableSize(p), ClassInfo(kClass).size) << "a live block of the class";
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kCorruptFreeList);
  EXPECT_EQ(reports_[0].pointer, victim);
  a->CheckInvariants(true);
  HeapRegistry::Global().CheckAll(true);
  for (void* b : blocks) {
    if (b != victim) a->Free(b);
  }
  a->Free(p);
  EXPECT_EQ(reports_.size(), 1u);
}

TEST_F(MisuseTest, InteriorForeignAndHeaderPointers) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  char* p = static_cast<char*>(a->Allocate(kSize));
  int on_stack = 0;
  static int in_data = 0;
  a->Free(p + 16);
  a->Free(&on_stack);
  a->Free(&in_data);
  a->Free(SegmentOf(p));  // the segment header
  ASSERT_EQ(reports_.size(), 4u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kNotABlock);
  EXPECT_EQ(reports_[0].pointer, p + 16);
  EXPECT_EQ(reports_[1].kind, ErrorKind::kForeignPointer);
  EXPECT_EQ(reports_[2].kind, ErrorKind::kForeignPointer);
  EXPECT_EQ(reports_[3].kind, ErrorKind::kNotABlock);
  a->CheckInvariants(true);
  a->Free(p);
  EXPECT_EQ(reports_.size(), 4u);
}

// Where the block after the last one would start, in the unused tail of a span of 48-byte
// blocks (1365 blocks and 16 bytes), is no block: a free of it, by the owner or by another heap,
// is reported and loses nothing. Free tests it with the constants each heap's cache of the
// class keeps (Heap::Magazine); one block too many there took the tail for a block.
TEST_F(MisuseTest, APointerIntoASpansUnusedTailIsNotABlock) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* other = heaps.Acquire();
  constexpr size_t kTailSize = 48;
  char* p = static_cast<char*>(a->Allocate(kTailSize));
  ASSERT_NE(p, nullptr);
  const Page* page = PageOf(p);
  ASSERT_EQ(page->block_size(), kTailSize);
  const size_t end = size_t{page->capacity()} * kTailSize;
  ASSERT_EQ(page->span_slices, 1u);
  ASSERT_GE(kSliceSize - end, 16u) << "a tail with room for a block's first two words";
  char* tail = page->start() + end;
  a->Free(tail);
  other->Free(tail);
  ASSERT_EQ(reports_.size(), 2u);
  for (const ErrorReport& r : reports_) {
    EXPECT_EQ(r.kind, ErrorKind::kNotABlock);
    EXPECT_EQ(r.pointer, tail);
  }
  a->CheckInvariants(true);
  other->CheckInvariants(true);
  a->Free(p);
  EXPECT_EQ(reports_.size(), 2u);
}

TEST_F(MisuseTest, LargeAllocationsAreTrackedAndMisuseReported) {
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  char* p = static_cast<char*>(a->Allocate(1 << 20));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(Heap::UsableSize(p), size_t{1} << 20);
  std::memset(p, 1, 1 << 20);
  a->Free(p + 4096);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kNotABlock);
  EXPECT_EQ(reports_[0].block, p);
  a->Free(p);
  a->Free(p);
  ASSERT_EQ(reports_.size(), 2u);
  EXPECT_EQ(reports_[1].kind, ErrorKind::kDoubleFree);
  errno = 0;
  EXPECT_EQ(a->Allocate(size_t{1} << 62), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST_F(HeapTest, FreedLargeMappingsAreReusedWithinTheCacheBound) {
  ScopedPolicy policy([](Policy* p) { p->large_cache_bytes = 8 << 20; });
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  LargeReleaseCache();
  const size_t cached = LargeCachedBytes();
  EXPECT_EQ(cached, 0u);
  void* p = a->Allocate(1 << 20);
  a->Free(p);
  EXPECT_EQ(LargeCachedBytes(), cached + (1 << 20));
  void* q = a->Allocate((1 << 20) - 5000);  // fits the cached mapping
  EXPECT_EQ(q, p);
  EXPECT_EQ(LargeCachedBytes(), cached);
  void* big = a->Allocate(4 << 20);  // above a quarter of the bound: never cached
  a->Free(big);
  EXPECT_EQ(LargeCachedBytes(), cached);
  a->Free(q);
  EXPECT_LE(LargeCachedBytes(), size_t{8} << 20);
}

TEST(MisuseDeathTest, DefaultHandlerAbortsWithPointerAndReason) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  TestHeaps heaps;
  Heap* a = heaps.Acquire();
  void* p = a->Allocate(64);
  a->Free(p);
  EXPECT_DEATH(a->Free(p), "mf2: double free in free\\(0x[0-9a-f]+\\): ");
  int x;
  EXPECT_DEATH(a->Free(&x), "mf2: foreign pointer in free\\(0x[0-9a-f]+\\): not from MF2");
}

}  // namespace
}  // namespace mf2
