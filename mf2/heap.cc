// The owner's algorithm: allocation and its slow path (Route S), the block caches, frees local
// and remote, and where pages go as they fill and empty. The lifecycle (claims, exit, adoption
// of an exited thread's pages) is in heap_abandon.cc; what acts on another live heap (Route P,
// cda, idle sweeps) in heap_adopt.cc; the checks in heap_check.cc.
#include "mf2/heap.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>

#include "mf2/adoption.h"
#include "mf2/large.h"
#include "mf2/policy.h"
#include "mf2/reclaimer.h"

namespace mf2 {

std::atomic<Heap::FreeDetachedHook> Heap::free_detached_hook_for_testing{nullptr};
std::atomic<Heap::SweepHook> Heap::sweep_hook_for_testing{nullptr};

Heap::Heap(PageSource* source, HeapRegistry* registry, uint32_t id, SlotStorage* slots)
    : key_(CanaryKey()), source_(source), registry_(registry), id_(id) {
  FillDirect();
  for (uint32_t k = 0; k < kNumClasses; ++k) {
    cache_[k].top = cache_[k].limit = &slots->slot[k][1];  // slot[k][0]: the null, never written
  }
  ConfigureCaches();
}

// Caches start at Policy::cache_class_bytes per class (at least 2 blocks, at most kCacheSlots;
// 0 bytes turns caching off) and grow where they overflow or run dry (GrowCache) while their
// total capacity stays within CacheBudget().
void Heap::ConfigureCaches() {
  const size_t bytes = GetPolicy().cache_class_bytes;
  remote_batch_ = std::min(GetPolicy().remote_batch, kRemoteBatch);
  cache_cap_bytes_ = 0;
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    MF2_CHECK(cache_[k].n() == 0, "caches are configured empty");
    const size_t fit = bytes / ClassInfo(k).size;
    cache_[k].set_cap(bytes == 0 ? 0
                                 : static_cast<uint32_t>(std::min<size_t>(
                                       kCacheSlots, std::max<size_t>(2, fit))));
    cache_cap_bytes_ += size_t{cache_[k].cap()} * ClassInfo(k).size;
    carve_limit_[k] = static_cast<uint8_t>(
        std::clamp<size_t>(kFirstCarveBytes / ClassInfo(k).size, 1, kCacheSlots));
    carve_cut_[k] = false;
  }
  cache_initial_bytes_ = cache_cap_bytes_;
  cache_grow_budget_ = cache_cap_bytes_;
}

// The most a heap's caches may hold in all (the sum of cap * size): their initial capacity plus
// Policy::cache_heap_bytes, or an eighth of the heap's own pages if more (a large heap's working
// set needs deep caches; a small one keeps little). The floor counts from the initial capacity
// because that alone (3.8 MiB over the 80 classes) exceeds the default cache_heap_bytes.
size_t Heap::CacheBudget() const {
  return std::max(cache_initial_bytes_ + GetPolicy().cache_heap_bytes,
                  xpage_bytes_.load(std::memory_order_relaxed) / 8);
}

// Class k's cache overflowed or ran dry: a sign that its depth, not the pages, decides how
// often this class takes the slow path. Double it while the heap's budget allows.
inline void Heap::GrowCache(Magazine* m) {
  const uint32_t old_cap = m->cap();
  if (old_cap == 0 || old_cap == kCacheSlots) return;
  const size_t size = ClassInfo(ClassOf(m)).size;
  const uint32_t cap = std::min(kCacheSlots, old_cap * 2);
  const size_t more = size_t{cap - old_cap} * size;
  const size_t budget = CacheBudget();
  if (cache_cap_bytes_ + more > budget) return;
  cache_cap_bytes_ += more;
  cache_grow_budget_ = std::max(cache_grow_budget_, budget);  // for CheckInvariants
  m->set_cap(cap);
  MF2_STAT_INC(stats_, cache_grows);
}

// ------------------------------------------------------------------------------------------
// Allocation slow path: the class's cache is empty. Out of line: the fast path in heap.h stays a
// few instructions.

void* Heap::AllocateSlow(Magazine* m) noexcept {
  if (MF2_PREDICT_FALSE(move_to_ != nullptr) && MoveDue(!carve_cut_[ClassOf(m)])) {
    EndOp();  // the fast path's operation: the heap is handed back outside any
    return move_(this, ClassOf(m));
  }
  const OpEnd end{this};  // tail-called by a fast path: ends its operation
  const uint32_t k = ClassOf(m);
  if (MF2_PREDICT_FALSE(is_sentinel())) return sentinel_allocate_(k);
  MF2_STAT_INC(stats_, slow_allocs);
  // Remote frees held back go out at every kSlowPathsPerRemoteFlush-th slow path that finds any:
  // a thread that keeps allocating sends what it holds within that many refills, and its chains
  // have that long to grow.
  if (held_slots_ != 0 && ++slow_paths_holding_ == kSlowPathsPerRemoteFlush) {
    slow_paths_holding_ = 0;
    FlushRemoteChainsInOp();
  }
  // Relaxed load and store (single writer): others only watch it change (OwnerIdle_mt).
  const uint64_t epoch = xslow_epoch_.load(std::memory_order_relaxed) + 1;
  xslow_epoch_.store(epoch, std::memory_order_relaxed);
  // The first slow path since an idle flush of this heap (FlushIdleOwner_mt), or since it was
  // made or taken over: the reclaimer may sleep without a timeout, every heap flushed; it should
  // look at this one again. Relaxed: the flush's epoch was stored while we were parked, and our
  // BeginOp acquired the unpark (or we stored it ourselves, MarkIdleFlushed).
  if (MF2_PREDICT_FALSE(xidle_flushed_epoch_.load(std::memory_order_relaxed) == epoch)) {
    reclaimer::NotifyHeapActive();
  }
  // Refill half the cache (one block when caching is off) from the page found; hand out the top.
  // The active page's remote frees may go straight into it during the search (Refill): up to
  // half the cache as it is before GrowCache below, and up to all of it for the classes of more
  // than kTopUpMaxBlocks blocks per page. What the refill does not take goes on the page's list,
  // to be popped off it again, and a pipeline's stage, whose small blocks the next stage frees,
  // collects several caches' worth at a time (producer-consumer: 262 -> 246 instructions per
  // operation). A mid-size cache is shallow (2-16 blocks) and the owner's own frees need its
  // room: filling it held 4% more peak RSS on Larson with 1-32 KiB blocks (bench/RESULTS.md).
  const auto half_cache = [m] { return m->cap() == 0 ? 1 : std::max<uint32_t>(1, m->cap() / 2); };
  void* one[1];
  void** out = m->cap() == 0 ? one : m->slots();
  const bool many_per_page = ClassInfo(k).capacity > kTopUpMaxBlocks;  // small classes
  Refill refill{out, many_per_page ? std::max<uint32_t>(1, m->cap()) : half_cache(), 0};
  Page* page = FindPageUnderPressure(k, &refill);
  if (MF2_PREDICT_FALSE(page == nullptr)) return nullptr;
  uint32_t got = refill.got;  // 0 unless the search collected into the refill
  // A cache that ran dry because its last refill's carving was cut short (carve_cut_) is not
  // too shallow: only other dry runs deepen it, as before the slow start.
  if (!carve_cut_[k]) GrowCache(m);
  const uint32_t want = half_cache();
  // Never-used blocks this refill may still carve (carve_limit_: slow start), >= 1 until a pop
  // carves, so a page with nothing but its never-carved tail always gives a block.
  uint32_t carve = carve_limit_[k];
  const auto pop = [&carve](Page* from, void** to, uint32_t n) {
    const uint32_t carved_before = from->carved();
    const uint32_t popped = from->PopBatch(to, n, carve);
    carve -= from->carved() - carved_before;
    return popped;
  };
  if (got < want) got += pop(page, out + got, want - got);  // collected blocks may pass want
  // 0 only when the page's free list was written to after a free (PopBatch reported it and
  // dropped the list) and nothing else of it was free: that page is full now, find another.
  while (MF2_PREDICT_FALSE(got == 0)) {
    page = FindPageUnderPressure(k);
    if (page == nullptr) return nullptr;
    got = pop(page, out, want);
  }
  // Short of half a cache: top up from the partial list, the next reusable pages in Route S's
  // order (never a new page), for classes of at most kTopUpMaxBlocks blocks per page. Such
  // pages (the mid sizes) under random frees hold one or two free blocks each, so one page per
  // refill meant a slow path on one mid-size allocation in 34 on Larson. A page of many small
  // blocks usually fills half a cache by itself, and topping those up too made xmalloc-test
  // (64-byte blocks, two producer/consumer pairs) 8% slower (bench/RESULTS.md).
  uint32_t active_first = 0;  // where the blocks of the page left active start in `out`
  // Not once the carving limit is used up: a page of only never-carved blocks would give none.
  while (got < want && carve != 0 && !many_per_page &&
         (page = partial_[k].front()) != nullptr) {
    SetActive(k, page);
    const uint32_t more = pop(page, out + got, want - got);
    if (more != 0) active_first = got;
    got += more;
  }
  std::reverse(out, out + got);  // the first block popped (warmest, or lowest address) on top
  // The block handed out is the active page's first: a page the top-up moved past is detached,
  // and another heap may adopt a detached page at once (its blocks in our cache stay valid, as
  // any cached block's do), while the active page stays ours. Without a top-up, the top itself.
  std::swap(out[got - 1 - active_first], out[got - 1]);
  carve_cut_[k] = carve == 0 && got < want;
  if (carve == 0 && carve_limit_[k] < kCacheSlots) {  // the limit was used up: the class is in use
    carve_limit_[k] = static_cast<uint8_t>(std::min<uint32_t>(kCacheSlots, 2 * carve_limit_[k]));
  }
  MF2_STAT_INC(stats_, cache_refills);
  MF2_STAT_ADD(stats_, blocks_refilled, got);
  void* p = out[got - 1];
  if (m->cap() != 0) m->set_n(got - 1);
  StoreCanary(p, 0);
  UnpoisonMemory(p, ClassInfo(k).size);
  MF2_EXPENSIVE_DCHECK((CheckInvariants(false), true), "heap invariants");
  return p;
}

// Whether the thread should move to move_to_ now (heap.h, SetMoveTo): it was abandoned and its
// claim released, so its thread has handed it back. Relaxed loads: hints, the registry claims
// the heap under its lock. After kMoveChecks counted slow paths without it, the thread stays.
bool Heap::MoveDue(bool counts) {
  if (move_to_->handed_back_relaxed()) return true;
  if (counts && --move_checks_ == 0) move_to_ = nullptr;
  return false;
}

// FindPage; when the page source is out of memory, gives back what this heap keeps (its caches,
// its retained empty pages) and tries once more. (The source itself releases its caches and the
// large-mapping cache before it fails.) nullptr with errno = ENOMEM if that fails too.
Page* Heap::FindPageUnderPressure(uint32_t k, Refill* refill) {
  Page* page = FindPage(k, refill);
  if (MF2_PREDICT_TRUE(page != nullptr)) return page;
  FlushCachesInOp();
  ReleaseRetainedEmpties();
  page = FindPage(k, refill);
  if (page == nullptr) errno = ENOMEM;
  return page;
}

// A block popped off a cache does not carry the cache's canary: it was freed a second time
// concurrently (another thread put it on its page's remote stack, or it was collected or flushed
// to its page's free list meanwhile), or the program wrote into it after freeing it. Either way it
// is not handed out (block.h, heap.h "Double frees"); it stays counted as handed out of its page.
void* Heap::CachedBlockBad(Magazine* m, void* p) noexcept {
  const uint64_t state = CanaryState(p);
  MF2_STAT_INC(stats_, cache_drops);
  if (state == kOnPage || state == kOnRemote) {
    internal::ReportError(ErrorKind::kDoubleFree, "malloc", p,
                          "a block in this thread's cache was also freed by another thread (a "
                          "concurrent double free); it is not handed out twice");
  } else {
    internal::ReportError(ErrorKind::kCorruptFreeList, "malloc", p,
                          "a free block in this thread's cache was written to after it was "
                          "freed (use after free): it is not reused");
  }
  return Allocate(ClassInfo(ClassOf(m)).size);
}

// The class's cache is full: its older half goes back to the pages, then `p` is cached.
void Heap::FreeToFullCache(Magazine* m, void* p) noexcept {
  const OpEnd end{this};  // tail-called by a fast path: ends its operation
  if (m->cap() == 0) {
    // No cache: straight back to the page, as a block leaving a cache (ReturnBlock's canary).
    StoreCanary(p, InCacheCanary(p));
    return ReturnBlock(static_cast<Block*>(p));
  }
  GrowCache(m);
  if (m->top < m->limit) {  // grown: room for p without a flush
    *m->top++ = p;
    StoreCanary(p, InCacheCanary(p));
    PoisonMemory(p, ClassInfo(ClassOf(m)).size);
    return;
  }
  const uint32_t half = std::max<uint32_t>(1, m->cap() / 2);
  void** const slots = m->slots();
  for (uint32_t i = 0; i < half; ++i) FlushOne(slots[i]);
  const uint32_t left = m->n() - half;
  for (uint32_t i = 0; i < left; ++i) slots[i] = slots[i + half];
  m->set_n(left);
  MF2_STAT_INC(stats_, cache_flushes);
  MF2_STAT_ADD(stats_, blocks_flushed, half);
  *m->top++ = p;
  StoreCanary(p, InCacheCanary(p));
  PoisonMemory(p, ClassInfo(ClassOf(m)).size);
}

void Heap::GoIdleInOp() {
  if (is_sentinel()) return;
  FlushCachesInOp();  // and the held remote frees
  ProcessAllPending();
  ReleaseEmptyActivePages(/*collect_first=*/false);
  ReleaseRetainedEmpties();
}

// An empty active page would stay ours until the next allocation of its class: release it
// (`collect_first`: after collecting its remote frees directly, as the idle flush does).
void Heap::ReleaseEmptyActivePages(bool collect_first) {
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    Page* page = active_[k];
    if (page == nullptr) continue;
    if (collect_first && page->remote().Peek().count() != 0) {
      Collect(page, page->remote().TakeBlocksKeepFlag(), this);
    }
    if (page->used() != 0) continue;
    active_[k] = nullptr;
    page->set_where(Page::Where::kNowhere);
    if (!TryRelease(page)) PartialPush(page);  // still flagged: released when dequeued
  }
}

// The parker's GoIdle (heap.h, "The idle flush"). As GoIdle, except in two ways that keep every
// page a sweep could release sweepable. A cached block of a detached (full) page goes onto that
// page's remote stack, as any other thread's free would, rather than onto its free list: the page
// stays detached, and a sweep releases it as soon as its last blocks come back (this one may be
// the last). And a detached page on the pending queue that is not whole yet stays queued as it
// is: collecting it would file it as partial, and a partial page is released only by its owner,
// which is idle. The rest is GoIdle's: the held remote frees go out, the active pages' remote
// frees are collected, every other queued page is collected and filed, and empty pages (an
// empty active page, retained empties) are released.
void Heap::IdleFlushInOp() {
  FlushRemoteChainsInOp();
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    Magazine& m = cache_[k];
    const uint32_t n = m.n();
    if (n == 0) continue;
    for (uint32_t i = 0; i < n; ++i) {
      void* p = m.slots()[i];
      Page* page = PageOf(p);
      // Where before owner (page.h): our own address as owner makes the kDetached we saw ours.
      const bool detached = page->where_acquire() == Page::Where::kDetached;
      if (detached && page->owner_relaxed() == this && LoadCanary(p) == Canary(p, kInCache)) {
        ReturnRemote(page, static_cast<Block*>(p), Canary(p, kInCache), "free");
      } else {
        FlushOne(p);  // re-checks the canary (reported and dropped if wrong)
      }
    }
    MF2_STAT_INC(stats_, cache_flushes);
    MF2_STAT_ADD(stats_, blocks_flushed, n);
    m.set_n(0);
  }
  ReleaseEmptyActivePages(/*collect_first=*/true);  // a flagged one is collected below
  // The pending queue: a detached page that is not whole yet is given back as it is (still
  // detached and queued: the sweep that finds it whole releases it); every other page is
  // collected and filed as the owner's own drain would (an empty one is released).
  Page* kept = nullptr;
  Page* kept_last = nullptr;
  for (Page* chain = xpending_.PopAll(); chain != nullptr;) {
    Page* page = chain;
    chain = page->pending_next();  // hazard 5: the link before the flag is cleared
    if (page->where() == Page::Where::kDetached &&
        page->remote().Peek().count() != page->capacity()) {
      page->set_pending_next(nullptr);
      if (kept_last == nullptr) {
        kept = page;
      } else {
        kept_last->set_pending_next(page);
      }
      kept_last = page;
      continue;
    }
    CollectDequeued(page);
    FilePage(page, 0);  // class 0 matches nothing: file or release it
  }
  if (kept != nullptr) GiveBack(kept);
  ReleaseRetainedEmpties();
}

void Heap::FlushCachesInOp() {
  FlushRemoteChainsInOp();
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    Magazine& m = cache_[k];
    const uint32_t n = m.n();
    if (n == 0) continue;
    for (uint32_t i = 0; i < n; ++i) FlushOne(m.slots()[i]);
    MF2_STAT_INC(stats_, cache_flushes);
    MF2_STAT_ADD(stats_, blocks_flushed, n);
    m.set_n(0);
  }
}

void Heap::FlushOne(void* p) {
  if (MF2_PREDICT_FALSE(LoadCanary(p) != InCacheCanary(p))) {
    MF2_STAT_INC(stats_, cache_drops);
    internal::ReportError(CanaryState(p) < kNumBlockStates ? ErrorKind::kDoubleFree
                                                           : ErrorKind::kCorruptFreeList,
                          "free", p,
                          "a block in this thread's cache was freed again concurrently or "
                          "written to after it was freed: it is not reused");
    return;
  }
  ReturnBlock(static_cast<Block*>(p));
}

// A block leaves this heap's hands for its page. Where before owner (page.h, "Detached pages"): if
// we see our own address as owner, the where we saw is ours too, or kDetached.
void Heap::ReturnBlock(Block* b) {
  // A block from this heap's cache lies in a span (its free found it there): no map test.
  const uintptr_t a = reinterpret_cast<uintptr_t>(b);
  Page* page = SpanPage(a, SliceOfCovered(a));
  const Page::Where where = page->where_acquire();
  if (MF2_PREDICT_FALSE(page->owner_relaxed() != this)) {
    // The page changed owner while the block sat in our cache (adopted): a remote free now.
    return ReturnRemote(page, b, InCacheCanary(b), "free");
  }
  if (MF2_PREDICT_FALSE(where == Page::Where::kDetached) && page->adoptable_detach) {
    return FreeDetached(page, b);  // adoption armed: only under the page's flag
  }
  page->PushLocal(b, key_);
  // A partial page that still has live blocks needs nothing more; a full (detached) one joins
  // the partial list and an empty one is kept or released.
  if (where != Page::Where::kActive && (where == Page::Where::kDetached || page->used() == 0)) {
    PageGainedFree(page);
  }
}

// Route S's order (heap.h): a page of class k with a free block, made active, or nullptr when
// the page source is out of memory.
Page* Heap::FindPage(uint32_t k, Refill* refill) {
  // 0. The active page still has blocks the cache did not take (a refill takes half a cache).
  Page* page = active_[k];
  if (page != nullptr && page->HasFree()) {
    // Blocks other threads freed into it come before its never-carved tail: a producer whose
    // consumer frees what it made would touch every byte of each page first (bench/RESULTS.md).
    if (page->HasUncarved() && CollectActive(k, refill) != nullptr) {
      MF2_STAT_INC(stats_, active_drain_hit);  // served by what came back, as in step 2
      MF2_STAT_INC(stats_, page_reuses);
    }
    return page;
  }
  const Route route = CurrentRoute();
  // The control: the failed consumer-driven adoption (docs/design.md), first and ungated.
  if (route == Route::kCda && (page = AdoptFromPending_mt(k, route)) != nullptr) {
    MF2_STAT_INC(stats_, adopt_allowed);
    // 1. The must-reuse gate: pages of our own that other threads freed into come first.
    // The control has no must-reuse gate (flaw 3, docs/design.md): its queue is left to adopters.
  } else if (route != Route::kCda &&
             (page = CollectPending(k, GetPolicy().pending_budget)) != nullptr) {
    MF2_STAT_INC(stats_, mustreuse_hit);
  } else if ((page = CollectActive(k, refill)) != nullptr) {  // 2. the active page's remote frees
    MF2_STAT_INC(stats_, active_drain_hit);
  } else if ((page = partial_[k].front()) != nullptr) {  // 3. the partial list
    MF2_STAT_INC(stats_, partial_hit);
  } else if (route != Route::kCda &&
             (page = CollectPending(k, UINT32_MAX)) != nullptr) {  // the gate, exhaustive
    MF2_STAT_INC(stats_, mustreuse_hit);
  } else if ((page = AdoptAbandoned(k)) != nullptr) {  // 4. an exited thread's page
    MF2_STAT_INC(stats_, abandoned_adopt_hit);
  } else if (route == Route::kRouteP && (page = AdoptFromPending_mt(k, route)) != nullptr) {
    MF2_STAT_INC(stats_, adopt_allowed);  // Route P: one gated adoption from an idle owner
  } else {  // 5. nothing reusable exists
    page = NewPage(k);
    if (page == nullptr) return nullptr;
    MF2_STAT_INC(stats_, new_pages);
    SetActive(k, page);
    return page;
  }
  MF2_STAT_INC(stats_, page_reuses);
  SetActive(k, page);
  MF2_DCHECK(page->HasFree() || (refill != nullptr && refill->got != 0),
             "a reused page has a free block, or gave its remote frees to the refill");
  return page;
}

// Pops the pending queue (one pop-all), collects up to `budget` of its pages and returns the first
// of class k with a free block; the pages not collected go back on the queue at once, so they stay
// visible to idle sweeps and adopters (an owner that goes idle after this slow path strands
// nothing).
Page* Heap::CollectPending(uint32_t k, uint32_t budget) {
  Page* chain = xpending_.PopAll();
  Page* hit = nullptr;
  for (uint32_t n = 0; chain != nullptr && hit == nullptr && n < budget; ++n) {
    Page* page = chain;
    chain = page->pending_next();  // hazard 5: read the link before the flag is cleared
    CollectDequeued(page);
    hit = FilePage(page, k);
  }
  if (chain != nullptr) GiveBack(chain);
  return hit;
}

// Pages popped off our queue and not collected (we hold their flags) go back with one CAS. Their
// ready bits are set again, as after any pop (adoption.h: an adopter may have cleared one while
// we held the pages).
void Heap::GiveBack(Page* chain) {
  Page* last = chain;
  uint64_t classes[2] = {0, 0};
  for (Page* p = chain;; p = p->pending_next()) {
    if (p->adopt_counted) classes[p->size_class() / 64] |= uint64_t{1} << (p->size_class() % 64);
    last = p;
    if (p->pending_next() == nullptr) break;
  }
  xpending_.PushChain_mt(chain, last);
  for (uint32_t w = 0; w < 2; ++w) {
    for (uint64_t bits = classes[w]; bits != 0; bits &= bits - 1) {
      AdoptionBoard::Global().MarkReady(w * 64 + static_cast<uint32_t>(__builtin_ctzll(bits)), id_);
    }
  }
}

// A page just taken off a pending queue: take its remote stack and clear its flag in one step.
void Heap::CollectDequeued(Page* page) {
  MF2_CHECK(page->owner_relaxed() == this, "a page is only ever queued on its owner's queue");
  AdoptionBoard::Global().UncountDequeued(page, id_);
  page->DebugNoteDequeued();
  // A detached page is ours to change only while we hold its flag: make it private before the
  // TakeAll below releases the flag (FilePage files or detaches it again).
  if (page->where() == Page::Where::kDetached) page->set_where(Page::Where::kNowhere);
  RemoteWord taken = page->remote().TakeAll();
  MF2_CHECK(taken.pending(), "a queued page has in_remote_pending set");
  MF2_STAT_INC(stats_, pending_drained);
  Collect(page, taken, this);
}

// Moves the blocks of a remote stack taken off `page` while `taken_from` owned it onto the
// page's local free list, counting the collection. A stack holding every block of the page was a
// page that came back whole: one fewer for taken_from's sweeps to find (FreeRemote).
uint32_t Heap::Collect(Page* page, RemoteWord taken, Heap* taken_from, void** out,
                       uint32_t max) {
  if (taken.count() == page->capacity()) {
    // seq_cst: as the increment in PushRemote_mt.
    taken_from->xwhole_unswept_.fetch_sub(1, std::memory_order_seq_cst);
  }
  MF2_STAT_INC(stats_, drain_attempts);
  const uint32_t moved = page->CollectRemote(taken, out, max);
  if (moved > 0) MF2_STAT_INC(stats_, drain_successes);
  MF2_STAT_ADD(stats_, remote_blocks_drained, moved);
  return moved;
}

// Puts a collected page where it belongs. Returns it if it can serve class k now.
Page* Heap::FilePage(Page* page, uint32_t k) {
  const uint32_t c = page->size_class();
  if (page->where() == Page::Where::kActive) {
    return c == k && page->HasFree() ? page : nullptr;
  }
  if (!page->HasFree()) {
    if (page->where() == Page::Where::kNowhere) Detach(page);
    return nullptr;
  }
  if (c == k) return page;  // SetActive unlinks it from the partial list if it is there
  PageGainedFree(page);
  return nullptr;
}

// `refill`: AllocateSlow's search, whose page this is if it returns it: the first blocks go
// straight to the refill (heap.h, Refill). The search ends here when any block went there (the
// page is returned), so it makes at most one such collection.
Page* Heap::CollectActive(uint32_t k, Refill* refill) {
  Page* page = active_[k];
  if (page == nullptr || page->remote().Peek().count() == 0) return nullptr;
  const uint32_t want = refill != nullptr ? refill->want : 0;
  const uint32_t moved = Collect(page, page->remote().TakeBlocksKeepFlag(), this,
                                 refill != nullptr ? refill->out : nullptr, want);
  const uint32_t handed = std::min(moved, want);
  if (refill != nullptr) refill->got = handed;
  return handed != 0 || page->HasFree() ? page : nullptr;
}

Page* Heap::NewPage(uint32_t k) {
  Page* page = source_->AllocateSpan(ClassInfo(k).slices);
  if (page == nullptr) return nullptr;
  page->InitForClass(k, this);
  CountPage_mt(page, +1);
  return page;
}

MF2_ALWAYS_INLINE void Heap::SetActive(uint32_t k, Page* page) {
  Page* old = active_[k];
  if (old == page) return;
  if (page->where() == Page::Where::kPartial) PartialRemove(page);
  page->set_where(Page::Where::kActive);
  active_[k] = page;
  Unretain(page);
  if (old != nullptr) {
    if (old->HasFree()) {
      old->set_where(Page::Where::kNowhere);
      PageGainedFree(old);
    } else {
      Detach(old);
    }
  }
}

// A full page that we hold privately goes on no list: publish it as detached. The release store
// is our last touch (page.h, "Detached pages"): from now on only its flag holder changes it.
void Heap::Detach(Page* page) {
  MF2_DCHECK(!page->HasFree() && (page->where() == Page::Where::kNowhere ||
                                   page->where() == Page::Where::kActive),
             "detach a full page that is on no list");
  // Read before the release store below: if adoption is armed now, every later free of ours
  // into this page sees it armed too (sticky flag, coherence) and takes the page's flag.
  page->adoptable_detach = AdoptionArmed();
  page->set_where(Page::Where::kDetached);
}

void Heap::PartialPush(Page* page) {
  const uint32_t k = page->size_class();
  page->set_where(Page::Where::kPartial);
  partial_[k].PushFront(page);
  if (partial_[k].size() == 1) {
    std::atomic<uint64_t>& m = xpartial_mask_[k / 64];
    // Relaxed load and store: single writer (the claim holder); readers use it as a gate.
    m.store(m.load(std::memory_order_relaxed) | (uint64_t{1} << (k % 64)),
            std::memory_order_relaxed);
  }
}

void Heap::PartialRemove(Page* page) {
  const uint32_t k = page->size_class();
  partial_[k].Remove(page);
  page->set_where(Page::Where::kNowhere);
  if (partial_[k].empty()) {
    std::atomic<uint64_t>& m = xpartial_mask_[k / 64];
    // Relaxed: as PartialPush.
    m.store(m.load(std::memory_order_relaxed) & ~(uint64_t{1} << (k % 64)),
            std::memory_order_relaxed);
  }
}

// ------------------------------------------------------------------------------------------
// Free paths.

void Heap::CountPage_mt(const Page* page, int delta) {
  const size_t bytes = page->span_slices * kSliceSize;
  // Relaxed RMWs: another heap's adopter may subtract concurrently; nothing is ordered by them.
  if (delta > 0) {
    xpage_count_.fetch_add(1, std::memory_order_relaxed);
    xpage_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    xpage_count_.fetch_sub(1, std::memory_order_relaxed);
    xpage_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  }
}

// Empty pages a heap may keep for reuse: the policy's floor, or an eighth of what the heap holds,
// whichever is larger, so the spare memory stays proportional to the heap's footprint.
size_t Heap::EmptyBudget() const {
  return std::max(GetPolicy().heap_empty_bytes, xpage_bytes_.load(std::memory_order_relaxed) / 8);
}

// A page that is not active has a free block: it belongs on the partial list. An empty one is
// kept there for reuse while the heap's retained empty bytes stay within the policy's bound, and
// otherwise goes back to the page source.
void Heap::PageGainedFree(Page* page) {
  // A detached page reaching here was detached while adoption was not armed (Free): no other
  // thread may take it (page.h), so it is private again.
  if (page->where() == Page::Where::kDetached) page->set_where(Page::Where::kNowhere);
  if (page->used() == 0 && !page->retained_empty) {
    const size_t bytes = page->span_slices * kSliceSize;
    // Idle heaps keep no spares. After a successful TryRelease the page (and possibly its whole
    // segment) is gone: nothing may touch it again.
    const bool keep = !abandoned() && !helper_ && empty_bytes_ + bytes <= EmptyBudget();
    if (!keep && TryRelease(page)) return;
    if (keep) {
      page->retained_empty = true;
      empty_bytes_ += bytes;
    }
  }
  if (page->where() == Page::Where::kNowhere) PartialPush(page);
}

void Heap::Unretain(Page* page) {
  if (!page->retained_empty) return;
  page->retained_empty = false;
  empty_bytes_ -= page->span_slices * kSliceSize;
}

// Releases an empty page unless it is flagged (queued, or about to be): a flagged page goes back
// when it is dequeued. Invariant 11: never released while flagged, queued or holding remotes.
bool Heap::TryRelease(Page* page) {
  if (page->where() == Page::Where::kActive || page->remote().Peek().raw() != 0) return false;
  MF2_DCHECK(page->where() != Page::Where::kDetached, "a detached page is full");
  if (page->where() == Page::Where::kPartial) PartialRemove(page);
  Unretain(page);
  page->Retire();
  CountPage_mt(page, -1);
  MF2_STAT_INC(stats_, pages_released);
  source_->FreeSpan(page);
  return true;
}

// An idle heap keeps no spare memory: its retained empty pages go back to the page source. One
// that cannot go yet (flagged: a remote free's winner holds it, or it is queued) is no longer
// retained either, so that it is released when it is dequeued (PageGainedFree releases only a
// page that is not retained): a retained page left on an exiting thread's heap stayed there
// until a new thread took the heap over.
void Heap::ReleaseRetainedEmpties() {
  for (uint32_t k = 1; k < kNumClasses && empty_bytes_ > 0; ++k) {
    for (Page* page = partial_[k].front(); page != nullptr;) {
      Page* next = page->next;
      if (page->retained_empty && !TryRelease(page)) Unretain(page);
      page = next;
    }
  }
}

bool Heap::PushRemote_mt(Page* page, Block* b, bool* completed, const uint64_t* seen,
                         bool* refused, const char* call) {
  // Before the push: afterwards the owner may collect `b` at once, and checks this canary. One
  // compare-exchange: the owner's free of the same block between our check and this store would
  // otherwise be overwritten, the block then on its stack and in its cache at once (block.h).
  const uint64_t expected = seen != nullptr ? *seen : LoadCanary(b);
  const bool freed = (expected ^ reinterpret_cast<uintptr_t>(b) ^ CanaryKey()) < kNumBlockStates &&
                     expected != Canary(b, kInCache);  // our own cached block (flush) is fine
  if (MF2_PREDICT_FALSE(freed || !CasCanary(b, expected, Canary(b, kOnRemote)))) {
    if (refused != nullptr) *refused = true;
    internal::ReportError(ErrorKind::kDoubleFree, call, b,
                          "block freed twice: another thread freed it at the same time (a "
                          "concurrent double free); it is not freed again");
    return false;
  }
  PoisonMemory(b, page->block_size());
  MF2_STAT_INC(stats_, remote_frees);
  // Read before the push (see below). A page whose owner changes after this read has its
  // stack taken by the new owner, so it cannot come back whole with our push in the same run,
  // except for a page whose every block is freed within that window (then the count errs by 1).
  Heap* owner = page->owner_relaxed();
  const uint32_t capacity = page->capacity();
  uint32_t count_after = 0;
  // After this push the owner may collect `b` at once; we touch neither again unless we won the
  // edge, and then the flag keeps the page from being released until we have queued it.
  const bool won = page->remote().Push_mt(b, &count_after);
  if (count_after == capacity && owner != nullptr) {
    // Every block of the page is on its remote stack: it came back whole. seq_cst: see
    // ReclaimIdleOwner_mt ("a page being queued").
    owner->xwhole_unswept_.fetch_add(1, std::memory_order_seq_cst);
    if (completed != nullptr) *completed = true;
  }
  if (won) MF2_STAT_INC(stats_, pending_enqueued);  // this free queues the page (next step)
  return won;
}

void Heap::QueueWonPage_mt(Page* page) {
  // This free turned in_remote_pending 0->1: queue the page on its owner, exactly once. The
  // owner pointer is read only now, while we hold the flag (owners change only under it).
  Heap* owner = page->owner_mt();
  const Route route = CurrentRoute();
  const uint32_t k = page->size_class();  // read now: once queued the page may be gone
  if (route != Route::kRouteS) {
    // Still under the flag: the adoption bookkeeping travels with the page (adoption.h).
    if (route == Route::kRouteP) page->rfr_deadline_ns = NowNs() + GetPolicy().rfr_window_ns;
    AdoptionBoard::Global().CountQueued(page, owner->id_);
  }
  page->DebugNoteEnqueued_mt();
  owner->xpending_.Push_mt(page);
  if (route != Route::kRouteS) AdoptionBoard::Global().MarkReady(k, owner->id_);
  // seq_cst: pairs with Abandon's store (see PendingQueue::Push_mt). A dead owner never drains
  // its queue, so the thread that queued the page does.
  if (owner->xabandoned_.load(std::memory_order_seq_cst)) owner->ReclaimAbandoned_mt();
}

// The common case, kept free of calls so that it needs no stack frame (saving and restoring the
// registers a call would clobber cost every remote free a dozen instructions): the block joins
// the chain this heap already holds for its page, and the chain stays below the batch size.
// Everything else (a new page for the slot, the push of a full chain, a double free, a lost
// compare-exchange, a heap that holds nothing) is FreeRemoteSlow, which reads word 1 again.
// A chain names a page only while it holds a block (count != 0), and only a heap that may hold
// remote frees (not abandoned, not a sentinel or helper) ever fills one (CheckInvariants), so
// `chain->page == page` also rules those heaps out.
void Heap::FreeRemote(Page* page, void* p, const char* call) noexcept {
  RemoteChain* chain = &remote_[RemoteSlot(page)];
  Block* b = static_cast<Block*>(p);
  const uint64_t seen = LoadCanary(b);
  const uint64_t in_cache = InCacheCanary(p);
  if (MF2_PREDICT_TRUE(chain->page == page && chain->count + 1 < remote_batch_ &&
                       (seen ^ in_cache) >= kNumBlockStates &&
                       CasCanary(b, seen, in_cache ^ kOnRemote))) {
    PoisonMemory(b, page->block_size());
    Link(chain, b);
    EndOp();  // tail-called by a fast path: ends its operation
    return;
  }
  return FreeRemoteSlow(page, p, call);
}

void Heap::FreeRemoteSlow(Page* page, void* p, const char* call) noexcept {
  const OpEnd end{this};  // tail-called by FreeRemote: ends the operation
  // A canary of any state in word 1: the block is free already (block.h). Word 1 then moves from
  // exactly this value, so a free by another thread in between is caught too.
  const uint64_t seen = LoadCanary(p);
  if (MF2_PREDICT_FALSE(((seen ^ reinterpret_cast<uintptr_t>(p) ^ CanaryKey())) <
                        kNumBlockStates)) {
    return ReportDoubleFree(p, call);
  }
  Block* b = static_cast<Block*>(p);
  if (adopter() == nullptr) {  // sentinels and helpers hold nothing
    // A thread without a heap may take one now and free through it (thread_heap.cc).
    if (sentinel_remote_free_ != nullptr && sentinel_remote_free_(p, call)) return;
    return ReturnRemote(page, b, seen, call);
  }
  if (MF2_PREDICT_FALSE(!CasCanary(b, seen, Canary(b, kOnRemote)))) {
    internal::ReportError(ErrorKind::kDoubleFree, call, b,
                          "block freed twice: another thread freed it at the same time (a "
                          "concurrent double free); it is not freed again");
    return;
  }
  PoisonMemory(b, page->block_size());
  HoldRemote(page, b);
}

// Links `b` (canary kOnRemote) into the chain of its page, pushing chains that are full or whose
// slot another page needs.
void Heap::HoldRemote(Page* page, Block* b) {
  RemoteChain* chain = &remote_[RemoteSlot(page)];
  if (chain->page != page) {
    if (chain->count != 0) PushChain(chain);
    chain->page = page;
    chain->hinted = CarriesHint(page->block_size());
    for (Block*& slot : chain->behind) slot = nullptr;
    if (held_slots_ == 0) xholds_remote_.store(true, std::memory_order_relaxed);
    held_slots_ |= uint32_t{1} << (chain - remote_);
  }
  if (chain->tail == nullptr) chain->tail = b;
  Link(chain, b);
  if (chain->count >= remote_batch_) PushChain(chain);
}

void Heap::FlushRemoteChainsInOp() {
  // Only the slots that hold something: every slow path runs this.
  while (held_slots_ != 0) PushChain(&remote_[__builtin_ctz(held_slots_)]);
}

// `chain` holds nothing any more: its bit in held_slots_ goes, and the hint with the last one.
void Heap::ReleaseSlot(RemoteChain* chain) {
  held_slots_ &= ~(uint32_t{1} << (chain - remote_));
  if (held_slots_ == 0) xholds_remote_.store(false, std::memory_order_relaxed);
}

// Whether every block `chain` holds still has canary kOnRemote and links to a block start of its
// page, `count` of them ending in nullptr. Read-only: PushChain's common case.
bool Heap::ChainIntact(const RemoteChain& chain) const {
  const Page* page = chain.page;
  const uintptr_t start = reinterpret_cast<uintptr_t>(page->start());
  const uint32_t k = page->size_class();
  const uint64_t on_remote = key_ ^ kOnRemote;  // Canary(b, kOnRemote) == b ^ on_remote
  uint32_t n = 0;
  for (const Block* b = chain.head; b != nullptr;) {
    if (++n > chain.count || LoadCanary(b) != (reinterpret_cast<uintptr_t>(b) ^ on_remote)) {
      return false;
    }
    const Block* next = LoadNext(b);
    if (next != nullptr && !IsBlockOffset(reinterpret_cast<uintptr_t>(next) - start, k)) {
      return false;
    }
    b = next;
  }
  return n == chain.count;
}

// Rebuilds `chain` from its blocks that still have canary kOnRemote, reporting the others (see
// PushChain); count 0 when none is left.
void Heap::RebuildChain(RemoteChain* chain) {
  Page* page = chain->page;
  Block* head = nullptr;
  Block* tail = nullptr;
  uint32_t count = 0;
  uint32_t walked = 0;
  // The blocks walked so far. Such a block, handed out again, may also have been freed again by
  // this thread, while its first free was still held: it is in the chain twice, and its new link
  // leads back into the chain. Taking it again would make the rebuilt chain a cycle.
  const Block* seen[kRemoteBatch];
  for (Block* b = chain->head; b != nullptr;) {
    bool again = false;
    for (uint32_t i = 0; i < walked && !again; ++i) again = seen[i] == b;
    if (MF2_PREDICT_FALSE(again)) {
      internal::ReportError(ErrorKind::kDoubleFree, "free", b,
                            "a block freed twice concurrently was handed out again and freed "
                            "again while this thread still held its first free; returned once");
      break;
    }
    Block* next = LoadNext(b);
    // A block the owner freed again concurrently may be handed out by now and its link word
    // overwritten: follow a link only to a block start of the page, at most count of them.
    if (walked < kRemoteBatch) seen[walked] = b;
    if (MF2_PREDICT_FALSE(++walked > chain->count ||
                          (next != nullptr &&
                           !page->IsBlockStart(reinterpret_cast<uintptr_t>(next))))) {
      internal::ReportError(ErrorKind::kDoubleFree, "free", b,
                            "a block freed twice concurrently was handed out again while another "
                            "thread held it; the blocks after it in that thread's batch are not "
                            "returned");
      next = nullptr;
    }
    if (MF2_PREDICT_TRUE(LoadCanary(b) == Canary(b, kOnRemote))) {
      StoreNext(b, head);
      head = b;
      if (tail == nullptr) tail = b;
      ++count;
    } else {
      internal::ReportError(ErrorKind::kDoubleFree, "free", b,
                            "block freed twice: its owner freed it again while another thread "
                            "was returning it (a concurrent double free); returned once");
    }
    b = next;
  }
  chain->head = head;
  chain->tail = tail;
  chain->count = count;
}

// One CAS for the whole chain, then what a single remote free does after its push. A block whose
// canary is no longer kOnRemote was freed again by its owner while we held it (the owner's store
// came after our compare-exchange: a concurrent double free): it is reported and left out, and
// the rest of the chain goes on (the collection would otherwise cut the list there).
//
// The walk that rebuilds the chain runs only when ChainIntact, a read-only walk, finds something
// wrong: the common case writes no block.
void Heap::PushChain(RemoteChain* chain) {
  if (MF2_PREDICT_FALSE(!ChainIntact(*chain))) RebuildChain(chain);
  if (chain->count == 0) {
    chain->page = nullptr;
    ReleaseSlot(chain);
    return;
  }
  Page* page = chain->page;
  // Read before the push: afterwards the page may be collected and released at once.
  Heap* owner = page->owner_relaxed();
  const uint32_t capacity = page->capacity();
  uint32_t count_after = 0;
  const bool won = page->remote().PushChain_mt(chain->head, chain->tail, chain->count,
                                               &count_after);
  MF2_STAT_ADD(stats_, remote_frees, chain->count);
  MF2_STAT_INC(stats_, remote_chains);
  chain->page = nullptr;
  chain->head = chain->tail = nullptr;
  chain->count = 0;
  ReleaseSlot(chain);
  const bool completed = count_after == capacity && owner != nullptr;
  if (completed) {
    // seq_cst: as PushRemote_mt.
    owner->xwhole_unswept_.fetch_add(1, std::memory_order_seq_cst);
  }
  if (won) MF2_STAT_INC(stats_, pending_enqueued);
  AfterRemotePush(page, owner, won, completed);
}

// A block we do not own (any more) goes back through its page's remote stack; `seen` is what
// word 1 held when the caller decided so (no canary, or ours: kInCache).
void Heap::ReturnRemote(Page* page, Block* b, uint64_t seen, const char* call) {
  // Read before the push: afterwards the page may be collected and released at once.
  Heap* owner = page->owner_relaxed();
  bool completed = false;
  bool refused = false;
  const bool won = PushRemote_mt(page, b, &completed, &seen, &refused, call);
  if (refused) return;
  AfterRemotePush(page, owner, won, completed);
}

// After a push onto `page`'s remote stack (owner as read before it): queue the page if the push
// won the edge, and sweep or notify for whole pages.
void Heap::AfterRemotePush(Page* page, Heap* owner, bool won, bool completed) {
  if (won) QueueWonPage_mt(page);
  // The page came back whole, or we queued a page that a completer's sweep may have missed
  // while we held it.
  if ((completed || won) && owner != nullptr) RequestSweep_mt(owner);
}

// The owner frees into one of its detached (full) pages: only the flag holder may touch such a
// page (page.h), so take the flag; if it is taken, the page is queued or held by a consumer,
// and the block goes on the remote stack for that consumer to find.
void Heap::FreeDetached(Page* page, Block* b) {
  MF2_DCHECK(page->adoptable_detach, "pages detached while adoption was not armed are freed "
             "into without the flag (Heap::Free)");
  // Relaxed: a test sets the hook before the free it watches, on the same thread.
  if (FreeDetachedHook hook = free_detached_hook_for_testing.load(std::memory_order_relaxed)) {
    hook(page);
  }
  if (!page->remote().TryAcquireFlag()) {
    return ReturnRemote(page, b, Canary(b, kInCache), "free");
  }
  // The CAS acquired: an adopter's change of owner (made under the flag) is visible now.
  if (page->owner_relaxed() != this || page->where() != Page::Where::kDetached) {
    // Adopted between our check and the flag. We hold its flag, so we are its edge winner: the
    // page is queued even if the push is refused (a concurrent double free, reported).
    PushRemote_mt(page, b);
    QueueWonPage_mt(page);
    return;
  }
  MF2_STAT_INC(stats_, detached_frees);
  page->PushLocal(b);
  PartialPush(page);  // attached again before the flag is released below
  // Blocks freed by other threads while we held the flag; clears it.
  Collect(page, page->remote().TakeAll(), this);
  if (page->used() == 0) PageGainedFree(page);  // keep it as a spare or release it
}

void Heap::FreeUnusual(void* p, const char* call) noexcept {
  const OpEnd end{this};  // tail-called by a fast path: ends its operation
  if (p == nullptr) return;
  if (LargeFree(p, call)) return;  // a large block, or misuse of one (reported there)
  LargeReportMisuse(p, call, LargeAccess::kFree);
}

// `p` is inside an MF2 segment but is not the start of one of its span's blocks.
void Heap::ReportBadFree(void* p, const char* call) noexcept {
  const OpEnd end{this};  // tail-called by a fast path: ends its operation
  const Slice* slice = SliceOf(reinterpret_cast<uintptr_t>(p));
  if (slice != nullptr && slice->size_class() != 0) {
    internal::ReportError(ErrorKind::kNotABlock, call, p,
                          "interior pointer: inside a block, not its start (or in a span's "
                          "unused tail)");
  } else {
    internal::ReportError(ErrorKind::kNotABlock, call, p,
                          "inside MF2 memory but not in a page that serves blocks (a segment "
                          "header, a free span, or a block of a page released since)");
  }
}

// `p` is a block start whose canary says it is free already (block.h).
void Heap::ReportDoubleFree(void* p, const char* call) noexcept {
  const OpEnd end{this};  // tail-called by a fast path: ends its operation
  switch (CanaryState(p)) {
    case kInCache:
      internal::ReportError(ErrorKind::kDoubleFree, call, p,
                            "block freed twice: it is already free, in a thread's cache");
      break;
    case kOnPage:
      internal::ReportError(ErrorKind::kDoubleFree, call, p,
                            "block freed twice: it is already free, on its page's free list");
      break;
    default:
      internal::ReportError(ErrorKind::kDoubleFree, call, p,
                            "block freed twice: it was already freed by a thread that does not "
                            "own it and is on its way back to its page");
      break;
  }
}

size_t Heap::UsableSize(const void* p, const char* call) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (const Slice* s = SliceOf(a)) {
    if (!IsBlockOffset(SpanOffset(a, s), s->size_class())) {
      internal::ReportError(ErrorKind::kNotABlock, call, p,
                            "not the start of a block (an interior pointer, or MF2 memory that "
                            "holds no block)");
      return 0;
    }
    if (HasAnyCanary(p)) {
      internal::ReportError(ErrorKind::kUseAfterFree, call, p,
                            "the block was freed before (its free-block canary is in place)");
      return 0;
    }
    return ClassInfo(s->size_class()).size;
  }
  if (size_t n = LargeUsableSize(p)) return n;
  LargeReportMisuse(p, call, LargeAccess::kUse);
  return 0;
}

void* Heap::AllocateZeroedLarge(size_t size) {
  bool zeroed = false;
  BeginOpOrWait();
  void* p = AllocateLarge(size, kMinAlign, &zeroed);  // ends the operation
  // A mapping reused from the large cache held a freed block.
  if (p != nullptr && !zeroed) memset(p, 0, size);
  return p;
}

void* Heap::AllocateLarge(size_t size, size_t alignment, bool* zeroed) noexcept {
  const OpEnd end{this};  // tail-called by a fast path: ends its operation
  MF2_STAT_INC(stats_, large_allocs);
  if (void* p = LargeAllocate(size, alignment, zeroed)) return p;
  // The OS refused even after the shared caches were released (large.cc): what this heap keeps
  // (cached blocks pinning pages, spare empty pages) may be what stands in the way.
  if (is_sentinel() || errno != ENOMEM) return nullptr;
  FlushCachesInOp();
  ReleaseRetainedEmpties();
  OsPageSource::Global().ReleaseUnderPressure();
  return LargeAllocate(size, alignment, zeroed);
}

void* Heap::AllocateAligned(size_t alignment, size_t size) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  if (alignment <= kMinAlign) return Allocate(size);
  BeginOpOrWait();
  // Span starts are slice-aligned, so every block of a class whose size is a multiple of the
  // alignment is aligned. Powers of two are classes, so such a class always exists below 64 KiB.
  if (alignment <= kSliceSize && size <= kMaxClassSize) {
    size_t rounded = size < alignment ? alignment : (size + alignment - 1) & ~(alignment - 1);
    if (rounded <= kMaxClassSize) {
      for (uint32_t k = SizeToClass(rounded); k < kNumClasses; ++k) {
        // In tail position: Allocate's EndOp ends this operation too.
        if (ClassInfo(k).size % alignment == 0) return Allocate(ClassInfo(k).size);
      }
    }
  }
  return AllocateLarge(size, alignment);  // ends the operation
}

// ---- The fast paths' ways out (heap.h, Heap::Out) ----

void* Heap::Out::AllocateParked(size_t size, Heap* h) noexcept { return h->AllocateParked(size); }
void* Heap::Out::AllocateLarge(size_t size, Heap* h) noexcept {
  return h->AllocateLarge(size, kMinAlign);
}
void* Heap::Out::AllocateSlow(uint32_t cache_offset, Heap* h) noexcept {
  return h->AllocateSlow(h->CacheAt(cache_offset));
}
void* Heap::Out::CachedBlockBad(uint32_t cache_offset, Heap* h, void* p) noexcept {
  return h->CachedBlockBad(h->CacheAt(cache_offset), p);
}
void Heap::Out::FreeParked(void* p, Heap* h, const char* call) noexcept {
  h->FreeParked(p, call);
}
void Heap::Out::FreeUnusual(void* p, Heap* h, const char* call) noexcept {
  h->FreeUnusual(p, call);
}
void Heap::Out::ReportBadFree(void* p, Heap* h, const char* call) noexcept {
  h->ReportBadFree(p, call);
}
void Heap::Out::FreeRemote(void* p, Heap* h, Page* page, const char* call) noexcept {
  h->FreeRemote(page, p, call);
}
void Heap::Out::ReportDoubleFree(void* p, Heap* h, const char* call) noexcept {
  h->ReportDoubleFree(p, call);
}
void Heap::Out::FreeToFullCache(void* p, Heap* h, uint32_t cache_offset) noexcept {
  h->FreeToFullCache(h->CacheAt(cache_offset), p);
}

}  // namespace mf2
