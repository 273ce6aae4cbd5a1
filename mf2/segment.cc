#include "mf2/segment.h"

#include <atomic>

namespace mf2 {
namespace segment_map {
namespace {

// One bit per 4 MiB of the 47-bit user address space: 2^25 bits, 4 MiB of zero-initialised .bss
// (resident only where a word is touched).
constexpr size_t kBits = kUserAddressLimit >> kSegmentShift;
std::atomic<uint64_t> g_bits[kBits / 64];

}  // namespace

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

bool Contains(uintptr_t segment_base) {
  uintptr_t i = segment_base >> kSegmentShift;
  // Acquire: a set bit implies the header it guards is initialised (pairs with Insert).
  return (g_bits[i / 64].load(std::memory_order_acquire) >> (i % 64)) & 1;
}

}  // namespace segment_map
}  // namespace mf2
