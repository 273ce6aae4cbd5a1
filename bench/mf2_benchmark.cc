// Microbenchmarks of MF2's own paths, on explicit heaps (no LD_PRELOAD needed):
//   BM_Mf2LocalPair/size     Heap::Allocate + Heap::Free by the owner (the fast paths)
//   BM_Mf2RemoteFree/size    one remote free: push on the page's remote stack (+ the 0->1 edge's
//                            enqueue once per page)
//   BM_Mf2DrainPendingPage   the owner's slow path reusing a page whose every block was freed
//                            remotely: pop it off the pending queue, drain, reuse
#include <vector>

#include "benchmark/benchmark.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page_source.h"

namespace {

using mf2::Heap;
using mf2::HeapRegistry;
using mf2::OsPageSource;

void BM_Mf2LocalPair(benchmark::State& state) {
  Heap* h = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  const size_t size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = h->Allocate(size);
    benchmark::DoNotOptimize(p);
    h->Free(p);
  }
  HeapRegistry::Global().ReleaseHeap(h);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Mf2LocalPair)->Arg(16)->Arg(2048)->Arg(16384);

void BM_Mf2RemoteFree(benchmark::State& state) {
  Heap* owner = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  Heap* freer = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  const size_t size = static_cast<size_t>(state.range(0));
  std::vector<void*> blocks(1024);
  for (auto _ : state) {
    state.PauseTiming();
    for (void*& p : blocks) p = owner->Allocate(size);
    state.ResumeTiming();
    for (void* p : blocks) freer->Free(p);
    state.PauseTiming();
    // The owner takes its pages back (drains) outside the timed region.
    for (void*& p : blocks) p = owner->Allocate(size);
    for (void* p : blocks) owner->Free(p);
    state.ResumeTiming();
  }
  HeapRegistry::Global().ReleaseHeap(freer);
  HeapRegistry::Global().ReleaseHeap(owner);
  state.SetItemsProcessed(state.iterations() * blocks.size());
}
BENCHMARK(BM_Mf2RemoteFree)->Arg(64)->Arg(2048);

void BM_Mf2DrainPendingPage(benchmark::State& state) {
  Heap* owner = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  Heap* freer = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  constexpr size_t kSize = 2048;
  const uint32_t cap = mf2::ClassInfo(mf2::SizeToClass(kSize)).capacity;
  std::vector<void*> blocks(cap);
  for (void*& p : blocks) p = owner->Allocate(kSize);  // fills the active page exactly
  for (auto _ : state) {
    state.PauseTiming();
    for (void* p : blocks) freer->Free(p);  // every block comes back remotely: page queued
    state.ResumeTiming();
    // First allocation: slow path pops the page, drains `cap` blocks, reuses it.
    blocks[0] = owner->Allocate(kSize);
    state.PauseTiming();
    for (uint32_t i = 1; i < cap; ++i) blocks[i] = owner->Allocate(kSize);
    state.ResumeTiming();
  }
  for (void* p : blocks) owner->Free(p);
  HeapRegistry::Global().ReleaseHeap(freer);
  HeapRegistry::Global().ReleaseHeap(owner);
  state.counters["blocks_per_drain"] = cap;
}
BENCHMARK(BM_Mf2DrainPendingPage);

}  // namespace

BENCHMARK_MAIN();
