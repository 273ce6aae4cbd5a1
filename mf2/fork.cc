// fork(): no MF2 lock may be held by another thread at the moment of fork, or the child would
// inherit it locked forever. Lock order: the background reclaimer's pass (reclaimer::PassMutex),
// the idle flush (Heap::IdleFlushMutex), policy (OptionSet), registry, page source, large table.
//
// Other libraries' fork handlers may allocate. glibc runs prepare handlers in reverse order of
// registration and parent/child handlers in order, so a library that registered before MF2
// (any shared library, whose constructor runs before those of the program that links MF2
// statically; most libraries when MF2 is preloaded) runs its prepare handler after MF2's and its
// after-fork handlers before MF2's, on the forking thread, while MF2's locks are held. Its
// allocations must not wait for those locks: between MF2's prepare and after-fork handlers the
// forking thread owns them (Mutex, mutex.h: why the data stay consistent), so the order of
// registration does not matter for it. Other threads block on the locks until MF2's after-fork
// handler, as before.
//
// We still register as early as the link allows (constructor priority 101: before every
// default-priority constructor of the same executable or library, which in a fully static
// program is every user constructor), so that in the common case MF2's prepare handler runs
// last, as glibc's own malloc locks after every handler: a library whose prepare handler takes
// its own lock then takes it before MF2's locks, the order its other threads use when they
// allocate under that lock. Registering at the first allocation instead was rejected: the first
// allocation can come from inside glibc's pthread_atfork (its handler table grows with malloc)
// or from another library's fork handler, both under glibc's atfork lock, and pthread_atfork
// would then wait for that lock forever.
#include <pthread.h>

#include "mf2/check.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/mutex.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/reclaimer.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

using mutex_internal::t_fork_phase;

// The reclaimer's pass and idle flush mutexes are taken here and released in the after-fork
// handlers (the other locks are taken and released inside their owners' functions, which say so
// to the analysis).
void PrepareFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  t_fork_phase = mutex_internal::kLocking;  // each lock below is marked as held for this fork
  // First: the reclaimer holds it for a whole pass, which takes every lock below.
  reclaimer::PassMutex().Lock();
  // Then: a parker holds it while it acts as an idle owner (heap.h, "The idle flush"), and
  // takes the locks below meanwhile.
  Heap::IdleFlushMutex().Lock();
  PolicyPrepareFork();
  HeapRegistry::Global().PrepareFork();
  OsPageSource::Global().PrepareFork();
  LargePrepareFork();
  t_fork_phase = mutex_internal::kHeld;  // later handlers on this thread may allocate
}
void ParentAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  t_fork_phase = mutex_internal::kUnlocking;
  LargeParentAfterFork();
  OsPageSource::Global().ParentAfterFork();
  HeapRegistry::Global().ParentAfterFork();
  PolicyParentAfterFork();
  Heap::IdleFlushMutex().Unlock();
  reclaimer::PassMutex().Unlock();
  t_fork_phase = mutex_internal::kNotForking;
}
void ChildAfterFork() {
  t_fork_phase = mutex_internal::kUnlocking;
  LargeChildAfterFork();
  OsPageSource::Global().ChildAfterFork();
  HeapRegistry::Global().ChildAfterFork();
  PolicyChildAfterFork();
  Heap::IdleFlushMutex().ResetAfterFork();
  reclaimer::PassMutex().ResetAfterFork();
  t_fork_phase = mutex_internal::kNotForking;
  ThreadHeapAfterForkInChild();
  reclaimer::AfterForkInChild();
}

// Outside any malloc call (pthread_atfork may itself allocate). See the file comment.
__attribute__((constructor(101))) void RegisterForkHandlers() {
  MF2_CHECK(pthread_atfork(&PrepareFork, &ParentAfterFork, &ChildAfterFork) == 0,
            "pthread_atfork: MF2's fork handlers could not be registered");
}

}  // namespace
}  // namespace mf2
