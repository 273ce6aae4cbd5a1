// Large allocations: requests above kMaxClassSize, or with alignment above a slice, are mapped
// directly from the OS (page-granular) and recorded in a table so that Free recognises them and
// rejects pointers MF2 never handed out. A lock guards the table: large allocations are rare
// and pay for a system call when they miss the cache. Freed mappings are kept for reuse up to
// Policy::large_cache_bytes (MF2_LARGE_CACHE_MB), at most 16 of them, each at most a quarter of
// the bound. A request aligned to at most a page takes from the cache whenever it holds a
// mapping: one of 1x..2x its size as it is, else the head of a longer one (its rest stays
// cached), else (unless the caller wants zeroed memory, which a fresh mapping gives without
// faulting a page in) a shorter one grown by mremap. So the resident pages of freed blocks serve
// the next request instead of staying resident beside a fresh mapping.
//
// realloc from a large size to a large size stays in the block's mapping: mremap grows it (in
// place when the address space above is free, else the kernel moves the page tables; the data is
// never copied) and a shrink unmaps the tail. When the OS refuses a mapping, the cached mappings
// of this file and the page source's cached spans are released and the mapping is tried once
// more before ENOMEM.
//
// Misuse: the last kFreedRemembered freed blocks are remembered (until a live block covers their
// address again), so a second free of a large block is reported as a double free; a pointer into
// a live large block is reported as not a block start (the table is scanned on that error path
// only).
#ifndef MF2_LARGE_H_
#define MF2_LARGE_H_

#include <cstddef>
#include <cstdint>

namespace mf2 {

// A mapping of at least `size` bytes aligned to `alignment` (a power of two), or nullptr with
// errno = ENOMEM. When `zeroed` is not null it is set to whether the memory is known to be zero
// (a fresh mapping is; one reused from the cache is not).
void* LargeAllocate(size_t size, size_t alignment, bool* zeroed = nullptr);
// If `p` is a live large allocation: unmaps (or caches) it and returns true. If `p` is a recently
// freed large block, or points inside a live one, reports that misuse of `call` (double free,
// not a block start) and returns true: handled, nothing freed. Returns false, doing nothing, for
// a pointer this file knows nothing about (the caller reports it as foreign).
bool LargeFree(void* p, const char* call = "free");
// The usable size of a live large allocation, or 0 if `p` is not one (nothing reported).
size_t LargeUsableSize(const void* p);
// Resizes the live large allocation `p` to hold `new_size` bytes (above kMaxClassSize) without
// copying: a shrink keeps the address (and unmaps the tail once that is worth a system call); a
// growth extends the mapping in place or lets the kernel move it (`*moved` is then true). The
// contents up to the smaller size are kept. Returns the block, or nullptr (p unchanged and still
// valid) when this cannot be done: p is not a live large block, the OS refuses, or a block
// aligned above a page cannot grow in place (it must not move to an unaligned address).
void* LargeResize(void* p, size_t new_size, bool* moved);

// What this file knows about a pointer (for error paths: it may scan the whole table).
struct LargeDiagnosis {
  enum Kind : uint8_t {
    kUnknown,         // neither a large block nor a recently freed one: foreign, as far as we know
    kLive,            // the start of a live large block (not misuse)
    kInteriorOfLive,  // inside the live large block [base, base + size), not at its start
    kFreedRecently,   // the start of one of the last kFreedRemembered freed large blocks (and
                      // of no live block since)
  };
  Kind kind;
  uintptr_t base;  // the block's start (kLive, kInteriorOfLive, kFreedRecently)
  size_t size;     // its usable size (when it was freed, for kFreedRecently)
};
inline constexpr uint32_t kFreedRemembered = 64;
LargeDiagnosis LargeDiagnose(const void* p);

// How a misused pointer was used: decides the kind reported for a freed block.
enum class LargeAccess : uint8_t {
  kFree,  // free, operator delete: a freed block is a double free
  kUse,   // realloc, malloc_usable_size: a freed block is a use after free
};
// Reports `p`, a pointer that is neither a live block nor inside an MF2 segment, as misuse by
// `call`: use after free or double free if it is a recently freed large block, not a block start
// if it points inside a live large block, a foreign pointer otherwise. Reports nothing if `p` is
// in fact a live large block. For the error paths of free, realloc and malloc_usable_size.
void LargeReportMisuse(const void* p, const char* call, LargeAccess access);

// MF2 mapped [start, start + len) for something else (a segment: OsPageSource::MapSegment): the
// freed large blocks remembered there are forgotten, so that a misuse of one of those addresses
// later (once the segment is unmapped again) is not named after a large block that no longer
// exists. Takes the table lock: callers may hold the page source's lock, which comes first.
void LargeForgetFreedRange(const void* start, size_t len);

// Number of live large allocations, and bytes of freed mappings kept for reuse (tests).
size_t LargeLiveCount();
size_t LargeCachedBytes();
// Slots in the table of live blocks (tests: it grows with the live blocks, not with the frees).
size_t LargeTableCapacity();
// Checks (MF2_CHECK) the invariants of the table and the cache stated in large.cc: the table's
// counts, every live block the whole of its mapping, the cached bytes their mappings' sum, no two
// of the cached mappings and live blocks' mappings sharing a page. O(table capacity x cached
// mappings): tests and fuzzers only.
void LargeCheckInvariants();
// Unmaps every cached mapping (tests; before the retry when the OS refuses a mapping).
void LargeReleaseCache();
// The cache's decay, called by the background reclaimer with the page source's (same period,
// Policy::page_cache_decay_ns): once per period, the oldest cached mappings are unmapped until at
// least the least amount cached during the period (its low-water mark: mappings nobody took) is
// gone. Returns how long until the next decay is due, or 0 when none is (the cache is empty, or
// decay is off).
uint64_t LargeDecay(uint64_t now_ns);

// fork(): hold the table lock across fork.
void LargePrepareFork();
void LargeParentAfterFork();
void LargeChildAfterFork();

}  // namespace mf2

#endif  // MF2_LARGE_H_
