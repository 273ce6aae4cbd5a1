#include "mf2/stats.h"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mf2 {
namespace {

// The public struct mf2_stats (mf2/mf2.h) writes the counter list out by hand. Pin it to
// MF2_COUNTERS and MF2_PAGE_SOURCE_FIGURES: each name is a uint64_t field at its list position,
// and nothing else sits between them, so the hand-written list cannot drift from the X-macros.
enum SourceFigure {
#define MF2_SOURCE_ENUM(name, desc) kSource_##name,
  MF2_PAGE_SOURCE_FIGURES(MF2_SOURCE_ENUM)
#undef MF2_SOURCE_ENUM
      kNumSourceFigures
};

#define MF2_PIN_COUNTER(name, desc)                                                    \
  static_assert(offsetof(mf2_stats, name) == HeapStats::k_##name * sizeof(uint64_t) && \
                    sizeof(mf2_stats::name) == sizeof(uint64_t),                       \
                "mf2_stats (mf2/mf2.h) must list the counters of MF2_COUNTERS in order: " #name);
MF2_COUNTERS(MF2_PIN_COUNTER)
#undef MF2_PIN_COUNTER

#define MF2_PIN_SOURCE(name, desc)                                             \
  static_assert(                                                               \
      offsetof(mf2_stats, name) ==                                             \
              (HeapStats::kNumCounters + kSource_##name) * sizeof(uint64_t) && \
          sizeof(mf2_stats::name) == sizeof(uint64_t),                         \
      "mf2_stats (mf2/mf2.h) must list MF2_PAGE_SOURCE_FIGURES after the counters: " #name);
MF2_PAGE_SOURCE_FIGURES(MF2_PIN_SOURCE)
#undef MF2_PIN_SOURCE

static_assert(offsetof(mf2_stats, large_count) ==
                  (HeapStats::kNumCounters + kNumSourceFigures) * sizeof(uint64_t),
              "mf2_stats (mf2/mf2.h) has a field between the listed figures that no X-macro fills");

// The footprint gauge. Relaxed throughout: the figures are statistics, ordered with nothing else.
// Each update is one RMW, so the values `in_use` takes follow its modification order exactly, and
// every value is compared with the peak by the thread that produced it: the peak is the true
// maximum of that sequence, however the updates interleave.
std::atomic<int64_t> g_in_use{0};
std::atomic<int64_t> g_large_live{0};
std::atomic<int64_t> g_peak{0};

void NoteInUse(int64_t delta) {
  // Relaxed: see above.
  const int64_t now = g_in_use.fetch_add(delta, std::memory_order_relaxed) + delta;
  if (delta <= 0) return;
  // Relaxed: see above; the loop ends when the peak is at least `now`.
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

uint64_t NonNegative(int64_t v) { return v < 0 ? 0 : static_cast<uint64_t>(v); }

}  // namespace

void HeapStats::AddTo(Stats* s) const {
#define MF2_STATS_ADD(name, desc) s->name += Get(k_##name);
  MF2_COUNTERS(MF2_STATS_ADD)
#undef MF2_STATS_ADD
}

void NoteSpanBytes(int64_t delta) { NoteInUse(delta); }

void NoteLargeBytes(int64_t delta) {
  // Relaxed: see the gauge's comment.
  g_large_live.fetch_add(delta, std::memory_order_relaxed);
  NoteInUse(delta);
}

Footprint ReadFootprint() {
  Footprint f;
  // Relaxed: see the gauge's comment. Three separate loads: a snapshot taken while other threads
  // allocate is approximate, as every figure of GetStats is.
  f.large_live = NonNegative(g_large_live.load(std::memory_order_relaxed));
  f.in_use = NonNegative(g_in_use.load(std::memory_order_relaxed));
  f.peak = NonNegative(g_peak.load(std::memory_order_relaxed));
  return f;
}

}  // namespace mf2
