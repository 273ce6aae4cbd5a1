// Thread churn (bench/thread_churn.cc in miniature): short-lived workers allocate, hand some
// blocks to a shared transfer array and exit; a main thread that does not allocate frees half of
// the array after each round. The pages of an exited worker must stay where the next worker
// reuses them, so the spans in use stay proportional to what is live, however many workers come
// and go. Deterministically on one OS thread (explicit heaps), then with real threads.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

using testing::ScopedPolicy;
using testing::TestHeaps;

constexpr size_t kSize = 2048;
const uint32_t kClass = SizeToClass(kSize);
const uint32_t kCap = ClassInfo(kClass).capacity;
constexpr int kRounds = 60;
constexpr int kSlots = 64;  // the transfer array
constexpr int kPagesPerRound = 4;

// A fixed, seeded sequence (splitmix64), so that every run and every build sees the same frees.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  bool OneIn(uint64_t n) { return Next() % n == 0; }
};

// Every free reaches its page at once (no caches, no held-back remote frees), and nobody sweeps
// idle owners: this test is about which heap an exited worker's pages go to, not about sweeps
// (which release only pages that come back whole while detached; see heap_adopt.cc).
void ChurnPolicy(Policy* p) {
  p->cache_class_bytes = 0;
  p->remote_batch = 1;
  p->reclaim_idle = false;
  p->background_reclaim = false;
}

// Before the fix, the main thread's first free into an exited worker's page made it take over
// every queued page of that worker. Those pages then received the frees of later workers on the
// main thread's pending queue, which only an allocation slow path drains, and the main thread
// never allocates: the spans in use grew with every round (thread_churn: 52 MiB of spans holding
// 1 MiB of blocks). Now the freer collects the queue into the exited worker's heap, where the
// next worker takes it over.
TEST(ThreadChurnTest, AFreeingThreadTakesNoPagesOfExitedWorkers) {
  ScopedPolicy policy(ChurnPolicy);
  TestHeaps heaps;
  Heap* main_heap = heaps.Acquire();
  std::vector<void*> transfer(kSlots, nullptr);
  Rng rng{4141};
  uint64_t most_outstanding = 0;
  for (int round = 0; round < kRounds; ++round) {
    Heap* worker = heaps.Acquire();  // takes the previous worker's heap over, pages and all
    std::vector<void*> held;
    for (uint32_t i = 0; i < kPagesPerRound * kCap; ++i) {
      void* p = worker->Allocate(kSize);
      ASSERT_NE(p, nullptr);
      if (rng.OneIn(4)) {
        std::swap(p, transfer[rng.Next() % kSlots]);  // may take a block of an earlier worker
        if (p == nullptr) continue;
      }
      held.push_back(p);
      if (rng.OneIn(2)) {  // free a random earlier one
        const size_t j = rng.Next() % held.size();
        worker->Free(held[j]);
        held[j] = held.back();
        held.pop_back();
      }
    }
    for (void* p : held) worker->Free(p);
    heaps.Release(worker);  // thread exit: what it put in the array survives it
    for (void*& p : transfer) {
      if (p != nullptr && rng.OneIn(2)) {
        main_heap->Free(p);
        p = nullptr;
      }
    }
    HeapRegistry::Global().CheckAll(true);
    most_outstanding = std::max(most_outstanding, heaps.source().outstanding());
  }
  EXPECT_EQ(main_heap->page_count(), 0u)
      << "the main thread allocated nothing, yet owns pages of exited workers";
  // At most kSlots live blocks, each pinning at most one page, plus a worker's working set.
  const uint64_t bound = kSlots + 2 * kPagesPerRound;
  EXPECT_LE(most_outstanding, bound) << "spans in use grow with the number of exited workers";
  for (void*& p : transfer) {
    if (p != nullptr) main_heap->Free(p);
  }
  HeapRegistry::Global().CheckAll(true);
}

// The same with real threads, through the thread-exit path: each worker's heap is handed back by
// its thread-exit hook and taken over by a worker of the next round. The main thread's heap must
// not grow with the number of workers that exited (before the fix it took over the queued pages
// of every exited worker it freed into: hundreds of pages here).
TEST(ThreadChurnTest, RealThreadsLeaveTheirPagesToTheNextWorkers) {
  ScopedPolicy policy(ChurnPolicy);
  constexpr int kThreads = 2;
  constexpr int kAllocs = 4000;
  Free(Allocate(64));  // the main thread's heap exists, under the policy above
  Heap* const main_heap = ThreadHeap();
  const size_t main_pages = main_heap->page_count();
  std::vector<std::atomic<void*>> transfer(kSlots);
  for (auto& slot : transfer) slot.store(nullptr, std::memory_order_relaxed);
  Rng main_rng{77};
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&transfer, seed = uint64_t(round * kThreads + t + 1)] {
        Rng rng{seed};
        std::vector<void*> held;
        for (int i = 0; i < kAllocs; ++i) {
          void* p = Allocate(size_t{16} << (rng.Next() % 4));  // 16..128 bytes
          ASSERT_NE(p, nullptr);
          if (rng.OneIn(4)) {
            // acq_rel: hands our block to whoever takes the slot next, and takes theirs.
            p = transfer[rng.Next() % kSlots].exchange(p, std::memory_order_acq_rel);
            if (p == nullptr) continue;
          }
          held.push_back(p);
          if (rng.OneIn(2)) {
            const size_t j = rng.Next() % held.size();
            Free(held[j]);
            held[j] = held.back();
            held.pop_back();
          }
        }
        for (void* p : held) Free(p);
      });
    }
    for (std::thread& w : workers) w.join();
    for (auto& slot : transfer) {
      if (main_rng.OneIn(2)) {
        // acquire: takes the block from the worker that put it there.
        Free(slot.exchange(nullptr, std::memory_order_acquire));
      }
    }
  }
  // At most one page per class the main thread used (its 64-byte allocation above).
  EXPECT_LE(main_heap->page_count(), main_pages + 1)
      << "the main thread owns pages of exited workers";
  for (auto& slot : transfer) Free(slot.exchange(nullptr, std::memory_order_acquire));
  main_heap->FlushCaches();
  HeapRegistry::Global().CheckAll(true);
}

}  // namespace
}  // namespace mf2
