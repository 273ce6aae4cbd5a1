#include "mf2/check.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace mf2 {
namespace {

// Reports of each kind the default handler has received. Relaxed: a report needs only its own
// sequence number within its kind (fetch_add is atomic in any order), which decides whether it
// is printed in full; no other memory is published through the counts. The exit summary may
// read a count that a concurrent report is still adding to: it is only a message.
std::atomic<uint64_t> g_seen[kNumErrorKinds] = {};

// Relaxed: one independent word, pushed by policy.cc before it publishes the policy. A report
// racing with a change of MF2_ON_ERROR may act on either value, as it would under a lock.
std::atomic<internal::ErrorMode> g_error_mode{internal::ErrorMode::kUnset};

bool AbortAfterReport() {
  if (g_error_mode.load(std::memory_order_relaxed) == internal::ErrorMode::kUnset) {
    internal::InitErrorMode();
  }
  return g_error_mode.load(std::memory_order_relaxed) != internal::ErrorMode::kReport;
}

void DefaultHandler(const ErrorReport& report) {
  const int kind = static_cast<int>(report.kind);
  // Relaxed: see g_seen.
  const uint64_t seen =
      kind < kNumErrorKinds ? g_seen[kind].fetch_add(1, std::memory_order_relaxed) : 0;
  char buf[512];
  size_t n = 0;
  if (seen < kReportsInFull) {
    n = internal::FormatTo(buf, sizeof(buf), "mf2: %s in %s(%p): %s", ErrorKindName(report.kind),
                           report.call != nullptr ? report.call : "?", report.pointer,
                           report.detail != nullptr ? report.detail : "");
    if (report.block != nullptr) {
      n += internal::FormatTo(buf + n, sizeof(buf) - n, " (block %p, %zu bytes)", report.block,
                              report.block_size);
    }
    n += internal::FormatTo(buf + n, sizeof(buf) - n, "\n");
  } else if (seen == kReportsInFull) {
    n = internal::FormatTo(buf, sizeof(buf),
                           "mf2: further %s reports are suppressed (the first %u were printed; "
                           "their number follows at exit)\n",
                           ErrorKindName(report.kind), kReportsInFull);
  }
  internal::WriteAll(2, buf, n);
  if (AbortAfterReport()) std::abort();
}

// Says at exit how many reports were suppressed: a static destructor rather than atexit(), which
// may allocate and would re-enter malloc.
struct SuppressedAtExit {
  ~SuppressedAtExit() { internal::PrintSuppressedReports(2); }
} g_suppressed_at_exit;

// Relaxed: the handler is installed before the misuse it handles, by the test that causes it.
std::atomic<ErrorHandler> g_handler{nullptr};

}  // namespace

const char* ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kForeignPointer: return "foreign pointer";
    case ErrorKind::kNotABlock: return "not a block start";
    case ErrorKind::kDoubleFree: return "double free";
    case ErrorKind::kCorruptFreeList: return "corrupt free list";
    case ErrorKind::kUseAfterFree: return "use after free";
  }
  return "unknown error";
}

ErrorHandler SetErrorHandler(ErrorHandler handler) {
  return g_handler.exchange(handler, std::memory_order_relaxed);
}

namespace internal {

void SetErrorMode(ErrorMode mode) { g_error_mode.store(mode, std::memory_order_relaxed); }

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
  ReportError(kind, call, pointer, detail, nullptr, 0);
}

void ReportError(ErrorKind kind, const char* call, const void* pointer, const char* detail,
                 const void* block, size_t block_size) {
  ErrorReport report{kind, call, pointer, detail, block, block_size};
  ErrorHandler handler = g_handler.load(std::memory_order_relaxed);
  if (handler != nullptr) {
    handler(report);
  } else {
    DefaultHandler(report);
  }
}

void PrintSuppressedReports(int fd) {
  char kinds[384];
  size_t n = 0;
  uint64_t total = 0;
  for (int k = 0; k < kNumErrorKinds; ++k) {
    // Relaxed: see g_seen.
    const uint64_t seen = g_seen[k].load(std::memory_order_relaxed);
    if (seen <= kReportsInFull) continue;
    total += seen - kReportsInFull;
    n += FormatTo(kinds + n, sizeof(kinds) - n, "%s%s: %llu", n == 0 ? "" : ", ",
                  ErrorKindName(static_cast<ErrorKind>(k)),
                  static_cast<unsigned long long>(seen - kReportsInFull));
  }
  if (total == 0) return;
  char line[512];
  const size_t len = FormatTo(line, sizeof(line), "mf2: %llu misuse reports were suppressed (%s)\n",
                              static_cast<unsigned long long>(total), kinds);
  WriteAll(fd, line, len);
}

void ResetReportCountsForTesting() {
  // Relaxed: tests reset between their own reports, on one thread.
  for (auto& seen : g_seen) seen.store(0, std::memory_order_relaxed);
}

}  // namespace internal
}  // namespace mf2
