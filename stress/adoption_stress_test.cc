// Route P and cda under real concurrency: an owner's full pages are freed into by freer threads
// and adopted by allocating threads WHILE the owner itself keeps freeing into them (the detached
// page protocol, page.h) and allocating (its own drain competes with the adopters' pops).
// Gates are opened (or the route is cda) so adoption happens as often as the protocol allows.
//
// Checked: every block handed out carries a stamp that must be intact at its free and no block
// is handed out twice (shadow set; invariants 3, 4); every round ends with every thread parked and
// the quiescent HeapRegistry::CheckAll (ownership and page counts after adoption, flag <=> queued,
// no stranded remote block, adoption counts and ready bits, no page off the lists); at the end
// the allocator is empty. The run must have adopted pages and freed into detached pages at least
// once, or it did not test what it is for.
//
// A second test: an owner that stops allocating while consumers free everything it made. With
// idle reclamation the consumers release its pages as they come back whole: afterwards the
// owner holds no more than its active pages (the idle-owner part of the issue, as an invariant).
#include <atomic>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/policy.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

using stress::Barrier;
using stress::Rng;
using stress::ThreadGroup;

constexpr size_t kSizes[] = {2048, 512, 96, 5000};
constexpr int kFreers = 2;
constexpr int kAdopters = 2;
constexpr size_t kPagesPerClass = 3;
const uint64_t kRounds = stress::Scaled(200);

struct Shared {
  stress::CheckedBlocks blocks;
  std::vector<std::vector<void*>> given;  // per freer: the owner's blocks it frees this round
  std::vector<void*> owner_own;           // the owner's blocks the owner frees itself this round
};

void* NewStamped(Heap* heap, size_t size, uint32_t thread, uint64_t seq, Shared* s) {
  return s->blocks.New(heap, size, thread, seq);
}

void VerifyAndFree(Heap* heap, void* p, Shared* s) { s->blocks.Free(heap, p); }

struct Variant {
  Route route;
  bool reclaim;
};

class AdoptionStress : public ::testing::TestWithParam<Variant> {};

TEST_P(AdoptionStress, OwnerFreesAndAllocatesWhileItsPagesAreAdopted) {
  stress::ExpectCachesOn();
  testing::ScopedPolicy policy([](Policy* p) {
    p->route = GetParam().route;
    p->idle_threshold_ns = 0;
    p->reclaim_after_ns = 0;
    p->adopt_pressure = 0;
    p->adopt_min_remote = 1;
    p->rfr_window_ns = 0;
    p->reclaim_idle = GetParam().reclaim;
    // No spare empty pages: an adopter whose blocks all came back has no page of its own left,
    // so its next page comes from Route P (or the page source), not from its partial list.
    p->heap_empty_bytes = 0;
  });
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Shared shared;
  shared.given.resize(kFreers);
  std::vector<Heap*> heaps(1 + kFreers + kAdopters, nullptr);
  Barrier phase(2 + kFreers + kAdopters);  // the workers and main
  ThreadGroup group;
  group.Start(1 + kFreers + kAdopters, [&](int id) {
    Heap* heap = HeapRegistry::Global().AcquireHeap(source);
    heaps[static_cast<size_t>(id)] = heap;
    Rng rng(static_cast<uint64_t>(id) + 1);
    uint64_t seq = 0;
    std::vector<void*> mine;  // adopters' and owner's blocks allocated during the round
    for (uint64_t r = 0; r < kRounds; ++r) {
      if (id == 0) {  // owner: fill whole pages, split their blocks between freers and itself
        for (auto& g : shared.given) g.clear();
        shared.owner_own.clear();
        for (size_t size : kSizes) {
          const uint32_t k = SizeToClass(size);
          for (size_t i = 0; i < kPagesPerClass * ClassInfo(k).capacity; ++i) {
            void* p = NewStamped(heap, size, 0, seq++, &shared);
            // The owner frees some of its own blocks in the two smaller-capacity classes only:
            // such a free puts the page back on its partial list, which closes Route P's
            // owner-partial gate for that class; the other classes stay adoptable.
            if (size >= 2048 && rng.OneIn(4)) {
              shared.owner_own.push_back(p);
            } else {
              shared.given[rng.Below(kFreers)].push_back(p);
            }
          }
        }
      }
      phase.Wait();  // the pages are full (detached) and handed out
      const uint32_t tid = static_cast<uint32_t>(id);
      if (id == 0) {
        // Free our own blocks (into detached pages, some queued or adopted meanwhile) and
        // allocate now and then (our drain competes with the adopters' pops).
        for (void* p : shared.owner_own) {
          VerifyAndFree(heap, p, &shared);
          // Odd rounds only: in even rounds the owner is idle apart from its frees, so its
          // queued pages wait for the adopters (in odd rounds its own drain races them).
          if (r % 2 == 1 && rng.OneIn(8)) {
            mine.push_back(NewStamped(heap, kSizes[rng.Below(4)], tid, seq++, &shared));
          }
        }
      } else if (id <= kFreers) {
        for (void* p : shared.given[static_cast<size_t>(id - 1)]) VerifyAndFree(heap, p, &shared);
      } else {
        // Adopters: allocate in the owner's classes while its pages fill with remote frees.
        for (int i = 0; i < 600; ++i) {
          mine.push_back(NewStamped(heap, kSizes[rng.Below(4)], tid, seq++, &shared));
          // Odd rounds: keep at most 64 blocks (local frees, so the adopter's own partial
          // pages serve it). Even rounds: keep all, so every page it fills sends its slow path
          // past its own pages to Route P.
          if (r % 2 == 1 && mine.size() > 64) {
            size_t victim = rng.Below(mine.size());
            VerifyAndFree(heap, mine[victim], &shared);
            mine[victim] = mine.back();
            mine.pop_back();
          }
        }
      }
      phase.Wait();  // everyone parked: main checks
      phase.Wait();
      for (void* p : mine) VerifyAndFree(heap, p, &shared);
      mine.clear();
      phase.Wait();  // everyone parked again: main checks
      phase.Wait();
    }
    HeapRegistry::Global().ReleaseHeap(heap);
  });
  for (uint64_t r = 0; r < kRounds; ++r) {
    phase.Wait();
    phase.Wait();
    HeapRegistry::Global().CheckAll(/*quiescent=*/true);
    phase.Wait();
    phase.Wait();
    HeapRegistry::Global().CheckAll(/*quiescent=*/true);
    phase.Wait();
  }
  group.Join();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(shared.blocks.live(), 0u);
  uint64_t adopted = 0;
  for (Heap* h : heaps) adopted += h->stats().Get(HeapStats::k_adopt_allowed);
  const uint64_t detached = heaps[0]->stats().Get(HeapStats::k_detached_frees) +
                            heaps[0]->stats().Get(HeapStats::k_remote_frees);
  uint64_t reclaimed = 0;
  for (Heap* h : heaps) reclaimed += h->stats().Get(HeapStats::k_pages_reclaimed);
  if (GetParam().reclaim) {
    // Whole pages go to the freers' sweeps first, so adoption is rarer: either must happen.
    EXPECT_GT(adopted + reclaimed, 0u) << "neither adoption nor reclamation was exercised";
  } else {
    EXPECT_GT(adopted, 0u) << "no page was ever adopted: the test did not exercise adoption";
  }
  EXPECT_GT(detached, 0u) << "the owner never freed into a detached page";
  EXPECT_EQ(source->outstanding(), 0u) << "every span went back to the page source";
  std::printf("adoptions %llu, pages reclaimed %llu, owner frees into detached pages %llu\n",
              static_cast<unsigned long long>(adopted), static_cast<unsigned long long>(reclaimed),
              static_cast<unsigned long long>(detached));
}

INSTANTIATE_TEST_SUITE_P(Routes, AdoptionStress,
                         ::testing::Values(Variant{Route::kRouteP, false},
                                           Variant{Route::kRouteP, true},
                                           Variant{Route::kCda, true}),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                           return std::string(RouteName(info.param.route)) +
                                  (info.param.reclaim ? "_reclaim" : "");
                         });

TEST(IdleProducerStress, ConsumersReleaseAnIdleProducersPagesAsTheyComeBackWhole) {
  stress::ExpectCachesOn();
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_idle = true;
    p->reclaim_after_ns = 0;  // the producer is idle from its last slow path on
    p->reclaim_batch = 1;      // every page that comes back whole is swept at once
  });
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Shared shared;
  constexpr int kConsumers = 3;
  shared.given.resize(kConsumers);
  Heap* producer = nullptr;
  std::vector<Heap*> consumers(kConsumers, nullptr);
  Barrier phase(1 + kConsumers);
  const uint64_t rounds = stress::Scaled(40);
  uint64_t reclaimed = 0;
  stress::RunTogether(1 + kConsumers, [&](int id) {
    Heap* heap = HeapRegistry::Global().AcquireHeap(source);
    if (id == 0) {
      producer = heap;
    } else {
      consumers[static_cast<size_t>(id - 1)] = heap;
    }
    Rng rng(static_cast<uint64_t>(id) + 7);
    for (uint64_t r = 0; r < rounds; ++r) {
      if (id == 0) {
        for (auto& g : shared.given) g.clear();
        for (int i = 0; i < 3000; ++i) {
          const size_t size = kSizes[rng.Below(4)];
          void* p = NewStamped(heap, size, 0, r * 4096 + static_cast<uint64_t>(i), &shared);
          shared.given[rng.Below(kConsumers)].push_back(p);
        }
      }
      phase.Wait();  // the producer stops allocating; consumers free everything it made
      if (id != 0) {
        for (void* p : shared.given[static_cast<size_t>(id - 1)]) VerifyAndFree(heap, p, &shared);
        heap->FlushRemoteChains();  // a consumer done with its work pushes what it held back
      }
      phase.Wait();
      if (id == 0) {
        // Everything came back while the producer was parked (idle): every page of its that
        // came back whole was released by a consumer, whatever the interleaving of the last
        // free, the edge winner's queueing and other sweeps (Heap::ReclaimIdleOwner_mt). Only its
        // active pages (never taken from an owner) remain.
        size_t active = 0;
        for (size_t size : kSizes) active += producer->active_page(SizeToClass(size)) ? 1 : 0;
        EXPECT_LE(producer->page_count(), active)
            << "an idle producer's pages that came back whole stayed resident";
        HeapRegistry::Global().CheckAll(/*quiescent=*/true);
      }
      phase.Wait();
    }
    HeapRegistry::Global().ReleaseHeap(heap);
  });
  for (Heap* h : consumers) reclaimed += h->stats().Get(HeapStats::k_pages_reclaimed);
  EXPECT_GT(reclaimed, 0u);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(shared.blocks.live(), 0u);
  EXPECT_EQ(source->outstanding(), 0u);
}

}  // namespace
}  // namespace mf2
