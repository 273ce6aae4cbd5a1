// Larson & Krishnan's server benchmark ("Memory Allocation for Long-Running Server Applications",
// ISMM 1998), re-implemented step by step as bench/README.md ("larson") describes it.
//
//   larson sleep_seconds min_size max_size chunks_per_thread rounds seed threads
//   e.g. larson 5 8 1000 5000 100 4141 2        (classic small objects)
//        larson 5 1024 32768 5000 100 4141 2    (mid-size)
//
// 1. Warm-up (main thread): allocate threads*chunks blocks of size min + r % (max - min) (min when
//    equal) into one array, then one pass of random replacement (threads*chunks times: pick a
//    random index, free it, allocate a new random-size block). Every block the workers start with
//    was allocated by the main thread. (mimalloc-bench's larson.cpp also shuffles the array and
//    makes 4 passes; the benchmark's description, which this file follows, has one pass.)
// 2. Worker i owns slice [i*chunks, (i+1)*chunks). It repeats rounds*chunks times: pick a random
//    index in its slice, free that block, allocate a new random-size block, write its first byte
//    and the next byte, count one allocation; it stops early when the stop flag is raised.
// 3. Thread churn: a worker that finishes rounds*chunks operations without being stopped starts a
//    new (detached) thread with the same slot (slice, generator and counters) and exits.
// 4. Main sleeps sleep_seconds, raises the stop flag, waits until every slot reports finished and
//    prints the number of allocations divided by the elapsed time. It never allocates meanwhile.
// 6. Random numbers: SplitMix64 (bench_util.h) instead of the original's lran2. The main generator
//    is seeded with `seed`; each worker's generator is seeded with one draw of the main generator
//    after the warm-up, so the same seed gives the same sizes and victims.
//
// A slot's `finished` flag is raised only by a thread that will not start a successor (it saw the
// stop flag), so the main thread can never observe a slot as finished while a successor is about to
// run in it (the original raised it before starting the successor).
//
// Output: the peers' line `Throughput = N operations per second, relative time: Xs.` followed by
// `relative_time = X`, `thread_generations = K` (threads started for workers, including the first
// `threads`), `elapsed_seconds` and `peak_rss_kib` (see bench_util.h).
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"

namespace {

using mf2_bench::SplitMix64;

// The original's limits: at most 100 threads and 1,000,000 blocks.
constexpr int kMaxThreads = 100;
constexpr int64_t kMaxBlocks = 1000000;

// Static, like the original, so the block table itself is never a heap allocation.
char* g_blocks[kMaxBlocks];

// Raised once by main; read by every worker after each operation.
std::atomic<bool> g_stop{false};

// One worker slot. Plain fields are used by one thread at a time: the slot's current worker,
// handed from thread to thread by pthread_create (which orders the predecessor's writes before the
// successor's start), and read by main only after `finished` (acquire) is seen.
struct alignas(64) Slot {
  char** blocks = nullptr;
  int64_t count = 0;
  int64_t ops_per_generation = 0;
  uint64_t min_size = 0;
  uint64_t range = 0;  // max_size - min_size; 0 means every block has min_size bytes
  SplitMix64 rng;
  int64_t allocs = 0;
  int64_t frees = 0;
  int64_t generations = 0;
  // Raised (release) by the slot's last thread; main waits for it (acquire).
  std::atomic<bool> finished{false};
};

Slot g_slots[kMaxThreads];

size_t RandomSize(SplitMix64& rng, uint64_t min_size, uint64_t range) {
  return static_cast<size_t>(range == 0 ? min_size : min_size + rng.Next() % range);
}

void StartWorker(Slot* slot);

void* Worker(void* arg) {
  Slot* slot = static_cast<Slot*>(arg);
  // acquire: pairs with main's release store of the stop flag.
  if (g_stop.load(std::memory_order_acquire)) {
    // release: publishes this slot's counters to main.
    slot->finished.store(true, std::memory_order_release);
    return nullptr;
  }
  ++slot->generations;
  for (int64_t op = 0; op < slot->ops_per_generation; ++op) {
    const int64_t victim =
        static_cast<int64_t>(slot->rng.Next() % static_cast<uint64_t>(slot->count));
    std::free(slot->blocks[victim]);
    ++slot->frees;
    const size_t size = RandomSize(slot->rng, slot->min_size, slot->range);
    char* block = static_cast<char*>(mf2_bench::CheckedMalloc(size));
    slot->blocks[victim] = block;
    ++slot->allocs;
    // Write something: the first byte and the next one, as the original does.
    volatile char* bytes = block;
    bytes[0] = 'a';
    if (size > 1) bytes[1] = 'b';
    // relaxed: only a hint to stop early; the exit path below re-reads it with acquire.
    if (g_stop.load(std::memory_order_relaxed)) break;
  }
  // acquire: pairs with main's release store of the stop flag.
  if (g_stop.load(std::memory_order_acquire)) {
    // release: publishes this slot's counters to main.
    slot->finished.store(true, std::memory_order_release);
  } else {
    StartWorker(slot);  // thread churn: a new thread continues this slot; this one exits
  }
  return nullptr;
}

// Starts a detached thread running Worker(slot), retrying while the system is short of threads
// (exited detached threads release their resources asynchronously).
void StartWorker(Slot* slot) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  int error = 0;
  for (int attempt = 0; attempt < 100000; ++attempt) {
    error = pthread_create(&thread, &attr, Worker, slot);
    if (error == 0) break;
    sched_yield();
  }
  pthread_attr_destroy(&attr);
  if (error != 0) {
    std::fprintf(stderr, "larson: pthread_create failed (%d)\n", error);
    std::abort();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 1 && argc != 8) {
    std::fprintf(stderr,
                 "usage: %s sleep_seconds min_size max_size chunks_per_thread rounds seed threads\n"
                 "  (no arguments: 5 8 1000 5000 100 4141 2)\n",
                 argv[0]);
    return 2;
  }
  const double sleep_seconds = mf2_bench::ArgOr(argc, argv, 1, 5);
  const int64_t min_size = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 2, 8));
  const int64_t max_size = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 3, 1000));
  const int64_t chunks = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 4, 5000));
  const int64_t rounds = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 5, 100));
  const uint64_t seed = static_cast<uint64_t>(mf2_bench::ArgOr(argc, argv, 6, 4141));
  const int threads = static_cast<int>(mf2_bench::ArgOr(argc, argv, 7, 2));
  if (min_size < 1 || max_size < min_size || chunks < 1 || rounds < 1 || threads < 1 ||
      threads > kMaxThreads || threads * chunks > kMaxBlocks) {
    std::fprintf(stderr, "larson: need 1 <= min <= max, chunks >= 1, rounds >= 1, "
                         "1 <= threads <= %d, threads*chunks <= %lld\n",
                 kMaxThreads, static_cast<long long>(kMaxBlocks));
    return 2;
  }
  const uint64_t range = static_cast<uint64_t>(max_size - min_size);
  const int64_t total = threads * chunks;

  // 1. Warm-up in the main thread.
  SplitMix64 rng(seed);
  for (int64_t i = 0; i < total; ++i) {
    g_blocks[i] = static_cast<char*>(
        mf2_bench::CheckedMalloc(RandomSize(rng, static_cast<uint64_t>(min_size), range)));
  }
  for (int64_t i = 0; i < total; ++i) {
    const int64_t victim = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(total));
    std::free(g_blocks[victim]);
    g_blocks[victim] = static_cast<char*>(
        mf2_bench::CheckedMalloc(RandomSize(rng, static_cast<uint64_t>(min_size), range)));
  }

  // Measurement aid, off by default: LARSON_RELEASE_MAIN_HEAP=1 makes the main thread hand its
  // heap back after the warm-up when the allocator offers `mf2_release_thread_heap` (MF2 does),
  // as if it had exited. The difference in peak RSS against a normal run is the memory an idle
  // live owner strands under Route S (its pages fill with remote frees nobody drains).
  if (const char* v = std::getenv("LARSON_RELEASE_MAIN_HEAP"); v != nullptr && v[0] == '1') {
    using ReleaseFn = void (*)();
    if (auto fn = reinterpret_cast<ReleaseFn>(dlsym(RTLD_DEFAULT, "mf2_release_thread_heap"))) {
      fn();
    } else {
      std::fprintf(stderr, "larson: LARSON_RELEASE_MAIN_HEAP set but the allocator has no "
                           "mf2_release_thread_heap\n");
    }
  }

  // 2. One slot per worker, each with its slice and a generator seeded from the main generator.
  for (int i = 0; i < threads; ++i) {
    Slot& slot = g_slots[i];
    slot.blocks = &g_blocks[i * chunks];
    slot.count = chunks;
    slot.ops_per_generation = rounds * chunks;
    slot.min_size = static_cast<uint64_t>(min_size);
    slot.range = range;
    slot.rng = SplitMix64(rng.Next());
  }
  for (int i = 0; i < threads; ++i) StartWorker(&g_slots[i]);
  const double start = mf2_bench::NowSeconds();

  // 4. Sleep, stop, wait for every slot.
  mf2_bench::SleepSeconds(sleep_seconds);
  // release: pairs with the workers' acquire loads.
  g_stop.store(true, std::memory_order_release);
  for (int i = 0; i < threads; ++i) {
    // acquire: pairs with the release store of the slot's last thread.
    while (!g_slots[i].finished.load(std::memory_order_acquire)) sched_yield();
  }
  const double elapsed = mf2_bench::NowSeconds() - start;

  int64_t allocs = 0;
  int64_t generations = 0;
  for (int i = 0; i < threads; ++i) {
    allocs += g_slots[i].allocs;
    generations += g_slots[i].generations;
  }
  const double throughput = static_cast<double>(allocs) / elapsed;
  const double relative_time = 1.0e9 / throughput;
  std::printf("Throughput = %8.0f operations per second, relative time: %.3fs.\n", throughput,
              relative_time);
  std::printf("relative_time = %.3f\n", relative_time);
  std::printf("thread_generations = %lld\n", static_cast<long long>(generations));
  std::printf("allocations = %lld\n", static_cast<long long>(allocs));
  mf2_bench::PrintFooter(elapsed);
  // Like the original, the blocks stay allocated: the process exits here.
  return 0;
}
