#include "mf2/reclaimer.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "mf2/adoption.h"
#include "mf2/check.h"
#include "mf2/decay.h"
#include "mf2/fence.h"
#include "mf2/futex.h"
#include "mf2/heap.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"

namespace mf2 {
namespace reclaimer {
namespace {

enum State : uint32_t { kNotStarted = 0, kRunning = 1, kFailed = 2 };

// Relaxed-or-stronger as noted at each use; see reclaimer.h for the wake-up protocol.
std::atomic<uint32_t> g_state{kNotStarted};
std::atomic<uint32_t> g_pending{0};              // the futex word: a notification to consume
std::atomic<bool> g_waiting{false};              // the thread waits for a notification
// A heap worked again since an idle flush (NotifyHeapActive), and whether the thread waits
// without a timeout, the only wait such a heap must interrupt (see NotifyHeapActive).
std::atomic<uint32_t> g_heaps_active{0};
std::atomic<bool> g_waiting_untimed{false};
std::atomic<uint64_t> g_passes{0};
std::atomic<uint32_t> g_timer{0};                // never written: the timed sleep's futex word
std::atomic<uint64_t> g_notified_ns{0};          // when `pending` last went 0 -> 1

// A pass that found owners not idle yet waits at least this long before the next one.
constexpr uint64_t kMinWaitNs = 1'000'000;
constexpr int kMaxHeapsPerScan = 256;

// One pass: sweeps every heap whose owner has been idle long enough. Returns 0 when no sweep is
// owed, else how long to wait before the next pass: until the earliest owner with whole pages
// waiting would become idle (it was just seen for the first time, or is busy), at least
// kMinWaitNs. A heap whose whole count stays above 0 after a sweep of its idle owner holds a
// miscounted page (heap.h, xwhole_unswept_), not an owed one. Sets *flush_wait_ns to 0 when no
// idle flush is owed, else to how long until the earliest owed one (at least kMinWaitNs).
uint64_t Pass(Heap* self, uint64_t* flush_wait_ns) {
  *flush_wait_ns = 0;
  if (!GetPolicy().background_reclaim) return 0;
  // Pages a sweep took over but could not release (a corrupt remote list, reported) come back
  // here when freed: drain them too, so the helper never strands what it holds.
  self->ProcessAllPending();
  static Heap* heaps[kMaxHeapsPerScan];  // only this thread scans
  const int n = HeapRegistry::Global().CollectHeapsWithWholePages(self, heaps, kMaxHeapsPerScan);
  uint64_t wait_ns = n == kMaxHeapsPerScan ? kMinWaitNs : 0;  // more heaps than one scan holds
  for (int i = 0; i < n; ++i) {
    uint64_t idle_in_ns = 0;
    if (!self->ReclaimIdleOwner_mt(heaps[i], &idle_in_ns)) {
      wait_ns = EarlierWait(wait_ns, std::max(idle_in_ns, kMinWaitNs));
    }
  }
  // Heaps that hold remote frees back and have been idle as long: their held frees go out. Such
  // a heap sends them within 16 slow paths, which a thread that only frees never reaches, and
  // until then they pin their pages (an idle producer's among them), which cannot come back
  // whole. A holder that is not idle yet is owed a flush: wait for it as for an owner.
  const int m =
      HeapRegistry::Global().CollectHeapsHoldingRemoteFrees(self, heaps, kMaxHeapsPerScan);
  if (m == kMaxHeapsPerScan) wait_ns = EarlierWait(wait_ns, kMinWaitNs);
  for (int i = 0; i < m; ++i) {
    uint64_t idle_in_ns = 0;
    if (!self->FlushIdleHolder_mt(heaps[i], &idle_in_ns)) {
      wait_ns = EarlierWait(wait_ns, std::max(idle_in_ns, kMinWaitNs));
    }
  }
  // Heaps not flushed since their last slow path: once their owner has taken no slow path for
  // idle_flush_after_ns, its caches, held frees and empty pages come back, and its slot pages go
  // to the OS. A flushed heap is not looked at again until its owner's next slow path, which
  // notifies us (Heap::AllocateSlow): a process whose threads all sleep ends with every heap
  // flushed and this thread asleep. The wait for the next one ends early at a notification
  // (Main): it may last a second, and a completion meanwhile must not wait that long for its
  // sweep (Starved). Every owed heap is looked at, kMaxHeapsPerScan at a time, so that a process
  // of many busy threads does not make this thread wake every kMinWaitNs for the ones beyond.
  if (GetPolicy().idle_flush_after_ns != 0 && AsymmetricFenceHeavyAvailable()) {
    uint64_t flush_wait = 0;
    // Heaps of the earlier scans that are still owed: the next scan skips them (each scan makes
    // progress; a heap abandoned meanwhile may make it skip one more, seen again next pass).
    int skip = 0;
    for (int k = kMaxHeapsPerScan; k == kMaxHeapsPerScan;) {
      k = HeapRegistry::Global().CollectHeapsOwedAnIdleFlush(self, heaps, kMaxHeapsPerScan, skip);
      for (int i = 0; i < k; ++i) {
        uint64_t idle_in_ns = 0;
        if (!self->FlushLongIdleOwner_mt(heaps[i], &idle_in_ns)) {
          flush_wait = EarlierWait(flush_wait, std::max(idle_in_ns, kMinWaitNs));
        }
        if (heaps[i]->IdleFlushOwed_mt()) ++skip;
      }
    }
    *flush_wait_ns = flush_wait;
  }
  // Relaxed: a statistic.
  g_passes.fetch_add(1, std::memory_order_relaxed);
  return wait_ns;
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
  for (;;) {
    // seq_cst: the clear precedes this pass's loads of the whole counts (reclaimer.h).
    g_pending.store(0, std::memory_order_seq_cst);
    // An exchange: it reads the last NotifyHeapActive's exchange or a later one and acquires
    // the epochs those notifiers stored before (release sequence): this pass sees them owed.
    g_heaps_active.exchange(0, std::memory_order_seq_cst);
    uint64_t flush_wait_ns = 0;
    uint64_t wait_ns = 0;
    {
      MutexLock pass(&PassMutex());
      wait_ns = Pass(self, &flush_wait_ns);
    }
    // The decay of the page source's cache and of the large mappings' cache, each on its own
    // schedule (0: nothing cached, or decay off): wake for the earlier, or for an idle flush.
    const uint64_t now = NowNs();
    const uint64_t decay_ns = EarlierWait(OsPageSource::Global().Decay(now), LargeDecay(now));
    const uint64_t timeout_ns = EarlierWait(decay_ns, flush_wait_ns);
    if (wait_ns != 0) {
      // Sleep until the earliest owner owed a sweep would be idle (or a decay or a flush is due),
      // whatever notifications come meanwhile: they come from completions (while a consumer
      // frees, one every few frees), and the next pass sweeps every idle owner's whole pages
      // anyway. A word nobody changes: the wait is a plain timed sleep (the thread blocks every
      // signal).
      FutexWait(&g_timer, 0, EarlierWait(wait_ns, timeout_ns));
      continue;
    }
    // No sweep owed: wait for a notification, until the decay or an idle flush is due, or
    // without a timeout.
    // seq_cst store, then load: against a notifier's exchange of pending and load of this flag.
    g_waiting.store(true, std::memory_order_seq_cst);
    // Without a timeout, also against NotifyHeapActive's "heaps_active = 1; read the flag":
    // seq_cst store, then load (store-buffering shape); a heap that worked again meanwhile
    // means another pass now.
    const bool untimed = timeout_ns == 0;
    if (untimed) g_waiting_untimed.store(true, std::memory_order_seq_cst);
    if (g_pending.load(std::memory_order_seq_cst) == 0 &&
        !(untimed && g_heaps_active.load(std::memory_order_seq_cst) != 0)) {
      FutexWait(&g_pending, 0, timeout_ns);
    }
    // Relaxed: only notifiers read them, and a stale `true` costs them one spurious wake.
    g_waiting_untimed.store(false, std::memory_order_relaxed);
    g_waiting.store(false, std::memory_order_relaxed);
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

void NotifyOrStart(bool start) {
  if (!GetPolicy().background_reclaim) return;
  // Relaxed: see Start.
  const uint32_t state = g_state.load(std::memory_order_relaxed);
  if (state == kFailed) return;
  if (state == kNotStarted) {
    if (!start) return;
    Start();
  }
  // seq_cst load: if it reads 1, the reclaimer's clear comes after it in the single total order,
  // and so does the pass that follows the clear, which then sees our count (reclaimer.h).
  if (g_pending.load(std::memory_order_seq_cst) != 0) return;
  // seq_cst exchange, then load: against the reclaimer's store of the flag and load of pending.
  if (g_pending.exchange(1, std::memory_order_seq_cst) == 0) {
    // Relaxed: a heuristic for Starved() (a stale time makes a freer sweep once, or wait once).
    g_notified_ns.store(NowNs(), std::memory_order_relaxed);
    if (g_waiting.load(std::memory_order_seq_cst)) FutexWake(&g_pending);
  }
}

}  // namespace

void Notify() { NotifyOrStart(/*start=*/true); }
void NotifyHeapActive() {
  if (!GetPolicy().background_reclaim) return;
  // Relaxed: see Start.
  if (g_state.load(std::memory_order_relaxed) != kRunning) return;
  // seq_cst exchange, always: the reclaimer's next pass begins with an exchange of this word,
  // which reads ours or a later one and synchronises with us (release sequence), so that pass
  // sees our slow-path epoch. Only a wait without a timeout is interrupted for it: any other
  // ends within the idle threshold (or sooner), and a pass then finds the heap anyway. Waking
  // the thread at every heap's first slow path cost larson, whose threads replace each other
  // all the time, 175 wake-ups a second. seq_cst exchange, then load: against the reclaimer's
  // "waiting_untimed = true; read heaps_active" (store-buffering shape).
  g_heaps_active.exchange(1, std::memory_order_seq_cst);
  if (g_waiting_untimed.load(std::memory_order_seq_cst)) NotifyOrStart(/*start=*/false);
}

void StartForIdleFlush() {
  // Relaxed: see Start; a hint (a racing starter loses Start's compare-exchange).
  if (g_state.load(std::memory_order_relaxed) != kNotStarted) return;
  const Policy& policy = GetPolicy();
  if (!policy.background_reclaim || policy.idle_flush_after_ns == 0) return;
  Start();
}
void NotifyIfRunning() { NotifyOrStart(/*start=*/false); }

bool Starved() {
  // Relaxed: a heuristic; a wrong answer costs a freer one sweep attempt, or one skipped.
  if (g_pending.load(std::memory_order_relaxed) == 0 ||
      g_state.load(std::memory_order_relaxed) != kRunning) {
    return false;
  }
  return WaitedTooLong(NowNs(), g_notified_ns.load(std::memory_order_relaxed));
}

bool Available() {
  // Relaxed: a hint; a reclaimer that fails to start later leaves the next requests to freers.
  return GetPolicy().background_reclaim && g_state.load(std::memory_order_relaxed) != kFailed;
}

Mutex& PassMutex() {
  static Mutex mu;
  return mu;
}

void AfterForkInChild() {
  // Relaxed: the child has one thread.
  g_state.store(kNotStarted, std::memory_order_relaxed);
  g_pending.store(0, std::memory_order_relaxed);
  g_waiting.store(false, std::memory_order_relaxed);
  g_heaps_active.store(0, std::memory_order_relaxed);
  g_waiting_untimed.store(false, std::memory_order_relaxed);
}

uint64_t Passes() { return g_passes.load(std::memory_order_relaxed); }
bool WaitingForTesting() {
  // seq_cst: read after the test's own last operation in the single total order.
  return g_waiting.load(std::memory_order_seq_cst) &&
         g_pending.load(std::memory_order_seq_cst) == 0;
}
bool Running() { return g_state.load(std::memory_order_relaxed) == kRunning; }

}  // namespace reclaimer
}  // namespace mf2
