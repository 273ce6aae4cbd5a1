#include "mf2/reclaimer.h"

#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "mf2/check.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"

namespace mf2 {
namespace reclaimer {
namespace {

enum State : uint32_t { kNotStarted = 0, kRunning = 1, kFailed = 2 };

// Relaxed-or-stronger as noted at each use; see reclaimer.h for the wake-up protocol.
std::atomic<uint32_t> g_state{kNotStarted};
std::atomic<uint32_t> g_pending{0};              // the futex word: a notification to consume
std::atomic<bool> g_sleeping_forever{false};     // the thread waits without a timeout
std::atomic<uint64_t> g_passes{0};

constexpr uint64_t kMaxBackoffNs = 1'000'000'000;
constexpr int kMaxHeapsPerScan = 256;

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns) {
  timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
              static_cast<long>(timeout_ns % 1'000'000'000)};
  // Returns at once if *word != expected (EAGAIN), on a wake, on timeout or on a signal.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected,
          timeout_ns == 0 ? nullptr : &ts, nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr,
          0);
}

// One pass: sweeps every heap whose owner has been idle long enough; returns whether some
// owner with whole pages waiting was not idle yet (just seen for the first time, or busy). A heap
// whose whole count stays above 0 after a sweep of its idle owner holds a miscounted page
// (heap.h, xwhole_unswept_), not an owed one.
bool Pass(Heap* self) {
  if (!GetPolicy().background_reclaim) return false;
  // Pages a sweep took over but could not release (a corrupt remote list, reported) come back
  // here when freed: drain them too, so the helper never strands what it holds.
  self->ProcessAllPending();
  static Heap* heaps[kMaxHeapsPerScan];  // only this thread scans
  const int n = HeapRegistry::Global().CollectHeapsWithWholePages(self, heaps, kMaxHeapsPerScan);
  bool owed = n == kMaxHeapsPerScan;
  for (int i = 0; i < n; ++i) {
    if (!self->ReclaimIdleOwner_mt(heaps[i])) owed = true;
  }
  // Relaxed: a statistic.
  g_passes.fetch_add(1, std::memory_order_relaxed);
  return owed;
}

void* Main(void*) {
  Heap* self = HeapRegistry::Global().AcquireNewHeap(&OsPageSource::Global());
  if (self == nullptr) {
    // Relaxed: nothing is published through it; notifications stop trying.
    g_state.store(kFailed, std::memory_order_relaxed);
    return nullptr;
  }
  self->set_helper();
  // Listed as a thread's heap: in a fork child, where this thread does not exist, it is an
  // orphan that ReclaimExitedThreadHeaps releases.
  HeapRegistry::Global().RegisterThreadHeap(self, static_cast<int32_t>(syscall(SYS_gettid)));
  uint64_t backoff_ns = 0;
  for (;;) {
    // seq_cst: the clear precedes this pass's loads of the whole counts (reclaimer.h).
    g_pending.store(0, std::memory_order_seq_cst);
    const uint64_t first_ns = std::max<uint64_t>(GetPolicy().reclaim_after_ns / 2, 1'000'000);
    if (Pass(self)) {
      backoff_ns = backoff_ns == 0 ? first_ns : std::min(backoff_ns * 2, kMaxBackoffNs);
      FutexWait(&g_pending, 0, backoff_ns);  // a notification cuts it short
      continue;
    }
    backoff_ns = 0;
    // seq_cst store, then load: against a notifier's exchange of pending and load of this flag.
    g_sleeping_forever.store(true, std::memory_order_seq_cst);
    if (g_pending.load(std::memory_order_seq_cst) == 0) FutexWait(&g_pending, 0, 0);
    // Relaxed: only notifiers read it, and a stale `true` costs them one spurious wake.
    g_sleeping_forever.store(false, std::memory_order_relaxed);
  }
  return nullptr;
}

void Start() {
  uint32_t expected = kNotStarted;
  // Relaxed: one notifier wins the right to start the thread; nothing else is published.
  if (!g_state.compare_exchange_strong(expected, kRunning, std::memory_order_relaxed)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  // Block every signal in the new thread: the program's handlers must not run on it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  const int rc = pthread_create(&thread, &attr, &Main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  // Relaxed: as above. A program that cannot start threads keeps the freeing-thread reclaim.
  if (rc != 0) g_state.store(kFailed, std::memory_order_relaxed);
}

}  // namespace

void Notify() {
  if (!GetPolicy().background_reclaim) return;
  // Relaxed: see Start.
  const uint32_t state = g_state.load(std::memory_order_relaxed);
  if (state == kFailed) return;
  if (state == kNotStarted) Start();
  // seq_cst load: if it reads 1, the reclaimer's clear comes after it in the single total order,
  // and so does the pass that follows the clear, which then sees our count (reclaimer.h).
  if (g_pending.load(std::memory_order_seq_cst) != 0) return;
  // seq_cst exchange, then load: against the reclaimer's store of the flag and load of pending.
  if (g_pending.exchange(1, std::memory_order_seq_cst) == 0 &&
      g_sleeping_forever.load(std::memory_order_seq_cst)) {
    FutexWake(&g_pending);
  }
}

void AfterForkInChild() {
  // Relaxed: the child has one thread.
  g_state.store(kNotStarted, std::memory_order_relaxed);
  g_pending.store(0, std::memory_order_relaxed);
  g_sleeping_forever.store(false, std::memory_order_relaxed);
}

uint64_t Passes() { return g_passes.load(std::memory_order_relaxed); }
bool Running() { return g_state.load(std::memory_order_relaxed) == kRunning; }

}  // namespace reclaimer
}  // namespace mf2
