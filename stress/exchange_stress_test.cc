// All-to-all pointer exchange (mimalloc's test/test-stress.c shape). Threads allocate objects,
// stamped with (thread, sequence) by stress::CheckedBlocks, and swap them into a shared slot array
// with an atomic exchange; whatever they swap out was usually allocated by another thread, and is
// verified and freed by this one (a remote free). Threads are destroyed and recreated every
// round while the slot array keeps its objects, so heaps of exited threads keep receiving frees.
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

using stress::Rng;

constexpr int kThreads = 4;
constexpr size_t kSlots = 2048;
const uint64_t kRounds = stress::ScaledAtLeast(40, 6);
constexpr uint64_t kItersPerRound = 6000;
constexpr size_t kMaxLocal = 64;

class Exchange {
 public:
  // With `source`: each round's threads acquire explicit heaps from it and release them at the
  // end of the round; without: MF2's thread-local heaps, abandoned when the thread exits.
  explicit Exchange(testing::CountingPageSource* source) : source_(source) {
    for (auto& s : slots_) s.store(nullptr, std::memory_order_relaxed);
  }

  void Round(uint64_t round) {
    stress::RunTogether(kThreads, [&](int id) {
      Heap* heap = source_ ? HeapRegistry::Global().AcquireHeap(source_) : nullptr;
      if (heap != nullptr) {
        std::lock_guard<std::mutex> lock(mu_);
        heaps_.push_back(heap);
      }
      Work(heap, static_cast<uint32_t>(round * kThreads + static_cast<uint64_t>(id)));
      if (heap != nullptr) HeapRegistry::Global().ReleaseHeap(heap);
    });
  }

  // Frees what is left in the slots from the calling thread.
  void Drain(Heap* heap) {
    for (auto& s : slots_) {
      // acq_rel as in Work (the threads that filled the slots are joined anyway).
      if (void* p = s.exchange(nullptr, std::memory_order_acq_rel)) VerifyAndFree(heap, p);
    }
  }

  size_t live() { return blocks_.live(); }
  uint64_t remote_candidates() const { return foreign_frees_.load(); }
  const std::vector<Heap*>& heaps() const { return heaps_; }

 private:
  void* New(Heap* heap, Rng& rng, uint32_t thread, uint64_t seq) {
    return blocks_.New(heap, stress::RandomSize(rng), thread, seq);
  }

  void VerifyAndFree(Heap* heap, void* p, uint32_t self = UINT32_MAX) {
    if (blocks_.Free(heap, p).owner != self) {
      // Relaxed: a count, read once every thread of the run is joined.
      foreign_frees_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void Work(Heap* heap, uint32_t thread) {
    Rng rng(thread * 7919 + 13);
    std::vector<void*> local;
    uint64_t seq = 0;
    for (uint64_t i = 0; i < kItersPerRound; ++i) {
      const uint64_t r = rng.Below(100);
      if (r < 45 && local.size() < kMaxLocal) {
        if (void* p = New(heap, rng, thread, seq++)) local.push_back(p);
      } else if (r < 60 && !local.empty()) {  // a local free (usually)
        const size_t j = rng.Below(local.size());
        VerifyAndFree(heap, local[j], thread);
        local[j] = local.back();
        local.pop_back();
      } else {  // swap a fresh or a held object into a random slot
        void* mine = nullptr;
        if (!local.empty() && rng.OneIn(2)) {
          mine = local.back();
          local.pop_back();
        } else {
          mine = New(heap, rng, thread, seq++);
        }
        // acq_rel: release publishes our cookie to whoever swaps the object out; acquire sees
        // the cookie of the object we take (the user-level hand-off MF2 cannot see).
        void* theirs = slots_[rng.Below(kSlots)].exchange(mine, std::memory_order_acq_rel);
        if (theirs != nullptr) VerifyAndFree(heap, theirs, thread);
      }
    }
    // Leave the round like mimalloc's threads: free half, hand the rest to the slots.
    for (size_t j = 0; j < local.size(); ++j) {
      if (j % 2 == 0) {
        VerifyAndFree(heap, local[j], thread);
        continue;
      }
      void* theirs = slots_[rng.Below(kSlots)].exchange(local[j], std::memory_order_acq_rel);
      if (theirs != nullptr) VerifyAndFree(heap, theirs, thread);
    }
  }

  testing::CountingPageSource* const source_;
  std::atomic<void*> slots_[kSlots];
  stress::CheckedBlocks blocks_;
  std::atomic<uint64_t> foreign_frees_{0};
  std::mutex mu_;
  std::vector<Heap*> heaps_;
};

TEST(ExchangeStressTest, ExplicitHeapsRecreatedEveryRoundEndEmpty) {
  stress::ExpectCachesOn();
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Exchange ex(source);
  for (uint64_t round = 0; round < kRounds; ++round) {
    ex.Round(round);
    // Every thread of the round is joined and the slots hold live objects of released heaps.
    if (round % 8 == 0) HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  }
  Heap* main_heap = HeapRegistry::Global().AcquireHeap(source);
  ex.Drain(main_heap);
  HeapRegistry::Global().ReleaseHeap(main_heap);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(ex.live(), 0u);
  EXPECT_GT(ex.remote_candidates(), kRounds * kThreads) << "objects changed threads";
  uint64_t remote = 0, reused = 0;
  std::vector<Heap*> distinct;
  for (Heap* h : ex.heaps()) {
    if (std::find(distinct.begin(), distinct.end(), h) != distinct.end()) continue;
    distinct.push_back(h);
    remote += h->stats().Get(HeapStats::k_remote_frees);
    reused += h->stats().Get(HeapStats::k_heaps_reused);
  }
  EXPECT_GT(remote, 0u);
  EXPECT_GT(reused, 0u) << "heaps of a finished round are taken over whole by the next";
  EXPECT_LT(distinct.size(), ex.heaps().size()) << "released heaps are reused";
  EXPECT_EQ(source->outstanding(), 0u) << "every span went back to the page source";
}

TEST(ExchangeStressTest, ThreadLocalHeapsAbandonedEveryRound) {
  stress::ExpectCachesOn();
  ReleaseThreadHeap();
  const uint64_t in_use = GetStats().bytes_in_use_spans;
  const uint64_t remote_before = GetStats().remote_frees;
  Exchange ex(nullptr);
  for (uint64_t round = 0; round < kRounds; ++round) {
    ex.Round(round);
    if (round % 8 == 0) HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  }
  ex.Drain(nullptr);
  ReleaseThreadHeap();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(ex.live(), 0u);
  EXPECT_GT(GetStats().remote_frees, remote_before);
  EXPECT_EQ(GetStats().bytes_in_use_spans, in_use) << "every page of every exited thread is back";
}

}  // namespace
}  // namespace mf2
