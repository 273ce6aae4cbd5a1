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

#define MF2_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr size_t kOsPage = 4096;

void* AlignedOrNull(size_t alignment, size_t size) {
  return mf2::AllocateAligned(alignment, size);
}

void* NewOrThrow(size_t size) {
  for (;;) {
    if (void* p = mf2::Allocate(size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* NewAlignedOrThrow(size_t size, std::align_val_t al) {
  for (;;) {
    if (void* p = mf2::AllocateAligned(static_cast<size_t>(al), size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

MF2_EXPORT void* malloc(size_t size) { return mf2::Allocate(size); }
MF2_EXPORT void free(void* p) { mf2::Free(p); }
MF2_EXPORT void cfree(void* p) { mf2::Free(p); }

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

MF2_EXPORT size_t malloc_usable_size(void* p) { return p == nullptr ? 0 : mf2::UsableSize(p); }

// ---- C++ ----
__attribute__((visibility("default"))) void* operator new(size_t n) { return NewOrThrow(n); }
__attribute__((visibility("default"))) void* operator new[](size_t n) { return NewOrThrow(n); }
__attribute__((visibility("default"))) void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return mf2::Allocate(n);
}
__attribute__((visibility("default"))) void* operator new[](size_t n,
                                                            const std::nothrow_t&) noexcept {
  return mf2::Allocate(n);
}
__attribute__((visibility("default"))) void* operator new(size_t n, std::align_val_t al) {
  return NewAlignedOrThrow(n, al);
}
__attribute__((visibility("default"))) void* operator new[](size_t n, std::align_val_t al) {
  return NewAlignedOrThrow(n, al);
}
__attribute__((visibility("default"))) void* operator new(size_t n, std::align_val_t al,
                                                          const std::nothrow_t&) noexcept {
  return mf2::AllocateAligned(static_cast<size_t>(al), n);
}
__attribute__((visibility("default"))) void* operator new[](size_t n, std::align_val_t al,
                                                            const std::nothrow_t&) noexcept {
  return mf2::AllocateAligned(static_cast<size_t>(al), n);
}

__attribute__((visibility("default"))) void operator delete(void* p) noexcept { mf2::Free(p); }
__attribute__((visibility("default"))) void operator delete[](void* p) noexcept { mf2::Free(p); }
__attribute__((visibility("default"))) void operator delete(void* p, size_t) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete[](void* p, size_t) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete(void* p,
                                                            const std::nothrow_t&) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete[](void* p,
                                                              const std::nothrow_t&) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete(void* p, std::align_val_t) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete[](void* p, std::align_val_t) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete(void* p, size_t,
                                                            std::align_val_t) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete[](void* p, size_t,
                                                              std::align_val_t) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete(void* p, std::align_val_t,
                                                            const std::nothrow_t&) noexcept {
  mf2::Free(p);
}
__attribute__((visibility("default"))) void operator delete[](void* p, std::align_val_t,
                                                              const std::nothrow_t&) noexcept {
  mf2::Free(p);
}
