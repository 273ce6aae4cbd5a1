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
#include "mf2/testing/scoped_policy.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"

namespace mf2 {
namespace {

const uint64_t kRounds = stress::Scaled(20000);
constexpr size_t kSizes[] = {16, 48, 256, 1024, 4096};

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
          const size_t i = (rng >> 8) % held.size();
          void* p = held[i];
          held[i] = held.back();
          held.pop_back();
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

}  // namespace
}  // namespace mf2
