// The span cache's short decay wakes the background reclaimer only while the cache holds more
// than its reserve (page_source.h): within the reserve the thread sleeps out the whole decay
// period. The free that takes the cache past the reserve must wake it, or the excess stays
// resident for that whole period (here a minute) instead of the short one (20 ms).
//
// A binary of its own: a process fresh from earlier tests' policies has no decay scheduled that
// would wake the thread anyway (each test of reclaimer_test leaves schedules of its own periods).
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/mf2.hpp"
#include "mf2/page_source.h"
#include "mf2/reclaimer.h"
#include "mf2/segment.h"
#include "mf2/testing/reclaimer_wait.h"
#include "mf2/testing/scoped_policy.h"

namespace mf2 {
namespace {

using testing::NoPassFor;
using testing::WaitForTheReclaimerToSettle;

bool PastReserve() {
  const Stats st = GetStats();
  return st.bytes_cached_spans > st.bytes_in_use_spans / 8;
}

TEST(DecayWake, ACachePastItsReserveWakesTheReclaimerForTheShortDecay) {
  testing::ScopedPolicy policy([](Policy* p) {
    p->background_reclaim = true;
    p->page_cache_bytes = 256 * kSliceSize;
    p->page_cache_decay_ns = 60'000'000'000;  // only the short period can act within the test
    p->page_cache_excess_decay_ns = 20'000'000;
    p->idle_flush_after_ns = 0;
  });
  OsPageSource& source = OsPageSource::Global();
  reclaimer::Notify();  // starts the thread (a process's first whole page would)
  std::vector<Page*> held;
  for (int i = 0; i < 64; ++i) held.push_back(source.AllocateSpan(1));  // a reserve of >= 8
  // The cache goes non-empty, within its reserve: the thread looks, then sleeps for a minute.
  source.FreeSpan(source.AllocateSpan(1));
  ASSERT_TRUE(WaitForTheReclaimerToSettle());
  EXPECT_TRUE(NoPassFor(std::chrono::milliseconds(0), std::chrono::milliseconds(100)))
      << "a wake-up with only the reserve cached";
  ASSERT_EQ(GetStats().bytes_cached_spans, kSliceSize);
  // 65 slices cached, the reserve down by 8: the excess must go within a few short periods.
  for (Page* p : held) source.FreeSpan(p);
  EXPECT_TRUE(PastReserve());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (PastReserve() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(PastReserve()) << "the excess over the reserve stayed cached";
  EXPECT_LT(GetStats().bytes_cached_spans, 64 * kSliceSize);
  // Within its reserve again, the cache lets the thread sleep.
  ASSERT_TRUE(WaitForTheReclaimerToSettle());
  EXPECT_TRUE(NoPassFor(std::chrono::milliseconds(0), std::chrono::milliseconds(100)))
      << "a wake-up after the excess went";
}

}  // namespace
}  // namespace mf2
