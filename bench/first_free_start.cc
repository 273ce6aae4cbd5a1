// What a new thread's first allocation costs when the thread frees before it allocates, and the
// blocks it frees belong to a thread that lives on:
//
//   first_free_start threads frees busy
//   e.g. first_free_start 2000 20 0
//
// Main allocates threads*frees blocks of 64 bytes, then `threads` times starts a thread and joins
// it. Each thread frees `frees` of main's blocks, then times its first malloc(64) (main frees it).
// Main is alive and waiting in pthread_join, so the heap those blocks came from stays in use:
// under MF2 the new thread prefers that heap, finds it claimed, yields the CPU up to twice and
// takes another (mf2/thread_heap.cc, TakeHeap). `busy` threads spin throughout, so that a yield
// has a thread to yield to (two on a two-CPU machine keep both CPUs busy).
//
// Output: `Throughput = N threads per second` (start, frees, first malloc, join), the first
// malloc's latency in microseconds (`first_malloc_p50_us`, `first_malloc_p99_us`,
// `first_malloc_max_us`), and the common footer (bench_util.h). Defaults: 2000 20 0.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"

namespace {

void** g_blocks = nullptr;
int g_frees = 0;
int g_next = 0;               // index of the next block to free; one thread at a time
double* g_latency = nullptr;  // microseconds, one per thread
void* g_first = nullptr;      // the thread's first block, freed by main (else the compiler may
                              // drop a malloc whose block is freed unused)
int g_thread = 0;
std::atomic<bool> g_stop{false};

void* Spin(void*) {
  // Relaxed: only the end of the run is signalled, no data.
  while (!g_stop.load(std::memory_order_relaxed)) {
  }
  return nullptr;
}

void* FreeThenAllocate(void*) {
  for (int i = 0; i < g_frees; ++i) std::free(g_blocks[g_next++]);
  const double start = mf2_bench::NowSeconds();
  g_first = mf2_bench::CheckedMalloc(64);
  g_latency[g_thread] = (mf2_bench::NowSeconds() - start) * 1e6;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 2000));
  g_frees = static_cast<int>(mf2_bench::ArgOr(argc, argv, 2, 20));
  const int busy = static_cast<int>(mf2_bench::ArgOr(argc, argv, 3, 0));
  if (threads < 1 || g_frees < 0 || busy < 0 || busy > 64) {
    std::fprintf(stderr, "usage: %s threads frees busy (threads >= 1, frees >= 0, busy <= 64)\n",
                 argv[0]);
    return 1;
  }
  const int64_t blocks = static_cast<int64_t>(threads) * g_frees;
  // One slot more, so that `frees` = 0 does not ask for malloc(0).
  g_blocks = static_cast<void**>(mf2_bench::CheckedMalloc((blocks + 1) * sizeof(void*)));
  for (int64_t i = 0; i < blocks; ++i) g_blocks[i] = mf2_bench::CheckedMalloc(64);
  g_latency = static_cast<double*>(mf2_bench::CheckedMalloc(threads * sizeof(double)));
  pthread_t* spinners = busy > 0 ? mf2_bench::StartSmallStackThreads(argv[0], busy, Spin) : nullptr;

  const double start = mf2_bench::NowSeconds();
  for (g_thread = 0; g_thread < threads; ++g_thread) {
    pthread_t t;
    // pthread_create orders main's writes before the thread's reads; join orders them back.
    if (pthread_create(&t, nullptr, FreeThenAllocate, nullptr) != 0) {
      std::fprintf(stderr, "%s: pthread_create failed at thread %d\n", argv[0], g_thread);
      return 1;
    }
    pthread_join(t, nullptr);
    std::free(g_first);
  }
  const double elapsed = mf2_bench::NowSeconds() - start;
  g_stop.store(true, std::memory_order_relaxed);
  if (spinners != nullptr) mf2_bench::JoinThreads(spinners, busy);

  std::sort(g_latency, g_latency + threads);
  const auto at = [&](double q) { return g_latency[static_cast<int>(q * (threads - 1))]; };
  std::printf("Throughput = %.0f threads per second\n", threads / elapsed);
  std::printf("first_malloc_p50_us = %.2f\n", at(0.5));
  std::printf("first_malloc_p99_us = %.2f\n", at(0.99));
  std::printf("first_malloc_max_us = %.2f\n", g_latency[threads - 1]);
  std::free(g_latency);
  std::free(g_blocks);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
