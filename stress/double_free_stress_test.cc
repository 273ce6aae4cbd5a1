// Double frees through the per-thread caches (heap.h, "Double frees"; block.h canaries), with a
// counting error handler in place of MF2_ON_ERROR=abort (report semantics: report, ignore the
// call, continue).
//
// Deterministic (explicit heaps on one thread): every sequential double free - by the owner of a
// block in its cache, by a remote thread twice, owner then remote, remote then owner, after a
// flush to the page - is reported at the second free, with kind kDoubleFree and the pointer, and
// nothing changes: the block is handed out once afterwards and the invariants hold.
//
// Concurrent (real threads): an owner and a remote thread (or two remote threads) free the same
// blocks at the same moment, over many rounds. Each round:
//   A. the owner allocates N blocks of one class (N <= its cache's capacity) and stamps them;
//   B. the freers free all N at once (owner: into its cache; remote: onto the page's stack);
//   C. with the freers parked, the owner allocates until the page source hands out a new span,
//      so every free block of its pages, cached copies and remote copies alike, has been handed
//      out: none may be handed out twice (an ownership set of live blocks) and every payload
//      stamp must survive; then it frees them all, flushes, and HeapRegistry::CheckAll runs.
// Each round must produce between 1 and N reports, all kDoubleFree, each naming a block of the
// round at most once (a double free is seen at the second free, or later when the racing copy is
// met: at a cache pop or a drain; a drain that meets a bad node drops the rest of its list, so
// reports of later nodes can be hidden, never multiplied).
//
// The phases are chosen so that the owner neither flushes nor drains while a racing copy of a
// block may exist (N <= capacity; phase C pops the cache before any slow path). Two interleavings
// that do so broke the promise before the remote free's canary check and store became one atomic
// step; the reproducers at the end pin both interleavings (see their comments).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/block.h"
#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page.h"
#include "mf2/policy.h"
#include "mf2/segment.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/scoped_reports.h"
#include "mf2/testing/test_heaps.h"
#include "stress/checked_blocks.h"
#include "stress/stress_util.h"
#include "stress/thread_manager.h"

namespace mf2 {
namespace {

using stress::Barrier;
using stress::ThreadGroup;
using testing::ScopedReports;

// ---- Deterministic: sequential double frees are reported at the second free ----------------

constexpr size_t kSize = 1024;
const uint32_t kClass = SizeToClass(kSize);

// Expects exactly one report, for `p`, of kind kDoubleFree, from the entry point "free".
void ExpectOneDoubleFree(ScopedReports& reports, const void* p, const char* what) {
  std::vector<ErrorReport> got = reports.Take();
  ASSERT_EQ(got.size(), 1u) << what << ": the second free is reported, once";
  EXPECT_EQ(got[0].kind, ErrorKind::kDoubleFree) << what << ": " << got[0].detail;
  EXPECT_EQ(got[0].pointer, p) << what << ": the report names the pointer";
  EXPECT_STREQ(got[0].call, "free") << what << ": reported at the free, not later";
}

// After a reported double free nothing changed: allocating the class's free blocks hands `p` out
// exactly once (and everything else once), and the invariants hold.
void ExpectHandedOutOnce(Heap* owner, const void* p, testing::CountingPageSource& source) {
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  std::unordered_set<void*> live;
  const uint64_t spans = source.allocated();
  int seen = 0;
  while (source.allocated() == spans) {
    void* q = owner->Allocate(kSize);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(live.insert(q).second) << "block handed out twice: " << q;
    if (q == p) ++seen;
  }
  EXPECT_EQ(seen, 1) << "the double-freed block is handed out exactly once";
  for (void* q : live) owner->Free(q);
  owner->FlushCaches();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
}

class SequentialDoubleFree : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = heaps_.Acquire();
    b_ = heaps_.Acquire();
    ASSERT_GT(a_->cache(kClass).cap(), 0u) << "caches on (the default policy)";
  }
  testing::TestHeaps heaps_;
  Heap* a_ = nullptr;  // the owner
  Heap* b_ = nullptr;  // another thread
  ScopedReports reports_;
};

TEST_F(SequentialDoubleFree, OwnerFreesACachedBlockTwice) {
  void* p = a_->Allocate(kSize);
  const uint32_t n = a_->cache(kClass).n();
  a_->Free(p);
  ASSERT_EQ(a_->cache(kClass).n(), n + 1) << "the first free puts p in the owner's cache";
  ASSERT_EQ(a_->cache(kClass).slots()[n], p);
  a_->Free(p);
  ExpectOneDoubleFree(reports_, p, "owner, owner (cached)");
  EXPECT_EQ(a_->cache(kClass).n(), n + 1) << "nothing absorbed: p is cached once";
  ExpectHandedOutOnce(a_, p, heaps_.source());
}

TEST_F(SequentialDoubleFree, RemoteThreadFreesTwiceInARow) {
  void* p = a_->Allocate(kSize);
  b_->Free(p);
  b_->FlushRemoteChains();  // b pushes what it held back (as a slow path does)
  ASSERT_EQ(PageOf(p)->remote().Peek().count(), 1u) << "the first free is a remote push";
  b_->Free(p);
  b_->FlushRemoteChains();  // b pushes what it held back (as a slow path does)
  ExpectOneDoubleFree(reports_, p, "remote, remote");
  EXPECT_EQ(PageOf(p)->remote().Peek().count(), 1u) << "nothing absorbed: p is pushed once";
  ExpectHandedOutOnce(a_, p, heaps_.source());
}

TEST_F(SequentialDoubleFree, OwnerThenRemote) {
  void* p = a_->Allocate(kSize);
  a_->Free(p);
  b_->Free(p);
  b_->FlushRemoteChains();  // b pushes what it held back (as a slow path does)
  ExpectOneDoubleFree(reports_, p, "owner (cached), remote");
  EXPECT_EQ(PageOf(p)->remote().Peek().count(), 0u);
  ExpectHandedOutOnce(a_, p, heaps_.source());
}

TEST_F(SequentialDoubleFree, RemoteThenOwner) {
  void* p = a_->Allocate(kSize);
  const uint32_t n = a_->cache(kClass).n();
  b_->Free(p);
  b_->FlushRemoteChains();  // b pushes what it held back (as a slow path does)
  a_->Free(p);
  ExpectOneDoubleFree(reports_, p, "remote, owner");
  EXPECT_EQ(a_->cache(kClass).n(), n) << "not cached";
  ExpectHandedOutOnce(a_, p, heaps_.source());
}

TEST_F(SequentialDoubleFree, AfterAFlushToThePage) {
  void* p = a_->Allocate(kSize);
  a_->Free(p);
  a_->FlushCaches();
  ASSERT_EQ(a_->cache(kClass).n(), 0u);
  a_->Free(p);
  ExpectOneDoubleFree(reports_, p, "owner, flush, owner");
  b_->Free(p);
  b_->FlushRemoteChains();  // b pushes what it held back (as a slow path does)
  ExpectOneDoubleFree(reports_, p, "owner, flush, remote");
  ExpectHandedOutOnce(a_, p, heaps_.source());
}

// ---- Concurrent double frees --------------------------------------------------------------

// The blocks of a round: owner-allocated, stamped with (round, index).
constexpr uint32_t kBlocksPerRound = 48;  // <= the class's cache capacity (63 for 1 KiB)
static_assert(kBlocksPerRound <= 64, "Rendezvous slots");
const uint64_t kRounds = stress::Scaled(2000);

// The blocks are freed twice on purpose, so they are stamped by hand rather than through
// stress::CheckedBlocks (whose shadow set would call the second free the harness's fault).
stress::BlockStamp StampOf(uint32_t owner, uint64_t sequence) {
  return stress::BlockStamp{owner, static_cast<uint32_t>(kSize), sequence};
}
bool StampIntact(const void* p, const stress::BlockStamp& expected) {
  stress::BlockStamp got;
  return stress::ReadStamp(p, &got) && got == expected;
}

struct RoundTotals {
  uint64_t reports = 0;
  uint64_t at_free = 0;  // seen at the second free (the canary was there)
  uint64_t later = 0;    // both frees passed their check; the racing copy was met later
  uint64_t rounds = 0;
};

enum class Freers { kOwnerAndRemote, kTwoRemotes };

// A per-block rendezvous of the two freers, so that their frees of block j start within a few
// cache-line transfers of each other: each announces j and waits for the other's announcement,
// then both free after a random pause of 0..63 spins (so the race windows of both orders are
// covered). It orders the announcements only, never one free before the other.
class Rendezvous {
 public:
  void Meet(int freer, uint32_t j, uint64_t round, stress::Rng& rng) {
    // Release/acquire: only the announcement itself; the frees that follow stay unordered.
    arrive_[freer][j].store(round + 1, std::memory_order_release);
    for (int spins = 0; arrive_[1 - freer][j].load(std::memory_order_acquire) < round + 1;) {
      if (++spins > 1000) std::this_thread::yield();  // the other freer is descheduled
    }
    for (uint64_t n = rng.Below(64); n > 0; --n) {
      // Relaxed: a pause that the compiler must not remove.
      pause_.fetch_add(1, std::memory_order_relaxed);
    }
  }

 private:
  std::atomic<uint64_t> arrive_[2][64] = {};
  std::atomic<uint64_t> pause_{0};
};

// Runs the rounds; returns the totals. Freer threads: 1 (owner+remote) or 2 (two remotes).
RoundTotals RunConcurrentRounds(Freers mode) {
  // Pages never change owner here (idle reclamation would take pages of an owner that is parked
  // between phases), so every copy of a block is met by the owner in phase C.
  testing::ScopedPolicy policy([](Policy* p) {
    p->route = Route::kRouteS;
    p->reclaim_idle = false;
  });
  testing::CountingPageSource* source = testing::NewPermanentSource();
  ScopedReports reports;
  const int freers = mode == Freers::kOwnerAndRemote ? 1 : 2;
  std::vector<void*> blocks(kBlocksPerRound);
  RoundTotals totals;
  Rendezvous meet;
  Barrier phase(1 + freers);
  ThreadGroup group;
  group.Start(1 + freers, [&](int id) {
    Heap* heap = HeapRegistry::Global().AcquireHeap(source);
    std::vector<uint32_t> order(kBlocksPerRound);
    for (uint32_t i = 0; i < kBlocksPerRound; ++i) order[i] = i;
    stress::Rng rng(static_cast<uint64_t>(id) + 7);
    if (id == 0) {
      EXPECT_GE(heap->cache(kClass).cap(), kBlocksPerRound) << "no flush while copies race";
    }
    for (uint64_t r = 0; r < kRounds; ++r) {
      // A: the owner allocates and stamps the round's blocks (its cache holds no copy of any).
      if (id == 0) {
        std::unordered_set<void*> distinct;
        for (uint32_t i = 0; i < kBlocksPerRound; ++i) {
          blocks[i] = heap->Allocate(kSize);
          EXPECT_TRUE(distinct.insert(blocks[i]).second) << "handed out twice: " << blocks[i];
          stress::WriteStamp(blocks[i], StampOf(0, r * kBlocksPerRound + i));
        }
        // An empty cache: the owner's N frees below fit in it (no flush while copies race).
        heap->FlushCaches();
        for (uint32_t i = 0; i < kBlocksPerRound; ++i) {
          EXPECT_TRUE(StampIntact(blocks[i], StampOf(0, r * kBlocksPerRound + i)));
        }
      }
      // The freers' orders: three rounds in four, both free block j together (Rendezvous); the
      // fourth, each runs free in an order of its own (shuffled).
      const bool lockstep = r % 4 != 3;
      if (!lockstep && id > 0) {
        for (uint32_t i = kBlocksPerRound; i > 1; --i) std::swap(order[i - 1], order[rng.Below(i)]);
      }
      phase.Wait();
      // B: every freer frees every block of the round, at once. Nobody reads the blocks here:
      // their first words are the allocator's from the first free on.
      const int freer = mode == Freers::kOwnerAndRemote ? id : id - 1;  // -1: the idle owner
      if (freer >= 0) {
        for (uint32_t j = 0; j < kBlocksPerRound; ++j) {
          const uint32_t i = lockstep ? j : order[j];
          if (lockstep) meet.Meet(freer, i, r, rng);
          heap->Free(blocks[i]);
        }
        // Remote frees held back go out before the phase ends (as at a slow path): the owner meets
        // every copy in phase C, and no report of this round comes in the next.
        heap->FlushRemoteChains();
      }
      phase.Wait();
      // C: the owner alone. Every free block of its pages is handed out once.
      if (id == 0) {
        std::vector<ErrorReport> got;
        const uint64_t spans = source->allocated();
        std::unordered_set<void*> live;
        std::vector<void*> held;
        uint64_t tag = 0;
        while (source->allocated() == spans) {
          void* q = heap->Allocate(kSize);
          EXPECT_NE(q, nullptr);
          if (q == nullptr) break;
          EXPECT_TRUE(live.insert(q).second)
              << "round " << r << ": block handed out twice to live users: " << q;
          held.push_back(q);
          stress::WriteStamp(q, StampOf(1, ++tag));
        }
        tag = 0;
        for (void* q : held) {
          EXPECT_TRUE(StampIntact(q, StampOf(1, ++tag)))
              << "round " << r << ": a live block's payload changed (shared with another user)";
          heap->Free(q);
        }
        heap->FlushCaches();
        got = reports.Take();
        // Reports: at least one per round (each block was freed twice), at most one per block.
        std::set<const void*> named;
        uint64_t at_free = 0;
        for (const ErrorReport& e : got) {
          EXPECT_EQ(e.kind, ErrorKind::kDoubleFree) << e.detail;
          EXPECT_TRUE(std::find(blocks.begin(), blocks.end(), e.pointer) != blocks.end())
              << "a report names a block of the round: " << e.pointer << " " << e.detail;
          EXPECT_TRUE(named.insert(e.pointer).second)
              << "one double free, one report: " << e.pointer << " " << e.detail;
          if (std::string(e.call) == "free") ++at_free;
        }
        EXPECT_GE(got.size(), 1u) << "round " << r << ": the double frees were reported";
        EXPECT_LE(got.size(), kBlocksPerRound);
        totals.reports += got.size();
        totals.at_free += at_free;
        totals.later += got.size() - at_free;
        ++totals.rounds;
        if (r % 64 == 0 || r + 1 == kRounds) HeapRegistry::Global().CheckAll(true);
      }
      phase.Wait();
    }
    HeapRegistry::Global().ReleaseHeap(heap);
  });
  group.Join();
  HeapRegistry::Global().CheckAll(/*quiescent=*/true);
  std::fprintf(stderr,
               "%s: %llu rounds, %llu reports: %llu at the second free, %llu later (both frees "
               "passed their canary check at once)\n",
               mode == Freers::kOwnerAndRemote ? "owner+remote" : "remote+remote",
               static_cast<unsigned long long>(totals.rounds),
               static_cast<unsigned long long>(totals.reports),
               static_cast<unsigned long long>(totals.at_free),
               static_cast<unsigned long long>(totals.later));
  return totals;
}

TEST(ConcurrentDoubleFree, OwnerAndRemoteFreeTheSameBlocks) {
  RoundTotals t = RunConcurrentRounds(Freers::kOwnerAndRemote);
  EXPECT_EQ(t.rounds, kRounds);
  EXPECT_GE(t.reports, kRounds);
}

TEST(ConcurrentDoubleFree, TwoRemoteThreadsFreeTheSameBlocks) {
  RoundTotals t = RunConcurrentRounds(Freers::kTwoRemotes);
  EXPECT_EQ(t.rounds, kRounds);
  EXPECT_GE(t.reports, kRounds);
}

// ---- Reproducers: two interleavings that broke the promise before the remote CAS ------------
//
// (Before the fix, both frees of a block passed their canary check when the remote freer's check
// (Heap::FreeRemote: no canary) comes before the owner's free and its store (PushRemote_mt:
// kOnRemote) after it: the block is then in the owner's hands (its cache, or its page's free list
// when caching is off) and on the page's remote stack, with canary kOnRemote. The canary checks of
// heap.h ("Double frees") only keep such a block from being handed out twice as long as the owner
// meets the stale copy first. When the owner's drain meets the remote copy first, it accepts it
// (kOnRemote is right) and returns the block to its page a second time: - caching off: used() is
// decremented twice, so the page is released while another block of it is still live, and its
// memory is handed out again; - caching on: the page comes back empty and is released while the
// owner's cache still holds the block; the cache later hands out an address inside a page of
// another class that reused the span, overlapping that page's blocks. Neither is reported before
// the damage, in any MF2_ON_ERROR mode. The window is a few dozen instructions
// (ConcurrentDoubleFree above counts how often both checks pass: hundreds of times per run under
// TSan). The tests replay the interleaving on one thread: B's Free is split where it checked the
// canary, exactly as multi_actor_fuzz splits remote frees (PushRemote_mt is the rest of Free after
// its check).) The fix makes the remote free's check and store one atomic step: a compare-exchange
// of word 1 from the value its check saw, reporting a double free when it fails
// (Heap::PushRemote_mt; REMOTE_CAS in model/cache.pml, which verifies). RemoteFreeFinish passes the
// value seen at the check; the push reports and pushes nothing.

// B's Free(p) up to its canary check: p is live (word 1 holds no canary).
uint64_t RemoteFreeCheck(const void* p) {
  EXPECT_FALSE(HasAnyCanary(p)) << "B's check passes: p is live";
  return LoadCanary(p);
}

// The rest of B's Free(p) (as Free runs it), after the owner freed p meanwhile.
void RemoteFreeFinish(Heap* b, void* p, uint64_t seen_at_check) {
  Page* page = PageOf(p);
  if (b->PushRemote_mt(page, static_cast<Block*>(p), nullptr, &seen_at_check)) {
    Heap::QueueWonPage_mt(page);
  }
}

// Live blocks must not overlap.
void ExpectNoOverlap(std::map<uintptr_t, size_t>* live, const void* p, size_t size) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto next = live->lower_bound(a);
  EXPECT_TRUE(next == live->end() || next->first >= a + size)
      << "block " << p << " overlaps a live block at " << reinterpret_cast<void*>(next->first);
  if (next != live->begin()) {
    auto prev = std::prev(next);
    EXPECT_LE(prev->first + prev->second, a)
        << "block " << p << " overlaps a live block at " << reinterpret_cast<void*>(prev->first);
  }
  (*live)[a] = size;
}

// Tight memory: a page that comes back empty is released at once (no spare pages, no span
// cache), so what the allocator believes about a page is acted on immediately.
void TightMemory(Policy* p) {
  p->route = Route::kRouteS;
  p->reclaim_idle = false;
  p->heap_empty_bytes = 0;
  p->page_cache_bytes = 0;
}

TEST(RacingDoubleFreeRepro, CachingOffThePageIsReleasedUnderALiveBlock) {
  testing::ScopedPolicy policy([](Policy* p) {
    TightMemory(p);
    p->cache_class_bytes = 0;
  });
  ScopedReports reports;
  testing::TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* b = heaps.Acquire();
  constexpr size_t kBig = 8192;  // 8 blocks per page
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(a->Allocate(kBig));
  Page* page = PageOf(blocks[0]);
  void* other_page = a->Allocate(kBig);  // the full page is no longer A's active one
  ASSERT_NE(PageOf(other_page), page);
  for (int i = 2; i < 8; ++i) a->Free(blocks[i]);
  void* p = blocks[0];  // freed twice, at once, by A and B
  void* q = blocks[1];  // live: the program holds it and never frees it here
  std::map<uintptr_t, size_t> live = {{reinterpret_cast<uintptr_t>(q), kBig},
                                      {reinterpret_cast<uintptr_t>(other_page), kBig}};
  const uint64_t seen = RemoteFreeCheck(p);
  a->Free(p);  // onto the page's free list (caching off)
  RemoteFreeFinish(b, p, seen);
  // A's next slow path drains its queue.
  std::vector<void*> small;
  for (int i = 0; i < 256; ++i) {
    small.push_back(a->Allocate(64));
    ExpectNoOverlap(&live, small.back(), 64);
  }
  EXPECT_TRUE(page->in_use() && page->size_class() == SizeToClass(kBig))
      << "q's page was released while q is live";
  EXPECT_FALSE(reports.Take().empty()) << "the double free is reported";
}

TEST(RacingDoubleFreeRepro, CachingOnACachedCopyOutlivesItsPage) {
  testing::ScopedPolicy policy([](Policy* p) { TightMemory(p); });
  ScopedReports reports;
  testing::TestHeaps heaps;
  Heap* a = heaps.Acquire();
  Heap* b = heaps.Acquire();
  constexpr size_t kBig = 8192;
  std::vector<void*> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(a->Allocate(kBig));
  Page* page = PageOf(blocks[0]);
  void* other_page = a->Allocate(kBig);
  ASSERT_NE(PageOf(other_page), page);
  void* p = blocks[1];  // freed twice, at once, by A and B
  for (void* x : blocks) {
    if (x != p) a->Free(x);
  }
  a->FlushCaches();  // p is the page's last block out
  const uint64_t seen = RemoteFreeCheck(p);
  a->Free(p);  // into A's cache
  RemoteFreeFinish(b, p, seen);
  std::map<uintptr_t, size_t> live = {{reinterpret_cast<uintptr_t>(other_page), kBig}};
  // A allocates small blocks: its first slow path drains the queue; the page comes back empty
  // and is released, and its span serves A's new page of 64-byte blocks.
  for (int i = 0; i < 128; ++i) ExpectNoOverlap(&live, a->Allocate(64), 64);
  // A's cache of 8 KiB blocks still holds p.
  void* big = a->Allocate(kBig);
  ExpectNoOverlap(&live, big, kBig);
  for (int i = 0; i < 64; ++i) ExpectNoOverlap(&live, a->Allocate(64), 64);
  EXPECT_FALSE(reports.Take().empty()) << "the double free is reported";
}

}  // namespace
}  // namespace mf2
