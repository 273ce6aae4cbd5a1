// Every runtime policy of MF2 in one place, read once from the environment.
//
//   MF2_ROUTE=route_s          slow-path policy (also mf2_set_route() at run time):
//                              route_s  owner priority: a live owner's pages are never taken;
//                                       only pages of heaps whose thread exited are adopted.
//                              route_p  Route S, then, before a new page, at most one adoption of
//                                       a full page from an IDLE owner's pending queue, allowed
//                                       only when every gate below passes.
//                              cda      the design note's failed consumer-driven adoption, kept as
//                                       a control: adopt from any pending queue first, no gates.
//   Route P gates (all must hold; each refusal is counted, see stats.h):
//   MF2_IDLE_US=150            the owner has not entered its allocation slow path for this long
//                              (as observed by other threads: conservative, never early)
//   MF2_ADOPT_PARTIAL_GATE=1   the owner's partial list for the class is empty (0: skip this
//                              gate; an experiment: Larson's idle main thread keeps partial pages
//                              from its warm-up, and this gate then refuses every adoption)
//   MF2_ADOPT_PRESSURE=4       more than this many pages of the class wait on pending queues
//   MF2_ADOPT_MIN_REMOTE=8     the page holds at least this many remote frees (or is full of
//                              them, for classes with fewer blocks)
//   MF2_RFR_US=200             right of first refusal: the owner's window after the 0->1 edge
//   MF2_RECLAIM_IDLE=1         a thread whose free returns the last block of a full page of an
//                              owner idle for MF2_IDLE_US releases that owner's completely free
//                              full pages to the page source (every route; 0 = off).
//   MF2_RECLAIM_AFTER_US=10000 "idle" for reclamation: no slow path for this long (longer than
//                              Route P's MF2_IDLE_US: a thread that is merely descheduled for a
//                              time slice must not have its whole pages released under it)
//   MF2_RECLAIM_BATCH=32       a sweep of an idle owner's queue starts once this many of its
//                              pages came back whole (a sweep walks the whole queue): an idle
//                              owner keeps fewer than this many whole pages resident.
//   MF2_PENDING_BUDGET=8       pending pages examined per slow-path call before falling back to
//                              the active page and partial list (the gate still drains the whole
//                              queue before it ever takes a new page).
//   MF2_HEAP_EMPTY_KB=2048     empty pages a heap keeps on its partial lists for reuse instead of
//                              returning them to the page source: this much, or an eighth of the
//                              heap's own pages if more (per heap; idle heaps keep none).
//   MF2_PAGE_CACHE_MB=32       free spans kept resident for reuse; beyond it spans are returned to
//                              the OS with madvise(MADV_DONTNEED).
//   MF2_LARGE_CACHE_MB=64      freed large mappings (> 64 KiB) kept for reuse.
//   MF2_RETAINED_SEGMENTS=2    completely free 4 MiB segments kept mapped; beyond, munmap.
//   MF2_CACHE_CLASS_KB=64      each thread caches up to this many bytes of free blocks per size
//                              class (at least 2 blocks, at most 63; 0 turns the caches off).
//   MF2_ON_ERROR=abort|report  on misuse (double free, foreign pointer): abort (default) or
//                              report and ignore the call.
//   MF2_STATS=1                print merged counters to stderr at exit.
//
// Tests override fields through SetPolicyForTesting before creating heaps.
#ifndef MF2_POLICY_H_
#define MF2_POLICY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/check.h"

namespace mf2 {

enum class Route : uint8_t {
  kRouteS,  // owner priority: drain own pending queue, active page, partial list, then new page
  kRouteP,  // Route S, then one gated adoption from an idle owner before a new page
  kCda,     // control: ungated adoption from any pending queue at the start of the slow path
};

// "route_s", "route_p", "cda"; nullptr for anything else.
const char* RouteName(Route r);
bool ParseRoute(const char* name, Route* out);

enum class OnError : uint8_t { kAbort, kReport };

struct Policy {
  Route route = Route::kRouteS;  // initial route; CurrentRoute() is the one in force
  uint64_t idle_threshold_ns = 150'000;
  bool adopt_partial_gate = true;
  uint32_t adopt_pressure = 4;
  uint32_t adopt_min_remote = 8;
  uint64_t rfr_window_ns = 200'000;
  bool reclaim_idle = true;
  uint64_t reclaim_after_ns = 10'000'000;
  uint32_t reclaim_batch = 32;
  uint32_t pending_budget = 8;
  size_t heap_empty_bytes = size_t{2} << 20;
  size_t page_cache_bytes = size_t{32} << 20;
  size_t large_cache_bytes = size_t{64} << 20;
  uint32_t retained_segments = 2;
  size_t cache_class_bytes = size_t{64} << 10;
  OnError on_error = OnError::kAbort;
  bool stats_at_exit = false;
};

// The policy in force: defaults overridden by MF2_* environment variables, read on first call.
namespace policy_internal {
// The policy in force, read on slow paths, so the accessors below are inline (a load and a
// predictable branch, no call). Defaults until InitPolicy() has read the environment.
inline Policy g_policy;
inline std::atomic<bool> g_policy_ready{false};
const Policy& InitPolicy();
// The route in force; kUnset until first read (constant-initialised, so a malloc that runs
// before static constructors sees a valid state). Relaxed: an independent setting read once per
// slow path; no data is published through it.
inline constexpr uint8_t kUnset = 0xff;
inline std::atomic<uint8_t> g_route{kUnset};
// Sticky. Relaxed is enough: a thread that has read `true` reads `true` ever after (read-read
// coherence), which is all the detached-page protocol relies on (Heap::Detach), and a thread
// that takes over a heap does so after a claim acquire that follows the previous owner's reads.
inline std::atomic<bool> g_adoption_armed{false};
Route InitRoute();
}  // namespace policy_internal

inline const Policy& GetPolicy() {
  // Acquire: pairs with the release in InitPolicy() after the environment was read.
  if (MF2_PREDICT_TRUE(policy_internal::g_policy_ready.load(std::memory_order_acquire))) {
    return policy_internal::g_policy;
  }
  return policy_internal::InitPolicy();
}

// Whether a live owner's pages may ever be adopted in this process: true from the moment a route
// other than route_s is first in force (environment or SetRoute), and never false again. While
// false, an owner frees into its full pages without taking their flag (page.h, "Detached pages").
inline bool AdoptionArmed() {
  if (MF2_PREDICT_FALSE(policy_internal::g_route.load(std::memory_order_relaxed) ==
                        policy_internal::kUnset)) {
    policy_internal::InitRoute();
  }
  return policy_internal::g_adoption_armed.load(std::memory_order_relaxed);
}

// The route in force. Relaxed atomic: switching at run time is safe (pages carry their own
// adoption bookkeeping); a thread may finish a slow path under the previous route.
inline Route CurrentRoute() {
  const uint8_t r = policy_internal::g_route.load(std::memory_order_relaxed);
  if (MF2_PREDICT_FALSE(r == policy_internal::kUnset)) return policy_internal::InitRoute();
  return static_cast<Route>(r);
}
void SetRoute(Route r);

// Replaces the policy (tests only; not thread-safe against concurrent allocation).
void SetPolicyForTesting(const Policy& policy);

// Parses the environment into a policy (exposed for tests of the parser).
Policy PolicyFromEnvironment();

}  // namespace mf2

#endif  // MF2_POLICY_H_
