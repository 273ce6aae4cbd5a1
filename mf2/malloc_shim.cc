// MF2 as the process's malloc: the C allocation API and every C++ operator new/delete, for
// LD_PRELOAD (//mf2:libmf2_malloc.so) or static linking (//mf2:malloc, alwayslink).
//
// Semantics follow glibc where C leaves room: malloc(0) returns a unique minimum block;
// realloc(p, 0) frees p and returns NULL; failures return NULL with errno = ENOMEM; bad
// alignments give EINVAL; calloc and reallocarray reject overflowing products. Misuse (double
// free, foreign or interior pointers) is reported by MF2 and aborts unless MF2_ON_ERROR=report.
//
// Not usable under ASan/TSan/MSan, which replace malloc themselves: tests that install this
// library are tagged noasan/notsan/noubsan-free and run in the plain and optimised configs.
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <new>

#include "mf2/mf2.hpp"
#include "mf2/resize.h"
#include "mf2/thread_heap.h"

#define MF2_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr size_t kOsPage = 4096;

// The fast paths are inlined into each entry point (heap.h): one TLS load, then the heap.
MF2_ALWAYS_INLINE void* Malloc(size_t size) { return mf2::ThreadHeap()->Allocate(size); }
MF2_ALWAYS_INLINE void Free(void* p, const char* call) { mf2::ThreadHeap()->Free(p, call); }

void* AlignedOrNull(size_t alignment, size_t size) {
  return mf2::ThreadHeap()->AllocateAligned(alignment, size);
}

// operator new failed: call the new-handler until it gives up, then throw.
MF2_NOINLINE void* NewSlow(size_t size) {
  for (;;) {
    if (void* p = Malloc(size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

// A cached block, or NewSlow (which allocates through Allocate): no frame (heap.h).
MF2_ALWAYS_INLINE void* NewOrThrow(size_t size) {
  return mf2::ThreadHeap()->AllocateOrTailCall<NewSlow>(size);
}

void* NewAlignedOrThrow(size_t size, std::align_val_t al) {
  for (;;) {
    if (void* p = AlignedOrNull(static_cast<size_t>(al), size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

MF2_EXPORT void* malloc(size_t size) { return Malloc(size); }
MF2_EXPORT void free(void* p) { Free(p, "free"); }
MF2_EXPORT void cfree(void* p) { Free(p, "cfree"); }

MF2_EXPORT void* calloc(size_t n, size_t size) { return mf2::AllocateZeroed(n, size); }

MF2_EXPORT void* realloc(void* p, size_t size) { return mf2::Reallocate(p, size, "realloc"); }

MF2_EXPORT void* reallocarray(void* p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  return mf2::Reallocate(p, total, "reallocarray");
}

MF2_EXPORT int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  int saved = errno;
  void* p = AlignedOrNull(alignment, size);
  if (p == nullptr) {
    int err = errno;
    errno = saved;
    return err == EINVAL ? EINVAL : ENOMEM;
  }
  *out = p;
  return 0;
}

MF2_EXPORT void* aligned_alloc(size_t alignment, size_t size) {
  return AlignedOrNull(alignment, size);
}
MF2_EXPORT void* memalign(size_t alignment, size_t size) { return AlignedOrNull(alignment, size); }
MF2_EXPORT void* valloc(size_t size) { return AlignedOrNull(kOsPage, size); }

MF2_EXPORT void* pvalloc(size_t size) {
  size_t rounded = (size + kOsPage - 1) & ~(kOsPage - 1);
  if (rounded < size) {
    errno = ENOMEM;
    return nullptr;
  }
  return AlignedOrNull(kOsPage, rounded == 0 ? kOsPage : rounded);
}

MF2_EXPORT size_t malloc_usable_size(void* p) {
  return p == nullptr ? 0 : mf2::Heap::UsableSize(p, "malloc_usable_size");
}

// ---- C++ ----
#define MF2_CXX_EXPORT __attribute__((visibility("default")))

MF2_CXX_EXPORT void* operator new(size_t n) { return NewOrThrow(n); }
MF2_CXX_EXPORT void* operator new[](size_t n) { return NewOrThrow(n); }
MF2_CXX_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return Malloc(n); }
MF2_CXX_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return Malloc(n); }
MF2_CXX_EXPORT void* operator new(size_t n, std::align_val_t al) {
  return NewAlignedOrThrow(n, al);
}
MF2_CXX_EXPORT void* operator new[](size_t n, std::align_val_t al) {
  return NewAlignedOrThrow(n, al);
}
MF2_CXX_EXPORT void* operator new(size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return AlignedOrNull(static_cast<size_t>(al), n);
}
MF2_CXX_EXPORT void* operator new[](size_t n, std::align_val_t al,
                                    const std::nothrow_t&) noexcept {
  return AlignedOrNull(static_cast<size_t>(al), n);
}

// Every delete frees the same way; the size and alignment arguments are not needed (a block's
// class and page come from its address), and a size that disagrees with the block is not misuse
// MF2 can see.
MF2_CXX_EXPORT void operator delete(void* p) noexcept { Free(p, "operator delete"); }
MF2_CXX_EXPORT void operator delete[](void* p) noexcept { Free(p, "operator delete[]"); }
#define MF2_DELETE(name, ...) \
  MF2_CXX_EXPORT void name(void* p, __VA_ARGS__) noexcept { Free(p, #name); }
MF2_DELETE(operator delete, size_t)
MF2_DELETE(operator delete[], size_t)
MF2_DELETE(operator delete, const std::nothrow_t&)
MF2_DELETE(operator delete[], const std::nothrow_t&)
MF2_DELETE(operator delete, std::align_val_t)
MF2_DELETE(operator delete[], std::align_val_t)
MF2_DELETE(operator delete, size_t, std::align_val_t)
MF2_DELETE(operator delete[], size_t, std::align_val_t)
MF2_DELETE(operator delete, std::align_val_t, const std::nothrow_t&)
MF2_DELETE(operator delete[], std::align_val_t, const std::nothrow_t&)
#undef MF2_DELETE
