// large_fuzz: large blocks alone (mf2/large.h: blocks above the largest class mapped from the OS,
// their table, the cache of freed mappings and its decay, in-place and moving resizes, the
// memory of recently freed blocks) against a shadow of the blocks handed out, on a virtual clock.
//
// Nothing else in the process maps large blocks and no background reclaimer runs here (no heap
// ever starts one), so the process-wide figures are this harness's alone and only the harness
// calls LargeDecay, at the times the schedule says.
//
// Schedule: a sequence of ops, each an op byte (value % kNumOps; the values of enum class Op)
// followed by its arguments:
//   0 ALLOC    size align     LargeAllocate(SizeOf(size), 16, 4 KiB, 64 KiB or 1 MiB by align % 4),
//                             asking whether the block is zeroed (as calloc does) unless bit 2
//                             of align is set (then the cache may grow a shorter mapping)
//   1 FREE     idx16          LargeFree of held block idx % held
//   2 RESIZE   idx16 size     LargeResize of held block idx % held to SizeOf(size)
//   3 USABLE   idx16          LargeUsableSize of a held block
//   4 TIME     step           the clock moves on (step % 64) units of 1 us, 1 ms, 10 ms or
//                             100 ms (step >> 6), then LargeDecay
//   5 POLICY   a b            the cache bound 0, 1, 4, 16 or 64 MiB (a % 5); the decay period
//                             0, 50 ms, 1 s or 5 s (b % 4)
//   6 RELEASE  -              LargeReleaseCache
//   7 IDLE     -              nothing but LargeDecay, each call at the time the previous one said
//                             the next decay is due, until it says none is
// SizeOf(b): 64 KiB + 1 shifted left by b % 8 (64 KiB .. 8 MiB), plus (b >> 3) pages.
//
// Oracles, after every op: LargeCheckInvariants (the table's counts, every block the whole of its
// mapping, the cache's bytes, no page both cached and live or cached twice); the live count is
// the held blocks' count, and the footprint gauge (mf2_stats bytes_large_live) is their usable
// bytes (a large block's mapping is its usable size). Every block: aligned as asked, its usable
// size at least the request; a block said to be zeroed reads as zeros; the words the harness
// wrote at both ends are intact when it is freed or resized (a resize keeps the contents up to
// the smaller size); an aligned block never moves; LargeUsableSize is what the allocation or
// resize said. A freed block is remembered as freed (LargeDiagnose). A free adds to the cache
// only within its bound; an allocation aligned to at most a page that does not ask for zeroes
// takes a mapping from the cache whenever it holds one. Every LargeDecay: no wait with decay off,
// none longer than the longest period. IDLE, the decay's liveness: left alone, the cache empties
// within a few periods and LargeDecay then schedules nothing. At the end of the input every
// block is freed, the cache released, and the gauge back where it started.
#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "fuzz/live_set.h"
#include "mf2/large.h"
#include "mf2/policy.h"
#include "mf2/size_class.h"
#include "mf2/stats.h"

namespace mf2_fuzz {
namespace {

// The op numbers of the byte encoding (the table above). Never renumber: the corpus means them.
enum class Op : uint8_t {
  kAlloc = 0,
  kFree = 1,
  kResize = 2,
  kUsable = 3,
  kTime = 4,
  kPolicy = 5,
  kRelease = 6,
  kIdle = 7,
};
constexpr int kNumOps = 8;
constexpr int kMaxOps = 256;
constexpr size_t kMaxHeld = 48;
constexpr size_t kPage = 4096;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kAlignments[] = {16, kPage, 64 * 1024, kMiB};
constexpr size_t kCacheBounds[] = {0, kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB};
constexpr uint64_t kPeriods[] = {0, 50 * kMs, 1000 * kMs, 5000 * kMs};
constexpr uint64_t kLongestPeriod = 5000 * kMs;
constexpr int kMaxIdleDecays = 64;

size_t SizeOf(uint8_t b) { return ((mf2::kMaxClassSize + 1) << (b % 8)) + (b >> 3) * kPage; }

struct Held {
  unsigned char* p;
  size_t requested;
  size_t usable;
  size_t alignment;
  uint64_t stamp;
};

// The virtual clock of the whole process: LargeDecay's schedule outlives an input.
uint64_t& Now() {
  static uint64_t now_ns = uint64_t{1} << 40;  // a decay clock's 0 means "none"
  return now_ns;
}

class State {
 public:
  State() : gauge_at_start_(Gauge()) {
    FUZZ_CHECK(mf2::LargeLiveCount() == 0, "large blocks live before an input");
    ApplyPolicy(policy_);
  }
  ~State() {
    while (!held_.empty()) Free(0);
    mf2::LargeReleaseCache();
    FUZZ_CHECK(mf2::LargeLiveCount() == 0 && mf2::LargeCachedBytes() == 0,
               "large blocks or cached mappings left at the end of an input");
    FUZZ_CHECK(Gauge() == gauge_at_start_, "the footprint gauge did not come back");
    ApplyPolicy(mf2::Policy());
  }

  void Perform(Reader& in) {
    switch (static_cast<Op>(in.Byte() % kNumOps)) {
      case Op::kAlloc: return OpAlloc(in);
      case Op::kFree: return OpFree(in);
      case Op::kResize: return OpResize(in);
      case Op::kUsable: return OpUsable(in);
      case Op::kTime: return OpTime(in);
      case Op::kPolicy: return OpPolicy(in);
      case Op::kRelease: return OpRelease();
      case Op::kIdle: return OpIdle();
    }
  }

  void CheckAfterStep(bool /*full*/) {
    mf2::LargeCheckInvariants();
    FUZZ_CHECK(mf2::LargeLiveCount() == held_.size(), "the live count is not the held blocks'");
    FUZZ_CHECK(Gauge() == gauge_at_start_ + held_bytes_,
               "the footprint gauge is not the held blocks' usable bytes");
  }

 private:
  // mf2_stats bytes_large_live's source (clamped at 0 when read, as there).
  static uint64_t Gauge() { return mf2::ReadFootprint().large_live; }

  void OpAlloc(Reader& in) {
    const size_t size = SizeOf(in.Byte());
    const uint8_t align = in.Byte();
    const size_t alignment = kAlignments[align % 4];
    const bool ask_zeroed = (align & 4) == 0;
    if (held_.size() >= kMaxHeld) return;
    bool zeroed = false;
    const size_t cached_before = mf2::LargeCachedBytes();
    auto* p = static_cast<unsigned char*>(
        mf2::LargeAllocate(size, alignment, ask_zeroed ? &zeroed : nullptr));
    FUZZ_CHECK(p != nullptr, "LargeAllocate failed");
    if (!ask_zeroed && alignment <= kPage && cached_before != 0) {
      FUZZ_CHECK(mf2::LargeCachedBytes() < cached_before,
                 "an allocation took nothing from a cache that held mappings");
    }
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(p) % alignment == 0, "a large block misaligned");
    const size_t usable = mf2::LargeUsableSize(p);
    FUZZ_CHECK(usable >= size && usable % kPage == 0, "a large block smaller than asked");
    if (zeroed) {
      FUZZ_CHECK(ReadWord(p) == 0 && ReadWord(p + usable - 8) == 0,
                 "a block said to be zeroed is not");
    }
    Held h{p, size, usable, alignment, (reinterpret_cast<uintptr_t>(p) ^ ++seq_) | 1};
    Stamp(h);
    held_.push_back(h);
    held_bytes_ += usable;
  }

  void OpFree(Reader& in) {
    const uint16_t idx = in.U16();
    if (!held_.empty()) Free(idx % held_.size());
  }

  void OpResize(Reader& in) {
    const uint16_t idx = in.U16();
    const size_t size = SizeOf(in.Byte());
    if (held_.empty()) return;
    Held& h = held_[idx % held_.size()];
    Verify(h);
    bool moved = false;
    auto* q = static_cast<unsigned char*>(mf2::LargeResize(h.p, size, &moved));
    if (q == nullptr) {
      // It could not be done (an aligned block with no room above): the block is unchanged.
      FUZZ_CHECK(mf2::LargeUsableSize(h.p) == h.usable, "a failed resize changed the block");
      return;
    }
    FUZZ_CHECK(moved == (q != h.p), "LargeResize's `moved` is wrong");
    FUZZ_CHECK(!moved || h.alignment <= kPage, "an aligned block moved");
    const size_t usable = mf2::LargeUsableSize(q);
    FUZZ_CHECK(usable >= size && usable % kPage == 0, "a resized block smaller than asked");
    FUZZ_CHECK(ReadWord(q) == h.stamp, "a resize lost the block's first word");
    if (h.usable <= usable) {
      FUZZ_CHECK(ReadWord(q + h.usable - 8) == ~h.stamp, "a growth lost the block's last word");
    }
    held_bytes_ += usable;
    held_bytes_ -= h.usable;
    h.p = q;
    h.requested = size;
    h.usable = usable;
    Stamp(h);
  }

  void OpUsable(Reader& in) {
    const uint16_t idx = in.U16();
    if (held_.empty()) return;
    const Held& h = held_[idx % held_.size()];
    FUZZ_CHECK(mf2::LargeUsableSize(h.p) == h.usable, "LargeUsableSize changed by itself");
  }

  void OpTime(Reader& in) {
    const uint8_t step = in.Byte();
    Now() += TimeStepNs(step);
    CheckWait(mf2::LargeDecay(Now()));
  }

  void OpPolicy(Reader& in) {
    policy_.large_cache_bytes = kCacheBounds[in.Byte() % 5];
    policy_.page_cache_decay_ns = kPeriods[in.Byte() % 4];
    ApplyPolicy(policy_);
  }

  void OpRelease() {
    mf2::LargeReleaseCache();
    FUZZ_CHECK(mf2::LargeCachedBytes() == 0, "cached mappings left after a release");
  }

  void OpIdle() {
    DecayUntilNoneDue(Now(), kMaxIdleDecays, [&](uint64_t now_ns) -> uint64_t {
      const uint64_t wait_ns = mf2::LargeDecay(now_ns);
      CheckWait(wait_ns);
      if (policy_.page_cache_decay_ns == 0) return 0;  // nothing decays: the cache stays
      if (wait_ns == 0) {
        FUZZ_CHECK(mf2::LargeCachedBytes() == 0, "no decay scheduled for a non-empty cache");
      }
      return wait_ns;
    });
  }

  void CheckWait(uint64_t wait_ns) {
    if (policy_.page_cache_decay_ns == 0) {
      FUZZ_CHECK(wait_ns == 0, "a decay scheduled with decay off");
    } else {
      FUZZ_CHECK(wait_ns <= kLongestPeriod, "a decay scheduled beyond the longest period");
    }
  }

  void Stamp(const Held& h) {
    WriteWord(h.p, h.stamp);
    WriteWord(h.p + h.usable - 8, ~h.stamp);
  }
  void Verify(const Held& h) {
    FUZZ_CHECK(ReadWord(h.p) == h.stamp && ReadWord(h.p + h.usable - 8) == ~h.stamp,
               "a held block's contents changed (handed out twice, or unmapped)");
  }

  void Free(size_t i) {
    const Held h = held_[i];
    Verify(h);
    held_[i] = held_.back();
    held_.pop_back();
    held_bytes_ -= h.usable;
    const size_t cached_before = mf2::LargeCachedBytes();
    FUZZ_CHECK(mf2::LargeFree(h.p), "a live large block not known as one");
    const size_t cached = mf2::LargeCachedBytes();
    FUZZ_CHECK(cached <= cached_before || cached <= policy_.large_cache_bytes,
               "a free cached a mapping beyond the cache's bound");
    FUZZ_CHECK(mf2::LargeDiagnose(h.p).kind == mf2::LargeDiagnosis::kFreedRecently,
               "a block just freed is not remembered as freed");
  }

  mf2::Policy policy_;
  const uint64_t gauge_at_start_;
  std::vector<Held> held_;
  size_t held_bytes_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace
}  // namespace mf2_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mf2_fuzz::Reader in(data, size);
  mf2_fuzz::State state;
  mf2_fuzz::RunSchedule(state, in, mf2_fuzz::kMaxOps, "large_fuzz");
  return 0;
}
