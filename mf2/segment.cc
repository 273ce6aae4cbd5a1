#include "mf2/segment.h"

#include <atomic>

namespace mf2 {
namespace segment_map {
std::atomic<uint8_t> g_present[kEntries];

void Insert(const Segment* s) {
  // Release: a reader whose acquiring Covers sees the byte also sees the initialised header.
  g_present[reinterpret_cast<uintptr_t>(s) >> kSegmentShift].store(1, std::memory_order_release);
}

void Erase(const Segment* s) {
  // Release: pairs with Covers' acquire; the segment is unmapped only after this.
  g_present[reinterpret_cast<uintptr_t>(s) >> kSegmentShift].store(0, std::memory_order_release);
}

}  // namespace segment_map
}  // namespace mf2
