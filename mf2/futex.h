// Futex wait and wake on a 32-bit atomic word, private to the process: no allocation, usable
// inside malloc. For the rare waits MF2 has (the background reclaimer's sleep, an owner waiting
// for a parker, heap.h "The idle flush"), never on a hot path.
#ifndef MF2_FUTEX_H_
#define MF2_FUTEX_H_

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

namespace mf2 {

// Blocks while *word == expected, until a wake, `timeout_ns` (0: none) or a signal. Returns at
// once if *word != expected. The caller re-checks its condition in every case.
inline void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, uint64_t timeout_ns = 0) {
  timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000),
              static_cast<long>(timeout_ns % 1'000'000'000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected,
          timeout_ns == 0 ? nullptr : &ts, nullptr, 0);
}

// Wakes up to `count` threads waiting on `word`.
inline void FutexWake(std::atomic<uint32_t>* word, int count = 1) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, count, nullptr,
          nullptr, 0);
}

}  // namespace mf2

#endif  // MF2_FUTEX_H_
