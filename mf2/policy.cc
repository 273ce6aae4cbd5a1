#include "mf2/policy.h"

#include <pthread.h>
#include <strings.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <new>
#include <type_traits>

#include "mf2/check.h"
#include "mf2/mutex.h"

namespace mf2 {
namespace {

// ---- The option table ----

// A Policy field as a uint64_t and back: enums and bools by value, strings by address.
template <auto Field>
uint64_t LoadField(const Policy& p) {
  using T = std::remove_cv_t<std::remove_reference_t<decltype(p.*Field)>>;
  if constexpr (std::is_pointer_v<T>) {
    return reinterpret_cast<uintptr_t>(p.*Field);
  } else {
    return static_cast<uint64_t>(p.*Field);
  }
}
template <auto Field>
void StoreField(Policy* p, uint64_t v) {
  using T = std::remove_reference_t<decltype(p->*Field)>;
  if constexpr (std::is_pointer_v<T>) {
    p->*Field = reinterpret_cast<T>(static_cast<uintptr_t>(v));
  } else {
    p->*Field = static_cast<T>(v);
  }
}
// The largest value the field holds, so that the table's ranges are checked at compile time.
template <auto Field>
constexpr uint64_t FieldMax() {
  using T = std::remove_reference_t<decltype(Policy{}.*Field)>;
  if constexpr (std::is_same_v<T, bool>) {
    return 1;
  } else if constexpr (std::is_enum_v<T> || std::is_pointer_v<T>) {
    return std::numeric_limits<uint64_t>::max();  // ranges of enums come from their names
  } else {
    return std::numeric_limits<T>::max();
  }
}

struct OptionLine {
  OptionInfo info;
  uint64_t field_max;
};

// One line of the table: the environment variable, its OptionType, the Policy field, the unit of
// a bare number, field units per unit, the range in field units, and one line of help.
#define MF2_OPTION(name, type, field, unit, scale, min, max, help)                                 \
  OptionLine{OptionInfo{name, OptionType::type, unit, scale, min, max, help,                       \
                        &LoadField<&Policy::field>, &StoreField<&Policy::field>},                  \
             FieldMax<&Policy::field>()}

constexpr uint64_t kU32 = std::numeric_limits<uint32_t>::max();
constexpr uint64_t kKiB = uint64_t{1} << 10;
constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;
// Larger than any address space: a size beyond it is a mistake, not a wish.
constexpr uint64_t kMaxBytes = uint64_t{1} << 46;
constexpr uint64_t kUs = 1000;  // ns per microsecond
// An hour: an owner idle for longer than any such threshold is idle, whatever it is set to.
constexpr uint64_t kMaxNs = uint64_t{3600} * 1'000'000'000;

// Every option. The default of each is its Policy field's initialiser; ranges are in field units.
constexpr OptionLine kOptions[] = {
    // route_s: owner priority, a live owner's pages are never taken; only pages of heaps whose
    // thread exited are adopted. route_p: Route S, then, before a new page, at most one adoption
    // of a full page from an IDLE owner's pending queue, allowed only when every gate passes.
    // cda: the failed consumer-driven adoption of docs/design.md, kept as a control: adopt from any
    // pending queue first, no gates. mf2_set_route() switches at run time.
    MF2_OPTION("MF2_ROUTE", kRoute, route, "", 1, 0, 2,
               "slow-path policy: route_s (owner priority), route_p (gated adoption from idle "
               "owners) or cda (ungated control)"),
    // As observed by other threads: conservative, never early.
    MF2_OPTION("MF2_IDLE_US", kDuration, idle_threshold_ns, "us", kUs, 0, kMaxNs,
               "Route P: an owner is idle after no allocation slow path for this long"),
    // 0 skips the gate: an experiment. Larson's idle main thread keeps partial pages from its
    // warm-up, and this gate then refuses every adoption.
    MF2_OPTION("MF2_ADOPT_PARTIAL_GATE", kBool, adopt_partial_gate, "", 1, 0, 1,
               "Route P: adopt only when the owner has no partial page of the class"),
    MF2_OPTION("MF2_ADOPT_PRESSURE", kCount, adopt_pressure, "", 1, 0, kU32,
               "Route P: adopt only when more than this many pages of the class wait on pending "
               "queues"),
    MF2_OPTION("MF2_ADOPT_MIN_REMOTE", kCount, adopt_min_remote, "", 1, 0, kU32,
               "Route P: adopt only a page holding at least this many remote frees (or full of "
               "them)"),
    MF2_OPTION("MF2_RFR_US", kDuration, rfr_window_ns, "us", kUs, 0, kMaxNs,
               "Route P: the owner's right of first refusal after a page's first remote free"),
    // Completely free full pages of an idle owner go back to the page source: swept by the
    // background reclaimer, or without it by the thread whose free completed them.
    MF2_OPTION("MF2_RECLAIM_IDLE", kBool, reclaim_idle, "", 1, 0, 1,
               "release idle owners' whole pages (every route)"),
    // Longer than Route P's MF2_IDLE_US: a thread that is merely descheduled for a time slice
    // must not have its whole pages released under it.
    MF2_OPTION("MF2_RECLAIM_AFTER_US", kDuration, reclaim_after_ns, "us", kUs, 0, kMaxNs,
               "an owner is idle for reclamation after no allocation slow path for this long"),
    // A sweep walks the whole queue: without the reclaimer an idle owner keeps fewer than this
    // many whole pages.
    MF2_OPTION("MF2_RECLAIM_BATCH", kCount, reclaim_batch, "", 1, 1, kU32,
               "without the reclaimer, a freer sweeps an idle owner after this many whole pages"),
    // reclaimer.h: one thread, started on the first page that comes back whole, asleep (no CPU)
    // while no heap has whole pages waiting and the span cache is empty.
    MF2_OPTION("MF2_BACKGROUND_RECLAIM", kBool, background_reclaim, "", 1, 0, 1,
               "a background thread sweeps idle owners' whole pages and decays the span cache"),
    // reclaimer.h: a thread pool's idle workers give back their caches and empty pages although
    // no page of theirs comes back whole. The reclaimer starts once a second thread allocates.
    MF2_OPTION("MF2_IDLE_FLUSH_US", kDuration, idle_flush_after_ns, "us", kUs, 0, kMaxNs,
               "a thread with no allocation slow path for this long has its caches and empty "
               "pages taken back by the background reclaimer (0: never)"),
    // The must-reuse gate still drains the whole queue before it ever takes a new page.
    MF2_OPTION("MF2_PENDING_BUDGET", kCount, pending_budget, "", 1, 1, kU32,
               "pending pages examined per slow path before the active page and partial list"),
    // Per heap; idle heaps keep none.
    MF2_OPTION("MF2_HEAP_EMPTY_KB", kSize, heap_empty_bytes, "KiB", kKiB, 0, kMaxBytes,
               "empty pages a heap keeps for reuse (or an eighth of its own pages, if more)"),
    MF2_OPTION("MF2_PAGE_CACHE_MB", kSize, page_cache_bytes, "MiB", kMiB, 0, kMaxBytes,
               "free spans kept resident for reuse; beyond, returned with madvise(DONTNEED)"),
    // OsPageSource::Decay and LargeDecay, run by the background reclaimer (never started for
    // this alone).
    MF2_OPTION("MF2_PAGE_CACHE_DECAY_US", kDuration, page_cache_decay_ns, "us", kUs, 0, kMaxNs,
               "cached free spans and large mappings unused this long go back to the OS (0: kept)"),
    // OsPageSource::Decay: the span cache beyond an eighth of the spans in use; a period not
    // shorter than MF2_PAGE_CACHE_DECAY_US is the same as 0.
    MF2_OPTION("MF2_PAGE_CACHE_EXCESS_DECAY_US", kDuration, page_cache_excess_decay_ns, "us", kUs,
               0, kMaxNs,
               "cached free spans beyond an eighth of the spans in use go back to the OS after "
               "this long unused (0: as MF2_PAGE_CACHE_DECAY_US)"),
    MF2_OPTION("MF2_LARGE_CACHE_MB", kSize, large_cache_bytes, "MiB", kMiB, 0, kMaxBytes,
               "freed large mappings (above 64 KiB) kept for reuse"),
    MF2_OPTION("MF2_RETAINED_SEGMENTS", kCount, retained_segments, "", 1, 0, kU32,
               "completely free 4 MiB segments kept mapped; beyond, unmapped"),
    // At least 2 blocks, at most Heap::kCacheSlots, per class; sized when a heap is taken.
    MF2_OPTION("MF2_CACHE_CLASS_KB", kSize, cache_class_bytes, "KiB", kKiB, 0, kMaxBytes,
               "free blocks each thread caches per size class at first (0: no caches)"),
    // A cache that overflows or runs dry doubles (up to 61 blocks) while all of a heap's caches
    // stay within their initial capacity plus this budget, or an eighth of its pages if more.
    MF2_OPTION("MF2_CACHE_HEAP_KB", kSize, cache_heap_bytes, "KiB", kKiB, 0, kMaxBytes,
               "how much a thread's caches may grow in all (or to an eighth of its pages)"),
    // At most Heap::kRemoteBatch; 1 pushes every remote free at once.
    MF2_OPTION("MF2_REMOTE_BATCH", kCount, remote_batch, "", 1, 1, 32,
               "remote frees a thread holds back per page before pushing them with one CAS"),
    // thread_heap.cc, TakeHeap: the successor of an exiting thread takes its heap; 0 for a
    // process whose new threads must never give up the CPU in their first allocation.
    MF2_OPTION("MF2_SUCCESSOR_YIELDS", kCount, successor_yields, "", 1, 0, 16,
               "times a new thread that freed before its first allocation yields the CPU while "
               "the heap of its first freed block is still in use (0: never)"),
    MF2_OPTION("MF2_ON_ERROR", kOnError, on_error, "", 1, 0, 1,
               "on misuse (double free, foreign pointer...): abort, or report and ignore the call"),
    MF2_OPTION("MF2_STATS", kBool, stats_at_exit, "", 1, 0, 1,
               "print the merged counters to stderr at exit"),
    MF2_OPTION("MF2_VERBOSE", kBool, verbose, "", 1, 0, 1,
               "print the options in effect to stderr at first use"),
};
#undef MF2_OPTION

constexpr size_t kNumOptions = sizeof(kOptions) / sizeof(kOptions[0]);

constexpr bool RangesFitFields() {
  for (const OptionLine& line : kOptions) {
    const OptionInfo& o = line.info;
    if (o.min > o.max || o.max > line.field_max || o.scale == 0) return false;
  }
  return true;
}
static_assert(RangesFitFields(), "an option's range does not fit its field");

// ---- Parsing (no allocation: getenv, and the caller's buffers) ----

// The reasons ParseOptionValue gives for a value out of range (compared by address).
constexpr char kBelowMinimum[] = "below the minimum";
constexpr char kAboveMaximum[] = "above the maximum";

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(const char* a, const char* b) {
  for (; *a != '\0' && *b != '\0'; ++a, ++b) {
    if (Lower(*a) != Lower(*b)) return false;
  }
  return *a == *b;
}

// Decimal digits at *s, advancing *s past them; false if there are none. *overflow says whether
// the number exceeds uint64_t.
bool ParseDigits(const char** s, uint64_t* out, bool* overflow) {
  const char* p = *s;
  uint64_t n = 0;
  *overflow = false;
  if (*p < '0' || *p > '9') return false;
  for (; *p >= '0' && *p <= '9'; ++p) {
    if (__builtin_mul_overflow(n, uint64_t{10}, &n) ||
        __builtin_add_overflow(n, static_cast<uint64_t>(*p - '0'), &n)) {
      *overflow = true;
    }
  }
  *s = p;
  *out = n;
  return true;
}

const char* const kBoolTrue[] = {"1", "yes", "true", "on"};
const char* const kBoolFalse[] = {"0", "no", "false", "off"};
const char* const kOnErrorNames[] = {"abort", "report"};

// The multiplier a suffix stands for (field units), or 0 if it is not one `type` accepts.
uint64_t SuffixScale(OptionType type, const char* suffix, uint64_t unit_scale) {
  if (*suffix == '\0') return unit_scale;
  if (type == OptionType::kSize) {
    const char c = Lower(suffix[0]);
    const uint64_t scale = c == 'k' ? kKiB : c == 'm' ? kMiB : c == 'g' ? kGiB : 0;
    if (scale == 0) return 0;
    if (suffix[1] == '\0' || (Lower(suffix[1]) == 'b' && suffix[2] == '\0')) return scale;
    return 0;
  }
  if (type == OptionType::kDuration) {
    if (EqualsIgnoreCase(suffix, "us")) return 1000;
    if (EqualsIgnoreCase(suffix, "ms")) return 1000 * 1000;
    if (EqualsIgnoreCase(suffix, "s")) return 1000 * 1000 * 1000;
  }
  return 0;
}

bool ParseName(const char* text, const char* const* names, size_t n, uint64_t* out) {
  for (size_t i = 0; i < n; ++i) {
    if (EqualsIgnoreCase(text, names[i])) {
      *out = i;
      return true;
    }
  }
  return false;
}

// What a value of `o` looks like, for warnings.
void FormatSyntax(const OptionInfo& o, char* buf, size_t cap) {
  switch (o.type) {
    case OptionType::kBool:
      internal::FormatTo(buf, cap, "1, 0, yes, no, true, false, on or off");
      return;
    case OptionType::kCount:
      internal::FormatTo(buf, cap, "a decimal number");
      return;
    case OptionType::kSize:
      internal::FormatTo(buf, cap, "a number of %s, or one with a K, M or G suffix", o.unit);
      return;
    case OptionType::kDuration:
      internal::FormatTo(buf, cap, "a number of microseconds, or one with a us, ms or s suffix");
      return;
    case OptionType::kRoute:
      internal::FormatTo(buf, cap, "route_s, route_p or cda");
      return;
    case OptionType::kOnError:
      internal::FormatTo(buf, cap, "abort or report");
      return;
    case OptionType::kString:
      internal::FormatTo(buf, cap, "any text");
      return;
  }
}

// ---- The policy in force ----

using policy_internal::g_adoption_armed;
using policy_internal::g_current;
using policy_internal::g_route;
using policy_internal::kUnset;

// The environment's policy (constant-initialised to the defaults; filled once by InitPolicy).
Policy g_initial;

// Serialises OptionSet and SetPolicyForTesting; readers never take it.
Mutex g_set_mu;
// Copies published by OptionSet, carved from mmap'ed chunks and never freed.
char* g_arena ABSL_GUARDED_BY(g_set_mu) = nullptr;
size_t g_arena_left ABSL_GUARDED_BY(g_set_mu) = 0;

// Relaxed: a statistic for tests (PolicyCopies), ordered with nothing.
std::atomic<uint64_t> g_copies{0};

Policy* NewPolicyCopy(const Policy& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_set_mu) {
  constexpr size_t kSlot = (sizeof(Policy) + alignof(Policy) - 1) & ~(alignof(Policy) - 1);
  constexpr size_t kChunk = size_t{64} << 10;
  if (g_arena_left < kSlot) {
    void* mem = mmap(nullptr, kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    g_arena = static_cast<char*>(mem);
    g_arena_left = kChunk;
  }
  Policy* copy = new (g_arena) Policy(p);
  g_arena += kSlot;
  g_arena_left -= kSlot;
  g_copies.fetch_add(1, std::memory_order_relaxed);
  return copy;
}

void NoteRoute(Route r) {
  if (r != Route::kRouteS && !g_adoption_armed.load(std::memory_order_relaxed)) {
    g_adoption_armed.store(true, std::memory_order_relaxed);
  }
}

void WarnBadValue(int fd, const OptionInfo& o, const char* value, const char* why) {
  char def[64];
  FormatOptionValue(o, o.load(Policy()), def, sizeof(def));
  char reason[160];
  if (why == kBelowMinimum || why == kAboveMaximum) {
    char bound[64];
    FormatOptionValue(o, why == kBelowMinimum ? o.min : o.max, bound, sizeof(bound));
    internal::FormatTo(reason, sizeof(reason), "%s %s", why, bound);
  } else {
    char syntax[96];
    FormatSyntax(o, syntax, sizeof(syntax));
    internal::FormatTo(reason, sizeof(reason), "%s; expected %s", why, syntax);
  }
  char line[512];
  const size_t n = internal::FormatTo(
      line, sizeof(line), "mf2: warning: %s=%.64s%s ignored (%s); using the default %s\n", o.name,
      value, std::strlen(value) > 64 ? "..." : "", reason, def);
  internal::WriteAll(fd, line, n);
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

size_t OptionCount() { return kNumOptions; }

const OptionInfo& OptionAt(size_t i) { return kOptions[i].info; }

// By its environment name ("MF2_PENDING_BUDGET") or the C API's ("pending_budget": without the
// prefix, any case).
const OptionInfo* FindOption(const char* name) {
  if (name == nullptr) return nullptr;
  for (const OptionLine& line : kOptions) {
    if (std::strcmp(line.info.name, name) == 0) return &line.info;
    if (strcasecmp(line.info.name + 4, name) == 0) return &line.info;
  }
  return nullptr;
}

bool ParseOptionValue(const OptionInfo& o, const char* text, uint64_t* value, const char** why) {
  uint64_t v = 0;
  switch (o.type) {
    case OptionType::kString:
      *value = reinterpret_cast<uintptr_t>(text);
      return true;
    case OptionType::kBool:
      if (ParseName(text, kBoolTrue, 4, &v)) {
        *value = 1;
        return true;
      }
      if (ParseName(text, kBoolFalse, 4, &v)) {
        *value = 0;
        return true;
      }
      *why = "not a boolean";
      return false;
    case OptionType::kRoute: {
      const char* const names[] = {RouteName(Route::kRouteS), RouteName(Route::kRouteP),
                                   RouteName(Route::kCda)};
      if (ParseName(text, names, 3, &v)) break;
      *why = "not a route";
      return false;
    }
    case OptionType::kOnError:
      if (ParseName(text, kOnErrorNames, 2, &v)) break;
      *why = "not an action";
      return false;
    case OptionType::kCount:
    case OptionType::kSize:
    case OptionType::kDuration: {
      const char* p = text;
      bool overflow = false;
      if (!ParseDigits(&p, &v, &overflow)) {
        *why = "not a number";
        return false;
      }
      const uint64_t scale = SuffixScale(o.type, p, o.scale);
      if (scale == 0) {
        *why = o.type == OptionType::kCount ? "not a number" : "not a number with a known suffix";
        return false;
      }
      if (overflow || __builtin_mul_overflow(v, scale, &v)) {
        *why = kAboveMaximum;
        return false;
      }
      break;
    }
  }
  if (v < o.min) {
    *why = kBelowMinimum;
    return false;
  }
  if (v > o.max) {
    *why = kAboveMaximum;
    return false;
  }
  *value = v;
  return true;
}

size_t FormatOptionValue(const OptionInfo& o, uint64_t v, char* buf, size_t cap) {
  const unsigned long long n = v;
  switch (o.type) {
    case OptionType::kBool:
    case OptionType::kCount:
      return internal::FormatTo(buf, cap, "%llu", n);
    case OptionType::kSize:
      if (v % o.scale == 0) return internal::FormatTo(buf, cap, "%llu %s", n / o.scale, o.unit);
      return internal::FormatTo(buf, cap, "%llu bytes", n);
    case OptionType::kDuration:
      if (v % o.scale == 0) return internal::FormatTo(buf, cap, "%llu %s", n / o.scale, o.unit);
      return internal::FormatTo(buf, cap, "%llu ns", n);
    case OptionType::kRoute: {
      const char* name = v <= 2 ? RouteName(static_cast<Route>(v)) : nullptr;
      return internal::FormatTo(buf, cap, "%s", name != nullptr ? name : "?");
    }
    case OptionType::kOnError:
      return internal::FormatTo(buf, cap, "%s", v < 2 ? kOnErrorNames[v] : "?");
    case OptionType::kString:
      return internal::FormatTo(buf, cap, "%s",
                                v != 0 ? reinterpret_cast<const char*>(v) : "(not set)");
  }
  return 0;
}

Policy PolicyFromEnvironment(int warn_fd) {
  Policy p;
  for (const OptionLine& line : kOptions) {
    const OptionInfo& o = line.info;
    // getenv does not allocate.
    const char* text = std::getenv(o.name);
    if (text == nullptr || *text == '\0') continue;
    uint64_t v = 0;
    const char* why = "";
    if (ParseOptionValue(o, text, &v, &why)) {
      o.store(&p, v);
    } else {
      WarnBadValue(warn_fd, o, text, why);
    }
  }
  return p;
}

void PrintOptions(const Policy& policy, int fd) {
  const Policy defaults;
  for (const OptionLine& line : kOptions) {
    const OptionInfo& o = line.info;
    char value[96];
    FormatOptionValue(o, o.load(policy), value, sizeof(value));
    char buf[512];
    const size_t n = internal::FormatTo(
        buf, sizeof(buf), "mf2: option %s=%s%s: %s\n", o.name, value,
        o.load(policy) == o.load(defaults) ? " (default)" : "", o.help);
    internal::WriteAll(fd, buf, n);
  }
}

namespace {

// Makes `p` the policy in force, and pushes what lower layers need of it (check.h's error mode).
void Publish(const Policy* p) {
  internal::SetErrorMode(p->on_error == OnError::kAbort ? internal::ErrorMode::kAbort
                                                        : internal::ErrorMode::kReport);
  // Release: a reader that acquires the pointer (GetPolicy) sees every field of the policy.
  g_current.store(p, std::memory_order_release);
}

}  // namespace

void internal::InitErrorMode() { GetPolicy(); }

const Policy& policy_internal::InitPolicy() {
  // Exactly once even if two threads race to the first call (pthread_once: a futex, no
  // allocation; a function-local static would need the C++ runtime's guard, tools/mf2.bzl).
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, [] {
    g_initial = PolicyFromEnvironment(2);
    Publish(&g_initial);
    if (g_initial.verbose) PrintOptions(g_initial, 2);
  });
  // Acquire: pairs with the release in Publish or with a later OptionSet's.
  return *g_current.load(std::memory_order_acquire);
}

namespace {

// The policy copies of SetPolicyForTesting and OptionSet, one per distinct set of option values
// (a fuzzer switches among a few thousand at most), found by hashing the values: tests, fuzzers
// and programs may switch policies as often as they like without the arena growing, and without
// writing a copy that a thread (the background reclaimer) may be reading.
constexpr size_t kInterned = 8192;  // a power of two
const Policy** g_interned ABSL_GUARDED_BY(g_set_mu) = nullptr;
size_t g_interned_count ABSL_GUARDED_BY(g_set_mu) = 0;

uint64_t OptionsHash(const Policy& p) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (const OptionLine& line : kOptions) h = (h ^ line.info.load(p)) * 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 31);
}

bool SameOptions(const Policy& a, const Policy& b) {
  for (const OptionLine& line : kOptions) {
    if (line.info.load(a) != line.info.load(b)) return false;
  }
  return true;
}

const Policy* InternPolicy(const Policy& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_set_mu) {
  if (g_interned == nullptr) {
    void* mem = mmap(nullptr, kInterned * sizeof(Policy*), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    g_interned = static_cast<const Policy**>(mem);
  }
  for (size_t i = OptionsHash(p) & (kInterned - 1);; i = (i + 1) & (kInterned - 1)) {
    if (g_interned[i] == nullptr) {
      if (g_interned_count == kInterned / 2) return nullptr;  // full: the caller decides
      const Policy* copy = NewPolicyCopy(p);
      if (copy == nullptr) return nullptr;
      ++g_interned_count;
      g_interned[i] = copy;
      return copy;
    }
    if (SameOptions(*g_interned[i], p)) return g_interned[i];
  }
}

}  // namespace

void SetPolicyForTesting(const Policy& policy) {
  policy_internal::InitPolicy();
  {
    MutexLock lock(&g_set_mu);
    // Release: a reader that acquires the pointer sees every field of the copy (published as
    // OptionSet does; an earlier copy stays valid for a reader still holding it).
    const Policy* copy = InternPolicy(policy);
    MF2_CHECK(copy != nullptr, "SetPolicyForTesting: no memory for a policy, or too many policies");
    Publish(copy);
  }
  SetRoute(policy.route);
}

bool OptionGet(const char* name, long long* out) {
  const OptionInfo* o = FindOption(name);
  if (o == nullptr || o->type == OptionType::kString) return false;
  const uint64_t v = o->type == OptionType::kRoute ? static_cast<uint64_t>(CurrentRoute())
                                                   : o->load(GetPolicy()) / o->scale;
  *out = static_cast<long long>(v);
  return true;
}

int OptionSet(const char* name, long long value) {
  const OptionInfo* o = FindOption(name);
  if (o == nullptr || o->type == OptionType::kString || value < 0) return EINVAL;
  uint64_t v;
  if (__builtin_mul_overflow(static_cast<uint64_t>(value), o->scale, &v) || v < o->min ||
      v > o->max) {
    return EINVAL;
  }
  GetPolicy();  // the environment first, so that it does not overwrite this later
  {
    MutexLock lock(&g_set_mu);
    // Relaxed: setters are serialised by g_set_mu, which orders this load after the last store.
    Policy next = *g_current.load(std::memory_order_relaxed);
    o->store(&next, v);
    // Interned: a program that switches between a few settings, however often, keeps one copy
    // of each. Beyond kInterned / 2 distinct policies each new one is a copy of its own.
    const Policy* copy = InternPolicy(next);
    if (copy == nullptr) copy = NewPolicyCopy(next);
    if (copy == nullptr) return ENOMEM;
    Publish(copy);
  }
  if (o->type == OptionType::kRoute) SetRoute(static_cast<Route>(v));
  return 0;
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

// Relaxed: a statistic.
uint64_t PolicyCopies() { return g_copies.load(std::memory_order_relaxed); }

void PolicyPrepareFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { g_set_mu.Lock(); }
void PolicyParentAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { g_set_mu.Unlock(); }
void PolicyChildAfterFork() { g_set_mu.ResetAfterFork(); }

}  // namespace mf2
