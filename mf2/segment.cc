#include "mf2/segment.h"

#include <atomic>

namespace mf2 {
namespace segment_map {
std::atomic<uint64_t> g_bits[kBits / 64];

void Insert(const Segment* s) {
  uintptr_t i = reinterpret_cast<uintptr_t>(s) >> kSegmentShift;
  // Release: a reader whose acquiring Contains sees the bit also sees the initialised header.
  g_bits[i / 64].fetch_or(uint64_t{1} << (i % 64), std::memory_order_release);
}

void Erase(const Segment* s) {
  uintptr_t i = reinterpret_cast<uintptr_t>(s) >> kSegmentShift;
  // Release: pairs with Contains' acquire; the segment is unmapped only after this.
  g_bits[i / 64].fetch_and(~(uint64_t{1} << (i % 64)), std::memory_order_release);
}

}  // namespace segment_map
}  // namespace mf2
