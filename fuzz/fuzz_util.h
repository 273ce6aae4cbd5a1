// Shared pieces of MF2's fuzz targets: a byte reader for operation schedules, the oracle check,
// the permanent page source every iteration draws from, the size choices (class boundaries), and
// payload stamps.
//
// Every target is an operation sequence over a State whose destructor frees everything and then
// asserts the allocator is empty (a leak fails the input). Inputs are schedules: one op byte, then
// that op's argument bytes; a missing argument byte reads as 0 and ends the schedule.
#ifndef MF2_FUZZ_FUZZ_UTIL_H_
#define MF2_FUZZ_FUZZ_UTIL_H_

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

namespace mf2_fuzz {

[[noreturn]] inline void OracleFailed(const char* file, int line, const char* cond,
                                      const char* msg) {
  std::fprintf(stderr, "fuzz oracle failed at %s:%d: %s (%s)\n", file, line, cond, msg);
  std::abort();
}

// Reads a schedule front to back. Past the end every read yields 0 and sets `done`.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return done_ || p_ == end_; }
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

inline mf2::Heap* AcquireHeap() {
  mf2::Heap* h = mf2::HeapRegistry::Global().AcquireHeap(&Source());
  FUZZ_CHECK(h != nullptr, "AcquireHeap");
  return h;
}

// The cache policy (Policy::cache_class_bytes) of the heaps an input creates or takes over:
// caches are sized when a heap is taken (Heap::ConfigureCaches), so a change reaches the heaps
// acquired after it. Mode % 4: 0 and 3 the default (64 KiB per class: 2..63 blocks), 1 caching
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

inline void SetBudget(uint32_t budget, bool tight_memory = false, uint8_t route_byte = 0) {
  mf2::SetPolicyForTesting(FuzzPolicy(budget, tight_memory, route_byte));
}

// The default policy for the next iteration (caches at their default size).
inline void ResetPolicy() {
  CacheMode() = 0;
  SetBudget(8);
}

// The background reclaimer's pass over an idle owner (README.md, "Not yet": a background thread
// that releases what idle owners keep). Until MF2 has one, the harness plays it with what exists:
// `sweeper` (a heap the calling thread owns) sweeps `owner`'s pending queue for pages that came
// back whole (Heap::ReclaimIdleOwner_mt; it does nothing while the owner is not idle for the
// policy in force). When the reclaimer lands, its entry point goes here, and every IDLE op of
// multi_actor_fuzz and threads_fuzz runs it.
inline void BackgroundReclaimPass(mf2::Heap* sweeper, mf2::Heap* owner) {
  sweeper->ReclaimIdleOwner_mt(owner);
}

// Block conservation per page, exact (page.h, "Blocks"): every page in use has
//   used() == (class blocks the harness holds live on it) + (its blocks in any heap's cache)
//             + remote.count,
// and every live or cached block lies on a page in use. `live` is every class block (not large)
// the harness holds. The caller guarantees no other thread is inside MF2 (as for CheckAll). A
// remote free whose step 2 is pending (multi_actor_fuzz) has pushed its block already, so the
// equation holds then too.
inline void CheckConservation(const std::vector<const void*>& live) {
  struct Counts {
    uint32_t live = 0;
    uint32_t cached = 0;
  };
  struct Walk {
    std::unordered_map<const mf2::Page*, Counts> pages;
    size_t matched = 0;
  } walk;
  for (const void* p : live) {
    const mf2::Page* page = mf2::PageOf(p);
    FUZZ_CHECK(page != nullptr, "a live class block lies in a span");
    ++walk.pages[page].live;
  }
  size_t cached = 0;
  mf2::HeapRegistry::Global().ForEachCachedBlock(
      [](void* b, const mf2::Heap*, void* arg) {
        const mf2::Page* page = mf2::PageOf(b);
        FUZZ_CHECK(page != nullptr, "a cached block lies in a span");
        ++static_cast<Walk*>(arg)->pages[page].cached;
      },
      &walk);
  for (const auto& entry : walk.pages) cached += entry.second.cached;
  mf2::OsPageSource::Global().ForEachSpanInUse(
      [](mf2::Page* page, void* arg) {
        auto* w = static_cast<Walk*>(arg);
        if (!page->in_use()) return;
        auto it = w->pages.find(page);
        const Counts c = it == w->pages.end() ? Counts() : it->second;
        const uint32_t remote = page->remote().Peek().count();
        if (page->used() != c.live + c.cached + remote) {
          std::fprintf(stderr, "page %p class %u: used %u, live %u + cached %u + remote %u\n",
                       static_cast<void*>(page), page->size_class(), page->used(), c.live, c.cached,
                       remote);
          OracleFailed(__FILE__, __LINE__, "conservation",
                       "used() == live + cached + remote.count on every page (invariant 1)");
        }
        w->matched += c.live + c.cached;
      },
      &walk);
  FUZZ_CHECK(walk.matched == live.size() + cached,
             "every live and every cached block lies on a page in use");
}

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
// mismatch (invariant 4).
inline uint8_t StampByte(uint64_t stamp, size_t i) {
  uint64_t x = (stamp + 1) * 0x9E3779B97F4A7C15ull + i * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return static_cast<uint8_t>(x ^ (x >> 17));
}

template <typename Fn>
void ForStampedBytes(size_t usable, Fn fn) {
  const size_t head = usable < 1024 ? usable : 1024;
  for (size_t i = 0; i < head; ++i) fn(i);
  size_t tail = usable > 64 ? usable - 64 : 0;
  if (tail < head) tail = head;
  for (size_t i = tail; i < usable; ++i) fn(i);
}

inline void Stamp(void* p, size_t usable, uint64_t stamp) {
  auto* b = static_cast<uint8_t*>(p);
  ForStampedBytes(usable, [&](size_t i) { b[i] = StampByte(stamp, i); });
}

inline void VerifyStamp(const void* p, size_t usable, uint64_t stamp) {
  const auto* b = static_cast<const uint8_t*>(p);
  ForStampedBytes(usable, [&](size_t i) {
    if (b[i] != StampByte(stamp, i)) {
      std::fprintf(stderr, "block %p (usable %zu, stamp %llx): byte %zu is %02x, expected %02x\n",
                   p, usable, static_cast<unsigned long long>(stamp), i, b[i],
                   StampByte(stamp, i));
      OracleFailed(__FILE__, __LINE__, "payload", "a live block's payload changed (invariant 4)");
    }
  });
}

// Address ranges [p, p + usable) of live blocks; inserting one that overlaps a live range (or
// repeats a live pointer) is the "handed out twice" oracle (invariant 3/4).
class RangeSet {
 public:
  void Insert(const void* p, size_t usable) {
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
  void Erase(const void* p) {
    FUZZ_CHECK(ranges_.erase(reinterpret_cast<uintptr_t>(p)) == 1, "shadow range missing");
  }
  size_t size() const { return ranges_.size(); }

 private:
  std::map<uintptr_t, uintptr_t> ranges_;  // start -> end
};

// Invariant 2 (no remote free lost): every remote push is either drained or still on a page's
// remote stack. Counts are deltas against the start of the iteration (heaps and their
// counters outlive iterations).
class RemoteLedger {
 public:
  RemoteLedger() : base_(Measure()) {}
  void Check() const {
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
