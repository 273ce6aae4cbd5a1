// Thread churn (Larson's benchmark shape): each lane keeps an array of live objects; a lane's
// thread replaces random objects for a while and exits with the array still full, and the next
// generation's thread (on another lane, so the objects change threads) frees them. The heaps of
// exited threads therefore keep receiving remote frees, are taken over whole by successors, or
// have their pages adopted.
//
// Three lifecycles: real std::threads on the thread-local API (heaps abandoned by the pthread key
// destructor); the same with an explicit mf2::ReleaseThreadHeap() halfway through each thread;
// and explicit heaps acquired and released per generation (ending with an empty page source).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/testing/test_heaps.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

using stress::Barrier;
using stress::Rng;
using stress::ThreadGroup;

constexpr int kLanes = 4;
constexpr size_t kObjectsPerLane = 512;
const uint64_t kGenerations = stress::ScaledAtLeast(48, 8);
constexpr uint64_t kOpsPerGeneration = 3000;

enum class Lifecycle { kThreadLocal, kThreadLocalWithRelease, kExplicitHeaps };

class Churn {
 public:
  Churn(Lifecycle lifecycle, testing::CountingPageSource* source)
      : lifecycle_(lifecycle), source_(source), lanes_(kLanes) {
    for (auto& lane : lanes_) lane.assign(kObjectsPerLane, nullptr);
  }

  // One generation: a new thread per lane, all released together. With `check`, the threads
  // park before they exit (holding their heaps) while the main thread runs the global check.
  void Generation(uint64_t gen, bool check) {
    Barrier parked(kLanes + 1);
    ThreadGroup group;
    group.Start(kLanes, [&](int id) {
      // The lane's objects come from the lane before it: allocated by another thread (now
      // exited), freed here.
      std::vector<void*>& lane = lanes_[(static_cast<size_t>(id) + gen) % kLanes];
      Heap* heap = lifecycle_ == Lifecycle::kExplicitHeaps
                       ? HeapRegistry::Global().AcquireHeap(source_)
                       : nullptr;
      if (heap != nullptr) NoteHeap(heap);
      const uint32_t thread = static_cast<uint32_t>(gen * kLanes + static_cast<uint64_t>(id));
      Work(heap, lane, thread);
      if (check) {
        parked.Wait();
        parked.Wait();
      }
      if (heap != nullptr) HeapRegistry::Global().ReleaseHeap(heap);
      // Thread-local heaps are abandoned when the thread exits, by the key destructor.
    });
    if (check) {
      parked.Wait();
      HeapRegistry::Global().CheckAll(/*quiescent=*/true);
      parked.Wait();
    }
    group.Join();
  }

  // Frees every object left from the calling thread.
  void FreeAll(Heap* heap) {
    for (auto& lane : lanes_) {
      for (void*& p : lane) {
        if (p != nullptr) VerifyAndFree(heap, p);
        p = nullptr;
      }
    }
  }

  size_t live() { return blocks_.live(); }
  std::vector<Heap*> heaps() {
    std::lock_guard<std::mutex> lock(mu_);
    return heaps_;
  }
  uint64_t foreign_frees() const { return foreign_frees_.load(); }

 private:
  void NoteHeap(Heap* heap) {
    std::lock_guard<std::mutex> lock(mu_);
    heaps_.push_back(heap);
  }

  void* New(Heap* heap, Rng& rng, uint32_t thread, uint64_t seq) {
    return blocks_.New(heap, stress::RandomSize(rng, /*allow_large=*/false), thread, seq);
  }

  void VerifyAndFree(Heap* heap, void* p, uint32_t self = UINT32_MAX) {
    if (blocks_.Free(heap, p).owner != self) {
      // Relaxed: a count, read once every thread of the run is joined.
      foreign_frees_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void Work(Heap* heap, std::vector<void*>& lane, uint32_t thread) {
    Rng rng(thread * 104729 + 7);
    uint64_t seq = 0;
    for (uint64_t i = 0; i < kOpsPerGeneration; ++i) {
      if (i == kOpsPerGeneration / 2 && lifecycle_ == Lifecycle::kThreadLocalWithRelease) {
        ReleaseThreadHeap();  // abandoned now; the next call below takes a heap again
      }
      void*& slot = lane[rng.Below(lane.size())];
      if (slot != nullptr) VerifyAndFree(heap, slot, thread);
      slot = New(heap, rng, thread, seq++);
    }
  }

  const Lifecycle lifecycle_;
  testing::CountingPageSource* const source_;
  // Lane arrays change threads only between generations (ordered by join and thread start).
  std::vector<std::vector<void*>> lanes_;
  stress::CheckedBlocks blocks_;
  std::atomic<uint64_t> foreign_frees_{0};
  std::mutex mu_;
  std::vector<Heap*> heaps_;
};

void RunThreadLocal(Lifecycle lifecycle) {
  ReleaseThreadHeap();
  const uint64_t in_use = GetStats().bytes_in_use_spans;
  const uint32_t heaps_before = HeapRegistry::Global().heap_count();
  const Stats before = GetStats();
  Churn churn(lifecycle, nullptr);
  for (uint64_t gen = 0; gen < kGenerations; ++gen) churn.Generation(gen, gen % 4 == 1);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);  // every lane thread exited
  churn.FreeAll(nullptr);
  ReleaseThreadHeap();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  const Stats after = GetStats();
  EXPECT_EQ(churn.live(), 0u);
  EXPECT_GT(churn.foreign_frees(), kGenerations * kLanes) << "objects outlived their threads";
  EXPECT_GT(after.heaps_reused, before.heaps_reused) << "successors take exited heaps over";
  const uint64_t threads = kGenerations * kLanes;
  EXPECT_LT(HeapRegistry::Global().heap_count() - heaps_before, threads / 2)
      << "heaps of exited threads are reused rather than a new heap per thread";
  EXPECT_EQ(after.bytes_in_use_spans, in_use) << "every page of every exited thread is back";
}

TEST(ThreadChurnStressTest, ThreadLocalHeapsAbandonedAtThreadExit) {
  stress::ExpectCachesOn();
  RunThreadLocal(Lifecycle::kThreadLocal);
}

TEST(ThreadChurnStressTest, ThreadLocalHeapsReleasedExplicitlyMidThread) {
  stress::ExpectCachesOn();
  RunThreadLocal(Lifecycle::kThreadLocalWithRelease);
}

TEST(ThreadChurnStressTest, ExplicitHeapsReleasedPerGenerationEndEmpty) {
  stress::ExpectCachesOn();
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Churn churn(Lifecycle::kExplicitHeaps, source);
  for (uint64_t gen = 0; gen < kGenerations; ++gen) churn.Generation(gen, gen % 4 == 1);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  Heap* main_heap = HeapRegistry::Global().AcquireHeap(source);
  churn.FreeAll(main_heap);
  HeapRegistry::Global().ReleaseHeap(main_heap);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(churn.live(), 0u);
  std::vector<Heap*> used = churn.heaps();
  std::vector<Heap*> distinct = used;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EXPECT_LT(distinct.size(), used.size() / 2) << "released heaps are taken over by successors";
  uint64_t reused = 0, remote = 0;
  for (Heap* h : distinct) {
    reused += h->stats().Get(HeapStats::k_heaps_reused);
    remote += h->stats().Get(HeapStats::k_remote_frees);
  }
  EXPECT_GT(reused, 0u);
  EXPECT_GT(remote, 0u);
  EXPECT_EQ(source->outstanding(), 0u) << "every span went back to the page source";
}

}  // namespace
}  // namespace mf2
