// A deterministic malloc/free loop for counting instructions per operation (not for timing):
// run it under `valgrind --tool=callgrind` with each allocator preloaded and compare the
// instruction counts of two lengths (bench/count_instructions.sh). The difference divided by the
// difference in pairs is the cost of one malloc/free pair, start-up and tear-down cancelled out.
//
//   pair_loop PATTERN N
//     same SIZE    malloc(SIZE); free(p), N times (the classic pair loop), with 64 other blocks of
//                  the same size alive, so that no allocator empties (and retires) a page per free
//     mixed        sizes cycle through 16..1000 bytes, 8 blocks alive at a time (LIFO/FIFO mix)
//     mid          sizes cycle through 2..32 KiB, 64 blocks alive, random victim
//     larson-mid   Larson's mid-size step on one thread: 5000 blocks of 1..32 KiB alive, a random
//                  victim freed and replaced, two bytes written at the new block's start
//     larson-small the same with 8..1000 bytes (Larson's classic sizes)
//     new          operator new[] / delete[] of 32 bytes
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

// A volatile sink so the compiler cannot drop the allocations.
void* volatile g_sink;

uint64_t Next(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: pair_loop same SIZE N | mixed N | mid N | new N\n");
    return 2;
  }
  const char* pattern = argv[1];
  if (std::strcmp(pattern, "same") == 0 && argc == 4) {
    const size_t size = std::strtoull(argv[2], nullptr, 10);
    const long n = std::atol(argv[3]);
    void* keep[64];
    for (void*& k : keep) k = std::malloc(size);
    for (long i = 0; i < n; ++i) {
      void* p = std::malloc(size);
      g_sink = p;
      std::free(p);
    }
    for (void* k : keep) std::free(k);
    return 0;
  }
  const long n = std::atol(argv[2]);
  if (std::strcmp(pattern, "new") == 0) {
    uint64_t* keep[64];
    for (auto*& k : keep) k = new uint64_t[4];
    for (long i = 0; i < n; ++i) {
      auto* p = new uint64_t[4];
      g_sink = p;
      delete[] p;
    }
    for (auto* k : keep) delete[] k;
    return 0;
  }
  uint64_t seed = 88172645463325252ull;
  if (std::strcmp(pattern, "mixed") == 0) {
    void* live[8] = {};
    for (long i = 0; i < n; ++i) {
      const size_t slot = static_cast<size_t>(i) & 7;
      std::free(live[slot]);
      live[slot] = std::malloc(16 + (Next(&seed) % 985));
      g_sink = live[slot];
    }
    for (void* p : live) std::free(p);
    return 0;
  }
  if (std::strcmp(pattern, "mid") == 0) {
    void* live[64] = {};
    for (long i = 0; i < n; ++i) {
      const size_t slot = Next(&seed) % 64;
      std::free(live[slot]);
      live[slot] = std::malloc(2048 + Next(&seed) % 30720);
      static_cast<char*>(live[slot])[0] = 1;
    }
    for (void* p : live) std::free(p);
    return 0;
  }
  const bool larson_mid = std::strcmp(pattern, "larson-mid") == 0;
  if (larson_mid || std::strcmp(pattern, "larson-small") == 0) {
    const size_t lo = larson_mid ? 1024 : 8;
    const size_t hi = larson_mid ? 32768 : 1000;
    constexpr size_t kSlots = 5000;
    static char* live[kSlots];
    for (char*& p : live) {
      p = static_cast<char*>(std::malloc(lo + Next(&seed) % (hi - lo)));
      p[0] = 1;
    }
    for (long i = 0; i < n; ++i) {
      const size_t slot = Next(&seed) % kSlots;
      std::free(live[slot]);
      char* p = static_cast<char*>(std::malloc(lo + Next(&seed) % (hi - lo)));
      p[0] = 1;
      p[1] = 2;
      live[slot] = p;
    }
    for (char* p : live) std::free(p);
    return 0;
  }
  std::fprintf(stderr, "unknown pattern %s\n", pattern);
  return 2;
}
