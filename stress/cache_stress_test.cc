// A cache-heavy pipeline: mid-size blocks (2..32 KiB, the classes whose pages hold 2..32 blocks,
// where the per-thread caches matter most), several threads that pass blocks to each other and
// free their own at random (so their caches fill, flush half to the pages, and refill), and
// thread exit with full caches, generation after generation.
//
// Each generation starts kWorkers threads on explicit heaps of one counting page source. A worker
// allocates, sends about half of its blocks to another worker's mailbox (remote frees there),
// keeps the rest in a pool it frees from at random (owner frees: into its cache), and drains its
// mailbox from time to time. At the end of its generation it frees half of its pool (its caches
// are then full: each class's cache holds its last frees) and releases its heap with those full
// caches, as a thread exit does; the rest of its pool and its mailbox outlive it and are freed by
// the next generation (remote frees into an exited thread's pages: dead-owner drains, adoption).
//
// Checks: a shadow set of live blocks (no block handed out twice), stamps verified at every free,
// HeapRegistry::CheckAll(quiescent) between generations and at the end, and an empty page source
// after the last block is freed. The caches must have been exercised: refills, flushes, and heaps
// released with blocks in their caches.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/size_class.h"
#include "mf2/testing/test_heaps.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

using stress::Rng;

constexpr int kWorkers = 4;
const uint64_t kGenerations = stress::ScaledAtLeast(12, 3);
const uint64_t kOpsPerWorker = stress::Scaled(40000);
constexpr size_t kPoolMax = 96;

// 2 KiB .. 32 KiB, spread over the classes in between (8 per power of two).
size_t MidSize(Rng& rng) {
  const size_t base = size_t{2048} << rng.Below(4);  // 2, 4, 8, 16 KiB
  return base + rng.Below(base + 1);                 // .. 32 KiB
}

struct Mailbox {
  std::mutex mu;
  std::vector<void*> blocks;
};

struct Shared {
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Mailbox mail[kWorkers];
  std::vector<void*> inherited;  // the previous generation's orphans (read-only meanwhile)
  std::mutex orphans_mu;
  std::vector<void*> orphans;  // live blocks this generation leaves behind
  stress::CheckedBlocks blocks;
  std::atomic<uint64_t> seq{0};
  std::atomic<uint64_t> released_with_full_cache{0};
};

void* NewBlock(Shared& s, Heap* heap, Rng& rng, uint32_t thread) {
  // Relaxed: the sequence only has to be unique, not ordered with anything else.
  return s.blocks.New(heap, MidSize(rng), thread, s.seq.fetch_add(1, std::memory_order_relaxed));
}

void FreeBlock(Shared& s, Heap* heap, void* p) { s.blocks.Free(heap, p); }

std::vector<void*> TakeAll(Mailbox& m) {
  std::lock_guard<std::mutex> lock(m.mu);
  std::vector<void*> out;
  out.swap(m.blocks);
  return out;
}

void Worker(Shared& s, int slot, uint64_t generation) {
  Heap* heap = HeapRegistry::Global().AcquireHeap(s.source);
  ASSERT_NE(heap, nullptr);
  const uint32_t thread =
      static_cast<uint32_t>(generation * kWorkers + static_cast<uint64_t>(slot));
  Rng rng(thread + 1);
  std::vector<void*> pool;
  // What the previous generation left live: its orphans, shared out by slot (its mail to this
  // slot is freed with the mailbox below).
  for (size_t i = static_cast<size_t>(slot); i < s.inherited.size(); i += kWorkers) {
    FreeBlock(s, heap, s.inherited[i]);
  }
  for (uint64_t op = 0; op < kOpsPerWorker; ++op) {
    const uint64_t r = rng.Below(100);
    if (r < 45) {
      void* p = NewBlock(s, heap, rng, thread);
      if (p == nullptr) break;
      if (rng.OneIn(2)) {
        Mailbox& m = s.mail[(slot + 1 + static_cast<int>(rng.Below(kWorkers - 1))) % kWorkers];
        std::lock_guard<std::mutex> lock(m.mu);
        m.blocks.push_back(p);
      } else if (pool.size() < kPoolMax) {
        pool.push_back(p);
      } else {
        FreeBlock(s, heap, p);
      }
    } else if (r < 90) {
      if (pool.empty()) continue;
      const size_t i = rng.Below(pool.size());  // a random one of our own: into our cache
      FreeBlock(s, heap, pool[i]);
      pool[i] = pool.back();
      pool.pop_back();
    } else {
      for (void* p : TakeAll(s.mail[slot])) FreeBlock(s, heap, p);  // remote frees
    }
  }
  for (void* p : TakeAll(s.mail[slot])) FreeBlock(s, heap, p);
  // Thread exit with full caches: free half of the pool (into the caches), keep the rest live.
  const size_t keep = pool.size() / 2;
  for (size_t i = keep; i < pool.size(); ++i) FreeBlock(s, heap, pool[i]);
  pool.resize(keep);
  uint32_t cached = 0;
  for (uint32_t k = 1; k < kNumClasses; ++k) cached += heap->cache(k).n();
  if (cached > 0) s.released_with_full_cache.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(s.orphans_mu);
    s.orphans.insert(s.orphans.end(), pool.begin(), pool.end());
  }
  HeapRegistry::Global().ReleaseHeap(heap);  // flushes the caches (Heap::Abandon)
}

TEST(CacheStressTest, MidSizePipelineWithThreadExitsOnFullCaches) {
  stress::ExpectCachesOn();
  Shared s;
  const Stats before = HeapRegistry::Global().CollectStats();
  for (uint64_t g = 0; g < kGenerations; ++g) {
    s.inherited.swap(s.orphans);  // no thread runs: the joins ordered every write
    s.orphans.clear();
    stress::RunTogether(kWorkers, [&](int slot) { Worker(s, slot, g); });
    HeapRegistry::Global().CheckAll(/*quiescent=*/true);  // every thread has exited
  }
  // The last blocks: freed by one more thread, which then exits.
  stress::RunTogether(1, [&](int) {
    Heap* heap = HeapRegistry::Global().AcquireHeap(s.source);
    for (void* p : s.orphans) FreeBlock(s, heap, p);
    for (Mailbox& m : s.mail) {
      for (void* p : TakeAll(m)) FreeBlock(s, heap, p);
    }
    HeapRegistry::Global().ReleaseHeap(heap);
  });
  s.orphans.clear();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(s.blocks.live(), 0u);
  EXPECT_EQ(s.source->outstanding(), 0u) << "every span went back to the page source";
  EXPECT_GT(s.released_with_full_cache.load(), 0u) << "threads exited with blocks in their caches";
#if MF2_STATS
  const Stats after = HeapRegistry::Global().CollectStats();
  std::fprintf(
      stderr,
      "refills %llu, flushes %llu (blocks %llu), remote frees %llu, dead-owner reclaims "
      "%llu, pages adopted %llu, heaps reused %llu, new pages %llu\n",
      static_cast<unsigned long long>(after.cache_refills - before.cache_refills),
      static_cast<unsigned long long>(after.cache_flushes - before.cache_flushes),
      static_cast<unsigned long long>(after.blocks_flushed - before.blocks_flushed),
      static_cast<unsigned long long>(after.remote_frees - before.remote_frees),
      static_cast<unsigned long long>(after.dead_owner_reclaims - before.dead_owner_reclaims),
      static_cast<unsigned long long>(after.pages_adopted - before.pages_adopted),
      static_cast<unsigned long long>(after.heaps_reused - before.heaps_reused),
      static_cast<unsigned long long>(after.new_pages - before.new_pages));
  EXPECT_GT(after.cache_refills - before.cache_refills, 0u);
  EXPECT_GT(after.cache_flushes - before.cache_flushes, 0u) << "caches filled and flushed";
  EXPECT_GT(after.blocks_flushed - before.blocks_flushed, 0u);
#else
  (void)before;
#endif
}

}  // namespace
}  // namespace mf2
