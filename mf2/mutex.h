// A pthread mutex with Clang thread-safety annotations. Constant-initialised, so it works before
// main and inside malloc; never allocates. Used only off the hot paths (page source, registry).
#ifndef MF2_MUTEX_H_
#define MF2_MUTEX_H_

#include <pthread.h>

#include "absl/base/thread_annotations.h"

namespace mf2 {

class ABSL_LOCKABLE Mutex {
 public:
  constexpr Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { pthread_mutex_lock(&mu_); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { pthread_mutex_unlock(&mu_); }
  // After fork() in the child, where the parent's holder no longer exists.
  void ResetAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { mu_ = PTHREAD_MUTEX_INITIALIZER; }

 private:
  pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace mf2

#endif  // MF2_MUTEX_H_
