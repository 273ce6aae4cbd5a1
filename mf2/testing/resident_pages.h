// How many pages of a range are resident, for tests of what MF2 makes resident or gives back.
#ifndef MF2_TESTING_RESIDENT_PAGES_H_
#define MF2_TESTING_RESIDENT_PAGES_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <vector>

namespace mf2 {
namespace testing {

// Pages of [p, p + len) that are resident (mincore; `p` page-aligned, a partial last page counts
// as a page), or -1 if part of the range is not mapped.
inline long ResidentPages(const void* p, size_t len) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((len + page - 1) / page);
  if (mincore(const_cast<void*>(p), len, vec.data()) != 0) return -1;
  long n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n;
}

}  // namespace testing
}  // namespace mf2

#endif  // MF2_TESTING_RESIDENT_PAGES_H_
