// The background reclaimer (reclaimer.h): an idle producer whose consumer freed everything
// within the idle threshold of the producer's last slow path gets its pages back without any
// later free, and a process with nothing owed leaves the thread asleep.
#include "mf2/reclaimer.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <unistd.h>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/mf2.hpp"
#include "mf2/testing/resident_pages.h"
#include "mf2/testing/reclaimer_wait.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

constexpr size_t kSize = 4096;
constexpr int kBlocks = 4096;  // 16 MiB: a few hundred pages

using testing::NoPassFor;
using testing::WaitForTheReclaimerToSettle;

// The producer allocates every block, hands them over and then idles (it stays alive); the
// consumer frees them all at once, right away, long before the producer counts as idle, so no
// free finds the producer idle, and with a reclaim batch larger than the page count no free
// sweeps either. Returns the producer's pages released by sweeps within `wait`.
uint64_t IdleProducerPagesReleased(std::chrono::milliseconds wait) {
  WaitForTheReclaimerToSettle();
  const Stats before = GetStats();
  std::vector<void*> blocks(kBlocks);
  std::atomic<bool> produced{false}, done{false};
  std::thread producer([&] {
    for (void*& p : blocks) p = Allocate(kSize);
    // Release: the consumer's acquire sees every pointer.
    produced.store(true, std::memory_order_release);
    while (!done.load(std::memory_order_acquire)) std::this_thread::sleep_for(
        std::chrono::milliseconds(1));  // idle, alive
  });
  while (!produced.load(std::memory_order_acquire)) std::this_thread::yield();
  for (void* p : blocks) Free(p);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  uint64_t released = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    released = GetStats().pages_reclaimed - before.pages_reclaimed;
    if (released >= kBlocks * kSize / (2 * 65536)) break;  // most of them: done early
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  done.store(true, std::memory_order_release);
  producer.join();
  return released;
}

TEST(Reclaimer, AnIdleProducersPagesComeBackWithoutAnotherFree) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;  // 20 ms: the consumer's frees all come before that
    p->reclaim_batch = 1 << 20;        // no free sweeps: only the background reclaimer can
    p->background_reclaim = true;
  });
  const uint64_t released = IdleProducerPagesReleased(std::chrono::seconds(5));
  EXPECT_GE(released, uint64_t{kBlocks} * kSize / 65536 / 2)
      << "the producer's whole pages are released once it has been idle for 20 ms";
  EXPECT_TRUE(reclaimer::Running());
}

TEST(Reclaimer, WithoutItThePagesStay) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;
    p->reclaim_batch = 1 << 20;
    p->background_reclaim = false;
  });
  EXPECT_EQ(IdleProducerPagesReleased(std::chrono::milliseconds(300)), 0u)
      << "the gap the reclaimer closes: no free comes after the producer goes idle";
}

// A quiescent invariant check waits for the reclaimer's pass in flight. A sweep holds the pages it
// popped off an owner's queue (flagged, on no queue) until it has handled them; a check made in
// that window took them for pages lost off their queue (invariant 7) and failed. That happened
// once in CI, in mf2_test's Api.ThreadExitWithLiveBlocksLeaksNothing; here the window is held
// open by a hook in the sweep, and the check must come after the sweep, not inside it.
std::atomic<int> g_sweep_stage{0};  // 0: armed; 1: a sweep is in the window; 2: let it go on

void HoldTheSweep(Heap*, Heap*) {
  int armed = 0;
  // acq_rel: the test thread's release (2) is seen by every later sweep; only the first waits.
  if (!g_sweep_stage.compare_exchange_strong(armed, 1, std::memory_order_acq_rel)) return;
  while (g_sweep_stage.load(std::memory_order_acquire) != 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(Reclaimer, AQuiescentCheckWaitsForTheSweepInFlight) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;  // the producer is idle 20 ms after its last slow path
    p->reclaim_batch = 1 << 20;        // no free sweeps: only the background reclaimer does
    p->background_reclaim = true;
  });
  WaitForTheReclaimerToSettle();
  g_sweep_stage.store(0, std::memory_order_relaxed);
  Heap::sweep_hook_for_testing.store(&HoldTheSweep, std::memory_order_relaxed);
  std::vector<void*> blocks(kBlocks);
  std::atomic<bool> produced{false}, done{false};
  std::thread producer([&] {
    for (void*& p : blocks) p = Allocate(kSize);
    produced.store(true, std::memory_order_release);
    while (!done.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // idle, alive
    }
  });
  while (!produced.load(std::memory_order_acquire)) std::this_thread::yield();
  // The first half of the producer's pages come back whole: the reclaimer sweeps its heap. Those
  // of the second half get every other block back: queued, not whole, they are still on the queue
  // after the idle flush that comes before the sweep (Heap::IdleFlushInOp), for the sweep to pop.
  for (int i = 0; i < kBlocks; ++i) {
    if (i < kBlocks / 2 || i % 2 == 0) Free(blocks[i]);
  }
  bool in_window = false;
  for (int i = 0; i < 2000 && !in_window; ++i) {
    in_window = g_sweep_stage.load(std::memory_order_acquire) == 1;
    if (!in_window) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::atomic<bool> released_first{false};
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    released_first.store(true, std::memory_order_relaxed);
    g_sweep_stage.store(2, std::memory_order_release);
  });
  if (in_window) {
    // Before reclaimer::PassMutex this checked the popped pages in the middle of the sweep.
    HeapRegistry::Global().CheckAll(true);
    EXPECT_TRUE(released_first.load(std::memory_order_relaxed))
        << "the check ran while the sweep held its popped pages";
  }
  releaser.join();
  Heap::sweep_hook_for_testing.store(nullptr, std::memory_order_relaxed);
  for (int i = kBlocks / 2 + 1; i < kBlocks; i += 2) Free(blocks[i]);
  done.store(true, std::memory_order_release);
  producer.join();
  ASSERT_TRUE(in_window) << "no sweep of the idle producer's queue within 10 s";
  WaitForTheReclaimerToSettle();
  HeapRegistry::Global().CheckAll(true);
}

// With the reclaimer on, a freeing thread does not sweep even an owner it finds idle with a batch
// of whole pages: the sweep and the madvise of what it releases are the reclaimer's work, off
// the freeing thread's path (a consumer freed 3x slower when it swept: bench/RESULTS.md).
TEST(Reclaimer, FreeingThreadsLeaveTheSweepsToIt) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 0;  // the producer counts as idle at once
    p->reclaim_batch = 32;    // without the reclaimer the freer would sweep every 32 whole pages
    // (the 256 pages stay below the backlog at which a freer sweeps anyway: 16 batches)
    p->background_reclaim = true;
  });
  Free(Allocate(16));  // the consumer (this thread) has a heap of its own, whose counters we read
  ASSERT_TRUE(ThreadHasHeap());
  const uint64_t consumer_sweeps = ThreadHeap()->stats().Get(HeapStats::k_idle_reclaims);
  const uint64_t released = IdleProducerPagesReleased(std::chrono::seconds(5));
  EXPECT_GE(released, uint64_t{kBlocks} * kSize / 65536 / 2);
  EXPECT_EQ(ThreadHeap()->stats().Get(HeapStats::k_idle_reclaims), consumer_sweeps)
      << "the consumer (this thread) swept an owner itself";
}

// A consumer that never allocates takes a heap at its kHeaplessFreesBeforeHeap-th free, so its
// frees go out in chains; such a thread never reaches a slow path, where held frees go out, so
// once it is idle the reclaimer sends them (Heap::FlushIdleHolder_mt), and the producer's pages
// they pinned come back whole and are released like the others.
TEST(Reclaimer, AnIdleFreeOnlyThreadsHeldFreesGoOut) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;
    p->reclaim_batch = 1 << 20;
    p->background_reclaim = true;
    p->remote_batch = 32;
  });
  WaitForTheReclaimerToSettle();
  const Stats before = GetStats();
  constexpr int kMany = 1024;
  std::vector<void*> blocks(kMany);
  std::atomic<bool> produced{false}, done{false};
  std::atomic<Heap*> producer_heap{nullptr};
  std::thread producer([&] {
    for (void*& p : blocks) p = Allocate(kSize);
    producer_heap.store(ThreadHeap(), std::memory_order_relaxed);
    produced.store(true, std::memory_order_release);  // the consumer's acquire sees the pointers
    while (!done.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // idle, alive
    }
  });
  while (!produced.load(std::memory_order_acquire)) std::this_thread::yield();
  const size_t pages_at_first = producer_heap.load(std::memory_order_relaxed)->page_count();
  std::atomic<Heap*> consumer_heap{nullptr};
  std::atomic<bool> freed{false};
  bool heap_before = true, heap_at_last_heapless = true, heap_after = false;
  std::thread consumer([&] {
    heap_before = ThreadHasHeap();
    for (int i = 0; i < kMany; ++i) {
      if (i == static_cast<int>(kHeaplessFreesBeforeHeap) - 1) {
        heap_at_last_heapless = ThreadHasHeap();
      }
      Free(blocks[i]);
    }
    heap_after = ThreadHasHeap();
    consumer_heap.store(ThreadHeap(), std::memory_order_release);
    freed.store(true, std::memory_order_release);
    while (!done.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // idle, alive, never allocates
    }
  });
  while (!freed.load(std::memory_order_acquire)) std::this_thread::yield();
  Heap* heap = consumer_heap.load(std::memory_order_acquire);
  const bool held_at_first = heap->holds_remote_mt();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (heap->holds_remote_mt() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool held_at_end = heap->holds_remote_mt();
  // Then every page of the producer comes back whole and is released (5 s at most), but for its
  // active page, which an idle owner keeps only when it still has free blocks (none here).
  Heap* owner = producer_heap.load(std::memory_order_acquire);
  while (owner->page_count() > 1 &&
         std::chrono::steady_clock::now() < deadline + std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const size_t pages_at_end = owner->page_count();
  const uint64_t released = GetStats().pages_reclaimed - before.pages_reclaimed;
  done.store(true, std::memory_order_release);
  consumer.join();
  producer.join();
  EXPECT_FALSE(heap_before) << "the consumer starts without a heap";
  EXPECT_FALSE(heap_at_last_heapless) << "no heap before its first free beyond the threshold";
  EXPECT_TRUE(heap_after) << "a thread that keeps freeing takes a heap";
  EXPECT_TRUE(held_at_first) << "its frees are held back in chains";
  EXPECT_FALSE(held_at_end) << "the reclaimer sends an idle holder's frees";
  EXPECT_GE(pages_at_first, 8u) << "the blocks span many pages";
  EXPECT_LE(pages_at_end, 1u) << "pages pinned by held frees were not released";
  EXPECT_GT(released, 0u);
}

TEST(Reclaimer, SleepsWhenNothingIsOwed) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;
    p->reclaim_batch = 1 << 20;
    p->background_reclaim = true;
    p->page_cache_decay_ns = 0;  // the cache's decay would wake it (next test)
    p->idle_flush_after_ns = 0;  // and so would the idle flush of this thread (its own test)
  });
  IdleProducerPagesReleased(std::chrono::seconds(5));
  // Once every owed page is released the thread waits without a timeout: its pass count stops.
  using std::chrono::milliseconds;
  EXPECT_TRUE(NoPassFor(milliseconds(200), milliseconds(500))) << "no pass while nothing is owed";
}

// A worker of a thread pool: at each round it allocates blocks of many sizes, frees every one
// of them itself (no page of it ever comes back whole through another thread), and then waits,
// alive, for work that does not come. Round() returns its heap's page count and resident slot
// pages (beyond the one they share with the heap's fields) after the work, and again once its
// pages are gone or `wait` has passed.
struct RoundPages {
  size_t pages_after_work, pages_at_end;
  long slot_pages_after_work, slot_pages_at_end;
};
long ResidentSlotPages(const Heap* heap) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t slots = reinterpret_cast<uintptr_t>(heap->slot_storage());
  const uintptr_t first = (slots + page - 1) & ~(page - 1);
  return testing::ResidentPages(reinterpret_cast<const void*>(first),
                                slots + sizeof(Heap::SlotStorage) - first);
}
class PoolWorker {
 public:
  PoolWorker()
      : thread_([this] {
          for (int done = 0;;) {
            int round;
            while ((round = round_.load(std::memory_order_acquire)) == done) {
              std::this_thread::sleep_for(std::chrono::milliseconds(1));  // idle, alive
            }
            if (round < 0) return;
            std::vector<void*> blocks;
            for (size_t size = 16; size <= 16384; size += size / 4 + 16) {
              for (int i = 0; i < 8; ++i) {
                blocks.push_back(Allocate(size));
                std::memset(blocks.back(), 1, size);
              }
            }
            for (void* p : blocks) Free(p);
            heap_.store(ThreadHeap(), std::memory_order_relaxed);
            done_.store(done = round, std::memory_order_release);
          }
        }) {}
  ~PoolWorker() {
    round_.store(-1, std::memory_order_release);
    thread_.join();
  }
  RoundPages Round(std::chrono::milliseconds wait) {
    const int round = round_.load(std::memory_order_relaxed) + 1;
    round_.store(round, std::memory_order_release);
    while (done_.load(std::memory_order_acquire) != round) std::this_thread::yield();
    Heap* heap = heap_.load(std::memory_order_relaxed);
    RoundPages r{heap->page_count(), 0, ResidentSlotPages(heap), 0};
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (heap->page_count() != 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    r.pages_at_end = heap->page_count();
    r.slot_pages_at_end = ResidentSlotPages(heap);
    return r;
  }

 private:
  std::atomic<int> round_{0};
  std::atomic<int> done_{0};
  std::atomic<Heap*> heap_{nullptr};
  std::thread thread_;  // last: starts once the fields above exist
};

// The idle flush of a long-idle thread: the worker above gets its caches and empty pages taken
// back, and its slot pages returned, with no other thread's free to trigger it. Before, nothing
// did (its pages never come back whole): the next test shows it with the flush off. Then, every
// heap flushed, the reclaimer sleeps without a timeout; the worker's next round wakes it (its
// first slow path after the flush), and its pages come back again.
TEST(Reclaimer, AnIdleThreadGivesBackItsPagesThoughNoneCameBackWhole) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = true;
    p->idle_flush_after_ns = 50'000'000;  // 50 ms
    p->page_cache_decay_ns = 0;  // so that only the idle flush wakes it
  });
  WaitForTheReclaimerToSettle();
  PoolWorker worker;
  for (int round = 1; round <= 2; ++round) {
    SCOPED_TRACE(round);
    const RoundPages w = worker.Round(std::chrono::seconds(5));
    EXPECT_GE(w.pages_after_work, 8u) << "the worker's blocks took pages of many classes";
    EXPECT_GE(w.slot_pages_after_work, 2) << "and slots of many caches";
    EXPECT_EQ(w.pages_at_end, 0u) << "an idle thread keeps pages whose blocks it freed itself";
    EXPECT_EQ(w.slot_pages_at_end, 0) << "an idle thread keeps its caches' slot pages";
    EXPECT_TRUE(reclaimer::Running());
    // This thread's heap is flushed too (it has been idle as long); then nothing is owed.
    EXPECT_TRUE(NoPassFor(std::chrono::milliseconds(300), std::chrono::milliseconds(300)))
        << "a pass with every heap flushed";
  }
}

// What the idle flush changed: with it off, the same worker keeps what it holds.
TEST(Reclaimer, WithoutTheIdleFlushAnIdleThreadKeepsItsPages) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = true;
    p->idle_flush_after_ns = 0;
  });
  PoolWorker worker;
  const RoundPages w = worker.Round(std::chrono::milliseconds(300));
  EXPECT_GE(w.pages_after_work, 8u);
  EXPECT_EQ(w.pages_at_end, w.pages_after_work);
  EXPECT_EQ(w.slot_pages_at_end, w.slot_pages_after_work);
}

// The page source's cache decays: spans nobody took for a decay period go back to the OS, so an
// idle process does not keep the cache resident; once it is empty, the thread sleeps for good.
TEST(Reclaimer, TheSpanCacheDecaysThenTheThreadSleeps) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;
    p->reclaim_batch = 1 << 20;
    p->background_reclaim = true;
    p->page_cache_decay_ns = 50'000'000;  // 50 ms
    p->idle_flush_after_ns = 0;
  });
  const Stats before = GetStats();
  IdleProducerPagesReleased(std::chrono::seconds(5));
  EXPECT_GT(GetStats().bytes_cached_spans, 0u) << "the released pages went to the cache first";
  // Within a few periods every cached span has gone back (nothing allocates meanwhile).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (GetStats().bytes_cached_spans != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const Stats after = GetStats();
  EXPECT_EQ(after.bytes_cached_spans, 0u) << "cached spans left after the decay";
  EXPECT_GT(after.spans_decayed, before.spans_decayed);
  EXPECT_TRUE(NoPassFor(std::chrono::milliseconds(200), std::chrono::milliseconds(300)))
      << "a pass with nothing owed and nothing cached";
}

// Freed large mappings kept for reuse decay too: an idle process does not keep them resident.
// (They stayed for good before: 12 MiB here, up to MF2_LARGE_CACHE_MB = 64 by default.)
TEST(Reclaimer, TheLargeCacheDecays) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = true;
    p->page_cache_decay_ns = 50'000'000;  // 50 ms
  });
  LargeReleaseCache();
  reclaimer::Notify();  // the thread runs (a process's first whole page would start it)
  constexpr size_t kLargeSize = size_t{4} << 20;
  void* blocks[3];
  for (void*& b : blocks) {
    b = LargeAllocate(kLargeSize, 4096);
    ASSERT_NE(b, nullptr);
    memset(b, 1, kLargeSize);  // resident
  }
  for (void* b : blocks) ASSERT_TRUE(LargeFree(b));
  ASSERT_EQ(LargeCachedBytes(), 3 * kLargeSize) << "freed mappings are cached for reuse first";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (LargeCachedBytes() != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(LargeCachedBytes(), 0u) << "cached large mappings left after the decay";
}

// A mapping taken again within a period is not lost to the decay: only what stayed cached for a
// whole period (the low-water mark) goes. Driven by hand, with the reclaimer off.
TEST(Reclaimer, TheLargeCacheDecaysOnlyWhatNobodyTook) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = false;
    p->page_cache_decay_ns = 1'000'000'000;
  });
  LargeReleaseCache();
  constexpr uint64_t kPeriod = 1'000'000'000;
  constexpr size_t kMiB = size_t{1} << 20;
  void* a = LargeAllocate(kMiB, 4096);
  void* b = LargeAllocate(2 * kMiB, 4096);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(LargeFree(a));  // the oldest
  ASSERT_TRUE(LargeFree(b));
  ASSERT_EQ(LargeCachedBytes(), 3 * kMiB);
  const uint64_t t0 = uint64_t{1} << 40;
  EXPECT_EQ(LargeDecay(t0), kPeriod) << "the first decay only schedules the next";
  EXPECT_EQ(LargeDecay(t0 + kPeriod / 2), kPeriod / 2) << "not due yet";
  void* again = LargeAllocate(2 * kMiB, 4096);  // takes b's mapping back: low water 1 MiB
  ASSERT_NE(again, nullptr);
  ASSERT_EQ(LargeCachedBytes(), kMiB);
  ASSERT_TRUE(LargeFree(again));
  ASSERT_EQ(LargeCachedBytes(), 3 * kMiB);
  EXPECT_EQ(LargeDecay(t0 + kPeriod), kPeriod) << "due: 1 MiB stayed unused, the rest goes on";
  EXPECT_EQ(LargeCachedBytes(), 2 * kMiB) << "only the mapping nobody took is unmapped";
  EXPECT_EQ(LargeDecay(t0 + 2 * kPeriod), 0u) << "due again: nobody took the rest either";
  EXPECT_EQ(LargeCachedBytes(), 0u);
}

// Without decay the cache stays: what MF2_PAGE_CACHE_DECAY_US=0 promises.
TEST(Reclaimer, WithoutDecayTheCacheStays) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;
    p->reclaim_batch = 1 << 20;
    p->background_reclaim = true;
    p->page_cache_decay_ns = 0;
  });
  IdleProducerPagesReleased(std::chrono::seconds(5));
  // Every sweep over (the producer's last pages may still be on their way to the cache).
  for (int i = 0; i < 2000 && !reclaimer::WaitingForTesting(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(reclaimer::WaitingForTesting());
  const size_t cached = GetStats().bytes_cached_spans;
  EXPECT_GT(cached, 0u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(GetStats().bytes_cached_spans, cached);
}

// Starved() reads the clock, then the time of the pending notification, which another thread
// may store in between (the reclaimer cleared the notification and someone notified again): that
// newer time, later than the clock reading, is a fresh notification, not an age that wrapped
// around (which made a freeing thread sweep an owner itself, as if the reclaimer had starved).
TEST(Reclaimer, ANotificationNewerThanTheClockReadingIsNotStarved) {
  const uint64_t now = uint64_t{1} << 40;  // about 18 minutes of CLOCK_MONOTONIC
  EXPECT_FALSE(reclaimer::WaitedTooLong(now, now + 1));
  EXPECT_FALSE(reclaimer::WaitedTooLong(now, now + reclaimer::kStarvedNs + 1));
  EXPECT_FALSE(reclaimer::WaitedTooLong(now, now));
  EXPECT_FALSE(reclaimer::WaitedTooLong(now + reclaimer::kStarvedNs, now));
  EXPECT_TRUE(reclaimer::WaitedTooLong(now + reclaimer::kStarvedNs + 1, now));
}

// The same for an owner's idle clock (Heap::OwnerIdle_mt): the first observer of an epoch stores
// its clock reading; an observer whose own reading was earlier must not see an idle time that
// wrapped around (it made an owner that had just allocated count as idle for 12 days).
TEST(Reclaimer, AnIdleProbeNewerThanTheClockReadingIsNotIdle) {
  testing::TestHeaps heaps;
  Heap* owner = heaps.Acquire();
  const uint64_t first = uint64_t{1} << 40;  // ns
  const uint64_t threshold = 10'000'000;     // 10 ms
  uint64_t idle_in = 0;
  EXPECT_FALSE(owner->OwnerIdle_mt(first, threshold, &idle_in)) << "first sight starts the clock";
  EXPECT_EQ(idle_in, threshold);
  // Another observer read the clock 1 ms before the first one stored its probe.
  EXPECT_FALSE(owner->OwnerIdle_mt(first - 1'000'000, threshold, &idle_in));
  EXPECT_EQ(idle_in, threshold) << "a reading older than the probe: idle for no time yet";
  EXPECT_FALSE(owner->OwnerIdle_mt(first + 4'000'000, threshold, &idle_in));
  EXPECT_EQ(idle_in, 6'000'000u);
  EXPECT_TRUE(owner->OwnerIdle_mt(first + threshold, threshold));
}

}  // namespace
}  // namespace mf2
