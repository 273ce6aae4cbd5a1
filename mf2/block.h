// A block's allocator words while it is free, and the sanitizer hooks for block memory.
//
// Every block is at least 16 bytes. While MF2 holds a block (on a page's free list, on a remote
// stack, or in a thread's cache) it uses the block's first two words:
//   word 0  the link of the list it is on (page free lists and remote stacks; unused in caches)
//   word 1  a canary: Canary(address, where) = address ^ key ^ where, with `key` a secret random
//           per process and `where` one of the BlockState values below.
// and, in blocks of at least kHintBlockBytes on a remote chain (not in hardened builds), a third:
//   word 2  a prefetch hint: the block kHintDistance links further down its chain, written by the
//           freeing thread as the block joins the chain it holds back (Heap::Link), null for the
//           chain's last blocks.
//           The owner's collection (Page::CollectRemote) prefetches it, so that the blocks of a
//           chain, which the freeing thread's CPU wrote last, are fetched several at a time
//           instead of one link after another. Never followed: a stale or overwritten hint
//           costs a wasted prefetch, which cannot fault (nothing else checks or trusts it). A
//           block pushed on its own (Heap::ReturnRemote) keeps what the program left in word 2,
//           which the collection prefetches the same way.
// A block handed out to the program has word 1 cleared, so a canary in word 1 means "free" and
// says where it went. Every transition checks the canary it expects and writes the next one:
//   free by the owner        expects no canary        writes kInCache    (thread cache)
//   free by another thread   expects no canary        writes kOnRemote   (remote stack)
//   cache flush to the page  expects kInCache         writes kOnPage     (page free list)
//   remote collection        expects kOnRemote        writes kOnPage
//   cache refill             expects kOnPage (or new) writes kInCache
//   allocation (cache pop)   expects kInCache         clears word 1
// So a double free is seen at the second free, whichever threads free (a canary is there), and a
// block that a concurrent double free put on two lists is handed out at most once: the first
// hand-out clears the canary and every later copy fails its check (heap.h, "Double frees").
// A program's own data matches a canary with probability 2^-64 per free (the key is secret).
//
// Under AddressSanitizer every block MF2 holds is poisoned, so a use-after-free of an MF2 block
// is caught by ASan exactly like one of a malloc block. The allocator reaches its words of a
// poisoned block only through the accessors below, which are not instrumented. The canary word is
// a relaxed atomic: a racing double free of the same block (a program bug) must stay defined
// behaviour for the allocator, and TSan must see it as such.
#ifndef MF2_BLOCK_H_
#define MF2_BLOCK_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mf2/base.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MF2_ASAN 1
#endif
#endif
#if !defined(MF2_ASAN) && defined(__SANITIZE_ADDRESS__)
#define MF2_ASAN 1
#endif

#ifdef MF2_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace mf2 {

struct Block {
  Block* next;
  uint64_t canary;
};
static_assert(sizeof(Block) == 16, "a block's allocator words fit the smallest class");

enum BlockState : uint64_t {
  kInCache = 0,   // in its thread's cache (Heap's magazines)
  kOnPage = 1,    // on its page's local free list
  kOnRemote = 2,  // on its page's remote stack (or in flight to it)
};
inline constexpr uint64_t kNumBlockStates = 3;

namespace block_internal {
// The process's canary key: 0 until InitCanaryKey() sets it, once, before the first heap and the
// first segment exist (so before any block). Each heap keeps a copy for its fast paths.
inline std::atomic<uint64_t> g_canary_key{0};
// Cold: inlined into page.cc's loops it made each of them save and restore six registers
// (Page::PushLocal: 30 instructions instead of 9).
MF2_COLD uint64_t InitCanaryKeySlow();
}  // namespace block_internal

// The key (set on first use). Relaxed: a value written once and never changed; a thread that
// reads 0 sets it itself, and the compare-exchange makes every thread agree on one value.
inline uint64_t CanaryKey() {
  const uint64_t key = block_internal::g_canary_key.load(std::memory_order_relaxed);
  return key != 0 ? key : block_internal::InitCanaryKeySlow();
}

inline uint64_t Canary(const void* b, BlockState where) {
  return reinterpret_cast<uintptr_t>(b) ^ CanaryKey() ^ where;
}

// Relaxed atomic accesses to the link word, for the same reason as the canary's below: two
// threads freeing one block at once (a program bug) both push it, and each writes its link
// (stress/double_free_stress_test.cc, two remote freers, under TSan). No ordering is published
// through the link: the remote stack's CAS and the owner's own program order order every
// legitimate access. A plain move on x86-64, as before.
__attribute__((no_sanitize("address"))) inline Block* LoadNext(const Block* b) {
  return __atomic_load_n(&b->next, __ATOMIC_RELAXED);
}

__attribute__((no_sanitize("address"))) inline void StoreNext(Block* b, Block* next) {
  __atomic_store_n(&b->next, next, __ATOMIC_RELAXED);
}

// Word 2 as a prefetch hint (header comment). Blocks of 16 bytes have no word 2 of their own (it
// is the next block's word 0), so only blocks of kHintBlockBytes or more carry one. The hint is
// looked ahead kHintDistance links: the owner's walk of a chain does about 15 instructions a
// block, and on producer-consumer T=4 a distance of 4 collected faster than 2 or 8
// (bench/RESULTS.md, "Remote chains carry prefetch hints").
inline constexpr size_t kHintBlockBytes = 3 * sizeof(void*);
inline constexpr uint32_t kHintDistance = 4;
static_assert((kHintDistance & (kHintDistance - 1)) == 0, "a window indexed by a mask");
// Hardened builds (MF2_HARDENED) write no hints: they encode every link a freed block holds
// (page.h, StoreLink), and a hint would leave a plain heap address there for a use-after-free
// read to find.
constexpr bool CarriesHint(size_t block_size) {
#if defined(MF2_HARDENED) && MF2_HARDENED
  (void)block_size;
  return false;
#else
  return block_size >= kHintBlockBytes;
#endif
}

// Relaxed atomics, as the link's: a racing double free may make two threads write it, and no
// ordering is published through a hint (the remote stack's CAS orders the legitimate accesses).
__attribute__((no_sanitize("address"))) inline const Block* LoadHint(const Block* b) {
  return __atomic_load_n(
      reinterpret_cast<const Block* const*>(reinterpret_cast<const char*>(b) + sizeof(Block)),
      __ATOMIC_RELAXED);
}
__attribute__((no_sanitize("address"))) inline void StoreHint(Block* b, const Block* hint) {
  __atomic_store_n(reinterpret_cast<const Block**>(reinterpret_cast<char*>(b) + sizeof(Block)),
                   hint, __ATOMIC_RELAXED);
}
// Starts fetching `b`'s first line for writing (the collection writes each block's words). A
// prefetch never faults, whatever the address.
inline void PrefetchForWrite(const void* b) { __builtin_prefetch(b, 1, 3); }

// Relaxed atomic accesses (see the header comment): no ordering is published through the canary;
// the lists and the program's own synchronisation order every legitimate access.
__attribute__((no_sanitize("address"))) inline uint64_t LoadCanary(const void* b) {
  return __atomic_load_n(&static_cast<const Block*>(b)->canary, __ATOMIC_RELAXED);
}
__attribute__((no_sanitize("address"))) inline void StoreCanary(void* b, uint64_t v) {
  __atomic_store_n(&static_cast<Block*>(b)->canary, v, __ATOMIC_RELAXED);
}

// Replaces word 1 with `desired` if it still holds `expected`; false (and nothing written) if
// another thread changed it since `expected` was read. Relaxed: the atomicity is the point (two
// threads freeing one block at once: exactly one of them moves it, block.h's header); no other
// memory is published through it.
__attribute__((no_sanitize("address"))) inline bool CasCanary(void* b, uint64_t expected,
                                                              uint64_t desired) {
  return __atomic_compare_exchange_n(&static_cast<Block*>(b)->canary, &expected, desired,
                                     /*weak=*/false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

// Whether word 1 holds a canary of any state (the block is free somewhere).
inline bool HasAnyCanary(const void* b) {
  return (LoadCanary(b) ^ reinterpret_cast<uintptr_t>(b) ^ CanaryKey()) < kNumBlockStates;
}
// The state a canary names, or kNumBlockStates when word 1 holds no canary.
inline uint64_t CanaryState(const void* b) {
  const uint64_t s = LoadCanary(b) ^ reinterpret_cast<uintptr_t>(b) ^ CanaryKey();
  return s < kNumBlockStates ? s : kNumBlockStates;
}

inline void PoisonMemory(const void* p, size_t n) {
#ifdef MF2_ASAN
  ASAN_POISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

inline void UnpoisonMemory(const void* p, size_t n) {
#ifdef MF2_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

}  // namespace mf2

#endif  // MF2_BLOCK_H_
