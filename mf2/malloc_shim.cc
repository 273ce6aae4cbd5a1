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
//
// The C++ runtime is used weakly (below): the shared library needs only libc, so a C program
// that preloads it maps no libstdc++ (half of a small C program's resident memory, and a quarter of
// its start-up time: bench/RESULTS.md), and a C++ program, which has the runtime loaded, gets the
// new-handler and std::bad_alloc as the standard says. MF2's libraries are built without
// exceptions and RTTI (MF2_NO_CXX_RUNTIME, tools/mf2.bzl).
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <new>

#include "mf2/mf2.hpp"
#include "mf2/resize.h"
#include "mf2/thread_heap.h"

#define MF2_EXPORT extern "C" __attribute__((visibility("default")))

// The C++ runtime's entry points for operator new's failure, by their Itanium C++ ABI names and
// weak: resolved where the process has the runtime (every C++ program, whether it links MF2
// statically or preloads it), null where it has not (a C program, which calls no operator new
// unless it loads C++ code after this library was bound: see ThrowBadAlloc).
extern "C" {
__attribute__((weak)) void* __cxa_allocate_exception(size_t size) noexcept;
__attribute__((weak)) void __cxa_throw(void* object, void* type, void (*destroy)(void*));
__attribute__((weak)) std::new_handler _ZSt15get_new_handlerv() noexcept;  // std::get_new_handler
__attribute__((weak)) void _ZNSt9bad_allocD1Ev(void* object);  // std::bad_alloc::~bad_alloc
extern __attribute__((weak)) void* _ZTISt9bad_alloc[];  // typeid(std::bad_alloc)
extern __attribute__((weak)) void* _ZTVSt9bad_alloc[];  // std::bad_alloc's vtable
}

namespace {

constexpr size_t kOsPage = 4096;

std::new_handler NewHandler() {
  return _ZSt15get_new_handlerv != nullptr ? _ZSt15get_new_handlerv() : nullptr;
}

// throw std::bad_alloc(), spelled out so that the library references the runtime only weakly: a
// std::bad_alloc is its vtable pointer alone (the Itanium ABI's address point is two words into
// the vtable, after the offset to top and the type_info pointer). Without the runtime there is
// nothing to throw with: the failure is reported and the process aborts, as an uncaught
// std::bad_alloc would end it.
[[noreturn]] MF2_NOINLINE void ThrowBadAlloc() {
  static_assert(sizeof(std::bad_alloc) == sizeof(void*), "std::bad_alloc is one vtable pointer");
  if (__cxa_allocate_exception != nullptr && __cxa_throw != nullptr &&
      _ZNSt9bad_allocD1Ev != nullptr && _ZTISt9bad_alloc != nullptr &&
      _ZTVSt9bad_alloc != nullptr) {
    void* object = __cxa_allocate_exception(sizeof(std::bad_alloc));
    *static_cast<void**>(object) = &_ZTVSt9bad_alloc[2];
    __cxa_throw(object, _ZTISt9bad_alloc, _ZNSt9bad_allocD1Ev);
  }
  static const char kMessage[] =
      "mf2: operator new: out of memory, and the process has no C++ runtime to throw "
      "std::bad_alloc with\n";
  (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  abort();
}

// The fast paths are inlined into each entry point (heap.h): one TLS load, then the heap.
MF2_ALWAYS_INLINE void* Malloc(size_t size) { return mf2::ThreadHeap()->Allocate(size); }
MF2_ALWAYS_INLINE void Free(void* p, const char* call) { mf2::ThreadHeap()->Free(p, call); }

void* AlignedOrNull(size_t alignment, size_t size) {
  return mf2::ThreadHeap()->AllocateAligned(alignment, size);
}

// What every throwing operator new does after its first try failed: `allocate()` again after
// each call of the new-handler, until it succeeds or there is no handler; then std::bad_alloc.
template <typename Allocate>
MF2_ALWAYS_INLINE void* RetryOrThrow(Allocate allocate) {
  for (;;) {
    if (void* p = allocate()) return p;
    std::new_handler handler = NewHandler();
    if (handler == nullptr) ThrowBadAlloc();
    handler();
  }
}

// operator new's slow way (everything but a cached block; the first try is Allocate's).
MF2_NOINLINE void* NewSlow(size_t size) {
  return RetryOrThrow([size] { return Malloc(size); });
}

// A cached block, or NewSlow (which allocates through Allocate): no frame (heap.h).
MF2_ALWAYS_INLINE void* NewOrThrow(size_t size) {
  return mf2::ThreadHeap()->AllocateOrTailCall<NewSlow>(size);
}

void* NewAlignedOrThrow(size_t size, std::align_val_t al) {
  return RetryOrThrow([size, al] { return AlignedOrNull(static_cast<size_t>(al), size); });
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
