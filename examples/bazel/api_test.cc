// MF2's public API from another Bazel workspace, compiled with that workspace's compiler and
// flags (no -std or warning flags of MF2's), beside the system's malloc.
#include <cstdio>
#include <cstring>

#include "mf2/mf2.h"

int main() {
  void* blocks[1000];
  for (auto& b : blocks) {
    b = mf2_malloc(300);
    if (b == nullptr || mf2_usable_size(b) < 300) {
      std::fprintf(stderr, "FAIL: mf2_malloc(300)\n");
      return 1;
    }
    std::memset(b, 0x5a, 300);
  }
  size_t usable = mf2_usable_size(blocks[0]);
  for (void* b : blocks) mf2_free(b);
  std::printf("PASS: 1000 x mf2_malloc(300), usable size %zu, route %s\n", usable,
              mf2_get_route());
  return 0;
}
