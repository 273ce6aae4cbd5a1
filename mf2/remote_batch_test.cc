// Remote frees held back and pushed in chains (Heap::HoldRemote, Heap::PushChain, Policy::
// remote_batch): when a held block reaches its page's remote stack, that nothing is lost on the
// way, and that a thread which stops freeing does not keep what it holds past its next
// Heap::kSlowPathsPerRemoteFlush slow paths, its flush or its exit. Explicit heaps play the
// threads, except in the exit test; caches are off so every free reaches the heap's page logic.
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/scoped_reports.h"
#include "mf2/testing/test_heaps.h"

namespace mf2 {
namespace {

using testing::ScopedPolicy;
using testing::ScopedReports;
using testing::TestHeaps;

constexpr size_t kSize = 256;  // 256 blocks in a 64 KiB span: room for batches
const uint32_t kClass = SizeToClass(kSize);

// Caches off, remote frees held back in chains of up to `batch` (a ScopedPolicy edit).
void UseBatches(Policy* p, uint32_t batch) {
  p->cache_class_bytes = 0;
  p->remote_batch = batch;
  p->reclaim_idle = false;  // nothing released behind the counts below
  p->background_reclaim = false;
}

class RemoteBatchTest : public ::testing::Test {
 protected:
  static uint32_t OnStack(const void* p) { return PageOf(p)->remote().Peek().count(); }
  static bool Flagged(const void* p) { return PageOf(p)->remote().Peek().pending(); }
  static uint32_t Held(const Heap* h) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < Heap::kRemoteSlots; ++i) n += h->remote_chain(i).count;
    return n;
  }
  static uint64_t Stat(Heap* h, HeapStats::Counter c) { return h->stats().Get(c); }

  // `n` blocks of one page of `owner` (its active page of kClass).
  static std::vector<void*> BlocksOfOnePage(Heap* owner, size_t n) {
    std::vector<void*> blocks;
    for (size_t i = 0; i < n; ++i) blocks.push_back(owner->Allocate(kSize));
    for (void* p : blocks) EXPECT_EQ(PageOf(p), PageOf(blocks[0])) << "one page";
    return blocks;
  }

  // Five blocks of one page of `owner`, freed by `freer` and held back in one chain (newest first:
  // blocks[4] -> blocks[3] -> ... -> blocks[0]).
  static std::vector<void*> HeldChainOfFive(Heap* owner, Heap* freer) {
    std::vector<void*> blocks = BlocksOfOnePage(owner, 5);
    for (void* p : blocks) freer->Free(p);
    EXPECT_EQ(Held(freer), 5u);
    EXPECT_EQ(LoadNext(static_cast<Block*>(blocks[3])), blocks[2]);
    return blocks;
  }

  // Pushes what `freer` holds; the reports that made, which the caller expects to be exactly one.
  static std::vector<ErrorReport> FlushReports(Heap* freer) {
    ScopedReports reports;
    freer->FlushRemoteChains();
    EXPECT_EQ(Held(freer), 0u);
    HeapRegistry::Global().CheckAll(false);
    return reports.Take();
  }

  // Pushes what `freer` holds, which must make exactly one report (`what`): a double free of `p`.
  // Returns the report's detail ("" when the reports were not that).
  static std::string FlushReportingOneDoubleFree(Heap* freer, const void* p, const char* what) {
    std::vector<ErrorReport> got = FlushReports(freer);
    EXPECT_EQ(got.size(), 1u) << what;
    if (got.size() != 1) return "";
    EXPECT_EQ(got[0].kind, ErrorKind::kDoubleFree);
    EXPECT_EQ(got[0].pointer, p);
    return got[0].detail;
  }

  // Ends a scenario that left `lost` counted as handed out (never reused): gives them back,
  // releases both heaps and expects every block back at the source, the page with them.
  static void EndScenario(TestHeaps* heaps, Heap* owner, Heap* freer,
                          const std::vector<void*>& lost) {
    for (void* p : lost) HandBack(owner, p);
    heaps->Release(freer);
    heaps->Release(owner);
    EXPECT_EQ(heaps->source().outstanding(), 0u) << "every block came back, the page with them";
  }

  // A block the scenario left counted as handed out (a word 1 without a canary) goes back to its
  // owner, so that the heaps can be released empty.
  static void HandBack(Heap* owner, void* p) {
    StoreCanary(p, 0);
    owner->Free(p);
  }
};

TEST_F(RemoteBatchTest, AFullBatchGoesOutWithOneCas) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 40);
  const uint64_t chains_before = Stat(freer, HeapStats::k_remote_chains);
  for (int i = 0; i < 31; ++i) freer->Free(blocks[i]);
  EXPECT_EQ(OnStack(blocks[0]), 0u) << "31 remote frees are held, none pushed yet";
  EXPECT_FALSE(Flagged(blocks[0])) << "the page is not queued on its owner yet";
  EXPECT_EQ(Held(freer), 31u);
  EXPECT_EQ(PageOf(blocks[0])->used(), 40u) << "held blocks stay counted in the page's used()";
  HeapRegistry::Global().CheckAll(false);

  freer->Free(blocks[31]);
  EXPECT_EQ(OnStack(blocks[0]), 32u) << "the 32nd free pushes the whole chain";
  EXPECT_TRUE(Flagged(blocks[0])) << "and that push takes the page's 0->1 edge";
  EXPECT_EQ(Held(freer), 0u);
  EXPECT_EQ(Stat(freer, HeapStats::k_remote_chains) - chains_before, 1u) << "with one CAS";

  for (size_t i = 32; i < blocks.size(); ++i) owner->Free(blocks[i]);
  HeapRegistry::Global().CheckAll(false);
  heaps.Release(freer);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u) << "every block came back, the page with them";
}

TEST_F(RemoteBatchTest, HeldFreesGoOutWithinSixteenSlowPaths) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 5);
  for (void* p : blocks) freer->Free(p);
  ASSERT_EQ(OnStack(blocks[0]), 0u);
  static_assert(Heap::kSlowPathsPerRemoteFlush == 16, "the test's name");
  // Every allocation of the freer runs its slow path (caches are off). The chain is kept through
  // the first 15, so that it can grow while the thread refills its caches...
  std::vector<void*> own;
  for (uint32_t i = 1; i < Heap::kSlowPathsPerRemoteFlush; ++i) {
    own.push_back(freer->Allocate(64));
    ASSERT_EQ(Held(freer), 5u) << "slow path " << i << " kept the held frees";
  }
  EXPECT_EQ(OnStack(blocks[0]), 0u);
  // ... and a thread that keeps working sends what it held at the 16th.
  own.push_back(freer->Allocate(64));
  EXPECT_EQ(OnStack(blocks[0]), 5u) << "the 16th slow path pushed the held frees";
  EXPECT_TRUE(Flagged(blocks[0]));
  EXPECT_EQ(Held(freer), 0u);
  freer->CheckInvariants(true);
  for (void* q : own) freer->Free(q);
  heaps.Release(freer);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u);
}

TEST_F(RemoteBatchTest, FlushCachesPushesHeldFrees) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 7);
  for (void* p : blocks) freer->Free(p);
  ASSERT_EQ(OnStack(blocks[0]), 0u);
  freer->FlushCaches();  // what mf2_thread_flush() and memory pressure run
  EXPECT_EQ(OnStack(blocks[0]), 7u);
  EXPECT_EQ(Held(freer), 0u);
  heaps.Release(freer);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u);
}

TEST_F(RemoteBatchTest, ReleasingTheHeapPushesHeldFrees) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 3);
  for (void* p : blocks) freer->Free(p);
  ASSERT_EQ(OnStack(blocks[0]), 0u);
  heaps.Release(freer);  // the heap of an exiting thread is abandoned through the same code
  EXPECT_EQ(OnStack(blocks[0]), 3u);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u);
}

// Blocks of more pages than there are chains: a page that needs a busy slot pushes the chain
// there first. Whichever way the pages hash, every free is either held or on its page's stack,
// exactly once, and a flush leaves none held.
TEST_F(RemoteBatchTest, PagesSharingASlotLoseNothing) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  // One block from each of 3 * kRemoteSlots + 1 pages of owner (explicit pages: fill each).
  std::vector<void*> one_per_page;
  std::vector<void*> rest;
  std::set<Page*> pages;
  while (pages.size() < 3 * Heap::kRemoteSlots + 1) {
    void* p = owner->Allocate(kSize);
    if (pages.insert(PageOf(p)).second) {
      one_per_page.push_back(p);
    } else {
      rest.push_back(p);
    }
  }
  for (size_t i = 0; i < one_per_page.size(); ++i) {
    freer->Free(one_per_page[i]);
    uint32_t on_stacks = 0;
    for (size_t j = 0; j <= i; ++j) on_stacks += OnStack(one_per_page[j]);
    ASSERT_EQ(on_stacks + Held(freer), i + 1) << "each free held or pushed, once";
    ASSERT_LE(Held(freer), Heap::kRemoteSlots) << "one page per chain";
  }
  EXPECT_GE(Stat(freer, HeapStats::k_remote_chains), 2u * Heap::kRemoteSlots + 1)
      << "at most kRemoteSlots pages are held at once";
  HeapRegistry::Global().CheckAll(false);
  freer->FlushRemoteChains();
  for (void* p : one_per_page) EXPECT_EQ(OnStack(p), 1u);
  EXPECT_EQ(Held(freer), 0u);
  for (void* p : rest) owner->Free(p);
  heaps.Release(freer);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u);
}

TEST_F(RemoteBatchTest, ABatchOfOnePushesEveryFreeAtOnce) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 1); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 4);
  for (uint32_t i = 0; i < 4; ++i) {
    freer->Free(blocks[i]);
    EXPECT_EQ(OnStack(blocks[0]), i + 1);
    EXPECT_EQ(Held(freer), 0u);
  }
  heaps.Release(freer);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u);
}

// A real thread with its own heap frees blocks of the main thread's page and exits: its exit
// hook pushes them, with no slow path after the frees.
TEST_F(RemoteBatchTest, ThreadExitPushesHeldFrees) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 6);
  std::thread t([&blocks] {
    void* mine = mf2::Allocate(kSize);  // takes a heap (a thread that only frees holds nothing)
    mf2::Free(mine);
    for (void* p : blocks) mf2::Free(p);
  });
  t.join();
  EXPECT_EQ(OnStack(blocks[0]), 6u) << "the exiting thread pushed what it held";
  EXPECT_TRUE(Flagged(blocks[0]));
  HeapRegistry::Global().CheckAll(false);
  heaps.Release(owner);
  EXPECT_EQ(heaps.source().outstanding(), 0u);
}

// A held chain goes out as it is when every block still has canary kOnRemote and every link
// leads to a block start (PushChain's read-only check); otherwise it is rebuilt from the blocks
// that still qualify. The two tests below break a held chain the way a concurrent double free
// would, by writing what the racing owner (or the program, into a block handed out again) writes,
// and check that the push reports it and sends the rest.

// The owner's free of a held block passed its canary check before our compare-exchange and
// stored its cache's canary after it: reported, left out, the other four pushed.
TEST_F(RemoteBatchTest, AHeldBlockTheOwnerFreedAgainIsReportedAndLeftOut) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = HeldChainOfFive(owner, freer);
  StoreCanary(blocks[2], Canary(blocks[2], kInCache));  // the racing owner's store
  const std::string detail =
      FlushReportingOneDoubleFree(freer, blocks[2], "the racing free is reported once");
  EXPECT_NE(detail.find("returned once"), std::string::npos) << detail;
  EXPECT_EQ(OnStack(blocks[0]), 4u) << "the other held blocks went out";
  // blocks[2] is the owner's again (as if its free had cached it).
  EndScenario(&heaps, owner, freer, {blocks[2]});
}

// A held block was freed again by its owner, handed out again and written to: its link no longer
// leads to a block start. Reported; the blocks before it go out, those after it are not followed.
TEST_F(RemoteBatchTest, AHeldChainWithABadLinkIsReportedAndCut) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = HeldChainOfFive(owner, freer);
  StoreNext(static_cast<Block*>(blocks[3]),
            reinterpret_cast<Block*>(static_cast<char*>(blocks[0]) + 8));  // the program's write
  FlushReportingOneDoubleFree(freer, blocks[3], "the bad link is reported once");
  EXPECT_EQ(OnStack(blocks[0]), 2u) << "blocks[4] and blocks[3] went out, nothing after the link";
  EndScenario(&heaps, owner, freer, {blocks[0], blocks[1], blocks[2]});
}

// The owner's racing free cached a held block, its malloc handed it out again, and the program
// freed it again from this thread while the first free was still held: the block is in the chain
// twice, its new link leading back into the chain. A concurrent double free of this shape made a
// debug build's CheckInvariants fail on the cycle (mf2:lifecycle_preload_test, race mode), and
// PushChain rebuilt the chain into a cycle. The invariants hold, the push reports it once, and
// each block goes out once.
TEST_F(RemoteBatchTest, AHeldBlockHandedOutAndFreedAgainByTheSameThreadGoesOutOnce) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = HeldChainOfFive(owner, freer);  // held: 4 3 2 1 0
  StoreCanary(blocks[2], 0);  // the owner cached it and handed it out again
  freer->Free(blocks[2]);     // held: 2 4 3 2 4 ...: a cycle, blocks 1 and 0 out of reach
  EXPECT_EQ(Held(freer), 6u);
  freer->CheckInvariants(false);
  FlushReportingOneDoubleFree(freer, blocks[2], "the block in the chain twice is reported once");
  EXPECT_EQ(OnStack(blocks[0]), 3u) << "blocks 2, 4 and 3 went out, each once";
  EndScenario(&heaps, owner, freer, {blocks[0], blocks[1]});  // out of reach, never reused
}


// Prefetch hints (block.h, word 2): a pushed chain's blocks name the block kHintDistance links
// further down, the last kHintDistance name none.
TEST_F(RemoteBatchTest, APushedChainNamesTheBlockFourLinksAhead) {
  if (!CarriesHint(kSize)) GTEST_SKIP() << "hardened builds write no hints (block.h)";
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<void*> blocks = BlocksOfOnePage(owner, 10);
  for (void* p : blocks) StoreHint(static_cast<Block*>(p), static_cast<Block*>(blocks[0]));
  for (void* p : blocks) freer->Free(p);
  freer->FlushRemoteChains();
  ASSERT_EQ(OnStack(blocks[0]), 10u);
  // The chain runs newest first: blocks[9] -> blocks[8] -> ... -> blocks[0].
  static_assert(kHintDistance == 4, "the expectations below");
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block* want = i >= 4 ? static_cast<Block*>(blocks[i - 4]) : nullptr;
    EXPECT_EQ(LoadHint(static_cast<Block*>(blocks[i])), want) << "block " << i;
  }
  HeapRegistry::Global().CheckAll(false);
  EndScenario(&heaps, owner, freer, {});
}

// A 16-byte block has no word 2 of its own: it is the next block's first word, which the program
// may be using. Pushing a chain of every other block of a page leaves the blocks between intact.
TEST_F(RemoteBatchTest, SixteenByteBlocksCarryNoHint) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  std::vector<char*> blocks;
  for (int i = 0; i < 20; ++i) blocks.push_back(static_cast<char*>(owner->Allocate(16)));
  for (int i = 1; i < 20; ++i) ASSERT_EQ(blocks[i], blocks[i - 1] + 16) << "carved in order";
  for (char* b : blocks) memset(b, 0x5a, 16);
  for (int i = 0; i < 20; i += 2) freer->Free(blocks[i]);
  freer->FlushRemoteChains();
  ASSERT_EQ(OnStack(blocks[0]), 10u);
  for (int i = 1; i < 20; i += 2) {
    for (int j = 0; j < 16; ++j) {
      ASSERT_EQ(blocks[i][j], 0x5a) << "live block " << i << ", byte " << j;
    }
  }
  for (int i = 1; i < 20; i += 2) owner->Free(blocks[i]);
  HeapRegistry::Global().CheckAll(false);
  EndScenario(&heaps, owner, freer, {});
}

// A hint is only prefetched, never followed: with every hint of a pushed chain overwritten (a
// use-after-free write would do that), the owner still collects the chain by its links, whole.
TEST_F(RemoteBatchTest, TheOwnerCollectsAChainWhateverItsHintsSay) {
  ScopedPolicy policy([](Policy* p) { UseBatches(p, 32); });
  TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  Heap* freer = heaps.Acquire();
  const uint32_t capacity = ClassInfo(kClass).capacity;
  std::vector<void*> all = BlocksOfOnePage(owner, capacity);  // the page is full
  std::set<void*> freed(all.begin(), all.begin() + 12);
  for (void* p : freed) freer->Free(p);
  freer->FlushRemoteChains();
  ASSERT_EQ(OnStack(all[0]), 12u);
  const Block* junk[] = {nullptr, reinterpret_cast<Block*>(uintptr_t{8}),
                         static_cast<Block*>(all[capacity - 1]),
                         reinterpret_cast<Block*>(~uintptr_t{0} - 63)};
  int i = 0;
  for (void* p : freed) StoreHint(static_cast<Block*>(p), junk[i++ % 4]);
  // The page is full, so the owner's next allocations come from its remote stack.
  std::set<void*> again;
  for (int n = 0; n < 12; ++n) again.insert(owner->Allocate(kSize));
  EXPECT_EQ(again, freed);
  owner->CheckInvariants(true);
  for (void* p : all) owner->Free(p);
  EndScenario(&heaps, owner, freer, {});
}

}  // namespace
}  // namespace mf2
