// The page and its remote stack, single-threaded: the packed word's edge semantics, direct
// collection keeping the flag, the adopter's flag, and the page equations after each step.
#include "mf2/page.h"

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/page_source.h"
#include "mf2/pending_queue.h"

namespace mf2 {
namespace {

TEST(RemoteStack, EdgeIsWonOncePerFlagClear) {
  alignas(16) Block blocks[4];
  RemoteStack rs;
  EXPECT_TRUE(rs.Push_mt(&blocks[0])) << "0->1 edge";
  EXPECT_FALSE(rs.Push_mt(&blocks[1]));
  EXPECT_FALSE(rs.Push_mt(&blocks[2]));
  RemoteWord w = rs.Peek();
  EXPECT_TRUE(w.pending());
  EXPECT_EQ(w.count(), 3u);
  EXPECT_EQ(w.head(), &blocks[2]);
  // Direct collection takes the blocks, leaves the flag: no second edge until TakeAll.
  RemoteWord taken = rs.TakeBlocksKeepFlag();
  EXPECT_EQ(taken.count(), 3u);
  EXPECT_FALSE(taken.pending());
  EXPECT_EQ(rs.Peek().raw(), RemoteWord::kFlag);
  EXPECT_FALSE(rs.Push_mt(&blocks[3]));
  RemoteWord all = rs.TakeAll();
  EXPECT_TRUE(all.pending());
  EXPECT_EQ(all.count(), 1u);
  EXPECT_EQ(rs.Peek().raw(), 0u);
  EXPECT_TRUE(rs.Push_mt(&blocks[0])) << "flag cleared: the next push wins the edge again";
  rs.TakeAll();
}

TEST(RemoteStack, AdopterFlagBlocksEnqueueAndIsRefusedWhenQueued) {
  alignas(16) Block b;
  RemoteStack rs;
  EXPECT_TRUE(rs.TryAcquireFlag());
  EXPECT_FALSE(rs.Push_mt(&b)) << "the adopter holds the flag: producers do not enqueue";
  EXPECT_FALSE(rs.TryAcquireFlag());
  EXPECT_EQ(rs.TakeAll().count(), 1u);
  EXPECT_TRUE(rs.Push_mt(&b));
  EXPECT_FALSE(rs.TryAcquireFlag()) << "queued (flag set): cannot be taken over";
  rs.TakeAll();
}

TEST(PendingQueue, PopAllReturnsEveryPushMostRecentFirst) {
  std::vector<Page> pages(3);
  PendingQueue q;
  EXPECT_EQ(q.PopAll(), nullptr);
  for (Page& p : pages) q.Push_mt(&p);
  Page* chain = q.PopAll();
  EXPECT_EQ(chain, &pages[2]);
  EXPECT_EQ(chain->pending_next(), &pages[1]);
  EXPECT_EQ(chain->pending_next()->pending_next(), &pages[0]);
  EXPECT_EQ(pages[0].pending_next(), nullptr);
  EXPECT_TRUE(q.EmptySeqCst());
}

class PageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    head_ = OsPageSource::Global().AllocateSpan(ClassInfo(kClass).slices);
    Segment* s = SegmentOf(head_);
    head_->InitForClass(kClass, s->slice_start(s->slice_index(head_)), nullptr);
  }
  void TearDown() override {
    head_->Retire();
    OsPageSource::Global().FreeSpan(head_);
  }
  static constexpr uint32_t kClass = 12;  // 192 bytes
  Page* head_ = nullptr;
};

TEST_F(PageTest, ConservationThroughLocalAndRemoteFrees) {
  const uint32_t cap = head_->capacity();
  std::vector<Block*> live;
  for (uint32_t i = 0; i < cap; ++i) live.push_back(head_->Pop());
  EXPECT_EQ(head_->Pop(), nullptr);
  EXPECT_EQ(head_->used(), cap);
  head_->CheckInvariants(true);
  bool exact;
  // Local frees of the even blocks, remote pushes of the odd ones.
  for (uint32_t i = 0; i < cap; ++i) {
    if (i % 2 == 0) {
      head_->PushLocal(live[i], head_->BlockIndex(live[i], &exact));
    } else {
      head_->remote().Push_mt(live[i]);
    }
  }
  EXPECT_EQ(head_->used(), cap / 2) << "remote blocks count as used until drained";
  // Quiescent check would fail: remote blocks are flagged but no queue holds the page here.
  head_->CheckInvariants(false);
  EXPECT_EQ(head_->AbsorbRemote(head_->remote().TakeAll()), cap / 2);
  EXPECT_EQ(head_->used(), 0u);
  head_->CheckInvariants(true);
  // Every block comes back exactly once.
  std::vector<Block*> again;
  while (Block* b = head_->Pop()) again.push_back(b);
  EXPECT_EQ(again.size(), cap);
  for (Block* b : again) head_->PushLocal(b, head_->BlockIndex(b, &exact));
  head_->CheckInvariants(true);
}

TEST_F(PageTest, BlockIndexRecognisesBlockStartsOnly) {
  Block* b = head_->Pop();
  bool exact = false;
  EXPECT_EQ(head_->BlockIndex(b, &exact), 0u);
  EXPECT_TRUE(exact);
  head_->BlockIndex(reinterpret_cast<char*>(b) + 8, &exact);
  EXPECT_FALSE(exact);
  EXPECT_TRUE(head_->IsLive(0));
  head_->PushLocal(b, 0);
  EXPECT_FALSE(head_->IsLive(0));
}

}  // namespace
}  // namespace mf2
