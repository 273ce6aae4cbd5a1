// Every runtime policy of MF2 in one place, read once from the environment.
//
//   MF2_ROUTE=route_s          slow-path policy. Route S (owner priority, the only one today):
//                              a live owner's pages are never taken; only pages of heaps whose
//                              thread has exited are adopted. Route P (gated adoption from idle
//                              owners) will plug in here as another value of Route.
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
//   MF2_ON_ERROR=abort|report  on misuse (double free, foreign pointer): abort (default) or
//                              report and ignore the call.
//   MF2_STATS=1                print merged counters to stderr at exit.
//
// Tests override fields through SetPolicyForTesting before creating heaps.
#ifndef MF2_POLICY_H_
#define MF2_POLICY_H_

#include <cstddef>
#include <cstdint>

namespace mf2 {

enum class Route : uint8_t {
  kRouteS,  // owner priority: drain own pending queue, active page, partial list, then new page
};

enum class OnError : uint8_t { kAbort, kReport };

struct Policy {
  Route route = Route::kRouteS;
  uint32_t pending_budget = 8;
  size_t heap_empty_bytes = size_t{2} << 20;
  size_t page_cache_bytes = size_t{32} << 20;
  size_t large_cache_bytes = size_t{64} << 20;
  uint32_t retained_segments = 2;
  OnError on_error = OnError::kAbort;
  bool stats_at_exit = false;
};

// The policy in force: defaults overridden by MF2_* environment variables, read on first call.
const Policy& GetPolicy();

// Replaces the policy (tests only; not thread-safe against concurrent allocation).
void SetPolicyForTesting(const Policy& policy);

// Parses the environment into a policy (exposed for tests of the parser).
Policy PolicyFromEnvironment();

}  // namespace mf2

#endif  // MF2_POLICY_H_
