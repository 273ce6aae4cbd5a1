// A free block's only field, and the sanitizer hooks for block memory.
//
// Under AddressSanitizer, every block MF2 does not currently hand out is poisoned, so a
// use-after-free of an MF2 block is caught by ASan exactly like one of a malloc block. The
// allocator itself reaches the `next` link of a poisoned block only through LoadNext/StoreNext,
// which are not instrumented.
#ifndef MF2_BLOCK_H_
#define MF2_BLOCK_H_

#include <cstddef>

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
};

__attribute__((no_sanitize("address"))) inline Block* LoadNext(const Block* b) {
  return b->next;
}

__attribute__((no_sanitize("address"))) inline void StoreNext(Block* b, Block* next) {
  b->next = next;
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
