// fuzz_tables: prints the tables the seed builder (make_seeds.py) writes schedules from, taken
// from the allocator and the harness themselves, so the seeds never re-derive them:
//   class K SIZE        every size class (mf2/size_class.h ClassInfo)
//   byte B SIZE         the request of every size byte (fuzz_util.h SizeFromByte)
//   max_class_size N    the largest class size; larger requests are large allocations
// `bazel run //fuzz:make_seeds` runs it; so does //fuzz:seeds_test.
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "fuzz/fuzz_util.h"
#include "mf2/size_class.h"

int main() {
  for (uint32_t k = 1; k < mf2::kNumClasses; ++k) {
    std::printf("class %u %zu\n", k, size_t{mf2::ClassInfo(k).size});
  }
  for (int b = 0; b < 256; ++b) {
    std::printf("byte %d %zu\n", b, mf2_fuzz::SizeFromByte(static_cast<uint8_t>(b)));
  }
  std::printf("max_class_size %zu\n", mf2::kMaxClassSize);
  return 0;
}
