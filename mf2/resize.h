// realloc and calloc semantics over MF2 (shared by the drop-in malloc and the public C API).
#ifndef MF2_RESIZE_H_
#define MF2_RESIZE_H_

#include <cstddef>

namespace mf2 {

// C realloc: nullptr p allocates; size 0 frees p and returns nullptr; on failure returns nullptr
// with errno set and p still valid. `call` names the entry point in misuse reports.
void* Reallocate(void* p, size_t size, const char* call);
// C calloc: n * size zeroed bytes; nullptr with errno = ENOMEM on overflow or exhaustion.
void* AllocateZeroed(size_t n, size_t size);

}  // namespace mf2

#endif  // MF2_RESIZE_H_
