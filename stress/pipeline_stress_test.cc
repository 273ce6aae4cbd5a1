// Producer/consumer pipelines (snmalloc's msgpass shape). Stage 0 allocates messages; every
// middle stage frees each message it receives (a remote free: another heap allocated it) and
// allocates a fresh one to pass on; the last stage only frees. Every stage stays alive and keeps
// allocating while its pages collect remote frees, so the pending-queue reuse path runs under
// contention. Every message carries a stamp (allocating thread, sequence) verified at free, and
// a shadow set proves no block is handed out twice.
//
// Ends: the stages park at a barrier while the main thread runs the quiescent global check, then
// release their heaps; with explicit heaps every span must be back in the page source.
#include <atomic>
#include <cstdint>
#include <memory>
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
using stress::BlockingQueue;
using stress::Rng;
using stress::ThreadGroup;

// Stage widths: 2 producers -> 2 relays -> 1 relay -> 2 consumers.
const std::vector<int> kWidths = {2, 2, 1, 2};
const uint64_t kMessages = stress::Scaled(240000);  // produced in total
constexpr size_t kInFlight = 128;                   // per queue

// Sizes up to 8 KiB, roughly log-uniform, so pages of the larger classes fill and must be reused
// through the pending queue (CheckedBlocks::New raises the smallest to a stamp's size).
size_t MessageSize(Rng& rng) {
  const size_t base = size_t{32} << rng.Below(9);  // 32 .. 8 KiB
  return base / 2 + 1 + rng.Below(base / 2);
}

// Which allocator a stage thread uses: its own explicit heap, or MF2's thread-local heap (heap()
// is then null, as CheckedBlocks takes it).
class StageAllocator {
 public:
  explicit StageAllocator(testing::CountingPageSource* source) : source_(source) {
    if (source_ != nullptr) heap_ = HeapRegistry::Global().AcquireHeap(source_);
  }
  // The owner is done: explicit heaps are released, thread-local ones abandoned at thread exit.
  void Release() {
    if (heap_ != nullptr) HeapRegistry::Global().ReleaseHeap(heap_);
  }
  // A stage that is done pushes the remote frees it held back (as a slow path would).
  void FlushHeldRemoteFrees() {
    if (heap_ != nullptr) heap_->FlushRemoteChains();
  }
  Heap* heap() const { return heap_; }

 private:
  testing::CountingPageSource* source_;
  Heap* heap_ = nullptr;
};

struct Pipeline {
  Pipeline() {
    for (size_t s = 0; s < kWidths.size(); ++s) {
      for (int j = 0; j < kWidths[s]; ++j) stage_of.push_back(static_cast<uint32_t>(s));
      queues.push_back(std::make_unique<BlockingQueue<void*>>(kInFlight));
      remaining.push_back(std::make_unique<std::atomic<int>>(kWidths[s]));
    }
  }
  int threads() const { return static_cast<int>(stage_of.size()); }

  std::vector<uint32_t> stage_of;  // thread id -> stage
  std::vector<std::unique_ptr<BlockingQueue<void*>>> queues;  // queue s: stage s -> s + 1
  std::vector<std::unique_ptr<std::atomic<int>>> remaining;   // live threads per stage
  std::vector<Heap*> heaps = std::vector<Heap*>(16, nullptr);
  stress::CheckedBlocks blocks;
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> frees{0};
};

void* NewMessage(Pipeline& pl, StageAllocator& alloc, Rng& rng, uint32_t thread, uint64_t seq) {
  return pl.blocks.New(alloc.heap(), MessageSize(rng), thread, seq);
}

void FreeMessage(Pipeline& pl, StageAllocator& alloc, void* p, uint32_t stage) {
  const uint32_t sender = pl.blocks.Free(alloc.heap(), p).owner;
  EXPECT_EQ(pl.stage_of.at(sender) + 1, stage) << "message from the wrong stage";
  pl.frees.fetch_add(1, std::memory_order_relaxed);
}

void RunStage(Pipeline& pl, StageAllocator& alloc, uint32_t thread) {
  const uint32_t stage = pl.stage_of[thread];
  const uint32_t last = static_cast<uint32_t>(kWidths.size()) - 1;
  Rng rng(thread + 1);
  uint64_t seq = 0;
  if (stage == 0) {
    const uint64_t n = kMessages / static_cast<uint64_t>(kWidths[0]);
    for (uint64_t i = 0; i < n; ++i) {
      void* p = NewMessage(pl, alloc, rng, thread, seq++);
      if (p == nullptr) break;
      pl.queues[0]->Push(p);
    }
  } else {
    void* p;
    while (pl.queues[stage - 1]->Pop(&p)) {
      pl.received.fetch_add(1, std::memory_order_relaxed);
      FreeMessage(pl, alloc, p, stage);
      if (stage == last) continue;
      void* q = NewMessage(pl, alloc, rng, thread, seq++);
      if (q == nullptr) break;
      pl.queues[stage]->Push(q);
    }
  }
  if (pl.remaining[stage]->fetch_sub(1) == 1) pl.queues[stage]->Close();
}

// Runs the pipeline; with `source`, on explicit heaps drawing from it.
void RunPipeline(testing::CountingPageSource* source) {
  Pipeline pl;
  Barrier parked(pl.threads() + 1);
  ThreadGroup group;
  group.Start(pl.threads(), [&](int id) {
    StageAllocator alloc(source);
    pl.heaps[static_cast<size_t>(id)] = alloc.heap();
    RunStage(pl, alloc, static_cast<uint32_t>(id));
    alloc.FlushHeldRemoteFrees();
    parked.Wait();  // main thread checks while every stage still owns its heap
    parked.Wait();
    alloc.Release();
  });
  parked.Wait();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  const uint64_t relays = kMessages * (kWidths.size() - 1);
  EXPECT_EQ(pl.received.load(), relays) << "every message reached every stage once";
  EXPECT_EQ(pl.frees.load(), relays);
  EXPECT_EQ(pl.blocks.live(), 0u);
  if (source != nullptr) {
    // Every free was remote: each stage frees what the previous stage's heaps allocated.
    uint64_t remote = 0, reuses = 0, new_pages = 0, enqueued = 0, drained = 0;
    for (int i = 0; i < pl.threads(); ++i) {
      const HeapStats& st = pl.heaps[static_cast<size_t>(i)]->stats();
      remote += st.Get(HeapStats::k_remote_frees);
      reuses += st.Get(HeapStats::k_page_reuses);
      new_pages += st.Get(HeapStats::k_new_pages);
      enqueued += st.Get(HeapStats::k_pending_enqueued);
      drained += st.Get(HeapStats::k_pending_drained);
    }
    EXPECT_EQ(remote, relays);
    EXPECT_GT(reuses, 0u) << "live allocating stages reuse pages that received remote frees";
    EXPECT_LT(new_pages, relays / 8) << "pages are reused, not taken anew per message";
    // Each 0->1 edge queued a page once; the ones not drained yet are still queued now.
    EXPECT_GE(enqueued, drained);
  }
  parked.Wait();
  group.Join();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

TEST(PipelineStressTest, ExplicitHeapsEndEmpty) {
  stress::ExpectCachesOn();
  testing::CountingPageSource* source = testing::NewPermanentSource();
  RunPipeline(source);
  EXPECT_EQ(source->outstanding(), 0u) << "every span went back to the page source";
}

TEST(PipelineStressTest, ThreadLocalHeaps) {
  stress::ExpectCachesOn();
  ReleaseThreadHeap();
  const uint64_t in_use = GetStats().bytes_in_use_spans;
  RunPipeline(nullptr);
  ReleaseThreadHeap();
  EXPECT_EQ(GetStats().bytes_in_use_spans, in_use)
      << "heaps of exited stage threads gave every empty page back";
}

}  // namespace
}  // namespace mf2
