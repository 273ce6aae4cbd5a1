// Many threads hammer ONE page's remote stack while its owner keeps allocating from it (and so
// drains it, through its pending queue and by collecting its active page directly).
//
// The owner fills one page of 16-byte blocks (4096 blocks, all on the page) and hands every block
// to the freers through their inboxes. Each freer frees what it receives (a remote free into the
// same page). The owner allocates only when the freers have completed more frees than it has
// reallocated, so a free block always exists on its page: it must never take a new page, and
// every block it gets must be one a freer has finished freeing. It hands each block out again.
//
// Conservation, asserted at the end: blocks freed == blocks drained + blocks still on the remote
// stack; 0->1 edges won == pages drained from the queue + (flag still set ? 1 : 0); after a final
// drain nothing is left on the stack, and after freeing everything the page source is empty.
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/test_heaps.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

using stress::Barrier;
using stress::BlockingQueue;
using stress::ThreadGroup;

constexpr int kFreers = 3;
constexpr size_t kSize = 16;
const uint64_t kReallocations = stress::Scaled(1500000);

TEST(OnePageStressTest, RemoteStackHammeredWhileOwnerAllocatesAndDrains) {
  // The owner's cache off: every allocation comes from the page and every block the owner gets
  // is one a freer returned through the remote stack, which is what this test counts.
  testing::ScopedPolicy policy([](Policy* p) {
    p->cache_class_bytes = 0;
    p->remote_batch = 1;  // every free is on the stack at once: the counts below are exact
  });
  testing::CountingPageSource* source = testing::NewPermanentSource();
  const uint32_t cap = ClassInfo(SizeToClass(kSize)).capacity;
  std::vector<std::unique_ptr<BlockingQueue<void*>>> inbox;
  for (int i = 0; i < kFreers; ++i) {
    inbox.push_back(std::make_unique<BlockingQueue<void*>>(cap + 1));
  }
  // Per block: the generation the owner handed out, and the last generation a freer started to
  // free (stored before its Free, so an owner that gets the block back must see it: the push's
  // release and the drain's acquire order it, which TSan checks as well).
  std::unique_ptr<std::atomic<uint32_t>[]> freeing(new std::atomic<uint32_t>[cap]);
  std::vector<uint32_t> given_gen(cap, 0);
  for (uint32_t i = 0; i < cap; ++i) freeing[i].store(0, std::memory_order_relaxed);
  std::atomic<uint64_t> frees_done{0};
  std::vector<uint64_t> frees_by(kFreers, 0);
  std::vector<Heap*> heaps(kFreers + 1, nullptr);
  Page* page = nullptr;
  uint64_t final_drained = 0, final_enqueued = 0, final_queue_drains = 0;
  RemoteWord before_final(0);
  Barrier done(kFreers + 1);     // freers finished, owner closed the inboxes
  Barrier parked(kFreers + 2);   // everyone parked for the main thread's check

  ThreadGroup group;
  group.Start(kFreers + 1, [&](int id) {
    Heap* heap = HeapRegistry::Global().AcquireHeap(source);
    heaps[static_cast<size_t>(id)] = heap;
    if (id > 0) {  // freer
      void* p;
      uint64_t n = 0;
      while (inbox[static_cast<size_t>(id - 1)]->Pop(&p)) {
        const uint32_t idx = PageOf(p)->BlockIndex(p);
        // Relaxed load of our own block's generation (the inbox hand-off ordered the owner's
        // store); release store: see the comment on `freeing`.
        const uint32_t gen = *static_cast<uint32_t*>(p);
        freeing[idx].store(gen, std::memory_order_release);
        heap->Free(p);
        ++n;
        // Release: the owner's acquire load then knows this free (its push) is complete.
        frees_done.fetch_add(1, std::memory_order_release);
      }
      frees_by[static_cast<size_t>(id - 1)] = n;
      done.Wait();
    } else {  // owner
      std::vector<void*> blocks;
      blocks.push_back(heap->Allocate(kSize));
      page = PageOf(blocks[0]);
      while (page->HasFree()) blocks.push_back(heap->Allocate(kSize));
      EXPECT_EQ(blocks.size(), cap);
      uint64_t handed = 0;
      auto hand_out = [&](void* p) {
        const uint32_t idx = page->BlockIndex(p);
        *static_cast<uint32_t*>(p) = ++given_gen[idx];
        inbox[handed++ % kFreers]->Push(p);
      };
      for (void* p : blocks) hand_out(p);
      const uint64_t spans = source->allocated();
      uint64_t reallocated = 0;
      while (reallocated < kReallocations) {
        // Acquire: pairs with the freers' release increments.
        if (frees_done.load(std::memory_order_acquire) <= reallocated) {
          std::this_thread::yield();
          continue;
        }
        void* p = heap->Allocate(kSize);
        ++reallocated;
        ASSERT_EQ(PageOf(p), page) << "a free block existed on the page: no other page is used";
        const uint32_t idx = page->BlockIndex(p);
        ASSERT_EQ(freeing[idx].load(std::memory_order_acquire), given_gen[idx])
            << "block " << idx << " came back before its free (handed out twice)";
        hand_out(p);
      }
      EXPECT_EQ(source->allocated(), spans) << "no new span while the page had free blocks";
      for (auto& q : inbox) q->Close();
      done.Wait();  // every freer has freed everything it received
      // Conservation before the final drain.
      uint64_t freed = 0;
      for (uint64_t n : frees_by) freed += n;
      EXPECT_EQ(freed, reallocated + cap) << "every block handed out was freed once";
      before_final = page->remote().Peek();
      EXPECT_EQ(heap->stats().Get(HeapStats::k_remote_blocks_drained) + before_final.count(),
                freed)
          << "blocks freed == blocks drained + blocks still on the remote stack";
      // Final drain: take back every block the freers returned.
      for (uint64_t i = reallocated; i < freed; ++i) {
        void* p = heap->Allocate(kSize);
        ASSERT_EQ(PageOf(p), page);
        blocks[i - reallocated] = p;
      }
      EXPECT_FALSE(page->HasFree());
      EXPECT_EQ(page->remote().Peek().count(), 0u) << "nothing left after the final drain";
      EXPECT_EQ(source->allocated(), spans);
      final_drained = heap->stats().Get(HeapStats::k_remote_blocks_drained);
      final_queue_drains = heap->stats().Get(HeapStats::k_pending_drained);
      EXPECT_EQ(final_drained, freed) << "every remote free drained exactly once";
      for (void* p : blocks) heap->Free(p);
    }
    parked.Wait();
    parked.Wait();
    HeapRegistry::Global().ReleaseHeap(heap);
  });
  parked.Wait();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  for (int i = 1; i <= kFreers; ++i) {
    final_enqueued += heaps[static_cast<size_t>(i)]->stats().Get(HeapStats::k_pending_enqueued);
  }
  uint64_t remote = 0;
  for (int i = 1; i <= kFreers; ++i) {
    remote += heaps[static_cast<size_t>(i)]->stats().Get(HeapStats::k_remote_frees);
  }
  EXPECT_EQ(remote, final_drained);
  const bool flagged = page->remote().Peek().pending();
  EXPECT_EQ(flagged, heaps[0]->PendingContains(page)) << "invariant 7";
  EXPECT_EQ(final_enqueued, final_queue_drains + (flagged ? 1 : 0))
      << "each 0->1 edge queued the page once; each was drained once, except one still queued";
  EXPECT_GT(heaps[0]->stats().Get(HeapStats::k_active_drain_hit) +
                heaps[0]->stats().Get(HeapStats::k_mustreuse_hit),
            0u);
  parked.Wait();
  group.Join();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(source->outstanding(), 0u) << "every span went back to the page source";
}

}  // namespace
}  // namespace mf2
