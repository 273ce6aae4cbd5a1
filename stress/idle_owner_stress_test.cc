// An owner that goes idle while its pages collect remote frees (invariants 7, 8 and the
// must-reuse gate). Each round:
//   1. the owner fills whole pages of two classes, keeps one block per page (so no page can go
//      back to the source) and hands the rest to the freers; then it parks;
//   2. the freers free them concurrently (remote frees from several heaps into the same pages);
//   3. with every thread parked, the main thread checks that each page that received frees is on
//      the owner's pending queue with in_remote_pending set, holding exactly the blocks freed into
//      it (nothing drained, nothing lost), plus the global quiescent check;
//   4. the owner resumes and allocates exactly as many blocks as were freed: every one of them is
//      a block that was freed (mustreuse_hit grows) and the page source hands out no new span.
#include <atomic>
#include <cstdint>
#include <map>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/testing/test_heaps.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

using stress::Barrier;
using stress::ThreadGroup;

constexpr int kFreers = 3;
constexpr size_t kSizes[] = {2048, 512, 96};
constexpr size_t kPagesPerClass = 5;
const uint64_t kRounds = stress::Scaled(400);

struct Round {
  std::vector<void*> given;                // blocks handed to the freers (read-only meanwhile)
  std::vector<size_t> given_size;          // their requested sizes
  std::vector<void*> kept;                 // one block per page, kept by the owner
  std::map<const Page*, uint32_t> freed_into;  // blocks freed into each page this round
};

// Owner: fills whole pages of each class (until its active page has no free block) and splits
// the blocks into one kept per page and the rest given away.
void FillPages(Heap* owner, Round* r) {
  r->given.clear();
  r->given_size.clear();
  r->kept.clear();
  r->freed_into.clear();
  for (size_t size : kSizes) {
    const uint32_t k = SizeToClass(size);
    std::vector<void*> blocks;
    for (size_t i = 0; i < kPagesPerClass * ClassInfo(k).capacity; ++i) {
      blocks.push_back(owner->Allocate(size));
    }
    // Also use up empty pages the heap retained from earlier rounds, so that afterwards the only
    // free blocks of class k are the ones the freers return.
    while (owner->active_page(k)->HasFree() || owner->partial(k).size() > 0) {
      blocks.push_back(owner->Allocate(size));
    }
    std::unordered_set<const Page*> seen;
    for (void* p : blocks) {
      ASSERT_NE(p, nullptr);
      if (seen.insert(PageOf(p)).second) {
        r->kept.push_back(p);
      } else {
        r->given.push_back(p);
        r->given_size.push_back(size);
        ++r->freed_into[PageOf(p)];
      }
    }
  }
}

TEST(IdleOwnerStressTest, ParkedOwnersPagesAreQueuedAndReusedWithoutNewPages) {
  stress::ExpectCachesOn();
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Round round;
  Heap* owner_heap = nullptr;
  std::vector<Heap*> freer_heaps(kFreers, nullptr);
  // Phases per round, all kFreers + 2 threads (owner, freers, main) meet at `phase`:
  //   A: owner filled pages            B: freers done        C: main checked the parked state
  //   D: owner reallocated             E: main checked reuse (the owner frees everything next)
  Barrier phase(kFreers + 2);
  ThreadGroup group;
  group.Start(kFreers + 1, [&](int id) {
    Heap* heap = HeapRegistry::Global().AcquireHeap(source);
    if (id == 0) {
      owner_heap = heap;
    } else {
      freer_heaps[static_cast<size_t>(id - 1)] = heap;
    }
    for (uint64_t r = 0; r < kRounds; ++r) {
      if (id == 0) FillPages(heap, &round);
      phase.Wait();  // A
      if (id != 0) {
        for (size_t i = static_cast<size_t>(id - 1); i < round.given.size(); i += kFreers) {
          heap->Free(round.given[i]);  // remote: the owner's pages
        }
        heap->FlushRemoteChains();  // what a freer holds back goes out before it parks
      }
      phase.Wait();  // B: the owner has been parked all along
      phase.Wait();  // C
      if (id == 0) {
        std::unordered_set<void*> freed(round.given.begin(), round.given.end());
        for (size_t i = 0; i < round.given.size(); ++i) {
          void* p = heap->Allocate(round.given_size[i]);
          EXPECT_EQ(freed.erase(p), 1u) << "the owner reuses exactly the freed blocks: " << p;
          round.given[i] = p;
        }
      }
      phase.Wait();  // D
      phase.Wait();  // E
      if (id == 0) {
        for (void* p : round.given) heap->Free(p);
        for (void* p : round.kept) heap->Free(p);
      }
    }
    phase.Wait();
    HeapRegistry::Global().ReleaseHeap(heap);
  });

  for (uint64_t r = 0; r < kRounds; ++r) {
    phase.Wait();  // A
    phase.Wait();  // B: every thread is parked
    HeapRegistry::Global().CheckAll(/*quiescent=*/true);
    // Invariants 7 and 8 (and 2: nothing drained, nothing lost) page by page.
    for (const auto& [page, n] : round.freed_into) {
      RemoteWord w = page->remote().Peek();
      EXPECT_TRUE(w.pending()) << "a page that received remote frees has its flag set";
      EXPECT_TRUE(owner_heap->PendingContains(page)) << "... and is on its owner's queue";
      EXPECT_EQ(w.count(), n) << "every remote free is on the page's stack";
#if MF2_DEBUG_BUILD
      EXPECT_EQ(page->debug_queued(), 1u) << "queued exactly once (invariant 5)";
#endif
    }
    const uint64_t spans = source->allocated();
    const uint64_t new_pages = owner_heap->stats().Get(HeapStats::k_new_pages);
    const uint64_t must_reuse = owner_heap->stats().Get(HeapStats::k_mustreuse_hit);
    const uint64_t drained = owner_heap->stats().Get(HeapStats::k_remote_blocks_drained);
    phase.Wait();  // C: the owner resumes
    phase.Wait();  // D
    EXPECT_EQ(source->allocated(), spans) << "no new span while reusable pages were queued";
    EXPECT_EQ(owner_heap->stats().Get(HeapStats::k_new_pages), new_pages);
    EXPECT_GT(owner_heap->stats().Get(HeapStats::k_mustreuse_hit), must_reuse)
        << "the must-reuse gate served the owner from its pending queue";
    EXPECT_EQ(owner_heap->stats().Get(HeapStats::k_remote_blocks_drained) - drained,
              round.given.size())
        << "every remotely freed block was drained exactly once";
    for (const auto& [page, n] : round.freed_into) {
      EXPECT_EQ(page->remote().Peek().count(), 0u) << "nothing left on a remote stack";
    }
    HeapRegistry::Global().CheckAll(/*quiescent=*/true);
    phase.Wait();  // E
  }
  phase.Wait();
  group.Join();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  uint64_t remote = 0;
  for (Heap* h : freer_heaps) remote += h->stats().Get(HeapStats::k_remote_frees);
  EXPECT_GT(remote, 0u);
  EXPECT_EQ(source->outstanding(), 0u) << "every span went back to the page source";
}

}  // namespace
}  // namespace mf2
