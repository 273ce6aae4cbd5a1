// The background reclaimer with real threads (mf2/reclaimer.h): a producer allocates, hands
// everything to a consumer and stops allocating (it stays alive). Three ways that can go:
//   A. the consumer frees everything at once, right after the producer's last allocation (long
//      before the producer counts as idle): the producer's whole pages must still come back;
//   B. the consumer's frees are spread out while the producer stays idle: pages come back as
//      they become whole, not only at the end;
//   C. the producer starts allocating again before it counts as idle: it keeps its pages (no
//      sweep takes them) and reuses them instead of taking new ones.
// Each round ends with every block freed, the reclaimer waiting, and the global quiescent
// invariant check. Memory and timing figures are measured by bench/run_idle.py, not here.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/fence.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/reclaimer.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/thread_heap.h"
#include "stress/stress_util.h"

namespace mf2 {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kBytes = size_t{24} << 20;  // per round: a few hundred pages
const uint64_t kRounds = stress::Scaled(6);

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// The producer: allocates kBytes of 16..4096-byte blocks (stamped), publishes them, and then
// does what `after_handoff` says (sleep until released, or allocate again).
class Producer {
 public:
  explicit Producer(uint64_t seed) : rng_(seed) {}

  void Start() {
    thread_ = std::thread([this] {
      size_t bytes = 0;
      while (bytes < kBytes) {
        const size_t size = 16 + rng_.Below(4081);
        auto* p = static_cast<uint64_t*>(Allocate(size));
        ASSERT_NE(p, nullptr);
        p[0] = reinterpret_cast<uintptr_t>(p) ^ size;
        blocks_.push_back(p);
        sizes_.push_back(size);
        bytes += size;
      }
      heap_ = ThreadHeap();  // taken at the first allocation
      pages_at_handoff_ = heap_->page_count();
      Signal(&produced_);
      WaitFor(&resume_);
      if (resume_allocating_) {
        // Resumes before it counts as idle: its pages must still be its own.
        for (size_t i = 0; i < blocks_.size(); ++i) blocks_[i] = Allocate(sizes_[i]);
        pages_after_resume_ = heap_->page_count();
        for (void* p : blocks_) Free(p);
        Signal(&resumed_);
      }
      WaitFor(&exit_);
    });
    WaitFor(&produced_);
  }
  void Resume(bool allocate) {
    resume_allocating_ = allocate;
    Signal(&resume_);
    if (allocate) WaitFor(&resumed_);
  }
  void Exit() {
    if (!resume_.load()) Resume(false);
    Signal(&exit_);
    thread_.join();
  }

  // Consumer side: frees blocks [from, to), checking each block's stamp first.
  void FreeRange(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      auto* p = static_cast<uint64_t*>(blocks_[i]);
      ASSERT_EQ(p[0], reinterpret_cast<uintptr_t>(p) ^ sizes_[i]) << "block " << i;
      Free(p);
    }
  }
  size_t count() const { return blocks_.size(); }
  Heap* heap() const { return heap_; }
  size_t pages_at_handoff() const { return pages_at_handoff_; }
  size_t pages_after_resume() const { return pages_after_resume_; }

 private:
  void Signal(std::atomic<bool>* flag) {
    std::lock_guard<std::mutex> lock(mu_);
    flag->store(true);
    cv_.notify_all();
  }
  void WaitFor(std::atomic<bool>* flag) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [flag] { return flag->load(); });
  }

  stress::Rng rng_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> produced_{false}, resume_{false}, resumed_{false}, exit_{false};
  bool resume_allocating_ = false;
  Heap* heap_ = nullptr;
  std::vector<void*> blocks_;
  std::vector<size_t> sizes_;
  size_t pages_at_handoff_ = 0;
  size_t pages_after_resume_ = 0;
};

// What an idle producer may keep once its whole pages are released: pages that are not whole
// (the active page of each class it used; pages pinned by blocks in its caches when there is no
// idle flush, heap.h), at most two per class, and its retained empty pages. (With the idle flush
// it usually keeps nothing, but a flush that runs while frees are still arriving may leave an
// active page that only its owner would collect.)
size_t KeptPagesBound() { return 2 * kNumClasses; }
// For the resume test: what a producer may gain on top of its pages at hand-off.
size_t ResumeSlack() { return 2 * kNumClasses; }

// Every sweep done and nothing pending: then the quiescent invariants must hold.
void QuiesceAndCheck() {
  EXPECT_TRUE(WaitFor([] { return reclaimer::WaitingForTesting(); }, std::chrono::seconds(20)))
      << "the reclaimer did not settle";
  HeapRegistry::Global().CheckAll(true);
}

auto ReclaimerPolicy(uint64_t reclaim_after_ms) {
  return [reclaim_after_ms](Policy* p) {
    p->background_reclaim = true;
    p->reclaim_idle = true;
    p->reclaim_after_ns = reclaim_after_ms * 1'000'000;
    p->page_cache_decay_ns = 0;  // spans stay cached: the check below counts pages, not RSS
  };
}

TEST(ReclaimerStress, AllFreedAtOnceRightAfterTheLastAllocation) {
  stress::ExpectCachesOn();
  testing::ScopedPolicy policy(ReclaimerPolicy(20));
  for (uint64_t round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    const Stats before = GetStats();
    Producer producer(round + 1);
    producer.Start();
    ASSERT_GT(producer.pages_at_handoff(), 2 * kNumClasses) << "too few pages to tell";
    producer.FreeRange(0, producer.count());  // well within the 20 ms before it counts as idle
    EXPECT_TRUE(WaitFor([&] { return producer.heap()->page_count() <= KeptPagesBound(); },
                        std::chrono::seconds(20)))
        << "the idle producer kept " << producer.heap()->page_count() << " of "
        << producer.pages_at_handoff() << " pages";
    // Counted when the reclaimer's pass over this owner ends, which may be just after the pages
    // went back.
    EXPECT_TRUE(WaitFor([&] { return GetStats().pages_reclaimed > before.pages_reclaimed; },
                        std::chrono::seconds(20)));
    QuiesceAndCheck();
    // The reclaimer did the idle producer's GoIdle before its sweep (heap.h, "The idle flush"):
    // nothing is left in its caches (read after CheckAll, which excludes parkers: ordered after
    // the parker's writes; the producer has not run an operation since).
    if (AsymmetricFenceHeavy()) {
      for (uint32_t k = 1; k < kNumClasses; ++k) {
        EXPECT_EQ(producer.heap()->cache(k).n(), 0u) << "class " << k << " still cached";
      }
    }
    producer.Exit();
  }
}

TEST(ReclaimerStress, FreesSpreadOutWhileTheProducerIsIdle) {
  stress::ExpectCachesOn();
  testing::ScopedPolicy policy(ReclaimerPolicy(10));
  constexpr int kSlices = 20;
  for (uint64_t round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    const Stats before = GetStats();
    Producer producer(round + 100);
    producer.Start();
    const size_t n = producer.count();
    uint64_t reclaimed_before_last_slice = 0;
    for (int s = 0; s < kSlices; ++s) {
      if (s == kSlices - 1) {
        // Earlier slices made pages whole while the producer was idle: some are back already.
        WaitFor([&] { return GetStats().pages_reclaimed > before.pages_reclaimed; },
                std::chrono::seconds(5));
        reclaimed_before_last_slice = GetStats().pages_reclaimed - before.pages_reclaimed;
      }
      producer.FreeRange(n * s / kSlices, n * (s + 1) / kSlices);
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
    EXPECT_GT(reclaimed_before_last_slice, 0u) << "nothing came back while the frees went on";
    EXPECT_TRUE(WaitFor([&] { return producer.heap()->page_count() <= KeptPagesBound(); },
                        std::chrono::seconds(20)))
        << "the idle producer kept " << producer.heap()->page_count() << " pages";
    QuiesceAndCheck();
    producer.Exit();
  }
}

TEST(ReclaimerStress, AProducerThatResumesKeepsItsPages) {
  stress::ExpectCachesOn();
  // Idle only after 2 s: the producer resumes after 5 ms, far inside it.
  testing::ScopedPolicy policy(ReclaimerPolicy(2000));
  for (uint64_t round = 0; round < (kRounds + 1) / 2; ++round) {  // 2 s per round
    SCOPED_TRACE(round);
    const Stats before = GetStats();
    Producer producer(round + 200);
    producer.Start();
    producer.FreeRange(0, producer.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    producer.Resume(/*allocate=*/true);  // allocates as much again, then frees it
    EXPECT_EQ(GetStats().pages_reclaimed, before.pages_reclaimed)
        << "a sweep took pages of a producer that was not idle";
    // Its own drain found the freed pages on its queue (whole ones went back to the page source
    // beyond what it retains, and came back from there): it mapped no new memory for the same
    // amount again, and holds about as many pages as before.
    EXPECT_LE(GetStats().segments_mapped, before.segments_mapped + 1)
        << "the resumed producer needed new memory for what it had freed";
    EXPECT_LE(producer.pages_after_resume(), producer.pages_at_handoff() + ResumeSlack());
    QuiesceAndCheck();
    producer.Exit();
  }
}

}  // namespace
}  // namespace mf2
