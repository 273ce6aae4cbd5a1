// Waiting on the background reclaimer (mf2/reclaimer.h) in tests: for it to settle, and for a
// window in which it makes no pass.
#ifndef MF2_TESTING_RECLAIMER_WAIT_H_
#define MF2_TESTING_RECLAIMER_WAIT_H_

#include <chrono>
#include <cstdint>
#include <thread>

#include "mf2/reclaimer.h"

namespace mf2 {
namespace testing {

// Waits (up to 10 s) until the thread, if it runs, waits with no notification pending: a pass
// has run since the last one, so what a test does next is not counted with an earlier test's
// work. Returns whether it then waits (false: not running, or still busy).
inline bool WaitForTheReclaimerToSettle() {
  for (int i = 0; i < 2000 && reclaimer::Running() && !reclaimer::WaitingForTesting(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return reclaimer::Running() && reclaimer::WaitingForTesting();
}

// Whether the thread makes no pass in `window`, once `settle` has passed.
inline bool NoPassFor(std::chrono::milliseconds settle, std::chrono::milliseconds window) {
  std::this_thread::sleep_for(settle);
  const uint64_t passes = reclaimer::Passes();
  std::this_thread::sleep_for(window);
  return reclaimer::Passes() == passes;
}

}  // namespace testing
}  // namespace mf2

#endif  // MF2_TESTING_RECLAIMER_WAIT_H_
