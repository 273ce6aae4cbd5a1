// heap_ops_fuzz: one heap against a shadow model.
//
// Schedule: a sequence of ops, each an op byte (value % kNumOps) followed by its arguments:
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
//                                       caching is off): reported as a corrupt free list, the
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
// After every op: the pages the op allocated from or freed into (fuzz_util.h Checker::Touched:
// Page::CheckInvariants, exact block conservation with the caches, CheckAll's per-page checks).
// Every FullCheckEvery() ops (16; MF2_FUZZ_FULL_CHECK_EVERY) and at the end of the input:
// Heap::CheckInvariants(true), HeapRegistry::CheckAll(true) and exact conservation on every page
// (Checker::Full).
// The State destructor frees every live block (verifying stamps), releases the heap and checks
// that every span went back (invariant 9).
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/segment.h"

namespace mf2_fuzz {
namespace {

using mf2::Heap;

constexpr int kNumOps = 14;
constexpr size_t kMaxLive = 4096;
constexpr size_t kMaxLiveBytes = size_t{48} << 20;
constexpr int kMaxOps = 4096;

struct Live {
  void* p;
  size_t requested;
  size_t usable;
  uint64_t stamp;
  bool large;  // a large allocation (mapped by the OS, no page)
};

class State {
 public:
  State() : heap_(AcquireHeap()) { SetBudget(8); }
  ~State() {
    for (const Live& b : live_) FreeBlock(b);
    live_.clear();
    check_.Full(true);
    mf2::HeapRegistry::Global().ReleaseHeap(heap_);
    mf2::HeapRegistry::Global().CheckAll(true);
    ledger_.CheckEmpty();
    empty_.Check();
    ResetPolicy();  // default policy for the next iteration
  }

  void Run(Reader& in) {
    for (int n = 1; n <= kMaxOps && !in.done(); ++n) {
      Step(in);
      if (n % FullCheckEvery() == 0) {
        FullCheck();
      } else {
        check_.Touched(true, heap_);
      }
    }
    FullCheck();
    TraceStats("heap_ops_fuzz");
  }

 private:
  void FullCheck() {
    mf2::HeapRegistry::Global().CheckAll(true);  // Heap::CheckInvariants(true) of every heap
    check_.Full(true);
  }

  void Step(Reader& in) {
    switch (in.Byte() % kNumOps) {
      case 0: Allocate(SizeFromByte(in.Byte())); break;
      case 1: {
        size_t size = SizeFromByte(in.Byte());
        int count = 1 + in.Byte() % 64;
        for (int i = 0; i < count; ++i) Allocate(size);
        break;
      }
      case 2: {
        size_t align = size_t{1} << (in.Byte() % 21);
        AllocateAligned(align, SizeFromByte(in.Byte()));
        break;
      }
      case 3: {
        uint16_t idx = in.U16();
        if (!live_.empty()) Free(idx % live_.size());
        break;
      }
      case 4: {
        uint16_t idx = in.U16();
        int count = 1 + in.Byte() % 64;
        for (int i = 0; i < count && !live_.empty(); ++i) Free(idx % live_.size());
        break;
      }
      case 5: {
        uint16_t idx = in.U16();
        if (live_.empty()) break;
        const Live& b = live_[idx % live_.size()];
        FUZZ_CHECK(Heap::UsableSize(b.p) == b.usable, "UsableSize is stable while live");
        break;
      }
      case 6:
        mf2::HeapRegistry::Global().ReleaseHeap(heap_);
        mf2::HeapRegistry::Global().CheckAll(true);
        heap_ = AcquireHeap();
        break;
      case 7: {
        uint8_t kind = in.Byte();
        Misuse(kind, in.U16());
        break;
      }
      case 8: {
        size_t size = SizeFromByte(in.Byte());
        if (IsLargeSize(size)) break;  // large allocations do not use the page source
        Source().set_fail(true);
        errno = 0;
        void* p = heap_->Allocate(size);
        Source().set_fail(false);
        if (p == nullptr) {
          FUZZ_CHECK(errno == ENOMEM, "a failed allocation sets ENOMEM");
        } else {
          Record(p, size, 1);
        }
        break;
      }
      case 9: {
        uint8_t b = in.Byte();
        mf2::Policy p;
        p.page_cache_bytes = size_t{b & 7u} << 20;
        p.retained_segments = (b >> 3) % 3;
        p.cache_class_bytes = CacheBytesForMode(CacheMode());
        mf2::SetPolicyForTesting(p);
        break;
      }
      case 10: {
        CacheMode() = in.Byte() % 4;
        mf2::Policy p = mf2::GetPolicy();
        p.cache_class_bytes = CacheBytesForMode(CacheMode());
        mf2::SetPolicyForTesting(p);
        mf2::HeapRegistry::Global().ReleaseHeap(heap_);
        heap_ = AcquireHeap();
        for (uint32_t k = 1; k < mf2::kNumClasses; ++k) {
          FUZZ_CHECK(heap_->cache(k).n == 0 &&
                         heap_->cache(k).cap == ExpectedCacheCap(p.cache_class_bytes, k),
                     "a heap taken over has empty caches sized by the policy in force");
        }
        break;
      }
      case 11: {
        size_t size = SizeFromByte(in.Byte());
        const uint8_t mode = in.Byte();
        if (!IsLargeSize(size)) Fill(size, (mode & 1) != 0);
        break;
      }
      case 12:
        heap_->FlushCaches();
        for (uint32_t k = 1; k < mf2::kNumClasses; ++k) {
          FUZZ_CHECK(heap_->cache(k).n == 0, "FlushCaches empties every cache");
        }
        break;
      case 13: {
        const uint16_t idx = in.U16();
        const int count = 1 + in.Byte() % 4;
        const size_t size = SizeFromByte(in.Byte());
        AfterExit(idx, count, size);
        break;
      }
    }
  }

  // FILL: allocates cap + 1 blocks of the class of `size` (appended to the live list), then frees
  // them, newest first, until the class's cache is full; `overflow`: one free more, into the full
  // cache. The blocks left live stay at the end of the live list (seeds rely on it). An
  // allocation's slow path may double the cache (Heap::GrowCache), so cap is read after each.
  void Fill(size_t size, bool overflow) {
    const uint32_t k = mf2::SizeToClass(size);
    const size_t first = live_.size();
    for (uint32_t i = 0; i < heap_->cache(k).cap + 1 && !Full(size); ++i) Allocate(size);
    const uint32_t cap = heap_->cache(k).cap;
    FUZZ_CHECK(heap_->cache(k).n <= cap, "a cache never holds more than its capacity");
    size_t next = live_.size();  // fresh blocks are live_[first, next)
    auto free_one = [&]() {
      if (next == first) return false;
      Free(--next);
      return true;
    };
    while (heap_->cache(k).n < cap && free_one()) {
    }
    if (heap_->cache(k).n < cap) return;  // too few blocks (the live-set bound)
    FUZZ_CHECK(heap_->cache(k).n == cap, "a cache never holds more than its capacity");
    if (!overflow || !free_one()) return;
    const uint32_t grown = heap_->cache(k).cap;
    if (grown != cap) {
      FUZZ_CHECK(grown == std::min(2 * cap, mf2::Heap::kCacheSlots) && heap_->cache(k).n == cap + 1,
                 "a full cache that grows takes the freed block without a flush");
    } else {
      FUZZ_CHECK(heap_->cache(k).n == (cap == 0 ? 0 : CacheAfterOverflow(cap)),
                 "a free into a full cache that cannot grow returns the older half to the pages");
    }
  }

  bool Full(size_t size) const {
    return live_.size() >= kMaxLive || live_bytes_ + size > kMaxLiveBytes;
  }

  void Allocate(size_t size) {
    if (Full(size)) return;
    void* p = heap_->Allocate(size);
    FUZZ_CHECK(p != nullptr, "allocation succeeds");
    Record(p, size, 1);
  }

  void AllocateAligned(size_t align, size_t size) {
    if (Full(size + align)) return;
    void* p = heap_->AllocateAligned(align, size);
    FUZZ_CHECK(p != nullptr, "aligned allocation succeeds");
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % align == 0, "aligned allocation is aligned");
    Record(p, size, align);
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

  // `late`: allocated through the dead sentinel (its page belongs to an abandoned heap).
  void Record(void* p, size_t size, size_t align, bool late = false) {
    const bool exact_class = align <= mf2::kMinAlign;
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % mf2::kMinAlign == 0, "16-byte alignment");
    const size_t usable = Heap::UsableSize(p);
    FUZZ_CHECK(usable >= size, "usable size >= requested");
    mf2::Page* page = mf2::PageOf(p);
    const bool large = page == nullptr;
    if (Tracing()) std::fprintf(stderr, "alloc %p size %zu align %zu usable %zu%s\n", p, size,
                                align, usable, large ? " large" : "");
    FUZZ_CHECK(large || page->in_use(), "a class block lies in a page in use");
    FUZZ_CHECK(large == ExpectLarge(size, align),
               "large exactly for requests above 64 KiB, or aligned beyond what a class can");
    if (!large) {
      FUZZ_CHECK(usable == page->block_size(), "usable size is the class size");
      const uint32_t k = mf2::SizeToClass(size);
      FUZZ_CHECK(exact_class ? k == page->size_class() : k <= page->size_class(),
                 "the block's class serves the request (the smallest for Allocate)");
      FUZZ_CHECK(late || page->owner_relaxed() == heap_,
                 "a new block comes from a page of this heap");
    }
    ranges_.Insert(p, usable);
    const uint64_t stamp = ++seq_;
    Stamp(p, usable, stamp);
    check_.AddLive(p);
    live_.push_back(Live{p, size, usable, stamp, large});
    live_bytes_ += usable;
  }

  // Frees `b` through `by` (the thread's heap by default).
  void FreeBlock(const Live& b, Heap* by = nullptr) {
    VerifyStamp(b.p, b.usable, b.stamp);
    FUZZ_CHECK(Heap::UsableSize(b.p) == b.usable, "UsableSize is stable while live");
    ranges_.Erase(b.p);
    check_.RemoveLive(b.p);
    (by != nullptr ? by : heap_)->Free(b.p);
  }

  void Free(size_t i, Heap* by = nullptr) {
    Live b = live_[i];
    live_.erase(live_.begin() + static_cast<long>(i));
    live_bytes_ -= b.usable;
    FreeBlock(b, by);
  }

  // LATE: the thread exits (its heap released), then frees `count` blocks from `idx` and
  // allocates one of `size` after its exit hook, through the dead sentinel; a new thread follows.
  void AfterExit(uint16_t idx, int count, size_t size) {
    mf2::HeapRegistry::Global().ReleaseHeap(heap_);
    Heap* dead = DeadSentinel();
    for (int i = 0; i < count && !live_.empty(); ++i) Free(idx % live_.size(), dead);
    if (!Full(size)) {
      errno = 0;
      void* p = dead->Allocate(size);
      FUZZ_CHECK(p != nullptr, "an allocation after the exit hook succeeds");
      Record(p, size, 1, /*late=*/true);
    }
    heap_ = AcquireHeap();
  }

  // What a second free of `p` (a block start just freed) is reported as: a large block is
  // remembered as freed; a page whose last block this was went back to the source (not a block
  // any more); otherwise the block is simply not live.
  static mf2::ErrorKind SecondFreeKind(const void* p, bool large) {
    mf2::Page* page = mf2::PageOf(p);
    return large                                ? mf2::ErrorKind::kDoubleFree
           : page == nullptr || !page->in_use() ? mf2::ErrorKind::kNotABlock
                                                : mf2::ErrorKind::kDoubleFree;
  }

  // MISUSE (see the op table): each misuse must be reported with the right kind, and must change
  // nothing (no block absorbed: the checks after the op would see it).
  void Misuse(uint8_t kind, uint16_t idx) {
    if (live_.empty() && kind % 6 != 2) return;
    ReportCapture capture;
    switch (kind % 6) {
      case 0: {  // interior pointer of a live block
        const Live& b = live_[idx % live_.size()];
        // Offsets 8, 24, 40, ...: inside the block, never a block start.
        const void* bad = static_cast<char*>(b.p) + 8 + 16 * (idx % (b.usable / 16));
        check_.Touch(b.p);
        heap_->Free(const_cast<void*>(bad));
        capture.Expect(1, mf2::ErrorKind::kNotABlock, bad, "interior free");
        break;
      }
      case 1:    // double free by the owner
      case 3: {  // double free by a thread without a heap, after the owner's free
        const size_t i = idx % live_.size();
        void* p = live_[i].p;
        const bool large = live_[i].large;
        Free(i);
        (kind % 6 == 1 ? heap_ : DeadSentinel())->Free(p);
        capture.Expect(1, SecondFreeKind(p, large), p, "double free");
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
        void* p = live_[i].p;
        Free(i, DeadSentinel());
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

  // MISUSE 5: the owner frees a class block, the program writes into its word 1 (the canary), and
  // the next allocation of its class must pop it, report it and hand out another block. Only
  // where the next allocation pops that very block: the cache of the class (LIFO: the block goes
  // on top), or, caching off, the active page's free list when the block is its only free block
  // there (PopBatch pops the head first). The page keeps another block handed out, so the free
  // cannot release it.
  void UseAfterFreeWrite(uint16_t idx, const ReportCapture& capture) {
    const size_t i = idx % live_.size();
    if (live_[i].large) return;
    void* p = live_[i].p;
    mf2::Page* page = mf2::PageOf(p);
    const uint32_t k = page->size_class();
    const bool cached = heap_->cache(k).cap > 0;
    if (page->owner_relaxed() != heap_ || page->used() < 2 ||
        (!cached && (heap_->active_page(k) != page || page->local_count() != 0))) {
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
    void* q = heap_->Allocate(size);
    FUZZ_CHECK(q != nullptr && q != p, "a block written to after its free is not handed out");
    capture.Expect(1, mf2::ErrorKind::kCorruptFreeList, p, "use-after-free write");
    Record(q, size, 1);
    // MF2 keeps p as handed out, never reused: the harness holds it again (and frees it later).
    UnpoisonForHarness(p, page->block_size());
    Record(p, size, 1);
  }

  Heap* heap_;
  EmptinessCheck empty_;
  RemoteLedger ledger_;
  RangeSet ranges_;
  Checker check_;
  std::vector<Live> live_;
  size_t live_bytes_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace
}  // namespace mf2_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mf2_fuzz::Reader in(data, size);
  mf2_fuzz::State state;
  state.Run(in);
  return 0;
}
