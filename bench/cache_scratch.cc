// Passive false sharing, after Emery Berger's cache-scratch (Hoard benchmarks), as run by
// mimalloc-bench:
//
//   cache_scratch nthreads iterations obj_size repetitions concurrency
//   e.g. cache_scratch 2 1000 1 2000000 2
//
// Main allocates `nthreads` objects of `obj_size` bytes back to back (so they likely share cache
// lines) and hands one to each thread. Each thread frees the object it was given, then `iterations`
// times: allocates an `obj_size` object, writes (and reads back) every byte of it
// repetitions/nthreads times, and frees it. An allocator that gives the freed object (or its cache
// line) back to the freeing thread makes the threads write to one cache line; one that keeps
// per-thread memory apart scales with the threads. `concurrency` is accepted for compatibility
// (the original passes it to pthread_setconcurrency, which Linux ignores).
//
// Fixed work, so the result is the time: `Throughput = N allocations per second`
// (nthreads*iterations / elapsed, higher is better) and `elapsed_seconds` (lower is better, what
// mimalloc-bench reports), then the common footer (bench_util.h).
#include <pthread.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"

namespace {

struct WorkerArg {
  char* object;
  int64_t object_size;
  int64_t iterations;
  int64_t repetitions;
};

void* Worker(void* arg) {
  const WorkerArg w = *static_cast<WorkerArg*>(arg);
  std::free(w.object);
  for (int64_t i = 0; i < w.iterations; ++i) {
    char* obj = static_cast<char*>(mf2_bench::CheckedMalloc(static_cast<size_t>(w.object_size)));
    for (int64_t j = 0; j < w.repetitions; ++j) {
      for (int64_t k = 0; k < w.object_size; ++k) {
        // The original's write, read back through volatile so it is not optimised away.
        static_cast<volatile char*>(obj)[k] = static_cast<char>(k);
        volatile char ch = static_cast<volatile char*>(obj)[k];
        ch = static_cast<char>(ch + 1);
      }
    }
    std::free(obj);
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 1 && argc != 6) {
    std::fprintf(stderr,
                 "usage: %s nthreads iterations obj_size repetitions concurrency\n"
                 "  (no arguments: 2 1000 1 2000000 2)\n",
                 argv[0]);
    return 2;
  }
  const int nthreads = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 2));
  const int64_t iterations = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 2, 1000));
  const int64_t object_size = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 3, 1));
  const int64_t repetitions = static_cast<int64_t>(mf2_bench::ArgOr(argc, argv, 4, 2000000));
  if (nthreads < 1 || nthreads > 1024 || iterations < 1 || object_size < 1 || repetitions < 0) {
    std::fprintf(stderr, "cache_scratch: need 1 <= nthreads <= 1024, iterations >= 1, size >= 1\n");
    return 2;
  }

  WorkerArg args[1024];
  pthread_t threads[1024];
  for (int i = 0; i < nthreads; ++i) {
    args[i].object = static_cast<char*>(mf2_bench::CheckedMalloc(static_cast<size_t>(object_size)));
    args[i].object_size = object_size;
    args[i].iterations = iterations;
    args[i].repetitions = repetitions / nthreads;
  }
  const double start = mf2_bench::NowSeconds();
  for (int i = 0; i < nthreads; ++i) {
    if (pthread_create(&threads[i], nullptr, Worker, &args[i]) != 0) {
      std::perror("pthread_create");
      return 1;
    }
  }
  for (int i = 0; i < nthreads; ++i) pthread_join(threads[i], nullptr);
  const double elapsed = mf2_bench::NowSeconds() - start;

  std::printf("Throughput = %.0f allocations per second\n",
              static_cast<double>(nthreads * iterations) / elapsed);
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
