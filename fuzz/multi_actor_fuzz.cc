// multi_actor_fuzz: 2..4 logical threads (explicit heaps) on one OS thread, with every remote
// free split into its two steps so the input decides when the page gets queued.
//
// Schedule: a config byte (actors = 2 + b % 3, pending budget = 1 + (b / 3) % 8, cache policy
// (b / 24) % 4: fuzz_util.h CacheBytesForMode, default / off / small), then ops.
// Each op byte names an actor (high nibble % actors) and an op (low nibble % kNumOps):
//   0 ALLOC        size                 actor allocates SizeFromByte(size)
//   1 ALLOC_N      size count           1 + count % 32 of them
//   2 FREE         idx16                actor frees live block idx % live with Free() (local if
//                                       the actor owns its page, a complete remote free if not)
//   3 REMOTE1      idx16                step 1 of a remote free (PushRemote_mt) of the first live
//                                       block from idx on a page another heap owns; if it won the
//                                       in_remote_pending edge, the page is held "in flight"
//   4 STEP2        idx8                 step 2 (QueueWonPage_mt) of in-flight op idx % in-flight
//   5 EXIT         -                    actor's thread exits (ReleaseHeap), live blocks stay;
//                                       if it has exited already (LATE): what glibc's teardown
//                                       and a late key destructor do after the exit hook, through
//                                       the dead sentinel (fuzz_util.h DeadSentinel): the newest
//                                       live block is freed (the remote way, no heap) and one
//                                       block is allocated (a heap taken and released at once)
//   6 START        -                    actor's thread starts (AcquireHeap: takes an idle heap
//                                       over whole, or a new one); if it runs already (DOUBLE):
//                                       it frees again the block freed last by anyone, if that
//                                       block is still free (its page in use with its class, the
//                                       block carved and not handed out again): a double free by
//                                       the owner or from another heap, wherever the first free
//                                       put it (cache, page, remote stack, held chain), which
//                                       must be reported once (fuzz_util.h ReportCapture) and
//                                       change nothing
//   7 BUDGET       b                    Policy::pending_budget = 1 + b % 8; bit 3 of b selects a
//                                       tight-memory policy (no empty-page retention, no span
//                                       cache, empty segments unmapped at once); bits 4..5, if
//                                       not 0, the cache policy of heaps taken from now on
//                                       (1 off, 2 small, 3 default)
//   8 FREE_PAGE    idx16                actor frees every live block on that block's page
//   9 REMOTE1_PAGE idx16                step 1 for every live block on that block's page (if
//                                       another heap owns it): the first wins, the rest pile up
//  10 ALIGNED      align size           AllocateAligned(1 << align % 17, size)
//  11 ROUTE        r                    route and Route P gates (fuzz_util.h FuzzPolicy): the
//                                       actors' slow paths then adopt (route_p, cda) from other
//                                       actors' queues, and remote frees reclaim idle owners
//  12 SWEEP        idx16                actor sweeps the owner of that block's page for pages
//                                       that came back whole (ReclaimIdleOwner_mt), at any time
//  13 FILL         size mode            actor allocates cap + 1 blocks of that class, then frees
//                                       them, newest first, until its cache of the class is full;
//                                       mode odd: one more free, into the full cache
//                                       (FreeToFullCache returns the older half to the pages)
//  14 FLUSH        -                    actor's Heap::FlushCaches: its caches empty afterwards
//  15 IDLE         size                 idle flush: actor fills its cache of that class (FILL),
//                                       then goes idle (owners idle for reclamation, reclamation
//                                       on, for this op) while the other running actors free
//                                       every live block on its pages (complete remote frees:
//                                       pages come back whole, freers sweep), then the
//                                       background reclaimer's pass runs on it
//                                       (fuzz_util.h BackgroundReclaimPass)
// FILL then EXIT is a thread exit with a full cache (Abandon flushes it).
// Ops of an actor whose thread is not running are skipped (their arguments still consumed).
//
// Oracles after every op: the pages the op allocated from, freed into or queued are checked
// (fuzz_util.h Checker::Touched: Page::CheckInvariants, exact block conservation per page with
// the caches, used == live + cached + remote count, and CheckAll's per-page checks); per page at
// most one won-but-not-queued op, its page still in use, flagged and on no queue (5, 11); a push
// that did not win the edge found the page queued on its owner or held by an in-flight winner
// (7 while not quiescent); no block handed out twice, payloads stamped with (actor, sequence) and
// verified at free (3, 4). Every FullCheckEvery() ops (16; MF2_FUZZ_FULL_CHECK_EVERY) and at the
// end of the input: HeapRegistry::CheckAll(no op in flight) (invariants 1, 5-8, 11, 12), each
// heap's count of whole pages (CheckWholeCounts), remote pushes == drained + on stacks (2), and
// exact conservation on every page (Checker::Full). At the end every
// in-flight step completes, every live block is freed, every heap released, and every span is
// back in the page source (9).
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page.h"
#include "mf2/segment.h"

namespace mf2_fuzz {
namespace {

using mf2::Block;
using mf2::Heap;
using mf2::Page;

constexpr int kMaxActors = 4;
constexpr int kNumOps = 16;
constexpr size_t kMaxLive = 4096;
constexpr size_t kMaxLiveBytes = size_t{48} << 20;
constexpr int kMaxOps = 4096;

struct Live {
  void* p;
  size_t usable;
  uint64_t stamp;  // (actor << 56) | sequence
  bool large;      // mapped by the OS, no page
};

class State {
 public:
  explicit State(uint8_t config) : actors_(2 + config % 3) {
    budget_ = 1 + (config / 3) % 8;
    CacheMode() = (config / 24) % 4;
    SetBudget(budget_, tight_, route_);
    for (int a = 0; a < actors_; ++a) heap_[a] = AcquireHeap();
  }

  ~State() {
    while (!in_flight_.empty()) CompleteStep2(0);
    int running[kMaxActors];
    int n = 0;
    for (int a = 0; a < actors_; ++a) {
      if (heap_[a] != nullptr) running[n++] = a;
    }
    if (n == 0) {
      heap_[0] = AcquireHeap();
      running[n++] = 0;
    }
    // Alternate the freeing actor: some frees are local, some remote (into live or dead owners).
    for (size_t i = 0; i < live_.size(); ++i) FreeBlock(heap_[running[i % n]], live_[i]);
    live_.clear();
    check_.Full(true);
    for (int a = 0; a < actors_; ++a) {
      if (heap_[a] != nullptr) mf2::HeapRegistry::Global().ReleaseHeap(heap_[a]);
      if (heap_[a] != nullptr) maybe_cached_.erase(heap_[a]);
    }
    mf2::HeapRegistry::Global().CheckAll(true);
    check_.Full(true);
    ledger_.CheckEmpty();
    empty_.Check();
    ResetPolicy();
  }

  void Run(Reader& in) {
    for (int n = 1; n <= kMaxOps && !in.done(); ++n) {
      Step(in);
      CheckAfterStep(n % FullCheckEvery() == 0);
    }
    CheckAfterStep(true);
    TraceStats("multi_actor_fuzz");
  }

 private:
  void Step(Reader& in) {
    const uint8_t op = in.Byte();
    const int a = (op >> 4) % actors_;
    Heap* h = heap_[a];
    switch ((op & 15) % kNumOps) {
      case 0: {
        size_t size = SizeFromByte(in.Byte());
        if (h != nullptr) Allocate(a, size);
        break;
      }
      case 1: {
        size_t size = SizeFromByte(in.Byte());
        int count = 1 + in.Byte() % 32;
        for (int i = 0; h != nullptr && i < count; ++i) Allocate(a, size);
        break;
      }
      case 2: {
        uint16_t idx = in.U16();
        if (h != nullptr && !live_.empty()) Free(h, idx % live_.size());
        break;
      }
      case 3: {
        uint16_t idx = in.U16();
        if (h == nullptr || live_.empty()) break;
        for (size_t n = 0; n < live_.size(); ++n) {
          size_t i = (idx + n) % live_.size();
          if (RemoteCandidate(h, live_[i].p)) {
            RemoteStep1(h, i);
            break;
          }
        }
        break;
      }
      case 4: {
        uint8_t idx = in.Byte();
        if (!in_flight_.empty()) CompleteStep2(idx % in_flight_.size());
        break;
      }
      case 5:
        if (h != nullptr) {
          mf2::HeapRegistry::Global().ReleaseHeap(h);  // flushes its cache
          maybe_cached_.erase(h);
          heap_[a] = nullptr;
        } else {
          AfterExit(a);
        }
        break;
      case 6:
        if (h == nullptr) {
          heap_[a] = AcquireHeap();
        } else {
          DoubleFree(h);
        }
        break;
      case 7: {
        const uint8_t b = in.Byte();
        budget_ = 1 + b % 8;
        tight_ = (b & 8) != 0;
        if ((b >> 4) & 3) CacheMode() = (b >> 4) & 3;
        SetBudget(budget_, tight_, route_);
        break;
      }
      case 11:
        route_ = in.Byte();
        SetBudget(budget_, tight_, route_);
        break;
      case 12: {
        uint16_t idx = in.U16();
        if (h == nullptr || live_.empty()) break;
        Page* page = ClassPage(live_[idx % live_.size()].p);
        if (page == nullptr || won_.count(page) != 0) break;
        h->ReclaimIdleOwner_mt(page->owner_relaxed());
        break;
      }
      case 8: {
        uint16_t idx = in.U16();
        if (h == nullptr || live_.empty()) break;
        Page* page = ClassPage(live_[idx % live_.size()].p);
        if (page == nullptr) {
          Free(h, idx % live_.size());
          break;
        }
        for (size_t i = live_.size(); i-- > 0;) {
          if (mf2::PageOf(live_[i].p) == page) Free(h, i);
        }
        break;
      }
      case 9: {
        uint16_t idx = in.U16();
        if (h == nullptr || live_.empty()) break;
        void* first = live_[idx % live_.size()].p;
        if (!RemoteCandidate(h, first)) break;
        Page* page = mf2::PageOf(first);
        for (size_t i = live_.size(); i-- > 0;) {
          if (mf2::PageOf(live_[i].p) == page) RemoteStep1(h, i);
        }
        break;
      }
      case 13: {
        size_t size = SizeFromByte(in.Byte());
        const uint8_t mode = in.Byte();
        if (h != nullptr && !IsLargeSize(size)) Fill(a, size, (mode & 1) != 0);
        break;
      }
      case 14:
        if (h != nullptr) {
          h->FlushCaches();
          for (uint32_t k = 1; k < mf2::kNumClasses; ++k) {
            FUZZ_CHECK(h->cache(k).n == 0, "FlushCaches empties every cache");
          }
        }
        break;
      case 15: {
        size_t size = SizeFromByte(in.Byte());
        if (h != nullptr && !IsLargeSize(size)) IdleFlush(a, size);
        break;
      }
      case 10: {
        size_t align = size_t{1} << (in.Byte() % 17);
        size_t size = SizeFromByte(in.Byte());
        if (h == nullptr || Full(size + align)) break;
        void* p = h->AllocateAligned(align, size);
        FUZZ_CHECK(p != nullptr, "aligned allocation succeeds");
        FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % align == 0, "aligned");
        Record(a, p, size);
        break;
      }
    }
  }

  // FILL: actor `a` allocates cap + 1 blocks of the class of `size` (appended to the live list),
  // then frees those on its own pages, newest first, until its cache of the class is full;
  // `overflow`: one free more. (A block from the cache whose page was adopted meanwhile is not
  // the actor's: its free is remote.)
  void Fill(int a, size_t size, bool overflow) {
    Heap* h = heap_[a];
    const uint32_t k = mf2::SizeToClass(size);
    const uint32_t cap = h->cache(k).cap;
    const size_t first = live_.size();
    for (uint32_t i = 0; i < cap + 1; ++i) Allocate(a, size);
    size_t next = live_.size();  // fresh blocks are live_[first, next)
    auto free_one = [&]() {
      while (next > first) {
        Page* page = ClassPage(live_[--next].p);
        if (page != nullptr && page->owner_relaxed() == h) {
          Free(h, next);
          return true;
        }
      }
      return false;
    };
    while (h->cache(k).n < cap && free_one()) {
    }
    if (h->cache(k).n < cap) return;  // too few blocks (the live-set bound)
    FUZZ_CHECK(h->cache(k).n == cap, "a cache never holds more than its capacity");
    if (!overflow || !free_one()) return;
    FUZZ_CHECK(h->cache(k).n == (cap == 0 ? 0 : CacheAfterOverflow(cap)),
               "a free into a full cache returns the older half to the pages");
  }

  // LATE: actor `a`'s thread, after its exit hook, frees the newest live block and allocates one.
  void AfterExit(int a) {
    Heap* dead = DeadSentinel();
    if (!live_.empty()) Free(dead, live_.size() - 1);
    const size_t size = SizeFromByte(static_cast<uint8_t>(seq_ * 37 % 240));
    if (Full(size)) return;
    void* p = dead->Allocate(size);
    FUZZ_CHECK(p != nullptr, "an allocation after the exit hook succeeds");
    Record(a, p, size, /*late=*/true);
  }

  // DOUBLE: `h` frees the block freed last again, if it is still a free block of its page.
  void DoubleFree(Heap* h) {
    if (last_freed_.p == nullptr) return;
    void* p = last_freed_.p;
    Page* page = ClassPage(p);
    if (page != last_freed_.page || page->size_class() != last_freed_.size_class ||
        page->BlockIndex(p) >= page->carved() || ranges_.Covers(p)) {
      return;
    }
    ReportCapture capture;
    check_.Touch(p);
    h->Free(p);
    capture.Expect(1, mf2::ErrorKind::kDoubleFree, p, "double free");
  }

  // IDLE: actor `a` fills a cache and goes idle; the other actors complete its pages; the
  // background reclaimer's pass. Whatever MF2 does then must keep every invariant (checked after
  // the op), and the blocks in a's cache stay valid for a's later allocations (Record).
  void IdleFlush(int a, size_t size) {
    Fill(a, size, /*overflow=*/false);
    std::vector<int> others;
    for (int b = 0; b < actors_; ++b) {
      if (b != a && heap_[b] != nullptr) others.push_back(b);
    }
    if (others.empty()) return;
    // Owners idle for reclamation from their last slow path on, reclamation on, for this op.
    SetBudget(budget_, tight_, static_cast<uint8_t>((route_ | 0x80) & ~0x40));
    size_t turn = 0;
    for (size_t i = live_.size(); i-- > 0;) {
      Page* page = ClassPage(live_[i].p);
      if (page == nullptr || page->owner_relaxed() != heap_[a]) continue;
      Free(heap_[others[turn++ % others.size()]], i);
    }
    // A page won by an in-flight step 1 is on no queue; sweeps leave it alone, and so does the
    // harness (as SWEEP).
    if (in_flight_.empty()) BackgroundReclaimPass(heap_[others[0]], heap_[a]);
    SetBudget(budget_, tight_, route_);
  }

  static Page* ClassPage(const void* p) {
    Page* page = mf2::PageOf(p);
    return page != nullptr && page->in_use() ? page : nullptr;
  }

  // A live block whose page another heap owns: the only blocks step 1 may be applied to.
  static bool RemoteCandidate(Heap* freer, const void* p) {
    Page* page = ClassPage(p);
    return page != nullptr && page->owner_relaxed() != freer;
  }

  bool Full(size_t size) const {
    return live_.size() >= kMaxLive || live_bytes_ + size > kMaxLiveBytes;
  }

  void Allocate(int a, size_t size) {
    if (Full(size)) return;
    void* p = heap_[a]->Allocate(size);
    FUZZ_CHECK(p != nullptr, "allocation succeeds");
    Record(a, p, size);
  }

  // `late`: allocated through the dead sentinel (its page belongs to an abandoned heap).
  void Record(int a, void* p, size_t size, bool late = false) {
    const size_t usable = Heap::UsableSize(p);
    FUZZ_CHECK(usable >= size, "usable size >= requested");
    const bool was_cached = !late && maybe_cached_[heap_[a]].count(p) != 0;
    for (auto& entry : maybe_cached_) entry.second.erase(p);
    if (Page* page = ClassPage(p)) {
      // A block freed into the actor's cache while it owned the page may come back after the
      // page moved to another heap (adoption): caches keep such blocks valid (heap.h).
      FUZZ_CHECK(late || page->owner_relaxed() == heap_[a] || was_cached,
                 "a new block comes from the actor's page or its cache");
      FUZZ_CHECK(won_.count(page) == 0 || page->remote().Peek().pending(),
                 "a page with an in-flight winner keeps its flag");
    }
    ranges_.Insert(p, usable);  // never handed out twice
    const uint64_t stamp = (uint64_t(a) << 56) | ++seq_;
    Stamp(p, usable, stamp);
    check_.AddLive(p);
    live_.push_back(Live{p, usable, stamp, mf2::PageOf(p) == nullptr});
    live_bytes_ += usable;
  }

  // Removes live block i from the shadow after verifying it; returns it.
  Live TakeLive(size_t i) {
    Live b = live_[i];
    live_.erase(live_.begin() + static_cast<long>(i));
    live_bytes_ -= b.usable;
    VerifyStamp(b.p, b.usable, b.stamp);
    FUZZ_CHECK(Heap::UsableSize(b.p) == b.usable, "UsableSize is stable while live");
    ranges_.Erase(b.p);
    check_.RemoveLive(b.p);
    if (Page* page = ClassPage(b.p)) last_freed_ = LastFreed{b.p, page, page->size_class()};
    return b;
  }

  void FreeBlock(Heap* h, const Live& b) {
    VerifyStamp(b.p, b.usable, b.stamp);
    ranges_.Erase(b.p);
    check_.RemoveLive(b.p);
    NoteFree(h, b.p);
    h->Free(b.p);
  }

  void Free(Heap* h, size_t i) {
    void* p = TakeLive(i).p;
    NoteFree(h, p);
    h->Free(p);
  }

  // A free by the page's owner may put the block in the owner's cache.
  void NoteFree(Heap* h, void* p) {
    if (Page* page = ClassPage(p)) {
      if (page->owner_relaxed() == h) maybe_cached_[h].insert(p);
    }
  }

  // Step 1 of a remote free, exactly as Free runs it.
  void RemoteStep1(Heap* freer, size_t i) {
    Page* page = mf2::PageOf(live_[i].p);
    Live b = TakeLive(i);
    const bool flagged_before = page->remote().Peek().pending();
    const bool won = freer->PushRemote_mt(page, static_cast<Block*>(b.p));
    FUZZ_CHECK(won != flagged_before, "the push wins the edge exactly when the flag was clear");
    FUZZ_CHECK(page->remote().Peek().pending(), "a pushed page is flagged");
    if (won) {
      FUZZ_CHECK(++won_[page] == 1, "at most one won-but-not-queued op per page (invariant 5)");
      in_flight_.push_back(InFlight{page, freer});
    } else {
      FUZZ_CHECK(won_.count(page) == 1 || page->owner_relaxed()->PendingContains(page),
                 "a flagged page is held by an in-flight winner or queued on its owner (7)");
    }
  }

  // Step 2: queue the page on its owner (draining it if the owner exited).
  void CompleteStep2(size_t i) {
    Page* page = in_flight_[i].page;
    Heap* freer = in_flight_[i].freer;
    in_flight_.erase(in_flight_.begin() + static_cast<long>(i));
    auto it = won_.find(page);
    FUZZ_CHECK(it != won_.end() && it->second == 1, "in-flight bookkeeping");
    won_.erase(it);
    CheckHeldPage(page);
    check_.Touch(page->start());
    // A real thread finishes its free before it can exit; here the freer's heap may have been
    // released meanwhile, and then nobody adopts the dead owner's pages in this step.
    bool freer_alive = false;
    for (int a = 0; a < actors_; ++a) freer_alive = freer_alive || heap_[a] == freer;
    Heap::QueueWonPage_mt(page, freer_alive ? freer : nullptr);
  }

  // A page whose edge winner has not queued it yet.
  static void CheckHeldPage(Page* page) {
    FUZZ_CHECK(page->in_use(), "a flagged page is never released (invariant 11)");
    FUZZ_CHECK(page->remote().Peek().pending(), "the winner's flag stays set until queued");
    FUZZ_CHECK(!page->owner_relaxed()->PendingContains(page),
               "a won page is not queued before step 2 (invariant 5)");
#if MF2_DEBUG_BUILD
    FUZZ_CHECK(page->debug_queued() == 0, "a won page is not queued before step 2 (5)");
#endif
  }

  // `full`: every page and heap; else the pages the step touched.
  void CheckAfterStep(bool full) {
    for (const InFlight& op : in_flight_) CheckHeldPage(op.page);
    if (!full) {
      check_.Touched(in_flight_.empty(), heap_, static_cast<size_t>(actors_));
      return;
    }
    // Heap::CheckInvariants of every heap, the actors' included.
    mf2::HeapRegistry::Global().CheckAll(in_flight_.empty());
    mf2::HeapRegistry::Global().CheckWholeCounts();
    ledger_.Check();
    check_.Full(in_flight_.empty());
  }

  const int actors_;
  uint32_t budget_ = 8;
  bool tight_ = false;
  uint8_t route_ = 0;
  Heap* heap_[kMaxActors] = {};
  EmptinessCheck empty_;
  RemoteLedger ledger_;
  RangeSet ranges_;
  Checker check_;
  std::vector<Live> live_;
  size_t live_bytes_ = 0;
  uint64_t seq_ = 0;
  struct InFlight {
    Page* page;
    Heap* freer;
  };
  std::vector<InFlight> in_flight_;  // remote frees whose step 2 is pending, oldest first
  std::map<Page*, int> won_;      // won-but-not-queued ops per page
  std::map<Heap*, std::set<void*>> maybe_cached_;  // freed by their page's owner, not reused
  struct LastFreed {
    void* p = nullptr;
    Page* page = nullptr;
    uint32_t size_class = 0;
  } last_freed_;  // the class block freed last (DOUBLE)
};

}  // namespace
}  // namespace mf2_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mf2_fuzz::Reader in(data, size);
  mf2_fuzz::State state(in.Byte());
  state.Run(in);
  return 0;
}
