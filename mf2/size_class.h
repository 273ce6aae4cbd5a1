// The size-class table: which block size serves a request, and how large a span each class uses.
//
// Classes (1-based; 0 means "no class"):
//   1..8    16, 32, ..., 128 bytes           (step 16: the alignment quantum)
//   9..80   8 classes per power of two above 128: m * 2^e for m = 9..16,
//           i.e. 144..256 step 16, 288..512 step 32, ..., 36 KiB..64 KiB step 4 KiB.
// Eight classes per doubling bound internal fragmentation: a request s above 128 B lands in a
// class c with (c - s) / s < 1/8 (the worst case is s one byte above the previous class
// c' = 8u, c = 9u). Below 128 B the 16-byte alignment quantum dominates (waste < 16 B).
// The prototype's mid-size classes (2, 4, 8, 16, 32, 40 and 52 KiB; docs/design.md) are exact.
//
// Spans: a span is 1..8 contiguous 64 KiB slices. Each class takes the smallest span that holds
// at least kMinBlocksPerSpan blocks (or as many as one slice allows) with an unusable tail of at
// most 1/8 of the span; classes above 8 KiB at least 16 blocks (9 KiB: 3 slices, 21 blocks;
// 32 KiB: 8 slices, 16), up to 8 slices (36-64 KiB: 14-8 blocks). Measured against 8 blocks on
// mid-size Larson (1-32 KiB blocks): peak RSS 7-10% lower at 1, 2 and 4 threads, throughput not
// lower; 16 blocks for every class above 4 KiB with spans up to 16 slices did no better
// (bench/RESULTS.md). (A span's never-carved tail is not resident: a longer span costs memory
// only as its blocks are used.) kSizeClassTable below is computed at compile time and
// static_asserted.
// Requests above kMaxClassSize (64 KiB) are large allocations served directly by the OS.
#ifndef MF2_SIZE_CLASS_H_
#define MF2_SIZE_CLASS_H_

#include <cstddef>
#include <cstdint>

namespace mf2 {

inline constexpr size_t kSliceShift = 16;
inline constexpr size_t kSliceSize = size_t{1} << kSliceShift;  // 64 KiB
inline constexpr uint32_t kMaxSlicesPerSpan = 8;                 // 512 KiB
inline constexpr size_t kMinAlign = 16;
inline constexpr size_t kMaxClassSize = 64 * 1024;
inline constexpr uint32_t kNumClasses = 81;  // classes 1..80; index 0 unused
inline constexpr uint32_t kMinBlocksPerSpan = 8;
// Classes above kDeepSpanMinSize take spans of at least kMinBlocksPerDeepSpan blocks, as far as
// kMaxSlicesPerSpan allows (see above).
inline constexpr size_t kDeepSpanMinSize = 8192;
inline constexpr uint32_t kMinBlocksPerDeepSpan = 16;
// Largest number of blocks in one span (16-byte blocks in one slice).
inline constexpr uint32_t kMaxBlocksPerSpan = kSliceSize / kMinAlign;  // 4096
// Requests up to this size find their class in one byte-table load (kSmallClass).
inline constexpr size_t kSmallMax = 1024;

// Block starts by one multiplication (Lemire, Kaser, Kurz: "Faster remainder by direct
// computation", 2019). With c = floor(2^64 / size) + 1 and e = c * size - 2^64 (0 < e <= size):
// for an offset n < 2^32, n * c mod 2^64 == (n / size) * e when size divides n, and >= c
// otherwise. So `n * c mod 2^64 < capacity * e` holds exactly for the starts of blocks
// 0..capacity-1 (capacity * e <= span < c keeps the two cases apart). Page::IsBlockStart uses it:
// one multiply and one compare reject interior pointers, the span's tail and pointers past it.
struct SizeClassInfo {
  uint32_t size;       // block size in bytes
  uint32_t slices;     // span length in 64 KiB slices
  uint32_t capacity;   // blocks per span
  uint64_t div_mul;    // c above
  uint64_t div_limit;  // capacity * e
};

namespace internal {

constexpr uint32_t ClassSizeOf(uint32_t k) {
  if (k <= 8) return 16 * k;
  uint32_t group = (k - 9) / 8;  // 0: 144..256, 1: 288..512, ...
  uint32_t m = 9 + (k - 9) % 8;
  return m << (4 + group);
}

constexpr uint64_t DivMul(uint32_t size) {
  const bool power_of_two = (size & (size - 1)) == 0;
  return ~uint64_t{0} / size + 1 + (power_of_two ? 1 : 0);  // floor(2^64 / size) + 1
}

constexpr SizeClassInfo MakeInfo(uint32_t k) {
  if (k == 0) return SizeClassInfo{0, 0, 0, 0, 0};
  uint32_t size = ClassSizeOf(k);
  uint32_t slices = 1;
  for (; slices < kMaxSlicesPerSpan; ++slices) {
    size_t span = slices * kSliceSize;
    size_t cap = span / size;
    size_t tail = span - cap * size;
    const uint32_t min_blocks = size > kDeepSpanMinSize ? kMinBlocksPerDeepSpan : kMinBlocksPerSpan;
    if (cap >= min_blocks && tail * 8 <= span) break;
  }
  uint32_t capacity = static_cast<uint32_t>(slices * kSliceSize / size);
  const uint64_t c = DivMul(size);
  const uint64_t e = c * size;  // mod 2^64: c * size - 2^64
  return SizeClassInfo{size, slices, capacity, c, capacity * e};
}

struct Table {
  SizeClassInfo info[kNumClasses];
};

constexpr Table MakeTable() {
  Table t{};
  for (uint32_t k = 0; k < kNumClasses; ++k) t.info[k] = MakeInfo(k);
  return t;
}

constexpr bool TableIsSound(const Table& t) {
  for (uint32_t k = 1; k < kNumClasses; ++k) {
    const SizeClassInfo& c = t.info[k];
    size_t span = c.slices * kSliceSize;
    if (c.size % kMinAlign != 0) return false;
    if (k > 1 && c.size <= t.info[k - 1].size) return false;
    if (c.capacity == 0 || c.capacity > kMaxBlocksPerSpan) return false;
    if ((span - size_t{c.capacity} * c.size) * 8 > span) return false;  // tail <= 12.5%
    if (c.slices > kMaxSlicesPerSpan) return false;
    const uint64_t e = c.div_mul * c.size;
    if (e == 0 || e > c.size || c.div_limit != c.capacity * e || c.div_limit >= c.div_mul) {
      return false;  // the block-start test's preconditions (see SizeClassInfo)
    }
  }
  return t.info[kNumClasses - 1].size == kMaxClassSize;
}

}  // namespace internal

inline constexpr internal::Table kSizeClassTable = internal::MakeTable();
static_assert(internal::TableIsSound(kSizeClassTable), "size-class table violates its bounds");

inline const SizeClassInfo& ClassInfo(uint32_t k) { return kSizeClassTable.info[k]; }

namespace internal {

// The class serving a request of `size` bytes (1..kMaxClassSize; 0 is served as 1), computed:
// class size = m << shift with m = 9..16 above 128 bytes.
constexpr uint32_t SlowSizeToClass(size_t size) {
  if (size <= 128) return size == 0 ? 1 : static_cast<uint32_t>((size + 15) >> 4);
  size_t s = size - 1;
  uint32_t b = 63 - static_cast<uint32_t>(__builtin_clzll(s));  // 2^b <= s < 2^(b+1), b >= 7
  uint32_t shift = b - 3;
  uint32_t m = static_cast<uint32_t>(s >> shift) + 1;  // 9..16
  return 8 + (b - 7) * 8 + (m - 8);
}

struct SmallTable {
  uint8_t k[kSmallMax / kMinAlign + 1];
};
constexpr SmallTable MakeSmallTable() {
  SmallTable t{};
  for (size_t i = 0; i <= kSmallMax / kMinAlign; ++i) {
    t.k[i] = static_cast<uint8_t>(SlowSizeToClass(i * kMinAlign));
  }
  return t;
}
}  // namespace internal

// The block-start test's two constants per class (SizeClassInfo), dense: 16 bytes a class, class
// 0's limit 0 (no block anywhere). Every heap's caches keep a copy for free (heap.h, Magazine).
// Internal linkage: each user addresses its own copy directly, with no GOT load in
// position-independent code.
struct ClassDiv {
  uint64_t mul;
  uint64_t limit;
  // Whether offset `off` from a span's first byte is the start of one of its blocks.
  constexpr bool IsBlockOffset(uintptr_t off) const { return off * mul < limit; }
};
namespace internal {
struct DivTable {
  ClassDiv div[kNumClasses];
};
constexpr DivTable MakeDivTable() {
  DivTable t{};
  for (uint32_t k = 0; k < kNumClasses; ++k) {
    t.div[k] = ClassDiv{kSizeClassTable.info[k].div_mul, kSizeClassTable.info[k].div_limit};
  }
  return t;
}
}  // namespace internal
static constexpr internal::DivTable kClassDiv = internal::MakeDivTable();

// kSmallClass.k[(size + 15) / 16] is the class of a request of size <= kSmallMax.
inline constexpr internal::SmallTable kSmallClass = internal::MakeSmallTable();

// Above kSmallMax every class size is a multiple of kMidStep (m << e with e >= 7), so the class
// serving every size in ((i - 1) * kMidStep, i * kMidStep] is the class of i * kMidStep:
// kMidClass.k[(size + kMidStep - 1) / kMidStep] for kSmallMax < size <= kMaxClassSize, one load.
inline constexpr size_t kMidStep = 128;
namespace internal {
struct MidTable {
  uint8_t k[kMaxClassSize / kMidStep + 1];
};
constexpr MidTable MakeMidTable() {
  MidTable t{};
  for (size_t i = kSmallMax / kMidStep; i <= kMaxClassSize / kMidStep; ++i) {
    t.k[i] = static_cast<uint8_t>(SlowSizeToClass(i * kMidStep));
  }
  return t;
}
constexpr bool MidTableIsExact(const MidTable& t) {
  for (size_t s = kSmallMax + 1; s <= kMaxClassSize; ++s) {
    if (t.k[(s + kMidStep - 1) / kMidStep] != SlowSizeToClass(s)) return false;
  }
  return true;
}
}  // namespace internal
static constexpr internal::MidTable kMidClass = internal::MakeMidTable();
static_assert(internal::MidTableIsExact(kMidClass), "every mid size maps to its class");

// The class serving a request of `size` bytes (1..kMaxClassSize; 0 is served as 1).
inline uint32_t SizeToClass(size_t size) {
  if (size <= kSmallMax) return kSmallClass.k[(size + kMinAlign - 1) / kMinAlign];
  return kMidClass.k[(size + kMidStep - 1) / kMidStep];
}

}  // namespace mf2

#endif  // MF2_SIZE_CLASS_H_
