// Segments: 4 MiB-aligned regions of 64 slices of 64 KiB. Slice 0 holds the segment header with
// one Page descriptor per slice; spans of 1..8 slices serve size classes.
//
// Pointer to slice in O(1), with no lock: the segment is `p & ~(4 MiB - 1)`; a process-wide
// map with one byte per 4 MiB of address space says whether that is an MF2 segment (so pointers
// MF2 never handed out are recognised without touching unmapped memory); the slice index selects
// the 16-byte Slice (page.h: owner, class, the span's head and the slice's offset in it), whose
// `head()` indexes the span's Page descriptor.
//
// Slice tables are coloured. Every segment starts at a multiple of 4 MiB, so a table at the same
// offset in every segment would put entry i of all of them in the same set of the L1 cache (which
// is indexed by address bits 6-11) and their header pages in the same set of a set-associative
// TLB. A segment's table of 64 Slices (1 KiB) instead sits at colour * 1 KiB, colour = bits
// 22-26 of its address (32 colours over eight 4 KiB pages), which the free path gets from the
// same shift and mask it used before, with a wider mask: no extra instruction. The area starts
// at the segment's first byte, so the free path reaches a Slice's fields with the segment base
// and that offset as one address operand (with the area at offset 64, Heap::Free spent one
// instruction more forming the Slice's address). Only the own
// colour's entries are ever constructed or touched; the rest of the 32 KiB area stays untouched
// (never-written mapped memory). Larson with 1-32 KiB blocks (its 5,000 blocks spread over
// dozens of segments): +5-7% operations per second (bench/RESULTS.md).
#ifndef MF2_SEGMENT_H_
#define MF2_SEGMENT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "mf2/base.h"
#include "mf2/check.h"
#include "mf2/page.h"
#include "mf2/size_class.h"

namespace mf2 {

inline constexpr size_t kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;  // 4 MiB
inline constexpr uint32_t kSlicesPerSegment = kSegmentSize / kSliceSize;  // 64
inline constexpr uint64_t kSegmentCookie = 0x4d46325345474d54ull;      // "MF2SEGMT"
inline constexpr uintptr_t kUserAddressLimit = uintptr_t{1} << 47;
inline constexpr uint32_t kSliceColours = 32;
inline constexpr size_t kSliceTableBytes = kSlicesPerSegment * 16;  // 16 == sizeof(Slice)

// The offset from a segment's first byte of the Slice of the slice holding `a` (any address in
// the segment; slice 0 gives the table itself): colour * kSliceTableBytes + slice * 16.
// (a >> 12) holds the slice index (address bits 16-21) at bits 4-9 and the colour (bits 22-26)
// at bits 10-14: one shift and one mask.
MF2_ALWAYS_INLINE uintptr_t SliceTableOffset(uintptr_t a) {
  return (a >> 12) & (kSliceColours * kSliceTableBytes - 16);
}

struct alignas(256) Segment {
  // The free path's view of every slice: kSliceColours tables' room from offset 0 (checked when
  // a segment is made, page_source.cc), of which this segment uses the one of its colour
  // (SliceTableOffset; the others are never touched). The table's entries are constructed by
  // the constructor; slices()[0] (this header) never serves a class: a pointer into the header
  // is rejected.
  unsigned char slice_area[kSliceColours * kSliceTableBytes];

  uint64_t cookie;
  Segment* next;         // page source's list of segments (under its lock): segments with a
  Segment* prev;         //   free slice first, full ones after
  uint64_t used_slices;  // bit i: slice i belongs to a span or the header (under its lock)
  // Span descriptors: pages[i] describes the span whose first slice is i.
  Page pages[kSlicesPerSegment];

  // Constructs the header in fresh (zero) memory, and only the own colour's slice table in the
  // slice area (a defaulted constructor would zero all of it).
  Segment() : cookie(0), next(nullptr), prev(nullptr), used_slices(0) {
    for (uint32_t i = 0; i < kSlicesPerSegment; ++i) new (&slice_table()[i]) Slice();
  }
  Slice* slices() { return std::launder(slice_table()); }

  char* slice_start(uint32_t i) { return reinterpret_cast<char*>(this) + i * kSliceSize; }
  uint32_t slice_index(const Page* p) const { return static_cast<uint32_t>(p - pages); }
 private:
  // Where this segment's table lies in the slice area (storage; slices() names the objects).
  Slice* slice_table() {
    return reinterpret_cast<Slice*>(reinterpret_cast<char*>(this) +
                                    SliceTableOffset(reinterpret_cast<uintptr_t>(this)));
  }
};

static_assert(sizeof(Segment) <= kSliceSize, "the segment header must fit in slice 0");
static_assert(sizeof(Slice) == 16 && kSliceTableBytes == kSlicesPerSegment * sizeof(Slice),
              "a slice table is 64 Slices");
static_assert((kSliceColours & (kSliceColours - 1)) == 0 && kSliceShift == 16 &&
                  kSegmentShift == 22 && kSliceTableBytes == 1024,
              "SliceTableOffset: (a >> 12) has the slice at bits 4-9 and the colour from bit 10");
static_assert(kSlicesPerSegment == 64, "used_slices is one 64-bit mask");

// The process-wide segment map: one byte per 4 MiB of the 47-bit user address space, 2^25 bytes
// (32 MiB) of zero-initialised .bss, resident only where touched (a 4 KiB page of it covers 16 GiB
// of address space). A byte rather than a bit because free tests it on every call: one compare,
// where a bit costs a second shift, the word's index and a bit test.
namespace segment_map {

inline constexpr size_t kEntries = kUserAddressLimit >> kSegmentShift;
extern std::atomic<uint8_t> g_present[kEntries];

void Insert(const Segment* s);
void Erase(const Segment* s);

// Whether any address `a` lies in a mapped segment. On every free: inline, one compare and one
// byte load (an address at or above kUserAddressLimit indexes past the map and is in none).
// CoversIndex takes the segment's number, `a >> kSegmentShift` (SegmentNumber), which the free
// path shifts back into the segment's base.
MF2_ALWAYS_INLINE bool CoversIndex(uintptr_t i) {
  // Acquire: a set byte implies the header it guards is initialised (pairs with Insert).
  return MF2_PREDICT_TRUE(i < kEntries) && g_present[i].load(std::memory_order_acquire) != 0;
}

}  // namespace segment_map

// `a >> kSegmentShift`, opaque to the compiler, which would otherwise test `a >> 47` and then
// shift again for the map's index: two instructions more on every free.
MF2_ALWAYS_INLINE uintptr_t SegmentNumber(uintptr_t a) {
  uintptr_t i = a >> kSegmentShift;
  MF2_IN_REGISTER(i);
  return i;
}

namespace segment_map {

MF2_ALWAYS_INLINE bool Covers(uintptr_t a) { return CoversIndex(SegmentNumber(a)); }

}  // namespace segment_map

inline Segment* SegmentOf(const void* p) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(p) & ~(kSegmentSize - 1));
}

// The Slice holding `a`, an address segment_map::Covers (the free path tests that first and
// then needs no null test of the result). Any thread, no lock.
MF2_ALWAYS_INLINE Slice* SliceOfCovered(uintptr_t a) {
  return reinterpret_cast<Slice*>((a & ~(kSegmentSize - 1)) + SliceTableOffset(a));
}
// The same from `a`'s segment number `i` (SegmentNumber(a)), as the free path has it: the base
// is one shift of it, where masking `a` costs a copy and an and.
MF2_ALWAYS_INLINE Slice* SliceOfCovered(uintptr_t a, uintptr_t i) {
  return reinterpret_cast<Slice*>((i << kSegmentShift) + SliceTableOffset(a));
}

// The Slice holding `a`, or nullptr when `a` is not inside an MF2 segment. Any thread, no lock.
MF2_ALWAYS_INLINE Slice* SliceOf(uintptr_t a) {
  if (MF2_PREDICT_FALSE(!segment_map::Covers(a))) return nullptr;
  return SliceOfCovered(a);
}

// The offset of `a` from the first byte of the span covering its slice `s`. In 32 bits (a span
// is at most 512 KiB): the zero-extending move of a's low 16 bits and an add from memory, where
// an offset into the segment minus the span's cost four instructions.
MF2_ALWAYS_INLINE uintptr_t SpanOffset(uintptr_t a, const Slice* s) {
  static_assert(kSliceSize == 65536, "a's offset in its slice is its low 16 bits");
  return static_cast<uint32_t>(static_cast<uint16_t>(a)) + s->in_span;
}

// The Page descriptor of the span covering slice `s` (of the segment holding `a`): pages[0], a
// descriptor that never serves a class, when the slice is in no span.
MF2_ALWAYS_INLINE Page* SpanPage(uintptr_t a, const Slice* s) {
  return &reinterpret_cast<Segment*>(a & ~(kSegmentSize - 1))->pages[s->head()];
}

// Whether `a` is the start of a block of a span serving a class. Any thread.
inline bool IsBlockStart(uintptr_t a) {
  const Slice* s = SliceOf(a);
  return s != nullptr && IsBlockOffset(SpanOffset(a, s), s->size_class());
}

// The span head descriptor for `p`, or nullptr when p is not inside a span of an MF2 segment
// (foreign pointer, segment header, or a slice that belongs to no span). Any thread, no lock.
inline Page* PageOf(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const Slice* s = SliceOf(a);
  if (s == nullptr || s->head() == 0) return nullptr;
  return SpanPage(a, s);
}

// Whether `p` lies inside some MF2 segment (header included). Any thread.
inline bool InSegment(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return segment_map::Covers(a);
}

}  // namespace mf2

#endif  // MF2_SEGMENT_H_
