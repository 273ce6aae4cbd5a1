// Thread-local heaps (see thread_heap.h for the states of a thread). A pthread key whose
// destructor runs at thread exit hands the heap back to the registry.
#include "mf2/thread_heap.h"

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "mf2/heap_registry.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/reclaimer.h"

namespace mf2 {
namespace thread_heap_internal {
namespace {

void* AllocateWithoutHeap(uint32_t size_class);
void* AllocateAfterExit(uint32_t size_class);
bool FreeWithoutHeap(void* p, const char* call);

[[clang::require_constant_initialization]] Heap g_empty_heap{
    Heap::SentinelTag{}, &AllocateWithoutHeap, &FreeWithoutHeap};
[[clang::require_constant_initialization]] Heap g_dead_heap{Heap::SentinelTag{},
                                                            &AllocateAfterExit};

// The sentinels' counters (their threads' remote frees) are merged into GetStats(). A static
// constructor: registering allocates nothing, and a free before it runs only counts later.
__attribute__((constructor)) void RegisterSentinelStats() {
  HeapRegistry::Global().AddStatsSource(&g_empty_heap);
  HeapRegistry::Global().AddStatsSource(&g_dead_heap);
}

// Listed thread heaps checked per new thread heap when none is idle (a system call each).
constexpr int kExitChecks = 16;

// Remote frees by this thread while it has had no heap. Initial-exec, zero-initialised: no
// allocation, no constructor.
__thread uint32_t t_heapless_remote_frees __attribute__((tls_model("initial-exec"))) = 0;
// The owner of the first block this thread freed while it had no heap: the heap it prefers to
// take (Heap::SetMoveTo). Compared only as an address.
__thread Heap* t_first_freed_owner __attribute__((tls_model("initial-exec"))) = nullptr;
// Whether this thread has taken a heap in this process, and how many threads have: the second
// makes the process multi-threaded, and starts the background reclaimer (TakeHeap). Not the
// registry's heap count, which a fork child inherits: a single-threaded child of a threaded
// parent would start a thread at its first heap. Relaxed: a hint.
__thread bool t_took_heap __attribute__((tls_model("initial-exec"))) = false;
std::atomic<uint32_t> g_threads_with_heaps{0};

pthread_key_t g_key;
pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

void ThreadExit(void* arg) {
  Heap* heap = static_cast<Heap*>(arg);
  if (heap == nullptr || heap != t_heap) return;
  t_heap = &g_dead_heap;
  HeapRegistry::Global().ReleaseHeap(heap);
}

void InitOnce() {
  MF2_CHECK(pthread_key_create(&g_key, &ThreadExit) == 0, "pthread_key_create");
}

void* MoveToHeap(Heap* from, uint32_t size_class);

// Makes `heap` the calling thread's: its pointer, its exit hook and its listing.
void BindHeap(Heap* heap) {
  t_heap = heap;
  pthread_setspecific(g_key, heap);
  HeapRegistry::Global().RegisterThreadHeap(heap, static_cast<int32_t>(syscall(SYS_gettid)));
}

// Undoes BindHeap: the thread has no heap (the empty sentinel), and `heap` is handed back.
void UnbindHeap(Heap* heap) {
  t_heap = &g_empty_heap;
  pthread_setspecific(g_key, nullptr);
  HeapRegistry::Global().ReleaseHeap(heap);
}

// Takes a heap for the calling thread (which has none) and arms its exit hook; nullptr when no
// heap can be had. When no heap is idle, the heaps of threads that exited without handing theirs
// back are released first (a thread whose first allocation came in its last key destructor round
// never ran ThreadExit). The heap of the first block the thread freed is taken when it is idle.
// When it is still claimed, its thread is often exiting: a worker that starts its successor and
// returns (Larson; a thread per task). The new thread then yields the CPU up to
// MF2_SUCCESSOR_YIELDS times (2: on larson-classic with four workers on two CPUs, 55% of new
// threads found the predecessor's heap handed back without a yield, 53-62% after one, 96% after
// two), so that on a busy machine the exiting thread runs and hands its heap back. Without
// that, the successor fills a second heap beside the one whose blocks it frees, and the process
// holds both for the successor's lifetime (bench/RESULTS.md). If the heap is still claimed
// after that (its thread lives on), the thread takes another and moves at one of its next slow
// paths should the heap be handed back (Heap::SetMoveTo). A thread pays the yields once, at its
// first allocation, and only if it freed first; on an idle CPU a yield returns at once
// (bench/first_free_start.cc).
Heap* TakeHeap() {
  pthread_once(&g_key_once, &InitOnce);
  HeapRegistry& registry = HeapRegistry::Global();
  if (registry.idle_count() == 0) registry.ReclaimExitedThreadHeaps(nullptr, kExitChecks);
  Heap* preferred = t_first_freed_owner;
  t_first_freed_owner = nullptr;
  const uint32_t yields = preferred != nullptr ? GetPolicy().successor_yields : 0;
  for (uint32_t i = 0; i < yields; ++i) {
    if (preferred->handed_back_relaxed()) break;
    sched_yield();
  }
  Heap* heap = registry.AcquireHeap(&OsPageSource::Global(), preferred);
  if (heap == nullptr) return nullptr;
  if (preferred != nullptr && heap != preferred) heap->SetMoveTo(preferred, &MoveToHeap);
  BindHeap(heap);
  // A second thread with a heap: the process is multi-threaded, and one of its threads may go
  // idle holding what it allocated. Outside any operation of `heap`, which starting a thread
  // allocates from.
  if (!t_took_heap) {
    t_took_heap = true;
    if (g_threads_with_heaps.fetch_add(1, std::memory_order_relaxed) + 1 >= 2) {
      reclaimer::StartForIdleFlush();
    }
  }
  return heap;
}

// Heap::AllocateSlow of `from`, the thread's heap, outside any operation: the heap it wanted
// (from->move_to()) is idle now. Hands `from` back as at thread exit, takes that one (or, if
// another thread took it first, the heap released last, often `from` itself) and allocates.
void* MoveToHeap(Heap* from, uint32_t size_class) {
  MF2_CHECK(from == t_heap, "only the thread's own heap moves");
  Heap* to = from->move_to();
  UnbindHeap(from);  // clears its move
  Heap* heap = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global(), to);
  if (heap == nullptr) {
    errno = ENOMEM;
    return nullptr;  // heapless: the next allocation tries TakeHeap again
  }
  if (heap == to) MF2_STAT_INC(heap->mutable_stats(), heap_moves);
  BindHeap(heap);
  return heap->Allocate(ClassInfo(size_class).size);
}

// First allocation of a thread: take a heap, then allocate from it.
void* AllocateWithoutHeap(uint32_t size_class) {
  Heap* heap = TakeHeap();
  if (heap == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  return heap->Allocate(ClassInfo(size_class).size);
}

// A free by a thread that has no heap (every such free is remote: one compare-exchange onto the
// page's remote stack). A thread that frees a few blocks needs no heap; one that keeps freeing
// (a consumer that never allocates) takes one at its kHeaplessFreesBeforeHeap-th free, so that
// its frees are held back and pushed in chains (Heap::HoldRemote) like any owner's: one
// compare-exchange on a page's remote word per chain instead of one per block. Such a thread
// never reaches an allocation slow path, where held frees go out, so the background reclaimer
// flushes its chains when it is idle (reclaimer.cc). Returns true when `p` was freed through the
// new heap; false: the caller frees it without one (also when no heap can be had: a free never
// fails for want of memory). errno is left as it was.
bool FreeWithoutHeap(void* p, const char* call) {
  if (t_heapless_remote_frees == 0) t_first_freed_owner = PageOf(p)->owner_relaxed();
  if (++t_heapless_remote_frees < kHeaplessFreesBeforeHeap) return false;
  const int saved_errno = errno;
  Heap* heap = TakeHeap();
  errno = saved_errno;
  if (heap == nullptr) {
    t_heapless_remote_frees = 0;  // try again after as many frees
    return false;
  }
  heap->Free(p, call);
  return true;
}

// An allocation after the thread-exit hook: a heap for this one block only.
void* AllocateAfterExit(uint32_t size_class) {
  Heap* heap = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  if (heap == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  MF2_STAT_INC(heap->mutable_stats(), dead_thread_allocs);
  void* p = heap->Allocate(ClassInfo(size_class).size);
  HeapRegistry::Global().ReleaseHeap(heap);
  return p;
}

}  // namespace

__thread Heap* t_heap __attribute__((tls_model("initial-exec"))) = &g_empty_heap;

}  // namespace thread_heap_internal

bool ThreadHasHeap() { return !thread_heap_internal::t_heap->is_sentinel(); }

void ThreadHeapAfterForkInChild() {
  // The forking thread goes on in the child under a new kernel id; the other threads' heaps are
  // orphans there, found by ReclaimExitedThreadHeaps (their ids name no thread of the child).
  Heap* heap = thread_heap_internal::t_heap;
  // The child has one thread: only the forking one counts, if it ever took a heap.
  thread_heap_internal::g_threads_with_heaps.store(thread_heap_internal::t_took_heap ? 1 : 0,
                                                   std::memory_order_relaxed);
  if (heap->is_sentinel()) return;
  HeapRegistry::Global().ReleaseThreadListing(heap);
  HeapRegistry::Global().RegisterThreadHeap(heap, static_cast<int32_t>(syscall(SYS_gettid)));
}

void ThreadGoIdle() { thread_heap_internal::t_heap->GoIdle(); }

void ReleaseThreadHeapNow() {
  using thread_heap_internal::t_heap;
  Heap* heap = t_heap;
  if (heap->is_sentinel()) return;
  // Counted afresh: the thread takes a heap again at its next allocation or at as many frees
  // as a thread that never had one.
  thread_heap_internal::t_heapless_remote_frees = 0;
  thread_heap_internal::t_first_freed_owner = nullptr;
  thread_heap_internal::UnbindHeap(heap);
}

}  // namespace mf2
