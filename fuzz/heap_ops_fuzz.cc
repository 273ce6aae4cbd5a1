// heap_ops_fuzz: one heap against a shadow model.
//
// Schedule: a sequence of ops, each an op byte (value % kNumOps; the values of enum class Op)
// followed by its arguments:
//   0 ALLOC        size                 allocate SizeFromByte(size) (class boundaries, 0, large)
//   1 ALLOC_N      size count           allocate 1 + count % 64 blocks of that size
//   2 ALIGNED      align size           AllocateAligned(1 << align % 21, size)
//   3 FREE         idx16                free live block idx % live (oldest first)
//   4 FREE_RUN     idx16 count          free 1 + count % 64 consecutive live blocks from idx
//   5 USABLE       idx16                UsableSize of a live block == recorded, >= requested
//   6 EXIT         -                    thread exit and a new thread (takes the heap over whole)
//   7 MISUSE       kind idx16           misuse, kind % 6, each reported (fuzz_util.h
//                                       ReportCapture) and nothing absorbed: 0 interior pointer;
//                                       1 double free by the owner; 2 foreign pointer; 3 double
//                                       free by a thread without a heap (after the owner's free);
//                                       4 a remote free by such a thread, then its second free
//                                       and the owner's free of the same block (two reports);
//                                       5 a use-after-free write into word 1 of a block the owner
//                                       just freed, which the next allocation of its class pops
//                                       (from the cache, or from the active page's free list when
//                                       caching is off and no remote frees wait on the page):
//                                       reported as a corrupt free list, the
//                                       block never handed out and kept as handed out (the harness
//                                       takes it back as live and frees it later)
//   8 ALLOC_OOM    size                 allocate while the page source fails: nullptr + ENOMEM,
//                                       or a block from a page the heap already holds
//   9 POLICY       b                    span cache = (b & 7) MiB, retained empty segments =
//                                       (b >> 3) % 3: exercises madvise and segment unmapping
//  10 CACHE        b                    cache policy b % 4 (fuzz_util.h CacheBytesForMode: default,
//                                       off, small); the thread exits and a new one takes the heap
//                                       over, so its caches are sized anew (checked per class)
//  11 FILL         size mode            allocate cap + 1 blocks of that class (cap: the heap's
//                                       cache capacity for it, read again after each allocation:
//                                       a slow path may double it), then free them, newest first,
//                                       until the class's cache is full; mode odd: one more free,
//                                       into the full cache, which either grows the cache (the
//                                       block goes in) or returns the older half to the pages
//                                       (FreeToFullCache). The blocks left live stay last.
//  12 FLUSH        -                    Heap::FlushCaches: every cache empty afterwards
//  13 LATE         idx16 count size     thread exit, then what glibc's teardown and a late key
//                                       destructor do after the exit hook: 1 + count % 4 live
//                                       blocks from idx freed through the dead sentinel
//                                       (fuzz_util.h DeadSentinel: remote frees into the abandoned
//                                       heap), one block of SizeFromByte(size) allocated through
//                                       it (a heap taken and released at once); then a new thread
//                                       takes a heap
// FILL then EXIT is a thread exit with a full cache (Abandon flushes it).
// Allocations take malloc's fast path (Heap::Allocate) and operator new's (AllocateOrTailCall)
// in turn: the same block either way, so the encoding means what it meant before.
// After every op: the pages the op allocated from or freed into (fuzz_util.h Checker::Touched:
// Page::CheckInvariants, exact block conservation with the caches, CheckAll's per-page checks).
// Every FullCheckEvery() ops (16; MF2_FUZZ_FULL_CHECK_EVERY) and at the end of the input:
// Heap::CheckInvariants(true), HeapRegistry::CheckAll(true) and exact conservation on every page
// (Checker::Full).
// The State destructor frees every live block (verifying stamps), releases the heap and checks
// that every span went back (invariant 9).
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz/fuzz_util.h"
#include "fuzz/live_set.h"
#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/segment.h"

namespace mf2_fuzz {
namespace {

using mf2::Heap;

// The op numbers of the byte encoding (the table above). Never renumber: the corpus means them.
enum class Op : uint8_t {
  kAlloc = 0,
  kAllocN = 1,
  kAligned = 2,
  kFree = 3,
  kFreeRun = 4,
  kUsable = 5,
  kExit = 6,
  kMisuse = 7,
  kAllocOom = 8,
  kPolicy = 9,
  kCache = 10,
  kFill = 11,
  kFlush = 12,
  kLate = 13,
};
constexpr int kNumOps = static_cast<int>(Op::kLate) + 1;
constexpr int kMaxOps = 4096;

// operator new's fast path (heap.h AllocateOrTailCall) needs a slow way that knows the heap:
// the one State::HeapAllocate names just before it calls.
thread_local Heap* t_new_heap = nullptr;
void* AllocateThroughNewHeap(size_t size) { return t_new_heap->Allocate(size); }

class State {
 public:
  State() : heap_(AcquireHeap()) { SetBudget(8); }
  ~State() {
    for (const Live& b : live_.TakeAll()) {
      Verify(b);
      heap_->Free(b.p);
    }
    live_.checker().Full(true);
    mf2::HeapRegistry::Global().ReleaseHeap(heap_);
    frame_.Finish(live_.checker());
  }

  void Perform(Reader& in) {
    switch (static_cast<Op>(in.Byte() % kNumOps)) {
      case Op::kAlloc: return OpAlloc(in);
      case Op::kAllocN: return OpAllocN(in);
      case Op::kAligned: return OpAligned(in);
      case Op::kFree: return OpFree(in);
      case Op::kFreeRun: return OpFreeRun(in);
      case Op::kUsable: return OpUsable(in);
      case Op::kExit: return OpExit();
      case Op::kMisuse: return OpMisuse(in);
      case Op::kAllocOom: return OpAllocOom(in);
      case Op::kPolicy: return OpPolicy(in);
      case Op::kCache: return OpCache(in);
      case Op::kFill: return OpFill(in);
      case Op::kFlush: return OpFlush();
      case Op::kLate: return OpLate(in);
    }
  }

  // `full`: HeapRegistry::CheckAll(true) (Heap::CheckInvariants(true) of every heap) and every
  // page; else the pages the op touched.
  void CheckAfterStep(bool full) {
    if (!full) return live_.checker().Touched(true, heap_);
    mf2::HeapRegistry::Global().CheckAll(true);
    live_.checker().Full(true);
  }

 private:
  // ---- the ops (the table at the top of the file), each reading its own argument bytes ----

  void OpAlloc(Reader& in) { Allocate(SizeFromByte(in.Byte())); }

  void OpAllocN(Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    const int count = 1 + in.Byte() % 64;
    for (int i = 0; i < count; ++i) Allocate(size);
  }

  void OpAligned(Reader& in) {
    const size_t align = size_t{1} << (in.Byte() % 21);
    const size_t size = SizeFromByte(in.Byte());
    if (live_.Full(size + align)) return;
    void* p = heap_->AllocateAligned(align, size);
    FUZZ_CHECK(p != nullptr, "aligned allocation succeeds");
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % align == 0, "aligned allocation is aligned");
    Record(p, size, align);
  }

  void OpFree(Reader& in) {
    const uint16_t idx = in.U16();
    if (!live_.empty()) Free(idx % live_.size());
  }

  void OpFreeRun(Reader& in) {
    const uint16_t idx = in.U16();
    const int count = 1 + in.Byte() % 64;
    for (int i = 0; i < count && !live_.empty(); ++i) Free(idx % live_.size());
  }

  void OpUsable(Reader& in) {
    const uint16_t idx = in.U16();
    if (live_.empty()) return;
    const Live& b = live_[idx % live_.size()];
    FUZZ_CHECK(Heap::UsableSize(b.p) == b.usable, "UsableSize is stable while live");
  }

  void OpExit() {
    mf2::HeapRegistry::Global().ReleaseHeap(heap_);
    mf2::HeapRegistry::Global().CheckAll(true);
    heap_ = AcquireHeap();
  }

  // MISUSE (see the op table): each misuse must be reported with the right kind, and must change
  // nothing (no block absorbed: the checks after the op would see it).
  void OpMisuse(Reader& in) {
    const uint8_t kind = in.Byte() % 6;
    const uint16_t idx = in.U16();
    if (live_.empty() && kind != 2) return;
    ReportCapture capture;
    switch (kind) {
      case 0: {  // interior pointer of a live block
        const Live& b = live_[idx % live_.size()];
        // Offsets 8, 24, 40, ...: inside the block, never a block start.
        const void* bad = static_cast<char*>(b.p) + 8 + 16 * (idx % (b.usable / 16));
        live_.checker().Touch(b.p);
        heap_->Free(const_cast<void*>(bad));
        capture.Expect(1, mf2::ErrorKind::kNotABlock, bad, "interior free");
        break;
      }
      case 1:    // double free by the owner
      case 3: {  // double free by a thread without a heap, after the owner's free
        const Live b = Free(idx % live_.size());
        (kind == 1 ? heap_ : DeadSentinel())->Free(b.p);
        capture.Expect(1, SecondFreeKind(b.p, b.large), b.p, "double free");
        break;
      }
      case 2: {  // a pointer MF2 never handed out
        static int not_ours;
        heap_->Free(&not_ours);
        capture.Expect(1, mf2::ErrorKind::kForeignPointer, &not_ours, "foreign free");
        break;
      }
      case 4: {  // remote free by a thread without a heap, then its second free and the owner's
        const size_t i = idx % live_.size();
        if (live_[i].large) break;
        void* p = Free(i, DeadSentinel()).p;
        capture.Expect(0, mf2::ErrorKind::kDoubleFree, p, "remote free");
        // The page stays queued on its owner, flagged, unless an idle sweep released it whole
        // (POLICY's default thresholds): then p is no block any more.
        const mf2::ErrorKind second = SecondFreeKind(p, false);
        DeadSentinel()->Free(p);
        capture.Expect(1, second, p, "remote double free");
        heap_->Free(p);
        capture.Expect(2, second, p, "owner free of a remotely freed block");
        break;
      }
      case 5:
        UseAfterFreeWrite(idx, capture);
        break;
    }
  }

  void OpAllocOom(Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    if (IsLargeSize(size)) return;  // large allocations do not use the page source
    Source().set_fail(true);
    errno = 0;
    void* p = HeapAllocate(size);
    Source().set_fail(false);
    if (p == nullptr) {
      FUZZ_CHECK(errno == ENOMEM, "a failed allocation sets ENOMEM");
    } else {
      Record(p, size, 1);
    }
  }

  void OpPolicy(Reader& in) {
    const uint8_t b = in.Byte();
    mf2::Policy p;
    p.page_cache_bytes = size_t{b & 7u} << 20;
    p.retained_segments = (b >> 3) % 3;
    p.cache_class_bytes = CacheBytesForMode(CacheMode());
    ApplyPolicy(p);
  }

  void OpCache(Reader& in) {
    CacheMode() = in.Byte() % 4;
    mf2::Policy p = mf2::GetPolicy();
    p.cache_class_bytes = CacheBytesForMode(CacheMode());
    ApplyPolicy(p);
    mf2::HeapRegistry::Global().ReleaseHeap(heap_);
    heap_ = AcquireHeap();
    for (uint32_t k = 1; k < mf2::kNumClasses; ++k) {
      FUZZ_CHECK(heap_->cache(k).n() == 0 &&
                     heap_->cache(k).cap() == ExpectedCacheCap(p.cache_class_bytes, k),
                 "a heap taken over has empty caches sized by the policy in force");
    }
  }

  // FILL (see the op table): cap + 1 blocks of the class of `size` appended to the live list,
  // cap read after each allocation, then LiveSet's FillCache. The blocks left live stay at the
  // end of the live list (seeds rely on it).
  void OpFill(Reader& in) {
    const size_t size = SizeFromByte(in.Byte());
    const bool overflow = (in.Byte() & 1) != 0;
    if (IsLargeSize(size)) return;
    const mf2::Heap::Magazine& cache = heap_->cache(mf2::SizeToClass(size));
    const size_t first = live_.size();
    for (uint32_t i = 0; i < cache.cap() + 1 && !live_.Full(size); ++i) Allocate(size);
    size_t next = live_.size();  // fresh blocks are live_[first, next)
    FillCache(cache, overflow, [&]() {
      if (next == first) return false;
      Free(--next);
      return true;
    });
  }

  void OpFlush() {
    heap_->FlushCaches();
    CheckCachesEmpty(*heap_);
  }

  // LATE: the thread exits (its heap released), then frees `count` blocks from `idx` and
  // allocates one of `size` after its exit hook, through the dead sentinel; a new thread follows.
  void OpLate(Reader& in) {
    const uint16_t idx = in.U16();
    const int count = 1 + in.Byte() % 4;
    const size_t size = SizeFromByte(in.Byte());
    mf2::HeapRegistry::Global().ReleaseHeap(heap_);
    Heap* dead = DeadSentinel();
    for (int i = 0; i < count && !live_.empty(); ++i) Free(idx % live_.size(), dead);
    if (!live_.Full(size)) {
      errno = 0;
      void* p = dead->Allocate(size);
      FUZZ_CHECK(p != nullptr, "an allocation after the exit hook succeeds");
      Record(p, size, 1, /*late=*/true);
    }
    heap_ = AcquireHeap();
  }

  // ---- helpers ----

  // Every allocation of a block of a class or a large one: malloc's fast path (Heap::Allocate)
  // and operator new's (Heap::AllocateOrTailCall, whose slow way is Allocate) in turn. Both hand
  // out the same block from the same state, so the choice changes no outcome: each op that
  // allocates checks both paths, the corrupt cached block of MISUSE 5 included.
  void* HeapAllocate(size_t size) {
    if (++allocations_ % 2 == 0) return heap_->Allocate(size);
    t_new_heap = heap_;
    return heap_->AllocateOrTailCall<&AllocateThroughNewHeap>(size);
  }

  void Allocate(size_t size) {
    if (live_.Full(size)) return;
    void* p = HeapAllocate(size);
    FUZZ_CHECK(p != nullptr, "allocation succeeds");
    Record(p, size, 1);
  }

  // Mirrors AllocateAligned: small alignments are plain allocations; up to a slice, a class
  // whose size is a multiple of the alignment serves any request that fits once rounded up.
  static bool ExpectLarge(size_t size, size_t align) {
    if (size > mf2::kMaxClassSize) return true;
    if (align <= mf2::kMinAlign) return false;
    if (align > mf2::kSliceSize) return true;
    const size_t rounded = size < align ? align : (size + align - 1) & ~(align - 1);
    return rounded > mf2::kMaxClassSize;
  }

  // Holds a block just handed out for `size` bytes at `align`, after the checks of a new block.
  // `late`: allocated through the dead sentinel (its page belongs to an abandoned heap).
  void Record(void* p, size_t size, size_t align, bool late = false) {
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % mf2::kMinAlign == 0, "16-byte alignment");
    const Live& b = live_.Add(p, size, ++seq_);
    mf2::Page* page = mf2::PageOf(p);
    if (Tracing()) std::fprintf(stderr, "alloc %p size %zu align %zu usable %zu%s\n", p, size,
                                align, b.usable, b.large ? " large" : "");
    FUZZ_CHECK(b.large || page->in_use(), "a class block lies in a page in use");
    FUZZ_CHECK(b.large == ExpectLarge(size, align),
               "large exactly for requests above 64 KiB, or aligned beyond what a class can");
    if (b.large) return;
    FUZZ_CHECK(b.usable == page->block_size(), "usable size is the class size");
    const uint32_t k = mf2::SizeToClass(size);
    FUZZ_CHECK(align <= mf2::kMinAlign ? k == page->size_class() : k <= page->size_class(),
               "the block's class serves the request (the smallest for Allocate)");
    FUZZ_CHECK(late || page->owner_relaxed() == heap_,
               "a new block comes from a page of this heap");
  }

  // Frees live block `i` through `by` (the thread's heap by default); returns it.
  Live Free(size_t i, Heap* by = nullptr) {
    const Live b = live_.Take(i);
    Verify(b);
    (by != nullptr ? by : heap_)->Free(b.p);
    return b;
  }

  // What a second free of `p` (a block start just freed) is reported as: a large block is
  // remembered as freed; a class block whose segment went back to the OS with its last page
  // (POLICY: no retained segments) is no MF2 memory any more (a foreign pointer); a page whose
  // last block this was went back to the source (not a block any more); otherwise the block is
  // simply not live.
  static mf2::ErrorKind SecondFreeKind(const void* p, bool large) {
    if (large) return mf2::ErrorKind::kDoubleFree;
    if (!mf2::InSegment(p)) return mf2::ErrorKind::kForeignPointer;
    mf2::Page* page = mf2::PageOf(p);
    return page == nullptr || !page->in_use() ? mf2::ErrorKind::kNotABlock
                                              : mf2::ErrorKind::kDoubleFree;
  }

  // MISUSE 5: the owner frees a class block, the program writes into its word 1 (the canary), and
  // the next allocation of its class must pop it, report it and hand out another block. Only
  // where the next allocation pops that very block: the cache of the class (LIFO: the block goes
  // on top), or, caching off, the active page's free list when the block is its only free block
  // there (PopBatch pops the head first) and no remote frees wait on the page (a slow path
  // collects those onto the list first while the page has a never-carved tail). The page keeps
  // another block handed out, so the free cannot release it.
  void UseAfterFreeWrite(uint16_t idx, const ReportCapture& capture) {
    const size_t i = idx % live_.size();
    if (live_[i].large) return;
    void* p = live_[i].p;
    mf2::Page* page = mf2::PageOf(p);
    const uint32_t k = page->size_class();
    const bool cached = heap_->cache(k).cap() > 0;
    if (page->owner_relaxed() != heap_ || page->used() < 2 ||
        (!cached && (heap_->active_page(k) != page || page->local_count() != 0 ||
                     page->remote().Peek().count() != 0))) {
      return;
    }
    const size_t size = live_[i].requested;
    if (mf2::SizeToClass(size) != k) return;  // an aligned request served by a bigger class
    Free(i);
    // The use-after-free write: one bit of word 1 flipped (never a canary of any state).
    unsigned char* word1 = static_cast<unsigned char*>(p) + 8;
    UnpoisonForHarness(word1, 8);
    uint64_t w;
    std::memcpy(&w, word1, 8);
    w ^= uint64_t{1} << 40;
    std::memcpy(word1, &w, 8);
    void* q = HeapAllocate(size);
    FUZZ_CHECK(q != nullptr && q != p, "a block written to after its free is not handed out");
    capture.Expect(1, mf2::ErrorKind::kCorruptFreeList, p, "use-after-free write");
    Record(q, size, 1);
    // MF2 keeps p as handed out, never reused: the harness holds it again (and frees it later).
    UnpoisonForHarness(p, page->block_size());
    Record(p, size, 1);
  }

  Heap* heap_;
  IterationFrame frame_;
  LiveSet live_{/*max_blocks=*/4096, /*max_bytes=*/size_t{48} << 20};
  uint64_t seq_ = 0;
  uint64_t allocations_ = 0;  // HeapAllocate's turn
};

}  // namespace
}  // namespace mf2_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mf2_fuzz::Reader in(data, size);
  mf2_fuzz::State state;
  mf2_fuzz::RunSchedule(state, in, mf2_fuzz::kMaxOps, "heap_ops_fuzz");
  return 0;
}
