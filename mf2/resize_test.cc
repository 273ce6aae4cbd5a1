// realloc and calloc over MF2 (mf2/resize.h): large blocks grow and shrink inside their mapping
// (no copy), calloc leaves a fresh mapping's zero pages untouched, and realloc of a pointer that
// is not a live block is reported under realloc's name and fails with EINVAL.
#include "mf2/resize.h"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/check.h"
#include "mf2/large.h"
#include "mf2/mf2.hpp"
#include "mf2/size_class.h"
#include "mf2/testing/resident_pages.h"
#include "mf2/testing/scoped_reports.h"

namespace mf2 {
namespace {

constexpr size_t kPage = 4096;

using testing::ResidentPages;

TEST(ReallocLarge, GrowingBy4KiBStepsTo32MiBKeepsTheAddressMostOfTheTime) {
  size_t size = kMaxClassSize + kPage;
  auto* p = static_cast<unsigned char*>(Allocate(size));
  ASSERT_NE(p, nullptr);
  p[0] = 0xA5;
  size_t steps = 0, moves = 0;
  for (size += kPage; size <= (size_t{32} << 20); size += kPage) {
    auto* q = static_cast<unsigned char*>(Reallocate(p, size, "realloc"));
    ASSERT_NE(q, nullptr) << size;
    ++steps;
    if (q != p) ++moves;
    p = q;
    p[size - kPage] = static_cast<unsigned char>(size / kPage);  // one byte in the new page
    ASSERT_GE(UsableSize(p), size);
  }
  EXPECT_EQ(p[0], 0xA5);
  for (size_t s = kMaxClassSize + 2 * kPage; s <= (size_t{32} << 20); s += kPage) {
    ASSERT_EQ(p[s - kPage], static_cast<unsigned char>(s / kPage)) << s;
  }
  // Every growth copied the whole block into a new mapping before; now the mapping grows in
  // place, or the kernel moves its page tables when the address space above is taken.
  EXPECT_LT(moves * 2, steps) << moves << " moves in " << steps << " steps";
  Free(p);
}

TEST(ReallocLarge, ShrinkingKeepsTheAddressAndGivesTheTailBack) {
  const size_t big = size_t{32} << 20;
  auto* p = static_cast<unsigned char*>(Allocate(big));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < big; i += kPage) p[i] = static_cast<unsigned char>(i / kPage);
  const size_t small = size_t{1} << 20;
  auto* q = static_cast<unsigned char*>(Reallocate(p, small, "realloc"));
  ASSERT_EQ(q, p);
  EXPECT_EQ(UsableSize(p), small);
  EXPECT_EQ(ResidentPages(p + small, big - small), -1) << "the tail is unmapped";
  for (size_t i = 0; i < small; i += kPage) {
    ASSERT_EQ(p[i], static_cast<unsigned char>(i / kPage)) << i;
  }
  // A shrink by less than 64 KiB is not worth a system call: the usable size stays.
  q = static_cast<unsigned char*>(Reallocate(p, small - 8 * kPage, "realloc"));
  EXPECT_EQ(q, p);
  EXPECT_EQ(UsableSize(p), small);
  Free(p);
}

TEST(ReallocLarge, AnAlignedBlockNeverMovesToAnUnalignedAddress) {
  const size_t align = size_t{1} << 20;
  auto* p = static_cast<unsigned char*>(AllocateAligned(align, 2 * align));
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
  memset(p, 0x3C, 2 * align);
  for (size_t size = 2 * align + kPage; size <= 8 * align; size += 64 * kPage) {
    bool moved = true;
    void* q = LargeResize(p, size, &moved);
    if (q == nullptr) break;  // it could not grow in place: realloc copies instead
    EXPECT_EQ(q, p);
    EXPECT_FALSE(moved);
  }
  auto* q = static_cast<unsigned char*>(Reallocate(p, 16 * align, "realloc"));
  ASSERT_NE(q, nullptr);
  for (size_t i = 0; i < 2 * align; i += 997) ASSERT_EQ(q[i], 0x3C) << i;
  Free(q);
}

// The footprint gauge (mf2_stats bytes_large_live, and bytes_in_use with it) follows a block
// that grows, in place or moved, and its free takes back exactly what it added. Before, a growth
// in place was not counted, and the free then took the grown bytes off the other live blocks'
// share (the gauge drifted below the live blocks' bytes; reads clamp it at 0).
TEST(ReallocLarge, TheFootprintFollowsEveryGrowth) {
  void* other = Allocate(size_t{8} << 20);  // a live share for a wrong free to take from
  ASSERT_NE(other, nullptr);
  // Fresh mappings of exactly the sizes asked: a cached one may be up to twice as long.
  LargeReleaseCache();
  const uint64_t before = GetStats().bytes_large_live;
  size_t size = size_t{1} << 20;
  void* p = Allocate(size);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(GetStats().bytes_large_live, before + size);
  int in_place = 0;
  for (int step = 0; step < 64; ++step) {
    size += 16 * kPage;
    bool moved = true;
    void* q = LargeResize(p, size, &moved);
    ASSERT_NE(q, nullptr);
    if (!moved) ++in_place;
    p = q;
    ASSERT_EQ(GetStats().bytes_large_live, before + size) << "step " << step << ", moved " << moved;
  }
  Free(p);
  EXPECT_EQ(GetStats().bytes_large_live, before);
  Free(other);
  if (in_place == 0) GTEST_SKIP() << "no growth was in place";
}

TEST(ReallocLarge, BetweenAClassAndAMappingTheDataIsCopied) {
  auto* p = static_cast<unsigned char*>(Allocate(100));
  for (int i = 0; i < 100; ++i) p[i] = static_cast<unsigned char>(i);
  auto* q = static_cast<unsigned char*>(Reallocate(p, size_t{1} << 20, "realloc"));
  ASSERT_NE(q, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(q[i], i);
  auto* r = static_cast<unsigned char*>(Reallocate(q, 50, "realloc"));
  ASSERT_NE(r, nullptr);
  EXPECT_LE(UsableSize(r), kMaxClassSize);
  for (int i = 0; i < 50; ++i) ASSERT_EQ(r[i], i);
  Free(r);
}

TEST(CallocLarge, AFreshMappingIsNotTouched) {
  const size_t len = size_t{256} << 20;  // above the large cache's entries: always fresh
  auto* p = static_cast<unsigned char*>(AllocateZeroed(1, len));
  ASSERT_NE(p, nullptr);
  const long resident = ResidentPages(p, len);
  // memset faulted in all 65,536 pages before.
  EXPECT_LT(resident, static_cast<long>(len / kPage / 64)) << resident << " pages resident";
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[len / 2], 0);
  EXPECT_EQ(p[len - 1], 0);
  Free(p);
}

TEST(CallocLarge, AMappingReusedFromTheCacheIsZeroed) {
  LargeReleaseCache();
  const size_t len = size_t{1} << 20;
  void* p = Allocate(len);
  ASSERT_NE(p, nullptr);
  memset(p, 0xAB, len);
  Free(p);
  ASSERT_EQ(LargeCachedBytes(), len);
  auto* q = static_cast<unsigned char*>(AllocateZeroed(len / 16, 16));
  ASSERT_EQ(q, p) << "the cached mapping";
  for (size_t i = 0; i < len; ++i) ASSERT_EQ(q[i], 0) << i;
  Free(q);
}

TEST(CallocLarge, OverflowIsEnomem) {
  errno = 0;
  EXPECT_EQ(AllocateZeroed(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

class ReallocMisuseTest : public ::testing::Test {
 protected:
  // realloc(p, size) must fail with EINVAL, leave p alone and report once, as "realloc".
  void ExpectRejected(void* p, ErrorKind kind) {
    reports_.clear();
    errno = 0;
    EXPECT_EQ(Reallocate(p, size_t{2} << 20, "realloc"), nullptr);
    EXPECT_EQ(errno, EINVAL);  // was 0
    ASSERT_EQ(reports_.size(), 1u);
    EXPECT_EQ(reports_[0].kind, kind);
    EXPECT_STREQ(reports_[0].call, "realloc");
    EXPECT_EQ(reports_[0].pointer, p);
  }
  testing::ScopedReports capture_;
  std::vector<ErrorReport>& reports_ = capture_.reports();
};

TEST_F(ReallocMisuseTest, AFreedLargeBlockIsAUseAfterFree) {
  void* p = Allocate(size_t{1} << 20);
  Free(p);
  ExpectRejected(p, ErrorKind::kUseAfterFree);
}

TEST_F(ReallocMisuseTest, AnInteriorPointerIsNotABlockStart) {
  auto* p = static_cast<char*>(Allocate(size_t{1} << 20));
  ExpectRejected(p + 4096, ErrorKind::kNotABlock);
  Free(p);
}

TEST_F(ReallocMisuseTest, AForeignPointerIsForeign) {
  int local = 0;
  ExpectRejected(&local, ErrorKind::kForeignPointer);
}

TEST_F(ReallocMisuseTest, AFreedSmallBlockFailsWithEinval) {
  void* keep = Allocate(64);  // keeps the page in use, so the freed block stays in a live page
  void* p = Allocate(64);
  Free(p);
  errno = 0;
  EXPECT_EQ(Reallocate(p, 128, "realloc"), nullptr);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(reports_.size(), 1u);  // its kind and call are the core's (UsableSize)
  Free(keep);
}

}  // namespace
}  // namespace mf2
