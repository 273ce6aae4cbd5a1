// Helpers shared by the stress tests: iteration scaling per build configuration, a small random
// generator, a size mix, a pusher's round of its own slots and a blocking queue for hand-offs
// between threads. Stamped, shadowed
// blocks (invariants 3 and 4 of docs/protocol.md) are in checked_blocks.h.
#ifndef MF2_STRESS_STRESS_UTIL_H_
#define MF2_STRESS_STRESS_UTIL_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "mf2/check.h"
#include "mf2/policy.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MF2_STRESS_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define MF2_STRESS_ASAN 1
#endif
#endif
#if !defined(MF2_STRESS_TSAN) && defined(__SANITIZE_THREAD__)
#define MF2_STRESS_TSAN 1
#endif
#if !defined(MF2_STRESS_ASAN) && defined(__SANITIZE_ADDRESS__)
#define MF2_STRESS_ASAN 1
#endif

namespace mf2 {
namespace stress {

// Divisor for iteration counts: sanitizers and MF2's expensive checks (--config=debug, a
// whole-page walk on every slow path) run the same tests with less work, never skip them.
constexpr uint64_t kSlowdown =
#if defined(MF2_STRESS_TSAN)
    4;
#elif defined(MF2_STRESS_ASAN)
    4;
#elif MF2_EXPENSIVE
    4;
#else
    1;
#endif

constexpr uint64_t Scaled(uint64_t n) { return n / kSlowdown > 0 ? n / kSlowdown : 1; }
// Scaled(n), but at least `floor`: a count the test needs a minimum of in every build.
constexpr uint64_t ScaledAtLeast(uint64_t n, uint64_t floor) {
  return Scaled(n) < floor ? floor : Scaled(n);
}

// The stress tests run with the per-thread block caches on (the default policy), so their frees
// and allocations go through the caches' fill, flush and refill paths, and their thread exits
// flush full caches. A test about one page turns them off on purpose (one_page_stress_test);
// every other one calls this first, so an environment that turns them off (MF2_CACHE_CLASS_KB=0)
// fails loudly instead of silently testing less.
inline void ExpectCachesOn() {
  EXPECT_GT(GetPolicy().cache_class_bytes, 0u) << "stress tests run with the caches on";
}

// xorshift64*: deterministic per thread, no locks, no allocation.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
  bool OneIn(uint64_t n) { return Below(n) == 0; }

 private:
  uint64_t s_;
};

// A size mix: mostly small, some mid-size (several pages per class), rarely beyond the largest
// class (large allocations, served by the OS).
inline size_t RandomSize(Rng& rng, bool allow_large = true) {
  const uint64_t r = rng.Below(1000);
  if (r < 700) return 1 + rng.Below(256);
  if (r < 950) return 257 + rng.Below(4096);
  if (r < 998 || !allow_large) return 4353 + rng.Below(60 * 1024);
  return 65 * 1024 + rng.Below(64 * 1024);
}

// A 64-bit mix of two words (payload stamps, shard hashes).
inline uint64_t Mix(uint64_t a, uint64_t b) {
  uint64_t x = a * 0xBF58476D1CE4E5B9ull ^ (b + 0x94D049BB133111EBull);
  x ^= x >> 31;
  return x * 0x9E3779B97F4A7C15ull;
}

// A pusher's own slots [first, first + count), visited in turn: Next returns the next one that
// `in_flight(i)` says is free (handed back by the consumer), and yields the CPU after a whole lap
// of slots still in flight.
class OwnSlots {
 public:
  OwnSlots(size_t first, size_t count) : first_(first), count_(count) {}
  template <typename InFlight>
  size_t Next(InFlight in_flight) {
    for (;;) {
      const size_t i = first_ + next_;
      next_ = (next_ + 1) % count_;
      if (!in_flight(i)) return i;
      if (next_ == 0) std::this_thread::yield();  // every slot of ours is in flight
    }
  }

 private:
  const size_t first_;
  const size_t count_;
  size_t next_ = 0;
};

// A blocking multi-producer multi-consumer queue with a capacity bound; Close() wakes every
// consumer, and Pop() returns false once the queue is closed and empty. The mutex is the
// user-level hand-off of a message pointer between threads.
template <typename T>
class BlockingQueue {
 public:
  explicit BlockingQueue(size_t capacity) : capacity_(capacity) {}

  void Push(T v) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_; });
    items_.push_back(v);
    not_empty_.notify_one();
  }
  bool Pop(T* out) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return false;
    *out = items_.front();
    items_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<T> items_;
  const size_t capacity_;
  bool closed_ = false;
};

}  // namespace stress
}  // namespace mf2

#endif  // MF2_STRESS_STRESS_UTIL_H_
