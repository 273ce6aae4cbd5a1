#include "mf2/resize.h"

#include <cerrno>
#include <cstring>

#include "mf2/large.h"
#include "mf2/heap.h"
#include "mf2/mf2.hpp"
#include "mf2/segment.h"
#include "mf2/size_class.h"
#include "mf2/thread_heap.h"

namespace mf2 {
namespace {

// The usable size of `p` (not null), or 0 after reporting its misuse by `call`. A pointer outside
// MF2's segments is a large block or misuse that large.cc diagnoses under the caller's name (a
// freed large block passed to realloc is a use after free); a pointer into a segment goes to
// UsableSize, whose reports the core makes.
size_t UsableSizeFor(void* p, const char* call) {
  if (InSegment(p)) return Heap::UsableSize(p, call);
  if (size_t n = LargeUsableSize(p)) return n;
  LargeReportMisuse(p, call, LargeAccess::kUse);
  return 0;
}

}  // namespace

void* Reallocate(void* p, size_t size, const char* call) {
  if (p == nullptr) return Allocate(size);
  if (size == 0) {
    Free(p);
    return nullptr;
  }
  const size_t old_size = UsableSizeFor(p, call);
  if (old_size == 0) {
    // Misuse, reported already (and survived: MF2_ON_ERROR=report). p is left alone.
    errno = EINVAL;
    return nullptr;
  }
  if (old_size > kMaxClassSize && size > kMaxClassSize) {
    // Large to large: the mapping itself is resized (mremap), no copy. When it cannot be (the OS
    // refuses, or an aligned block cannot grow in place), copy below.
    bool moved;
    if (void* q = LargeResize(p, size, &moved)) return q;
  } else if (size <= old_size && size >= old_size / 2) {
    // In place when the block already fits and is not more than twice too large.
    return p;
  }
  // From a class to a mapping or back, or a large block that could not be resized.
  void* q = Allocate(size);
  if (q == nullptr) return nullptr;  // p stays valid, as C requires
  memcpy(q, p, old_size < size ? old_size : size);
  Free(p);
  return q;
}

void* AllocateZeroed(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return nullptr;
  }
  if (total > kMaxClassSize) {
    // A fresh mapping is the kernel's zero pages: writing zeros would only fault every page in
    // (a 2 GiB calloc would touch 2 GiB).
    return ThreadHeap()->AllocateZeroedLarge(total);
  }
  void* p = Allocate(total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

}  // namespace mf2
