// Microbenchmarks through malloc/free, so the allocator under test is chosen by LD_PRELOAD
// (glibc when none): bench/run_micro.sh runs them for MF2 and each peer.
//   BM_LocalPair/size       malloc + free of one block by the same thread
//   BM_LocalBatch/size      64 mallocs then 64 frees (free-list reuse, not just one hot block)
//   BM_RemoteFree/size      free of blocks another thread allocated (the remote-free path); the
//                           allocating thread refills a ring of batches in the background
#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"

namespace {

void BM_LocalPair(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = malloc(size);
    benchmark::DoNotOptimize(p);
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LocalPair)->Arg(16)->Arg(256)->Arg(2048)->Arg(16384)->Arg(52 * 1024);

void BM_LocalBatch(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  void* blocks[64];
  for (auto _ : state) {
    for (void*& p : blocks) {
      p = malloc(size);
      benchmark::DoNotOptimize(p);
    }
    for (void* p : blocks) free(p);
  }
  state.SetItemsProcessed(state.iterations() * 64);
}
BENCHMARK(BM_LocalBatch)->Arg(16)->Arg(256)->Arg(2048)->Arg(16384);

// A single-producer single-consumer ring of batches: the producer thread allocates batches, the
// benchmark thread frees them. Only the frees are timed.
void BM_RemoteFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  constexpr int kBatch = 256;
  constexpr int kSlots = 8;
  struct Slot {
    std::atomic<bool> full{false};
    void* blocks[kBatch];
  };
  std::vector<Slot> ring(kSlots);
  std::atomic<bool> stop{false};
  std::thread producer([&] {
    for (int i = 0; !stop.load(std::memory_order_relaxed); i = (i + 1) % kSlots) {
      // Acquire: the consumer finished freeing this slot's previous batch.
      while (ring[i].full.load(std::memory_order_acquire)) {
        if (stop.load(std::memory_order_relaxed)) return;
        std::this_thread::yield();
      }
      for (void*& p : ring[i].blocks) p = malloc(size);
      // Release: publishes the batch to the consumer.
      ring[i].full.store(true, std::memory_order_release);
    }
  });
  int slot = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Acquire: pairs with the producer's release.
    while (!ring[slot].full.load(std::memory_order_acquire)) std::this_thread::yield();
    state.ResumeTiming();
    for (void* p : ring[slot].blocks) free(p);
    // Release: the slot may be refilled.
    ring[slot].full.store(false, std::memory_order_release);
    slot = (slot + 1) % kSlots;
  }
  stop = true;
  producer.join();
  for (Slot& s : ring) {
    if (s.full.load()) {
      for (void* p : s.blocks) free(p);
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_RemoteFree)->Arg(64)->Arg(2048)->Arg(16384)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
