// A thread busy on its caches alone: after a second thread has allocated (so that an allocator
// with a background thread runs it), the main thread mallocs and frees one 32-byte block for
// `seconds`, with 64 others of the same size alive. No allocation slow path is ever taken after
// the first, so a thread that counts idleness by slow paths (MF2's background reclaimer, whose
// long-idle flush waits for MF2_IDLE_FLUSH_US without one) looks idle while it is as busy as
// can be. What that costs it: compare the throughput with the flush on and off
// (MF2_IDLE_FLUSH_US=0), and count the reclaimer's wake-ups (bench/RESULTS.md).
//
//   busy_on_caches [seconds]     (default 5)
//
// Output: `Throughput = N pairs per second`, then the common footer (bench_util.h).
#include <pthread.h>

#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"

namespace {

void* volatile g_sink;

void* Helper(void*) {
  for (int i = 0; i < 100; ++i) {
    void* p = mf2_bench::CheckedMalloc(64);
    g_sink = p;  // the pair must happen: a compiler may drop an unused malloc/free pair
    std::free(p);
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = mf2_bench::ArgOr(argc, argv, 1, 5);
  if (!(seconds > 0)) {
    std::fprintf(stderr, "usage: busy_on_caches [seconds > 0]\n");
    return 2;
  }
  mf2_bench::JoinThreads(mf2_bench::StartSmallStackThreads("busy_on_caches", 1, Helper), 1);
  void* keep[64];
  for (void*& k : keep) k = mf2_bench::CheckedMalloc(32);
  const double start = mf2_bench::NowSeconds();
  long pairs = 0;
  do {
    for (int i = 0; i < 100000; ++i) {
      void* p = mf2_bench::CheckedMalloc(32);
      g_sink = p;
      std::free(p);
    }
    pairs += 100000;
  } while (mf2_bench::NowSeconds() - start < seconds);
  const double elapsed = mf2_bench::NowSeconds() - start;
  for (void* k : keep) std::free(k);
  std::printf("Throughput = %.0f pairs per second\n", pairs / elapsed);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
