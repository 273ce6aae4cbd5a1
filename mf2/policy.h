// Every runtime policy of MF2 in one place, read once from the environment.
//
//   MF2_ROUTE=route_s          slow-path policy (also mf2_set_route() at run time):
//                              route_s  owner priority: a live owner's pages are never taken;
//                                       only pages of heaps whose thread exited are adopted.
//                              route_p  Route S, then, before a new page, at most one adoption of
//                                       a full page from an IDLE owner's pending queue, allowed
//                                       only when every gate below passes.
//                              cda      the failed first design (docs/design.md), kept as
//                                       a control: adopt from any pending queue first, no gates.
//   Route P's gates (all must hold; each refusal is counted, see stats.h): the owner is idle
//   (MF2_IDLE_US), its partial list for the class is empty (MF2_ADOPT_PARTIAL_GATE), enough pages
//   of the class wait (MF2_ADOPT_PRESSURE), the page holds enough remote frees
//   (MF2_ADOPT_MIN_REMOTE), and the owner's right of first refusal is over (MF2_RFR_US).
//
// Every option, with its type, unit, default, range and meaning, is one line of the table kOptions
// in policy.cc; README.md lists them. The table drives the environment parser (strict: a bad
// value is named in a one-line warning on stderr and the default is kept), MF2_VERBOSE=1's
// listing, the tests, and OptionGet/OptionSet (mf2_option_get/mf2_option_set). A new option is
// a field below plus one line of that table.
//
// The policy in force is an immutable copy published through an atomic pointer: OptionSet makes
// a new copy (never freed, so a reader may keep a reference); GetPolicy is one acquire load.
// Tests override fields through testing::ScopedPolicy (mf2/testing/scoped_policy.h) before
// creating heaps.
#ifndef MF2_POLICY_H_
#define MF2_POLICY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/base.h"

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
  bool background_reclaim = true;
  uint64_t idle_flush_after_ns = 1'000'000'000;
  uint32_t pending_budget = 8;
  size_t heap_empty_bytes = size_t{2} << 20;
  size_t page_cache_bytes = size_t{32} << 20;
  uint64_t page_cache_decay_ns = 1'000'000'000;
  // The span cache's excess over its reserve (an eighth of the spans in use) decays after this
  // shorter period (page_source.h); 0, or a period not shorter than page_cache_decay_ns, decays
  // the excess with the reserve.
  uint64_t page_cache_excess_decay_ns = 20'000'000;
  size_t large_cache_bytes = size_t{64} << 20;
  uint32_t retained_segments = 2;
  size_t cache_class_bytes = size_t{64} << 10;
  size_t cache_heap_bytes = size_t{1} << 20;
  uint32_t remote_batch = 32;
  uint32_t successor_yields = 2;
  OnError on_error = OnError::kAbort;
  bool stats_at_exit = false;
  bool verbose = false;
};

// The policy in force: defaults overridden by MF2_* environment variables, read on first call.
namespace policy_internal {
// The policy in force, read on slow paths, so GetPolicy below is inline (a load and a
// predictable branch, no call). nullptr until InitPolicy() has read the environment; then an
// immutable copy that is never freed.
inline std::atomic<const Policy*> g_current{nullptr};
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
  // Acquire: pairs with the release that published the copy, so its fields are seen as written.
  const Policy* p = policy_internal::g_current.load(std::memory_order_acquire);
  if (MF2_PREDICT_TRUE(p != nullptr)) return *p;
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

// Replaces the policy in force, in place (tests only; not thread-safe against concurrent
// allocation, so it costs no memory however often a fuzzer calls it). Sets the route too.
void SetPolicyForTesting(const Policy& policy);

// ---- Options ----

// How an option's value is written (in the environment) and scaled into its Policy field.
enum class OptionType : uint8_t {
  kBool,      // 1/0, yes/no, true/false, on/off, in any case
  kCount,     // a decimal number
  kSize,      // a number of the option's unit (KiB for *_KB, MiB for *_MB), or of K, M or G
              // (KiB, MiB, GiB; optionally followed by B, any case) when suffixed: 512K, 2M, 1G
  kDuration,  // microseconds (*_US), or with a us, ms or s suffix: 150, 150us, 10ms, 1s
  kRoute,     // route_s, route_p, cda (any case); 0, 1, 2 through OptionGet/OptionSet
  kOnError,   // abort, report (any case); 0, 1 through OptionGet/OptionSet
  kString,    // any text: the environment's string itself is kept (not through OptionSet)
};

// One option: one line of the table in policy.cc.
struct OptionInfo {
  const char* name;  // the environment variable, e.g. "MF2_PAGE_CACHE_MB"
  OptionType type;
  const char* unit;  // of a bare number and of OptionGet/OptionSet values: "KiB", "MiB", "us", ""
  uint64_t scale;    // Policy field units per option unit (bytes per MiB, ns per us; else 1)
  uint64_t min;      // the allowed range, in field units (bytes, ns, counts)
  uint64_t max;
  const char* help;  // one line
  uint64_t (*load)(const Policy& p);     // the field, widened
  void (*store)(Policy* p, uint64_t v);  // v in field units, within [min, max]
};

size_t OptionCount();
const OptionInfo& OptionAt(size_t i);
// The option named `name` (its environment variable), or nullptr.
const OptionInfo* FindOption(const char* name);

// Parses `text` as a value of `option` into field units (for kString: the pointer itself).
// False if it is malformed, overflows when scaled or is out of range; then `*why` says which in
// a few words.
bool ParseOptionValue(const OptionInfo& option, const char* text, uint64_t* value,
                      const char** why);
// Formats a field value of `option` as the option would be written, with its unit ("32 MiB",
// "150 us", "route_s"); returns the length (no allocation).
size_t FormatOptionValue(const OptionInfo& option, uint64_t value, char* buf, size_t cap);

// The environment over the defaults: one warning line on `warn_fd` per bad value, naming the
// variable, the value and the default kept. An empty variable counts as not set.
Policy PolicyFromEnvironment(int warn_fd = 2);
// One line per option on `fd`: name, value with its unit, whether it is the default, help.
// What MF2_VERBOSE=1 prints at first use.
void PrintOptions(const Policy& policy, int fd);

// The value in force of option `name`, in the option's unit (rounded down when it is not a whole
// number of units); false for unknown names and string options.
bool OptionGet(const char* name, long long* out);
// Sets option `name` to `value` (in the option's unit) at run time: 0, or EINVAL for unknown
// names, string options and values out of range, or ENOMEM. Safe while other threads allocate:
// an immutable copy of the new policy is published. Copies are never freed (a reader may still
// hold one) but are interned: setting options back and forth keeps one copy per distinct policy
// (about 150 bytes each; past 4096 distinct ones, each new one is a copy of its own). Setting
// MF2_ROUTE switches the route (SetRoute).
int OptionSet(const char* name, long long value);

// Policy copies made so far (never freed; tests check that repeated settings reuse them).
uint64_t PolicyCopies();

// fork() (fork.cc): the lock that serialises OptionSet and SetPolicyForTesting, taken first by
// MF2's prepare handler (its holders take no other lock), released in the parent and
// re-initialised in the child, so a child never inherits it held by a thread it does not have.
void PolicyPrepareFork();
void PolicyParentAfterFork();
void PolicyChildAfterFork();

}  // namespace mf2

#endif  // MF2_POLICY_H_
