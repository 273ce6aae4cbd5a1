// Live producer/consumer traffic, after Lever and Boreham's xmalloc-test ("malloc() Performance in
// a Multithreaded Linux Environment", USENIX 2000), as run by mimalloc-bench:
//
//   xmalloc_test [-w workers] [-t seconds] [-s size]
//   e.g. xmalloc_test -w 2 -t 5 -s 64
//
// `workers` producer threads each allocate batches of 4096 blocks (size `size`, or with -s -1 a
// size drawn from the original's list 8..2048), write up to 128 bytes of each, and push the batch
// (itself a heap block) onto one shared stack (mutex + condition variables, at most 100 batches).
// `workers` consumer threads pop batches and free every block and the batch. Both sides stay alive
// and keep allocating/freeing for the whole run, so every free is remote to a live owner.
// Main sleeps `seconds`, raises the done flag, joins everyone, frees what is left queued.
//
// Output: `Throughput = N frees per second` (frees by consumers / elapsed), the original's
// `rtime: R, free/sec: F M` line, then the common footer (bench_util.h).
// Defaults: -w 4 -t 5 -s 64 (the original's default size is 1024; mimalloc-bench runs -s 64).
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bench/bench_util.h"

namespace {

constexpr int kObjectsPerBatch = 4096;
constexpr int kBatchLimit = 100;
constexpr int kMaxWorkers = 256;
constexpr size_t kSizes[] = {8,   12,  16,  24,  32,   48,   64,   96,  128,
                             192, 256, 384, 512, 768, 1024, 1536, 2048};

struct Batch {
  Batch* next;
  void* objects[kObjectsPerBatch];
};

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_empty_cv = PTHREAD_COND_INITIALIZER;
pthread_cond_t g_full_cv = PTHREAD_COND_INITIALIZER;
Batch* g_batches = nullptr;  // guarded by g_lock
int g_batch_count = 0;       // guarded by g_lock
std::atomic<bool> g_done{false};
long g_object_size = 64;

struct alignas(64) Counter {
  int64_t frees = 0;
};
Counter g_counters[kMaxWorkers];

void Enqueue(Batch* batch) {
  pthread_mutex_lock(&g_lock);
  // relaxed: the flag is re-checked under the lock after every wake-up; main broadcasts after it.
  while (g_batch_count >= kBatchLimit && !g_done.load(std::memory_order_relaxed)) {
    pthread_cond_wait(&g_full_cv, &g_lock);
  }
  batch->next = g_batches;
  g_batches = batch;
  ++g_batch_count;
  pthread_cond_signal(&g_empty_cv);
  pthread_mutex_unlock(&g_lock);
}

Batch* Dequeue() {
  pthread_mutex_lock(&g_lock);
  // relaxed: see Enqueue.
  while (g_batches == nullptr && !g_done.load(std::memory_order_relaxed)) {
    pthread_cond_wait(&g_empty_cv, &g_lock);
  }
  Batch* batch = g_batches;
  if (batch != nullptr) {
    g_batches = batch->next;
    --g_batch_count;
    pthread_cond_signal(&g_full_cv);
  }
  pthread_mutex_unlock(&g_lock);
  return batch;
}

void* Producer(void* arg) {
  mf2_bench::SplitMix64 rng(static_cast<uint64_t>(reinterpret_cast<intptr_t>(arg)) + 1);
  // relaxed: a stop hint; joins order everything else.
  while (!g_done.load(std::memory_order_relaxed)) {
    Batch* batch = static_cast<Batch*>(mf2_bench::CheckedMalloc(sizeof(Batch)));
    for (int i = 0; i < kObjectsPerBatch; ++i) {
      const size_t size = g_object_size > 0
                              ? static_cast<size_t>(g_object_size)
                              : kSizes[rng.Below(sizeof(kSizes) / sizeof(kSizes[0]))];
      batch->objects[i] = mf2_bench::CheckedMalloc(size);
      std::memset(batch->objects[i], i % 256, size > 128 ? 128 : size);
    }
    Enqueue(batch);
  }
  return nullptr;
}

void* Consumer(void* arg) {
  Counter& counter = g_counters[reinterpret_cast<intptr_t>(arg)];
  // relaxed: a stop hint; joins order everything else.
  while (!g_done.load(std::memory_order_relaxed)) {
    Batch* batch = Dequeue();
    if (batch == nullptr) continue;
    for (int i = 0; i < kObjectsPerBatch; ++i) std::free(batch->objects[i]);
    std::free(batch);
    counter.frees += kObjectsPerBatch;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  int workers = 4;
  double run_time = 5.0;
  int c;
  while ((c = getopt(argc, argv, "w:t:s:")) != -1) {
    switch (c) {
      case 'w':
        workers = std::atoi(optarg);
        break;
      case 't':
        run_time = std::atof(optarg);
        break;
      case 's':
        g_object_size = std::atol(optarg);
        break;
      default:
        std::fprintf(stderr, "usage: %s [-w workers] [-t seconds] [-s size|-1]\n", argv[0]);
        return 2;
    }
  }
  if (workers < 1 || workers > kMaxWorkers || g_object_size == 0) {
    std::fprintf(stderr, "xmalloc_test: need 1 <= workers <= %d and size != 0\n", kMaxWorkers);
    return 2;
  }

  pthread_t threads[2 * kMaxWorkers];
  const double start = mf2_bench::NowSeconds();
  for (intptr_t i = 0; i < workers; ++i) {
    if (pthread_create(&threads[2 * i], nullptr, Consumer, reinterpret_cast<void*>(i)) != 0 ||
        pthread_create(&threads[2 * i + 1], nullptr, Producer, reinterpret_cast<void*>(i)) != 0) {
      std::perror("pthread_create");
      return 1;
    }
  }
  mf2_bench::SleepSeconds(run_time);
  pthread_mutex_lock(&g_lock);
  // relaxed: published by the mutex and the broadcasts below.
  g_done.store(true, std::memory_order_relaxed);
  pthread_cond_broadcast(&g_empty_cv);
  pthread_cond_broadcast(&g_full_cv);
  pthread_mutex_unlock(&g_lock);
  for (int i = 0; i < 2 * workers; ++i) pthread_join(threads[i], nullptr);
  const double elapsed = mf2_bench::NowSeconds() - start;

  int64_t frees = 0;
  for (int i = 0; i < workers; ++i) frees += g_counters[i].frees;
  // Batches still queued were allocated during the run but are freed only now: the throughput
  // leaves them out (as the original xmalloc-test does); tools that count work per operation
  // (bench/count_workload_instructions.py) add them.
  int64_t leftover_frees = 0;
  while (g_batches != nullptr) {
    Batch* batch = g_batches;
    g_batches = batch->next;
    for (int i = 0; i < kObjectsPerBatch; ++i) std::free(batch->objects[i]);
    leftover_frees += kObjectsPerBatch;
    std::free(batch);
  }
  const double per_second = static_cast<double>(frees) / elapsed;
  std::printf("rtime: %.3f, free/sec: %.3f M\n", 100.0 / (per_second * 1e-6), per_second * 1e-6);
  std::printf("Throughput = %.0f frees per second\n", per_second);
  std::printf("frees = %lld\n", static_cast<long long>(frees));
  std::printf("leftover_frees = %lld\n", static_cast<long long>(leftover_frees));
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
