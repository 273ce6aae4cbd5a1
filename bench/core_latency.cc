// How far apart two CPUs are right now: two threads, pinned to the first two CPUs this process
// may run on, hand one cache line back and forth.
//
//   core_latency [round_trips]      (default 20000)
//
// Output: `roundtrip_ns = N`, the median over 5 batches of round_trips/5 of the time from one
// thread's store to its reading the other's answer, or `roundtrip_ns = none` with fewer than two
// CPUs. On a virtual machine the host may place its virtual CPUs close (sharing caches) or far
// apart, and move them: on the 2-CPU VM of bench/RESULTS.md the round trip was about 55 ns at
// some times and about 330 ns at others, and every workload whose threads hand each other memory
// ran several times faster in the first state, for every allocator. run_h2h.py runs this before
// each run and sorts its runs by it.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>

#include "bench/bench_util.h"

namespace {

constexpr int kBatches = 5;

alignas(64) std::atomic<int64_t> g_ball{0};

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  const int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (err != 0) {
    std::fprintf(stderr, "core_latency: cannot pin to CPU %d: %s\n", cpu, std::strerror(err));
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t round_trips = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 1, 20000));
  if (argc > 2 || round_trips < kBatches) {
    std::fprintf(stderr, "usage: %s [round_trips >= %d]  (20000)\n", argv[0], kBatches);
    return 2;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    std::perror("core_latency: sched_getaffinity");
    return 1;
  }
  int cpus[2];
  int n = 0;
  for (int c = 0; c < CPU_SETSIZE && n < 2; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
  }
  if (n < 2) {
    std::printf("roundtrip_ns = none\n");
    return 0;
  }
  const int64_t per_batch = round_trips / kBatches;
  const int64_t total = per_batch * kBatches;
  // Round trip k: main stores 2k+1, the other thread answers 2k+2. Release/acquire, as a message
  // handed between threads is.
  // Main pins itself first: a failure then returns before a thread exists that would have to be
  // joined (returning with a joinable std::thread aborts).
  if (!PinTo(cpus[0])) return 1;
  std::thread other([&] {
    if (!PinTo(cpus[1])) std::exit(1);
    for (int64_t i = 0; i < total; ++i) {
      while (g_ball.load(std::memory_order_acquire) != 2 * i + 1) {
      }
      g_ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  double ns[kBatches];
  int64_t ball = 0;
  for (int b = 0; b < kBatches; ++b) {
    const double start = mf2_bench::NowSeconds();
    for (int64_t i = 0; i < per_batch; ++i) {
      g_ball.store(ball + 1, std::memory_order_release);
      while (g_ball.load(std::memory_order_acquire) != ball + 2) {
      }
      ball += 2;
    }
    ns[b] = (mf2_bench::NowSeconds() - start) * 1e9 / static_cast<double>(per_batch);
  }
  other.join();
  std::sort(ns, ns + kBatches);
  std::printf("roundtrip_ns = %.0f\n", ns[kBatches / 2]);
  return 0;
}
