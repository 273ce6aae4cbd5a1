#include "mf2/resize.h"

#include <cerrno>
#include <cstring>

#include "mf2/mf2.hpp"

namespace mf2 {

void* Reallocate(void* p, size_t size, const char* call) {
  (void)call;
  if (p == nullptr) return Allocate(size);
  if (size == 0) {
    Free(p);
    return nullptr;
  }
  size_t old_size = UsableSize(p);
  if (old_size == 0) return nullptr;  // misuse, already reported
  // In place when the block already fits and is not more than twice too large.
  if (size <= old_size && size >= old_size / 2) return p;
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
  void* p = Allocate(total);
  if (p != nullptr) memset(p, 0, total);
  return p;
}

}  // namespace mf2
