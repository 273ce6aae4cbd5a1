// The background reclaimer (reclaimer.h): an idle producer whose consumer freed everything
// within the idle threshold of the producer's last slow path gets its pages back without any
// later free, and a process with nothing owed leaves the thread asleep.
#include "mf2/reclaimer.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/testing/scoped_policy.h"

namespace mf2 {
namespace {

constexpr size_t kSize = 4096;
constexpr int kBlocks = 4096;  // 16 MiB: a few hundred pages

// The producer allocates every block, hands them over and then idles (it stays alive); the
// consumer frees them all at once, right away, long before the producer counts as idle, so no
// free finds the producer idle, and with a reclaim batch larger than the page count no free
// sweeps either. Returns the producer's pages released by sweeps within `wait`.
uint64_t IdleProducerPagesReleased(std::chrono::milliseconds wait) {
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

TEST(Reclaimer, SleepsWhenNothingIsOwed) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->reclaim_after_ns = 20'000'000;
    p->reclaim_batch = 1 << 20;
    p->background_reclaim = true;
  });
  IdleProducerPagesReleased(std::chrono::seconds(5));
  // Once every owed page is released the thread waits without a timeout: its pass count stops.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const uint64_t passes = reclaimer::Passes();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(reclaimer::Passes(), passes) << "no pass while nothing is owed";
}

}  // namespace
}  // namespace mf2
