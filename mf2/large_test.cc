// Misuse of large blocks (mapped directly, above 64 KiB) is named for what it is: a second free
// is a double free, a pointer into a live block is not a block start, and only pointers MF2
// knows nothing about are foreign. Also the diagnosis behind those reports.
#include "mf2/large.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "mf2/check.h"
#include "mf2/mf2.hpp"
#include "mf2/policy.h"
#include "mf2/size_class.h"
#include "mf2/testing/resident_pages.h"
#include "mf2/testing/scoped_policy.h"
#include "mf2/testing/scoped_reports.h"

namespace mf2 {
namespace {

class LargeMisuseTest : public ::testing::Test {
 protected:
  testing::ScopedReports capture_;
  std::vector<ErrorReport>& reports_ = capture_.reports();
};

constexpr size_t kLarge = size_t{1} << 20;

TEST_F(LargeMisuseTest, ASecondFreeIsADoubleFree) {
  void* p = Allocate(kLarge);
  ASSERT_NE(p, nullptr);
  Free(p);
  EXPECT_TRUE(reports_.empty());
  Free(p);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kDoubleFree);  // was kForeignPointer ("not from MF2")
  EXPECT_STREQ(reports_[0].call, "mf2::Free");
  EXPECT_EQ(reports_[0].pointer, p);
  EXPECT_EQ(reports_[0].block, p);
  EXPECT_EQ(reports_[0].block_size, kLarge);
}

TEST_F(LargeMisuseTest, AnInteriorPointerIsNotABlockStart) {
  char* p = static_cast<char*>(Allocate(kLarge));
  ASSERT_NE(p, nullptr);
  for (size_t offset : {size_t{16}, size_t{4096}, kLarge - 1}) {
    Free(p + offset);
  }
  ASSERT_EQ(reports_.size(), 3u);
  for (const ErrorReport& r : reports_) {
    EXPECT_EQ(r.kind, ErrorKind::kNotABlock);  // was kForeignPointer
    EXPECT_EQ(r.block, p);
    EXPECT_EQ(r.block_size, kLarge);
  }
  EXPECT_EQ(reports_[1].pointer, p + 4096);
  EXPECT_EQ(UsableSize(p), kLarge) << "the block is still live";
  Free(p);
  EXPECT_EQ(reports_.size(), 3u);
}

TEST_F(LargeMisuseTest, ALiveBlockAtAFreedAddressWins) {
  LargeReleaseCache();
  void* p = Allocate(kLarge);
  Free(p);
  void* q = Allocate(kLarge);  // the cached mapping again
  ASSERT_EQ(q, p);
  EXPECT_EQ(LargeDiagnose(q).kind, LargeDiagnosis::kLive);
  Free(q);
  EXPECT_TRUE(reports_.empty());
  Free(q);
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kDoubleFree);
}

TEST_F(LargeMisuseTest, PointersMf2NeverHandedOutStayForeign) {
  int local = 0;
  static int in_data = 0;
  Free(&local);
  Free(&in_data);
  ASSERT_EQ(reports_.size(), 2u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kForeignPointer);
  EXPECT_EQ(reports_[1].kind, ErrorKind::kForeignPointer);
  EXPECT_EQ(LargeDiagnose(&local).kind, LargeDiagnosis::kUnknown);
}

TEST_F(LargeMisuseTest, DiagnosisOfEachKind) {
  char* p = static_cast<char*>(LargeAllocate(3 * kLarge, kMinAlign));
  ASSERT_NE(p, nullptr);
  LargeDiagnosis d = LargeDiagnose(p);
  EXPECT_EQ(d.kind, LargeDiagnosis::kLive);
  d = LargeDiagnose(p + kLarge);
  EXPECT_EQ(d.kind, LargeDiagnosis::kInteriorOfLive);
  EXPECT_EQ(d.base, reinterpret_cast<uintptr_t>(p));
  EXPECT_EQ(d.size, 3 * kLarge);
  // One past the end is not inside this block (it may be another mapping's start).
  d = LargeDiagnose(p + 3 * kLarge);
  EXPECT_FALSE(d.kind == LargeDiagnosis::kInteriorOfLive &&
               d.base == reinterpret_cast<uintptr_t>(p));
  ASSERT_TRUE(LargeFree(p));
  d = LargeDiagnose(p);
  EXPECT_EQ(d.kind, LargeDiagnosis::kFreedRecently);
  EXPECT_EQ(d.size, 3 * kLarge);
  // Reported by the caller's name, as a use for realloc and malloc_usable_size.
  LargeReportMisuse(p, "malloc_usable_size", LargeAccess::kUse);
  LargeReportMisuse(p, "operator delete", LargeAccess::kFree);
  ASSERT_EQ(reports_.size(), 2u);
  EXPECT_EQ(reports_[0].kind, ErrorKind::kUseAfterFree);
  EXPECT_STREQ(reports_[0].call, "malloc_usable_size");
  EXPECT_EQ(reports_[1].kind, ErrorKind::kDoubleFree);
  EXPECT_STREQ(reports_[1].call, "operator delete");
  EXPECT_TRUE(LargeFree(p, "operator delete[]")) << "handled: reported, nothing freed";
  ASSERT_EQ(reports_.size(), 3u);
  EXPECT_STREQ(reports_[2].call, "operator delete[]");
}

// A freed block's address that a new live block covers is that block's now: a pointer there is
// judged by the live block (an interior pointer), not by history.
TEST_F(LargeMisuseTest, AFreedAddressCoveredByALiveBlockIsJudgedByTheLiveBlock) {
  const size_t len = size_t{32} << 20;  // above a quarter of the cache bound: unmapped when freed
  auto a = reinterpret_cast<uintptr_t>(LargeAllocate(len, kMinAlign));
  ASSERT_TRUE(LargeFree(reinterpret_cast<void*>(a)));
  ASSERT_EQ(LargeDiagnose(reinterpret_cast<void*>(a)).kind, LargeDiagnosis::kFreedRecently);
  // Mappings are placed top-down: a larger one usually lands over the hole just made.
  void* b = LargeAllocate(2 * len, kMinAlign);
  const auto base = reinterpret_cast<uintptr_t>(b);
  if (a < base || a - base >= 2 * len) {
    ASSERT_TRUE(LargeFree(b));
    GTEST_SKIP() << "the kernel placed the second mapping elsewhere";
  }
  const LargeDiagnosis d = LargeDiagnose(reinterpret_cast<void*>(a));
  EXPECT_EQ(d.kind, a == base ? LargeDiagnosis::kLive : LargeDiagnosis::kInteriorOfLive);
  EXPECT_EQ(d.base, base);
  ASSERT_TRUE(LargeFree(b));
  EXPECT_TRUE(reports_.empty());
}

TEST_F(LargeMisuseTest, OnlyTheLastFreedBlocksAreRemembered) {
  constexpr size_t kBlocks = kFreedRemembered + 6;
  std::vector<void*> blocks;
  for (size_t i = 0; i < kBlocks; ++i) blocks.push_back(LargeAllocate(128 << 10, kMinAlign));
  for (void* p : blocks) ASSERT_TRUE(LargeFree(p));
  for (size_t i = 0; i < kBlocks; ++i) {
    EXPECT_EQ(LargeDiagnose(blocks[i]).kind,
              i < kBlocks - kFreedRemembered ? LargeDiagnosis::kUnknown
                                             : LargeDiagnosis::kFreedRecently)
        << i;
  }
  EXPECT_TRUE(reports_.empty());
}

// The cache of freed mappings serves requests of every size (large.cc, TakeCached): a request
// far shorter than a cached mapping takes its head and leaves the rest cached, a request longer
// than every cached mapping grows one, so freed memory that is resident serves the next request
// instead of staying resident beside a fresh mapping. The decay is off: nothing leaves the cache
// by itself.
class LargeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { LargeReleaseCache(); }
  void TearDown() override {
    LargeCheckInvariants();
    LargeReleaseCache();
  }

  // Blocks of `lens` bytes, all allocated and written whole (resident), then freed into the
  // cache; their addresses.
  static std::vector<uintptr_t> CacheAll(std::vector<size_t> lens) {
    std::vector<uintptr_t> blocks;
    for (size_t len : lens) {
      void* p = LargeAllocate(len, kMinAlign);
      EXPECT_NE(p, nullptr);
      memset(p, 0xab, len);
      blocks.push_back(reinterpret_cast<uintptr_t>(p));
    }
    for (uintptr_t p : blocks) EXPECT_TRUE(LargeFree(reinterpret_cast<void*>(p)));
    return blocks;
  }

  testing::ScopedPolicy policy_{[](Policy* p) {
    p->large_cache_bytes = size_t{64} << 20;
    p->page_cache_decay_ns = 0;
  }};
  testing::ScopedReports capture_;
};

TEST_F(LargeCacheTest, AShortRequestTakesTheHeadOfALongMapping) {
  const uintptr_t base = CacheAll({4 * kLarge})[0];
  ASSERT_EQ(LargeCachedBytes(), 4 * kLarge);
  char* p = static_cast<char*>(LargeAllocate(kLarge / 2, kMinAlign));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p), base) << "the cached mapping's resident head";
  EXPECT_EQ(LargeUsableSize(p), kLarge / 2);
  EXPECT_EQ(LargeCachedBytes(), 4 * kLarge - kLarge / 2) << "the rest stays cached";
  EXPECT_EQ(testing::ResidentPages(p, 4 * kLarge), static_cast<long>(4 * kLarge / 4096))
      << "all of it is reused, nothing faulted in or given back";
  // The rest serves the next request, and a free caches the head apart from it.
  char* q = static_cast<char*>(LargeAllocate(2 * kLarge, kMinAlign));
  EXPECT_EQ(q, p + kLarge / 2);
  EXPECT_EQ(LargeUsableSize(q), 4 * kLarge - kLarge / 2) << "within 2x: used whole";
  EXPECT_EQ(LargeCachedBytes(), 0u);
  ASSERT_TRUE(LargeFree(p));
  EXPECT_EQ(LargeCachedBytes(), kLarge / 2);
  memset(q, 1, LargeUsableSize(q));  // still the block's, whole
  ASSERT_TRUE(LargeFree(q));
  EXPECT_EQ(LargeCachedBytes(), 4 * kLarge);
  LargeReleaseCache();
  EXPECT_EQ(testing::ResidentPages(p, 4096), -1) << "each piece is unmapped on its own";
  EXPECT_EQ(testing::ResidentPages(q, 4096), -1);
  EXPECT_TRUE(capture_.reports().empty());
}

TEST_F(LargeCacheTest, ALongRequestGrowsTheLongestShorterMapping) {
  const uintptr_t longest = CacheAll({kLarge / 4, kLarge})[1];
  ASSERT_EQ(LargeCachedBytes(), kLarge + kLarge / 4);
  char* p = static_cast<char*>(LargeAllocate(3 * kLarge, kMinAlign));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(LargeCachedBytes(), kLarge / 4) << "the 1 MiB mapping was grown, the other kept";
  EXPECT_EQ(LargeUsableSize(p), 3 * kLarge);
  EXPECT_EQ(static_cast<unsigned char>(p[0]), 0xab) << "grown from the freed 1 MiB block";
  EXPECT_EQ(static_cast<unsigned char>(p[kLarge - 1]), 0xab);
  memset(p, 1, 3 * kLarge);  // all of it is the block's
  if (reinterpret_cast<uintptr_t>(p) != longest) {
    EXPECT_EQ(LargeDiagnose(reinterpret_cast<void*>(longest)).kind,
              LargeDiagnosis::kFreedRecently)
        << "moved by the kernel: the old address is a freed block's";
  }
  ASSERT_TRUE(LargeFree(p));
  EXPECT_TRUE(capture_.reports().empty());
}

TEST_F(LargeCacheTest, ZeroedRequestsNeverGrowAMapping) {
  CacheAll({kLarge});
  bool zeroed = false;
  char* p = static_cast<char*>(LargeAllocate(3 * kLarge, kMinAlign, &zeroed));
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(zeroed) << "a fresh mapping: nothing to clear";
  EXPECT_EQ(LargeCachedBytes(), kLarge) << "the shorter mapping stays cached";
  ASSERT_TRUE(LargeFree(p));
  // The head of a longer cached mapping serves it, and is not known to be zero.
  char* q = static_cast<char*>(LargeAllocate(kLarge / 4, kMinAlign, &zeroed));
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(zeroed);
  EXPECT_EQ(LargeUsableSize(q), kLarge / 4);
  ASSERT_TRUE(LargeFree(q));
  EXPECT_TRUE(capture_.reports().empty());
}

TEST_F(LargeCacheTest, AlignedRequestsTakeNothingFromTheCache) {
  CacheAll({4 * kLarge});
  void* p = LargeAllocate(kLarge, kLarge);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % kLarge, 0u);
  EXPECT_EQ(LargeCachedBytes(), 4 * kLarge);
  ASSERT_TRUE(LargeFree(p));
}

// The table of live large blocks grows with the blocks that are live at once, not with how many
// were ever freed. A free leaves a tombstone; when tombstones filled half the table it doubled,
// so with blocks at ever new addresses the capacity (and the time of each rehash, under the
// table's lock) grew with the frees: 16384 slots here, for 64 live blocks.
TEST(LargeTable, ItsCapacityFollowsTheLiveBlocksNotTheFrees) {
  LargeReleaseCache();
  testing::ScopedPolicy no_cache([](Policy* p) { p->large_cache_bytes = 0; });
  constexpr int kLive = 64;
  void* live[kLive] = {};
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 50000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    void*& slot = live[x % kLive];
    if (slot != nullptr) ASSERT_TRUE(LargeFree(slot));
    slot = LargeAllocate(kMaxClassSize + 1 + (x >> 32) % (1 << 20), kMinAlign);
    ASSERT_NE(slot, nullptr);
  }
  EXPECT_LE(LargeTableCapacity(), size_t{1024}) << kLive << " blocks live at most";
  for (void* p : live) ASSERT_TRUE(LargeFree(p));
  LargeCheckInvariants();
}

}  // namespace
}  // namespace mf2
