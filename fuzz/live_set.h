// The blocks a fuzz input holds live, and the loop that runs a schedule: the parts every target
// shares, so each target's file is only its ops.
//
// A target is a State with one method per op (tcmalloc's "State and Perform" fuzzers): an
// `enum class Op` whose values are the op numbers of its byte encoding, `Perform(Reader&)` that
// reads one op byte and calls that op's method (which reads its own argument bytes), and
// `CheckAfterStep(full)`. RunSchedule drives it; LiveSet is its shadow of the live blocks.
#ifndef MF2_FUZZ_LIVE_SET_H_
#define MF2_FUZZ_LIVE_SET_H_

#include "fuzz/fuzz_std.h"  // first: the standard library without coverage

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/segment.h"

namespace mf2_fuzz {

// One block the input holds.
struct Live {
  void* p;
  size_t requested;  // the size asked for
  size_t usable;     // Heap::UsableSize when it was handed out
  uint64_t stamp;    // its payload (Stamp)
  bool large;        // a large allocation (mapped by the OS, no page)
};

// Before a block is freed: its payload is the one stamped at allocation, and its usable size has
// not changed (invariant 4). Runs on the freeing thread.
MF2_FUZZ_NO_COVERAGE inline void Verify(const Live& b) {
  VerifyStamp(b.p, b.usable, b.stamp);
  FUZZ_CHECK(mf2::Heap::UsableSize(b.p) == b.usable, "UsableSize is stable while live");
}

// The live blocks in the order they were handed out (ops name them by index, oldest first),
// bounded in count and bytes, with the oracles that every change of the set runs: a block handed
// out overlaps no live block (RangeSet, invariants 3 and 4), and the Checker's per-page counts
// follow every block in and out (so Checker::Touched and Full know what the harness holds).
//
// Taking block i leaves a tombstone in its slot instead of moving the later blocks down (an
// erase from the middle of thousands of live blocks was a memmove per free); a Fenwick tree of
// the slots' live counts finds the i-th live slot in O(log n), so index i still names the i-th
// oldest live block, as the committed corpora mean it. The slots are compacted (tombstones
// dropped, order kept) when half of them are dead or none is left free.
class LiveSet {
 public:
  LiveSet(size_t max_blocks, size_t max_bytes) : max_blocks_(max_blocks), max_bytes_(max_bytes) {
    Reset(kMinSlots);
  }

  // Whether `bytes` more would exceed the bounds (the op then allocates nothing).
  bool Full(size_t bytes) const { return live_ >= max_blocks_ || bytes_ + bytes > max_bytes_; }
  bool empty() const { return live_ == 0; }
  size_t size() const { return live_; }
  // Live block i (oldest first). The reference lasts until the next Add.
  MF2_FUZZ_NO_COVERAGE const Live& operator[](size_t i) const { return slots_[SlotOf(i)]; }
  // Whether `p` lies inside a live block.
  bool Covers(const void* p) const { return ranges_.Covers(p); }
  Checker& checker() { return check_; }

  // A block just handed out for `requested` bytes: usable >= requested, no overlap with a live
  // block, then stamped with `stamp` and held (last). Returns it (until the next Add).
  MF2_FUZZ_NO_COVERAGE const Live& Add(void* p, size_t requested, uint64_t stamp) {
    const size_t usable = mf2::Heap::UsableSize(p);
    FUZZ_CHECK(usable >= requested, "usable size >= requested");
    ranges_.Insert(p, usable);
    Stamp(p, usable, stamp);
    return Hold(Live{p, requested, usable, stamp, mf2::PageOf(p) == nullptr}, /*inserted=*/true);
  }
  // A block stamped already, by the thread that allocated it (threads_fuzz).
  MF2_FUZZ_NO_COVERAGE void AddStamped(const Live& b) {
    FUZZ_CHECK(b.usable >= b.requested, "usable size >= requested");
    Hold(b, /*inserted=*/false);
  }

  // Removes live block `i` from the shadow, before the caller frees it (and Verify()s it on the
  // freeing thread). The later blocks move down one index.
  MF2_FUZZ_NO_COVERAGE Live Take(size_t i) {
    const size_t s = SlotOf(i);
    const Live b = slots_[s];
    alive_[s] = 0;
    TreeAdd(s, -1);
    --live_;
    Forget(b);
    if (slots_.size() >= kMinSlots && 2 * live_ < slots_.size()) Compact();
    return b;
  }
  // Every live block, oldest first; the set is empty afterwards.
  MF2_FUZZ_NO_COVERAGE std::vector<Live> TakeAll() {
    std::vector<Live> all;
    all.reserve(live_);
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (alive_[s]) all.push_back(slots_[s]);
    }
    for (const Live& b : all) Forget(b);
    live_ = 0;
    Reset(kMinSlots);
    return all;
  }
  // Takes every block for which take(i, block) returns true (i: its index before the call),
  // keeping the order of the rest; the callback keeps what it takes.
  template <typename Fn>
  MF2_FUZZ_NO_COVERAGE void TakeIf(Fn take) {
    size_t i = 0;
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (!alive_[s]) continue;
      if (take(i++, slots_[s])) {
        Forget(slots_[s]);
        alive_[s] = 0;
        --live_;
      }
    }
    Compact();
  }

 private:
  static constexpr size_t kMinSlots = 64;

  // Empty, with room for `capacity` slots.
  MF2_FUZZ_NO_COVERAGE void Reset(size_t capacity) {
    slots_.clear();
    alive_.clear();
    Resize(capacity);
  }
  MF2_FUZZ_NO_COVERAGE void Resize(size_t capacity) {
    tree_.assign(capacity + 1, 0);
    top_ = 1;
    while (2 * top_ <= capacity) top_ *= 2;
  }
  // Fenwick tree over alive_ (tree_[j] for j in 1..capacity).
  MF2_FUZZ_NO_COVERAGE void TreeAdd(size_t slot, int delta) {
    for (size_t j = slot + 1; j < tree_.size(); j += j & (~j + 1)) {
      tree_[j] = static_cast<uint32_t>(static_cast<int>(tree_[j]) + delta);
    }
  }
  // The slot of the i-th live block (i < live_): the smallest slot s with i + 1 live slots in
  // [0, s].
  MF2_FUZZ_NO_COVERAGE size_t SlotOf(size_t i) const {
    FUZZ_CHECK(i < live_, "a live block's index is below size()");
    size_t pos = 0;  // slots [0, pos) hold at most i live blocks
    size_t rest = i + 1;
    for (size_t step = top_; step != 0; step /= 2) {
      if (pos + step < tree_.size() && tree_[pos + step] < rest) {
        pos += step;
        rest -= tree_[pos];
      }
    }
    return pos;
  }
  // Drops the tombstones, keeping the order; room for twice the live blocks (at least
  // kMinSlots) afterwards, so compactions cost O(1) per Take or Hold amortized.
  MF2_FUZZ_NO_COVERAGE void Compact() {
    size_t n = 0;
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (alive_[s]) slots_[n++] = slots_[s];
    }
    FUZZ_CHECK(n == live_, "shadow: the live count matches the live slots");
    Resize(std::max(kMinSlots, 2 * n));
    slots_.resize(n);
    alive_.assign(n, 1);
    // Linear-time build: every node counts its own slot (live: the first n), then adds its
    // count to its parent's. Nodes past n count too: they cover live slots below them.
    for (size_t j = 1; j < tree_.size(); ++j) {
      if (j <= n) tree_[j] += 1;
      const size_t parent = j + (j & (~j + 1));
      if (parent < tree_.size()) tree_[parent] += tree_[j];
    }
  }
  MF2_FUZZ_NO_COVERAGE const Live& Hold(const Live& b, bool inserted) {
    if (!inserted) ranges_.Insert(b.p, b.usable);
    check_.AddLive(b.p);
    if (slots_.size() + 1 >= tree_.size()) Compact();
    slots_.push_back(b);
    alive_.push_back(1);
    TreeAdd(slots_.size() - 1, +1);
    ++live_;
    bytes_ += b.usable;
    return slots_.back();
  }
  MF2_FUZZ_NO_COVERAGE void Forget(const Live& b) {
    ranges_.Erase(b.p);
    check_.RemoveLive(b.p);
    bytes_ -= b.usable;
  }

  const size_t max_blocks_;
  const size_t max_bytes_;
  std::vector<Live> slots_;      // every block held since the last compaction, in order
  std::vector<uint8_t> alive_;   // per slot: 1 live, 0 taken (a tombstone)
  std::vector<uint32_t> tree_;   // Fenwick tree of alive_, 1-based; size() - 1 slots of room
  size_t top_ = 1;               // the largest power of two <= tree_.size() - 1
  size_t live_ = 0;
  size_t bytes_ = 0;
  RangeSet ranges_;
  Checker check_;
};

// FILL's frees and checks, one for the three targets (they allocate differently): called after
// the filling heap allocated cap + 1 blocks of a class, cap read after each allocation (a slow
// path may double a cache, Heap::GrowCache, and refill half of the grown one). `cache` is that
// class's cache of the heap, read live; free_one() frees the newest fresh block the heap may cache
// (one of its own pages) and returns false when none is left. The blocks are freed until the
// cache is full, then, `overflow`: one more free, into the full cache, which either grows it (the
// block goes in) or returns its older half to the pages (Heap::FreeToFullCache).
template <typename FreeOne>
MF2_FUZZ_NO_COVERAGE void FillCache(const mf2::Heap::Magazine& cache, bool overflow,
                                    FreeOne free_one) {
  const uint32_t cap = cache.cap();
  FUZZ_CHECK(cache.n() <= cap, "a cache never holds more than its capacity");
  while (cache.n() < cap && free_one()) {
  }
  if (cache.n() < cap) return;  // too few blocks (the live-set bound, or pages adopted meanwhile)
  FUZZ_CHECK(cache.n() == cap, "a cache never holds more than its capacity");
  if (!overflow || !free_one()) return;
  if (cache.cap() != cap) {
    FUZZ_CHECK(cache.cap() == std::min(2 * cap, mf2::Heap::kCacheSlots) && cache.n() == cap + 1,
               "a full cache that grows takes the freed block without a flush");
  } else {
    FUZZ_CHECK(cache.n() == (cap == 0 ? 0 : CacheAfterOverflow(cap)),
               "a free into a full cache that cannot grow returns the older half to the pages");
  }
}

// The frame of one iteration: built when the State is (nothing outstanding then), Finish()ed at
// its end, after the State freed every live block and released every heap: every heap and page
// consistent (HeapRegistry::CheckAll, Checker::Full), no remote free lost and none left on a
// stack (invariant 2), every span back and every large mapping unmapped (9); then the default
// policy for the next iteration.
class IterationFrame {
 public:
  const RemoteLedger& ledger() const { return ledger_; }
  void Finish(Checker& check) {
    mf2::HeapRegistry::Global().CheckAll(true);
    check.Full(true);
    ledger_.CheckEmpty();
    empty_.Check();
    ResetPolicy();
  }

 private:
  EmptinessCheck empty_;
  RemoteLedger ledger_;
};

// The two multi-heap targets' op byte: the actor or worker in the high nibble (% count), the op
// in the low nibble (% num_ops).
struct OpByte {
  int who;
  int op;
};
inline OpByte SplitOpByte(uint8_t byte, int count, int num_ops) {
  return OpByte{(byte >> 4) % count, (byte & 15) % num_ops};
}

// Runs schedule `in` on `state` (see the top of this file): up to `max_ops` ops, the state's
// checks after each (everything every FullCheckEvery() ops, the touched pages otherwise) and at
// the end, then the trace line (MF2_FUZZ_TRACE).
template <typename State>
void RunSchedule(State& state, Reader& in, int max_ops, const char* target) {
  Progress& at = CurrentProgress();
  at.target = target;
  ++at.input;
  for (int n = 1; n <= max_ops && !in.done(); ++n) {
    at.op = n;
    at.offset = in.offset();
    state.Perform(in);
    state.CheckAfterStep(n % FullCheckEvery() == 0);
  }
  at.op = 0;
  state.CheckAfterStep(true);
  TraceStats(target);
}

}  // namespace mf2_fuzz

#endif  // MF2_FUZZ_LIVE_SET_H_
