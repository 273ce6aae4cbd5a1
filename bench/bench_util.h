// Helpers shared by the head-to-head benchmark programs in //bench.
//
// Every program in this package allocates with plain malloc/free only, so that the allocator under
// test is chosen by LD_PRELOAD. Nothing here allocates on the heap. Each program ends its output
// with the same machine-readable lines, which bench/run_h2h.py parses:
//
//   Throughput = <N> <unit> per second[, ...]   (higher is better)
//   elapsed_seconds = <s>
//   peak_rss_kib = <N>                           (getrusage(RUSAGE_SELF).ru_maxrss, always last)
#ifndef MF2_BENCH_BENCH_UTIL_H_
#define MF2_BENCH_BENCH_UTIL_H_

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace mf2_bench {

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014;
// the reference code is Vigna's splitmix64.c). One 64-bit add and two multiply-xorshift rounds per
// number: fast enough that the generator is noise next to a malloc/free pair, passes BigCrush, and
// is fully deterministic: the same seed gives the same sequence on every machine and allocator.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed = 0) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  // A number in [0, n) for n > 0 (Lemire's multiply-shift: no division, bias below 2^-40 for the
  // ranges used here).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

// Monotonic wall-clock seconds.
inline double NowSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Sleeps `seconds` (fractions allowed), resuming after signals.
inline void SleepSeconds(double seconds) {
  if (seconds <= 0) return;
  timespec ts;
  ts.tv_sec = static_cast<time_t>(seconds);
  ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// Peak resident set size of this process in KiB (Linux reports ru_maxrss in KiB).
inline long PeakRssKib() {
  rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return usage.ru_maxrss;
}

// Resident set size of this process now, in KiB (/proc/self/statm's second field); -1 when it
// cannot be read.
inline long CurrentRssKib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = -1;
  if (std::fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
  std::fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// Parses argv[index] as a number, or returns `fallback` when the argument is absent. Exits with a
// message on malformed input, so that a typo never silently runs a different benchmark.
inline double ArgOr(int argc, char** argv, int index, double fallback) {
  if (index >= argc) return fallback;
  char* end = nullptr;
  const double value = std::strtod(argv[index], &end);
  if (end == argv[index] || *end != '\0') {
    std::fprintf(stderr, "%s: argument %d (\"%s\") is not a number\n", argv[0], index,
                 argv[index]);
    std::exit(2);
  }
  return value;
}

// Prints the closing lines every program shares (see the file comment) and flushes stdout.
inline void PrintFooter(double elapsed_seconds) {
  std::printf("elapsed_seconds = %.6f\n", elapsed_seconds);
  std::printf("peak_rss_kib = %ld\n", PeakRssKib());
  std::fflush(stdout);
}

// Exits with a message when malloc returned null: a benchmark must never continue on a null block.
inline void* CheckedMalloc(size_t size) {
  void* p = std::malloc(size);
  if (p == nullptr) {
    std::fprintf(stderr, "malloc(%zu) returned null\n", size);
    std::abort();
  }
  return p;
}

// Starts `n` threads running fn((void*)t) for t = 0..n-1, each with a 64 KiB stack (programs that
// start hundreds of threads measure the allocator's memory, not the threads' stacks); exits with
// a message naming `program` when one cannot be started. JoinThreads joins them and frees `ids`.
inline pthread_t* StartSmallStackThreads(const char* program, int n, void* (*fn)(void*)) {
  pthread_t* ids =
      static_cast<pthread_t*>(CheckedMalloc(static_cast<size_t>(n) * sizeof(pthread_t)));
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  for (int t = 0; t < n; ++t) {
    if (pthread_create(&ids[t], &attr, fn, reinterpret_cast<void*>(static_cast<uintptr_t>(t))) !=
        0) {
      std::fprintf(stderr, "%s: pthread_create failed at thread %d\n", program, t);
      std::exit(1);
    }
  }
  pthread_attr_destroy(&attr);
  return ids;
}
inline void JoinThreads(pthread_t* ids, int n) {
  for (int t = 0; t < n; ++t) pthread_join(ids[t], nullptr);
  std::free(ids);
}

}  // namespace mf2_bench

#endif  // MF2_BENCH_BENCH_UTIL_H_
