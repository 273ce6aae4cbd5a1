// Explicit heaps for deterministic tests: one OS thread plays several "logical threads", each an
// MF2 heap acquired from the global registry with its own counting page source.
#ifndef MF2_TESTING_TEST_HEAPS_H_
#define MF2_TESTING_TEST_HEAPS_H_

#include <cstddef>
#include <new>
#include <vector>

#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/testing/counting_page_source.h"

namespace mf2 {
namespace testing {

// A fresh page source that is never destroyed: idle heaps keep pointing at their source after
// the test that made them ends (heaps are never freed).
inline CountingPageSource* NewPermanentSource() {
  alignas(CountingPageSource) static unsigned char pool[256][sizeof(CountingPageSource)];
  static size_t next = 0;
  MF2_CHECK(next < 256, "test page source pool exhausted");
  return new (pool[next++]) CountingPageSource();
}

// Logical threads over one page source. Heaps still held at destruction are released (as at
// thread exit).
class TestHeaps {
 public:
  TestHeaps() : source_(NewPermanentSource()) {}
  ~TestHeaps() {
    for (Heap* h : live_) HeapRegistry::Global().ReleaseHeap(h);
  }

  Heap* Acquire() {
    Heap* h = HeapRegistry::Global().AcquireHeap(source_);
    MF2_CHECK(h != nullptr, "AcquireHeap");
    live_.push_back(h);
    return h;
  }
  void Release(Heap* h) {
    for (size_t i = 0; i < live_.size(); ++i) {
      if (live_[i] == h) {
        live_.erase(live_.begin() + static_cast<long>(i));
        break;
      }
    }
    HeapRegistry::Global().ReleaseHeap(h);
  }
  CountingPageSource& source() { return *source_; }

 private:
  CountingPageSource* source_;
  std::vector<Heap*> live_;
};

}  // namespace testing
}  // namespace mf2

#endif  // MF2_TESTING_TEST_HEAPS_H_
