// Statistics for users: the merged snapshot (mf2::GetStats, mf2_stats_get), the readable report
// (mf2::PrintStats, mf2_stats_print) and the summary MF2_STATS=1 prints once per process at exit.
//
// Everything here runs without allocating (reports use fixed buffers, FormatTo and WriteAll), so
// it works inside malloc, during teardown and in a process whose heap is in any state.
//
// The summary at exit. A static destructor in mf2.cc, not atexit() (which may allocate and would
// re-enter malloc during the first allocation), prints it when MF2_STATS=1 or MF2_STATS_FILE is
// set (a file implies MF2_STATS=1), to stderr or to that file. Each process prints one summary:
// a guard makes a second request a no-op. A fork() child inherits MF2's state and prints its own
// summary, with its own pid and its parent's figures up to the fork included, when it exits
// through exit() or by returning from main; a child that ends with _exit() (as fork-then-exec
// code should when exec fails) or dies of a signal prints nothing, and a child that exec()s a
// program leaves the summary to that program (which prints one if MF2 is its malloc too).
// MF2_STATS_FILE is read once when MF2 is loaded, `%p` in it becomes the pid of the printing
// process, and the file is appended to, so that a parent and its children, or successive runs,
// never overwrite each other's summaries. If the file cannot be opened, the summary goes to
// stderr after a line saying why.
#include "mf2/stats_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mf2/check.h"
#include "mf2/heap_registry.h"
#include "mf2/large.h"
#include "mf2/mf2.h"
#include "mf2/mf2.hpp"
#include "mf2/policy.h"
#include "mf2/segment.h"
#include "mf2/stats.h"

namespace mf2 {
namespace {

// ---- Small no-allocation helpers ----

// Reads up to cap - 1 bytes of a (small /proc) file into buf, NUL-terminated; false on error.
bool ReadSmallFile(const char* path, char* buf, size_t cap) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = 0;
  while (len + 1 < cap) {
    const ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += static_cast<size_t>(n);
  }
  close(fd);
  buf[len] = '\0';
  return len > 0;
}

// The process name (/proc/self/comm), or "?".
void ProcessName(char* out, size_t cap) {
  if (!ReadSmallFile("/proc/self/comm", out, cap)) {
    internal::FormatTo(out, cap, "?");
    return;
  }
  out[strcspn(out, "\n")] = '\0';
}

// The whole process's resident bytes now (/proc/self/statm) and at the peak (VmHWM,
// /proc/self/status); 0 where unknown.
struct Resident {
  uint64_t now = 0;
  uint64_t peak = 0;
};

Resident ReadResident() {
  Resident r;
  char buf[4096];
  if (ReadSmallFile("/proc/self/statm", buf, sizeof(buf))) {
    const char* resident = strchr(buf, ' ');
    const long page = sysconf(_SC_PAGESIZE);
    if (resident != nullptr && page > 0) {
      r.now = strtoull(resident + 1, nullptr, 10) * static_cast<uint64_t>(page);
    }
  }
  if (ReadSmallFile("/proc/self/status", buf, sizeof(buf))) {
    if (const char* hwm = strstr(buf, "VmHWM:")) r.peak = strtoull(hwm + 6, nullptr, 10) << 10;
  }
  return r;
}

// "12.3 MiB" and the like.
const char* HumanBytes(uint64_t bytes, char* out, size_t cap) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) {
    internal::FormatTo(out, cap, "%llu B", static_cast<unsigned long long>(bytes));
    return out;
  }
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  internal::FormatTo(out, cap, "%.1f %s", v, kUnits[unit]);
  return out;
}

void WriteLine(int fd, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void WriteLine(int fd, const char* fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  size_t len = static_cast<size_t>(n) < sizeof(line) ? static_cast<size_t>(n) : sizeof(line) - 1;
  internal::WriteAll(fd, line, len);
}

// ---- Process identity, captured when MF2 is loaded ----

int g_start_pid = 0;           // the process that loaded MF2 (a fork child sees its parent's)
char g_stats_file[4096] = {};  // MF2_STATS_FILE, or empty
bool g_stats_file_too_long = false;

__attribute__((constructor)) void CaptureStartup() {
  g_start_pid = getpid();
  const char* path = getenv("MF2_STATS_FILE");
  if (path == nullptr || *path == '\0') return;
  if (strlen(path) >= sizeof(g_stats_file)) {
    g_stats_file_too_long = true;
    return;
  }
  strcpy(g_stats_file, path);
}

// ---- The report ----

// The memory lines: each figure now, its peak where MF2 tracks one, and what it is made of.
void WriteMemory(int fd, const Stats& s, const Resident& resident) {
  // Live large bytes are known when the allocator feeds the gauge, or when none is live.
  const bool large_known = kFootprintFed || s.large_count == 0;
  char a[32], b[32], c[32], d[32];
  auto figure = [&](uint64_t v, bool known, char* out) {
    return known ? HumanBytes(v, out, 32) : "n/a";
  };
  WriteLine(fd, "mf2_stats: %-12s %12s %12s\n", "memory", "now", "peak");
  WriteLine(
      fd, "mf2_stats:   %-10s %12s %12s  spans held by heaps %s + live large blocks %s (%llu)\n",
      "in use", figure(s.bytes_in_use, large_known, a),
      figure(s.bytes_in_use_peak, kFootprintFed, b), HumanBytes(s.bytes_in_use_spans, c, 32),
      figure(s.bytes_large_live, large_known, d), static_cast<unsigned long long>(s.large_count));
  WriteLine(fd,
            "mf2_stats:   %-10s %12s %12s  in use + free spans kept %s + large mappings kept %s\n",
            "committed", figure(s.bytes_committed, large_known, a), "-",
            HumanBytes(s.bytes_cached_spans, b, 32), HumanBytes(s.bytes_large_cached, c, 32));
  WriteLine(fd, "mf2_stats:   %-10s %12s %12s  segments %llu x 4 MiB + large mappings\n",
            "reserved", figure(s.bytes_reserved, large_known, a), "-",
            static_cast<unsigned long long>(s.segments_mapped - s.segments_unmapped));
  WriteLine(fd, "mf2_stats:   %-10s %12s %12s  the whole process (/proc/self/statm, VmHWM)\n",
            "resident", figure(resident.now, resident.now != 0, a),
            figure(resident.peak, resident.peak != 0, b));
}

void WriteCounters(int fd, const Stats& s) {
  WriteLine(fd, "mf2_stats: %-30s %14s  %s\n", "counter", "value", "description");
#define MF2_PRINT_FIELD(name, desc)                                                                \
  WriteLine(fd, "mf2_stats:   %-28s %14llu  %s\n", #name, static_cast<unsigned long long>(s.name), \
            desc);
  MF2_COUNTERS(MF2_PRINT_FIELD)
  MF2_PAGE_SOURCE_FIGURES(MF2_PRINT_FIELD)
#undef MF2_PRINT_FIELD
}

// One line of key=value fields for scripts (bench/run_h2h.py, mf2/preload_test.sh): the route and
// reuse rate first, then the headline counters and the byte figures ("n/a" when unknown).
void WriteKeyValues(int fd, const Stats& s, const Resident& resident) {
  const bool large_known = kFootprintFed || s.large_count == 0;
  char in_use[24], peak[24], committed[24], reserved[24];
  auto number = [](uint64_t v, bool known, char* out) {
    if (!known) return "n/a";
    internal::FormatTo(out, 24, "%llu", static_cast<unsigned long long>(v));
    return static_cast<const char*>(out);
  };
  WriteLine(fd,
            "mf2_stats: route=%s reuse_rate=%.4f new_pages=%llu page_reuses=%llu adoptions=%llu "
            "pages_reclaimed=%llu slow_allocs=%llu cache_refills=%llu cache_flushes=%llu "
            "segments_mapped=%llu spans_returned_to_os=%llu "
            "bytes_in_use=%s bytes_in_use_peak=%s bytes_committed=%s bytes_reserved=%s "
            "resident_bytes=%llu resident_peak_bytes=%llu pid=%d\n",
            RouteName(CurrentRoute()), s.reuse_rate(), static_cast<unsigned long long>(s.new_pages),
            static_cast<unsigned long long>(s.page_reuses),
            static_cast<unsigned long long>(s.adopt_allowed),
            static_cast<unsigned long long>(s.pages_reclaimed),
            static_cast<unsigned long long>(s.slow_allocs),
            static_cast<unsigned long long>(s.cache_refills),
            static_cast<unsigned long long>(s.cache_flushes),
            static_cast<unsigned long long>(s.segments_mapped),
            static_cast<unsigned long long>(s.spans_returned_to_os),
            number(s.bytes_in_use, large_known, in_use),
            number(s.bytes_in_use_peak, kFootprintFed, peak),
            number(s.bytes_committed, large_known, committed),
            number(s.bytes_reserved, large_known, reserved),
            static_cast<unsigned long long>(resident.now),
            static_cast<unsigned long long>(resident.peak), static_cast<int>(getpid()));
}

// ---- The summary at exit ----

std::atomic<bool> g_summary_printed{false};

// Writes the path MF2_STATS_FILE names for this process (`%p` -> pid) into `out`; false if it
// does not fit.
bool ExpandStatsPath(char* out, size_t cap) {
  char pid[16];
  const size_t pid_len = internal::FormatTo(pid, sizeof(pid), "%d", static_cast<int>(getpid()));
  size_t len = 0;
  for (const char* c = g_stats_file; *c != '\0'; ++c) {
    const bool is_pid = c[0] == '%' && c[1] == 'p';
    const size_t need = is_pid ? pid_len : 1;
    if (len + need >= cap) return false;
    if (is_pid) {
      memcpy(out + len, pid, pid_len);
      ++c;
    } else {
      out[len] = *c;
    }
    len += need;
  }
  out[len] = '\0';
  return true;
}

// The descriptor the summary goes to: MF2_STATS_FILE's file, else stderr (after saying why the
// file could not be used).
int SummaryFd() {
  if (g_stats_file_too_long) {
    WriteLine(2, "mf2: MF2_STATS_FILE is longer than %zu bytes; statistics go to stderr\n",
              sizeof(g_stats_file) - 1);
    return 2;
  }
  if (g_stats_file[0] == '\0') return 2;
  char path[sizeof(g_stats_file) + 16];
  if (!ExpandStatsPath(path, sizeof(path))) {
    WriteLine(2,
              "mf2: MF2_STATS_FILE=%s is too long once %%p is expanded; statistics go to "
              "stderr\n",
              g_stats_file);
    return 2;
  }
  const int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    WriteLine(2, "mf2: MF2_STATS_FILE: cannot open %s: %s; statistics go to stderr\n", path,
              strerrordesc_np(errno));
    return 2;
  }
  return fd;
}

}  // namespace

void PrintStatsAtExit() {
  if (!GetPolicy().stats_at_exit && g_stats_file[0] == '\0' && !g_stats_file_too_long) return;
  // Relaxed: only once-ness matters (the first caller prints); nothing is published through it.
  if (g_summary_printed.exchange(true, std::memory_order_relaxed)) return;
  const int fd = SummaryFd();
  PrintStats(fd);
  if (fd != 2) close(fd);
}

Stats GetStats() noexcept {
  Stats s = HeapRegistry::Global().CollectStats();
  s.large_count = LargeLiveCount();
  s.bytes_large_cached = LargeCachedBytes();
  const Footprint f = ReadFootprint();
  if (kFootprintFed) s.bytes_large_live = f.large_live;
  s.bytes_in_use = s.bytes_in_use_spans + s.bytes_large_live;
  if (kFootprintFed) s.bytes_in_use_peak = f.peak > s.bytes_in_use ? f.peak : s.bytes_in_use;
  s.bytes_committed = s.bytes_in_use + s.bytes_cached_spans + s.bytes_large_cached;
  s.bytes_reserved = (s.segments_mapped - s.segments_unmapped) * kSegmentSize + s.bytes_large_live +
                     s.bytes_large_cached;
  return s;
}

void PrintStats(int fd) noexcept {
  const Stats s = GetStats();
  char name[64];
  ProcessName(name, sizeof(name));
  const int pid = static_cast<int>(getpid());
  WriteLine(fd, "mf2_stats: MF2 %d.%d.%d, pid %d (%s), route %s, reuse rate %.4f\n",
            MF2_VERSION_MAJOR, MF2_VERSION_MINOR, MF2_VERSION_PATCH, pid, name,
            RouteName(CurrentRoute()), s.reuse_rate());
  if (g_start_pid != 0 && pid != g_start_pid) {
    WriteLine(fd,
              "mf2_stats: a fork child: MF2 started in pid %d, and the figures include that "
              "process's until the fork\n",
              g_start_pid);
  }
  const Resident resident = ReadResident();
  WriteMemory(fd, s, resident);
  WriteCounters(fd, s);
  WriteKeyValues(fd, s, resident);
}

}  // namespace mf2

extern "C" {

void mf2_stats_get(mf2_stats* out) {
  const mf2::Stats s = mf2::GetStats();
  *out = s;
}

void mf2_stats_print(int fd) { mf2::PrintStats(fd); }

}  // extern "C"
