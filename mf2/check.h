// Checks and error reports that never allocate.
//
// Three tiers, as in tcmalloc:
//   MF2_CHECK(cond, msg)            always on: corruption that must never pass silently.
//   MF2_DCHECK(cond, msg)           debug builds (no NDEBUG); type-checked but not run otherwise.
//   MF2_EXPENSIVE_DCHECK(cond, msg) only with -DMF2_EXPENSIVE_CHECKS=1 (`--config=debug`):
//                                   whole-page walks on every operation.
// Reports are formatted into a fixed stack buffer and written with write(2), so they work inside
// malloc, before main and during thread teardown.
#ifndef MF2_CHECK_H_
#define MF2_CHECK_H_

#include <cstddef>
#include <cstdint>

#define MF2_PREDICT_TRUE(x) __builtin_expect(!!(x), 1)
#define MF2_PREDICT_FALSE(x) __builtin_expect(!!(x), 0)
#define MF2_ALWAYS_INLINE inline __attribute__((always_inline))
#define MF2_NOINLINE __attribute__((noinline))

#define MF2_CHECK(cond, msg)                                                 \
  do {                                                                       \
    if (MF2_PREDICT_FALSE(!(cond)))                                          \
      ::mf2::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg));        \
  } while (0)

#ifndef NDEBUG
#define MF2_DCHECK(cond, msg) MF2_CHECK(cond, msg)
#define MF2_DEBUG_BUILD 1
#else
#define MF2_DCHECK(cond, msg) static_cast<void>(true || (cond))
#define MF2_DEBUG_BUILD 0
#endif

#if defined(MF2_EXPENSIVE_CHECKS) && MF2_EXPENSIVE_CHECKS
#define MF2_EXPENSIVE_DCHECK(cond, msg) MF2_CHECK(cond, msg)
#define MF2_EXPENSIVE 1
#else
#define MF2_EXPENSIVE_DCHECK(cond, msg) static_cast<void>(true || (cond))
#define MF2_EXPENSIVE 0
#endif

namespace mf2 {

// What was wrong with a pointer handed to Free (or UsableSize).
enum class ErrorKind : uint8_t {
  kForeignPointer,   // not inside any MF2 segment or large allocation
  kNotABlock,        // inside MF2 memory but not a block start (interior, header, free span, tail)
  kDoubleFree,       // a block start that is not currently allocated
  kCorruptFreeList,  // a remote list that is not well formed (found while draining)
};

const char* ErrorKindName(ErrorKind kind);

struct ErrorReport {
  ErrorKind kind;
  const char* call;    // the entry point that received the pointer ("free", "realloc", ...)
  const void* pointer;
  const char* detail;  // static text, never null
};

// Called on every detected misuse. The default handler writes the report to stderr and aborts
// (`MF2_ON_ERROR=report` makes it write and continue). The misused block is never absorbed into
// a free list, whatever the handler does.
using ErrorHandler = void (*)(const ErrorReport& report);

// Installs `handler` (nullptr restores the default) and returns the previous one. For tests.
ErrorHandler SetErrorHandler(ErrorHandler handler);

namespace internal {

[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const char* msg);

// Reports misuse through the installed handler.
MF2_NOINLINE void ReportError(ErrorKind kind, const char* call, const void* pointer,
                              const char* detail);

// Formats into `buf` like snprintf, without allocating; returns the length written.
size_t FormatTo(char* buf, size_t cap, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// write(2) all of `len` bytes to `fd`, retrying on EINTR.
void WriteAll(int fd, const char* buf, size_t len);

}  // namespace internal
}  // namespace mf2

#endif  // MF2_CHECK_H_
