// multi_actor_fuzz: 2..4 logical threads (explicit heaps) on one OS thread, with every remote
// free split into its two steps so the input decides when the page gets queued.
//
// Schedule: a config byte (actors = 2 + b % 3, pending budget = 1 + (b / 3) % 8, cache policy
// (b / 24) % 4: fuzz_util.h CacheBytesForMode, default / off / small), then ops.
// Each op byte names an actor (high nibble % actors) and an op (low nibble % kNumOps; the values
// of enum class Op):
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
//                                       (fuzz_util.h BackgroundReclaimPass; the long-idle flush,
//                                       which also returns its slot pages, when an odd number
//                                       of blocks is left live)
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
#include "fuzz/live_set.h"
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

// The op numbers of the byte encoding (the table above). Never renumber: the corpus means them.
enum class Op : uint8_t {
  kAlloc = 0,
  kAllocN = 1,
  kFree = 2,
  kRemote1 = 3,
  kStep2 = 4,
  kExit = 5,   // LATE when the actor has exited already
  kStart = 6,  // DOUBLE when the actor runs already
  kBudget = 7,
  kFreePage = 8,
  kRemote1Page = 9,
  kAligned = 10,
  kRoute = 11,
  kSweep = 12,
  kFill = 13,
  kFlush = 14,
  kIdle = 15,
};
constexpr int kNumOps = static_cast<int>(Op::kIdle) + 1;
constexpr int kMaxActors = 4;
constexpr int kMaxOps = 4096;

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
    const std::vector<Live> all = live_.TakeAll();
    for (size_t i = 0; i < all.size(); ++i) {
      Verify(all[i]);
      FreeBy(heap_[running[i % n]], all[i].p);
    }
    live_.checker().Full(true);
    for (int a = 0; a < actors_; ++a) {
      if (heap_[a] == nullptr) continue;
      mf2::HeapRegistry::Global().ReleaseHeap(heap_[a]);
      maybe_cached_.erase(heap_[a]);
    }
    frame_.Finish(live_.checker());
  }

  // One op of actor (high nibble % actors). Ops of an actor whose thread is not running read
  // their arguments and do nothing.
  void Perform(Reader& in) {
    const OpByte op = SplitOpByte(in.Byte(), actors_, kNumOps);
    const int a = op.who;
    switch (static_cast<Op>(op.op)) {
      case Op::kAlloc: return OpAlloc(a, in);
      case Op::kAllocN: return OpAllocN(a, in);
      case Op::kFree: return OpFree(a, in);
      case Op::kRemote1: return OpRemote1(a, in);
      case Op::kStep2: return OpStep2(in);
      case Op::kExit: return OpExit(a);
      case Op::kStart: return OpStart(a);
      case Op::kBudget: return OpBudget(in);
      case Op::kFreePage: return OpFreePage(a, in);
      case Op::kRemote1Page: return OpRemote1Page(a, in);
      case Op::kAligned: return OpAligned(a, in);
      case Op::kRoute: return OpRoute(in);
      case Op::kSweep: return OpSweep(a, in);
      case Op::kFill: return OpFill(a, in);
      case Op::kFlush: return OpFlush(a);
      case Op::kIdle: return OpIdle(a, in);
    }
  }

  // `full`: every page and heap; else the pages the step touched.
  void CheckAfterStep(bool full) {
    for (Page* page : in_flight_) CheckHeldPage(page);
    if (!full) {
      live_.checker().Touched(in_flight_.empty(), heap_, static_cast<size_t>(actors_));
      return;
    }
    // Heap::CheckInvariants of every heap, the actors' included.
    mf2::HeapRegistry::Global().CheckAll(in_flight_.empty());
    mf2::HeapRegistry::Global().CheckWholeCounts();
    frame_.ledger().Check();
    live_.checker().Full(in_flight_.empty());
  }

 private:
  // ---- the ops (the table at the top of the file), each reading its own argument bytes ----

  void OpAlloc(int a, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    if (heap_[a] != nullptr) Allocate(a, size);
  }

  void OpAllocN(int a, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    const int count = 1 + in.Byte() % 32;
    for (int i = 0; heap_[a] != nullptr && i < count; ++i) Allocate(a, size);
  }

  void OpFree(int a, Reader& in) {
    const uint16_t idx = in.U16();
    if (heap_[a] != nullptr && !live_.empty()) Free(heap_[a], idx % live_.size());
  }

  void OpRemote1(int a, Reader& in) {
    const uint16_t idx = in.U16();
    Heap* h = heap_[a];
    if (h == nullptr) return;
    for (size_t n = 0; n < live_.size(); ++n) {
      const size_t i = (idx + n) % live_.size();
      if (RemoteCandidate(h, live_[i].p)) return RemoteStep1(h, i);
    }
  }

  void OpStep2(Reader& in) {
    const uint8_t idx = in.Byte();
    if (!in_flight_.empty()) CompleteStep2(idx % in_flight_.size());
  }

  // EXIT of a running actor; LATE of an exited one: its thread, after its exit hook, frees the
  // newest live block and allocates one.
  void OpExit(int a) {
    if (Heap* h = heap_[a]) {
      mf2::HeapRegistry::Global().ReleaseHeap(h);  // flushes its cache
      maybe_cached_.erase(h);
      heap_[a] = nullptr;
      return;
    }
    Heap* dead = DeadSentinel();
    if (!live_.empty()) Free(dead, live_.size() - 1);
    const size_t size = SizeFromByte(static_cast<uint8_t>(seq_ * 37 % 240));
    if (live_.Full(size)) return;
    void* p = dead->Allocate(size);
    FUZZ_CHECK(p != nullptr, "an allocation after the exit hook succeeds");
    Record(a, p, size, /*late=*/true);
  }

  // START of an exited actor; DOUBLE of a running one: it frees the block freed last again, if
  // that is still a free block of its page.
  void OpStart(int a) {
    Heap* h = heap_[a];
    if (h == nullptr) {
      heap_[a] = AcquireHeap();
      return;
    }
    if (last_freed_.p == nullptr) return;
    void* p = last_freed_.p;
    Page* page = ClassPage(p);
    if (page != last_freed_.page || page->size_class() != last_freed_.size_class ||
        page->BlockIndex(p) >= page->carved() || live_.Covers(p)) {
      return;
    }
    ReportCapture capture;
    live_.checker().Touch(p);
    h->Free(p);
    capture.Expect(1, mf2::ErrorKind::kDoubleFree, p, "double free");
  }

  void OpBudget(Reader& in) {
    const uint8_t b = in.Byte();
    budget_ = 1 + b % 8;
    tight_ = (b & 8) != 0;
    if ((b >> 4) & 3) CacheMode() = (b >> 4) & 3;
    SetBudget(budget_, tight_, route_);
  }

  void OpFreePage(int a, Reader& in) {
    const uint16_t idx = in.U16();
    Heap* h = heap_[a];
    if (h == nullptr || live_.empty()) return;
    Page* page = ClassPage(live_[idx % live_.size()].p);
    if (page == nullptr) return Free(h, idx % live_.size());
    for (size_t i = live_.size(); i-- > 0;) {
      if (mf2::PageOf(live_[i].p) == page) Free(h, i);
    }
  }

  void OpRemote1Page(int a, Reader& in) {
    const uint16_t idx = in.U16();
    Heap* h = heap_[a];
    if (h == nullptr || live_.empty()) return;
    void* first = live_[idx % live_.size()].p;
    if (!RemoteCandidate(h, first)) return;
    Page* page = mf2::PageOf(first);
    for (size_t i = live_.size(); i-- > 0;) {
      if (mf2::PageOf(live_[i].p) == page) RemoteStep1(h, i);
    }
  }

  void OpAligned(int a, Reader& in) {
    const size_t align = size_t{1} << (in.Byte() % 17);
    const size_t size = SizeFromByte(in.Byte());
    if (heap_[a] == nullptr || live_.Full(size + align)) return;
    void* p = heap_[a]->AllocateAligned(align, size);
    FUZZ_CHECK(p != nullptr, "aligned allocation succeeds");
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % align == 0, "aligned");
    Record(a, p, size);
  }

  void OpRoute(Reader& in) {
    route_ = in.Byte();
    SetBudget(budget_, tight_, route_);
  }

  void OpSweep(int a, Reader& in) {
    const uint16_t idx = in.U16();
    Heap* h = heap_[a];
    if (h == nullptr || live_.empty()) return;
    Page* page = ClassPage(live_[idx % live_.size()].p);
    if (page == nullptr || won_.count(page) != 0) return;
    h->ReclaimIdleOwner_mt(page->owner_relaxed());
  }

  void OpFill(int a, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    const uint8_t mode = in.Byte();
    if (heap_[a] != nullptr && !IsLargeSize(size)) Fill(a, size, (mode & 1) != 0);
  }

  void OpFlush(int a) {
    Heap* h = heap_[a];
    if (h == nullptr) return;
    h->FlushCaches();
    CheckCachesEmpty(*h);
  }

  // IDLE: actor `a` fills a cache and goes idle; the other actors complete its pages; the
  // background reclaimer's pass. Whatever MF2 does then must keep every invariant (checked after
  // the op), and the blocks in a's cache stay valid for a's later allocations (Record).
  void OpIdle(int a, Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    if (heap_[a] == nullptr || IsLargeSize(size)) return;
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
    if (in_flight_.empty()) {
      BackgroundReclaimPass(heap_[others[0]], heap_[a], /*long_idle=*/live_.size() % 2 == 1);
    }
    SetBudget(budget_, tight_, route_);
  }

  // ---- helpers ----

  // FILL: actor `a` allocates cap + 1 blocks of the class of `size` (appended to the live list;
  // cap read after each allocation), then LiveSet's FillCache frees those on its own pages,
  // newest first. (A block from the cache whose page was adopted meanwhile is not the actor's:
  // its free is remote.)
  void Fill(int a, size_t size, bool overflow) {
    Heap* h = heap_[a];
    const Heap::Magazine& cache = h->cache(mf2::SizeToClass(size));
    const size_t first = live_.size();
    for (uint32_t i = 0; i < cache.cap() + 1 && !live_.Full(size); ++i) Allocate(a, size);
    size_t next = live_.size();  // fresh blocks are live_[first, next)
    FillCache(cache, overflow, [&]() {
      while (next > first) {
        Page* page = ClassPage(live_[--next].p);
        if (page != nullptr && page->owner_relaxed() == h) {
          Free(h, next);
          return true;
        }
      }
      return false;
    });
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

  void Allocate(int a, size_t size) {
    if (live_.Full(size)) return;
    void* p = heap_[a]->Allocate(size);
    FUZZ_CHECK(p != nullptr, "allocation succeeds");
    Record(a, p, size);
  }

  // Holds a block actor `a` was just handed, stamped (actor, sequence).
  // `late`: allocated through the dead sentinel (its page belongs to an abandoned heap).
  void Record(int a, void* p, size_t size, bool late = false) {
    const bool was_cached = !late && maybe_cached_[heap_[a]].count(p) != 0;
    for (auto& entry : maybe_cached_) entry.second.erase(p);
    if (Page* page = ClassPage(p)) {
      // A block freed into the actor's cache while it owned the page may come back after the
      // page moved to another heap (adoption): caches keep such blocks valid (heap.h).
      FUZZ_CHECK(late || page->owner_relaxed() == heap_[a] || was_cached,
                 "a new block comes from the actor's page or its cache");
      FUZZ_CHECK(won_.count(page) == 0 || page->remote().Peek().pending(),
                 "a page with an in-flight winner keeps its flag");
      if (!late) NoteCached(heap_[a], page->size_class());
    }
    live_.Add(p, size, (uint64_t(a) << 56) | ++seq_);  // never handed out twice (3, 4)
  }

  // Removes live block i from the shadow after verifying it; returns it.
  Live TakeLive(size_t i) {
    const Live b = live_.Take(i);
    Verify(b);
    if (Page* page = ClassPage(b.p)) last_freed_ = LastFreed{b.p, page, page->size_class()};
    return b;
  }

  void Free(Heap* h, size_t i) { FreeBy(h, TakeLive(i).p); }

  // What `h`'s cache of class k holds now may be handed out after its page moved to another
  // heap, as blocks freed into it may (FreeBy): a refill that tops up from further pages leaves
  // those pages detached, and so adoptable, while their blocks wait in the cache.
  void NoteCached(Heap* h, uint32_t k) {
    const Heap::Magazine& m = h->cache(k);
    for (uint32_t i = 0; i < m.n(); ++i) maybe_cached_[h].insert(m.slots()[i]);
  }

  // `h` frees `p`. A free by the page's owner may put the block in the owner's cache.
  void FreeBy(Heap* h, void* p) {
    if (Page* page = ClassPage(p)) {
      if (page->owner_relaxed() == h) maybe_cached_[h].insert(p);
    }
    h->Free(p);
  }

  // Step 1 of a remote free, exactly as Free runs it.
  void RemoteStep1(Heap* freer, size_t i) {
    Page* page = mf2::PageOf(live_[i].p);
    const Live b = TakeLive(i);
    const bool flagged_before = page->remote().Peek().pending();
    const bool won = freer->PushRemote_mt(page, static_cast<Block*>(b.p));
    FUZZ_CHECK(won != flagged_before, "the push wins the edge exactly when the flag was clear");
    FUZZ_CHECK(page->remote().Peek().pending(), "a pushed page is flagged");
    if (won) {
      FUZZ_CHECK(++won_[page] == 1, "at most one won-but-not-queued op per page (invariant 5)");
      in_flight_.push_back(page);
    } else {
      FUZZ_CHECK(won_.count(page) == 1 || page->owner_relaxed()->PendingContains(page),
                 "a flagged page is held by an in-flight winner or queued on its owner (7)");
    }
  }

  // Step 2: queue the page on its owner (draining it if the owner exited).
  void CompleteStep2(size_t i) {
    Page* page = in_flight_[i];
    in_flight_.erase(in_flight_.begin() + static_cast<long>(i));
    auto it = won_.find(page);
    FUZZ_CHECK(it != won_.end() && it->second == 1, "in-flight bookkeeping");
    won_.erase(it);
    CheckHeldPage(page);
    live_.checker().Touch(page->start());
    // A real thread finishes its free before it can exit; here the freer's heap may have been
    // released meanwhile. Step 2 does not need it: a dead owner's queue is drained into that
    // owner's heap, not the freer's.
    Heap::QueueWonPage_mt(page);
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

  const int actors_;
  uint32_t budget_ = 8;
  bool tight_ = false;
  uint8_t route_ = 0;
  Heap* heap_[kMaxActors] = {};
  IterationFrame frame_;
  LiveSet live_{/*max_blocks=*/4096, /*max_bytes=*/size_t{48} << 20};
  uint64_t seq_ = 0;
  std::vector<Page*> in_flight_;  // remote frees whose step 2 is pending, oldest first
  std::map<Page*, int> won_;      // won-but-not-queued ops per page
  std::map<Heap*, std::set<void*>> maybe_cached_;  // freed or refilled into a cache, not reused
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
  mf2_fuzz::RunSchedule(state, in, mf2_fuzz::kMaxOps, "multi_actor_fuzz");
  return 0;
}
