// The page and its remote stack, single-threaded: the packed word's edge semantics, direct
// collection keeping the flag, the adopter's flag, and the page equations after each step.
#include "mf2/page.h"

#include <cstddef>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/page_source.h"
#include "mf2/pending_queue.h"
#include "mf2/testing/scoped_reports.h"

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
    head_->InitForClass(kClass, nullptr);
  }
  void TearDown() override {
    if (head_ == nullptr) return;  // a test that lost blocks on purpose leaks its span
    head_->Retire();
    OsPageSource::Global().FreeSpan(head_);
  }
  // One block as a heap's cache would get it (canary kInCache), or nullptr.
  Block* Pop() {
    void* b = nullptr;
    return head_->PopBatch(&b, 1) == 1 ? static_cast<Block*>(b) : nullptr;
  }
  // A block handed to the program: its canary cleared, as Heap::Allocate does.
  Block* Hand() {
    Block* b = Pop();
    if (b != nullptr) StoreCanary(b, 0);
    return b;
  }
  // A remote free: canary kOnRemote, then the push.
  void PushRemote(Block* b) {
    StoreCanary(b, Canary(b, kOnRemote));
    head_->remote().Push_mt(b);
  }
  static constexpr uint32_t kClass = 12;  // 192 bytes
  Page* head_ = nullptr;
};

TEST_F(PageTest, ConservationThroughLocalAndRemoteFrees) {
  const uint32_t cap = head_->capacity();
  std::vector<Block*> live;
  for (uint32_t i = 0; i < cap; ++i) live.push_back(Hand());
  EXPECT_EQ(Pop(), nullptr);
  EXPECT_EQ(head_->used(), cap);
  head_->CheckInvariants(true);
  // Local frees of the even blocks, remote pushes of the odd ones.
  for (uint32_t i = 0; i < cap; ++i) {
    if (i % 2 == 0) {
      head_->PushLocal(live[i]);
    } else {
      PushRemote(live[i]);
    }
  }
  EXPECT_EQ(head_->used(), cap / 2) << "remote blocks count as used until drained";
  // Quiescent check would fail: remote blocks are flagged but no queue holds the page here.
  head_->CheckInvariants(false);
  EXPECT_EQ(head_->CollectRemote(head_->remote().TakeAll()), cap / 2);
  EXPECT_EQ(head_->used(), 0u);
  head_->CheckInvariants(true);
  // Every block comes back exactly once, the list's head first: the drain moved the remote stack
  // (most recent push first) onto the list, so the first block pushed remotely ends on top.
  std::vector<void*> again(cap + 1);
  EXPECT_EQ(head_->PopBatch(again.data(), cap + 1), cap);
  again.resize(cap);
  EXPECT_EQ(again[0], live[1]);
  std::sort(again.begin(), again.end());
  EXPECT_EQ(std::adjacent_find(again.begin(), again.end()), again.end()) << "no block twice";
  for (void* b : again) EXPECT_EQ(LoadCanary(b), Canary(b, kInCache));
  for (void* b : again) head_->PushLocal(static_cast<Block*>(b));
  head_->CheckInvariants(true);
}

// The free path's block-start test: exactly the starts of blocks 0..capacity-1, found from every
// slice of the span, and nothing in the segment header.
TEST_F(PageTest, BlockStartsAreRecognisedOnEverySliceAndNothingElse) {
  const uintptr_t start = reinterpret_cast<uintptr_t>(head_->start());
  const uint32_t size = head_->block_size();
  Segment* s = SegmentOf(head_);
  for (uintptr_t a = start; a < start + head_->span_slices * kSliceSize; a += 8) {
    const Slice* slice = SliceOf(a);
    ASSERT_NE(slice, nullptr);
    const bool expected = (a - start) % size == 0 && (a - start) / size < head_->capacity();
    ASSERT_EQ(IsBlockOffset(SpanOffset(a, slice), slice->size_class()), expected) << a - start;
    ASSERT_EQ(IsBlockStart(a), expected) << a - start;
    ASSERT_EQ(head_->IsBlockStart(a), expected) << a - start;
    ASSERT_EQ(PageOf(reinterpret_cast<void*>(a)), head_);
  }
  for (uintptr_t a = reinterpret_cast<uintptr_t>(s); a < start; a += 64) {
    ASSERT_FALSE(IsBlockStart(a)) << "the segment header and other spans' slices hold no block";
  }
}

// A use-after-free write of a foreign address into a free block's link, or an overflow into it,
// is reported when the list is popped and never followed (issue: free lists trusted blindly).
TEST_F(PageTest, CorruptLinksAreReportedAndNeverFollowed) {
  testing::ScopedReports capture;
  std::vector<ErrorReport>* reports = &capture.reports();
  std::vector<Block*> live;
  for (int i = 0; i < 6; ++i) live.push_back(Hand());
  for (Block* b : live) head_->PushLocal(b);  // list: 5 4 3 2 1 0
  // A foreign address in block 4's link (the program wrote into a freed block).
  static char foreign[64];
  StoreNext(live[4], reinterpret_cast<Block*>(foreign));
  std::vector<void*> out(8);
  const uint32_t got = head_->PopBatch(out.data(), 3);
  EXPECT_EQ(got, 3u) << "block 5, block 4, then a fresh block: the bad link is not followed";
  EXPECT_EQ(out[0], live[5]);
  EXPECT_EQ(out[1], live[4]);
  EXPECT_NE(out[2], static_cast<void*>(foreign));
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ((*reports)[0].kind, ErrorKind::kCorruptFreeList);
  EXPECT_EQ((*reports)[0].pointer, static_cast<const void*>(foreign)) << "the word as planted";
  EXPECT_EQ((*reports)[0].block, static_cast<const void*>(live[4])) << "the block holding it";
  // Blocks 3..0 were cut off the list: they stay counted as handed out (never reused).
  head_->CheckInvariants(true);
  EXPECT_EQ(head_->used(), 3u + 4u) << "three handed out, four cut off";
  // A one-byte overflow into a free block's link: not a block start.
  Block* x = Hand();
  Block* y = Hand();
  head_->PushLocal(x);
  head_->PushLocal(y);  // list: y x
  StoreNext(y, reinterpret_cast<Block*>(reinterpret_cast<uintptr_t>(LoadNext(y)) ^ 0x01));
  reports->clear();
  void* two[2];
  EXPECT_EQ(head_->PopBatch(two, 2), 2u);
  EXPECT_EQ(two[0], y);
  EXPECT_NE(two[1], x) << "the corrupted link is not followed";
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ((*reports)[0].kind, ErrorKind::kCorruptFreeList);
  // A block whose canary was overwritten after it was freed is not handed out.
  Block* z = Hand();
  head_->PushLocal(z);
  StoreCanary(z, 0x1234);
  reports->clear();
  void* one[1];
  EXPECT_EQ(head_->PopBatch(one, 1), 1u);
  EXPECT_NE(one[0], z);
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ((*reports)[0].pointer, z);
  head_->CheckInvariants(true);
  head_ = nullptr;  // blocks cut off stay handed out for good: the span is never released
}

// A refill that collects the page it pops from (Heap::CollectActive) takes the first blocks of
// the remote list straight into its cache: canary kInCache, still counted in used(), most recent
// free first; the rest go on the local list as before. A list that is not well formed is cut
// where it goes bad, in either part, and what was cut off stays counted as handed out.
TEST_F(PageTest, CollectRemoteHandsTheFirstBlocksToARefill) {
  testing::ScopedReports capture;
  std::vector<ErrorReport>* reports = &capture.reports();
  std::vector<Block*> live;
  for (int i = 0; i < 8; ++i) live.push_back(Hand());
  for (int i = 0; i < 6; ++i) PushRemote(live[i]);  // remote list: 5 4 3 2 1 0
  void* out[4] = {};
  EXPECT_EQ(head_->CollectRemote(head_->remote().TakeAll(), out, 4), 6u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i], live[5 - i]);
    EXPECT_EQ(LoadCanary(out[i]), Canary(out[i], kInCache));
  }
  EXPECT_EQ(head_->local_count(), 2u) << "blocks 1 and 0 on the local list";
  EXPECT_EQ(head_->used(), 2u + 4u) << "blocks 6 and 7 handed out, four in the refill";
  head_->CheckInvariants(true);
  void* rest[2] = {};
  EXPECT_EQ(head_->PopBatch(rest, 2, 0), 2u);
  EXPECT_EQ(rest[0], live[0]);
  EXPECT_EQ(rest[1], live[1]);
  EXPECT_TRUE(reports->empty());
  // Bad in the refill's part: a canary overwritten after the block's remote free (a use after
  // free). The two blocks before it go to the refill; it and the two after it are cut off.
  for (int i = 0; i < 5; ++i) PushRemote(static_cast<Block*>(i < 4 ? out[3 - i] : rest[0]));
  // remote list now: live[0] live[5] live[4] live[3] live[2]
  StoreCanary(live[4], 0x1234);
  void* two[3] = {};
  EXPECT_EQ(head_->CollectRemote(head_->remote().TakeAll(), two, 3), 2u);
  EXPECT_EQ(two[0], live[0]);
  EXPECT_EQ(two[1], live[5]);
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ((*reports)[0].kind, ErrorKind::kDoubleFree);
  EXPECT_EQ((*reports)[0].pointer, live[4]);
  EXPECT_EQ(head_->local_count(), 0u);
  EXPECT_EQ(head_->used(), 8u) << "live[1] held, two in the refill, three cut off, two held";
  head_->CheckInvariants(true);
  // Bad past the refill's part: the refill gets its blocks, those before the bad node go on the
  // local list, the rest is cut off.
  PushRemote(live[7]);
  PushRemote(live[6]);
  PushRemote(static_cast<Block*>(rest[1]));  // remote list: live[1] live[6] live[7]
  StoreCanary(live[7], 0x5678);
  reports->clear();
  void* one[1] = {};
  EXPECT_EQ(head_->CollectRemote(head_->remote().TakeAll(), one, 1), 2u);
  EXPECT_EQ(one[0], live[1]);
  EXPECT_EQ(head_->local_count(), 1u) << "block 6";
  ASSERT_EQ(reports->size(), 1u);
  EXPECT_EQ((*reports)[0].pointer, live[7]);
  head_->CheckInvariants(true);
  head_ = nullptr;  // blocks cut off stay handed out for good: the span is never released
}

}  // namespace
}  // namespace mf2
