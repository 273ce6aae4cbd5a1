#include "mf2/large.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/base/thread_annotations.h"
#include "mf2/check.h"
#include "mf2/decay.h"
#include "mf2/mutex.h"
#include "mf2/page_source.h"
#include "mf2/policy.h"
#include "mf2/reclaimer.h"
#include "mf2/stats.h"

namespace mf2 {
namespace {

constexpr size_t kPage = 4096;
// Larger than any address space: requests above this fail with ENOMEM before any arithmetic.
constexpr size_t kMaxLarge = size_t{1} << 46;
// A shrink unmaps the mapping's tail once the tail is at least this long; below it the system
// call costs more than the memory is worth (it is also the smallest large block).
constexpr size_t kShrinkUnmapMin = size_t{64} << 10;

size_t RoundUpToPage(size_t n) { return (n + kPage - 1) & ~(kPage - 1); }

// Every block starts its mapping and uses all of it (user == map_base, size == map_len):
// alignment slack is trimmed at allocation, and a shrink either unmaps the tail or leaves it
// usable.
struct Entry {
  uintptr_t user;      // 0: empty; 1: deleted
  size_t size;         // usable bytes
  uintptr_t map_base;  // what to munmap
  size_t map_len;
  size_t alignment;    // as requested; above kPage the block never moves (LargeResize)
};

// Open addressing, linear probing, table memory from mmap (never from malloc).
class LargeTable {
 public:
  bool Insert(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if ((used_ + 1) * 2 > cap_ && !Grow()) return false;
    Place(e);
    NoteLargeBytes(static_cast<int64_t>(e.map_len));  // the footprint gauge (stats.h)
    return true;
  }
  // Makes sure the next Insert succeeds without growing the table; false if it cannot grow.
  bool Reserve() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return (used_ + 1) * 2 <= cap_ || Grow(); }
  // The live entry whose usable range contains `p`: O(capacity), for error paths only.
  const Entry* FindContaining(uintptr_t p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (size_t i = 0; i < cap_; ++i) {
      const Entry& e = slots_[i];
      if (e.user > 1 && p >= e.user && p - e.user < e.size) return &e;
    }
    return nullptr;
  }
  Entry* Find(uintptr_t user) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (cap_ == 0) return nullptr;
    for (size_t i = Hash(user) & (cap_ - 1);; i = (i + 1) & (cap_ - 1)) {
      if (slots_[i].user == user) return &slots_[i];
      if (slots_[i].user == 0) return nullptr;
    }
  }
  void Erase(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    NoteLargeBytes(-static_cast<int64_t>(e->map_len));
    e->user = 1;  // tombstone
    --live_;
  }
  size_t live() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return live_; }
  size_t capacity() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return cap_; }
  // Calls f(entry) for every live entry (checks only).
  template <typename F>
  void ForEachLive(F f) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (size_t i = 0; i < cap_; ++i) {
      if (slots_[i].user > 1) f(slots_[i]);
    }
  }
  // The counts' invariants: a power-of-two capacity at most half full (live entries and
  // tombstones), live_ the number of live entries, each found again from its address.
  void CheckInvariants() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    MF2_CHECK(cap_ == 0 || (cap_ & (cap_ - 1)) == 0, "large table: capacity not a power of two");
    MF2_CHECK(used_ * 2 <= cap_ && live_ <= used_, "large table: counts out of bounds");
    size_t live = 0;
    size_t used = 0;
    for (size_t i = 0; i < cap_; ++i) {
      used += slots_[i].user != 0;
      if (slots_[i].user <= 1) continue;
      ++live;
      // Find's probe from the entry's hash reaches it before an empty slot.
      size_t j = Hash(slots_[i].user) & (cap_ - 1);
      while (j != i && slots_[j].user != 0) j = (j + 1) & (cap_ - 1);
      MF2_CHECK(j == i, "large table: a live entry its address does not find");
    }
    MF2_CHECK(live == live_ && used == used_, "large table: counts do not match the slots");
  }

  Mutex mu;

 private:
  static size_t Hash(uintptr_t p) { return (p >> 12) * 0x9E3779B97F4A7C15ull >> 20; }
  void Place(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    size_t i = Hash(e.user) & (cap_ - 1);
    while (slots_[i].user > 1) i = (i + 1) & (cap_ - 1);
    if (slots_[i].user == 0) ++used_;
    slots_[i] = e;
    ++live_;
  }
  // Makes room: a new array without tombstones, twice as large, or as large as now when
  // tombstones rather than live entries fill the table (live entries at most a quarter of it).
  // Doubling in that case too made the capacity follow the number of frees, without bound (16384
  // slots for 64 live blocks after 50,000 frees: mf2:large_test, LargeTable).
  bool Grow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const size_t ncap = cap_ == 0 ? 512 : (live_ + 1) * 4 <= cap_ ? cap_ : cap_ * 2;
    void* mem = mmap(nullptr, ncap * sizeof(Entry), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return false;
    Entry* old = slots_;
    size_t ocap = cap_;
    slots_ = static_cast<Entry*>(mem);
    cap_ = ncap;
    used_ = live_ = 0;
    for (size_t i = 0; i < ocap; ++i) {
      if (old[i].user > 1) Place(old[i]);  // the same entries: the gauge does not change
    }
    if (old != nullptr) munmap(old, ocap * sizeof(Entry));
    return true;
  }

  Entry* slots_ ABSL_GUARDED_BY(mu) = nullptr;
  size_t cap_ ABSL_GUARDED_BY(mu) = 0;
  size_t used_ ABSL_GUARDED_BY(mu) = 0;  // live + tombstones
  size_t live_ ABSL_GUARDED_BY(mu) = 0;
};

LargeTable g_table;

// Freed mappings kept for reuse (in the order they were freed, oldest first), bounded by
// Policy::large_cache_bytes, so programs that allocate and free the same large buffers
// repeatedly do not pay mmap + munmap + page faults each time. Resident memory stays within the
// bound, and the cache decays as the page source's does (LargeDecay): mappings nobody took for a
// decay period are unmapped, so an idle process does not keep them resident.
struct CachedMapping {
  uintptr_t base;
  size_t len;
};
constexpr int kMaxCached = 16;
CachedMapping g_cached[kMaxCached] ABSL_GUARDED_BY(g_table.mu);
int g_num_cached ABSL_GUARDED_BY(g_table.mu) = 0;
size_t g_cached_bytes ABSL_GUARDED_BY(g_table.mu) = 0;
DecayClock g_decay ABSL_GUARDED_BY(g_table.mu);  // the cache's decay schedule (LargeDecay)

// Removes g_cached[i], keeping the order of the rest.
CachedMapping RemoveCached(int i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  const CachedMapping m = g_cached[i];
  for (int j = i + 1; j < g_num_cached; ++j) g_cached[j - 1] = g_cached[j];
  --g_num_cached;
  g_cached_bytes -= m.len;
  g_decay.Lowered(g_cached_bytes);
  return m;
}

// What serves a request of `len` bytes from the cache, taken out of it ({0, 0} if the cache is
// empty, or `may_grow` is false and every mapping is shorter than `len`), in order of preference:
//   1. the shortest mapping of `len`..2 x `len`: used whole, as it is;
//   2. else the first `len` bytes of the shortest longer one, whose rest stays cached where it
//      is (a mapping's pages may be unmapped or remapped apart: the two are separate from now on);
//   3. else, if `may_grow`, the longest shorter one, which the caller grows to `len` (Grow).
// 2 and 3 reuse pages that are resident already instead of faulting in fresh ones while the
// cached mapping stays resident beside them: freed large blocks of every size serve requests of
// every size (bench/RESULTS.md, "The large cache serves requests of any size").
CachedMapping TakeCached(size_t len, bool may_grow) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  int fit = -1;      // shortest of len..2 len
  int longer = -1;   // shortest above 2 len
  int shorter = -1;  // longest below len
  for (int i = 0; i < g_num_cached; ++i) {
    const size_t l = g_cached[i].len;
    if (l >= len && l <= 2 * len) {
      if (fit < 0 || l < g_cached[fit].len) fit = i;
    } else if (l > 2 * len) {
      if (longer < 0 || l < g_cached[longer].len) longer = i;
    } else if (shorter < 0 || l > g_cached[shorter].len) {
      shorter = i;
    }
  }
  if (fit < 0 && longer >= 0) {
    CachedMapping& m = g_cached[longer];  // the rest keeps its place (and age) in the cache
    const CachedMapping head{m.base, len};
    m.base += len;
    m.len -= len;
    g_cached_bytes -= len;
    g_decay.Lowered(g_cached_bytes);
    return head;
  }
  const int best = fit >= 0 ? fit : may_grow ? shorter : -1;
  if (best < 0) return CachedMapping{0, 0};
  return RemoveCached(best);
}

// Grows `m`, taken from the cache (so nobody else's) to `len` bytes with mremap, which moves it
// if the address space above is taken. Returns the mapping, or {0, 0} when the kernel refused
// (then `m` is unmapped). Not under the table lock: no entry is touched, and an address the
// kernel frees by moving the mapping holds no live block.
CachedMapping Grow(CachedMapping m, size_t len) {
  void* r = mremap(reinterpret_cast<void*>(m.base), m.len, len, MREMAP_MAYMOVE);
  if (r == MAP_FAILED) {
    munmap(reinterpret_cast<void*>(m.base), m.len);
    return CachedMapping{0, 0};
  }
  return CachedMapping{reinterpret_cast<uintptr_t>(r), len};
}

// Keeps [base, base + len) for reuse if it fits the bound; returns false if the caller must unmap.
// `*first`: the cache was empty (no decay scheduled), so a sleeping reclaimer must look again.
bool PutCached(uintptr_t base, size_t len, bool* first)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  const size_t bound = GetPolicy().large_cache_bytes;
  if (len > bound / 4 || g_num_cached == kMaxCached || g_cached_bytes + len > bound) return false;
  *first = g_cached_bytes == 0;
  g_cached[g_num_cached++] = CachedMapping{base, len};
  g_cached_bytes += len;
  return true;
}

// The last kFreedRemembered freed blocks (a ring, newest at g_freed_next - 1), so that a second
// free of one is named a double free rather than a foreign pointer. A block is forgotten as soon
// as a live block or a segment covers its address again (ForgetFreed, LargeForgetFreedRange):
// what the ring says is never contradicted by the table or by a segment MF2 mapped since.
// (Another mapping may still come to lie there, the program's own or one of MF2's few small
// ones, heaps and this table: a free of that exact address is then named a double free of the
// old block, misuse either way.)
struct FreedBlock {
  uintptr_t user;
  size_t size;
};
FreedBlock g_freed[kFreedRemembered] ABSL_GUARDED_BY(g_table.mu);
uint32_t g_freed_next ABSL_GUARDED_BY(g_table.mu) = 0;

void RememberFreed(uintptr_t user, size_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  g_freed[g_freed_next % kFreedRemembered] = FreedBlock{user, size};
  ++g_freed_next;
}

// [start, start + len) is a live block's now, or a segment's: no freed block starts there.
void ForgetFreed(uintptr_t start, size_t len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  for (FreedBlock& f : g_freed) {
    if (f.user >= start && f.user - start < len) f = FreedBlock{0, 0};
  }
}

LargeDiagnosis DiagnoseLocked(uintptr_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  if (const Entry* e = g_table.Find(p)) {
    return LargeDiagnosis{LargeDiagnosis::kLive, e->user, e->size};
  }
  const uint32_t remembered =
      g_freed_next < kFreedRemembered ? g_freed_next : uint32_t{kFreedRemembered};
  for (uint32_t i = 1; i <= remembered; ++i) {
    const FreedBlock& f = g_freed[(g_freed_next - i) % kFreedRemembered];
    if (f.user == p) return LargeDiagnosis{LargeDiagnosis::kFreedRecently, f.user, f.size};
  }
  if (const Entry* e = g_table.FindContaining(p)) {
    return LargeDiagnosis{LargeDiagnosis::kInteriorOfLive, e->user, e->size};
  }
  return LargeDiagnosis{LargeDiagnosis::kUnknown, 0, 0};
}

// Called outside the table lock: a handler may allocate (a test's does) or never return.
void ReportDiagnosis(const LargeDiagnosis& d, const void* p, const char* call,
                     LargeAccess access) {
  const void* block = reinterpret_cast<const void*>(d.base);
  switch (d.kind) {
    case LargeDiagnosis::kLive:
      return;
    case LargeDiagnosis::kFreedRecently:
      if (access == LargeAccess::kFree) {
        internal::ReportError(ErrorKind::kDoubleFree, call, p, "large block was already freed",
                              block, d.size);
      } else {
        internal::ReportError(ErrorKind::kUseAfterFree, call, p, "large block was freed before",
                              block, d.size);
      }
      return;
    case LargeDiagnosis::kInteriorOfLive:
      internal::ReportError(ErrorKind::kNotABlock, call, p,
                            "points inside a live large block, not at its start", block, d.size);
      return;
    case LargeDiagnosis::kUnknown:
      internal::ReportError(ErrorKind::kForeignPointer, call, p,
                            "not from MF2 (another allocator's pointer, a stack or static "
                            "address)");
      return;
  }
}

// Records the mapping [base, base + len), which nobody else holds, as a live block and returns
// it; `*zeroed` (if asked) says whether it is `fresh` (zero). If the table cannot grow, unmaps it
// and returns nullptr.
void* HandOut(uintptr_t base, size_t len, size_t alignment, bool fresh, bool* zeroed) {
  {
    MutexLock lock(&g_table.mu);
    if (g_table.Insert(Entry{base, len, base, len, alignment})) {
      ForgetFreed(base, len);
      if (zeroed != nullptr) *zeroed = fresh;
      return reinterpret_cast<void*>(base);
    }
  }
  munmap(reinterpret_cast<void*>(base), len);
  return nullptr;
}

// One attempt: a cached mapping, else a fresh one. nullptr (errno not set) if the OS refuses the
// mapping or the table cannot grow.
void* TryAllocate(size_t len, size_t alignment, bool* zeroed) {
  if (alignment <= kPage) {
    // calloc (`zeroed` asked for) does not grow a cached mapping: it would clear the grown part,
    // which a fresh mapping has clear without a page faulted in.
    CachedMapping m;
    {
      MutexLock lock(&g_table.mu);
      m = TakeCached(len, /*may_grow=*/zeroed == nullptr);
    }
    if (m.base != 0 && m.len < len) m = Grow(m, len);
    // The whole mapping is usable and is unmapped whole; it held a freed block's data.
    if (m.base != 0) return HandOut(m.base, m.len, alignment, /*fresh=*/false, zeroed);
  }
  size_t extra = alignment > kPage ? alignment - kPage : 0;
  void* raw = mmap(nullptr, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t user = (base + alignment - 1) & ~(uintptr_t{alignment} - 1);
  if (alignment <= kPage) user = base;
  // Trim the alignment slack so only [user, user + len) stays mapped.
  if (user > base) munmap(raw, user - base);
  uintptr_t end = base + len + extra;
  if (end > user + len) munmap(reinterpret_cast<void*>(user + len), end - (user + len));
  // Fresh anonymous memory: the kernel's zero pages.
  return HandOut(user, len, alignment, /*fresh=*/true, zeroed);
}

// Grows the live block at `user` to `new_len` bytes with mremap. The table lock is held across
// the call: once the kernel has moved a block, its old range is free address space that another
// thread's mmap could take, and record under the old address, before this entry is updated.
// mremap moves page tables, not data, so the lock is held for a system call, never for a copy.
void* GrowLocked(uintptr_t user, size_t new_len, bool* moved)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  if (!g_table.Reserve()) return nullptr;  // a moved block's entry must fit after the move
  Entry* e = g_table.Find(user);
  if (e == nullptr) return nullptr;
  const size_t new_map_len = (user - e->map_base) + new_len;
  // An aligned block may only grow in place; with MREMAP_MAYMOVE the kernel grows in place when
  // the address space above is free, and otherwise moves the page tables.
  const int flags = e->alignment <= kPage ? MREMAP_MAYMOVE : 0;
  void* r = mremap(reinterpret_cast<void*>(e->map_base), e->map_len, new_map_len, flags);
  if (r == MAP_FAILED) return nullptr;
  const uintptr_t new_base = reinterpret_cast<uintptr_t>(r);
  if (new_base == e->map_base) {
    ForgetFreed(user + e->size, new_len - e->size);
    // The footprint gauge counts the grown bytes (Erase takes the whole mapping off it).
    NoteLargeBytes(static_cast<int64_t>(new_map_len - e->map_len));
    e->size = new_len;
    e->map_len = new_map_len;
    return reinterpret_cast<void*>(user);
  }
  const Entry moved_entry{new_base + (user - e->map_base), new_len, new_base, new_map_len,
                          e->alignment};
  // The old address is gone: a later free of it is a free of a freed block.
  RememberFreed(user, e->size);
  g_table.Erase(e);
  const bool inserted = g_table.Insert(moved_entry);
  MF2_CHECK(inserted, "the table was reserved before the move");
  ForgetFreed(moved_entry.user, new_len);
  *moved = true;
  return reinterpret_cast<void*>(moved_entry.user);
}

// When the OS refuses memory: give back what the caches hold before the one retry (the page
// source's span cache and empty segments, and this file's cached mappings). Not under the table
// lock: the page source's lock comes before it (fork.cc's lock order).
void ReleaseCachedMemory() { OsPageSource::Global().ReleaseUnderPressure(); }

}  // namespace

void* LargeAllocate(size_t size, size_t alignment, bool* zeroed) {
  if (size > kMaxLarge || alignment > kMaxLarge) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t len = RoundUpToPage(size == 0 ? 1 : size);
  if (void* p = TryAllocate(len, alignment, zeroed)) return p;
  // The address space is exhausted (or the map count, or the table could not grow), while
  // memory this process freed may still be mapped in the caches: release it, try once more.
  const int saved_errno = errno;
  ReleaseCachedMemory();
  if (void* p = TryAllocate(len, alignment, zeroed)) {
    errno = saved_errno;  // a success leaves errno as the caller had it
    return p;
  }
  errno = ENOMEM;
  return nullptr;
}

bool LargeFree(void* p, const char* call) {
  const uintptr_t user = reinterpret_cast<uintptr_t>(p);
  Entry e{};
  bool cached = false;
  bool first_cached = false;
  LargeDiagnosis diagnosis{LargeDiagnosis::kLive, user, 0};
  {
    MutexLock lock(&g_table.mu);
    Entry* found = g_table.Find(user);
    if (found != nullptr) {
      e = *found;
      g_table.Erase(found);
      RememberFreed(e.user, e.size);
      cached = PutCached(e.map_base, e.map_len, &first_cached);
    } else {
      diagnosis = DiagnoseLocked(user);
    }
  }
  if (diagnosis.kind == LargeDiagnosis::kUnknown) return false;  // the caller reports it
  if (diagnosis.kind != LargeDiagnosis::kLive) {
    ReportDiagnosis(diagnosis, p, call, LargeAccess::kFree);
    return true;
  }
  if (!cached) munmap(reinterpret_cast<void*>(e.map_base), e.map_len);
  // The cache has something to decay again: a reclaimer asleep for good must look (after the
  // unlock; it is woken for this, never started).
  if (first_cached) reclaimer::NotifyIfRunning();
  return true;
}

size_t LargeUsableSize(const void* p) {
  MutexLock lock(&g_table.mu);
  Entry* found = g_table.Find(reinterpret_cast<uintptr_t>(p));
  return found == nullptr ? 0 : found->size;
}

void* LargeResize(void* p, size_t new_size, bool* moved) {
  *moved = false;
  if (new_size > kMaxLarge) return nullptr;
  const uintptr_t user = reinterpret_cast<uintptr_t>(p);
  const size_t new_len = RoundUpToPage(new_size == 0 ? 1 : new_size);
  uintptr_t tail = 0;
  size_t tail_len = 0;
  {
    MutexLock lock(&g_table.mu);
    Entry* e = g_table.Find(user);
    if (e == nullptr) return nullptr;
    if (new_len > e->size) return GrowLocked(user, new_len, moved);
    // A shrink, or a growth within the usable size: in place. The tail goes back to the OS once
    // it is worth the system call, and the usable size follows the mapping.
    const uintptr_t map_end = e->map_base + e->map_len;
    if (map_end - (user + new_len) >= kShrinkUnmapMin) {
      tail = user + new_len;
      tail_len = map_end - tail;
      e->size = new_len;
      e->map_len = tail - e->map_base;
      NoteLargeBytes(-static_cast<int64_t>(tail_len));
    }
  }
  // Outside the lock: the tail belongs to no entry any more, and nothing else can be mapped
  // there before it is unmapped.
  if (tail_len != 0) munmap(reinterpret_cast<void*>(tail), tail_len);
  return p;
}

LargeDiagnosis LargeDiagnose(const void* p) {
  MutexLock lock(&g_table.mu);
  return DiagnoseLocked(reinterpret_cast<uintptr_t>(p));
}

void LargeReportMisuse(const void* p, const char* call, LargeAccess access) {
  ReportDiagnosis(LargeDiagnose(p), p, call, access);
}

void LargeReleaseCache() {
  MutexLock lock(&g_table.mu);
  while (g_num_cached > 0) {
    const CachedMapping m = RemoveCached(g_num_cached - 1);
    munmap(reinterpret_cast<void*>(m.base), m.len);
  }
}

uint64_t LargeDecay(uint64_t now_ns) {
  const uint64_t period = GetPolicy().page_cache_decay_ns;
  CachedMapping doomed[kMaxCached];
  int n = 0;
  uint64_t due = 0;
  {
    MutexLock lock(&g_table.mu);
    if (period == 0) return 0;
    if (g_decay.Due(now_ns)) {
      // What stayed cached the whole period: nobody needed it. The oldest mappings go first,
      // until at least that much is gone.
      size_t unused = g_decay.Unused(g_cached_bytes);
      while (unused > 0 && g_num_cached > 0) {
        doomed[n] = RemoveCached(0);
        unused -= std::min(unused, doomed[n].len);
        ++n;
      }
      g_decay.Restart(now_ns, period, g_cached_bytes);
    }
    due = g_decay.NextIn(now_ns);
  }
  // Outside the lock: the mappings belong to no entry and to the cache no more.
  for (int i = 0; i < n; ++i) munmap(reinterpret_cast<void*>(doomed[i].base), doomed[i].len);
  return due;
}

void LargeCheckInvariants() {
  MutexLock lock(&g_table.mu);
  g_table.CheckInvariants();
  const auto disjoint = [](uintptr_t a, size_t a_len, uintptr_t b, size_t b_len) {
    return a + a_len <= b || b + b_len <= a;
  };
  // The cache: within its count, its bytes the sum of its mappings', each page-aligned, no two
  // sharing a page.
  MF2_CHECK(g_num_cached >= 0 && g_num_cached <= kMaxCached, "large cache: count out of bounds");
  size_t bytes = 0;
  for (int i = 0; i < g_num_cached; ++i) {
    const CachedMapping& c = g_cached[i];
    MF2_CHECK(c.base % kPage == 0 && c.len % kPage == 0 && c.len != 0,
              "large cache: a mapping not page-aligned");
    bytes += c.len;
    for (int j = 0; j < i; ++j) {
      MF2_CHECK(disjoint(c.base, c.len, g_cached[j].base, g_cached[j].len),
                "large cache: two cached mappings overlap");
    }
  }
  MF2_CHECK(bytes == g_cached_bytes, "large cache: the cached bytes are not the mappings' sum");
  // Every live block is the whole of its page-aligned mapping (Entry), and no cached mapping
  // shares a page with one (a page handed out twice: TakeCached splits mappings).
  g_table.ForEachLive([&disjoint](const Entry& e) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // locked
    MF2_CHECK(e.map_base % kPage == 0 && e.map_len % kPage == 0 && e.map_len != 0,
              "large table: a mapping not page-aligned");
    MF2_CHECK(e.user == e.map_base && e.size == e.map_len,
              "large table: a block is not the whole of its mapping");
    MF2_CHECK(e.user % e.alignment == 0, "large table: a block not aligned as asked");
    for (int i = 0; i < g_num_cached; ++i) {
      MF2_CHECK(disjoint(g_cached[i].base, g_cached[i].len, e.map_base, e.map_len),
                "large cache: a cached mapping overlaps a live block's");
    }
  });
}

size_t LargeTableCapacity() {
  MutexLock lock(&g_table.mu);
  return g_table.capacity();
}

size_t LargeCachedBytes() {
  MutexLock lock(&g_table.mu);
  return g_cached_bytes;
}

void LargeForgetFreedRange(const void* start, size_t len) {
  MutexLock lock(&g_table.mu);
  ForgetFreed(reinterpret_cast<uintptr_t>(start), len);
}

size_t LargeLiveCount() {
  MutexLock lock(&g_table.mu);
  return g_table.live();
}

void LargePrepareFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { g_table.mu.Lock(); }
void LargeParentAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { g_table.mu.Unlock(); }
void LargeChildAfterFork() { g_table.mu.ResetAfterFork(); }

}  // namespace mf2
