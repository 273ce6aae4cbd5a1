// Thread churn with objects that outlive their threads, after mimalloc's test-stress (mstress in
// mimalloc-bench):
//
//   thread_churn threads scale rounds
//   e.g. thread_churn 2 50 25
//
// `rounds` times, main starts `threads` threads and joins them. Thread t of a round (seeded from
// its round and index) performs 100*scale*(t%8+1) allocations of 1, 2, 4, 8 or 16 words (1% of all
// objects 100x larger, 0.1% 1000x, 0.01% 10000x), frees a random earlier one of its own 66% of the
// time, keeps half as many "retained" objects of 1..64 words until it ends, and
// 25% of the time swaps one of its live objects with a slot of a shared 1000-slot transfer array
// (atomic exchange), so it frees objects allocated by other threads, of this round or of earlier
// rounds whose threads have exited. A thread frees everything it still holds when it ends; what it
// left in the transfer array survives it. After each round main frees a random half of the transfer
// array (all of it after the last round). Every object carries a cookie pattern that is checked
// before it is freed; a mismatch aborts (memory corruption).
//
// Fixed work: `Throughput = N allocations per second` (all allocations / elapsed) and the common
// footer (bench_util.h). Defaults: 2 50 25 (mimalloc-bench: `mstress T 50 25`).
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"

namespace {

using mf2_bench::SplitMix64;

constexpr int kTransfers = 1000;
constexpr uint64_t kCookie = 0xbf58476d1ce4e5b9ULL;
constexpr uint64_t kMaxItemShift = 5;          // objects of 1..16 words
constexpr uint64_t kMaxItemRetainedShift = 7;  // retained objects of 1..64 words

std::atomic<uint64_t*> g_transfer[kTransfers];
int64_t g_scale = 50;

// True with probability percent/100 (the original's `pick % 100 <= perc` is (perc+1)/100).
bool Chance(int percent, SplitMix64& rng) {
  return rng.Below(100) < static_cast<uint64_t>(percent);
}

uint64_t* AllocItems(uint64_t items, SplitMix64& rng, int64_t& allocs) {
  if (Chance(1, rng)) {
    if (Chance(1, rng)) {
      items *= 10000;  // 0.01% giant
    } else if (Chance(10, rng)) {
      items *= 1000;  // 0.1% huge
    } else {
      items *= 100;  // 1% large
    }
  }
  uint64_t* p = static_cast<uint64_t*>(mf2_bench::CheckedMalloc(items * sizeof(uint64_t)));
  for (uint64_t i = 0; i < items; ++i) p[i] = (items - i) ^ kCookie;
  ++allocs;
  return p;
}

void FreeItems(uint64_t* p) {
  if (p == nullptr) return;
  const uint64_t items = p[0] ^ kCookie;
  for (uint64_t i = 0; i < items; ++i) {
    if ((p[i] ^ kCookie) != items - i) {
      std::fprintf(stderr, "thread_churn: memory corruption in block %p at word %llu\n",
                   static_cast<void*>(p), static_cast<unsigned long long>(i));
      std::abort();
    }
  }
  std::free(p);
}

struct alignas(64) ThreadArg {
  int64_t index = 0;  // within the round: decides the amount of work
  uint64_t seed = 0;
  int64_t allocs = 0;  // written by the thread, read by main after the join
};

void* Stress(void* arg) {
  ThreadArg* self = static_cast<ThreadArg*>(arg);
  SplitMix64 rng(self->seed);
  int64_t allocs_left = 100 * g_scale * (self->index % 8 + 1);  // some threads do more
  int64_t retain_left = allocs_left / 2;
  uint64_t** data = static_cast<uint64_t**>(
      mf2_bench::CheckedMalloc(static_cast<size_t>(allocs_left) * sizeof(uint64_t*)));
  int64_t data_top = 0;
  uint64_t** retained = static_cast<uint64_t**>(
      mf2_bench::CheckedMalloc(static_cast<size_t>(retain_left + 1) * sizeof(uint64_t*)));
  int64_t retain_top = 0;
  int64_t allocs = 0;

  while (allocs_left > 0 || retain_left > 0) {
    if (retain_left == 0 || (Chance(50, rng) && allocs_left > 0)) {
      --allocs_left;
      data[data_top++] = AllocItems(uint64_t{1} << rng.Below(kMaxItemShift), rng, allocs);
    } else {
      retained[retain_top++] =
          AllocItems(uint64_t{1} << rng.Below(kMaxItemRetainedShift), rng, allocs);
      --retain_left;
    }
    if (Chance(66, rng) && data_top > 0) {
      const int64_t idx = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(data_top)));
      FreeItems(data[idx]);
      data[idx] = nullptr;
    }
    if (Chance(25, rng) && data_top > 0) {
      const int64_t idx = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(data_top)));
      const uint64_t slot = rng.Below(kTransfers);
      // acq_rel: publishes our object's contents to the thread that takes it, and acquires those
      // of the object we take.
      data[idx] = g_transfer[slot].exchange(data[idx], std::memory_order_acq_rel);
    }
  }
  for (int64_t i = 0; i < retain_top; ++i) FreeItems(retained[i]);
  for (int64_t i = 0; i < data_top; ++i) FreeItems(data[i]);
  std::free(retained);
  std::free(data);
  self->allocs = allocs;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 4) {
    std::fprintf(stderr, "usage: %s [threads [scale [rounds]]]  (defaults: 2 50 25)\n", argv[0]);
    return 2;
  }
  const int threads = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 2));
  g_scale = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 2, 50));
  const int rounds = static_cast<int>(mf2_bench::ArgOr(argc, argv, 3, 25));
  if (threads < 1 || threads > 1024 || g_scale < 1 || rounds < 1) {
    std::fprintf(stderr, "thread_churn: need 1 <= threads <= 1024, scale >= 1, rounds >= 1\n");
    return 2;
  }

  SplitMix64 main_rng(4141);
  ThreadArg args[1024];
  pthread_t handles[1024];
  int64_t allocs = 0;
  const double start = mf2_bench::NowSeconds();
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < threads; ++i) {
      args[i].index = i;
      args[i].seed = (static_cast<uint64_t>(round) * static_cast<uint64_t>(threads) + i) * 43;
      args[i].allocs = 0;
      if (pthread_create(&handles[i], nullptr, Stress, &args[i]) != 0) {
        std::perror("pthread_create");
        return 1;
      }
    }
    for (int i = 0; i < threads; ++i) {
      pthread_join(handles[i], nullptr);
      allocs += args[i].allocs;
    }
    for (int i = 0; i < kTransfers; ++i) {
      if (round + 1 == rounds || Chance(50, main_rng)) {
        // acquire: takes ownership of the object's contents from its last writer.
        FreeItems(g_transfer[i].exchange(nullptr, std::memory_order_acquire));
      }
    }
  }
  const double elapsed = mf2_bench::NowSeconds() - start;

  std::printf("Throughput = %.0f allocations per second\n", static_cast<double>(allocs) / elapsed);
  std::printf("allocations = %lld\n", static_cast<long long>(allocs));
  std::printf("threads_started = %lld\n", static_cast<long long>(threads) * rounds);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
