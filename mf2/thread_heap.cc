// Thread-local heaps. Each thread's heap pointer lives in initial-exec TLS (one load on the fast
// path). A pthread key whose destructor runs at thread exit hands the heap back to the registry;
// a thread that allocates again during later TLS destructors gets a heap again and the key is
// re-armed, so the destructor runs again (POSIX repeats destructors while values are set).
#include "mf2/thread_heap.h"

#include <pthread.h>

#include "mf2/heap_registry.h"
#include "mf2/page_source.h"

namespace mf2 {
namespace thread_heap_internal {

__attribute__((tls_model("initial-exec"))) thread_local Heap* t_heap = nullptr;

namespace {

pthread_key_t g_key;
pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

void ThreadExit(void* arg) {
  Heap* heap = static_cast<Heap*>(arg);
  if (heap == nullptr || heap != t_heap) return;
  t_heap = nullptr;
  HeapRegistry::Global().ReleaseHeap(heap);
}

void InitOnce() {
  MF2_CHECK(pthread_key_create(&g_key, &ThreadExit) == 0, "pthread_key_create");
}

}  // namespace

Heap* InitThreadHeap() {
  pthread_once(&g_key_once, &InitOnce);
  Heap* heap = HeapRegistry::Global().AcquireHeap(&OsPageSource::Global());
  if (heap == nullptr) return nullptr;
  t_heap = heap;
  pthread_setspecific(g_key, heap);
  return heap;
}

}  // namespace thread_heap_internal

void ReleaseThreadHeapNow() {
  using thread_heap_internal::t_heap;
  Heap* heap = t_heap;
  if (heap == nullptr) return;
  t_heap = nullptr;
  pthread_setspecific(thread_heap_internal::g_key, nullptr);
  HeapRegistry::Global().ReleaseHeap(heap);
}

}  // namespace mf2
