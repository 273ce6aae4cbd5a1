// A page's remote stack on its own: N pushers (remote freers) and one owner that takes blocks
// with TakeAll (after "dequeuing" the page) and TakeBlocksKeepFlag (collecting its active page).
//
// Blocks carry (pusher, sequence); a pusher re-pushes a block only after the owner has taken it
// back. Asserted: every push is taken exactly once; every taken chain is exactly `count` long;
// a snapshot with blocks always has the flag set (no stranded blocks, invariant 8 in miniature).
//
// The flag's edges. Only Push_mt sets in_remote_pending (returning true exactly when it turned it
// 0->1) and only TakeAll clears it; TakeBlocksKeepFlag never changes it. So the flag alternates
// 0 -> 1 (an edge won) -> 0 (a TakeAll that returned pending) -> ..., starting clear, and
//     edges won == TakeAll calls that returned pending + (flag set at the end ? 1 : 0).
// In the protocol-faithful mode the owner calls TakeAll only for a "queue token" an edge winner
// produced (as the owner drains only pages popped off its queue); then, in addition, tokens are
// never more than one (never enqueued twice, invariant 5) and every TakeAll returns pending.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/block.h"
#include "mf2/remote_stack.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

constexpr int kPushers = 4;
constexpr size_t kBlocksPerPusher = 64;
constexpr size_t kBlocks = kPushers * kBlocksPerPusher;
const uint64_t kPushesPerPusher = stress::Scaled(500000);

struct alignas(16) TestBlock {
  Block block;  // the link the stack writes (and the canary word, unused here)
  uint32_t pusher;
  uint32_t seq;
};
static_assert(sizeof(TestBlock) == 32, "a block's two words, then the payload");

struct Slot {
  std::atomic<bool> pushed{false};  // set by the pusher, cleared by the owner once taken back
};

struct Result {
  uint64_t edges = 0;             // Push_mt calls that returned true
  uint64_t take_all_pending = 0;  // TakeAll calls that returned pending()
  uint64_t take_all_clear = 0;    // TakeAll calls that returned !pending()
  uint64_t keep_flag_takes = 0;
  uint64_t blocks_taken = 0;
  bool final_flag = false;
};

Result RunStack(bool faithful) {
  std::unique_ptr<TestBlock[]> blocks(new TestBlock[kBlocks]);
  std::unique_ptr<Slot[]> slots(new Slot[kBlocks]);
  RemoteStack stack;
  std::atomic<uint64_t> tokens{0};  // edges won and not yet "dequeued" (faithful mode)
  std::atomic<uint64_t> edges{0};
  std::atomic<int> pushers_left{kPushers};
  std::vector<std::vector<uint32_t>> received(kPushers);
  Result result;

  auto absorb = [&](RemoteWord w) {
    uint32_t n = 0;
    for (Block* b = w.head(); b != nullptr;) {
      auto* tb = reinterpret_cast<TestBlock*>(b);
      const size_t i = static_cast<size_t>(tb - blocks.get());
      EXPECT_LT(i, kBlocks);
      EXPECT_LE(++n, w.count()) << "chain longer than its count";
      if (i >= kBlocks || n > w.count()) break;
      Block* next = LoadNext(b);  // read the link before the pusher may reuse the block
      received[tb->pusher].push_back(tb->seq);
      // Release: our reads of the block happen before its pusher writes it again.
      slots[i].pushed.store(false, std::memory_order_release);
      b = next;
    }
    EXPECT_EQ(n, w.count()) << "remote.count == |remote chain|";
    result.blocks_taken += n;
  };

  stress::RunTogether(kPushers + 1, [&](int id) {
    if (id < kPushers) {
      stress::OwnSlots own(static_cast<size_t>(id) * kBlocksPerPusher, kBlocksPerPusher);
      uint32_t seq = 0;
      uint64_t won = 0;
      while (seq < kPushesPerPusher) {
        const size_t i = own.Next([&](size_t j) {
          // Acquire: pairs with the owner's release; the block is ours again.
          return slots[j].pushed.load(std::memory_order_acquire);
        });
        slots[i].pushed.store(true, std::memory_order_relaxed);
        blocks[i].pusher = static_cast<uint32_t>(id);
        blocks[i].seq = ++seq;  // published by Push_mt's release CAS
        const bool edge = stack.Push_mt(&blocks[i].block);
        if (edge) ++won;
        if (edge && faithful) {
          // acq_rel: the token is the page on the owner's queue; at most one may exist.
          const uint64_t before = tokens.fetch_add(1, std::memory_order_acq_rel);
          EXPECT_EQ(before, 0u) << "a second 0->1 edge while the page was still queued";
        }
        const RemoteWord snap = stack.Peek();
        EXPECT_TRUE(snap.count() == 0 || snap.pending()) << "blocks on the stack, flag clear";
      }
      edges.fetch_add(won, std::memory_order_relaxed);
      pushers_left.fetch_sub(1, std::memory_order_release);
      return;
    }
    // Owner.
    stress::Rng rng(12345);
    for (;;) {
      const bool finished = pushers_left.load(std::memory_order_acquire) == 0;
      const RemoteWord snap = stack.Peek();
      EXPECT_TRUE(snap.count() == 0 || snap.pending()) << "blocks on the stack, flag clear";
      bool took = false;
      if (faithful) {
        // Dequeue the page if an edge winner queued it, else collect as the active page.
        if (tokens.load(std::memory_order_acquire) > 0 && rng.OneIn(2)) {
          tokens.fetch_sub(1, std::memory_order_acq_rel);
          const RemoteWord w = stack.TakeAll();
          EXPECT_TRUE(w.pending()) << "a queued page has its flag set until TakeAll";
          ++result.take_all_pending;
          absorb(w);
          took = w.count() > 0;
        } else {
          const RemoteWord w = stack.TakeBlocksKeepFlag();
          EXPECT_FALSE(w.pending());
          ++result.keep_flag_takes;
          absorb(w);
          took = w.count() > 0;
        }
      } else {
        const bool keep_flag = rng.OneIn(3);
        const RemoteWord w = keep_flag ? stack.TakeBlocksKeepFlag() : stack.TakeAll();
        if (keep_flag) {
          EXPECT_FALSE(w.pending()) << "TakeBlocksKeepFlag reports blocks only";
          ++result.keep_flag_takes;
        } else if (w.pending()) {
          ++result.take_all_pending;
        } else {
          ++result.take_all_clear;
          EXPECT_EQ(w.count(), 0u) << "a clear flag means an empty stack (invariant 8)";
        }
        absorb(w);
        took = w.count() > 0;
      }
      if (!took) {
        if (finished && stack.Peek().count() == 0) break;
        std::this_thread::yield();
      }
    }
  });

  // Final state: no blocks left (the owner looped until the stack was empty after the end).
  const RemoteWord last = stack.Peek();
  EXPECT_EQ(last.count(), 0u);
  result.final_flag = last.pending();
  result.edges = edges.load();
  if (faithful) {
    EXPECT_EQ(tokens.load(), result.final_flag ? 1u : 0u) << "flag set <=> page queued";
  }
  for (int p = 0; p < kPushers; ++p) {
    std::vector<uint32_t>& got = received[static_cast<size_t>(p)];
    EXPECT_EQ(got.size(), kPushesPerPusher) << "pusher " << p;
    std::sort(got.begin(), got.end());
    for (uint32_t i = 0; i < got.size(); ++i) {
      if (got[i] != i + 1) {
        ADD_FAILURE() << "pusher " << p << ": push " << i + 1 << " not taken exactly once";
        break;
      }
    }
  }
  EXPECT_EQ(result.blocks_taken, kPushesPerPusher * kPushers) << "pushes == blocks taken";
  return result;
}

TEST(RemoteStackStressTest, ProtocolFaithfulOwnerEdgesMatchDrains) {
  const Result r = RunStack(/*faithful=*/true);
  EXPECT_EQ(r.edges, r.take_all_pending + (r.final_flag ? 1 : 0));
  EXPECT_GT(r.keep_flag_takes, 0u);
  EXPECT_GT(r.take_all_pending, 0u);
}

TEST(RemoteStackStressTest, FreeRunningOwnerEdgesMatchClearingTakes) {
  const Result r = RunStack(/*faithful=*/false);
  EXPECT_EQ(r.edges, r.take_all_pending + (r.final_flag ? 1 : 0))
      << "edges won == TakeAll calls that cleared the flag + final flag";
  EXPECT_GT(r.edges, 1u);
}

}  // namespace
}  // namespace mf2
