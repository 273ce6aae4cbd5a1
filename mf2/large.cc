#include "mf2/large.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/base/thread_annotations.h"
#include "mf2/check.h"
#include "mf2/mutex.h"
#include "mf2/policy.h"

namespace mf2 {
namespace {

constexpr size_t kPage = 4096;
// Larger than any address space: requests above this fail with ENOMEM before any arithmetic.
constexpr size_t kMaxLarge = size_t{1} << 46;

struct Entry {
  uintptr_t user;      // 0: empty; 1: deleted
  size_t size;         // usable bytes
  uintptr_t map_base;  // what to munmap
  size_t map_len;
};

// Open addressing, linear probing, table memory from mmap (never from malloc).
class LargeTable {
 public:
  bool Insert(const Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if ((used_ + 1) * 2 > cap_ && !Grow()) return false;
    size_t i = Hash(e.user) & (cap_ - 1);
    while (slots_[i].user > 1) i = (i + 1) & (cap_ - 1);
    if (slots_[i].user == 0) ++used_;
    slots_[i] = e;
    ++live_;
    return true;
  }
  Entry* Find(uintptr_t user) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (cap_ == 0) return nullptr;
    for (size_t i = Hash(user) & (cap_ - 1);; i = (i + 1) & (cap_ - 1)) {
      if (slots_[i].user == user) return &slots_[i];
      if (slots_[i].user == 0) return nullptr;
    }
  }
  void Erase(Entry* e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    e->user = 1;  // tombstone
    --live_;
  }
  size_t live() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return live_; }

  Mutex mu;

 private:
  static size_t Hash(uintptr_t p) { return (p >> 12) * 0x9E3779B97F4A7C15ull >> 20; }
  bool Grow() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    size_t ncap = cap_ == 0 ? 512 : cap_ * 2;
    void* mem = mmap(nullptr, ncap * sizeof(Entry), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return false;
    Entry* old = slots_;
    size_t ocap = cap_;
    slots_ = static_cast<Entry*>(mem);
    cap_ = ncap;
    used_ = live_ = 0;
    for (size_t i = 0; i < ocap; ++i) {
      if (old[i].user > 1) Insert(old[i]);
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

// Freed mappings kept for reuse (most recent first), bounded by Policy::large_cache_bytes, so
// programs that allocate and free the same large buffers repeatedly do not pay mmap + munmap +
// page faults each time. Resident memory stays within the bound.
struct CachedMapping {
  uintptr_t base;
  size_t len;
};
constexpr int kMaxCached = 16;
CachedMapping g_cached[kMaxCached] ABSL_GUARDED_BY(g_table.mu);
int g_num_cached ABSL_GUARDED_BY(g_table.mu) = 0;
size_t g_cached_bytes ABSL_GUARDED_BY(g_table.mu) = 0;

// The smallest cached mapping of at least `len` and at most twice that, removed from the cache;
// {0, 0} if none.
CachedMapping TakeCached(size_t len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  int best = -1;
  for (int i = 0; i < g_num_cached; ++i) {
    const size_t l = g_cached[i].len;
    if (l >= len && l <= 2 * len && (best < 0 || l < g_cached[best].len)) best = i;
  }
  if (best < 0) return CachedMapping{0, 0};
  CachedMapping m = g_cached[best];
  g_cached_bytes -= m.len;
  g_cached[best] = g_cached[--g_num_cached];
  return m;
}

// Keeps [base, base + len) for reuse if it fits the bound; returns false if the caller must unmap.
bool PutCached(uintptr_t base, size_t len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_table.mu) {
  const size_t bound = GetPolicy().large_cache_bytes;
  if (len > bound / 4 || g_num_cached == kMaxCached || g_cached_bytes + len > bound) return false;
  g_cached[g_num_cached++] = CachedMapping{base, len};
  g_cached_bytes += len;
  return true;
}

}  // namespace

void* LargeAllocate(size_t size, size_t alignment) {
  if (size > kMaxLarge || alignment > kMaxLarge) {
    errno = ENOMEM;
    return nullptr;
  }
  if (size == 0) size = 1;
  size_t len = (size + kPage - 1) & ~(kPage - 1);
  if (alignment <= kPage) {
    MutexLock lock(&g_table.mu);
    CachedMapping m = TakeCached(len);
    if (m.base != 0) {
      // The whole mapping is usable and is unmapped whole.
      if (g_table.Insert(Entry{m.base, m.len, m.base, m.len})) {
        return reinterpret_cast<void*>(m.base);
      }
      munmap(reinterpret_cast<void*>(m.base), m.len);
    }
  }
  size_t extra = alignment > kPage ? alignment - kPage : 0;
  void* raw = mmap(nullptr, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) {
    errno = ENOMEM;
    return nullptr;
  }
  uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t user = (base + alignment - 1) & ~(uintptr_t{alignment} - 1);
  if (alignment <= kPage) user = base;
  // Trim the alignment slack so only [user, user + len) stays mapped.
  if (user > base) munmap(raw, user - base);
  uintptr_t end = base + len + extra;
  if (end > user + len) munmap(reinterpret_cast<void*>(user + len), end - (user + len));
  Entry e{user, len, user, len};
  {
    MutexLock lock(&g_table.mu);
    if (g_table.Insert(e)) return reinterpret_cast<void*>(user);
  }
  munmap(reinterpret_cast<void*>(user), len);
  errno = ENOMEM;
  return nullptr;
}

bool LargeFree(void* p) {
  Entry e;
  {
    MutexLock lock(&g_table.mu);
    Entry* found = g_table.Find(reinterpret_cast<uintptr_t>(p));
    if (found == nullptr) return false;
    e = *found;
    g_table.Erase(found);
    if (PutCached(e.map_base, e.map_len)) return true;
  }
  munmap(reinterpret_cast<void*>(e.map_base), e.map_len);
  return true;
}

size_t LargeUsableSize(const void* p) {
  MutexLock lock(&g_table.mu);
  Entry* found = g_table.Find(reinterpret_cast<uintptr_t>(p));
  return found == nullptr ? 0 : found->size;
}

void LargeReleaseCache() {
  MutexLock lock(&g_table.mu);
  while (g_num_cached > 0) {
    CachedMapping m = g_cached[--g_num_cached];
    g_cached_bytes -= m.len;
    munmap(reinterpret_cast<void*>(m.base), m.len);
  }
}

size_t LargeCachedBytes() {
  MutexLock lock(&g_table.mu);
  return g_cached_bytes;
}

size_t LargeLiveCount() {
  MutexLock lock(&g_table.mu);
  return g_table.live();
}

void LargePrepareFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { g_table.mu.Lock(); }
void LargeParentAfterFork() ABSL_NO_THREAD_SAFETY_ANALYSIS { g_table.mu.Unlock(); }
void LargeChildAfterFork() { g_table.mu.ResetAfterFork(); }

}  // namespace mf2
