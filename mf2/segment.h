// Segments: 4 MiB-aligned regions of 64 slices of 64 KiB. Slice 0 holds the segment header with
// one Page descriptor per slice; spans of 1..8 slices serve size classes.
//
// Pointer to descriptor in O(1), with no lock: the segment is `p & ~(4 MiB - 1)`; a process-wide
// bitmap with one bit per 4 MiB of address space says whether that is an MF2 segment (so pointers
// MF2 never handed out are recognised without touching unmapped memory); the slice index selects
// the descriptor, whose first line (owner, class, block-start test) is the span's in every slice
// (page.h), and whose head() is the span's first descriptor for everything else.
#ifndef MF2_SEGMENT_H_
#define MF2_SEGMENT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/check.h"
#include "mf2/page.h"
#include "mf2/size_class.h"

namespace mf2 {

inline constexpr size_t kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;  // 4 MiB
inline constexpr uint32_t kSlicesPerSegment = kSegmentSize / kSliceSize;  // 64
inline constexpr uint64_t kSegmentCookie = 0x4d46325345474d54ull;      // "MF2SEGMT"
inline constexpr uintptr_t kUserAddressLimit = uintptr_t{1} << 47;

struct alignas(256) Segment {
  uint64_t cookie;
  Segment* next;         // page source's list of segments (under its lock): segments with a
  Segment* prev;         //   free slice first, full ones after

  uint64_t used_slices;  // bit i: slice i belongs to a span or the header (under its lock)
  // pages[0] is never used (slice 0 is this header): it accepts no block, so a pointer into the
  // header is rejected. At offset 256 (checked when a segment is mapped; SliceOf relies on it).
  Page pages[kSlicesPerSegment];

  char* slice_start(uint32_t i) { return reinterpret_cast<char*>(this) + i * kSliceSize; }
  uint32_t slice_index(const Page* p) const { return static_cast<uint32_t>(p - pages); }
};

static_assert(sizeof(Segment) <= kSliceSize, "the segment header must fit in slice 0");
static_assert(kSlicesPerSegment == 64, "used_slices is one 64-bit mask");

// The process-wide segment bitmap: one bit per 4 MiB of the 47-bit user address space, 2^25
// bits in 4 MiB of zero-initialised .bss (resident only where a word is touched).
namespace segment_map {

inline constexpr size_t kBits = kUserAddressLimit >> kSegmentShift;
extern std::atomic<uint64_t> g_bits[kBits / 64];

void Insert(const Segment* s);
void Erase(const Segment* s);

// On every free: inline, one load.
inline bool Contains(uintptr_t segment_base) {
  uintptr_t i = segment_base >> kSegmentShift;
  // Acquire: a set bit implies the header it guards is initialised (pairs with Insert).
  return (g_bits[i / 64].load(std::memory_order_acquire) >> (i % 64)) & 1;
}

}  // namespace segment_map

inline Segment* SegmentOf(const void* p) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(p) & ~(kSegmentSize - 1));
}

// The descriptor of the slice holding `a`, or nullptr when `a` is not inside an MF2 segment.
// Only its first line is meaningful on a slice that is not a span's first (page.h); a slice of no
// span, or the header's, accepts no block (IsBlockStart is false). Any thread, no lock. On every
// free: inline, two loads (the bitmap word and the descriptor line).
MF2_ALWAYS_INLINE Page* SliceOf(uintptr_t a) {
  if (MF2_PREDICT_FALSE(a >= kUserAddressLimit) ||
      MF2_PREDICT_FALSE(!segment_map::Contains(a & ~(kSegmentSize - 1)))) {
    return nullptr;
  }
  // &pages[slice] with pages[0] at the header's second 256-byte unit: one shift and one mask.
  static_assert(sizeof(Page) == 256 && kSliceShift == 16, "slice * sizeof(Page) == (a >> 8)");
  return reinterpret_cast<Page*>((a & ~(kSegmentSize - 1)) + sizeof(Page) +
                                 ((a >> 8) & ((kSlicesPerSegment - 1) * sizeof(Page))));
}

// The span head descriptor for `p`, or nullptr when p is not inside a span of an MF2 segment
// (foreign pointer, segment header, or a slice that belongs to no span). Any thread, no lock.
inline Page* PageOf(const void* p) {
  Page* slice = SliceOf(reinterpret_cast<uintptr_t>(p));
  return slice == nullptr ? nullptr : slice->head();
}

// Whether `p` lies inside some MF2 segment (header included). Any thread.
inline bool InSegment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return a < kUserAddressLimit && segment_map::Contains(a & ~(kSegmentSize - 1));
}

}  // namespace mf2

#endif  // MF2_SEGMENT_H_
