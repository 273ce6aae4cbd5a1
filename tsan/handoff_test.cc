// TSan sees MF2's hand-offs: blocks move between threads through MF2 itself, and the threads
// touch the blocks' memory with plain reads and writes on both sides. The only thing ordering
// the freeing thread's writes before the reusing thread's accesses is MF2's own synchronization
// (the release CAS of RemoteStack::Push_mt and the acquiring drain; the pending queue; heap
// claims). Under --config=tsan (halt_on_error=1, empty suppressions) any missing order would be
// reported as a data race and fail the test. In other configurations the same code runs as an
// ordinary functional test with content checks.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/mf2.hpp"
#include "mf2/testing/test_heaps.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

constexpr size_t kSize = 2048;  // 32 blocks per page: pages fill and are reused quickly
const uint64_t kBlocks = stress::Scaled(60000);

// Layout of a block in flight: [0, kOwned) belongs to MF2 once freed (the link, the canary and,
// on a remote chain, the prefetch hint: mf2/block.h); the owner writes `tag` at kOwned; the
// freer, the last user before the free, writes tag + 1 at kOwned + 8 and a fill derived from it
// over the rest. When the owner gets the block back from MF2 it reads all of that.
constexpr size_t kOwned = kHintBlockBytes;
constexpr size_t kTagAt = kOwned;
constexpr size_t kMineAt = kOwned + 8;
constexpr size_t kFillAt = kOwned + 16;
void OwnerWrite(void* p, uint64_t tag) {
  std::memset(p, 0x5a, kSize);
  std::memcpy(static_cast<char*>(p) + kTagAt, &tag, sizeof(tag));
}
bool FreerCheckAndWrite(void* p) {
  uint64_t tag;
  std::memcpy(&tag, static_cast<char*>(p) + kTagAt, sizeof(tag));
  const char* c = static_cast<const char*>(p);
  for (size_t i = kMineAt; i < kSize; ++i) {
    if (c[i] != 0x5a) return false;
  }
  const uint64_t mine = tag + 1;
  std::memcpy(static_cast<char*>(p) + kMineAt, &mine, sizeof(mine));
  std::memset(static_cast<char*>(p) + kFillAt, static_cast<int>(mine & 0xff), kSize - kFillAt);
  return true;
}
bool OwnerCheckReturned(const void* p) {
  uint64_t tag, mine;
  std::memcpy(&tag, static_cast<const char*>(p) + kTagAt, sizeof(tag));
  std::memcpy(&mine, static_cast<const char*>(p) + kMineAt, sizeof(mine));
  if (mine != tag + 1) return false;
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = kFillAt; i < kSize; ++i) {
    if (c[i] != (mine & 0xff)) return false;
  }
  return true;
}

// Whether p's kSize bytes all read zero: what a block reads after its page went back to the OS
// (madvise) and was carved again, which MF2 otherwise never writes into a block it hands out.
bool AllZero(const void* p) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < kSize; ++i) {
    if (c[i] != 0) return false;
  }
  return true;
}

// Owner allocates and writes; the pointer goes to the freer through a queue (the user's own
// hand-off); the freer checks, writes and frees remotely; the owner later gets the block back
// from MF2 and reads what the freer wrote. Unless the block's page came back whole meanwhile and
// went to the OS (the page cache's decay returns such spans within tens of milliseconds, and
// under TSan the owner is slow enough for that): then the block reads zero, and at least one
// span went back to the OS during the run.
template <typename AllocFn, typename FreeFn>
void RunRemoteFreeAndReuse(AllocFn owner_alloc, FreeFn freer_free, const char* what) {
  stress::BlockingQueue<void*> to_freer(256);
  const uint64_t returned_before = GetStats().spans_returned_to_os;
  uint64_t reused = 0;
  uint64_t recarved = 0;  // blocks that came back zero, from a page returned to the OS
  std::atomic<uint64_t> bad{0};
  stress::RunTogether(2, [&](int id) {
    if (id == 1) {
      void* p;
      while (to_freer.Pop(&p)) {
        if (!FreerCheckAndWrite(p)) bad.fetch_add(1);
        freer_free(p);
      }
      return;
    }
    std::unordered_set<void*> with_freer;  // owner-only: blocks it handed over
    for (uint64_t i = 0; i < kBlocks; ++i) {
      void* p = owner_alloc();
      ASSERT_NE(p, nullptr);
      if (with_freer.erase(p) == 1) {
        ++reused;
        if (!OwnerCheckReturned(p) && AllZero(p)) {
          ++recarved;
        } else {
          EXPECT_TRUE(OwnerCheckReturned(p)) << what << ": the freer's writes are visible";
        }
      }
      OwnerWrite(p, i);
      with_freer.insert(p);
      to_freer.Push(p);
    }
    to_freer.Close();
  });
  EXPECT_EQ(bad.load(), 0u) << what << ": the owner's writes reached the freer";
  EXPECT_GT(reused, kBlocks / 4) << what << ": blocks came back through MF2";
  if (recarved != 0) {
    EXPECT_GT(GetStats().spans_returned_to_os, returned_before)
        << what << ": " << recarved << " blocks came back zero, but no span went to the OS";
  }
}

TEST(HandoffTest, RemoteFreeThenOwnerReuseOnExplicitHeaps) {
  testing::CountingPageSource* source = testing::NewPermanentSource();
  Heap* owner = nullptr;
  Heap* freer = nullptr;
  stress::RunTogether(2, [&](int id) {  // each heap is acquired on its own thread
    (id == 0 ? owner : freer) = HeapRegistry::Global().AcquireHeap(source);
  });
  // The heaps change threads once more here, ordered by the thread starts below.
  RunRemoteFreeAndReuse([&] { return owner->Allocate(kSize); }, [&](void* p) { freer->Free(p); },
                        "explicit heaps");
  EXPECT_GT(freer->stats().Get(HeapStats::k_remote_frees), 0u);
  EXPECT_GT(owner->stats().Get(HeapStats::k_remote_blocks_drained), 0u);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  // Blocks still on remote stacks are drained when the owner's heap is released.
  HeapRegistry::Global().ReleaseHeap(freer);
  HeapRegistry::Global().ReleaseHeap(owner);
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  EXPECT_EQ(source->outstanding(), 0u);
}

TEST(HandoffTest, RemoteFreeThenOwnerReuseOnThreadLocalHeaps) {
  RunRemoteFreeAndReuse([] { return mf2::Allocate(kSize); }, [](void* p) { mf2::Free(p); },
                        "thread-local heaps");
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

// A heap whose thread is done keeps receiving remote frees (the freer drains it as the claim
// holder) while a third thread takes the heap over and reuses its blocks. The freer and the new
// owner share no synchronization of their own: the freer's writes and links reach the new owner
// only through the remote stack, the pending queue and the heap claim.
TEST(HandoffTest, FreesIntoAReleasedHeapWhileASuccessorTakesItOver) {
  testing::CountingPageSource* source = testing::NewPermanentSource();
  testing::CountingPageSource* other = testing::NewPermanentSource();
  const uint64_t rounds = stress::Scaled(200) < 24 ? 24 : stress::Scaled(200);
  constexpr size_t kPerRound = 96;
  for (uint64_t r = 0; r < rounds; ++r) {
    std::vector<void*> blocks;
    std::thread first([&] {
      Heap* h = HeapRegistry::Global().AcquireHeap(source);
      for (size_t i = 0; i < kPerRound; ++i) {
        void* p = h->Allocate(kSize);
        OwnerWrite(p, i);
        blocks.push_back(p);
      }
      HeapRegistry::Global().ReleaseHeap(h);  // exits with every block live
    });
    first.join();  // `blocks` reach the freer through the join (the user's hand-off)
    stress::RunTogether(2, [&](int id) {
      if (id == 0) {  // freer, on a heap of another source: every free is remote
        Heap* h = HeapRegistry::Global().AcquireHeap(other);
        for (void* p : blocks) {
          EXPECT_TRUE(FreerCheckAndWrite(p));
          h->Free(p);
        }
        HeapRegistry::Global().ReleaseHeap(h);
      } else {  // successor: takes the released heap over and reuses whatever came back
        Heap* h = HeapRegistry::Global().AcquireHeap(source);
        std::vector<void*> mine;
        for (size_t i = 0; i < kPerRound; ++i) {
          void* p = h->Allocate(kSize);
          OwnerWrite(p, i);
          mine.push_back(p);
        }
        for (void* p : mine) h->Free(p);
        HeapRegistry::Global().ReleaseHeap(h);
      }
    });
  }
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  const Stats s = GetStats();
  EXPECT_GT(s.dead_owner_reclaims + s.heaps_reused, 0u) << "the released heap changed hands";
  EXPECT_EQ(source->outstanding(), 0u);
  EXPECT_EQ(other->outstanding(), 0u);
}

}  // namespace
}  // namespace mf2
