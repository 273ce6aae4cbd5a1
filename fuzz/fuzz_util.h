// Shared pieces of MF2's fuzz targets: a byte reader for operation schedules, the oracle check,
// the permanent page source every iteration draws from, the size choices (class boundaries), and
// payload stamps.
//
// Every target is an operation sequence over a State whose destructor frees everything and then
// asserts the allocator is empty (a leak fails the input). Inputs are schedules: one op byte, then
// that op's argument bytes; a missing argument byte reads as 0 and ends the schedule.
#ifndef MF2_FUZZ_FUZZ_UTIL_H_
#define MF2_FUZZ_FUZZ_UTIL_H_

#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#endif
#endif

#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/policy.h"
#include "mf2/size_class.h"
#include "mf2/testing/counting_page_source.h"

// An oracle failure: the allocator broke an invariant the harness checks. Aborts, so libFuzzer
// reports a crash and the replay test fails.
#define FUZZ_CHECK(cond, msg)                                                 \
  do {                                                                        \
    if (__builtin_expect(!(cond), 0))                                         \
      ::mf2_fuzz::OracleFailed(__FILE__, __LINE__, #cond, (msg));             \
  } while (0)

// Harness code that only checks (stamps, shadow structures, oracle walks) is left out of
// libFuzzer's coverage instrumentation: its comparisons are no guidance (they always pass), and
// their tracing callbacks were most of an execution's time.
#if defined(__clang__) && __clang_major__ >= 13
#define MF2_FUZZ_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define MF2_FUZZ_NO_COVERAGE
#endif

namespace mf2_fuzz {

// Where the running schedule is (RunSchedule keeps it), for a failure's message: the inputs a
// process ran before carry over (idle heaps, the page source, the large-mapping cache), so a
// failure that only a sequence of inputs provokes shows it by the input's number.
struct Progress {
  const char* target = "";
  uint64_t input = 0;  // inputs started in this process, this one included
  int op = 0;          // ops started in this input (0: before the first, or the final checks)
  size_t offset = 0;   // the op byte's offset in the input
};
inline Progress& CurrentProgress() {
  static Progress progress;
  return progress;
}

[[noreturn]] inline void OracleFailed(const char* file, int line, const char* cond,
                                      const char* msg) {
  const Progress& at = CurrentProgress();
  std::fprintf(stderr,
               "fuzz oracle failed at %s:%d: %s (%s)\n"
               "fuzz oracle failed in %s, input %llu of this process, op %d (byte %zu)\n",
               file, line, cond, msg, at.target, static_cast<unsigned long long>(at.input), at.op,
               at.offset);
  std::abort();
}

// Reads a schedule front to back. Past the end every read yields 0 and sets `done`.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : begin_(data), p_(data), end_(data + size) {}
  bool done() const { return done_ || p_ == end_; }
  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  uint8_t Byte() {
    if (p_ == end_) {
      done_ = true;
      return 0;
    }
    return *p_++;
  }
  uint16_t U16() {  // little endian
    uint16_t lo = Byte();
    return static_cast<uint16_t>(lo | (uint16_t{Byte()} << 8));
  }

 private:
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  bool done_ = false;
};

// The one page source of the whole fuzzer process. Heaps are never destroyed and keep pointing
// at their source, so it must outlive everything; one source for all iterations lets each
// iteration take over the idle heaps the previous one left (and keeps TestHeaps' pool of 256
// sources from running out). Only the fuzzer draws from it, so outstanding() must be 0 between
// iterations.
inline mf2::testing::CountingPageSource& Source() {
  alignas(mf2::testing::CountingPageSource) static unsigned char storage[sizeof(
      mf2::testing::CountingPageSource)];
  static mf2::testing::CountingPageSource* source =
      new (storage) mf2::testing::CountingPageSource();
  return *source;
}

// A thread after its exit hook (thread_heap.h, state "exited"): the fuzzers' copy of
// thread_heap.cc's dead sentinel, on the fuzzers' page source. Its caches are empty with
// capacity 0 and it owns no page, so every free through it goes the remote way with no chain
// held back (Heap::FreeRemote), and an allocation runs AllocateAfterExit below, which is
// thread_heap.cc's AllocateAfterExit with Source() for OsPageSource::Global(): a heap taken for
// that one block (an idle heap taken over, or a new one) and handed back at once, the block's
// page staying with that abandoned heap. Its counters join CollectStats (the remote ledger).
inline void* AllocateAfterExit(uint32_t size_class);
inline mf2::Heap* DeadSentinel() {
  static mf2::Heap dead{mf2::Heap::SentinelTag{}, &AllocateAfterExit};
  static const bool registered = (mf2::HeapRegistry::Global().AddStatsSource(&dead), true);
  (void)registered;
  return &dead;
}

inline mf2::Heap* AcquireHeap() {
  mf2::Heap* h = mf2::HeapRegistry::Global().AcquireHeap(&Source());
  FUZZ_CHECK(h != nullptr, "AcquireHeap");
  return h;
}

inline void* AllocateAfterExit(uint32_t size_class) {
  mf2::Heap* heap = mf2::HeapRegistry::Global().AcquireHeap(&Source());
  if (heap == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  void* p = heap->Allocate(mf2::ClassInfo(size_class).size);
  mf2::HeapRegistry::Global().ReleaseHeap(heap);
  return p;
}

// MF2 poisons free blocks under ASan (block.h); a harness that writes into one on purpose (a
// use-after-free write it wants MF2 to detect) unpoisons the bytes first.
inline void UnpoisonForHarness(void* p, size_t n) {
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
  __asan_unpoison_memory_region(p, n);
#endif
#endif
  (void)p;
  (void)n;
}

// Misuse reports recorded instead of aborting (mf2::SetErrorHandler), for ops that commit a
// misuse on purpose: a report that does not happen, or one more than expected, is an oracle
// failure. Installed for the op's duration only; any other report goes to the default handler,
// which aborts (Policy::on_error), so an unexpected report fails the input too.
class ReportCapture {
 public:
  ReportCapture() {
    FUZZ_CHECK(current_ == nullptr, "one capture at a time");
    current_ = this;
    previous_ = mf2::SetErrorHandler(&Record);
  }
  ~ReportCapture() {
    mf2::SetErrorHandler(previous_);
    current_ = nullptr;
  }
  const std::vector<mf2::ErrorReport>& reports() const { return reports_; }
  // Exactly `n` reports so far, each of `kind` naming `pointer`.
  void Expect(size_t n, mf2::ErrorKind kind, const void* pointer, const char* what) const {
    bool ok = reports_.size() == n;
    for (const mf2::ErrorReport& r : reports_) ok = ok && r.kind == kind && r.pointer == pointer;
    if (ok) return;
    std::fprintf(stderr, "%s of %p: expected %zu report(s) of kind %s, got %zu:\n", what, pointer,
                 n, mf2::ErrorKindName(kind), reports_.size());
    for (const mf2::ErrorReport& r : reports_) {
      std::fprintf(stderr, "  %s in %s(%p): %s\n", mf2::ErrorKindName(r.kind), r.call, r.pointer,
                   r.detail);
    }
    OracleFailed(__FILE__, __LINE__, "reports", "misuse is reported, once, with its kind");
  }

 private:
  static void Record(const mf2::ErrorReport& r) { current_->reports_.push_back(r); }
  static inline ReportCapture* current_ = nullptr;
  mf2::ErrorHandler previous_ = nullptr;
  std::vector<mf2::ErrorReport> reports_;
};

// The cache policy (Policy::cache_class_bytes) of the heaps an input creates or takes over:
// caches are sized when a heap is taken (Heap::ConfigureCaches), so a change reaches the heaps
// acquired after it. Mode % 4: 0 and 3 the default (64 KiB per class: 2..61 blocks), 1 caching
// off (every free and allocation reaches a page), 2 small (256 bytes: 2..16 blocks, so caches
// fill and flush often).
inline size_t CacheBytesForMode(uint8_t mode) {
  switch (mode % 4) {
    case 1: return 0;
    case 2: return 256;
    default: return mf2::Policy().cache_class_bytes;
  }
}
inline uint8_t& CacheMode() {
  static uint8_t mode = 0;
  return mode;
}
// What Heap::ConfigureCaches gives class k under `bytes` (heap.cc).
inline uint32_t ExpectedCacheCap(size_t bytes, uint32_t k) {
  if (bytes == 0) return 0;
  size_t fit = bytes / mf2::ClassInfo(k).size;
  if (fit < 2) fit = 2;
  return fit > mf2::Heap::kCacheSlots ? mf2::Heap::kCacheSlots : static_cast<uint32_t>(fit);
}
// The blocks a free into a full cache leaves in it: the older half goes back to the pages, then
// the freed block is cached (heap.h, "Cache full").
inline uint32_t CacheAfterOverflow(uint32_t cap) { return cap - (cap / 2 > 1 ? cap / 2 : 1) + 1; }

// After Heap::FlushCaches: every cache of `heap` is empty.
inline void CheckCachesEmpty(const mf2::Heap& heap) {
  for (uint32_t k = 1; k < mf2::kNumClasses; ++k) {
    FUZZ_CHECK(heap.cache(k).n() == 0, "FlushCaches empties every cache");
  }
}

// The policy a fuzz input runs under. Deterministic: thresholds measured in time are either 0
// (always passed) or an hour (never), so a replay takes the same decisions.
//   route byte r: r % 4 selects route_s, route_p with every gate open, route_p with the gates
//   closed by bits 2..5 (idle, pressure, min remote 8, first-refusal window), or cda; bit 6 turns
//   idle reclamation off; bit 7 makes owners idle for reclamation (else never idle). The
//   reclamation batch is 1 + budget % 3.
inline mf2::Policy FuzzPolicy(uint32_t budget, bool tight_memory, uint8_t route_byte) {
  constexpr uint64_t kHour = uint64_t{3600} * 1000 * 1000 * 1000;
  mf2::Policy p;
  p.pending_budget = budget;
  if (tight_memory) {
    // Every released page goes straight back to the OS and empty segments are unmapped at
    // once, so a use of a page after its release faults instead of passing silently.
    p.heap_empty_bytes = 0;
    p.page_cache_bytes = 0;
    p.retained_segments = 0;
  }
  static constexpr mf2::Route kRoutes[] = {mf2::Route::kRouteS, mf2::Route::kRouteP,
                                           mf2::Route::kRouteP, mf2::Route::kCda};
  p.route = kRoutes[route_byte % 4];
  const bool closable = route_byte % 4 == 2;
  p.idle_threshold_ns = (route_byte & 0x80) ? 0 : kHour;
  p.reclaim_after_ns = p.idle_threshold_ns;
  if (p.route == mf2::Route::kRouteP) {
    if (!(closable && (route_byte & 4))) p.idle_threshold_ns = 0;
    p.adopt_pressure = closable && (route_byte & 8) ? 1000 : 0;
    p.adopt_min_remote = closable && (route_byte & 16) ? 8 : 1;
    p.rfr_window_ns = closable && (route_byte & 32) ? kHour : 0;
  }
  p.reclaim_idle = (route_byte & 0x40) == 0;
  p.reclaim_batch = 1 + budget % 3;  // 1 sweeps at every whole page; 2, 3 leave some queued
  p.cache_class_bytes = CacheBytesForMode(CacheMode());
  return p;
}

// The fuzzers' one way to change the policy. Tests use testing::ScopedPolicy; here an op changes
// the policy in the middle of an input (a scope would end with the op), and ResetPolicy() at the
// end of every input restores the default, as a ScopedPolicy's destructor does for a test.
inline void ApplyPolicy(const mf2::Policy& p) { mf2::SetPolicyForTesting(p); }

inline void SetBudget(uint32_t budget, bool tight_memory = false, uint8_t route_byte = 0) {
  ApplyPolicy(FuzzPolicy(budget, tight_memory, route_byte));
}

// The default policy for the next iteration (caches at their default size).
inline void ResetPolicy() {
  CacheMode() = 0;
  SetBudget(8);
}

// The background reclaimer's pass over an idle owner (reclaimer.cc Pass), played by `sweeper`, a
// heap the calling thread owns: first the idle flush (Heap::FlushIdleOwner_mt: the sweeper parks
// `owner` between its operations and does its GoIdle, so what its caches held goes back), then
// the sweep of its pending queue for pages that came back whole (Heap::ReclaimIdleOwner_mt; it
// does nothing while the owner is not idle for the policy in force). The reclaimer does both
// only for an idle owner; the flush of a busy one is what stress/idle_flush_stress_test.cc
// covers, so here it runs whenever an IDLE op of multi_actor_fuzz or threads_fuzz asks for it.
// `long_idle`: the flush of an owner idle for Policy::idle_flush_after_ns instead, which also
// returns its caches' slot pages to the OS (Heap::FlushLongIdleOwner_mt), so that the owner's
// next operations refill its caches on zero pages.
inline void BackgroundReclaimPass(mf2::Heap* sweeper, mf2::Heap* owner, bool long_idle) {
  sweeper->FlushIdleOwner_mt(owner, long_idle ? mf2::Heap::FlushScope::kCachesAndSlots
                                              : mf2::Heap::FlushScope::kCaches);
  sweeper->ReclaimIdleOwner_mt(owner);
}

// How often the whole-allocator checks run (Checker::Full): every N steps of an input and at its
// end. MF2_FUZZ_FULL_CHECK_EVERY=1 restores a full check after every step (slow: it walks every
// page); the default, 16, keeps the fuzzers at thousands of steps per second while every step
// still checks the pages it touched (Checker::Touched).
inline int FullCheckEvery() {
  static const int every = [] {
    const char* e = std::getenv("MF2_FUZZ_FULL_CHECK_EVERY");
    const int n = e != nullptr ? std::atoi(e) : 16;
    return n < 1 ? 1 : n;
  }();
  return every;
}

// The harness's shadow of block conservation (page.h, "Blocks") and the incremental checks built
// on it. Every page in use has, exactly,
//   used() == (class blocks the harness holds live on it) + (its blocks in any heap's cache or
//             held remote chain) + remote.count,
// and every live or cached block lies on a page in use. The live counts are kept per page as the
// harness allocates and frees (AddLive / RemoveLive), so checking one page costs a walk of the
// caches, not of the live set. The caller guarantees that no other thread is inside MF2 (as for
// CheckAll). A remote free whose step 2 is pending (multi_actor_fuzz) has pushed its block
// already, so the equation holds then too.
//
// After every step, Touched() checks each page the step handed a block out of or freed a block
// into (Touch): Page::CheckInvariants, the equation above, and CheckAll's per-page checks (an
// owner; on a list; quiescent: flagged exactly when on its owner's queue, remote blocks imply
// queued). Every FullCheckEvery() steps and at the end of each input, Full() checks every page
// (the same equation over all pages in use, plus every live and cached block on a page in use)
// after the caller's HeapRegistry::CheckAll: what a step changed without the harness naming it
// (a flush of a cache's older half, a drain, an adoption, a sweep) is checked there.
class Checker {
 public:
  MF2_FUZZ_NO_COVERAGE void AddLive(const void* p) {
    if (const mf2::Page* page = mf2::PageOf(p)) {
      ++live_[page];
      ++live_total_;
      Touch(p);
    }
  }
  // Before the block is freed (its page is still the one it was allocated from).
  MF2_FUZZ_NO_COVERAGE void RemoveLive(const void* p) {
    const mf2::Page* page = mf2::PageOf(p);
    if (page == nullptr) return;
    auto it = live_.find(page);
    FUZZ_CHECK(it != live_.end() && it->second > 0, "shadow: a live block's page is counted");
    if (--it->second == 0) live_.erase(it);
    --live_total_;
    Touch(p);
  }
  // A block of a page the step changed. The address, not the page, is kept: the page may be
  // released by the step (its segment even unmapped), and PageOf(address) stays safe to ask.
  MF2_FUZZ_NO_COVERAGE void Touch(const void* p) {
    if (touched_.size() < kMaxTouched) touched_.push_back(p);
  }
  size_t live_total() const { return live_total_; }

  // Checks the pages touched since the last call (see above) and forgets them. `quiescent`: no
  // remote free half done. `heaps[0..n)`: every heap that may cache a block or hold a remote
  // chain, i.e. every claimed heap (the harness's; an abandoned heap caches nothing and holds no
  // chain, and a sentinel neither: Heap::CheckInvariants, run by the full check, asserts it).
  // Only the touched pages' classes of those heaps' caches are walked.
  MF2_FUZZ_NO_COVERAGE void Touched(bool quiescent, mf2::Heap* const* heaps, size_t n_heaps) {
    const mf2::Page* pages[kMaxTouched];
    uint32_t cached[kMaxTouched];
    size_t n = 0;
    for (const void* p : touched_) {
      mf2::Page* page = mf2::PageOf(p);
      if (page == nullptr || !page->in_use()) {
        // Released (or never a class block): nothing the harness holds may lie there.
        FUZZ_CHECK(page == nullptr || LiveOn(page) == 0,
                   "a page the harness holds a live block on stays in use");
        continue;
      }
      bool seen = false;
      for (size_t i = 0; i < n && !seen; ++i) seen = pages[i] == page;
      if (seen) continue;
      cached[n] = 0;
      pages[n++] = page;
    }
    touched_.clear();
    if (n == 0) return;
    auto count = [&](const void* b) MF2_FUZZ_NO_COVERAGE {
      const uintptr_t a = reinterpret_cast<uintptr_t>(b);
      for (size_t i = 0; i < n; ++i) {
        const uintptr_t start = reinterpret_cast<uintptr_t>(pages[i]->start());
        if (a - start < size_t{pages[i]->capacity()} * pages[i]->block_size()) {
          ++cached[i];
          return;
        }
      }
    };
    for (size_t h = 0; h < n_heaps; ++h) {
      const mf2::Heap* heap = heaps[h];
      if (heap == nullptr) continue;
      uint64_t done[2] = {0, 0};  // classes walked in this heap
      for (size_t i = 0; i < n; ++i) {
        const uint32_t k = pages[i]->size_class();
        if ((done[k / 64] >> (k % 64)) & 1) continue;
        done[k / 64] |= uint64_t{1} << (k % 64);
        const mf2::Heap::Magazine& m = heap->cache(k);
        for (uint32_t j = 0; j < m.n(); ++j) count(m.slots()[j]);
      }
      // Held remote frees: as HeapRegistry::ForEachCachedBlock walks them.
      for (uint32_t c = 0; c < mf2::Heap::kRemoteSlots; ++c) {
        const mf2::Heap::RemoteChain& chain = heap->remote_chain(c);
        uint32_t walked = 0;
        for (mf2::Block* b = chain.head;
             b != nullptr && walked < chain.count &&
             chain.page->IsBlockStart(reinterpret_cast<uintptr_t>(b));
             b = mf2::LoadNext(b), ++walked) {
          count(b);
        }
      }
    }
    for (size_t i = 0; i < n; ++i) {
      pages[i]->CheckInvariants(quiescent);
      CheckPage(pages[i], cached[i], quiescent);
    }
  }
  void Touched(bool quiescent, mf2::Heap* heap) { Touched(quiescent, &heap, 1); }

  // Every page in use satisfies the equation, and every live and cached block lies on a page in
  // use. Run after HeapRegistry::CheckAll(quiescent), which checks the rest (every heap, every
  // page's lists, no block cached twice, the adoption bookkeeping).
  MF2_FUZZ_NO_COVERAGE void Full(bool quiescent) {
    touched_.clear();
    struct Walk {
      Checker* self;
      bool quiescent;
      std::unordered_map<const mf2::Page*, uint32_t> cached;
      size_t cached_total = 0;
      size_t matched_live = 0;
      size_t matched_cached = 0;
    } walk{this, quiescent, {}, 0, 0, 0};
    mf2::HeapRegistry::Global().ForEachCachedBlock(
        [](void* b, const mf2::Heap*, void* arg) MF2_FUZZ_NO_COVERAGE {
          auto* w = static_cast<Walk*>(arg);
          const mf2::Page* page = mf2::PageOf(b);
          FUZZ_CHECK(page != nullptr, "a cached block lies in a span");
          ++w->cached[page];
          ++w->cached_total;
        },
        &walk);
    mf2::OsPageSource::Global().ForEachSpanInUse(
        [](mf2::Page* page, void* arg) MF2_FUZZ_NO_COVERAGE {
          auto* w = static_cast<Walk*>(arg);
          if (!page->in_use()) return;
          auto it = w->cached.find(page);
          const uint32_t cached = it == w->cached.end() ? 0 : it->second;
          w->self->CheckPage(page, cached, w->quiescent);
          w->matched_live += w->self->LiveOn(page);
          w->matched_cached += cached;
        },
        &walk);
    FUZZ_CHECK(walk.matched_live == live_total_ && walk.matched_cached == walk.cached_total,
               "every live and every cached block lies on a page in use");
  }

 private:
  static constexpr size_t kMaxTouched = 256;  // beyond: the full check of the step catches up

  uint32_t LiveOn(const mf2::Page* page) const {
    auto it = live_.find(page);
    return it == live_.end() ? 0 : it->second;
  }

  // One page in use: the equation, and CheckAll's per-page checks (heap_check.cc).
  MF2_FUZZ_NO_COVERAGE void CheckPage(const mf2::Page* page, uint32_t cached,
                                      bool quiescent) const {
    const mf2::RemoteWord w = page->remote().Peek();
    const uint32_t live = LiveOn(page);
    if (page->used() != live + cached + w.count()) {
      std::fprintf(stderr, "page %p class %u: used %u, live %u + cached %u + remote %u\n",
                   static_cast<const void*>(page), page->size_class(), page->used(), live, cached,
                   w.count());
      OracleFailed(__FILE__, __LINE__, "conservation",
                   "used() == live + cached + remote.count on every page (invariant 1)");
    }
    mf2::Heap* owner = page->owner_relaxed();
    FUZZ_CHECK(owner != nullptr, "a page in use has an owner");
    FUZZ_CHECK(page->where() != mf2::Page::Where::kNowhere,
               "between operations every page in use is active, partial or detached");
    if (!quiescent) return;
    const bool queued = owner->PendingContains(page);
    FUZZ_CHECK(w.pending() == queued,
               "quiescent: in_remote_pending set exactly when the page is on its owner's queue "
               "(invariant 7)");
    FUZZ_CHECK(w.count() == 0 || queued,
               "quiescent: a page with remote blocks is queued (invariant 8, lost wake-up)");
  }

  std::unordered_map<const mf2::Page*, uint32_t> live_;
  size_t live_total_ = 0;
  std::vector<const void*> touched_;
};

// A request size from one byte, concentrated on class boundaries:
//   0..239    class k = b % 80 + 1, size = ClassInfo(k).size - 1, + 0 or + 1 (b / 80)
//   240       0 bytes
//   241..243  large: 64 KiB + 1, 100000, 1 MiB
//   244..255  small odd sizes 1, 8, 15, ...
inline size_t SizeFromByte(uint8_t b) {
  if (b < 240) {
    uint32_t k = b % 80 + 1;
    return mf2::ClassInfo(k).size + (b / 80) - 1;
  }
  switch (b) {
    case 240: return 0;
    case 241: return mf2::kMaxClassSize + 1;
    case 242: return 100000;
    case 243: return size_t{1} << 20;
    default: return 1 + size_t{b - 244u} * 7;
  }
}
inline bool IsLargeSize(size_t n) { return n > mf2::kMaxClassSize; }

// Payload stamps: a block's bytes are a function of its stamp (e.g. actor and sequence number)
// and offset. Written over the first 1 KiB and the last 64 bytes of the usable size (so the
// whole usable size is exercised on small blocks, and both ends on large ones), verified at free:
// a block handed out twice, or memory written by the allocator while live, shows up as a
// mismatch (invariant 4). Written and compared a 64-bit word at a time (any changed byte changes
// its word; the byte is named when one differs). Word j of stamp s is (s + 1) * K1 ^ (j + 1) * K2
// with odd K1: two blocks' words at the same offset always differ (multiplying by an odd
// constant is a bijection mod 2^64), the words of one block differ from each other, and in the
// loops below the first product is hoisted and the second is one addition per word (the mixing
// rounds of a hash were a tenth of an execution and bought nothing a comparison needs).
MF2_FUZZ_NO_COVERAGE inline uint64_t StampWord(uint64_t stamp, size_t i) {
  return ((stamp + 1) * 0x9E3779B97F4A7C15ull) ^ ((i / 8 + 1) * 0xBF58476D1CE4E5B9ull);
}
MF2_FUZZ_NO_COVERAGE inline uint8_t StampByte(uint64_t stamp, size_t i) {
  return static_cast<uint8_t>(StampWord(stamp, i) >> (8 * (i % 8)));
}

// fn(begin, end) for the stamped ranges of a block of `usable` bytes.
template <typename Fn>
MF2_FUZZ_NO_COVERAGE void ForStampedRanges(size_t usable, Fn fn) {
  const size_t head = usable < 1024 ? usable : 1024;
  fn(size_t{0}, head);
  size_t tail = usable > 64 ? usable - 64 : 0;
  if (tail < head) tail = head;
  if (tail < usable) fn(tail, usable);
}

MF2_FUZZ_NO_COVERAGE inline void Stamp(void* p, size_t usable, uint64_t stamp) {
  auto* b = static_cast<uint8_t*>(p);
  ForStampedRanges(usable, [&](size_t begin, size_t end) MF2_FUZZ_NO_COVERAGE {
    size_t i = begin;
    for (; i % 8 != 0 && i < end; ++i) b[i] = StampByte(stamp, i);
    for (; i + 8 <= end; i += 8) {
      const uint64_t w = StampWord(stamp, i);
      std::memcpy(b + i, &w, 8);
    }
    for (; i < end; ++i) b[i] = StampByte(stamp, i);
  });
}

MF2_FUZZ_NO_COVERAGE inline void VerifyStamp(const void* p, size_t usable, uint64_t stamp) {
  const auto* b = static_cast<const uint8_t*>(p);
  ForStampedRanges(usable, [&](size_t begin, size_t end) MF2_FUZZ_NO_COVERAGE {
    size_t i = begin;
    bool bad = false;
    for (; i % 8 != 0 && i < end; ++i) bad = bad || b[i] != StampByte(stamp, i);
    for (; i + 8 <= end; i += 8) {
      uint64_t w;
      std::memcpy(&w, b + i, 8);
      bad = bad || w != StampWord(stamp, i);
    }
    for (; i < end; ++i) bad = bad || b[i] != StampByte(stamp, i);
    if (!bad) return;
    for (i = begin; i < end; ++i) {
      if (b[i] == StampByte(stamp, i)) continue;
      std::fprintf(stderr, "block %p (usable %zu, stamp %llx): byte %zu is %02x, expected %02x\n",
                   p, usable, static_cast<unsigned long long>(stamp), i, b[i],
                   StampByte(stamp, i));
      OracleFailed(__FILE__, __LINE__, "payload", "a live block's payload changed (invariant 4)");
    }
  });
}

// Nanoseconds in a millisecond, for the decay targets' clocks and periods.
inline constexpr uint64_t kMs = 1'000'000;

// The two targets of the caches' decay (page_source_fuzz, large_fuzz) move a virtual clock on
// by (step % 64) units of 1 us, 1 ms, 10 ms or 100 ms (step >> 6): their TIME op.
inline uint64_t TimeStepNs(uint8_t step) {
  constexpr uint64_t kUnits[] = {1'000, kMs, 10 * kMs, 100 * kMs};
  return (step % 64) * kUnits[step >> 6];
}

// The decay targets' IDLE op: `step(now_ns)` runs one decay at `now_ns` with the target's checks
// and returns how long until the next one is due (0: none is, or decay is off). The clock moves
// on by that much until none is due, at most `max_steps` times: a decay left alone must end.
template <typename Step>
void DecayUntilNoneDue(uint64_t& now_ns, int max_steps, Step step) {
  for (int n = 0; n < max_steps; ++n) {
    const uint64_t wait_ns = step(now_ns);
    if (wait_ns == 0) return;
    now_ns += wait_ns;
  }
  FUZZ_CHECK(false, "the decay of a cache left alone never ended");
}

// A word the harness writes into (or reads from) memory it holds, at any alignment.
MF2_FUZZ_NO_COVERAGE inline void WriteWord(void* p, uint64_t w) { std::memcpy(p, &w, sizeof w); }
MF2_FUZZ_NO_COVERAGE inline uint64_t ReadWord(const void* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Address ranges [p, p + usable) of live blocks; inserting one that overlaps a live range (or
// repeats a live pointer) is the "handed out twice" oracle (invariant 3/4).
class RangeSet {
 public:
  MF2_FUZZ_NO_COVERAGE void Insert(const void* p, size_t usable) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uintptr_t e = a + (usable == 0 ? 1 : usable);
    auto next = ranges_.lower_bound(a);
    FUZZ_CHECK(next == ranges_.end() || next->first >= e,
               "a new block overlaps a live block (handed out twice)");
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      FUZZ_CHECK(prev->second <= a, "a new block overlaps a live block (handed out twice)");
    }
    ranges_.emplace(a, e);
  }
  MF2_FUZZ_NO_COVERAGE void Erase(const void* p) {
    FUZZ_CHECK(ranges_.erase(reinterpret_cast<uintptr_t>(p)) == 1, "shadow range missing");
  }
  size_t size() const { return ranges_.size(); }
  // Whether `p` lies in a live range.
  MF2_FUZZ_NO_COVERAGE bool Covers(const void* p) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    auto next = ranges_.upper_bound(a);
    return next != ranges_.begin() && std::prev(next)->second > a;
  }

 private:
  std::map<uintptr_t, uintptr_t> ranges_;  // start -> end
};

// Invariant 2 (no remote free lost): every remote push is either drained or still on a page's
// remote stack. Counts are deltas against the start of the iteration (heaps and their
// counters outlive iterations).
class RemoteLedger {
 public:
  RemoteLedger() : base_(Measure()) {}
  MF2_FUZZ_NO_COVERAGE void Check() const {
    const Totals now = Measure();
    const uint64_t pushed = now.pushed - base_.pushed;
    const uint64_t drained = now.drained - base_.drained;
    FUZZ_CHECK(pushed == drained + now.on_stacks - base_.on_stacks,
               "remote pushes == drained + still on remote stacks (invariant 2)");
  }
  // After a final drain: nothing is left on any remote stack.
  void CheckEmpty() const {
    Check();
    FUZZ_CHECK(Measure().on_stacks == 0, "zero residual on remote stacks (invariant 2/9)");
  }

 private:
  struct Totals {
    uint64_t pushed = 0;
    uint64_t drained = 0;
    uint64_t on_stacks = 0;
  };
  static void AddPage(mf2::Page* page, void* arg) {
    if (page->in_use()) static_cast<Totals*>(arg)->on_stacks += page->remote().Peek().count();
  }
  static Totals Measure() {
    Totals t;
    mf2::Stats s = mf2::HeapRegistry::Global().CollectStats();
    t.pushed = s.remote_frees;
    t.drained = s.remote_blocks_drained;
    mf2::OsPageSource::Global().ForEachSpanInUse(&AddPage, &t);
    return t;
  }
  Totals base_;
};

// Iteration frame: the page source and the large-allocation table must be back where they were
// when the iteration ends (everything freed leaves the allocator empty, invariant 9).
class EmptinessCheck {
 public:
  EmptinessCheck() : large_(mf2::LargeLiveCount()) {
    FUZZ_CHECK(Source().outstanding() == 0, "an iteration starts with no span outstanding");
  }
  void Check() const {
    FUZZ_CHECK(Source().outstanding() == 0,
               "freeing every live block and releasing every heap returns every span");
    FUZZ_CHECK(mf2::LargeLiveCount() == large_, "every large allocation was unmapped");
  }

 private:
  size_t large_;
};

// Trace output for checking what a seed reaches: set MF2_FUZZ_TRACE=1.
inline bool Tracing() {
  static const bool on = std::getenv("MF2_FUZZ_TRACE") != nullptr;
  return on;
}

inline void TraceStats(const char* target) {
  if (!Tracing()) return;
  mf2::Stats s = mf2::HeapRegistry::Global().CollectStats();
  std::fprintf(stderr, "%s:", target);
#define MF2_FUZZ_TRACE_FIELD(name, desc) \
  if (s.name != 0) std::fprintf(stderr, " %s=%llu", #name, static_cast<unsigned long long>(s.name));
  MF2_COUNTERS(MF2_FUZZ_TRACE_FIELD)
#undef MF2_FUZZ_TRACE_FIELD
  std::fprintf(stderr, "\n");
}

}  // namespace mf2_fuzz

#endif  // MF2_FUZZ_FUZZ_UTIL_H_
