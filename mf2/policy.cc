#include "mf2/policy.h"

#include <cstdlib>
#include <cstring>

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

// A function-local static: initialised exactly once even if two threads race to the first call
// (the guard is a futex, no allocation).
Policy& Storage() {
  static Policy policy = PolicyFromEnvironment();
  return policy;
}

}  // namespace

Policy PolicyFromEnvironment() {
  Policy p;
  uint64_t n;
  if (EnvUnsigned("MF2_PENDING_BUDGET", &n) && n > 0) p.pending_budget = static_cast<uint32_t>(n);
  if (EnvUnsigned("MF2_HEAP_EMPTY_KB", &n)) p.heap_empty_bytes = static_cast<size_t>(n) << 10;
  if (EnvUnsigned("MF2_PAGE_CACHE_MB", &n)) p.page_cache_bytes = static_cast<size_t>(n) << 20;
  if (EnvUnsigned("MF2_LARGE_CACHE_MB", &n)) p.large_cache_bytes = static_cast<size_t>(n) << 20;
  if (EnvUnsigned("MF2_RETAINED_SEGMENTS", &n)) p.retained_segments = static_cast<uint32_t>(n);
  if (EnvIs("MF2_ON_ERROR", "report")) p.on_error = OnError::kReport;
  if (EnvIs("MF2_STATS", "1")) p.stats_at_exit = true;
  return p;
}

const Policy& GetPolicy() { return Storage(); }

void SetPolicyForTesting(const Policy& policy) { Storage() = policy; }

}  // namespace mf2
