// Successors (Larson's thread shape, on the thread-local API): each lane is worked by a chain of
// threads. A lane's thread replaces random objects of its lane for a while, then starts the
// lane's next thread and exits; the successor's first call frees one of those objects, whose
// heap its predecessor still holds. The predecessor waits until the successor has taken a heap
// (so that heap is always another one), then exits, and the successor moves to the
// predecessor's heap at one of its next allocation slow paths (Heap::SetMoveTo), while the other
// lanes' threads take, release and want heaps around it. In odd generations the successor joins
// its predecessor before it goes on, so it finds the heap handed back at its next slow path; in
// even ones the predecessor's exit races with the successor's slow paths.
//
// Checked: every object's stamp at its free and no block handed out twice (CheckedBlocks), the
// global invariants at the end, every span back when every object is freed, and that threads did
// move (heap_moves, when the build counts).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/stats.h"
#include "mf2/thread_heap.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"

namespace mf2 {
namespace {

using stress::Rng;

constexpr int kLanes = 3;
constexpr size_t kObjectsPerLane = 400;
const uint64_t kGenerations = stress::ScaledAtLeast(24, 6);
constexpr uint64_t kOpsPerGeneration = 4000;

class Successors {
 public:
  Successors() : lanes_(kLanes) {
    for (Lane& lane : lanes_) lane.objects.assign(kObjectsPerLane, nullptr);
  }

  // Runs every lane's chain of kGenerations threads to its end.
  void Run() {
    for (int i = 0; i < kLanes; ++i) StartThread(i, 0);
    // Acquire: pairs with each lane's last thread's release; its lane's objects are ours then.
    while (finished_.load(std::memory_order_acquire) < kLanes) std::this_thread::yield();
    for (Lane& lane : lanes_) {
      for (uint64_t g = 0; g < kGenerations; ++g) {
        while (!lane.stored[g].load(std::memory_order_acquire)) std::this_thread::yield();
        if (lane.threads[g].joinable()) lane.threads[g].join();  // not joined by its successor
      }
    }
  }

  void FreeAll() {
    for (Lane& lane : lanes_) {
      for (void*& p : lane.objects) {
        if (p != nullptr) blocks_.Free(nullptr, p);
        p = nullptr;
      }
    }
  }
  size_t live() { return blocks_.live(); }
  uint64_t interim_heaps() const { return interim_heaps_.load(); }

 private:
  struct Lane {
    std::vector<void*> objects;  // worked by one thread at a time, handed on by thread start
    // threads[g]: generation g, stored by generation g - 1 (or Run) as it starts g; stored[g]
    // is set once it is (a thread may run, and start its successor, before its own std::thread
    // is assigned).
    std::vector<std::thread> threads = std::vector<std::thread>(kGenerations);
    std::vector<std::atomic<bool>> stored = std::vector<std::atomic<bool>>(kGenerations);
    // Generation + 1 of the lane's latest thread that has taken its heap.
    std::atomic<uint64_t> took_heap{0};
  };

  void StartThread(int lane_index, uint64_t gen) {
    Lane& lane = lanes_[static_cast<size_t>(lane_index)];
    lane.threads[gen] = std::thread([this, lane_index, gen] { Work(lane_index, gen); });
    lane.stored[gen].store(true, std::memory_order_release);  // pairs with the joiner's acquire
  }

  void Work(int lane_index, uint64_t gen) {
    Lane& lane = lanes_[static_cast<size_t>(lane_index)];
    const uint32_t thread = static_cast<uint32_t>(gen * kLanes + static_cast<uint64_t>(lane_index));
    Rng rng(thread * 7919 + 3);
    uint64_t seq = 0;
    for (uint64_t i = 0; i < kOpsPerGeneration; ++i) {
      void*& slot = lane.objects[rng.Below(lane.objects.size())];
      if (slot != nullptr) blocks_.Free(nullptr, slot);
      slot = blocks_.New(nullptr, stress::RandomSize(rng, /*allow_large=*/false), thread, seq++);
      if (i == 0 && ThreadHeap()->move_to() != nullptr) {
        // Relaxed: a count, read after every thread is joined.
        interim_heaps_.fetch_add(1, std::memory_order_relaxed);
      }
      if (i == 0) {
        lane.took_heap.store(gen + 1, std::memory_order_release);
        if (gen % 2 == 1) {
          while (!lane.stored[gen - 1].load(std::memory_order_acquire)) std::this_thread::yield();
          lane.threads[gen - 1].join();  // its heap is handed back now
        }
      }
    }
    if (gen + 1 == kGenerations) {
      // Release: this lane's objects, for the main thread's FreeAll.
      finished_.fetch_add(1, std::memory_order_release);
      return;
    }
    // The successor frees one of this lane's objects first, then allocates (taking a heap)
    // while this thread still holds its own; only then does this one exit.
    StartThread(lane_index, gen + 1);
    // Acquire: pairs with the successor's release after its first allocation.
    while (lane.took_heap.load(std::memory_order_acquire) < gen + 2) std::this_thread::yield();
  }

  std::vector<Lane> lanes_;
  stress::CheckedBlocks blocks_;
  std::atomic<int> finished_{0};
  std::atomic<uint64_t> interim_heaps_{0};
};

TEST(SuccessorStressTest, SuccessorsMoveToTheirPredecessorsHeaps) {
  stress::ExpectCachesOn();
  ReleaseThreadHeap();
  const uint64_t in_use = GetStats().bytes_in_use_spans;
  const Stats before = GetStats();
  Successors run;
  run.Run();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);  // every lane thread exited
  run.FreeAll();
  ReleaseThreadHeap();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  const Stats after = GetStats();
  EXPECT_EQ(run.live(), 0u);
  EXPECT_EQ(after.bytes_in_use_spans, in_use) << "every page of every exited thread is back";
  std::printf("successor_stress: %llu threads took an interim heap, %llu moved\n",
              static_cast<unsigned long long>(run.interim_heaps()),
              static_cast<unsigned long long>(after.heap_moves - before.heap_moves));
  EXPECT_GT(run.interim_heaps(), 0u) << "no successor found its predecessor's heap still held";
  // Each odd generation's successor finds its predecessor's heap handed back; another lane's
  // thread takes that heap first only when no other heap is idle.
  if (MF2_STATS) {
    EXPECT_GE(after.heap_moves - before.heap_moves, kLanes * (kGenerations / 2) / 2)
        << "fewer than half of the successors that joined their predecessor moved";
  }
}

}  // namespace
}  // namespace mf2
