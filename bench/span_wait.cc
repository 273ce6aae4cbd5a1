// How long one thread's allocations wait while memory other threads freed goes back to the OS:
//
//   span_wait rounds mib block_bytes
//   e.g. span_wait 20 32 1024
//
// A prober thread allocates 16 blocks of 64 KiB - 64 bytes (two of MF2's spans of that class),
// frees them, and times each such round trip, back to back. Main,
// `rounds` times: allocates `mib` MiB of `block_bytes` blocks, writes every byte, frees them
// all, and sleeps 100 ms, long enough for an allocator that returns freed memory after a short
// decay (MF2: 20 ms for what its span cache holds beyond its reserve) to do so while the prober
// runs. Run it with MF2_CACHE_CLASS_KB=0 MF2_HEAP_EMPTY_KB=0, so that each of the prober's round
// trips takes a span from MF2's page source and gives it back (no block cache, no empty page
// kept beside the active one): they then wait whenever the page source's lock is held.
//
// Output: `Throughput = N trips per second` (the prober's), the trips' latencies in microseconds
// (`p50_us`, `p99_us`, `p999_us`, `max_us`), `trips_over_1ms`, and the common footer
// (bench_util.h). Defaults: 20 32 1024.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/bench_util.h"

namespace {

constexpr size_t kProbeBytes = 64 * 1024 - 64;
constexpr int kProbeBlocks = 16;
constexpr size_t kMaxSamples = size_t{1} << 24;  // 16 M trips: ample for a run of seconds

std::atomic<bool> g_stop{false};
uint32_t* g_samples_ns = nullptr;  // written by the prober only, read by main after the join
size_t g_samples = 0;

void* Prober(void*) {
  // Relaxed: a stop flag; the join orders the samples.
  while (!g_stop.load(std::memory_order_relaxed) && g_samples < kMaxSamples) {
    const double start = mf2_bench::NowSeconds();
    void* p[kProbeBlocks];
    for (void*& b : p) {
      b = mf2_bench::CheckedMalloc(kProbeBytes);
      static_cast<volatile char*>(b)[0] = 1;
    }
    for (void* b : p) std::free(b);
    const double ns = (mf2_bench::NowSeconds() - start) * 1e9;
    g_samples_ns[g_samples++] = static_cast<uint32_t>(std::min(ns, 4e9));
  }
  return nullptr;
}

double Percentile(const uint32_t* sorted, size_t n, double q) {
  return n == 0 ? 0 : sorted[std::min(n - 1, static_cast<size_t>(q * static_cast<double>(n)))];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 20));
  const double mib = mf2_bench::ArgOr(argc, argv, 2, 32);
  const size_t block = static_cast<size_t>(mf2_bench::ArgOr(argc, argv, 3, 1024));
  if (rounds < 1 || mib <= 0 || block < 16) {
    std::fprintf(stderr, "%s: want rounds >= 1, mib > 0, block_bytes >= 16\n", argv[0]);
    return 2;
  }
  const size_t count = static_cast<size_t>(mib * 1024 * 1024) / block;
  // Plain mmap-backed arrays would do as well; malloc is what every benchmark here uses, and
  // these two are allocated once, before the measurement.
  void** blocks = static_cast<void**>(mf2_bench::CheckedMalloc(count * sizeof(void*)));
  g_samples_ns = static_cast<uint32_t*>(mf2_bench::CheckedMalloc(kMaxSamples * sizeof(uint32_t)));
  std::memset(g_samples_ns, 0, kMaxSamples * sizeof(uint32_t));

  const double start = mf2_bench::NowSeconds();
  pthread_t prober;
  if (pthread_create(&prober, nullptr, Prober, nullptr) != 0) {
    std::fprintf(stderr, "%s: cannot start the prober thread\n", argv[0]);
    return 1;
  }
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < count; ++i) {
      blocks[i] = mf2_bench::CheckedMalloc(block);
      std::memset(blocks[i], r + 1, block);
    }
    for (size_t i = 0; i < count; ++i) std::free(blocks[i]);
    mf2_bench::SleepSeconds(0.1);
  }
  g_stop.store(true, std::memory_order_relaxed);
  pthread_join(prober, nullptr);
  const double elapsed = mf2_bench::NowSeconds() - start;

  std::sort(g_samples_ns, g_samples_ns + g_samples);
  size_t over_1ms = 0;
  for (size_t i = 0; i < g_samples; ++i) over_1ms += g_samples_ns[i] > 1000000;
  std::printf("Throughput = %.0f trips per second\n", static_cast<double>(g_samples) / elapsed);
  std::printf("trips = %zu\n", g_samples);
  std::printf("p50_us = %.1f\n", Percentile(g_samples_ns, g_samples, 0.5) / 1000);
  std::printf("p99_us = %.1f\n", Percentile(g_samples_ns, g_samples, 0.99) / 1000);
  std::printf("p999_us = %.1f\n", Percentile(g_samples_ns, g_samples, 0.999) / 1000);
  std::printf("max_us = %.1f\n", g_samples == 0 ? 0.0 : g_samples_ns[g_samples - 1] / 1000.0);
  std::printf("trips_over_1ms = %zu\n", over_1ms);
  std::free(g_samples_ns);
  std::free(blocks);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
