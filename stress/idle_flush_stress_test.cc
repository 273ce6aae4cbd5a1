// The idle flush (mf2/heap.h, "The idle flush"): a parker does GoIdle for an owner between the
// owner's operations, never during one, while the owner runs its fast paths at full speed,
// pauses, and receives remote frees from another thread. Three threads:
//   owner   bursts of allocations and local frees (through the caches) of stamped blocks, a
//           share handed to the freer, then a pause of a few microseconds (a chance to park);
//   freer   frees what it is handed (remote frees into the owner's pages, queued on its pending
//           queue, which the parker's GoIdle collects);
//   parker  FlushIdleOwner_mt on the owner's heap, over and over (every other time also
//           returning its slot pages, as the flush of a long-idle owner does).
// A parker that acted inside an owner's operation would hand a cached block out twice or lose it
// (the shadow set and stamps of stress::CheckedBlocks catch both), or leave the heap's equations
// broken (HeapRegistry::CheckAll between rounds and at the end); under TSan, every field the two
// share is checked for a race. The test also shows the flush works: parks happen and empty
// the caches (counted), and the owner still finds every block it holds intact.
// The second test lets the background reclaimer itself flush threads that pause, at a 300 us
// threshold (MF2_IDLE_FLUSH_US), slot pages included, while they work, free locally and hand
// blocks to each other.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/fence.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page_source.h"
#include "mf2/reclaimer.h"
#include "mf2/thread_heap.h"
#include "mf2/testing/scoped_policy.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"

namespace mf2 {
namespace {

const uint64_t kRounds = stress::Scaled(20000);
constexpr size_t kSizes[] = {16, 48, 256, 1024, 4096};

// Takes a block out of `held` (not empty), chosen by `rng`'s upper bits: the last one fills its
// slot.
void* TakeHeld(std::vector<void*>* held, uint64_t rng) {
  const size_t i = (rng >> 8) % held->size();
  void* p = (*held)[i];
  (*held)[i] = held->back();
  held->pop_back();
  return p;
}

TEST(IdleFlushStressTest, AParkerActsOnlyBetweenTheOwnersOperations) {
  if (!AsymmetricFenceHeavy()) GTEST_SKIP() << "no membarrier on this kernel: no idle flush";
  stress::ExpectCachesOn();
  // The background reclaimer stays out: only this test's parker parks.
  testing::ScopedPolicy policy([](Policy* p) { p->background_reclaim = false; });
  stress::CheckedBlocks blocks;
  std::atomic<Heap*> owner_heap{nullptr};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> parks{0}, refusals{0};
  std::mutex handoff_mu;
  std::vector<void*> handoff;  // blocks for the freer, under handoff_mu

  std::thread owner([&] {
    Heap* heap = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
    // Release: the parker's acquire load sees a constructed heap.
    owner_heap.store(heap, std::memory_order_release);
    std::vector<void*> held;
    uint64_t seq = 0, rng = 12345;
    for (uint64_t round = 0; round < kRounds; ++round) {
      for (int op = 0; op < 64; ++op) {
        rng = stress::Mix(rng, round);
        if (held.size() < 200 && (held.empty() || rng % 3 != 0)) {
          held.push_back(blocks.New(heap, kSizes[rng % 5], 0, seq++));
        } else {
          void* p = TakeHeld(&held, rng);
          if (rng % 7 == 0) {
            std::lock_guard<std::mutex> l(handoff_mu);
            handoff.push_back(p);
          } else {
            blocks.Free(heap, p);  // local: into the cache
          }
        }
      }
      if (round % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    for (void* p : held) blocks.Free(heap, p);
    stop.store(true, std::memory_order_release);
  });

  std::thread freer([&] {
    Heap* heap = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
    std::vector<void*> mine;
    for (;;) {
      // Acquire: the owner's last hand-off (under the mutex) precedes its store of `stop`.
      const bool last = stop.load(std::memory_order_acquire);
      {
        std::lock_guard<std::mutex> l(handoff_mu);
        mine.swap(handoff);
      }
      for (void* p : mine) blocks.Free(heap, p);  // remote frees into the owner's pages
      mine.clear();
      heap->FlushRemoteChains();
      if (last) break;
      std::this_thread::yield();
    }
    HeapRegistry::Global().ReleaseHeap(heap);
  });

  std::thread parker([&] {
    Heap* self = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
    Heap* target = nullptr;
    while ((target = owner_heap.load(std::memory_order_acquire)) == nullptr) {
      std::this_thread::yield();
    }
    // Every other attempt the long-idle flush's scope: the owner's slot pages go back to the OS
    // too, and its next operations must find its caches empty on zero pages.
    for (uint64_t i = 0; !stop.load(std::memory_order_acquire); ++i) {
      if (self->FlushIdleOwner_mt(target, i % 2 == 0 ? Heap::FlushScope::kCaches
                                                     : Heap::FlushScope::kCachesAndSlots)) {
        parks.fetch_add(1, std::memory_order_relaxed);
      } else {
        refusals.fetch_add(1, std::memory_order_relaxed);
      }
    }
    HeapRegistry::Global().ReleaseHeap(self);
  });

  owner.join();
  freer.join();
  parker.join();
  EXPECT_EQ(blocks.live(), 0u);
  Heap* heap = owner_heap.load(std::memory_order_acquire);
  // The owner's heap is still claimed (its thread kept it): quiescent now, every equation holds.
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  HeapRegistry::Global().ReleaseHeap(heap);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  // The test proves nothing unless parks happened while the owner was running.
  EXPECT_GT(parks.load(), 0u) << "the parker never found the owner between operations";
  std::printf("parks %llu, refused %llu\n", static_cast<unsigned long long>(parks.load()),
              static_cast<unsigned long long>(refusals.load()));
}

// The background reclaimer's own flush of threads that pause (Heap::FlushLongIdleOwner_mt), at a
// threshold short enough that it comes at nearly every pause and sometimes in the middle of a
// worker's work (idleness is the slow-path clock: a run of fast paths counts as idle), so its
// slot pages go back to the OS while the worker is about to refill them. Three workers through
// their thread heaps: stamped blocks, local frees into their caches, hand-offs to the next worker
// (remote frees), and every eighth round a pause of 5 ms. No block handed out twice or changed
// while live (stress::CheckedBlocks), every equation at the end, TSan clean; and the flushes
// happened: a worker's heap counts cache flushes during its pauses, when only a parker acts.
TEST(IdleFlushStressTest, TheReclaimerFlushesThreadsThatPause) {
  if (!AsymmetricFenceHeavy()) GTEST_SKIP() << "no membarrier on this kernel: no idle flush";
  stress::ExpectCachesOn();
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = true;
    p->idle_flush_after_ns = 300'000;  // 300 us
    p->page_cache_decay_ns = 0;
  });
  constexpr int kWorkers = 3;
  const uint64_t rounds = stress::ScaledAtLeast(800, 80);
  stress::CheckedBlocks blocks;
  std::mutex mu;
  std::vector<void*> handoff[kWorkers];  // blocks for worker w to free, under mu
  std::atomic<uint64_t> pauses{0}, flushed_in_pause{0};
  std::atomic<int> finished{0};

  auto free_handed = [&](int w) {
    std::vector<void*> mine;
    {
      std::lock_guard<std::mutex> l(mu);
      mine.swap(handoff[w]);
    }
    for (void* p : mine) blocks.Free(nullptr, p);  // remote frees, mostly
  };
  auto worker = [&](int w) {
    std::vector<void*> held;
    uint64_t rng = 777 + static_cast<uint64_t>(w), seq = 0;
    for (uint64_t round = 0; round < rounds; ++round) {
      for (int op = 0; op < 64; ++op) {
        rng = stress::Mix(rng, round);
        if (held.size() < 150 && (held.empty() || rng % 3 != 0)) {
          held.push_back(blocks.New(nullptr, kSizes[rng % 5], static_cast<uint32_t>(w), seq++));
          continue;
        }
        void* p = TakeHeld(&held, rng);
        if (rng % 5 == 0) {
          std::lock_guard<std::mutex> l(mu);
          handoff[(w + 1) % kWorkers].push_back(p);
        } else {
          blocks.Free(nullptr, p);  // local: into the cache
        }
      }
      free_handed(w);
      if (round % 8 == 7) {
        // Only a parker changes the heap while we sleep: a cache flush counted meanwhile is one.
        const HeapStats& stats = ThreadHeap()->stats();
        const uint64_t flushes = stats.Get(HeapStats::k_cache_flushes);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        pauses.fetch_add(1, std::memory_order_relaxed);
        if (stats.Get(HeapStats::k_cache_flushes) != flushes) {
          flushed_in_pause.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
    for (void* p : held) blocks.Free(nullptr, p);
    // Release: our last hand-off (under mu) before the others' acquire of the count.
    finished.fetch_add(1, std::memory_order_release);
    while (finished.load(std::memory_order_acquire) < kWorkers) free_handed(w);
    free_handed(w);
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) threads.emplace_back(worker, w);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(blocks.live(), 0u);
  EXPECT_TRUE(reclaimer::Running());
  // Every sweep and flush done: the quiescent equations hold (CheckAll excludes parkers).
  for (int i = 0; i < 4000 && !reclaimer::WaitingForTesting(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  // The test proves nothing unless the reclaimer flushed workers in their pauses.
  EXPECT_GT(flushed_in_pause.load(), 0u) << "no pause of " << pauses.load() << " saw a flush";
  std::printf("pauses %llu, flushed in a pause %llu\n",
              static_cast<unsigned long long>(pauses.load()),
              static_cast<unsigned long long>(flushed_in_pause.load()));
}

}  // namespace
}  // namespace mf2
