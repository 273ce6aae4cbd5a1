// Mutex's fork phases (mutex.h), without forking: what MF2's fork handlers (fork.cc) do around a
// fork, on one thread, while another thread competes for the locks. Runs under every sanitizer
// (fork_atfork_test covers real forks with MF2 as malloc, which the sanitizers cannot run).
#include "mf2/mutex.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "gtest/gtest.h"

namespace mf2 {
namespace {

using mutex_internal::t_fork_phase;

// The test re-enters locks on purpose (as a fork handler would), which the static analysis
// cannot follow.
void Lock(Mutex* m) ABSL_NO_THREAD_SAFETY_ANALYSIS { m->Lock(); }
void Unlock(Mutex* m) ABSL_NO_THREAD_SAFETY_ANALYSIS { m->Unlock(); }

TEST(MutexForkTest, TheForkingThreadReentersOnlyTheLocksItTookForFork) {
  Mutex taken;      // locked by the "prepare handler"
  Mutex untouched;  // not locked by it
  t_fork_phase = mutex_internal::kLocking;
  Lock(&taken);
  t_fork_phase = mutex_internal::kHeld;

  // Another thread blocks on the lock held for fork until the "after-fork handler" releases it.
  std::atomic<bool> entered{false};
  std::thread other([&] {
    Lock(&taken);
    entered.store(true);
    Unlock(&taken);
  });

  // A later handler on the forking thread allocates: it passes the held lock (twice, as two
  // successive critical sections would), and locks the other one for real.
  Lock(&taken);
  Unlock(&taken);
  Lock(&taken);
  Lock(&untouched);
  Unlock(&untouched);
  Unlock(&taken);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(entered.load()) << "another thread entered a lock held for fork";

  t_fork_phase = mutex_internal::kUnlocking;
  Unlock(&taken);
  t_fork_phase = mutex_internal::kNotForking;
  other.join();
  EXPECT_TRUE(entered.load());

  // Back to an ordinary mutex: the forking thread's next fork marks it afresh.
  Lock(&taken);
  Unlock(&taken);
}

TEST(MutexForkTest, AnUntouchedMutexStaysExclusiveDuringTheFork) {
  Mutex untouched;
  t_fork_phase = mutex_internal::kHeld;
  Lock(&untouched);  // really taken: it was not locked by the prepare handler
  std::atomic<bool> entered{false};
  std::thread other([&] {
    Lock(&untouched);
    entered.store(true);
    Unlock(&untouched);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(entered.load());
  Unlock(&untouched);
  t_fork_phase = mutex_internal::kNotForking;
  other.join();
  EXPECT_TRUE(entered.load());
}

TEST(MutexForkTest, ResetAfterForkForgetsTheHolder) {
  Mutex m;
  t_fork_phase = mutex_internal::kLocking;
  Lock(&m);
  t_fork_phase = mutex_internal::kUnlocking;  // the child's after-fork handler
  m.ResetAfterFork();
  t_fork_phase = mutex_internal::kNotForking;
  Lock(&m);
  Unlock(&m);
}

}  // namespace
}  // namespace mf2
