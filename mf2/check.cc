#include "mf2/check.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "mf2/policy.h"

namespace mf2 {
namespace {

void DefaultHandler(const ErrorReport& report) {
  char buf[256];
  size_t n = internal::FormatTo(buf, sizeof(buf), "mf2: %s of %p: %s (in %s)\n",
                                ErrorKindName(report.kind), report.pointer, report.detail,
                                report.call);
  internal::WriteAll(2, buf, n);
  if (GetPolicy().on_error == OnError::kAbort) std::abort();
}

// Relaxed: the handler is installed before the misuse it handles, by the test that causes it.
std::atomic<ErrorHandler> g_handler{nullptr};

}  // namespace

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kForeignPointer: return "free of a pointer MF2 never handed out";
    case ErrorKind::kNotABlock: return "free of a pointer that is not the start of a block";
    case ErrorKind::kDoubleFree: return "double free";
    case ErrorKind::kCorruptFreeList: return "corrupt remote free list";
  }
  return "unknown error";
}

ErrorHandler SetErrorHandler(ErrorHandler handler) {
  return g_handler.exchange(handler, std::memory_order_relaxed);
}

namespace internal {

size_t FormatTo(char* buf, size_t cap, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  if (n < 0) return 0;
  return static_cast<size_t>(n) < cap ? static_cast<size_t>(n) : cap - 1;
}

void WriteAll(int fd, const char* buf, size_t len) {
  const int saved_errno = errno;
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    buf += w;
    len -= static_cast<size_t>(w);
  }
  errno = saved_errno;
}

void CheckFailed(const char* file, int line, const char* cond, const char* msg) {
  char buf[512];
  size_t n = FormatTo(buf, sizeof(buf), "mf2: CHECK failed at %s:%d: %s (%s)\n", file, line,
                      cond, msg);
  WriteAll(2, buf, n);
  std::abort();
}

void ReportError(ErrorKind kind, const char* call, const void* pointer, const char* detail) {
  ErrorReport report{kind, call, pointer, detail};
  ErrorHandler handler = g_handler.load(std::memory_order_relaxed);
  if (handler != nullptr) {
    handler(report);
  } else {
    DefaultHandler(report);
  }
}

}  // namespace internal
}  // namespace mf2
