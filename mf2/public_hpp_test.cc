// The public C++ header alone: this file is compiled as C++11 in a library whose only dependency
// is //mf2:public_headers (mf2.h and mf2.hpp), so it builds only if mf2.hpp needs nothing of
// MF2's internals or Abseil; the test binary then links it with the library and runs it.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "mf2/mf2.hpp"

namespace {

int failures = 0;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "CHECK failed: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  void* p = mf2::Allocate(1000);
  Check(p != nullptr && mf2::UsableSize(p) >= 1000, "Allocate, UsableSize");
  void* q = mf2::AllocateAligned(4096, 10);
  Check(q != nullptr && reinterpret_cast<std::uintptr_t>(q) % 4096 == 0, "AllocateAligned");
  errno = 0;
  Check(mf2::AllocateAligned(5, 10) == nullptr && errno == EINVAL, "AllocateAligned EINVAL");
  mf2::Free(p);
  mf2::Free(q);
  mf2::Free(nullptr);
  const mf2::Stats s = mf2::GetStats();
  Check(s.slow_allocs > 0, "GetStats counts");
  Check(s.reuse_rate() >= 0.0 && s.reuse_rate() <= 1.0, "reuse_rate in [0, 1]");
  const mf2::Stats zero;
  Check(zero.new_pages == 0 && zero.bytes_reserved == 0, "Stats() is zeroed");
  const int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  Check(null_fd >= 0, "open /dev/null");
  mf2::PrintStats(null_fd);
  close(null_fd);
  mf2::ThreadIdle();
  mf2::ReleaseThreadHeap();
  mf2_heap_t* heap = mf2_heap_new();  // the C API through the C++ header
  void* h = mf2_heap_malloc(heap, 64);
  Check(h != nullptr, "mf2_heap_malloc");
  mf2_heap_delete(heap);
  mf2::Free(h);
  if (failures != 0) return 1;
  std::printf("the C++ API through mf2/mf2.hpp alone: ok\n");
  return 0;
}
