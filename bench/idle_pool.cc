// What a thread pool's idle workers keep: `threads` workers each run a burst of work (a churn of
// blocks of 16..4000 bytes, every one freed again by the worker itself, so no page of a worker
// ever comes back whole through another thread), then wait, alive, for work that does not come.
//
//   idle_pool threads [ops_per_worker] [idle_seconds]
//   e.g. idle_pool 64 20000 5
//
// A worker keeps 256 slots: each op frees a random slot's block and puts a new one of a random
// size there (its first 64 bytes written); at the end it frees all 256. The main thread reads the
// resident set before the workers start, once all have finished their burst, and every 0.5 s of
// their idle time.
//
// Output: `Throughput = N ops per second` (the bursts' ops over the time until the last worker
// finished: not the point of this program), `kib_per_worker_after_work = A`, then one line
// `kib_per_idle_worker_after_<T>s = K` per sample, and the common footer (bench_util.h). Each
// figure is (resident set then - resident set before) / threads, in KiB: the allocator's memory
// per idle worker (and the worker's stack, 64 KiB reserved, a few KiB touched).
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/bench_util.h"

namespace {

constexpr int kSlots = 256;
long g_ops = 20000;
std::atomic<int> g_finished{0};
std::atomic<bool> g_stop{false};

void* Work(void* arg) {
  mf2_bench::SplitMix64 rng(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(arg)) + 1);
  void* slot[kSlots] = {};
  for (long i = 0; i < g_ops; ++i) {
    const uint64_t r = rng.Next();
    const int k = static_cast<int>(r % kSlots);
    std::free(slot[k]);
    const size_t size = 16 + (r >> 20) % 3985;
    slot[k] = mf2_bench::CheckedMalloc(size);
    std::memset(slot[k], 1, size < 64 ? size : 64);
  }
  for (void* p : slot) std::free(p);
  g_finished.fetch_add(1, std::memory_order_release);
  while (!g_stop.load(std::memory_order_acquire)) mf2_bench::SleepSeconds(0.01);  // idle, alive
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 64));
  g_ops = static_cast<long>(mf2_bench::ArgOr(argc, argv, 2, 20000));
  const double idle_seconds = mf2_bench::ArgOr(argc, argv, 3, 5);
  if (threads < 1 || g_ops < 1 || idle_seconds < 0) {
    std::fprintf(stderr, "usage: idle_pool threads(>= 1) [ops_per_worker(>= 1)] [idle_seconds]\n");
    return 2;
  }
  const long before = mf2_bench::CurrentRssKib();
  const double start = mf2_bench::NowSeconds();
  pthread_t* ids = mf2_bench::StartSmallStackThreads("idle_pool", threads, Work);
  while (g_finished.load(std::memory_order_acquire) < threads) mf2_bench::SleepSeconds(0.001);
  const double elapsed = mf2_bench::NowSeconds() - start;
  const auto per_worker = [&] {
    return static_cast<double>(mf2_bench::CurrentRssKib() - before) / threads;
  };
  std::printf("Throughput = %.0f ops per second\n", static_cast<double>(g_ops) * threads / elapsed);
  std::printf("kib_per_worker_after_work = %.1f\n", per_worker());
  for (double t = 0.5; t <= idle_seconds + 1e-9; t += 0.5) {
    mf2_bench::SleepSeconds(0.5);
    std::printf("kib_per_idle_worker_after_%.1fs = %.1f\n", t, per_worker());
  }
  g_stop.store(true, std::memory_order_release);
  mf2_bench::JoinThreads(ids, threads);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
