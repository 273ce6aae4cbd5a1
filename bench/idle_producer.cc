// An idle producer: does the allocator give memory back when the thread that allocated it stops
// allocating and another thread frees it?
//
//   idle_producer total_mib keep_percent rounds [spread_ms] [resume_ms] [idle_s] [scratch_percent]
//   e.g. idle_producer 256 10 3          (the consumer frees at once)
//        idle_producer 256 10 2 5000     (the consumer's frees spread over 5 s)
//        idle_producer 256 10 3 0 5      (the producer allocates again 5 ms after the hand-off)
//        idle_producer 256 10 3 0 0 10 50  (the producer also frees its own scratch blocks)
//
// Each round: the producer thread allocates `total_mib` MiB of messages (sizes 16..4096 bytes,
// fixed seed), hands them all to the consumer thread, and stops allocating (it waits for the next
// round; it is alive, not exited). The consumer frees them in the order they were made, except
// the newest `keep_percent` percent, which it keeps (live data, as a cache keeps its newest
// entries): at once, or in 50 slices spread over `spread_ms` (sleeping between slices). Right
// after the consumer's last free, and again 10 ms and 100 ms later, the program reads the
// process's resident set size (/proc/self/statm) and reports it against the live bytes.
// With `resume_ms` > 0 the producer does not stay idle: `resume_ms` after the hand-off it
// allocates as much again (while the consumer frees), and reports its allocation rate; it frees
// those blocks itself at the end of the round. The kept messages are freed by the consumer
// before the next round. After the last round the process sleeps 2 s (an allocator may still be
// returning memory: that CPU time is reported as a total) and then `idle_s` seconds (default 1),
// and reports the CPU time per second of the latter (an allocator polling in the background
// would show here) and the resident set along the way.
// With `scratch_percent` > 0 the producer, for that share of its messages, also allocates a
// scratch block (same sizes) that it holds while it produces and frees itself just before the
// hand-off: its own frees then sit in its caches or on its pages, between the consumer's blocks.
//
// Output per round:  round=R live_mib=L rss0_mib=A rss10_mib=B rss100_mib=C
// Then: Throughput = <messages freed per second by the consumer>, idle_cpu_ms (per second of
// idleness), producer_resume_allocs_per_s (with resume_ms), the footer.
// The headline figure is the last round's rss100 / live ratio (the first round also pays for
// first-touch page faults of every allocator's metadata).
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "bench/bench_util.h"

namespace {

using mf2_bench::SplitMix64;

double RssMib() {
  const long kib = mf2_bench::CurrentRssKib();
  return kib < 0 ? -1 : static_cast<double>(kib) / 1024.0;
}

double CpuSeconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct Message {
  void* p;
  size_t size;
};

// A one-slot hand-off between the two threads (a whole round's batch at a time).
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Message>* batch = nullptr;  // producer -> consumer
  bool batch_done = true;                 // consumer -> producer
  bool stop = false;
};

struct Args {
  size_t total_bytes;
  int keep_percent;
  int rounds;
  int resume_ms;
  int scratch_percent;
  Exchange* ex;
  double resume_seconds = 0;  // the producer's time allocating resumed batches
  uint64_t resume_allocs = 0;
};

char* MallocOrDie(size_t size) {
  char* p = static_cast<char*>(std::malloc(size));
  if (p == nullptr) {
    std::fprintf(stderr, "malloc(%zu) failed\n", size);
    std::exit(1);
  }
  return p;
}

// Allocates messages of `total` bytes into `batch`; with `scratch_percent`, scratch blocks too,
// freed at the end (by the calling thread).
void Produce(std::vector<Message>* batch, size_t total, SplitMix64* rng,
             int scratch_percent = 0) {
  batch->clear();
  std::vector<char*> scratch;
  size_t bytes = 0;
  while (bytes < total) {
    const size_t size = 16 + rng->Next() % 4081;
    char* p = MallocOrDie(size);
    p[0] = static_cast<char>(size);
    p[size - 1] = static_cast<char>(size);
    batch->push_back(Message{p, size});
    bytes += size;
    if (scratch_percent > 0 && static_cast<int>(rng->Next() % 100) < scratch_percent) {
      char* t = MallocOrDie(16 + rng->Next() % 4081);
      t[0] = 1;
      scratch.push_back(t);
    }
  }
  for (char* t : scratch) std::free(t);
}

void* Producer(void* arg) {
  Args* a = static_cast<Args*>(arg);
  SplitMix64 rng(4141);
  std::vector<Message> batches[2];
  std::vector<Message> resumed;
  for (int r = 0; r < a->rounds; ++r) {
    std::vector<Message>& batch = batches[r % 2];
    Produce(&batch, a->total_bytes, &rng, a->scratch_percent);
    std::unique_lock<std::mutex> lock(a->ex->mu);
    a->ex->cv.wait(lock, [&] { return a->ex->batch_done; });
    a->ex->batch = &batch;
    a->ex->batch_done = false;
    a->ex->cv.notify_all();
    if (a->resume_ms > 0) {
      // Not idle for long: allocate as much again while the consumer frees.
      lock.unlock();
      mf2_bench::SleepSeconds(a->resume_ms / 1000.0);
      const double t0 = mf2_bench::NowSeconds();
      Produce(&resumed, a->total_bytes, &rng);
      a->resume_seconds += mf2_bench::NowSeconds() - t0;
      a->resume_allocs += resumed.size();
      lock.lock();
    }
    // From here the producer allocates nothing until the consumer is done with the batch.
    a->ex->cv.wait(lock, [&] { return a->ex->batch_done; });
    for (const Message& m : resumed) std::free(m.p);
    resumed.clear();
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const double total_mib = mf2_bench::ArgOr(argc, argv, 1, 256);
  const int keep_percent = static_cast<int>(mf2_bench::ArgOr(argc, argv, 2, 10));
  const int rounds = static_cast<int>(mf2_bench::ArgOr(argc, argv, 3, 3));
  const double spread_ms = mf2_bench::ArgOr(argc, argv, 4, 0);
  const int resume_ms = static_cast<int>(mf2_bench::ArgOr(argc, argv, 5, 0));
  const double idle_s = mf2_bench::ArgOr(argc, argv, 6, 1);
  const int scratch_percent = static_cast<int>(mf2_bench::ArgOr(argc, argv, 7, 0));
  Exchange ex;
  Args args{static_cast<size_t>(total_mib * 1024 * 1024), keep_percent, rounds, resume_ms,
            scratch_percent, &ex};
  pthread_t producer;
  pthread_create(&producer, nullptr, &Producer, &args);

  uint64_t freed = 0;
  double free_seconds = 0;
  double last_ratio = 0;
  for (int r = 0; r < rounds; ++r) {
    std::vector<Message>* batch;
    {
      std::unique_lock<std::mutex> lock(ex.mu);
      ex.cv.wait(lock, [&] { return ex.batch != nullptr; });
      batch = ex.batch;
      ex.batch = nullptr;
    }
    const size_t keep_from = batch->size() - batch->size() * static_cast<size_t>(keep_percent) / 100;
    size_t live = 0;
    for (size_t i = keep_from; i < batch->size(); ++i) live += (*batch)[i].size;
    constexpr size_t kSlices = 50;
    const size_t slices = spread_ms > 0 ? kSlices : 1;
    for (size_t s = 0; s < slices; ++s) {
      if (s > 0) mf2_bench::SleepSeconds(spread_ms / 1000.0 / kSlices);
      const double t0 = mf2_bench::NowSeconds();
      for (size_t i = keep_from * s / slices; i < keep_from * (s + 1) / slices; ++i) {
        const Message& m = (*batch)[i];
        if (static_cast<char*>(m.p)[0] != static_cast<char>(m.size)) {
          std::fprintf(stderr, "message corrupted\n");
          return 1;
        }
        std::free(m.p);
      }
      free_seconds += mf2_bench::NowSeconds() - t0;
    }
    freed += keep_from;
    const double rss0 = RssMib();
    mf2_bench::SleepSeconds(0.010);
    const double rss10 = RssMib();
    mf2_bench::SleepSeconds(0.090);
    const double rss100 = RssMib();
    const double live_mib = static_cast<double>(live) / (1024.0 * 1024.0);
    last_ratio = rss100 / live_mib;
    std::printf("round=%d live_mib=%.1f rss0_mib=%.1f rss10_mib=%.1f rss100_mib=%.1f "
                "rss100_over_live=%.2f\n",
                r, live_mib, rss0, rss10, rss100, last_ratio);
    for (size_t i = keep_from; i < batch->size(); ++i) std::free((*batch)[i].p);
    std::lock_guard<std::mutex> lock(ex.mu);
    ex.batch_done = true;
    ex.cv.notify_all();
  }
  pthread_join(producer, nullptr);
  // The idle period: first 2 s in which an allocator may still be returning memory (one-off
  // work, reported as a total), then `idle_s` seconds in which nothing should run at all.
  const double rss_idle0 = RssMib();
  const double cpu0 = CpuSeconds();
  mf2_bench::SleepSeconds(2.0);
  const double cpu1 = CpuSeconds();
  const double rss_idle2 = RssMib();
  mf2_bench::SleepSeconds(idle_s);
  const double idle_cpu_ms = 1000 * (CpuSeconds() - cpu1) / idle_s;
  std::printf("rss100_over_live_last=%.2f\n", last_ratio);
  std::printf("rss_idle_mib=%.1f (at the start of the idle period) %.1f (2 s later) %.1f (end)\n",
              rss_idle0, rss_idle2, RssMib());
  std::printf("idle_release_cpu_ms=%.2f (the first 2 s)\n", 1000 * (cpu1 - cpu0));
  std::printf("idle_cpu_ms=%.3f (per second, over the next %.0f s)\n", idle_cpu_ms, idle_s);
  if (resume_ms > 0) {
    std::printf("producer_resume_allocs_per_s=%.0f\n",
                args.resume_seconds > 0 ? static_cast<double>(args.resume_allocs) /
                                              args.resume_seconds
                                        : 0.0);
  }
  std::printf("Throughput = %.0f frees per second\n",
              free_seconds > 0 ? static_cast<double>(freed) / free_seconds : 0.0);
  std::printf("elapsed_seconds = %.3f\n", free_seconds);
  std::printf("peak_rss_kib = %ld\n", mf2_bench::PeakRssKib());
  return 0;
}
