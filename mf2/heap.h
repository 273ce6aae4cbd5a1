// Heap: the set of pages one thread owns, its per-class block cache, and MF2's algorithm.
//
// ---- Words -----------------------------------------------------------------------------------
// One word per action, in the code, its comments, the models and the docs:
//   collect     remote-freed blocks join a page's local free list: the page's remote stack is
//               taken whole (Collect, CollectActive, CollectDequeued, CollectPending; on the page,
//               Page::CollectRemote). To drain a queue is to pop it whole and collect each page.
//               (The statistics keep their published names: pending_drained, drain_attempts.)
//   adopt       a page changes owner, always while the taker holds the page's in_remote_pending
//               flag (Adopt*: an exited thread's pages in heap_abandon.cc, an idle live owner's
//               in heap_adopt.cc).
//   release     an empty page goes back to the page source (TryRelease).
//   sweep       another thread releases the pages of an idle owner that came back whole.
//   claim, abandon, take over: a heap's owner holds its claim; a thread abandons its heap at
//               exit (pages and all); a new thread claims it and takes it over whole.
// Suffix _mt: the method may act on a heap whose claim the caller does not hold (another thread's
//   heap, as receiver or argument): that heap only through its shared fields, and pages only
//   while the caller holds their flag. A method without it touches only heaps the caller has
//   claimed (its own, or an abandoned heap it claimed). Accessors of shared fields (abandoned(),
//   page_count()) may be called from any thread.
// Prefix x: a field another thread may read or write (x-fields are atomics or the pending queue);
//   every other field is the claim holder's alone. Pages follow the same rule (page.h).
//
// ---- Map of the algorithm ----------------------------------------------------------------
// Allocate (owner):    the class's cache from the size (direct_: a table of its offset in the
//                      heap); pop its top (a LIFO array of free blocks, the "magazine"): the
//                      block freed last is handed out first, cache-warm. No atomics, no locks.
// Free (any thread):   the 16-byte Slice of p from p's segment number and an index (segment.h),
//                      which names the class's cache; one multiply proves p is a block start
//                      (page.h); word 1 of the block holds no canary (else a double free,
//                      reported here whichever thread frees; block.h).
//   owner == this heap: push on the class's cache. No atomics.
//   otherwise (_mt):    push on the page's remote stack (one CAS: block, count, flag). The
//                       thread that turns in_remote_pending 0->1 pushes the page once on the
//                       owner's pending queue; if the owner has exited, it drains that heap's
//                       queue into that heap (the next thread takes the pages over with it). The
//                       push that brings a page back whole counts it and asks for a sweep
//                       (RequestSweep_mt): the background reclaimer (reclaimer.h) sweeps the
//                       queues of idle owners and releases their whole pages; without it (or far
//                       behind) the freer sweeps an idle owner itself once reclaim_batch such
//                       pages wait (ReclaimIdleOwner_mt).
// Cache full (FreeToFullCache): the older half goes back to its pages (ReturnBlock: local free
//                      list, page state changes: full -> partial, empty -> kept or released).
// Cache empty (AllocateSlow): one page with a free block is found in Route S's order, and up to
//                      half the cache is refilled from it (its free list, then never-used
//                      blocks, at most carve_limit_[k] of those), topped up from the next
//                      pages of the partial list (step 3) when it has fewer and the class has
//                      at most kTopUpMaxBlocks blocks per page; never from a new page, so the
//                      gate below holds.
//                      Route S, in this order (the must-reuse gate):
//   0. the active page, while it has a free block (its remote frees collected first while it
//      has a never-carved tail: freed blocks before untouched memory). Here and in step 2 the
//      first blocks of the collected remote stack go straight to the refill (Refill): half a
//      cache, a whole one for classes of more than kTopUpMaxBlocks blocks per page.
//   1. own pending queue: pop pages that received remote frees (pop-all, at most
//      Policy::pending_budget collected per call, the rest given back at once), collect each; the
//      first with a free block of class k wins; others are filed on their class's partial list
//      (empty ones are kept within EmptyBudget() for reuse, beyond it released).
//   2. the active page's remote frees: collect them directly (the flag stays as it is).
//   3. the partial list of class k: pages with free blocks, O(1).
//   -  the rest of the pending queue, unbounded: no new page while a reusable page is queued.
//   4. a heap whose thread exited: its queued pages join us, then a page of class k from its
//      partial list (the only adoption in Route S: a live owner's page is never taken).
//   P. route_p only: one gated adoption of a detached page of class k from an idle owner's
//      pending queue (AdoptFromPending_mt; gates in policy.h, ready bitmap in adoption.h).
//   5. only now a new span from the page source (under memory pressure: every cache of this
//      heap flushed, spare pages released, and the source's caches given back first).
//   cda (the control) instead adopts ungated before step 1 and skips the own-queue steps.
// Thread exit:         Abandon(): the caches go back to their pages, everything is collected,
//                      every empty page released (to the page cache), and the heap with its
//                      pages left to the registry. A new thread takes such a heap over whole
//                      (the heap of the first block it freed when that one is idle, or later:
//                      SetMoveTo);
//                      live threads that need a page adopt its pages (step 4); remote freers
//                      only drain its queue into it (the dead-owner drain above).
// Pages a thread does not own move only while their in_remote_pending flag is held, and only
// when detached (full, on none of the owner's lists): see page.h, "Detached pages". The code
// acting on another live heap's queue (Route P, cda, idle sweeps) is in heap_adopt.cc.
// ---------------------------------------------------------------------------------------------
//
// Double frees. Block canaries (block.h) make a second free of a block visible at that free,
// whichever threads free it, while the first copy is still free anywhere. Concurrent double frees
// (a program freeing one block from two threads at once) can put a block on two lists; every
// move re-checks the canary it expects, so the block is handed out at most once: a cached block
// whose canary says "on its page" or "on a remote stack" was freed elsewhere too and is dropped
// from the cache (reported), and a remote block whose canary says anything but "on a remote
// stack" is dropped when its page is collected. A refill happens only when the class's cache is
// empty and a flush re-checks every block, so a stale cached copy is always checked before the
// page's copy can reach the cache again.
//
// Concurrency. A heap is owned by whoever holds its claim (`xclaim_`): its thread while alive,
// briefly a reclaiming or adopting thread once abandoned. Every owner-only field below is touched
// only by the claim holder. Other threads use xpending_ (push; pop-all by Route P / cda adopters
// and idle reclaimers, who then hold the flags of what they popped), xabandoned_ (read), the
// claim (try), and the atomic gauges: page counts, slow-path epoch, partial mask, whole-page
// count and the sweep handshake.
//
// Invariants (CheckInvariants):
//   caches: 0 <= n() <= cap() <= kCacheSlots for every class; slots() == the class's array of
//     the heap's SlotStorage past its first word, kSlotStride apart, that word null (no_slots_
//     + 1 and cap() == 0 in a sentinel);
//     1 <= carve_limit_[k] <= kCacheSlots
//     (but 0 in a sentinel, which never refills); cache_cap_bytes_ == sum of cap * size
//     >= cache_initial_bytes_ (caps only grow), and <= cache_grow_budget_ (the initial capacity,
//     or the largest CacheBudget() a cache grew within); each cached block is a
//     block start of a page in use of its class, with canary kInCache, counted in its page's used()
//     (HeapRegistry::CheckAll also checks no block is cached twice, in one heap or two)
//   remote chains: count == |head chain| <= kRemoteBatch, tail its last block; every block a block
//     start of `page` (a page of another heap, or adopted since), canary kOnRemote; empty in a
//     sentinel, a helper and an abandoned heap
//   direct_[i] == DirectOffset(i), the offset of cache_[DirectClass(i)] (the class of the sizes
//     entry i serves);
//     key_ == CanaryKey() (0 in a sentinel, which
//     caches nothing and owns no page, so its fast paths never compare a canary)
//   active_[k] == nullptr or (active_[k]->size_class() == k, where == kActive, owner == this)
//   every page on partial_[k]: class k, where == kPartial, owner == this, HasFree()
//   every page on the pending queue: owner == this, in_remote_pending set, at most once
//     (quiescent: debug_queued() == 1)
//   xpage_count_ == pages whose owner is this heap (checked globally, registry.h)
//   empty_bytes_ == sum of spans of partial pages with retained_empty (each has used() == 0);
//     a page is retained only while empty_bytes_ stays within EmptyBudget() =
//     max(Policy::heap_empty_bytes, xpage_bytes_ / 8); an abandoned heap retains none
//   abandoned heap: active_[k] == nullptr and cache n == 0 for all k
//   xpartial_mask_ bit k == !partial_[k].empty()
//   single-threaded harnesses: whole_unswept_mt() == pages of this heap with every block on the
//     remote stack (HeapRegistry::CheckWholeCounts)
#ifndef MF2_HEAP_H_
#define MF2_HEAP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/block.h"
#include "mf2/check.h"
#include "mf2/fence.h"
#include "mf2/mutex.h"
#include "mf2/page.h"
#include "mf2/page_list.h"
#include "mf2/page_source.h"
#include "mf2/pending_queue.h"
#include "mf2/policy.h"
#include "mf2/segment.h"
#include "mf2/size_class.h"
#include "mf2/stats.h"

namespace mf2 {

class HeapRegistry;

class Heap {
 public:
  // A class's cache: a LIFO array of free blocks (canary kInCache), slots()[0..n()), the newest
  // at top[-1]. The word below slots() (the array's first, in its SlotStorage) is never written:
  // the memory is created zero, so the fast path's pop reads top[-1] and takes a null for "empty",
  // with no count to load and test, and the push compares top with limit (pointers rather than
  // a count and a capacity: one instruction fewer on each side).
  static constexpr uint32_t kCacheSlots = 61;
  static constexpr uint32_t kSlotStride = 64;
  static_assert(kCacheSlots + 1 < kSlotStride, "a class's slots and the null below them fit its "
                "stride, with top (at most slots() + kCacheSlots) inside it");
  // A sentinel's arrays: every class's, empty and of capacity 0, never written.
  alignas(kSlotStride * sizeof(void*)) static inline void* no_slots_[kSlotStride] = {};
  struct Magazine {
    // One past the newest cached block: slots() + n().
    void** top = no_slots_ + 1;
    // slots() + cap(); cap() == 0: caching off for the class (every free returns to the page).
    void** limit = no_slots_ + 1;
    // The class's block-start test (size_class.h: its kClassDiv entry), copied here when the
    // heap is made and constant after: free reads it on the line whose `top` it reads anyway,
    // where the shared table cost it three instructions to form the entry's address. Class 0's
    // (0, 0) passes no offset (a slice that serves no class).
    ClassDiv div = {0, 0};

    // The class's array in the heap's SlotStorage (aligned to its stride, so found from `top`),
    // past its null first word; no_slots_ + 1 in a sentinel.
    void** slots() const {
      return reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(top) &
                                      ~uintptr_t{kSlotStride * sizeof(void*) - 1}) +
             1;
    }
    uint32_t n() const { return static_cast<uint32_t>(top - slots()); }
    uint32_t cap() const { return static_cast<uint32_t>(limit - slots()); }
    void set_n(uint32_t n) { top = slots() + n; }
    void set_cap(uint32_t cap) { limit = slots() + cap; }
  };
  static_assert(sizeof(Magazine) == kMagazineBytes, "Slice::cache_offset counts in magazines");
  static_assert(64 % sizeof(Magazine) == 0, "a magazine never straddles a cache line");
  // Where the caches' blocks are: kSlotStride words per class (the null word, then up to
  // kCacheSlots blocks), each class's array on its own cache lines. It is mapped with the heap and
  // follows it (HeapRegistry::AcquireNewHeap), created without being written: a thread that
  // caches blocks of a few classes makes a few of its pages resident, not all 40 KiB
  // (bench/many_threads.cc: a heap whose caches were inline made 48 KiB resident when it was
  // made, as its constructor wrote them).
  struct alignas(kSlotStride * sizeof(void*)) SlotStorage {
    void* slot[kNumClasses][kSlotStride];  // no initialiser: created without a write
  };

 private:
  // The caches' counters, first in the heap: free forms a class's cache as heap + (class << 5),
  // one instruction fewer than with an offset to add (free 51 -> 50 instructions).
  alignas(64) Magazine cache_[kNumClasses];

 public:
  // Remote frees held back: blocks freed by this heap's thread into pages of other heaps, linked
  // per page (canary kOnRemote, counted in their page's used()) and pushed onto the page's remote
  // stack (each with a prefetch hint for the owner's walk, block.h) with one CAS once
  // kRemoteBatch of them wait, when another page needs the slot, at this heap's flush or exit,
  // when the background reclaimer flushes the heap idle, or, all of them, at every
  // kSlowPathsPerRemoteFlush-th allocation slow path that finds some held (a chain must
  // outlive a few cache refills to grow: pushed at every slow path, chains of a consumer that
  // also allocates held 1.8 blocks on average on bench/producer_consumer.cc). Owner only.
  // 16 slots: a thread typically frees into one page per size class of each thread it takes
  // blocks from, and with 8 slots these collided so often that chains rarely grew past one or
  // two blocks. More slots are not better: a chain whose page the thread has moved on from waits
  // for a collision to go out, pinning that page; with 32, xmalloc-test's producer, whose pages
  // its consumer frees in order, took new pages sooner (bench/RESULTS.md).
  // Invariants (CheckInvariants): a chain holds at most kRemoteBatch blocks, names its page
  // exactly while it holds one, sits in slot RemoteSlot(page), has its bit in held_slots_ exactly
  // while it holds one, and only a heap that is not abandoned, a sentinel or a helper holds any
  // (FreeRemote's fast path relies on the second and third).
  static constexpr uint32_t kRemoteSlots = 16;
  static_assert(kRemoteSlots <= 32, "held_slots_ has a bit per slot");
  static constexpr uint32_t kSlowPathsPerRemoteFlush = 16;
  // A refill short of half a cache tops up from further partial pages only for classes of at
  // most this many blocks per page: the mid sizes, from 1 KiB (AllocateSlow).
  static constexpr uint32_t kTopUpMaxBlocks = 64;
  static constexpr uint32_t kRemoteBatch = 32;
  // A chain of `page`'s blocks, newest first. When the page's blocks carry prefetch hints
  // (`hinted`, block.h), each block's hint, written as it joins, is the block kHintDistance links
  // further down (null among the chain's first kHintDistance), and behind[] holds the chain's
  // newest min(count, kHintDistance) blocks, the one that joined as the i-th (from 0) at
  // behind[i % kHintDistance]. Invariants (CheckInvariants, on chains no racing free touched).
  struct RemoteChain {
    Page* page = nullptr;
    Block* head = nullptr;
    Block* tail = nullptr;
    uint32_t count = 0;
    // CarriesHint(page->block_size()), set when the chain takes its page: kept here because the
    // remote free's fast path would otherwise read the page's first line for it.
    bool hinted = false;
    Block* behind[kHintDistance] = {};
  };

  // A heap that owns nothing, for threads that have none (thread_heap.h): every cache is empty
  // with capacity 0, so an allocation calls `on_allocate(class)` and a free goes the remote way
  // (no page is ever owned by it): first to `on_remote_free(p, call)` when that is set, which
  // returns true when it freed `p` itself (through a heap it took for the thread), else one
  // compare-exchange onto the page's remote stack. Constant-initialised: usable before any
  // constructor runs.
  struct SentinelTag {};
  using SentinelAllocate = void* (*)(uint32_t size_class);
  using SentinelRemoteFree = bool (*)(void* p, const char* call);
  constexpr Heap(SentinelTag, SentinelAllocate on_allocate,
                 SentinelRemoteFree on_remote_free = nullptr)
      : sentinel_allocate_(on_allocate),
        sentinel_remote_free_(on_remote_free),
        stats_(/*shared=*/true),
        source_(nullptr),
        registry_(nullptr),
        id_(~0u) {
    FillDirect();
  }
  // `slots`: the heap's own, created (not written) in memory mapped with it, never shared.
  Heap(PageSource* source, HeapRegistry* registry, uint32_t id, SlotStorage* slots);
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;

  // ---- Owner (claim holder) ----
  // calloc above the largest class: a block that reads as zeros (a fresh mapping is not
  // written, so a huge calloc faults nothing in). Counted and retried under memory pressure as
  // every large allocation.
  void* AllocateZeroedLarge(size_t size);
  // nullptr with errno = ENOMEM when memory is exhausted or `size` is absurd.
  MF2_ALWAYS_INLINE void* Allocate(size_t size) {
    if (MF2_PREDICT_FALSE(!BeginOp())) return Out::AllocateParked(size, this);
    const uint32_t offset = CacheOffsetFor(size);
    if (MF2_PREDICT_FALSE(offset == kNoCache)) return Out::AllocateLarge(size, this);
    Magazine* m = CacheAt(offset);
    void** const top = m->top;
    void* p = top[-1];  // null: the cache is empty (the null word below its slots)
    if (MF2_PREDICT_FALSE(p == nullptr)) return Out::AllocateSlow(offset, this);
    m->top = top - 1;
    // (canary ^ p) against key_: the key is compared from memory, one instruction fewer.
    if (MF2_PREDICT_FALSE((LoadCanary(p) ^ reinterpret_cast<uintptr_t>(p)) != key_)) {
      // Not the kInCache canary: freed twice, or written to.
      return Out::CachedBlockBad(offset, this, p);
    }
    return TakeCached(m, p);
  }
  // Allocate for an entry point that must do more than return nullptr when it fails (operator
  // new: the new-handler, std::bad_alloc). Only a block from the cache is served here; every
  // other way out ends the operation untouched and tail-calls `kSlow(size)`, which allocates
  // through Allocate (slow paths, reports, large sizes) and handles failure. So the entry point
  // keeps no stack frame: testing Allocate's result for nullptr after a call that returns into
  // it would cost every operator new one (push, pops, stack adjustment: 7 instructions).
  template <void* (*kSlow)(size_t)>
  MF2_ALWAYS_INLINE void* AllocateOrTailCall(size_t size) {
    if (MF2_PREDICT_FALSE(!BeginOp())) return kSlow(size);  // parked: Allocate waits
    const uint32_t offset = CacheOffsetFor(size);
    // Large sizes go the slow way: an empty array's null (no cache is formed for kNoCache).
    void** const top = offset != kNoCache ? CacheAt(offset)->top : no_slots_ + 1;
    void* p = top[-1];  // null: the cache is empty
    if (MF2_PREDICT_TRUE(p != nullptr)) {
      Magazine* m = CacheAt(offset);  // p is not null: offset names a cache
      // The canary before the pop: a bad block stays cached for Allocate to find and report.
      if (MF2_PREDICT_TRUE((LoadCanary(p) ^ reinterpret_cast<uintptr_t>(p)) == key_)) {
        m->top = top - 1;
        return TakeCached(m, p);
      }
    }
    EndOp();
    return kSlow(size);
  }
  // `alignment` must be a power of two (else nullptr, errno = EINVAL).
  void* AllocateAligned(size_t alignment, size_t size);
  // Frees `p` (from any heap; nullptr is ignored). Misuse is reported, never absorbed; `call`
  // names the entry point in the report.
  MF2_ALWAYS_INLINE void Free(void* p, const char* call = "free") {
    if (MF2_PREDICT_FALSE(!BeginOp())) return Out::FreeParked(p, this, call);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uintptr_t segment = SegmentNumber(a);
    if (MF2_PREDICT_FALSE(!segment_map::CoversIndex(segment))) {
      return Out::FreeUnusual(p, this, call);
    }
    const Slice* s = SliceOfCovered(a, segment);  // two loads: the map's byte, the Slice's line
    // The class's cache, also for a remote free: its first line holds the block-start test.
    const uint32_t offset = s->cache_offset;
    Magazine* m = CacheAt(offset);
    if (MF2_PREDICT_FALSE(!m->div.IsBlockOffset(SpanOffset(a, s)))) {
      return Out::ReportBadFree(p, this, call);
    }
    if (MF2_PREDICT_FALSE(s->xowner.load(std::memory_order_relaxed) != this)) {
      return Out::FreeRemote(p, this, SpanPage(a, s), call);  // Relaxed: see Page::owner_relaxed
    }
    // A canary of any state in word 1: the block is free already (block.h).
    const uint64_t canary = InCacheCanary(p);
    if (MF2_PREDICT_FALSE((LoadCanary(p) ^ canary) < kNumBlockStates)) {
      return Out::ReportDoubleFree(p, this, call);
    }
    void** const top = m->top;
    if (MF2_PREDICT_FALSE(top >= m->limit)) return Out::FreeToFullCache(p, this, offset);
    *top = p;
    m->top = top + 1;
    StoreCanary(p, canary);
#ifdef MF2_ASAN
    PoisonMemory(p, ClassInfo(ClassOf(m)).size);
#endif
    EndOp();
  }
  // Returns every cached block to its page, and pushes the remote frees this heap holds back
  // (thread exit, memory pressure, tests).
  void FlushCaches() {
    BeginOpOrWait();
    FlushCachesInOp();
    EndOp();
  }
  // The owner is about to be idle for a while (mf2_thread_idle): its caches and held remote
  // frees go back, its pending queue is drained, and the empty pages it retains are released,
  // so nothing of it pins pages that could come back whole. The heap stays its own.
  void GoIdle() {
    BeginOpOrWait();
    GoIdleInOp();
    EndOp();
  }
  // Pushes the remote frees held back (RemoteChain) onto their pages' remote stacks.
  void FlushRemoteChains() {
    BeginOpOrWait();
    FlushRemoteChainsInOp();
    EndOp();
  }

  // ---- The idle flush: another thread does GoIdle for an owner that went idle ----
  // A thread that stops calling the allocator keeps what its caches hold, and every page a
  // cached block sits on stays in use however many of its other blocks come back. So the
  // background reclaimer, when it sweeps an idle owner, first parks the heap and runs GoIdle on
  // the owner's behalf. The owner's operations never wait for that unless they start while it
  // runs, and pay for it two stores and a load on a line they touch anyway:
  //   owner   BeginOp: xbusy_ = 1 (relaxed); light fence; if xpark_ != 0 (acquire): WaitUnparked
  //           (then the operation runs again from the start).
  //           ... the operation ...
  //           EndOp: xbusy_ = 0 (release).
  //   parker  CAS xpark_ 0 -> requested; heavy fence (membarrier); read xbusy_ (acquire):
  //           1: the owner is inside an operation: CAS requested -> 0, give up;
  //           0: CAS requested -> parked: the heap is the parker's until it stores 0 (release)
  //              and wakes the owner.
  //   owner   WaitUnparked: requested -> CAS it back to 0 (the parker's CAS then fails and it
  //           gives up); parked -> futex-wait for 0 (acquire: everything the parker did).
  // The fences (fence.h) make "xbusy_ = 1; read xpark_" and "xpark_ = requested; read xbusy_"
  // behave as if both were seq_cst: either the parker sees the owner busy, or the owner's
  // operation sees the request and waits for the parker's decision. An operation that started
  // before the request has set xbusy_ before the heavy fence, so the parker sees it. Spin model
  // model/park_sb.pml, with mutants for a missing fence, a check before the store, a relaxed
  // EndOp, a relaxed unpark and a relaxed BeginOp load. Operations nest only in tail position
  // (the Allocate of CachedBlockBad, AllocateAligned and the *Parked twins), whose EndOp is the
  // outer operation's last action. Cost: 5 instructions per operation (bench/RESULTS.md).
  //
  // Called by the background reclaimer's helper heap (this) for an idle `owner`: parks it and,
  // unless it was abandoned meanwhile, does its GoIdle (a variant that leaves every page a sweep
  // could release sweepable: heap.cc, IdleFlushInOp). Returns whether it ran; false when
  // the owner was inside an operation, started one, is a sentinel or helper, or the kernel offers
  // no membarrier (AsymmetricFenceHeavy). Holds IdleFlushMutex() throughout. `scope`:
  //   kHeldFrees        only the owner's held remote frees go out (FlushRemoteChainsInOp): its
  //                     caches and pages stay as they are (FlushIdleHolder_mt);
  //   kCaches           the GoIdle variant above;
  //   kCachesAndSlots   that, then the pages of the emptied caches' slots go back to the OS
  //                     (ReleaseSlotPages): for an owner idle long enough that its next
  //                     operations may as well fault them in again (FlushLongIdleOwner_mt).
  // A full flush (not kHeldFrees) records the owner's slow-path epoch (IdleFlushOwed_mt).
  enum class FlushScope : uint8_t { kHeldFrees, kCaches, kCachesAndSlots };
  bool FlushIdleOwner_mt(Heap* owner, FlushScope scope = FlushScope::kCaches);
  // Held while a heap is parked: fork's prepare handler and HeapRegistry::CheckAll take it, so
  // no fork and no check of every heap happens while a parker acts as some heap's owner. Taken
  // before every other MF2 lock.
  static Mutex& IdleFlushMutex();
  // Tests: whether an owner operation of this heap is in progress.
  bool in_op_for_testing() const { return xbusy_.load(std::memory_order_acquire) != 0; }

  // ---- Any thread ----
  // The usable size of a live block (its class size), or 0 after reporting misuse (`call`
  // names the entry point).
  static size_t UsableSize(const void* p, const char* call = "malloc_usable_size");

  // A remote free is two steps, exposed so the multi-actor fuzzer can interleave them with other
  // heaps' operations; Free() runs exactly these. Step 1: push `b` (a validated block start of
  // `page`, owned by another heap) on the page's remote stack; returns whether this push won the
  // in_remote_pending 0->1 edge. Step 2, only if it did: queue the page on its owner's pending
  // queue and, if the owner has exited, drain that queue into the exited owner's heap (the
  // freer's own heap takes none of its pages: ReclaimAbandoned_mt).
  // `completed` (optional) is set when this push brought the page back whole (every block on
  // its remote stack; counted in the owner's whole_unswept_mt()).
  // Word 1 of `b` moves to canary kOnRemote by one compare-exchange from `*seen` (what the
  // caller's double-free check read; the current value if null): if it holds a canary, or
  // changed since (another thread freed the block meanwhile: a concurrent double free), the block
  // is not pushed, the misuse of `call` is reported, and `*refused` (optional) is set.
  bool PushRemote_mt(Page* page, Block* b, bool* completed = nullptr,
                     const uint64_t* seen = nullptr, bool* refused = nullptr,
                     const char* call = "free");
  static void QueueWonPage_mt(Page* page);

  // Tests only (mf2/detached_race_test.cc, mutant R7 of VERIFICATION.md): when set, the owner's
  // free into one of its adoptable detached pages calls it with the page after the caller has
  // seen itself as owner and the page detached, and before it takes the page's flag, the window
  // in which another heap may adopt the page. nullptr otherwise (one relaxed load on that slow
  // path, which already pays two atomic RMWs).
  using FreeDetachedHook = void (*)(Page* page);
  static std::atomic<FreeDetachedHook> free_detached_hook_for_testing;
  // Tests only (mf2/reclaimer_test.cc): when set, a sweep of an owner's queue calls it once it
  // has popped at least one page off the queue and before it handles them, the window in which
  // those pages are flagged and on no queue. nullptr otherwise (one relaxed load per sweep).
  using SweepHook = void (*)(Heap* sweeper, Heap* owner);
  static std::atomic<SweepHook> sweep_hook_for_testing;

  // ---- Route P, cda and idle reclamation (any thread, about another heap) ----
  // Whether the owner has not entered its allocation slow path for `threshold_ns`, as observed
  // by callers (the first observation of a new slow-path epoch starts the clock: never early).
  // When not idle, *idle_in_ns (if given) is how long until it would be, with no slow path.
  bool OwnerIdle_mt(uint64_t now_ns, uint64_t threshold_ns, uint64_t* idle_in_ns = nullptr);
  // Whether the owner's partial list for class k is empty (an atomic mirror of partial_[k]).
  bool PartialEmpty_mt(uint32_t k) const {
    // Relaxed: a gate, re-decided on every attempt; the page itself is taken under its flag.
    return ((xpartial_mask_[k / 64].load(std::memory_order_relaxed) >> (k % 64)) & 1) == 0;
  }
  // The calling thread (owner of this heap) freed the last remote block of a page of `owner`:
  // if `owner` is idle, release every completely free detached page on its pending queue.
  // Returns false when the owner was not idle yet (its whole pages are still owed; *idle_in_ns,
  // if given: how long until it would be), true otherwise (swept, handed to a sweep in
  // progress, or not for this heap to sweep).
  bool ReclaimIdleOwner_mt(Heap* owner, uint64_t* idle_in_ns = nullptr);
  // The background reclaimer (a helper heap): `holder` holds remote frees back (chains); if it
  // has been idle as long as an owner must be before a sweep (no allocation slow path for
  // Policy::reclaim_after_ns, which a thread that only frees never takes), its held frees go out
  // through the idle flush (FlushIdleOwner_mt, held frees only: an owner busy on its fast paths
  // keeps its caches), so the pages they pin can come back whole.
  // Returns false when the holder was not idle yet (*idle_in_ns: how long until it would be).
  bool FlushIdleHolder_mt(Heap* holder, uint64_t* idle_in_ns);
  // The background reclaimer's helper heap (any heap in tests), for an `owner` that has taken an
  // allocation slow path since it was last flushed (IdleFlushOwed_mt): if it has had
  // none for Policy::idle_flush_after_ns, does its GoIdle and returns its caches' slot pages
  // (FlushIdleOwner_mt, kCachesAndSlots). So an idle thread gives back what it holds even when
  // no page of it ever comes back whole (a thread pool's idle workers, which freed their own
  // blocks). Returns false when the owner was not idle yet or was inside an operation
  // (*idle_in_ns: when to try again; a quarter threshold after the first sight of a slow-path
  // epoch, so that the flush comes within 1.25 thresholds of the owner's last slow path; a whole
  // threshold after a busy one); true when flushed, or when it was not for us to flush.
  bool FlushLongIdleOwner_mt(Heap* owner, uint64_t* idle_in_ns);
  // Whoever acts as the owner (a parker, or the owner taking the heap over): the heap counts as
  // flushed as of now. Relaxed: a hint (the epoch does not move meanwhile: we act as owner).
  void MarkIdleFlushed() {
    xidle_flushed_epoch_.store(xslow_epoch_.load(std::memory_order_relaxed) + 1,
                               std::memory_order_relaxed);
  }
  // Whether this heap has entered its allocation slow path since its last full idle flush, or
  // since it was made or taken over: the background reclaimer's third scan. Any thread; a hint
  // (relaxed loads of counters others write). Not "and holds pages": the first slow path after a
  // flush notifies the reclaimer before it takes a page, and a pass that ran in between would
  // find none and wait for good, however many pages the thread took afterwards.
  bool IdleFlushOwed_mt() const {
    // Relaxed: the reclaimer re-decides at every pass.
    return xidle_flushed_epoch_.load(std::memory_order_relaxed) !=
           xslow_epoch_.load(std::memory_order_relaxed) + 1;
  }
  // `owner` may have whole pages to sweep (a page of it came back whole, or we queued or gave
  // back pages that a completer's sweep may have missed). With the background reclaimer, wakes
  // it: the sweep and the madvise of what it releases stay off this thread's path. Sweeps
  // itself (ReclaimIdleOwner_mt) once reclaim_batch whole pages wait when there is no
  // reclaimer, or when the reclaimer is starved (reclaimer::Starved).
  void RequestSweep_mt(Heap* owner);
  // Pages of this heap that came back whole and were not taken yet (see FreeRemote).
  int64_t whole_unswept_mt() const { return xwhole_unswept_.load(std::memory_order_seq_cst); }

  // ---- Lifecycle (see HeapRegistry) ----
  bool TryClaim();
  // Owner at thread exit: flush the caches, collect, release empty pages, mark abandoned. Keeps
  // the claim.
  void Abandon();
  // Whoever acts as the owner (the claim holder of an abandoned heap, or a parker) of a heap whose
  // caches are all empty: returns the pages of its SlotStorage to the OS
  // (madvise(MADV_DONTNEED)). Nothing is lost: a slot is read only below its cache's `n`, so only
  // after an owner wrote it, and the pages come back as zeros when it does. The first page,
  // shared with the heap's own fields, stays.
  void ReleaseSlotPages();
  // A new owner that claimed an abandoned heap (or a new heap's creator) takes it over: caches
  // sized from the policy in force.
  void TakeOver();
  // Releases the claim of an abandoned heap; if pages were queued meanwhile, processes them
  // (handing them to `adopter` if not null).
  void ReleaseClaimAndRecheck(Heap* adopter = nullptr);
  // A remote freer queued a page on this (abandoned) heap: unless someone else holds the claim,
  // process the queue into this heap. The freer's own heap takes none of the pages
  // (heap_abandon.cc says why).
  void ReclaimAbandoned_mt();
  // Claim holder: process the whole pending queue. On an abandoned heap with an `adopter` (a
  // live heap of the same page source, owned by the caller), each dequeued page changes owner
  // while its in_remote_pending flag is still held, then joins the adopter; otherwise pages are
  // collected and filed here.
  void ProcessAllPending(Heap* adopter = nullptr);

  // ---- A successor moves to its predecessor's heap (thread_heap.cc) ----
  // A thread whose first free was of a block of `predecessor` (a heap whose thread is likely
  // exiting: a worker that starts a successor and ends) but found that heap still claimed
  // took this one instead. For its next kMoveChecks allocation slow paths (not counting those
  // a class's carving slow start causes, a few per class: carve_cut_), each one that finds
  // `predecessor` handed back (abandoned, claim released: MoveDue) ends its operation and
  // returns `move(this, class)` instead: the thread hands this heap back and takes
  // `predecessor` (thread_heap.cc). Without the move, the successor frees its predecessor's
  // blocks into one heap while it fills another, and whoever takes the predecessor's heap
  // fills it while those frees hollow it out (Larson's threads: bench/RESULTS.md). A longer
  // window moves more threads, but later: all the interim heap handed out is then freed
  // remotely. Owner only; cleared by the move, by Abandon and by TakeOver.
  // Invariant (CheckInvariants): move_to_ != nullptr exactly while move_checks_ != 0, and
  // only on a heap that is not abandoned and is neither a sentinel nor a helper.
  using MoveToHeap = void* (*)(Heap* from, uint32_t size_class);
  static constexpr uint32_t kMoveChecks = 64;
  void SetMoveTo(Heap* predecessor, MoveToHeap move) {
    move_to_ = predecessor;
    move_ = move;
    move_checks_ = predecessor != nullptr ? kMoveChecks : 0;
  }
  Heap* move_to() const { return move_to_; }

  bool abandoned() const { return xabandoned_.load(std::memory_order_relaxed); }
  // Whether someone holds the claim (relaxed: a hint; TryClaim decides).
  bool claimed_relaxed() const { return xclaim_.load(std::memory_order_relaxed) != 0; }
  // Whether its thread has handed it back (abandoned, claim released) and nobody has taken it
  // since. Relaxed loads: a hint for a thread waiting to take it; the registry claims it under
  // its lock (HeapRegistry::AcquireHeap), so a stale answer costs a wait, never a wrong heap.
  bool handed_back_relaxed() const { return abandoned() && !claimed_relaxed(); }
  // seq_cst: for the push-then-check hand-off with an exiting owner (PendingQueue::Push_mt).
  bool abandoned_seq_cst() const { return xabandoned_.load(std::memory_order_seq_cst); }
  // A sentinel heap owns nothing (thread_heap.h).
  bool is_sentinel() const { return source_ == nullptr; }
  // A helper heap (the background reclaimer's) works on other heaps' pages and never allocates:
  // it adopts no exited owner's pages (nobody would drain its queue) and keeps no spare page.
  void set_helper() { helper_ = true; }
  // The heap that takes over an exited owner's pages met on this heap's behalf: itself, or
  // nullptr for sentinels and helpers (the pages are then drained and filed on the dead heap).
  Heap* adopter() { return is_sentinel() || helper_ ? nullptr : this; }
  uint32_t id() const { return id_; }
  size_t page_count() const { return xpage_count_.load(std::memory_order_relaxed); }
  PageSource* source() const { return source_; }
  const HeapStats& stats() const { return stats_; }
  HeapStats& mutable_stats() { return stats_; }
  Page* active_page(uint32_t k) const { return active_[k]; }
  const PageList& partial(uint32_t k) const { return partial_[k]; }
  const Magazine& cache(uint32_t k) const { return cache_[k]; }
  // The first byte of the heap's SlotStorage: class 0's array, null word included (no_slots_ in
  // a sentinel).
  const void* slot_storage() const { return cache_[0].slots() - 1; }
  const RemoteChain& remote_chain(uint32_t i) const { return remote_[i]; }
  // Whether the heap holds remote frees back (any thread; a hint, see xholds_remote_).
  bool holds_remote_mt() const { return xholds_remote_.load(std::memory_order_relaxed); }

  // Checks the heap's equations; `quiescent` also walks the pending queue.
  void CheckInvariants(bool quiescent) const;
  // Quiescent: adds this heap's queued pages that are counted as adoptable to `counted[k]`, and
  // checks that each one on the pending queue has its ready bit set (adoption.h).
  void CheckAdoptionBookkeeping(uint32_t* counted) const;
  // Whether `page` is on this heap's pending queue. Quiescent only.
  bool PendingContains(const Page* page) const;

  // Registry links (under the registry's lock).
  Heap* all_next = nullptr;
  Heap* idle_next = nullptr;
  // A thread that preferred this heap found it claimed and waits to move to it (SetMoveTo):
  // AcquireHeap gives it to others only when no other idle heap is left. Cleared when taken.
  bool wanted = false;
  // A thread's heap (thread_heap.h): the thread's kernel id, and the registry's list of such
  // heaps whose thread has not handed them back yet (HeapRegistry::ReclaimExitedThreadHeaps).
  // 0 / unlinked for every other heap (explicit heaps, tests' heaps).
  int32_t thread_tid = 0;
  Heap* thread_prev = nullptr;
  Heap* thread_next = nullptr;

 private:
  uint32_t ClassOf(const Magazine* m) const { return static_cast<uint32_t>(m - cache_); }
  // Canary(p, kInCache) from this heap's copy of the key (key_ == CanaryKey() outside the
  // sentinels): one xor, and no load of the global key or call to its lazy set-up.
  MF2_ALWAYS_INLINE uint64_t InCacheCanary(const void* p) const {
    static_assert(kInCache == 0, "Canary(p, s) == InCacheCanary(p) ^ s");
    return reinterpret_cast<uintptr_t>(p) ^ key_;
  }
  // The offset in this heap of `size`'s class's cache (one load from direct_); kNoCache above
  // the largest class. An offset, not a pointer: the fast paths address the cache with it and
  // the heap, and pass it as it is to their ways out (Out), where a pointer formed once for both
  // cost an instruction.
  static constexpr uint32_t kNoCache = ~uint32_t{0};
  MF2_ALWAYS_INLINE uint32_t CacheOffsetFor(size_t size) const {
    if (MF2_PREDICT_TRUE(size <= kSmallMax)) return direct_[(size + kMinAlign - 1) / kMinAlign];
    if (MF2_PREDICT_TRUE(size <= kMaxClassSize)) {
      return direct_[kMidBase + (size + kMidStep - 1) / kMidStep];
    }
    return kNoCache;
  }
  // The cache at `offset` in this heap (what direct_ and Slice::cache_offset hold).
  MF2_ALWAYS_INLINE Magazine* CacheAt(uint32_t offset) {
    return reinterpret_cast<Magazine*>(reinterpret_cast<char*>(this) + offset);
  }
  // The fast paths' last step: `p`, popped from `m` with its kInCache canary checked, is handed
  // out (canary cleared) and the operation ends.
  MF2_ALWAYS_INLINE void* TakeCached(Magazine* m, void* p) {
    StoreCanary(p, 0);
#ifdef MF2_ASAN
    UnpoisonMemory(p, ClassInfo(ClassOf(m)).size);
#else
    (void)m;
#endif
    return EndOp(p);
  }

  // An owner operation (see "The idle flush" above). BeginOp returns false when a parker asked
  // for the heap or holds it: a fast path then tail-calls its *Parked twin, which waits and runs
  // the operation again (a call that returned into the fast path would cost it a stack frame).
  // Other operations use BeginOpOrWait.
  MF2_ALWAYS_INLINE bool BeginOp() {
    // Relaxed store, light fence, then the load: the owner's half of the asymmetric store-
    // buffering pair (fence.h); the parker's half has the heavy fence. Acquire load: the 0 it
    // reads may be the unpark of a parker that ran GoIdle since our last operation (release),
    // whose writes to our caches this operation must see (model/park_sb.pml, mutant
    // W_park_begin_relaxed). Free on x86 and one ldar on Arm.
    xbusy_.store(1, std::memory_order_relaxed);
    AsymmetricFenceLight();
    return MF2_PREDICT_TRUE(xpark_.load(std::memory_order_acquire) == kUnparked);
  }
  MF2_ALWAYS_INLINE void BeginOpOrWait() {
    if (!BeginOp()) WaitUnparked();
  }
  MF2_ALWAYS_INLINE void EndOp() {
    // Release: a parker that reads this 0 (acquire) sees everything the operation wrote.
    xbusy_.store(0, std::memory_order_release);
  }
  template <typename T>
  MF2_ALWAYS_INLINE T EndOp(T result) {
    EndOp();
    return result;
  }
  // The slow paths the fast paths tail-call end the operation themselves (an EndOp after a call
  // would cost every fast path a stack frame): AllocateSlow, CachedBlockBad (through its
  // Allocate), AllocateLarge, FreeUnusual, ReportBadFree, FreeRemoteSlow, ReportDoubleFree and
  // FreeToFullCache each start with an OpEnd (FreeRemote's own fast path ends it by hand). Ending
  // twice is harmless.
  struct OpEnd {
    Heap* heap;
    ~OpEnd() { heap->EndOp(); }
  };
  // The fast paths' ways out, tail-called with the entry point's own argument (the size or the
  // pointer) first and the heap second: that argument stays in the register it arrived in, where
  // a member's `this` in its place would move it aside (one instruction on every malloc and every
  // free). A class's cache goes as its offset in the heap (CacheOffsetFor). Each runs the member
  // of its name (heap.cc).
  struct Out {
    MF2_NOINLINE static void* AllocateParked(size_t size, Heap* h) noexcept;
    MF2_NOINLINE static void* AllocateLarge(size_t size, Heap* h) noexcept;
    MF2_NOINLINE static void* AllocateSlow(uint32_t cache_offset, Heap* h) noexcept;
    MF2_NOINLINE static void* CachedBlockBad(uint32_t cache_offset, Heap* h, void* p) noexcept;
    MF2_NOINLINE static void FreeParked(void* p, Heap* h, const char* call) noexcept;
    MF2_NOINLINE static void FreeUnusual(void* p, Heap* h, const char* call) noexcept;
    MF2_NOINLINE static void ReportBadFree(void* p, Heap* h, const char* call) noexcept;
    MF2_NOINLINE static void FreeRemote(void* p, Heap* h, Page* page, const char* call) noexcept;
    MF2_NOINLINE static void ReportDoubleFree(void* p, Heap* h, const char* call) noexcept;
    MF2_NOINLINE static void FreeToFullCache(void* p, Heap* h, uint32_t cache_offset) noexcept;
  };
  MF2_NOINLINE void WaitUnparked();
  MF2_NOINLINE void* AllocateParked(size_t size) noexcept;
  MF2_NOINLINE void FreeParked(void* p, const char* call) noexcept;
  enum Park : uint32_t { kUnparked = 0, kParkRequested = 1, kParked = 2 };
  void FlushCachesInOp();
  void FlushRemoteChainsInOp();
  void GoIdleInOp();
  void IdleFlushInOp();
  void ReleaseEmptyActivePages(bool collect_first);

  // heap.cc: the owner's algorithm.
  // AllocateSlow, FreeToFullCache and FreeRemote: inline into their Out:: twins only (heap.cc).
  MF2_ALWAYS_INLINE void* AllocateSlow(Magazine* m) noexcept;
  // `counts`: whether this slow path uses up one of the window's kMoveChecks (not when the
  // carving slow start caused it: carve_cut_).
  bool MoveDue(bool counts);
  MF2_NOINLINE void* CachedBlockBad(Magazine* m, void* p) noexcept;
  MF2_ALWAYS_INLINE void FreeToFullCache(Magazine* m, void* p) noexcept;
  MF2_ALWAYS_INLINE void FreeRemote(Page* page, void* p, const char* call) noexcept;
  MF2_NOINLINE void FreeRemoteSlow(Page* page, void* p, const char* call) noexcept;
  static uint32_t RemoteSlot(const Page* page) {
    return (reinterpret_cast<uintptr_t>(page) >> 8) % kRemoteSlots;
  }
  void ReturnRemote(Page* page, Block* b, uint64_t seen, const char* call);
  void HoldRemote(Page* page, Block* b);
  // `b` (canary kOnRemote, this heap's since its compare-exchange a moment ago) joins `chain` as
  // its new head, with its prefetch hint: the block that joined kHintDistance blocks before it
  // (RemoteChain). Written here rather than when the chain is pushed, so that no block is
  // written long after the check that made it ours, and no second walk of the chain is needed.
  MF2_ALWAYS_INLINE static void Link(RemoteChain* chain, Block* b) {
    StoreNext(b, chain->head);
    if (chain->hinted) {
      Block*& behind = chain->behind[chain->count & (kHintDistance - 1)];
      StoreHint(b, behind);
      behind = b;
    }
    chain->head = b;
    ++chain->count;
  }
  void PushChain(RemoteChain* chain);
  bool ChainIntact(const RemoteChain& chain) const;
  void ReleaseSlot(RemoteChain* chain);
  void RebuildChain(RemoteChain* chain);
  void AfterRemotePush(Page* page, Heap* owner, bool won, bool completed);
  MF2_NOINLINE void FreeUnusual(void* p, const char* call) noexcept;
  MF2_NOINLINE void ReportBadFree(void* p, const char* call) noexcept;
  MF2_NOINLINE void ReportDoubleFree(void* p, const char* call) noexcept;
  MF2_NOINLINE void* AllocateLarge(size_t size, size_t alignment,
                                   bool* zeroed = nullptr) noexcept;
  void FreeDetached(Page* page, Block* b);
  void PageGainedFree(Page* page);
  // A block leaving a cache (canary kInCache checked by FlushOne) goes back to its page.
  void ReturnBlock(Block* b);
  void FlushOne(void* p);
  void ConfigureCaches();
  size_t CacheBudget() const;
  // Inline into the two slow paths that call it (heap.cc): out of line, its frame was set up
  // before the early return that most calls take.
  MF2_ALWAYS_INLINE void GrowCache(Magazine* m);
  // The refill AllocateSlow is about to make, passed down its search for a page: when that is
  // the active page with remote frees (CollectActive), up to `want` of them go straight into
  // `out` (Page::CollectRemote), `got` of them, instead of onto the page's list and off it again.
  struct Refill {
    void** out;
    uint32_t want;
    uint32_t got;
  };
  Page* FindPage(uint32_t k, Refill* refill = nullptr);
  Page* FindPageUnderPressure(uint32_t k, Refill* refill = nullptr);
  Page* CollectPending(uint32_t k, uint32_t budget);
  void GiveBack(Page* chain);
  void CollectDequeued(Page* page);
  uint32_t Collect(Page* page, RemoteWord taken, Heap* taken_from, void** out = nullptr,
                   uint32_t max = 0);
  Page* FilePage(Page* page, uint32_t k);
  Page* CollectActive(uint32_t k, Refill* refill = nullptr);
  void Detach(Page* page);
  void PartialPush(Page* page);
  void PartialRemove(Page* page);
  Page* NewPage(uint32_t k);
  MF2_ALWAYS_INLINE void SetActive(uint32_t k, Page* page);
  bool TryRelease(Page* page);
  void Unretain(Page* page);
  void CountPage_mt(const Page* page, int delta);
  size_t EmptyBudget() const;
  void ReleaseRetainedEmpties();
  // heap_abandon.cc: pages of an exited thread's heap change owner.
  Page* AdoptAbandoned(uint32_t k);
  void AdoptDequeued(Page* page, Heap* dead);
  Page* AdoptPartial(Heap* dead, uint32_t k);
  void AdoptHeld_mt(Page* page, Heap* from);
  // heap_adopt.cc: pages of a live owner change owner, or are released by a sweep.
  Page* AdoptFromPending_mt(uint32_t k, Route route);
  void AdoptPopped_mt(Page* page, Heap* owner);
  void SweepIdleOwner_mt(Heap* owner);

  // ---- Owner-only (claim holder); the fast paths' fields first ----
  // The process's canary key (block.h), copied here so the fast paths load it next to the cache.
  uint64_t key_ = 0;
  // The idle flush (above): the park state, written by parkers and by the owner's cancel, read
  // by every owner operation; and 1 while an owner operation runs, written by the owner only.
  // On the fast paths' first line: a parker writes it only to park an idle owner.
  std::atomic<uint32_t> xpark_{kUnparked};
  std::atomic<uint8_t> xbusy_{0};
  // Where each request size's cache is: direct_[(size + 15) / 16] for size <= kSmallMax,
  // direct_[kMidBase + (size + kMidStep - 1) / kMidStep] above (the mid indexes start at
  // kMidFirst), up to kMaxClassSize. The cache's offset in the heap rather than its class: the
  // fast path addresses the cache with it directly, where a class byte cost a shift and two
  // adds more on every mid-size allocation.
  static constexpr uint32_t kSmallEntries = kSmallMax / kMinAlign + 1;
  static constexpr uint32_t kMidFirst = kSmallMax / kMidStep + 1;
  static constexpr uint32_t kMidBase = kSmallEntries - kMidFirst;
  static constexpr uint32_t kDirectEntries = kMidBase + kMaxClassSize / kMidStep + 1;
  static constexpr uint32_t DirectClass(uint32_t i) {
    return i < kSmallEntries ? kSmallClass.k[i] : kMidClass.k[i - kMidBase];
  }
  // direct_ and each cache's block-start test; both constructors (the sentinel's is constant-
  // initialised).
  constexpr void FillDirect() {
    for (uint32_t i = 0; i < kDirectEntries; ++i) direct_[i] = DirectOffset(i);
    for (uint32_t k = 0; k < kNumClasses; ++k) cache_[k].div = kClassDiv.div[k];
  }
  // direct_[i]: where the cache of the class that serves sizes entry i is, in bytes from the
  // heap. An offset, not a pointer: a quarter of the size (the small sizes' entries share 3
  // lines, not 9; 3.4 KiB less per heap), and the two constant-initialised sentinels need no
  // load-time relocation for it (1,138 of them, 27 KiB of the shared library). It costs malloc
  // one add (26 -> 27 instructions).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
  static constexpr uint16_t DirectOffset(uint32_t i) {
    return static_cast<uint16_t>(offsetof(Heap, cache_) + DirectClass(i) * sizeof(Magazine));
  }
#pragma GCC diagnostic pop
  static_assert(kNumClasses * sizeof(Magazine) <= UINT16_MAX, "cache offsets fit direct_");
  uint16_t direct_[kDirectEntries] = {};
  const SentinelAllocate sentinel_allocate_ = nullptr;
  const SentinelRemoteFree sentinel_remote_free_ = nullptr;
  bool helper_ = false;
  alignas(64) RemoteChain remote_[kRemoteSlots];
  uint32_t held_slots_ = 0;  // bit i: remote_[i] holds a block (owner only)
  // held_slots_ != 0, for the background reclaimer, which flushes the held frees of idle heaps
  // (reclaimer.cc). Written by the owner when that changes; relaxed everywhere: a hint for which
  // heaps to park, the park handshake orders the flush itself.
  std::atomic<bool> xholds_remote_{false};
  // Allocation slow paths that found held_slots_ != 0 since the held frees last went out at one
  // (< kSlowPathsPerRemoteFlush; owner only).
  uint32_t slow_paths_holding_ = 0;
  Page* active_[kNumClasses] = {};
  PageList partial_[kNumClasses];
  uint32_t rotor_ = 0;       // where AdoptFromPending_mt starts looking in the ready bitmap
  size_t empty_bytes_ = 0;  // spans of empty pages kept on partial lists for reuse
  size_t cache_cap_bytes_ = 0;      // sum over classes of cache cap * class size
  size_t cache_initial_bytes_ = 0;  // cache_cap_bytes_ as ConfigureCaches left it
  size_t cache_grow_budget_ = 0;    // max(initial, largest CacheBudget() a cache grew within)
  // Slow start of carving: the most never-used blocks class k's next refill may carve. It starts
  // at kFirstCarveBytes' worth (at least one block) when the caches are configured, and doubles,
  // up to kCacheSlots, after each refill that carved that many. A refill takes up to half the
  // cache, 16 to 64 KiB of a mid-size class, and carving writes every block it takes (its
  // canary), so a class used a few times would make that much resident at its first malloc
  // (bench/RESULTS.md). Free blocks are not limited: reusing them touches nothing new.
  static constexpr size_t kFirstCarveBytes = 4096;
  uint8_t carve_limit_[kNumClasses] = {};
  // Whether class k's last refill took fewer blocks than it wanted because carve_limit_ cut it
  // short. The next slow path then does not grow the cache (GrowCache): it ran dry because of the
  // slow start, not because it is too shallow. Counting those dry runs let the mid classes that
  // ramp first take the growth budget (pair_loop mid: 147 -> 152 instructions per pair).
  bool carve_cut_[kNumClasses] = {};
  uint32_t remote_batch_ = 1;   // Policy::remote_batch when the heap was taken
  Heap* move_to_ = nullptr;  // SetMoveTo
  MoveToHeap move_ = nullptr;
  uint32_t move_checks_ = 0;
  HeapStats stats_;
  PageSource* const source_;
  HeapRegistry* const registry_;
  const uint32_t id_;

  // ---- Shared ----
  // Owner writes (relaxed load+store, single writer); others read for the gates. Their own line,
  // which no other thread writes often (only an adopter's page-count decrement).
  alignas(64) std::atomic<uint64_t> xslow_epoch_{0};   // bumped on every allocation slow path
  std::atomic<uint64_t> xpartial_mask_[2] = {};  // bit k: partial_[k] non-empty
  // Pages and span bytes this heap owns. Atomic: an adopter or reclaimer that takes a page
  // subtracts it from the previous owner (relaxed RMWs: counts, ordered by nothing).
  std::atomic<size_t> xpage_count_{0};
  std::atomic<size_t> xpage_bytes_{0};
  // Idle reclamation (ReclaimIdleOwner_mt). On a line of their own: read by edge winners,
  // written only when a page comes back whole or such a page is taken off a remote stack.
  // Pages of this heap that came back whole and are still queued (approximate: a page adopted
  // between its completion and its take is counted on one heap and discounted on another).
  alignas(64) std::atomic<int64_t> xwhole_unswept_{0};
  // Another pass is owed by whoever holds xsweeping_. Written only by exchanges, so a request
  // is never overwritten unseen (ReclaimIdleOwner_mt; model/sweep_sb.pml).
  std::atomic<bool> xsweep_wanted_{false};
  std::atomic<bool> xsweeping_{false};      // one sweeper at a time
  // Observers' probe (OwnerIdle_mt), written by other threads, so away from the owner's lines:
  // (low 24 bits of the epoch seen) << 40 | (time seen, microseconds, 40 bits).
  std::atomic<uint64_t> xidle_probe_{0};
  // xslow_epoch_ + 1 as the last full idle flush found it, or as it was when the heap was made
  // or taken over (MarkIdleFlushed): not owed an idle flush until its next slow path, which
  // notifies the reclaimer (IdleFlushOwed_mt, AllocateSlow).
  std::atomic<uint64_t> xidle_flushed_epoch_{1};
  alignas(64) PendingQueue xpending_;
  std::atomic<uint32_t> xclaim_{0};
  std::atomic<bool> xabandoned_{false};

  friend struct HeapLayout;  // the static_asserts below
};

// The line claims of the comments above (offsetof on a class that is not standard-layout:
// conditionally supported, by clang and gcc, with a warning silenced here).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
struct HeapLayout {
  static constexpr size_t kLine = 64;
  static_assert(offsetof(Heap, key_) / kLine == offsetof(Heap, direct_) / kLine &&
                    offsetof(Heap, xpark_) / kLine == offsetof(Heap, key_) / kLine &&
                    offsetof(Heap, xbusy_) / kLine == offsetof(Heap, key_) / kLine,
                "the fast paths' first accesses (key, park state, busy flag, cache offsets) on "
                "one line");
  static_assert(offsetof(Heap, cache_) == 0, "free adds no offset to a class's cache");
  static_assert(offsetof(Heap, remote_) % kLine == 0 && sizeof(Heap::RemoteChain) == kLine,
                "each held remote chain on a line of its own (a remote free touches one)");
  static_assert(offsetof(Heap, xslow_epoch_) % kLine == 0 &&
                    offsetof(Heap, xpage_bytes_) / kLine == offsetof(Heap, xslow_epoch_) / kLine,
                "the gates' line: slow-path epoch, partial mask and page counts together");
  static_assert(offsetof(Heap, xwhole_unswept_) % kLine == 0 &&
                    offsetof(Heap, xidle_probe_) / kLine ==
                        offsetof(Heap, xwhole_unswept_) / kLine &&
                    offsetof(Heap, xidle_flushed_epoch_) / kLine ==
                        offsetof(Heap, xwhole_unswept_) / kLine,
                "idle reclamation's line: whole count, sweep flags, the observers' probe and the "
                "last idle flush's epoch");
  static_assert(offsetof(Heap, xpending_) % kLine == 0, "the pending queue's head on its own line");
  static_assert(sizeof(Heap) <= 2 * 4096,
                "a heap's own fields take at most two pages (docs/design.md, per-thread caches)");
};
#pragma GCC diagnostic pop

// Where a heap's SlotStorage starts in the page-aligned mapping that holds both
// (HeapRegistry::AcquireNewHeap): the first offset past the heap aligned for it, so that a
// Magazine finds its array from `top` (Magazine::slots()).
inline constexpr size_t kHeapSlotsOffset =
    (sizeof(Heap) + alignof(Heap::SlotStorage) - 1) & ~(alignof(Heap::SlotStorage) - 1);
inline constexpr size_t kHeapMappingBytes = kHeapSlotsOffset + sizeof(Heap::SlotStorage);
static_assert(alignof(Heap::SlotStorage) == Heap::kSlotStride * sizeof(void*) &&
                  kHeapSlotsOffset % alignof(Heap::SlotStorage) == 0 &&
                  4096 % alignof(Heap::SlotStorage) == 0,
              "each class's array in a mapped SlotStorage is aligned to its stride");

}  // namespace mf2

#endif  // MF2_HEAP_H_
