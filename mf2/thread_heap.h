// The calling thread's heap: initial-exec TLS, handed back to the registry at thread exit.
//
// Internal: the public API (mf2.h), the drop-in malloc (malloc_shim.cc) and tests reach the
// thread's heap only through these functions.
#ifndef MF2_THREAD_HEAP_H_
#define MF2_THREAD_HEAP_H_

#include "mf2/check.h"
#include "mf2/heap.h"

namespace mf2 {

namespace thread_heap_internal {
extern __attribute__((tls_model("initial-exec"))) thread_local Heap* t_heap;
MF2_NOINLINE Heap* InitThreadHeap();
}  // namespace thread_heap_internal

// The calling thread's heap, acquired on first use; nullptr only when no heap can be mapped.
MF2_ALWAYS_INLINE Heap* ThreadHeap() {
  Heap* heap = thread_heap_internal::t_heap;
  if (MF2_PREDICT_FALSE(heap == nullptr)) heap = thread_heap_internal::InitThreadHeap();
  return heap;
}

// The heap is abandoned now rather than at thread exit; the next allocation takes one again.
void ReleaseThreadHeapNow();

}  // namespace mf2

#endif  // MF2_THREAD_HEAP_H_
