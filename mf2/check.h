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

#include "mf2/base.h"

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

// What was wrong with a pointer handed to MF2. The default handler prints one line per report,
//   mf2: <kind> in <call>(<pointer>): <detail>[ (block <start>, <size> bytes)]
// e.g. "mf2: double free in free(0x7f3a2c010040): block is not allocated (freed before)".
enum class ErrorKind : uint8_t {
  kForeignPointer,   // not inside any MF2 segment or large allocation
  kNotABlock,        // inside MF2 memory but not a block start (interior, header, free span, tail)
  kDoubleFree,       // free of a block start that is not currently allocated
  kCorruptFreeList,  // a remote list that is not well formed (found while draining)
  kUseAfterFree,     // a freed block passed to a call that uses it (realloc, malloc_usable_size)
};
inline constexpr int kNumErrorKinds = 5;

// "foreign pointer", "not a block start", "double free", "corrupt free list", "use after free".
const char* ErrorKindName(ErrorKind kind);

struct ErrorReport {
  ErrorKind kind;
  const char* call;    // the entry point that received the pointer ("free", "realloc", ...)
  const void* pointer;
  const char* detail;  // static text, never null
  // The block the pointer relates to, when known (the live block an interior pointer points
  // into, the freed block of a double free); nullptr otherwise.
  const void* block = nullptr;
  size_t block_size = 0;
};

// Called on every detected misuse. The default handler writes the report to stderr and aborts
// (`MF2_ON_ERROR=report` makes it write and continue). In report mode it prints the first
// kReportsInFull reports of each kind, then one line saying that further reports of that kind
// are suppressed, and at exit one line with how many were. The misused block is never absorbed
// into a free list, whatever the handler does. A handler returns or ends the process; it must
// not throw (free, operator delete and their slow paths are noexcept: a throw terminates).
using ErrorHandler = void (*)(const ErrorReport& report);
inline constexpr uint32_t kReportsInFull = 10;

// Installs `handler` (nullptr restores the default) and returns the previous one. For tests.
ErrorHandler SetErrorHandler(ErrorHandler handler);

namespace internal {

[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const char* msg);

// Reports misuse through the installed handler: `call` received `pointer`; `detail` (static text)
// says what was wrong with it.
MF2_NOINLINE void ReportError(ErrorKind kind, const char* call, const void* pointer,
                              const char* detail);
// The same, naming the block (start and size) that `pointer` relates to.
MF2_NOINLINE void ReportError(ErrorKind kind, const char* call, const void* pointer,
                              const char* detail, const void* block, size_t block_size);

// Writes one line to `fd` saying how many reports the default handler suppressed, per kind, if
// it suppressed any (run at exit). No allocation.
void PrintSuppressedReports(int fd);
// Forgets how many reports the default handler has seen (tests).
void ResetReportCountsForTesting();

// What the default handler does after a report (MF2_ON_ERROR). The policy layer pushes it here
// whenever it publishes a policy (policy.cc), so this layer reads no policy. kUnset until then:
// a report that comes before anything read the policy calls InitErrorMode first.
enum class ErrorMode : uint8_t { kUnset, kAbort, kReport };
void SetErrorMode(ErrorMode mode);
// Defined by the policy layer (policy.cc): reads the environment once, which pushes the mode.
void InitErrorMode();

// Formats into `buf` like snprintf, without allocating; returns the length written.
size_t FormatTo(char* buf, size_t cap, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// write(2) all of `len` bytes to `fd`, retrying on EINTR.
void WriteAll(int fd, const char* buf, size_t len);

}  // namespace internal
}  // namespace mf2

#endif  // MF2_CHECK_H_
