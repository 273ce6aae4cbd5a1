// The decay schedule of a cache of free memory kept resident for reuse: OsPageSource's span
// cache and large.cc's cache of freed mappings. Once per period, what stayed cached for the whole
// period (the least the cache held since the last decay: its low-water mark, memory nobody
// needed) goes back to the OS, as jemalloc's dirty-page decay does. The clock only keeps the
// schedule; each cache releases in its own way and calls it under its own lock.
//
//   decay.Lowered(cached)            whenever the cache shrinks
//   if (decay.Due(now)) {            the reclaimer's call (period != 0)
//     release at least decay.Unused(cached) bytes;
//     decay.Restart(now, period, cached after the release);
//   }
//   return decay.NextIn(now);        0: nothing scheduled (the cache was empty)
#ifndef MF2_DECAY_H_
#define MF2_DECAY_H_

#include <cstddef>
#include <cstdint>

namespace mf2 {

// The earlier of two waits, 0 meaning none (as NextIn returns).
constexpr uint64_t EarlierWait(uint64_t a, uint64_t b) {
  return a == 0 ? b : b == 0 ? a : (a < b ? a : b);
}

class DecayClock {
 public:
  // The cache now holds `cached` bytes, fewer than before.
  void Lowered(size_t cached) {
    if (cached < low_water_) low_water_ = cached;
  }
  // Whether a decay is due at `now_ns`: one is scheduled and its time has come, or none is (the
  // first call, or the cache was empty at the last), which starts a period.
  bool Due(uint64_t now_ns) const { return next_ns_ == 0 || now_ns >= next_ns_; }
  // Bytes that stayed cached for the whole period that just ended, of the `cached` there are
  // now; 0 when no period ran.
  size_t Unused(size_t cached) const {
    if (next_ns_ == 0) return 0;
    return low_water_ < cached ? low_water_ : cached;
  }
  // Starts the next period with `cached` bytes in the cache; none when it is empty (the cache
  // wakes its reclaimer when it fills again).
  void Restart(uint64_t now_ns, uint64_t period_ns, size_t cached) {
    low_water_ = cached;
    next_ns_ = cached == 0 ? 0 : now_ns + period_ns;
  }
  // Nanoseconds until the next decay is due, or 0 when none is scheduled.
  uint64_t NextIn(uint64_t now_ns) const { return next_ns_ == 0 ? 0 : next_ns_ - now_ns; }
  // Whether a period runs (Restart scheduled one); Stop ends it. A stopped clock's next Due
  // starts a new period and releases nothing (Unused is 0).
  bool Scheduled() const { return next_ns_ != 0; }
  void Stop() {
    low_water_ = 0;
    next_ns_ = 0;
  }

 private:
  size_t low_water_ = 0;
  uint64_t next_ns_ = 0;
};

}  // namespace mf2

#endif  // MF2_DECAY_H_
