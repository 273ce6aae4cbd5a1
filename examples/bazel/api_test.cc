// MF2's public API from another Bazel workspace, compiled with that workspace's compiler and
// flags (no -std or warning flags of MF2's).
#include <cstdio>
#include <cstring>

#include "mf2/mf2.h"

int main() {
  mf2_stats before;
  mf2_get_stats(&before);
  void* blocks[1000];
  for (auto& b : blocks) {
    b = mf2_malloc(300);
    if (b == nullptr || mf2_usable_size(b) < 300) {
      std::fprintf(stderr, "FAIL: mf2_malloc(300)\n");
      return 1;
    }
    std::memset(b, 0x5a, 300);
  }
  mf2_stats after;
  mf2_get_stats(&after);
  for (void* b : blocks) mf2_free(b);
  if (after.new_pages <= before.new_pages) {
    std::fprintf(stderr, "FAIL: no page counted (%llu -> %llu)\n",
                 static_cast<unsigned long long>(before.new_pages),
                 static_cast<unsigned long long>(after.new_pages));
    return 1;
  }
  std::printf("PASS: 1000 x mf2_malloc(300), new pages %llu -> %llu\n",
              static_cast<unsigned long long>(before.new_pages),
              static_cast<unsigned long long>(after.new_pages));
  return 0;
}
