// A pthread mutex with Clang thread-safety annotations. Constant-initialised, so it works before
// main and inside malloc; never allocates. Used only off the hot paths (page source, registry,
// large table).
//
// fork(). MF2's prepare handler (fork.cc) takes every MF2 lock so that the child inherits none
// locked mid-update; the after-fork handlers release (parent) or re-initialise (child) them.
// Other libraries' fork handlers may allocate, and glibc runs them on the forking thread while
// MF2's locks are held: prepare handlers registered before MF2's run after it, and parent/child
// handlers registered before MF2's run before it (registration order cannot be chosen: a shared
// library's constructor runs before those of the program that links MF2). So between MF2's
// prepare and its after-fork handler the forking thread treats the locks it took for fork as
// its own: Lock and Unlock of such a mutex return at once on that thread, while every other
// thread still blocks on the real lock until the after-fork handler releases it.
//
// Why the protected data stay consistent: the prepare handler acquired each lock for real, so
// every critical section begun before it (on any thread) had finished, and until the after-fork
// handler no other thread can enter one. The forking thread itself is then outside every
// critical section (it is inside fork(), not inside MF2), and MF2 never nests a critical section
// of the same mutex, so each critical section it runs meanwhile (from another library's
// handler) starts on consistent data and completes before the next one starts: exactly as if it
// had taken the lock. The child, a copy of that thread, sees the data between critical
// sections and re-initialises the locks.
#ifndef MF2_MUTEX_H_
#define MF2_MUTEX_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"

namespace mf2 {

namespace mutex_internal {

// Where the calling thread is in MF2's fork handlers (fork.cc sets it; forks are serialised by
// glibc's atfork lock, and only the forking thread ever leaves kNotForking).
enum ForkPhase : uint8_t {
  kNotForking = 0,
  kLocking = 1,    // inside MF2's prepare handler: each Lock marks its mutex held for fork
  kHeld = 2,       // between MF2's prepare and after-fork handlers: marked mutexes are ours
  kUnlocking = 3,  // inside MF2's after-fork handlers: Unlock/ResetAfterFork clear the mark
};

// Initial-exec TLS (as the thread heap pointer): one load, no allocation, usable inside malloc.
// The child of fork() inherits the forking thread's value (kHeld).
inline __attribute__((tls_model("initial-exec"))) thread_local uint8_t t_fork_phase = kNotForking;

}  // namespace mutex_internal

class ABSL_LOCKABLE Mutex {
 public:
  constexpr Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    if (__builtin_expect(mutex_internal::t_fork_phase != mutex_internal::kNotForking, 0)) {
      return LockWhileForking();
    }
    pthread_mutex_lock(&mu_);
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    if (__builtin_expect(mutex_internal::t_fork_phase != mutex_internal::kNotForking, 0)) {
      return UnlockWhileForking();
    }
    pthread_mutex_unlock(&mu_);
  }
  // Takes the lock if it is free. For tests that ask whether a lock is held (outside fork).
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    return pthread_mutex_trylock(&mu_) == 0;
  }
  // After fork() in the child, where the parent's holder no longer exists.
  void ResetAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    // Relaxed: the child has one thread.
    held_for_fork_.store(false, std::memory_order_relaxed);
    mu_ = PTHREAD_MUTEX_INITIALIZER;
  }

 private:
  // The forking thread only (see the header comment).
  void LockWhileForking() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    using mutex_internal::t_fork_phase;
    // Relaxed load: written only by forking threads, under the real lock; a thread in kHeld reads
    // its own write (the mark of a mutex it locked in kLocking) or false.
    if (t_fork_phase == mutex_internal::kHeld &&
        held_for_fork_.load(std::memory_order_relaxed)) {
      return;  // held for this fork by this very thread
    }
    pthread_mutex_lock(&mu_);
    if (t_fork_phase == mutex_internal::kLocking) {
      // Relaxed: read back only by this thread (above), and reset under the lock below.
      held_for_fork_.store(true, std::memory_order_relaxed);
    }
  }
  void UnlockWhileForking() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    // Relaxed: as in LockWhileForking.
    if (mutex_internal::t_fork_phase == mutex_internal::kHeld &&
        held_for_fork_.load(std::memory_order_relaxed)) {
      return;  // stays held until MF2's after-fork handler
    }
    // kUnlocking (the after-fork release), or a mutex locked normally meanwhile. Relaxed: we
    // hold the lock; the next forking thread reads this after acquiring it.
    held_for_fork_.store(false, std::memory_order_relaxed);
    pthread_mutex_unlock(&mu_);
  }

  pthread_mutex_t mu_ = PTHREAD_MUTEX_INITIALIZER;
  std::atomic<bool> held_for_fork_{false};  // locked by MF2's prepare handler of the fork
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
