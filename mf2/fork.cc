// fork(): no MF2 lock may be held by another thread at the moment of fork, or the child would
// inherit it locked forever. Lock order: registry, page source, large table.
#include <pthread.h>

#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/page_source.h"

namespace mf2 {
namespace {

void PrepareFork() {
  HeapRegistry::Global().PrepareFork();
  OsPageSource::Global().PrepareFork();
  LargePrepareFork();
}
void ParentAfterFork() {
  LargeParentAfterFork();
  OsPageSource::Global().ParentAfterFork();
  HeapRegistry::Global().ParentAfterFork();
}
void ChildAfterFork() {
  LargeChildAfterFork();
  OsPageSource::Global().ChildAfterFork();
  HeapRegistry::Global().ChildAfterFork();
}

// Registered at load time, outside any malloc call (pthread_atfork may itself allocate).
__attribute__((constructor)) void RegisterForkHandlers() {
  pthread_atfork(&PrepareFork, &ParentAfterFork, &ChildAfterFork);
}

}  // namespace
}  // namespace mf2
