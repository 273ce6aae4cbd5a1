// The pending queue on its own (jemalloc's MPSC queue test shape): 4 pushers, one pop-all
// consumer, items are real mf2::Page descriptors linked through pending_next. A pusher re-pushes
// one of its pages only after the consumer has popped it (the page's "queued" flag plays
// in_remote_pending), as the heap protocol guarantees (invariant 5).
//
// Asserted: every push is received exactly once (per pusher, the sequence numbers received are
// exactly 1..N), within one popped chain each pusher's items appear newest first (LIFO), chains
// are well formed (no cycle, never longer than the pages that exist), and the consumer reads a
// page's link before releasing the page back to its pusher (hazard 5).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/page.h"
#include "mf2/pending_queue.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

constexpr int kPushers = 4;
constexpr size_t kPagesPerPusher = 32;
constexpr size_t kPages = kPushers * kPagesPerPusher;
const uint64_t kPushesPerPusher = stress::Scaled(500000);

struct Item {
  std::atomic<bool> queued{false};  // set by the pusher before Push_mt, cleared by the consumer
  uint64_t seq = 0;                 // pusher's sequence number of the current push
};

TEST(PendingQueueStressTest, FourPushersOnePopAllConsumerEveryPushOnce) {
  std::unique_ptr<Page[]> pages(new Page[kPages]);
  std::unique_ptr<Item[]> items(new Item[kPages]);
  auto index_of = [&](const Page* p) { return static_cast<size_t>(p - pages.get()); };
  PendingQueue queue;
  std::atomic<int> pushers_left{kPushers};
  std::vector<std::vector<uint64_t>> received(kPushers);
  uint64_t chains = 0, longest = 0;

  stress::RunTogether(kPushers + 1, [&](int id) {
    if (id < kPushers) {
      stress::OwnSlots own(static_cast<size_t>(id) * kPagesPerPusher, kPagesPerPusher);
      uint64_t seq = 0;
      while (seq < kPushesPerPusher) {
        const size_t i = own.Next([&](size_t j) {
          // Acquire: pairs with the consumer's release clear; the page's link is ours again.
          return items[j].queued.load(std::memory_order_acquire);
        });
        items[i].queued.store(true, std::memory_order_relaxed);
        items[i].seq = ++seq;  // published by Push_mt's CAS
        queue.Push_mt(&pages[i]);
      }
      pushers_left.fetch_sub(1, std::memory_order_release);
      return;
    }
    // Consumer.
    std::vector<uint64_t> last_in_chain(kPushers);
    for (;;) {
      // Acquire: once every pusher is done, one more PopAll sees all of their pushes.
      const bool finished = pushers_left.load(std::memory_order_acquire) == 0;
      Page* chain = queue.PopAll();
      if (chain == nullptr) {
        if (finished) break;
        std::this_thread::yield();
        continue;
      }
      ++chains;
      std::fill(last_in_chain.begin(), last_in_chain.end(), UINT64_MAX);
      uint64_t length = 0;
      for (Page* p = chain; p != nullptr;) {
        ASSERT_LT(++length, kPages + 1) << "chain longer than the pages that exist (cycle?)";
        const size_t i = index_of(p);
        ASSERT_LT(i, kPages) << "a link that is not one of our pages";
        Page* next = p->pending_next();  // hazard 5: read the link before releasing the page
        const size_t pusher = i / kPagesPerPusher;
        EXPECT_TRUE(items[i].queued.load(std::memory_order_relaxed));
        const uint64_t seq = items[i].seq;
        EXPECT_LT(seq, last_in_chain[pusher]) << "a pusher's items come newest first";
        last_in_chain[pusher] = seq;
        received[pusher].push_back(seq);
        // Release: our reads of the page happen before the pusher reuses it.
        items[i].queued.store(false, std::memory_order_release);
        p = next;
      }
      longest = std::max(longest, length);
    }
  });

  EXPECT_EQ(queue.PeekRelaxed(), nullptr);
  for (int p = 0; p < kPushers; ++p) {
    std::vector<uint64_t>& got = received[static_cast<size_t>(p)];
    ASSERT_EQ(got.size(), kPushesPerPusher) << "pusher " << p << ": pushes received";
    std::sort(got.begin(), got.end());
    for (uint64_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], i + 1) << "pusher " << p << ": every push received exactly once";
    }
  }
  EXPECT_GT(chains, 0u);
  EXPECT_GT(longest, 1u) << "pushes overlapped (some pop-all took several pages at once)";
  for (size_t i = 0; i < kPages; ++i) EXPECT_FALSE(items[i].queued.load());
}

}  // namespace
}  // namespace mf2
