// What each thread costs in memory when a program has many: `threads` threads each allocate a few
// small blocks and wait until all of them have, then free them and exit.
//
//   many_threads threads [blocks_per_thread]
//   e.g. many_threads 500 4
//
// Thread t allocates blocks of 16, 64, 256 and 1024 bytes (cycling, `blocks_per_thread` of them)
// and writes every byte, so that each block is really used and no compiler can elide it. The
// peak RSS over the threads' count is the allocator's per-thread footprint: its per-thread
// structures (MF2: a heap and its caches) and the memory each thread's first allocations of a
// size take (MF2: a span per class, of which the first blocks are written). A thread's stack is
// 64 KiB, reserved but mostly untouched.
//
// Output: `Throughput = N threads per second` (threads created, run and joined / elapsed; not the
// point of this program), `kib_per_thread = K` ((peak RSS - the same program's RSS before the
// threads start) / threads), `kib_per_exited_thread = E` ((RSS once every thread has been joined
// - RSS before) / threads: what the allocator keeps for threads that are gone, MF2's idle heaps
// among it), then the common footer (bench_util.h).
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/bench_util.h"

namespace {

constexpr int kMaxBlocks = 64;
int g_blocks = 4;
std::atomic<int> g_ready{0};
std::atomic<bool> g_go{false};

void* Run(void*) {
  void* blocks[kMaxBlocks];
  for (int i = 0; i < g_blocks; ++i) {
    const size_t size = size_t{16} << (2 * (i % 4));
    blocks[i] = mf2_bench::CheckedMalloc(size);
    std::memset(blocks[i], i + 1, size);
  }
  g_ready.fetch_add(1, std::memory_order_release);
  while (!g_go.load(std::memory_order_acquire)) mf2_bench::SleepSeconds(0.001);
  for (int i = 0; i < g_blocks; ++i) std::free(blocks[i]);
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 500));
  g_blocks = static_cast<int>(mf2_bench::ArgOr(argc, argv, 2, 4));
  if (threads < 1 || g_blocks < 1 || g_blocks > kMaxBlocks) {
    std::fprintf(stderr, "usage: many_threads threads(>= 1) [blocks_per_thread(1..%d)]\n",
                 kMaxBlocks);
    return 2;
  }
  const long rss_before = mf2_bench::PeakRssKib();
  const long current_before = mf2_bench::CurrentRssKib();
  const double start = mf2_bench::NowSeconds();
  pthread_t* ids = mf2_bench::StartSmallStackThreads("many_threads", threads, Run);
  while (g_ready.load(std::memory_order_acquire) < threads) mf2_bench::SleepSeconds(0.001);
  g_go.store(true, std::memory_order_release);
  mf2_bench::JoinThreads(ids, threads);
  const double elapsed = mf2_bench::NowSeconds() - start;
  const long current_after = mf2_bench::CurrentRssKib();
  std::printf("Throughput = %.0f threads per second\n", threads / elapsed);
  std::printf("kib_per_thread = %.1f\n",
              static_cast<double>(mf2_bench::PeakRssKib() - rss_before) / threads);
  std::printf("kib_per_exited_thread = %.1f\n",
              static_cast<double>(current_after - current_before) / threads);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
