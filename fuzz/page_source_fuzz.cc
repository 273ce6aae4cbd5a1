// page_source_fuzz: the page source alone (mf2/page_source.h: spans carved from segments, the
// span cache and its bound, the cache's two decay tiers, releases, segments unmapped) against a
// shadow of the spans it handed out, on a virtual clock.
//
// Each input runs on a fresh OsPageSource (its counters start at zero), which no background
// reclaimer knows: only the harness calls its Decay, at the times the schedule says.
//
// Schedule: a sequence of ops, each an op byte (value % kNumOps; the values of enum class Op)
// followed by its arguments:
//   0 TAKE     n              AllocateSpan(1 + n % kMaxSlicesPerSpan)
//   1 TAKE_N   n count        1 + count % 16 spans of that length
//   2 GIVE     idx16          FreeSpan of held span idx % held
//   3 GIVE_N   idx16 count    GIVE idx 1 + count % 16 times (each time the span then at
//                             idx % held: a given span's place takes the last one)
//   4 TIME     step           the clock moves on (step % 64) units of 1 us, 1 ms, 10 ms or
//                             100 ms (step >> 6), then Decay
//   5 POLICY   a b            span cache bound (a % 32) slices, retained empty segments
//                             (a >> 5) % 3; the whole decay period 0, 50 ms, 1 s or 5 s (b % 4),
//                             the short one 0, 5 ms, 20 ms or 2 s ((b >> 2) % 4; the tier is
//                             off at 0 or when not shorter than the whole period)
//   6 RELEASE  kind           ReleaseCache (kind even) or ReleaseUnderPressure (odd)
//   7 IDLE     -              nothing but Decay, each call at the time the previous one said
//                             the next decay is due, until it says none is
//
// Oracles, after every op: OsPageSource::CheckInvariants; the bytes in use are the held spans'
// (the source's own count); no two held spans overlap (fuzz_util.h RangeSet) and each is found
// from its first and last byte (PageOf, the free path's lookup); the words the harness wrote at
// both ends of a span are intact when it gives the span back; after a free the cache is within
// the bound. Every Decay: no wait with decay off, none longer than the longest period in force
// this input, and while the cache holds more than its reserve (an eighth of the bytes in use)
// and the short tier is on, a wait no longer than the longest short period in force (the excess
// is watched). IDLE, the decay's liveness: left alone, the cache is within its reserve once the
// longest short period and one more have passed, empty once the longest whole period and one
// more have, and Decay then schedules nothing. At the end of the input every span goes back and
// ReleaseUnderPressure unmaps every segment the source mapped.
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "fuzz/live_set.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/segment.h"
#include "mf2/stats.h"

namespace mf2_fuzz {
namespace {

using mf2::kSliceSize;
using mf2::OsPageSource;
using mf2::Page;

// The op numbers of the byte encoding (the table above). Never renumber: the corpus means them.
enum class Op : uint8_t {
  kTake = 0,
  kTakeN = 1,
  kGive = 2,
  kGiveN = 3,
  kTime = 4,
  kPolicy = 5,
  kRelease = 6,
  kIdle = 7,
};
constexpr int kNumOps = 8;
constexpr int kMaxOps = 512;
constexpr size_t kMaxHeld = 256;  // at most 128 MiB of address space, a few pages resident
constexpr uint64_t kWholePeriods[] = {0, 50 * kMs, 1000 * kMs, 5000 * kMs};
constexpr uint64_t kShortPeriods[] = {0, 5 * kMs, 20 * kMs, 2000 * kMs};
// IDLE's bound on Decay calls: the short tier stops within its reserve, so a cache left alone
// needs a few; a tier that kept rescheduling itself every 5 ms for 5 s would need 1,000.
constexpr int kMaxIdleDecays = 64;

struct Held {
  Page* head;
  char* start;
  size_t len;
  uint64_t stamp;
};

class State {
 public:
  State() {
    policy_.page_cache_bytes = 8 * kSliceSize;
    policy_.retained_segments = 1;
    Apply();
  }
  ~State() {
    while (!held_.empty()) Give(0);
    source_.ReleaseUnderPressure();
    const mf2::Stats st = Figures();
    FUZZ_CHECK(st.bytes_in_use_spans == 0 && st.bytes_cached_spans == 0,
               "spans left after every span went back and the cache was released");
    FUZZ_CHECK(st.segments_mapped == st.segments_unmapped,
               "an empty segment stayed mapped after ReleaseUnderPressure");
    source_.CheckInvariants();
    ApplyPolicy(mf2::Policy());
  }

  void Perform(Reader& in) {
    switch (static_cast<Op>(in.Byte() % kNumOps)) {
      case Op::kTake: return OpTake(in);
      case Op::kTakeN: return OpTakeN(in);
      case Op::kGive: return OpGive(in);
      case Op::kGiveN: return OpGiveN(in);
      case Op::kTime: return OpTime(in);
      case Op::kPolicy: return OpPolicy(in);
      case Op::kRelease: return OpRelease(in);
      case Op::kIdle: return OpIdle();
    }
  }

  void CheckAfterStep(bool /*full*/) {
    source_.CheckInvariants();
    FUZZ_CHECK(Figures().bytes_in_use_spans == held_bytes_,
               "the bytes in use are not the held spans'");
  }

 private:
  mf2::Stats Figures() {
    mf2::Stats st{};
    source_.AddTo(&st);
    return st;
  }
  bool ShortTierOn() const {
    return policy_.page_cache_excess_decay_ns != 0 &&
           policy_.page_cache_excess_decay_ns < policy_.page_cache_decay_ns;
  }
  void Apply() {
    ApplyPolicy(policy_);
    if (policy_.page_cache_decay_ns > longest_whole_ns_) {
      longest_whole_ns_ = policy_.page_cache_decay_ns;
    }
    if (ShortTierOn() && policy_.page_cache_excess_decay_ns > longest_short_ns_) {
      longest_short_ns_ = policy_.page_cache_excess_decay_ns;
    }
  }

  void OpTake(Reader& in) { Take(1 + in.Byte() % mf2::kMaxSlicesPerSpan); }
  void OpTakeN(Reader& in) {
    const uint32_t slices = 1 + in.Byte() % mf2::kMaxSlicesPerSpan;
    for (int n = 1 + in.Byte() % 16; n > 0; --n) Take(slices);
  }
  void OpGive(Reader& in) {
    const uint16_t idx = in.U16();
    if (!held_.empty()) Give(idx % held_.size());
  }
  void OpGiveN(Reader& in) {
    const uint16_t idx = in.U16();
    for (int n = 1 + in.Byte() % 16; n > 0 && !held_.empty(); --n) Give(idx % held_.size());
  }
  void OpTime(Reader& in) {
    const uint8_t step = in.Byte();
    now_ns_ += TimeStepNs(step);
    CheckWait(source_.Decay(now_ns_));
  }
  void OpPolicy(Reader& in) {
    const uint8_t a = in.Byte();
    const uint8_t b = in.Byte();
    policy_.page_cache_bytes = (a % 32) * kSliceSize;
    policy_.retained_segments = (a >> 5) % 3;
    policy_.page_cache_decay_ns = kWholePeriods[b % 4];
    policy_.page_cache_excess_decay_ns = kShortPeriods[(b >> 2) % 4];
    Apply();
  }
  void OpRelease(Reader& in) {
    if (in.Byte() % 2 == 0) {
      source_.ReleaseCache();
    } else {
      source_.ReleaseUnderPressure();
    }
    FUZZ_CHECK(Figures().bytes_cached_spans == 0, "cached spans left after a release");
  }

  void Take(uint32_t slices) {
    if (held_.size() >= kMaxHeld) return;
    Page* head = source_.AllocateSpan(slices);
    FUZZ_CHECK(head != nullptr, "AllocateSpan failed");
    FUZZ_CHECK(head->span_slices == slices && !head->in_use(), "a span of the wrong length");
    mf2::Segment* s = mf2::SegmentOf(head);
    char* start = s->slice_start(s->slice_index(head));
    const size_t len = size_t{slices} * kSliceSize;
    ranges_.Insert(start, len);  // the "handed out twice" oracle
    FUZZ_CHECK(mf2::PageOf(start) == head && mf2::PageOf(start + len - 1) == head,
               "a span is not found from its own bytes");
    const uint64_t stamp = (reinterpret_cast<uintptr_t>(start) ^ ++seq_) | 1;
    WriteWord(start, stamp);
    WriteWord(start + len - 8, ~stamp);
    held_.push_back(Held{head, start, len, stamp});
    held_bytes_ += len;
  }

  void Give(size_t i) {
    const Held h = held_[i];
    FUZZ_CHECK(ReadWord(h.start) == h.stamp && ReadWord(h.start + h.len - 8) == ~h.stamp,
               "a held span's contents changed (handed out twice, or returned to the OS)");
    ranges_.Erase(h.start);
    held_[i] = held_.back();
    held_.pop_back();
    held_bytes_ -= h.len;
    source_.FreeSpan(h.head);
    FUZZ_CHECK(Figures().bytes_cached_spans <= policy_.page_cache_bytes,
               "the cache holds more than its bound after a free");
  }

  // What a Decay's answer may be (see the top of this file).
  void CheckWait(uint64_t wait_ns) {
    if (policy_.page_cache_decay_ns == 0) {
      FUZZ_CHECK(wait_ns == 0, "a decay scheduled with decay off");
      return;
    }
    FUZZ_CHECK(wait_ns <= longest_whole_ns_, "a decay scheduled beyond the longest period");
    const mf2::Stats st = Figures();
    if (ShortTierOn() && st.bytes_cached_spans > st.bytes_in_use_spans / 8) {
      FUZZ_CHECK(wait_ns != 0 && wait_ns <= longest_short_ns_,
                 "an excess over the reserve is not watched by the short period");
    }
  }

  void OpIdle() {
    const uint64_t t0 = now_ns_;
    const uint64_t whole_by = t0 + longest_whole_ns_ + policy_.page_cache_decay_ns;
    const uint64_t short_by = t0 + longest_short_ns_ + policy_.page_cache_excess_decay_ns;
    DecayUntilNoneDue(now_ns_, kMaxIdleDecays, [&](uint64_t now_ns) -> uint64_t {
      const uint64_t wait_ns = source_.Decay(now_ns);
      CheckWait(wait_ns);
      if (policy_.page_cache_decay_ns == 0) return 0;  // nothing decays: the cache stays
      const mf2::Stats st = Figures();
      if (ShortTierOn() && now_ns >= short_by) {
        FUZZ_CHECK(st.bytes_cached_spans <= st.bytes_in_use_spans / 8,
                   "an excess left alone outlived the short period");
      }
      if (now_ns >= whole_by) {
        FUZZ_CHECK(st.bytes_cached_spans == 0, "a cache left alone outlived the whole period");
      }
      if (wait_ns == 0) {
        FUZZ_CHECK(st.bytes_cached_spans == 0, "no decay scheduled for a non-empty cache");
      }
      return wait_ns;
    });
  }

  OsPageSource source_;
  mf2::Policy policy_;
  uint64_t longest_whole_ns_ = 0;  // the longest periods in force during this input
  uint64_t longest_short_ns_ = 0;
  uint64_t now_ns_ = uint64_t{1} << 40;  // virtual; a decay clock's 0 means "none"
  std::vector<Held> held_;
  size_t held_bytes_ = 0;
  RangeSet ranges_;
  uint64_t seq_ = 0;
};

}  // namespace
}  // namespace mf2_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mf2_fuzz::Reader in(data, size);
  mf2_fuzz::State state;
  mf2_fuzz::RunSchedule(state, in, mf2_fuzz::kMaxOps, "page_source_fuzz");
  return 0;
}
