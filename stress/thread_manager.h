// A small thread manager for stress tests (after tcmalloc's testing/thread_manager.h).
//
//   ThreadManager tm;
//   tm.Start(4, [&](int id) { ... one iteration ... });   // all 4 start together
//   ... tm.Stop();                                        // ask them to stop, join
//
//   RunTogether(4, [&](int id) { ... whole body ... });   // start together, run once, join
//   ThreadGroup g; g.Start(4, body); ...; g.Join();       // the same, main thread free meanwhile
//
// Threads are released from one start barrier so that they really overlap (a thread created
// first does not finish its work before the last one exists). Barrier is also usable on its own,
// to park workers between phases (e.g. while the main thread runs HeapRegistry::CheckAll).
#ifndef MF2_STRESS_THREAD_MANAGER_H_
#define MF2_STRESS_THREAD_MANAGER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace mf2 {
namespace stress {

// A reusable barrier for `count` threads. Wait() returns once `count` threads have called it;
// everything before any Wait() of a round happens before everything after every Wait().
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int count_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

class ThreadManager {
 public:
  ThreadManager() = default;
  ThreadManager(const ThreadManager&) = delete;
  ThreadManager& operator=(const ThreadManager&) = delete;
  ~ThreadManager() {
    if (!threads_.empty()) Stop();
  }

  // Starts `n` threads that call `body(id)` in a loop until Stop(). Returns once all of them
  // are running (released together from one barrier).
  void Start(int n, std::function<void(int)> body) {
    body_ = std::move(body);
    stop_.store(false, std::memory_order_relaxed);
    // Shared: a thread may still be waking up inside Wait() after the last one has returned.
    auto start = std::make_shared<Barrier>(n + 1);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, i, start] {
        start->Wait();
        // Relaxed: only a stop request; the join in Stop() orders everything else.
        while (!stop_.load(std::memory_order_relaxed)) body_(i);
      });
    }
    start->Wait();
  }

  // Asks every thread to stop after its current iteration and joins them.
  void Stop() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
  std::function<void(int)> body_;
  std::atomic<bool> stop_{false};
};

// Threads that each run `body(id)` once, released together from one start barrier. Unlike
// RunTogether, Start() returns while they run, so the caller can take part in their barriers
// (e.g. park them and run HeapRegistry::CheckAll) before Join().
class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() { Join(); }

  void Start(int n, std::function<void(int)> body) {
    body_ = std::move(body);
    // Shared: a thread may still be waking up inside Wait() after the last one has returned.
    auto start = std::make_shared<Barrier>(n + 1);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, i, start] {
        start->Wait();
        body_(i);
      });
    }
    start->Wait();
  }
  void Join() {
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
  std::function<void(int)> body_;
};

// Runs `body(id)` once on each of `n` threads released together; returns after joining them.
inline void RunTogether(int n, std::function<void(int)> body) {
  ThreadGroup group;
  group.Start(n, std::move(body));
  group.Join();
}

}  // namespace stress
}  // namespace mf2

#endif  // MF2_STRESS_THREAD_MANAGER_H_
