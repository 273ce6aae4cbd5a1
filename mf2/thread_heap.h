// The calling thread's heap: initial-exec TLS, never null, handed back at thread exit.
//
// Internal: the public API (mf2.h), the drop-in malloc (malloc_shim.cc) and tests reach the
// thread's heap only through these functions.
//
// States of a thread (t_heap):
//   no heap yet   the empty sentinel: its caches are empty with capacity 0, so the first
//                 allocation takes a heap (AllocateSlow -> here), and a free does not need one:
//                 no page is owned by the sentinel, so every free goes the remote way, one
//                 compare-exchange each. At its kHeaplessFreesBeforeHeap-th free the thread
//                 takes a heap anyway, so that its frees are batched (FreeWithoutHeap); if no
//                 heap can be had it goes on without: a free never fails for want of memory.
//   own heap      the thread's heap.
//   exited        the dead sentinel, after the thread-exit hook handed the heap back. glibc
//                 frees per-thread buffers after every pthread key destructor has run
//                 (__libc_thread_freeres) and destructors of later keys may still allocate: a
//                 free goes the remote way; an allocation takes a heap, allocates and hands the
//                 heap back at once (the block's page stays with that abandoned heap, whose
//                 queue is drained by the block's eventual freer). No heap stays claimed by a
//                 thread that is gone, and no key is re-armed.
#ifndef MF2_THREAD_HEAP_H_
#define MF2_THREAD_HEAP_H_

#include "mf2/check.h"
#include "mf2/heap.h"

namespace mf2 {

// Remote frees a thread without a heap makes before it takes one (thread_heap.cc).
inline constexpr uint32_t kHeaplessFreesBeforeHeap = 64;

namespace thread_heap_internal {
// __thread, not thread_local: guaranteed static initialisation, so other translation units read
// it with one TLS load and no initialisation wrapper.
extern __thread Heap* t_heap __attribute__((tls_model("initial-exec")));
}  // namespace thread_heap_internal

// The calling thread's heap, or one of the sentinels above. Never null.
MF2_ALWAYS_INLINE Heap* ThreadHeap() { return thread_heap_internal::t_heap; }

// Whether the calling thread has a heap of its own.
bool ThreadHasHeap();

// The heap is abandoned now rather than at thread exit; the next allocation takes one again.
void ReleaseThreadHeapNow();

// The calling thread will be idle for a while: its heap gives back what it holds (Heap::GoIdle).
void ThreadGoIdle();

// fork(), in the child: the calling thread's heap is listed under its new kernel id.
void ThreadHeapAfterForkInChild();

}  // namespace mf2

#endif  // MF2_THREAD_HEAP_H_
