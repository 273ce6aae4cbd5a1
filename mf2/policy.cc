#include "mf2/policy.h"

#include "mf2/check.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace mf2 {
namespace {

// getenv does not allocate; strtoull does not either.
bool EnvUnsigned(const char* name, uint64_t* out) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return false;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0') return false;
  *out = n;
  return true;
}

bool EnvIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

using policy_internal::g_adoption_armed;
using policy_internal::g_route;
using policy_internal::kUnset;

void NoteRoute(Route r) {
  if (r != Route::kRouteS && !g_adoption_armed.load(std::memory_order_relaxed)) {
    g_adoption_armed.store(true, std::memory_order_relaxed);
  }
}

}  // namespace

const char* RouteName(Route r) {
  switch (r) {
    case Route::kRouteS: return "route_s";
    case Route::kRouteP: return "route_p";
    case Route::kCda: return "cda";
  }
  return nullptr;
}

bool ParseRoute(const char* name, Route* out) {
  if (name == nullptr) return false;
  for (Route r : {Route::kRouteS, Route::kRouteP, Route::kCda}) {
    if (std::strcmp(name, RouteName(r)) == 0) {
      *out = r;
      return true;
    }
  }
  return false;
}

Policy PolicyFromEnvironment() {
  Policy p;
  uint64_t n;
  Route r;
  if (ParseRoute(std::getenv("MF2_ROUTE"), &r)) p.route = r;
  if (EnvUnsigned("MF2_IDLE_US", &n)) p.idle_threshold_ns = n * 1000;
  if (EnvIs("MF2_ADOPT_PARTIAL_GATE", "0")) p.adopt_partial_gate = false;
  if (EnvUnsigned("MF2_ADOPT_PRESSURE", &n)) p.adopt_pressure = static_cast<uint32_t>(n);
  if (EnvUnsigned("MF2_ADOPT_MIN_REMOTE", &n)) p.adopt_min_remote = static_cast<uint32_t>(n);
  if (EnvUnsigned("MF2_RFR_US", &n)) p.rfr_window_ns = n * 1000;
  if (EnvIs("MF2_RECLAIM_IDLE", "0")) p.reclaim_idle = false;
  if (EnvUnsigned("MF2_RECLAIM_AFTER_US", &n)) p.reclaim_after_ns = n * 1000;
  if (EnvUnsigned("MF2_RECLAIM_BATCH", &n) && n > 0) p.reclaim_batch = static_cast<uint32_t>(n);
  if (EnvUnsigned("MF2_PENDING_BUDGET", &n) && n > 0) p.pending_budget = static_cast<uint32_t>(n);
  if (EnvUnsigned("MF2_HEAP_EMPTY_KB", &n)) p.heap_empty_bytes = static_cast<size_t>(n) << 10;
  if (EnvUnsigned("MF2_PAGE_CACHE_MB", &n)) p.page_cache_bytes = static_cast<size_t>(n) << 20;
  if (EnvUnsigned("MF2_LARGE_CACHE_MB", &n)) p.large_cache_bytes = static_cast<size_t>(n) << 20;
  if (EnvUnsigned("MF2_RETAINED_SEGMENTS", &n)) p.retained_segments = static_cast<uint32_t>(n);
  if (EnvUnsigned("MF2_CACHE_CLASS_KB", &n)) p.cache_class_bytes = static_cast<size_t>(n) << 10;
  if (EnvIs("MF2_ON_ERROR", "report")) p.on_error = OnError::kReport;
  if (EnvIs("MF2_STATS", "1")) p.stats_at_exit = true;
  return p;
}

const Policy& policy_internal::InitPolicy() {
  // A function-local static: runs exactly once even if two threads race to the first call (the
  // guard is a futex, no allocation). Release: GetPolicy's acquire sees the filled policy.
  static const bool done = [] {
    g_policy = PolicyFromEnvironment();
    g_policy_ready.store(true, std::memory_order_release);
    return true;
  }();
  (void)done;
  return g_policy;
}

void SetPolicyForTesting(const Policy& policy) {
  policy_internal::InitPolicy();
  policy_internal::g_policy = policy;
  SetRoute(policy.route);
}

Route policy_internal::InitRoute() {
  // First use: the environment's route. A concurrent SetRoute wins (compare-exchange).
  uint8_t expected = kUnset;
  g_route.compare_exchange_strong(expected, static_cast<uint8_t>(GetPolicy().route),
                                  std::memory_order_relaxed);
  const Route r = static_cast<Route>(g_route.load(std::memory_order_relaxed));
  NoteRoute(r);
  return r;
}

void SetRoute(Route r) {
  NoteRoute(r);  // armed before any slow path can run under the new route
  g_route.store(static_cast<uint8_t>(r), std::memory_order_relaxed);
}


}  // namespace mf2
