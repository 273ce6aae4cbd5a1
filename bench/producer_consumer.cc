// A pipeline of threads that each free what the previous stage allocated and allocate anew:
//
//   producer_consumer stages seconds min_size max_size
//   e.g. producer_consumer 4 5 16 256
//
// Stage 0 allocates messages (size uniform in [min_size, max_size]), stamps a header and pushes
// them into a bounded single-producer/single-consumer ring to stage 1. Every middle stage pops a
// message, checks its header, frees it (a remote free: stage i-1 allocated it and is alive and
// allocating) and allocates a new message of a fresh size for stage i+1. The last stage checks and
// frees. A stage whose ring is empty (or full) yields the CPU, so more stages than cores still make
// progress. Main sleeps `seconds`, raises the stop flag, joins the stages and frees what is left in
// the rings.
//
// Output: `Throughput = N frees per second` (frees by stages 1..stages-1 / elapsed; each free is of
// a block allocated by another live thread), `messages_delivered` (frees by the last stage), then
// the common footer (bench_util.h). Defaults: 4 5 16 256.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"

namespace {

using mf2_bench::SplitMix64;

constexpr int kMaxStages = 64;
constexpr uint64_t kRingSize = 1024;  // power of two
constexpr uint64_t kMagic = 0x6d66325f6d736721ULL;

struct Header {
  uint64_t magic;
  uint64_t size;
};

// Bounded SPSC ring: `tail_` is written only by the producer, `head_` only by the consumer.
class Ring {
 public:
  bool Push(void* message) {
    // relaxed: only this thread writes tail_.
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    // acquire: the consumer's release of head_ means it has finished reading that cell.
    if (tail - head_.load(std::memory_order_acquire) == kRingSize) return false;
    cells_[tail & (kRingSize - 1)] = message;
    // release: publishes the cell (and the message's contents) to the consumer.
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  void* Pop() {
    // relaxed: only this thread writes head_.
    const uint64_t head = head_.load(std::memory_order_relaxed);
    // acquire: pairs with the producer's release of tail_.
    if (head == tail_.load(std::memory_order_acquire)) return nullptr;
    void* message = cells_[head & (kRingSize - 1)];
    // release: hands the cell back to the producer.
    head_.store(head + 1, std::memory_order_release);
    return message;
  }

 private:
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) void* cells_[kRingSize] = {};
};

Ring g_rings[kMaxStages];
std::atomic<bool> g_stop{false};
int g_stages = 4;
uint64_t g_min_size = 16;
uint64_t g_max_size = 256;

struct alignas(64) StageState {
  int index = 0;
  int64_t frees = 0;  // written by the stage, read by main after the join
};

void* NewMessage(SplitMix64& rng) {
  const uint64_t size = g_min_size + rng.Below(g_max_size - g_min_size + 1);
  Header* header = static_cast<Header*>(mf2_bench::CheckedMalloc(size));
  header->magic = kMagic;
  header->size = size;
  return header;
}

void CheckAndFree(void* message) {
  const Header* header = static_cast<const Header*>(message);
  if (header->magic != kMagic || header->size < g_min_size || header->size > g_max_size) {
    std::fprintf(stderr, "producer_consumer: corrupted message %p\n", message);
    std::abort();
  }
  std::free(message);
}

bool Stopped() {
  // relaxed: a stop hint; the joins order everything else.
  return g_stop.load(std::memory_order_relaxed);
}

// Pushes `message` into `ring`, yielding while it is full. Returns false (message not pushed) when
// the run stops first.
bool PushOrStop(Ring& ring, void* message) {
  while (!ring.Push(message)) {
    if (Stopped()) return false;
    sched_yield();
  }
  return true;
}

void* Stage(void* arg) {
  StageState* self = static_cast<StageState*>(arg);
  const int i = self->index;
  SplitMix64 rng(0x5eed0000ULL + static_cast<uint64_t>(i));
  while (!Stopped()) {
    void* message = nullptr;
    if (i == 0) {
      message = NewMessage(rng);
    } else {
      void* input = g_rings[i - 1].Pop();
      if (input == nullptr) {
        sched_yield();
        continue;
      }
      CheckAndFree(input);
      ++self->frees;
      if (i == g_stages - 1) continue;
      message = NewMessage(rng);
    }
    if (!PushOrStop(g_rings[i], message)) {
      std::free(message);
      break;
    }
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 5) {
    std::fprintf(stderr, "usage: %s [stages [seconds [min_size [max_size]]]]  (4 5 16 256)\n",
                 argv[0]);
    return 2;
  }
  g_stages = static_cast<int>(mf2_bench::ArgOr(argc, argv, 1, 4));
  const double seconds = mf2_bench::ArgOr(argc, argv, 2, 5);
  g_min_size = static_cast<uint64_t>(mf2_bench::ArgOr(argc, argv, 3, 16));
  g_max_size = static_cast<uint64_t>(mf2_bench::ArgOr(argc, argv, 4, 256));
  if (g_stages < 2 || g_stages > kMaxStages || g_min_size < sizeof(Header) ||
      g_max_size < g_min_size) {
    std::fprintf(stderr, "producer_consumer: need 2 <= stages <= %d, %zu <= min_size <= max_size\n",
                 kMaxStages, sizeof(Header));
    return 2;
  }

  StageState states[kMaxStages];
  pthread_t threads[kMaxStages];
  const double start = mf2_bench::NowSeconds();
  for (int i = 0; i < g_stages; ++i) {
    states[i].index = i;
    if (pthread_create(&threads[i], nullptr, Stage, &states[i]) != 0) {
      std::perror("pthread_create");
      return 1;
    }
  }
  mf2_bench::SleepSeconds(seconds);
  // relaxed: the joins below order the stages' last writes before main's reads.
  g_stop.store(true, std::memory_order_relaxed);
  for (int i = 0; i < g_stages; ++i) pthread_join(threads[i], nullptr);
  const double elapsed = mf2_bench::NowSeconds() - start;

  int64_t frees = 0;
  for (int i = 1; i < g_stages; ++i) frees += states[i].frees;
  for (int i = 0; i + 1 < g_stages; ++i) {
    while (void* message = g_rings[i].Pop()) CheckAndFree(message);
  }
  std::printf("Throughput = %.0f frees per second\n", static_cast<double>(frees) / elapsed);
  std::printf("messages_delivered = %lld\n", static_cast<long long>(states[g_stages - 1].frees));
  mf2_bench::PrintFooter(elapsed);
  return 0;
}
